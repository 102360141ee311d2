"""`audior1 quickstart`: the built-in end-to-end run behind the README's first command.

The best small-scale pipeline we have, from nothing to a model that reasons about sounds it hears before it
answers, on a 2-core laptop in minutes, using only audio that audior1 synthesises itself:

  1. data   — the procedural acoustic-reasoning suite, three families (noise colour, waveform timbre,
              counting beeps/clicks), train/dev/test splits
  2. init   — a fresh `demo` checkpoint in the official Step-Audio-R1 layout
  3. eval   — the untrained model on the test split (the floor)
  4. sft    — the cold start: direct answers (empty think blocks), perception captions and acoustically
              grounded reasoning chains (audio CoT), so the model can both answer directly and reason
  5. eval   — the SFT model on the same test split (greedy: it mostly answers without reasoning)
  6. rl     — GRPO with the paper's audio reward 0.8·correct + 0.2·format: the model learns to reason first
  7. eval   — the RL model on the same test split
  8. ask    — one test question, answered (with its reasoning) by the final model

Every stage is an ordinary `audior1` command, printed before it runs, so each line can be copied and run
(or changed) by hand. `--steps`/`--rl-steps` trade time for accuracy (docs/results.md has the full runs).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

TASKS = ("noise_colour", "timbre", "count_events")
# Room for a reasoning chain (the synthetic chains are 40–120 tokens) and the answer.
MAX_TOKENS = 160


def _run(argv: list[str]) -> None:
    from audior1.cli import main

    print(f"\n$ audior1 {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    code = main(argv)
    if code:
        raise SystemExit(f"quickstart: `audior1 {' '.join(argv[:2])}` failed with status {code}")
    print(f"[{' '.join(argv[:2])} took {time.perf_counter() - start:.1f} s]", flush=True)


def _first_test_item(manifest: Path) -> dict:
    from audior1.data.manifest import read_manifest

    return next(item for item in read_manifest(manifest) if item.get("choices"))


def _shown(path: str) -> str:
    """The path as a user would type it: relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def _scores(run_dir: Path) -> tuple[float, float, float]:
    """(accuracy, share of answers with a non-empty reasoning chain, mean audio reward) of one eval run; the
    reward is the RL registry's own `audio` function on the run's raw outputs."""
    from audior1.train.rewards import audio_reward, format_reward

    summary = json.loads((run_dir / "summary.json").read_text())
    accuracy = summary["metrics"][summary["primary"]]["pass@1"]
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines() if line]
    raws = [r["raw"] for r in rows]
    n = max(1, len(rows))
    reward = audio_reward(raws, answer=[r["reference"] for r in rows], choices=[r["options"] for r in rows])
    return accuracy, sum(format_reward(raws)) / n, sum(reward) / n


def run(out: Path, *, seed: int = 0, steps: int = 1500, rl_steps: int = 20, n_per_task: int = 200,
        eval_items: int = 0, max_tokens: int = MAX_TOKENS) -> None:
    """eval_items 0 evaluates the whole test split (the manifest is ordered by task, so a prefix would
    cover only the first families). rl_steps 0 skips the RL stage."""
    import torch

    # One thread: the demo model is small, so per-op overhead dominates, and on a shared 2-core machine two
    # threads stall whenever the other core is busy (measured 10-100x slower steps; docs/serving.md).
    torch.set_num_threads(1)
    start = time.perf_counter()
    out = Path(out)
    data, init, sft, rl = out / "data", out / "demo-init", out / "demo-sft", out / "demo-grpo"
    stages = f"SFT ({steps} steps)" + (f" → eval → GRPO ({rl_steps} steps)" if rl_steps else "")
    print(f"audior1 quickstart: data → init → eval → {stages} → eval → ask, in {out}/")

    _run(["data", "synth", "--out", str(data), "--split", "all", "--n-per-task", str(n_per_task),
          "--seed", str(seed), "--tasks", *TASKS])
    _run(["init", "--preset", "demo", str(init), "--seed", str(seed)])
    test = data / "synth-test.jsonl"
    eval_args = ["--bench", "synthetic", "--data", str(test), "--temperature", "0", "--max-tokens", str(max_tokens),
                 *(["--limit", str(eval_items)] if eval_items else [])]
    _run(["eval", *eval_args, "--model", str(init), "--out", str(out / "eval-init")])
    _run(["train", "sft", "--config", str(_sft_config(out, data, init, sft, seed, steps, max_tokens)), "progress=false"])
    final = sft / "checkpoints" / f"step-{steps:06d}"
    _run(["eval", *eval_args, "--model", str(final), "--out", str(out / "eval-sft")])
    evals = [("untrained", out / "eval-init"), (f"{steps} SFT steps", out / "eval-sft")]
    if rl_steps:
        _run(["train", "rl", "--algo", "grpo", "--config", str(_rl_config(out, data, final, rl, seed, rl_steps, max_tokens)),
              "progress=false"])
        final = rl / "checkpoints" / f"step-{rl_steps:06d}"
        _run(["eval", *eval_args, "--model", str(final), "--out", str(out / "eval-grpo")])
        evals.append((f"{rl_steps} GRPO steps", out / "eval-grpo"))

    item = _first_test_item(test)
    choices = [arg for choice in item["choices"] for arg in ("--choice", choice)]
    _run(["ask", "--model", str(final), _shown(item["audio"][0]), item["question"], *choices, "--temperature", "0",
          "--max-tokens", str(max_tokens)])
    print(f"\n(reference answer: {item['answer']})")

    print(f"\ntest split ({', '.join(TASKS)}), greedy:")
    for name, run_dir in evals:
        accuracy, reasoning, reward = _scores(run_dir)
        print(f"  {name:>16}: accuracy {accuracy:6.1%}, reasons before answering {reasoning:6.1%}, "
              f"audio reward {reward:.3f}")
    print(f"({time.perf_counter() - start:.0f} s in all). Model: {final}")


