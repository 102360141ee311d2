"""The engine: greedy equality (alone, batched, joined mid-decode, full recompute), the lean decode step
against `model.forward`, forked samples, seeds, sampling filters against transformers, stops, budgets,
streaming pieces, cancellation and failure isolation. A tiny random model: structure, not content."""

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from audior1.checkpoint import init_checkpoint
from audior1.engine import Engine, EngineError, SamplingParams
from audior1.sampling import apply_repetition_penalty, draw, sampling_cdf
from audior1.processor import Encoded


def tiny_checkpoint(tmp_path_factory, think_markers: str = "tokens"):
    """One tiny checkpoint per test session and marker form, shared by the serving test files. `think_markers`
    "tokens": `<think>`/`</think>` are single tokens (the small vocabulary's default); "text": several tokens
    each, as in the released Step-Audio-R1 tokenizer."""
    path = tmp_path_factory.getbasetemp() / ("audior1-tiny" if think_markers == "tokens" else "audior1-tiny-text-markers")
    if not (path / "config.json").exists():
        init_checkpoint("tiny", path, seed=0, text_think_markers=think_markers == "text")
    return path


def tone(seconds=1.5, freq=440.0, rate=16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _engine(tmp_path_factory, think_markers: str) -> Engine:
    engine = Engine.from_pretrained(tiny_checkpoint(tmp_path_factory, think_markers))
    engine.model.init_weights(seed=1, std=0.1)  # peakier than the checkpoint's: more varied greedy text
    return engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return _engine(tmp_path_factory, "tokens")


@pytest.fixture(scope="module", params=["tokens", "text"])
def any_engine(request, tmp_path_factory):
    """The engine with single-token think markers and with multi-token ones (the released form)."""
    engine = _engine(tmp_path_factory, request.param)
    assert engine.tokenizer.think_markers_are_tokens == (request.param == "tokens")
    return engine


def user(text, audio=None):
    parts = [{"type": "text", "text": text}]
    if audio is not None:
        parts.append({"type": "audio", "audio": audio})
    return [{"role": "user", "content": parts}]


PROMPTS = [user("hi"), user("a much longer question about the recording", tone(1.0)),
           user("what is the pitch of the tone?", tone(2.0, 880))]
GREEDY = SamplingParams(max_tokens=24, temperature=0, stop_token_ids=[])


def ids_of(completions):
    return [c[0].token_ids for c in completions]


@torch.no_grad()
def recompute_greedy(engine, encoded: Encoded, steps: int) -> list[int]:
    """Greedy decoding by running the whole sequence through model.forward at every step (no cache)."""
    batch = engine.processor.collate([encoded])
    out = []
    for _ in range(steps):
        ids = torch.tensor([encoded.input_ids + out])
        logits = engine.model(ids, audio_mels=batch.audio_mels, audio_mel_lens=batch.audio_mel_lens).logits
        out.append(int(logits[0, -1].argmax()))
    return out


def test_greedy_alone_batched_and_recomputed_agree(engine):
    encoded = [engine.encode(p, GREEDY) for p in PROMPTS]
    batched = ids_of(engine.generate(encoded, GREEDY))
    alone = [ids_of(engine.generate([e], GREEDY))[0] for e in encoded]
    assert batched == alone
    assert [recompute_greedy(engine, e, GREEDY.max_tokens) for e in encoded] == batched
    assert len({tuple(x) for x in batched}) == 3 and all(len(x) == GREEDY.max_tokens for x in batched)
    engine.fast_decode = False
    try:
        assert ids_of(engine.generate(encoded, GREEDY)) == batched  # model.forward path
    finally:
        engine.fast_decode = True


@torch.no_grad()
def test_lean_decode_step_matches_model_forward(engine):
    encoded = [engine.encode(p, GREEDY) for p in PROMPTS]
    batch = engine.processor.collate(encoded, padding_side="left")
    model = engine.model
    cache = model.new_cache(3, batch.input_ids.shape[1] + 2)  # small: the steps must grow it
    model(batch.input_ids, attention_mask=batch.attention_mask, audio_mels=batch.audio_mels,
          audio_mel_lens=batch.audio_mel_lens, cache=cache)
    engine._padded = True
    tokens = torch.tensor([5, 77, 300])
    for _ in range(6):
        twin = cache.select(torch.arange(3))
        reference = model(tokens[:, None], cache=twin).logits[:, -1]
        lean = engine._fast_decoder(tokens, cache)
        assert (lean - reference).abs().max() < 1e-5
        assert cache.length == twin.length and torch.equal(cache.valid, twin.valid)
        assert torch.allclose(cache.k[:, :, :, : cache.length], twin.k[:, :, :, : twin.length], atol=1e-5)
        assert torch.allclose(cache.v[:, :, :, : cache.length], twin.v[:, :, :, : twin.length], atol=1e-5)
        assert torch.equal(cache.next_position, twin.next_position)
        tokens = lean.argmax(-1)


def test_requests_joining_mid_decode_match_alone(engine):
    encoded = [engine.encode(p, GREEDY) for p in PROMPTS]
    alone = [ids_of(engine.generate([e], GREEDY))[0] for e in encoded]
    # The short prompt starts; the longer ones (wider than the running cache) join after a few steps.
    first = engine.add(encoded[0], GREEDY)
    for _ in range(5):
        engine.step()
    later = [engine.add(e, GREEDY) for e in encoded[1:]]
    while not all(r.done.is_set() for r in [first, *later]):
        engine.step()
    assert [engine.completions(r)[0].token_ids for r in [first, *later]] == alone


def test_cache_columns_are_reclaimed_when_rows_leave(engine):
    long_prompt = engine.encode(user("word " * 60, tone(3.0)), GREEDY)
    short = engine.add(engine.encode(user("hi"), GREEDY), SamplingParams(max_tokens=30, temperature=0, stop_token_ids=[]))
    big = engine.add(long_prompt, SamplingParams(max_tokens=2, temperature=0, stop_token_ids=[]))
    while not big.done.is_set():
        engine.step()
    assert not short.done.is_set()
    assert engine._cache.length < 40  # the long prompt's columns are gone; only the short row's remain
    while not short.done.is_set():
        engine.step()
    assert not engine.busy and engine._cache is None


def test_n_samples_share_one_prefill(engine, monkeypatch):
    calls, prefills = [], []
    encode_audio, forward = engine.model.encode_audio, engine.model.forward
    monkeypatch.setattr(engine.model, "encode_audio", lambda *a: calls.append(1) or encode_audio(*a))

    def counting_forward(input_ids, *args, **kwargs):
        if input_ids.shape[1] > 1:  # a prefill (decode steps feed one token per row)
            prefills.append(tuple(input_ids.shape))
        return forward(input_ids, *args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", counting_forward)
    params = SamplingParams(max_tokens=16, temperature=1.0, n=4, seed=7, stop_token_ids=[])
    [samples] = engine.generate([PROMPTS[1]], params)
    assert len(calls) == 1  # the audio went through the encoder once for 4 samples
    prompt_tokens = len(engine.encode(PROMPTS[1], params).input_ids)
    assert prefills == [(1, prompt_tokens)]  # and the prompt was prefilled once: one row, not one per sample
    assert len(samples) == 4 and len({tuple(c.token_ids) for c in samples}) > 1
    # Sample j of a seeded request is reproducible, and equal to sample j drawn alone.
    [again] = engine.generate([PROMPTS[1]], params)
    assert [c.token_ids for c in again] == [c.token_ids for c in samples]
    [first] = engine.generate([PROMPTS[1]], SamplingParams(max_tokens=16, temperature=1.0, seed=7, stop_token_ids=[]))
    assert first[0].token_ids == samples[0].token_ids


def test_seeded_sampling_does_not_depend_on_the_batch(engine):
    seeded = SamplingParams(max_tokens=20, temperature=0.9, top_p=0.95, top_k=50, seed=3, stop_token_ids=[])
    alone = engine.generate([PROMPTS[2]], seeded)[0][0].token_ids
    noisy = SamplingParams(max_tokens=12, temperature=1.0, stop_token_ids=[])
    a = engine.add(PROMPTS[0], noisy)
    engine.step()
    b = engine.add(engine.encode(PROMPTS[2], seeded), seeded)
    c = engine.add(PROMPTS[1], noisy)
    while not all(r.done.is_set() for r in (a, b, c)):
        engine.step()
    assert engine.completions(b)[0].token_ids == alone


def test_logprobs_do_not_change_the_draws(engine):
    """Log-probs are recorded for the rows that ask (one per token, plus the stop token) without touching the
    draws: a seeded request with a penalty and filters gives the same tokens either way."""
    seeded = SamplingParams(max_tokens=20, temperature=0.8, top_k=40, top_p=0.9, repetition_penalty=1.3, seed=4,
                            stop_token_ids=[])
    plain = engine.generate([PROMPTS[1]], seeded)[0][0]
    scored_params = SamplingParams(**{**seeded.__dict__, "logprobs": True})
    scored = engine.add(PROMPTS[1], scored_params)
    other = engine.add(PROMPTS[0], SamplingParams(max_tokens=5, temperature=0, stop_token_ids=[]))
    while not (scored.done.is_set() and other.done.is_set()):
        engine.step()
    [c] = engine.completions(scored)
    assert c.token_ids == plain.token_ids and plain.logprobs is None
    assert len(c.logprobs) == len(c.token_ids) and all(lp <= 0 for lp in c.logprobs)
    assert engine.completions(other)[0].logprobs is None
    # The stop token is scored too: stop on the 4th token drawn.
    stop = SamplingParams(**{**scored_params.__dict__, "stop_token_ids": [c.token_ids[3]]})
    [stopped] = engine.generate([PROMPTS[1]], stop)[0]
    assert stopped.stop_reason == c.token_ids[3] and len(stopped.logprobs) == len(stopped.token_ids) + 1
    assert stopped.logprobs == pytest.approx(c.logprobs[: len(stopped.logprobs)], abs=1e-5)


def test_new_weights_mid_decode_recompute_the_running_rows(tmp_path_factory):
    """After `load_weights`, running rows go on as greedy decoding with the new weights from their prompt and
    tokens so far (their KV cache is recomputed, audio included), rows of different lengths together."""
    engine = _engine(tmp_path_factory, "tokens")
    requests = [engine.add(p, GREEDY) for p in PROMPTS[:2]]
    for _ in range(6):
        engine.step()
    prefixes = [list(r.samples[0].ids) for r in requests]
    gen = torch.Generator().manual_seed(0)
    new = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in engine.model.state_dict().items()}
    assert engine.load_weights(new.items()) == len(new)
    while not all(r.done.is_set() for r in requests):
        engine.step()
    fresh = _engine(tmp_path_factory, "tokens")
    fresh.model.load_state_dict(new)
    for r, prefix in zip(requests, prefixes):
        ids = engine.completions(r)[0].token_ids
        assert ids[: len(prefix)] == prefix and 0 < len(prefix) < GREEDY.max_tokens
        resumed = Encoded(r.encoded.input_ids + prefix, r.encoded.audio)
        params = SamplingParams(max_tokens=GREEDY.max_tokens - len(prefix), temperature=0, stop_token_ids=[])
        assert ids[len(prefix):] == fresh.generate([resumed], params)[0][0].token_ids


def test_hold_new_and_abort_in_flight(engine):
    params = SamplingParams(max_tokens=30, temperature=0, stop_token_ids=[])
    running = engine.add(PROMPTS[0], params)
    engine.step()
    waiting = engine.add(PROMPTS[1], SamplingParams(**{**params.__dict__, "n": 2}))
    engine.hold_new()
    held = engine.add(PROMPTS[2], params)
    assert engine.abort_in_flight() == [waiting, running]
    assert running.done.is_set() and waiting.done.is_set() and not held.done.is_set()
    assert [c.finish_reason for c in engine.completions(running)] == ["cancelled"]
    assert [(c.finish_reason, c.token_ids) for c in engine.completions(waiting)] == [("cancelled", [])] * 2
    assert not engine.busy and engine.num_waiting == 1  # held: step() has nothing to do
    engine.release_new()
    while not held.done.is_set():
        engine.step()
    assert engine.completions(held)[0].finish_reason == "length"


def test_sampling_filters_match_transformers():
    transformers = pytest.importorskip("transformers")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, generator=gen) * 3
    seen_ids = torch.tensor([[1, 2, 3, 9], [4, 4, 5, 6], [0, 7, 8, 49]])
    seen = torch.zeros(3, 50, dtype=torch.bool).scatter(1, seen_ids, True)
    ours = apply_repetition_penalty(logits, seen, torch.full((3, 1), 1.3))
    theirs = transformers.RepetitionPenaltyLogitsProcessor(1.3)(seen_ids, logits.clone())
    assert torch.allclose(ours, theirs)
    logits = torch.cat([logits, torch.full((3, 150), -20.0)], dim=1)  # 200 tokens: past the first 64 candidates
    for k, p in [(5, 1.0), (0, 0.8), (10, 0.5), (0, 0.999), (100, 1.0)]:
        cdf, mass, order = sampling_cdf(logits, torch.full((3, 1), 0.7), torch.full((3, 1), k) if k else None,
                                        torch.full((3, 1), p) if p < 1 else None)
        probs = torch.where(cdf <= mass, torch.diff(cdf, dim=-1, prepend=torch.zeros(3, 1)), 0.0)
        ours = torch.zeros_like(logits).scatter(1, order, probs)
        x = logits / 0.7
        if k:
            x = transformers.TopKLogitsWarper(k)(None, x)
        if p < 1:
            x = transformers.TopPLogitsWarper(p)(None, x)
        theirs = torch.softmax(x, -1)
        assert torch.equal(ours > 1e-6, theirs > 1e-6)  # the same tokens survive (up to the cdf's float resolution)
        assert torch.allclose(ours / ours.sum(-1, keepdim=True), theirs, atol=1e-6)
    # Drawing: zero-probability tokens are never picked, and the frequencies follow the distribution.
    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75, 0.0]]).repeat(4000, 1)
    cdf = probs.cumsum(-1)
    picks = torch.tensor(draw(cdf, cdf[:, -1:], None, torch.rand(4000, 1)))
    assert set(picks.tolist()) <= {1, 3} and abs((picks == 3).float().mean() - 0.75) < 0.03
    cut = torch.tensor(draw(cdf[:100], cdf[:100, 1:2], None, torch.rand(100, 1)))  # kept: the first two positions
    assert set(cut.tolist()) == {1}


