"""--quantize at load time (torchao weight-only): int8 on CPU, int4's CPU refusal, the size estimate, and the CLI."""

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("torchao")

import audior1
from audior1.cli import main
from audior1.engine import Engine, SamplingParams
from audior1.processor import Processor


def test_int8_quantizes_the_decoder_linears_and_stays_close(assets):
    base, q = audior1.load_model(assets / "tiny"), audior1.load_model(assets / "tiny", quantize="int8")
    layer = q.model.layers[0]
    assert type(layer.self_attn.q_proj.weight).__name__ == "Int8Tensor"
    assert type(layer.mlp.down_proj.weight).__name__ == "Int8Tensor"
    assert type(q.lm_head.weight) is torch.nn.Parameter and type(q.adapter.linear1.weight) is torch.nn.Parameter
    assert q.quantization.startswith("int8 weight-only (14 decoder linear layers")
    ids = torch.randint(10, 1000, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = base(ids).logits, q(ids).logits
    assert (a - b).abs().max() < 0.02 * a.abs().max()
    wav = next((assets / "synth").rglob("*.wav"))
    engine = Engine(q, Processor.from_pretrained(assets / "tiny"))
    assert engine.fast_decode  # F.linear dispatches on the quantized weight: the lean step runs unchanged
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "audio", "audio": str(wav)}]}]
    [[c]] = engine.generate([messages], SamplingParams(temperature=0, max_tokens=6, stop_token_ids=[]))
    assert len(c.token_ids) == 6


def test_quantize_with_an_adapter_and_bad_choices(assets, tmp_path, capsys):
    wav = str(next((assets / "synth").rglob("*.wav")))
    assert main(["ask", "--model", str(assets / "tiny"), "--quantize", "int8", wav, "hi", "--max-tokens", "2"]) == 0
    capsys.readouterr()
    assert main(["ask", "--model", str(assets / "tiny"), "--quantize", "int3", wav, "hi"]) == 2
    assert "--quantize int3: expected one of int8, int4" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["ask", "--model", str(assets / "tiny"), "--quantize", "int4", wav, "hi"]) == 2
        err = capsys.readouterr().err
        assert "int4 weight-only needs a CUDA device" in err and "on CPU use --quantize int8" in err
    assert main(["eval", "--bench", "synthetic", "--data", "x.jsonl", "--out", str(tmp_path), "--endpoint",
                 "http://127.0.0.1:9", "--served-model", "m", "--quantize", "int8"]) == 2
    assert "--quantize apply to a local --model" in capsys.readouterr().err


def test_init_meta_prints_the_quantized_size(capsys):
    assert main(["init", "--preset", "step-audio-r1", "--meta", "--quantize", "int8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("step-audio-r1: 33.49 B parameters, 1264 tensors, 66.97 GB in bfloat16")
    assert lines[1].startswith("with --quantize int8: 35.78 GB of weights (1.87× less")
    assert main(["init", "--preset", "step-audio-r1", "--meta", "--quantize", "int4"]) == 0
    assert "with --quantize int4: 21.14 GB" in capsys.readouterr().out


def test_serving_an_adapter_or_quantized_model_imports_neither_peft_nor_transformers(assets):
    code = ("import sys, audior1; audior1.load_model(sys.argv[1], quantize='int8'); "
            "print(sorted(m for m in ('peft', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(assets / "tiny")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]
