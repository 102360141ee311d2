"""`audior1 train dpo`: sigmoid DPO on preference pairs (MGRD's self-cognition correction, paper §6.3).

`_train` reads like SFT's: load the pairs (each a chosen and a rejected completion of one prompt, rendered as
two `Example`s), build the policy, compute the reference log-probs once with the starting weights (cached in
OUT/reference_logps.json, so a resumed run scores against the same reference without a second model in
memory), resume, then per step
1. the batch: `batch_size` pairs from a seeded, resumable permutation;
2. `forward_backward` → `PairStats`: each process takes its share of pairs, `micro_batch_size` at a time; the
   loss is −log σ(β·((π_c − ref_c) − (π_r − ref_r))) (`losses.dpo_loss`, sequence log-probs of the target
   tokens) averaged over the global batch;
3. `sft.optimizer_step` (clip, divergence guard, AdamW);
4. metrics (loss, margin, preference accuracy, chosen / rejected rewards), checkpoints, plots.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audior1.data.manifest import read_manifest
from audior1.train import run as R
from audior1.train.config import DPOConfig
from audior1.train.data import DataError, Example, build_examples, collate
from audior1.train.losses import dpo_loss
from audior1.train.policy import Policy
from audior1.train.sft import build_policy, optimizer_step

DPO_PANELS = [
    ("loss.png", "DPO loss", [("train", "loss", "train")]),
    ("margin.png", "reward margin", [("train", "margin", "β·(chosen − rejected) vs reference")]),
    ("accuracy.png", "preference accuracy", [("train", "pref_accuracy", "margin > 0")]),
    ("lr.png", "learning rate", [("train", "lr", "lr")]),
]
REF_FILE = "reference_logps.json"


@dataclass
class PairStats:
    loss: float
    margin: float
    pref_accuracy: float
    chosen_reward: float
    rejected_reward: float


class PairSampler:
    """Seeded permutations of the pairs, one per epoch; its position is checkpointed."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.pos = n, seed, 0, 0

    def next(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            take = order[self.pos: self.pos + k - len(out)].tolist()
            out += take
            self.pos += len(take)
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]


def train(cfg: DPOConfig, resume=None) -> dict:
    return R.execute(cfg, resume, _train)


def _train(run: R.Run, cfg: DPOConfig) -> dict:
    pairs = load_pairs(run, cfg)
    policy, optimizer = build_policy(run, cfg)
    ref = reference_logps(run, cfg, policy, pairs)
    sampler = PairSampler(len(pairs), cfg.seed)
    ckpt = R.Checkpointer(run, "dpo", {"policy": (policy, optimizer)}, {"data": sampler})
    step = ckpt.resume()
    bar = run.progress(total=cfg.max_steps, initial=step, desc="dpo")
    stats = None
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        idx = sampler.next(cfg.batch_size)  # 1. the batch
        lr = R.lr_at(step, cfg.optim, cfg.max_steps)
        R.set_lr(optimizer, lr)
        stats = forward_backward(run, cfg, policy, pairs, ref, idx)  # 2.
        grad_norm = optimizer_step(cfg, policy, optimizer, stats.loss, step, ckpt)  # 3.
        step += 1
        if R.log_due(step, cfg):  # 4.
            run.log.write("train", step, {**stats.__dict__, "lr": lr, "grad_norm": grad_norm,
                                          "step_time": time.perf_counter() - t0})
        bar.update(1)
        bar.set_postfix(loss=f"{stats.loss:.4f}", margin=f"{stats.margin:.3f}")
        if R.due(step, cfg.save_every, cfg.max_steps):
            ckpt.save(step)
    bar.close()
    path = ckpt.save(step)
    run.plot(DPO_PANELS)
    return {"step": step, **(stats.__dict__ if stats else {}), "checkpoint": str(path)}


# ---- setup ---------------------------------------------------------------------------------------------

def _rendered(item: dict, side: str) -> dict:
    c = item.get(side)
    if not isinstance(c, dict) or not isinstance(c.get("reasoning"), str) or c.get("answer") is None:
        raise DataError(f"pair {item.get('id')!r}: field {side!r} must be {{\"reasoning\": str, \"answer\": str}}")
    return {**item, "answer": str(c["answer"]), "dpo_cot": c["reasoning"]}


