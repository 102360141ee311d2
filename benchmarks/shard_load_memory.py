"""Peak memory per process of loading a checkpoint for training under torchrun (2 gloo processes): the old
path (every process loads the whole model, then `fully_shard` shards it) against the sharded load (meta
device → `fully_shard` → each process reads only its rows, `Run.shard`).

Each path runs in its own torchrun launch; every process reports its peak RSS (VmHWM, reset after imports
and process-group start-up) above what it held before loading, and its anonymous and file-backed RSS once
loaded. The checkpoint is `load_memory.py`'s model saved in bf16 (~0.25 GB), loaded into fp32 master
weights as training does; with a bf16 file the old path really copies (a same-dtype CPU load can alias the
memory-mapped file and would understate it). VmHWM also counts the pages of the memory-mapped safetensors
file that a process touched: page cache, shared between processes and reclaimable, but charged to RSS; so
the private (anonymous) memory's peak is sampled too (`AnonPeak`). Prints one JSON object.

    python benchmarks/shard_load_memory.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0])


class AnonPeak:
    """Samples RssAnon every millisecond in a thread: the private memory's peak, which VmHWM mixes with the
    mapped file's pages (a lower bound: a peak shorter than a sample can be missed)."""

    def __init__(self):
        import threading

        self.peak, self._stop = _status_kb("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _status_kb("RssAnon"))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _status_kb("RssAnon"))


def child(mode: str, path: Path) -> None:
    """One process of a torchrun launch: load `path` by `mode`, report to rank 0, which prints JSON."""
    import torch
    import torch.distributed.fsdp  # noqa: F401  imported up front by both paths, so outside the measurement
    import torch.distributed.tensor  # noqa: F401

    from audior1.train import distributed
    from audior1.train.policy import Policy

    torch.set_num_threads(1)
    d = distributed.init()
    d.barrier()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = {k: _status_kb(k) for k in ("VmHWM", "RssAnon", "RssFile")}
    sampler = AnonPeak()
    start = time.perf_counter()
    if mode == "old":  # what `start()` + `sft` did before: the whole model on every process, then shard
        from audior1.checkpoint import load_model

        model = load_model(path, dtype=torch.float32, device=d.device)
        policy = Policy(model)
        distributed.shard(policy, model.model.layers, torch.float32)
    else:  # the sharded load, as `run.load_or_plan` + `Run.shard` do it
        from audior1.checkpoint import open_checkpoint

        model, source = distributed.agree(d, lambda: open_checkpoint(path, torch.float32))
        policy = Policy(model)
        distributed.shard(policy, model.model.layers, torch.float32)
        distributed.agree(d, lambda: distributed.load_sharded(policy, source, d.device, prefix="model."))
    seconds = time.perf_counter() - start
    anon_peak = sampler.stop()
    # Both paths write every shard, so it is resident already; read the counters before the checksum.
    report = {"peak_extra_mb": round((_status_kb("VmHWM") - before["VmHWM"]) / 1024, 1),
              "anon_peak_sampled_mb": round((anon_peak - before["RssAnon"]) / 1024, 1),
              "anon_after_mb": round((_status_kb("RssAnon") - before["RssAnon"]) / 1024, 1),
              "file_after_mb": round((_status_kb("RssFile") - before["RssFile"]) / 1024, 1),
              "local_params": sum(p.to_local().numel() for p in policy.parameters()),
              "seconds": round(seconds, 2)}
    report["checksum"] = sum(float(p.detach().to_local().double().sum()) for p in policy.parameters())
    reports = d.gather_objects(report)
    if d.main:
        print(json.dumps(reports))
    d.barrier()  # nobody tears the group down while rank 0 is still printing
    distributed.shutdown(d)


def launch(mode: str, path: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          __file__, "--child", mode, str(path)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(runs: list[list[dict]]) -> dict:
    """Per rank, the median over repeats."""
    def median(xs):
        return sorted(xs)[len(xs) // 2]

    ranks = range(len(runs[0]))
    return {"peak_extra_mb_per_rank": [median([r[k]["peak_extra_mb"] for r in runs]) for k in ranks],
            "anon_peak_sampled_mb_per_rank": [median([r[k]["anon_peak_sampled_mb"] for r in runs]) for k in ranks],
            "anon_after_mb_per_rank": [median([r[k]["anon_after_mb"] for r in runs]) for k in ranks],
            "file_pages_after_mb_per_rank": [median([r[k]["file_after_mb"] for r in runs]) for k in ranks],
            "seconds": median([max(x["seconds"] for x in r) for r in runs])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from load_memory import make_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt"
        size_mb = make_checkpoint(path, dtype="bfloat16")
        runs = {mode: [launch(mode, path) for _ in range(args.repeats)] for mode in ("old", "new")}
    old, new = summarise(runs["old"]), summarise(runs["new"])
    same = [r[0]["checksum"] + r[1]["checksum"] for r in (runs["old"][0], runs["new"][0])]
    print(json.dumps({
        "benchmark": "shard_load_memory", "processes": 2, "checkpoint_mb": round(size_mb, 1),
        "old_load_whole_then_shard": old, "new_sharded_load": new,
        "peak_ratio_new_over_old": round(max(new["peak_extra_mb_per_rank"]) / max(old["peak_extra_mb_per_rank"]), 3),
        "anon_peak_ratio_new_over_old": round(max(new["anon_peak_sampled_mb_per_rank"])
                                              / max(old["anon_peak_sampled_mb_per_rank"]), 3),
        "fp32_model_mb": round(2 * size_mb, 1),
        "new_peak_over_fp32_model": round(max(new["peak_extra_mb_per_rank"]) / (2 * size_mb), 3),
        "same_weights": same[0] == same[1],
    }))


if __name__ == "__main__":
    main()
