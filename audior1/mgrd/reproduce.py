"""`audior1 mgrd reproduce`: the paper's claims (C0–C6) tested at small scale, as one resumable plan per seed.

One seed's plan is the MGRD line (c) of `mgrd run` — data → cold start (held-out question types get no direct
audio supervision) → T iterations, every round evaluated — followed by the arms the claims compare it with, each
branching off a model or manifest the line already made (`Planner.marks`), so no stage runs twice:

- `a-*`  baseline (a), the anomaly: the cold start + GRPO with the paper's reward, no distillation (C0, C1);
- `b-*`  baseline (b), labels only: the cold start + direct-answer SFT on exactly the labelled items the line's
         filters and RL used (C1);
- `c3-*` from the last distilled checkpoint, GRPO with the paper's reward and with `accuracy` alone (C3);
- `c4-*` from the same checkpoint, GRPO on questions with pass@k in [3, 6] and on questions never solved,
         the same steps and the same number of questions (C4);
- `c5-*` from the cold start, distillation on grounded chains and on textual-surrogate chains of the same
         non-trap questions, evaluated on the trap families (C5).
C2 and C6 read the line itself (per-round grounding of the model's own chains; the self-cognition audit after
the cold start, each distillation and each DPO stage).

Design choices
- The plan is built by `ReproducePlanner`, a `Planner` with more stages: the same stage records, fingerprints
  and `--resume` as `mgrd run`, so any arm can be rerun or inspected by hand from OUT/seed-S/plan.txt.
- Seeds change the training (initialisation, shuffles, sampling), never the data: every seed is evaluated on
  the same test items, so effects are paired per item and intervals are bootstrapped over items
  (`audior1.mgrd.verdicts`).
- Claims pick arms (`--claims C0,C3`); the line always runs, because every claim compares against it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audior1.config import ConfigError
from audior1.mgrd.config import MGRDConfig
from audior1.mgrd.run import Planner, Stage, _opt

CLAIMS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6")
ARMS_OF = {"C0": ("a",), "C1": ("a", "b"), "C2": (), "C3": ("c3",), "C4": ("c4",), "C5": ("c5",), "C6": ()}


@dataclass
class ReproduceConfig:
    """`configs/reproduce.yaml`: the MGRD line, the arms' budgets and what the verdicts compare."""

    out_dir: str = "runs/reproduce"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    claims: list[str] = field(default_factory=lambda: list(CLAIMS))
    mgrd: dict = field(default_factory=dict)      # MGRDConfig keys (out_dir and seed are set per seed)
    # SFTConfig keys of a perception stage trained once, before every seed's cold start (the paper's model was
    # pretrained on audio at scale before post-training): direct answers and captions, held-out types excluded;
    # its direct accuracy per family and difficulty is reported as "the parts". `phases:` a curriculum, each
    # phase a mapping of keys over the rest (`difficulties` filters every source) trained from the one before.
    # `skip: true` to start every seed from init; `checkpoint: DIR` to start from a perception checkpoint trained
    # before (by a dev run of the same recipe: the stage sees the train split only), evaluated here, not retrained.
    perception: dict = field(default_factory=lambda: {"skip": True})
    anomaly: dict = field(default_factory=dict)   # RLConfig keys for baseline (a) (default: the line's rl)
    labels: dict = field(default_factory=dict)    # SFTConfig keys for baseline (b) (default: the line's distill)
    format_rl: dict = field(default_factory=dict)  # RLConfig keys for C3's two runs
    band_rl: dict = field(default_factory=dict)   # RLConfig keys for C4's two runs
    band_pool: int = 96                           # C4: train questions scored with pass@k to find both bands
    surrogate: dict = field(default_factory=dict)  # SFTConfig keys for C5's two distillations
    traps: list[str] = field(default_factory=lambda: ["trap_count", "trap_chord", "trap_pitch"])
    margin: float = 0.02  # the smallest accuracy effect the verdicts call a difference (2 points)
    quick: dict = field(default_factory=dict)     # merged over this config by --quick (CI-sized smoke run)

    def validate(self) -> "ReproduceConfig":
        bad = [c for c in self.claims if c not in CLAIMS]
        if bad:
            raise ConfigError(f"claims: {bad} not among {', '.join(CLAIMS)}")
        if not self.seeds:
            raise ConfigError("seeds: give at least one training seed")
        return self

    def seed_config(self, seed: int) -> MGRDConfig:
        from audior1.train.config import from_dict

        raw = {**copy.deepcopy(self.mgrd), "out_dir": str(Path(self.out_dir) / f"seed-{seed}"), "seed": seed}
        if not self.perception.get("skip"):
            raw["model"] = perception_checkpoint(self)
        cfg = from_dict(MGRDConfig, raw, "mgrd").validate()
        if cfg.iterations < 1:
            raise ConfigError("mgrd.iterations must be ≥ 1: the claims compare the MGRD line after distillation")
        return cfg

    def perception_phases(self) -> list[tuple[MGRDConfig, str]]:
        """The perception stage's phases and the checkpoint each leaves: every phase an MGRD run with no
        iteration (data → SFT → greedy no-think eval) in OUT/perception/phase-N, starting from the previous
        phase's checkpoint (the first from init); with `checkpoint`, one phase that evaluates it, no training."""
        from audior1.train.config import from_dict

        base = copy.deepcopy(self.mgrd)
        recipe = {k: v for k, v in self.perception.items() if k not in ("skip", "phases", "checkpoint")}
        phases, model = self.perception.get("phases") or [{}], None
        if not isinstance(phases, list) or not all(isinstance(p, dict) for p in phases):
            raise ConfigError(f"perception.phases: expected a list of mappings, got {phases!r}")
        if self.perception.get("checkpoint"):  # trained before: one phase that only measures it on this split
            model = str(self.perception["checkpoint"])
            if not (Path(model) / "config.json").is_file():
                raise ConfigError(f"perception.checkpoint: {model} is not a checkpoint directory (no config.json)")
            recipe, phases = {}, [{"skip": True}]
        out = []
        for n, phase in enumerate(phases, 1):
            phase = dict(phase)
            levels = phase.pop("difficulties", None)
            cold = {**recipe, **phase}
            if levels is not None:
                cold["data"] = [{**src, "difficulties": levels} for src in cold.get("data") or []]
            raw = {k: base[k] for k in ("init_preset", "data", "held_out", "eval") if k in base}
            raw["eval"] = {**raw.get("eval", {}), "modes": ["no-think"], "sampled_k": 0, "self_cognition": 0}
            raw.update(out_dir=str(Path(self.out_dir) / "perception" / f"phase-{n}"), seed=0, iterations=0,
                       model=model, text_rl={"skip": True}, cold_start=cold)
            cfg = from_dict(MGRDConfig, raw, f"perception.phases[{n - 1}]").validate()
            model = Planner(cfg).marks_after_plan()["cold_start"]
            out.append((cfg, model))
        return out


