"""`audior1 train memory`: a per-GPU memory estimate for FSDP2 training of a preset (an estimate, not a
measurement; docs/training.md explains each line).

Model of what `audior1 train` does under torchrun:
- Every parameter is sharded over the N GPUs and kept in fp32 (master weights): 4·P/N bytes.
- Trainable parameters add fp32 gradients (4·P_t/N) and AdamW's two moments (8·P_t/N).
- Working set: the root unit (embeddings, head, adapter, encoder) stays gathered in bf16 for the whole
  step (2·P_root); two decoder layers are gathered at a time (current + prefetch), each 2·P_layer; the unit
  being reduced holds bf16 gradients plus their fp32 copy for the reduce-scatter (6·P_unit, trainable part).
- Activations (bf16): with activation checkpointing, one hidden state per layer (2·b·s·D·L) plus one layer
  recomputed in full (2·b·s·(10·D + 4·I)); without, the full set for every layer. Attention is SDPA (no s²
  term). The loss runs the head on 1024 target rows at a time in fp32: 1024·V·4 bytes (×2 for the entropy
  in RL).
- PPO adds a value model of the same size (same sharding, its own AdamW and activations).
- With a KL term (`--kl`, i.e. `kl_coef > 0`) the frozen reference policy adds its shards, kept in the compute
  dtype (2·P/N in bf16); its forward runs without gradients, so it adds no activations to the peak.
- Not included in the total: the unsharded copy the in-process engine uses for generation (eval accuracy,
  rollouts): 2·P bytes in bf16 on every GPU — at 33 B that alone is 67 GB, so at that scale use
  `eval_items: 0` for SFT and an external sampler (vLLM) for rollouts; the fp32 encoder copy each process
  holds while it fills the feature cache before step 1, released then (4·P_enc); and the CUDA context /
  allocator slack (add ~10%). Both copies are reported beside the total (`generation_copy_bf16`,
  `cache_encoder_fp32`).
- LoRA (`--lora-rank R`): the base is frozen and kept in `--base-dtype` (bf16: 2·P/N, no fp32 master copy);
  only the adapters — r·(in + out) per targeted linear layer, `train.lora.count_parameters` — have fp32
  weights, gradients and AdamW moments (16 bytes each). With one GPU nothing is gathered; with N the base
  shards are gathered as for full training and the reduce buffers hold only adapter gradients. Activations
  are unchanged: the backward still runs through every layer above the first adapter.
- While loading (`loading_gb`): each process allocates only its fp32 shards (4·P/N per model) and reads one
  tensor's local rows at a time, so the transient is the largest tensor's rows once in the file's bf16 on
  the host (2·P_max/N) and once in fp32 on the device (4·P_max/N). Before the sharded load every process
  held the whole model in fp32 (4·P), shown as `before_whole_model_fp32`.
"""

from __future__ import annotations

import torch

from audior1.config import preset
from audior1.model import StepAudioR1ForCausalLM

GB = 1024**3


def part_sizes(name: str) -> dict[str, int]:
    """Parameter counts: encoder, adapter, embed, head, one layer, layers, norm, total, largest tensor."""
    cfg = preset(name)
    with torch.device("meta"):
        model = StepAudioR1ForCausalLM(cfg)
    count = lambda prefix: sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))
    layers = count("model.layers.")
    return {"largest_tensor": max(p.numel() for p in model.parameters()), "encoder": count("encoder."),
            "adapter": count("adapter."), "embed": count("model.embed_tokens."),
            "head": count("lm_head."), "layers": layers, "layer": layers // cfg.text.num_hidden_layers,
            "norm": count("model.norm."), "total": sum(p.numel() for p in model.parameters()),
            "hidden": cfg.text.hidden_size, "intermediate": cfg.text.intermediate_size,
            "num_layers": cfg.text.num_hidden_layers, "vocab": cfg.text.vocab_size}


