"""Checkpoints in the official layout: config.json, sharded safetensors, tokenizer files.

Design choices
- safetensors only: nothing is ever unpickled, so a downloaded checkpoint cannot run code.
- Loading builds the model on the meta device and streams each tensor from its shard straight into
  place (cast to the requested dtype, moved to the requested device), so loading never holds a
  checkpoint twice in memory. Keys and shapes are checked against the files' headers *before* any
  weight is read; a strict load reports every missing, unexpected and mis-shaped key at once.
- Every load path goes through `open_checkpoint` (config → meta model → checked `WeightSource`) and
  `read_weights` (one tensor at a time): the single-process `load_model`, one part alone (`load_part`),
  and the sharded training load in `audior1.train.distributed`, which asks `read_weights` for just its
  rows of each tensor. So the checks and their messages exist once.
- Writing (and `init` of a random checkpoint) goes one tensor at a time into shards of bounded size,
  so `audior1 init --preset step-audio-r1` needs one shard of memory, not 67 GB.
- Key maps for building from public parts (Qwen2-Audio encoder + Qwen2.5 LM) are data, not code.
- `path` may also be a LoRA adapter directory or a Hub id (`audior1.sources.resolve`); adapters are merged
  into the weights as they stream in (`audior1.lora`), and `quantize` replaces each decoder linear layer's
  weight by a weight-only quantized one as soon as it is loaded (`audior1.quantize`), so neither ever holds
  a second copy of the model.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from audior1.config import OFFICIAL_VOCAB_SIZE, ModelConfig, preset
from audior1.model import StepAudioR1ForCausalLM, initial_value

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
DEFAULT_SHARD_BYTES = 5 * 1024**3
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read as a Step-Audio-R1 model (message names file and key)."""


def resolve_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}") from None


# ---- reading ------------------------------------------------------------------------------------

