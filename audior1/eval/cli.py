"""`audior1 eval`: run a benchmark against a served model (or, later, a local checkpoint) and compare runs.

Thin by design: parse arguments, load and check the data (before any model call), build the backend and judge,
call `harness`, print the markdown report. Heavy imports happen inside the command functions so that
`audior1 --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  audior1 eval --bench mmau --data data/mmau/mmau-test-mini.json --revision v05.15.25 \\
      --endpoint http://127.0.0.1:8000/v1 --served-model Step-Audio-R1 --out runs/mmau --concurrency 8
  audior1 eval --bench mmsu --data data/mmsu/mmsu.jsonl --endpoint http://127.0.0.1:8000 \\
      --served-model Step-Audio-R1 --out runs/mmsu-nothink --no-think
  audior1 eval --bench big_bench_audio --data data/bba/metadata.jsonl --endpoint http://127.0.0.1:8000 \\
      --served-model Step-Audio-R1 --judge-endpoint https://api.openai.com/v1 --judge-model gpt-4o \\
      --out runs/bba                        # judge key read from $OPENAI_API_KEY
  audior1 eval --bench synthetic --data data/synth/test.jsonl --endpoint http://127.0.0.1:8000 \\
      --served-model demo --think-budgets 0,64,256,inf --out runs/synth-scaling
  audior1 eval compare runs/mmau runs/mmau-nothink

A rerun with the same --out resumes: items already in predictions.jsonl are skipped.
Outputs: predictions.jsonl, run.json, summary.json, report.md, per_category.png (+ scaling.* for a sweep).
"""


def _budgets(text: str) -> list[int | None]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("inf", "none", "unbounded"):
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"think budgets are integers or 'inf', got {part!r}")
    return out


def configure(p: argparse.ArgumentParser) -> None:
    from audior1.eval.benchmarks import NAMES

    p.add_argument("--bench", metavar="NAME", help=f"benchmark: {', '.join(NAMES)}")
    p.add_argument("--data", metavar="PATH", help="the benchmark's records (JSON list or JSONL); audio paths in "
                   "it are relative to this file unless --audio-root is given")
    p.add_argument("--audio-root", metavar="DIR", help="resolve relative audio paths against DIR instead")
    p.add_argument("--revision", help="dataset revision to record (e.g. MMAU v05.15.25)")
    p.add_argument("--limit", type=int, metavar="M", help="only the first M items")
    src = p.add_argument_group("model (one of)")
    src.add_argument("--model", metavar="DIR", help="a checkpoint directory, LoRA adapter directory or Hub id "
                     "(org/name[@revision]) run by the local engine")
    src.add_argument("--adapter", metavar="DIR", help="with --model: a LoRA adapter (peft format) merged at load")
    src.add_argument("--quantize", metavar="KIND", help="with --model: weight-only quantization at load, int8 or "
                     "int4 (int4 needs CUDA); see docs/serving.md")
    src.add_argument("--endpoint", metavar="URL", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    src.add_argument("--served-model", metavar="NAME", help="the model name the server knows")
    src.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                     help="environment variable holding the endpoint's key, if it needs one (default %(default)s)")
    src.add_argument("--plain-openai", action="store_true", help="send no vLLM extras (no assistant prefill, "
                     "repetition penalty or stop ids): for servers that are not vLLM; disables --no-think/budgets")
    src.add_argument("--concurrency", type=int, default=4, metavar="C", help="requests in flight (default 4)")
    src.add_argument("--timeout", type=float, default=3600.0, metavar="S", help="per request (default 3600 s)")
    p.add_argument("--out", metavar="DIR", help="run directory (created; reused to resume)")
    s = p.add_argument_group("sampling (defaults: Step-Audio-R1's released settings)")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--think", dest="think", action="store_true", default=True,
                      help="prefill <think>: reason, then answer (default)")
    mode.add_argument("--no-think", dest="think", action="store_false",
                      help="prefill a closed, empty think block: the whole output is the answer")
    s.add_argument("--think-budget", type=int, metavar="N", help="at most N reasoning tokens, then the think "
                   "block is closed and the answer generated (0 = --no-think)")
    s.add_argument("--think-budgets", type=_budgets, metavar="LIST", help="test-time-scaling sweep, e.g. "
                   "0,64,256,inf: one run per budget in OUT/budget-N plus OUT/scaling.{md,json,png}")
    s.add_argument("--n", type=int, default=1, metavar="K", help="samples per item: pass@1 (mean) and majority@K")
    s.add_argument("--temperature", type=float)
    s.add_argument("--top-p", type=float)
    s.add_argument("--max-tokens", type=int, help="new tokens per request (default 32000)")
    s.add_argument("--repetition-penalty", type=float, help="default 1.0 (MMAR 1.07)")
    s.add_argument("--seed", type=int, help="sample k of an item uses seed + k")
    s.add_argument("--prompt-template", metavar="FILE", help="replace the benchmark's prompt text (multiple "
                   "choice: {question} and {options} placeholders)")
    j = p.add_argument_group("judge (Big Bench Audio, Wild Speech)")
    j.add_argument("--judge-endpoint", metavar="URL")
    j.add_argument("--judge-model", metavar="NAME")
    j.add_argument("--judge-prompt", metavar="FILE", help="replace the shipped judge prompt (its hash is recorded)")
    j.add_argument("--judge-runs", type=int, metavar="R", help="judge runs averaged per item (BBA default 3)")
    j.add_argument("--judge-temperature", type=float, default=0.0)
    j.add_argument("--judge-cache", metavar="DIR", help="judgment cache (default $AUDIOR1_CACHE/judge or "
                   "~/.cache/audior1/judge)")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", metavar="VAR")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    sub = p.add_subparsers(dest="eval_command", metavar="{compare}")
    c = sub.add_parser("compare", help="per-category differences between two runs (B − A)")
    c.add_argument("run_a", metavar="RUN_A", help="a run directory or its summary.json")
    c.add_argument("run_b", metavar="RUN_B")
    p.set_defaults(func=cmd_eval)


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="run a benchmark (MMAU, MMAR, MMSU, Big Bench Audio, Spoken MQA, "
                              "Wild Speech, synthetic) or compare two runs", epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)


