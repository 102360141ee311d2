"""`audior1 train rl --algo ppo|grpo`: on-policy RL with verifiable rewards (MGRD stages 2 and 3e).

`_train` reads top to bottom: the prompts (`load_prompts` → `Prompts`), the models (`build_models` →
`Models`: policy, PPO value model, KL reference, their optimizers), resume, the step-0 evaluation, then one
function per phase of each step, each returning a typed result:
1. `generate_rollouts` → `Rollout`: draw `prompts_per_step` prompts from the weighted mixture (the same draws
   on every rank); each rank takes its contiguous share and samples `samples_per_prompt` completions per
   prompt with the engine, or (decoupled) from the rollout server (each prompt seeded by (seed, step, prompt
   index), so rollouts do not depend on how prompts are split over ranks or where they are generated); each
   completion becomes a training sequence (prompt + completion tokens).
2. `score_rollouts` → `Scores`: every completion's reward from its source's `f(completions, **columns)`, and
   the `correct` / `format` parts for the log. The score sits on the final generated token (the `<|EOT|>`
   when the model stopped, else the last token).
3. `rollout_logprobs` → `RolloutLogprobs`: under no grad, per-token log-probs of softmax(logits /
   temperature) — the distribution the engine sampled from — and the value model's values (PPO) and the
   reference policy's log-probs (KL).
4. `compute_advantages` → `Advantages`: GRPO: the score minus its group's mean (÷ std with
   `scale_rewards`), on every generated token; PPO: GAE with `gamma`, `lam` (the paper: 1, 1 → A_t = R − V_t)
   and the value targets.
5. `optimise` → `UpdateStats`: `epochs` passes over the rollouts, each split into `minibatches` optimizer
   steps: the clipped surrogate (clip 0.2), optional entropy bonus and k3 KL to the starting policy (off by
   default, as in the paper), and for PPO the value loss on the value model (its own optimizer); the
   divergence guard before every optimizer step.
5b. `sync_weights` (decoupled runs, `rollout: {endpoint: …}`): the trained weights reach the rollout server
   (audior1/train/rollout.py), whose completions phase 1 then uses, with the server's log-probs as the
   rollout policy's; `decoupled_metrics` logs the sync's cost, the rollouts' lag and the log-prob gap.
6. `step_metrics`: over all ranks' rollouts — reward and its parts, accuracy, reasoning length (mean and
   p10/p50/p90), entropy, clip fraction, approx. KL to the rollout policy, value loss; then the
   reasoning-collapse alarm (the mean reasoning length halves), evaluation and checkpoints on their cadence.
Resume, checkpoints, the divergence guard and the cadence are `run.py`'s, shared with SFT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from audior1.checkpoint import plan_weights, state_shapes
from audior1.config import ConfigError
from audior1.data.manifest import read_manifest
from audior1.engine import Completion, SamplingParams
from audior1.train import distributed, losses, rewards as rw, run as R, state
from audior1.train.config import RLConfig
from audior1.train.data import Example, MixtureSampler, collate, empty_source_error, eval_subset, load_items, render
from audior1.train.logging import RL_PANELS, CollapseAlarm, plot_histogram
from audior1.train.policy import Policy, ValueModel, set_trainable
from audior1.train.rollout import RolloutServer, SyncStats, connect as connect_rollout_server


# ---- what a run holds ----------------------------------------------------------------------------------

@dataclass
class Prompts:
    """The prompt mixture (items whose audio is usable) and the held-out prompts."""

    sources: list[list[dict]]  # per `cfg.prompts` source, its usable items
    sampler: MixtureSampler  # draws (source, item) pairs; its position is checkpointed
    eval_items: list[dict]  # held-out prompts with usable audio (may be empty)


@dataclass
class Models:
    """What trains and what stays fixed; `value` only for PPO, `ref` only with `kl_coef > 0`."""

    policy: Policy
    optimizer: torch.optim.Optimizer
    value: ValueModel | None = None
    value_optimizer: torch.optim.Optimizer | None = None
    ref: Policy | None = None  # frozen copy of the starting policy

    @property
    def optimizers(self) -> dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]:
        out = {"policy": (self.policy, self.optimizer)}
        if self.value is not None:
            out["value"] = (self.value, self.value_optimizer)
        return out

    def params(self) -> list[torch.Tensor]:
        return [p for p in self.policy.parameters() if p.requires_grad]

    def value_params(self) -> list[torch.Tensor]:
        return [p for p in self.value.parameters() if p.requires_grad] if self.value is not None else []


# ---- what each phase of a step returns (N = this rank's completions, L = one sequence's length) -----------

@dataclass
class Rollout:
    """Phase 1: this rank's prompts and their completions, as training sequences."""

    items: list[dict]  # this rank's prompts (manifest items), in order
    source_ids: list[int]  # each prompt's index in `cfg.prompts`
    completions: list[Completion]  # [N]: samples_per_prompt per prompt, prompt-major
    examples: list[Example]  # [N]: prompt + completion tokens; the targets are the completion's
    seconds: float  # time spent generating


