"""`audior1 train rl` (GRPO and PPO) on the tiny preset, the policy-gradient direction on a toy policy, and the
reasoning-collapse alarm."""

import json
from pathlib import Path

import pytest
import torch

from audior1.train import losses, rewards
from audior1.train.cli import main
from audior1.train.logging import CollapseAlarm, read_metrics
from conftest import assert_resumed, mark_history


@pytest.fixture(autouse=True)
def toy_reward():
    """An untrained tiny model is never right; a reward that varies with the text gives the losses work."""
    rewards.REWARDS["toy"] = lambda completions, **_: [float(len(c) % 3) / 2 for c in completions]
    yield
    del rewards.REWARDS["toy"]


def write_config(path: Path, assets: Path, out: Path, **extra) -> Path:
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = {"model": str(assets / "tiny"), "out_dir": str(out),
           "prompts": [{"manifest": manifest, "kind": "audio", "reward": "toy"},
                       {"manifest": manifest, "kind": "text", "weight": 0.5, "reward": "toy"}],
           "eval_manifest": str(assets / "synth" / "synth-dev.jsonl"), "eval_items": 2, "eval_every": 2,
           "feature_cache": str(out.parent / "cache"), "max_steps": 2, "prompts_per_step": 2,
           "samples_per_prompt": 4, "max_new_tokens": 6, "micro_batch_size": 4, "save_every": 1,
           "temperature": 1.0, "progress": False, "threads": 1, "optim": {"lr": 1e-3}}
    cfg.update(extra)
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_rl_runs_and_logs_everything(assets, tmp_path, algo, capsys):
    out = tmp_path / algo
    extra = {"kl_coef": 0.1, "loss_norm": "per-sequence"} if algo == "grpo" else {"value_clip": 0.2}
    cfg = write_config(tmp_path / "c.yaml", assets, out, **extra)
    assert main(["rl", "--algo", algo, "--config", str(cfg)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 2 and "initial_reward" in result and "reward" in result
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    keys = {"reward", "reward/correct", "reward/format", "accuracy", "reasoning_tokens", "reasoning_tokens_p50",
            "entropy", "clip_fraction", "approx_kl", "lr", "grad_norm"}
    keys |= {"value_loss"} if algo == "ppo" else {"ref_kl"}
    assert keys <= set(train[0])
    assert train[0]["entropy"] > 0 and train[0]["grad_norm"] > 0 and train[0]["approx_kl"] > 0
    if algo == "ppo":
        assert train[0]["value_loss"] > 0
    ckpt = out / "checkpoints" / "step-000002"
    import audior1

    audior1.load_model(ckpt)
    assert (ckpt / "value" / "model.safetensors").exists() == (algo == "ppo")
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"reward.png", "reasoning_length.png", "entropy.png", "reasoning_length_hist.png"} <= plots


def test_rl_resume_continues_identically(assets, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["rl", "--algo", "ppo", "--config", str(write_config(tmp_path / "a.yaml", assets, full,
                                                                     eval_every=0))]) == 0
    cfg = write_config(tmp_path / "b.yaml", assets, part, eval_every=0, max_steps=1)
    assert main(["rl", "--algo", "ppo", "--config", str(cfg)]) == 0
    mark_history(part)
    assert main(["rl", "--algo", "ppo", "--config", str(cfg), "--resume", "max_steps=2"]) == 0
    assert_resumed(part, 1)
    a = [r for r in read_metrics(full / "metrics.jsonl") if r["kind"] == "train"]
    b = [r for r in read_metrics(part / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in b] == [1, 2]
    assert a[1]["reward"] != a[0]["reward"] and a[1]["value_loss"] > 0
    for ra, rb in zip(a, b):
        for k in ("reward", "policy_loss", "value_loss", "entropy", "completion_tokens", "approx_kl"):
            assert ra[k] == pytest.approx(rb[k], abs=1e-6), k


def test_eval_only_mode_reports_the_held_out_reward(assets, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", assets, tmp_path / "ev", max_steps=0, eval_items=2,
                       eval_temperature=1.0, eval_samples=3)
    assert main(["rl", "--algo", "grpo", "--config", str(cfg)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 0 and result["eval_items"] == 2 and 0 <= result["reward"] <= 1
    assert not (tmp_path / "ev" / "checkpoints").exists()


def test_grpo_update_raises_the_probability_of_rewarded_samples():
    """The surrogate's gradient on a toy 4-token policy: sample groups, reward token 2, step."""
    torch.manual_seed(0)
    logits = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    start = torch.softmax(logits, 0)[2].item()
    for _ in range(20):
        with torch.no_grad():
            samples = torch.multinomial(torch.softmax(logits, 0), 16, replacement=True)
            old = torch.log_softmax(logits, 0)[samples]
        scores = (samples == 2).float()
        adv = losses.group_advantages(scores, 16)
        logp = torch.log_softmax(logits, 0)[samples]
        mask = torch.ones(16, 1, dtype=torch.bool)
        loss, _ = losses.policy_loss(logp[:, None], old[:, None], adv[:, None], mask, clip=0.2,
                                     norm="per-token", denom=16)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.softmax(logits, 0)[2].item() > max(0.8, start + 0.5)


def test_collapse_alarm_fires_once_when_reasoning_halves():
    alarm = CollapseAlarm(window=2, ratio=0.5)
    messages = [alarm.update(x) for x in [100, 100, 120, 110, 80, 50, 40, 30, 20]]
    fired = [i for i, m in enumerate(messages) if m]
    assert len(fired) == 1 and "collapsed" in messages[fired[0]]
    state = alarm.state_dict()
    again = CollapseAlarm(window=2, ratio=0.5)
    again.load_state_dict(json.loads(json.dumps(state)))
    assert again.update(10) is None  # already raised: no repeat
    assert CollapseAlarm(window=2).update(0.0) is None


def first_letter_reward(completions, **_):
    """A bandit a random tiny model can learn: reward completions whose first character is in a-m."""
    return [float(c[:1].lower() in "abcdefghijklm") for c in completions]


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_rl_raises_a_learnable_reward_end_to_end(assets, tmp_path, algo):
    """The whole loop (rollouts → rewards → log-probs → advantages → updates) on a bandit whose answer the
    tiny model can learn: the rollout reward of the last steps must clearly exceed the first steps'."""
    rewards.REWARDS["first_letter"] = first_letter_reward
    try:
        out = tmp_path / algo
        cfg = write_config(tmp_path / "c.yaml", assets, out, eval_every=0, save_every=0, max_steps=20,
                           prompts_per_step=4, samples_per_prompt=8, max_new_tokens=2, micro_batch_size=32,
                           epochs=1, minibatches=1, temperature=1.0, plots=False, value_lr=1e-2,
                           prompts=[{"manifest": str(assets / "synth" / "synth-train.jsonl"), "kind": "audio",
                                     "reward": "first_letter"}],
                           optim={"lr": 3e-2, "min_lr_ratio": 1.0})
        assert main(["rl", "--algo", algo, "--config", str(cfg)]) == 0
    finally:
        del rewards.REWARDS["first_letter"]
    rs = [r["reward"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    first, last = sum(rs[:3]) / 3, sum(rs[-3:]) / 3
    print(algo, [round(r, 2) for r in rs])
    assert last > first + 0.25 and last > 0.7, rs


def test_a_prompt_source_with_nothing_to_use_is_named(assets, tmp_path, capsys):
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = write_config(tmp_path / "c.yaml", assets, tmp_path / "run",
                       prompts=[{"manifest": manifest, "kind": "audio", "reward": "toy"},
                                {"manifest": manifest, "kind": "text", "reward": "toy",
                                 "exclude_question_types": ["no_such_type"], "tasks": []}])
    assert main(["rl", "--algo", "grpo", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"data source {manifest} as text: no usable prompts: no item of the manifest passes its filters " \
           "(tasks [], exclude_question_types ['no_such_type'])" in err and "Traceback" not in err
