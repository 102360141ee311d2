"""The `audior1` command as a user runs it: init, info, features, convert errors, quickstart."""

import json
import subprocess
import sys


from conftest import synth_two_tones

AUDIOR1 = [sys.executable, "-m", "audior1.cli"]


def run(*args, check=True):
    proc = subprocess.run([*AUDIOR1, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"audior1 {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def test_init_meta_reports_released_sizes_without_allocating():
    out = run("init", "--preset", "step-audio-r1", "--meta").stdout
    assert "33.49 B parameters, 1264 tensors" in out
    out = run("init", "--preset", "step-audio-2-mini", "--meta").stdout
    assert "8.32 B parameters, 832 tensors" in out


def test_init_then_info_then_features_with_prompt(tmp_path):
    model = tmp_path / "tiny"
    assert "70 tensors" in run("init", "--preset", "tiny", model).stdout
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (model / name).exists(), name
    info = run("info", model).stdout
    assert "2 layers, hidden 32" in info and "70 tensors" in info and "float32" in info
    summary = json.loads(run("info", model, "--json").stdout)
    assert summary["tensors"] == 70 and summary["config"]["model_type"] == "step_audio_2"
    clip = synth_two_tones(tmp_path / "tones.wav")
    out = run("features", clip, "--model", model, "--question", "Which is higher?").stdout
    assert "3.00 s → 1 chunk(s)" in out and "38 audio tokens" in out
    assert "<|BOT|>human\\nWhich is higher?<audio_start><audio_patch>×38<audio_end><|EOT|><|BOT|>assistant\\n<think>\\n" in out


def test_init_shards_when_asked(tmp_path):
    run("init", "--preset", "tiny", tmp_path / "m", "--max-shard-gb", "0.0002")
    index = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1


def test_bad_inputs_give_one_line_errors(tmp_path):
    proc = run("features", tmp_path / "missing.wav", check=False)
    assert proc.returncode == 2 and "missing.wav" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "noise.wav").write_bytes(b"this is not audio at all" * 10)
    proc = run("features", tmp_path / "noise.wav", check=False)
    assert proc.returncode == 2 and "noise.wav" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("info", tmp_path, check=False)
    assert proc.returncode == 2 and "config.json" in proc.stderr
    proc = run("init", "--preset", "huge", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "unknown preset 'huge'" in proc.stderr
    proc = run("convert", "--encoder-from", tmp_path, "--lm-from", tmp_path, tmp_path / "out", check=False)
    assert proc.returncode == 2 and "config.json" in proc.stderr


def test_quickstart_pipeline_runs_end_to_end(tmp_path):
    # The README's main job, shrunk: same stages and commands, a few items and steps.
    args = ["quickstart", "--out", tmp_path / "qs", "--steps", "10", "--rl-steps", "2", "--n-per-task", "4",
            "--eval-items", "10", "--max-tokens", "12"]
    out = run(*args).stdout
    for stage in ("$ audior1 data synth", "$ audior1 init --preset demo", "$ audior1 eval --bench synthetic",
                  "$ audior1 train sft", "$ audior1 curate filter", "$ audior1 curate dpo-pairs",
                  "$ audior1 curate passk", "[13-iter1-rl]"):  # (RL skips when no question falls in the band)
        assert stage in out, stage
    assert "held-out = count_events:count_numeric), greedy accuracy %:" in out
    for row in ("| before: cold start |", "| after: MGRD round 1 |"):
        assert row in out, row
    assert "round 1: the grounding filter kept" in out and "One chain before and after (item " in out
    stages = {d.name.split("-", 1)[1]: d for d in (tmp_path / "qs" / "stages").iterdir()}
    assert (stages["cold_start"] / "checkpoints" / "step-000010" / "model.safetensors").exists()
    assert (stages["iter1-rl"] / "checkpoints" / "step-000002" / "model.safetensors").exists()
    for name in ("eval0-think", "eval0-no-think", "eval1-think", "eval1-no-think"):
        assert (stages[name] / "summary.json").exists(), name
    # the plan is written where `audior1 mgrd run --config` takes it, and an interrupted run resumes
    assert (tmp_path / "qs" / "mgrd.yaml").is_file()
    again = run(*args, "--resume").stdout
    assert "skipped]" in again and "$ audior1 train" not in again and "| after: MGRD round 1 |" in again
