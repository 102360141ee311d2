#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go, for whoever has one (no edits needed). On a machine with one CUDA
# GPU it runs, within ~8 minutes:
#   1. the tests marked `gpu` (tests/test_gpu.py): parity with transformers in fp32 and bf16 on CUDA, engine
#      greedy = recompute, one SFT / GRPO / DPO step in bf16 with and without LoRA, FSDP2 under torchrun with
#      nccl and one process (with and without LoRA), int4 weight-only quantization;
#   2. benchmarks/decode_speed.py against transformers on the same GPU, at the released widths of
#      step-audio-2-mini with 4 decoder layers (bf16);
# and prints ONE JSON object: the GPU, per-test results and peak memory, the decode figures, the total time.
# Without CUDA it says so (one JSON line) and exits 0. Exit status: 0 when every check passed, 1 otherwise.
#   bash scripts/gpu-check.sh            (uses .venv/bin/python; PY=/path/to/python to choose another)
# The venv needs a CUDA build of torch: `make setup` installs the CPU one; on a GPU machine install the CUDA
# wheel into .venv first (README, "Two commands").
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  "$PY" -c "import json, torch; print(json.dumps({'gpu_check': 'skipped', 'reason': 'no CUDA device: torch.cuda.is_available() is False (torch ' + torch.__version__ + ')'}))" 2>/dev/null \
    || echo '{"gpu_check": "skipped", "reason": "no usable torch in '"$PY"'"}'
  exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
export AUDIOR1_GPU_REPORT="$WORK/peaks.jsonl" OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

timeout 330 "$PY" -m pytest tests/test_gpu.py -m gpu -p no:cacheprovider -q -o addopts="" \
  --junitxml "$WORK/gpu.xml" > "$WORK/pytest.log" 2>&1
PYTEST_RC=$?
timeout 150 "$PY" benchmarks/decode_speed.py --preset step-audio-2-mini --layers 4 --device cuda --dtype bfloat16 \
  --tokens 128 --repeats 3 > "$WORK/decode.json" 2> "$WORK/decode.log"
DECODE_RC=$?

"$PY" - "$WORK" "$PYTEST_RC" "$DECODE_RC" "$START" <<'PYEOF'
import json, sys, time, xml.etree.ElementTree as ET
from pathlib import Path
import torch
work, pytest_rc, decode_rc, start = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tests = {}
if (work / "gpu.xml").exists():
    for case in ET.parse(work / "gpu.xml").getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                outcome += ": " + (node.get("message") or "")[:300]
        tests[case.get("name")] = {"outcome": outcome, "seconds": round(float(case.get("time", 0)), 1)}
if (work / "peaks.jsonl").exists():
    for line in (work / "peaks.jsonl").read_text().splitlines():
        r = json.loads(line)
        tests.setdefault(r["test"], {})["peak_gpu_memory_gb"] = r["peak_gb"]
decode = None
try:
    decode = json.loads((work / "decode.json").read_text())
except Exception:
    decode = {"error": (work / "decode.log").read_text()[-1500:] if (work / "decode.log").exists() else "no output"}
passed = sum(1 for t in tests.values() if t.get("outcome") == "passed")
ok = pytest_rc == 0 and decode_rc == 0 and passed > 0
summary = {"gpu_check": "passed" if ok else "failed", "gpu": torch.cuda.get_device_name(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "seconds": int(time.time() - start),
           "tests": {"passed": passed, "total": len(tests), "pytest_exit": pytest_rc, "each": tests},
           "decode_benchmark": decode, "decode_exit": decode_rc}
if pytest_rc not in (0, 5):
    summary["pytest_tail"] = (work / "pytest.log").read_text()[-3000:]
print(json.dumps(summary, indent=1))
sys.exit(0 if ok else 1)
PYEOF
