"""The verdicts of `audior1 mgrd reproduce`: per-item figures from the finished stages, paired effects with
bootstrap intervals over test items and the spread over seeds, one verdict per claim, and OUT/reproduction.md.

Statistics
- Every figure is read per test item (correct or not, reasoning tokens, the grounding filter's keep share of
  the item's samples, refusal or not per audit prompt) from the stages' own outputs, never from summaries.
- An effect compares two conditions on the same items: per item, the difference averaged over the seeds that
  ran both; its mean, a 95% percentile-bootstrap interval over items (2,000 resamples, fixed seed), the
  per-seed effects and their standard deviation.
- A test of "A beats B" is *reproduced* when the interval lies above 0 and the mean exceeds the seed spread
  (one seed: the interval alone, and the table says so); *not reproduced* when the interval excludes an
  effect as large as the test's margin (it lies below it); *inconclusive* otherwise. A test of "A is no
  better than B" (C0) is the mirror image: reproduced when the interval lies below the margin. A claim is
  reproduced when all its tests are, not reproduced when any is not, inconclusive otherwise.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audior1.mgrd.run import STAGES_DIR

BOOTSTRAP = 2000
ACC = "accuracy"


# ------------------------------------------------------------------------------------------- reading stages
def stage_dirs(seed_dir: Path) -> dict[str, Path]:
    """short stage name ("eval0-think") → its directory, for the stages that finished."""
    out = {}
    root = seed_dir / STAGES_DIR
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        rec = d / "stage.json"
        if rec.is_file() and json.loads(rec.read_text()).get("finished"):
            out[d.name.split("-", 1)[1]] = d
    return out


def last_round(stages: dict[str, Path]) -> int:
    """The last MGRD round evaluated among a run's finished stages (0: the cold start only)."""
    return max((int(m[1]) for name in stages if (m := re.fullmatch(r"eval(\d+)-think", name))), default=0)


def perception_phases(out: Path) -> list[Path]:
    """The perception stage's phase directories (OUT/perception/phase-N), in order."""
    return sorted((out / "perception").glob("phase-*"), key=lambda d: int(d.name.split("-")[1]))


@dataclass
class ItemRow:
    task: str
    qtype: str
    difficulty: str
    correct: float            # mean over the item's samples
    tokens: float             # reasoning tokens, mean over samples
    reward: float | None = None  # the paper's audio reward, mean over samples
    raw: str = ""             # the first sample's output (for examples)


def eval_items(d: Path) -> dict[str, ItemRow]:
    """Per item of an `audior1 eval` run: correctness, reasoning tokens and the paper's reward, over samples."""
    from audior1.mgrd.curate import load_samples
    from audior1.train.rewards import REWARDS

    out = {}
    for item_id, rows in load_samples(d / "predictions.jsonl").items():
        rows = [r for r in rows if not r.get("error")]
        if not rows:
            continue
        f = rows[0]["fields"]
        rewards = REWARDS["audio"]([r["raw"] for r in rows], answer=[r["reference"] for r in rows],
                                   choices=[r.get("options") for r in rows])
        out[item_id] = ItemRow(f["task"], f["question_type"], f.get("difficulty", "?"),
                               float(np.mean([r["scores"].get("exact", 0.0) for r in rows])),
                               float(np.mean([r.get("reasoning_tokens") or 0 for r in rows])),
                               float(np.mean(rewards)), rows[0]["raw"])
    return out


KEEP, SCORE, REFUSAL = 0, 1, 2  # what `grounding_items` returns, in order


