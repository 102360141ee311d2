"""LoRA: training through peft on our modules (SFT, RL, DPO), peft-format adapters, merging (at load and
`audior1 lora merge`), `--adapter` on the CLI, bad adapters, resume, and FSDP2 with LoRA under torchrun."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

import audior1
from audior1.cli import main as audior1_main
from audior1.train.cli import main
from audior1.train.logging import read_metrics
from conftest import assert_resumed, mark_history
from test_train_distributed import series, torchrun

LORA = {"r": 8, "alpha": 16, "targets": ["attention", "mlp", "adapter", "lm_head"]}


def lora_config(path: Path, assets: Path, out: Path, **extra) -> Path:
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = {"model": str(assets / "tiny"), "out_dir": str(out), "data": [{"manifest": manifest, "kind": "direct"}],
           "feature_cache": str(out.parent / "cache"), "max_steps": 4, "batch_size": 4, "micro_batch_size": 4,
           "max_seq_len": 256, "eval_every": 0, "save_every": 0, "log_every": 1, "progress": False, "threads": 1,
           "optim": {"lr": 3e-2}, "lora": LORA}
    cfg.update(extra)
    path.write_text(json.dumps(cfg))
    return path


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


def test_a_tiny_model_learns_with_lora_and_only_the_adapter_is_saved(assets, tmp_path, capsys):
    """The task: answer the training items' questions (8 clips). Loss and accuracy move; the checkpoint is
    peft's two files (+ trainer state), naming the base; the base's weights are untouched."""
    out = tmp_path / "run"
    train_items = str(assets / "synth" / "synth-train.jsonl")
    cfg = lora_config(tmp_path / "c.yaml", assets, out, max_steps=200, dev_manifest=train_items, eval_items=8,
                      eval_every=50, eval_max_tokens=24, log_every=10, optim={"lr": 2e-2})
    assert main(["sft", "--config", str(cfg)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    evals = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert evals[0]["accuracy"] == 0.0 and result["accuracy"] >= 0.5, evals
    assert losses(out)[-1] < 0.3 * losses(out)[0]
    ckpt = Path(result["checkpoint"])
    assert {"adapter_config.json", "adapter_model.safetensors", "trainer_state.json"} <= {p.name for p in ckpt.iterdir()}
    assert not (ckpt / "model.safetensors").exists() and not (ckpt / "config.json").exists()
    config = json.loads((ckpt / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["lora_alpha"] == 16
    assert config["base_model_name_or_path"] == str((assets / "tiny").resolve())
    from safetensors import safe_open

    with safe_open(ckpt / "adapter_model.safetensors", "pt") as f:
        keys = set(f.keys())
    # a Qwen2 LoRA's names for the decoder; the released names for the audio adapter
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight" in keys
    assert "base_model.model.adapter.linear1.lora_A.weight" in keys
    assert len(keys) == 2 * (2 * 7 + 2 + 1)
    log = [r.get("message", "") for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "info"]
    assert any("trainable parameters (LoRA r=8 alpha=16 on attention, mlp, adapter, lm_head; base frozen" in m
               for m in log), log


def _peft_model(base: Path, seed: int = 1):
    """The tiny base with LoRA layers whose B is non-zero (so the adapter changes the logits)."""
    from audior1.train import lora
    from audior1.train.config import Lora

    model = audior1.load_model(base)
    lora.inject(model, Lora(**LORA))
    values = lora.initial_values(model, seed)
    gen = torch.Generator().manual_seed(seed)
    values = {k: (torch.randn(v.shape, generator=gen) * 0.3 if ".lora_B." in k else v) for k, v in values.items()}
    lora.fill(model, values)
    return model.eval()


def _logits(model) -> torch.Tensor:
    ids = torch.tensor([[5, 17, 300, 42, 9, 77, 128]])
    with torch.no_grad():
        return model(ids).logits


def test_merged_weights_give_the_logits_of_base_plus_adapter(assets, tmp_path):
    from peft import set_peft_model_state_dict

    from audior1.train import lora

    model = _peft_model(assets / "tiny")
    reference = _logits(model)
    base_only = _logits(audior1.load_model(assets / "tiny"))
    assert not torch.allclose(reference, base_only, atol=1e-3)  # the adapter matters
    adapter_dir = tmp_path / "adapter"

    class Cfg:  # what `lora.save` reads from a training config
        model, lora = str(assets / "tiny"), type("L", (), {k: v for k, v in LORA.items()} | {"dropout": 0.0})

    lora.save(model, Cfg, adapter_dir, main=True)
    merged_at_load = audior1.load_model(assets / "tiny", adapter=adapter_dir)
    assert torch.allclose(_logits(merged_at_load), reference, atol=1e-5)
    assert torch.allclose(_logits(audior1.load_model(adapter_dir)), reference, atol=1e-5)  # the base it names
    # `audior1 lora merge` writes a full checkpoint in the official layout (strict load)
    assert audior1_main(["lora", "merge", str(assets / "tiny"), str(adapter_dir), str(tmp_path / "merged")]) == 0
    assert torch.allclose(_logits(audior1.load_model(tmp_path / "merged")), reference, atol=1e-5)
    assert (tmp_path / "merged" / "tokenizer.json").exists()
    # the file is peft's format: peft loads it into freshly injected layers and gets the same function
    from safetensors.torch import load_file

    fresh = audior1.load_model(assets / "tiny")
    lora.inject(fresh, type("L", (), LORA | {"dropout": 0.0, "base_dtype": "float32"}))
    saved = {k.removeprefix("base_model.model."): v for k, v in load_file(adapter_dir / "adapter_model.safetensors").items()}
    result = set_peft_model_state_dict(fresh, saved)
    assert not result.unexpected_keys
    assert torch.allclose(_logits(fresh.eval()), reference, atol=1e-5)
    # the engine decodes a LoRA-wrapped model through forward (the lean step would see only the base)
    from audior1.model import FastDecoder

    assert not FastDecoder.supports(model) and FastDecoder.supports(merged_at_load)


def test_an_adapter_that_does_not_fit_the_base_is_refused_by_name(assets, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    model = _peft_model(assets / "tiny")
    from audior1.train import lora

    class Cfg:
        model, lora = str(assets / "tiny"), type("L", (), LORA | {"dropout": 0.0})

    good = tmp_path / "good"
    lora.save(model, Cfg, good, main=True)
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    tensors = load_file(bad / "adapter_model.safetensors")
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    tensors[key] = torch.zeros(8, 48)
    save_file(tensors, bad / "adapter_model.safetensors")
    with pytest.raises(audior1.lora.AdapterError, match=r"q_proj: lora_A \[8, 48\] .* base weight \[32, 32\]"):
        audior1.load_model(assets / "tiny", adapter=bad)
    wav = next((assets / "synth").rglob("*.wav"))
    assert audior1_main(["ask", "--model", str(assets / "tiny"), "--adapter", str(bad), str(wav), "hi"]) == 2
    err = capsys.readouterr().err
    assert "adapter_model.safetensors does not fit the base" in err and "lora_A [8, 48]" in err
    (bad / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "use_dora": True}))
    with pytest.raises(audior1.lora.AdapterError, match="use_dora=True not supported"):
        audior1.load_model(assets / "tiny", adapter=bad)
    assert audior1_main(["ask", "--model", str(assets / "tiny"), "--adapter", str(tmp_path / "nowhere"), str(wav),
                         "hi"]) == 2
    assert "--adapter" in capsys.readouterr().err


def test_lora_config_errors_name_the_key(assets, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = lora_config(tmp_path / "c.yaml", assets, out)
    assert main(["sft", "--config", str(cfg), "lora.base_dtype=bfloat16"]) == 2
    assert "lora.base_dtype bfloat16 needs dtype: bfloat16" in capsys.readouterr().err
    assert main(["sft", "--config", str(cfg), "lora.r=0", "lora.dropout=1"]) == 2
    err = capsys.readouterr().err
    assert "lora.r must be ≥ 1" in err and "lora.dropout must be in [0, 1)" in err
    assert main(["sft", "--config", str(cfg), "lora.targets=[attention, qkv]"]) == 2
    err = capsys.readouterr().err
    assert "lora.targets: qkv name no linear layer" in err and "q_proj" in err


def test_lora_resume_continues_identically(assets, tmp_path):
    out = tmp_path / "run"
    cfg = lora_config(tmp_path / "c.yaml", assets, out, max_steps=6, save_every=3, keep_checkpoints=0)
    assert main(["sft", "--config", str(cfg)]) == 0
    reference = losses(out)
    shutil.rmtree(out / "checkpoints" / "step-000006")
    mark_history(out)
    assert main(["sft", "--config", str(cfg), "--resume"]) == 0
    assert_resumed(out, 3)
    assert losses(out) == pytest.approx(reference, rel=1e-6)


def test_lora_bf16_base_rl_and_dpo(assets, tmp_path, capsys):
    """GRPO and DPO train LoRA adapters too; here with the base kept in bf16 under bf16 autocast."""
    manifest = str(assets / "synth" / "synth-train.jsonl")
    rl = {"model": str(assets / "tiny"), "out_dir": str(tmp_path / "rl"), "feature_cache": str(tmp_path / "cache"),
          "prompts": [{"manifest": manifest, "kind": "audio"}], "max_steps": 1, "prompts_per_step": 2,
          "samples_per_prompt": 2, "max_new_tokens": 4, "epochs": 1, "minibatches": 1, "eval_every": 0,
          "progress": False, "threads": 1, "dtype": "bfloat16", "lora": LORA | {"base_dtype": "bfloat16"}}
    (tmp_path / "rl.yaml").write_text(json.dumps(rl))
    assert main(["rl", "--algo", "grpo", "--config", str(tmp_path / "rl.yaml")]) == 0
    ckpt = tmp_path / "rl" / "checkpoints" / "step-000001"
    assert (ckpt / "adapter_model.safetensors").exists()
    assert audior1.load_model(ckpt).dtype == torch.float32  # base (fp32 file) + merged adapter
    items = [json.loads(line) for line in Path(manifest).read_text().splitlines()][:2]
    pairs = tmp_path / "pairs.jsonl"
    for it in items:  # the pairs file lives elsewhere: absolute audio paths
        it["audio"] = [str(Path(manifest).parent / a) for a in it["audio"]]
    pairs.write_text("".join(json.dumps({**it, "chosen": {"reasoning": "a", "answer": it["answer"]},
                                         "rejected": {"reasoning": "b", "answer": "x"}}) + "\n" for it in items))
    dpo = {"model": str(ckpt), "out_dir": str(tmp_path / "dpo"), "pairs": [str(pairs)], "feature_cache": None,
           "max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "progress": False, "threads": 1,
           "optim": {"lr": 1e-2}, "lora": LORA}
    (tmp_path / "dpo.yaml").write_text(json.dumps(dpo))
    assert main(["dpo", "--config", str(tmp_path / "dpo.yaml")]) == 0
    dpo_ckpt = tmp_path / "dpo" / "checkpoints" / "step-000002"
    # an adapter over an adapter: the DPO adapter names the GRPO checkpoint, which names the tiny base
    assert json.loads((dpo_ckpt / "adapter_config.json").read_text())["base_model_name_or_path"] == str(ckpt.resolve())
    from audior1.sources import resolve

    assert len(resolve(dpo_ckpt).adapters) == 2
    audior1.load_model(dpo_ckpt)


def test_train_memory_covers_lora(capsys):
    from audior1.cli import main as cli

    assert cli(["train", "memory", "--preset", "step-audio-r1", "--gpus", "1", "--lora-rank", "16", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["per_gpu_gb"]["base_bfloat16_sharded"] == pytest.approx(62.37, abs=0.01)
    assert 0.1e9 < r["trainable_parameters"] < 0.2e9 and r["not_in_total_gb"]["generation_copy_bf16"] == 0
    assert r["total_per_gpu_gb"] < 80


def test_fsdp2_with_lora_two_processes_match_one(assets, tmp_path):
    out1, out2 = tmp_path / "one", tmp_path / "two"
    cfg = lora_config(tmp_path / "c.yaml", assets, out1, dev_manifest=str(assets / "synth" / "synth-dev.jsonl"),
                      eval_items=4, eval_every=2, eval_max_tokens=3)
    assert main(["sft", "--config", str(cfg)]) == 0
    torchrun(["sft", "--config", str(cfg), f"out_dir={out2}"], tmp_path)
    one, two = series(out1, "train", ("loss", "grad_norm")), series(out2, "train", ("loss", "grad_norm"))
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    keys = ("dev_loss", "accuracy", "eval_reasoning_tokens")  # 2 processes generate with a merged plain copy
    ev1, ev2 = series(out1, "eval", keys), series(out2, "eval", keys)
    assert len(ev1) == len(ev2) == 2 and all(a == pytest.approx(b, rel=1e-5) for a, b in zip(ev1, ev2))
    from safetensors.torch import load_file

    a = load_file(out1 / "checkpoints" / "step-000004" / "adapter_model.safetensors")
    b = load_file(out2 / "checkpoints" / "step-000004" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
