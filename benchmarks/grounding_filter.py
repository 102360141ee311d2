"""Does the grounding filter keep what it should and drop what it should? Generates a fresh suite set (WAVs +
manifests), makes every item's reference case, paraphrases, corruptions and surrogate case
(`audior1.data.adversarial`), judges each with `audior1.data.grounding.judge_chain`, and prints JSON.

Per family and overall, for each source judged (`meta`: claims checked against the item's facts; `audio`: meta
hidden, claims checked by measuring the clip):
- false rejects: reference chains and paraphrases dropped (target < 2% per family);
- false accepts: corruptions kept, per corruption kind (target < 2% per family and per kind);
- right reason: corruptions dropped with one of the reasons the case expects (the rest are "wrong reason");
- surrogate flagged: surrogate chains whose verdict says "surrogate" (target >= 98%), and trap surrogates dropped.
With `--source both`, also the agreement of measurement with meta on the reference chains' claims, claim by claim
(the two claim lists come from the same text; a length mismatch is reported), per claim kind, over the claims
meta can verify (target >= 95%). Every missed target is listed under `misses`, with up to `--examples` examples
per kind of miss (the chain, the verdict's reasons and claim statuses) under `examples`.

    python benchmarks/grounding_filter.py [--n-per-task 20] [--seed 913] [--split dev] [--tasks ...]
                                          [--fsdd ../shared/data/fsdd/recordings] [--source meta|audio|both]
                                          [--examples 3] [--out DIR]

Seed 913 / split dev is used by no test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from pathlib import Path

from audior1.data import adversarial as adv
from audior1.data import speech, synth

TARGETS = {"false_accept_max": 0.02, "false_reject_max": 0.02, "surrogate_flagged_min": 0.98,
           "agreement_min": 0.95}
KEEP_KINDS = ("reference", "synonyms", "clause_order", "numbers_as_words")
FSDD_TASKS = ("fsdd_digit", "fsdd_arith", "fsdd_speaker")


def rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def build_set(args, out: Path) -> tuple[list[dict], list[str]]:
    """Write the suite (and the FSDD families where the recordings are) under `out`; the items as written (audio
    paths relative to `out`)."""
    skipped = []
    synth_tasks = [t for t in args.tasks if t not in FSDD_TASKS] if args.tasks else None
    fsdd_tasks = [t for t in args.tasks if t in FSDD_TASKS] if args.tasks else list(FSDD_TASKS)
    quiet = lambda s: print(s, file=sys.stderr)  # noqa: E731
    manifests = []
    if synth_tasks is None or synth_tasks:
        manifests.append(synth.build(out, args.split, args.n_per_task, seed=args.seed, tasks=synth_tasks, workers=1,
                                     log=quiet))
    if fsdd_tasks:
        if args.fsdd and Path(args.fsdd).is_dir():
            from audior1.data import fsdd
            manifests.append(fsdd.build(args.fsdd, out, args.split, args.n_per_task, seed=args.seed,
                                        tasks=fsdd_tasks, workers=1, log=quiet))
        else:
            skipped.append(f"FSDD families: no recordings at {args.fsdd}")
    if not speech.available():
        skipped.append("speech families: espeak-ng not installed")
    items = []
    for m in manifests:
        with open(m, encoding="utf-8") as f:
            items += [json.loads(line) for line in f if line.strip()]
    return items, skipped


def claim_rows(verdict) -> list[dict]:
    return [{"text": c.text, "kind": c.kind, "referent": c.referent, "value": c.value, "status": c.status,
             "verified_by": c.verified_by, "detail": c.detail} for c in verdict.claims]


def example(item: dict, case: adv.Case, verdict, source: str) -> dict:
    out = {"id": item["id"], "task": item["task"], "question_type": item.get("question_type"), "source": source,
           "case": case.kind, "chain": case.reasoning, "answer": case.answer, "true_answer": item["answer"],
           "expect": sorted(case.expect)}
    if verdict is None:
        return out
    return {**out, "keep": verdict.keep, "reasons": verdict.reasons, "why": verdict.why,
            "claims": claim_rows(verdict)}


class Tally:
    """Counts for one source: (family, case kind) -> n, dropped, right reason, surrogate flagged."""

    def __init__(self, n_examples: int):
        self.c = defaultdict(lambda: defaultdict(int))
        self.examples = defaultdict(list)
        self.n_examples = n_examples
        self.errors = 0

    def add_example(self, key: str, ex: dict):
        if len(self.examples[key]) < self.n_examples:
            self.examples[key].append(ex)

    def record(self, item: dict, case: adv.Case, verdict, source: str):
        k = self.c[(item["task"], case.kind)]
        k["n"] += 1
        dropped = not verdict.keep
        k["dropped"] += dropped
        reasons = set(verdict.reasons)
        if "surrogate" in reasons:
            k["surrogate"] += 1
        if (item.get("meta") or {}).get("trap") and case.kind == "surrogate":
            k["trap_n"] += 1
            k["trap_dropped"] += dropped
        if not case.expect:
            if dropped:
                self.add_example(f"false_reject:{case.kind}", example(item, case, verdict, source))
            return
        right = dropped and bool(reasons & case.expect)
        k["right_reason"] += right
        if not dropped:
            self.add_example(f"false_accept:{case.kind}", example(item, case, verdict, source))
        elif not right:
            self.add_example(f"wrong_reason:{case.kind}", example(item, case, verdict, source))
        if case.kind == "surrogate" and "surrogate" not in reasons:
            self.add_example("surrogate_not_flagged", example(item, case, verdict, source))

    def summary(self) -> dict:
        fams = sorted({f for f, _ in self.c})
        kinds = sorted({k for _, k in self.c})

        def total(pred) -> dict:
            t = defaultdict(int)
            for (f, k), v in self.c.items():
                if pred(f, k):
                    for s, x in v.items():
                        t[s] += x
            return t

        per_family = {}
        for f in fams:
            keep = total(lambda ff, k, f=f: ff == f and k in KEEP_KINDS)
            bad = total(lambda ff, k, f=f: ff == f and k not in KEEP_KINDS and k != "surrogate")
            sur = total(lambda ff, k, f=f: ff == f and k == "surrogate")
            per_family[f] = {
                "keep_cases": keep["n"], "false_reject": rate(keep["dropped"], keep["n"]),
                "corruptions": bad["n"], "false_accept": rate(bad["n"] - bad["dropped"], bad["n"]),
                "right_reason": rate(bad["right_reason"], bad["n"]),
                "surrogate_flagged": rate(sur["surrogate"], sur["n"]),
                "by_kind": {k: self.row(self.c[(f, k)], k) for k in kinds if (f, k) in self.c}}
        by_kind = {k: self.row(total(lambda ff, kk, k=k: kk == k), k) for k in kinds}
        keep = total(lambda f, k: k in KEEP_KINDS)
        bad = total(lambda f, k: k not in KEEP_KINDS and k != "surrogate")
        sur = total(lambda f, k: k == "surrogate")
        overall = {"keep_cases": keep["n"], "false_reject": rate(keep["dropped"], keep["n"]),
                   "corruptions": bad["n"], "false_accept": rate(bad["n"] - bad["dropped"], bad["n"]),
                   "right_reason": rate(bad["right_reason"], bad["n"]),
                   "surrogate_cases": sur["n"], "surrogate_flagged": rate(sur["surrogate"], sur["n"]),
                   "trap_surrogates": sur["trap_n"],
                   "trap_surrogates_dropped": rate(sur["trap_dropped"], sur["trap_n"]),
                   "errors": self.errors}
        return {"overall": overall, "by_kind": by_kind, "by_family": per_family}

    @staticmethod
    def row(v: dict, kind: str) -> dict:
        n = v["n"]
        if kind in KEEP_KINDS:
            return {"n": n, "false_reject": rate(v["dropped"], n)}
        out = {"n": n, "false_accept": rate(n - v["dropped"], n), "right_reason": rate(v["right_reason"], n),
               "wrong_reason": rate(v["dropped"] - v["right_reason"], n)}
        if kind in ("surrogate", "surrogate_plus_fact"):
            out["surrogate_flagged"] = rate(v["surrogate"], n)
        if v["trap_n"]:
            out["trap_dropped"] = rate(v["trap_dropped"], v["trap_n"])
        return out


def misses(source: str, s: dict) -> list[dict]:
    out = []
    t = TARGETS
    for f, r in s["by_family"].items():
        if r["false_reject"] is not None and r["false_reject"] >= t["false_reject_max"]:
            out.append({"source": source, "what": "false_reject", "family": f, "value": r["false_reject"],
                        "target": f"< {t['false_reject_max']}"})
        if r["false_accept"] is not None and r["false_accept"] >= t["false_accept_max"]:
            worst = {k: v["false_accept"] for k, v in r["by_kind"].items() if v.get("false_accept")}
            out.append({"source": source, "what": "false_accept", "family": f, "value": r["false_accept"],
                        "target": f"< {t['false_accept_max']}", "by_kind": worst})
    for k, r in s["by_kind"].items():
        if r.get("false_accept") is not None and r["false_accept"] >= t["false_accept_max"]:
            out.append({"source": source, "what": "false_accept", "kind": k, "value": r["false_accept"],
                        "target": f"< {t['false_accept_max']}"})
        if r.get("false_reject") is not None and r["false_reject"] >= t["false_reject_max"]:
            out.append({"source": source, "what": "false_reject", "kind": k, "value": r["false_reject"],
                        "target": f"< {t['false_reject_max']}"})
    sf = s["overall"]["surrogate_flagged"]
    if sf is not None and sf < t["surrogate_flagged_min"]:
        out.append({"source": source, "what": "surrogate_flagged", "value": sf,
                    "target": f">= {t['surrogate_flagged_min']}"})
    if s["overall"]["errors"]:
        out.append({"source": source, "what": "judge_chain raised", "value": s["overall"]["errors"]})
    return out


NOT_MEASURABLE = {"transcript": "what is said is not an acoustic quantity (no speech recogniser here): "
                                "only meta checks it"}


class Agreement:
    """Measurement vs meta on the reference chains' measurable claims: same status, claim by claim, where meta can
    tell. Claims about what is not measurable (`NOT_MEASURABLE`) are counted apart."""

    def __init__(self, n_examples: int):
        self.kinds = defaultdict(lambda: defaultdict(int))
        self.confusion = defaultdict(lambda: defaultdict(int))
        self.chains = 0
        self.length_mismatch = 0
        self.examples = defaultdict(list)
        self.n_examples = n_examples
        self.not_measurable = defaultdict(int)

    def add(self, item: dict, case: adv.Case, vm, va):
        self.chains += 1
        if len(vm.claims) != len(va.claims):
            self.length_mismatch += 1
            if len(self.examples["claim_lists_differ"]) < self.n_examples:
                self.examples["claim_lists_differ"].append(
                    {"id": item["id"], "chain": case.reasoning, "meta_claims": claim_rows(vm),
                     "audio_claims": claim_rows(va)})
            return
        for cm, ca in zip(vm.claims, va.claims, strict=True):
            if cm.status == "unverifiable":
                continue
            if cm.kind in NOT_MEASURABLE:
                self.not_measurable[cm.kind] += 1
                continue
            k = self.kinds[cm.kind]
            k["n"] += 1
            k["agree"] += cm.status == ca.status
            self.confusion[cm.kind][f"{cm.status}->{ca.status}"] += 1
            if cm.status != ca.status and len(self.examples[cm.kind]) < self.n_examples:
                self.examples[cm.kind].append(
                    {"id": item["id"], "task": item["task"], "claim": cm.text, "referent": cm.referent,
                     "value": cm.value, "meta": {"status": cm.status, "detail": cm.detail},
                     "audio": {"status": ca.status, "verified_by": ca.verified_by, "detail": ca.detail},
                     "chain": case.reasoning})

    def summary(self) -> dict:
        n = sum(k["n"] for k in self.kinds.values())
        agree = sum(k["agree"] for k in self.kinds.values())
        return {"reference_chains": self.chains, "claim_lists_differ": self.length_mismatch, "claims": n,
                "not_measurable": {k: {"n": v, "why": NOT_MEASURABLE[k]} for k, v in self.not_measurable.items()},
                "agreement": rate(agree, n),
                "by_kind": {k: {"n": v["n"], "agreement": rate(v["agree"], v["n"]),
                                "meta->audio": dict(self.confusion[k])} for k, v in sorted(self.kinds.items())}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-per-task", type=int, default=20)
    ap.add_argument("--seed", type=int, default=913)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--tasks", nargs="*")
    default_fsdd = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
    ap.add_argument("--fsdd", default=str(default_fsdd), help="FSDD recordings ('' to skip)")
    ap.add_argument("--source", choices=("meta", "audio", "both"), default="meta")
    ap.add_argument("--examples", type=int, default=3, help="examples shown per kind of miss")
    ap.add_argument("--out", help="write the generated set here (default: a temporary folder, removed)")
    args = ap.parse_args()

    from audior1.data.grounding import judge_chain

    sources = ("meta", "audio") if args.source == "both" else (args.source,)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grounding-filter-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        items, skipped = build_set(args, out)
        t_build = time.perf_counter() - t0
        pools = defaultdict(list)
        for it in items:
            pools[it["task"]].append(it)
        tallies = {s: Tally(args.examples) for s in sources}
        agreement = Agreement(args.examples) if args.source == "both" else None
        judge_s = defaultdict(float)
        n_cases = defaultdict(int)
        for it in items:
            rng = random.Random(f"grounding_filter:{args.seed}:{it['id']}")
            for case in adv.all_cases(it, pools[it["task"]], rng):
                verdicts = {}
                for s in sources:
                    t1 = time.perf_counter()
                    try:
                        verdicts[s] = judge_chain(it, case.completion, source=s, audio_root=out)
                    except Exception as e:  # a crash is a finding too: count it, show it, go on
                        tallies[s].errors += 1
                        tallies[s].add_example("error", {**example(it, case, None, s),
                                                         "error": "".join(traceback.format_exception_only(e)).strip()})
                        continue
                    judge_s[s] += time.perf_counter() - t1
                    n_cases[s] += 1
                    tallies[s].record(it, case, verdicts[s], s)
                if agreement is not None and case.kind == "reference" and len(verdicts) == 2:
                    agreement.add(it, case, verdicts["meta"], verdicts["audio"])

    import numpy as np
    report = {
        "benchmark": "grounding_filter",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
        "config": {"seed": args.seed, "split": args.split, "n_per_task": args.n_per_task, "source": args.source,
                   "tasks": sorted(pools), "skipped": skipped, "targets": TARGETS},
        "items": len(items),
        "cases_judged": dict(n_cases),
        "misses": [],
    }
    for s in sources:
        summ = tallies[s].summary()
        report[s] = summ
        report["misses"] += misses(s, summ)
    if agreement is not None:
        report["agreement"] = agreement.summary()
        a = report["agreement"]
        if a["agreement"] is not None and a["agreement"] < TARGETS["agreement_min"]:
            report["misses"].append({"source": "audio vs meta", "what": "agreement", "value": a["agreement"],
                                     "target": f">= {TARGETS['agreement_min']}"})
        for k, v in a["by_kind"].items():
            if v["agreement"] is not None and v["agreement"] < TARGETS["agreement_min"]:
                report["misses"].append({"source": "audio vs meta", "what": "agreement", "claim_kind": k,
                                         "value": v["agreement"], "n": v["n"],
                                         "target": f">= {TARGETS['agreement_min']}"})
        if a["claim_lists_differ"]:
            report["misses"].append({"source": "audio vs meta", "what": "claim lists differ in length",
                                     "value": a["claim_lists_differ"]})
    report["examples"] = {f"{s}:{k}": v for s in sources for k, v in sorted(tallies[s].examples.items())}
    if agreement is not None:
        report["examples"].update({f"agreement:{k}": v for k, v in sorted(agreement.examples.items())})
    report["timing"] = {"build_s": round(t_build, 1),
                        **{f"ms_per_judge_{s}": round(1000 * judge_s[s] / n_cases[s], 1) for s in sources
                           if n_cases[s]},
                        "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