def grounding_items(d: Path) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per item of a `curate filter` run: the share of its samples kept, their mean grounding score, and the
    share of its samples whose chain claims the model cannot hear (the filter's `refusal` reason)."""
    kept, score, refused = defaultdict(list), defaultdict(list), defaultdict(list)
    for line in (d / "verdicts.jsonl").read_text().splitlines():
        v = json.loads(line)
        kept[v["id"]].append(float(v["keep"]))
        score[v["id"]].append(float(v["score"]))
        refused[v["id"]].append(float("refusal" in v["reasons"]))
    return tuple({i: float(np.mean(x)) for i, x in per.items()} for per in (kept, score, refused))


def refusals(d: Path) -> dict[str, float]:
    """Per audit prompt of a `curate self-cognition` run: 1.0 when the model claims it cannot hear."""
    from audior1.data.refusal import refusal_reason

    rows = [json.loads(line) for line in (d / "outputs.jsonl").read_text().splitlines() if line.strip()]
    return {r["id"]: float(bool(refusal_reason(r["text"]))) for r in rows}


def rl_curve(d: Path, key: str) -> list[tuple[int, float]]:
    from audior1.train.logging import read_metrics

    path = d / "metrics.jsonl"
    out = []
    for m in read_metrics(path) if path.is_file() else []:
        v = m.get(key)
        if m["kind"] == "train" and v is not None:
            out.append((m["step"], float(v["mean"] if isinstance(v, dict) else v)))
    return out


# ------------------------------------------------------------------------------------------- statistics
@dataclass
class Effect:
    mean: float
    lo: float
    hi: float
    n: int
    seeds: list[float]
    sd: float | None

    def fmt(self, scale: float = 100, unit: str = "") -> str:
        sd = "" if self.sd is None else f", seed SD {scale * self.sd:.1f}"
        return f"{scale * self.mean:+.1f}{unit} [{scale * self.lo:+.1f}, {scale * self.hi:+.1f}]{sd}"


def paired(a: list[dict[str, float]], b: list[dict[str, float]], ids: set[str] | None = None) -> Effect | None:
    """A − B per item (a[s], b[s]: seed s's values), averaged over the seeds holding both; bootstrap over items."""
    per_item, seeds = defaultdict(list), []
    for sa, sb in zip(a, b):
        common = sorted(set(sa) & set(sb) & (ids if ids is not None else set(sa)))
        if not common:
            continue
        diffs = [sa[i] - sb[i] for i in common]
        seeds.append(float(np.mean(diffs)))
        for i, x in zip(common, diffs):
            per_item[i].append(x)
    if not per_item:
        return None
    e = np.array([np.mean(v) for v in per_item.values()])
    rng = np.random.default_rng(0)
    boots = e[rng.integers(0, len(e), (BOOTSTRAP, len(e)))].mean(axis=1)
    return Effect(float(e.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)), len(e),
                  seeds, float(np.std(seeds, ddof=1)) if len(seeds) > 1 else None)


def level(values: list[dict[str, float]], ids: set[str] | None = None) -> Effect | None:
    """A single condition's mean with its interval (the effect against zero)."""
    return paired(values, [{i: 0.0 for i in v} for v in values], ids)


@dataclass
class Check:
    what: str
    effect: Effect | None
    margin: float
    better: bool = True          # "A beats B" (True) or "A is no better than B" (False)
    scale: float = 100           # figures shown in points (100) or tokens (1)
    unit: str = " pts"
    verdict: str = field(init=False)

    def __post_init__(self):
        e = self.effect
        if e is None:
            self.verdict = "not run"
            return
        beyond_spread = e.sd is None or e.mean > e.sd
        significant = e.lo > 0 and beyond_spread
        if self.better:
            self.verdict = ("reproduced" if significant else "not reproduced" if e.hi < self.margin
                            else "inconclusive")
        else:
            self.verdict = ("reproduced" if e.hi < self.margin else "not reproduced" if significant
                            else "inconclusive")


def combine(tests: list[Check]) -> str:
    verdicts = [t.verdict for t in tests]
    if not verdicts or all(v == "not run" for v in verdicts):
        return "not run"
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "reproduced" if all(v == "reproduced" for v in verdicts) else "inconclusive"