def test_top_k_1_and_tiny_top_p_are_greedy(engine):
    greedy = ids_of(engine.generate(PROMPTS, GREEDY))
    for extra in ({"top_k": 1}, {"top_p": 1e-6}):
        params = SamplingParams(max_tokens=24, temperature=1.5, stop_token_ids=[], seed=1, **extra)
        assert ids_of(engine.generate(PROMPTS, params)) == greedy


def test_stop_strings_stop_ids_and_max_tokens(engine):
    params = SamplingParams(max_tokens=40, temperature=0, stop_token_ids=[])
    [[full]] = engine.generate([PROMPTS[1]], params)
    assert full.finish_reason == "length" and len(full.token_ids) == 40 and full.stop_reason is None
    stop_id = full.token_ids[6]
    [[cut]] = engine.generate([PROMPTS[1]], SamplingParams(max_tokens=40, temperature=0, stop_token_ids=[stop_id]))
    assert cut.finish_reason == "stop" and cut.token_ids == full.token_ids[: full.token_ids.index(stop_id)]
    assert cut.stop_reason == stop_id
    stop = full.text[12:15]
    [[cut]] = engine.generate([PROMPTS[1]], SamplingParams(max_tokens=40, temperature=0, stop_token_ids=[], stop=[stop]))
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.index(stop)] and cut.stop_reason == stop


