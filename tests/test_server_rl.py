"""The server as an RL rollout engine (`--enable-weight-updates`), against a live uvicorn on 127.0.0.1: log-probs
equal to the trainer's recomputation, token ids as vLLM reports them, pause modes, weight updates streamed in
safetensors chunks and reloaded from a checkpoint directory (greedy output then equals a local engine holding
the same weights), every refusal with its message, the CLI's refusals, and `audior1 serve` driven end to end."""

import base64
import json
import threading
import time
import urllib.error
import urllib.request

import httpx
import pytest
import torch
from safetensors.torch import save
from starlette.testclient import TestClient

from audior1.checkpoint import load_model, save_checkpoint
from audior1.cli import main
from audior1.config import IGNORE_INDEX
from audior1.engine import Engine, SamplingParams
from audior1.processor import Encoded, Processor
from audior1.server import ServerConfig, create_app, load_engine
from audior1.train.policy import Policy
from conftest import serve_process, tiny_model
from test_engine import tiny_checkpoint, tone
from test_server import LiveServer

MODEL = "tiny-rl"
HI = [{"role": "user", "content": "hi"}]
GREEDY = {"messages": HI, "max_tokens": 12, "temperature": 0, "ignore_eos": True, "return_token_ids": True}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    checkpoint = tiny_checkpoint(tmp_path_factory)
    config = ServerConfig(model_name=MODEL, max_tokens=64, max_n=4, enable_weight_updates=True)
    engine, config = load_engine(checkpoint, config, max_batch_size=8)
    engine.model.init_weights(seed=1, std=0.1)  # varied text
    with LiveServer(create_app(engine, config)) as live:
        live.engine, live.config, live.checkpoint = engine, config, checkpoint
        live.control = live.server.config.app.state.rollout
        live.base = {k: v.clone() for k, v in engine.model.state_dict().items()}
        yield live


@pytest.fixture
def rl(served):
    """The server, put back afterwards: running, no update open, the original weights, no API key."""
    yield served
    served.config.api_key = None
    served.engine.__dict__.pop("step", None)  # a slowed-down step (see `slow`)
    assert post(served, "/pause?mode=abort").status_code == 200
    if served.control.update_open:
        assert post(served, "/finish_weight_update").status_code == 200
    served.engine.load_weights(served.base.items())  # paused: nothing is stepping
    served.control.dirty, served.control.weight_version = None, None
    assert post(served, "/resume").json() == {"status": "resumed"}


def post(live, path, body=None, content=None, headers=None):
    kw = {"json": body} if body is not None else {"content": content} if content is not None else {}
    return httpx.post(live.url + path, headers=headers, timeout=120, **kw)


def chat(live, body, headers=None):
    return post(live, "/v1/chat/completions", body, headers=headers)


def error(r, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body["message"]


def chunk(tensors: dict) -> bytes:
    return save({k: v.contiguous() for k, v in tensors.items()})


def perturbed(base: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in base.items()}


def local_greedy(live, weights: dict, max_tokens: int = 12) -> list[int]:
    """What a fresh engine holding `weights` answers to GREEDY: the reference for the server after an update."""
    model = load_model(live.checkpoint)
    model.load_state_dict(weights)
    engine = Engine(model, live.engine.processor)
    [[c]] = engine.generate([HI], SamplingParams(max_tokens=max_tokens, temperature=0, stop_token_ids=[]))
    return c.token_ids


def slow(live, monkeypatch, seconds: float = 0.01) -> None:
    """Each engine step takes at least `seconds`, so a request is still running when the test acts on it."""
    step = live.engine.step
    monkeypatch.setattr(live.engine, "step", lambda: (time.sleep(seconds), step())[1])


class Call(threading.Thread):
    """A chat request in the background."""

    def __init__(self, live, body):
        super().__init__(daemon=True)
        self.live, self.body, self.response = live, body, None
        self.start()

    def run(self):
        self.response = chat(self.live, self.body)

    def result(self) -> dict:
        self.join(120)
        assert self.response is not None and self.response.status_code == 200, self.response
        return self.response.json()


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def recomputed(live, prompt_ids: list[int], output_ids: list[int], audio_messages, temperature: float) -> list[float]:
    """The trainer's log-probs of `output_ids` after `prompt_ids` (train.policy.Policy: log-softmax of
    logits / T over the whole vocabulary), audio included."""
    encoded = live.engine.processor.encode(audio_messages)
    assert encoded.input_ids == prompt_ids
    batch = live.engine.processor.collate([encoded])
    ids = torch.tensor([prompt_ids + output_ids])
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, len(prompt_ids):] = torch.tensor(output_ids)
    with torch.no_grad():
        logp, _ = Policy(live.engine.model)(ids, torch.ones_like(ids, dtype=torch.bool), None, None, labels,
                                            mels=batch.audio_mels, mel_lens=batch.audio_mel_lens,
                                            mel_frames=batch.audio_mel_frames, temperature=temperature or 1.0)
    return logp[0, len(prompt_ids):].tolist()


