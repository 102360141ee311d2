"""Decoupled RL (`rollout: {endpoint: …}`): the trainer under torchrun (2 gloo processes) takes its rollouts from
an `audior1 serve --enable-weight-updates` process and keeps its weights in sync, against the colocated run;
the completion a server's token ids stand for; the `rollout:` settings' checks."""

import contextlib
import json
import sys
import urllib.request
from pathlib import Path

import pytest
from audior1.checkpoint import tensor_shapes, weight_files
from audior1.config import ConfigError
from audior1.engine import Engine, SamplingParams
from audior1.processor import Processor
from audior1.data.manifest import read_manifest
from audior1.train.config import RLConfig, load_config
from audior1.train.logging import read_metrics
from audior1.train.rollout import RolloutServer, RolloutServerError, completion_from_ids
from audior1.train.run import prompt_messages
from conftest import free_port, serve_process
from test_train_distributed import TOY_REWARD, torchrun


# ---- the completion behind a server's token ids ---------------------------------------------------------

def test_completion_from_ids_is_the_engines_completion(assets):
    """Rebuilt from the token ids alone, every completion is field for field what the engine reported —
    sampled ones, and ones whose thinking budget forced `</think>`."""
    import audior1

    model = audior1.load_model(assets / "tiny").eval()
    processor = Processor.from_pretrained(assets / "tiny")
    engine = Engine(model, processor)
    item = read_manifest(assets / "synth" / "synth-train.jsonl")[0]
    messages = prompt_messages(item, "audio")
    seen_forced = False
    for seed, budget in [(0, None), (1, None), (2, 3), (3, 2)]:
        params = SamplingParams(n=4, temperature=1.0, max_tokens=12, max_think_tokens=budget, seed=seed)
        for c in engine.generate([messages], params)[0]:
            seen_forced |= bool(c.forced_positions)
            rebuilt = completion_from_ids(processor.tokenizer, c.token_ids, c.prompt_tokens, c.finish_reason,
                                          c.stop_reason, c.forced_positions)
            for field in ("text", "reasoning", "answer", "token_ids", "finish_reason", "reasoning_tokens",
                          "prompt_tokens", "think_closed", "stop_reason", "forced_positions"):
                assert getattr(rebuilt, field) == getattr(c, field), (seed, field)
    assert seen_forced


# ---- the settings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rollout, message", [
    ({"endpoint": "localhost:8000"}, "rollout.endpoint must be an http(s) URL, got 'localhost:8000'"),
    ({"endpoint": "http://h:1", "sync": "rsync"}, "rollout.sync 'rsync' is not one of stream, reload, nccl"),
    ({"endpoint": "http://h:1", "sync_every": 0}, "rollout.sync_every must be ≥ 1, got 0"),
    ({"endpoint": "http://h:1", "chunk_mb": 0}, "rollout.chunk_mb must be > 0, got 0"),
    ({"endpoint": "http://h:1", "endpont": "x"}, "unknown key(s) endpont"),
])
def test_rollout_settings_are_checked(rollout, message, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"model": "m", "prompts": [{"manifest": "p.jsonl", "kind": "audio"}],
                                "rollout": rollout}))
    with pytest.raises(ConfigError) as e:
        load_config(RLConfig, path)
    assert message in str(e.value)


def test_an_unreachable_server_is_named(tmp_path):
    from audior1.train.config import RolloutEndpoint
    from audior1.train.distributed import Dist

    port = free_port()
    server = RolloutServer(RolloutEndpoint(endpoint=f"http://127.0.0.1:{port}", timeout_s=5), None, Dist(), tmp_path)
    with pytest.raises(RolloutServerError, match=rf"GET http://127.0.0.1:{port}/v1/models: cannot connect"):
        server.connect()


# ---- a decoupled run against the colocated one ----------------------------------------------------------

@contextlib.contextmanager
def rollout_server(model: Path):
    """`audior1 serve --enable-weight-updates` as a user starts it; yields its URL."""
    with serve_process(model, "--enable-weight-updates", "--log-level", "warning") as (url, _):
        yield url


