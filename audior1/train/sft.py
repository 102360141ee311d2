"""`audior1 train sft`: supervised fine-tuning on a weighted mixture of manifests (MGRD's cold start and
the distillation rounds).

One optimizer step: the next global batch of `batch_size` rows comes from the mixture (packed or padded);
each process takes its contiguous share of rows and runs them `micro_batch_size` rows at a time; every
micro-batch's loss is its summed token NLL divided by the *global* number of target tokens of the step (times
the world size, which FSDP's gradient averaging divides out). So the gradient equals that of one
process on the whole batch, whatever the split — the property the distributed test checks. Then clip,
AdamW, next step. Every `eval_every` steps: dev loss (teacher-forced) and dev accuracy (greedy answers
through the engine, matched like the evaluation harness); every `save_every` steps an atomic checkpoint.
"""

from __future__ import annotations

import time
from collections import Counter

import torch

from audior1.config import ConfigError
from audior1.data.manifest import read_manifest
from audior1.train import distributed, run as R, state
from audior1.train.config import SFTConfig
from audior1.train.data import BatchBuilder, build_examples, collate, empty_source_error, eval_subset, load_items
from audior1.train.logging import SFT_PANELS, plot
from audior1.train.losses import sft_loss
from audior1.train.policy import Policy


def _examples(run: R.Run, cfg: SFTConfig):
    sources, skipped = [], Counter()
    items_per_source = [load_items(s) for s in cfg.data]
    R.prepare_audio(run, [p for items in items_per_source for it in items for p in it["audio"]], "train")
    for s, items in zip(cfg.data, items_per_source):
        ex = build_examples(items, s.kind, run.tokenizer, run.store, max_len=cfg.max_seq_len,
                            caption_prompt=cfg.caption_prompt, reasoning_field=s.reasoning_field, skipped=skipped)
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
    return sources, dev_items, dev_examples


def _rows_of_rank(rows: list, d) -> list:
    per = len(rows) // d.world
    return rows[d.rank * per : (d.rank + 1) * per]


def _micro(rows: list, size: int):
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


@torch.no_grad()
def dev_loss(run: R.Run, policy, examples, cfg: SFTConfig) -> float:
    mine = examples[run.d.rank :: run.d.world]
    n = min(run.d.gather_objects(len(mine)))  # FSDP: the same number of forward passes on every rank
    total, count = 0.0, 0
    rows = [[e] for e in mine[:n]]
    for micro in _micro(rows, cfg.micro_batch_size):
        batch = collate(micro, run.store, run.tokenizer, packed=False).to(run.d.device)
        with run.autocast():
            logp, _ = policy(**batch.inputs())
        total += float(-logp.sum())
        count += batch.n_targets
    total, count = run.d.sum([total, count])
    return total / max(1, count)


def train(cfg: SFTConfig, resume=None) -> dict:
    run = R.start(cfg, resume)
    d, log = run.d, run.log
    try:
        return _train(run, cfg)
    finally:
        log.close()
        distributed.shutdown(d)


