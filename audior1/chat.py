"""The Step-Audio-R1 chat format: tokenizer, prompt rendering, training targets and reasoning parsing.

Design choices
- One renderer. Every prompt is first rendered into `Segment`s (text + "does the loss see it?"); the prompt
  string, the placeholder form, the token ids and the loss mask are all derived from that one list, so they
  cannot drift apart. The layout is docs/design.md §3, rendered as plain text:
  `<|BOT|>{role}\\n{content}<|EOT|>` per turn, users as `human`, each 25 s audio chunk as
  `<audio_start>` + n×`<audio_patch>` + `<audio_end>`.
- Two deliberate departures from the official jinja template, which has quirks: (1) tools without a system
  message render only the `tool_json_schemas` turn (the official template opens an empty, never closed
  `<|BOT|>system\\n`); (2) every turn is closed by `<|EOT|>` except a final assistant turn that is being
  continued (the official template leaves the last assistant turn open even when a user turn follows, and
  renders nothing for `function_output`). String content is verbatim: no `"<audio_patch>\\n"` rewriting.
- Thinking: the generation prompt pre-fills `<think>\\n`; `think=False` pre-fills an empty, closed block
  `<think>\\n\\n</think>\\n` — the same form the cold-start data uses for answers without reasoning, so the
  model has seen it. `continue_final_message=True` leaves the last assistant turn open and adds no prompt.
- Loss mask: assistant content and its closing `<|EOT|>` are trained; the `<|BOT|>assistant\\n` header,
  other turns and all audio tokens are not. Text is encoded in runs split at the tokenizer's own added
  tokens (exactly what the tokenizer does), each token takes the mask of its first character, and the
  result is checked against encoding the whole string, so training sees the ids inference sees.
- Think markers: in the released tokenizer `<think>`/`</think>` are ordinary multi-token text, and the
  official-layout tokenizers built here write them the same way; the small tiny/demo vocabulary has them as
  single *non-special* added tokens (they survive `skip_special_tokens`). Nothing assumes either: every
  consumer finds the markers in decoded text, and ids are always read from the tokenizer.
- One rule for where the answer starts (`split_reasoning`): after the FIRST `</think>` the model writes. It is
  the rule of vLLM's reasoning parsers and the only one a stream can honour without taking back text it has
  already sent, so the engine's stream, the server's response, the scorer and the rewards all agree on the
  same output. For well-formed outputs (one `</think>`) it equals "after the last"; a second `</think>` is
  part of the answer and is counted (`closings`) so reports can flag it.
- The small tokenizer (tiny/demo presets) is a byte-level BPE trained on `assets/tokenizer_corpus.txt`, digits
  split one by one, special tokens placed last in the released order (text ids first, as in the real
  vocabulary). Training is deterministic: same corpus bytes, same `tokenizer.json` bytes.
- Released ids: `official_layout_tokenizer` (random official-size checkpoints) and `step_tokenizer_from_qwen`
  (checkpoints assembled from Qwen2.5) put the Step tokens at the ids of `OFFICIAL_SPECIALS` (the one table,
  each id marked released, inherited or guessed), e.g. `<|EOT|>` 151665 and `<audio_patch>` 151690, with
  fillers in between: tokenizers numbers added tokens consecutively.
- Streaming: `IncrementalDecoder` works on bytes (byte-level tokens map 1:1 to bytes) and lets Python's
  incremental UTF-8 decoder hold back incomplete characters, so no character is emitted half-made.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from audior1.config import OFFICIAL_AUDIO_PATCH_ID

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
EOT, BOT = "<|EOT|>", "<|BOT|>"
AUDIO_START, AUDIO_END, AUDIO_PATCH = "<audio_start>", "<audio_end>", "<audio_patch>"
TTS_START, TTS_END = "<tts_start>", "<tts_end>"

# ---- the think markers: the one home of every chat-format fact about reasoning ----
# `<think>`/`</think>` are what the template and the model write. In the released tokenizer they are ordinary
# multi-token text (`</think` + `>`); the released vocabulary also has the specials `<|THINK_START|>` /
# `<|THINK_END|>`, which the template never uses. Code that finds, forces or masks the end of reasoning
# therefore works on decoded text, never on one token id.
THINK_START, THINK_END = "<think>", "</think>"
THINK_START_SPECIAL, THINK_END_SPECIAL = "<|THINK_START|>", "<|THINK_END|>"
THINK_PREFILL = f"{THINK_START}\n"  # the generation prompt ends here: the model reasons next
NO_THINK_PREFILL = f"{THINK_START}\n\n{THINK_END}\n"  # an empty, closed block: the model answers next
REASONING_END = f"\n{THINK_END}\n"  # between reasoning and answer; what a spent thinking budget forces

# The small (tiny/demo) vocabulary's added tokens, in id order. Its think markers are single tokens (added as
# non-special, so `skip_special_tokens` keeps them), unless built with `think_tokens=False`.
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, EOT, BOT, THINK_START, THINK_END,
                  AUDIO_START, AUDIO_END, AUDIO_PATCH, TTS_START, TTS_END)
REQUIRED_TOKENS = (EOT, BOT, AUDIO_START, AUDIO_END, AUDIO_PATCH)
PLAIN_TEXT_TOKENS = (THINK_START, THINK_END)  # added tokens, but kept by skip_special_tokens
STOP_TOKENS = (EOT, ENDOFTEXT, IM_END)

GENERATION_PROMPT = f"{BOT}assistant\n{THINK_PREFILL}"
NO_THINK_GENERATION_PROMPT = f"{BOT}assistant\n{NO_THINK_PREFILL}"

# The multiple-choice prompt of Step-Audio-R1's released examples (MMAU, MMSU, MMAR, and our synthetic suite):
# the question, this instruction, then one `A. {option}` line per option in the order presented.
MCQ_INSTRUCTION = ("Please choose the answer from the following options, do not provide any additional "
                   "explanations or content: ")

MCQ_TEMPLATE = "{question}\n" + MCQ_INSTRUCTION + "\n{options}"

DEFAULT_CORPUS = Path(__file__).parent / "assets" / "tokenizer_corpus.txt"
SMALL_VOCAB_SIZE = 1024

# The released vocabulary from 151643 on, one row per token we place: (id, token, evidence). "released": the id
# appears in StepFun's released code, configs or examples; "inherited": Qwen2.5's own added tokens; "guess":
# nothing published pins the id, so it is our choice inside the range the evidence allows (docs/design.md §3).
# Guesses only matter for checkpoints audior1 builds, whose tokenizer ships with them; a real checkpoint's
# tokenizer files always win, because every id is read from the tokenizer.
OFFICIAL_FIRST_ADDED_ID = 151643
_QWEN_ADDED_TOKENS = (ENDOFTEXT, IM_START, IM_END, "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
                      "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                      "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
                      "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
                      "<|file_sep|>")
OFFICIAL_SPECIALS = (
    *((OFFICIAL_FIRST_ADDED_ID + i, token, "inherited") for i, token in enumerate(_QWEN_ADDED_TOKENS)),
    (151665, EOT, "released"),  # stop_token_ids=[151665] in the official client
    (151666, BOT, "guess"),  # somewhere in 151666-151687
    (151669, THINK_START_SPECIAL, "guess"),  # "about 151669" (vllm-omni's Step-Audio reasoning parser)
    (151670, THINK_END_SPECIAL, "guess"),  # "about 151670"; unused by the template
    (151688, AUDIO_START, "released"),  # the HF forward finds audio at input_ids == 151688
    (151689, AUDIO_END, "guess"),  # between start and patch; not verified
    (OFFICIAL_AUDIO_PATCH_ID, AUDIO_PATCH, "released"),  # vLLM's AUDIO_PATCH_TOKEN_ID (151690)
    (151693, TTS_START, "released"),  # comments in the vLLM and sglang tokenizers (TTS only)
    (151694, TTS_END, "released"),
)
OFFICIAL_LAYOUT = {token_id: token for token_id, token, _ in OFFICIAL_SPECIALS}
GUESSED_IDS = frozenset(token_id for token_id, _, evidence in OFFICIAL_SPECIALS if evidence == "guess")


class TokenizerError(ValueError):
    """A tokenizer that cannot serve the Step chat format (the message names its source)."""


class ConversationError(ValueError):
    """A message list the chat format cannot render (the message names the message and part)."""


# ---- tokenizer -------------------------------------------------------------------------------------

def _byte_level_chars() -> dict[str, int]:
    """The byte-level BPE alphabet, char → byte: printable Latin-1 bytes stand for themselves and the
    other 68 bytes are shifted past 255 in byte order, so every byte has a visible character."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    chars, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + shifted)] = byte
            shifted += 1
    return chars


