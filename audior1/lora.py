"""LoRA adapters on disk, in peft's format: reading, checking against a base, merging, writing.

A LoRA adapter of linear layer `m` is two matrices, A [r, in] and B [out, r]; the layer's weight becomes
W + s·B·A with s = lora_alpha / r (peft's rsLoRA: lora_alpha / √r). The files are peft's:
`adapter_config.json` (`peft_type: LORA`, `r`, `lora_alpha`, `target_modules`, …, `base_model_name_or_path`)
and `adapter_model.safetensors` with keys `base_model.model.<module>.lora_A.weight` / `.lora_B.weight`.
Our decoder's module names are Qwen2's (`model.layers.N.self_attn.q_proj`, `…mlp.down_proj`), so an adapter
of the decoder has exactly the keys a Qwen2 LoRA has, which is what Qwen2-style servers (vLLM, peft over
transformers' Qwen2) load; adapters of our audio adapter (`adapter.linear1/2`) use the released names.

Design choices
- Inference never runs LoRA layers: an adapter is merged into the base weights while they stream in
  (`checkpoint.read_weights` calls `Adapter.merge` per tensor, for a row range under sharded loading), in
  fp32 and then cast to the load dtype. So serving an adapter costs nothing per token, the lean decode step
  and quantization work unchanged, and neither peft nor transformers is imported to serve one.
- Everything is checked before any weight is read (`Adapter.check`): every adapted module must exist in the
  base, A's input width and B's output width must match its weight, A and B must agree on the rank; the
  error names the adapter file, the tensor, both shapes and the base. peft options that change the math and
  are not implemented here (DoRA, LoRA biases, per-module alpha, modules_to_save, fan_in_fan_out) are
  refused by name rather than silently merged wrong.
- Training-time LoRA (peft layers injected into our modules) lives in `audior1.train.lora`; it writes its
  adapters with `write_adapter`, so there is one file format.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from audior1.sources import ADAPTER_CONFIG, ADAPTER_WEIGHTS

PEFT_PREFIX = "base_model.model."  # peft's save names: PeftModel → LoraModel → the model
# adapter_config.json keys whose non-default values change the merge; refused when set.
UNSUPPORTED = {"use_dora": False, "lora_bias": False, "fan_in_fan_out": False, "alpha_pattern": {},
               "modules_to_save": None}


class AdapterError(ValueError):
    """An adapter that cannot be applied to this base (the message names the file, tensor and shapes)."""


def peft_key(module: str, which: str) -> str:
    """The key of module `module`'s LoRA matrix `which` ("A" or "B") in adapter_model.safetensors."""
    return f"{PEFT_PREFIX}{module}.lora_{which}.weight"


@dataclass
class Adapter:
    where: Path
    config: dict
    a: dict[str, torch.Tensor] = field(default_factory=dict)  # module → A [r, in]
    b: dict[str, torch.Tensor] = field(default_factory=dict)  # module → B [out, r]

    @property
    def modules(self) -> list[str]:
        return sorted(self.a)

    def scaling(self, module: str) -> float:
        r = self.a[module].shape[0]  # the tensor's rank (peft's rank_pattern may differ per module)
        alpha = float(self.config.get("lora_alpha", r))
        return alpha / math.sqrt(r) if self.config.get("use_rslora") else alpha / r

    def check(self, shapes: dict[str, tuple[int, ...]], base: str) -> None:
        """Every adapted module is a linear layer of the base with matching widths; all problems at once."""
        problems = []
        for m in self.modules:
            a, b = tuple(self.a[m].shape), tuple(self.b[m].shape)
            weight = shapes.get(f"{m}.weight")
            if weight is None or len(weight) != 2:
                problems.append(f"{peft_key(m, 'A')}: the base has no linear layer {m}")
            elif a[1] != weight[1] or b[0] != weight[0] or a[0] != b[1]:
                problems.append(f"{m}: lora_A {list(a)} and lora_B {list(b)} do not fit the base weight "
                                f"{list(weight)} (expected lora_A [r, {weight[1]}], lora_B [{weight[0]}, r])")
        if problems:
            more = f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""
            raise AdapterError(f"{self.where / ADAPTER_WEIGHTS} does not fit the base {base}:\n  "
                               + "\n  ".join(problems[:8]) + more)

    def merge(self, name: str, value: torch.Tensor, region: tuple[slice, ...] | None = None) -> torch.Tensor:
        """`value` (the base tensor `name`, or its `region`) with this adapter merged in: W + s·B·A in fp32,
        returned in value's dtype. Tensors the adapter does not touch come back as they are."""
        module = name.removesuffix(".weight")
        if not name.endswith(".weight") or module not in self.a:
            return value
        a, b = self.a[module].float(), self.b[module].float()
        if region is not None:  # rows of the output (FSDP shards dim 0), all input columns
            b, a = b[region[0]], a[:, region[1]]
        return (value.float() + self.scaling(module) * (b @ a)).to(value.dtype)