def _sft_config(out: Path, data: Path, init: Path, sft: Path, seed: int, steps: int, max_tokens: int) -> Path:
    """configs/sft-demo.yaml (docs/results.md's SFT demonstration), shortened to `steps`."""
    train = str(data / "synth-train.jsonl")
    cfg = {
        "model": str(init), "out_dir": str(sft), "seed": seed,
        "data": [{"manifest": train, "kind": "direct", "weight": 1.0},
                 {"manifest": train, "kind": "caption", "weight": 0.3},
                 {"manifest": train, "kind": "audio_cot", "weight": 0.5, "reasoning_field": "text_cot"}],
        "dev_manifest": str(data / "synth-dev.jsonl"),
        # A random frozen encoder makes the model ignore the audio, so at this scale the encoder trains too
        # (MGRD freezes a pretrained one); the audio path gets 0.3× the learning rate (docs/results.md).
        "trainable": ["encoder", "adapter", "decoder"], "dtype": "float32",
        "max_steps": steps, "batch_size": 8, "micro_batch_size": 8, "max_seq_len": 256, "packing": True,
        "feature_cache": None, "mel_memory": True,
        "optim": {"lr": 1.5e-3, "weight_decay": 0.01, "warmup_steps": min(100, steps // 6), "min_lr_ratio": 0.05,
                  "grad_clip": 1.0, "lr_scale": {"encoder": 0.3, "adapter": 0.3, "decoder": 1.0}},
        "eval_every": steps, "eval_items": 150, "eval_max_tokens": max_tokens, "save_every": steps,
        "log_every": 50, "threads": 1,
    }
    return _write(out / "sft-quickstart.yaml", cfg)


def _rl_config(out: Path, data: Path, start: Path, rl: Path, seed: int, steps: int, max_tokens: int) -> Path:
    """configs/rl-grpo-demo.yaml (docs/results.md's RL demonstration), shortened to `steps`; prompts from the
    train split, held-out reward on 150 dev items."""
    cfg = {
        "model": str(start), "out_dir": str(rl), "seed": seed, "algo": "grpo",
        "prompts": [{"manifest": str(data / "synth-train.jsonl"), "kind": "audio", "reward": "audio"}],
        "eval_manifest": str(data / "synth-dev.jsonl"), "eval_items": 150, "eval_every": 0,
        "max_steps": steps, "prompts_per_step": 16, "samples_per_prompt": 8, "temperature": 1.0,
        "max_new_tokens": max_tokens, "epochs": 1, "minibatches": 2, "micro_batch_size": 64,
        "optim": {"lr": 1e-4, "warmup_steps": 3, "min_lr_ratio": 1.0, "grad_clip": 1.0},
        # The encoder is frozen again (as in MGRD): its outputs come from the feature cache, encoded once.
        "trainable": ["adapter", "decoder"], "feature_cache": str(out / "feature-cache"),
        "save_every": steps, "log_every": 5, "threads": 1,
    }
    return _write(out / "rl-quickstart.yaml", cfg)


def _write(path: Path, cfg: dict) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
