"""Shared fixtures: where the third-party audio lives, and a skip when it is absent; tiny models; resume checks."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip, saying why, where torch sees no CUDA device (scripts/gpu-check.sh runs them)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread for the whole suite: the test models are tiny, so per-op overhead dominates, and on
    a shared 2-core machine a second thread stalls whenever the other core is busy (~50× slower steps)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party audio not found at {SHARED_DATA} (it ships beside the checkout in CI)")
    return SHARED_DATA


def synth_two_tones(path: Path, freqs=(440.0, 660.0), seconds_each: float = 1.5, sample_rate: int = 16000) -> Path:
    """Two sine tones one after the other, with short fades: a clip the tests make themselves."""
    t = np.arange(int(seconds_each * sample_rate)) / sample_rate
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    wav = np.concatenate([0.4 * np.sin(2 * np.pi * f * t) * fade for f in freqs]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, sample_rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """A tiny checkpoint and a small synthetic train/dev manifest, built once per session (training tests)."""
    root = tmp_path_factory.getbasetemp() / "train-assets"
    if not (root / "done").exists():
        from audior1.checkpoint import init_checkpoint
        from audior1.data import synth

        init_checkpoint("tiny", root / "tiny", seed=0)
        for split in ("train", "dev"):
            synth.build(root / "synth", split, 4, seed=0, workers=1, tasks=["pitch_compare", "count_events"],
                        log=lambda s: None)
        (root / "done").write_text("ok")
    return root


def tiny_model(seed=0, **text_overrides):
    """A `tiny`-preset network with weights larger than usual (std 0.2), so numerical differences show; text
    config fields can be overridden. In eval mode."""
    from audior1.config import preset
    from audior1.model import StepAudioR1ForCausalLM

    cfg = preset("tiny")
    cfg.audio_patch_token_id = 7
    for k, v in text_overrides.items():
        setattr(cfg.text, k, v)
    model = StepAudioR1ForCausalLM(cfg)
    model.init_weights(seed, std=0.2)
    return model.eval()


def reference_qwen2(model):
    """transformers' `Qwen2ForCausalLM` holding `model`'s decoder weights (same names, no key map), on the
    model's device and dtype: the parity reference."""
    import transformers

    t = model.config.text
    cfg = transformers.Qwen2Config(
        vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads, rms_norm_eps=t.rms_norm_eps, rope_theta=t.rope_theta,
        max_position_embeddings=t.max_position_embeddings, tie_word_embeddings=False)
    ref = transformers.Qwen2ForCausalLM(cfg).eval()
    decoder_weights = {k: v for k, v in model.state_dict().items() if k.startswith(("model.", "lm_head."))}
    ref.load_state_dict(decoder_weights, strict=True)
    return ref.to(device=model.device, dtype=model.dtype)


def mark_history(out_dir: Path) -> None:
    """Before a resume: tag every record already in `out_dir/metrics.jsonl`, so `assert_resumed` can tell the
    steps the resumed run kept from the ones it computed itself."""
    path = Path(out_dir) / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps({**r, "before_resume": True}) + "\n" for r in records))


def assert_resumed(out_dir: Path, step: int) -> None:
    """A resume really resumed at `step`: it says so in its log, and it recomputed none of steps 1..step (their
    `train` records are the tagged ones from before, one per step; every later one is new)."""
    records = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines() if line]
    said = [r.get("message", "") for r in records if r["kind"] == "info" and "before_resume" not in r]
    assert any(m.startswith(f"resumed at step {step} from ") for m in said), said
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == sorted({r["step"] for r in train}), "a step was logged twice"
    assert all(r.get("before_resume", False) == (r["step"] <= step) for r in train), \
        [(r["step"], r.get("before_resume", False)) for r in train]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_process(model, *args: str, timeout: float = 90):
    """`audior1 serve --model MODEL --port P ARGS…` started as a user starts it, on a free port, one thread;
    yields (its URL, the process) once /health answers, and stops it afterwards (terminate, then kill). Its
    output stays readable on `proc.stdout` after the block."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "audior1.cli", "serve", "--model", str(model), "--port", str(port),
                             "--threads", "1", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, f"the server did not answer /health in {timeout:.0f} s"
                time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
