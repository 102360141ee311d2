"""The end of reasoning, found wherever it matters, with think markers that are one token (the small vocabulary)
and with markers that are several tokens (the released Step-Audio-R1 tokenizer): the server's streamed
`reasoning_content`/`content` deltas, the evaluation's extraction (local engine and OpenAI endpoint, with and
without a thinking budget), SFT targets and RL rollouts. The engine's own split, streaming, budget and stop
handling are in test_engine.py (`any_engine`).

A random tiny model never writes `</think>` by itself, so the tests that need the model to write it script the
engine's token choice (`scripted`): everything downstream of the choice (decoding, splitting, streaming,
serving, scoring) is the real code."""

import contextlib
import json
import time

import httpx
import pytest

from audior1.chat import render_prompt, split_reasoning
from audior1.engine import Engine, SamplingParams
from audior1.eval.backends import LocalBackend, OpenAIBackend, Sampling
from audior1.eval.items import EvalItem
from audior1.server import ServerConfig, create_app
from audior1.train import rewards
from test_engine import tiny_checkpoint, tone
from test_server import LiveServer

MARKERS = ["tokens", "text"]
SCRIPT = "I hear two rising tones.\n</think>\nThe second one."


@contextlib.contextmanager
def scripted(engine: Engine, text: str, step_seconds: float = 0.0):
    """Inside the block every row of `engine` "generates" the tokens of `text`, then <|EOT|> (a prompt whose think
    block is already closed gets only the answer part, as a model would write it). `step_seconds` paces the steps
    like a real model's, so a streaming client sees pieces while generation goes on."""
    eot = engine.tokenizer.eot_id
    full = engine.tokenizer.encode(text) + [eot]
    answer = engine.tokenizer.encode(text.split("</think>\n", 1)[-1]) + [eot]
    position: dict[int, int] = {}

    def choose(logits, only_from):
        time.sleep(step_seconds)
        out = []
        for row in engine._rows:
            ids = full if row.request.starts_in_reasoning else answer
            k = position.get(id(row), 0)
            position[id(row)] = k + 1
            out.append(ids[min(k, len(ids) - 1)])
        return out

    engine._choose = choose
    try:
        yield
    finally:
        del engine._choose  # back to the model's own choice


@pytest.fixture(scope="module", params=MARKERS)
def checkpoint(request, tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def engine(checkpoint):
    engine = Engine.from_pretrained(checkpoint)
    text_markers = checkpoint.name.endswith("text-markers")
    assert engine.tokenizer.think_markers_are_tokens != text_markers
    assert (len(engine.tokenizer.encode("</think>")) > 1) == text_markers
    return engine


@pytest.fixture(scope="module")
def served(engine):
    with LiveServer(create_app(engine, ServerConfig(model_name="m", max_tokens=64))) as live:
        live.engine = engine
        yield live


def sse_deltas(url: str, body: dict) -> list[tuple[str, str]]:
    """(field, text) of every non-empty delta of a streamed chat completion, in arrival order."""
    out = []
    with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:])["choices"]:
                for key in ("reasoning_content", "content"):
                    if choice["delta"].get(key):
                        out.append((key, choice["delta"][key]))
    return out


def test_server_streams_reasoning_then_content_and_never_the_marker(served):
    body = {"model": "m", "messages": [{"role": "user", "content": "Which tone is higher?"}], "max_tokens": 40}
    with scripted(served.engine, SCRIPT, step_seconds=0.02):
        deltas = sse_deltas(served.url, body)
        plain = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=60).json()["choices"][0]["message"]
    keys = [k for k, _ in deltas]
    assert keys == sorted(keys, key=["reasoning_content", "content"].index)  # all reasoning comes first
    assert keys.count("reasoning_content") > 1 and keys.count("content") > 1  # pieces, not one final blob
    reasoning = "".join(t for k, t in deltas if k == "reasoning_content")
    content = "".join(t for k, t in deltas if k == "content")
    assert (reasoning, content) == ("I hear two rising tones.", "The second one.")
    assert all("</" not in t and "think>" not in t for _, t in deltas)
    assert (plain["reasoning_content"], plain["content"]) == (reasoning, content)


def test_server_inline_format_puts_one_marker_between_reasoning_and_answer(engine):
    with scripted(engine, SCRIPT), \
            LiveServer(create_app(engine, ServerConfig(model_name="m", reasoning_format="inline"))) as live:
        body = {"model": "m", "messages": [{"role": "user", "content": "Q"}], "max_tokens": 40}
        streamed = "".join(t for _, t in sse_deltas(live.url, body))
        plain = httpx.post(live.url + "/v1/chat/completions", json=body, timeout=60).json()
    assert streamed == "I hear two rising tones.\n</think>\nThe second one."
    assert split_reasoning(plain["choices"][0]["message"]["content"]) == split_reasoning(streamed)