def read_adapter(adapter_dir: str | Path) -> Adapter:
    """Read and validate an adapter directory (small: only the LoRA matrices are loaded)."""
    where = Path(adapter_dir)
    config_file, weights_file = where / ADAPTER_CONFIG, where / ADAPTER_WEIGHTS
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdapterError(f"{config_file}: missing (a peft LoRA adapter has {ADAPTER_CONFIG} + {ADAPTER_WEIGHTS})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"{config_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{config_file}: expected a JSON object")
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{config_file}: peft_type {config.get('peft_type')!r}; only LORA adapters are supported")
    bad = [f"{k}={config[k]!r}" for k, default in UNSUPPORTED.items() if config.get(k) not in (None, default)
           and not (k == "modules_to_save" and config[k] == [])]
    if config.get("bias", "none") != "none":
        bad.append(f"bias={config['bias']!r}")
    if bad:
        raise AdapterError(f"{config_file}: {', '.join(bad)} not supported (plain LoRA only: no DoRA, LoRA biases, "
                           "per-module alpha, modules_to_save or fan_in_fan_out)")
    if not weights_file.is_file():
        found = ", ".join(p.name for p in where.iterdir()) if where.is_dir() else "nothing"
        raise AdapterError(f"{weights_file}: missing ({where} holds {found}; only safetensors adapters are read)")
    adapter = Adapter(where, config)
    with safe_open(weights_file, "pt", device="cpu") as f:
        for key in f.keys():
            body = key.removeprefix(PEFT_PREFIX)
            for which, table in (("A", adapter.a), ("B", adapter.b)):
                suffix = f".lora_{which}.weight"
                if body.endswith(suffix):
                    table[body.removesuffix(suffix)] = f.get_tensor(key)
                    break
            else:
                raise AdapterError(f"{weights_file}: unexpected tensor {key!r} (expected …lora_A.weight / "
                                   "…lora_B.weight)")
    unpaired = sorted(set(adapter.a) ^ set(adapter.b))
    if unpaired:
        raise AdapterError(f"{weights_file}: lora_A and lora_B must come in pairs; unpaired: {', '.join(unpaired[:5])}")
    if not adapter.a:
        raise AdapterError(f"{weights_file}: holds no LoRA tensors")
    return adapter


def adapter_config(*, r: int, alpha: float, dropout: float, target_modules: list[str], base: str) -> dict:
    """adapter_config.json as peft writes it for plain LoRA (the keys peft and vLLM read)."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": r,
            "lora_alpha": alpha, "lora_dropout": dropout, "target_modules": sorted(target_modules),
            "bias": "none", "use_rslora": False, "use_dora": False, "fan_in_fan_out": False,
            "modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True,
            "init_lora_weights": True}


def write_adapter(out_dir: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """adapter_model.safetensors (keys as `peft_key` gives them) and adapter_config.json, each atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{ADAPTER_WEIGHTS}.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out_dir / ADAPTER_WEIGHTS)
    tmp = out_dir / f".{ADAPTER_CONFIG}.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, out_dir / ADAPTER_CONFIG)