# ------------------------------------------------------------------------------------------- the claims
class Seeds:
    """The finished stages of every seed, read lazily and cached."""

    def __init__(self, out: Path, seeds: list[int]):
        self.dirs = {s: stage_dirs(out / f"seed-{s}") for s in seeds}
        self.seeds = [s for s in seeds if self.dirs[s]]
        self._cache: dict = {}

    def has(self, stage: str) -> bool:
        return any(stage in d for d in self.dirs.values())

    def evals(self, stage: str) -> list[dict[str, ItemRow]]:
        key = ("eval", stage)
        if key not in self._cache:
            self._cache[key] = [eval_items(self.dirs[s][stage]) for s in self.seeds if stage in self.dirs[s]]
        return self._cache[key]

    def values(self, stage: str, attr: str = "correct") -> list[dict[str, float]]:
        return [{i: getattr(r, attr) for i, r in rows.items()} for rows in self.evals(stage)]

    def grounding(self, stage: str, which: int = KEEP) -> list[dict[str, float]]:
        return [grounding_items(self.dirs[s][stage])[which] for s in self.seeds if stage in self.dirs[s]]

    def refusals(self, stage: str) -> list[dict[str, float]]:
        return [refusals(self.dirs[s][stage]) for s in self.seeds if stage in self.dirs[s]]

    def last_round(self) -> int:
        return max((last_round(d) for d in self.dirs.values()), default=0)


def groups(s: Seeds, held_out: list[str], traps: list[str]) -> dict[str, set[str]]:
    rows = next((r for r in s.evals("eval0-think") if r), {})
    out = {"all": set(rows), "seen": set(), "held-out": set(), "held-out hard": set(), "traps": set()}
    for i, r in rows.items():
        key = f"{r.task}:{r.qtype}"
        if r.task in traps:
            out["traps"].add(i)
        elif key in held_out:
            out["held-out"].add(i)
            if r.difficulty == "hard":
                out["held-out hard"].add(i)
        else:
            out["seen"].add(i)
    return out


def claims(s: Seeds, held_out: list[str], traps: list[str], margin: float) -> dict[str, list[Check]]:
    g = groups(s, held_out, traps)
    T = s.last_round()
    fin = f"eval{T}"
    out: dict[str, list[Check]] = {}
    out["C0"] = [Check("cold start: thinking − not thinking, seen", _eff(s, "eval0-think", "eval0-no-think",
                                                                          g["seen"]), margin, better=False),
                 Check("(a) anomaly: thinking − not thinking, seen", _eff(s, "a-eval-think", "a-eval-no-think",
                                                                         g["seen"]), margin, better=False)]
    out["C1"] = [Check(f"MGRD (round {T}): thinking − not thinking, seen", _eff(s, f"{fin}-think", f"{fin}-no-think",
                                                                               g["seen"]), margin),
                 Check("held-out: MGRD thinking − (b) labels only, not thinking",
                      _eff(s, f"{fin}-think", "b-eval-no-think", g["held-out"]), margin),
                 Check("held-out hard: MGRD thinking − (b) labels only, not thinking",
                      _eff(s, f"{fin}-think", "b-eval-no-think", g["held-out hard"]), margin)]
    if s.has("eval0-grounding") and s.has(f"{fin}-grounding"):
        keep = paired(s.grounding(f"{fin}-grounding", KEEP), s.grounding("eval0-grounding", KEEP))
        score = paired(s.grounding(f"{fin}-grounding", SCORE), s.grounding("eval0-grounding", SCORE))
    else:
        keep = score = None
    refused = (paired(s.grounding("eval0-grounding", REFUSAL), s.grounding("eval1-grounding", REFUSAL))
               if s.has("eval0-grounding") and s.has("eval1-grounding") else None)
    out["C2"] = [Check(f"filter keep share of own chains: round {T} − cold start", keep, margin),
                 Check(f"grounding score: round {T} − cold start", score, margin),
                 Check(f"held-out accuracy (thinking): round {T} − cold start",
                      _eff(s, f"{fin}-think", "eval0-think", g["held-out"]), margin)]
    out["C3"] = [Check("reasoning tokens after RL: paper's reward − accuracy only",
                      _eff(s, "c3-audio-eval-think", "c3-accuracy-eval-think", g["all"], "tokens"), 0.0,
                      scale=1, unit=" tokens")]
    out["C4"] = [Check("accuracy (thinking) after RL: pass@k in band − never solved",
                      _eff(s, "c4-band-eval-think", "c4-never-eval-think", g["all"]), margin)]
    out["C5"] = [Check("trap families (thinking): grounded − surrogate distillation",
                      _eff(s, "c5-grounded-eval-think", "c5-surrogate-eval-think", g["traps"]), margin)]
    first = "iter1"
    out["C6"] = [Check("self-cognition errors: cold start − after distillation",
                      _ref(s, "eval0-selfcog", f"{first}-distill-selfcog"), 0.0),
                 Check("self-cognition errors: after distillation − after DPO",
                      _ref(s, f"{first}-distill-selfcog", f"{first}-dpo-selfcog"), 0.0),
                 # the same error inside the model's own chains on the test questions ("I cannot hear the
                 # audio, so I can only guess"), where the open audit prompts may show none
                 Check("own chains claiming not to hear (sampled, test questions): cold start − round 1",
                       refused, 0.0)]
    return out