# ---- log-probs and token ids -------------------------------------------------------------------------

AUDIO_QUESTION = [{"role": "user", "content": [
    {"type": "text", "text": "What is it?"},
    {"type": "input_audio", "input_audio": {"data": base64.b64encode(tone(0.6)).decode(), "format": "wav"}}]}]


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_logprobs_equal_the_trainers_recomputation(rl, temperature):
    body = {"messages": AUDIO_QUESTION, "max_tokens": 10, "temperature": temperature, "top_p": 0.9, "n": 2,
            "seed": 5, "logprobs": True, "return_token_ids": True}
    first = chat(rl, body).json()
    # Stop on a token the first sample drew (the same draws up to there): the stop token is scored too.
    stop = first["choices"][0]["token_ids"][4]
    r = chat(rl, {**body, "stop_token_ids": [stop]}).json()
    choice = r["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == stop
    ids = choice["token_ids"]
    assert ids[-1] == stop and stop not in ids[:-1] and len(ids) <= 5
    assert ids == first["choices"][0]["token_ids"][: len(ids)]
    for c in r["choices"]:
        content = c["logprobs"]["content"]
        assert len(content) == len(c["token_ids"])
        got = [e["logprob"] for e in content]
        want = recomputed(rl, r["prompt_token_ids"], c["token_ids"], AUDIO_QUESTION, temperature)
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4, (got, want)
        for e, token in zip(content, c["token_ids"]):
            raw = rl.engine.tokenizer.token_bytes(token)
            assert e["bytes"] == list(raw) and e["token"] == raw.decode("utf-8", "replace")
            assert e["top_logprobs"] == []
    assert r["prompt_token_ids"] == rl.engine.processor.encode(AUDIO_QUESTION).input_ids


def test_token_ids_match_the_prompt_and_the_engine(rl):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "two words"}]
    r = chat(rl, {"messages": messages, "max_tokens": 8, "temperature": 0, "ignore_eos": True,
                  "return_token_ids": True}).json()
    assert r["prompt_token_ids"] == rl.engine.processor.encode(messages).input_ids
    c = r["choices"][0]
    assert len(c["token_ids"]) == r["usage"]["completion_tokens"] == 8 and c["forced_token_positions"] == []
    assert c["logprobs"] is None  # not asked
    [[want]] = Engine(rl.engine.model, rl.engine.processor).generate(
        [messages], SamplingParams(max_tokens=8, temperature=0, stop_token_ids=[]))
    assert c["token_ids"] == want.token_ids


def test_forced_positions_name_the_closing_of_a_spent_thinking_budget(rl):
    r = chat(rl, {"messages": HI, "max_tokens": 10, "temperature": 0, "ignore_eos": True, "thinking_budget": 3,
                  "return_token_ids": True, "logprobs": True}).json()
    c = r["choices"][0]
    forced = c["forced_token_positions"]
    closing = [rl.engine.think_end_ids, rl.engine.think_close_ids]  # `\n</think>\n`, or `</think>\n` after a \n
    assert [c["token_ids"][i] for i in forced] in closing
    assert forced == list(range(3, 3 + len(forced)))  # right after the 3 reasoning tokens
    assert len(c["logprobs"]["content"]) == len(c["token_ids"])