ITEM = EvalItem("q1", [{"role": "user", "content": [{"type": "text", "text": "Which tone is higher?"}]}],
                "The second one.", None)


def test_local_eval_extracts_the_answer_after_the_marker(engine):
    with scripted(engine, SCRIPT):
        [c] = list(LocalBackend("unused", engine=engine).generate([ITEM], Sampling(max_tokens=40, temperature=0)))
    assert (c.reasoning, c.answer) == ("I hear two rising tones.", "The second one.")
    assert c.reasoning_tokens == next(k for k in range(1, 40) if "</think>" in engine.tokenizer.decode(
        engine.tokenizer.encode(SCRIPT)[:k]))


def test_local_eval_think_budget_bounds_the_reasoning(engine):
    """The real model under a budget of 5: the forced close is found whatever its token count, and the
    reasoning stays within the budget (the forced marker's tokens are the only extra)."""
    backend = LocalBackend("unused", engine=engine)
    [c] = list(backend.generate([ITEM], Sampling(max_tokens=30, temperature=0, think_budget=5)))
    closing = len(engine.tokenizer.encode("\n</think>\n"))
    assert c.answer is not None and c.forced_close
    assert 5 < c.reasoning_tokens <= 5 + closing
    [[same]] = engine.generate([ITEM.messages], SamplingParams(max_tokens=30, temperature=0, max_think_tokens=5))
    assert c.reasoning == engine.tokenizer.decode(same.token_ids[:5]).strip()  # exactly the budget's 5 tokens


def test_endpoint_eval_with_a_budget_against_audior1s_server(served):
    """The OpenAI backend's budget forcing stops at the text `</think>` and appends the closing itself."""
    backend = OpenAIBackend(served.url, "m", concurrency=1, retries=0)
    with scripted(served.engine, SCRIPT):
        [c] = list(backend.generate([ITEM], Sampling(max_tokens=40, temperature=0, think_budget=64)))
        [d] = list(backend.generate([ITEM], Sampling(max_tokens=40, temperature=0)))
    backend.close()
    assert (c.reasoning, c.answer) == (d.reasoning, d.answer) == ("I hear two rising tones.", "The second one.")


def test_sft_targets_start_after_the_prefilled_open_marker(engine, tmp_path):
    """A training example is the engine's generation prompt (ending in `<think>\\n`) followed by the target's
    own tokens, so the boundary is where inference starts generating, for either marker form."""
    from audior1.train.data import target_text

    messages = [{"role": "user", "content": "Q"}]
    prompt_ids = engine.processor.encode(messages).input_ids
    target = target_text("Two tones; the second is higher.", "B") + "<|EOT|>"
    ids = prompt_ids + engine.tokenizer.encode(target)
    assert engine.tokenizer.decode(ids) == render_prompt(messages) + target
    assert engine.tokenizer.decode(prompt_ids).endswith("<|BOT|>assistant\n<think>\n")
    assert split_reasoning(target.removesuffix("<|EOT|>")).answer == "B"


def test_rl_rollouts_and_rewards_with_a_budget(checkpoint, engine, tmp_path, assets):
    """A real `train rl` step on each marker form with the paper's audio reward: every rollout's think block is
    closed by the budget, so the format reward and the reasoning-token count see the marker."""
    from audior1.train.cli import main
    from audior1.train.logging import read_metrics

    out = tmp_path / "rl"
    cfg = {"model": str(checkpoint), "out_dir": str(out), "max_steps": 1, "prompts_per_step": 2, "samples_per_prompt": 2,
           "prompts": [{"manifest": str(assets / "synth" / "synth-train.jsonl"), "kind": "audio", "reward": "audio"}],
           "max_new_tokens": 12, "max_think_tokens": 3, "micro_batch_size": 4, "temperature": 1.0, "eval_every": 0,
           "save_every": 0, "progress": False, "threads": 1, "optim": {"lr": 1e-4}}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    assert main(["rl", "--algo", "grpo", "--config", str(tmp_path / "c.yaml")]) == 0
    [train] = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    closing = len(engine.tokenizer.encode("\n</think>\n"))
    assert 3 < train["reasoning_tokens_p10"] and train["reasoning_tokens_max"] <= 3 + closing
    assert train["reward/format"] > 0


@pytest.mark.parametrize("completion, correct, formatted", [
    ("r\n</think>\nThe second one.", 1.0, 1.0),
    ("r\n</think>\nThe first one.", 0.0, 1.0),
    ("r\n</think>\n</think>\nThe second one.", 0.0, 0.0),  # a second close: answer text, and not well formed
    ("\n</think>\nThe second one.", 1.0, 0.0),  # no reasoning
    ("never closed The second one.", 0.0, 0.0),
])
def test_rewards_follow_the_one_split(completion, correct, formatted):
    columns = {"answer": ["the second one"], "choices": [["the first one", "the second one"]]}
    assert rewards.correct([completion], **columns) == [correct]
    assert rewards.format_reward([completion]) == [formatted]
