#!/bin/bash
# Decoupled vs colocated GRPO on the demo model (configs/rl-grpo-demo.yaml from the demo SFT checkpoint), 3 seeds
# each, 2 trainer processes under torchrun; the decoupled runs take their rollouts from `audior1 serve
# --enable-weight-updates`. Resumable (a finished run leaves OUT/MODE-sSEED/done). Needs the demo data and SFT
# checkpoint of docs/training.md under $MAIN/runs/demo. Then: python scripts/decoupled_report.py OUT
#   nice -n 5 bash scripts/decoupled_experiment.sh [OUT]
set -e
TREE=$(cd "$(dirname "$0")/.." && pwd); OUT=${1:-$TREE/runs/decoupled-exp}; MAIN=${MAIN:-$TREE}
cd $TREE
PY=$TREE/.venv/bin/python
mkdir -p $OUT
for seed in 0 1 2; do
  for mode in colocated decoupled; do
    d=$OUT/$mode-s$seed
    if [ -f $d/done ]; then continue; fi
    rm -rf $d
    extra=""
    if [ $mode = decoupled ]; then
      port=$((18800 + seed))
      OMP_NUM_THREADS=1 $PY -m audior1.cli serve --model $MAIN/runs/demo/sft/checkpoints/step-002400 --port $port \
          --enable-weight-updates --threads 1 --log-level warning > $OUT/serve-s$seed.log 2>&1 &
      SRV=$!
      for i in $(seq 1 120); do curl -s http://127.0.0.1:$port/health >/dev/null && break; sleep 0.5; done
      extra="rollout.endpoint=http://127.0.0.1:$port"
    fi
    t0=$(date +%s)
    OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc_per_node 2 -m audior1.train.cli rl --algo grpo \
        --config $TREE/configs/rl-grpo-demo.yaml model=$MAIN/runs/demo/sft/checkpoints/step-002400 \
        prompts.0.manifest=$MAIN/runs/demo/data3-rl/synth-train.jsonl eval_manifest=$MAIN/runs/demo/data3/synth-test.jsonl \
        feature_cache=$MAIN/runs/feature-cache out_dir=$d seed=$seed save_every=0 progress=false $extra > $OUT/$mode-s$seed.log 2>&1
    echo $(( $(date +%s) - t0 )) > $d/wall_s
    if [ $mode = decoupled ]; then kill $SRV; wait $SRV || true; fi
    touch $d/done
    echo "$mode seed $seed done in $(cat $d/wall_s) s"
  done
done
echo ALL DONE