@dataclass
class Scores:
    """Phase 2: rewards of the N completions."""

    total: torch.Tensor  # [N] float32: each completion's reward from its source's reward function
    correct: list[float]  # [N] the `correct` part (also the accuracy)
    format: list[float]  # [N] the `format` part


@dataclass
class RolloutLogprobs:
    """Phase 3: per-sequence tensors [L] (label-aligned, see losses.py) from the models before the update."""

    logp: list[torch.Tensor]  # log-probs of the rollout policy at `temperature` (decoupled: the server's)
    values: list[torch.Tensor] | None = None  # PPO: V(tokens_<t), 0 off the targets
    ref_logp: list[torch.Tensor] | None = None  # kl_coef > 0: the reference policy's log-probs
    gap: tuple[float, float, int] | None = None  # decoupled: (Σ|server − trainer|, max, tokens) on this rank


@dataclass
class Advantages:
    """Phase 4: per-sequence tensors [L], 0 off the targets."""

    adv: list[torch.Tensor]
    returns: list[torch.Tensor] | None = None  # PPO: the value targets


@dataclass
class UpdateStats:
    """Phase 5: what the optimizer steps saw, on this rank."""

    lr: float
    sums: dict[str, float] = field(default_factory=dict)  # token sums from the losses (`tokens`, `entropy_sum` …)
    grad_norms: list[float] = field(default_factory=list)  # policy, one per optimizer step
    first: dict[str, float] = field(default_factory=dict)  # `sums` after the first minibatch (approx_kl_first)
    value_grad_norms: list[float] = field(default_factory=list)  # PPO value model (0.0 otherwise)


# ---- the loop ------------------------------------------------------------------------------------------

def train(cfg: RLConfig, resume=None) -> dict:
    return R.execute(cfg, resume, _train)


def _train(run: R.Run, cfg: RLConfig) -> dict:
    if cfg.prompts_per_step % run.d.world:
        raise ConfigError(f"prompts_per_step {cfg.prompts_per_step} is not divisible by the {run.d.world} processes")
    prompts = load_prompts(run, cfg)
    models = build_models(run, cfg)
    alarm = CollapseAlarm(cfg.collapse_window, cfg.collapse_ratio)
    ckpt = R.Checkpointer(run, f"rl-{cfg.algo}", models.optimizers, {"data": prompts.sampler, "alarm": alarm},
                          value_model=models.value)
    step = ckpt.resume()
    server = start_server(run, cfg, step)
    try:
        return _loop(run, cfg, prompts, models, alarm, ckpt, step, server)
    finally:
        if server is not None:
            server.close()


