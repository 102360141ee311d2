"""torchrun with 2 gloo processes (FSDP2 on CPU) against 1 process with the same global batch, tiny preset; and the
sharded load (each process reads only its shards) against the single-process loader."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audior1.train.cli import main
from audior1.train.logging import read_metrics
from conftest import assert_resumed, mark_history


TOY_REWARD = '''
def toy(completions, **_):
    """Varies with the text, so an untrained model gets non-zero advantages."""
    return [float(len(c) % 3) / 2 for c in completions]
'''


def torchrun(args: list[str], tmp_path: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--standalone", "-m", "audior1.train.cli", *args],
                          env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def series(out: Path, kind: str, keys: tuple[str, ...]) -> list[tuple]:
    return [(r["step"], *[r[k] for k in keys]) for r in read_metrics(out / "metrics.jsonl") if r["kind"] == kind]


def test_sft_two_processes_match_one(assets, tmp_path):
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = {"model": str(assets / "tiny"), "feature_cache": str(tmp_path / "cache"),
           "data": [{"manifest": manifest, "kind": "direct", "weight": 2.0},
                    {"manifest": manifest, "kind": "text_cot"}],  # text-only micro-batches happen
           "dev_manifest": str(assets / "synth" / "synth-dev.jsonl"), "eval_items": 4, "eval_max_tokens": 3,
           "eval_every": 4, "max_steps": 4, "batch_size": 4, "micro_batch_size": 2, "max_seq_len": 256,
           "save_every": 0, "log_every": 1, "progress": False, "threads": 1, "optim": {"lr": 3e-3}}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    # 1 process: 2 micro-batches of 2 rows; 2 processes: 1 micro-batch of 2 rows each
    assert main(["sft", "--config", str(path), f"out_dir={tmp_path / 'one'}"]) == 0
    proc = torchrun(["sft", "--config", str(path), f"out_dir={tmp_path / 'two'}"], tmp_path)
    # every clip cached before step 1: the private encoder copy is freed, and training still matches
    assert "feature cache complete: released this process's encoder copy" in proc.stderr
    one = series(tmp_path / "one", "train", ("loss", "grad_norm"))
    two = series(tmp_path / "two", "train", ("loss", "grad_norm"))
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    ev1, ev2 = series(tmp_path / "one", "eval", ("dev_loss", "accuracy")), series(tmp_path / "two", "eval", ("dev_loss", "accuracy"))
    assert len(ev1) == len(ev2) == 1 and ev1[0] == pytest.approx(ev2[0], rel=1e-5)
    import audior1

    w1 = audior1.load_model(tmp_path / "one" / "checkpoints" / "step-000004").model.layers[1].mlp.down_proj.weight
    w2 = audior1.load_model(tmp_path / "two" / "checkpoints" / "step-000004").model.layers[1].mlp.down_proj.weight
    assert torch.allclose(w1, w2, atol=1e-5)


def test_ppo_two_processes_match_one(assets, tmp_path):
    (tmp_path / "toy_reward_mod.py").write_text(TOY_REWARD)
    sys.path.insert(0, str(tmp_path))
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = {"model": str(assets / "tiny"), "feature_cache": str(tmp_path / "cache"),
           "prompts": [{"manifest": manifest, "kind": "audio", "reward": "toy_reward_mod:toy"},
                       {"manifest": manifest, "kind": "text", "reward": "toy_reward_mod:toy"}],
           "max_steps": 2, "prompts_per_step": 2, "samples_per_prompt": 4, "max_new_tokens": 5, "epochs": 1,
           "minibatches": 1, "micro_batch_size": 8, "eval_every": 0, "save_every": 0, "progress": False,
           "threads": 1, "optim": {"lr": 1e-3}}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    try:
        assert main(["rl", "--algo", "ppo", "--config", str(path), f"out_dir={tmp_path / 'one'}"]) == 0
    finally:
        sys.path.remove(str(tmp_path))
    torchrun(["rl", "--algo", "ppo", "--config", str(path), f"out_dir={tmp_path / 'two'}"], tmp_path)
    keys = ("reward", "entropy", "value_loss", "approx_kl", "completion_tokens")
    one, two = series(tmp_path / "one", "train", keys), series(tmp_path / "two", "train", keys)
    assert len(one) == 2 and one[1][1] != 0
    for a, b in zip(one, two):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


# ---- sharded loading ----------------------------------------------------------------------------------

def _odd_checkpoints(root: Path) -> dict:
    """A tiny model with an odd vocabulary (uneven row shards) saved in bf16 over several files, a training
    checkpoint holding a value model, and two broken copies (a missing tensor, a mis-shaped one)."""
    from audior1.checkpoint import save_checkpoint, write_tensors
    from audior1.config import preset
    from audior1.model import StepAudioR1ForCausalLM
    from audior1.train.policy import ValueModel

    cfg = preset("tiny")
    cfg.text.vocab_size, cfg.audio_patch_token_id = 1031, 5
    model = StepAudioR1ForCausalLM(cfg)
    model.init_weights(3)
    save_checkpoint(model, root / "good", dtype="bfloat16", max_shard_bytes=40_000)
    value = ValueModel(model)
    torch.nn.init.normal_(value.value_head.weight, generator=torch.Generator().manual_seed(1))
    write_tensors(root / "ckpt" / "value", value.state_dict().items())
    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    for name, edit in (("missing", lambda s: s.pop("lm_head.weight")),
                       ("misshaped", lambda s: s.update({"model.norm.weight": torch.ones(7)}))):
        broken = dict(state)
        edit(broken)
        write_tensors(root / name, broken.items(), max_shard_bytes=40_000)
        (root / name / "config.json").write_text((root / "good" / "config.json").read_text())
    return {k: str(root / k) for k in ("good", "missing", "misshaped")} | {"value": str(root / "ckpt")}


def test_sharded_load_is_bitwise_the_single_process_load(tmp_path):
    """2 processes fill their FSDP2 shards straight from the files; gathered, the weights are bit for bit what
    `load_model` gives in one process (policy, value model fresh and resumed, inference copy), and a bad
    checkpoint fails on both processes with the loader's message — also when only one process sees it."""
    spec = {**_odd_checkpoints(tmp_path), "out": str(tmp_path)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    worker = Path(__file__).with_name("sharded_load_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                           str(worker), str(tmp_path / "spec.json")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    for r in ranks:
        for check in ("policy", "value_from_policy", "value_resumed", "inference_copy"):
            assert r[check] == "ok", (check, r[check])
        assert r["missing"].startswith("CheckpointError") and "1 missing: lm_head.weight" in r["missing"]
        assert "1 mis-shaped: model.norm.weight (checkpoint [7], model [32])" in r["misshaped"]
    rows = [r["policy_local_rows"]["model.model.embed_tokens.weight"][0] for r in ranks]
    assert rows == [516, 515]  # 1031 rows: uneven shards
    assert "1 missing: lm_head.weight" in ranks[1]["one_rank_bad"]
    assert ranks[0]["one_rank_bad"].startswith("CheckpointError: (on rank 1)")
    assert "1 missing: lm_head.weight" in ranks[0]["one_rank_bad"]


def test_ppo_with_kl_resumed_under_two_processes_matches_one(assets, tmp_path):
    """Every sharded load in RL at once: the reference policy (kl_coef > 0), and on resume the policy and the
    value model from the checkpoint's `value/`. 2 processes, stopped after step 1 and resumed, against one
    process running both steps."""
    (tmp_path / "toy_reward_mod.py").write_text(TOY_REWARD)
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = {"model": str(assets / "tiny"), "feature_cache": str(tmp_path / "cache"),
           "prompts": [{"manifest": manifest, "kind": "audio", "reward": "toy_reward_mod:toy"}],
           "max_steps": 2, "prompts_per_step": 2, "samples_per_prompt": 4, "max_new_tokens": 5, "epochs": 1,
           "minibatches": 1, "micro_batch_size": 8, "eval_every": 0, "save_every": 1, "kl_coef": 0.1,
           "progress": False, "threads": 1, "optim": {"lr": 1e-3}}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["rl", "--algo", "ppo", "--config", str(path), f"out_dir={tmp_path / 'one'}"]) == 0
    finally:
        sys.path.remove(str(tmp_path))
    two = f"out_dir={tmp_path / 'two'}"
    torchrun(["rl", "--algo", "ppo", "--config", str(path), two, "max_steps=1"], tmp_path)
    mark_history(tmp_path / "two")
    torchrun(["rl", "--algo", "ppo", "--config", str(path), two, "--resume"], tmp_path)
    assert_resumed(tmp_path / "two", 1)
    keys = ("reward", "entropy", "value_loss", "ref_kl", "approx_kl", "policy_loss")
    one, two = series(tmp_path / "one", "train", keys), series(tmp_path / "two", "train", keys)
    assert [r[0] for r in two] == [1, 2] and one[1][4] > 0  # the policy moved away from the reference
    for a, b in zip(one, two):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_bad_checkpoint_stops_every_process_with_the_loader_message(assets, tmp_path):
    """`train sft` under torchrun on a checkpoint that lacks a tensor: both processes exit at once with the
    loader's message (the timeout would catch one left waiting in a collective). The worker test above
    covers a mis-shaped tensor and a failure on one process only."""
    paths = _odd_checkpoints(tmp_path)
    cfg = {"model": paths["missing"], "data": [{"manifest": str(assets / "synth" / "synth-train.jsonl"),
                                             "kind": "direct"}],
           "max_steps": 1, "batch_size": 2, "progress": False, "threads": 1, "out_dir": str(tmp_path / "out")}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    proc = torchrun(["sft", "--config", str(tmp_path / "c.yaml")], tmp_path, check=False, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.count("audior1 train: error: strict load failed") == 2, proc.stderr[-3000:]
    assert proc.stderr.count("1 missing: lm_head.weight") == 2