_BYTE_OF_CHAR = _byte_level_chars()


class ChatTokenizer:
    """A `tokenizers.Tokenizer` plus the ids the chat format needs, all read from the vocabulary."""

    def __init__(self, backend: Tokenizer, *, source: str = "tokenizer"):
        missing = [t for t in REQUIRED_TOKENS if backend.token_to_id(t) is None]
        if missing:
            raise TokenizerError(f"{source}: required special token(s) {', '.join(missing)} not in the vocabulary")
        self.backend = backend
        self.source = source
        self._added = backend.get_added_tokens_decoder()  # id → AddedToken
        # Longest first, so the regex picks the longest token at a position, as the tokenizer does.
        contents = sorted({t.content for t in self._added.values()}, key=len, reverse=True)
        self._added_pattern = re.compile("|".join(map(re.escape, contents))) if contents else None
        self._byte_level = isinstance(backend.decoder, decoders.ByteLevel)

    @classmethod
    def from_dir(cls, path: str | Path) -> "ChatTokenizer":
        file = Path(path) / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(
                f"{file}: no tokenizer.json (a checkpoint with only vocab.json/merges.txt can be converted with "
                "transformers: AutoTokenizer.from_pretrained(dir).backend_tokenizer.save(dir + '/tokenizer.json'))")
        return cls(Tokenizer.from_file(str(file)), source=str(file))

    def save(self, path: str | Path) -> None:
        """Write tokenizer.json and a transformers-readable tokenizer_config.json (with the chat template)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(path / "tokenizer.json"))
        config = self.transformers_config()
        (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")

    def transformers_config(self) -> dict:
        # eos is the end of an assistant turn (what generation stops on); pad is <|endoftext|>, as released.
        pad = ENDOFTEXT if self.endoftext_id is not None else EOT
        extra = [t for t in (*SPECIAL_TOKENS, THINK_START_SPECIAL, THINK_END_SPECIAL)
                 if self.token_to_id(t) is not None and t not in (EOT, pad) and t not in PLAIN_TEXT_TOKENS]
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None, "eos_token": EOT, "pad_token": pad, "unk_token": None,
            "additional_special_tokens": extra,
            "add_bos_token": False, "add_eos_token": False,
            "clean_up_tokenization_spaces": False, "split_special_tokens": False,
            "chat_template": CHAT_TEMPLATE,
        }

    # ---- encoding and decoding ----

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; added tokens in the text become single ids; no BOS is added."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def token_bytes(self, token_id: int, skip_special_tokens: bool = False) -> bytes:
        """The exact bytes one token stands for (a byte-level token may hold part of a character)."""
        added = self._added.get(token_id)
        if added is not None:
            return b"" if skip_special_tokens and added.special else added.content.encode("utf-8")
        token = self.backend.id_to_token(token_id)
        if token is None:
            raise TokenizerError(f"{self.source}: no token with id {token_id}")
        if self._byte_level:
            try:
                return bytes(_BYTE_OF_CHAR[char] for char in token)
            except KeyError:
                pass  # not a byte-level token string: let the decoder say what it means
        return self.backend.decode([token_id]).encode("utf-8")

    def split_added_tokens(self, text: str) -> list[tuple[int, str, bool]]:
        """`text` cut at the tokenizer's added tokens: (start, piece, is_added_token) in order."""
        pieces, start = [], 0
        for match in (self._added_pattern.finditer(text) if self._added_pattern else ()):
            if match.start() > start:
                pieces.append((start, text[start:match.start()], False))
            pieces.append((match.start(), match.group(), True))
            start = match.end()
        if start < len(text):
            pieces.append((start, text[start:], False))
        return pieces

    # ---- ids the rest of audior1 needs ----

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def eot_id(self) -> int:
        return self.token_to_id(EOT)

    @property
    def bot_id(self) -> int:
        return self.token_to_id(BOT)

    @property
    def endoftext_id(self) -> int | None:
        return self.token_to_id(ENDOFTEXT)

    @property
    def audio_start_id(self) -> int:
        return self.token_to_id(AUDIO_START)

    @property
    def audio_end_id(self) -> int:
        return self.token_to_id(AUDIO_END)

    @property
    def audio_patch_id(self) -> int:
        return self.token_to_id(AUDIO_PATCH)

    @property
    def stop_ids(self) -> list[int]:
        """Ids that end generation: <|EOT|> first, then <|endoftext|> and <|im_end|> where present."""
        return [i for i in (self.token_to_id(t) for t in STOP_TOKENS) if i is not None]

    @property
    def think_markers_are_tokens(self) -> bool:
        """Whether `<think>`/`</think>` are single tokens here (the small vocabulary) or text (the released one)."""
        return self.token_to_id(THINK_START) is not None and self.token_to_id(THINK_END) is not None

    def __repr__(self) -> str:
        return f"ChatTokenizer({self.source!r}, vocab_size={self.vocab_size})"


