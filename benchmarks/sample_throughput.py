"""MGRD's `sample` stage: chains per second for K samples per question, the loop's sampler against the same
chains generated one request at a time.

The loop's sampler is `audior1 eval --n K` on the local engine: every question's prompt is prefilled once and
forked into K samples, and all questions are decoded together. The baseline asks for one chain at a time (one
prompt, n = 1, K times per question). Both sample with the same settings (temperature 0.7, `--tokens` new
tokens each, no stop token, so both produce exactly the same number of tokens); the figure is chains per second,
the best of `--repeats` runs, interleaved, so background load hurts both alike. Prints one JSON object.

    python benchmarks/sample_throughput.py [--model DIR] [--questions 64] [--k 8] [--tokens 64] [--repeats 2]

Without --model a fresh `demo` checkpoint is initialised in a temporary folder. Clips are 2–4 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

from audior1.engine import Engine, SamplingParams


def clip(seconds: float, seed: int, rate: int = 16000) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 900) * t) + 0.01 * rng.standard_normal(len(t))
    out = io.BytesIO()
    sf.write(out, wav.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def prompts(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": [{"type": "text", "text": f"Question {i}: which tone is higher?"},
                                          {"type": "audio", "audio": clip(2 + 2 * (i % 5) / 4, i)}]}]
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = None
    if args.model is None:
        from audior1.checkpoint import init_checkpoint

        tmp = tempfile.TemporaryDirectory()
        init_checkpoint("demo", tmp.name, seed=0)
        args.model = tmp.name
    engine = Engine.from_pretrained(args.model)
    qs = prompts(args.questions)
    chains = args.questions * args.k

    def forked():
        p = SamplingParams(n=args.k, temperature=0.7, max_tokens=args.tokens, stop_token_ids=[], seed=1)
        outs = engine.generate(qs, p)
        return sum(len(c.token_ids) for comps in outs for c in comps)

    def one_at_a_time():
        total = 0
        for qi, q in enumerate(qs):
            for s in range(args.k):
                p = SamplingParams(n=1, temperature=0.7, max_tokens=args.tokens, stop_token_ids=[], seed=qi * 100 + s)
                [[c]] = engine.generate([q], p)
                total += len(c.token_ids)
        return total

    best = {"loop_sampler": float("inf"), "one_request_at_a_time": float("inf")}
    tokens = {}
    for _ in range(args.repeats):
        for name, fn in (("loop_sampler", forked), ("one_request_at_a_time", one_at_a_time)):
            t0 = time.perf_counter()
            tokens[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    rate = {name: chains / sec for name, sec in best.items()}
    print(json.dumps({
        "benchmark": "sample_throughput", "model": args.model if tmp is None else "demo (fresh init)",
        "questions": args.questions, "k": args.k, "tokens_per_chain": args.tokens, "chains": chains,
        "generated_tokens": tokens, "seconds_best": {k: round(v, 2) for k, v in best.items()},
        "chains_per_s": {k: round(v, 2) for k, v in rate.items()},
        "ratio_vs_one_request_at_a_time": round(rate["loop_sampler"] / rate["one_request_at_a_time"], 2),
        "target_ratio": 4.0, "repeats": args.repeats, "threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "device": "cpu"},
    }, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
