"""Summaries of a data directory: counts per task / difficulty / question type / answer, the position of the
correct option, duration histograms, and a PNG with one example spectrogram per task family.

Answer balance is shown, not assumed: the per-task table gives the share of the most common answer and of the
most common correct-option position, which should sit near 1/k for k options.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from audior1.data.manifest import read_manifest

DURATION_BINS = (0, 1, 2, 3, 4, 6, 10, 30, float("inf"))


def manifests(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no such manifest or directory: {path}")
    found = sorted(path.glob("*.jsonl"))
    if not found:
        raise FileNotFoundError(f"no *.jsonl manifests in {path}")
    return found


def duration(item: dict) -> float:
    meta = item.get("meta", {})
    d = (meta.get("clip") or {}).get("duration_sec", meta.get("clip_s"))
    if d is None:
        import soundfile as sf
        d = sum(sf.info(a).duration for a in item["audio"])
    return float(d)


def summarize(items: list[dict]) -> dict:
    """Counts and balance figures (plain dicts, JSON-friendly)."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        by_task[it["task"]].append(it)
    tasks = {}
    for task, its in by_task.items():
        answers = Counter(it["answer"] for it in its)
        mc = [it for it in its if it["choices"]]
        pos = Counter(it["choices"].index(it["answer"]) for it in mc)
        n_opts = Counter(len(it["choices"]) for it in mc)
        durs = [duration(it) for it in its]
        tasks[task] = {
            "items": len(its),
            "category": its[0]["category"],
            "difficulty": dict(sorted(Counter(it["difficulty"] for it in its).items())),
            "question_type": dict(sorted(Counter(it["question_type"] for it in its).items())),
            "split": dict(sorted(Counter(it.get("split", "?") for it in its).items())),
            "answers": dict(answers.most_common()),
            "top_answer_share": round(answers.most_common(1)[0][1] / len(its), 3),
            "positions": {chr(65 + k): v for k, v in sorted(pos.items())},
            "top_position_share": round(max(pos.values()) / len(mc), 3) if mc else None,
            "options": dict(n_opts),
            "duration_s": {"mean": round(float(np.mean(durs)), 2), "min": round(min(durs), 2),
                           "max": round(max(durs), 2)},
            "duration_hist": histogram(durs),
        }
    all_d = [duration(it) for it in items]
    return {"items": len(items), "tasks": dict(sorted(tasks.items())), "duration_hist": histogram(all_d),
            "categories": dict(Counter(it["category"] for it in items)),
            "difficulties": dict(Counter(it["difficulty"] for it in items))}


def histogram(durs: list[float]) -> dict[str, int]:
    counts, _ = np.histogram(durs, bins=DURATION_BINS)
    labels = [f"{a:g}-{b:g}s" if b != float("inf") else f">{a:g}s" for a, b in zip(DURATION_BINS, DURATION_BINS[1:])]
    return {lab: int(c) for lab, c in zip(labels, counts) if c}


def format_summary(s: dict) -> str:
    lines = [f"{s['items']} items; categories {s['categories']}; difficulties {s['difficulties']}", ""]
    head = f"{'task':20s} {'items':>5s} {'cat':6s} {'e/m/h':11s} {'top ans':>7s} {'top pos':>7s} {'dur s (mean)':>12s}"
    lines += [head, "-" * len(head)]
    for task, t in s["tasks"].items():
        d = t["difficulty"]
        emh = "/".join(str(d.get(k, 0)) for k in ("easy", "medium", "hard"))
        pos = "-" if t["top_position_share"] is None else f"{t['top_position_share']:.2f}"
        lines.append(f"{task:20s} {t['items']:5d} {t['category']:6s} {emh:11s} {t['top_answer_share']:7.2f} "
                     f"{pos:>7s} {t['duration_s']['mean']:12.2f}")
    lines += ["", "question types:"]
    for task, t in s["tasks"].items():
        lines.append(f"  {task}: " + ", ".join(f"{k} {v}" for k, v in t["question_type"].items()))
    lines += ["", "answers (most common first):"]
    for task, t in s["tasks"].items():
        ans = list(t["answers"].items())
        shown = ", ".join(f"{a!s} {n}" for a, n in ans[:8]) + (f", ... ({len(ans)} distinct)" if len(ans) > 8 else "")
        lines.append(f"  {task}: {shown}")
        if t["positions"]:
            lines.append(f"  {'':{len(task)}s}  correct option position: " +
                         ", ".join(f"{k} {v}" for k, v in t["positions"].items()))
    lines += ["", "durations (all items):"]
    top = max(s["duration_hist"].values()) if s["duration_hist"] else 1
    for lab, n in s["duration_hist"].items():
        lines.append(f"  {lab:>7s} {n:7d} {'#' * max(1, round(40 * n / top))}")
    lines += ["", "durations per task:"]
    for task, t in s["tasks"].items():
        lines.append(f"  {task:20s} " + "  ".join(f"{k}: {v}" for k, v in t["duration_hist"].items()))
    return "\n".join(lines)


def spectrogram(x: np.ndarray, n_fft: int = 512, hop: int = 160) -> np.ndarray:
    """Log-magnitude STFT in dB, [freq, time]."""
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    mag = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1))
    return 20 * np.log10(mag.T + 1e-6)


def plot_examples(items: list[dict], png: str | Path) -> Path:
    """One spectrogram per task family (its first item), titled with the question and answer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    first: dict[str, dict] = {}
    for it in items:
        first.setdefault(it["task"], it)
    tasks = sorted(first)
    cols = 4
    rows = max(1, -(-len(tasks) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, task in zip(axes.flat, tasks):
        it = first[task]
        x, sr = sf.read(it["audio"][0], dtype="float32", always_2d=True)
        spec = spectrogram(x[:, 0])
        ax.axis("on")
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80, vmax=spec.max(),
                  extent=(0, len(x) / sr, 0, sr / 2000))
        ax.set_title(f"{task} ({it['difficulty']})\nanswer: {it['answer']}", fontsize=8)
        ax.set_xlabel("s", fontsize=7)
        ax.set_ylabel("kHz", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def stats(path: str | Path, png: str | Path | None = None) -> tuple[dict, Path | None]:
    """Summarize every manifest under `path` (or one manifest); write the example PNG if `png` is given."""
    items = [it for m in manifests(path) for it in read_manifest(m)]
    summary = summarize(items)
    return summary, plot_examples(items, png) if png else None
