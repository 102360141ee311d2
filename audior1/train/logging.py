"""Run logging: one JSONL file of metrics, an optional TensorBoard mirror, PNG plots, alarms.

Design choices
- `OUT/metrics.jsonl` holds one JSON object per record: `{"kind": "train"|"eval"|"alarm"|"info", "step": …,
  …metrics}`. It is the source of truth; plots and TensorBoard are views of it.
- On resume the records after the checkpoint's step (written by the killed run) are dropped, so the file
  always tells one consistent history.
- Only rank 0 writes. TensorBoard is used when requested and installed (the import is guarded).
- Plots are redrawn from the JSONL (matplotlib, Agg backend) at every eval and at the end.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path


class RunLog:
    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = False,
                 resume_step: int | None = None):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.path = self.out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()  # a fresh run in an old directory starts a new history
        self._file = self.path.open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.out_dir / "tensorboard"))
            except Exception as e:  # tensorboard not installed: JSONL and plots still work
                self.info(f"TensorBoard unavailable ({type(e).__name__}: {e}); logging to JSONL only")

    def write(self, kind: str, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3)}
        record.update({k: _clean(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def info(self, message: str, step: int = 0) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)
            self.write("info", step, {"message": message})

    def alarm(self, message: str, step: int) -> None:
        if self.enabled:
            print(f"WARNING: {message}", file=sys.stderr, flush=True)
            self.write("alarm", step, {"message": message})

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self.tb is not None:
                self.tb.close()


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# A panel: (file name, title, [(record kind, metric key, label)]).
SFT_PANELS = [
    ("loss.png", "loss", [("train", "loss", "train"), ("eval", "dev_loss", "dev")]),
    ("accuracy.png", "dev accuracy", [("eval", "accuracy", "dev accuracy")]),
    ("lr.png", "learning rate", [("train", "lr", "lr")]),
]
RL_PANELS = [
    ("reward.png", "reward", [("train", "reward", "reward"), ("train", "reward/correct", "correct"),
                              ("train", "reward/format", "format"), ("eval", "reward", "held-out reward")]),
    ("accuracy.png", "accuracy", [("train", "accuracy", "rollouts"), ("eval", "accuracy", "held-out")]),
    ("reasoning_length.png", "reasoning tokens", [("train", "reasoning_tokens", "mean"),
                                                  ("train", "reasoning_tokens_p10", "p10"),
                                                  ("train", "reasoning_tokens_p90", "p90")]),
    ("entropy.png", "entropy", [("train", "entropy", "entropy")]),
    ("clip_fraction.png", "clip fraction", [("train", "clip_fraction", "clip fraction")]),
    ("approx_kl.png", "approx. KL to the rollout policy", [("train", "approx_kl", "all minibatches"),
                                                            ("train", "approx_kl_first", "first minibatch")]),
    ("weight_sync.png", "decoupled: weight sync (s) and rollout lag (steps)",
     [("train", "weight_sync_s", "sync seconds"), ("train", "policy_lag", "policy lag")]),
    ("rollout_logp_gap.png", "decoupled: |server − trainer| log-prob", [("train", "rollout_logp_gap", "mean"),
                                                                         ("train", "rollout_logp_gap_max", "max")]),
    ("value_loss.png", "value loss", [("train", "value_loss", "value loss")]),
    ("lr.png", "learning rate", [("train", "lr", "lr")]),
]


def plot(metrics_path: str | Path, out_dir: str | Path, panels) -> list[Path]:
    """One PNG per panel that has data; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, title, series in panels:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        drawn = False
        for kind, key, label in series:
            pts = [(r["step"], r[key]) for r in records
                   if r.get("kind") == kind and isinstance(r.get(key), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if kind == "eval" or len(pts) < 30 else None, markersize=3, label=label)
                drawn = True
        if drawn:
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(out_dir / name, dpi=100)
            written.append(out_dir / name)
        plt.close(fig)
    return written


def plot_histogram(values: list[float], path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=30)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class CollapseAlarm:
    """Warns when the moving average of the mean reasoning length falls below `ratio` × its peak — the
    collapse the paper reports without the format reward (≈3000 → <1500 tokens)."""

    def __init__(self, window: int = 5, ratio: float = 0.5):
        self.window, self.ratio = window, ratio
        self.history: list[float] = []
        self.peak = 0.0
        self.raised = False

    def update(self, mean_length: float) -> str | None:
        self.history = (self.history + [mean_length])[-self.window:]
        avg = sum(self.history) / len(self.history)
        if len(self.history) == self.window:
            self.peak = max(self.peak, avg)
        if self.peak > 0 and avg < self.ratio * self.peak:
            if not self.raised:
                self.raised = True
                return (f"reasoning length collapsed: mean over the last {self.window} steps is {avg:.1f} tokens, "
                        f"below {self.ratio:.0%} of its peak {self.peak:.1f} (paper §4: add the format reward)")
            return None
        self.raised = False
        return None

    def state_dict(self) -> dict:
        return {"history": self.history, "peak": self.peak, "raised": self.raised}

    def load_state_dict(self, s: dict) -> None:
        self.history, self.peak, self.raised = list(s["history"]), float(s["peak"]), bool(s["raised"])
