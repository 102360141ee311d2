"""Run a benchmark over a backend: predictions JSONL (resumable), then summary, report and plots.

Design choices:
- One JSONL line per (item, sample), appended and flushed as soon as it is scored, holding everything needed
  to audit it: prompt hash, presented options, raw output, reasoning, answer, extractor versions, every
  scorer's verdict, tokens, latency. A rerun with the same `--out` skips what is already there (failed
  requests are retried); a line cut short by a crash is dropped.
- `run.json` pins what a run is (benchmark, data hash, model, sampling, prompt template hash, judge). Resuming
  with different settings is refused rather than mixing two runs in one file.
- Judge calls run on a small thread pool beside generation; rule-based scoring is inline.
- A think-budget sweep is a sequence of ordinary runs in `budget-<N>/` plus `scaling.{json,md,png}`.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from types import ModuleType
from typing import Callable

from audior1 import __version__
from audior1.eval import extract, report
from audior1.eval.backends import Backend, Completion, Sampling
from audior1.eval.items import EvalItem, sha256_file, sha256_text

PREDICTIONS, SUMMARY, RUN = "predictions.jsonl", "summary.json", "run.json"
# Settings that must match for a resumed run to continue the same file.
PINNED = ("benchmark", "dataset_sha256", "model", "sampling", "template_sha256", "judge_prompt_sha256",
          "judge_model", "extractors")


class ResumeMismatch(ValueError):
    pass


def load_predictions(path: Path) -> list[dict]:
    """Records of a predictions file; a trailing line cut short by a crash is removed from the file."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        path.write_bytes(raw)
    records = []
    for line in raw.decode("utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def latest(records: list[dict]) -> dict[tuple[str, int], dict]:
    """The last record of each (id, sample): a retried failure supersedes the failure."""
    return {(r["id"], r["sample"]): r for r in records}


def run_config(bench: ModuleType, backend: Backend, sampling: Sampling, *, data_path: str | Path | None,
               revision: str | None, template: str | None, judge=None, limit: int | None = None) -> dict:
    template = template if template is not None else bench.TEMPLATE
    return {
        "benchmark": bench.NAME,
        "dataset": str(data_path) if data_path else None,
        "dataset_sha256": sha256_file(data_path) if data_path else None,
        "dataset_revision": revision,
        "limit": limit,
        "model": backend.describe(),
        "sampling": sampling.to_dict(),
        "template": template,
        "template_sha256": sha256_text(template),
        "extractors": extract.versions(*bench.EXTRACTORS),
        "scorers": list(bench.SCORERS),
        "columns": dict(bench.COLUMNS),         # what each scorer is: the report's headline says it
        "judge": judge.describe() if judge else None,
        "judge_model": judge.model if judge else None,
        "judge_prompt_sha256": judge.prompt_sha256 if judge else None,
        "audior1_version": __version__,
    }


def _check_resume(out: Path, config: dict) -> None:
    path = out / RUN
    if not path.is_file():
        return
    old = json.loads(path.read_text())

    def pinned(c: dict, k: str):                # n may grow between runs: samples 0..n-1 stay the same
        return {**c[k], "n": None} if k == "sampling" and c.get(k) else c.get(k)

    diffs = [k for k in PINNED if pinned(old, k) != pinned(config, k)]
    if diffs:
        raise ResumeMismatch(f"{out} holds a run with different {', '.join(diffs)}; "
                             "use a new --out directory (or delete the old one)")


def _record(bench: ModuleType, item: EvalItem, c: Completion, sampling: Sampling, judge) -> dict:
    ex = extract.post_think(c.text, think=sampling.mode == "think")
    if c.error:
        scores = {s: 0.0 for s in bench.SCORERS}
        details = {}
    else:
        scores, details = bench.score(item, ex.answer, judge, given_answer=ex.given)
    return {
        "id": item.id, "sample": c.sample, "prompt_hash": item.prompt_hash(), "options": item.choices,
        "reference": item.answer, "fields": item.fields, "mode": sampling.mode,
        "think_budget": sampling.think_budget,
        "raw": c.text, "reasoning": ex.reasoning, "answer": ex.answer, "given_answer": ex.given,
        "parseable": ex.parseable and not c.error, "n_think_close": ex.n_think_close, "flags": ex.flags,
        "extractor": extract.versions(*bench.EXTRACTORS),
        "scores": scores, "details": details,
        "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
        "reasoning_tokens": c.reasoning_tokens, "reasoning_tokens_estimated": c.reasoning_tokens_estimated,
        "forced_close": c.forced_close, "finish_reason": c.finish_reason, "latency_s": round(c.latency_s, 3),
        "error": c.error,
    }


def run_benchmark(bench: ModuleType, items: list[EvalItem], backend: Backend, sampling: Sampling,
                  out: str | Path, *, judge=None, data_path: str | Path | None = None, revision: str | None = None,
                  template: str | None = None, limit: int | None = None, plots: bool = True,
                  log: Callable[[str], None] | None = None) -> dict:
    """Generate, score and report one benchmark run in `out`; returns the summary."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = run_config(bench, backend, sampling, data_path=data_path, revision=revision, template=template,
                        judge=judge, limit=limit)
    _check_resume(out, config)
    pred_path = out / PREDICTIONS
    previous = load_predictions(pred_path)
    by_id = {item.id: item for item in items}
    done = {k for k, r in latest(previous).items() if not r.get("error") and k[0] in by_id}
    for r in previous:
        if (r["id"], r["sample"]) in done and r["prompt_hash"] != by_id[r["id"]].prompt_hash():
            raise ResumeMismatch(f"{pred_path}: item {r['id']!r} was asked with a different prompt; use a new --out")
    old_wall = 0.0
    if (out / RUN).is_file():
        old_wall = json.loads((out / RUN).read_text()).get("wall_time_total_s", 0.0)
    total = len(items) * sampling.n
    if done:
        log(f"[{bench.NAME}] resuming: {len(done)}/{total} predictions already in {pred_path}")
    (out / RUN).write_text(json.dumps(config | {"wall_time_total_s": old_wall}, indent=2, ensure_ascii=False))

    t0 = time.perf_counter()
    n_done, last_log = len(done), 0.0
    with open(pred_path, "a", encoding="utf-8") as f, \
            ThreadPoolExecutor(max(1, judge.concurrency) if judge else 1, thread_name_prefix="judge") as pool:
        scoring: list[Future] = []

        def write(record: dict) -> None:
            nonlocal n_done, last_log
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            n_done += 1
            now = time.perf_counter()
            if now - last_log > 5 or n_done == total:
                last_log = now
                log(f"[{bench.NAME}] {n_done}/{total} done ({now - t0:.0f} s)")

        def drain(block: bool) -> None:
            for fut in [s for s in scoring if block or s.done()]:
                scoring.remove(fut)
                write(fut.result())

        try:
            for c in backend.generate(items, sampling, skip=done):
                item = by_id[c.item_id]
                if judge is not None and not c.error:
                    scoring.append(pool.submit(_record, bench, item, c, sampling, judge))
                    drain(block=False)
                else:
                    write(_record(bench, item, c, sampling, judge))
            drain(block=True)
        finally:
            for fut in scoring:                   # keep whatever finished before an abort
                if fut.done() and not fut.exception():
                    write(fut.result())
            wall = time.perf_counter() - t0
            (out / RUN).write_text(json.dumps(config | {"wall_time_total_s": old_wall + wall}, indent=2,
                                              ensure_ascii=False))

    records = list(latest(load_predictions(pred_path)).values())
    summary = report.summarize(bench, items, records, config | {"wall_time_s": wall,
                                                                 "wall_time_total_s": old_wall + wall})
    report.write(summary, out, plots=plots)
    return summary


def budget_label(budget: int | None) -> str:
    return "inf" if budget is None else str(budget)


def sweep(bench: ModuleType, items: list[EvalItem], backend: Backend, sampling: Sampling,
          budgets: list[int | None], out: str | Path, **kw) -> dict:
    """One run per think budget (0 = no-think, None = unbounded) in `out/budget-<N>`, then the scaling curve
    (accuracy of the primary scorer vs mean reasoning tokens)."""
    out = Path(out)
    points = []
    for b in budgets:
        s = replace(sampling, think_budget=b, think=True)
        summary = run_benchmark(bench, items, backend, s, out / f"budget-{budget_label(b)}", **kw)
        points.append(report.scaling_point(summary, budget_label(b)))
    scaling = {"benchmark": bench.NAME, "primary": bench.SCORERS[0], "sampling": asdict(sampling), "points": points}
    report.write_scaling(scaling, out, plots=kw.get("plots", True))
    return scaling
