"""End to end: `audior1 eval` against a scripted OpenAI-compatible server on 127.0.0.1 (also the fake judge)."""

import base64
import io
import json
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audior1.eval import benchmarks, cli, harness
from audior1.eval.backends import EndpointError, OpenAIBackend, Sampling

FIX = Path(__file__).parent / "fixtures" / "eval"
THINK = "I compare the options with what I hear.\n</think>\n"


class FakeServer:
    """A threaded http.server speaking just enough of /v1/chat/completions; `responder(payload)` returns
    {"content", "reasoning_content"?, "finish_reason"?, "usage"?} or an HTTP status code."""

    def __init__(self, responder):
        self.responder, self.requests, self.authorizations, self.lock = responder, [], [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(payload)
                    server.authorizations.append(self.headers.get("Authorization"))
                out = server.responder(payload)
                if isinstance(out, int):
                    self._send(out, {"error": {"message": "scripted failure"}})
                    return
                content = out.get("content")
                message = {"role": "assistant", "content": content}
                if "reasoning_content" in out:
                    message["reasoning_content"] = out["reasoning_content"]
                words = len(((content or "") + (out.get("reasoning_content") or "")).split())
                usage = out.get("usage", {"prompt_tokens": 50, "completion_tokens": words, "total_tokens": 50 + words})
                self._send(200, {"id": "cmpl-1", "object": "chat.completion", "model": payload["model"],
                                 "choices": [{"index": 0, "message": message,
                                              "finish_reason": out.get("finish_reason", "stop")}], "usage": usage})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def model_requests(self, model: str = "fake-r1") -> list[dict]:
        return [r for r in self.requests if r["model"] == model]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(responder):
        servers.append(FakeServer(responder))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def write_wav(path: Path, seconds: float, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return path


def dataset(tmp_path: Path, bench: str, fixture: str, seconds: float = 0.25) -> Path:
    """Copy a fixture file into tmp_path and create a short WAV for every audio it names."""
    dst = tmp_path / "data" / Path(fixture).name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIX / fixture, dst)
    for item in benchmarks.get(bench).load(dst):
        for p in item.audio_paths():
            write_wav(Path(p), seconds)
    return dst


def synth(item_id, audio, question, choices, answer) -> dict:
    """A record of our manifest format (audior1.data.manifest)."""
    return {"id": item_id, "audio": audio, "question": question, "choices": choices, "answer": answer,
            "task": "test", "question_type": "test", "category": "sound", "difficulty": "easy", "meta": {}}


def prompt_of(payload: dict) -> str:
    return "".join(p.get("text", "") for m in payload["messages"] if isinstance(m["content"], list)
                   for p in m["content"] if p["type"] == "text")


def prefill_of(payload: dict) -> str | None:
    last = payload["messages"][-1]
    return last["content"] if last["role"] == "assistant" else None


MMAU_SCRIPT = {   # question → model output (after the <think>\n prefill)
    "Which of the following best describes": {"content": THINK + "B"},
    "Based on the given audio": {"content": THINK + "<RESPONSE>Man</RESPONSE>"},  # a wrapper the scorers see
    "What is the loudest sound": {"content": THINK + "A. thunder"},
    "Who speaks first?": {"content": "The first voice is low, so it is probably", "finish_reason": "length"},
    "Which instrument plays": {"reasoning_content": "A bright piano line.", "content": "Piano"},   # vLLM parser
    "What is the gender": {"content": THINK + "It is a man, not a woman"},
}


def mmau_responder(payload):
    text = prompt_of(payload)
    return next(v for k, v in MMAU_SCRIPT.items() if text.startswith(k))


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_mmau_end_to_end(tmp_path, serve, capsys):
    server = serve(mmau_responder)
    data = dataset(tmp_path, "mmau", "mmau.json")
    out = tmp_path / "run"
    code, stdout, err = run_cli(["--bench", "mmau", "--data", str(data), "--endpoint", server.url, "--served-model",
                                 "fake-r1", "--out", str(out), "--revision", "v05.15.25", "--concurrency", "2"], capsys)
    assert code == 0, err
    assert "| normalised (primary) | 66.7 |" in stdout and "| official-raw | 33.3 |" in stdout
    assert "unparseable (no `</think>`, counted wrong) 1" in stdout

    # the requests reproduce StepFun's client
    req = next(r for r in server.model_requests() if prompt_of(r).startswith("Which of the following best"))
    assert req["continue_final_message"] is True and req["add_generation_prompt"] is False
    assert prefill_of(req) == "<think>\n" and req["temperature"] == 0.7 and req["max_tokens"] == 32000
    assert req["repetition_penalty"] == 1.0 and req["stop_token_ids"] == [151665]
    parts = req["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "input_audio"]
    assert parts[0]["text"] == ("Which of the following best describes the male vocal in the audio?\nPlease choose the "
                                "answer from the following options, do not provide any additional explanations or "
                                "content: \nA. Soft and melodic\nB. Aggressive and talking\nC. High-pitched and "
                                "singing\nD. Whispering\n")
    wav, sr = sf.read(io.BytesIO(base64.b64decode(parts[1]["input_audio"]["data"])))
    assert sr == 16000 and len(wav) == 4000 and parts[1]["input_audio"]["format"] == "wav"

    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 6
    by_id = {r["id"]: r for r in records}
    r = by_id["59a98d10-a56c-4ae3-9a8d-bd16b141a70c"]
    assert r["answer"] == "B" and r["scores"] == {"normalised": 1.0, "official-raw": 0.0}
    assert r["options"][1] == "Aggressive and talking" and len(r["prompt_hash"]) == 16
    assert r["extractor"] == {"post_think": "2", "option_text": "2"} and r["latency_s"] >= 0
    assert r["prompt_tokens"] == 50 and r["reasoning_tokens_estimated"] is True
    trunc = by_id["fixture-duplicate-choices"]
    assert trunc["answer"] is None and not trunc["parseable"] and trunc["finish_reason"] == "length"
    wrapped = by_id["fixture-voice-source"]  # normalised reads the stripped answer, official-raw the text as given
    assert (wrapped["answer"], wrapped["given_answer"]) == ("Man", "<RESPONSE>Man</RESPONSE>")
    assert wrapped["scores"] == {"normalised": 1.0, "official-raw": 1.0}  # "response" is in no wrong option
    piano = by_id["fixture-stray-whitespace"]
    assert piano["reasoning"] == "A bright piano line." and piano["answer"] == "Piano"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset_revision"] == "v05.15.25" and len(summary["dataset_sha256"]) == 64
    assert summary["model"]["served_model"] == "fake-r1" and summary["sampling"]["mode"] == "think"
    assert summary["counts"]["unparseable"] == 1 and summary["counts"]["no_prediction"] == 0
    assert summary["breakdown"]["task"]["music"]["normalised"]["pass@1"] == pytest.approx(1.0)
    assert summary["breakdown"]["difficulty"]["hard"]["normalised"]["pass@1"] == 0.0
    assert summary["extractors"] == {"post_think": "2", "option_text": "2"} and summary["wall_time_s"] > 0
    assert summary["reasoning_tokens"]["n"] == 6
    assert (out / "report.md").read_text().startswith("# mmau — fake-r1 (think)")
    assert (out / "per_category.png").stat().st_size > 1000


def test_long_audio_is_sent_as_consecutive_chunks(tmp_path, serve, capsys):
    server = serve(lambda p: {"content": THINK + "3"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(synth("long", ["a/long.wav", "a/short.wav"], "How many?", None, "3")) + "\n")
    write_wav(tmp_path / "a" / "long.wav", 30.0, sr=8000)              # resampled to 16 kHz, cut at 25 s
    write_wav(tmp_path / "a" / "short.wav", 1.0)
    code, stdout, err = run_cli(["--bench", "synthetic", "--data", str(manifest), "--endpoint", server.url,
                                 "--served-model", "fake-r1", "--out", str(tmp_path / "run"), "--no-plots"], capsys)
    assert code == 0, err
    parts = server.model_requests()[0]["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "input_audio", "input_audio", "input_audio"]
    lengths = [sf.info(io.BytesIO(base64.b64decode(p["input_audio"]["data"]))).frames for p in parts[1:]]
    assert lengths == [25 * 16000, 5 * 16000, 16000]
    assert "| exact (primary) | 100.0 |" in stdout


def test_resume_after_interruption(tmp_path, serve):
    broken = {"on": True}

    def responder(payload):
        if broken["on"] and prompt_of(payload).startswith("What is the loudest sound"):
            return 503
        return mmau_responder(payload)

    server = serve(responder)
    data = dataset(tmp_path, "mmau", "mmau.json")
    bench, out = benchmarks.get("mmau"), tmp_path / "run"
    items = bench.load(data)
    backend = OpenAIBackend(server.url, "fake-r1", concurrency=1, retries=1, backoff=0.01)
    with pytest.raises(EndpointError, match=re.escape(server.url)):
        harness.run_benchmark(bench, items, backend, Sampling(), out, data_path=data, plots=False, log=lambda s: None)
    first = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert 2 <= len(first) < 6
    with open(out / "predictions.jsonl", "a") as f:                   # a crash in the middle of a line
        f.write('{"id": "fixture-wrong-words", "sample": 0, "raw": "cut sh')
    broken["on"] = False
    before = len(server.requests)
    summary = harness.run_benchmark(bench, items, backend, Sampling(), out, data_path=data, plots=False,
                                    log=lambda s: None)
    assert len(server.requests) - before == 6 - len(first)            # only the missing items were asked
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(i.id for i in items)
    assert summary["counts"]["predictions"] == 6 and summary["metrics"]["normalised"]["pass@1"] == pytest.approx(4 / 6)
    with pytest.raises(harness.ResumeMismatch, match="sampling"):      # never mix settings in one file
        harness.run_benchmark(bench, items, backend, Sampling(temperature=0.0), out, data_path=data, plots=False,
                              log=lambda s: None)


def test_request_refused_is_recorded_and_retried_on_resume(tmp_path, serve):
    refuse = {"on": True}

    def responder(payload):
        if refuse["on"] and prompt_of(payload).startswith("Who speaks first?"):
            return 400
        return {"content": THINK + "Man"}

    server = serve(responder)
    data = dataset(tmp_path, "mmau", "mmau.json")
    bench, items = benchmarks.get("mmau"), benchmarks.get("mmau").load(data)
    backend = OpenAIBackend(server.url, "fake-r1", retries=0, backoff=0.01)
    summary = harness.run_benchmark(bench, items, backend, Sampling(), tmp_path / "run", plots=False, log=lambda s: None)
    assert summary["counts"]["request_errors"] == 1 and summary["counts"]["no_prediction"] == 1
    refuse["on"] = False
    summary = harness.run_benchmark(bench, items, backend, Sampling(), tmp_path / "run", plots=False, log=lambda s: None)
    assert summary["counts"]["request_errors"] == 0 and summary["counts"]["predictions"] == 6


def test_dead_endpoint_fails_fast(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                                     # nothing listens there once closed
    data = dataset(tmp_path, "mmau", "mmau.json")
    url = f"http://127.0.0.1:{port}/v1"
    code, _, err = run_cli(["--bench", "mmau", "--data", str(data), "--endpoint", url, "--served-model", "x",
                            "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and f"{url}/chat/completions is not reachable" in err
    assert not (tmp_path / "run" / "predictions.jsonl").exists()


def test_n_samples_pass1_and_majority(tmp_path, serve, capsys):
    answers = {"Which of the following": ["B", "B", "C"], "Based on the given audio": ["Woman", "Man", "Woman"]}

    def responder(payload):
        sample = payload["seed"] - 100
        text = prompt_of(payload)
        return {"content": THINK + next(v[sample] for k, v in answers.items() if text.startswith(k))}

    server = serve(responder)
    data = dataset(tmp_path, "mmau", "mmau.json")
    out = tmp_path / "run"
    code, stdout, err = run_cli(["--bench", "mmau", "--data", str(data), "--endpoint", server.url, "--served-model",
                                 "fake-r1", "--out", str(out), "--n", "3", "--seed", "100", "--limit", "2",
                                 "--no-plots"], capsys)
    assert code == 0, err
    m = json.loads((out / "summary.json").read_text())["metrics"]["normalised"]
    assert m["pass@1"] == pytest.approx(0.5) and m["majority@3"] == pytest.approx(0.5)
    assert "majority@3" in stdout and len(server.model_requests()) == 6


def budget_responder(payload):
    """A model that needs 40 reasoning words to get the answer right."""
    prefill = prefill_of(payload)
    if prefill == "<think>\n\n</think>\n":                            # no-think: guesses wrong
        return {"content": "C"}
    if payload.get("stop") == ["</think>"]:                           # budget stage 1: reasoning only
        n = min(payload["max_tokens"], 40)
        return {"content": "hmm " * n, "finish_reason": "length" if n < 40 else "stop",
                "usage": {"prompt_tokens": 50, "completion_tokens": n}}
    if prefill and "</think>" in prefill:                             # budget stage 2: the answer
        enough = prefill.count("hmm") >= 40
        return {"content": "B" if enough else "C", "usage": {"prompt_tokens": 90, "completion_tokens": 1}}
    return {"content": "hmm " * 40 + "\n</think>\nB",                 # unbounded
            "usage": {"prompt_tokens": 50, "completion_tokens": 42, "completion_tokens_details": {"reasoning_tokens": 40}}}


def test_think_budget_sweep(tmp_path, serve, capsys):
    server = serve(budget_responder)
    data = dataset(tmp_path, "mmau", "mmau.json")
    out = tmp_path / "sweep"
    code, stdout, err = run_cli(["--bench", "mmau", "--data", str(data), "--endpoint", server.url, "--served-model",
                                 "fake-r1", "--out", str(out), "--limit", "1", "--think-budgets", "0,16,64,inf"],
                                capsys)
    assert code == 0, err
    scaling = json.loads((out / "scaling.json").read_text())
    pts = {p["budget"]: p for p in scaling["points"]}
    assert [p["budget"] for p in scaling["points"]] == ["0", "16", "64", "inf"]
    assert [pts[b]["accuracy"] for b in ("0", "16", "64", "inf")] == [0.0, 0.0, 1.0, 1.0]
    assert [pts[b]["mean_reasoning_tokens"] for b in ("0", "16", "64", "inf")] == [0, 16, 40, 40]
    assert pts["0"]["mode"] == "no_think" and pts["16"]["forced_close"] == 1 and pts["64"]["forced_close"] == 0
    assert (out / "scaling.png").stat().st_size > 1000 and (out / "budget-16" / "summary.json").is_file()
    assert "| 64 | think | 100.0 | 40.0 |" in stdout
    rec = json.loads((out / "budget-16" / "predictions.jsonl").read_text().splitlines()[0])
    assert rec["think_budget"] == 16 and rec["reasoning_tokens"] == 16 and rec["forced_close"] is True


def judge_responder(payload):
    prompt = payload["messages"][0]["content"]
    if "Score: N" in prompt:                                          # the Wild Speech judge
        return {"content": "The reply is helpful.\nStrengths: clear.\nWeaknesses: none.\nScore: 8"}
    official = re.search(r"Official answer:\n(.*)\n", prompt).group(1).strip().lower()
    candidate = re.search(r"Candidate answer:\n(.*)\n", prompt).group(1).strip().lower()
    return {"content": "CORRECT" if official == candidate else "INCORRECT"}


def test_big_bench_audio_with_judge_and_cache(tmp_path, serve, capsys):
    outputs = {"formal": THINK + "invalid", "navigate": THINK + "No", "object": THINK + "7", "web": "Let me think"}

    def responder(payload):
        if payload["model"] == "judge":
            return judge_responder(payload)
        wav = payload["messages"][0]["content"][0]["input_audio"]["data"]      # audio first, then instruction
        frames = sf.info(io.BytesIO(base64.b64decode(wav))).frames
        return {"content": outputs[names[round(frames / 1600)]]}

    server = serve(responder)
    data = tmp_path / "bba" / "metadata.jsonl"
    data.parent.mkdir()
    shutil.copy(FIX / "big_bench_audio.jsonl", data)
    names = {}
    for i, (name, stem) in enumerate([("formal", "formal_fallacies_0"), ("navigate", "navigate_1"),
                                      ("object", "object_counting_2"), ("web", "web_of_lies_3")]):
        write_wav(data.parent / "data" / f"{stem}.mp3", 0.1 * (i + 1))  # a WAV named .mp3: sniffed, not trusted
        names[i + 1] = name
    args = ["--bench", "big_bench_audio", "--data", str(data), "--endpoint", server.url, "--served-model", "fake-r1",
            "--judge-endpoint", server.url, "--judge-model", "judge", "--judge-cache", str(tmp_path / "cache"),
            "--no-plots"]
    code, stdout, err = run_cli(args + ["--out", str(tmp_path / "run1")], capsys)
    assert code == 0, err
    judged = server.model_requests("judge")
    assert len(judged) == 9                                           # 3 runs × 3 answered items; none for "web"
    assert all("Candidate answer:\nLet me think" not in r["messages"][0]["content"] for r in judged)
    summary = json.loads((tmp_path / "run1" / "summary.json").read_text())
    assert summary["metrics"]["judge"]["pass@1"] == 0.5              # INCORRECT never counts as CORRECT
    assert summary["judge"]["runs"] == 3 and summary["judge"]["model"] == "judge"
    assert len(summary["judge"]["prompt_sha256"]) == 64 and summary["counts"]["unparseable"] == 1
    rec = next(json.loads(line) for line in (tmp_path / "run1" / "predictions.jsonl").read_text().splitlines()
               if json.loads(line)["id"] == "1")
    assert rec["details"]["verdicts"] == ["INCORRECT"] * 3
    assert summary["breakdown"]["category"]["object_counting"]["judge"]["pass@1"] == 1.0
    code, _, err = run_cli(args + ["--out", str(tmp_path / "run2")], capsys)
    assert code == 0, err
    assert len(server.model_requests("judge")) == 9                   # all judgments came from the cache


def test_wild_speech_with_judge(tmp_path, serve, capsys):
    server = serve(lambda p: judge_responder(p) if p["model"] == "judge" else {"content": THINK + "Try oats."})
    data = dataset(tmp_path, "wild_speech", "wild_speech.jsonl")
    code, stdout, err = run_cli(["--bench", "wild_speech", "--data", str(data), "--endpoint", server.url,
                                 "--served-model", "fake-r1", "--judge-endpoint", server.url, "--judge-model", "judge",
                                 "--judge-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
                                 "--no-plots"], capsys)
    assert code == 0, err
    assert "| judge (primary) | 80.0 |" in stdout and "mean score ×10" in stdout
    assert [p["type"] for p in server.model_requests()[0]["messages"][0]["content"]] == ["input_audio"]


def test_compare_runs(tmp_path, serve, capsys):
    server = serve(lambda p: {"content": "C"} if prefill_of(p) == "<think>\n\n</think>\n" else mmau_responder(p))
    data = dataset(tmp_path, "mmau", "mmau.json")
    common = ["--bench", "mmau", "--data", str(data), "--endpoint", server.url, "--served-model", "fake-r1", "--no-plots"]
    assert run_cli(common + ["--out", str(tmp_path / "think")], capsys)[0] == 0
    assert run_cli(common + ["--out", str(tmp_path / "nothink"), "--no-think"], capsys)[0] == 0
    code, stdout, err = run_cli(["compare", str(tmp_path / "think"), str(tmp_path / "nothink")], capsys)
    assert code == 0, err
    assert "| normalised | 66.7 | 0.0 | -66.7 |" in stdout
    assert "## task (normalised)" in stdout and "| music | 100.0 | 0.0 | -100.0 |" in stdout


def test_cli_errors(tmp_path, serve, capsys):
    server = serve(mmau_responder)
    bba = dataset(tmp_path, "big_bench_audio", "big_bench_audio.jsonl")
    code, _, err = run_cli(["--bench", "bba", "--data", str(bba), "--endpoint", server.url, "--served-model", "m",
                            "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "scored by an LLM judge" in err
    code, _, err = run_cli(["--bench", "mmau", "--data", str(FIX / "mmau.json"), "--model", str(tmp_path),
                            "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "6 audio file(s) missing" in err and "fixture-wrong-words.wav" in err
    assert not server.requests                                        # nothing was sent
    data = dataset(tmp_path, "mmau", "mmau.json")
    code, _, err = run_cli(["--bench", "mmau", "--data", str(data), "--model", str(tmp_path), "--out",
                            str(tmp_path / "o")], capsys)
    assert code == 2 and "no config.json (is this a model directory?)" in err
    code, _, err = run_cli(["--bench", "mmau", "--data", str(data), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "either --model DIR or --endpoint URL" in err


def test_real_clips_are_decoded_and_chunked(tmp_path, serve, shared_data, capsys):
    server = serve(lambda p: {"content": THINK + "A"})
    samples = shared_data / "samples"
    manifest = tmp_path / "real.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [
        synth("mmau", [str(samples / "mmau_59a98d10.wav")], "Describe the vocal.",
              ["Soft and melodic", "Aggressive and talking"], "Aggressive and talking"),
        synth("mmar-stereo-48k", [str(samples / "mmar_5jX8pPYe.wav")], "Sincere?", ["Yes", "No"], "No"),
        synth("bba-mp3", [str(samples / "big_bench_audio_example.wav")], "Answer it.", None, "1")]))
    code, _, err = run_cli(["--bench", "synthetic", "--data", str(manifest), "--endpoint", server.url,
                            "--served-model", "fake-r1", "--out", str(tmp_path / "run"), "--no-plots"], capsys)
    assert code == 0, err
    chunks = {}
    for req in server.model_requests():
        parts = req["messages"][0]["content"]
        frames = [sf.info(io.BytesIO(base64.b64decode(p["input_audio"]["data"]))).frames for p in parts[1:]]
        chunks[prompt_of(req).split("\n")[0]] = frames
    assert chunks["Describe the vocal."] == [160000]
    assert chunks["Sincere?"] == [160000]                             # 48 kHz stereo → 16 kHz, first channel
    assert len(chunks["Answer it."]) == 2 and chunks["Answer it."][0] == 400000   # MP3 named .wav, ~26.9 s
