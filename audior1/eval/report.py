"""Summaries, markdown tables, plots and run comparison, all computed from the predictions file.

Design choices:
- pass@1 is the mean over items of the mean over an item's k samples; majority@k scores, per item, the
  sample whose answer key (`bench.answer_key`) is most frequent (ties: the earliest). k = 1 → the same.
- Every expected (item, sample) without a usable prediction (never generated, request failed) counts as
  wrong and is reported as `no_prediction`; unparseable outputs (no `</think>`) are wrong and reported.
  Only a scorer's own `None` (MMSU official's unparsed letter) or a scorer that does not apply to an item
  (token sets on a numeric item) leaves the denominator, and is counted as excluded.
- A breakdown field may join record fields with ":" ("task:question_type"): its groups are the value
  combinations ("count_events:count_mc"), for names that are only unique together (question types are named
  within a task, and `count_mc` belongs to three).
- The headline table says what each column is (the benchmark's `COLUMNS`, recorded in run.json): a benchmark
  script's own verdict (`official…`) or our reading, so a reader never takes one for the other.
- Fractions in JSON, percentages with one decimal in tables. Plots use matplotlib's Agg backend, imported
  only when a plot is drawn.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from types import ModuleType

from audior1.eval.items import EvalItem


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _sample_value(record: dict | None, scorer: str) -> float | None:
    if record is None or record.get("error"):
        return 0.0
    return record["scores"].get(scorer)  # absent: the scorer does not apply (token sets on a numeric item)


def _metrics(bench: ModuleType, items: list[EvalItem], samples: dict[str, list[dict | None]], k: int) -> dict:
    out = {}
    for scorer in bench.SCORERS:
        per_item, dropped_samples = [], 0
        for item in items:
            values = [_sample_value(r, scorer) for r in samples[item.id]]
            dropped_samples += sum(v is None for v in values)
            per_item.append(_mean([v for v in values if v is not None]))
        kept = [v for v in per_item if v is not None]
        m = {"pass@1": _mean(kept), "n": len(kept), "excluded": len(per_item) - len(kept),
             "excluded_samples": dropped_samples}
        if k > 1:
            votes = []
            for item in items:
                v = _sample_value(_majority(bench, item, samples[item.id]), scorer)
                if v is not None:
                    votes.append(v)
            m[f"majority@{k}"] = _mean(votes)
        out[scorer] = m
    return out


def _majority(bench: ModuleType, item: EvalItem, records: list[dict | None]) -> dict | None:
    usable = [r for r in records if r is not None and not r.get("error")]
    keyed = [(bench.answer_key(item, r["answer"]), r) for r in usable]
    counts = Counter(key for key, _ in keyed if key is not None)
    if not counts:
        return usable[0] if usable else None
    best = max(counts.values())
    return next(r for key, r in keyed if key is not None and counts[key] == best)


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    s = sorted(values)
    return {"n": len(s), "mean": round(statistics.fmean(s), 1), "median": statistics.median(s),
            "p90": s[min(len(s) - 1, int(0.9 * len(s)))], "max": s[-1]}


def breakdown_value(item: EvalItem, field: str) -> str:
    """An item's group for a breakdown field: the record field's value, or for "a:b" the values of a and b
    joined by ":" ("unknown" when the item has none of them)."""
    values = [item.fields.get(f) for f in field.split(":")]
    if all(v is None for v in values):
        return "unknown"
    return ":".join("unknown" if v is None else v for v in values)


def summarize(bench: ModuleType, items: list[EvalItem], records: list[dict], config: dict) -> dict:
    k = config["sampling"]["n"]
    by_key = {(r["id"], r["sample"]): r for r in records}
    samples = {item.id: [by_key.get((item.id, s)) for s in range(k)] for item in items}
    present = [r for rs in samples.values() for r in rs if r is not None]
    ok = [r for r in present if not r.get("error")]
    breakdown = {}
    for field in bench.BREAKDOWN:
        groups: dict[str, list[EvalItem]] = {}
        for item in items:
            groups.setdefault(breakdown_value(item, field), []).append(item)
        if set(groups) != {"unknown"}:
            breakdown[field] = {value: _metrics(bench, group, samples, k) for value, group in sorted(groups.items())}
    reasoning = [r["reasoning_tokens"] for r in ok if r.get("reasoning_tokens") is not None]
    correct = [r for r in ok if r["scores"].get(bench.SCORERS[0])]
    return {
        **{key: v for key, v in config.items()},
        "primary": bench.SCORERS[0],
        "metric": getattr(bench, "METRIC", "accuracy"),
        "breakdown_fields": list(bench.BREAKDOWN),
        "counts": {
            "items": len(items), "samples_per_item": k, "expected": len(items) * k, "predictions": len(ok),
            "no_prediction": len(items) * k - len(ok), "request_errors": len(present) - len(ok),
            "unparseable": sum(not r["parseable"] for r in ok),
            "multiple_think_close": sum(r["n_think_close"] > 1 for r in ok),
            "forced_close": sum(bool(r.get("forced_close")) for r in ok),
            "finish_length": sum(r.get("finish_reason") == "length" for r in ok),
            "judge_invalid": sum((r.get("details") or {}).get("judge_invalid", 0) for r in ok),
        },
        "metrics": _metrics(bench, items, samples, k),
        "breakdown": breakdown,
        "reasoning_tokens": _stats(reasoning) | {
            "estimated": any(r.get("reasoning_tokens_estimated") for r in ok),
            "mean_when_correct": _mean([r["reasoning_tokens"] for r in correct
                                        if r.get("reasoning_tokens") is not None])},
        "reasoning_chars": _stats([len(r.get("reasoning") or "") for r in ok]),
        "tokens": {"prompt": sum(r.get("prompt_tokens") or 0 for r in ok),
                   "completion": sum(r.get("completion_tokens") or 0 for r in ok)},
        "latency_s": _stats([r["latency_s"] for r in ok]),
    }


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def official_note(scorers: list[str]) -> str:
    """The headline's key: which columns are a benchmark script's verdict and which are ours."""
    if any(s.startswith("official") for s in scorers):
        return ("Columns named official… are a benchmark script's own verdict on the post-think answer exactly as "
                "written; the others are our readings (docs/eval.md, \"Official columns\").")
    return ("No column here is an official script's verdict: all are our readings (docs/eval.md, "
            "\"Official columns\").")


def markdown(summary: dict) -> str:
    model = summary["model"]
    who = model.get("served_model") or model.get("path") or model.get("model_dir") or "?"
    k = summary["counts"]["samples_per_item"]
    budget = summary["sampling"].get("think_budget")
    lines = [f"# {summary['benchmark']} — {who} ({summary['sampling']['mode']}"
             + (f", think budget {budget}" if budget is not None else "") + ")", ""]
    metric = summary.get("metric", "accuracy")
    columns = summary.get("columns") or {}              # absent in summaries written before it was recorded
    head = ["scorer", "pass@1" + ("" if metric == "accuracy" else f" ({metric})"), "n", "excluded", "what it is"]
    if k > 1:
        head.insert(2, f"majority@{k}")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scorer, m in summary["metrics"].items():
        row = [scorer + (" (primary)" if scorer == summary["primary"] else ""), pct(m["pass@1"]), str(m["n"]),
               str(m["excluded"]), columns.get(scorer, "").replace("|", "/")]
        if k > 1:
            row.insert(2, pct(m.get(f"majority@{k}")))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", official_note(list(summary["metrics"]))]
    c, rt = summary["counts"], summary["reasoning_tokens"]
    lines += ["", f"Items {c['items']} × {k} sample(s); no prediction (counted wrong) {c['no_prediction']}; "
                  f"unparseable (no `</think>`, counted wrong) {c['unparseable']}; more than one `</think>` "
                  f"{c['multiple_think_close']}; hit max tokens {c['finish_length']}"
              + (f"; judge replies unreadable {c['judge_invalid']}" if summary.get("judge") else "") + "."]
    if rt.get("n"):
        lines.append(f"Reasoning tokens{' (estimated)' if rt.get('estimated') else ''}: mean {rt['mean']}, "
                     f"median {rt['median']}, p90 {rt['p90']}, max {rt['max']}.")
    ds = summary.get("dataset_revision") or (summary.get("dataset_sha256") or "")[:12]
    extractors = ", ".join(f"{k} v{v}" for k, v in summary["extractors"].items())
    lines.append(f"Extractors {extractors}; prompt sha256 {summary['template_sha256'][:12]}; "
                 f"dataset {ds}; wall time {summary.get('wall_time_total_s', 0):.1f} s.")
    if summary.get("judge"):
        j = summary["judge"]
        lines.append(f"Judge {j['model']} ({j['runs']} run(s), T={j['temperature']}, prompt sha256 "
                     f"{j['prompt_sha256'][:12]}).")
    scorers = list(summary["metrics"])
    for field, groups in summary["breakdown"].items():
        lines += ["", f"## {field}", "", "| " + " | ".join([field, "n", *scorers]) + " |",
                  "|" + "---|" * (2 + len(scorers))]
        for value, metrics in groups.items():
            n = max(m["n"] + m["excluded"] for m in metrics.values())
            lines.append("| " + " | ".join([value, str(n), *[pct(metrics[s]["pass@1"]) for s in scorers]]) + " |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_categories(summary: dict, path: str | Path) -> Path | None:
    """Horizontal bars of the primary scorer for every breakdown field."""
    fields = [f for f, g in summary["breakdown"].items() if g]
    if not fields:
        return None
    plt = _pyplot()
    primary = summary["primary"]
    heights = [max(1.2, 0.32 * len(summary["breakdown"][f]) + 0.8) for f in fields]
    fig, axes = plt.subplots(len(fields), 1, figsize=(7, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, field in zip(axes[:, 0], fields):
        groups = summary["breakdown"][field]
        names = list(groups)
        values = [100 * (groups[v][primary]["pass@1"] or 0) for v in names]
        ax.barh(names, values, color="#4472c4")
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.set_title(f"{summary['benchmark']}: {primary} by {field}", fontsize=10)
        for y, v in enumerate(values):
            ax.text(min(v + 1, 92), y, f"{v:.1f}", va="center", fontsize=8)
    axes[-1, 0].set_xlabel("%")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write(summary: dict, out: str | Path, *, plots: bool = True) -> None:
    out = Path(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    (out / "report.md").write_text(markdown(summary))
    if plots:
        plot_categories(summary, out / "per_category.png")


# ---------------------------------------------------------------------------------------------------------
# Test-time scaling (think budgets)
# ---------------------------------------------------------------------------------------------------------


def scaling_point(summary: dict, label: str) -> dict:
    m = summary["metrics"][summary["primary"]]
    return {"budget": label, "mode": summary["sampling"]["mode"], "accuracy": m["pass@1"],
            "mean_reasoning_tokens": summary["reasoning_tokens"].get("mean", 0.0),
            "unparseable": summary["counts"]["unparseable"], "forced_close": summary["counts"]["forced_close"]}


def scaling_markdown(scaling: dict) -> str:
    lines = [f"# {scaling['benchmark']}: accuracy ({scaling['primary']}) vs think budget", "",
             "| budget | mode | accuracy | mean reasoning tokens | forced close | unparseable |",
             "|---|---|---|---|---|---|"]
    for p in scaling["points"]:
        lines.append(f"| {p['budget']} | {p['mode']} | {pct(p['accuracy'])} | {p['mean_reasoning_tokens']} | "
                     f"{p['forced_close']} | {p['unparseable']} |")
    return "\n".join(lines) + "\n"


def write_scaling(scaling: dict, out: str | Path, *, plots: bool = True) -> None:
    out = Path(out)
    (out / "scaling.json").write_text(json.dumps(scaling, indent=2))
    (out / "scaling.md").write_text(scaling_markdown(scaling))
    if plots:
        plt = _pyplot()
        pts = scaling["points"]
        xs = [p["mean_reasoning_tokens"] or 0 for p in pts]
        ys = [100 * (p["accuracy"] or 0) for p in pts]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(xs, ys, marker="o", color="#c0504d")
        labels: dict[tuple[float, float], list[str]] = {}
        for x, y, p in zip(xs, ys, pts):                 # points that coincide share one label
            labels.setdefault((x, y), []).append(p["budget"])
        for (x, y), names in labels.items():
            ax.annotate("budget " + ", ".join(names), (x, y), textcoords="offset points", xytext=(5, -12), fontsize=8)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("mean reasoning tokens")
        ax.set_ylabel(f"{scaling['primary']} (%)")
        ax.set_title(f"{scaling['benchmark']}: test-time scaling")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "scaling.png", dpi=100)
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------------------


def load_summary(run: str | Path) -> dict:
    path = Path(run)
    return json.loads((path / "summary.json" if path.is_dir() else path).read_text())


def compare(run_a: str | Path, run_b: str | Path) -> str:
    """Markdown: every scorer overall, then the primary scorer per breakdown value, with B − A."""
    a, b = load_summary(run_a), load_summary(run_b)
    notes = [f"- {what} differ: A {a.get(key)} / B {b.get(key)}"
             for key, what in (("benchmark", "benchmarks"), ("dataset_sha256", "dataset files"),
                               ("extractors", "extractor versions"), ("template_sha256", "prompts"))
             if a.get(key) != b.get(key)]
    lines = [f"# compare: A = {run_a}, B = {run_b}", "",
             f"A: {_who(a)}; B: {_who(b)}", ""]
    if notes:
        lines += ["Warnings:", *notes, ""]
    lines += ["| scorer | A | B | B − A |", "|---|---|---|---|"]
    for scorer in a["metrics"]:
        if scorer in b["metrics"]:
            x, y = a["metrics"][scorer]["pass@1"], b["metrics"][scorer]["pass@1"]
            lines.append(f"| {scorer} | {pct(x)} | {pct(y)} | {_diff(x, y)} |")
    lines.append(f"| unparseable | {a['counts']['unparseable']} | {b['counts']['unparseable']} | "
                 f"{b['counts']['unparseable'] - a['counts']['unparseable']:+d} |")
    ra, rb = a["reasoning_tokens"].get("mean"), b["reasoning_tokens"].get("mean")
    lines.append(f"| mean reasoning tokens | {ra} | {rb} | "
                 f"{'—' if ra is None or rb is None else f'{rb - ra:+.1f}'} |")
    primary = a["primary"]
    for field in a["breakdown"]:
        ga, gb = a["breakdown"][field], b["breakdown"].get(field, {})
        lines += ["", f"## {field} ({primary})", "", f"| {field} | A | B | B − A |", "|---|---|---|---|"]
        for value in sorted(set(ga) | set(gb)):
            x = ga.get(value, {}).get(primary, {}).get("pass@1")
            y = gb.get(value, {}).get(primary, {}).get("pass@1")
            lines.append(f"| {value} | {pct(x)} | {pct(y)} | {_diff(x, y)} |")
    return "\n".join(lines) + "\n"


def _who(s: dict) -> str:
    budget = s["sampling"].get("think_budget")
    return (f"{s['model'].get('served_model') or s['model'].get('path')} ({s['sampling']['mode']}"
            + (f", think budget {budget})" if budget is not None else ")"))


def _diff(x: float | None, y: float | None) -> str:
    return "—" if x is None or y is None else f"{100 * (y - x):+.1f}"
