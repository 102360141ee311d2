"""audior1.chat: golden renderings of the Step-Audio-R1 prompt format, loss masks, reasoning parsing and
the small tokenizer (determinism, exact size, special tokens, streaming decode)."""

import hashlib
import json
import subprocess
import sys

import pytest
from tokenizers import Tokenizer, pre_tokenizers

from audior1 import chat
from audior1.chat import (ChatTokenizer, ConversationError, IncrementalDecoder, ReasoningSplit, TokenizerError,
                          encode_conversation, encode_prompt, format_target, mcq_prompt, render_placeholder_prompt,
                          render_prompt, split_reasoning, train_small_tokenizer)


@pytest.fixture(scope="module")
def tok() -> ChatTokenizer:
    return train_small_tokenizer()


@pytest.fixture(scope="module")
def official() -> ChatTokenizer:
    return chat.official_layout_tokenizer()


def _without_tokens(tokenizer: ChatTokenizer, *dropped: str) -> dict:
    spec = json.loads(tokenizer.backend.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] not in dropped]
    return spec


def user(*parts):
    return {"role": "user", "content": list(parts)}


def text(s):
    return {"type": "text", "text": s}


def audio(*counts):
    return {"type": "audio", "num_tokens": list(counts)}


# ---- golden renderings -----------------------------------------------------------------------------

def test_single_user_turn_text_then_audio():
    prompt = render_prompt([user(text("What is the pitch?\n"), audio(3))])
    assert prompt == ("<|BOT|>human\nWhat is the pitch?\n"
                      "<audio_start><audio_patch><audio_patch><audio_patch><audio_end><|EOT|>"
                      "<|BOT|>assistant\n<think>\n")


def test_system_tools_and_multi_turn_history():
    tools = [{"type": "function", "function": {"name": "measure_pitch", "description": "Hz — estimate",
                                               "parameters": {"type": "object", "properties": {}}}}]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "human", "content": [text("Again:"), audio(2)]},
        {"role": "assistant", "content": "<think>\nok\n</think>\nDone."},
        {"role": "function_output", "content": '{"pitch": 440}'},
        {"role": "user", "content": "And now?"},
    ]
    assert render_prompt(messages, tools=tools) == (
        "<|BOT|>system\nBe brief.<|EOT|>"
        '<|BOT|>tool_json_schemas\n[{"type": "function", "function": {"name": "measure_pitch", '
        '"description": "Hz — estimate", "parameters": {"type": "object", "properties": {}}}}]<|EOT|>'
        "<|BOT|>human\nHi<|EOT|>"
        "<|BOT|>assistant\nHello.<|EOT|>"
        "<|BOT|>human\nAgain:<audio_start><audio_patch><audio_patch><audio_end><|EOT|>"
        "<|BOT|>assistant\n<think>\nok\n</think>\nDone.<|EOT|>"
        '<|BOT|>function_output\n{"pitch": 440}<|EOT|>'
        "<|BOT|>human\nAnd now?<|EOT|>"
        "<|BOT|>assistant\n<think>\n")


def test_tools_without_system_come_first():
    assert render_prompt([{"role": "user", "content": "Hi"}], tools=[{"name": "f"}]) == (
        '<|BOT|>tool_json_schemas\n[{"name": "f"}]<|EOT|><|BOT|>human\nHi<|EOT|><|BOT|>assistant\n<think>\n')


def test_several_audio_items():
    prompt = render_prompt([user(text("First:"), audio(1), text("\nSecond:"), audio(2), audio(1))],
                           add_generation_prompt=False)
    assert prompt == ("<|BOT|>human\nFirst:<audio_start><audio_patch><audio_end>"
                      "\nSecond:<audio_start><audio_patch><audio_patch><audio_end>"
                      "<audio_start><audio_patch><audio_end><|EOT|>")


def test_one_audio_item_of_two_chunks():
    prompt = render_prompt([user(audio(2, 1), text("Describe it."))], add_generation_prompt=False)
    assert prompt == ("<|BOT|>human\n<audio_start><audio_patch><audio_patch><audio_end>"
                      "<audio_start><audio_patch><audio_end>Describe it.<|EOT|>")


