"""The decoupled-vs-colocated GRPO comparison (scripts/decoupled_experiment.sh): reward curves, held-out
evaluations, the sync checks and the costs, per seed and across seeds; a figure; one JSON object.

    python scripts/decoupled_report.py [RUNS] [--figure docs/img/decoupled/reward.png]

The question is whether taking rollouts from a server that the trainer keeps in sync changes training: the
decoupled run should match the colocated one within the spread between seeds. Reported: each run's train
reward per step, its mean over the last 10 steps and its held-out reward and accuracy at the end; per seed the
paired difference (decoupled − colocated) and the largest per-step difference; across seeds the mean and
standard deviation of each mode, so the paired differences can be read against the seed spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

MODES = ("colocated", "decoupled")


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def summarise(run: Path) -> dict:
    rows = _records(run)
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    out = {"reward": [r["reward"] for r in train], "accuracy": [r["accuracy"] for r in train],
           "last10_reward": statistics.mean(r["reward"] for r in train[-10:]),
           "eval": {r["step"]: {"reward": r["reward"], "accuracy": r["accuracy"]} for r in evals},
           "approx_kl_first_max": max(r["approx_kl_first"] for r in train),
           "step_s_median": statistics.median(r["step_s"] for r in train),
           "rollout_s_median": statistics.median(r["rollout_s"] for r in train),
           "wall_s": float((run / "wall_s").read_text()) if (run / "wall_s").is_file() else None}
    if "rollout_logp_gap" in train[0]:
        out.update({"rollout_logp_gap_max": max(r["rollout_logp_gap"] for r in train),
                    "rollout_logp_gap_max_token": max(r["rollout_logp_gap_max"] for r in train),
                    "weight_sync_s_median": statistics.median(r["weight_sync_s"] for r in train),
                    "weight_sync_mb_median": statistics.median(r["weight_sync_mb"] for r in train)})
    return out


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def report(root: Path) -> dict:
    seeds = sorted({int(p.name.rsplit("-s", 1)[1]) for p in root.glob("*-s*") if (p / "done").is_file()})
    runs = {(m, s): summarise(root / f"{m}-s{s}") for m in MODES for s in seeds if (root / f"{m}-s{s}" / "done").is_file()}
    paired = [s for s in seeds if all((m, s) in runs for m in MODES)]
    final = max(next(iter(runs.values()))["eval"]) if runs else None
    out = {"seeds": paired, "runs": {f"{m}-s{s}": r for (m, s), r in runs.items()}, "per_seed": {}, "across_seeds": {}}
    for s in paired:
        c, d = runs[("colocated", s)], runs[("decoupled", s)]
        out["per_seed"][s] = {
            "last10_reward_diff": d["last10_reward"] - c["last10_reward"],
            "max_step_reward_diff": max(abs(a - b) for a, b in zip(c["reward"], d["reward"])),
            "steps_with_identical_reward": sum(a == b for a, b in zip(c["reward"], d["reward"])),
            "final_eval_reward_diff": d["eval"][final]["reward"] - c["eval"][final]["reward"],
            "final_eval_accuracy_diff": d["eval"][final]["accuracy"] - c["eval"][final]["accuracy"]}
    for m in MODES:
        mine = [runs[(m, s)] for s in paired]
        if mine:
            out["across_seeds"][m] = {"last10_reward": _spread([r["last10_reward"] for r in mine]),
                                      "final_eval_reward": _spread([r["eval"][final]["reward"] for r in mine]),
                                      "final_eval_accuracy": _spread([r["eval"][final]["accuracy"] for r in mine]),
                                      "wall_s": _spread([r["wall_s"] for r in mine if r["wall_s"] is not None])}
    out["final_step"] = final
    return out


def figure(result: dict, path: Path) -> None:
    """Left: every run's reward per step (colocated solid, decoupled dashed: where they coincide only the solid
    line shows). Right: the paired difference per step against the spread between seeds (colocated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    curves = {}
    for k, s in enumerate(result["seeds"]):
        for m, style in zip(MODES, ("-", "--")):
            curves[(m, s)] = np.asarray(result["runs"][f"{m}-s{s}"]["reward"])
            ax.plot(range(1, len(curves[(m, s)]) + 1), curves[(m, s)], style, color=f"C{k}",
                    label=f"{m}, seed {s}", alpha=0.85)
        diff = curves[("decoupled", s)] - curves[("colocated", s)]
        bx.plot(range(1, len(diff) + 1), diff, color=f"C{k}", label=f"seed {s}: decoupled − colocated")
    spread = np.std([curves[("colocated", s)] for s in result["seeds"]], axis=0, ddof=1)
    steps = range(1, len(spread) + 1)
    bx.fill_between(steps, -spread, spread, color="grey", alpha=0.25, label="± SD over seeds (colocated)")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean rollout reward (0.8·correct + 0.2·format)")
    ax.set_title("reward per step (decoupled dashed, under the solid)")
    ax.legend(fontsize=7, ncol=2)
    bx.set_xlabel("GRPO step")
    bx.set_ylabel("reward difference")
    bx.set_title("paired difference vs. seed spread")
    bx.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="?", default="runs/decoupled-exp")
    ap.add_argument("--figure", default=None)
    args = ap.parse_args()
    result = report(Path(args.runs))
    if args.figure:
        figure(result, Path(args.figure))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