def test_thinking_budget_closes_the_reasoning(any_engine):
    engine = any_engine
    budget = SamplingParams(max_tokens=30, temperature=0, stop_token_ids=[], max_think_tokens=8)
    [[c]] = engine.generate([PROMPTS[2]], budget)
    before = engine.tokenizer.decode(c.token_ids[:8])
    forced = engine.think_close_ids if before.endswith("\n") else engine.think_end_ids
    assert c.token_ids[8 : 8 + len(forced)] == forced and c.think_closed
    assert c.forced_positions == list(range(8, 8 + len(forced)))  # RL masks these: they were not sampled
    assert engine.tokenizer.decode(c.token_ids[: 8 + len(forced)]) == before + ("</think>\n" if before.endswith("\n")
                                                                            else "\n</think>\n")
    # Reasoning tokens: the 8 of the budget plus the forced ones up to and including the marker's last token.
    closing = next(k for k in range(1, len(forced) + 1) if "</think>" in engine.tokenizer.decode(forced[:k]))
    assert c.reasoning_tokens == 8 + closing
    assert c.reasoning == before.strip() and c.text.count("</think>") == 1
    assert len(c.token_ids) == 30 and c.answer  # the model goes on to answer
    # A budget of 0 is the no-think prompt: the same answer, token for token.
    zero = SamplingParams(max_tokens=20, temperature=0, stop_token_ids=[], max_think_tokens=0)
    no_think = SamplingParams(max_tokens=20, temperature=0, stop_token_ids=[], think=False)
    [[z]], [[n]] = engine.generate([PROMPTS[2]], zero), engine.generate([PROMPTS[2]], no_think)
    assert z.token_ids == n.token_ids and z.answer == n.answer and z.reasoning == "" and z.think_closed
    assert z.reasoning_tokens == n.reasoning_tokens == 0