class UsageError(ValueError):
    pass


def _fail(message: str) -> None:
    print(f"audior1 eval: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def cmd_eval(args) -> None:
    from audior1.eval.backends import BackendUnavailable, EndpointError
    from audior1.eval.harness import ResumeMismatch
    from audior1.errors import USER_ERRORS
    from audior1.eval.items import MissingAudioError, SchemaError

    try:
        if args.eval_command == "compare":
            from audior1.eval.report import compare

            print(compare(args.run_a, args.run_b), end="")
            return
        _run(args)
    except (UsageError, SchemaError, MissingAudioError, EndpointError, ResumeMismatch, BackendUnavailable,
            *USER_ERRORS) as e:
        _fail(str(e))


def _run(args) -> None:
    from audior1.eval import benchmarks, harness
    from audior1.eval.backends import OpenAIBackend, Sampling, local_backend
    from audior1.eval.items import check_audio
    from audior1.eval.judge import Judge, default_prompt

    for flag, value in (("--bench", args.bench), ("--data", args.data), ("--out", args.out)):
        if not value:
            raise UsageError(f"{flag} is required (see audior1 eval --help)")
    if bool(args.model) == bool(args.endpoint):
        raise UsageError("give either --model DIR or --endpoint URL --served-model NAME")
    if args.endpoint and not args.served_model:
        raise UsageError("--endpoint needs --served-model NAME")
    if args.endpoint and (args.adapter or args.quantize):
        raise UsageError("--adapter and --quantize apply to a local --model, not to an --endpoint")
    if args.think_budget is not None and args.think_budgets:
        raise UsageError("--think-budget and --think-budgets are exclusive")
    try:
        bench = benchmarks.get(args.bench)
    except ValueError as e:
        raise UsageError(str(e)) from None
    template = Path(args.prompt_template).read_text(encoding="utf-8") if args.prompt_template else None
    items = bench.load(args.data, audio_root=args.audio_root, template=template)
    if args.limit is not None:
        items = items[: args.limit]
    check_audio(items)                                    # every missing file listed before any model call

    sampling = Sampling(**bench.SAMPLING)
    overrides = {"temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens,
                 "repetition_penalty": args.repetition_penalty, "seed": args.seed}
    for k, v in overrides.items():
        if v is not None:
            setattr(sampling, k, v)
    sampling.n, sampling.think, sampling.think_budget = args.n, args.think, args.think_budget

    judge = None
    if bench.JUDGE:
        if not (args.judge_endpoint and args.judge_model):
            raise UsageError(f"{bench.NAME} is scored by an LLM judge: give --judge-endpoint URL --judge-model NAME")
        judge = Judge(args.judge_endpoint, args.judge_model, args.judge_prompt or default_prompt(bench.JUDGE["prompt"]),
                      runs=args.judge_runs or bench.JUDGE["runs"], temperature=args.judge_temperature,
                      cache_dir=args.judge_cache, api_key=os.environ.get(args.judge_api_key_env),
                      concurrency=args.concurrency)
        judge.check()
    if args.model:
        backend = local_backend(args.model, concurrency=args.concurrency, adapter=args.adapter, quantize=args.quantize)
    else:
        backend = OpenAIBackend(args.endpoint, args.served_model, concurrency=args.concurrency, timeout=args.timeout,
                                api_key=os.environ.get(args.api_key_env), vllm=not args.plain_openai)
    if hasattr(backend, "check"):
        backend.check()                                   # a dead endpoint fails before anything is written
    kw = dict(judge=judge, data_path=args.data, revision=args.revision, template=template, limit=args.limit,
              plots=not args.no_plots)
    if args.think_budgets:
        from audior1.eval.report import scaling_markdown

        scaling = harness.sweep(bench, items, backend, sampling, args.think_budgets, args.out, **kw)
        print(scaling_markdown(scaling), end="")
    else:
        from audior1.eval.report import markdown

        print(markdown(harness.run_benchmark(bench, items, backend, sampling, args.out, **kw)), end="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audior1 eval", description="Run a benchmark or compare two runs.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(parser)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
