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
    return [json.loads((d / "stage.json").read_text()) for d in sorted(stages.iterdir()) if (d / "stage.json").is_file()]


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def write_report(run: Path) -> Path:
    records = _records(run)
    evals = [r for r in records if re.search(r"-eval\d+-(think|no-think)$", r["name"]) and r.get("finished")]
    rounds: dict[str, dict] = {}
    for r in evals:
        m = re.search(r"eval(\d+)-(think|no-think)$", r["name"])
        rounds.setdefault(m[1], {})[m[2]] = r["counts"]
    lines = [f"# MGRD run {run}", "", "## Test accuracy after each round (greedy)", "",
             "| round | thinking | not thinking | reasoning tokens (thinking) |", "|---|---|---|---|"]
    for t, modes in sorted(rounds.items(), key=lambda kv: int(kv[0])):
        th, no = modes.get("think", {}), modes.get("no-think", {})
        name = "cold start" if t == "0" else f"iteration {t}"
        rt = th.get("reasoning_tokens")
        lines.append(f"| {name} | {_pct(th.get('accuracy'))} | {_pct(no.get('accuracy'))} | "
                     f"{'—' if rt is None else f'{rt:.0f}'} |")
    keys = sorted({k for modes in rounds.values() for c in modes.values() for k in (c.get("breakdown") or {})})
    if keys:
        lines += ["", "Per task:question_type (thinking / not thinking):", "",
                  "| question type | " + " | ".join(f"round {t}" for t in sorted(rounds, key=int)) + " |",
                  "|---|" + "---|" * len(rounds)]
        for k in keys:
            cells = [f"{_pct(rounds[t].get('think', {}).get('breakdown', {}).get(k))} / "
                     f"{_pct(rounds[t].get('no-think', {}).get('breakdown', {}).get(k))}" for t in sorted(rounds, key=int)]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    filters = [r for r in records if r["name"].endswith("-filter") and r.get("finished")]
    if filters:
        lines += ["", "## Filter (grounded self-distillation)", "",
                  "| iteration | samples | kept | keep-rate | items with a kept chain | drop reasons |", "|---|---|---|---|---|---|"]
        for r in filters:
            c = r["counts"]
            reasons = ", ".join(f"{k} {v}" for k, v in c.get("reasons", {}).items() if v)
            lines.append(f"| {r['name']} | {c.get('samples')} | {c.get('kept')} | {_pct(c.get('keep_rate'))}% | "
                         f"{c.get('items_with_a_kept_chain')} / {c.get('items')} | {reasons} |")
    passks = [r for r in records if r["name"].endswith("-passk") and r.get("finished")]
    if passks:
        lines += ["", "## pass@k curation", "", "| iteration | items | histogram (correct → questions) | band | "
                  "selected |", "|---|---|---|---|---|"]
        for r in passks:
            c = r["counts"]
            lines.append(f"| {r['name']} | {c.get('items')} | {c.get('histogram')} | {c.get('band')} | "
                         f"{c.get('selected')} |")
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