def test_checkpoint_spec_example(tok, official):
    # docs/design.md §3.1: one 25 s chunk, question before the audio
    messages = [user(text("Which …?\nA. …\n"), audio(313))]
    expected = ("<|BOT|>human\nWhich …?\nA. …\n<audio_start>" + "<audio_patch>" * 313
                + "<audio_end><|EOT|><|BOT|>assistant\n<think>\n")
    assert render_prompt(messages) == expected
    for tokenizer in (tok, official):
        ids = encode_prompt(tokenizer, messages)
        start = ids.index(tokenizer.audio_start_id)
        assert ids[start + 1:start + 314] == [tokenizer.audio_patch_id] * 313
        assert ids[start + 314:start + 317] == [tokenizer.audio_end_id, tokenizer.eot_id, tokenizer.bot_id]
        assert tokenizer.decode(ids) == expected
    ids = encode_prompt(official, messages)
    assert ids.count(151690) == 313 and 151688 in ids and 151689 in ids and ids.count(151665) == 1


def test_no_think_prompt():
    assert render_prompt([{"role": "user", "content": "2+2?"}], think=False) == (
        "<|BOT|>human\n2+2?<|EOT|><|BOT|>assistant\n<think>\n\n</think>\n")


def test_continue_final_message():
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nThe user"}]
    # continuing wins over the default add_generation_prompt=True: no second assistant header
    assert render_prompt(messages, continue_final_message=True) == (
        "<|BOT|>human\nHi<|EOT|><|BOT|>assistant\n<think>\nThe user")
    # not continued: the last assistant turn is closed (a training target)
    assert render_prompt(messages, add_generation_prompt=False).endswith("<think>\nThe user<|EOT|>")
    with pytest.raises(ConversationError, match="assistant message last"):
        render_prompt(messages[:1], continue_final_message=True)


def test_placeholder_form_matches_the_official_template_output():
    messages = [{"role": "system", "content": "S"}, user(text("Listen:\n"), audio(313, 12), audio(5))]
    assert render_placeholder_prompt(messages) == (
        "<|BOT|>system\nS<|EOT|><|BOT|>human\nListen:\n<audio_patch><audio_patch><|EOT|>"
        "<|BOT|>assistant\n<think>\n")
    # num_tokens is only needed once audio is expanded
    assert render_placeholder_prompt([user({"type": "audio"})], add_generation_prompt=False) == (
        "<|BOT|>human\n<audio_patch><|EOT|>")


@pytest.mark.parametrize("bad, match", [
    ([user({"type": "audio"})], "num_tokens"),
    ([user(audio(-1))], "num_tokens"),
    ([user({"type": "image_url", "image_url": "x"})], "part 0"),
    ([{"content": "no role"}], "message 0"),
    ([{"role": "user", "content": 5}], "message 0"),
])
def test_bad_messages_are_named(bad, match):
    with pytest.raises(ConversationError, match=match):
        render_prompt(bad)


def test_chat_template_in_tokenizer_config_matches_placeholder_rendering(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    tools = [{"type": "function", "function": {"name": "f", "description": "é", "parameters": {}}}]
    conversations = [
        [user(text("Which is higher?\n"), audio(3))],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
         {"role": "user", "content": "c"}],
        [{"role": "user", "content": "a"}, {"role": "function_output", "content": "{}"}],
    ]
    for messages in conversations:
        for tool_list in (None, tools):
            for think in (True, False):
                assert hf.apply_chat_template(messages, tools=tool_list, tokenize=False, add_generation_prompt=True,
                                              enable_thinking=think) == \
                    render_placeholder_prompt(messages, tools=tool_list, think=think)
    prefill = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<think>\n"}]
    assert hf.apply_chat_template(prefill, tokenize=False, continue_final_message=True) == \
        render_placeholder_prompt(prefill, continue_final_message=True)


# ---- targets and reasoning parsing -----------------------------------------------------------------

def test_format_target():
    assert format_target("The first tone is higher.", "A") == "<think>\nThe first tone is higher.\n</think>\nA"
    assert format_target(None, "A") == "<think>\n\n</think>\nA"
    assert format_target("", "A") == format_target("  \n", "A") == "<think>\n\n</think>\nA"


