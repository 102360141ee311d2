"""Training configuration: small dataclasses whose field names are the YAML keys.

Design choices
- One dataclass per concern: a data `Source` (one manifest rendered one way, with a mixture weight),
  `Optim` (AdamW + warmup/cosine + clipping), and one top-level config per command (`SFTConfig`, `RLConfig`).
  A YAML file is exactly these fields, nested the same way; nothing is looked up by name at run time.
- The settings both commands share are declared once, in `TrainConfig` (with a comment per field, grouped:
  what trains, how long, audio input, evaluation, checkpoints and logging), and inherited flat, so the YAML
  keys are the same top-level names in every recipe. A recipe only adds its own settings and may change a
  shared default (`RLConfig.max_steps` is 100, `SFTConfig`'s 1000). The top-level keys come in one order —
  `model`, `out_dir`, the recipe's data (`SFTData`, `RLData`), the shared settings, the recipe's own — which
  is the order of `OUT/config.yaml` and of the "valid keys" list in errors; the small `RunDirs` base that the
  data groups and `TrainConfig` all start from is what puts the data right after `out_dir`.
- Validation: `TrainConfig.problems()` checks the shared settings and each recipe's `validate()` adds its
  own; every message names the key. All problems are reported together.
- `load_config(cls, path, overrides)` reads the YAML, applies `key=value` overrides (dotted paths, list
  indices allowed: `optim.lr=3e-4`, `data.1.weight=0.5`), then builds the dataclasses, converting values by
  the field's declared type (so `lr: 1e-3`, which YAML reads as a string, is a float). An unknown key fails
  with the list of valid keys at that level; a wrong type names the key.
- Errors are `audior1.config.ConfigError`, which the CLI prints as one line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audior1.config import ConfigError

SFT_KINDS = ("text_cot", "direct", "caption", "audio_cot", "surrogate", "refusal")
RL_KINDS = ("audio", "text")
PARTS = ("encoder", "adapter", "decoder")
DTYPES = ("float32", "bfloat16")
LOSS_NORMS = ("per-sequence", "per-token", "global-token")
ALGOS = ("grpo", "ppo")
SYNC_MODES = ("stream", "reload", "nccl")


@dataclass
class Source:
    """One manifest, rendered one way, with a weight in the mixture.

    SFT kinds: `text_cot` (caption + question as text → reasoning + answer), `direct` (audio question →
    empty think block + answer), `caption` (audio + `caption_prompt` → empty think block + caption),
    `audio_cot` (audio question → the chain in `reasoning_field` + answer), `surrogate` (audio question →
    `surrogate_cot` + `surrogate_answer`, the answer that chain reaches: an ablation that trains reasoning
    from transcripts and tags instead of the sound), `refusal` (audio question → a text model's "I cannot hear
    audio" + the independent guess `surrogate_answer`: a dose of the self-cognition bias, to measure its cure). RL kinds: `audio` (audio question) and `text` (caption +
    question as text).

    Question types are named within a family (`count_mc` is a question type of three), so the question-type
    filters take `task:question_type` keys (`count_events:count_mc`); a plain question type is accepted only
    where it names one family's question type among the items the source's `tasks` filter keeps."""

    manifest: str = ""
    kind: str = "direct"
    weight: float = 1.0
    tasks: list[str] | None = None  # keep only these families (None: all)
    question_types: list[str] | None = None  # keep only these "task:question_type"s (plain: if unambiguous)
    exclude_question_types: list[str] | None = None  # hold these "task:question_type"s out
    difficulties: list[str] | None = None  # keep only these difficulties (easy / medium / hard; a curriculum)
    # answers without reasoning (direct, caption) prompted as `think=False` is: the empty think block is prompt,
    # not target, so thinking-mode prompts are left to the reasoning kinds (the model then reasons when asked to)
    no_think_prompt: bool = False
    reasoning_field: str = "text_cot"  # audio_cot / text_cot: where the chain comes from
    limit: int | None = None  # first N items after filtering
    reward: str | None = None  # RL: reward function name (default: "audio" for audio, "text" for text)


@dataclass
class LrScale:
    """Per-part learning-rate multipliers. With Adam, the adapter's output norm drifts up (the decoder's
    RMSNorm makes the loss blind to its scale, so Adam's fixed-size steps random-walk it); when training the
    audio path from scratch, a smaller rate for it keeps the audio embeddings in range (docs/results.md)."""

    encoder: float = 1.0
    adapter: float = 1.0
    decoder: float = 1.0


@dataclass
class Optim:
    """AdamW and its schedule (`optim:` in the YAML), the same for every recipe."""

    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # decoupled, on matrices only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: int = 0  # linear warmup from lr / warmup_steps
    min_lr_ratio: float = 0.1  # cosine decays to lr × min_lr_ratio at the last step
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    lr_scale: LrScale = field(default_factory=LrScale)  # per-part multipliers of lr


@dataclass
class RolloutEndpoint:
    """Where RL rollouts come from (`rollout:` in the YAML). Without an `endpoint` the trainer generates them
    itself (colocated: an unsharded inference copy per process); with one, a separate inference server does
    (decoupled: audior1's `serve --enable-weight-updates`, or vLLM) and the trainer keeps its weights in sync
    after every optimizer step (audior1/train/rollout.py, docs/training.md)."""

    endpoint: str | None = None  # the server's base URL (http://host:port); null: colocated
    sync: str = "stream"  # stream (tensors over HTTP, audior1) | reload (save, then the server reloads) | nccl (vLLM)
    sync_every: int = 1  # steps between weight syncs; > 1 makes rollouts lag the policy (logged as policy_lag)
    reload_dir: str | None = None  # reload: a directory the server can read (default OUT/rollout-weights)
    api_key: str | None = None  # the server's API key (default: $AUDIOR1_API_KEY)
    chunk_mb: float = 64.0  # stream: tensors per HTTP request, at most this many MB (one tensor may exceed it)
    concurrency: int = 16  # chat requests in flight per process
    timeout_s: float = 600.0  # per HTTP request
    nccl_port: int = 29600  # nccl: the trainer's rendezvous port for vLLM's weight-transfer group

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)

    def problems(self) -> list[str]:
        problems = _one_of("rollout.sync", self.sync, SYNC_MODES)
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            problems.append(f"rollout.endpoint must be an http(s) URL, got {self.endpoint!r}")
        for name in ("sync_every", "concurrency"):
            if getattr(self, name) < 1:
                problems.append(f"rollout.{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("chunk_mb", "timeout_s"):
            if getattr(self, name) <= 0:
                problems.append(f"rollout.{name} must be > 0, got {getattr(self, name)}")
        return problems


@dataclass
class Lora:
    """LoRA instead of full fine-tuning (`lora:` in the YAML; absent or null: full fine-tuning). The base is
    frozen (`trainable` is then not used) and rank-`r` adapters of the `targets` train (audior1/train/lora.py);
    checkpoints hold the adapter in peft's format, which every tool loads over `model`."""

    r: int = 16  # rank
    alpha: float = 32.0  # scaling s = alpha / r
    dropout: float = 0.0  # dropout on the adapters' input (training only)
    # groups — attention (q/k/v/o_proj), mlp (gate/up/down_proj), adapter (the audio adapter's linear1/2) —
    # or names of linear layers
    targets: list[str] = field(default_factory=lambda: ["attention", "mlp"])
    base_dtype: str = "float32"  # bfloat16: keep the frozen base in bf16 (needs dtype: bfloat16); adapters fp32

    def problems(self) -> list[str]:
        problems = []
        if self.r < 1:
            problems.append(f"lora.r must be ≥ 1, got {self.r}")
        if self.alpha <= 0:
            problems.append(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            problems.append(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            problems.append("lora.targets must name at least one group (attention, mlp, adapter) or linear layer")
        return problems + _one_of("lora.base_dtype", self.base_dtype, DTYPES)


@dataclass
class RunDirs:
    """First in every config: where a run starts from and where it writes."""

    model: str = ""  # checkpoint directory to start from (official layout)
    out_dir: str = "runs/train"  # metrics.jsonl, config.yaml, plots/, checkpoints/


@dataclass
class TrainConfig(RunDirs):
    """The settings every training recipe shares (`SFTConfig`, `RLConfig` and any later one inherit them, so
    each key means the same in every YAML file). A recipe adds its own settings and may give a shared one a
    different default; it never renames one."""

    seed: int = 0  # one seed for the data order, sampling and initialisation

    # ---- what trains, in what precision
    trainable: list[str] = field(default_factory=lambda: ["adapter", "decoder"])  # subset of encoder/adapter/decoder
    dtype: str = "float32"  # compute dtype; bfloat16 = autocast with fp32 master weights
    activation_checkpointing: bool = False  # recompute each decoder layer in the backward pass
    lora: Lora | None = None  # LoRA adapters instead of full fine-tuning (see `Lora`); null: full fine-tuning

    # ---- how long, in what pieces
    max_steps: int = 1000  # optimizer steps (RL: rollout steps)
    micro_batch_size: int = 8  # rows per forward pass on one process (accumulation fills the rest)
    optim: Optim = field(default_factory=Optim)

    # ---- audio input
    feature_cache: str | None = "runs/feature-cache"  # encoder outputs on disk; None: re-encode audio every step
    mel_memory: bool = True  # without a feature cache: keep log-mels in memory (False: re-featurise each step)
    strict: bool = False  # fail on the first missing/corrupt audio file instead of skipping it

    # ---- evaluation on held-out items
    eval_every: int = 100  # steps between evaluations; 0 disables
    eval_items: int = 200  # held-out items used (a seeded subset spread over the manifest; 0: all)
    eval_kind: str = "direct"  # how held-out items are rendered: a Source kind of the recipe (SFT: dev loss)
    eval_max_tokens: int | None = 64  # answer tokens when generating for evaluation

    # ---- checkpoints and logging
    save_every: int = 200  # steps between checkpoints; 0: only at the end
    keep_checkpoints: int = 2  # complete checkpoints kept in out_dir/checkpoints (0: all)
    log_every: int = 10  # steps between `train` records in metrics.jsonl (the last step is always logged)
    tensorboard: bool = False  # mirror metrics.jsonl to TensorBoard (when installed)
    plots: bool = True  # redraw plots/*.png at every evaluation and at the end
    progress: bool = True  # a progress bar on rank 0
    threads: int | None = None  # torch CPU threads (None: torch's default; 1 is best on a busy machine)

    MIN_STEPS: typing.ClassVar[int] = 1  # the least max_steps allowed (not a key; RL allows 0: evaluate only)

    def problems(self) -> list[str]:
        """What is wrong with the shared settings (one message per problem, naming the key)."""
        problems = []
        if not self.model:
            problems.append("model: a checkpoint directory is required")
        bad = [p for p in self.trainable if p not in PARTS]
        if bad or not self.trainable:
            problems.append(f"trainable must be a non-empty subset of {', '.join(PARTS)}, got {self.trainable}")
        problems += _one_of("dtype", self.dtype, DTYPES)
        if self.lora is not None:
            problems += self.lora.problems()
            if self.lora.base_dtype == "bfloat16" and self.dtype != "bfloat16":
                problems.append("lora.base_dtype bfloat16 needs dtype: bfloat16 (the frozen bf16 base and the fp32 "
                                "adapters meet under bf16 autocast)")
        if self.max_steps < self.MIN_STEPS:
            problems.append(f"max_steps must be ≥ {self.MIN_STEPS}, got {self.max_steps}")
        for name in ("micro_batch_size", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be ≥ 1, got {getattr(self, name)}")
        o = self.optim
        if o.lr <= 0 or o.eps <= 0 or o.weight_decay < 0 or o.grad_clip < 0 or o.warmup_steps < 0:
            problems.append("optim: lr and eps must be > 0; weight_decay, grad_clip and warmup_steps ≥ 0")
        if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
            problems.append(f"optim.betas must be two numbers in [0, 1), got {o.betas}")
        if not 0 <= o.min_lr_ratio <= 1:
            problems.append(f"optim.min_lr_ratio must be in [0, 1], got {o.min_lr_ratio}")
        return problems


@dataclass
class SFTData(RunDirs):
    """What SFT trains and evaluates on."""

    data: list[Source] = field(default_factory=list)  # the mixture (kinds: see SFT_KINDS and Source)
    dev_manifest: str | None = None  # held-out items: dev loss and dev accuracy every eval_every steps


@dataclass
class SFTConfig(TrainConfig, SFTData):
    """`audior1 train sft`: model and out_dir, `SFTData`, the shared settings (`TrainConfig`), then these."""

    caption_prompt: str = "Describe the audio in detail."  # the user turn of `caption` examples
    # ---- batches
    batch_size: int = 8  # rows per optimizer step, all processes together
    max_seq_len: int = 1024  # row length when packing; longer examples are skipped and counted
    packing: bool = True  # False: one example per row, padded to the longest in the micro-batch
    # ---- evaluation
    eval_max_tokens: int = 64  # answer tokens for dev accuracy (never None: SFT has no max_new_tokens)
    eval_think_budget: int | None = None  # max reasoning tokens during eval generation
    eval_generate: bool = True  # False: dev loss only (generation needs an unsharded model copy per process)
    # ---- shared settings with SFT's defaults (TrainConfig documents them)
    out_dir: str = "runs/sft"

    def validate(self) -> "SFTConfig":
        problems = self.problems()
        problems += _sources_problems(self.data, "data", SFT_KINDS)
        problems += _one_of("eval_kind", self.eval_kind, SFT_KINDS)
        if self.batch_size < 1:
            problems.append(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.max_seq_len < 8:
            problems.append(f"max_seq_len must be ≥ 8, got {self.max_seq_len}")
        _raise(problems)
        return self


@dataclass
class RLData(RunDirs):
    """What RL trains and evaluates on, and how."""

    algo: str = "grpo"  # grpo | ppo (the CLI's --algo wins)
    prompts: list[Source] = field(default_factory=list)  # the prompt mixture (kinds: audio, text; each its reward)
    eval_manifest: str | None = None  # held-out prompts: mean reward and accuracy every eval_every steps


@dataclass
class RLConfig(TrainConfig, RLData):
    """`audior1 train rl`: model and out_dir, `RLData`, the shared settings (`TrainConfig`), then these."""

    # ---- rollouts
    prompts_per_step: int = 8  # all processes together; each rolls out its share
    samples_per_prompt: int = 16  # n (the paper: 16)
    temperature: float = 1.0  # sampling temperature; the log-probs are those of softmax(logits / temperature)
    top_p: float = 1.0  # nucleus sampling (1: off; the log-probs assume it is off)
    max_new_tokens: int = 256  # completion length limit (reasoning and answer together)
    max_think_tokens: int | None = None  # reasoning budget: `</think>` is forced after this many tokens
    rollout_batch_size: int = 64  # engine rows decoded together
    rollout: RolloutEndpoint = field(default_factory=RolloutEndpoint)  # colocated, or a server kept in sync
    # ---- optimisation over each rollout batch
    epochs: int = 2  # passes over each rollout batch
    minibatches: int = 2  # optimizer steps per epoch
    clip: float = 0.2  # the surrogate's ratio clip ε
    gamma: float = 1.0  # PPO: GAE discount
    lam: float = 1.0  # PPO: GAE λ (γ = λ = 1: A_t = R − V_t, as in the paper)
    kl_coef: float = 0.0  # > 0: k3 KL to the starting policy (a frozen copy is kept)
    entropy_coef: float = 0.0  # > 0: an entropy bonus
    loss_norm: str = "per-token"  # per-sequence | per-token | global-token
    scale_rewards: bool = True  # GRPO: divide group-centred rewards by the group's std
    value_lr: float = 1e-4  # PPO: the value model's learning rate (its own AdamW, same schedule)
    value_clip: float | None = None  # PPO: clip value updates around the rollout values
    value_coef: float = 1.0  # PPO: weight of the value loss in the summed loss
    # ---- evaluation
    eval_temperature: float = 0.0  # 0: greedy
    eval_samples: int = 1  # completions per held-out prompt (with eval_temperature > 0)
    # ---- the reasoning-collapse alarm
    collapse_window: int = 5  # steps averaged for the reasoning-length alarm
    collapse_ratio: float = 0.5  # alarm when the average falls below ratio × its peak
    # ---- shared settings with RL's defaults (TrainConfig documents them)
    out_dir: str = "runs/rl"
    max_steps: int = 100  # 0: only evaluate the held-out reward of `model` and stop
    micro_batch_size: int = 64  # sequences per forward pass (accumulation within a minibatch)
    optim: Optim = field(default_factory=lambda: Optim(lr=1e-5, min_lr_ratio=1.0))
    eval_every: int = 10
    eval_items: int = 100
    eval_kind: str = "audio"  # audio | text
    eval_max_tokens: int | None = None  # None: max_new_tokens
    save_every: int = 20
    log_every: int = 1

    MIN_STEPS: typing.ClassVar[int] = 0

    def validate(self) -> "RLConfig":
        problems = self.problems()
        problems += _one_of("algo", self.algo, ALGOS)
        problems += _sources_problems(self.prompts, "prompts", RL_KINDS)
        problems += _one_of("eval_kind", self.eval_kind, RL_KINDS)
        problems += _one_of("loss_norm", self.loss_norm, LOSS_NORMS)
        for name in ("prompts_per_step", "samples_per_prompt", "max_new_tokens", "epochs", "minibatches",
                     "rollout_batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0 < self.clip < 1:
            problems.append(f"clip must be in (0, 1), got {self.clip}")
        problems += self.rollout.problems()
        if self.top_p != 1.0:  # the loss scores softmax(logits / T); a nucleus-truncated draw is another policy
            problems.append(f"top_p must be 1 in RL (the log-probs are those of the untruncated distribution), "
                            f"got {self.top_p}")
        _raise(problems)
        return self


@dataclass
class DPOData(RunDirs):
    """What DPO trains on: preference pairs (docs/mgrd.md): manifest items with `chosen` and `rejected`
    completions, each {"reasoning": ..., "answer": ...}, for the same prompt."""

    pairs: list[str] = field(default_factory=list)  # pairs JSONL files (`audior1 curate dpo-pairs`)
    kind: str = "audio"  # the prompt: the audio question (audio) or its text rendering (text)


@dataclass
class DPOConfig(TrainConfig, DPOData):
    """`audior1 train dpo`: sigmoid DPO against the starting model, whose log-probs are computed once and cached
    (OUT/reference_logps.json), so a resumed run scores against the same reference."""

    beta: float = 0.1  # the KL strength of DPO's implicit reward
    batch_size: int = 8  # pairs per optimizer step, all processes together
    max_seq_len: int = 1024  # longer completions are skipped and counted
    out_dir: str = "runs/dpo"
    max_steps: int = 200
    micro_batch_size: int = 4  # pairs per forward pass
    optim: Optim = field(default_factory=lambda: Optim(lr=5e-6, min_lr_ratio=1.0))
    eval_every: int = 0

    def validate(self) -> "DPOConfig":
        problems = self.problems()
        if not self.pairs:
            problems.append("pairs: at least one pairs file is needed")
        problems += _one_of("kind", self.kind, RL_KINDS)
        if self.beta <= 0:
            problems.append(f"beta must be > 0, got {self.beta}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be ≥ 1, got {self.batch_size}")
        _raise(problems)
        return self


def _one_of(where: str, value, allowed) -> list[str]:
    return [] if value in allowed else [f"{where} {value!r} is not one of {', '.join(allowed)}"]


def _sources_problems(sources: list[Source], where: str, kinds) -> list[str]:
    """A non-empty list of sources, each of an allowed kind and well-formed."""
    problems = [] if sources else [f"{where}: at least one source is needed"]
    for i, s in enumerate(sources):
        problems += _one_of(f"{where}.{i}.kind", s.kind, kinds) + _source_problems(s, f"{where}.{i}")
    return problems


def _source_problems(s: Source, where: str) -> list[str]:
    problems = []
    if not s.manifest:
        problems.append(f"{where}.manifest is required")
    if s.weight <= 0:
        problems.append(f"{where}.weight must be > 0, got {s.weight}")
    if s.limit is not None and s.limit < 1:
        problems.append(f"{where}.limit must be ≥ 1 or null, got {s.limit}")
    for name in ("question_types", "exclude_question_types"):
        for key in getattr(s, name) or []:
            task, sep, qtype = str(key).partition(":")
            if not str(key).strip() or (sep and (not task or not qtype or ":" in qtype)):
                problems.append(f"{where}.{name}: {key!r} is not a question type or task:question_type")
    return problems


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError("invalid training config: " + "; ".join(problems))


# ---- YAML + overrides → dataclasses ------------------------------------------------------------

def load_config(cls, path: str | Path | None = None, overrides: list[str] | None = None, *, layer: str | None = None,
                **fixed):
    """Read `path` (YAML), apply `key=value` overrides and `fixed` values, build and validate `cls`. With
    `layer`, the file's mapping under that key is merged over the file first (e.g. `quick:`, a smaller run)."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    if layer is not None:
        if not isinstance(raw.get(layer) or {}, dict):
            raise ConfigError(f"{path}: {layer}: expected a mapping of this file's keys")
        raw = deep_merge(raw, raw.get(layer) or {})
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        _set_path(raw, key.strip().split("."), yaml.safe_load(value) if value.strip() else None, item)
    raw.update({k: v for k, v in fixed.items() if v is not None})
    return from_dict(cls, raw, str(path) if path else "config").validate()


def deep_merge(base: dict, over: dict) -> dict:
    """`base` with `over`'s values in place: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_path(node, keys: list[str], value, item: str) -> None:
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"override {item!r}: {key!r} is not an index of a list of {len(node)}")
            key = int(key)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(keys[:i])} is not a mapping")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


def from_dict(cls, raw, where: str):
    """Build dataclass `cls` from a mapping; unknown keys fail listing the valid ones."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(f.name for f in dataclasses.fields(cls))}, "
                          f"got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; valid keys: {', '.join(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where != "config" else k) for k, v in raw.items()}
    return cls(**kwargs)


def _convert(tp, value, where: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}.{i}") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value) if tp is float else value
            if tp is int and isinstance(value, str):
                number = int(value)
            if tp is int and isinstance(number, float):
                if not number.is_integer():
                    raise ValueError
                number = int(number)
            return tp(number)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {'an integer' if tp is int else 'a number'}, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
