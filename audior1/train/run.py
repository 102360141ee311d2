"""What SFT and RL share: setting a run up, the loop's bookkeeping (resume, checkpoints, the divergence
guard, the evaluation/save/log cadence, micro-batches, each rank's share), the optimizer and its schedule,
and generation for evaluation and rollouts. A recipe (`sft`, `rl`) is its own loop of numbered phases on top
of these pieces.

Design choices
- A run starts from `model` (a checkpoint directory in the official layout) or, with `--resume`, from the
  latest complete checkpoint in `out_dir`, which is itself such a directory: resuming is "load these
  weights, then restore optimizer, RNG and data position" (`Checkpointer.resume`).
- `Checkpointer` is the one place that knows what a checkpoint holds besides the weights: the recipe names
  its optimizers and its stateful parts (data position, alarm …: anything with `state_dict` /
  `load_state_dict`), and `save` / `resume` write and restore exactly those, so SFT and RL cannot drift apart.
- AdamW with decoupled weight decay on matrices only (not on norms, biases or the embedding-free head
  bias); linear warmup then cosine decay to `min_lr_ratio × lr`, a pure function of the step.
- A non-finite loss or gradient norm saves a checkpoint of the state that produced it and stops with a
  message (`stop_if_diverged` raises `Diverged`), rather than training on garbage.
- Cadence: evaluation and checkpoints every `eval_every` / `save_every` steps but not at the last step (the
  recipe evaluates and saves there anyway: `due`); a `train` record every `log_every` steps and at the last.
- Under torchrun no process ever holds the whole model while loading: `start` only checks the checkpoint
  and builds the model on the meta device (`load_or_plan`), and `Run.shard` wraps it with FSDP2 and fills
  each process's shards (`distributed.load_sharded`). A single process loads as it always did.
- Generation (dev accuracy, rollouts) always goes through `audior1.engine.Engine`; under FSDP it runs on an
  unsharded copy refreshed from the sharded weights, allocated on the device without reading the checkpoint.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from audior1.checkpoint import WeightSource, load_model, load_part, materialize, open_checkpoint
from audior1.processor import Processor
from audior1.train import distributed, lora, state
from audior1.train.config import Optim, dump_yaml
from audior1.train.data import AudioStore, render, user_message
from audior1.train.distributed import Dist
from audior1.train.logging import RunLog, plot
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
    lora_values: dict | None = None  # torchrun with LoRA: the adapters' values, for `shard` to fill in

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

    def plot(self, panels) -> None:
        """Redraw `OUT/plots/*.png` from metrics.jsonl (rank 0, with `plots: true`)."""
        if self.d.main and self.cfg.plots:
            plot(self.log.path, self.log.out_dir / "plots", panels)

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
        rename = lora.checkpoint_name_map(root) if lora.has_lora(network) else None
        distributed.agree(self.d, lambda: distributed.load_sharded(root, weights, self.d.device, prefix, fresh,
                                                                   rename))
        if network is self.model and self.lora_values is not None:
            lora.fill(network, self.lora_values)


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
    # LoRA checkpoints hold only the adapter: a resumed LoRA run starts from `model` and restores the adapter
    start_dir = resume_from if resume_from and not cfg.lora else Path(cfg.model)
    torch.manual_seed(cfg.seed)
    base_dtype = torch.bfloat16 if cfg.lora and cfg.lora.base_dtype == "bfloat16" else torch.float32
    model, weights = load_or_plan(d, start_dir, base_dtype)  # fp32 master weights (or a frozen bf16 LoRA base)
    processor = Processor.from_pretrained(start_dir)
    lora_values = None
    if cfg.lora:
        n_trainable = lora.inject(model, cfg.lora)
        lora_values = lora.saved_values(model, resume_from) if resume_from else lora.initial_values(model, cfg.seed)
        if not d.enabled:  # torchrun: `Run.shard` fills them once the model is sharded
            lora.fill(model, lora_values)
            lora_values = None
    else:
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
        if resume and not resume_from:  # `--resume` with nothing to resume is a fresh start: say so
            where = f"--resume: no checkpoint in {cfg.out_dir}, so step 0; {where}"
        what = (f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha:g} on {', '.join(cfg.lora.targets)}; base frozen in "
                f"{cfg.lora.base_dtype}" if cfg.lora else ", ".join(cfg.trainable))
        log.info(f"{where}; {n_trainable:,} trainable parameters ({what}); "
                 f"{d.world} process(es) on {d.device}; dtype {cfg.dtype}")
    return Run(cfg, d, model, processor, store, log, resume_from, start_dir, n_trainable, weights=weights,
               lora_values=lora_values)


def execute(cfg, resume, train_loop: Callable[[Run, Any], dict]) -> dict:
    """Start the run, call `train_loop(run, cfg)`, and always close the log and the process group."""
    run = start(cfg, resume)
    try:
        return train_loop(run, cfg)
    finally:
        run.log.close()
        distributed.shutdown(run.d)


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


# ---- the loop's bookkeeping ------------------------------------------------------------------------

def micro_batches(rows: list, size: int) -> Iterator[list]:
    """`rows` in consecutive pieces of at most `size` (one forward pass each)."""
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def rank_share(rows: list, d: Dist) -> list:
    """This process's contiguous share of a global batch (`len(rows)` divisible by the world size)."""
    per = len(rows) // d.world
    return rows[d.rank * per : (d.rank + 1) * per]