def test_a_seeded_request_gives_the_same_tokens_with_and_without_logprobs(rl):
    body = {"messages": HI, "max_tokens": 16, "temperature": 1.0, "n": 3, "seed": 9, "ignore_eos": True,
            "return_token_ids": True}
    plain = chat(rl, body).json()
    scored = chat(rl, {**body, "logprobs": True}).json()
    assert [c["token_ids"] for c in plain["choices"]] == [c["token_ids"] for c in scored["choices"]]
    assert [c["message"] for c in plain["choices"]] == [c["message"] for c in scored["choices"]]
    assert len({tuple(c["token_ids"]) for c in plain["choices"]}) > 1


@pytest.mark.parametrize("fields, param, words", [
    ({"top_logprobs": 5}, "top_logprobs", "'top_logprobs' must be 0"),
    ({"logprobs": "yes"}, "logprobs", "'logprobs' must be a boolean"),
    ({"return_token_ids": 1}, "return_token_ids", "'return_token_ids' must be a boolean"),
    ({"logprobs": True, "stream": True}, "logprobs", "not supported with 'stream': true"),
    ({"return_token_ids": True, "stream": True}, "return_token_ids", "not supported with 'stream': true"),
])
def test_logprob_fields_refused(rl, fields, param, words):
    r = chat(rl, {"messages": HI, "max_tokens": 2, **fields})
    assert words in error(r, 400) and r.json()["error"]["param"] == param
    assert chat(rl, {"messages": HI, "max_tokens": 2, "top_logprobs": 0, "logprobs": True}).status_code == 200


# ---- pause and resume --------------------------------------------------------------------------------

def running(live) -> int:
    return httpx.get(live.url + "/health").json()["running"]


def waiting(live) -> int:
    return httpx.get(live.url + "/health").json()["waiting"]


LONG = {"messages": HI, "max_tokens": 200, "temperature": 0, "ignore_eos": True, "return_token_ids": True}


def test_pause_keep_freezes_and_resume_continues(rl, monkeypatch):
    slow(rl, monkeypatch)
    call = Call(rl, LONG)
    wait_until(lambda: running(rl) == 1)
    assert post(rl, "/pause?mode=keep").json() == {"status": "paused"}
    assert httpx.get(rl.url + "/is_paused").json() == {"is_paused": True}
    [request] = {id(s.request): s.request for s in rl.engine._rows}.values()
    frozen_at = len(request.samples[0].ids)
    queued = Call(rl, {**GREEDY, "max_tokens": 3})  # accepted while paused, runs after resume
    wait_until(lambda: waiting(rl) == 1)
    time.sleep(0.2)
    assert len(request.samples[0].ids) == frozen_at and running(rl) == 1 and call.is_alive() and queued.is_alive()
    assert post(rl, "/resume").json() == {"status": "resumed"}
    c = call.result()["choices"][0]
    assert c["finish_reason"] == "length" and len(c["token_ids"]) == 200
    assert c["token_ids"] == local_greedy(rl, rl.base, 200)  # same weights: freezing changed nothing
    assert queued.result()["choices"][0]["finish_reason"] == "length"


def test_pause_abort_cancels_what_runs_and_keeps_what_arrives(rl, monkeypatch):
    slow(rl, monkeypatch)
    calls = [Call(rl, LONG), Call(rl, {**LONG, "n": 2, "temperature": 1.0, "seed": 1})]
    wait_until(lambda: running(rl) == 3)
    assert post(rl, "/pause").json() == {"status": "paused"}  # mode=abort is the default
    for call in calls:
        for c in call.result()["choices"]:
            assert c["finish_reason"] == "cancelled" and 0 < len(c["token_ids"]) < 200
    assert running(rl) == 0
    queued = Call(rl, {**GREEDY, "max_tokens": 3})
    wait_until(lambda: waiting(rl) == 1)
    assert post(rl, "/pause?mode=abort").json() == {"status": "paused"}  # paused already: what waits stays
    assert queued.is_alive() and waiting(rl) == 1
    post(rl, "/resume")
    assert queued.result()["choices"][0]["finish_reason"] == "length"