class IncrementalDecoder:
    """Streams text from token ids: `push` returns only newly completed characters, `flush` the rest."""

    def __init__(self, tokenizer: ChatTokenizer, *, skip_special_tokens: bool = False):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self.tokenizer.token_bytes(token_id, self.skip_special_tokens))

    def flush(self) -> str:
        """End of stream: an unfinished character left over is shown as U+FFFD."""
        return self._utf8.decode(b"", final=True)


# ---- building vocabularies -------------------------------------------------------------------------

def _train_text_bpe(vocab_size: int, corpus_path: str | Path | None) -> Tokenizer:
    """A byte-level BPE with exactly `vocab_size` text tokens (256 bytes + merges), no added tokens."""
    corpus = Path(corpus_path) if corpus_path is not None else DEFAULT_CORPUS
    text = corpus.read_text(encoding="utf-8")
    backend = Tokenizer(models.BPE())
    # Digits one by one, so a number's tokens are its digits (counting and arithmetic tasks read them).
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    # One document, not lines, so the pre-tokenizer meets newlines and blank lines as it will in prompts.
    backend.train_from_iterator([text], trainer)
    if backend.get_vocab_size() != vocab_size:
        raise TokenizerError(f"{corpus}: only {backend.get_vocab_size()} tokens could be learnt, "
                             f"{vocab_size} wanted (corpus too small for this vocabulary)")
    return backend


