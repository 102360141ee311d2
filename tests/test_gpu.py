"""On one CUDA GPU (marked `gpu`: skipped with a reason elsewhere; scripts/gpu-check.sh runs them): parity with
transformers in fp32 and bf16, engine greedy = recompute, one SFT / GRPO / DPO / LoRA step in bf16, FSDP2 under
torchrun with nccl and one process, int4 weight-only. Each test's peak GPU memory goes to $AUDIOR1_GPU_REPORT."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import audior1
from audior1.train.cli import main
from conftest import reference_qwen2, tiny_model

pytestmark = pytest.mark.gpu
transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def peak_memory(request):
    torch.cuda.reset_peak_memory_stats()
    yield
    report = os.environ.get("AUDIOR1_GPU_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(json.dumps({"test": request.node.name,
                                "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3)}) + "\n")


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-3), (torch.bfloat16, 0.15)])
def test_decoder_matches_transformers_on_cuda(dtype, tolerance):
    model = tiny_model(rope_theta=10000.0).to(device="cuda", dtype=dtype)
    ref = reference_qwen2(model)
    ids = torch.randint(10, model.config.text.vocab_size, (2, 23), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.no_grad():
        ours, theirs = model(ids).logits.float(), ref(ids).logits.float()
    assert (ours - theirs).abs().max() < tolerance * max(1.0, theirs.abs().max().item())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_engine_greedy_equals_recompute_on_cuda(assets, dtype):
    from audior1.engine import Engine, SamplingParams
    from audior1.processor import Processor

    model = audior1.load_model(assets / "tiny", device="cuda", dtype=dtype)
    engine = Engine(model, Processor.from_pretrained(assets / "tiny"))
    encoded = engine.processor.encode([{"role": "user", "content": "how many beeps are there"}])
    [[c]] = engine.generate([encoded], SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[]))
    ids = list(encoded.input_ids)
    with torch.no_grad():
        for _ in range(12):
            ids.append(int(model(torch.tensor([ids], device="cuda")).logits[0, -1].argmax()))
    assert c.token_ids == ids[len(encoded.input_ids):]


def _write(path: Path, cfg: dict) -> str:
    path.write_text(json.dumps(cfg))
    return str(path)


def _common(assets, tmp_path, name):
    return {"model": str(assets / "tiny"), "out_dir": str(tmp_path / name), "feature_cache": str(tmp_path / "cache"),
            "max_steps": 1, "dtype": "bfloat16", "eval_every": 0, "progress": False}


@pytest.mark.parametrize("lora", [False, True])
def test_one_sft_grpo_and_dpo_step_in_bf16(assets, tmp_path, lora):
    manifest = str(assets / "synth" / "synth-train.jsonl")
    extra = {"lora": {"r": 4, "targets": ["attention", "mlp"], "base_dtype": "bfloat16"}} if lora else {}
    sft = _common(assets, tmp_path, "sft") | extra | {"data": [{"manifest": manifest, "kind": "direct"}],
                                                      "batch_size": 2, "micro_batch_size": 2, "max_seq_len": 256}
    assert main(["sft", "--config", _write(tmp_path / "sft.yaml", sft)]) == 0
    rl = _common(assets, tmp_path, "rl") | extra | {"prompts": [{"manifest": manifest, "kind": "audio"}],
                                                    "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8}
    assert main(["rl", "--algo", "grpo", "--config", _write(tmp_path / "rl.yaml", rl)]) == 0
    items = [json.loads(line) for line in Path(manifest).read_text().splitlines()][:2]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({**it, "audio": [str(Path(manifest).parent / a) for a in it["audio"]],
                                         "chosen": {"reasoning": "a", "answer": it["answer"]},
                                         "rejected": {"reasoning": "b", "answer": "x"}}) + "\n" for it in items))
    dpo = _common(assets, tmp_path, "dpo") | extra | {"pairs": [str(pairs)], "batch_size": 2, "micro_batch_size": 2}
    assert main(["dpo", "--config", _write(tmp_path / "dpo.yaml", dpo)]) == 0
    for name in ("sft", "rl", "dpo"):
        log = (tmp_path / name / "metrics.jsonl").read_text()
        assert "on cuda" in log
        assert audior1.load_model(tmp_path / name / "checkpoints" / "step-000001") is not None


@pytest.mark.parametrize("lora", [False, True])
def test_fsdp2_under_torchrun_with_nccl_and_one_process(assets, tmp_path, lora):
    manifest = str(assets / "synth" / "synth-train.jsonl")
    cfg = _common(assets, tmp_path, "fsdp") | {"data": [{"manifest": manifest, "kind": "direct"}], "max_steps": 2,
                                               "batch_size": 2, "micro_batch_size": 1, "max_seq_len": 256}
    if lora:
        cfg["lora"] = {"r": 4, "targets": ["attention", "mlp"]}
    env = {**os.environ, "AUDIOR1_SHARD_ONE_PROCESS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--standalone",
                           "-m", "audior1.train.cli", "sft", "--config", _write(tmp_path / "c.yaml", cfg)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 process(es) on cuda:0" in proc.stderr
    records = [json.loads(line) for line in (tmp_path / "fsdp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"][-1] == 2


def test_int4_weight_only_on_cuda(tmp_path):
    """The demo preset: its widths (128, 384) are multiples of int4's group of 128 inputs (tiny's are not)."""
    pytest.importorskip("torchao")
    from audior1.checkpoint import init_checkpoint

    init_checkpoint("demo", tmp_path / "demo", seed=0)
    base = audior1.load_model(tmp_path / "demo", device="cuda", dtype="bfloat16")
    q = audior1.load_model(tmp_path / "demo", device="cuda", dtype="bfloat16", quantize="int4")
    ids = torch.randint(10, 1000, (1, 9), generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        a, b = base(ids).logits.float(), q(ids).logits.float()
    assert (a - b).abs().max() < 0.25 * a.abs().max()