def _eff(s: Seeds, a: str, b: str, ids: set[str], attr: str = "correct") -> Effect | None:
    if not (s.has(a) and s.has(b)) or not ids:
        return None
    return paired(s.values(a, attr), s.values(b, attr), ids)


def _ref(s: Seeds, a: str, b: str) -> Effect | None:
    if not (s.has(a) and s.has(b)):
        return None
    return paired(s.refusals(a), s.refusals(b))


# ------------------------------------------------------------------------------------------- the report
def write_reproduction(rcfg) -> Path:
    """OUT/reproduction.md, OUT/verdicts.json and the plots, from whatever stages have finished."""
    out = Path(rcfg.out_dir)
    held_out = list(rcfg.mgrd.get("held_out") or [])
    s = Seeds(out, list(rcfg.seeds))
    tests = claims(s, held_out, list(rcfg.traps), rcfg.margin)
    verdicts = {c: {"verdict": combine(ts), "tests": [_test_json(t) for t in ts]}
                for c, ts in tests.items() if c in rcfg.claims}
    (out / "verdicts.json").write_text(json.dumps({"seeds": s.seeds, "claims": verdicts}, indent=1))
    lines = [f"# Step-Audio-R1's claims at small scale ({out})", "",
             f"Seeds with results: {s.seeds or 'none'}. Effects: mean over test items of the per-item difference "
             "(averaged over seeds) [95% bootstrap interval over items], seed SD = spread of the per-seed effects. "
             f"Margin: {100 * rcfg.margin:.0f} points (accuracy)." + (
                 " One seed: verdicts rest on the item interval alone (no seed spread)." if len(s.seeds) < 2 else ""),
             "",
             "| claim | verdict | test | effect | items | per seed |", "|---|---|---|---|---|---|"]
    for c, ts in tests.items():
        if c not in rcfg.claims:
            continue
        for k, t in enumerate(ts):
            e = t.effect
            lines.append(f"| {c if k == 0 else ''} | {combine(ts) if k == 0 else ''} | {t.what}: *{t.verdict}* | "
                         f"{e.fmt(t.scale, t.unit) if e else '—'} | {e.n if e else '—'} | "
                         f"{', '.join(f'{t.scale * x:+.1f}' for x in e.seeds) if e else '—'} |")
    lines += ["", *_levels(s, held_out, rcfg.traps), "", *_parts(s, out), "", *_claims(s), "",
              *_examples(s, held_out)]
    plots = _plots(s, out, held_out, rcfg.traps)
    lines += ["", "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots]]
    lines += ["", "## Wall time", "", *_walls(s, out)]
    if rcfg.perception.get("checkpoint"):
        lines += ["", f"The perception checkpoint was trained before this run ({rcfg.perception['checkpoint']}) and "
                      "not retrained: perception phase-1 here only evaluates it."]
    path = out / "reproduction.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _test_json(t: Check) -> dict:
    e = t.effect
    return {"test": t.what, "verdict": t.verdict, "margin": t.margin,
            **({"mean": e.mean, "ci95": [e.lo, e.hi], "items": e.n, "per_seed": e.seeds, "seed_sd": e.sd} if e else {})}


def _levels(s: Seeds, held_out: list[str], traps: list[str]) -> list[str]:
    """Accuracy of every model, thinking and not, on seen / held-out / trap items, with intervals."""
    g = groups(s, held_out, traps)
    T = s.last_round()
    rows = [("cold start", "eval0"), *[(f"MGRD round {t}", f"eval{t}") for t in range(1, T + 1)],
            ("(a) anomaly", "a-eval"), ("(b) labels only", "b-eval"), ("C3 paper's reward", "c3-audio-eval"),
            ("C3 accuracy only", "c3-accuracy-eval"), ("C4 pass@k in band", "c4-band-eval"), ("C4 never solved", "c4-never-eval"),
            ("C5 grounded", "c5-grounded-eval"), ("C5 surrogate", "c5-surrogate-eval")]
    cols = [k for k in ("seen", "held-out", "held-out hard", "traps") if g[k]]
    lines = ["## Accuracy of every model (mean over seeds [95% interval over items]; reasoning tokens)", "",
             "| model | mode | " + " | ".join(cols) + " | reasoning tokens |", "|---|---|" + "---|" * (len(cols) + 1)]
    for name, prefix in rows:
        for mode in ("think", "no-think"):
            stage = f"{prefix}-{mode}"
            if not s.has(stage):
                continue
            cells = []
            for k in cols:
                e = level(s.values(stage), g[k])
                cells.append("—" if e is None else f"{100 * e.mean:.1f} [{100 * e.lo:.1f}, {100 * e.hi:.1f}]")
            tok = level(s.values(stage, "tokens"))
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + (f" | {tok.mean:.0f} |" if tok else " | — |"))
    return lines


