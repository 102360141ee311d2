"""Data parallelism with FSDP2, and the few collectives training needs; a no-op in a single process.

Design choices
- `torchrun --nproc_per_node N audior1 train …` is the only launcher: `init()` reads torchrun's variables,
  picks nccl on GPUs and gloo on CPU, and returns the rank, world size and device. Without them everything
  here degrades to plain single-process code.
- Sharding is FSDP2: `fully_shard` on every decoder layer, then on the root module (policy or value
  model), which holds the embeddings, head, adapter and encoder. With bf16 the all-gathers run in bf16
  and gradients are reduced in fp32 (`MixedPrecisionPolicy`); master weights stay fp32.
- Loading is sharded too: the model is built on the meta device, wrapped with `fully_shard` there, and
  only then allocated (`to_empty`, FSDP2's documented meta-device path), so each process allocates
  just its own shards. `load_sharded` fills them from the safetensors files with `get_slice`, reading
  only this process's rows of each tensor, one tensor at a time: the extra host memory is one tensor's
  local rows, and the processes together read the checkpoint once. Reading whole tensors and keeping
  the local rows would be simpler but costs a full tensor per process (the 158 720-row embedding at
  33 B: 1.5 GB in bf16, 3.0 GB cast to fp32) and N times the reads. FSDP2 shards dim 0, and a row range
  of a row-major tensor is one contiguous span of the file. Names, shapes and strictness are the
  single-process loader's (`audior1.checkpoint.open_checkpoint` / `read_weights`), not a copy of them.
- A load that fails on any process fails on every process (`agree`): each process does its local,
  collective-free work, then they exchange errors once, so a bad checkpoint ends the run everywhere
  with its message instead of leaving the other processes waiting in the next collective.
- Inference (rollouts, eval generation) runs on a plain unsharded copy that `sync_copy` refreshes with
  gathered full tensors, so the engine never sees DTensors. The copy is allocated on the device
  uninitialised (`checkpoint.materialize`) and filled by its first `sync_copy`: no CPU copy, no second
  read of the checkpoint. It is still the whole model per process (docs/training.md gives the cost).
- Gathering for checkpoints streams one tensor at a time (`full_state_items`), so rank 0 never holds two
  copies of the model.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import nn

from audior1.checkpoint import WeightSource, init_buffers, read_weights
from audior1.model import StepAudioR1ForCausalLM


class Dist:
    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, device: torch.device | None = None,
                 grouped: bool = False):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = device or torch.device("cpu")
        self.grouped = grouped  # a process group even with one process (SHARD_ONE_PROCESS)

    @property
    def enabled(self) -> bool:
        return self.world > 1 or self.grouped

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64 on the communication device)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def gather_objects(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


# Under torchrun with one process, AUDIOR1_SHARD_ONE_PROCESS=1 still joins a process group and shards with FSDP2
# (a world of one): how one GPU exercises the nccl / FSDP2 path (scripts/gpu-check.sh).
SHARD_ONE_PROCESS = "AUDIOR1_SHARD_ONE_PROCESS"


def init() -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1, or 1 with SHARD_ONE_PROCESS set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    grouped = world == 1 and "RANK" in os.environ and os.environ.get(SHARD_ONE_PROCESS) == "1"
    if world <= 1 and not grouped:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        return Dist(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=60))
    return Dist(rank, world, local_rank, device, grouped)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(module: nn.Module, layers: nn.ModuleList, dtype: torch.dtype = torch.float32) -> nn.Module:
    """FSDP2: one unit per decoder layer, plus the root (embeddings, head, adapter, encoder)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for layer in layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(module, mp_policy=mp)
    return module


def agree(d: Dist, fn):
    """fn() on every process; if it raised on any process, raise on all of them (a process that failed
    re-raises its own error, the others a short error naming the lowest failing rank and its message).
    fn must not run collectives itself, or a failure could still leave the others waiting inside it."""
    result, error = None, None
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - every kind of failure must reach the other processes
        error = e
    if not d.enabled:
        if error is not None:
            raise error
        return result
    reports = d.gather_objects(None if error is None else (type(error).__name__, str(error)))
    if error is not None:
        raise error
    failed = [(rank, r) for rank, r in enumerate(reports) if r is not None]
    if failed:
        from audior1.errors import USER_ERRORS

        rank, (kind, message) = failed[0]
        user_error = {cls.__name__: cls for cls in USER_ERRORS}.get(kind)
        if user_error is not None:  # the same kind, so the CLI prints it as one line here too
            raise user_error(f"(on rank {rank}) {message}")
        raise RuntimeError(f"rank {rank} failed: {kind}: {message}")
    return result


