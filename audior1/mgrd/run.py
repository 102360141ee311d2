"""`audior1 mgrd run`: the MGRD loop (paper §4) as a plan of ordinary `audior1` commands, run and resumed.

The plan: `data` → `init` → `cold_start` (SFT on the mixture) → `text_rl` (PPO, no KL, text questions) → `eval`,
then for t = 1…T: `select` → `sample` (K chains per question) → `filter` (`judge_chain`: correct ∧ grounded ∧
coherent ∧ not a surrogate ∧ no refusal) → `distill` (SFT on the kept chains + text CoT, fresh optimizer, from
the previous model) → `passk` (k samples per RL-pool question, keep 3 ≤ correct ≤ 6) → `rl` (audio reward
0.8·correct + 0.2·format, text reward correct) → `eval` (test items, thinking and not thinking).

Design choices
- Every stage is one `audior1 …` command, printed before it runs, writing into RUN/stages/NN-name/; the loop
  only writes the stage's YAML and bookkeeping. So any stage can be rerun, changed or launched by hand (under
  `torchrun` on a cluster, with `--sampler-endpoint` a vLLM server), and the loop holds no training logic.
- `stage.json` records the command, its fingerprint, the hashes of the manifests it read, wall time and the
  counts its command summarised. The fingerprint chains the stage's command and files with the fingerprint of
  the stage before it, so a change invalidates that stage and everything after it.
- `--resume`: a finished stage whose fingerprint matches is skipped; one that was interrupted is rerun with its
  command's own resume (`train --resume`; `eval` reuses its run directory; curation is idempotent); a stage
  whose fingerprint no longer matches stops the run, naming the stage and what changed.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audior1.config import ConfigError
from audior1.mgrd.config import MGRDConfig

STAGES_DIR = "stages"


@dataclass
class Stage:
    name: str                                   # "05-iter1-sample"
    argv: list[str]                             # the audior1 command
    files: dict[str, dict] = field(default_factory=dict)   # YAML files (relative to the stage dir) it reads
    resume_argv: list[str] = field(default_factory=list)   # appended when continuing an interrupted stage
    summary: str | None = None                  # a JSON file (relative to the stage dir) with its counts
    needs: str | None = None                    # a manifest that must hold items for the stage to train ...
    passthrough: tuple[str, str] | None = None  # ... else (previous model, this stage's checkpoint): linked


# ------------------------------------------------------------------------------------------- the plan
class Planner:
    """Builds the stage list, keeping track of the current model and the run's manifests."""

    def __init__(self, cfg: MGRDConfig):
        self.cfg = cfg
        self.root = Path(cfg.out_dir)
        self.stages: list[Stage] = []
        self.data = self.root / "data"
        self.train = self.data / "synth-train.jsonl"
        self.test = self.data / f"synth-{cfg.eval.split}.jsonl"  # the evaluated split (dev while deciding designs)
        self.model = cfg.model
        self.marks: dict[str, str] = {}  # named models and manifests of the plan, for the stages that branch off

    def dir(self, name: str) -> Path:
        return self.root / STAGES_DIR / f"{len(self.stages):02d}-{name}"

    def add(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        return stage

    def plan(self) -> list[Stage]:
        c = self.cfg
        self.add(Stage("00-data", ["data", "synth", "--out", str(self.data), "--split", "all", "--n-per-task",
                                   str(c.data.n_per_task), "--seed", str(c.data.seed), "--tasks", *c.data.tasks,
                                   *_opt("--recordings", c.data.recordings)]))
        # The evaluated items and the audit prompts are drawn with the data's seed, not the training seed: the
        # same for every round and for every training seed, so that effects pair per item across seeds
        if c.eval.limit:  # a seeded subset of the evaluated split
            d = self.dir("eval-items")
            self.add(Stage(d.name, ["curate", "select", str(self.test), "--out", str(d / "selected.jsonl"),
                                    "--limit", str(c.eval.limit), "--seed", str(c.data.seed)],
                           summary="summary.json"))
            self.test = d / "selected.jsonl"
        if c.eval.self_cognition:
            d = self.dir("selfcog-audit")
            self.audit_set = str(d / "audit.jsonl")
            split = self.data / f"synth-{c.eval.split}.jsonl"
            self.add(Stage(d.name, ["data", "self-cognition", "--from", str(split), "--out", self.audit_set, "--n",
                                    str(c.eval.self_cognition), "--seed", str(c.data.seed)]))
        if self.model is None:
            d = self.dir("init")
            self.add(Stage(d.name, ["init", "--preset", c.init_preset, str(d / "model"), "--seed", str(c.seed)]))
            self.model = str(d / "model")
        if not c.cold_start.get("skip"):
            data = c.cold_start.get("data") or self.cold_start_data()
            self.sft("cold_start", [self.hold_out(s) for s in data],
                     {k: v for k, v in c.cold_start.items() if k != "data"})
        if not c.text_rl.get("skip"):
            self.rl_stage("text_rl", [{"manifest": str(self.train), "kind": "text", "reward": "text"}], c.text_rl,
                          defaults={"algo": "ppo", "kl_coef": 0.0, "eval_kind": "text"})
        self.marks["cold_start"] = self.model
        self.evaluate("eval0")
        for t in range(1, c.iterations + 1):
            self.iteration(t)
        return self.stages

    def marks_after_plan(self) -> dict[str, str]:
        self.plan()
        return self.marks

    def cold_start_data(self) -> list[dict]:
        train = str(self.train)
        return [{"manifest": train, "kind": "text_cot", "weight": 1.0},
                {"manifest": train, "kind": "direct", "weight": 1.0},
                {"manifest": train, "kind": "caption", "weight": 0.3},
                {"manifest": train, "kind": "audio_cot", "weight": 0.1, "reasoning_field": "text_cot"}]

    def text_cot(self, weight: float = 0.5) -> dict:
        """The text-CoT source on the run's training split (what distillation mixes in by default)."""
        return {"manifest": str(self.train), "kind": "text_cot", "weight": weight}

    def distill_recipe(self) -> dict:
        """The `distill` training keys, without its `data` (the sources each distillation names itself)."""
        return {k: v for k, v in self.cfg.distill.items() if k != "data"}

    def hold_out(self, source: dict) -> dict:
        """A cold-start or distillation source with the held-out question types excluded, where it supervises
        audio answers (the kept chains are not: a held-out type is learnt through the model's own grounded chains)."""
        if not self.cfg.held_out or source.get("kind", "direct") not in ("direct", "audio_cot", "surrogate", "refusal"):
            return source
        return {**source, "exclude_question_types": sorted({*(source.get("exclude_question_types") or []),
                                                            *self.cfg.held_out})}

    def iteration(self, t: int) -> None:
        c = self.cfg
        d = self.dir(f"iter{t}-select")
        pool = str(d / "selected.jsonl")
        self.add(Stage(d.name, ["curate", "select", str(self.train), "--out", pool, "--seed", str(c.seed + t),
                                *_opt("--tasks", c.select.tasks), *_opt("--question-types", c.select.question_types),
                                *_opt("--limit", c.select.limit)], summary="summary.json"))
        d = self.dir(f"iter{t}-sample")
        samples = d / "predictions.jsonl"
        self.add(Stage(d.name, ["eval", "--bench", "synthetic", "--data", pool, *self.sampler(), "--n",
                                str(c.sample.k), "--temperature", str(c.sample.temperature), "--max-tokens",
                                str(c.sample.max_tokens), "--seed", str(c.seed + t), "--out", str(d), "--no-plots"],
                       summary="summary.json"))
        self.marks[f"iter{t}-pool"] = pool
        d = self.dir(f"iter{t}-filter")
        kept = d / "kept.jsonl"
        self.marks[f"iter{t}-kept"] = str(kept)
        self.add(Stage(d.name, ["curate", "filter", pool, str(samples), "--out", str(d), "--source", c.filter_source],
                       summary="summary.json"))
        # `distill.data`: the sources mixed in beside the kept chains (default: text CoT), held-out types held out
        extra = c.distill.get("data") or [self.text_cot()]
        self.sft(f"iter{t}-distill", [{"manifest": str(kept), "kind": "audio_cot", "weight": 1.0,
                                       "reasoning_field": "mgrd_cot"}, *[self.hold_out(x) for x in extra]],
                 self.distill_recipe(), needs=str(kept))
        self.marks[f"iter{t}-distill"] = self.model
        self.audit(f"iter{t}-distill")
        if not c.dpo.get("skip"):
            d = self.dir(f"iter{t}-dpo-pairs")
            pairs = str(d / "pairs.jsonl")
            self.add(Stage(d.name, ["curate", "dpo-pairs", pool, str(samples), "--out", pairs, "--source",
                                    c.filter_source, "--synthetic-refusal", "--seed", str(c.seed + t)]))
            self.dpo_stage(f"iter{t}-dpo", pairs, c.dpo)
            self.audit(f"iter{t}-dpo")
        self.marks[f"iter{t}-distilled"] = self.model  # distilled (and DPO-tuned): what RL starts from
        if not c.rl.get("skip"):
            d = self.dir(f"iter{t}-passk")
            selected = str(d / "selected.jsonl")
            self.add(Stage(d.name, ["curate", "passk", str(self.train), *self.sampler(), "--k", str(c.passk.k),
                                    "--band", *map(str, c.passk.band), "--temperature", str(c.passk.temperature),
                                    "--max-tokens", str(c.sample.max_tokens), *_opt("--limit", c.passk.limit),
                                    "--seed", str(c.seed + 100 + t), "--out", str(d)], summary="summary.json"))
            self.marks[f"iter{t}-passk-pool"] = str(d / "pool.jsonl") if c.passk.limit else str(self.train)
            self.rl_stage(f"iter{t}-rl", [{"manifest": selected, "kind": "audio", "reward": "audio", "weight": 1.0},
                                          {"manifest": str(self.train), "kind": "text", "reward": "text",
                                           "weight": 0.5}], c.rl, defaults={"algo": "ppo", "kl_coef": 0.0},
                          needs=selected)
        self.evaluate(f"eval{t}")

    def sources(self, sources: list[dict]) -> list[dict]:
        """`manifest: train | dev | test` names the run's own split (OUT/data/synth-SPLIT.jsonl)."""
        return [{**s, "manifest": str(self.data / f"synth-{s['manifest']}.jsonl")}
                if isinstance(s, dict) and s.get("manifest") in ("train", "dev", "test") else s for s in sources]

    def sampler(self) -> list[str]:
        s = self.cfg.sample
        if s.endpoint:
            return ["--endpoint", s.endpoint, *_opt("--served-model", s.served_model),
                    "--concurrency", str(s.concurrency)]
        return ["--model", self.model]

    def sft(self, name: str, data: list[dict], overrides: dict, needs: str | None = None) -> None:
        d = self.dir(name)
        cfg = {"model": self.model, "out_dir": str(d), "seed": self.cfg.seed, "data": data,
               "feature_cache": str(self.root / "feature-cache"),
               **{k: v for k, v in overrides.items() if k != "skip"}}
        cfg["data"] = self.sources(cfg["data"])
        _check("train sft", name, cfg)
        final = str(d / "checkpoints" / f"step-{cfg.get('max_steps', 1000):06d}")
        self.add(Stage(d.name, ["train", "sft", "--config", str(d / "sft.yaml"), "progress=false"], {"sft.yaml": cfg},
                       resume_argv=["--resume"], summary="result.json", needs=needs,
                       passthrough=(self.model, final)))
        self.model = final

    def dpo_stage(self, name: str, pairs: str, overrides: dict) -> None:
        d = self.dir(name)
        cfg = {"model": self.model, "out_dir": str(d), "seed": self.cfg.seed, "pairs": [pairs],
               "feature_cache": str(self.root / "feature-cache"), **{k: v for k, v in overrides.items() if k != "skip"}}
        _check("train dpo", name, cfg)
        final = str(d / "checkpoints" / f"step-{cfg.get('max_steps', 200):06d}")
        self.add(Stage(d.name, ["train", "dpo", "--config", str(d / "dpo.yaml"), "progress=false"], {"dpo.yaml": cfg},
                       resume_argv=["--resume"], summary="result.json", needs=pairs, passthrough=(self.model, final)))
        self.model = final

    def rl_stage(self, name: str, prompts: list[dict], overrides: dict, defaults: dict, needs: str | None = None
                 ) -> None:
        d = self.dir(name)
        cfg = {"model": self.model, "out_dir": str(d), "seed": self.cfg.seed, "prompts": prompts,
               "feature_cache": str(self.root / "feature-cache"), **defaults,
               **{k: v for k, v in overrides.items() if k != "skip"}}
        cfg["prompts"] = self.sources(cfg["prompts"])
        _check("train rl", name, cfg)
        algo = cfg.pop("algo")
        final = str(d / "checkpoints" / f"step-{cfg.get('max_steps', 100):06d}")
        self.add(Stage(d.name, ["train", "rl", "--algo", algo, "--config", str(d / "rl.yaml"), "progress=false"],
                       {"rl.yaml": cfg}, resume_argv=["--resume"], summary="result.json", needs=needs,
                       passthrough=(self.model, final)))
        self.model = final

    def evaluate(self, name: str, modes: list[str] | None = None) -> None:
        """Greedy accuracy per mode; with `sampled_k`, k samples per item and the grounding filter's verdict on
        them (the share of the model's own chains it keeps); with `self_cognition`, the audit. Naming `modes`
        asks for those greedy evaluations only."""
        e = self.cfg.eval
        for mode in modes or e.modes:
            d = self.dir(f"{name}-{mode}")
            self.add(Stage(d.name, ["eval", "--bench", "synthetic", "--data", str(self.test), "--model", self.model,
                                    f"--{mode}", "--temperature", "0", "--max-tokens", str(e.max_tokens),
                                    "--out", str(d), "--no-plots"], summary="summary.json"))
        if modes:
            return
        if e.sampled_k:
            d = self.dir(f"{name}-sampled")
            self.add(Stage(d.name, ["eval", "--bench", "synthetic", "--data", str(self.test), "--model", self.model,
                                    "--n", str(e.sampled_k), "--temperature", str(e.sampled_temperature),
                                    "--max-tokens", str(e.max_tokens), "--seed", str(self.cfg.seed), "--out", str(d),
                                    "--no-plots"], summary="summary.json"))
            samples = d / "predictions.jsonl"
            d = self.dir(f"{name}-grounding")
            self.add(Stage(d.name, ["curate", "filter", str(self.test), str(samples), "--out", str(d), "--source",
                                    self.cfg.filter_source], summary="summary.json"))
        self.audit(name)

    def audit(self, name: str) -> None:
        """The self-cognition audit of the current model (when the config asks for one)."""
        e = self.cfg.eval
        if e.self_cognition:
            d = self.dir(f"{name}-selfcog")
            self.add(Stage(d.name, ["curate", "self-cognition", self.audit_set, "--model", self.model,
                                    "--max-tokens", str(e.max_tokens), "--out", str(d)], summary="summary.json"))


def _opt(flag: str, value) -> list[str]:
    if value is None:
        return []
    return [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]


def _check(command: str, stage: str, cfg: dict) -> None:
    """Build the training dataclass now, so a bad key fails before anything runs."""
    from audior1.train.config import DPOConfig, RLConfig, SFTConfig, from_dict

    cls = {"train sft": SFTConfig, "train rl": RLConfig, "train dpo": DPOConfig}[command]
    try:
        from_dict(cls, cfg, stage).validate()
    except ConfigError as e:
        raise ConfigError(f"MGRD stage {stage} ({command}): {e}") from None


# ------------------------------------------------------------------------------------------- running
def fingerprint(previous: str, stage: Stage) -> str:
    blob = json.dumps({"previous": previous, "argv": stage.argv, "files": stage.files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _inputs(argv: list[str]) -> dict[str, str]:
    """Hashes of the manifests a command reads (the ones that exist when it starts)."""
    return {a: _sha(Path(a)) for a in argv if a.endswith(".jsonl") and Path(a).is_file()}


def run(cfg: MGRDConfig, *, resume: bool = False, log=print, planner: Planner | None = None) -> list[dict]:
    """Run (or resume) the plan (`planner`'s, default the MGRD loop's); return every stage's record."""
    import audior1.cli

    stages = (planner or Planner(cfg)).plan()
    root = Path(cfg.out_dir)
    stage_root = root / STAGES_DIR
    if stage_root.exists() and any(stage_root.iterdir()) and not resume:
        raise ConfigError(f"{root} already holds an MGRD run: pass --resume to continue it, or choose another out_dir")
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(_asdict(cfg), sort_keys=False))
    (root / "plan.txt").write_text("".join(f"{s.name}: audior1 {shlex.join(s.argv)}\n" for s in stages))
    log(f"MGRD run in {root}: {len(stages)} stages (plan: {root / 'plan.txt'})")
    previous, records = "", []
    for stage in stages:
        fp = fingerprint(previous, stage)
        records.append(_run_stage(stage, fp, stage_root / stage.name, audior1.cli.main, log))
        previous = fp
    log(f"MGRD run finished: {root} (report: audior1 mgrd report {root})")
    return records


def _run_stage(stage: Stage, fp: str, d: Path, main, log) -> dict:
    record_path = d / "stage.json"
    argv = list(stage.argv)
    if record_path.exists():
        old = json.loads(record_path.read_text())
        if old.get("fingerprint") != fp:
            raise ConfigError(f"stage {stage.name} no longer matches the run in {d.parent.parent}: "
                              f"{_what_changed(old, stage)}; use a new out_dir (or delete {d} and the stages after it)")
        if old.get("finished"):
            log(f"[{stage.name}: done in {old['wall_s']:.0f} s, fingerprint {fp}: skipped]")
            return old
        argv += stage.resume_argv
    d.mkdir(parents=True, exist_ok=True)
    for name, content in stage.files.items():
        (d / name).write_text(yaml.safe_dump(content, sort_keys=False))
    record = {"name": stage.name, "command": "audior1 " + shlex.join(argv), "fingerprint": fp,
              "argv": stage.argv, "files": stage.files, "inputs": _inputs(argv), "started": time.time(),
              "finished": None}
    record_path.write_text(json.dumps(record, indent=1))
    start = time.perf_counter()
    if stage.needs and not _has_items(Path(stage.needs)):
        src, dst = stage.passthrough
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        if not Path(dst).exists():
            Path(dst).symlink_to(Path(src).resolve(), target_is_directory=True)
        record["skipped"] = f"{stage.needs} holds no item: nothing to train on; the model is unchanged ({dst} -> {src})"
        log(f"\n[{stage.name}] SKIPPED: {record['skipped']}")
    else:
        log(f"\n[{stage.name}]\n$ audior1 {shlex.join(argv)}")
        code = main(argv)
        if code:
            raise SystemExit(f"mgrd: stage {stage.name} failed (exit status {code}); fix and rerun with --resume")
    record.update(finished=time.time(), wall_s=round(time.perf_counter() - start, 1), counts=_counts(d, stage))
    record_path.write_text(json.dumps(record, indent=1))
    log(f"[{stage.name}: {record['wall_s']:.0f} s]")
    return record


def _has_items(manifest: Path) -> bool:
    return manifest.is_file() and any(line.strip() for line in manifest.read_text(encoding="utf-8").splitlines())


def _what_changed(old: dict, stage: Stage) -> str:
    if old.get("argv") != stage.argv:
        was, now = set(old.get("argv") or []), set(stage.argv)
        return f"its command changed (now also {sorted(now - was)}, no longer {sorted(was - now)})"
    if old.get("files") != stage.files:
        for name, content in stage.files.items():
            before = (old.get("files") or {}).get(name) or {}
            keys = sorted(k for k in set(before) | set(content) if before.get(k) != content.get(k))
            if keys:
                return f"{name} changed in {', '.join(keys)}"
    return "a stage before it changed"


def _counts(d: Path, stage: Stage) -> dict:
    if stage.summary and (d / stage.summary).is_file():
        s = json.loads((d / stage.summary).read_text())
        if "metrics" in s:  # an eval run: the headline figures only
            m = s["metrics"][s["primary"]]
            k = s.get("counts", {}).get("samples_per_item", 1)
            return {"accuracy": m.get("pass@1"), "n": m.get("n"), "reasoning_tokens": s["reasoning_tokens"].get("mean"),
                    **({f"majority@{k}": m.get(f"majority@{k}"), "k": k} if k > 1 else {}),
                    "breakdown": {k: v[s["primary"]]["pass@1"] for k, v in
                                  (s.get("breakdown") or {}).get("task:question_type", {}).items()}}
        return s
    return {}


def _asdict(cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg)