@pytest.mark.parametrize("completion, expected", [
    # (reasoning, answer, closed, closings) by the one rule: the answer starts after the FIRST </think>
    ("<think>\nI hear two tones.\n</think>\nB", ("I hear two tones.", "B", True, 1)),  # opening tag echoed
    ("I hear two tones.\n</think>\nB", ("I hear two tones.", "B", True, 1)),           # prompt pre-filled <think>
    ("I hear two tones. The first", ("I hear two tones. The first", "", False, 0)),  # truncated: no closing tag
    ("<think>\nI hear", ("I hear", "", False, 0)),
    ("one\n</think>\ntwo\n</think>\nB", ("one", "two\n</think>\nB", True, 2)),       # a second close is answer text
    ("<think>\none</think>\n<think>\ntwo</think>\nB", ("one", "<think>\ntwo</think>\nB", True, 2)),
    ("<think>\n\n</think>\nB", ("", "B", True, 1)),                                   # empty reasoning
    ("\n</think>\n\n  B  \n", ("", "B", True, 1)),
    ("r\n</think>\n", ("r", "", True, 1)),                                            # closed, answer missing
    ("<thi", ("<thi", "", False, 0)),                                                # not (yet) an opening tag
    ("", ("", "", False, 0)),
])
def test_split_reasoning(completion, expected):
    assert split_reasoning(completion) == ReasoningSplit(*expected)


def test_split_reasoning_of_an_answer_only_output():
    """After a no-think prompt the output is all answer; a `</think>` in it stays text (and is counted)."""
    assert split_reasoning("  B  ", in_reasoning=False) == ReasoningSplit("", "B", True, 0)
    assert split_reasoning("r</think>B", in_reasoning=False) == ReasoningSplit("", "r</think>B", True, 1)


def test_split_reasoning_inverts_format_target():
    completion = format_target("Because 3 > 2.", "The first.")
    assert split_reasoning(completion) == ReasoningSplit("Because 3 > 2.", "The first.", True, 1)
    assert split_reasoning(completion[len(chat.THINK_PREFILL):]) == split_reasoning(completion)


def test_mcq_prompt_is_step_audio_r1s():
    assert mcq_prompt("Which tone is higher?", ["the first", "the second"]) == (
        "Which tone is higher?\nPlease choose the answer from the following options, do not provide any additional "
        "explanations or content: \nA. the first\nB. the second\n")
    assert mcq_prompt("Q", ["x"], template="{options}|{question}") == "A. x\n|Q"
    with pytest.raises(ValueError, match="at least one choice"):
        mcq_prompt("q", [])


# ---- ids and loss masks ----------------------------------------------------------------------------

def _trained_text(tokenizer, ids, mask):
    return tokenizer.decode([i for i, m in zip(ids, mask) if m])


def test_loss_mask_covers_assistant_content_and_eot_only(tok):
    first, second = format_target("I hear two tones.", "B"), format_target(None, "Yes.")
    messages = [{"role": "system", "content": "Be brief."}, user(text("Which?\n"), audio(4, 2)),
                {"role": "assistant", "content": first}, {"role": "user", "content": "Sure?"},
                {"role": "assistant", "content": second}]
    ids, mask = encode_conversation(tok, messages, tools=[{"name": "f"}])
    assert len(ids) == len(mask)
    assert ids == tok.encode(render_prompt(messages, tools=[{"name": "f"}], add_generation_prompt=False))
    assert _trained_text(tok, ids, mask) == first + "<|EOT|>" + second + "<|EOT|>"
    untrained = {i for i, m in zip(ids, mask) if not m}
    assert {tok.audio_start_id, tok.audio_patch_id, tok.audio_end_id, tok.bot_id} <= untrained
    header = tok.encode("<|BOT|>assistant\n")
    start = next(k for k in range(len(ids)) if ids[k:k + len(header)] == header)
    assert not any(mask[start:start + len(header)]) and mask[start + len(header)]


def test_loss_mask_with_generation_prompt_and_audio_in_assistant_content(tok):
    messages = [{"role": "user", "content": "a"},
                {"role": "assistant", "content": [text("Here: "), audio(2), text(" done")]}]
    ids, mask = encode_conversation(tok, messages, add_generation_prompt=True)
    assert _trained_text(tok, ids, mask) == "Here:  done<|EOT|>"
    assert tok.decode(ids).endswith("<|EOT|><|BOT|>assistant\n<think>\n") and not mask[-1]