def load_pairs(run: R.Run, cfg: DPOConfig) -> list[tuple[Example, Example]]:
    """Every pair as (chosen, rejected) examples of the same prompt; a pair with either side too long or with
    unusable audio is skipped and counted."""
    items = [it for path in cfg.pairs for it in read_manifest(path, check_files=False)]
    if not items:
        raise DataError(f"pairs {cfg.pairs}: no pair")
    R.prepare_audio(run, [p for it in items for p in it["audio"]], "pairs")
    kind = "audio_cot" if cfg.kind == "audio" else "text_cot"
    skipped = Counter()
    pairs = []
    for it in items:
        sides = [_rendered(it, "chosen"), _rendered(it, "rejected")]
        ex = [build_examples([s], kind, run.tokenizer, run.store, max_len=cfg.max_seq_len, reasoning_field="dpo_cot",
                             skipped=skipped) for s in sides]
        if all(ex):
            pairs.append((ex[0][0], ex[1][0]))
    run.log.info(f"{len(pairs)} pairs from {len(items)} ({', '.join(cfg.pairs)})"
                 + (f"; skipped: {dict(skipped)}" if skipped else ""))
    if not pairs:
        raise DataError(f"pairs {cfg.pairs}: no usable pair (longer than max_seq_len {cfg.max_seq_len} or audio "
                        f"missing: {dict(skipped)})")
    R.audio_ready(run)
    return pairs


def _sequence_logps(run: R.Run, policy: Policy, examples: list[Example]) -> torch.Tensor:
    batch = collate([[e] for e in examples], run.store, run.tokenizer, False).to(run.d.device)
    with run.autocast():
        logp, _ = policy(**batch.inputs())
    return (logp.float() * (batch.labels != -100)).sum(1)


@torch.no_grad()
def reference_logps(run: R.Run, cfg: DPOConfig, policy: Policy, pairs: list) -> torch.Tensor:
    """[P, 2] sequence log-probs of (chosen, rejected) under the starting weights, cached in OUT so that a
    resumed run uses the reference of the original start (its weights are gone by then)."""
    path = Path(cfg.out_dir) / REF_FILE
    key = hashlib.sha256(json.dumps([[a.input_ids, b.input_ids] for a, b in pairs]).encode()).hexdigest()[:16]
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("pairs") == key:
            return torch.tensor(cached["logps"])
    if (Path(cfg.out_dir) / "checkpoints").is_dir() and any((Path(cfg.out_dir) / "checkpoints").iterdir()):
        raise RuntimeError(f"{path} is missing or was computed for other pairs, and {cfg.out_dir} already holds "
                           "trained checkpoints: the reference (the starting model) cannot be recomputed")
    policy.eval()
    out = []
    for idx in R.micro_batches(list(range(len(pairs))), cfg.micro_batch_size):
        flat = [ex for i in idx for ex in pairs[i]]
        out.append(_sequence_logps(run, policy, flat).view(-1, 2).cpu())
    policy.train()
    logps = torch.cat(out)  # every process computes every pair: the same table everywhere
    if run.d.main:
        path.write_text(json.dumps({"pairs": key, "logps": logps.tolist()}))
    run.d.barrier()
    return logps


# ---- one step ------------------------------------------------------------------------------------------

def forward_backward(run: R.Run, cfg: DPOConfig, policy: Policy, pairs: list, ref: torch.Tensor,
                     idx: list[int]) -> PairStats:
    """Backward of this process's share of the step's pairs; the loss is the mean over the global batch."""
    d = run.d
    sums = np.zeros(5)
    share = R.rank_share(idx, d)
    for micro in R.micro_batches(share, cfg.micro_batch_size):
        flat = [ex for i in micro for ex in pairs[i]]
        logps = _sequence_logps(run, policy, flat).view(-1, 2)
        r = ref[micro].to(logps.device)
        losses, margin = dpo_loss(logps[:, 0], logps[:, 1], r[:, 0], r[:, 1], cfg.beta)
        (losses.sum() / (len(idx) / d.world)).backward()
        chosen = cfg.beta * (logps[:, 0].detach() - r[:, 0])
        rejected = cfg.beta * (logps[:, 1].detach() - r[:, 1])
        sums += [float(losses.detach().sum()), float(margin.detach().sum()), float((margin > 0).sum()),
                 float(chosen.sum()), float(rejected.sum())]
    sums = np.asarray(d.sum(sums.tolist())) / len(idx)
    return PairStats(*map(float, sums))
