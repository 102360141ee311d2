"""`audior1 ask` as a user runs it (a subprocess): streamed reasoning set apart from the answer, --json,
long audio, the official multiple-choice prompt, and one-line errors for bad audio."""

import json
import subprocess
import sys

import pytest

from audior1.engine import Engine, SamplingParams
from audior1.chat import mcq_prompt
from audior1.serve_cli import build_messages
from test_engine import tiny_checkpoint, tone


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    (folder / "long.wav").write_bytes(tone(30.0, 330))  # over 25 s: two chunks
    (folder / "bad.wav").write_bytes(b"RIFF? no, just text pretending to be a wave file" * 3)
    return folder


def ask(*args):
    return subprocess.run([sys.executable, "-m", "audior1.cli", "ask", *map(str, args), "--threads", "1"],
                          capture_output=True, text=True, timeout=120)


def test_official_multiple_choice_prompt():
    [message] = build_messages(["a.wav"], "Which instrument?", ["piano", "violin"], None)
    assert [p["type"] for p in message["content"]] == ["text", "audio"]  # text first, then the audio
    assert message["content"][0]["text"] == mcq_prompt("Which instrument?", ["piano", "violin"])


def test_ask_streams_reasoning_then_answer(tiny, clips):
    question, choices = "How many tones?", ["one", "two"]
    run = ask("--model", tiny, clips / "long.wav", question, "--choice", choices[0], "--choice", choices[1],
              "--think-budget", 6, "--max-tokens", 24, "--temperature", 0)
    assert run.returncode == 0, run.stderr
    engine = Engine.from_pretrained(tiny)
    messages = build_messages([str(clips / "long.wav")], question, choices, None)
    [[want]] = engine.generate([messages], SamplingParams(temperature=0, max_tokens=24, max_think_tokens=6))
    assert want.reasoning and want.answer
    assert run.stdout == f"[reasoning]\n{want.reasoning}\n[answer]\n{want.answer}\n"


def test_ask_json(tiny, clips):
    run = ask("--model", tiny, clips / "long.wav", "Describe it.", "--think-budget", 4, "--max-tokens", 12,
              "--temperature", 0, "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["question"] == "Describe it." and out["think_closed"] and out["finish_reason"] == "length"
    tokens = out["tokens"]
    assert tokens["audio"] == 313 + 63  # 25 s + 5 s chunks
    assert tokens["completion"] == 12 and tokens["reasoning"] + tokens["answer"] == 12 and tokens["reasoning"] >= 4
    assert set(out["timings_s"]) == {"encode_audio", "load_model", "time_to_first_token", "generate", "tokens_per_s"}
    run = ask("--model", tiny, clips / "long.wav", "--no-think", "--max-tokens", 5, "--json")  # audio only
    out = json.loads(run.stdout)
    assert out["question"] is None and out["reasoning"] == "" and out["tokens"]["reasoning"] == 0


@pytest.mark.parametrize("name, reason", [("bad.wav", "not a WAV/FLAC/OGG/MP3 file"), ("missing.wav", "no such file")])
def test_ask_bad_audio_is_one_line(tiny, clips, name, reason):
    run = ask("--model", tiny, clips / name, "What is it?")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"audior1 ask: error: audio '{clips / name}'") and reason in run.stderr
