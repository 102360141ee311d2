"""`audior1 train sft`: supervised fine-tuning on a weighted mixture of manifests (MGRD's cold start and
the distillation rounds).

`_train` reads top to bottom: load the data (`load_data` → `SFTExamples`), build the policy and its
optimizer, resume, then per step
1. the batch: the next global batch of `batch_size` rows from the mixture (packed or padded);
2. `forward_backward` → `StepLoss`: each process takes its contiguous share of rows and runs them
   `micro_batch_size` rows at a time; every micro-batch's loss is its summed token NLL divided by the *global*
   number of target tokens of the step (times the world size, which FSDP's gradient averaging divides out).
   So the gradient equals that of one process on the whole batch, whatever the split — the property the
   distributed test checks;
3. `optimizer_step` → the gradient norm: clip, the divergence guard, AdamW;
4. metrics: a `train` record every `log_every` steps; every `eval_every` steps `evaluate` (dev loss,
   teacher-forced, and dev accuracy: greedy answers through the engine, matched like the evaluation harness);
   every `save_every` steps an atomic checkpoint.
Resume, checkpoints, the divergence guard and the cadence are `run.py`'s, shared with RL.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import torch

from audior1.config import ConfigError
from audior1.data.manifest import read_manifest
from audior1.train import distributed, run as R
from audior1.train.config import SFTConfig
from audior1.train.data import (BatchBuilder, Example, build_examples, collate, empty_source_error, eval_subset,
                                load_items)
from audior1.train.logging import SFT_PANELS
from audior1.train.losses import sft_loss
from audior1.train.policy import Policy


@dataclass
class SFTExamples:
    """The training mixture's examples and the dev set, after their audio is checked."""

    sources: list[list[Example]]  # per `cfg.data` source, in order
    dev_items: list[dict]  # dev manifest items with usable audio (dev accuracy)
    dev_examples: list[Example]  # the same items rendered as `eval_kind` (dev loss)


@dataclass
class StepLoss:
    """Phase 2: the step's loss and what it covered, summed over all processes."""

    loss: float  # mean token NLL over the step's targets
    n_targets: int  # target tokens in the global batch
    tokens: int  # tokens computed (padding excluded)
    slots: int  # positions computed, padding included


def train(cfg: SFTConfig, resume=None) -> dict:
    return R.execute(cfg, resume, _train)


def _train(run: R.Run, cfg: SFTConfig) -> dict:
    d = run.d
    if cfg.batch_size % d.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {d.world} processes")
    data = load_data(run, cfg)
    builder = BatchBuilder(data.sources, [s.weight for s in cfg.data], cfg.seed, cfg.batch_size, cfg.max_seq_len,
                           cfg.packing)
    policy, optimizer = build_policy(run, cfg)
    ckpt = R.Checkpointer(run, "sft", {"policy": (policy, optimizer)}, {"data": builder})
    step = ckpt.resume()

    bar = run.progress(total=cfg.max_steps, initial=step, desc="sft")
    last_eval, result = {}, None
    throughput = Throughput()
    while step < cfg.max_steps:
        t0, cpu0 = time.perf_counter(), time.process_time()
        # 1. the batch
        rows = builder.next_batch()
        lr = R.lr_at(step, cfg.optim, cfg.max_steps)
        R.set_lr(optimizer, lr)
        # 2. forward and backward over this process's micro-batches
        result = forward_backward(run, cfg, policy, rows)
        # 3. clip, guard, AdamW
        grad_norm = optimizer_step(cfg, policy, optimizer, result.loss, step, ckpt)
        step += 1
        # 4. metrics, evaluation, checkpoints
        throughput.add(result.tokens)
        if R.log_due(step, cfg):
            run.log.write("train", step, {
                "loss": result.loss, "lr": lr, "grad_norm": grad_norm, "tokens": result.tokens,
                "targets": result.n_targets, "examples": sum(len(row) for row in rows), "slots": result.slots,
                "tokens_per_s": throughput.rate(), "step_time": time.perf_counter() - t0,
                "step_cpu_time": time.process_time() - cpu0,  # this process's CPU s: steadier on a shared machine
                "epoch": [round(e, 4) for e in builder.sampler.epochs()]})
        bar.update(1)
        bar.set_postfix(loss=f"{result.loss:.4f}", lr=f"{lr:.2e}",
                        acc=f"{last_eval['accuracy']:.3f}" if "accuracy" in last_eval else "-")
        if R.due(step, cfg.eval_every, cfg.max_steps):
            last_eval = evaluate(run, cfg, policy, data, step) or last_eval
        if R.due(step, cfg.save_every, cfg.max_steps):
            ckpt.save(step)
    bar.close()

    final = evaluate(run, cfg, policy, data, step) if (cfg.eval_every or data.dev_items) else {}
    path = ckpt.save(step)
    run.plot(SFT_PANELS)
    return {"step": step, "loss": result.loss if result else None, **final, "checkpoint": str(path)}


# ---- setup ---------------------------------------------------------------------------------------------

