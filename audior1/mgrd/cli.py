"""`audior1 mgrd run|report|reproduce` and `audior1 curate select|filter|passk|bands|…`: thin wrappers over `mgrd.run`,
`mgrd.report` and `mgrd.curate`."""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_REPRODUCE = Path(__file__).resolve().parents[2] / "configs" / "reproduce.yaml"


def cmd_run(args) -> None:
    from audior1.mgrd.config import MGRDConfig
    from audior1.mgrd.run import run
    from audior1.train.config import load_config

    cfg = load_config(MGRDConfig, args.config, args.overrides)
    if args.sampler_endpoint:
        cfg.sample.endpoint, cfg.sample.served_model = args.sampler_endpoint, args.served_model
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run(cfg, resume=args.resume)


def cmd_reproduce(args) -> None:
    from audior1.mgrd import reproduce

    overrides = list(args.overrides)
    if args.claims:
        overrides.append(f"claims=[{','.join(c.strip() for c in args.claims.split(','))}]")
    if args.seeds:
        overrides.append(f"seeds=[{','.join(map(str, range(args.seeds)))}]")
    if args.out:
        overrides.append(f"out_dir={args.out}")
    cfg = reproduce.load(args.config, overrides, quick=args.quick)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.report_only:
        from audior1.mgrd.verdicts import write_reproduction

        print(write_reproduction(cfg))
        return
    print(reproduce.run(cfg, resume=args.resume))


def cmd_report(args) -> None:
    from audior1.mgrd.report import write_report

    print(write_report(Path(args.run)))


def cmd_select(args) -> None:
    from audior1.mgrd.curate import select

    s = select(args.manifest, args.out, tasks=args.tasks, question_types=args.question_types, limit=args.limit,
               seed=args.seed, allow_empty=args.allow_empty)
    Path(args.out).with_name("summary.json").write_text(json.dumps(s, indent=1))
    print(f"selected {s['selected']} of {s['of']} items → {args.out}")


def cmd_filter(args) -> None:
    from audior1.mgrd.curate import filter_samples

    s = filter_samples(args.manifest, args.samples, args.out, source=args.source)
    print(f"kept {s['kept']} of {s['samples']} samples ({s['keep_rate']:.1%}; {s['items_with_a_kept_chain']} of "
          f"{s['items']} items have a kept chain) → {Path(args.out) / 'kept.jsonl'}")
    print("drop reasons: " + ", ".join(f"{r} {n}" for r, n in s["reasons"].items()))


def cmd_passk(args) -> None:
    from audior1.mgrd.curate import passk

    out = Path(args.out)
    predictions = Path(args.predictions) if args.predictions else out / "samples" / "predictions.jsonl"
    manifest = args.manifest
    if args.limit:  # a seeded random subset, not the first items (manifests are ordered by task)
        from audior1.mgrd.curate import select

        out.mkdir(parents=True, exist_ok=True)
        manifest = str(out / "pool.jsonl")
        select(args.manifest, manifest, limit=args.limit, seed=args.seed)
    if not args.predictions:
        if not (args.model or args.endpoint):
            raise SystemExit("audior1 curate passk: give --model DIR, --endpoint URL or --predictions FILE")
        from audior1.eval.cli import main as eval_main

        source = ["--model", args.model] if args.model else ["--endpoint", args.endpoint, "--concurrency",
                                                             str(args.concurrency)]
        if args.served_model:
            source += ["--served-model", args.served_model]
        code = eval_main(["--bench", "synthetic", "--data", manifest, *source, "--n", str(args.k),
                          "--temperature", str(args.temperature), "--max-tokens", str(args.max_tokens), "--seed",
                          str(args.seed), "--out", str(out / "samples"), "--no-plots"])
        if code:
            raise SystemExit(code)
    s = passk(manifest, predictions, out, band=(args.band[0], args.band[1]))
    print(f"pass@{s['k']} on {s['items']} items: histogram {s['histogram']}; {s['selected']} with "
          f"{s['band'][0]}–{s['band'][1]} correct → {out / 'selected.jsonl'} (plot: {out / 'passk.png'})")