def test_pause_wait_lets_in_flight_requests_finish(rl, monkeypatch):
    slow(rl, monkeypatch)
    call = Call(rl, {**LONG, "max_tokens": 40})
    wait_until(lambda: running(rl) == 1)
    assert post(rl, "/pause?mode=wait").json() == {"status": "paused"}
    assert rl.control.scheduler.frozen and running(rl) == 0
    c = call.result()["choices"][0]
    assert c["finish_reason"] == "length" and len(c["token_ids"]) == 40
    held = Call(rl, {**GREEDY, "max_tokens": 3})
    wait_until(lambda: waiting(rl) == 1)
    time.sleep(0.1)
    assert held.is_alive() and waiting(rl) == 1
    post(rl, "/resume")
    assert held.result()["choices"][0]["finish_reason"] == "length"


# ---- weight updates ----------------------------------------------------------------------------------

def test_stream_update_in_chunks_gives_the_new_weights(rl):
    before = chat(rl, GREEDY).json()["choices"][0]["token_ids"]
    assert before == local_greedy(rl, rl.base)
    new = perturbed(rl.base, seed=3)
    names = list(new)
    groups = [names[0::3], names[1::3], names[2::3]]
    dtypes = [torch.float64, torch.float32, torch.bfloat16]  # any float dtype; cast to the model's on copy
    sent = {}
    assert post(rl, "/pause?mode=keep").json() == {"status": "paused"}
    assert post(rl, "/start_weight_update", {}).json() == {"status": "started"}
    total = 0
    for group, dtype in zip(groups, dtypes):
        tensors = {k: new[k].to(dtype) for k in group}
        sent.update(tensors)
        total += len(group)
        r = post(rl, "/update_weights", content=chunk(tensors), headers={"content-type": "application/octet-stream"})
        assert r.json() == {"updated": len(group), "total_updated": total}
    assert httpx.get(rl.url + "/weight_info").json() == {"weight_version": None, "is_paused": True, "update_open": True}
    r = post(rl, "/finish_weight_update", {"weight_version": "step-1"})
    assert r.json() == {"status": "finished", "weight_version": "step-1", "tensors_updated": len(names)}
    assert httpx.get(rl.url + "/weight_info").json() == {"weight_version": "step-1", "is_paused": True,
                                                         "update_open": False}
    assert post(rl, "/resume").json() == {"status": "resumed"}
    after = chat(rl, GREEDY).json()["choices"][0]["token_ids"]
    assert after == local_greedy(rl, {k: v.float() for k, v in sent.items()}) and after != before


def test_partial_update_of_some_tensors(rl):
    post(rl, "/pause?mode=keep")
    post(rl, "/start_weight_update")  # an empty body is fine too
    head = {"lm_head.weight": rl.base["lm_head.weight"] * 1.5}
    assert post(rl, "/update_weights", content=chunk(head)).json() == {"updated": 1, "total_updated": 1}
    assert post(rl, "/update_weights", content=chunk(head)).json() == {"updated": 1, "total_updated": 1}
    assert post(rl, "/finish_weight_update").json() == {"status": "finished", "weight_version": None,
                                                        "tensors_updated": 1}
    post(rl, "/resume")
    assert chat(rl, GREEDY).json()["choices"][0]["token_ids"] == local_greedy(rl, {**rl.base, **head})


def test_reload_from_a_checkpoint_directory(rl, tmp_path):
    new = perturbed(rl.base, seed=4)
    model = load_model(rl.checkpoint)
    model.load_state_dict(new)
    save_checkpoint(model, tmp_path / "ckpt", max_shard_bytes=100_000)  # several shards and an index
    assert len(list((tmp_path / "ckpt").glob("*.safetensors"))) > 1
    post(rl, "/pause?mode=keep")
    r = post(rl, "/reload_weights", {"path": str(tmp_path / "ckpt"), "weight_version": "v7"}).json()
    assert r["status"] == "reloaded" and r["weight_version"] == "v7" and r["tensors"] == len(new) and r["seconds"] >= 0
    assert httpx.get(rl.url + "/weight_info").json()["weight_version"] == "v7"
    post(rl, "/resume")
    assert chat(rl, GREEDY).json()["choices"][0]["token_ids"] == local_greedy(rl, new)