def _parts(s: Seeds, out: Path) -> list[str]:
    """Per-family direct accuracy (not thinking) per difficulty: the perception stage (when it ran), the cold
    start and the final round: the parts every composition is built from."""
    T = s.last_round()
    phases = [(d.name, stage_dirs(d).get("eval0-no-think")) for d in perception_phases(out)]
    stages = [(f"perception {name}", [eval_items(d)]) for name, d in phases if d] + [
        ("cold start", s.evals("eval0-no-think")), (f"round {T}", s.evals(f"eval{T}-no-think"))]
    arrow = " → ".join(name for name, _ in stages)
    lines = [f"## The parts: direct accuracy (not thinking) per family and difficulty, {arrow}", "",
             "| question type | easy | medium | hard |", "|---|---|---|---|"]
    if not any(evals for _, evals in stages):
        return lines + ["| (not run) | | | |"]
    keys = sorted({(r.task, r.qtype) for _, evals in stages for rows in evals for r in rows.values()})
    for task, qtype in keys:
        cells = []
        for diff in ("easy", "medium", "hard"):
            def acc(evals):
                vals = [r.correct for rows in evals for r in rows.values()
                        if (r.task, r.qtype, r.difficulty) == (task, qtype, diff)]
                return f"{100 * np.mean(vals):.0f}" if vals else "—"
            cells.append(" → ".join(acc(evals) for _, evals in stages))
        lines.append(f"| {task}:{qtype} | " + " | ".join(cells) + " |")
    return lines


def claim_kinds(d: Path) -> tuple[dict[str, Counter], int, int]:
    """What a `curate filter` run's chains claim about the sound: per claim kind the count per status
    (grounded / contradicted / unverifiable), the number of chains, and the chains with a claim and none
    contradicted (the filter keeps only those)."""
    kinds: dict[str, Counter] = defaultdict(Counter)
    chains = clean = 0
    for line in (d / "verdicts.jsonl").read_text().splitlines():
        v = json.loads(line)
        chains += 1
        statuses = [c["status"] for c in v["claims"]]
        clean += bool(statuses) and "contradicted" not in statuses
        for c in v["claims"]:
            kinds[c["kind"]][c["status"]] += 1
    return kinds, chains, clean