def test_prompt_phase_and_continued_think_prefill(any_engine):
    engine = any_engine
    normal = engine.processor.encode(PROMPTS[0])
    continued = engine.processor.encode(PROMPTS[0] + [{"role": "assistant", "content": "<think>\n"}],
                                        continue_final_message=True)
    no_think = engine.processor.encode(PROMPTS[0], think=False)
    assert continued.input_ids == normal.input_ids
    assert engine.prompt_in_reasoning(normal.input_ids) and not engine.prompt_in_reasoning(no_think.input_ids)
    partial = engine.processor.encode(PROMPTS[0] + [{"role": "assistant", "content": "<think>\nhm\n</think>\nThe"}],
                                      continue_final_message=True)
    assert not engine.prompt_in_reasoning(partial.input_ids)


def test_streamed_pieces_add_up_to_the_completion(any_engine):
    engine = any_engine
    pieces = []
    params = SamplingParams(max_tokens=40, temperature=0.8, seed=5, n=2, stop_token_ids=[], max_think_tokens=12)
    results = engine.generate(PROMPTS, params, on_piece=lambda *p: pieces.append(p))
    requests = sorted({p[0] for p in pieces})
    assert len(requests) == 3
    for rid, completions in zip(requests, results):
        for j, c in enumerate(completions):
            mine = [(kind, text) for r, i, kind, text in pieces if (r, i) == (rid, j)]
            kinds = [k for k, _ in mine]
            assert kinds == sorted(kinds, key=["reasoning", "answer"].index)  # reasoning first, then answer
            assert "".join(t for k, t in mine if k == "reasoning") == c.reasoning
            assert "".join(t for k, t in mine if k == "answer") == c.answer
            assert "</think>" not in c.reasoning and c.text.count("</think>") == 1