def test_loss_mask_when_think_tags_are_plain_text(tok):
    plain = ChatTokenizer(Tokenizer.from_str(json.dumps(_without_tokens(tok, "<think>", "</think>"))))
    assert plain.token_to_id("</think>") is None and not plain.think_markers_are_tokens
    assert len(plain.encode("</think>")) > 1 and plain.decode(plain.encode("</think>")) == "</think>"
    target = format_target("Two tones; the second is higher.", "B")
    ids, mask = encode_conversation(plain, [{"role": "user", "content": "Q"}, {"role": "assistant", "content": target}])
    assert _trained_text(plain, ids, mask) == target + "<|EOT|>"
    assert plain.decode(encode_prompt(plain, [{"role": "user", "content": "Q"}], think=False)).endswith(
        "<|BOT|>assistant\n<think>\n\n</think>\n")


def test_content_starting_with_whitespace_still_matches_whole_encoding(tok):
    ids, mask = encode_conversation(tok, [{"role": "user", "content": "Q"},
                                          {"role": "assistant", "content": "\n\n  B"}])
    assert ids == tok.encode("<|BOT|>human\nQ<|EOT|><|BOT|>assistant\n\n\n  B<|EOT|>")
    assert _trained_text(tok, ids, mask).endswith("  B<|EOT|>")


# ---- the small tokenizer ---------------------------------------------------------------------------