def test_frozen_requests_continue_on_the_new_weights(rl, monkeypatch):
    """keep + update: the frozen row's KV cache is recomputed with the new weights (vLLM's clear_cache), so
    what it generates after the update is greedy decoding with the new weights from its tokens so far."""
    slow(rl, monkeypatch)
    call = Call(rl, {**LONG, "max_tokens": 60})
    wait_until(lambda: running(rl) == 1)
    post(rl, "/pause?mode=keep")
    [row] = rl.engine._rows
    k = len(row.ids)
    new = perturbed(rl.base, seed=5)
    post(rl, "/start_weight_update")
    post(rl, "/update_weights", content=chunk(new))
    post(rl, "/finish_weight_update", {"weight_version": "v1"})
    post(rl, "/resume")
    ids = call.result()["choices"][0]["token_ids"]
    assert k < 60 and ids[:k] == local_greedy(rl, rl.base, 60)[:k]
    model = load_model(rl.checkpoint)
    model.load_state_dict(new)
    encoded = rl.engine.processor.encode(HI)
    encoded = Encoded(encoded.input_ids + ids[:k], encoded.audio)
    [[rest]] = Engine(model, rl.engine.processor).generate(
        [encoded], SamplingParams(max_tokens=60 - k, temperature=0, stop_token_ids=[]))
    assert ids[k:] == rest.token_ids


# ---- refusals ----------------------------------------------------------------------------------------

def test_refused_while_not_paused_or_without_an_open_update(rl, tmp_path):
    head = chunk({"lm_head.weight": rl.base["lm_head.weight"]})
    for path, kw in [("/start_weight_update", {}), ("/update_weights", {"content": head}),
                     ("/finish_weight_update", {}), ("/reload_weights", {"body": {"path": str(rl.checkpoint)}})]:
        assert "POST /pause first" in error(post(rl, path, **kw), 409), path
    post(rl, "/pause?mode=keep")
    assert "POST /start_weight_update first" in error(post(rl, "/update_weights", content=head), 409)
    assert "POST /start_weight_update first" in error(post(rl, "/finish_weight_update"), 409)
    post(rl, "/start_weight_update")
    assert "already open" in error(post(rl, "/start_weight_update"), 409)
    assert "finish_weight_update before /reload_weights" in error(
        post(rl, "/reload_weights", {"path": str(rl.checkpoint)}), 409)
    assert "finish_weight_update before /resume" in error(post(rl, "/resume"), 409)
    assert "'mode' must be one of abort, wait, keep" in error(post(rl, "/pause?mode=later"), 400)


@pytest.mark.parametrize("tensors, words", [
    ({"lm_head.weight": torch.zeros(1024, 32), "model.layers.0.mlp.nope": torch.zeros(2)},
     "unknown tensor 'model.layers.0.mlp.nope'"),
    ({"lm_head.weight": torch.zeros(1024, 32), "model.norm.weight": torch.zeros(7)},
     "model.norm.weight has shape [7], the model's is [32]"),
    ({"lm_head.weight": torch.zeros(1024, 32), "model.norm.weight": torch.ones(32, dtype=torch.int64)},
     "model.norm.weight is int64, not a floating-point tensor"),
    ({"lm_head.weight": torch.zeros(1024, 32), "model.norm.weight": torch.full((32,), float("nan"))},
     "model.norm.weight holds NaN or infinite values"),
])
def test_a_bad_chunk_writes_nothing(rl, tensors, words):
    post(rl, "/pause?mode=keep")
    post(rl, "/start_weight_update")
    message = error(post(rl, "/update_weights", content=chunk(tensors)), 400)
    assert words in message and "nothing of it was written" in message
    assert torch.equal(rl.engine.model.lm_head.weight, rl.base["lm_head.weight"])  # the good tensor too
    assert httpx.get(rl.url + "/weight_info").json()["update_open"]  # the update stays open and consistent
    good = {"lm_head.weight": rl.base["lm_head.weight"]}
    assert post(rl, "/update_weights", content=chunk(good)).json() == {"updated": 1, "total_updated": 1}