def _claims(s: Seeds) -> list[str]:
    """Per claim kind, how often the model's own sampled chains on the test questions are borne out by the clip,
    at the cold start and after the last round (all seeds pooled): why the filter keeps what it keeps."""
    T = s.last_round()
    stages = [(name, [claim_kinds(s.dirs[x][st]) for x in s.seeds if st in s.dirs[x]])
              for name, st in (("cold start", "eval0-grounding"), (f"round {T}", f"eval{T}-grounding"))]
    stages = [(name, runs) for name, runs in stages if runs]
    if not stages:
        return []
    arrow = " → ".join(name for name, _ in stages)
    lines = [f"## What the model's own chains claim about the sound, {arrow}", "",
             "Sampled chains on the evaluated questions, read by the grounding filter, all seeds pooled: per kind of "
             "claim, the share borne out by the clip / contradicted by it (within a listener's tolerance).", "",
             "| claim kind | claims | borne out % | contradicted % |", "|---|---|---|---|"]
    pooled = []  # per stage: claim kind -> status counts over seeds
    for _, runs in stages:
        kinds: dict[str, Counter] = defaultdict(Counter)
        for per_kind, _, _ in runs:
            for kind, counts in per_kind.items():
                kinds[kind].update(counts)
        pooled.append(kinds)

    def across(kind: str, cell) -> str:
        return " → ".join(cell(kinds.get(kind, Counter())) for kinds in pooled)

    for kind in sorted({k for kinds in pooled for k in kinds}, key=lambda k: -sum(pooled[0][k].values())):
        pct = lambda status: lambda c: f"{100 * c[status] / max(1, sum(c.values())):.0f}"  # noqa: E731
        lines.append(f"| {kind} | {across(kind, lambda c: str(sum(c.values())))} | {across(kind, pct('grounded'))} | "
                     f"{across(kind, pct('contradicted'))} |")
    chains = " → ".join(f"{100 * sum(c for _, _, c in runs) / max(1, sum(n for _, n, _ in runs)):.1f}%"
                        for _, runs in stages)
    lines += ["", f"Chains with at least one claim and none contradicted (the filter's first condition): {chains}."]
    return lines


def _examples(s: Seeds, held_out: list[str]) -> list[str]:
    """One held-out item (else any) answered by the cold start and the final round of the first seed."""
    T = s.last_round()
    if not s.seeds or not s.has("eval0-think") or not s.has(f"eval{T}-think"):
        return []
    lines = chain_before_after(s.evals("eval0-think")[0], s.evals(f"eval{T}-think")[0], held_out, f"Round {T}")
    return [f"## One chain before and after MGRD (seed {s.seeds[0]}, {lines[0]})", "", *lines[1:]] if lines else []


def chain_before_after(before: dict[str, ItemRow], after: dict[str, ItemRow], held_out: list[str],
                       after_name: str) -> list[str]:
    """The same item answered before (the cold start) and after MGRD: a held-out item the model got right only
    after, else any held-out item, else any. First line: `item ID`; then markdown."""
    ids = sorted(set(before) & set(after))
    ranked = sorted(ids, key=lambda i: (f"{after[i].task}:{after[i].qtype}" not in held_out,
                                        not (after[i].correct > before[i].correct), i))
    if not ranked:
        return []
    i = ranked[0]
    return [f"item {i}", f"Question type {after[i].task}:{after[i].qtype} ({after[i].difficulty}).", "",
            f"Cold start ({'right' if before[i].correct else 'wrong'}):", "", "```", before[i].raw.strip(), "```", "",
            f"{after_name} ({'right' if after[i].correct else 'wrong'}):", "", "```", after[i].raw.strip(), "```"]


