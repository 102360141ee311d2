"""Curation steps of MGRD, each usable alone (`audior1 curate …`) and by `audior1 mgrd run`.

- `select`: perception-heavy questions for an iteration (task / `task:question_type` filters, a seeded subset).
- `filter_samples`: every sampled completion judged by `audior1.data.grounding.judge_chain`; the kept chains
  become an SFT manifest (`kind: audio_cot, reasoning_field: mgrd_cot`), one row per kept sample.
- `passk`: per-item pass counts from k samples; items whose count lies in the band (the paper: 3 ≤ correct ≤ 6
  of 8) become the RL manifest; the histogram is saved as JSON and PNG.

Samples come from `audior1 eval` predictions (`raw` per sample, `scores.exact`), so sampling runs anywhere the
evaluation harness runs: the local engine (forked prefill) or any OpenAI-compatible endpoint.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from audior1.data.core import DataError
from audior1.data.manifest import read_manifest, write_manifest

KEPT_FIELD = "mgrd_cot"  # where a kept chain goes in the distillation manifest


def _keys(item: dict) -> set[str]:
    return {item["task"], f"{item['task']}:{item.get('question_type')}"}


def select(manifest: str | Path | list, out: str | Path, *, tasks: list[str] | None = None,
           question_types: list[str] | None = None, limit: int | None = None, seed: int = 0,
           allow_empty: bool = False) -> dict:
    """Write the items of `manifest` (or the union of several, each id once) that match the filters (a seeded
    random `limit` of them) to `out`. No match is an error unless `allow_empty` (then `out` is empty)."""
    manifests = manifest if isinstance(manifest, list) else [manifest]
    items, seen = [], set()
    for m in manifests:
        for it in read_manifest(m, check_files=False) if (not allow_empty or Path(m).stat().st_size) else []:
            if it["id"] not in seen:
                seen.add(it["id"])
                items.append(it)
    keep = [it for it in items if (not tasks or it["task"] in tasks) and
            (not question_types or _keys(it) & set(question_types))]
    if not keep and not allow_empty:
        raise DataError(f"{', '.join(map(str, manifests))}: no item matches tasks={tasks} "
                        f"question_types={question_types}")
    if limit is not None and limit < len(keep):
        keep = sorted(random.Random(seed).sample(keep, limit), key=lambda it: it["id"])
    write_manifest(out, keep)
    return {"selected": len(keep), "of": len(items), "tasks": dict(Counter(it["task"] for it in keep))}


def load_samples(predictions: str | Path) -> dict[str, list[dict]]:
    """id -> the sampled records of an `audior1 eval` run (the latest record per (id, sample))."""
    from audior1.eval.harness import latest, load_predictions

    rows = latest(load_predictions(Path(predictions)))
    by_id: dict[str, list[dict]] = defaultdict(list)
    for (item_id, _), row in sorted(rows.items()):
        by_id[item_id].append(row)
    return by_id


def filter_samples(manifest: str | Path, predictions: str | Path, out_dir: str | Path, *,
                   source: str = "auto") -> dict:
    """Judge every sample; write `verdicts.jsonl`, the kept chains as `kept.jsonl` and return the counts."""
    from audior1.chat import split_reasoning
    from audior1.data.grounding import REASONS, judge_chain

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = {it["id"]: it for it in read_manifest(manifest, check_files=False)}
    samples = load_samples(predictions)
    unknown = sorted(set(samples) - set(items))
    if unknown:
        raise DataError(f"{predictions}: ids not in {manifest}: {', '.join(unknown[:5])}")
    kept, reasons, per_task, scores = [], Counter(), defaultdict(Counter), []
    with open(out_dir / "verdicts.jsonl", "w", encoding="utf-8") as f:
        for item_id, rows in samples.items():
            item = items[item_id]
            for row in rows:
                if row.get("error"):
                    continue
                v = judge_chain(item, row["raw"], source=source)
                f.write(json.dumps({"id": item_id, "sample": row["sample"], **v.to_dict()}, ensure_ascii=False) + "\n")
                reasons.update(v.reasons)
                scores.append(v.score)
                per_task[item["task"]]["samples"] += 1
                per_task[item["task"]]["kept"] += v.keep
                if v.keep:
                    kept.append({**item, "id": f"{item_id}#s{row['sample']}", "source_id": item_id,
                                 KEPT_FIELD: split_reasoning(row["raw"]).reasoning})
    write_manifest(out_dir / "kept.jsonl", kept)
    n = sum(c["samples"] for c in per_task.values())
    summary = {"samples": n, "kept": len(kept), "keep_rate": round(len(kept) / n, 4) if n else 0.0,
               "items_with_a_kept_chain": len({k["source_id"] for k in kept}), "items": len(samples),
               "grounding_score": round(sum(scores) / len(scores), 4) if scores else None,
               "reasons": {r: reasons[r] for r in REASONS}, "tasks": {t: dict(c) for t, c in sorted(per_task.items())}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def passk(manifest: str | Path, predictions: str | Path, out_dir: str | Path, *, band: tuple[int, int] = (3, 6)
          ) -> dict:
    """Pass counts per item; `selected.jsonl` holds the items with band[0] ≤ correct ≤ band[1]."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = {it["id"]: it for it in read_manifest(manifest, check_files=False)}
    samples = load_samples(predictions)
    counts = {i: sum(r["scores"].get("exact", 0.0) == 1.0 for r in rows) for i, rows in samples.items()}
    k = max((len(rows) for rows in samples.values()), default=0)
    lo, hi = band
    chosen = [items[i] for i in sorted(counts) if lo <= counts[i] <= hi]
    write_manifest(out_dir / "selected.jsonl", chosen)
    histogram = {c: sum(v == c for v in counts.values()) for c in range(k + 1)}
    summary = {"items": len(counts), "k": k, "band": [lo, hi], "selected": len(chosen), "histogram": histogram,
               "never": histogram.get(0, 0), "always": histogram.get(k, 0)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "pass_counts.json").write_text(json.dumps(counts, indent=1))
    _histogram_png(histogram, band, out_dir / "passk.png")
    return summary


