"""`audior1 mgrd run` configuration: one YAML file, keys = these dataclass fields (loaded like training configs).

The training stages take the training recipes' own keys (`cold_start`, `text_rl`, `distill`, `rl` are mappings
of `SFTConfig` / `RLConfig` keys, minus `model` and `out_dir`, which the loop sets); they are checked by those
dataclasses when the plan is made, so a typo fails before anything runs, naming the stage and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audior1.config import ConfigError


@dataclass
class DataSpec:
    """The suite the run generates into OUT/data (train: cold start, selection and RL pools; test: eval)."""

    tasks: list[str] = field(default_factory=lambda: ["pitch_compare", "duration_compare", "pitch_and_duration"])
    n_per_task: int = 100
    seed: int = 0
    recordings: str | None = None  # FSDD recordings, where `tasks` names FSDD families (default: ../shared/data)


@dataclass
class SelectSpec:
    """Which audio questions an iteration distils on (from the train split: never evaluated on)."""

    tasks: list[str] | None = None
    question_types: list[str] | None = None  # "task:question_type" keys
    limit: int | None = 64  # per iteration; a different seeded subset each iteration


@dataclass
class SampleSpec:
    """How chains are sampled (`sample` and `passk`): the local engine, or an OpenAI-compatible endpoint."""

    k: int = 4  # chains per question for distillation
    temperature: float = 0.7
    max_tokens: int = 160
    endpoint: str | None = None  # e.g. http://127.0.0.1:8000/v1 (serving the stage's checkpoint)
    served_model: str | None = None
    concurrency: int = 4


@dataclass
class PasskSpec:
    k: int = 8
    band: list[int] = field(default_factory=lambda: [3, 6])
    temperature: float = 1.0
    limit: int | None = 64  # RL-pool questions scored per iteration


@dataclass
class EvalSpec:
    split: str = "test"  # the split evaluated every round: test, or dev while designs are decided
    limit: int | None = None  # items of that split (None: all)
    modes: list[str] = field(default_factory=lambda: ["think", "no-think"])
    max_tokens: int = 160
    sampled_k: int = 0  # > 0: also k samples per item at `sampled_temperature` (pass@1 mean and majority@k)
    sampled_temperature: float = 0.7
    self_cognition: int = 0  # > 0: an audit of this many open audio prompts; its refusal rate every round


@dataclass
class MGRDConfig:
    out_dir: str = "runs/mgrd"
    model: str | None = None  # a checkpoint directory; None: `audior1 init --preset init_preset`
    init_preset: str = "demo"
    seed: int = 0
    data: DataSpec = field(default_factory=DataSpec)
    # "task:question_type"s held out of direct audio supervision: the cold start's audio-supervised sources
    # (direct, audio_cot, surrogate, refusal) exclude them; captions and text CoT still teach their parts
    held_out: list[str] = field(default_factory=list)
    cold_start: dict = field(default_factory=dict)  # SFTConfig keys; `skip: true` to start from `model`
    text_rl: dict = field(default_factory=dict)  # RLConfig keys (PPO, no KL, text prompts); `skip: true`
    iterations: int = 2
    select: SelectSpec = field(default_factory=SelectSpec)
    sample: SampleSpec = field(default_factory=SampleSpec)
    filter_source: str = "auto"  # meta | audio | auto
    distill: dict = field(default_factory=dict)  # SFTConfig keys; `data`: sources beside the kept chains (default: text CoT 0.5)
    passk: PasskSpec = field(default_factory=PasskSpec)
    dpo: dict = field(default_factory=lambda: {"skip": True})  # DPOConfig keys: a kept chain against a refusal /
    # surrogate / incoherent one of the same prompt, after distillation (`skip: false` to run it)
    rl: dict = field(default_factory=dict)  # RLConfig keys; `skip: true` to distil only
    eval: EvalSpec = field(default_factory=EvalSpec)

    def validate(self) -> "MGRDConfig":
        problems = []
        if self.iterations < 0:
            problems.append(f"iterations must be ≥ 0, got {self.iterations}")
        if self.filter_source not in ("auto", "meta", "audio"):
            problems.append(f"filter_source must be auto, meta or audio, got {self.filter_source!r}")
        lo, hi = (self.passk.band + [None, None])[:2]
        if len(self.passk.band) != 2 or not 0 <= lo <= hi <= self.passk.k:
            problems.append(f"passk.band must be [lo, hi] with 0 ≤ lo ≤ hi ≤ passk.k={self.passk.k}, "
                            f"got {self.passk.band}")
        for name in ("k", "max_tokens"):
            if getattr(self.sample, name) < 1:
                problems.append(f"sample.{name} must be ≥ 1")
        bad = [k for k in self.held_out if ":" not in str(k)]
        if bad:
            problems.append(f"held_out: {bad} must be task:question_type keys")
        if self.eval.split not in ("dev", "test"):
            problems.append(f"eval.split must be dev or test, got {self.eval.split!r}")
        bad = [m for m in self.eval.modes if m not in ("think", "no-think")]
        if bad:
            problems.append(f"eval.modes: {bad} not in think, no-think")
        for stage in ("cold_start", "text_rl", "distill", "dpo", "rl"):
            forbidden = {"model", "out_dir"} & set(getattr(self, stage))
            if forbidden:
                problems.append(f"{stage}: {', '.join(sorted(forbidden))} are set by the loop; remove them")
        if problems:
            raise ConfigError("invalid MGRD config: " + "; ".join(problems))
        return self
