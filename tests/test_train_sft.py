"""`audior1 train sft` end to end on the tiny preset: outputs, resume after kill -9, divergence, bad configs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from audior1.train.cli import main
from conftest import assert_resumed, mark_history
from audior1.train.logging import read_metrics


def write_config(path: Path, assets: Path, out: Path, **extra) -> Path:
    manifest = assets / "synth" / "synth-train.jsonl"
    cfg = {
        "model": str(assets / "tiny"), "out_dir": str(out),
        "data": [{"manifest": str(manifest), "kind": "direct", "weight": 2.0},
                 {"manifest": str(manifest), "kind": "caption", "weight": 1.0},
                 {"manifest": str(manifest), "kind": "text_cot", "weight": 1.0}],
        "feature_cache": str(out.parent / "cache"), "max_steps": 6, "batch_size": 4, "micro_batch_size": 2,
        "max_seq_len": 256, "eval_every": 0, "save_every": 3, "log_every": 1, "progress": False, "threads": 1,
        "optim": {"lr": 3e-3, "warmup_steps": 2},
    }
    cfg.update(extra)
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def losses_of(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


def test_sft_runs_end_to_end_and_writes_everything(assets, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", assets, out, dev_manifest=str(assets / "synth" / "synth-dev.jsonl"),
                       eval_every=3, eval_items=2, eval_max_tokens=4, save_every=0)
    assert main(["sft", "--config", str(cfg)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 6 and 0 <= result["accuracy"] <= 1 and result["dev_loss"] > 0
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert all(k in train[0] for k in ("loss", "lr", "grad_norm", "tokens_per_s", "epoch"))
    assert train[-1]["loss"] < train[0]["loss"]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert {p.name for p in (out / "plots").iterdir()} == {"loss.png", "accuracy.png", "lr.png"}
    ckpt = out / "checkpoints" / "step-000006"
    import audior1

    model = audior1.load_model(ckpt)  # the official layout, strict
    assert (ckpt / "tokenizer.json").exists() and (ckpt / "trainer_state.json").exists()
    # only trainable parts moved
    base = audior1.load_model(assets / "tiny")
    assert torch.equal(model.encoder.conv1.weight, base.encoder.conv1.weight)
    assert not torch.equal(model.adapter.linear1.weight, base.adapter.linear1.weight)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)


def test_resume_after_kill_9_gives_the_same_losses(assets, tmp_path):
    steps = 16
    opts = dict(max_steps=steps, save_every=2, batch_size=2, micro_batch_size=2)
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    ref_cfg = write_config(tmp_path / "ref.yaml", assets, ref_out, **opts)
    cfg = write_config(tmp_path / "killed.yaml", assets, out, **opts)
    assert main(["sft", "--config", str(ref_cfg)]) == 0
    reference = losses_of(ref_out)
    assert len(reference) == steps

    proc = subprocess.Popen([sys.executable, "-m", "audior1.train.cli", "sft", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckpts = out / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if any((p / "trainer_state.json").exists() for p in ckpts.glob("step-*")) if ckpts.exists() else False:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(losses_of(out))
    assert killed_at < steps, "the run finished before it could be killed"

    saved = max(int(p.name.split("-")[1]) for p in ckpts.glob("step-*") if (p / "trainer_state.json").exists())
    mark_history(out)
    assert main(["sft", "--config", str(cfg), "--resume"]) == 0
    assert_resumed(out, saved)  # it started from the saved step and recomputed none before it
    resumed = losses_of(out)
    assert [s for s, _ in resumed] == list(range(1, steps + 1))  # one consistent history
    for (s, a), (_, b) in zip(resumed, reference):
        assert a == pytest.approx(b, abs=1e-6), f"step {s}: resumed {a} vs uninterrupted {b}"
    import audior1

    w1 = audior1.load_model(ref_out / "checkpoints" / f"step-{steps:06d}").lm_head.weight
    w2 = audior1.load_model(out / "checkpoints" / f"step-{steps:06d}").lm_head.weight
    assert torch.allclose(w1, w2, atol=1e-6)


def test_nan_loss_saves_a_checkpoint_and_stops(assets, tmp_path, capsys):
    from audior1.checkpoint import load_model, save_checkpoint
    from audior1.chat import ChatTokenizer

    bad = tmp_path / "bad-model"
    model = load_model(assets / "tiny")
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    save_checkpoint(model, bad, tokenizer=ChatTokenizer.from_dir(assets / "tiny"))
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", assets, out, model=str(bad))
    assert main(["sft", "--config", str(cfg)]) == 3
    err = capsys.readouterr().err
    assert "non-finite loss at step 1" in err and "step-000000" in err
    assert (out / "checkpoints" / "step-000000" / "trainer_state.json").exists()
    assert any(r["kind"] == "alarm" for r in read_metrics(out / "metrics.jsonl"))


def test_bad_config_and_strict_audio_fail_with_one_line(assets, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", assets, tmp_path / "run")
    assert main(["sft", "--config", str(cfg), "learning_rate=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) learning_rate; valid keys:" in err and "Traceback" not in err
    # a manifest row whose audio is missing: skipped and counted, or fatal with --strict
    manifest = tmp_path / "m.jsonl"
    rows = [json.loads(line) for line in (assets / "synth" / "synth-train.jsonl").read_text().splitlines()]
    rows[0]["audio"] = ["nowhere/gone.wav"]
    for r in rows[1:]:
        r["audio"] = [str(assets / "synth" / a) for a in r["audio"]]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = write_config(tmp_path / "c2.yaml", assets, tmp_path / "run2", max_steps=1, save_every=0,
                       data=[{"manifest": str(manifest), "kind": "direct"}])
    assert main(["sft", "--config", str(cfg)]) == 0
    assert "skipped: 1 × bad audio, 1 × missing audio" in capsys.readouterr().err
    assert main(["sft", "--config", str(cfg), "--strict"]) == 2
    assert "gone.wav: audio file not found" in capsys.readouterr().err


def test_bf16_activation_checkpointing_and_optional_tensorboard(assets, tmp_path):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", assets, out, max_steps=2, save_every=0, dtype="bfloat16",
                       activation_checkpointing=True, tensorboard=True, trainable=["adapter", "decoder", "encoder"])
    assert main(["sft", "--config", str(cfg)]) == 0
    records = read_metrics(out / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 2 and all(0 < x < 20 for x in losses)
    # a trainable encoder turns the feature cache off (its outputs change every step)
    said = [r.get("message", "") for r in records if r["kind"] == "info"]
    assert any("feature cache off" in m for m in said)
    # TensorBoard: event files where it is installed, else the named fallback (JSONL and plots only)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert any(m.startswith("TensorBoard unavailable (") and "logging to JSONL only" in m for m in said)
        assert not (out / "tensorboard").exists()
    else:
        assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())


def test_a_source_with_nothing_to_train_on_is_named(assets, tmp_path, capsys):
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = write_config(tmp_path / "c.yaml", assets, tmp_path / "run", max_steps=1, save_every=0,
                       data=[{"manifest": manifest, "kind": "direct"},
                             {"manifest": manifest, "kind": "caption", "tasks": ["no_such_family"]}])
    assert main(["sft", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"data source {manifest} as caption: no usable examples: no item of the manifest passes its filters " \
           "(tasks ['no_such_family'])" in err and "Traceback" not in err
    cfg = write_config(tmp_path / "c2.yaml", assets, tmp_path / "run2", max_steps=1, save_every=0, max_seq_len=8)
    assert main(["sft", "--config", str(cfg)]) == 2
    assert "as direct: no usable examples: all" in capsys.readouterr().err
