"""Training checkpoints: the model in the official layout plus everything needed to continue exactly.

Layout of `OUT/checkpoints/step-000200/`:
  config.json, model.safetensors (or shards + index), tokenizer files   ← loadable by `audior1.load_model`
  value/model.safetensors                      PPO value model (backbone + head; our own key names)
  optimizer/                                   optimizer state(s), torch.distributed.checkpoint format
                                               (sharded under FSDP; re-shardable to another world size)
  rng-{rank}.json                              each rank's torch RNG state
  trainer_state.json                           step, data position, RL alarm state, kind, world size (written last)
A LoRA run writes adapter_config.json + adapter_model.safetensors (peft's format, naming the run's `model` as
the base) in place of the model files; every tool loads that directory as base + adapter.

Design choices
- Atomic: everything is written into `.tmp-step-000200/` and renamed when complete; a kill -9 at any moment
  leaves either the previous checkpoint or the new one. `latest(out_dir)` is the highest `step-*` that
  holds `trainer_state.json`, so there is no pointer file to get out of sync.
- The learning-rate schedule is a pure function of the step (run.lr_at), so the step is its whole state.
- This module writes and reads the files; what goes into them (which optimizers, which stateful parts)
  is decided in one place for both recipes, `run.Checkpointer`.
- Weights are written in the training dtype (fp32 master weights): a resumed run is bit-identical.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import warnings
from pathlib import Path

import torch

from audior1.checkpoint import write_generation_config, write_tensors
from audior1.train.distributed import Dist, full_state_items

CHECKPOINTS = "checkpoints"


def checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"step-{step:06d}"


def latest(out_dir: str | Path) -> Path | None:
    root = Path(out_dir) / CHECKPOINTS
    done = [p for p in root.glob("step-*") if (p / "trainer_state.json").is_file()] if root.is_dir() else []
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def resolve_resume(out_dir: str | Path, resume: str | bool | None) -> Path | None:
    """`--resume` (True: the latest checkpoint in out_dir, none is fine) or `--resume PATH`."""
    if not resume:
        return None
    if resume is True or resume == "latest":
        return latest(out_dir)
    path = Path(resume)
    if (path / "trainer_state.json").is_file():
        return path
    found = latest(path)
    if found is None:
        raise FileNotFoundError(f"--resume {path}: no complete checkpoint there")
    return found


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def rng_state() -> dict:
    out = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        out["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)
                                      for s in state["cuda"]])


def write_model(path: Path, d: Dist, model: torch.nn.Module, tokenizer, items,
                dtype: torch.dtype | None = None) -> None:
    """The model in the official layout — weights (`items`: (name, full tensor) pairs, in `dtype`, default the
    model's), config.json, generation_config.json, tokenizer — into `path`, which `audior1.load_model` reads.
    A collective when `items` gathers FSDP shards: every rank iterates them, rank 0 writes."""
    if not d.main:
        for _ in items:
            pass
        return
    dtype = dtype or model.dtype
    write_tensors(path, items, dtype_name=str(dtype).removeprefix("torch."))
    config = copy.deepcopy(model.config)  # the live model's config must not change as a side effect
    config.torch_dtype = {torch.float32: "float32", torch.bfloat16: "bfloat16"}.get(dtype, "float32")
    (path / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    write_generation_config(path, config)
    tokenizer.save(path)


def save(out_dir: str | Path, step: int, d: Dist, *, model: torch.nn.Module, tokenizer,
         optimizers: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]], trainer_state: dict,
         value_model: torch.nn.Module | None = None, keep: int = 2, lora_of=None) -> Path:
    """Write checkpoint `step` atomically (a collective: every rank calls it). `model` is the
    StepAudioR1ForCausalLM (possibly inside an FSDP root); `optimizers` maps a name to (the module FSDP
    wraps, its optimizer). `lora_of`: the config of a LoRA run, whose checkpoint holds the adapter (peft's
    files, naming `model` as its base) instead of the whole model."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    final = checkpoint_dir(out_dir, step)
    tmp = final.with_name(f".tmp-{final.name}")
    if d.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    d.barrier()

    if lora_of is not None:
        from audior1.train import lora

        lora.save(model, lora_of, tmp, d.main)
    else:
        write_model(tmp, d, model, tokenizer, full_state_items(model))
    if value_model is not None:
        items = full_state_items(value_model)
        if d.main:
            write_tensors(tmp / "value", items)
        else:
            for _ in items:
                pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = {name: get_optimizer_state_dict(module, opt) for name, (module, opt) in optimizers.items()}
        dcp.save(state, checkpoint_id=str(tmp / "optimizer"))
    _atomic_json(tmp / f"rng-{d.rank}.json", rng_state())
    d.barrier()
    if d.main:
        _atomic_json(tmp / "trainer_state.json", trainer_state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _prune(Path(out_dir) / CHECKPOINTS, keep)
    d.barrier()
    return final


def _prune(root: Path, keep: int) -> None:
    done = sorted((p for p in root.glob("step-*") if (p / "trainer_state.json").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))
    for old in done[: max(0, len(done) - keep)] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)


def load_trainer_state(ckpt: Path) -> dict:
    return json.loads((ckpt / "trainer_state.json").read_text())


def load_optimizers(ckpt: Path, optimizers: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = {name: get_optimizer_state_dict(module, opt) for name, (module, opt) in optimizers.items()}
        dcp.load(state, checkpoint_id=str(ckpt / "optimizer"))
        for name, (module, opt) in optimizers.items():
            set_optimizer_state_dict(module, opt, state[name])


def load_rng(ckpt: Path, rank: int) -> None:
    path = ckpt / f"rng-{rank}.json"
    if path.is_file():
        set_rng_state(json.loads(path.read_text()))


def load_value_state(ckpt: Path) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    from audior1.checkpoint import weight_files

    vdir = ckpt / "value"
    if not vdir.is_dir():
        return None
    out = {}
    for path in sorted(set(weight_files(vdir).values())):
        out.update(load_file(str(path)))
    return out
