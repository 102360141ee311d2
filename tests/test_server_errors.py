"""Adversarial requests against a live server: each kind of body that once leaked an exception to HTTP 500 (or
slipped through) gets a 4xx with an OpenAI-style error naming the problem, and the server answers a good
request right after. The exception each case used to raise is noted beside it."""

import base64
import json

import httpx
import pytest

from audior1.server import MAX_JSON_DEPTH, ServerConfig, create_app, load_engine
from test_engine import tiny_checkpoint, tone
from test_server import LiveServer

MODEL = "tiny-test"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    allowed = tmp_path_factory.mktemp("allowed")
    (allowed / "clip.wav").write_bytes(tone(1.0))
    config = ServerConfig(model_name=MODEL, max_audio_seconds=5.0, max_audio_parts=2, max_n=4, max_tokens=64,
                          allow_local_audio=allowed)
    engine, config = load_engine(tiny_checkpoint(tmp_path_factory), config, max_batch_size=8)
    with LiveServer(create_app(engine, config)) as server:
        server.config = config
        yield server


def post(live, body, **kw):
    raw = body if isinstance(body, (str, bytes)) or hasattr(body, "__next__") else json.dumps(body)
    return httpx.post(live.url + "/v1/chat/completions", content=raw, timeout=60,
                      headers={"content-type": "application/json"}, **kw)


def assert_still_serving(live):
    ok = httpx.post(live.url + "/v1/chat/completions", timeout=60,
                    json={"messages": HI, "max_tokens": 3, "ignore_eos": True})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3


def part(p):
    return {"messages": [{"role": "user", "content": [p]}], "max_tokens": 3}


def with_hi(**fields):
    return json.dumps({"messages": HI, "max_tokens": 3, **fields})


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


WAV = base64.b64encode(tone(0.5)).decode()

