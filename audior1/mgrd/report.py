"""`audior1 mgrd report RUN`: one page across the run's iterations, from the stages' own records.

Reads RUN/stages/*/stage.json (and the eval runs' summary.json); writes RUN/report.md and RUN/accuracy.png:
test accuracy thinking vs not thinking after each round (overall and per task:question_type), reasoning
length, the filter's keep-rate and drop reasons, the pass@k histograms, and wall time per stage.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from audior1.mgrd.run import STAGES_DIR


def _records(run: Path) -> list[dict]:
    stages = run / STAGES_DIR
    if not stages.is_dir():
        raise FileNotFoundError(f"{run}: no {STAGES_DIR}/ folder: not an MGRD run directory")
    return [json.loads((d / "stage.json").read_text()) for d in sorted(stages.iterdir())
            if (d / "stage.json").is_file()]


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def write_report(run: Path) -> Path:
    records = _records(run)
    evals = [r for r in records if re.search(r"-eval\d+-(think|no-think|sampled|grounding|selfcog)$", r["name"])
             and r.get("finished")]
    rounds: dict[str, dict] = {}
    for r in evals:
        m = re.search(r"eval(\d+)-(think|no-think|sampled|grounding|selfcog)$", r["name"])
        rounds.setdefault(m[1], {})[m[2]] = r["counts"]
    lines = [f"# MGRD run {run}", "", "## Test accuracy after each round (greedy)", "",
             "| round | thinking | not thinking | reasoning tokens (thinking) |", "|---|---|---|---|"]
    for t, modes in sorted(rounds.items(), key=lambda kv: int(kv[0])):
        th, no = modes.get("think", {}), modes.get("no-think", {})
        name = "cold start" if t == "0" else f"iteration {t}"
        rt = th.get("reasoning_tokens")
        lines.append(f"| {name} | {_pct(th.get('accuracy'))} | {_pct(no.get('accuracy'))} | "
                     f"{'—' if rt is None else f'{rt:.0f}'} |")
    if any("sampled" in modes or "selfcog" in modes for modes in rounds.values()):
        lines += ["", "Sampled (thinking), the grounding filter on those samples, and self-cognition:", "",
                  "| round | sampled pass@1 (mean of k) | majority@k | own chains kept by the filter | grounding score "
                  "| self-cognition errors |", "|---|---|---|---|---|---|"]
        for t, modes in sorted(rounds.items(), key=lambda kv: int(kv[0])):
            sm, sc, gr = modes.get("sampled", {}), modes.get("selfcog", {}), modes.get("grounding", {})
            k = sm.get("k")
            errors = f"{sc['refusals']}/{sc['prompts']} ({_pct(sc.get('rate'))}%)" if sc else "—"
            kept = f"{gr['kept']}/{gr['samples']} ({_pct(gr.get('keep_rate'))}%)" if gr else "—"
            score = "—" if gr.get("grounding_score") is None else f"{gr['grounding_score']:.3f}"
            sampled = f"{_pct(sm.get('accuracy'))} | {_pct(sm.get(f'majority@{k}'))} (k = {k})" if sm else "— | —"
            lines.append(f"| {t} | {sampled} | {kept} | {score} | {errors} |")
    keys = sorted({k for modes in rounds.values() for m, c in modes.items() if m in ("think", "no-think")
                   for k in (c.get("breakdown") or {})})
    if keys:
        lines += ["", "Per task:question_type (thinking / not thinking):", "",
                  "| question type | " + " | ".join(f"round {t}" for t in sorted(rounds, key=int)) + " |",
                  "|---|" + "---|" * len(rounds)]
        for k in keys:
            cells = [f"{_pct(rounds[t].get('think', {}).get('breakdown', {}).get(k))} / "
                     f"{_pct(rounds[t].get('no-think', {}).get('breakdown', {}).get(k))}"
                     for t in sorted(rounds, key=int)]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    filters = [r for r in records if r["name"].endswith("-filter") and r.get("finished")]
    if filters:
        lines += ["", "## Filter (grounded self-distillation)", "",
                  "| iteration | samples | kept | keep-rate | grounding score | items with a kept chain "
                  "| drop reasons |",
                  "|---|---|---|---|---|---|---|"]
        for r in filters:
            c = r["counts"]
            reasons = ", ".join(f"{k} {v}" for k, v in c.get("reasons", {}).items() if v)
            score = c.get("grounding_score")
            lines.append(f"| {r['name']} | {c.get('samples')} | {c.get('kept')} | {_pct(c.get('keep_rate'))}% | "
                         f"{'—' if score is None else f'{score:.3f}'} | {c.get('items_with_a_kept_chain')} / "
                         f"{c.get('items')} | {reasons} |")
    passks = [r for r in records if r["name"].endswith("-passk") and r.get("finished")]
    if passks:
        lines += ["", "## pass@k curation", "", "| iteration | items | histogram (correct → questions) | band | "
                  "selected |", "|---|---|---|---|---|"]
        for r in passks:
            c = r["counts"]
            lines.append(f"| {r['name']} | {c.get('items')} | {c.get('histogram')} | {c.get('band')} | "
                         f"{c.get('selected')} |")
    lines += _rl_lines(run, [r for r in records if re.search(r"-(rl|text_rl)$", r["name"]) and r.get("finished")])
    lines += ["", "## Stages", "", "| stage | wall (s) | command |", "|---|---|---|"]
    for r in records:
        wall = r.get("wall_s")
        lines.append(f"| {r['name']} | {'(unfinished)' if wall is None else f'{wall:.0f}'} | `{r['command']}` |")
    total = sum(r.get("wall_s") or 0 for r in records)
    lines += ["", f"Total wall time: {total:.0f} s."]
    if rounds:
        _plot(rounds, run / "accuracy.png")
        lines += ["", "![accuracy](accuracy.png)"]
    out = run / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _rl_lines(run: Path, records: list[dict]) -> list[str]:
    """Rollout reward, accuracy and reasoning length at the first and last step of each RL stage."""
    from audior1.train.logging import read_metrics

    rows = []
    for r in records:
        path = run / STAGES_DIR / r["name"] / "metrics.jsonl"
        steps = [m for m in read_metrics(path) if m["kind"] == "train"] if path.is_file() else []
        if not steps:
            rows.append(f"| {r['name']} | {r.get('skipped', 'no steps logged')} | | | |")
            continue
        a, b = steps[0], steps[-1]
        fmt = lambda m, k: "—" if m.get(k) is None else f"{m[k]:.3f}"  # noqa: E731
        rt = lambda m: (m.get("reasoning_tokens") or {}).get("mean") if isinstance(m.get("reasoning_tokens"), dict) \
            else m.get("reasoning_tokens")  # noqa: E731
        tokens = " → ".join("—" if rt(m) is None else f"{rt(m):.0f}" for m in (a, b))
        rows.append(f"| {r['name']} | {len(steps)} | {fmt(a, 'reward')} → {fmt(b, 'reward')} | "
                    f"{fmt(a, 'accuracy')} → {fmt(b, 'accuracy')} | {tokens} |")
    if not rows:
        return []
    return ["", "## RL (rollouts, first → last logged step)", "",
            "| stage | steps logged | reward | accuracy | reasoning tokens |", "|---|---|---|---|---|", *rows]


def _plot(rounds: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = sorted(rounds, key=int)
    fig, ax = plt.subplots(figsize=(5, 3))
    for mode, style in (("think", "o-"), ("no-think", "s--")):
        ys = [rounds[t].get(mode, {}).get("accuracy") for t in ts]
        if any(y is not None for y in ys):
            ax.plot([int(t) for t in ts], [None if y is None else 100 * y for y in ys], style, label=mode)
    ax.set_xlabel("round (0: cold start)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks([int(t) for t in ts])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