def due(step: int, every: int, max_steps: int) -> bool:
    """Evaluate / save after this step? Every `every` steps (0: never), not at the last step (the recipe's
    end does both there)."""
    return bool(every) and step % every == 0 and step < max_steps


def log_due(step: int, cfg) -> bool:
    """Write this step's `train` record? Every `log_every` steps and at the last."""
    return step % cfg.log_every == 0 or step == cfg.max_steps


@dataclass
class Checkpointer:
    """What a checkpoint holds besides the model weights, and the two things done with it.

    `kind` ("sft", "rl-grpo", "rl-ppo") and the world size are recorded in `trainer_state.json` beside the
    step and each entry of `stateful` (name → an object with `state_dict()` / `load_state_dict()`, e.g.
    "data" → the batch builder or prompt sampler); `optimizers` maps a name to (the module FSDP wraps, its
    optimizer); `value_model` (PPO) is written to the checkpoint's `value/`."""

    run: Run
    kind: str
    optimizers: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]
    stateful: dict[str, Any]
    value_model: torch.nn.Module | None = None

    def resume(self) -> int:
        """Restore data position, optimizers and RNG from `run.resume_from`; the step to continue from (0
        for a fresh run). The weights were loaded by `start`."""
        ckpt = self.run.resume_from
        if not ckpt:
            return 0
        ts = state.load_trainer_state(ckpt)
        for name, obj in self.stateful.items():
            obj.load_state_dict(ts[name])
        state.load_optimizers(ckpt, self.optimizers)
        state.load_rng(ckpt, self.run.d.rank)
        step = ts["step"]
        self.run.log.info(f"resumed at step {step} from {ckpt}: steps 1-{step} are not recomputed", step)
        return step

    def save(self, step: int) -> Path:
        """Write checkpoint `step` atomically (a collective: every process calls it)."""
        ts = {"step": step, **{name: obj.state_dict() for name, obj in self.stateful.items()},
              "kind": self.kind, "world": self.run.d.world}
        path = state.save(self.run.cfg.out_dir, step, self.run.d, model=self.run.model, tokenizer=self.run.tokenizer,
                          optimizers=self.optimizers, trainer_state=ts, value_model=self.value_model,
                          keep=self.run.cfg.keep_checkpoints, lora_of=self.run.cfg if self.run.cfg.lora else None)
        self.run.log.info(f"saved checkpoint {path}", step)
        return path


def stop_if_diverged(ckpt: Checkpointer, step: int, loss: float, grad_norms: dict[str, float]) -> None:
    """The divergence guard, before an optimizer step: if the loss or a gradient norm (name → value, e.g.
    {"grad norm": …}) is NaN/Inf, drop the gradients, save the state that produced them as checkpoint `step`,
    write an alarm and raise `Diverged`."""
    if finite(loss) and all(map(finite, grad_norms.values())):
        return
    for _, optimizer in ckpt.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    where = ckpt.save(step)
    shown = ", ".join(f"{name} {value}" for name, value in {"loss": loss, **grad_norms}.items())
    msg = (f"non-finite {'loss' if not finite(loss) else 'gradient norm'} at step {step + 1} ({shown}); saved the "
           f"state that produced it to {where}; stopping. Lower optim.lr, check the data, or try dtype=float32.")
    ckpt.run.log.alarm(msg, step)
    raise Diverged(msg)


def report_eval(run: Run, step: int, result: dict) -> None:
    """An `eval` record, and a one-line summary (per-task entries left out) on rank 0."""
    if not result:
        return
    run.log.write("eval", step, result)
    if run.d.main:
        shown = {k: round(v, 4) for k, v in result.items() if "/" not in k}
        run.log.info(f"eval @ step {step}: {shown}", step)


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


def generate(run: Run, model, prompts: list, params, max_batch_size: int = 64) -> list:
    """Completions of this rank's prompts (messages or Encoded) through the engine on `model`, or from a
    decoupled run's rollout server (`model` a `rollout.RolloutServer`; prompts as messages); `params` is one
    SamplingParams for all prompts or a list with one per prompt (e.g. a seed each). Returns
    list[list[Completion]]."""
    from audior1.engine import Engine
    from audior1.train.rollout import RolloutServer

    params_list = params if isinstance(params, list) else [params] * len(prompts)
    if isinstance(model, RolloutServer):
        return model.complete(prompts, params_list)
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