def test_bodies_that_are_not_safetensors(rl):
    post(rl, "/pause?mode=keep")
    post(rl, "/start_weight_update")
    assert "not a safetensors file" in error(post(rl, "/update_weights", content=b"\x00garbage" * 10), 400)
    assert "the body is empty" in error(post(rl, "/update_weights", content=b""), 400)
    assert "the tensors themselves in the body" in error(
        post(rl, "/update_weights", {"names": ["lm_head.weight"], "dtype_names": ["float32"]}), 400)
    assert "'weight_version' must be a string" in error(post(rl, "/finish_weight_update", {"weight_version": 3}), 400)
    assert "must be empty or a JSON object" in error(post(rl, "/start_weight_update", [1]), 400)


def test_reload_refusals(rl, tmp_path):
    post(rl, "/pause?mode=keep")
    missing = tmp_path / "nowhere"
    message = error(post(rl, "/reload_weights", {"path": str(missing)}), 400)
    assert str(missing) in message and "no such directory" in message
    assert "no config.json" in error(post(rl, "/reload_weights", {"path": str(tmp_path)}), 400)
    assert "'path' is required" in error(post(rl, "/reload_weights", {}), 400)
    assert "'path' must be" in error(post(rl, "/reload_weights", {"path": 5}), 400)
    other = tmp_path / "wider"
    save_checkpoint(tiny_model(intermediate_size=48), other)
    message = error(post(rl, "/reload_weights", {"path": str(other)}), 400)
    assert "does not fit the running model" in message and str(other) in message
    assert "model.layers.0.mlp.up_proj.weight (checkpoint [48, 32], model [64, 32])" in message
    assert torch.equal(rl.engine.model.lm_head.weight, rl.base["lm_head.weight"])


def test_a_copy_failing_half_way_blocks_resume_until_a_whole_model_is_written(rl, monkeypatch, tmp_path):
    copy, calls = Engine._copy_weight, []

    def failing(target, value):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        copy(target, value)

    post(rl, "/pause?mode=keep")
    post(rl, "/start_weight_update")
    new = perturbed(rl.base, seed=6)
    monkeypatch.setattr(Engine, "_copy_weight", staticmethod(failing))
    message = error(post(rl, "/update_weights", content=chunk({k: new[k] for k in list(new)[:3]})), 500)
    assert "copying weights failed after 1 tensors: RuntimeError: device lost" in message
    monkeypatch.setattr(Engine, "_copy_weight", staticmethod(copy))
    post(rl, "/finish_weight_update")
    assert "the weights are inconsistent" in error(post(rl, "/resume"), 409)
    post(rl, "/start_weight_update")  # a partial update does not make them whole
    post(rl, "/update_weights", content=chunk({"lm_head.weight": new["lm_head.weight"]}))
    post(rl, "/finish_weight_update")
    assert "POST /reload_weights" in error(post(rl, "/resume"), 409)
    save_checkpoint(load_model(rl.checkpoint), tmp_path / "whole")
    assert post(rl, "/reload_weights", {"path": str(tmp_path / "whole")}).json()["status"] == "reloaded"
    assert post(rl, "/resume").json() == {"status": "resumed"}