def bands(manifest: str | Path, predictions: str | Path, out_dir: str | Path, *, bands: list[tuple[int, int]],
          seed: int = 0) -> dict:
    """One manifest per pass-count band (`band-LO-HI.jsonl`), all cut to the size of the smallest by a seeded
    draw: RL data sets that differ in difficulty only (the paper's [3, 6] of 8 against never-solved questions)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = {it["id"]: it for it in read_manifest(manifest, check_files=False)}
    counts = {i: sum(r["scores"].get("exact", 0.0) == 1.0 for r in rows) for i, rows in load_samples(predictions).items()}
    unknown = sorted(set(counts) - set(items))
    if unknown:
        raise DataError(f"{predictions}: ids not in {manifest}: {', '.join(unknown[:5])}")
    found = {(lo, hi): [i for i in sorted(counts) if lo <= counts[i] <= hi] for lo, hi in bands}
    n = min(len(ids) for ids in found.values())
    summary = {"items": len(counts), "size": n, "bands": {}}
    for (lo, hi), ids in found.items():
        chosen = sorted(random.Random(seed).sample(ids, n))
        write_manifest(out_dir / f"band-{lo}-{hi}.jsonl", [items[i] for i in chosen])
        summary["bands"][f"{lo}-{hi}"] = {"found": len(ids), "kept": n}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _histogram_png(histogram: dict[int, int], band: tuple[int, int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    xs = sorted(histogram)
    ax.bar(xs, [histogram[x] for x in xs], color=["tab:green" if band[0] <= x <= band[1] else "tab:gray" for x in xs])
    ax.set_xlabel("correct samples per question")
    ax.set_ylabel("questions")
    ax.set_title(f"pass@{max(xs) if xs else 0}: kept {band[0]}–{band[1]} (green)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


REJECT_PRIORITY = ("refusal", "surrogate", "incoherent", "contradicted")
SYNTHETIC_REFUSAL = "I cannot hear audio: as a text-based model I have no access to the recording, so I will guess."


def dpo_pairs(manifest: str | Path, predictions: str | Path, out: str | Path, *, source: str = "auto",
              synthetic_refusal: bool = False, seed: int = 0) -> dict:
    """Preference pairs for `audior1 train dpo`: per item, chosen = a kept chain (judge_chain), rejected = a
    dropped chain of the same prompt that refused, reasoned from a surrogate, was incoherent or contradicted the
    sound (in that order of preference), or, with `synthetic_refusal`, a written refusal ending in another answer."""
    from audior1.chat import split_reasoning
    from audior1.data.grounding import judge_chain

    items = {it["id"]: it for it in read_manifest(manifest, check_files=False)}
    rng = random.Random(seed)
    pairs, why = [], Counter()
    for item_id, rows in load_samples(predictions).items():
        item = items.get(item_id)
        if item is None:
            raise DataError(f"{predictions}: id {item_id!r} is not in {manifest}")
        judged = [(row, judge_chain(item, row["raw"], source=source)) for row in rows if not row.get("error")]
        kept = [row for row, v in judged if v.keep]
        if not kept:
            why["no kept chain"] += 1
            continue
        rejected = None
        for reason in REJECT_PRIORITY:
            cand = [row for row, v in judged if reason in v.reasons]
            if cand:
                split = split_reasoning(cand[0]["raw"])
                rejected, tag = {"reasoning": split.reasoning, "answer": split.answer}, reason
                break
        if rejected is None and synthetic_refusal:
            wrong = [c for c in (item.get("choices") or []) if c != item["answer"]]
            rejected, tag = {"reasoning": SYNTHETIC_REFUSAL, "answer": rng.choice(wrong) if wrong else "0"}, "synthetic"
        if rejected is None:
            why["no rejected chain"] += 1
            continue
        chosen = split_reasoning(kept[0]["raw"])
        why[f"rejected: {tag}"] += 1
        pairs.append({**item, "chosen": {"reasoning": chosen.reasoning, "answer": chosen.answer},
                      "rejected": rejected, "rejected_because": tag})
    write_manifest(out, pairs)
    return {"pairs": len(pairs), "items": len(items), "counts": dict(why)}


def audio_variants(manifest: str | Path, out_dir: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """The manifest twice more, each question with its clip replaced: by silence of the same length
    (`silence.jsonl`) and by another question's clip, from another task where there is one (`shuffle.jsonl`)."""
    import numpy as np
    import soundfile as sf

    out_dir = Path(out_dir)
    (out_dir / "silence").mkdir(parents=True, exist_ok=True)
    items = read_manifest(manifest, check_files=False)
    rng = random.Random(seed)
    silent, shuffled = [], []
    for k, it in enumerate(items):
        paths = []
        for j, path in enumerate(it["audio"]):
            info = sf.info(path)
            dest = out_dir / "silence" / f"{k:05d}-{j}.wav"
            sf.write(dest, np.zeros(info.frames, dtype=np.float32), info.samplerate)
            paths.append(str(dest.resolve()))
        silent.append({**it, "audio": paths})
        others = [o for o in items if o["task"] != it["task"]] or [o for o in items if o["id"] != it["id"]] or [it]
        shuffled.append({**it, "audio": list(rng.choice(others)["audio"])})
    return {"silence": write_manifest(out_dir / "silence.jsonl", silent),
            "shuffle": write_manifest(out_dir / "shuffle.jsonl", shuffled)}


