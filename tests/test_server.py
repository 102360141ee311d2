"""The HTTP server against a live uvicorn on 127.0.0.1: the real `openai` client (plain, streaming, audio,
n > 1, errors), concurrent clients batched together, every class of bad request (and a good one after),
local-file rules, auth, disconnects, the official client's fields, and `audior1 serve` as a user runs it."""

import base64
import json
import threading
import time

import httpx
import pytest
import uvicorn

from audior1.engine import Engine, SamplingParams
from audior1.server import ServerConfig, create_app, load_engine
from conftest import serve_process
from test_engine import tiny_checkpoint, tone

openai = pytest.importorskip("openai")
MODEL = "tiny-test"


class LiveServer:
    """uvicorn in a background thread on 127.0.0.1 (a free port); stopped on exit."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the test server did not stop"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    allowed = tmp_path_factory.mktemp("allowed")
    (allowed / "clip.wav").write_bytes(tone(1.0))
    config = ServerConfig(model_name=MODEL, max_audio_seconds=5.0, max_audio_parts=2, max_n=4,
                          allow_local_audio=allowed, max_tokens=64)
    engine, config = load_engine(tiny_checkpoint(tmp_path_factory), config, max_batch_size=16)
    engine.model.init_weights(seed=1, std=0.1)  # varied greedy text
    with LiveServer(create_app(engine, config)) as live:
        live.engine, live.config, live.allowed = engine, config, allowed
        live.reference = Engine(engine.model, engine.processor)  # same weights, its own state: "sent alone"
        live.client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        yield live


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def audio_message(text, audio: bytes | None = None):
    content = [{"type": "text", "text": text}]
    if audio is not None:
        content.append({"type": "input_audio", "input_audio": {"data": b64(audio), "format": "wav"}})
    return [{"role": "user", "content": content}]


def expected(live, messages, **kw):
    """What the engine gives for this request alone (greedy), as the server would answer it."""
    params = SamplingParams(temperature=0, skip_special_tokens=True, **kw)
    return live.reference.generate([messages], params)[0]


def test_openai_client_with_audio(served):
    messages = audio_message("What do you hear?", tone(1.5))
    r = served.client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0,
                                              extra_body={"thinking_budget": 6})
    [want] = expected(served, messages, max_tokens=24, max_think_tokens=6)
    message = r.choices[0].message
    assert message.content == want.answer and message.reasoning_content == want.reasoning
    assert r.choices[0].finish_reason == want.finish_reason == "length"
    assert r.usage.completion_tokens == 24 and r.usage.prompt_tokens == want.prompt_tokens
    assert r.usage.completion_tokens_details.reasoning_tokens == want.reasoning_tokens >= 6
    assert r.model == MODEL and r.object == "chat.completion"


def test_openai_client_streaming_matches_plain(served):
    messages = [{"role": "system", "content": "Be brief."}, *audio_message("Describe it.", tone(1.0, 660)),
                {"role": "assistant", "content": "<think>\nA tone.\n</think>\nA tone."},
                {"role": "user", "content": "Higher or lower than 500 Hz?"}]
    kw = dict(model=MODEL, messages=messages, max_tokens=30, temperature=0, extra_body={"max_think_tokens": 8})
    plain = served.client.chat.completions.create(**kw)
    stream = served.client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
    reasoning, content, finish, usage = "", "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert (reasoning, content) == (plain.choices[0].message.reasoning_content, plain.choices[0].message.content)
    assert content and reasoning and finish == plain.choices[0].finish_reason
    assert usage.completion_tokens == plain.usage.completion_tokens == 30


def test_n_samples_seeded(served):
    kw = dict(model=MODEL, messages=audio_message("hi", tone(0.8)), max_tokens=12, temperature=1.0, n=3, seed=11,
              extra_body={"thinking_budget": 0})
    first = served.client.chat.completions.create(**kw)
    again = served.client.chat.completions.create(**kw)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2] and len(set(texts)) > 1
    assert texts == [c.message.content for c in again.choices]
    assert first.usage.completion_tokens == 36 and first.usage.completion_tokens_details.reasoning_tokens == 0
    streamed = {0: "", 1: "", 2: ""}
    for chunk in served.client.chat.completions.create(stream=True, **kw):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert list(streamed.values()) == texts


def test_concurrent_clients_get_their_own_answers(served, monkeypatch):
    prompts = [audio_message(f"question {i}: what is this?", tone(0.5 + 0.25 * i, 300 + 100 * i) if i % 2 else None)
               for i in range(6)]
    wants = [expected(served, p, max_tokens=20, max_think_tokens=5)[0] for p in prompts]
    widest = []
    step = served.engine.step
    monkeypatch.setattr(served.engine, "step", lambda: (widest.append(served.engine.num_running), step())[1])
    results = [None] * len(prompts)

    def ask(i):
        r = served.client.chat.completions.create(model=MODEL, messages=prompts[i], max_tokens=20, temperature=0,
                                                  extra_body={"thinking_budget": 5})
        results[i] = (r.choices[0].message.reasoning_content, r.choices[0].message.content)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [(w.reasoning, w.answer) for w in wants]
    assert max(widest) >= 2  # they were decoded together, not one after another


BAD_AUDIO = b"this is definitely not a sound file " * 4


@pytest.mark.parametrize("body, status, message, param", [
    ("{not json", 400, "not valid JSON", None),
    ("[1, 2]", 400, "must be a JSON object", None),
    ({"model": MODEL}, 400, "'messages' must be a non-empty list", "messages"),
    ({"messages": [{"content": "hi"}]}, 400, "'role'", "messages[0]"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "content must be a string or a list", "messages[0].content"),
    ({"messages": audio_message("x"), "temperature": "hot"}, 400, "'temperature' must be a number from 0 to 2", "temperature"),
    ({"messages": audio_message("x"), "n": 5}, 400, "'n' must be an integer from 1 to 4", "n"),
    ({"messages": audio_message("x"), "n": True}, 400, "'n' must be", "n"),
    ({"messages": audio_message("x"), "max_tokens": 0}, 400, "'max_tokens' must be a positive integer", "max_tokens"),
    ({"messages": audio_message("x"), "stream": "yes"}, 400, "'stream' must be a boolean", "stream"),
    ({"messages": audio_message("x"), "stop": [""]}, 400, "'stop'", "stop"),
    ({"messages": audio_message("x"), "reasoning_effort": "extreme"}, 400, "reasoning_effort", "reasoning_effort"),
    ({"messages": audio_message("x"), "model": "gpt-4o"}, 404, "does not exist", "model"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "!!!not base64!!!"}}]}]},
     400, "invalid base64", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": b64(BAD_AUDIO)}}]}]},
     400, "not a WAV/FLAC/OGG/MP3", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": ""}}]}]},
     400, "empty input", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": b64(tone(6.0))}}]}]},
     400, "exceeds the limit of 5 s", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": b64(tone(0.3))}}] * 3}]},
     400, "too many audio parts: 3", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     400, "unsupported content part type 'image_url'", "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "https://example.com/a.wav"}}]}]},
     400, "fetches nothing from the network", "messages[0].content[0].audio_url"),
    ({"messages": [{"role": "user", "content": "word " * 5000}]}, 400, "context of 4096 tokens", "messages"),
    ({"messages": audio_message("x"), "max_tokens": 4090}, 400, "over the model's context", "max_tokens"),
    ({"messages": audio_message("x"), "continue_final_message": True}, 400, "assistant message last",
     "continue_final_message"),
])
def test_bad_requests_get_openai_errors(served, body, status, message, param):
    raw = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(served.url + "/v1/chat/completions", content=raw, headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"] and error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}
    # The server is still serving.
    ok = httpx.post(served.url + "/v1/chat/completions", timeout=60,
                    json={"messages": audio_message("hi"), "max_tokens": 3, "ignore_eos": True})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3


def test_request_size_limit(served):
    limit, served.config.max_request_mb = served.config.max_request_mb, 0.05
    try:
        body = {"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": b64(tone(2.0)), "format": "wav"}}]}]}
        r = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 413 and "over the limit" in r.json()["error"]["message"]
    finally:
        served.config.max_request_mb = limit


def test_openai_client_raises_on_errors(served):
    with pytest.raises(openai.BadRequestError, match="invalid base64"):
        served.client.chat.completions.create(model=MODEL, max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "@@@@", "format": "wav"}}]}])
    with pytest.raises(openai.NotFoundError):
        served.client.chat.completions.create(model="nope", messages=audio_message("x"))
    assert [m.id for m in served.client.models.list()] == [MODEL]
    r = httpx.get(served.url + "/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert httpx.get(served.url + "/v1/chat/completions").status_code == 405


def local_part(src):
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, src]}], "max_tokens": 3}


def test_local_audio_only_inside_the_allowed_directory(served, tmp_path):
    outside = tmp_path / "secret.wav"
    outside.write_bytes(tone(1.0))
    (served.allowed / "link.wav").unlink(missing_ok=True)
    (served.allowed / "link.wav").symlink_to(outside)
    post = lambda body: httpx.post(served.url + "/v1/chat/completions", json=body, timeout=60)
    clip = served.allowed / "clip.wav"
    for src in ({"type": "audio", "audio": str(clip)}, {"type": "audio", "audio": "clip.wav"},
                {"type": "audio_url", "audio_url": {"url": clip.as_uri()}}):
        assert post(local_part(src)).status_code == 200
    escapes = [str(served.allowed / ".." / outside.parent.name / "secret.wav"), str(outside), "../secret.wav",
               str(served.allowed / "link.wav"), "/etc/passwd"]
    for raw in escapes:
        r = post(local_part({"type": "audio", "audio": raw}))
        assert r.status_code == 403 and "outside the directory" in r.json()["error"]["message"], raw
    r = post(local_part({"type": "audio_url", "audio_url": {"url": outside.as_uri()}}))
    assert r.status_code == 403
    r = post(local_part({"type": "audio", "audio": "missing.wav"}))
    assert r.status_code == 400 and "no such audio file" in r.json()["error"]["message"]
    allowed, served.config.allow_local_audio = served.config.allow_local_audio, None
    try:
        r = post(local_part({"type": "audio", "audio": str(clip)}))
        assert r.status_code == 403 and "--allow-local-audio" in r.json()["error"]["message"]
    finally:
        served.config.allow_local_audio = allowed


def test_bearer_key_when_configured(served):
    served.config.api_key = "s3cret"
    try:
        url = served.url + "/v1/chat/completions"
        body = {"messages": audio_message("hi"), "max_tokens": 2}
        assert httpx.post(url, json=body).status_code == 401
        r = httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.post(url, json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(served.url + "/v1/models").status_code == 401
        assert httpx.get(served.url + "/health").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            served.client.chat.completions.create(model=MODEL, messages=audio_message("x"), max_tokens=2)
    finally:
        served.config.api_key = None


def running(served) -> int:
    return httpx.get(served.url + "/health").json()["running"]


def test_client_disconnect_frees_its_slot(served):
    body = {"messages": audio_message("go on"), "max_tokens": 4000, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", served.url + "/v1/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
        assert running(served) == 1
    deadline = time.monotonic() + 10
    while running(served) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(served) == 0


def test_official_client_fields_give_the_normal_prompt(served):
    user = [{"role": "human", "content": [{"type": "text", "text": "What is it?"},
                                          {"type": "input_audio", "input_audio": {"data": b64(tone(1.0)), "format": "wav"}}]}]
    common = {"model": MODEL, "max_tokens": 16, "temperature": 0, "thinking_budget": 5, "repetition_penalty": 1.0}
    normal = httpx.post(served.url + "/v1/chat/completions", json={**common, "messages": user}, timeout=60).json()
    official = httpx.post(served.url + "/v1/chat/completions", timeout=60, json={
        **common, "messages": user + [{"role": "assistant", "content": "<think>\n", "eot": False}],
        "continue_final_message": True, "add_generation_prompt": False, "skip_special_tokens": False,
        "stop_token_ids": [served.engine.tokenizer.eot_id]}).json()
    assert official["choices"][0]["message"] == normal["choices"][0]["message"]
    assert official["usage"] == normal["usage"]


def test_thinking_controls(served):
    url = served.url + "/v1/chat/completions"
    base = {"messages": audio_message("hi", tone(0.5)), "max_tokens": 20, "temperature": 0}
    off = [httpx.post(url, json={**base, **extra}, timeout=60).json()
           for extra in ({"reasoning_effort": "none"}, {"chat_template_kwargs": {"enable_thinking": False}},
                         {"thinking_budget": 0})]
    assert off[0]["choices"] == off[1]["choices"] == off[2]["choices"]
    assert off[0]["choices"][0]["message"]["reasoning_content"] is None
    assert off[0]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    budgets, served.config.effort_budgets = served.config.effort_budgets, {"low": 3, "medium": 6, "high": None}
    try:
        low = httpx.post(url, json={**base, "reasoning_effort": "low"}, timeout=60).json()
        explicit = httpx.post(url, json={**base, "thinking_budget": 3}, timeout=60).json()
    finally:
        served.config.effort_budgets = budgets
    assert low["choices"] == explicit["choices"] and low["choices"][0]["message"]["content"]
    assert 3 < low["usage"]["completion_tokens_details"]["reasoning_tokens"] <= 5  # 3 + the closing tag
    # Stop strings apply to all the text, reasoning included (as in vLLM): the output ends before the first hit.
    full = explicit["choices"][0]["message"]
    stop = full["content"][:2]
    stopped = httpx.post(url, json={**base, "thinking_budget": 3, "stop": [stop]}, timeout=60).json()["choices"][0]
    assert stopped["finish_reason"] == "stop" and stopped["stop_reason"] == stop  # vLLM's field
    assert explicit["choices"][0]["stop_reason"] is None
    joined = full["reasoning_content"] + "\n</think>\n" + full["content"]
    got = stopped["message"]["reasoning_content"] + ("\n</think>\n" + stopped["message"]["content"]
                                                      if stopped["message"]["content"] is not None else "")
    assert joined.startswith(got.rstrip()) and stop not in got


def test_inline_reasoning_format(served):
    served.config.reasoning_format = "inline"
    try:
        kw = dict(model=MODEL, messages=audio_message("hi"), max_tokens=16, temperature=0,
                  extra_body={"thinking_budget": 4})
        plain = served.client.chat.completions.create(**kw).choices[0].message
        streamed = "".join(c.choices[0].delta.content or "" for c in served.client.chat.completions.create(stream=True, **kw)
                           if c.choices)
    finally:
        served.config.reasoning_format = "split"
    assert "\n</think>\n" in plain.content and getattr(plain, "reasoning_content", None) is None
    reasoning, _, answer = plain.content.partition("</think>")
    assert streamed == reasoning.strip() + "\n</think>\n" + answer.strip()


def test_audior1_serve_command(tmp_path_factory):
    with serve_process(tiny_checkpoint(tmp_path_factory), "--api-key", "k3y", "--served-model-name", "cli-model",
                       "--log-level", "warning") as (url, proc):
        client = openai.OpenAI(base_url=url + "/v1", api_key="k3y", max_retries=0)
        r = client.chat.completions.create(model="cli-model", messages=audio_message("hi", tone(0.5)), max_tokens=5,
                                           extra_body={"ignore_eos": True})
        assert r.usage.completion_tokens == 5
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()
        assert "text/html" in httpx.get(url + "/").headers["content-type"]
    assert "cli-model at http://127.0.0.1" in proc.stdout.read()
