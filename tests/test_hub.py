"""`--model org/name[@revision]`: Hub ids resolved through huggingface_hub's cache, offline, as a user runs them
(a cache directory laid out as huggingface_hub lays it out: models--org--name/{refs/main, snapshots/<commit>/})."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audior1 import sources

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(assets, tmp_path_factory) -> Path:
    """HF_HOME with someorg/tiny-r1 cached at COMMIT (refs/main → COMMIT) and an adapter repository over it."""
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / "models--someorg--tiny-r1"
    shutil.copytree(assets / "tiny", repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return home


def audior1(args: list[str], home: Path, offline: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1" if offline else "0", "OMP_NUM_THREADS": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9"}  # never the real Hub, even when not offline
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-m", "audior1.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_cached_hub_id_loads_offline_by_name_and_by_revision(assets, hub_cache):
    wav = str(next((assets / "synth").rglob("*.wav")))
    answers = []
    for model in ("someorg/tiny-r1", f"someorg/tiny-r1@{COMMIT}"):
        proc = audior1(["ask", "--model", model, wav, "Which is higher?", "--temperature", "0", "--max-tokens", "4",
                        "--json"], hub_cache)
        assert proc.returncode == 0, proc.stderr
        answers.append(json.loads(proc.stdout)["reasoning"])
    local = audior1(["ask", "--model", str(assets / "tiny"), wav, "Which is higher?", "--temperature", "0",
                     "--max-tokens", "4", "--json"], hub_cache)
    assert answers == [json.loads(local.stdout)["reasoning"]] * 2  # the same weights as the local directory


def test_offline_and_not_cached_is_one_clear_line(assets, hub_cache):
    wav = str(next((assets / "synth").rglob("*.wav")))
    for model in ("someorg/absent", "someorg/tiny-r1@v2"):
        proc = audior1(["ask", "--model", model, wav, "hi"], hub_cache)
        assert proc.returncode == 2
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith(f"audior1 ask: error: {model}: not in the local Hub cache ({hub_cache / 'hub'}) "
                               "and HF_HUB_OFFLINE is set"), proc.stderr
    # not offline, but the Hub cannot be reached (HF_ENDPOINT points at a closed port): said so, exit 2
    proc = audior1(["ask", "--model", "someorg/absent", wav, "hi"], hub_cache, offline=False)
    assert proc.returncode == 2 and "not in the local Hub cache" in proc.stderr, proc.stderr
    # neither a directory nor an id
    proc = audior1(["ask", "--model", "./no/such/dir", wav, "hi"], hub_cache)
    assert proc.returncode == 2 and "no such directory, and not a Hub id" in proc.stderr


def test_an_adapter_names_its_base_by_hub_id(assets, hub_cache, tmp_path):
    """An adapter directory whose base_model_name_or_path is a Hub id resolves through the cache."""
    import torch
    from safetensors.torch import save_file

    from audior1.lora import adapter_config, peft_key

    a, b = torch.zeros(2, 32), torch.zeros(32, 2)
    save_file({peft_key("model.layers.0.self_attn.q_proj", "A"): a, peft_key("model.layers.0.self_attn.q_proj", "B"): b},
              tmp_path / "adapter_model.safetensors")
    (tmp_path / "adapter_config.json").write_text(json.dumps(adapter_config(
        r=2, alpha=2, dropout=0.0, target_modules=["q_proj"], base="someorg/tiny-r1")))
    proc = audior1(["info", str(assets / "tiny")], hub_cache)  # sanity: the CLI runs in this environment
    assert proc.returncode == 0
    wav = str(next((assets / "synth").rglob("*.wav")))
    proc = audior1(["ask", "--model", str(tmp_path), wav, "hi", "--max-tokens", "2", "--json"], hub_cache)
    assert proc.returncode == 0, proc.stderr


def test_only_the_files_audior1_reads_are_fetched():
    assert not any(p.endswith((".bin", ".pt", ".pth", ".onnx", ".msgpack", ".h5")) for p in sources.HUB_PATTERNS)
    assert {"config.json", "tokenizer.json", "*.safetensors"} <= set(sources.HUB_PATTERNS)
    assert sources.HUB_ID.match("stepfun-ai/Step-Audio-R1") and sources.HUB_ID.match("stepfun-ai/Step-Audio-R1@main")
    assert not sources.HUB_ID.match("Step-Audio-R1") and not sources.HUB_ID.match("a/b/c")
