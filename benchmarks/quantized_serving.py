"""Weight-only quantization at load (`--quantize`) against unquantized loads of the same checkpoint, in one run:
accuracy on the suite's test split, decode tokens/s and resident memory, per mode.

Each mode runs in a fresh subprocess (so resident memory is its own): it loads the engine
(`Engine.from_pretrained(model, dtype=…, quantize=…)`), reports the RSS added by the load and the bytes of the
weights as stored (a quantized tensor's int8 data + scales + zero points), measures greedy decode at batch 1
and 8 (`--tokens` tokens per row, no stop tokens, best of `--repeats`, one torch thread), then scores the
test split greedily through the evaluation harness (the same rule as `audior1 eval --bench synthetic`).
Ratios are against `float32` (the demo checkpoint's own dtype) measured in the same run.

    python benchmarks/quantized_serving.py --model DIR --data synth-test.jsonl [--modes float32,bfloat16,int8] \
        [--items 300] [--tokens 64] [--repeats 3]

`int4` is CUDA-only in torchao (audior1/quantize.py says why); asked for on a CPU, its row reports the error.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, tempfile, time, torch
torch.set_num_threads(1)

def rss_kb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])

def stored_bytes(t):
    if hasattr(t, "__tensor_flatten__") and type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
        names, _ = t.__tensor_flatten__()
        return sum(stored_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()

args = json.loads(sys.argv[1])
from audior1.engine import Engine, SamplingParams
from audior1.eval import benchmarks, harness
from audior1.eval.backends import LocalBackend, Sampling

mode = args["mode"]
dtype, quantize = (mode, None) if mode in ("float32", "bfloat16") else (args["quant_dtype"], mode)
import audior1.checkpoint, audior1.processor, safetensors.torch  # noqa: E401 - libraries are not weights:
try:                                                              # every mode imports the same ones first
    import torchao.quantization  # noqa: F401
except ImportError:
    pass
before = rss_kb()
t0 = time.perf_counter()
try:
    engine = Engine.from_pretrained(args["model"], dtype=dtype, quantize=quantize)
except Exception as e:  # e.g. int4 on a CPU: the row says why
    print(json.dumps({"mode": mode, "error": f"{type(e).__name__}: {e}"}))
    sys.exit(0)
out = {"mode": mode, "load_dtype": dtype, "load_s": round(time.perf_counter() - t0, 2),
       "resident_mb_added_by_load": round((rss_kb() - before) / 1024, 1),
       "weights_mb": round(sum(stored_bytes(p) for p in engine.model.parameters()) / 2**20, 2),
       "fast_decode": engine.fast_decode}
params = SamplingParams(max_tokens=args["tokens"], temperature=0, stop_token_ids=[])
words = "what is the pitch of the second beep and how many beeps are there in the clip".split()
for batch in (1, 8):
    prompts = [engine.processor.encode([{"role": "user", "content": " ".join(words[: 4 + 2 * i])}]) for i in range(batch)]
    engine.generate(prompts, params)  # warm-up
    best = min((lambda t: (engine.generate(prompts, params), time.perf_counter() - t)[1])(time.perf_counter())
               for _ in range(args["repeats"]))
    out[f"decode_batch_{batch}_tokens_per_s"] = round(batch * args["tokens"] / best, 1)
bench = benchmarks.get("synthetic")
items = bench.load(args["data"])[: args["items"]]
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    summary = harness.run_benchmark(bench, items, LocalBackend(args["model"], engine=engine, batch_size=32),
                                    Sampling(temperature=0.0, max_tokens=160), tmp, plots=False, log=lambda s: None)
out["eval_s"] = round(time.perf_counter() - t0, 1)
out["accuracy"] = summary["metrics"][summary["primary"]]["pass@1"]
print(json.dumps(out))
"""


def run_mode(mode: str, args) -> dict:
    payload = json.dumps({"mode": mode, "model": args.model, "data": args.data, "items": args.items,
                          "tokens": args.tokens, "repeats": args.repeats, "quant_dtype": args.quant_dtype})
    proc = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"mode": mode, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"}
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="checkpoint directory (a trained demo model, for accuracy to mean something; "
                    "default: a fresh demo preset, whose accuracy is 0)")
    ap.add_argument("--data", help="the suite's test split (default: 20 synthetic items per family of three)")
    ap.add_argument("--modes", default="float32,bfloat16,int8,int4")
    ap.add_argument("--quant-dtype", default="float32", help="dtype the quantized modes load in (activations)")
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:  # `make bench` runs every benchmark without arguments
            from audior1.checkpoint import init_checkpoint

            args.model = f"{tmp}/demo"
            init_checkpoint("demo", args.model, seed=0)
        if args.data is None:
            from audior1.data import synth

            synth.build(f"{tmp}/data", "test", 20, seed=0, workers=1, log=lambda s: None,
                        tasks=["noise_colour", "timbre", "count_events"])
            args.data = f"{tmp}/data/synth-test.jsonl"
        rows = {m: run_mode(m, args) for m in args.modes.split(",")}
    base = rows.get("float32", {})
    for r in rows.values():
        if "error" in r or "error" in base or r is base:
            continue
        r["vs_float32"] = {
            "weights": round(r["weights_mb"] / base["weights_mb"], 3),
            "resident": round(r["resident_mb_added_by_load"] / max(1e-9, base["resident_mb_added_by_load"]), 3),
            "decode_batch_1": round(r["decode_batch_1_tokens_per_s"] / base["decode_batch_1_tokens_per_s"], 3),
            "decode_batch_8": round(r["decode_batch_8_tokens_per_s"] / base["decode_batch_8_tokens_per_s"], 3),
            "accuracy_points": round(100 * (r["accuracy"] - base["accuracy"]), 2)}
    import torch

    json.dump({"benchmark": "quantized_serving", "model": args.model, "data": args.data, "items": args.items,
               "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
               "modes": rows}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
