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

from audior1.chat import THINK_END
from audior1.data.core import SPLITS, DataError

DEFAULT_FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings"


def _splits(value: str) -> list[str]:
    return list(SPLITS) if value == "all" else [value]


def cmd_synth(args) -> int:
    from audior1.data import synth
    if args.list:
        return cmd_tasks(args)
    for split in _splits(args.split):
        synth.build(args.out, split, args.n_per_task, args.seed, args.tasks, args.workers, args.speech_cache,
                    args.manifest if args.split != "all" else None, recordings=_fsdd_dir(args.recordings, args.tasks))
    return 0


def _fsdd_dir(recordings: str | None, tasks: list[str] | None) -> str | None:
    """The FSDD recordings directory, checked, where the tasks need it (None where they do not)."""
    from audior1.data import fsdd

    if tasks is not None and not any(t in fsdd.FAMILIES for t in tasks):
        return None
    rec = recordings or DEFAULT_FSDD
    if not Path(rec).is_dir():
        raise FileNotFoundError(f"FSDD recordings not found at {rec}; pass --recordings DIR "
                                "(files named {digit}_{speaker}_{take}.wav)")
    return str(rec)


def cmd_fsdd(args) -> int:
    from audior1.data import fsdd
    rec = _fsdd_dir(args.recordings, None)
    for split in _splits(args.split):
        fsdd.build(rec, args.out, split, args.n_per_task, args.seed, args.tasks, args.workers,
                   args.manifest if args.split != "all" else None)
    return 0


def cmd_self_cognition(args) -> int:
    from audior1.data.selfcog import build

    s = build(args.from_manifests, args.out, args.n, args.seed)
    print(f"wrote {s['prompts']} audit prompts over {s['clips']} clips to {args.out} (kinds: {', '.join(s['kinds'])})")
    return 0


def cmd_tasks(args) -> int:
    from audior1.data import fsdd, synth
    for name, fams in (("synth", synth.FAMILIES), ("fsdd", fsdd.FAMILIES)):
        print(f"{name} families:")
        for f in fams.values():
            extra = " [espeak-ng]" if f.needs_speech else ""
            print(f"  {f.name:20s} {f.category:6s} {', '.join(f.qtypes):32s} {f.doc}{extra}")
    return 0


def completions_of(pred: dict, where: str) -> list[str]:
    """The completions a prediction line holds (what followed `<think>\\n`: reasoning, `</think>`, answer):
    `completions` (a list of samples), else one of `raw` (what `audior1 eval` writes), `completion`,
    `response`, `output`, `text`, else `reasoning` + `answer` (an answer of null: never closed)."""
    if isinstance(pred.get("completions"), list):
        if not all(isinstance(c, str) for c in pred["completions"]):
            raise DataError(f"{where}: field 'completions': expected a list of strings")
        return pred["completions"]
    for k in ("raw", "completion", "response", "output", "text"):
        if isinstance(pred.get(k), str):
            return [pred[k]]
    if isinstance(pred.get("reasoning"), str):
        answer = pred.get("answer")
        return [pred["reasoning"] + (f"\n{THINK_END}\n{answer}" if answer is not None else "")]
    raise DataError(f"{where}: no completion: expected 'completions', 'raw', 'completion', 'response', 'output', "
                    "'text', or 'reasoning' (+ 'answer')")


def verify_grounding(manifest: str | Path, predictions: str | Path, out: str | Path | None = None,
                     source: str = "auto") -> dict:
    """Judge every sampled completion against its item (`grounding.judge_chain`); write one verdict per sample
    as JSONL; return counts per task and per reason."""
    from audior1.data.grounding import REASONS, judge_chain
    from audior1.data.manifest import read_manifest
    items = {it["id"]: it for it in read_manifest(manifest, check_files=False)}
    rows = []
    with open(predictions, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{predictions}:{n}"
            try:
                pred = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON: {e.msg}") from None
            if not isinstance(pred, dict) or "id" not in pred:
                raise DataError(f"{where}: field 'id': missing")
            item = items.get(pred["id"])
            if item is None:
                raise DataError(f"{where}: id {pred['id']!r} is not in {manifest}")
            for k, completion in enumerate(completions_of(pred, where)):
                v = judge_chain(item, completion, source=source)
                rows.append({"id": item["id"], "sample": pred.get("sample", k), "task": item["task"],
                             "question_type": item.get("question_type"), **v.to_dict()})
    out = Path(out) if out else Path(predictions).with_suffix(".verdicts.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    per_task = defaultdict(list)
    for row in rows:
        per_task[row["task"]].append(row)

    def agg(rs):
        return {"samples": len(rs), "items": len({r["id"] for r in rs}), "kept": sum(r["keep"] for r in rs),
                "items_with_a_kept_sample": len({r["id"] for r in rs if r["keep"]}),
                "reasons": {reason: sum(reason in r["reasons"] for r in rs) for reason in REASONS},
                "score": round(sum(r["score"] for r in rs) / max(1, len(rs)), 4)}
    return {"manifest": str(manifest), "predictions": str(predictions), "verdicts": str(out), "source": source,
            "items_without_samples": len(set(items) - {r["id"] for r in rows}), "all": agg(rows),
            "tasks": {t: agg(rs) for t, rs in sorted(per_task.items())}}


def cmd_verify(args) -> int:
    from audior1.data.grounding import REASONS
    s = verify_grounding(args.manifest, args.predictions, args.out, args.source)
    a = s["all"]
    print(f"{a['samples']} samples of {a['items']} items ({s['items_without_samples']} manifest items without "
          f"one); verdicts: {s['verdicts']}")
    heads = [r[:7] for r in REASONS]
    print(f"{'task':20s} {'samples':>7s} {'kept':>5s} {'items+':>6s} " + " ".join(f"{h:>7s}" for h in heads))
    for t, v in list(s["tasks"].items()) + [("ALL", a)]:
        print(f"{t:20s} {v['samples']:7d} {v['kept']:5d} {v['items_with_a_kept_sample']:6d} " +
              " ".join(f"{v['reasons'][r]:7d}" for r in REASONS))
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
    p.add_argument("--recordings", help="FSDD recordings, for FSDD families named in --tasks (fsdd_digit, "
                   f"fsdd_arith, fsdd_speaker; default: {DEFAULT_FSDD})")
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

    p = sub.add_parser("verify-grounding", help="keep or drop sampled reasoning chains (the MGRD filter)",
                       description="PREDICTIONS is JSONL with `id` and the completion (what followed <think>: "
                                   "reasoning, </think>, answer) in `raw` (audior1 eval's predictions), `completion`, "
                                   "`response`, `output` or `text`, or a list of samples in `completions`, or "
                                   "`reasoning` + `answer`; an id may appear on several lines (one per sample). "
                                   "Prints kept samples and drop reasons per task; writes one verdict per sample.")
    p.add_argument("manifest")
    p.add_argument("predictions")
    p.add_argument("--out", help="verdicts JSONL (default: PREDICTIONS with .verdicts.jsonl)")
    p.add_argument("--source", choices=("auto", "meta", "audio"), default="auto",
                   help="check claims against meta, against measurements of the audio (meta hidden), or meta "
                        "where the item has it (default)")
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("self-cognition", help="an audit set of open audio prompts (self-cognition errors)",
                       description="Open audio-perception prompts over clips of the given manifests; the right "
                                   "behaviour is to engage with the audio. Score with `audior1 curate self-cognition`.")
    p.add_argument("--from", dest="from_manifests", nargs="+", required=True, metavar="MANIFEST")
    p.add_argument("--out", required=True, metavar="AUDIT.jsonl")
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_self_cognition)

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
