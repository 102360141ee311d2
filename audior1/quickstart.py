"""`audior1 quickstart`: the built-in end-to-end run behind the README's first command — MGRD's short form.

From nothing to a model that has been through one round of Modality-Grounded Reasoning Distillation, on a
2-core laptop in about a quarter of an hour, using only audio that audior1 synthesises itself:

  1. data       — the procedural acoustic-reasoning suite, three families (noise colour, waveform timbre,
                  counting beeps/clicks), train/dev/test splits; one question type (`HELD_OUT`) is held out of
                  direct audio supervision: the model learns its perception from the family's other question
                  type and its logic from text reasoning
  2. cold start — a fresh `demo` checkpoint trained on direct answers (prompted as not thinking), captions,
                  acoustically grounded reasoning chains (audio CoT) and text CoT
  3. evaluate   — greedy, thinking and not thinking, on the test split: "before"
  4. MGRD round — select questions → sample K chains → grounding filter (correct, borne out by the clip,
                  coherent, no transcript/announcement surrogate, no refusal) → distil the kept chains (with a
                  replay of direct answers) → DPO → pass@k band → GRPO with the paper's reward
  5. evaluate   — the same test items: "after", then one table (seen / held-out, thinking / not thinking,
                  before / after) and one chain before and after on the same item

It is an ordinary `audior1 mgrd run` plan (docs/mgrd.md): every stage is an `audior1` command printed before it
runs, the plan is written to OUT/mgrd.yaml, and `--resume` continues an interrupted run. The table reports what
happens, whatever it is: at this scale the round does not yet make thinking beat answering directly
(docs/reproduction.md tests the paper's claims with seeds and intervals).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

TASKS = ("noise_colour", "timbre", "count_events")
HELD_OUT = ("count_events:count_numeric",)  # learnt from count_mc's audio and text CoT, never answered directly
MAX_TOKENS = 160  # room for a reasoning chain (the synthetic chains are 40-120 tokens) and the answer


def config(out: Path, *, seed: int = 0, steps: int = 1500, rounds: int = 1, rl_steps: int = 10,
           n_per_task: int = 200, eval_items: int = 0, max_tokens: int = MAX_TOKENS) -> dict:
    """The MGRD plan: configs/mgrd-demo.yaml's recipe with the reproduction's cold start (direct answers
    prompted as not thinking, so that thinking prompts get chains) and its distillation (direct answers replayed
    beside the kept chains), one round."""
    small = lambda n: max(1, min(n, steps // 10))  # noqa: E731  (tiny --steps in tests)
    train = lambda **kw: {"trainable": ["adapter", "decoder"], "batch_size": 8, "micro_batch_size": 8,  # noqa: E731
                          "max_seq_len": 256, "eval_every": 0, "threads": 1, **kw}
    return {
        "out_dir": str(out), "init_preset": "demo", "seed": seed,
        "data": {"tasks": list(TASKS), "n_per_task": n_per_task, "seed": seed},
        "held_out": list(HELD_OUT),
        "cold_start": {
            "data": [{"manifest": "train", "kind": "direct", "weight": 1.0, "no_think_prompt": True},
                     {"manifest": "train", "kind": "caption", "weight": 0.3, "no_think_prompt": True},
                     {"manifest": "train", "kind": "audio_cot", "weight": 0.5, "reasoning_field": "text_cot"},
                     {"manifest": "train", "kind": "text_cot", "weight": 0.5}],
            # a random frozen encoder makes the model ignore the audio, so at this scale the encoder trains too
            # (the audio path at 0.3x the learning rate; docs/results.md)
            **train(trainable=["encoder", "adapter", "decoder"], max_steps=steps, save_every=steps, log_every=100),
            "dtype": "float32", "feature_cache": None, "mel_memory": True,
            "optim": {"lr": 1.5e-3, "weight_decay": 0.01, "warmup_steps": small(100), "min_lr_ratio": 0.05,
                      "grad_clip": 1.0, "lr_scale": {"encoder": 0.3, "adapter": 0.3, "decoder": 1.0}}},
        "text_rl": {"skip": True},  # the suite's text renderings are solved by the cold start's text CoT
        "iterations": rounds,
        "select": {"limit": 128},
        "sample": {"k": 8, "temperature": 0.7, "max_tokens": max_tokens},
        "filter_source": "meta",
        "distill": {"data": [{"manifest": "train", "kind": "text_cot", "weight": 0.5},
                             {"manifest": "train", "kind": "direct", "weight": 0.5, "no_think_prompt": True}],
                    **train(max_steps=small(150), save_every=small(150), log_every=50),
                    "optim": {"lr": 3.0e-4, "warmup_steps": small(10), "min_lr_ratio": 0.1, "grad_clip": 1.0}},
        "dpo": {"skip": False, "beta": 0.1, **train(max_steps=small(20), save_every=small(20), log_every=5,
                                                    micro_batch_size=4),
                "optim": {"lr": 2.0e-5, "warmup_steps": 2, "min_lr_ratio": 1.0, "grad_clip": 1.0}},
        "passk": {"k": 8, "band": [3, 6], "temperature": 1.0, "limit": 32},
        "rl": {"skip": not rl_steps, "algo": "grpo", "max_steps": max(rl_steps, 1), "prompts_per_step": 8,
               "samples_per_prompt": 8, "temperature": 1.0, "max_new_tokens": max_tokens, "epochs": 1,
               "minibatches": 2, "micro_batch_size": 64, "trainable": ["adapter", "decoder"], "eval_every": 0,
               "save_every": max(rl_steps, 1), "log_every": 5, "threads": 1,
               "optim": {"lr": 1.0e-4, "warmup_steps": 3, "min_lr_ratio": 1.0, "grad_clip": 1.0}},
        "eval": {"limit": eval_items or None, "max_tokens": max_tokens},
    }


def run(out: Path, *, resume: bool = False, **options) -> None:
    """Plan and run the short form (see `config` for the options), then print the before/after table."""
    import torch
    import yaml

    from audior1.mgrd import run as loop
    from audior1.mgrd.config import MGRDConfig
    from audior1.train.config import from_dict

    # One thread: the demo model is small, so per-op overhead dominates, and on a shared 2-core machine two
    # threads stall whenever the other core is busy (measured 10-100x slower steps; docs/serving.md).
    torch.set_num_threads(1)
    start = time.perf_counter()
    out = Path(out)
    raw = config(out, **options)
    cfg = from_dict(MGRDConfig, raw, "quickstart").validate()
    out.mkdir(parents=True, exist_ok=True)
    (out / "mgrd.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    print(f"audior1 quickstart: data → cold start → evaluate → {cfg.iterations} MGRD round(s) → evaluate, in {out}/ "
          f"(the plan: {out / 'mgrd.yaml'}; the same as `audior1 mgrd run --config {out / 'mgrd.yaml'}`)", flush=True)
    loop.run(cfg, resume=resume)
    print("\n" + "\n".join(summary(out, list(HELD_OUT))))
    planner = loop.Planner(cfg)
    planner.plan()
    print(f"\n({time.perf_counter() - start:.0f} s in all). Model: {planner.model}")


def summary(run_dir: Path, held_out: list[str]) -> list[str]:
    """Greedy test accuracy before (the cold start) and after the last round, seen and held-out question types,
    thinking and not; what the grounding filter kept; one chain before and after on the same item."""
    from audior1.mgrd.verdicts import chain_before_after, eval_items, last_round, stage_dirs

    dirs = stage_dirs(run_dir)
    T = last_round(dirs)
    rows = {(t, mode): eval_items(dirs[f"eval{t}-{mode}"]) for t in (0, T) for mode in ("think", "no-think")}
    items = rows[(0, "think")]
    held = {i for i, r in items.items() if f"{r.task}:{r.qtype}" in held_out}
    groups = {"seen": set(items) - held, "held-out": held}

    def acc(t: int, mode: str, group: str) -> str:
        vals = [r.correct for i, r in rows[(t, mode)].items() if i in groups[group]]
        return f"{100 * sum(vals) / len(vals):5.1f}" if vals else "    —"

    lines = [f"test split ({', '.join(TASKS)}; {len(groups['seen'])} seen items, {len(held)} held-out = "
             f"{', '.join(held_out)}), greedy accuracy %:", "",
             "| model | seen, thinking | seen, not thinking | held-out, thinking | held-out, not thinking | "
             "reasoning tokens |", "|---|---|---|---|---|---|"]
    for t, name in ((0, "before: cold start"), (T, f"after: MGRD round {T}")):
        tokens = [r.tokens for r in rows[(t, "think")].values()]
        lines.append(f"| {name} | {acc(t, 'think', 'seen')} | {acc(t, 'no-think', 'seen')} | "
                     f"{acc(t, 'think', 'held-out')} | {acc(t, 'no-think', 'held-out')} | "
                     f"{sum(tokens) / max(1, len(tokens)):.0f} |")
    for t in range(1, T + 1):
        if f"iter{t}-filter" in dirs:
            s = json.loads((dirs[f"iter{t}-filter"] / "summary.json").read_text())
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items(), key=lambda kv: -kv[1]) if v)
            lines.append(f"\nround {t}: the grounding filter kept {s['kept']} of {s['samples']} sampled chains "
                         f"({100 * s['keep_rate']:.1f}%); dropped for: {reasons}")
    example = chain_before_after(rows[(0, "think")], rows[(T, "think")], held_out, f"After round {T}")
    if example:
        lines += ["", f"One chain before and after ({example[0]}):", *example[1:]]
    return lines