def load_data(run: R.Run, cfg: SFTConfig) -> SFTExamples:
    """Every source's examples and the dev set; audio prepared (and cached) first. A source left with no
    example fails naming why."""
    sources, skipped = [], Counter()
    items_per_source = [load_items(s) for s in cfg.data]
    R.prepare_audio(run, [p for items in items_per_source for it in items for p in it["audio"]], "train")
    for s, items in zip(cfg.data, items_per_source):
        ex = build_examples(items, s.kind, run.tokenizer, run.store, max_len=cfg.max_seq_len,
                            caption_prompt=cfg.caption_prompt, reasoning_field=s.reasoning_field, skipped=skipped,
                            no_think_prompt=s.no_think_prompt)
        sources.append(ex)
        run.log.info(f"source {s.manifest} as {s.kind} (weight {s.weight:g}): {len(ex)} examples from "
                     f"{len(items)} items, {sum(len(e) for e in ex) / max(1, len(ex)):.0f} tokens on average")
    dev_items, dev_examples = [], []
    if cfg.dev_manifest:
        dev_items = eval_subset(read_manifest(cfg.dev_manifest, check_files=False), cfg.eval_items, cfg.seed)
        R.prepare_audio(run, [p for it in dev_items for p in it["audio"]], "dev")
        dev_examples = build_examples(dev_items, cfg.eval_kind, run.tokenizer, run.store, max_len=cfg.max_seq_len,
                                      caption_prompt=cfg.caption_prompt, skipped=Counter())
        bad = {p for p, c in run.store.clips.items() if c is None}
        dev_items = [it for it in dev_items if not any(p in bad for p in it["audio"])]
    if skipped or run.store.skipped:
        run.log.info("skipped: " + ", ".join(f"{n} × {r}" for r, n in sorted((skipped + run.store.skipped).items())))
    run.log.info(run.store.summary())
    run.log.write("info", 0, {"skipped": dict(skipped + run.store.skipped),
                              "skipped_files": dict(list(run.store.skipped_files.items())[:50])})
    for s, items, ex in zip(cfg.data, items_per_source, sources):
        if not ex:
            raise empty_source_error(s, items, "examples", f"missing audio, missing field {s.reasoning_field!r} "
                                     f"or longer than max_seq_len {cfg.max_seq_len}")
    R.audio_ready(run)
    return SFTExamples(sources, dev_items, dev_examples)


def build_policy(run: R.Run, cfg: SFTConfig) -> tuple[Policy, torch.optim.Optimizer]:
    """The policy around the run's model (sharded under torchrun) and its AdamW."""
    model = run.model
    if cfg.activation_checkpointing:
        model.set_gradient_checkpointing(True)
    policy = Policy(model)
    run.shard(policy, model)  # torchrun: the model is on the meta device until here
    policy.train()
    return policy, R.make_optimizer(policy, cfg.optim)


# ---- one step ------------------------------------------------------------------------------------------

def forward_backward(run: R.Run, cfg: SFTConfig, policy: Policy, rows: list) -> StepLoss:
    """Phase 2: backward of this process's share of `rows`, each micro-batch's loss divided by the global
    target count; returns the step's loss and counts, summed over processes."""
    d = run.d
    n_targets = sum(e.n_target for row in rows for e in row)
    loss_sum, tokens, slots = 0.0, 0, 0
    for micro in R.micro_batches(R.rank_share(rows, d), cfg.micro_batch_size):
        batch = collate(micro, run.store, run.tokenizer, cfg.packing).to(d.device)
        with run.autocast():
            logp, _ = policy(**batch.inputs())
            loss = sft_loss(logp, batch.labels != -100, n_targets / d.world)
        loss.backward()
        loss_sum += float(loss.detach()) * n_targets / d.world
        tokens += batch.n_tokens
        slots += batch.input_ids.numel()  # positions computed, padding included
    loss_sum, tokens, slots = d.sum([loss_sum, tokens, slots])
    return StepLoss(loss_sum / n_targets, n_targets, tokens, slots)


def optimizer_step(cfg: SFTConfig, policy: Policy, optimizer: torch.optim.Optimizer, loss: float, step: int,
                   ckpt: R.Checkpointer) -> float:
    """Phase 3: clip the gradient, stop if the loss or its norm is not finite, step AdamW; the norm."""
    params = [p for p in policy.parameters() if p.requires_grad]
    grad_norm = distributed.clip_grad_norm(params, cfg.optim.grad_clip) if R.finite(loss) else float("nan")
    R.stop_if_diverged(ckpt, step, loss, {"grad norm": grad_norm})
    R.fill_missing_grads(params)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


class Throughput:
    """Tokens per second since the last `train` record."""

    def __init__(self):
        self.start, self.tokens = time.perf_counter(), 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.tokens / max(1e-9, now - self.start)
        self.start, self.tokens = now, 0
        return rate


# ---- evaluation ----------------------------------------------------------------------------------------

@torch.no_grad()
def dev_loss(run: R.Run, policy: Policy, examples: list[Example], cfg: SFTConfig) -> float:
    """Mean token NLL of the dev examples (teacher-forced), split over processes."""
    mine = examples[run.d.rank :: run.d.world]
    n = min(run.d.gather_objects(len(mine)))  # FSDP: the same number of forward passes on every rank
    total, count = 0.0, 0
    rows = [[e] for e in mine[:n]]
    for micro in R.micro_batches(rows, cfg.micro_batch_size):
        batch = collate(micro, run.store, run.tokenizer, packed=False).to(run.d.device)
        with run.autocast():
            logp, _ = policy(**batch.inputs())
        total += float(-logp.sum())
        count += batch.n_targets
    total, count = run.d.sum([total, count])
    return total / max(1, count)


def evaluate(run: R.Run, cfg: SFTConfig, policy: Policy, data: SFTExamples, step: int) -> dict:
    """Dev loss and (with `eval_generate`) dev accuracy through the engine; logged and plotted."""
    result = {}
    if data.dev_examples:
        policy.eval()
        result["dev_loss"] = dev_loss(run, policy, data.dev_examples, cfg)
    if data.dev_items and cfg.eval_generate:
        infer = run.inference_model(policy)
        result.update(R.evaluate_generation(run, infer, data.dev_items, "direct", cfg.eval_max_tokens,
                                            cfg.eval_think_budget, seed=cfg.seed))
    policy.train()
    R.report_eval(run, step, result)
    if result:
        run.plot(SFT_PANELS)
    return result