def _walls(s: Seeds, out: Path) -> list[str]:
    """Wall time of the perception stage (once) and of every seed's stages, from their stage records."""
    def minutes(dirs: dict[str, Path]) -> float:
        return sum(json.loads((d / "stage.json").read_text()).get("wall_s") or 0 for d in dirs.values()) / 60

    lines = ["| run | stages | wall time (min) |", "|---|---|---|"]
    for phase in perception_phases(out):
        if dirs := stage_dirs(phase):
            lines.append(f"| perception {phase.name} (once) | {len(dirs)} | {minutes(dirs):.1f} |")
    for seed in s.seeds:
        lines.append(f"| seed {seed} | {len(s.dirs[seed])} | {minutes(s.dirs[seed]):.1f} |")
    return lines


def _plots(s: Seeds, out: Path, held_out: list[str], traps: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = groups(s, held_out, traps)
    T = s.last_round()
    paths = []

    def mean_of(stage, ids, attr="correct", which=None):
        vals = s.grounding(stage, which) if which is not None else s.values(stage, attr)
        e = level(vals, ids) if vals else None
        return None if e is None else e.mean

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, key in zip(axes, ("seen", "held-out")):
        for mode, style in (("think", "o-"), ("no-think", "s--")):
            ys = [mean_of(f"eval{t}-{mode}", g[key]) if s.has(f"eval{t}-{mode}") else None for t in range(T + 1)]
            ax.plot(range(T + 1), [np.nan if y is None else 100 * y for y in ys], style, label=mode)
        ax.set_title(f"{key} question types")
        ax.set_xlabel("round (0: cold start)")
        ax.set_xticks(range(T + 1))
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend()
    paths.append(_save(fig, out / "accuracy_per_round.png"))

    if s.has("eval0-grounding"):
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ys = [mean_of(f"eval{t}-grounding", None, which=0) if s.has(f"eval{t}-grounding") else None
              for t in range(T + 1)]
        ax.plot(range(T + 1), [np.nan if y is None else 100 * y for y in ys], "o-")
        ax.set_xlabel("round (0: cold start)")
        ax.set_ylabel("own chains kept by the filter (%)")
        ax.set_xticks(range(T + 1))
        paths.append(_save(fig, out / "keep_rate_per_round.png"))

    for name, key, stages, ylabel in (
            ("c3_reasoning_length", "reasoning_tokens", ("c3-rl-audio", "c3-rl-accuracy"), "reasoning tokens"),
            ("c4_reward", "reward", ("c4-rl-band", "c4-rl-never"), "rollout reward")):
        if not any(s.has(st) for st in stages):
            continue
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for st, color in zip(stages, ("tab:blue", "tab:orange")):
            for k, seed in enumerate(s.seeds):
                if st in s.dirs[seed]:
                    xs, ys = zip(*rl_curve(s.dirs[seed][st], key)) if rl_curve(s.dirs[seed][st], key) else ((), ())
                    ax.plot(xs, ys, color=color, alpha=0.8, label=st if k == 0 else None)
        ax.set_xlabel("RL step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        paths.append(_save(fig, out / f"{name}.png"))

    audits = [(label, st) for label, st in (("cold start", "eval0-selfcog"), ("distilled", "iter1-distill-selfcog"),
                                            ("DPO", "iter1-dpo-selfcog"), (f"round {T}", f"eval{T}-selfcog"))
              if s.has(st)]
    if audits:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        rates = [level(s.refusals(st)) for _, st in audits]
        ax.bar(range(len(audits)), [100 * r.mean if r else 0 for r in rates],
               yerr=[[100 * (r.mean - r.lo) if r else 0 for r in rates], [100 * (r.hi - r.mean) if r else 0
                                                                           for r in rates]], capsize=3)
        ax.set_xticks(range(len(audits)))
        ax.set_xticklabels([a for a, _ in audits])
        ax.set_ylabel("self-cognition errors (%)")
        paths.append(_save(fig, out / "self_cognition.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