def perception_checkpoint(rcfg: ReproduceConfig) -> str:
    """Where the perception stage's last phase leaves its checkpoint (or will)."""
    return rcfg.perception_phases()[-1][1]


def load(path: str | Path, overrides: list[str] | None = None, *, quick: bool = False) -> ReproduceConfig:
    """The config file, with `--quick` its `quick:` block merged in, then `key=value` overrides (dotted keys)."""
    from audior1.train.config import load_config

    return load_config(ReproduceConfig, path, overrides, layer="quick" if quick else None)


class ReproducePlanner(Planner):
    """The MGRD line, then the arms of the chosen claims, branching off its marks."""

    def __init__(self, cfg: MGRDConfig, rcfg: ReproduceConfig):
        super().__init__(cfg)
        self.r = rcfg
        self.arms = {a for c in rcfg.claims for a in ARMS_OF[c]}

    def plan(self) -> list[Stage]:
        super().plan()
        self.final_distilled = self.marks[f"iter{self.cfg.iterations}-distilled"]
        if self.arms & {"a", "b"}:
            self.labelled = self.union("labelled", [self.marks[k] for k in sorted(self.marks)
                                                    if k.endswith("-pool")])
        if "a" in self.arms:
            self.anomaly()
        if "b" in self.arms:
            self.labels_only()
        if "c3" in self.arms:
            self.format_reward()
        if "c4" in self.arms:
            self.bands()
        if "c5" in self.arms:
            self.surrogates()
        return self.stages

    # -- helpers ------------------------------------------------------------------------------------------
    def union(self, name: str, manifests: list[str]) -> str:
        d = self.dir(name)
        out = str(d / "selected.jsonl")
        self.add(Stage(d.name, ["curate", "select", *manifests, "--out", out], summary="summary.json"))
        return out

    def branch(self, model: str) -> None:
        self.model = model

    def audio_prompts(self, manifest: str, reward: str = "audio") -> list[dict]:
        return [{"manifest": manifest, "kind": "audio", "reward": reward, "weight": 1.0}]

    def rl_budget(self) -> dict:
        """The line's RL recipe with its total steps (T iterations × rl.max_steps)."""
        rl = {k: v for k, v in self.cfg.rl.items() if k != "skip"}
        rl["max_steps"] = self.cfg.iterations * int(rl.get("max_steps", 100))
        rl["save_every"] = rl["max_steps"]
        return rl

    # -- the arms -----------------------------------------------------------------------------------------
    def anomaly(self) -> None:
        """(a) cold start + RL with the paper's reward on the same labelled questions, no distillation."""
        self.branch(self.marks["cold_start"])
        self.rl_stage("a-rl", self.audio_prompts(self.labelled), {**self.rl_budget(), **self.r.anomaly},
                      defaults={"algo": "grpo", "kl_coef": 0.0})
        self.evaluate("a-eval", modes=["think", "no-think"])

    def labels_only(self) -> None:
        """(b) cold start + direct-answer SFT on exactly the labelled questions the line used."""
        self.branch(self.marks["cold_start"])
        steps = self.cfg.iterations * int(self.cfg.distill.get("max_steps", 150))
        self.sft("b-sft", [{"manifest": self.labelled, "kind": "direct", "weight": 1.0}],
                 {**self.distill_recipe(), "max_steps": steps, "save_every": steps, **self.r.labels})
        self.evaluate("b-eval", modes=["think", "no-think"])

    def format_reward(self) -> None:
        """C3: from the last distilled checkpoint, RL with the paper's reward and with correctness alone."""
        prompts = self.marks[f"iter{self.cfg.iterations}-pool"]
        for reward in ("audio", "accuracy"):
            self.branch(self.final_distilled)
            self.rl_stage(f"c3-rl-{reward}", self.audio_prompts(prompts, reward),
                          {**self.rl_budget(), **self.r.format_rl}, defaults={"algo": "grpo", "kl_coef": 0.0})
            self.evaluate(f"c3-{reward}-eval", modes=["think"])

    def bands(self) -> None:
        """C4: pass@k of the distilled model on a pool of train questions; RL on [3, 6] vs never solved."""
        c = self.cfg
        d = self.dir("c4-passk")
        self.add(Stage(d.name, ["curate", "passk", str(self.train), "--model", self.final_distilled, "--k",
                                str(c.passk.k), "--band", *map(str, c.passk.band), "--temperature",
                                str(c.passk.temperature), "--max-tokens", str(c.sample.max_tokens), "--limit",
                                str(self.r.band_pool), "--seed", str(c.seed + 500), "--out", str(d)],
                       summary="summary.json"))
        b = self.dir("c4-bands")
        lo, hi = c.passk.band
        self.add(Stage(b.name, ["curate", "bands", str(d / "pool.jsonl"), str(d / "samples" / "predictions.jsonl"),
                                "--bands", f"{lo}-{hi}", "0-0", "--seed", str(c.seed), "--out", str(b)],
                       summary="summary.json"))
        for name, band in (("band", f"{lo}-{hi}"), ("never", "0-0")):
            items = str(b / f"band-{band}.jsonl")
            self.branch(self.final_distilled)
            self.rl_stage(f"c4-rl-{name}", self.audio_prompts(items), {**self.rl_budget(), **self.r.band_rl},
                          defaults={"algo": "grpo", "kl_coef": 0.0}, needs=items)
            self.evaluate(f"c4-{name}-eval", modes=["think"])

    def surrogates(self) -> None:
        """C5: from the cold start, distil grounded chains vs textual surrogates of the same non-trap questions."""
        pool = self.marks["iter1-pool"]
        d = self.dir("c5-items")
        keep = [t for t in self.cfg.data.tasks if t not in self.r.traps]
        items = str(d / "selected.jsonl")
        self.add(Stage(d.name, ["curate", "select", pool, "--out", items, *_opt("--tasks", keep)],
                       summary="summary.json"))
        k = self.dir("c5-kept")
        kept = str(k / "selected.jsonl")
        self.add(Stage(k.name, ["curate", "select", self.marks["iter1-kept"], "--out", kept, *_opt("--tasks", keep),
                                "--allow-empty"], summary="summary.json"))
        recipe, text = self.distill_recipe(), self.text_cot()  # both arms: the chains + text CoT, nothing else
        for name, source in (("grounded", {"manifest": kept, "kind": "audio_cot", "weight": 1.0,
                                           "reasoning_field": "mgrd_cot"}),
                             ("surrogate", {"manifest": items, "kind": "surrogate", "weight": 1.0})):
            self.branch(self.marks["cold_start"])
            self.sft(f"c5-sft-{name}", [source, text], {**recipe, **self.r.surrogate}, needs=source["manifest"])
            self.evaluate(f"c5-{name}-eval", modes=["think"])


def run(rcfg: ReproduceConfig, *, resume: bool = False, log=print) -> Path:
    """Every seed's plan (resuming finished stages), then the verdicts and OUT/reproduction.md."""
    from audior1.mgrd import run as loop
    from audior1.mgrd.verdicts import write_reproduction

    out = Path(rcfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(_plain(rcfg), sort_keys=False))
    if not rcfg.perception.get("skip"):
        for cfg, _ in rcfg.perception_phases():
            log(f"\n=== perception stage (once, for every seed): {cfg.out_dir} ===")
            loop.run(cfg, resume=resume, log=log)
    for seed in rcfg.seeds:
        cfg = rcfg.seed_config(seed)
        log(f"\n=== seed {seed}: {cfg.out_dir} ===")
        loop.run(cfg, resume=resume, log=log, planner=ReproducePlanner(cfg, rcfg))
    return write_reproduction(rcfg)


def _plain(rcfg: ReproduceConfig) -> dict:
    import dataclasses

    return dataclasses.asdict(rcfg)
