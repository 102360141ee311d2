"""`audior1 train rl --algo ppo|grpo`: on-policy RL with verifiable rewards (MGRD stages 2 and 3e).

One step:
1. Draw `prompts_per_step` prompts from the weighted mixture (the same draws on every rank); each rank takes
   its contiguous share and samples `samples_per_prompt` completions per prompt with the engine (each prompt
   seeded by (seed, step, prompt index), so rollouts do not depend on how prompts are split over ranks).
2. Score every completion with its source's reward `f(completions, **columns)`; the score sits on the final
   generated token (the `<|EOT|>` when the model stopped, else the last token).
3. Under no grad: rollout log-probs of softmax(logits / temperature) — the distribution the engine sampled
   from — and the value model's values (PPO) and the reference policy's log-probs (KL).
   Advantages — GRPO: the score minus its group's mean (÷ std with `scale_rewards`), on every token;
   PPO: GAE with `gamma`, `lam` (the paper: 1, 1 → A_t = R − V_t).
4. `epochs` passes over the rollouts, each split into `minibatches` optimizer steps: the clipped surrogate
   (clip 0.2), optional entropy bonus and k3 KL to the starting policy (off by default, as in the paper), and
   for PPO the value loss on the value model (its own optimizer).
Logged each step: reward and its parts, accuracy, reasoning length (mean and p10/p50/p90), entropy, clip
fraction, approx. KL to the rollout policy, value loss; an alarm when the mean reasoning length halves.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from audior1.checkpoint import plan_weights, state_shapes
from audior1.config import ConfigError
from audior1.data.manifest import read_manifest
from audior1.engine import SamplingParams
from audior1.train import distributed, losses, rewards as rw, run as R, state
from audior1.train.config import RLConfig
from audior1.train.data import Example, MixtureSampler, collate, empty_source_error, eval_subset, load_items, render
from audior1.train.logging import RL_PANELS, CollapseAlarm, plot, plot_histogram
from audior1.train.policy import Policy, ValueModel, set_trainable


def _reward_name(source) -> str:
    return source.reward or ("audio" if source.kind == "audio" else "text")


def _pad(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out


class Rollouts:
    """One step's sequences and their per-token tensors (each a 1-D tensor over the sequence's tokens)."""

    def __init__(self, examples: list[Example]):
        self.examples = examples
        self.old_logp: list[torch.Tensor] = []
        self.ref_logp: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.adv: list[torch.Tensor] = []
        self.returns: list[torch.Tensor] = []

    def stack(self, name: str, idx: list[int], width: int, device) -> torch.Tensor:
        return _pad([getattr(self, name)[i] for i in idx], width).to(device)


def _micro(idx: list[int], size: int):
    for i in range(0, len(idx), size):
        yield idx[i : i + size]


def _shard_value(run: R.Run, value: ValueModel, weights) -> None:
    """torchrun: fill the sharded value model from the resumed checkpoint's `value/` (its own names: the
    whole ValueModel) or else from the start checkpoint, with a zero head."""
    if not run.d.enabled:
        return
    vdir = run.resume_from / "value" if run.resume_from is not None else None
    if vdir is not None and vdir.is_dir():
        saved = distributed.agree(run.d, lambda: plan_weights(vdir, state_shapes(value)))
        run.shard(value, value.model, saved, prefix="")
    else:
        run.shard(value, value.model, weights, fresh=("value_head.",))
        value.reset_head()


def train(cfg: RLConfig, resume=None) -> dict:
    run = R.start(cfg, resume)
    try:
        return _train(run, cfg)
    finally:
        run.log.close()
        distributed.shutdown(run.d)


def _train(run: R.Run, cfg: RLConfig) -> dict:
    d, log, tok = run.d, run.log, run.tokenizer
    if cfg.prompts_per_step % d.world:
        raise ConfigError(f"prompts_per_step {cfg.prompts_per_step} is not divisible by the {d.world} processes")
    # ---- prompts ----
    loaded = [load_items(s) for s in cfg.prompts]
    R.prepare_audio(run, [p for items in loaded for it in items for p in it["audio"]], "prompts")
    bad = {p for p, c in run.store.clips.items() if c is None}
    sources = [[it for it in items if not any(p in bad for p in it["audio"])] for items in loaded]
    for s, items, usable in zip(cfg.prompts, loaded, sources):
        if not usable:
            raise empty_source_error(s, items, "prompts", "missing or corrupt audio")
        log.info(f"prompts {s.manifest} as {s.kind} (weight {s.weight:g}, reward {_reward_name(s)}): {len(usable)} items")
    eval_items = []
    if cfg.eval_manifest:
        eval_items = eval_subset(read_manifest(cfg.eval_manifest, check_files=False), cfg.eval_items, cfg.seed)
        R.prepare_audio(run, [p for it in eval_items for p in it["audio"]], "eval")
        eval_items = [it for it in eval_items if not any(run.store.clips.get(p) is None for p in it["audio"])]
    log.info(run.store.summary())
    R.audio_ready(run)
    sampler = MixtureSampler([len(s) for s in sources], [s.weight for s in cfg.prompts], cfg.seed)

    # ---- models ----
    # Under torchrun every model here is built on the meta device and filled shard by shard (`run.shard`).
    model = run.model
    if cfg.activation_checkpointing:
        model.set_gradient_checkpointing(True)
    policy = Policy(model)
    value = value_weights = None
    if cfg.algo == "ppo":
        backbone, value_weights = R.load_or_plan(d, run.start_dir, torch.float32)
        value = ValueModel(backbone)
        set_trainable(value.model, cfg.trainable)
        value.model.lm_head.weight.requires_grad_(False)
        if run.resume_from is not None and not d.enabled:
            saved = state.load_value_state(run.resume_from)
            if saved is not None:
                value.load_state_dict(saved)
        if cfg.activation_checkpointing:
            value.model.set_gradient_checkpointing(True)
    ref = ref_weights = None
    if cfg.kl_coef > 0:
        # Sharded, the frozen reference keeps its shards in the compute dtype: FSDP would cast them to it
        # for every forward anyway, so the results are the same and its memory is halved under bf16.
        ref_model, ref_weights = R.load_or_plan(d, cfg.model, torch.float32 if not d.enabled else run.compute_dtype)
        ref = Policy(ref_model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    run.shard(policy, model)
    if value is not None:
        _shard_value(run, value, value_weights)
    if ref is not None:
        run.shard(ref, ref.model, ref_weights)
    policy.train()
    optimizer = R.make_optimizer(policy, cfg.optim)
    optimizers = {"policy": (policy, optimizer)}
    if value is not None:
        value.train()
        v_optimizer = R.make_optimizer(value, cfg.optim, lr=cfg.value_lr)
        optimizers["value"] = (value, v_optimizer)
    params = [p for p in policy.parameters() if p.requires_grad]
    v_params = [p for p in value.parameters() if p.requires_grad] if value is not None else []

    alarm = CollapseAlarm(cfg.collapse_window, cfg.collapse_ratio)
    step = 0
    if run.resume_from:
        ts = state.load_trainer_state(run.resume_from)
        step = ts["step"]
        sampler.load_state_dict(ts["data"])
        alarm.load_state_dict(ts["alarm"])
        state.load_optimizers(run.resume_from, optimizers)
        state.load_rng(run.resume_from, d.rank)

    def save(at: int) -> None:
        ts = {"step": at, "data": sampler.state_dict(), "alarm": alarm.state_dict(), "kind": f"rl-{cfg.algo}",
              "world": d.world}
        path = state.save(cfg.out_dir, at, d, model=model, tokenizer=tok, optimizers=optimizers, trainer_state=ts,
                          value_model=value, keep=cfg.keep_checkpoints)
        log.info(f"saved checkpoint {path}", at)

    eval_reward = rw.get("audio" if cfg.eval_kind == "audio" else "text")

    def evaluate(at: int) -> dict:
        if not eval_items:
            return {}
        result = R.evaluate_generation(run, run.inference_model(policy), eval_items, cfg.eval_kind,
                                       cfg.eval_max_tokens or cfg.max_new_tokens, cfg.max_think_tokens,
                                       reward=eval_reward, seed=cfg.seed, temperature=cfg.eval_temperature,
                                       samples=cfg.eval_samples)
        policy.train()
        log.write("eval", at, result)
        if d.main:
            log.info(f"eval @ step {at}: " + str({k: round(v, 4) for k, v in result.items() if "/" not in k}), at)
        return result

    first_eval = evaluate(step) if (eval_items and (cfg.eval_every or not cfg.max_steps) and step == 0) else {}
    if cfg.max_steps == 0:  # evaluation only
        return {"step": 0, **{k: v for k, v in first_eval.items() if "/" not in k}}
    last_eval = dict(first_eval)
    bar = run.progress(total=cfg.max_steps, initial=step, desc=f"rl-{cfg.algo}")
    per_rank = cfg.prompts_per_step // d.world
    n = cfg.samples_per_prompt
    # Log-probs of the distribution the rollouts come from: softmax(logits / temperature) (top_p = 1).
    temp = cfg.temperature if cfg.temperature > 0 else 1.0
    lengths: list[int] = []
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        # 1. prompts and rollouts
        draws = [sampler.next() for _ in range(cfg.prompts_per_step)]
        mine = list(enumerate(draws))[d.rank * per_rank : (d.rank + 1) * per_rank]
        encoded, items, kinds = [], [], []
        for _, (s, i) in mine:
            item, kind = sources[s][i], cfg.prompts[s].kind
            encoded.append(run.processor.encode(R.prompt_messages(item, kind), think=True))
            items.append(item)
            kinds.append(s)
        sp = [SamplingParams(n=n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens,
                             max_think_tokens=cfg.max_think_tokens,
                             seed=(cfg.seed * 1_000_003 + step * 10_007 + g) % 2**62) for g, _ in mine]
        outs = R.generate(run, run.inference_model(policy), encoded, sp, cfg.rollout_batch_size)
        t_rollout = time.perf_counter() - t0

        # 2. rewards
        completions = [c for comps in outs for c in comps]
        texts = [c.text for c in completions]
        cols = {k: [it.get(k) for it in items for _ in range(n)] for k in ("answer", "choices", "task", "question_type")}
        scores = torch.zeros(len(texts))
        for s_idx, source in enumerate(cfg.prompts):
            sel = [j for j in range(len(texts)) if kinds[j // n] == s_idx]
            if sel:
                fn = rw.get(_reward_name(source))
                got = fn([texts[j] for j in sel], **{k: [v[j] for j in sel] for k, v in cols.items()})
                scores[sel] = torch.tensor(got, dtype=torch.float32)
        parts = {name: rw.get(name)(texts, **cols) for name in rw.PARTS}

        # 3. sequences, rollout log-probs, values
        examples = []
        for g, (enc, item) in enumerate(zip(encoded, items)):
            clips = [run.store.clips[p] for p in render(item, cfg.prompts[kinds[g]].kind)[1]]
            for c in outs[g]:
                if c.prompt_tokens != len(enc.input_ids):
                    raise RuntimeError(f"the engine changed the prompt ({c.prompt_tokens} tokens, sent "
                                       f"{len(enc.input_ids)}); max_think_tokens=0 is not supported in RL")
                # the stop token the model actually sampled (a stop string leaves none to score)
                stop = [c.stop_reason] if isinstance(c.stop_reason, int) else []
                ids = list(enc.input_ids) + list(c.token_ids) + stop
                if len(ids) == len(enc.input_ids):  # nothing generated: score the prompt's last token
                    ids = ids + [tok.eot_id]
                examples.append(Example(ids, len(enc.input_ids), clips, item))
        ro = Rollouts(examples)
        order = list(range(len(examples)))
        policy.eval()
        with torch.no_grad():
            for idx in _micro(order, cfg.micro_batch_size):
                batch = collate([[examples[i]] for i in idx], run.store, tok, False).to(d.device)
                with run.autocast():
                    logp, _ = policy(**batch.inputs(), temperature=temp)
                    mask = batch.labels != -100
                    if value is not None:
                        v = value(**batch.inputs())
                        rewards_t = losses.final_token_rewards(scores[idx].to(d.device), mask)
                        adv, ret = losses.gae(rewards_t, v, mask, cfg.gamma, cfg.lam)
                    if ref is not None:
                        ref_logp, _ = ref(**batch.inputs(), temperature=temp)
                for k, i in enumerate(idx):
                    L = len(examples[i])
                    ro.old_logp.append(logp[k, :L].float().cpu())
                    if value is not None:
                        ro.values.append((v[k, :L] * mask[k, :L]).float().cpu())
                        ro.adv.append(adv[k, :L].float().cpu())
                        ro.returns.append(ret[k, :L].float().cpu())
                    if ref is not None:
                        ro.ref_logp.append(ref_logp[k, :L].float().cpu())
        if value is None:  # GRPO: one advantage per sequence, on all its tokens
            seq_adv = losses.group_advantages(scores, n, cfg.scale_rewards)
            for i, ex in enumerate(examples):
                a = torch.zeros(len(ex))
                a[ex.n_prompt :] = seq_adv[i]
                ro.adv.append(a)
        policy.train()

        # 4. optimisation
        lr = R.lr_at(step, cfg.optim, cfg.max_steps)
        R.set_lr(optimizer, lr)
        if value is not None:
            R.set_lr(v_optimizer, R.lr_at(step, cfg.optim, cfg.max_steps, base=cfg.value_lr))
        sums: dict[str, float] = {}
        grad_norms, v_grad_norms = [], []
        rng = np.random.default_rng([cfg.seed, step, d.rank])
        for epoch in range(cfg.epochs):
            perm = rng.permutation(len(examples)).tolist()
            for mb in np.array_split(np.asarray(perm), cfg.minibatches):
                mb = mb.tolist()
                mb_tokens = sum(examples[i].n_target for i in mb)
                denom = {"per-sequence": len(mb), "per-token": mb_tokens,
                         "global-token": d.sum([mb_tokens])[0] / d.world}[cfg.loss_norm]
                for idx in _micro(mb, cfg.micro_batch_size):
                    batch = collate([[examples[i]] for i in idx], run.store, tok, False).to(d.device)
                    width = batch.input_ids.shape[1]
                    mask = batch.labels != -100
                    with run.autocast():
                        logp, ent = policy(**batch.inputs(), with_entropy=True, temperature=temp)
                        loss, st = losses.policy_loss(
                            logp, ro.stack("old_logp", idx, width, d.device), ro.stack("adv", idx, width, d.device),
                            mask, clip=cfg.clip, norm=cfg.loss_norm, denom=denom, entropy=ent,
                            entropy_coef=cfg.entropy_coef,
                            ref_logp=ro.stack("ref_logp", idx, width, d.device) if ref is not None else None,
                            kl_coef=cfg.kl_coef)
                        if value is not None:
                            v = value(**batch.inputs())
                            vl, vst = losses.value_loss(v, ro.stack("values", idx, width, d.device),
                                                        ro.stack("returns", idx, width, d.device), mask,
                                                        norm=cfg.loss_norm, denom=denom, clip=cfg.value_clip)
                            loss = loss + cfg.value_coef * vl
                            st.update(vst)
                    loss.backward()
                    for k, x in st.items():
                        sums[k] = sums.get(k, 0.0) + x
                loss_now = d.sum([float(loss.detach())])[0]
                grad_norm = distributed.clip_grad_norm(params, cfg.optim.grad_clip)
                v_norm = distributed.clip_grad_norm(v_params, cfg.optim.grad_clip) if value is not None else 0.0
                if not all(map(R.finite, (loss_now, grad_norm, v_norm))):
                    optimizer.zero_grad(set_to_none=True)
                    save(step)
                    msg = (f"non-finite loss or gradient at step {step + 1} (loss {loss_now}, grad norm {grad_norm}, "
                           f"value grad norm {v_norm}); saved {state.checkpoint_dir(cfg.out_dir, step)}; stopping")
                    log.alarm(msg, step)
                    raise R.Diverged(msg)
                R.fill_missing_grads(params)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if value is not None:
                    R.fill_missing_grads(v_params)
                    v_optimizer.step()
                    v_optimizer.zero_grad(set_to_none=True)
                grad_norms.append(grad_norm)
                v_grad_norms.append(v_norm)
        step += 1

        # 5. metrics (all ranks' rollouts)
        keys = sorted(sums)
        totals = dict(zip(keys, d.sum([sums[k] for k in keys])))
        tokens = max(1.0, totals.get("tokens", 1.0))
        local = [(float(scores[j]), parts["correct"][j], parts["format"][j], completions[j].reasoning_tokens,
                  completions[j].completion_tokens, completions[j].finish_reason == "length") for j in range(len(texts))]
        allrows = [r for part in d.gather_objects(local) for r in part]
        arr = np.asarray(allrows, dtype=np.float64)
        lengths = arr[:, 3].astype(int).tolist()
        group_std = scores.view(-1, n).std(1, unbiased=False)
        metrics = {
            "reward": float(arr[:, 0].mean()), "reward/correct": float(arr[:, 1].mean()),
            "reward/format": float(arr[:, 2].mean()), "accuracy": float(arr[:, 1].mean()),
            "reasoning_tokens": float(arr[:, 3].mean()),
            "reasoning_tokens_p10": float(np.percentile(arr[:, 3], 10)),
            "reasoning_tokens_p50": float(np.percentile(arr[:, 3], 50)),
            "reasoning_tokens_p90": float(np.percentile(arr[:, 3], 90)),
            "reasoning_tokens_max": float(arr[:, 3].max()),
            "completion_tokens": float(arr[:, 4].mean()), "truncated": float(arr[:, 5].mean()),
            "entropy": totals.get("entropy_sum", 0.0) / tokens,
            "clip_fraction": totals.get("clip_fraction_sum", 0.0) / tokens,
            "approx_kl": totals.get("approx_kl_sum", 0.0) / tokens,
            "policy_loss": totals.get("policy_loss_sum", 0.0) / tokens,
            "grad_norm": float(np.mean(grad_norms)), "lr": lr,
            "groups_all_same": float((group_std == 0).float().mean()),
            "rollout_s": t_rollout, "step_s": time.perf_counter() - t0,
        }
        if value is not None:
            metrics["value_loss"] = totals.get("value_loss_sum", 0.0) / tokens
            metrics["value_grad_norm"] = float(np.mean(v_grad_norms))
        if ref is not None:
            metrics["ref_kl"] = totals.get("ref_kl_sum", 0.0) / tokens
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            log.write("train", step, metrics)
        warning = alarm.update(metrics["reasoning_tokens"])
        if warning:
            log.alarm(warning, step)
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward']:.3f}", acc=f"{metrics['accuracy']:.3f}",
                        think=f"{metrics['reasoning_tokens']:.0f}")
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
            last_eval = evaluate(step) or last_eval
            if d.main and cfg.plots:
                plot(log.path, log.out_dir / "plots", RL_PANELS)
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.max_steps:
            save(step)
    bar.close()
    final = evaluate(step) if eval_items else {}
    save(step)
    if d.main and cfg.plots:
        plot(log.path, log.out_dir / "plots", RL_PANELS)
        if lengths:
            plot_histogram(lengths, log.out_dir / "plots" / "reasoning_length_hist.png",
                           f"reasoning tokens per completion, step {step}")
    out = {"step": step, "checkpoint": str(state.checkpoint_dir(cfg.out_dir, step))}
    if first_eval:
        out.update({f"initial_{k}": v for k, v in first_eval.items() if "/" not in k})
    out.update({k: v for k, v in final.items() if "/" not in k})
    return out