def _band(text: str) -> tuple[int, int]:
    import argparse

    lo, sep, hi = text.partition("-")
    if not (sep and lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO-HI pass counts with LO ≤ HI, e.g. 3-6 or 0-0")
    return int(lo), int(hi)


def cmd_bands(args) -> None:
    from audior1.mgrd.curate import bands

    s = bands(args.manifest, args.samples, args.out, bands=args.bands, seed=args.seed)
    print(f"{s['size']} questions per band from {s['items']}: " + ", ".join(
        f"{b} ({v['found']} found)" for b, v in s["bands"].items()) + f" → {args.out}")


def cmd_dpo_pairs(args) -> None:
    from audior1.mgrd.curate import dpo_pairs

    s = dpo_pairs(args.manifest, args.samples, args.out, source=args.source,
                  synthetic_refusal=args.synthetic_refusal, seed=args.seed)
    print(f"{s['pairs']} pairs from {s['items']} items → {args.out} ({s['counts']})")


def cmd_audio_contribution(args) -> None:
    from audior1.eval.cli import main as eval_main
    from audior1.mgrd.curate import audio_contribution, audio_variants, select

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = args.manifest
    if args.limit:
        manifest = str(out / "pool.jsonl")
        select(args.manifest, manifest, limit=args.limit, seed=args.seed)
    variants = {"real": Path(manifest), **audio_variants(manifest, out / "variants", seed=args.seed)}
    if not (args.model or args.endpoint):
        raise SystemExit("audior1 curate audio-contribution: give --model DIR or --endpoint URL")
    source = ["--model", args.model] if args.model else ["--endpoint", args.endpoint]
    if args.served_model:
        source += ["--served-model", args.served_model]
    predictions = {}
    for mode, path in variants.items():
        code = eval_main(["--bench", "synthetic", "--data", str(path), *source, "--temperature", "0",
                          "--max-tokens", str(args.max_tokens), "--think" if args.think else "--no-think",
                          "--out", str(out / mode), "--no-plots"])
        if code:
            raise SystemExit(code)
        predictions[mode] = out / mode / "predictions.jsonl"
    s = audio_contribution(manifest, predictions, out)
    print(f"{s['flagged']} of {s['items']} questions answered right without their audio (silence and another clip) "
          f"→ {out / 'flagged.jsonl'}")
    for task, t in s["tasks"].items():
        print(f"  {task:20s} " + "  ".join(f"{k} {v}" for k, v in t.items()))


def cmd_self_cognition(args) -> None:
    from audior1.mgrd.curate import self_cognition

    s = self_cognition(args.audit, args.model, args.out, max_tokens=args.max_tokens, think=not args.no_think)
    print(f"self-cognition errors: {s['refusals']} of {s['prompts']} prompts ({s['rate']:.1%}) claim the model "
          f"cannot hear or has no audio → {Path(args.out) / 'outputs.jsonl'}")
    for kind, k in sorted(s["kinds"].items()):
        print(f"  {kind:10s} {k['refusals']}/{k['prompts']}")


def _judged_samples_args(c) -> None:
    """What `filter` and `dpo-pairs` both read: a manifest, its sampled predictions, where the facts come from."""
    c.add_argument("manifest")
    c.add_argument("samples", help="predictions.jsonl of `audior1 eval --n K` on the manifest")
    c.add_argument("--source", choices=("auto", "meta", "audio"), default="auto")


def register(subparsers) -> None:
    p = subparsers.add_parser("mgrd", help="Modality-Grounded Reasoning Distillation: the iterative loop and its "
                              "report (docs/mgrd.md)")
    sub = p.add_subparsers(dest="mgrd_command", metavar="COMMAND", required=True)
    r = sub.add_parser("run", help="run (or --resume) the MGRD loop from a YAML config",
                       epilog="Overrides use the YAML key names: iterations=3 sample.k=8 distill.max_steps=200.")
    r.add_argument("--config", required=True, metavar="FILE.yaml")
    r.add_argument("overrides", nargs="*", metavar="key=value")
    r.add_argument("--resume", action="store_true", help="continue the run in out_dir: finished stages are skipped")
    r.add_argument("--sampler-endpoint", metavar="URL", help="sample chains from an OpenAI-compatible server")
    r.add_argument("--served-model", metavar="NAME")
    r.add_argument("--threads", type=int, default=1, help="torch threads for the in-process stages (default 1)")
    r.set_defaults(func=cmd_run)
    r = sub.add_parser("reproduce", help="test the paper's claims C0-C6 at small scale: the MGRD line and its "
                       "baselines per seed, verdicts with bootstrap intervals (docs/reproduction.md)",
                       epilog="Overrides use the YAML key names: mgrd.iterations=3 band_pool=128.")
    r.add_argument("--config", default=str(DEFAULT_REPRODUCE), metavar="FILE.yaml",
                   help="default: configs/reproduce.yaml")
    r.add_argument("overrides", nargs="*", metavar="key=value")
    r.add_argument("--claims", metavar="C0,C1,...", help="the claims to test (default: all; the MGRD line always runs)")
    r.add_argument("--seeds", type=int, metavar="N", help="training seeds 0..N-1 (default: the config's)")
    r.add_argument("--out", metavar="DIR", help="output directory (default: the config's out_dir)")
    r.add_argument("--quick", action="store_true", help="a CI-sized smoke run (the config's quick: block): checks "
                   "the mechanics, not the science")
    r.add_argument("--resume", action="store_true", help="continue: finished stages are skipped")
    r.add_argument("--report-only", action="store_true", help="only (re)write the verdicts from finished stages")
    r.add_argument("--threads", type=int, default=1, help="torch threads for the in-process stages (default 1)")
    r.set_defaults(func=cmd_reproduce)
    r = sub.add_parser("report", help="report.md + plots across the run's iterations")
    r.add_argument("run", metavar="RUN_DIR")
    r.set_defaults(func=cmd_report)

    p = subparsers.add_parser("curate", help="MGRD curation steps, usable alone: select, filter, passk, dpo-pairs, "
                              "audio-contribution, self-cognition")
    sub = p.add_subparsers(dest="curate_command", metavar="COMMAND", required=True)
    c = sub.add_parser("select", help="the questions of a manifest (or of several, each id once) that match task / "
                       "question-type filters")
    c.add_argument("manifest", nargs="+")
    c.add_argument("--out", required=True, metavar="FILE.jsonl")
    c.add_argument("--tasks", nargs="+")
    c.add_argument("--question-types", nargs="+", metavar="TASK:QTYPE")
    c.add_argument("--limit", type=int)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--allow-empty", action="store_true", help="write an empty manifest when nothing matches")
    c.set_defaults(func=cmd_select)
    c = sub.add_parser("bands", help="RL sets by pass count: one manifest per band, cut to the same size")
    c.add_argument("manifest")
    c.add_argument("samples", help="predictions.jsonl of `audior1 eval --n K` on the manifest")
    c.add_argument("--bands", nargs="+", required=True, metavar="LO-HI", type=_band)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True, metavar="DIR")
    c.set_defaults(func=cmd_bands)
    c = sub.add_parser("filter", help="keep or drop every sampled chain (grounding.judge_chain); kept chains as an "
                       "SFT manifest")
    _judged_samples_args(c)
    c.add_argument("--out", required=True, metavar="DIR")
    c.set_defaults(func=cmd_filter)
    c = sub.add_parser("passk", help="k samples per question; keep those with a pass count in the band")
    c.add_argument("manifest")
    c.add_argument("--model", metavar="DIR")
    c.add_argument("--endpoint", metavar="URL")
    c.add_argument("--served-model", metavar="NAME")
    c.add_argument("--concurrency", type=int, default=4)
    c.add_argument("--predictions", metavar="FILE", help="band existing samples instead of sampling")
    c.add_argument("--k", type=int, default=8)
    c.add_argument("--band", type=int, nargs=2, default=[3, 6], metavar=("LO", "HI"))
    c.add_argument("--temperature", type=float, default=1.0)
    c.add_argument("--max-tokens", type=int, default=256)
    c.add_argument("--limit", type=int, help="a seeded random subset of this many questions")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True, metavar="DIR")
    c.set_defaults(func=cmd_passk)
    c = sub.add_parser("dpo-pairs", help="preference pairs for `audior1 train dpo`: a kept chain against a refusal, "
                       "surrogate or incoherent one of the same prompt")
    _judged_samples_args(c)
    c.add_argument("--out", required=True, metavar="PAIRS.jsonl")
    c.add_argument("--synthetic-refusal", action="store_true",
                   help="where no sample was rejected for a reason, pair the kept chain with a written refusal")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_dpo_pairs)
    c = sub.add_parser("audio-contribution", help="flag questions answered right with their clip replaced by "
                       "silence and by another question's clip (answerable without the audio)")
    c.add_argument("manifest")
    c.add_argument("--model", metavar="DIR")
    c.add_argument("--endpoint", metavar="URL")
    c.add_argument("--served-model", metavar="NAME")
    c.add_argument("--think", action="store_true", help="let the model reason first (default: answer directly)")
    c.add_argument("--max-tokens", type=int, default=64)
    c.add_argument("--limit", type=int, help="a seeded random subset of this many questions")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True, metavar="DIR")
    c.set_defaults(func=cmd_audio_contribution)
    c = sub.add_parser("self-cognition", help="the refusal rate on an audit set of open audio prompts "
                       "(audior1 data self-cognition)")
    c.add_argument("audit", help="audit JSONL from `audior1 data self-cognition`")
    c.add_argument("--model", required=True, metavar="DIR")
    c.add_argument("--max-tokens", type=int, default=128)
    c.add_argument("--no-think", action="store_true")
    c.add_argument("--out", required=True, metavar="DIR")
    c.set_defaults(func=cmd_self_cognition)


def main(argv: list[str] | None = None) -> int:
    from audior1.cli import main as top

    return top(["mgrd", *(argv or [])])


if __name__ == "__main__":
    raise SystemExit(main())