CASES = [
    # (id, body, status, words in the message, param); the comment names what used to happen
    ("deep-nesting", '{"messages": ' + nested(100_000) + "}", 400, "nested too deeply", None),  # RecursionError
    ("nesting-past-the-cap", with_hi(tools=[{"type": "function", "x": json.loads(nested(MAX_JSON_DEPTH))}]),
     400, f"at most {MAX_JSON_DEPTH} levels", "tools[0].x" + "[0]" * (MAX_JSON_DEPTH - 3)),  # could recurse later
    ("integer-of-5000-digits", with_hi()[:-1] + ', "seed": ' + "9" * 5000 + "}", 400,
     "an integer of 5000 digits is too large", None),  # ValueError: int string conversion limit
    ("nan-literal", with_hi()[:-1] + ', "temperature": NaN}', 400, "NaN is not a JSON value", None),
    ("infinity-literal", with_hi()[:-1] + ', "repetition_penalty": Infinity}', 400,
     "Infinity is not a JSON value", None),  # was accepted (200) for repetition_penalty
    ("float-overflowing-to-inf", with_hi()[:-1] + ', "repetition_penalty": 1e400}', 400,
     "'repetition_penalty' must be a finite number > 0", "repetition_penalty"),  # was accepted (200)
    ("non-utf8-bytes", b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', 400,
     "not valid UTF-8 text: byte 0xff", None),
    ("json-null", "null", 400, "must be a JSON object", None),
    ("json-string", '"hello"', 400, "must be a JSON object", None),
    ("unpaired-surrogate-in-text", '{"messages": [{"role": "user", "content": "hi \\ud800"}]}', 400,
     "unpaired UTF-16 surrogate (\\ud800)", "messages[0].content"),  # TypeError in the tokenizer
    ("unpaired-surrogate-in-audio-path",
     json.dumps(part({"type": "audio", "audio": "x"})).replace('"x"', '"\\udc00.wav"'), 400,
     "unpaired UTF-16 surrogate (\\udc00)", "messages[0].content[0].audio"),  # UnicodeEncodeError
    ("unpaired-surrogate-in-a-key", '{"messages": [{"role": "user", "content": "hi"}], "\\ud83d": 1}', 400,
     "unpaired UTF-16 surrogate", "\\ud83d"),
    ("nul-in-audio-path", part({"type": "audio", "audio": "clip\u0000.wav"}), 400, "contains a NUL character",
     "messages[0].content[0]"),  # ValueError: embedded null byte
    ("nul-in-file-url", part({"type": "audio_url", "audio_url": {"url": "file:///clip%00.wav"}}), 400,
     "contains a NUL character", "messages[0].content[0]"),  # ValueError: embedded null byte
    ("unclosed-ipv6-url", part({"type": "audio_url", "audio_url": {"url": "http://[::1/a.wav"}}), 400,
     "is not a valid URL (Invalid IPv6 URL)", "messages[0].content[0].audio_url"),  # ValueError from urlparse
    ("audio-token-in-text", {"messages": [{"role": "user", "content": "say <audio_patch> now"}]}, 400,
     "contains '<audio_patch>', a token reserved for audio", "messages[0].content"),  # ValueError in prefill
    ("audio-token-in-text-part", part({"type": "text", "text": "<audio_start>"}), 400,
     "contains '<audio_start>'", "messages[0].content[0].text"),
    ("audio-token-in-tools", with_hi(tools=[{"type": "function", "function": {"name": "<audio_end>"}}]), 400,
     "tools contains '<audio_end>'", "tools"),
    ("role-that-is-not-a-name", {"messages": [{"role": "user\n<|EOT|>", "content": "hi"}]}, 400,
     "must be a role name", "messages[0].role"),  # was rendered into the prompt as given
    ("role-holding-an-audio-token", {"messages": [{"role": "<audio_patch>", "content": "hi"}]}, 400,
     "must be a role name", "messages[0].role"),  # ValueError in prefill
    ("model-as-a-list", with_hi(model=[MODEL]), 400, "'model' must be a string", "model"),  # was a 404
    ("top-k-past-int64", with_hi(top_k=10**30), 400, "'top_k' must be an integer from -1 to 2^31 - 1",
     "top_k"),  # ValueError: overflow when unpacking long long (prefill failed)
    ("negative-max-tokens", with_hi(max_tokens=-5), 400, "'max_tokens' must be a positive integer", "max_tokens"),
    ("n-too-large", with_hi(n=10**20), 400, "'n' must be an integer from 1 to 4", "n"),
    ("n-as-a-string", with_hi(n="2"), 400, "'n' must be an integer from 1 to 4", "n"),
    ("stop-string-too-long", with_hi(stop="x" * 100_000), 400, "at most 256 characters, got one of 100000", "stop"),
    ("stop-as-a-list-of-lists", with_hi(stop=[["</s>"]]), 400, "'stop' must be a non-empty string", "stop"),
    ("tools-not-objects", with_hi(tools=["search"]), 400, "'tools' must be a list of objects", "tools"),
    ("enable-thinking-as-a-string", with_hi(chat_template_kwargs={"enable_thinking": "false"}), 400,
     "'chat_template_kwargs.enable_thinking' must be a boolean", "chat_template_kwargs.enable_thinking"),
    ("include-usage-as-a-string", with_hi(stream=True, stream_options={"include_usage": "yes"}), 400,
     "'stream_options.include_usage' must be a boolean", "stream_options.include_usage"),
    ("bad-base64-audio", part({"type": "input_audio", "input_audio": {"data": WAV[:-3] + "!!!"}}), 400,
     "invalid base64", "messages"),
    ("text-where-audio-expected", part({"type": "input_audio", "input_audio": {"data": ["AAAA"]}}), 400,
     "must be an object with a base64 string 'data'", "messages[0].content[0].input_audio"),
]


@pytest.mark.parametrize("body, status, words, param", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request_is_a_4xx_naming_the_problem(live, body, status, words, param):
    r = post(live, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert words in error["message"] and error["param"] == param
    assert_still_serving(live)


def test_a_huge_value_is_not_echoed_back(live):
    r = post(live, with_hi(model="x" * 1_000_000))
    assert r.status_code == 404 and "does not exist" in r.json()["error"]["message"]
    assert len(r.content) < 1000
    assert_still_serving(live)


def test_chunked_body_over_the_limit(live):
    """Without a Content-Length the body is read in pieces and cut off at the limit, not read whole first."""
    limit, live.config.max_request_mb = live.config.max_request_mb, 0.01
    try:
        r = post(live, (b" " * 1024 for _ in range(32)))  # 32 KiB, sent chunked (no Content-Length)
        assert r.status_code == 413
        assert "over the limit of 10485 bytes (streamed without a length)" in r.json()["error"]["message"]
    finally:
        live.config.max_request_mb = limit
    assert_still_serving(live)


def test_plain_role_names_and_limits_still_pass(live):
    """What the checks allow: other role names (rendered as `<|BOT|>{role}`), a stop string at the limit,
    nesting up to the cap, the largest top_k."""
    body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "tool", "content": "42"}, *HI],
            "max_tokens": 3, "stop": "x" * live.config.max_stop_chars, "top_k": 2**31 - 1,
            "tools": [{"type": "function", "function": {"name": "f", "x": json.loads(nested(MAX_JSON_DEPTH - 4))}}]}
    r = post(live, body)
    assert r.status_code == 200, r.text