def _loop(run: R.Run, cfg: RLConfig, prompts: Prompts, models: Models, alarm: CollapseAlarm,
          ckpt: R.Checkpointer, step: int, server: RolloutServer | None) -> dict:
    first_eval = {}
    if prompts.eval_items and (cfg.eval_every or not cfg.max_steps) and step == 0:
        first_eval = evaluate(run, cfg, models.policy, prompts.eval_items, step, server)
    if cfg.max_steps == 0:  # evaluation only
        return {"step": 0, **{k: v for k, v in first_eval.items() if "/" not in k}}

    bar = run.progress(total=cfg.max_steps, initial=step, desc=f"rl-{cfg.algo}")
    lengths: list[int] = []
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lag = server.lag(step) if server is not None else 0
        rollout = generate_rollouts(run, cfg, prompts, models.policy, step, server)  # 1. rollouts
        scores = score_rollouts(cfg, rollout)  # 2. rewards
        logprobs = rollout_logprobs(run, cfg, models, rollout)  # 3. log-probs, values
        advantages = compute_advantages(cfg, rollout, scores, logprobs)  # 4. advantages
        stats = optimise(run, cfg, models, rollout, logprobs, advantages, step, ckpt)  # 5. updates
        step += 1
        synced = sync_weights(run, cfg, server, step)  # 5b. decoupled: the server gets the new weights
        metrics, lengths = step_metrics(run, cfg, models, rollout, scores, stats, t0)  # 6. metrics
        metrics.update(decoupled_metrics(run, server, logprobs, lag, synced))
        if R.log_due(step, cfg):
            run.log.write("train", step, metrics)
        warning = alarm.update(metrics["reasoning_tokens"])
        if warning:
            run.log.alarm(warning, step)
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward']:.3f}", acc=f"{metrics['accuracy']:.3f}",
                        think=f"{metrics['reasoning_tokens']:.0f}")
        if R.due(step, cfg.eval_every, cfg.max_steps):
            evaluate(run, cfg, models.policy, prompts.eval_items, step, server)
            run.plot(RL_PANELS)
        if R.due(step, cfg.save_every, cfg.max_steps):
            ckpt.save(step)
    bar.close()

    final = evaluate(run, cfg, models.policy, prompts.eval_items, step, server)
    path = ckpt.save(step)
    run.plot(RL_PANELS)
    if run.d.main and cfg.plots and lengths:
        plot_histogram(lengths, run.log.out_dir / "plots" / "reasoning_length_hist.png",
                       f"reasoning tokens per completion, step {step}")
    out = {"step": step, "checkpoint": str(path)}
    out.update({f"initial_{k}": v for k, v in first_eval.items() if "/" not in k})
    out.update({k: v for k, v in final.items() if "/" not in k})
    return out


# ---- decoupled rollouts: the server, its weights, what is logged -----------------------------------------

def start_server(run: R.Run, cfg: RLConfig, step: int) -> RolloutServer | None:
    """A decoupled run's rollout server, connected and given the trainer's weights (all of them: the server
    may have started from another checkpoint, or the run resumed); None when colocated."""
    server = connect_rollout_server(cfg, run.tokenizer, run.d)
    if server is None:
        return None
    synced = server.sync(run.model, step, run.compute_dtype, everything=True)
    run.log.info(f"rollouts from {cfg.rollout.endpoint} ({server.model_name}); weights sync by "
                 f"{cfg.rollout.sync} every {cfg.rollout.sync_every} step(s); first sync: {synced.tensors} tensors, "
                 f"{synced.megabytes:.1f} MB in {synced.seconds:.2f} s")
    return server


def sync_weights(run: R.Run, cfg: RLConfig, server: RolloutServer | None, step: int) -> SyncStats | None:
    """Phase 5b (decoupled): after optimizer step `step`, the trained weights reach the server when due."""
    if server is None or not server.due(step, cfg):
        return None
    return server.sync(run.model, step, run.compute_dtype)


def decoupled_metrics(run: R.Run, server: RolloutServer | None, logprobs: RolloutLogprobs, lag: int,
                      synced: SyncStats | None) -> dict:
    """The decoupled run's checks: how far the server's log-probs are from the trainer's recomputation, how
    many steps the rollouts' weights lagged, and the weight sync's cost ({} when colocated)."""
    if server is None:
        return {}
    total, biggest, tokens = logprobs.gap or (0.0, 0.0, 0)
    summed = run.d.sum([total, float(tokens)])
    out = {"rollout_logp_gap": summed[0] / max(1.0, summed[1]),
           "rollout_logp_gap_max": max(run.d.gather_objects(biggest)), "policy_lag": float(lag)}
    if synced is not None:
        out.update({"weight_sync_s": synced.seconds, "weight_sync_mb": synced.megabytes,
                    "weight_sync_tensors": float(synced.tensors)})
    return out


# ---- setup ---------------------------------------------------------------------------------------------

def _reward_name(source) -> str:
    return source.reward or ("audio" if source.kind == "audio" else "text")