def _scripted(engine, monkeypatch, text: str, stop: bool = True):
    """Make the engine "generate" exactly the tokens of `text` (then <|EOT|>), one per step: the model is
    random, so this is how a test gets a real `</think>` written by the model rather than forced."""
    script = iter(engine.tokenizer.encode(text) + ([engine.tokenizer.eot_id] if stop else []))
    monkeypatch.setattr(engine, "_choose", lambda logits, only_from: [next(script) for _ in range(logits.shape[0])])


@pytest.mark.parametrize("text, reasoning, answer", [
    ("I hear two tones.\n</think>\nThe second.", "I hear two tones.", "The second."),
    ("<think>\nAn echoed opening tag.\n</think>\nB", "An echoed opening tag.", "B"),  # not part of the reasoning
    ("a </thi b\n</think>\nC", "a </thi b", "C"),  # a partial marker is reasoning text
    ("one\n</think>\ntwo\n</think>\nB", "one", "two\n</think>\nB"),  # the first close starts the answer
    ("never closed", "never closed", ""),
])
def test_a_marker_the_model_writes_is_found_across_pieces(any_engine, monkeypatch, text, reasoning, answer):
    engine = any_engine
    _scripted(engine, monkeypatch, text)
    pieces = []
    [[c]] = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=60, temperature=0),
                            on_piece=lambda *p: pieces.append(p[2:]))
    assert (c.text, c.reasoning, c.answer, c.finish_reason) == (text, reasoning, answer, "stop")
    assert c.think_closed == ("</think>" in text)
    assert "".join(t for k, t in pieces if k == "reasoning") == reasoning
    assert "".join(t for k, t in pieces if k == "answer") == answer
    kinds = [k for k, _ in pieces]
    assert kinds == sorted(kinds, key=["reasoning", "answer"].index)
    if not engine.tokenizer.think_markers_are_tokens and "</think>" in text:
        assert len(engine.tokenizer.encode("</think>")) > 1  # the marker did arrive over several steps
    # Reasoning tokens count up to and including the token that completes the first `</think>`.
    if c.think_closed:
        ids = engine.tokenizer.encode(text)
        closing = next(k for k in range(1, len(ids) + 1) if "</think>" in engine.tokenizer.decode(ids[:k]))
        assert c.reasoning_tokens == closing