def _config(assets: Path, tmp_path: Path, **extra) -> Path:
    (tmp_path / "toy_reward_mod.py").write_text(TOY_REWARD)
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = {"model": str(assets / "tiny"), "feature_cache": str(tmp_path / "cache"),
           "prompts": [{"manifest": manifest, "kind": "audio", "reward": "toy_reward_mod:toy"}],
           "eval_manifest": str(assets / "synth" / "synth-dev.jsonl"), "eval_items": 2, "eval_every": 2,
           "max_steps": 3, "prompts_per_step": 2, "samples_per_prompt": 4, "max_new_tokens": 6, "epochs": 1,
           "minibatches": 2, "micro_batch_size": 8, "save_every": 0, "progress": False, "threads": 1,
           "optim": {"lr": 1e-3}, **extra}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    return path


def _train(out: Path) -> list[dict]:
    return [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


def _weight_info(url: str) -> dict:
    with urllib.request.urlopen(url + "/weight_info", timeout=5) as r:
        return json.loads(r.read())


def test_decoupled_grpo_matches_colocated(assets, tmp_path):
    """2 trainer processes + a server: the rollouts are the colocated run's (same seeds, same weights after
    every step), the server's log-probs are the trainer's recomputation, the importance ratio's first minibatch
    is 1 (approx-KL ≈ 0), the held-out evaluation agrees, and the server ends holding the last step."""
    path = _config(assets, tmp_path)
    torchrun(["rl", "--algo", "grpo", "--config", str(path), f"out_dir={tmp_path / 'colocated'}"], tmp_path)
    with rollout_server(assets / "tiny") as url:
        proc = torchrun(["rl", "--algo", "grpo", "--config", str(path), f"out_dir={tmp_path / 'decoupled'}",
                         f"rollout.endpoint={url}", "rollout.chunk_mb=0.05"], tmp_path)
        info = _weight_info(url)
    assert info["weight_version"] == "step-3" and not info["is_paused"]
    assert f"rollouts from {url}" in proc.stdout + proc.stderr
    colocated, decoupled = _train(tmp_path / "colocated"), _train(tmp_path / "decoupled")
    names = tensor_shapes(weight_files(assets / "tiny"))
    trainable = sum(not n.startswith("encoder.") for n in names)
    assert 0 < trainable < len(names)
    assert [r["step"] for r in decoupled] == [1, 2, 3]
    for a, b in zip(colocated, decoupled):
        for k in ("reward", "completion_tokens", "reasoning_tokens", "entropy", "approx_kl"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (a["step"], k)
        assert b["rollout_logp_gap"] < 1e-4 and b["rollout_logp_gap_max"] < 1e-3
        assert b["approx_kl_first"] < 1e-7 and a["approx_kl_first"] < 1e-7
        assert b["policy_lag"] == 0 and b["weight_sync_s"] > 0
        assert b["weight_sync_tensors"] == trainable  # after the first sync only what trains (not the encoder)
    evals = [[r for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["kind"] == "eval"]
             for run in ("colocated", "decoupled")]
    assert [r["step"] for r in evals[1]] == [0, 2, 3]
    for a, b in zip(*evals):
        assert b["accuracy"] == a["accuracy"] and b["reward"] == pytest.approx(a["reward"], abs=1e-6)


def test_reload_sync_with_lag(assets, tmp_path):
    """The fallback any server supports: save the weights, ask the server to reload them. Synced every second
    step, the middle step's rollouts come from weights one step old: `policy_lag` says so and the first
    minibatch's ratio is no longer 1."""
    path = _config(assets, tmp_path, eval_every=0, max_steps=3)
    with rollout_server(assets / "tiny") as url:
        torchrun(["rl", "--algo", "grpo", "--config", str(path), f"out_dir={tmp_path / 'reload'}",
                  f"rollout.endpoint={url}", "rollout.sync=reload", "rollout.sync_every=2"], tmp_path)
        info = _weight_info(url)
    assert info["weight_version"] == "step-3"
    train = _train(tmp_path / "reload")
    assert [r["policy_lag"] for r in train] == [0, 1, 0]
    assert train[0]["approx_kl_first"] < 1e-7 and train[2]["approx_kl_first"] < 1e-7
    assert train[1]["approx_kl_first"] > 1e-6 and train[1]["rollout_logp_gap"] > 1e-4
    assert ["weight_sync_s" in r for r in train] == [False, True, True]
    kept = sorted(p.name for p in (tmp_path / "reload" / "rollout-weights").iterdir())
    assert kept == ["step-3"]  # one weight directory at a time


def test_mgrd_rl_stages_take_the_rollout_server():
    """`rl: {rollout: …}` in an MGRD config reaches every RL stage's config (checked when planned)."""
    from audior1.mgrd.config import MGRDConfig
    from audior1.mgrd.run import Planner

    cfg = load_config(MGRDConfig, Path(__file__).resolve().parents[1] / "configs" / "mgrd-demo.yaml")
    cfg.rl = {**cfg.rl, "rollout": {"endpoint": "http://127.0.0.1:8000", "sync": "reload"}}
    rl = [s for s in Planner(cfg).plan() if s.name.endswith("-rl")]
    assert rl and all(s.files["rl.yaml"]["rollout"] == {"endpoint": "http://127.0.0.1:8000", "sync": "reload"}
                      for s in rl)
    cfg.rl = {**cfg.rl, "rollout": {"endpoint": "http://127.0.0.1:8000", "sync": "ftp"}}
    with pytest.raises(ConfigError, match="rollout.sync 'ftp' is not one of"):
        Planner(cfg).plan()


def test_lora_run_streams_merged_weights(assets, tmp_path):
    """One process training LoRA adapters: what reaches the server is each wrapped layer's merged W + s·B·A, so
    the server's log-probs stay the trainer's after every update (ratio 1 on the first minibatch)."""
    from audior1.train.cli import main

    path = _config(assets, tmp_path, eval_every=0, max_steps=2, lora={"r": 4, "alpha": 8, "targets": ["attention"]})
    sys.path.insert(0, str(tmp_path))
    try:
        with rollout_server(assets / "tiny") as url:
            assert main(["rl", "--algo", "grpo", "--config", str(path), f"out_dir={tmp_path / 'lora'}",
                         f"rollout.endpoint={url}"]) == 0
    finally:
        sys.path.remove(str(tmp_path))
    train = _train(tmp_path / "lora")
    assert len(train) == 2 and train[0]["grad_norm"] > 0
    for r in train:
        assert r["approx_kl_first"] < 1e-7 and r["rollout_logp_gap"] < 1e-4
    layers = sum(n.startswith("model.layers.") and n.endswith("_proj.weight") and ".self_attn." in n
                 for n in tensor_shapes(weight_files(assets / "tiny")))
    assert train[1]["weight_sync_tensors"] == layers  # the merged q/k/v/o of every layer, nothing else


def test_a_missing_server_stops_the_run_with_one_line(assets, tmp_path, capsys):
    """Nothing listening at the endpoint: exit status 2 and one line naming the URL, before any step."""
    from audior1.train.cli import main

    path = _config(assets, tmp_path, eval_every=0, max_steps=1)
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["rl", "--algo", "grpo", "--config", str(path), f"out_dir={tmp_path / 'x'}",
                 f"rollout.endpoint={url}", "rollout.timeout_s=5"]) == 2
    err = capsys.readouterr().err
    assert f"audior1 train: error: rollout server GET {url}/v1/models: cannot connect" in err


def test_decoupled_ppo_matches_colocated_in_one_process(assets, tmp_path):
    """PPO (value model, GAE) in one trainer process: the decoupled run's rewards, value loss and KL are the
    colocated run's, step for step."""
    from audior1.train.cli import main

    path = _config(assets, tmp_path, eval_every=0, max_steps=2, value_clip=0.2)
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["rl", "--algo", "ppo", "--config", str(path), f"out_dir={tmp_path / 'colocated'}"]) == 0
        with rollout_server(assets / "tiny") as url:
            assert main(["rl", "--algo", "ppo", "--config", str(path), f"out_dir={tmp_path / 'decoupled'}",
                         f"rollout.endpoint={url}"]) == 0
    finally:
        sys.path.remove(str(tmp_path))
    colocated, decoupled = _train(tmp_path / "colocated"), _train(tmp_path / "decoupled")
    assert len(decoupled) == 2 and decoupled[1]["value_loss"] > 0
    for a, b in zip(colocated, decoupled):
        for k in ("reward", "value_loss", "approx_kl", "entropy", "completion_tokens"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (a["step"], k)
        assert b["approx_kl_first"] < 1e-7
