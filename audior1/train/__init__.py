"""Training: SFT, RL (PPO/GRPO) and DPO for MGRD, single process or FSDP2 under torchrun.

Modules (data flows down this list; nothing imports upward):
- `config`       dataclasses whose fields are the YAML keys; load + `key=value` overrides
- `data`         manifests → examples, the weighted mixture, packing/padding, the encoder-output cache
- `losses`       SFT, policy/value and DPO losses, GAE, group advantages (tensor shapes documented)
- `rewards`      `f(completions, **columns) -> list[float]` and their registry
- `policy`       the modules FSDP wraps: policy (log-probs, entropy) and PPO value model
- `distributed`  torchrun process group, FSDP2 sharding, gathers
- `state`        atomic checkpoints (official layout + optimizer/RNG/data position) and resume
- `logging`      metrics JSONL, TensorBoard (optional), PNG plots, the reasoning-collapse alarm
- `run`          what SFT and RL share: setup, resume and checkpoints (`Checkpointer`), divergence guard,
                 cadence, optimizer and schedule, generation
- `sft`, `rl`, `dpo`  the training loops;  `memory` the per-GPU memory estimate;  `cli` the commands
Importing this package imports nothing heavy.
"""