def load_prompts(run: R.Run, cfg: RLConfig) -> Prompts:
    """Each source's items whose audio is usable (a source left with none fails naming why), the held-out
    prompts, and the mixture sampler; audio prepared (and cached) first."""
    loaded = [load_items(s) for s in cfg.prompts]
    R.prepare_audio(run, [p for items in loaded for it in items for p in it["audio"]], "prompts")
    bad = {p for p, c in run.store.clips.items() if c is None}
    sources = [[it for it in items if not any(p in bad for p in it["audio"])] for items in loaded]
    for s, items, usable in zip(cfg.prompts, loaded, sources):
        if not usable:
            raise empty_source_error(s, items, "prompts", "missing or corrupt audio")
        run.log.info(f"prompts {s.manifest} as {s.kind} (weight {s.weight:g}, reward {_reward_name(s)}): "
                     f"{len(usable)} items")
    eval_items = []
    if cfg.eval_manifest:
        eval_items = eval_subset(read_manifest(cfg.eval_manifest, check_files=False), cfg.eval_items, cfg.seed)
        R.prepare_audio(run, [p for it in eval_items for p in it["audio"]], "eval")
        eval_items = [it for it in eval_items if not any(run.store.clips.get(p) is None for p in it["audio"])]
    run.log.info(run.store.summary())
    R.audio_ready(run)
    sampler = MixtureSampler([len(s) for s in sources], [s.weight for s in cfg.prompts], cfg.seed)
    return Prompts(sources, sampler, eval_items)


def build_models(run: R.Run, cfg: RLConfig) -> Models:
    """The policy, the PPO value model (from the start checkpoint with a zero head, or the resumed one's
    `value/`) and the frozen KL reference, with their optimizers. Under torchrun every model is built on the
    meta device and filled shard by shard (`run.shard`)."""
    d, model = run.d, run.model
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
    models = Models(policy, R.make_optimizer(policy, cfg.optim), ref=ref)
    if value is not None:
        value.train()
        models.value, models.value_optimizer = value, R.make_optimizer(value, cfg.optim, lr=cfg.value_lr)
    return models


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


# ---- phases 1–4: rollouts, rewards, log-probs, advantages ----------------------------------------------

def _sampling_temperature(cfg: RLConfig) -> float:
    """The temperature of the distribution the rollouts come from: softmax(logits / temperature) (top_p = 1)."""
    return cfg.temperature if cfg.temperature > 0 else 1.0


def generate_rollouts(run: R.Run, cfg: RLConfig, prompts: Prompts, policy: Policy, step: int,
                      server: RolloutServer | None = None) -> Rollout:
    """Phase 1: this rank's share of the step's prompts, `samples_per_prompt` completions each, from the
    engine on the policy (colocated) or from the rollout server (decoupled; the same seeds)."""
    t0 = time.perf_counter()
    draws = [prompts.sampler.next() for _ in range(cfg.prompts_per_step)]  # every rank draws them all
    mine = R.rank_share(list(enumerate(draws)), run.d)
    items = [prompts.sources[s][i] for _, (s, i) in mine]
    source_ids = [s for _, (s, _) in mine]
    messages = [R.prompt_messages(item, cfg.prompts[s].kind) for item, s in zip(items, source_ids)]
    encoded = [run.processor.encode(m, think=True) for m in messages]
    sp = [SamplingParams(n=cfg.samples_per_prompt, temperature=cfg.temperature, top_p=cfg.top_p,
                         max_tokens=cfg.max_new_tokens, max_think_tokens=cfg.max_think_tokens,
                         seed=(cfg.seed * 1_000_003 + step * 10_007 + g) % 2**62) for g, _ in mine]
    if server is not None:
        outs = server.complete(messages, sp, expected=[e.input_ids for e in encoded])
    else:
        outs = R.generate(run, run.inference_model(policy), encoded, sp, cfg.rollout_batch_size)
    seconds = time.perf_counter() - t0
    examples = []
    for enc, item, s, comps in zip(encoded, items, source_ids, outs):
        clips = [run.store.clips[p] for p in render(item, cfg.prompts[s].kind)[1]]
        for c in comps:
            if c.prompt_tokens != len(enc.input_ids):
                raise RuntimeError(f"the engine changed the prompt ({c.prompt_tokens} tokens, sent "
                                   f"{len(enc.input_ids)}); max_think_tokens=0 is not supported in RL")
            # the stop token the model actually sampled (a stop string leaves none to score)
            stop = [c.stop_reason] if isinstance(c.stop_reason, int) else []
            ids = list(enc.input_ids) + list(c.token_ids) + stop
            if len(ids) == len(enc.input_ids):  # nothing generated: score the prompt's last token
                ids = ids + [run.tokenizer.eot_id]
            forced = [len(enc.input_ids) + p for p in c.forced_positions]  # the budget's `</think>`: not sampled
            examples.append(Example(ids, len(enc.input_ids), clips, item, forced))
    return Rollout(items, source_ids, [c for comps in outs for c in comps], examples, seconds)