def _added_token(content: str) -> AddedToken:
    return AddedToken(content, special=content not in PLAIN_TEXT_TOKENS, normalized=False)


def train_small_tokenizer(vocab_size: int = SMALL_VOCAB_SIZE, corpus_path: str | Path | None = None, *,
                          think_tokens: bool = True) -> ChatTokenizer:
    """The tiny/demo tokenizer: byte-level BPE whose total size, special tokens included, is `vocab_size`.
    `think_tokens=False` leaves `<think>`/`</think>` as multi-token text, as in the released tokenizer."""
    added = SPECIAL_TOKENS if think_tokens else tuple(t for t in SPECIAL_TOKENS if t not in PLAIN_TEXT_TOKENS)
    if vocab_size < 256 + len(added):
        raise TokenizerError(f"vocab_size {vocab_size} is below the 256 bytes + {len(added)} special tokens")
    backend = _train_text_bpe(vocab_size - len(added), corpus_path)
    for token in added:  # one by one, so ids follow SPECIAL_TOKENS' order
        backend.add_tokens([_added_token(token)])
    markers = "" if think_tokens else ", think markers as text"
    return ChatTokenizer(backend, source=f"small byte-level BPE ({vocab_size}{markers})")


def _extend_to_official_layout(spec: dict, source: str) -> ChatTokenizer:
    """Append the Step tokens of `OFFICIAL_SPECIALS` at their ids to a tokenizer.json dict whose ids stop at or
    below 151643 (fresh) or at 151664 (Qwen2.5). Free ids in between get `<|reserved_N|>` fillers, because
    tokenizers numbers added tokens consecutively whatever ids the file states. The think markers stay text."""
    present = {entry["id"]: entry["content"] for entry in spec.get("added_tokens", [])}
    size = max([len(spec["model"]["vocab"]) - 1, *present]) + 1
    if size < OFFICIAL_FIRST_ADDED_ID and spec["model"]["type"] == "BPE":
        # unreachable fillers: no merge ever produces them, they only hold the ids
        spec["model"]["vocab"].update({f"<|unused_{i}|>": i for i in range(size, OFFICIAL_FIRST_ADDED_ID)})
    for token_id in range(OFFICIAL_FIRST_ADDED_ID, max(OFFICIAL_LAYOUT) + 1):
        wanted = OFFICIAL_LAYOUT.get(token_id, present.get(token_id, f"<|reserved_{token_id}|>"))
        if token_id in present and present[token_id] != wanted:
            raise TokenizerError(f"{source}: id {token_id} is {present[token_id]!r}, "
                                 f"the Step layout puts {wanted!r} there")
        if token_id not in present:
            spec.setdefault("added_tokens", []).append({
                "id": token_id, "content": wanted, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": wanted not in PLAIN_TEXT_TOKENS})
    tokenizer = ChatTokenizer(Tokenizer.from_str(json.dumps(spec)), source=source)
    wrong = {t: tokenizer.token_to_id(t) for i, t in OFFICIAL_LAYOUT.items() if tokenizer.token_to_id(t) != i}
    if wrong:
        raise TokenizerError(f"{source}: tokens did not land on their released ids: {wrong}")
    return tokenizer


def official_layout_tokenizer(corpus_path: str | Path | None = None) -> ChatTokenizer:
    """A tokenizer with the special tokens at the released ids, for random official-size checkpoints when no
    real vocabulary is at hand: the small byte-level BPE, unused ids up to 151642, then the Step layout."""
    text_bpe = _train_text_bpe(SMALL_VOCAB_SIZE - len(SPECIAL_TOKENS), corpus_path)
    return _extend_to_official_layout(json.loads(text_bpe.to_str()), "official-layout tokenizer")


def step_tokenizer_from_qwen(lm_dir: str | Path) -> ChatTokenizer:
    """A Qwen2.5 tokenizer.json (ids up to 151664) extended with the Step tokens at their released ids."""
    file = Path(lm_dir) / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no tokenizer.json")
    return _extend_to_official_layout(json.loads(file.read_text(encoding="utf-8")), str(file))


# ---- rendering -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """A stretch of the rendered prompt and whether the loss is computed on it."""

    text: str
    trainable: bool = False


def _audio_text(part: dict, expand: bool, where: str) -> str:
    if not expand:
        return AUDIO_PATCH  # the official template's placeholder, expanded by the server
    counts = part.get("num_tokens")
    if not isinstance(counts, (list, tuple)) or not counts or \
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise ConversationError(f"{where}: audio part needs 'num_tokens', a list of token counts per 25 s chunk "
                                f"(got {counts!r})")
    return "".join(AUDIO_START + AUDIO_PATCH * n + AUDIO_END for n in counts)


def _content_segments(content, trainable: bool, expand_audio: bool, where: str) -> list[Segment]:
    """Text parts verbatim (trainable if the turn is); audio never trainable: its patches are replaced."""
    if content is None:
        return []
    if isinstance(content, str):
        return [Segment(content, trainable)]
    if not isinstance(content, (list, tuple)):
        raise ConversationError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}")
    segments = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            segments.append(Segment(str(part.get("text", "")), trainable))
        elif kind == "audio":
            segments.append(Segment(_audio_text(part, expand_audio, f"{where} part {index}"), False))
        else:
            raise ConversationError(f"{where} part {index}: expected a 'text' or 'audio' part, got {part!r}")
    return segments


def _message_segments(message, index: int, expand_audio: bool, leave_open: bool) -> list[Segment]:
    where = f"message {index}"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not message["role"]:
        raise ConversationError(f"{where}: expected a dict with a 'role' string, got {message!r}")
    role = "human" if message["role"] in ("user", "human") else message["role"]
    is_assistant = role == "assistant"
    segments = [Segment(f"{BOT}{role}\n")]
    segments += _content_segments(message.get("content"), is_assistant, expand_audio, where)
    if not leave_open:
        segments.append(Segment(EOT, is_assistant))  # the model must learn to end its turn
    return segments


def render_segments(messages: list[dict], *, tools=None, add_generation_prompt: bool = True, think: bool = True,
                    continue_final_message: bool = False, expand_audio: bool = True) -> list[Segment]:
    """The prompt as segments; `render_prompt` and `encode_conversation` are views of this."""
    if continue_final_message and (not messages or not isinstance(messages[-1], dict)
                                   or messages[-1].get("role") != "assistant"):
        raise ConversationError("continue_final_message needs an assistant message last")
    tools_turn = Segment(f"{BOT}tool_json_schemas\n{json.dumps(tools, ensure_ascii=False)}{EOT}") if tools else None
    system_first = bool(messages) and isinstance(messages[0], dict) and messages[0].get("role") == "system"
    segments = [tools_turn] if tools_turn and not system_first else []
    for index, message in enumerate(messages):
        leave_open = continue_final_message and index == len(messages) - 1
        segments += _message_segments(message, index, expand_audio, leave_open)
        if index == 0 and tools_turn and system_first:
            segments.append(tools_turn)
    if add_generation_prompt and not continue_final_message:
        segments.append(Segment(GENERATION_PROMPT if think else NO_THINK_GENERATION_PROMPT))
    return segments


def render_prompt(messages: list[dict], *, tools=None, add_generation_prompt: bool = True, think: bool = True,
                  continue_final_message: bool = False) -> str:
    """The prompt string, each audio chunk expanded to `<audio_start>` + n×`<audio_patch>` + `<audio_end>`."""
    return "".join(s.text for s in render_segments(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, think=think,
        continue_final_message=continue_final_message))


def render_placeholder_prompt(messages: list[dict], *, tools=None, add_generation_prompt: bool = True,
                              think: bool = True, continue_final_message: bool = False) -> str:
    """As `render_prompt`, but each audio item is one `<audio_patch>` (the official template's output before
    the server expands it; `num_tokens` is not needed). Equals `CHAT_TEMPLATE` rendered by transformers."""
    return "".join(s.text for s in render_segments(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, think=think,
        continue_final_message=continue_final_message, expand_audio=False))


# Our own jinja for servers (vLLM, transformers) that render from tokenizer_config.json; it follows
# `render_placeholder_prompt` (tests hold them equal). `enable_thinking=false` is the no-think prompt;
# transformers' continue_final_message cuts the final `<|EOT|>` itself.
CHAT_TEMPLATE = (
    "{%- macro render_content(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- elif content is iterable and content is not mapping -%}"
    "{%- for part in content -%}"
    "{%- if part.type == 'text' -%}{{- part.text -}}"
    "{%- elif part.type == 'audio' -%}{{- '<audio_patch>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set system_first = messages and messages[0].role == 'system' -%}"
    "{%- if tools and not system_first -%}"
    "{{- '<|BOT|>tool_json_schemas\\n' + tools | tojson + '<|EOT|>' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set role = 'human' if message.role == 'user' else message.role -%}"
    "{{- '<|BOT|>' + role + '\\n' -}}{{- render_content(message.content) -}}{{- '<|EOT|>' -}}"
    "{%- if loop.first and tools and system_first -%}"
    "{{- '<|BOT|>tool_json_schemas\\n' + tools | tojson + '<|EOT|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|BOT|>assistant\\n<think>\\n' -}}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{- '\\n</think>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)


# ---- token ids and loss masks ----------------------------------------------------------------------

def _char_mask(segments: list[Segment]) -> list[bool]:
    return [flag for s in segments for flag in [s.trainable] * len(s.text)]


def encode_conversation(tokenizer: ChatTokenizer, messages: list[dict], *, tools=None,
                        add_generation_prompt: bool = False) -> tuple[list[int], list[bool]]:
    """Ids of a whole conversation and its loss mask (True on assistant content and its `<|EOT|>`)."""
    segments = render_segments(messages, tools=tools, add_generation_prompt=add_generation_prompt)
    text = "".join(s.text for s in segments)
    trainable = _char_mask(segments)
    ids, mask = [], []
    for start, piece, is_added in tokenizer.split_added_tokens(text):
        if is_added:
            ids.append(tokenizer.token_to_id(piece))
            mask.append(trainable[start])
            continue
        encoding = tokenizer.backend.encode(piece, add_special_tokens=False)
        ids += encoding.ids
        # A token belongs to the segment its first character is in (a merge across a boundary is rare).
        mask += [trainable[start + min(first, len(piece) - 1)] for first, _ in encoding.offsets]
    if ids != tokenizer.encode(text):
        raise AssertionError(f"{tokenizer.source}: piecewise encoding differs from encoding the whole prompt")
    return ids, mask


def encode_prompt(tokenizer: ChatTokenizer, messages: list[dict], **render_options) -> list[int]:
    """Ids of a prompt for generation; `render_options` as for `render_prompt`."""
    return tokenizer.encode(render_prompt(messages, **render_options))


# ---- targets and parsing ---------------------------------------------------------------------------

def format_target(reasoning: str | None, answer: str) -> str:
    """The assistant text to train on: `<think>\\n{reasoning}\\n</think>\\n{answer}`; no reasoning gives the
    empty block `<think>\\n\\n</think>\\n{answer}` (the paper's cold-start convention)."""
    reasoning = reasoning if reasoning and reasoning.strip() else ""
    return f"{THINK_PREFILL}{reasoning}{REASONING_END}{answer}"


def mcq_prompt(question: str, choices: list[str], template: str = MCQ_TEMPLATE) -> str:
    """A multiple-choice question as Step-Audio-R1's examples ask it: `{question}\\n{MCQ_INSTRUCTION}\\n` then
    one `A. {choice}\\n` line per option in the order given. `template` (with `{question}` and `{options}`)
    lets an evaluation pin another wording."""
    if not choices:
        raise ValueError("a multiple-choice prompt needs at least one choice")
    if len(choices) > 26:
        raise ValueError(f"a multiple-choice prompt has at most 26 choices (A-Z), got {len(choices)}")
    options = "".join(f"{chr(65 + i)}. {c}\n" for i, c in enumerate(choices))
    return template.format(question=question, options=options)


@dataclass(frozen=True)
class ReasoningSplit:
    """A completion cut into reasoning and answer by `split_reasoning`."""

    reasoning: str  # before the first `</think>`, without a leading `<think>`, stripped
    answer: str  # after the first `</think>`, stripped ("" while the block is open)
    closed: bool  # the think block was closed (by the output, or already by the prompt)
    closings: int  # how many `</think>` the output holds (1 is well formed in think mode)


def reasoning_start(text: str) -> int | None:
    """Where the reasoning of a completion starts: after leading whitespace and a leading `<think>` the output
    may repeat (a server that echoes the prefill). None while `text` may still grow into `<think>`."""
    lead = len(text) - len(text.lstrip())
    rest = text[lead:]
    if rest.startswith(THINK_START):
        return lead + len(THINK_START)
    return None if THINK_START.startswith(rest) else lead


def split_reasoning(text: str, in_reasoning: bool = True) -> ReasoningSplit:
    """(reasoning, answer) of a completion by the one rule: the answer starts after the FIRST `</think>`.

    `in_reasoning` says where the output starts: inside the open think block the generation prompt leaves
    (the default), or already in the answer (a no-think prompt closed the block: the whole output is the
    answer, and a `</think>` in it is just text). A block never closed gives all text to the reasoning and
    an empty answer. Stop tokens are not part of a completion; callers strip them where a server returns them."""
    closings = text.count(THINK_END)
    if not in_reasoning:
        return ReasoningSplit("", text.strip(), True, closings)
    at = text.find(THINK_END)
    head = text if at < 0 else text[:at]
    start = reasoning_start(head)
    reasoning = head[start if start is not None else 0:].strip()
    answer = "" if at < 0 else text[at + len(THINK_END):].strip()
    return ReasoningSplit(reasoning, answer, at >= 0, closings)
