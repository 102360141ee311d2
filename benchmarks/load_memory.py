"""Peak memory of loading a checkpoint: audior1's meta-device streaming load against the common baseline
(build the model with its own random weights, read the whole state dict, then `load_state_dict`).

Each load runs in a fresh subprocess and reports its peak RSS (VmHWM, reset after start-up) above the\ninterpreter's own footprint.
Prints one JSON object. The model is a ~0.4 GB (fp32) config of the same architecture, so the difference
is visible above the Python/torch footprint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import sys, time, torch
from pathlib import Path

def peak_kb():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0])

torch.set_num_threads(1)
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark inherited through fork
before = peak_kb()
mode, path = sys.argv[1], Path(sys.argv[2])
start = time.perf_counter()
if mode == "audior1":
    from audior1.checkpoint import load_model
    model = load_model(path)
else:
    from safetensors.torch import load_file
    from audior1.config import ModelConfig
    from audior1.model import StepAudioR1ForCausalLM
    model = StepAudioR1ForCausalLM(ModelConfig.from_file(path / "config.json"))
    model.load_state_dict(load_file(path / "model.safetensors"), strict=True)
seconds = time.perf_counter() - start
# Touch every weight: safetensors may map the file lazily, and a fair peak counts all weights resident.
checksum = sum(float(p.detach().sum()) for p in model.parameters())
print(f"{(peak_kb() - before) / 1024:.1f} {seconds:.2f}")
"""


def make_checkpoint(path: Path, dtype: str | None = None) -> float:
    """The benchmark model saved to `path` (in `dtype`, default fp32); returns its size in MB."""
    from audior1.checkpoint import save_checkpoint
    from audior1.config import preset
    from audior1.model import StepAudioR1ForCausalLM

    cfg = preset("demo")
    cfg.text.hidden_size = cfg.audio.llm_dim = 1024
    cfg.text.intermediate_size, cfg.text.num_hidden_layers, cfg.text.vocab_size = 2816, 8, 16384
    cfg.text.num_attention_heads, cfg.text.num_key_value_heads = 8, 2
    cfg.audio_patch_token_id = 5
    model = StepAudioR1ForCausalLM(cfg)
    model.init_weights(0)
    save_checkpoint(model, path, dtype=dtype, max_shard_bytes=10 * 1024**3)  # one file, so the baseline can read it
    element = 2 if dtype in ("bfloat16", "float16") else 4
    return sum(p.numel() for p in model.parameters()) * element / 1e6


def measure(mode: str, path: Path, repeats: int = 3) -> dict:
    peaks, times = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], capture_output=True, text=True, check=True)
        peak, seconds = map(float, out.stdout.split())
        peaks.append(peak)
        times.append(seconds)
    peaks.sort(), times.sort()
    return {"peak_extra_mb": peaks[len(peaks) // 2], "seconds": times[len(times) // 2]}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt"
        size_mb = make_checkpoint(path)
        ours = measure("audior1", path)
        base = measure("baseline", path)
    print(json.dumps({
        "benchmark": "load_memory", "checkpoint_mb": round(size_mb, 1),
        "audior1_streaming": ours, "baseline_build_then_load_state_dict": base,
        "peak_ratio_baseline_over_ours": round(base["peak_extra_mb"] / ours["peak_extra_mb"], 2),
        "ours_peak_over_checkpoint_size": round(ours["peak_extra_mb"] / size_mb, 2),
    }))


if __name__ == "__main__":
    main()
