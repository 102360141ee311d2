"""Run by tests/test_train_distributed.py under torchrun (2 gloo processes): the sharded load against the
single-process loader, and bad checkpoints failing on every process.

Usage: sharded_load_worker.py SPEC.json — SPEC names the checkpoints (`good`; `value`, a training checkpoint
holding `value/`; `missing`, `misshaped`) and `out`, where each rank writes `rank-{r}.json`: for every check either "ok" or what differed.
"""

import json
import sys
from pathlib import Path

import torch

from audior1.checkpoint import load_model, materialize, open_checkpoint, plan_weights, state_shapes
from audior1.train import distributed, state
from audior1.train.policy import Policy, ValueModel


def differences(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensors are not bitwise equal (dtype, shape and every bit)."""
    if set(got) != set(want):
        return [f"keys differ: {sorted(set(got) ^ set(want))[:5]}"]
    return [k for k in want if got[k].dtype != want[k].dtype or not torch.equal(got[k], want[k])]


def gathered(root: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in distributed.full_state_items(root)}


def rotary_ok(root: torch.nn.Module, reference) -> bool:
    net = root.model
    return torch.equal(net.model.rotary.inv_freq, reference.model.rotary.inv_freq)


def sharded(d, path, root_of, dtype=torch.float32, **kwargs):
    """meta model → root → fully_shard → fill, as `Run.shard` does."""
    model, source = distributed.agree(d, lambda: open_checkpoint(path, dtype))
    root = root_of(model)
    distributed.shard(root, model.model.layers, dtype)
    distributed.agree(d, lambda: distributed.load_sharded(root, source, d.device, **kwargs))
    return root


def check_good(d, spec: dict) -> dict:
    results = {}
    reference = load_model(spec["good"], dtype=torch.float32)  # the single-process load

    policy = sharded(d, spec["good"], Policy, prefix="model.")
    local_rows = {n: tuple(p.to_local().shape) for n, p in policy.named_parameters()}
    want = {f"model.{k}": v for k, v in reference.state_dict().items()}
    diff = differences(gathered(policy), want)
    results["policy"] = diff or ("ok" if rotary_ok(policy, reference) else ["rotary inv_freq"])
    results["policy_local_rows"] = {n: list(s) for n, s in local_rows.items() if n.endswith("embed_tokens.weight")}

    value = sharded(d, spec["good"], ValueModel, prefix="model.", fresh=("value_head.",))
    value.reset_head()
    want_value = {**want, "value_head.weight": torch.zeros(1, reference.config.text.hidden_size),
                  "value_head.bias": torch.zeros(1)}
    results["value_from_policy"] = differences(gathered(value), want_value) or "ok"

    model, _ = open_checkpoint(spec["good"], torch.float32)
    resumed = ValueModel(model)
    source = distributed.agree(d, lambda: plan_weights(Path(spec["value"]) / "value", state_shapes(resumed)))
    distributed.shard(resumed, model.model.layers, torch.float32)
    distributed.agree(d, lambda: distributed.load_sharded(resumed, source, d.device))
    # value/ holds the ValueModel's own names; value_head.weight [1, D] leaves rank 1 an empty shard.
    # The single-process resume reads the same files with state.load_value_state.
    results["value_resumed"] = differences(gathered(resumed), state.load_value_state(Path(spec["value"]))) or "ok"

    copy = materialize(reference.config, torch.float32, d.device)  # Run.inference_model's copy
    distributed.sync_copy(copy, policy.model)
    ok = not differences(dict(copy.state_dict()), dict(reference.state_dict()))
    results["inference_copy"] = "ok" if ok and torch.equal(copy.model.rotary.inv_freq,
                                                           reference.model.rotary.inv_freq) else "differs"
    return results


def expect_failure(d, path) -> str:
    """The message every process gets for a bad checkpoint (the load must raise, not hang)."""
    try:
        sharded(d, path, Policy, prefix="model.")
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return "no error"


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    d = distributed.init()
    results = check_good(d, spec)
    results["missing"] = expect_failure(d, spec["missing"])
    results["misshaped"] = expect_failure(d, spec["misshaped"])
    # one process sees a bad copy, the other a good one (a node with a damaged file): both must stop
    results["one_rank_bad"] = expect_failure(d, spec["missing"] if d.rank == 1 else spec["good"])
    d.barrier()  # still in step after every failure
    (Path(spec["out"]) / f"rank-{d.rank}.json").write_text(json.dumps(results))
    distributed.shutdown(d)


if __name__ == "__main__":
    main(sys.argv[1])