def test_a_stop_string_inside_the_marker(any_engine, monkeypatch):
    """A stop string that is part of `</think>` ends generation there: the think block never closes."""
    engine = any_engine
    _scripted(engine, monkeypatch, "I hear it.\n</think>\nB", stop=False)
    [[c]] = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=60, temperature=0, stop=["</th"]))
    assert (c.text, c.reasoning, c.answer, c.think_closed, c.stop_reason) == ("I hear it.\n", "I hear it.", "", False,
                                                                              "</th")


def test_cancel_frees_the_row_and_others_continue(engine):
    alone = ids_of(engine.generate([PROMPTS[2]], GREEDY))[0]
    long = engine.add(PROMPTS[1], SamplingParams(max_tokens=500, temperature=0, stop_token_ids=[]))
    keep = engine.add(PROMPTS[2], GREEDY)
    for _ in range(4):
        engine.step()
    engine.cancel(long)
    engine.step()
    assert long.done.is_set() and engine.completions(long)[0].finish_reason == "cancelled"
    assert engine.num_running == 1
    while not keep.done.is_set():
        engine.step()
    assert engine.completions(keep)[0].token_ids == alone


def test_a_failing_prefill_fails_only_its_request(engine):
    patch = engine.tokenizer.audio_patch_id
    broken = Encoded(engine.processor.encode(PROMPTS[0]).input_ids + [patch])  # a patch without audio
    with pytest.raises(EngineError, match="audio_patch"):
        engine.generate([broken], GREEDY)
    alone = ids_of(engine.generate([PROMPTS[0]], GREEDY))[0]
    good, bad = engine.add(PROMPTS[0], GREEDY), engine.add(broken, GREEDY)  # admitted in one batch
    while not (good.done.is_set() and bad.done.is_set()):
        engine.step()
    assert bad.error and "audio_patch" in bad.error
    assert good.error is None and engine.completions(good)[0].token_ids == alone


def test_audio_placeholders_are_never_generated(tmp_path_factory):
    engine = Engine.from_pretrained(tiny_checkpoint(tmp_path_factory))
    patch = engine.tokenizer.audio_patch_id
    with torch.no_grad():
        engine.model.lm_head.weight[patch] = engine.model.lm_head.weight.abs().max() * 50  # the model "wants" it
    for fast in (True, False):  # the slow path would fail in embed() on a sampled <audio_patch>
        engine.fast_decode = fast
        for params in (GREEDY, SamplingParams(max_tokens=12, temperature=1.0, seed=0, stop_token_ids=[])):
            ids = engine.generate([user("hi")], params)[0][0].token_ids
            assert ids and patch not in ids and engine.tokenizer.audio_start_id not in ids


def test_sampling_defaults_come_from_the_checkpoint_once(tmp_path_factory, tmp_path):
    """One resolution for the CLI, the server and the evaluation: explicit value > the checkpoint's
    generation_config.json > `SamplingParams`' own defaults."""
    import shutil

    from audior1.checkpoint import CheckpointError, generation_defaults
    from audior1.eval.backends import LocalBackend, Sampling
    from audior1.server import ServerConfig, parse_chat_request

    path = tiny_checkpoint(tmp_path_factory)
    engine = Engine.from_pretrained(path)
    assert engine.generation_defaults == {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.0}
    assert (engine.sampling_params().top_p, engine.sampling_params(top_p=0.5, temperature=None).top_p) == (0.9, 0.5)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    server_params = parse_chat_request(body, ServerConfig(), engine.generation_defaults).params
    assert (server_params.temperature, server_params.top_p) == (0.7, 0.9)
    assert parse_chat_request({**body, "top_p": 0.3}, ServerConfig(), engine.generation_defaults).params.top_p == 0.3
    assert LocalBackend("unused", engine=engine)._params(Sampling()).top_p == 0.9  # the eval leaves top_p unset
    # Without the file: the class's own defaults; a broken file: an error naming it.
    bare = tmp_path / "bare"
    shutil.copytree(path, bare)
    (bare / "generation_config.json").unlink()
    assert generation_defaults(bare) == {} and SamplingParams.resolve(generation_defaults(bare)).top_p == 1.0
    (bare / "generation_config.json").write_text('{"top_p": "high"}')
    with pytest.raises(CheckpointError, match="generation_config.json.*top_p"):
        generation_defaults(bare)