def score_rollouts(cfg: RLConfig, rollout: Rollout) -> Scores:
    """Phase 2: each completion scored by its source's reward function; the parts scored for every one."""
    n = cfg.samples_per_prompt
    texts = [c.text for c in rollout.completions]
    cols = {k: [it.get(k) for it in rollout.items for _ in range(n)]
            for k in ("answer", "choices", "task", "question_type")}
    total = torch.zeros(len(texts))
    for s_idx, source in enumerate(cfg.prompts):
        sel = [j for j in range(len(texts)) if rollout.source_ids[j // n] == s_idx]
        if sel:
            reward = rw.get(_reward_name(source))
            got = reward([texts[j] for j in sel], **{k: [v[j] for j in sel] for k, v in cols.items()})
            total[sel] = torch.tensor(got, dtype=torch.float32)
    parts = {name: rw.get(name)(texts, **cols) for name in rw.PARTS}
    return Scores(total, parts["correct"], parts["format"])


@torch.no_grad()
def rollout_logprobs(run: R.Run, cfg: RLConfig, models: Models, rollout: Rollout) -> RolloutLogprobs:
    """Phase 3: the rollout policy's log-probs, and the values (PPO) and reference log-probs (KL), before
    any update; `micro_batch_size` sequences per forward pass."""
    examples, temp = rollout.examples, _sampling_temperature(cfg)
    out = RolloutLogprobs([], [] if models.value is not None else None, [] if models.ref is not None else None)
    models.policy.eval()
    for idx in R.micro_batches(list(range(len(examples))), cfg.micro_batch_size):
        batch = collate([[examples[i]] for i in idx], run.store, run.tokenizer, False).to(run.d.device)
        mask = batch.labels != -100
        with run.autocast():
            logp, _ = models.policy(**batch.inputs(), temperature=temp)
            v = models.value(**batch.inputs()) if models.value is not None else None
            ref_logp = models.ref(**batch.inputs(), temperature=temp)[0] if models.ref is not None else None
        for k, i in enumerate(idx):
            L = len(examples[i])
            out.logp.append(_server_logp(examples[i], rollout.completions[i], logp[k, :L].float().cpu(), out))
            if v is not None:
                out.values.append((v[k, :L] * mask[k, :L]).float().cpu())
            if ref_logp is not None:
                out.ref_logp.append(ref_logp[k, :L].float().cpu())
    models.policy.train()
    return out


def _server_logp(ex: Example, c: Completion, trainer: torch.Tensor, out: RolloutLogprobs) -> torch.Tensor:
    """The rollout policy's log-probs [L]: the trainer's recomputation (colocated), or (decoupled) the
    server's for every sampled token — the policy the tokens really came from — with |server − trainer| added
    to `out.gap` over the tokens the loss uses (not forced ones)."""
    server = getattr(c, "logprobs", None)
    if server is None:
        return trainer
    logp = trainer.clone()
    n = min(len(server), len(ex) - ex.n_prompt)  # (a completion with nothing generated scores an added EOT)
    logp[ex.n_prompt : ex.n_prompt + n] = torch.tensor(server[:n], dtype=torch.float32)
    used = torch.ones(n, dtype=torch.bool)
    used[[p for p in c.forced_positions if p < n]] = False
    diff = (logp[ex.n_prompt : ex.n_prompt + n] - trainer[ex.n_prompt : ex.n_prompt + n]).abs()[used]
    total, biggest, tokens = out.gap or (0.0, 0.0, 0)
    out.gap = (total + float(diff.sum()), max(biggest, float(diff.max()) if diff.numel() else 0.0),
               tokens + int(diff.numel()))
    return logp


def _pad(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out


def compute_advantages(cfg: RLConfig, rollout: Rollout, scores: Scores, logprobs: RolloutLogprobs) -> Advantages:
    """Phase 4. GRPO: one advantage per sequence (its score against its group's), on all its targets.
    PPO: GAE over the targets, the score on the final one; the returns are the value targets."""
    examples = rollout.examples
    if logprobs.values is None:
        seq_adv = losses.group_advantages(scores.total, cfg.samples_per_prompt, cfg.scale_rewards)
        adv = []
        for i, ex in enumerate(examples):
            a = torch.zeros(len(ex))
            a[ex.n_prompt :] = seq_adv[i]
            adv.append(a)
        return Advantages(adv)
    width = max(len(ex) for ex in examples)
    mask = torch.zeros(len(examples), width, dtype=torch.bool)
    for i, ex in enumerate(examples):
        mask[i, ex.n_prompt : len(ex)] = True
    rewards_t = losses.final_token_rewards(scores.total, mask)
    adv, ret = losses.gae(rewards_t, _pad(logprobs.values, width), mask, cfg.gamma, cfg.lam)
    return Advantages([adv[i, : len(ex)] for i, ex in enumerate(examples)],
                      [ret[i, : len(ex)] for i, ex in enumerate(examples)])


# ---- phase 5: optimisation -----------------------------------------------------------------------------

def optimise(run: R.Run, cfg: RLConfig, models: Models, rollout: Rollout, logprobs: RolloutLogprobs,
             advantages: Advantages, step: int, ckpt: R.Checkpointer) -> UpdateStats:
    """Phase 5: `epochs` seeded permutations of the rollouts, each split into `minibatches` optimizer steps."""
    lr = R.lr_at(step, cfg.optim, cfg.max_steps)
    R.set_lr(models.optimizer, lr)
    if models.value is not None:
        R.set_lr(models.value_optimizer, R.lr_at(step, cfg.optim, cfg.max_steps, base=cfg.value_lr))
    stats = UpdateStats(lr)
    rng = np.random.default_rng([cfg.seed, step, run.d.rank])
    for _ in range(cfg.epochs):
        perm = rng.permutation(len(rollout.examples)).tolist()
        for mb in np.array_split(np.asarray(perm), cfg.minibatches):
            loss = _accumulate_gradients(run, cfg, models, rollout, logprobs, advantages, mb.tolist(), stats.sums)
            if not stats.first:  # before any update of this step: the ratio is rollout policy vs. the same weights
                stats.first = dict(stats.sums)
            _optimizer_step(run, cfg, models, loss, step, ckpt, stats)
    return stats


def _accumulate_gradients(run: R.Run, cfg: RLConfig, models: Models, rollout: Rollout, logprobs: RolloutLogprobs,
                          advantages: Advantages, mb: list[int], sums: dict[str, float]) -> torch.Tensor:
    """Backward of one minibatch, `micro_batch_size` sequences at a time, each loss divided by the
    minibatch's `loss_norm` denominator; adds the loss statistics to `sums`. Returns the last micro-batch's
    loss (for the divergence guard)."""
    d, examples, temp = run.d, rollout.examples, _sampling_temperature(cfg)
    mb_tokens = sum(examples[i].n_target for i in mb)
    denom = {"per-sequence": len(mb), "per-token": mb_tokens,
             "global-token": d.sum([mb_tokens])[0] / d.world}[cfg.loss_norm]
    for idx in R.micro_batches(mb, cfg.micro_batch_size):
        batch = collate([[examples[i]] for i in idx], run.store, run.tokenizer, False).to(d.device)
        width = batch.input_ids.shape[1]
        stack = lambda rows: _pad([rows[i] for i in idx], width).to(d.device)  # noqa: E731
        mask = batch.labels != -100
        with run.autocast():
            logp, ent = models.policy(**batch.inputs(), with_entropy=True, temperature=temp)
            loss, st = losses.policy_loss(
                logp, stack(logprobs.logp), stack(advantages.adv), mask, clip=cfg.clip, norm=cfg.loss_norm,
                denom=denom, entropy=ent, entropy_coef=cfg.entropy_coef,
                ref_logp=stack(logprobs.ref_logp) if models.ref is not None else None, kl_coef=cfg.kl_coef)
            if models.value is not None:
                vl, vst = losses.value_loss(models.value(**batch.inputs()), stack(logprobs.values),
                                            stack(advantages.returns), mask, norm=cfg.loss_norm, denom=denom,
                                            clip=cfg.value_clip)
                loss = loss + cfg.value_coef * vl
                st.update(vst)
        loss.backward()
        for k, x in st.items():
            sums[k] = sums.get(k, 0.0) + x
    return loss


def _optimizer_step(run: R.Run, cfg: RLConfig, models: Models, loss: torch.Tensor, step: int,
                    ckpt: R.Checkpointer, stats: UpdateStats) -> None:
    """Clip both gradients, stop if anything is not finite, step both optimizers; the norms go to `stats`."""
    loss_now = run.d.sum([float(loss.detach())])[0]
    params, v_params = models.params(), models.value_params()
    grad_norm = distributed.clip_grad_norm(params, cfg.optim.grad_clip)
    v_norm = distributed.clip_grad_norm(v_params, cfg.optim.grad_clip) if models.value is not None else 0.0
    R.stop_if_diverged(ckpt, step, loss_now, {"grad norm": grad_norm, "value grad norm": v_norm})
    R.fill_missing_grads(params)
    models.optimizer.step()
    models.optimizer.zero_grad(set_to_none=True)
    if models.value is not None:
        R.fill_missing_grads(v_params)
        models.value_optimizer.step()
        models.value_optimizer.zero_grad(set_to_none=True)
    stats.grad_norms.append(grad_norm)
    stats.value_grad_norms.append(v_norm)


# ---- phase 6: metrics, and evaluation ------------------------------------------------------------------

def step_metrics(run: R.Run, cfg: RLConfig, models: Models, rollout: Rollout, scores: Scores, stats: UpdateStats,
                 t0: float) -> tuple[dict, list[int]]:
    """Phase 6: the step's `train` record over all ranks' rollouts, and every completion's reasoning length
    (for the final histogram)."""
    d = run.d
    keys = sorted(stats.sums)
    totals = dict(zip(keys, d.sum([stats.sums[k] for k in keys])))
    tokens = max(1.0, totals.get("tokens", 1.0))
    first = d.sum([stats.first.get("approx_kl_sum", 0.0), stats.first.get("tokens", 0.0)])
    local = [(float(scores.total[j]), scores.correct[j], scores.format[j], c.reasoning_tokens, c.completion_tokens,
              c.finish_reason == "length") for j, c in enumerate(rollout.completions)]
    arr = np.asarray([r for part in d.gather_objects(local) for r in part], dtype=np.float64)
    group_std = scores.total.view(-1, cfg.samples_per_prompt).std(1, unbiased=False)
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
        # the first minibatch, before this step's first update: ≈ 0 when the rollouts' log-probs are the policy's
        "approx_kl_first": first[0] / max(1.0, first[1]),
        "policy_loss": totals.get("policy_loss_sum", 0.0) / tokens,
        "grad_norm": float(np.mean(stats.grad_norms)), "lr": stats.lr,
        "groups_all_same": float((group_std == 0).float().mean()),
        "rollout_s": rollout.seconds, "step_s": time.perf_counter() - t0,
    }
    if models.value is not None:
        metrics["value_loss"] = totals.get("value_loss_sum", 0.0) / tokens
        metrics["value_grad_norm"] = float(np.mean(stats.value_grad_norms))
    if models.ref is not None:
        metrics["ref_kl"] = totals.get("ref_kl_sum", 0.0) / tokens
    return metrics, arr[:, 3].astype(int).tolist()


def evaluate(run: R.Run, cfg: RLConfig, policy: Policy, items: list[dict], step: int,
             server: RolloutServer | None = None) -> dict:
    """Mean reward (the `eval_kind` reward) and accuracy on the held-out prompts; {} without any. Decoupled,
    the server answers (it holds this step's weights: `RolloutServer.due` syncs before every evaluation)."""
    if not items:
        return {}
    result = R.evaluate_generation(run, server or run.inference_model(policy), items, cfg.eval_kind,
                                   cfg.eval_max_tokens or cfg.max_new_tokens, cfg.max_think_tokens,
                                   reward=rw.get("audio" if cfg.eval_kind == "audio" else "text"), seed=cfg.seed,
                                   temperature=cfg.eval_temperature, samples=cfg.eval_samples)
    policy.train()
    R.report_eval(run, step, result)
    return result