def local_region(t: torch.Tensor) -> tuple[slice, ...] | None:
    """The block of the full tensor this process holds, one slice per dimension (None: not a DTensor, the
    process holds all of it). DTensor's Shard placement, which FSDP2 uses on dim 0, splits a dimension as
    `torch.chunk` does: ceil(n / k) rows per process, so the last processes may get fewer rows or none."""
    from torch.distributed.tensor import DTensor, Replicate, Shard

    if not isinstance(t, DTensor):
        return None
    region = [slice(0, n) for n in t.shape]
    coordinate = t.device_mesh.get_coordinate()
    for mesh_dim, placement in enumerate(t.placements):
        if isinstance(placement, Replicate):
            continue
        if type(placement) is not Shard:  # e.g. strided sharding from tensor parallelism
            raise NotImplementedError(f"sharded loading supports Shard and Replicate placements, not {placement}")
        whole = region[placement.dim]
        chunk = -(-(whole.stop - whole.start) // t.device_mesh.size(mesh_dim))
        start = min(whole.start + coordinate[mesh_dim] * chunk, whole.stop)
        region[placement.dim] = slice(start, min(start + chunk, whole.stop))
    return tuple(region)


@torch.no_grad()
def load_sharded(root: nn.Module, source: WeightSource, device: torch.device, prefix: str = "",
                 fresh: tuple[str, ...] = (), rename=None) -> None:
    """Allocate the shards of `root` (wrapped by `shard` while on the meta device) on `device` and fill
    each from the checkpoint: this process's rows only, one tensor at a time, cast to the parameter's
    dtype. `prefix` maps the checkpoint's names to root's (Policy and ValueModel hold the network as
    `model.`). Parameters under a `fresh` prefix are not in the checkpoint (the value head): the caller
    initialises them. `rename` maps a checkpoint name (after `prefix`) to root's parameter name where the two
    differ (LoRA-wrapped layers: `train.lora.checkpoint_name_map`); parameters under a `fresh` prefix or
    containing `.lora_` are the caller's to fill. Buffers are computed (`init_buffers`). Runs no collective
    (see `agree`)."""
    from torch.distributed.tensor import DTensor

    root.to_empty(device=device)
    params = dict(root.named_parameters())
    filled = set()
    rename = rename or (lambda n: n)
    for name, value in read_weights(source, lambda n: local_region(params[rename(prefix + n)])):
        target = params[rename(prefix + name)]
        local = target.to_local() if isinstance(target, DTensor) else target
        if tuple(local.shape) != tuple(value.shape):  # the chunk rule above disagrees with FSDP: never guess
            raise RuntimeError(f"{source.where}: {name}: this process holds a {list(local.shape)} shard, "
                               f"but its rows of the checkpoint tensor are {list(value.shape)}")
        local.copy_(value)
        filled.add(rename(prefix + name))
    unfilled = [n for n in params if n not in filled and not n.startswith(fresh) and ".lora_" not in n]
    if unfilled:
        raise RuntimeError(f"{source.where} does not fill {', '.join(unfilled[:5])} (is the prefix right?)")
    _init_all_buffers(root, device)


def _init_all_buffers(root: nn.Module, device: torch.device) -> None:
    """`to_empty` left every buffer uninitialised; the networks inside root know how to compute theirs,
    and root must hold no other buffer."""
    networks = [(name, m) for name, m in root.named_modules() if isinstance(m, StepAudioR1ForCausalLM)]
    for _, network in networks:
        init_buffers(network, device)
    owned = tuple(f"{name}." if name else "" for name, _ in networks)
    stray = [n for n, _ in root.named_buffers() if not (owned and n.startswith(owned))]
    if stray:
        raise RuntimeError(f"load_sharded does not know how to initialise buffers {', '.join(stray)}")


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (gathered when it is an FSDP shard: a collective)."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def full_state_items(module: nn.Module, only=None):
    """(name, full tensor) for every state-dict entry (whose name passes `only`, when given); a collective
    under FSDP (all ranks must iterate, with the same `only`)."""
    for name, t in module.state_dict().items():
        if only is None or only(name):
            yield name, full(t).detach()


@torch.no_grad()
def sync_copy(dst: nn.Module, src: nn.Module) -> None:
    """Copy src's (possibly sharded) weights into the plain module dst, on every rank; LoRA-wrapped layers
    arrive merged. Every entry of dst must be written (dst may come from `checkpoint.materialize`,
    uninitialised)."""
    from audior1.train import lora

    dst_state = dst.state_dict()
    written = set()
    for name, t in (lora.merged_state_items(src) if lora.has_lora(src) else full_state_items(src)):
        dst_state[name].copy_(t)
        written.add(name)
    if written != set(dst_state):
        raise RuntimeError(f"sync_copy: {sorted(set(dst_state) - written)[:5]} not in the source")


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """Global grad norm (clipped in place when max_norm > 0); works for DTensor and plain gradients."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(grads, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in grads])
    return float(full(norm))
