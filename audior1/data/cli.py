"""The `audior1 data ...` commands: synth, fsdd, verify-grounding, stats, tasks.

`register(subparsers)` adds the `data` group to the main CLI's subparsers; every leaf sets `func`, called as
`func(args) -> int`. `python -m audior1.data.cli <command> ...` runs the same commands without the main CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from audior1.chat import split_reasoning
from audior1.data.core import SPLITS

DEFAULT_FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings"


def _splits(value: str) -> list[str]:
    return list(SPLITS) if value == "all" else [value]


def cmd_synth(args) -> int:
    from audior1.data import synth
    if args.list:
        return cmd_tasks(args)
    for split in _splits(args.split):
        synth.build(args.out, split, args.n_per_task, args.seed, args.tasks, args.workers, args.speech_cache,
                    args.manifest if args.split != "all" else None)
    return 0


def cmd_fsdd(args) -> int:
    from audior1.data import fsdd
    rec = args.recordings or DEFAULT_FSDD
    if not Path(rec).is_dir():
        raise FileNotFoundError(f"FSDD recordings not found at {rec}; pass --recordings DIR "
                                "(files named {digit}_{speaker}_{take}.wav)")
    for split in _splits(args.split):
        fsdd.build(rec, args.out, split, args.n_per_task, args.seed, args.tasks, args.workers,
                   args.manifest if args.split != "all" else None)
    return 0


def cmd_tasks(args) -> int:
    from audior1.data import fsdd, synth
    for name, fams in (("synth", synth.FAMILIES), ("fsdd", fsdd.FAMILIES)):
        print(f"{name} families:")
        for f in fams.values():
            extra = " [espeak-ng]" if f.needs_speech else ""
            print(f"  {f.name:20s} {f.category:6s} {', '.join(f.qtypes):32s} {f.doc}{extra}")
    return 0


def reasoning_of(pred: dict, field: str | None = None) -> str:
    """The reasoning in a prediction: `field`, else `reasoning`, else the reasoning of `response`/`output`/
    `text`/`completion` by `chat.split_reasoning` (the text before the first `</think>`; all of it when the
    think block is never closed)."""
    if field:
        return str(pred.get(field) or "")
    if pred.get("reasoning") is not None:
        return str(pred["reasoning"])
    for k in ("response", "output", "text", "completion"):
        if isinstance(pred.get(k), str):
            return split_reasoning(pred[k]).reasoning
    return ""


def verify_grounding(manifest: str | Path, predictions: str | Path, out: str | Path | None = None,
                     field: str | None = None) -> dict:
    """Score every prediction's reasoning against its item's meta; write per-item reports; return a summary."""
    from audior1.data.grounding import grounding_score
    from audior1.data.manifest import ManifestError, read_manifest
    items = {it["id"]: it for it in read_manifest(manifest, check_files=False)}
    reports, per_task = [], defaultdict(list)
    with open(predictions, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                pred = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{predictions}:{n}: invalid JSON: {e.msg}") from None
            if not isinstance(pred, dict) or "id" not in pred:
                raise ManifestError(f"{predictions}:{n}: field 'id': missing")
            item = items.get(pred["id"])
            rep = grounding_score(reasoning_of(pred, field), item["meta"] if item else None,
                                  item["answer"] if item else None)
            task = item["task"] if item else "(unknown id)"
            row = {"id": pred["id"], "task": task, **rep.to_dict()}
            reports.append(row)
            per_task[task].append(rep)
    out = Path(out) if out else Path(predictions).with_suffix(".grounding.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for row in reports:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def agg(reps):
        k = max(1, len(reps))
        return {"n": len(reps), "score": round(sum(r.score for r in reps) / k, 4),
                "ok": round(sum(r.ok for r in reps) / k, 4),
                "grounded": round(sum(r.grounded for r in reps) / k, 2),
                "contradicted": round(sum(r.contradicted for r in reps) / k, 2),
                "unverifiable": round(sum(r.unverifiable for r in reps) / k, 2),
                "vocabulary": round(sum(r.vocabulary_score for r in reps) / k, 4),
                "refusals": sum(r.refusal for r in reps)}
    everything = [r for reps in per_task.values() for r in reps]
    return {"manifest": str(manifest), "predictions": str(predictions), "report": str(out),
            "missing": len(set(items) - {r["id"] for r in reports}), "all": agg(everything),
            "tasks": {t: agg(reps) for t, reps in sorted(per_task.items())}}


def cmd_verify(args) -> int:
    s = verify_grounding(args.manifest, args.predictions, args.out, args.field)
    a = s["all"]
    print(f"{a['n']} predictions ({s['missing']} manifest items without one); per-item reports: {s['report']}")
    print(f"{'task':20s} {'n':>5s} {'score':>6s} {'ok':>6s} {'ground':>7s} {'contra':>7s} {'unver':>6s} "
          f"{'vocab':>6s} {'refuse':>6s}")
    for t, v in list(s["tasks"].items()) + [("ALL", a)]:
        print(f"{t:20s} {v['n']:5d} {v['score']:6.3f} {v['ok']:6.3f} {v['grounded']:7.2f} {v['contradicted']:7.2f} "
              f"{v['unverifiable']:6.2f} {v['vocabulary']:6.3f} {v['refusals']:6d}")
    if args.json:
        print(json.dumps(s))
    return 0


def cmd_stats(args) -> int:
    from audior1.data.stats import format_summary, stats
    target = Path(args.path)
    png = None if args.no_png else (args.png or (target if target.is_dir() else target.parent) / "stats.png")
    summary, png_path = stats(target, png)
    print(json.dumps(summary) if args.json else format_summary(summary))
    if png_path:
        print(f"\nexample spectrograms: {png_path}", file=sys.stderr)
    return 0


def _add_commands(sub) -> None:
    p = sub.add_parser("synth", help="generate the procedural acoustic-reasoning suite (WAVs + manifest)",
                       description="Write OUT/audio/SPLIT/TASK/*.wav (16 kHz mono) and OUT/synth-SPLIT.jsonl.")
    p.add_argument("--out", required=False, default="data", help="output directory (default: data)")
    p.add_argument("--split", default="train", choices=list(SPLITS) + ["all"])
    p.add_argument("--n-per-task", type=int, default=100, help="items per task family (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", nargs="+", help="task families (default: all; see `audior1 data tasks`)")
    p.add_argument("--workers", type=int, help="processes (default: min(2, cpus))")
    p.add_argument("--speech-cache", help="directory caching espeak-ng output across runs")
    p.add_argument("--manifest", help="manifest file name (default synth-SPLIT.jsonl)")
    p.add_argument("--list", action="store_true", help="list the task families and exit")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("fsdd", help="spoken-digit tasks from the Free Spoken Digit Dataset",
                       description="Write OUT/audio/SPLIT/TASK/*.wav and OUT/fsdd-SPLIT.jsonl. Splits: takes 0-4 "
                                   "test (official), 5-9 dev, 10-49 train.")
    p.add_argument("--recordings", help=f"FSDD recordings directory (default: {DEFAULT_FSDD})")
    p.add_argument("--out", default="data", help="output directory (default: data)")
    p.add_argument("--split", default="train", choices=list(SPLITS) + ["all"])
    p.add_argument("--n-per-task", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", nargs="+", help="fsdd_digit, fsdd_arith, fsdd_speaker (default: all)")
    p.add_argument("--workers", type=int)
    p.add_argument("--manifest", help="manifest file name (default fsdd-SPLIT.jsonl)")
    p.set_defaults(func=cmd_fsdd)

    p = sub.add_parser("verify-grounding", help="check reasoning chains against the acoustic facts of a manifest",
                       description="PREDICTIONS is JSONL with `id` and `reasoning` (or a `response` holding "
                                   "<think>...</think>). Prints a per-task summary, writes per-item reports.")
    p.add_argument("manifest")
    p.add_argument("predictions")
    p.add_argument("--out", help="per-item report JSONL (default: PREDICTIONS with .grounding.jsonl)")
    p.add_argument("--field", help="read the reasoning from this prediction field")
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("stats", help="counts, answer balance, durations, example spectrograms",
                       description="Summarize a directory of manifests (or one manifest).")
    p.add_argument("path", help="data directory or manifest")
    p.add_argument("--png", help="spectrogram sheet path (default: DIR/stats.png)")
    p.add_argument("--no-png", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("tasks", help="list task families and question types")
    p.set_defaults(func=cmd_tasks)


def register(subparsers) -> argparse.ArgumentParser:
    """Add `data` (synth | fsdd | verify-grounding | stats | tasks) to the main CLI's subparsers."""
    p = subparsers.add_parser("data", help="generate, inspect and verify data",
                              description="Data for audior1: the procedural acoustic-reasoning suite, FSDD "
                                          "spoken-digit tasks, grounding verification, statistics. See docs/data.md.")
    _add_commands(p.add_subparsers(dest="data_command", metavar="COMMAND", required=True))
    return p


def main(argv: list[str] | None = None) -> int:
    from audior1.data.core import DataError
    from audior1.data.manifest import ManifestError
    parser = argparse.ArgumentParser(prog="audior1 data", description=__doc__.splitlines()[0])
    _add_commands(parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ManifestError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
