"""SFT throughput: packing + per-segment attention + the encoder-output cache, against a standard padded trainer.

Each variant trains the same freshly initialised model on the same data with the same optimizer, in its own
child process (so peak memory is its own), through the real `audior1 train sft` code path:

- packed_cached  `packing: true`, `feature_cache: DIR`: rows of `--row-len` tokens holding several examples,
            `--micro` rows per forward pass; attention runs segment by segment (`audior1.model.PackedSegments`:
            no T × T mask), so long rows cost what their examples cost; the frozen encoder's outputs come from
            the cache, filled once before step 1 (`prep_s` of the first run includes that), and the adapter's
            linear layers see valid frames only.
- baseline_padded_reencode  `packing: false`, `feature_cache: null`, `mel_memory: false`: one example per
            row, padded to the longest in its micro-batch of `--baseline-micro` rows (the trainer's default,
            8), attention through one dense causal + padding mask per micro-batch (what transformers' `sdpa`
            attention does with padded batches; here `model.per_segment_attention = False`); every step decodes
            the clips, computes log-mels and runs the frozen encoder: the standard padded trainer. The
            speed-up target (3x, docs/results.md §3) is measured against this one.
- baseline_padded_reencode_row_attention  the same, but attention runs over each row's valid tokens only
            (audior1's own `packing: false` mode, like flash-attention's unpadding): padding still costs the
            linear layers, not attention. The strongest padded baseline, reported beside it.
- baseline_padded_reencode_mels_in_memory  the standard baseline with log-mels kept in memory after first
            use (only the encoder re-runs), reported beside it.

Fairness: the same examples per optimizer step on average, hence the same tokens per step: the packed
variant runs first and the baselines' `batch_size` is its mean number of examples per step. Every variant
has the same `max_seq_len` (the packed row length), so they skip the same examples (none at the default: the
longest is ~340 tokens).

Data: the MGRD cold-start mixture of `configs/sft-mgrd-cold-start.yaml` (text CoT on every family, direct
answers on six, captions on every family, audio CoT on the two compositional ones; weights 1 : 1 : 1 : 0.3),
rendered from a synthetic manifest of every family (`audior1.data.synth`; the speech families need espeak-ng
and are skipped without it: `tasks` in the output lists those used). Examples run from ~30 tokens (a direct
answer about a short clip) to ~340 (a text CoT), so one example per row pads a real share of every batch.

Chain length (`--chain-tokens N`): the suite's reasoning chains are short (≤ ~300 tokens), while the paper's
cold-start chains run to thousands (docs/design.md §4.1: ≈ 3 000 tokens). With `N > 0` the benchmark trains on a copy of
the manifest whose `text_cot` (the reasoning of the text-CoT and audio-CoT examples) is lengthened to a length
drawn uniformly from [N/2, 3N/2] tokens by appending other items' chains: the *content* is then not a coherent
argument, but the token counts, the mixture, the audio and every other example are those of the suite. Packing's
gain depends on the spread of example lengths, so `docs/results.md` reports the speed-up at several N. Rows
default to the smallest power of two ≥ 2 048 that holds the longest example, for every variant.

Tokens/s counts real (non-padding) tokens per second of training step, steps after the first two (a step's
time covers batch assembly, audio decoding and encoding where the variant does them, forward, backward and
the optimizer); tokens per CPU second divides by the process's CPU time instead, which a shared machine
disturbs less. `slots_per_step` counts positions computed, padding included; peak memory is the child's max
RSS. With `--repeats N` the variants run N times, interleaved, and each reports its median run (every run's
figures are listed). Prints one JSON object with every variant and the speed-ups.

    nice -n 10 .venv/bin/python benchmarks/sft_throughput.py [--preset demo] [--steps 30] [--threads 1] [--repeats 3]
        [--chain-tokens 1000] [--variants packed_cached,baseline_padded_reencode,...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("packed_cached", "baseline_padded_reencode", "baseline_padded_reencode_row_attention",
            "baseline_padded_reencode_mels_in_memory")
MIXTURE = ROOT / "configs" / "sft-mgrd-cold-start.yaml"


def child(config_path: str, attention: str) -> None:
    """Run one variant; print its measurements as JSON on the last line."""
    import resource

    from audior1.model import StepAudioR1ForCausalLM
    from audior1.train.config import SFTConfig, load_config
    from audior1.train.logging import read_metrics
    from audior1.train.sft import train

    if attention == "dense":  # the standard padded trainer's attention: one masked SDPA per micro-batch
        build = StepAudioR1ForCausalLM.__init__

        def dense_attention_model(self, *args, **kwargs):
            build(self, *args, **kwargs)
            self.per_segment_attention = False

        StepAudioR1ForCausalLM.__init__ = dense_attention_model

    cfg = load_config(SFTConfig, config_path)
    t0 = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - t0
    records = read_metrics(Path(cfg.out_dir) / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "train"]
    infos = [r for r in records if r["kind"] == "info"]
    timed = steps[2:]
    mean = lambda key: sum(r[key] for r in timed) / len(timed)
    seconds = sum(r["step_time"] for r in timed)
    cpu_seconds = sum(r["step_cpu_time"] for r in timed)
    start = min(r["time"] for r in infos) if infos else None
    prep = steps[0]["time"] - steps[0]["step_time"] - start if start else None
    print(json.dumps({
        "tokens_per_s": round(sum(r["tokens"] for r in timed) / seconds, 1), "steps_timed": len(timed),
        "step_s": round(seconds / len(timed), 4),
        "tokens_per_cpu_s": round(sum(r["tokens"] for r in timed) / cpu_seconds, 1),
        "step_cpu_s": round(cpu_seconds / len(timed), 4), "tokens_per_step": round(mean("tokens")),
        "slots_per_step": round(mean("slots")), "examples_per_step": round(mean("examples"), 2),
        "rows_per_step": cfg.batch_size, "micro_batch_rows": cfg.micro_batch_size,
        "prep_s": round(prep, 2) if prep else None, "wall_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "final_loss": round(steps[-1]["loss"], 4)}))


def cold_start_sources(manifest: Path) -> list[dict]:
    """The cold-start config's data mixture, pointed at the benchmark's manifest."""
    sources = yaml.safe_load(MIXTURE.read_text())["data"]
    return [{**s, "manifest": str(manifest)} for s in sources]


def lengthen_chains(manifest: Path, target: int, tokenizer, seed: int = 0) -> tuple[Path, int]:
    """A copy of `manifest` beside it whose `text_cot` chains run to U[target/2, 3·target/2] tokens, each its
    own chain followed by other items' chains; returns the copy and its longest chain in tokens."""
    from audior1.data.manifest import read_manifest, write_manifest

    items = read_manifest(manifest, check_files=False)
    rng = random.Random(seed)
    pool = [(it["text_cot"], len(tokenizer.encode(it["text_cot"]))) for it in items]
    longest = 0
    for item, (own, own_count) in zip(items, pool):
        want = rng.randint(target // 2, 3 * target // 2)
        parts, n = [own], own_count
        while n < want:
            text, count = rng.choice(pool)
            parts.append(text)
            n += count + 1  # the joining newline
        item["text_cot"] = "\n".join(parts)
        longest = max(longest, len(tokenizer.encode(item["text_cot"])))
    out = manifest.with_name(f"{manifest.stem}-chains{target}.jsonl")
    write_manifest(out, items)
    return out, longest


def default_row_len(longest_chain: int) -> int:
    """Smallest power of two ≥ 2 048 with room for the longest chain plus its question, caption and audio."""
    return max(2048, 2 ** math.ceil(math.log2(longest_chain + 768)))


def run_variant(name: str, cfg: dict, work: Path, env: dict, attention: str = "segments") -> dict:
    path = work / f"{name}.yaml"
    path.write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, __file__, "--child", str(path), "--attention", attention],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    """One variant over its repeats: the run of median tokens/s, the median tokens per CPU second, every run's
    tokens/s (so the spread a shared machine causes is visible)."""
    by_speed = sorted(runs, key=lambda r: r["tokens_per_s"])
    cpu = sorted(r["tokens_per_cpu_s"] for r in runs)
    return {**by_speed[(len(runs) - 1) // 2], "tokens_per_cpu_s": cpu[(len(cpu) - 1) // 2],
            "tokens_per_s_runs": [r["tokens_per_s"] for r in runs], "prep_s_runs": [r["prep_s"] for r in runs],
            "tokens_per_cpu_s_runs": [r["tokens_per_cpu_s"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--items-per-task", type=int, default=48)
    ap.add_argument("--rows", type=int, default=4, help="packed rows per step")
    ap.add_argument("--row-len", type=int, default=None,
                    help="packed row length = max_seq_len of every variant (default: 2048, or what the chains need)")
    ap.add_argument("--chain-tokens", type=int, default=0,
                    help="lengthen reasoning chains to about this many tokens (0: the suite's own chains)")
    ap.add_argument("--micro", type=int, default=4, help="packed rows per forward pass")
    ap.add_argument("--baseline-micro", type=int, default=8, help="baseline rows (examples) per forward pass")
    ap.add_argument("--repeats", type=int, default=1, help="run the variants this many times, interleaved")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants to run")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--attention", default="segments", choices=["segments", "dense"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.attention)
        return
    variants = args.variants.split(",")
    if "packed_cached" not in variants or any(v not in VARIANTS for v in variants):
        sys.exit(f"--variants: packed_cached plus any of {', '.join(VARIANTS[1:])}; got {args.variants!r}")

    work = Path(args.work or tempfile.mkdtemp(prefix="sft-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    from audior1.checkpoint import init_checkpoint
    from audior1.data import synth
    from audior1.data.manifest import read_manifest

    manifest = work / "data" / "synth-train.jsonl"
    if not manifest.exists():
        synth.build(work / "data", "train", args.items_per_task, seed=0, log=lambda s: print(s, file=sys.stderr))
    tasks = sorted({it["task"] for it in read_manifest(manifest, check_files=False)})
    model = work / "model"
    if not (model / "config.json").exists():
        init_checkpoint(args.preset, model, seed=0)
    longest_chain = None
    if args.chain_tokens > 0:
        from audior1.chat import ChatTokenizer

        manifest, longest_chain = lengthen_chains(manifest, args.chain_tokens, ChatTokenizer.from_dir(model))
    if args.row_len is None:
        args.row_len = default_row_len(longest_chain or 0)

    common = {
        "model": str(model), "data": cold_start_sources(manifest), "max_steps": args.steps,
        "max_seq_len": args.row_len, "eval_every": 0, "save_every": 0, "log_every": 1, "progress": False,
        "plots": False, "threads": args.threads, "optim": {"lr": 1e-3, "warmup_steps": 5}, "seed": 0,
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    packed = {**common, "packing": True, "feature_cache": str(work / "cache"), "batch_size": args.rows,
              "micro_batch_size": args.micro, "out_dir": str(work / "packed")}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    examples = None
    for _ in range(args.repeats):
        runs["packed_cached"].append(run_variant("packed_cached", packed, work, env))
        if examples is None:  # the data stream is seeded: every repeat draws the same batches
            examples = max(1, round(runs["packed_cached"][0]["examples_per_step"]))  # same examples per step
        baseline = {**common, "packing": False, "feature_cache": None, "batch_size": examples,
                    "micro_batch_size": args.baseline_micro, "mel_memory": False}
        for name, overrides, attention in (
                ("baseline_padded_reencode", {}, "dense"),
                ("baseline_padded_reencode_row_attention", {}, "segments"),
                ("baseline_padded_reencode_mels_in_memory", {"mel_memory": True}, "dense")):
            if name in variants:
                runs[name].append(run_variant(name, {**baseline, **overrides, "out_dir": str(work / name)}, work,
                                              env, attention))
    results = {name: summarise(r) for name, r in runs.items()}

    fast = results["packed_cached"]
    speedups = {}
    for name, key in (("baseline_padded_reencode", "speedup"), ("baseline_padded_reencode_row_attention",
                      "speedup_vs_row_attention"), ("baseline_padded_reencode_mels_in_memory", "speedup_vs_mels_in_memory")):
        if name in results:
            speedups[f"{key}_tokens_per_s"] = round(fast["tokens_per_s"] / results[name]["tokens_per_s"], 2)
            speedups[f"{key}_tokens_per_cpu_s"] = round(fast["tokens_per_cpu_s"] / results[name]["tokens_per_cpu_s"], 2)
    out = {
        "benchmark": "sft_throughput", "preset": args.preset, "steps": args.steps, "threads": args.threads,
        "repeats": args.repeats, "chain_tokens": args.chain_tokens, "longest_chain_tokens": longest_chain,
        "row_len": args.row_len, "packed_rows_per_step": args.rows,
        "packed_micro_batch": args.micro, "baseline_examples_per_step": examples,
        "baseline_micro_batch": args.baseline_micro, "items": len(read_manifest(manifest, check_files=False)),
        "tasks": tasks, "manifest": manifest.name, "mixture": [{k: v for k, v in s.items() if k != "manifest"} for s in common["data"]],
        "baseline": "one example per row padded to the micro-batch's longest, dense causal + padding mask, audio "
                    "decoded + featurised + encoded every step; same model, data, optimizer and examples per step",
        **results, **speedups,
        "target_speedup": 3.0,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_at_end": os.getloadavg()},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