def _train(run: R.Run, cfg: SFTConfig) -> dict:
    d, log = run.d, run.log
    if cfg.batch_size % d.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {d.world} processes")
    sources, dev_items, dev_examples = _examples(run, cfg)
    builder = BatchBuilder(sources, [s.weight for s in cfg.data], cfg.seed, cfg.batch_size, cfg.max_seq_len,
                           cfg.packing)
    model = run.model
    if cfg.activation_checkpointing:
        model.set_gradient_checkpointing(True)
    policy = Policy(model)
    run.shard(policy, model)  # torchrun: the model is on the meta device until here
    policy.train()
    optimizer = R.make_optimizer(policy, cfg.optim)
    params = [p for p in policy.parameters() if p.requires_grad]
    step = 0
    if run.resume_from:
        ts = state.load_trainer_state(run.resume_from)
        step = ts["step"]
        builder.load_state_dict(ts["data"])
        state.load_optimizers(run.resume_from, {"policy": (policy, optimizer)})
        state.load_rng(run.resume_from, d.rank)

    def save(at: int) -> None:
        ts = {"step": at, "data": builder.state_dict(), "kind": "sft", "world": d.world}
        path = state.save(cfg.out_dir, at, d, model=model, tokenizer=run.tokenizer,
                          optimizers={"policy": (policy, optimizer)}, trainer_state=ts, keep=cfg.keep_checkpoints)
        log.info(f"saved checkpoint {path}", at)

    def evaluate(at: int) -> dict:
        result = {}
        if dev_examples:
            policy.eval()
            result["dev_loss"] = dev_loss(run, policy, dev_examples, cfg)
        if dev_items and cfg.eval_generate:
            infer = run.inference_model(policy)
            result.update(R.evaluate_generation(run, infer, dev_items, "direct", cfg.eval_max_tokens,
                                                cfg.eval_think_budget, seed=cfg.seed))
        policy.train()
        if result:
            log.write("eval", at, result)
            if d.main:
                shown = {k: round(v, 4) for k, v in result.items() if "/" not in k}
                log.info(f"eval @ step {at}: {shown}", at)
                if cfg.plots:
                    plot(log.path, run.log.out_dir / "plots", SFT_PANELS)
        return result

    bar = run.progress(total=cfg.max_steps, initial=step, desc="sft")
    last_eval, train_loss = {}, None
    t_window, tok_window = time.perf_counter(), 0
    while step < cfg.max_steps:
        t0, cpu0 = time.perf_counter(), time.process_time()
        rows = builder.next_batch()
        n_targets = sum(e.n_target for row in rows for e in row)
        lr = R.lr_at(step, cfg.optim, cfg.max_steps)
        R.set_lr(optimizer, lr)
        loss_sum, tokens, slots = 0.0, 0, 0
        for micro in _micro(_rows_of_rank(rows, d), cfg.micro_batch_size):
            batch = collate(micro, run.store, run.tokenizer, cfg.packing).to(d.device)
            with run.autocast():
                logp, _ = policy(**batch.inputs())
                loss = sft_loss(logp, batch.labels != -100, n_targets / d.world)
            loss.backward()
            loss_sum += float(loss.detach()) * n_targets / d.world
            tokens += batch.n_tokens
            slots += batch.input_ids.numel()  # positions computed, padding included
        loss_sum, tokens, slots = d.sum([loss_sum, tokens, slots])
        train_loss = loss_sum / n_targets
        grad_norm = distributed.clip_grad_norm(params, cfg.optim.grad_clip) if R.finite(train_loss) else float("nan")
        if not (R.finite(train_loss) and R.finite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            save(step)
            where = state.checkpoint_dir(cfg.out_dir, step)
            msg = (f"non-finite {'loss' if not R.finite(train_loss) else 'gradient norm'} at step {step + 1} "
                   f"(loss {train_loss}, grad norm {grad_norm}); saved the state that produced it to {where}; stopping. "
                   "Lower optim.lr, check the data, or try dtype=float32.")
            log.alarm(msg, step)
            raise R.Diverged(msg)
        R.fill_missing_grads(params)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        tok_window += tokens
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            now = time.perf_counter()
            metrics = {"loss": train_loss, "lr": lr, "grad_norm": grad_norm, "tokens": tokens, "targets": n_targets,
                       "examples": sum(len(row) for row in rows), "slots": slots,
                       "tokens_per_s": tok_window / max(1e-9, now - t_window), "step_time": dt,
                       "step_cpu_time": cpu,  # this process's CPU seconds: steadier than dt on a shared machine
                       "epoch": [round(e, 4) for e in builder.sampler.epochs()]}
            t_window, tok_window = now, 0
            log.write("train", step, metrics)
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.4f}", lr=f"{lr:.2e}",
                        acc=f"{last_eval['accuracy']:.3f}" if "accuracy" in last_eval else "-")
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
            last_eval = evaluate(step) or last_eval
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.max_steps:
            save(step)
    bar.close()
    final = evaluate(step) if (cfg.eval_every or dev_items) else {}
    save(step)
    if d.main and cfg.plots:
        plot(log.path, log.out_dir / "plots", SFT_PANELS)
    return {"step": step, "loss": train_loss, **final,
            "checkpoint": str(state.checkpoint_dir(cfg.out_dir, step))}
