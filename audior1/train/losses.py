"""Losses for SFT and RL (PPO and GRPO share everything here), with tensor shapes in every signature.

Conventions
- B sequences of T tokens. Per-token tensors are *label-aligned*: `x[b, t]` belongs to token t of row b
  (e.g. `logp[b, t] = log p(token_t | tokens_<t)`), and `mask[b, t]` is True where token t is a target /
  generated token. Values follow the same alignment: `values[b, t]` is V(tokens_<t), the value of the state
  in which token t is chosen.
- Rewards sit on the final generated token (`final_token_rewards`); with γ = λ = 1 GAE reduces to
  `A_t = R − V_t` and the return of every token is R.
- Aggregation (`aggregate`) is by name — "per-sequence" (mean over each sequence's tokens, then over
  sequences; the GRPO paper), "per-token" (mean over all tokens of the minibatch; DAPO), "global-token"
  (sum over tokens divided by a count the caller fixes for the whole batch, e.g. all ranks' tokens) — and the
  caller passes the denominator, so accumulation and data parallelism give the same gradient as one big
  batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from audior1.config import IGNORE_INDEX

LOGIT_CHUNK_ROWS = 1024


# ---- log-probabilities and entropy from hidden states -------------------------------------------

def _chunk_stats(lm_head: torch.nn.Module, h: torch.Tensor, targets: torch.Tensor, with_entropy: bool,
                 temperature: float = 1.0):
    logits = lm_head(h).float()  # [K, V]
    if temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None])[:, 0] - logz
    if not with_entropy:
        return logp, torch.zeros_like(logp)
    probs = torch.softmax(logits, dim=-1)
    return logp, logz - (probs * logits).sum(-1)


def token_logprobs(lm_head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor,
                   with_entropy: bool = False, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """hidden [B, T, D], labels [B, T] (IGNORE_INDEX where no target) → logp [B, T] (0 off-target) and
    entropy [B, T] of the predictive distribution at each target (or None). With `temperature` the
    distribution is softmax(logits / T): the one rollouts were sampled from (RL).

    Only target positions go through the head, in chunks of LOGIT_CHUNK_ROWS rows that are recomputed in
    the backward pass, so full-vocabulary logits never exist for more than one chunk at a time."""
    targets = labels[:, 1:]
    sel = targets != IGNORE_INDEX  # [B, T-1]
    h = hidden[:, :-1][sel]  # [K, D]
    tgt = targets[sel]  # [K]
    pieces_lp, pieces_ent = [], []
    for s in range(0, h.shape[0], LOGIT_CHUNK_ROWS):
        args = (lm_head, h[s : s + LOGIT_CHUNK_ROWS], tgt[s : s + LOGIT_CHUNK_ROWS], with_entropy, temperature)
        if torch.is_grad_enabled() and h.requires_grad:
            lp, ent = checkpoint(_chunk_stats, *args, use_reentrant=False)
        else:
            lp, ent = _chunk_stats(*args)
        pieces_lp.append(lp)
        pieces_ent.append(ent)
    logp = torch.zeros(labels.shape, dtype=torch.float32, device=hidden.device)
    flat_lp = torch.cat(pieces_lp) if pieces_lp else torch.zeros(0, device=hidden.device)
    logp[:, 1:] = logp[:, 1:].masked_scatter(sel, flat_lp)
    if not with_entropy:
        return logp, None
    entropy = torch.zeros_like(logp)
    flat_ent = torch.cat(pieces_ent) if pieces_ent else torch.zeros(0, device=hidden.device)
    entropy[:, 1:] = entropy[:, 1:].masked_scatter(sel, flat_ent)
    return logp, entropy


# ---- SFT ----------------------------------------------------------------------------------------------

def sft_loss(logp: torch.Tensor, mask: torch.Tensor, denom: float) -> torch.Tensor:
    """logp [B, T], mask [B, T] → Σ −logp over targets / denom (denom: the step's target-token count)."""
    return -(logp * mask).sum() / denom


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid DPO (Rafailov et al. 2023) per pair: sequence log-probs [P] → (−log σ(margin) [P], margin [P]),
    margin = β·((π_c − ref_c) − (π_r − ref_r))."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -torch.nn.functional.logsigmoid(margin), margin


# ---- rewards → advantages -----------------------------------------------------------------------

def final_token_rewards(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scores [B], mask [B, T] → rewards [B, T]: each score on its row's last masked token, 0 elsewhere."""
    t = mask.shape[1]
    last = t - 1 - mask.flip(1).float().argmax(1)  # index of the last True
    rewards = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    has = mask.any(1)
    rewards[has, last[has]] = scores[has].float()
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards, values, mask [B, T] → (advantages [B, T], returns [B, T]), both 0 off-mask.

    δ_t = r_t + γ V_{t+1} − V_t over the generated tokens (V after the last one is 0: the episode ends);
    A_t = Σ_l (γλ)^l δ_{t+l}; returns = A + V (the value target)."""
    m = mask.float()
    values = values.float() * m
    adv = torch.zeros_like(values)
    running = torch.zeros(values.shape[0], device=values.device)
    next_value = torch.zeros(values.shape[0], device=values.device)
    for t in range(values.shape[1] - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m[:, t] + running * (1 - m[:, t])
        adv[:, t] = running * m[:, t]
        next_value = torch.where(mask[:, t], values[:, t], next_value)
    return adv, (adv + values) * m


def group_advantages(scores: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """scores [G·n] (n = group_size consecutive samples of one prompt) → advantages [G·n]:
    score − group mean, divided by the group's std when `scale` (GRPO)."""
    g = scores.float().view(-1, group_size)
    centred = g - g.mean(1, keepdim=True)
    if scale:
        centred = centred / (g.std(1, keepdim=True, unbiased=False) + eps)
    return centred.reshape(-1)


# ---- aggregation and the two losses ---------------------------------------------------------------------

def aggregate(x: torch.Tensor, mask: torch.Tensor, norm: str, denom: float) -> torch.Tensor:
    """x, mask [B, T] → scalar. per-sequence: Σ_b mean_t(x[b]) / denom (denom = sequences);
    per-token and global-token: Σ x·mask / denom (denom = tokens, of the minibatch or of the batch)."""
    m = mask.float()
    if norm == "per-sequence":
        return ((x * m).sum(1) / m.sum(1).clamp(min=1)).sum() / denom
    if norm in ("per-token", "global-token"):
        return (x * m).sum() / denom
    raise ValueError(f"unknown loss normalisation {norm!r}")


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π ‖ π_ref) from samples of π: exp(r) − r − 1, r = ref − logp. [B, T]."""
    r = ref_logp - logp
    return torch.exp(r) - r - 1


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                clip: float, norm: str, denom: float, entropy: torch.Tensor | None = None,
                entropy_coef: float = 0.0, ref_logp: torch.Tensor | None = None,
                kl_coef: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The clipped surrogate (PPO and GRPO alike).

    logp [B, T] (with grad), old_logp [B, T] (rollout policy), advantages [B, T] (per token; GRPO repeats
    a sequence's advantage on its tokens), mask [B, T]. Returns the scalar loss and detached statistics
    summed over tokens (`*_sum`, divide by `tokens`) so callers can combine them across micro-batches."""
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    if entropy is not None and entropy_coef:
        per_token = per_token - entropy_coef * entropy
    if ref_logp is not None and kl_coef:
        per_token = per_token + kl_coef * kl_k3(logp, ref_logp)
    loss = aggregate(per_token, mask, norm, denom)
    with torch.no_grad():
        m = mask.float()
        clipped_on = ((ratio > 1 + clip) & (advantages > 0)) | ((ratio < 1 - clip) & (advantages < 0))
        stats = {
            "tokens": float(m.sum()),
            "clip_fraction_sum": float((clipped_on.float() * m).sum()),
            "approx_kl_sum": float((((ratio - 1) - log_ratio) * m).sum()),  # KL(rollout ‖ current), k3
            "policy_loss_sum": float((per_token * m).sum()),
        }
        if entropy is not None:
            stats["entropy_sum"] = float((entropy * m).sum())
        if ref_logp is not None:
            stats["ref_kl_sum"] = float((kl_k3(logp, ref_logp) * m).sum())
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, *,
               norm: str, denom: float, clip: float | None = None) -> tuple[torch.Tensor, dict]:
    """values, old_values, returns, mask [B, T] → 0.5·(V − R)² aggregated like the policy loss (with
    `clip`: the larger of the clipped and unclipped errors, V clipped to old ± clip)."""
    err = (values - returns) ** 2
    if clip is not None:
        v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        err = torch.maximum(err, (v_clipped - returns) ** 2)
    per_token = 0.5 * err
    loss = aggregate(per_token, mask, norm, denom)
    with torch.no_grad():
        stats = {"value_loss_sum": float((per_token * mask.float()).sum())}
    return loss, stats


def mean_entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """logits [..., V] → entropy [...] (a helper for tests and diagnostics)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