def test_training_is_deterministic(tok, tmp_path):
    again = train_small_tokenizer()
    tok.save(tmp_path / "a")
    again.save(tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    # and across processes, whose hash seeds differ
    code = ("import hashlib; from audior1.chat import train_small_tokenizer; "
            "print(hashlib.sha256(train_small_tokenizer().backend.to_str().encode()).hexdigest())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == hashlib.sha256(tok.backend.to_str().encode()).hexdigest()


@pytest.mark.parametrize("size", [512, 1024])
def test_vocab_size_is_exact(size):
    assert train_small_tokenizer(size).vocab_size == size


def test_too_small_corpus_is_an_error(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("a b c\n")
    with pytest.raises(TokenizerError, match="tiny.txt"):
        train_small_tokenizer(1024, corpus_path=corpus)


def test_special_tokens_are_single_ids_at_the_end(tok):
    ids = [tok.token_to_id(t) for t in chat.SPECIAL_TOKENS]
    assert ids == list(range(1024 - len(chat.SPECIAL_TOKENS), 1024))
    for token, token_id in zip(chat.SPECIAL_TOKENS, ids):
        assert tok.encode(f"a{token}b")[1:-1] == [token_id]
    assert tok.stop_ids == [tok.eot_id, tok.endoftext_id, tok.token_to_id("<|im_end|>")]
    assert tok.think_markers_are_tokens and tok.encode("</think>") == [tok.token_to_id("</think>")]
    assert tok.bot_id is not None and tok.audio_patch_id is not None


def test_digits_are_split(tok):
    pieces = [tok.decode([i]) for i in tok.encode("The tone is 1760 Hz, 3+4=7.")]
    assert "1" in pieces and "7" in pieces and "6" in pieces and "0" in pieces
    assert all(not (any(c.isdigit() for c in p) and len(p.strip()) > 1) for p in pieces)


def test_decode_round_trip_and_skipping_specials(tok):
    s = "<|BOT|>human\nnaïve 音频, 440 Hz<|EOT|><think>\nr\n</think>\nB"
    assert tok.decode(tok.encode(s)) == s
    assert tok.decode(tok.encode(s), skip_special_tokens=True) == "human\nnaïve 音频, 440 Hz<think>\nr\n</think>\nB"


def test_save_and_from_dir_round_trip(tok, tmp_path):
    tok.save(tmp_path)
    loaded = ChatTokenizer.from_dir(tmp_path)
    assert loaded.backend.to_str() == tok.backend.to_str()
    sample = "<|BOT|>assistant\n<think>\nThe second tone is higher.\n</think>\nB<|EOT|>"
    assert loaded.encode(sample) == tok.encode(sample)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|EOT|>" and config["pad_token"] == "<|endoftext|>"
    extra = config["additional_special_tokens"]
    assert "<audio_patch>" in extra and "<think>" not in extra
    assert "tool_json_schemas" in config["chat_template"]


def test_missing_files_and_tokens_name_the_path(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ChatTokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps(_without_tokens(tok, "<|BOT|>")))
    with pytest.raises(TokenizerError, match=r"tokenizer\.json.*<\|BOT\|>"):
        ChatTokenizer.from_dir(tmp_path)


def test_byte_alphabet_matches_the_library():
    assert set(chat._BYTE_OF_CHAR) == set(pre_tokenizers.ByteLevel.alphabet())
    assert sorted(chat._BYTE_OF_CHAR.values()) == list(range(256))


def test_incremental_decoder_emits_only_complete_characters(tok):
    s = "naïve 音频 — ok"
    ids = tok.encode(s)
    decoder = IncrementalDecoder(tok)
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces) + decoder.flush() == s
    assert all("\ufffd" not in p for p in pieces)
    assert "" in pieces  # some character really was split across tokens


def test_incremental_decoder_specials_and_truncation(tok):
    ids = tok.encode("<think>\nA<|EOT|>")
    assert "".join(IncrementalDecoder(tok).push(i) for i in ids) == "<think>\nA<|EOT|>"
    assert "".join(IncrementalDecoder(tok, skip_special_tokens=True).push(i) for i in ids) == "<think>\nA"
    half = tok.encode("音")[:-1]
    decoder = IncrementalDecoder(tok)
    assert "".join(decoder.push(i) for i in half) == "" and decoder.flush() == "\ufffd"


# ---- released-id layouts ---------------------------------------------------------------------------

def test_official_layout_ids(official):
    expected = {"<|endoftext|>": 151643, "<|im_end|>": 151645, "<tool_call>": 151657, "<|EOT|>": 151665,
                "<audio_start>": 151688, "<audio_end>": 151689, "<audio_patch>": 151690,
                "<tts_start>": 151693, "<tts_end>": 151694}
    assert {t: official.token_to_id(t) for t in expected} == expected
    # As released: the think markers are text, split into several tokens; the THINK specials exist (at guessed
    # ids, marked as guesses in the one table) and are special, so skip_special_tokens drops them.
    assert not official.think_markers_are_tokens and len(official.encode("</think>")) > 1
    assert official.decode(official.encode("<think>\nr\n</think>\nB")) == "<think>\nr\n</think>\nB"
    assert {official.token_to_id(chat.THINK_START_SPECIAL), official.token_to_id(chat.THINK_END_SPECIAL)} == \
        {151669, 151670} <= chat.GUESSED_IDS
    assert official.decode([151669, 151670], skip_special_tokens=True) == ""
    assert {t: i for i, t in chat.OFFICIAL_LAYOUT.items()}["<|EOT|>"] == 151665 and 151665 not in chat.GUESSED_IDS
    config = official.transformers_config()
    assert chat.THINK_END_SPECIAL in config["additional_special_tokens"] and "</think>" not in json.dumps(
        config["additional_special_tokens"])
    assert official.stop_ids == [151665, 151643, 151645]
    assert official.vocab_size <= 158720
    s = "<|BOT|>human\nHow many beeps? 3<|EOT|>"
    assert official.decode(official.encode(s)) == s


def test_step_tokenizer_from_qwen(official, tmp_path):
    qwen = json.loads(official.backend.to_str())
    qwen["added_tokens"] = [t for t in qwen["added_tokens"] if t["id"] < 151665]  # Qwen2.5 stops at 151664
    (tmp_path / "tokenizer.json").write_text(json.dumps(qwen))
    step = chat.step_tokenizer_from_qwen(tmp_path)
    assert step.backend.to_str() == official.backend.to_str()
    qwen["added_tokens"].append({**qwen["added_tokens"][-1], "id": 151665, "content": "<tool_response>"})
    (tmp_path / "tokenizer.json").write_text(json.dumps(qwen))
    with pytest.raises(TokenizerError, match="151665"):
        chat.step_tokenizer_from_qwen(tmp_path)