def weight_files(model_dir: str | Path) -> dict[str, Path]:
    """Map every tensor name to the safetensors file that holds it."""
    model_dir = Path(model_dir)
    index = model_dir / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: not a safetensors index ({e})") from None
        files = {name: model_dir / shard for name, shard in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.exists():
                raise CheckpointError(f"{index} names shard {shard.name}, which is missing")
        return files
    single = model_dir / SINGLE_FILE
    if single.exists():
        with safe_open(single, "pt") as f:
            return {name: single for name in f.keys()}
    if list(model_dir.glob("*.bin")) or list(model_dir.glob("*.pt")):
        raise CheckpointError(f"{model_dir}: only pickle weights (*.bin/*.pt) found; audior1 reads safetensors only "
                              "(convert them with a trusted tool first)")
    raise CheckpointError(f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE}")


def tensor_shapes(files: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    """Shapes read from the safetensors headers only (no tensor data is loaded)."""
    shapes = {}
    for path, names in _group_by_file(files).items():
        with safe_open(path, "pt") as f:
            present = set(f.keys())
            for name in names:
                if name not in present:
                    raise CheckpointError(f"{path.name}: the index lists {name} but the file does not hold it")
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def _group_by_file(files: dict[str, Path]) -> dict[Path, list[str]]:
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    return by_file


def check_keys(expected: dict[str, tuple], found: dict[str, tuple], source: str) -> list[str]:
    """Missing / unexpected / mis-shaped keys as readable lines (empty when they agree)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: " + _preview(missing))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: " + _preview(unexpected))
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped: " + _preview(
            [f"{k} (checkpoint {list(found[k])}, model {list(expected[k])})" for k in misshaped]))
    return [f"{source}: {p}" for p in problems]


def _preview(items: list[str], limit: int = 12) -> str:
    more = f", … (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


@dataclass
class WeightSource:
    """A checked plan for reading a checkpoint: which file holds each tensor to read, and which tensors the
    checkpoint lacks (non-strict loads only; they get `initial_value`). Building one reads headers only."""
    where: Path
    files: dict[str, Path]  # name → file, in model order
    missing: list[str]  # names to initialise instead of reading, in model order
    shapes: dict[str, tuple[int, ...]]  # every expected name's full shape
    adapters: list = field(default_factory=list)  # audior1.lora.Adapter, merged in this order as tensors are read


def plan_weights(model_dir: str | Path, expected: dict[str, tuple[int, ...]], strict: bool = True,
                 only: str | None = None, stacklevel: int = 1) -> WeightSource:
    """Check the checkpoint's names and shapes against `expected` (every problem reported at once) and
    return what to read. `only`: consider just the names under this prefix (loading one part alone).
    `stacklevel`: which caller a non-strict warning points at (1: the caller of this function)."""
    model_dir = Path(model_dir)
    files = weight_files(model_dir)
    if only is not None:
        files = {k: v for k, v in files.items() if k.startswith(only)}
        expected = {k: v for k, v in expected.items() if k.startswith(only)}
    found = tensor_shapes(files)
    problems = check_keys(expected, found, str(model_dir))
    if problems and strict:
        raise CheckpointError("strict load failed:\n  " + "\n  ".join(problems))
    if problems:
        import warnings

        warnings.warn("non-strict load:\n  " + "\n  ".join(problems), stacklevel=stacklevel + 1)
    loadable = {k: files[k] for k in expected if k in found and tuple(found[k]) == tuple(expected[k])}
    missing = [k for k in expected if k not in loadable]
    return WeightSource(model_dir, loadable, missing, dict(expected))


def read_weights(source: WeightSource, region: Callable[[str], tuple[slice, ...] | None] | None = None
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, CPU tensor in the file's dtype), one tensor at a time: each file is opened once, then the
    tensors the checkpoint lacks get their initial values (seeded as always, so a non-strict load is
    reproducible). `region(name)` may return a slice per dimension: then only that part is read
    (`get_slice`), which is how a process reads its own shard of a tensor and nothing else."""
    for path, names in _group_by_file(source.files).items():
        with safe_open(path, "pt", device="cpu") as f:
            for name in names:
                part = region(name) if region else None
                yield name, _merged(source, name, f.get_tensor(name) if part is None else f.get_slice(name)[part], part)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for name in source.missing:
        part = region(name) if region else None
        value = initial_value(name, source.shapes[name], gen)  # the whole tensor: the generator's order
        yield name, _merged(source, name, value if part is None else value[part].clone(), part)


def _merged(source: WeightSource, name: str, value: torch.Tensor, part) -> torch.Tensor:
    for adapter in source.adapters:
        value = adapter.merge(name, value, part)
    return value


def state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry's full shape (a DTensor reports its global shape), in module order."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def build_meta(config: ModelConfig, dtype: torch.dtype = torch.float32) -> StepAudioR1ForCausalLM:
    """The model on the meta device: shapes and dtypes, no storage."""
    with torch.device("meta"):
        return StepAudioR1ForCausalLM(config).to(dtype)


def open_checkpoint(path: str | Path, dtype=None, strict: bool = True, only: str | None = None,
                    stacklevel: int = 1, adapter: str | Path | None = None
                    ) -> tuple[StepAudioR1ForCausalLM, WeightSource]:
    """The model on the meta device (in `dtype`; None: config.json's `torch_dtype`) and the checked plan
    for filling it. Reads config.json, the safetensors headers and the (small) LoRA adapters only: every
    load path starts here, so single-process and sharded loads share one set of checks and messages.
    `path`: a checkpoint directory, an adapter directory over one, or a Hub id; `adapter`: one more adapter
    directory to merge (`--adapter`)."""
    from audior1 import lora, sources

    where = sources.resolve(path, adapter)
    config = ModelConfig.from_file(where.weights / "config.json")
    dtype = resolve_dtype(dtype) or resolve_dtype(config.torch_dtype)
    model = build_meta(config, dtype)  # cannot fail: from_file validated the config
    shapes = state_shapes(model)
    source = plan_weights(where.weights, shapes, strict, only, stacklevel=stacklevel + 1)
    for adapter_dir in where.adapters:
        found = lora.read_adapter(adapter_dir)
        found.check(shapes, str(where.weights))
        source.adapters.append(found)
    return model, source


def load_model(path: str | Path, dtype=None, device=None, strict: bool = True, *, adapter: str | Path | None = None,
               quantize: str | None = None) -> StepAudioR1ForCausalLM:
    """Build the model on the meta device and stream the weights in.

    dtype: None keeps config.json's `torch_dtype`; device: None is CPU. With strict=False, missing tensors
    keep their initial values and unexpected ones are ignored (both are still reported as a warning).
    `adapter`: a LoRA adapter directory merged into the weights as they load (an adapter directory given as
    `path` is merged into the base it names). `quantize`: "int8" | "int4" weight-only quantization of the
    decoder's linear layers (`audior1.quantize`), applied layer by layer while loading."""
    quantizer = None
    if quantize:
        from audior1.quantize import Quantizer

        quantizer = Quantizer(quantize, torch.device(device or "cpu"))  # a bad choice fails before any read
    model, source = open_checkpoint(path, dtype, strict, stacklevel=2, adapter=adapter)
    _stream_into(model, source, torch.device(device or "cpu"), quantizer)
    return model.eval()


def load_part(path: str | Path, part: str, dtype=None, device=None) -> torch.nn.Module:
    """One top-level part of a checkpoint (e.g. "encoder"), materialised alone and strictly: what a
    process needs unsharded while the rest of the model is sharded over processes."""
    model, source = open_checkpoint(path, dtype, strict=True, only=part + ".")
    _stream_into(model, source, torch.device(device or "cpu"))
    return model.get_submodule(part).eval()


def materialize(config: ModelConfig, dtype: torch.dtype, device) -> StepAudioR1ForCausalLM:
    """The model with uninitialised weights allocated directly on `device` (and buffers computed): for a
    copy whose every weight is about to be overwritten, without reading the checkpoint again."""
    model = build_meta(config, dtype).to_empty(device=device)
    init_buffers(model, device)
    return model.eval()


def _stream_into(model: StepAudioR1ForCausalLM, source: WeightSource, device: torch.device,
                 quantizer=None) -> None:
    """Move tensors one at a time into the meta-built model (cast to its dtype), then its buffers. With a
    quantizer, each linear layer it covers is quantized as soon as its weight is in place."""
    targets = dict(model.named_parameters())
    for name, value in read_weights(source):
        target = targets[name]
        _assign(model, target, name, value.to(device=device, dtype=target.dtype))
        if quantizer is not None:
            quantizer.loaded(model, name)
    init_buffers(model, device)
    if quantizer is not None:
        quantizer.finish(model)


def init_buffers(model: StepAudioR1ForCausalLM, device) -> None:
    """Compute the buffers no checkpoint holds. The only one is RoPE's `inv_freq` (non-persistent); a
    model built on the meta device or allocated with `to_empty` has no value for it. Any other buffer is
    an error, so a new one cannot silently stay uninitialised on some load path."""
    rotary = model.model.rotary
    rotary.inv_freq = type(rotary)(model.config.text.head_dim, model.config.text.rope_theta).inv_freq.to(device)
    others = [name for name, _ in model.named_buffers() if name != "model.rotary.inv_freq"]
    if others:
        raise RuntimeError(f"init_buffers does not know how to initialise {', '.join(others)}")


def _assign(model: torch.nn.Module, param: torch.nn.Parameter, name: str, value: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    setattr(module, attr, torch.nn.Parameter(value, requires_grad=param.requires_grad))


# ---- writing ------------------------------------------------------------------------------------

def write_tensors(out_dir: str | Path, tensors: Iterable[tuple[str, torch.Tensor]],
                  max_shard_bytes: int = DEFAULT_SHARD_BYTES, dtype_name: str = "bfloat16") -> dict:
    """Write (name, tensor) pairs into shards of at most `max_shard_bytes`, plus the index when there
    is more than one shard. Files are written under temporary names and renamed (atomic per file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size, total = 0, 0
    temp_names = []

    def flush(shard: dict, i: int):
        tmp = out_dir / f".shard-{i:05d}.tmp"
        save_file(shard, str(tmp), metadata={"format": "pt"})
        temp_names.append((tmp, list(shard)))

    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            flush(shards[-1], len(shards) - 1)
            shards.append({})
            size = 0
        shards[-1][name] = tensor.detach().contiguous().cpu()
        size += nbytes
        total += nbytes
    flush(shards[-1], len(shards) - 1)
    shards.clear()

    for stale in list(out_dir.glob("model*.safetensors")) + [out_dir / INDEX_FILE]:
        stale.unlink(missing_ok=True)
    weight_map = {}
    n = len(temp_names)
    for i, (tmp, names) in enumerate(temp_names):
        final = SINGLE_FILE if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        os.replace(tmp, out_dir / final)
        weight_map.update({name: final for name in names})
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        _atomic_write_text(out_dir / INDEX_FILE, json.dumps(index, indent=2) + "\n")
    return {"shards": n, "total_bytes": total, "tensors": len(weight_map)}


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_checkpoint(model: StepAudioR1ForCausalLM, out_dir: str | Path, tokenizer=None,
                    dtype=None, max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> dict:
    """Write config.json (nested layout), weights, and the tokenizer files when given."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = resolve_dtype(dtype) or model.dtype
    # A copy: saving in another dtype must not change the live model's config.
    config = copy.deepcopy(model.config)
    config.torch_dtype = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    tensors = ((k, v.to(dtype)) for k, v in model.state_dict().items())
    stats = write_tensors(out_dir, tensors, max_shard_bytes)
    _atomic_write_text(out_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    write_generation_config(out_dir, config)
    if tokenizer is not None:
        tokenizer.save(out_dir)
    return stats


def merge_adapter(base: str | Path, adapter: str | Path, out_dir: str | Path,
                  max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> dict:
    """`audior1 lora merge`: base + LoRA adapter → a full checkpoint in the official layout, in the base's
    dtype. Streams one tensor at a time (read, merge in fp32, cast, write), so it needs one shard of memory,
    not the model; the tokenizer and generation config are the base's."""
    import shutil

    from audior1.sources import resolve

    model, source = open_checkpoint(base, adapter=adapter)  # every check (keys, adapter shapes) before writing
    dtype = resolve_dtype(model.config.torch_dtype)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CheckpointError(f"{out_dir}: exists and is not empty (merge writes a new checkpoint directory)")
    stats = write_tensors(out_dir, ((n, t.to(dtype)) for n, t in read_weights(source)), max_shard_bytes)
    _atomic_write_text(out_dir / "config.json", json.dumps(model.config.to_dict(), indent=2) + "\n")
    base_dir = resolve(base).weights
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, out_dir / name)
    return {**stats, "adapters": [str(a.where) for a in source.adapters]}


# The sampling settings of Step-Audio-R1's released examples (temperature 0.7, top_p 0.9, repetition penalty 1.0);
# written into every checkpoint audior1 builds, read back by `generation_defaults`.
GENERATION_SAMPLING = {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.0}
SAMPLING_KEYS = tuple(GENERATION_SAMPLING)


def write_generation_config(out_dir: Path, config: ModelConfig) -> None:
    text = config.text
    gen = {"bos_token_id": text.bos_token_id, "eos_token_id": text.eos_token_id, "pad_token_id": text.pad_token_id,
           "do_sample": True, **GENERATION_SAMPLING}
    _atomic_write_text(Path(out_dir) / "generation_config.json", json.dumps(gen, indent=2) + "\n")


def generation_defaults(model_dir: str | Path) -> dict[str, float]:
    """The sampling defaults a checkpoint ships (temperature, top_p, repetition_penalty from its
    generation_config.json; missing file or keys → nothing, so `SamplingParams`' own defaults apply)."""
    from audior1.sources import resolve

    path = resolve(model_dir).weights / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        gen = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(gen, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(gen).__name__}")
    bad = {k: gen[k] for k in SAMPLING_KEYS
           if k in gen and gen[k] is not None and (isinstance(gen[k], bool) or not isinstance(gen[k], (int, float)))}
    if bad:
        raise CheckpointError(f"{path}: sampling settings must be numbers, got {bad}")
    return {k: float(gen[k]) for k in SAMPLING_KEYS if gen.get(k) is not None}


# ---- init and info ------------------------------------------------------------------------------

@dataclass
class CheckpointSummary:
    parameters: int
    tensors: int
    bytes: int
    dtype: str
    shards: int

    @property
    def billions(self) -> float:
        return self.parameters / 1e9


def meta_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict tensor's shape for a config, from a model built on the meta device."""
    return state_shapes(build_meta(config))


def meta_summary(config: ModelConfig) -> CheckpointSummary:
    """Parameter/tensor counts of a config without allocating any weight (built on the meta device)."""
    with torch.device("meta"):
        model = StepAudioR1ForCausalLM(config)
    sd = model.state_dict()
    dtype = resolve_dtype(config.torch_dtype)
    params = sum(t.numel() for t in sd.values())
    element = torch.empty((), dtype=dtype).element_size()
    return CheckpointSummary(params, len(sd), params * element, config.torch_dtype, 0)


def init_checkpoint(preset_name: str, out_dir: str | Path, *, seed: int = 0, dtype: str | None = None,
                    max_shard_bytes: int = DEFAULT_SHARD_BYTES, tokenizer=None,
                    text_think_markers: bool = False) -> CheckpointSummary:
    """A randomly initialised checkpoint in the official layout, written one tensor at a time.

    Small presets get audior1's own byte-level BPE tokenizer and take their special-token ids from it; its
    think markers are single tokens unless `text_think_markers`. The official presets get a tokenizer with
    the special tokens at the released ids and the think markers as text, as released."""
    from audior1 import chat

    config = preset(preset_name)
    if dtype:
        config.torch_dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype)
    if tokenizer is None:
        if config.text.vocab_size == OFFICIAL_VOCAB_SIZE:
            tokenizer = chat.official_layout_tokenizer()
        else:
            tokenizer = chat.train_small_tokenizer(config.text.vocab_size, think_tokens=not text_think_markers)
    apply_tokenizer_ids(config, tokenizer)
    config.validate()
    torch_dtype = resolve_dtype(config.torch_dtype)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in StepAudioR1ForCausalLM(config).state_dict().items()}
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tensors = ((name, initial_value(name, shape, gen).to(torch_dtype)) for name, shape in shapes.items())
    out_dir = Path(out_dir)
    stats = write_tensors(out_dir, tensors, max_shard_bytes)
    _atomic_write_text(out_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    write_generation_config(out_dir, config)
    tokenizer.save(out_dir)
    params = sum(_numel(s) for s in shapes.values())
    return CheckpointSummary(params, stats["tensors"], stats["total_bytes"], config.torch_dtype, stats["shards"])


def apply_tokenizer_ids(config: ModelConfig, tokenizer) -> None:
    """Take the ids the model needs from the tokenizer (never hard-code what the tokenizer can tell)."""
    if tokenizer.vocab_size > config.text.vocab_size:
        raise CheckpointError(f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary is "
                              f"{config.text.vocab_size}")
    config.audio_patch_token_id = tokenizer.audio_patch_id
    stops = list(tokenizer.stop_ids)
    config.text.eos_token_id = list(dict.fromkeys(config.text.eos_token_id + stops)) if config.text.eos_token_id else stops
    config.text.pad_token_id = config.text.bos_token_id = tokenizer.endoftext_id


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def summarize(model_dir: str | Path) -> tuple[ModelConfig, CheckpointSummary, dict[str, int]]:
    """Config, counts from the safetensors headers, and tensors per top-level part."""
    model_dir = Path(model_dir)
    config = ModelConfig.from_file(model_dir / "config.json")
    files = weight_files(model_dir)
    dtypes, total_bytes, params = set(), 0, 0
    parts: dict[str, int] = {}
    by_file = _group_by_file(files)
    for path, names in by_file.items():
        with safe_open(path, "pt") as f:
            for name in names:
                sl = f.get_slice(name)
                n = _numel(sl.get_shape())
                params += n
                dtypes.add(SAFETENSORS_DTYPES.get(sl.get_dtype(), sl.get_dtype()))
                parts[name.split(".")[0]] = parts.get(name.split(".")[0], 0) + n
        total_bytes += path.stat().st_size
    summary = CheckpointSummary(params, len(files), total_bytes, "/".join(sorted(dtypes)), len(by_file))
    return config, summary, parts


# ---- building from public parts -----------------------------------------------------------------

QWEN2_AUDIO_ENCODER_MAP = [  # (regex on the Qwen2-Audio name after stripping prefixes, Step name)
    (r"conv1\.(weight|bias)", r"encoder.conv1.\1"),
    (r"conv2\.(weight|bias)", r"encoder.conv2.\1"),
    (r"embed_positions\.weight", r"encoder.positional_embedding.weight"),
    (r"layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", r"encoder.blocks.\1.attn.query.\2"),
    (r"layers\.(\d+)\.self_attn\.k_proj\.weight", r"encoder.blocks.\1.attn.key.weight"),
    (r"layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)", r"encoder.blocks.\1.attn.value.\2"),
    (r"layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"encoder.blocks.\1.attn.out.\2"),
    (r"layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.blocks.\1.attn_ln.\2"),
    (r"layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.blocks.\1.mlp.0.\2"),
    (r"layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.blocks.\1.mlp.2.\2"),
    (r"layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.blocks.\1.mlp_ln.\2"),
    (r"layer_norm\.(weight|bias)", r"encoder.after_norm.\1"),
]
QWEN2_AUDIO_PREFIXES = ("model.audio_tower.", "audio_tower.")
KEEP_TEXT_ROWS = 151665  # Qwen's text vocabulary and specials; rows above are Step's own tokens


def map_qwen2_audio_key(name: str) -> str | None:
    """The Step encoder key for a Qwen2-Audio key, or None for parts that are dropped (projector, LM)."""
    for prefix in QWEN2_AUDIO_PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            for pattern, target in QWEN2_AUDIO_ENCODER_MAP:
                if re.fullmatch(pattern, rest):
                    return re.sub(pattern, target, rest)
            raise CheckpointError(f"unrecognised Qwen2-Audio encoder tensor {name!r}")
    return None


def _iter_checkpoint(model_dir: Path) -> Iterator[tuple[str, Callable[[], torch.Tensor]]]:
    for path, names in _group_by_file(weight_files(model_dir)).items():
        with safe_open(path, "pt") as f:
            for name in names:
                yield name, (lambda f=f, name=name: f.get_tensor(name))


def resize_vocab(weight: torch.Tensor, vocab_size: int, gen: torch.Generator, noise_std: float) -> torch.Tensor:
    """Keep the first min(151665, rows) rows; new rows start at the kept rows' mean (+ small noise)."""
    keep = min(KEEP_TEXT_ROWS, weight.shape[0], vocab_size)
    kept = weight[:keep].float()
    mean = kept.mean(0, keepdim=True)
    new = mean.expand(vocab_size - keep, -1).clone()
    if noise_std:
        new += torch.randn(new.shape, generator=gen) * noise_std
    return torch.cat([kept, new]).to(weight.dtype)


def convert(encoder_dir: str | Path, lm_dir: str | Path, out_dir: str | Path, *, vocab_size: int = OFFICIAL_VOCAB_SIZE,
            dtype: str | None = None, seed: int = 0, max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> dict:
    """Assemble a Step-Audio-R1-shaped checkpoint from a Qwen2-Audio encoder and a Qwen2.5 LM."""
    from audior1 import chat

    encoder_dir, lm_dir, out_dir = Path(encoder_dir), Path(lm_dir), Path(out_dir)
    audio_cfg = _read_json(encoder_dir / "config.json").get("audio_config")
    if audio_cfg is None:
        raise CheckpointError(f"{encoder_dir / 'config.json'}: no 'audio_config' (is this a Qwen2-Audio checkpoint?)")
    lm_raw = _read_json(lm_dir / "config.json")
    if "hidden_size" not in lm_raw:
        raise CheckpointError(f"{lm_dir / 'config.json'}: no 'hidden_size' (is this a Qwen2/Qwen2.5 LM checkpoint?)")
    raw = {
        "model_type": "step_audio_2",
        "text_config": {**lm_raw, "vocab_size": vocab_size},
        "audio_encoder_config": {
            "n_mels": audio_cfg.get("num_mel_bins", 128), "n_audio_ctx": audio_cfg.get("max_source_positions", 1500),
            "n_audio_state": audio_cfg["d_model"], "n_audio_head": audio_cfg["encoder_attention_heads"],
            "n_audio_layer": audio_cfg["encoder_layers"], "llm_dim": lm_raw["hidden_size"],
        },
        "torch_dtype": dtype or lm_raw.get("torch_dtype") or lm_raw.get("dtype") or "bfloat16",
    }
    config = ModelConfig.from_dict(raw, "converted config")
    if audio_cfg.get("encoder_ffn_dim", config.audio.mlp_dim) != config.audio.mlp_dim:
        raise CheckpointError(f"Qwen2-Audio encoder_ffn_dim {audio_cfg['encoder_ffn_dim']} != 4 × d_model; "
                              "the Step encoder has no key for another ratio")

    tokenizer = chat.step_tokenizer_from_qwen(lm_dir) if (lm_dir / "tokenizer.json").exists() else chat.official_layout_tokenizer()
    apply_tokenizer_ids(config, tokenizer)
    torch_dtype = resolve_dtype(config.torch_dtype)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in StepAudioR1ForCausalLM(config).state_dict().items()}
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def tensors():
        seen = set()
        for name, load in _iter_checkpoint(encoder_dir):
            step = map_qwen2_audio_key(name)
            if step is not None:
                seen.add(step)
                yield step, load().to(torch_dtype)
        for name, load in _iter_checkpoint(lm_dir):
            if not name.startswith(("model.", "lm_head.")) or name not in expected:
                raise CheckpointError(f"{lm_dir}: unexpected LM tensor {name!r}")
            names = [name]
            if name == "model.embed_tokens.weight" and lm_raw.get("tie_word_embeddings"):
                names.append("lm_head.weight")  # small Qwen2.5 models tie them; R1 keeps an untied head
            for target in names:
                t = load()
                if target in ("model.embed_tokens.weight", "lm_head.weight"):
                    # Input rows start at the mean; output rows get a little noise so new tokens differ.
                    noise = 0.0 if target.startswith("model.") else float(t.float().std()) * 0.02
                    t = resize_vocab(t, vocab_size, gen, noise)
                seen.add(target)
                yield target, t.to(torch_dtype)
        for name, shape in expected.items():
            if name.startswith("adapter."):
                seen.add(name)
                yield name, initial_value(name, shape, gen).to(torch_dtype)
        missing = sorted(set(expected) - seen)
        if missing:
            raise CheckpointError(f"conversion lacks {len(missing)} tensors: {_preview(missing)}")

    stats = write_tensors(out_dir, tensors(), max_shard_bytes)
    found = tensor_shapes(weight_files(out_dir))
    problems = check_keys(expected, found, str(out_dir))
    if problems:
        raise CheckpointError("converted checkpoint does not match the model:\n  " + "\n  ".join(problems))
    _atomic_write_text(out_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    write_generation_config(out_dir, config)
    tokenizer.save(out_dir)
    return {**stats, "config": config}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