def estimate(name: str, gpus: int, *, seq_len: int = 8192, micro_batch: int = 1,
             trainable: list[str] | tuple[str, ...] = ("adapter", "decoder"), activation_checkpointing: bool = True,
             algo: str = "sft", kl: bool = False, lora_rank: int | None = None,
             lora_targets: list[str] | tuple[str, ...] = ("attention", "mlp"), base_dtype: str = "bfloat16") -> dict:
    s = part_sizes(name)
    decoder = s["embed"] + s["head"] + s["layers"] + s["norm"]
    p_train = (s["encoder"] if "encoder" in trainable else 0) + (s["adapter"] if "adapter" in trainable else 0) \
        + (decoder if "decoder" in trainable else 0)
    root = s["embed"] + s["head"] + s["encoder"] + s["adapter"] + s["norm"]
    root_train = p_train - (s["layers"] if "decoder" in trainable else 0)
    layer_train = s["layer"] if "decoder" in trainable else 0
    b, t, d, i, L, v = micro_batch, seq_len, s["hidden"], s["intermediate"], s["num_layers"], s["vocab"]
    models = 2 if algo == "ppo" else 1
    rows = {
        "params_fp32_sharded": 4 * s["total"] / gpus * models,
        "grads_fp32_sharded": 4 * p_train / gpus * models,
        "adamw_sharded": 8 * p_train / gpus * models,
        "root_gathered_bf16": 2 * root,
        "layers_gathered_bf16": 2 * 2 * s["layer"],
        "grad_reduce_buffers": 6 * max(root_train, layer_train),
        "activations": (2 * b * t * d * L + 2 * b * t * (10 * d + 4 * i)) if activation_checkpointing
        else 2 * b * t * (10 * d + 4 * i) * L,
        "loss_logit_chunk": 1024 * v * 4 * (2 if algo in ("grpo", "ppo") else 1),
    }
    beside = {"generation_copy_bf16": 2 * s["total"], "cache_encoder_fp32": 4 * s["encoder"]}
    if lora_rank:
        p_train = lora_parameters(name, lora_targets, lora_rank)
        base_bytes = 2 if base_dtype == "bfloat16" else 4
        gathered = gpus > 1
        rows = {f"base_{base_dtype}_sharded": base_bytes * s["total"] / gpus, **rows}
        rows.update({"lora_params_fp32_sharded": 4 * p_train / gpus * models,
                     "grads_fp32_sharded": 4 * p_train / gpus * models, "adamw_sharded": 8 * p_train / gpus * models,
                     "root_gathered_bf16": 2 * root if gathered else 0,
                     "layers_gathered_bf16": 4 * s["layer"] if gathered else 0,
                     "grad_reduce_buffers": 6 * p_train / L if gathered else 0})
        del rows["params_fp32_sharded"]
        if gpus == 1:  # one process generates with the training model itself (LoRA layers run in `forward`)
            beside["generation_copy_bf16"] = 0
        if algo == "ppo":  # the value model is trained in full (not LoRA)
            rows["value_model_fp32_sharded_with_adamw"] = 16 * s["total"] / gpus
    if kl:
        if algo == "sft":
            raise ValueError("kl: only RL (grpo, ppo) has a KL reference; SFT has none")
        rows["kl_reference_sharded_bf16"] = 2 * s["total"] / gpus
    if algo == "ppo":
        rows["activations"] *= 2
    total = sum(rows.values())
    return {"preset": name, "gpus": gpus, "seq_len": seq_len, "micro_batch": micro_batch, "algo": algo, "kl": kl,
            "trainable": [f"LoRA r={lora_rank} ({', '.join(lora_targets)}), base {base_dtype}"] if lora_rank
            else list(trainable), "activation_checkpointing": activation_checkpointing,
            "parameters": s["total"], "trainable_parameters": p_train,
            "per_gpu_gb": {k: round(x / GB, 2) for k, x in rows.items()}, "total_per_gpu_gb": round(total / GB, 1),
            "not_in_total_gb": {k: round(x / GB, 2) for k, x in beside.items()},
            "loading_gb": {k: round(x / GB, 2) for k, x in loading(s, gpus, 2 if lora_rank and base_dtype == "bfloat16"
                                                                   else 4).items()}}


def lora_parameters(name: str, targets, r: int) -> int:
    """LoRA parameters of rank r on the `targets` of a preset (counted on the meta device)."""
    from audior1.checkpoint import meta_shapes
    from audior1.train.lora import count_parameters

    return count_parameters(meta_shapes(preset(name)), list(targets), r)


def loading(s: dict, gpus: int, element: int = 4) -> dict[str, float]:
    """Bytes per process while loading one model for training (see the module docstring); bf16 files, loaded
    into `element`-byte parameters (4: fp32 master weights; 2: a frozen bf16 LoRA base)."""
    return {"shards_fp32": element * s["total"] / gpus, "largest_rows_host_bf16": 2 * s["largest_tensor"] / gpus,
            "largest_rows_device_fp32": element * s["largest_tensor"] / gpus, "before_whole_model_fp32": 4 * s["total"]}


def format_table(r: dict) -> str:
    lines = [f"{r['preset']}: {r['parameters'] / 1e9:.2f} B parameters ({r['trainable_parameters'] / 1e9:.2f} B "
             f"trainable: {', '.join(r['trainable'])}), {r['algo']}{' with KL' if r['kl'] else ''}, "
             f"{r['gpus']} GPUs, micro-batch "
             f"{r['micro_batch']} × {r['seq_len']} tokens, activation checkpointing "
             f"{'on' if r['activation_checkpointing'] else 'off'}"]
    for k, gb in r["per_gpu_gb"].items():
        lines.append(f"  {k:<26} {gb:>8.2f} GB")
    lines.append(f"  {'total per GPU':<26} {r['total_per_gpu_gb']:>8.1f} GB  (+ ~10% allocator/CUDA context; "
                 "generation copy not included, see --help)")
    for k, gb in r["not_in_total_gb"].items():
        lines.append(f"  {k:<26} {gb:>8.2f} GB  (not in the total)")
    ld = r["loading_gb"]
    lines.append(f"  while loading: {ld['shards_fp32']:.2f} GB of parameter shards per model (fp32, or the LoRA base dtype), plus one tensor's rows "
                 f"at a time (≤ {ld['largest_rows_host_bf16']:.2f} GB host, {ld['largest_rows_device_fp32']:.2f} GB "
                 f"device); before the sharded load: {ld['before_whole_model_fp32']:.2f} GB per process")
    return "\n".join(lines)
