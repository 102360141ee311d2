"""The training configs: shared settings declared once, the YAML keys and their order, validation messages that
name the key, and the divergence guard both loops share."""

import dataclasses
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from audior1.config import ConfigError
from audior1.train import run as R
from audior1.train.config import RLConfig, SFTConfig, TrainConfig, dump_yaml, load_config

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                 if not p.name.startswith(("mgrd", "reproduce")))  # tests/test_mgrd*.py load those


def names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_shared_settings_are_declared_once_and_inherited_flat():
    shared = set(names(TrainConfig))
    assert len(shared) == 24 and len(names(SFTConfig)) == 32 and len(names(RLConfig)) == 51
    assert shared <= set(names(SFTConfig)) and shared <= set(names(RLConfig))
    # every key both recipes have is a shared one: nothing is declared twice outside TrainConfig
    assert set(names(SFTConfig)) & set(names(RLConfig)) == shared
    # a recipe may change a shared default, never its type (SFT's eval_max_tokens only drops None)
    for cls in (SFTConfig, RLConfig):
        hints, base = typing.get_type_hints(cls), typing.get_type_hints(TrainConfig)
        for name in shared - {"eval_max_tokens"}:
            assert hints[name] == base[name], (cls.__name__, name)
    assert typing.get_type_hints(SFTConfig)["eval_max_tokens"] is int
    assert (SFTConfig().max_steps, RLConfig().max_steps, RLConfig().optim.lr) == (1000, 100, 1e-5)


def test_keys_keep_their_order_model_out_dir_then_the_recipes_data():
    assert names(SFTConfig)[:5] == ["model", "out_dir", "data", "dev_manifest", "seed"]
    assert names(RLConfig)[:6] == ["model", "out_dir", "algo", "prompts", "eval_manifest", "seed"]
    dumped = list(yaml.safe_load(dump_yaml(SFTConfig(model="m"))))
    assert dumped == names(SFTConfig)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs_round_trip_through_config_yaml(path, tmp_path):
    cls = RLConfig if path.name.startswith("rl") else SFTConfig
    cfg = load_config(cls, path)
    (tmp_path / "config.yaml").write_text(dump_yaml(cfg))  # what a run writes to OUT/config.yaml
    assert load_config(cls, tmp_path / "config.yaml") == cfg


def test_validation_names_the_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: m\ndata: [{manifest: x.jsonl}]\n")
    for override, message in [("log_every=0", "log_every must be ≥ 1, got 0"),
                              ("micro_batch_size=0", "micro_batch_size must be ≥ 1, got 0"),
                              ("batch_size=0", "batch_size must be ≥ 1, got 0"),
                              ("max_steps=0", "max_steps must be ≥ 1, got 0"),
                              ("eval_kind=audio", "eval_kind 'audio' is not one of"),
                              ("eval_max_tokens=null", "eval_max_tokens: expected an integer, got None"),
                              ("dtype=fp16", "dtype 'fp16' is not one of"),
                              ("prompts=[]", r"unknown key\(s\) prompts")]:
        with pytest.raises(ConfigError, match=message):
            load_config(SFTConfig, f, [override])
    f.write_text("model: m\nprompts: [{manifest: x.jsonl, kind: audio}]\n")
    assert load_config(RLConfig, f, ["max_steps=0", "eval_max_tokens=null"]).max_steps == 0  # evaluate only
    for override, message in [("max_steps=-1", "max_steps must be ≥ 0, got -1"),
                              ("micro_batch_size=0", "micro_batch_size must be ≥ 1, got 0"),
                              ("epochs=0", "epochs must be ≥ 1, got 0"),
                              ("eval_kind=direct", "eval_kind 'direct' is not one of audio, text"),
                              ("clip=1.5", r"clip must be in \(0, 1\), got 1.5")]:
        with pytest.raises(ConfigError, match=message):
            load_config(RLConfig, f, [override])


def test_the_divergence_guard_saves_names_the_quantity_and_stops():
    """`run.stop_if_diverged`, shared by SFT and RL: finite values pass; otherwise the gradients are dropped, the
    state is saved as checkpoint `step`, an alarm is written and `Diverged` names the first bad quantity."""
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    opt = torch.optim.SGD([p], lr=0.1)
    saved, alarms = [], []
    ckpt = SimpleNamespace(optimizers={"policy": (None, opt)}, save=lambda s: saved.append(s) or Path(f"ck/step-{s}"),
                           run=SimpleNamespace(log=SimpleNamespace(alarm=lambda m, s: alarms.append((s, m)))))
    R.stop_if_diverged(ckpt, 4, 1.5, {"grad norm": 0.3, "value grad norm": 0.0})
    assert not saved and p.grad is not None
    with pytest.raises(R.Diverged, match=r"non-finite gradient norm at step 5 \(loss 1.5, grad norm 0.3, value grad "
                                         r"norm nan\); saved the state that produced it to ck/step-4; stopping"):
        R.stop_if_diverged(ckpt, 4, 1.5, {"grad norm": 0.3, "value grad norm": float("nan")})
    assert saved == [4] and p.grad is None and alarms[0][0] == 4
    with pytest.raises(R.Diverged, match="non-finite loss at step 1"):
        R.stop_if_diverged(ckpt, 0, float("inf"), {"grad norm": float("nan")})


def test_cadence():
    assert [s for s in range(1, 11) if R.due(s, 3, 10)] == [3, 6, 9]
    assert [s for s in range(1, 10) if R.due(s, 3, 9)] == [3, 6]  # not at the last step: the end does it
    assert not any(R.due(s, 0, 10) for s in range(1, 11))
    cfg = SimpleNamespace(log_every=4, max_steps=10)
    assert [s for s in range(1, 11) if R.log_due(s, cfg)] == [4, 8, 10]
    assert list(R.micro_batches(list(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    d = SimpleNamespace(rank=1, world=2)
    assert R.rank_share(list(range(6)), d) == [3, 4, 5]
