"""LoRA training: peft's LoRA layers injected into our own modules, for `train sft`, `train rl` and `train dpo`.

With `lora:` in a training config the base model is frozen and only low-rank adapters of the chosen linear
layers train; checkpoints hold just the adapter (peft's files, `audior1.lora`), optimizer state and the
trainer state, and every tool loads them as base + adapter (`audior1.sources`).

Design choices
- `peft.inject_adapter_in_model` (peft's API for arbitrary `nn.Module`s) wraps the target `nn.Linear`s of our
  `StepAudioR1ForCausalLM` in place; nothing subclasses peft's or transformers' model classes, and the
  training loops are unchanged: the policy's forward simply goes through the LoRA layers. peft (and through
  it transformers) is imported only here, only when a config asks for LoRA; a missing peft is a `ConfigError`
  naming the `lora` extra.
- Targets are named by group — `attention` (q/k/v/o_proj), `mlp` (gate/up/down_proj), `adapter` (the audio
  adapter's linear1/linear2) — or by a linear layer's own name; peft matches a name against the end of each
  module path, and in this model the names above are unique to their group.
- Initial values are ours, not peft's random ones: A by peft's rule (Kaiming-uniform, a = √5) from a generator
  seeded by the run's seed, one tensor at a time in name order, B = 0. So the LoRA weights are the same for
  any number of processes, and a 2-process FSDP run can be compared with a 1-process run.
- `base_dtype: bfloat16` keeps the frozen base in bf16 (half the memory of fp32 master weights, which a frozen
  base does not need) while the LoRA matrices, their gradients and AdamW states stay fp32; it requires
  `dtype: bfloat16` (autocast), so every matmul sees one dtype.
- Under FSDP2 the LoRA layers are sharded with their decoder layer. The sharded loader is told how checkpoint
  names map to the wrapped parameters (`P.weight` → `P.base_layer.weight`) and which parameters are LoRA's
  (filled afterwards by `fill`); generation copies and `lora merge` get W + s·B·A per layer
  (`merged_state_items`), so the engine always runs plain linear layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from audior1.config import ConfigError
from audior1.lora import adapter_config, peft_key, read_adapter, write_adapter

GROUPS = {"attention": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj"),
          "adapter": ("linear1", "linear2")}
ADAPTER_NAME = "default"  # peft's name for the one adapter we train
LORA_MARK = ".lora_"


def target_names(targets: list[str]) -> list[str]:
    """Groups expanded to the linear layers' own names (peft's `target_modules`), in a stable order."""
    names = [n for t in targets for n in GROUPS.get(t, (t,))]
    return list(dict.fromkeys(names))


def is_lora_param(name: str) -> bool:
    return LORA_MARK in name


def has_lora(module: nn.Module) -> bool:
    return any(is_lora_param(n) for n, _ in module.named_parameters())


def _matching_linears(model: nn.Module, names: list[str]) -> dict[str, list[str]]:
    """Each target name → the paths of the nn.Linear modules it selects (peft's suffix rule)."""
    found: dict[str, list[str]] = {n: [] for n in names}
    for path, module in model.named_modules():
        leaf = path.rsplit(".", 1)[-1]
        if leaf in found and isinstance(module, nn.Linear):
            found[leaf].append(path)
    return found


def inject(model: nn.Module, cfg) -> int:
    """Freeze `model`, keep its base in `cfg.base_dtype`, and wrap the target linear layers with LoRA (fp32)
    in place; works on a meta-device model too (torchrun). Returns the number of LoRA parameters."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError("lora: needs peft (install the extra: pip install 'audior1[lora]', or make setup)") from None
    names = target_names(cfg.targets)
    found = _matching_linears(model, names)
    unmatched = [n for n, paths in found.items() if not paths]
    if unmatched:
        linears = sorted({p.rsplit(".", 1)[-1] for p, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"lora.targets: {', '.join(unmatched)} name no linear layer of this model; use the groups "
                          f"{', '.join(GROUPS)} or these layer names: {', '.join(linears)}")
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.base_dtype == "bfloat16":
        model.to(torch.bfloat16)
    config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=names, bias="none")
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    n = 0
    for name, p in model.named_parameters():
        if is_lora_param(name):
            p.data = p.data.float()  # adapters train in fp32 whatever the base's dtype
            p.requires_grad_(True)
            n += p.numel()
    return n


def initial_values(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The LoRA parameters' starting values, full-size on the CPU: A Kaiming-uniform (a = √5, fan-in = its
    input width, as peft and nn.Linear do), B zero, drawn in name order from one seeded generator."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = {}
    for name, p in sorted(model.named_parameters()):
        if not is_lora_param(name):
            continue
        shape = tuple(p.shape)
        if ".lora_A." in name:
            bound = math.sqrt(6 / ((1 + 5) * shape[1]))  # kaiming_uniform_(a=√5): gain √(2/(1+a²)), bound gain·√(3/fan_in)
            out[name] = torch.empty(shape).uniform_(-bound, bound, generator=gen)
        else:
            out[name] = torch.zeros(shape)
    return out


def saved_values(model: nn.Module, adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    """The LoRA parameters' values from an adapter this run saved (resume), by parameter name."""
    adapter = read_adapter(adapter_dir)
    params = {n: p for n, p in model.named_parameters() if is_lora_param(n)}
    out = {}
    for module in adapter.modules:
        for which, table in (("A", adapter.a), ("B", adapter.b)):
            name = f"{module}.lora_{which}.{ADAPTER_NAME}.weight"
            if name not in params or tuple(params[name].shape) != tuple(table[module].shape):
                raise ConfigError(f"{adapter_dir}: {peft_key(module, which)} does not fit this run's LoRA layers "
                                  "(were lora.r or lora.targets changed since the checkpoint?)")
            out[name] = table[module]
    missing = sorted(set(params) - set(out))
    if missing:
        raise ConfigError(f"{adapter_dir}: no values for {', '.join(missing[:4])} (were lora.targets changed?)")
    return out


@torch.no_grad()
def fill(model: nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Copy full-size values into the LoRA parameters: a plain tensor whole, an FSDP shard its own rows."""
    from audior1.train.distributed import local_region

    params = dict(model.named_parameters())
    for name, value in values.items():
        p = params[name]
        region = local_region(p)
        local = p.to_local() if region is not None else p
        local.copy_(value[region] if region is not None else value)


def checkpoint_name_map(model: nn.Module):
    """Checkpoint name → parameter name in a LoRA-wrapped model (`P.weight` → `P.base_layer.weight`)."""
    names = {n for n, _ in model.named_parameters()}

    def rename(name: str) -> str:
        if name in names:
            return name
        parent, _, leaf = name.rpartition(".")
        return f"{parent}.base_layer.{leaf}"

    return rename


def merged_state_items(model: nn.Module, only=None) -> Iterator[tuple[str, torch.Tensor]]:
    """(checkpoint name, full tensor) of the model as a plain one would hold it: each LoRA-wrapped weight
    merged (W + s·B·A, in fp32, cast back), LoRA tensors left out; only the names passing `only`, when given.
    A collective under FSDP (all ranks must iterate, with the same `only`), one gathered tensor at a time."""
    from audior1.train.distributed import full

    state = model.state_dict()
    for name, t in state.items():
        if is_lora_param(name) or (only is not None and not only(name.replace(".base_layer.", "."))):
            continue
        if ".base_layer." not in name:
            yield name, full(t).detach()
            continue
        module_path, leaf = name.split(".base_layer.")
        value = full(t).detach()
        if leaf == "weight":
            module = model.get_submodule(module_path)
            a = full(state[f"{module_path}.lora_A.{ADAPTER_NAME}.weight"]).float()
            b = full(state[f"{module_path}.lora_B.{ADAPTER_NAME}.weight"]).float()
            value = (value.float() + module.scaling[ADAPTER_NAME] * (b @ a)).to(value.dtype)
        yield f"{module_path}.{leaf}", value


def adapter_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(peft key, full tensor) of every LoRA matrix; a collective under FSDP (all ranks must iterate)."""
    from audior1.train.distributed import full

    for name, p in model.named_parameters():
        if is_lora_param(name):
            module, rest = name.split(LORA_MARK)
            yield peft_key(module, rest[0]), full(p).detach().float()


def save(model: nn.Module, cfg, out_dir: Path, main: bool) -> None:
    """Write the adapter of `model` (peft's files) into `out_dir` on the main process; every process must
    call it (gathering the shards is a collective)."""
    tensors = dict(adapter_tensors(model))
    if main:
        base = cfg.model if not Path(cfg.model).exists() else str(Path(cfg.model).resolve())
        write_adapter(out_dir, tensors, adapter_config(r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
                                                       target_modules=target_names(cfg.lora.targets), base=base))


def count_parameters(shapes: dict[str, tuple[int, ...]], targets: list[str], r: int) -> int:
    """LoRA parameters for a model with these weight shapes (name → shape): r·(in + out) per target layer."""
    leaves = set(target_names(targets))
    return sum(r * (s[0] + s[1]) for n, s in shapes.items()
               if n.endswith(".weight") and len(s) == 2 and n.removesuffix(".weight").rsplit(".", 1)[-1] in leaves
               and not n.startswith(("model.embed_tokens", "lm_head", "encoder.positional")))