def audio_contribution(manifest: str | Path, predictions: dict[str, str | Path], out_dir: str | Path) -> dict:
    """Which questions are answered right without their audio (AudioMCQ's weak / strong audio contribution):
    an item is flagged when it is answered right with its clip *and* with every replacement. `predictions` maps
    "real" and each variant to an `audior1 eval` predictions file (first sample scored)."""
    out_dir = Path(out_dir)
    items = {it["id"]: it for it in read_manifest(manifest, check_files=False)}
    right = {mode: {i: rows[0]["scores"].get("exact", 0.0) == 1.0 for i, rows in load_samples(p).items()}
             for mode, p in predictions.items()}
    variants = [m for m in predictions if m != "real"]
    flagged = sorted(i for i in items if right["real"].get(i) and all(right[m].get(i) for m in variants))
    per_task = defaultdict(lambda: Counter())
    for i, it in items.items():
        c = per_task[it["task"]]
        c["n"] += 1
        c["flagged"] += i in flagged
        for mode in predictions:
            c[mode] += bool(right[mode].get(i))
    tasks = {t: {"n": c["n"], **{f"accuracy_{m}": round(c[m] / c["n"], 4) for m in predictions},
                 "flagged": c["flagged"]} for t, c in sorted(per_task.items())}
    for t, it in ((items[i]["task"], items[i]) for i in items):
        if it.get("choices"):
            tasks[t]["chance"] = round(1 / len(it["choices"]), 4)
    write_manifest(out_dir / "flagged.jsonl", [items[i] for i in flagged])
    summary = {"items": len(items), "flagged": len(flagged), "modes": list(predictions), "tasks": tasks}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def self_cognition(audit: str | Path, model: str | Path, out_dir: str | Path, *, max_tokens: int = 128,
                   think: bool = True) -> dict:
    """Answer every audit prompt (greedy, local engine) and count refusals / wrong self-cognition
    (`data.selfcog.refusal_rate`); write `outputs.jsonl` and `summary.json`."""
    from audior1.data.selfcog import read_audit, refusal_rate
    from audior1.engine import Engine, SamplingParams

    rows = read_audit(audit)
    engine = Engine.from_pretrained(model)
    messages = [[{"role": "user", "content": [{"type": "text", "text": r["prompt"]},
                                              *({"type": "audio", "audio": a} for a in r["audio"])]}] for r in rows]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, think=think)
    outs = engine.generate(messages, params)
    results = [{"id": r["id"], "kind": r.get("kind"), "prompt": r["prompt"], "text": c.text}
               for r, [c] in zip(rows, outs)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "outputs.jsonl", "w", encoding="utf-8") as f:
        for res in results:
            f.write(json.dumps(res, ensure_ascii=False) + "\n")
    summary = {"model": str(model), **refusal_rate(results)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
