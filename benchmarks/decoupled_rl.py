"""Decoupled RL against colocated RL: step time (rollout + update) and the weight sync's cost per step.

Both variants run the real `audior1 train rl --algo grpo` under torchrun with 2 processes (FSDP2; gloo on CPU,
nccl on GPUs) on the same freshly initialised model, prompts and seeds:

- colocated (the baseline)  each trainer process generates its share of the rollouts with the engine on an
            unsharded inference copy of the policy, refreshed from the shards before every generation.
- decoupled  an `audior1 serve --enable-weight-updates` process generates every rollout (both processes'
            prompts in one batch) and after each optimizer step the trainer streams the trained tensors into it
            (`rollout.sync`: stream, or reload through a checkpoint directory with `--sync reload`).

What is timed, from each run's metrics.jsonl: `step_s` (rollouts, rewards, log-probs, update, and for the
decoupled run the weight sync) and `rollout_s` per step, and `weight_sync_s` / `weight_sync_mb` (decoupled),
medians over the steps after the first. `--repeats N` interleaves N runs of each variant and reports the
median run. On a small CPU machine the server shares the cores with the trainer processes, so this measures
the cost of the design's moving parts (HTTP, serialisation, one batched server instead of per-process
engines), not the GPU-scale gain (memory: no inference copy on trainer GPUs; docs/training.md).

    nice -n 10 .venv/bin/python benchmarks/decoupled_rl.py [--preset tiny] [--steps 6] [--repeats 3] [--sync stream]
        [--model runs/demo/sft/checkpoints/step-002400 --manifest runs/demo/data3-rl/synth-train.jsonl]
        [--prompts 16 --samples 8 --max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from server_throughput import free_port, start_server  # noqa: E402


def _prepare(root: Path, args) -> tuple[Path, Path]:
    """The model and prompts: given (`--model`, `--manifest`), or a fresh `--preset` model and a small
    synthetic manifest."""
    from audior1.checkpoint import init_checkpoint
    from audior1.data import synth

    if args.model:
        if not args.manifest:
            raise SystemExit("--model needs --manifest (the RL prompts)")
        return Path(args.model).resolve(), Path(args.manifest).resolve()
    init_checkpoint(args.preset, root / "model", seed=0)
    synth.build(root / "data", "train", 16, seed=0, workers=1, tasks=["pitch_compare", "count_events"],
                log=lambda s: None)
    return root / "model", root / "data" / "synth-train.jsonl"


def _config(root: Path, model: Path, manifest: Path, args) -> Path:
    cfg = {"model": str(model), "feature_cache": str(root / "cache"),
           "prompts": [{"manifest": str(manifest), "kind": "audio", "reward": "audio"}],
           "max_steps": args.steps, "prompts_per_step": args.prompts, "samples_per_prompt": args.samples,
           "max_new_tokens": args.max_tokens, "epochs": 1, "minibatches": 1, "micro_batch_size": 16,
           "eval_every": 0, "save_every": 0, "progress": False, "threads": 1, "optim": {"lr": 1e-4}}
    path = root / "rl.yaml"
    path.write_text(json.dumps(cfg))
    return path


def _torchrun(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "audior1.train.cli", "rl", "--algo", "grpo", *args],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"training failed:\n{proc.stderr[-3000:]}")


def _summary(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"][1:]  # the first step also fills caches
    med = lambda key: statistics.median(r[key] for r in train) if train and key in train[0] else None  # noqa: E731
    return {"step_s": med("step_s"), "rollout_s": med("rollout_s"), "weight_sync_s": med("weight_sync_s"),
            "weight_sync_mb": med("weight_sync_mb"), "approx_kl_first": med("approx_kl_first"),
            "rollout_logp_gap": med("rollout_logp_gap"), "reward": [r["reward"] for r in train]}


def run_variant(name: str, root: Path, cfg: Path, model: Path, sync: str, i: int) -> dict:
    out = root / f"{name}-{i}"
    if name == "colocated":
        _torchrun(["--config", str(cfg), f"out_dir={out}"])
        return _summary(out)
    port = free_port()
    with (root / f"serve-{i}.log").open("w") as log:
        server = start_server(model, port, "--enable-weight-updates", "--threads", "1", log=log)
    try:
        _torchrun(["--config", str(cfg), f"out_dir={out}", f"rollout.endpoint=http://127.0.0.1:{port}",
                   f"rollout.sync={sync}"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    return _summary(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", help="a fresh model of this preset (without --model)")
    ap.add_argument("--model", help="a trained checkpoint instead (e.g. the demo SFT's), with --manifest")
    ap.add_argument("--manifest", help="the RL prompts for --model (an audio manifest)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step (both processes together)")
    ap.add_argument("--samples", type=int, default=4, help="samples per prompt")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sync", default="stream", choices=["stream", "reload"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="audior1-decoupled-") as tmp:
        root = Path(tmp)
        model, manifest = _prepare(root, args)
        cfg = _config(root, model, manifest, args)
        runs = {"colocated": [], "decoupled": []}
        t0 = time.perf_counter()
        for i in range(args.repeats):
            for name in runs:
                runs[name].append(run_variant(name, root, cfg, model, args.sync, i))
    median_run = {name: sorted(rs, key=lambda r: r["step_s"])[len(rs) // 2] for name, rs in runs.items()}
    col, dec = median_run["colocated"], median_run["decoupled"]
    print(json.dumps({
        "benchmark": "decoupled_rl", "baseline": "colocated (2 torchrun processes, each with its own engine)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": vars(args), "wall_s": round(time.perf_counter() - t0, 1),
        "colocated": col, "decoupled": dec,
        "step_time_ratio_decoupled_over_colocated": dec["step_s"] / col["step_s"],
        "weight_sync_share_of_decoupled_step": (dec["weight_sync_s"] or 0) / dec["step_s"],
        "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
