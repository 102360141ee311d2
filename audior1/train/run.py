"""What SFT and RL share: setting a run up, the optimizer and its schedule, the divergence guard, generation
for evaluation and rollouts.

Design choices
- A run starts from `model` (a checkpoint directory in the official layout) or, with `--resume`, from the
  latest complete checkpoint in `out_dir`, which is itself such a directory: resuming is "load these
  weights, then restore optimizer, RNG and data position".
- AdamW with decoupled weight decay on matrices only (not on norms, biases or the embedding-free head
  bias); linear warmup then cosine decay to `min_lr_ratio × lr`, a pure function of the step.
- A non-finite loss or gradient norm saves a checkpoint of the state that produced it and stops with a
  message (`Diverged`), rather than training on garbage.
- Under torchrun no process ever holds the whole model while loading: `start` only checks the checkpoint
  and builds the model on the meta device (`load_or_plan`), and `Run.shard` wraps it with FSDP2 and fills
  each process's shards (`distributed.load_sharded`). A single process loads as it always did.
- Generation (dev accuracy, rollouts) always goes through `audior1.engine.Engine`; under FSDP it runs on an
  unsharded copy refreshed from the sharded weights, allocated on the device without reading the checkpoint.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from audior1.checkpoint import WeightSource, load_model, load_part, materialize, open_checkpoint
from audior1.processor import Processor
from audior1.train import distributed, state
from audior1.train.config import Optim, dump_yaml
from audior1.train.data import AudioStore, render, user_message
from audior1.train.distributed import Dist
from audior1.train.logging import RunLog
from audior1.train.policy import set_trainable


class Diverged(RuntimeError):
    """The loss or gradient became NaN/Inf; a checkpoint was saved first (the message says where)."""


@dataclass
class Run:
    cfg: object
    d: Dist
    model: torch.nn.Module  # StepAudioR1ForCausalLM (unsharded until `shard`)
    processor: Processor
    store: AudioStore
    log: RunLog
    resume_from: Path | None
    start_dir: Path
    trainable_params: int
    infer_copy: torch.nn.Module | None = None
    extra: dict = field(default_factory=dict)
    weights: WeightSource | None = None  # torchrun: the checked plan that `shard` fills `model` from

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.cfg.dtype == "bfloat16" else torch.float32

    def autocast(self):
        """bf16 autocast in a single process (under FSDP the mixed-precision policy casts instead)."""
        if self.cfg.dtype == "bfloat16" and not self.d.enabled:
            return torch.autocast(self.d.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def progress(self, iterable=None, **kwargs):
        return tqdm(iterable, disable=not (self.d.main and self.cfg.progress), dynamic_ncols=True, **kwargs)

    def inference_model(self, trained_root: torch.nn.Module) -> torch.nn.Module:
        """The model the engine should use: the training model itself, or (FSDP) a refreshed plain copy."""
        if not self.d.enabled:
            return self.model
        if self.infer_copy is None:  # every weight is overwritten next: allocate it, read nothing
            self.infer_copy = materialize(self.model.config, self.compute_dtype, self.d.device)
        distributed.sync_copy(self.infer_copy, self.model)
        return self.infer_copy

    def shard(self, root: torch.nn.Module, network: torch.nn.Module, weights: WeightSource | None = None,
              prefix: str = "model.", fresh: tuple[str, ...] = ()) -> None:
        """torchrun: wrap `root` (built on the meta device around `network`) with FSDP2, then fill this
        process's shards from `weights` (default: the start checkpoint); a failure on any process fails
        all of them. A single process: nothing (its model was loaded whole)."""
        if not self.d.enabled:
            return
        distributed.shard(root, network.model.layers, self.compute_dtype)
        weights = weights or self.weights
        distributed.agree(self.d, lambda: distributed.load_sharded(root, weights, self.d.device, prefix, fresh))


def load_or_plan(d: Dist, path: Path | str, dtype: torch.dtype) -> tuple[torch.nn.Module, WeightSource | None]:
    """A single process: the loaded model, as always. torchrun: the model on the meta device and the checked
    plan for its weights (config and safetensors headers only, checked on every process together), for
    `Run.shard` to fill once the model is sharded."""
    if not d.enabled:
        return load_model(path, dtype=dtype, device=d.device), None
    return distributed.agree(d, lambda: open_checkpoint(path, dtype))


def _cache_encoder(d: Dist, model, start_dir: Path, cache_dir) -> torch.nn.Module | None:
    """The encoder the feature cache runs (and fingerprints). A single process uses the model's own; under
    torchrun the model's is sharded, so each process loads an unsharded fp32 copy of just the encoder —
    the same weights in the same dtype, hence the same cache directory and outputs."""
    if not d.enabled:
        return model.encoder
    if cache_dir is None:
        return None
    return distributed.agree(d, lambda: load_part(start_dir, "encoder", torch.float32, d.device))


def start(cfg, resume) -> Run:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = distributed.init()
    resume_from = state.resolve_resume(cfg.out_dir, resume) if d.main else None
    resume_from = d.broadcast_object(str(resume_from) if resume_from else None)
    resume_from = Path(resume_from) if resume_from else None
    start_dir = resume_from or Path(cfg.model)
    torch.manual_seed(cfg.seed)
    model, weights = load_or_plan(d, start_dir, torch.float32)  # fp32 master weights
    processor = Processor.from_pretrained(start_dir)
    n_trainable = set_trainable(model, cfg.trainable)
    resume_step = state.load_trainer_state(resume_from)["step"] if resume_from else None
    log = RunLog(cfg.out_dir, enabled=d.main, tensorboard=cfg.tensorboard, resume_step=resume_step)
    cache_dir = cfg.feature_cache
    if cache_dir and "encoder" in cfg.trainable:
        log.info("feature cache off: the encoder is trainable, so its outputs change every step")
        cache_dir = None
    store = AudioStore(processor, cache_dir, encoder=_cache_encoder(d, model, start_dir, cache_dir), strict=cfg.strict,
                       mel_memory=cfg.mel_memory, log=log.info)
    if d.main:
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out_dir) / "config.yaml").write_text(dump_yaml(cfg))
        where = f"resuming from {resume_from}" if resume_from else f"starting from {cfg.model}"
        log.info(f"{where}; {n_trainable:,} trainable parameters ({', '.join(cfg.trainable)}); "
                 f"{d.world} process(es) on {d.device}; dtype {cfg.dtype}")
    return Run(cfg, d, model, processor, store, log, resume_from, start_dir, n_trainable, weights=weights)


def prepare_audio(run: Run, paths: list[str], what: str) -> None:
    """Hash/check/encode clips. Rank 0 fills the cache first; the others then only read it."""
    paths = list(dict.fromkeys(paths))
    if run.d.main:
        run.store.prepare(paths, progress=lambda xs: run.progress(xs, desc=f"audio ({what})", leave=False))
    run.d.barrier()
    if not run.d.main:
        run.store.prepare(paths, write=False)


def audio_ready(run: Run) -> None:
    """Every clip of the run is prepared: under torchrun, free the private encoder copy the cache needed
    (the model's own, sharded encoder serves generation)."""
    if run.d.enabled and run.store.encoder is not None:
        freed = run.store.release_encoder()
        run.log.info(f"feature cache complete: released this process's encoder copy ({freed / 2**20:.1f} MB)")


# ---- optimisation -------------------------------------------------------------------------------------

def part_of(name: str) -> str:
    """encoder / adapter / decoder for a parameter name of the policy or value model."""
    name = name.removeprefix("model.")
    return name.split(".", 1)[0] if name.startswith(("encoder.", "adapter.")) else "decoder"


def make_optimizer(module: torch.nn.Module, o: Optim, lr: float | None = None) -> torch.optim.AdamW:
    """AdamW with one group per (part, decay or not); each group's `lr_scale` multiplies the schedule."""
    groups: dict[tuple[str, bool], list] = {}
    for name, p in module.named_parameters():
        if p.requires_grad:
            groups.setdefault((part_of(name), p.dim() >= 2), []).append(p)
    base = lr or o.lr
    out = [{"params": ps, "weight_decay": o.weight_decay if decay else 0.0,
            "lr_scale": getattr(o.lr_scale, part), "lr": base * getattr(o.lr_scale, part)}
           for (part, decay), ps in sorted(groups.items())]
    return torch.optim.AdamW(out, lr=base, betas=tuple(o.betas), eps=o.eps)


def lr_at(step: int, o: Optim, max_steps: int, base: float | None = None) -> float:
    """Linear warmup over `warmup_steps`, then cosine from lr to lr·min_lr_ratio at `max_steps`."""
    base = o.lr if base is None else base
    if o.warmup_steps and step < o.warmup_steps:
        return base * (step + 1) / o.warmup_steps
    span = max(1, max_steps - o.warmup_steps)
    progress = min(1.0, (step - o.warmup_steps) / span)
    return base * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def fill_missing_grads(params: list[torch.Tensor]) -> None:
    """Zero gradients for parameters this step did not reach (e.g. the adapter in an all-text batch), so
    every parameter has optimizer state after the first step and a checkpoint always holds all of it."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def finite(x: float) -> bool:
    return math.isfinite(x)


# ---- generation ------------------------------------------------------------------------------------

def prompt_messages(item: dict, kind: str) -> list[dict]:
    """The engine prompt of a manifest item rendered as `kind` (audio question or text question)."""
    text, paths, _, _ = render(item, kind)
    return user_message(text, [{"type": "audio", "audio": p} for p in paths])


def generate(run: Run, model: torch.nn.Module, prompts: list, params, max_batch_size: int = 64) -> list:
    """Completions of this rank's prompts (messages or Encoded) through the engine; `params` is one
    SamplingParams for all prompts or a list with one per prompt (e.g. a seed each). Returns
    list[list[Completion]]."""
    from audior1.engine import Engine

    params_list = params if isinstance(params, list) else [params] * len(prompts)
    was_training = model.training
    engine = Engine(model, run.processor, max_batch_size=max_batch_size)
    with torch.no_grad():
        requests = [engine.add(p, sp) for p, sp in zip(prompts, params_list)]
        while engine.busy:
            engine.step()
        out = [engine.completions(r) for r in requests]
    model.train(was_training)
    failed = [r.error for r in requests if getattr(r, "error", None)]
    if failed:
        raise RuntimeError(f"generation failed for {len(failed)} of {len(requests)} prompts: {failed[0]}")
    return out


def evaluate_generation(run: Run, model: torch.nn.Module, items: list[dict], kind: str, max_tokens: int,
                        think_budget: int | None, reward=None, seed: int = 0, temperature: float = 0.0,
                        samples: int = 1) -> dict:
    """Answers to `items` (split over ranks; greedy by default, else `samples` seeded samples each):
    accuracy overall and per task, mean reward (when given a reward function), mean reasoning tokens and
    the share of answers that reason (a non-empty think block, the format reward's test)."""
    from audior1.engine import SamplingParams
    from audior1.train.rewards import has_reasoning, is_correct

    mine = list(enumerate(items))[run.d.rank :: run.d.world]
    params = [SamplingParams(n=samples, temperature=temperature, max_tokens=max_tokens, max_think_tokens=think_budget,
                             seed=seed * 1_000_003 + i) for i, _ in mine]
    outs = generate(run, model, [prompt_messages(it, kind) for _, it in mine], params) if mine else []
    rows = []
    for (_, it), comps in zip(mine, outs):
        for c in comps:
            r = reward([c.text], answer=[it["answer"]], choices=[it.get("choices")])[0] if reward else None
            rows.append((it["task"], is_correct(c.text, it["answer"], it.get("choices")), r, c.reasoning_tokens,
                         has_reasoning(c.text)))
    rows = [r for part in run.d.gather_objects(rows) for r in part]
    result = {"accuracy": sum(r[1] for r in rows) / max(1, len(rows)), "eval_items": len(rows) // samples,
              "eval_reasoning_tokens": sum(r[3] for r in rows) / max(1, len(rows)),
              "eval_reasoning_share": sum(r[4] for r in rows) / max(1, len(rows))}
    if reward:
        result["reward"] = sum(r[2] for r in rows) / max(1, len(rows))
    for task in sorted({r[0] for r in rows}):
        sel = [r for r in rows if r[0] == task]
        result[f"accuracy/{task}"] = sum(r[1] for r in sel) / len(sel)
    return result