def test_api_key_guards_every_rl_endpoint(rl):
    rl.config.api_key = "s3cret"
    for method, path in [("post", "/pause"), ("post", "/resume"), ("get", "/is_paused"), ("get", "/weight_info"),
                         ("post", "/start_weight_update"), ("post", "/update_weights"),
                         ("post", "/finish_weight_update"), ("post", "/reload_weights")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = getattr(httpx, method)(rl.url + path, headers=headers)
            assert "missing or invalid API key" in error(r, 401), path
    key = {"Authorization": "Bearer s3cret"}
    assert httpx.post(rl.url + "/pause?mode=keep", headers=key).json() == {"status": "paused"}
    assert httpx.get(rl.url + "/is_paused", headers=key).json() == {"is_paused": True}


def test_without_the_flag_the_endpoints_are_404(rl):
    client = TestClient(create_app(rl.engine, ServerConfig(model_name=MODEL)))  # no lifespan: nothing runs
    for method, path in [("post", "/pause"), ("post", "/resume"), ("get", "/is_paused"), ("get", "/weight_info"),
                         ("post", "/start_weight_update"), ("post", "/update_weights"),
                         ("post", "/finish_weight_update"), ("post", "/reload_weights")]:
        r = getattr(client, method)(path)
        assert "start the server with --enable-weight-updates" in error(r, 404), path


def test_a_quantized_engine_refuses_weight_updates(rl):
    pytest.importorskip("torchao")
    quantized = Engine.from_pretrained(rl.checkpoint, quantize="int8")
    with pytest.raises(ValueError, match="weight updates cannot be enabled: the model was loaded with --quantize int8"):
        create_app(quantized, ServerConfig(enable_weight_updates=True))
    built_elsewhere = Engine(load_model(rl.checkpoint, quantize="int8"), quantized.processor)
    assert "the model was quantized (model.layers.0.self_attn.q_proj.weight, …)" in built_elsewhere.weight_refusal()
    assert rl.engine.weight_refusal() is None


@pytest.mark.parametrize("extra, words", [
    (["--host", "0.0.0.0"], "listening on 0.0.0.0 (beyond this machine) it needs --api-key"),
    (["--host", "192.168.1.7"], "needs --api-key"),
    (["--quantize", "int8"], "cannot be used with --quantize int8"),
])
def test_serve_refuses_unsafe_weight_updates(tmp_path, capsys, monkeypatch, extra, words):
    monkeypatch.delenv("AUDIOR1_API_KEY", raising=False)
    code = main(["serve", "--model", str(tmp_path / "not-even-loaded"), "--enable-weight-updates", *extra])
    assert code == 2 and words in capsys.readouterr().err


# ---- `audior1 serve --enable-weight-updates` as a user runs it --------------------------------------------

def call(url: str, path: str, data=None, key: str = "k3y", method: str = "POST", content_type="application/json"):
    body = data if isinstance(data, bytes) or data is None else json.dumps(data).encode()
    request = urllib.request.Request(url + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def test_serve_command_driven_by_a_trainer(tmp_path_factory):
    checkpoint = tiny_checkpoint(tmp_path_factory)
    with serve_process(checkpoint, "--api-key", "k3y", "--enable-weight-updates", "--log-level", "warning") as (url, proc):
        base = load_model(checkpoint).state_dict()
        new = {k: base[k] * 1.3 for k in ("lm_head.weight", "model.norm.weight")}
        assert call(url, "/pause?mode=abort") == {"status": "paused"}
        assert call(url, "/start_weight_update", {}) == {"status": "started"}
        assert call(url, "/update_weights", chunk(new), content_type="application/octet-stream") == \
            {"updated": 2, "total_updated": 2}
        assert call(url, "/finish_weight_update", {"weight_version": "e2e"})["weight_version"] == "e2e"
        assert call(url, "/resume") == {"status": "resumed"}
        assert call(url, "/weight_info", method="GET") == {"weight_version": "e2e", "is_paused": False,
                                                          "update_open": False}
        r = call(url, "/v1/chat/completions", GREEDY)
        model = load_model(checkpoint)
        model.load_state_dict({**base, **new})
        [[want]] = Engine(model, Processor.from_pretrained(checkpoint)).generate(
            [HI], SamplingParams(max_tokens=12, temperature=0, stop_token_ids=[]))
        assert r["choices"][0]["token_ids"] == want.token_ids
        with pytest.raises(urllib.error.HTTPError) as refused:
            call(url, "/pause", key="wrong")
        assert refused.value.code == 401
    assert "RL weight updates enabled" in proc.stdout.read()
