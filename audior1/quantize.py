"""Weight-only quantization at load time (`--quantize int8|int4` on `ask`, `serve`, `eval`), through torchao.

Design choices
- torchao's `quantize_` with its weight-only configs, never kernels of our own: `int8` is
  `Int8WeightOnlyConfig` (per-output-channel symmetric int8; runs on CPU and CUDA), `int4` is
  `Int4WeightOnlyConfig` (group size 128, the tinygemm `tile_packed_to_4d` layout; CUDA only). torchao 0.18 has
  no CPU kernel for its packed int4 formats — `plain` / `preshuffled` need the `mslk` GPU kernels,
  `tile_packed_to_4d` needs CUDA, `plain_int32` raises "does not support device 'cpu'" — so `int4` on a CPU
  device is refused with that reason and `int8` offered instead (docs/serving.md).
- Only the decoder's linear projections (q/k/v/o, gate/up/down of every layer: 31 of R1's 33.5 B
  parameters) are quantized. The embedding, the head, the norms and the audio encoder and adapter stay in
  the load dtype: they are a small share of the bytes and the head's and encoder's errors reach every token.
- Layer by layer while loading (`checkpoint._stream_into` calls `loaded` after each tensor), so a load never
  holds the whole model unquantized: the peak is the quantized model plus one layer's weight.
- A quantized weight is a tensor subclass inside a plain `nn.Linear`, and `F.linear` dispatches on it, so
  `forward` and the engine's lean decode step run unchanged.
- `quantized_bytes` is the one home of the size formulas (`audior1 init --meta --quantize` prints them).
- torchao is imported only here, only when asked for; missing, the error names the `quant` extra.
"""

from __future__ import annotations

import re

import torch

KINDS = ("int8", "int4")
INT4_GROUP = 128
TARGET = re.compile(r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight")
INT4_ON_CPU = ("int4 weight-only needs a CUDA device: torchao's Int4WeightOnlyConfig has no CPU kernel for its packed "
               "int4 formats (plain/preshuffled need the mslk GPU kernels, tile_packed_to_4d needs CUDA, "
               "plain_int32 is not implemented on CPU); on CPU use --quantize int8")


class QuantizeError(ValueError):
    """An unknown or unavailable --quantize choice (the message says what is possible here)."""


def check(kind: str, device: torch.device) -> None:
    """Fail early (before any weight is read) for a choice that cannot run on `device`."""
    if kind not in KINDS:
        raise QuantizeError(f"--quantize {kind}: expected one of {', '.join(KINDS)}")
    if kind == "int4" and device.type != "cuda":
        raise QuantizeError(f"--quantize int4 on {device}: {INT4_ON_CPU}")


def torchao_config(kind: str):
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig
    except ImportError:
        raise QuantizeError(f"--quantize {kind} needs torchao (install the extra: pip install 'audior1[quant]', or "
                            "make setup)") from None
    if kind == "int8":
        return Int8WeightOnlyConfig()
    return Int4WeightOnlyConfig(group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d")


class Quantizer:
    """Quantizes each targeted linear layer of a model being loaded, as soon as its weight is in place."""

    def __init__(self, kind: str, device: torch.device):
        check(kind, device)
        self.kind, self.config, self.done = kind, torchao_config(kind), 0

    def loaded(self, model: torch.nn.Module, name: str) -> None:
        if TARGET.fullmatch(name):
            from torchao.quantization import quantize_

            module = model.get_submodule(name.removesuffix(".weight"))
            if self.kind == "int4" and module.weight.dtype != torch.bfloat16:
                module.to(torch.bfloat16)  # tinygemm's int4 kernel takes bf16 activations and scales
            quantize_(module, self.config)
            self.done += 1

    def finish(self, model: torch.nn.Module) -> None:
        model.quantization = f"{self.kind} weight-only ({self.done} decoder linear layers, torchao)"


def quantized_bytes(shapes: dict[str, tuple[int, ...]], kind: str, element: int) -> int:
    """Bytes of a model's tensors (name → shape; `element`: bytes per value in the load dtype) with the decoder's
    linear weights quantized: int8 = 1 byte per weight + a scale (load dtype) and an int8 zero point per output
    row; int4 = half a byte per weight + a bf16 scale and zero point per group of 128 inputs."""
    total = 0
    for name, shape in shapes.items():
        n = 1
        for s in shape:
            n *= s
        if kind in KINDS and TARGET.fullmatch(name):
            out = shape[0]
            total += n + out * (element + 1) if kind == "int8" else n // 2 + (n // INT4_GROUP) * 2 * 2
        else:
            total += n * element
    return total
