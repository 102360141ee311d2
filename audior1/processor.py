"""One path from OpenAI-style messages to model inputs, shared by inference, training and evaluation.

Design choices
- Audio parts are featurised here (decode → 16 kHz → 25 s chunks → log-mel) and their token counts feed
  the chat template, so the number of `<audio_patch>` tokens and of adapter frames always agree.
- Accepted audio parts: OpenAI's `{"type": "input_audio", "input_audio": {"data": base64, "format": …}}`,
  and `{"type": "audio", "audio": path | bytes | base64}` for local use. The server decides whether
  local paths are allowed; the Processor itself trusts its caller.
- Batches pad the token axis on the left for generation (every row's last token is real) and on the right
  for training; mel chunks are zero-padded on time, in the row-major order of their `<audio_patch>` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from audior1 import audio as audio_lib
from audior1.chat import ChatTokenizer, encode_conversation, encode_prompt
from audior1.config import IGNORE_INDEX


class MessageError(ValueError):
    """A message list that is not in the accepted OpenAI-style shape (names the message and part)."""


@dataclass
class Encoded:
    """One conversation, tokenised: ids, optional loss mask, and its audio chunks in prompt order."""

    input_ids: list[int]
    audio: list[audio_lib.AudioFeatures] = field(default_factory=list)
    loss_mask: list[bool] | None = None

    @property
    def num_audio_tokens(self) -> int:
        return sum(f.total_tokens for f in self.audio)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T] bool
    audio_mels: torch.Tensor | None = None  # [N, n_mels, T_mel]
    audio_mel_lens: torch.Tensor | None = None  # [N] valid encoder input lengths
    audio_mel_frames: torch.Tensor | None = None  # [N] real mel lengths before padding
    labels: torch.Tensor | None = None  # [B, T], IGNORE_INDEX where no loss

    def to(self, device) -> "Batch":
        move = lambda t: None if t is None else t.to(device)
        return Batch(**{name: move(getattr(self, name)) for name in self.__dataclass_fields__})

    def model_inputs(self) -> dict:
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.audio_mels is not None:
            out.update(audio_mels=self.audio_mels, audio_mel_lens=self.audio_mel_lens,
                       audio_mel_frames=self.audio_mel_frames)
        if self.labels is not None:
            out["labels"] = self.labels
        return out


class Processor:
    def __init__(self, tokenizer: ChatTokenizer, *, convention: str = "hf",
                 max_audio_seconds: float = audio_lib.DEFAULT_MAX_SECONDS,
                 chunk_seconds: float = audio_lib.CHUNK_SECONDS):
        audio_lib.num_audio_tokens(16000, convention)  # validates the convention name early
        self.tokenizer = tokenizer
        self.convention = convention
        self.max_audio_seconds = max_audio_seconds
        self.chunk_seconds = chunk_seconds

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "Processor":
        """The tokenizer of a checkpoint (`path` as `--model` takes it: a directory, an adapter directory,
        whose base's tokenizer is used, or a Hub id)."""
        from audior1.sources import resolve

        return cls(ChatTokenizer.from_dir(resolve(path).weights), **kwargs)

    # ---- messages → chat messages with token counts ----

    def featurize_messages(self, messages: list[dict]) -> tuple[list[dict], list[audio_lib.AudioFeatures]]:
        """Decode every audio part; return messages whose audio parts carry per-chunk token counts."""
        if not isinstance(messages, list) or not messages:
            raise MessageError("messages must be a non-empty list of {role, content} objects")
        out, features = [], []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message:
                raise MessageError(f"messages[{i}] must be an object with 'role' and 'content'")
            content = message.get("content")
            if content is None:
                content = ""
            if isinstance(content, str):
                out.append({"role": message["role"], "content": content})
                continue
            if not isinstance(content, list):
                raise MessageError(f"messages[{i}].content must be a string or a list of parts, got {type(content).__name__}")
            parts = []
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                feats = self._part_audio(part, where)
                if feats is None:
                    parts.append({"type": "text", "text": _part_text(part, where)})
                else:
                    features.append(feats)
                    parts.append({"type": "audio", "num_tokens": list(feats.num_tokens)})
            out.append({"role": message["role"], "content": parts})
        return out, features

    def _part_audio(self, part, where: str) -> audio_lib.AudioFeatures | None:
        if not isinstance(part, dict) or "type" not in part:
            raise MessageError(f"{where} must be an object with a 'type'")
        kind = part["type"]
        if kind == "text":
            return None
        if kind == "input_audio":
            payload = part.get("input_audio")
            if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
                raise MessageError(f"{where}.input_audio must be an object with a base64 string 'data'")
            src = payload["data"]
            return self._featurize(audio_lib.decode_base64_audio(src, name=f"{where}.input_audio.data",
                                                                 max_seconds=self.max_audio_seconds), where)
        if kind == "audio":
            src = part.get("audio")
            if not isinstance(src, (str, bytes, Path)):
                raise MessageError(f"{where}.audio must be a path, bytes or a base64 string")
            name = str(src) if isinstance(src, (str, Path)) and len(str(src)) < 512 else where
            return self._featurize(audio_lib.load_audio(src, max_seconds=self.max_audio_seconds, name=name), name)
        raise MessageError(f"{where}: unsupported part type {kind!r} (expected 'text', 'input_audio' or 'audio')")

    def _featurize(self, wav, name: str) -> audio_lib.AudioFeatures:
        return audio_lib.featurize(wav, convention=self.convention, name=name, chunk_seconds=self.chunk_seconds)

    # ---- encoding ----

    def encode(self, messages: list[dict], *, tools=None, add_generation_prompt: bool = True, think: bool = True,
               continue_final_message: bool = False) -> Encoded:
        """A prompt for generation."""
        chat_messages, features = self.featurize_messages(messages)
        ids = encode_prompt(self.tokenizer, chat_messages, tools=tools, add_generation_prompt=add_generation_prompt,
                            think=think, continue_final_message=continue_final_message)
        return Encoded(ids, features)

    def encode_training(self, messages: list[dict], *, tools=None) -> Encoded:
        """A full conversation (ending with the assistant's target) with its loss mask."""
        chat_messages, features = self.featurize_messages(messages)
        ids, mask = encode_conversation(self.tokenizer, chat_messages, tools=tools)
        return Encoded(ids, features, mask)

    def collate(self, items: list[Encoded], *, padding_side: str = "left") -> Batch:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        width = max(len(e.input_ids) for e in items)
        pad_id = self.tokenizer.endoftext_id
        ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.bool)
        with_labels = all(e.loss_mask is not None for e in items)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long) if with_labels else None
        for row, e in enumerate(items):
            n = len(e.input_ids)
            span = slice(width - n, width) if padding_side == "left" else slice(0, n)
            ids[row, span] = torch.tensor(e.input_ids)
            mask[row, span] = True
            if with_labels:
                row_labels = torch.tensor(e.input_ids)
                row_labels[~torch.tensor(e.loss_mask, dtype=torch.bool)] = IGNORE_INDEX
                labels[row, span] = row_labels
        mels, lens, frames = collate_mels([f for e in items for f in e.audio])
        return Batch(ids, mask, mels, lens, frames, labels)

    def __call__(self, conversations: list[list[dict]], **kwargs) -> Batch:
        """Prompts for a batch of conversations, left-padded for generation."""
        return self.collate([self.encode(c, **kwargs) for c in conversations], padding_side="left")


def collate_mels(features: list[audio_lib.AudioFeatures]):
    """All chunks of all audio items, in order, zero-padded on time:
    (mels [N, n_mels, T], valid encoder lengths [N], real mel lengths [N]), or Nones without audio."""
    chunks = [(mel, length) for f in features for mel, length in zip(f.mels, f.mel_lengths)]
    if not chunks:
        return None, None, None
    width = max(mel.shape[-1] for mel, _ in chunks)
    mels = torch.zeros(len(chunks), chunks[0][0].shape[0], width)
    for i, (mel, _) in enumerate(chunks):
        mels[i, :, : mel.shape[-1]] = mel
    lengths = torch.tensor([length for _, length in chunks], dtype=torch.long)
    frames = torch.tensor([mel.shape[-1] for mel, _ in chunks], dtype=torch.long)
    return mels, lengths, frames


def _part_text(part: dict, where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise MessageError(f"{where}.text must be a string")
    return text
