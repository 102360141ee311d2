"""Training data: manifests → examples, a weighted mixture, packed or padded batches, an encoder-output cache.

Design choices
- An example is the exact token sequence the engine will see: the generation prompt
  (`…<|BOT|>assistant\\n<think>\\n`, from `chat.encode_prompt`) followed by the target
  `{reasoning}\\n</think>\\n{answer}<|EOT|>`; the loss covers the target only. Encoding prompt and target
  separately (rather than the whole conversation at once) guarantees that the token boundary at
  `<think>\\n` is the one inference uses, whatever the tokenizer merges.
- Prompts render text first, then audio, as the evaluation harness does; multiple-choice questions use
  `chat.mcq_prompt` (Step-Audio-R1's benchmark prompt).
- The mixture draws sources with probability ∝ weight; within a source items come in a fresh seeded
  permutation each epoch. The draw sequence is a pure function of (seed, position) and per-source counters,
  so the data position is a few integers, saved in every checkpoint: a resumed run sees the same batches.
- Packing places examples one after another into rows of `max_seq_len` tokens (an example that does not
  fit starts the next row; at the end of a batch it is carried over, and the carry is part of the data
  position). Each packed example gets its own segment id and positions from 0, so no attention crosses
  examples. Without packing every row holds one example, padded to the longest in the micro-batch.
- The frozen encoder's outputs are cached on disk, keyed by the audio file's bytes (plus front-end
  settings) under a directory named after a hash of the encoder weights: a clip is encoded once across
  epochs, runs and stages that share the encoder. The cache stores each chunk's full encoder output (what
  `model.audio_embeddings` computes per chunk), so the trainable adapter runs on exactly what inference feeds
  it. Files are written under a temporary name and renamed, so concurrent writers are safe.
- Missing or undecodable audio files are skipped and counted by reason (or raise with `strict`, naming the
  file); so are examples longer than a row and items lacking the field a rendering needs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from audior1 import audio as audio_lib
from audior1.chat import THINK_PREFILL, encode_prompt, format_target, mcq_prompt
from audior1.config import IGNORE_INDEX
from audior1.data.core import DIFFICULTIES, DataError  # unusable training data: one error type for all data
from audior1.data.manifest import read_manifest
from audior1.processor import collate_mels
from audior1.train.config import Source


# ---- items and renderings -----------------------------------------------------------------------

def load_items(source: Source, check_files: bool = False) -> list[dict]:
    """A source's manifest items after its task / question-type / difficulty filters and limit. Question types are
    matched as (task, question type) pairs: see `question_type_pairs`."""
    items = read_manifest(source.manifest, check_files=check_files)
    if source.tasks is not None:
        items = [it for it in items if it["task"] in source.tasks]
    for name, keep in (("question_types", True), ("exclude_question_types", False)):
        keys = getattr(source, name)
        if keys is None or (not keep and not keys):
            continue
        pairs = question_type_pairs(keys, items, f"data source {source.manifest}: {name}")
        items = [it for it in items if ((it["task"], it["question_type"]) in pairs) == keep]
    if source.difficulties is not None:
        unknown = sorted(set(source.difficulties) - set(DIFFICULTIES))
        if unknown:
            raise DataError(f"data source {source.manifest}: difficulties {unknown} are not among "
                            f"{', '.join(DIFFICULTIES)}")
        items = [it for it in items if it.get("difficulty") in source.difficulties]
    if source.limit is not None:
        items = items[: source.limit]
    return items


def question_type_pairs(keys: list[str], items: list[dict], where: str = "question_types") -> set[tuple[str, str]]:
    """The (task, question type) pairs that filter keys name. A key is `task:question_type`, or a plain
    question type, which names that question type of the one task in `items` that has it; a plain key shared
    by several tasks (`count_mc`: count_events, word_count, trap_count) is ambiguous and raises DataError
    naming them. A key that names nothing among non-empty `items` is a DataError too (a typo would otherwise
    silently hold nothing out)."""
    present = {(it["task"], it["question_type"]) for it in items}
    pairs: set[tuple[str, str]] = set()
    for key in keys:
        key = str(key)
        task, sep, qtype = key.partition(":")
        if sep and not any(q == key for _, q in present):
            if present and (task, qtype) not in present:
                raise DataError(f"{where}: {key!r} names no (task, question type) of this source's items "
                                f"(they have: {', '.join(sorted(f'{t}:{q}' for t, q in present))})")
            pairs.add((task, qtype))
            continue
        tasks = sorted({t for t, q in present if q == key})
        if present and not tasks:
            raise DataError(f"{where}: question type {key!r} is not one of this source's items' "
                            f"(they have: {', '.join(sorted({q for _, q in present}))})")
        if len(tasks) > 1:
            raise DataError(f"{where}: question type {key!r} is ambiguous: the tasks {', '.join(tasks)} all have it; "
                            f"name one as task:question_type (e.g. {tasks[0]}:{key})")
        pairs.update((t, key) for t in tasks)
    return pairs


def empty_source_error(source: Source, items: list[dict], what: str, skip_reasons: str) -> DataError:
    """A mixture source with nothing to use, named with the reason: its filters matched no item of the
    manifest, or every item they matched was skipped (`skip_reasons` says for what)."""
    filters = ", ".join(f"{k} {v}" for k, v in (("tasks", source.tasks), ("question_types", source.question_types),
                                                    ("exclude_question_types", source.exclude_question_types),
                                                    ("difficulties", source.difficulties), ("limit", source.limit)) if v is not None)
    why = (f"no item of the manifest passes its filters ({filters or 'none'})" if not items else
           f"all {len(items)} items were skipped ({skip_reasons}: see the 'skipped' line of the log)")
    return DataError(f"data source {source.manifest} as {source.kind}: no usable {what}: {why}")


def question_text(item: dict, as_text: bool = False) -> str:
    """The user's question: with `as_text`, the text rendering (caption + question); MCQ options appended."""
    q = item.get("text_question") if as_text else item["question"]
    if q is None:
        raise KeyError("text_question")
    return mcq_prompt(q, item["choices"]) if item.get("choices") else q


def render(item: dict, kind: str, caption_prompt: str = "Describe the audio in detail.",
           reasoning_field: str = "text_cot") -> tuple[str, list[str], str, str]:
    """(user text, audio paths, reasoning, answer) of one item rendered as `kind`.
    Raises KeyError naming the field when the item lacks what the rendering needs."""
    def need(name: str) -> str:
        value = item.get(name)
        if not isinstance(value, str) or not value.strip():
            raise KeyError(name)
        return value

    if kind in ("direct", "audio"):
        return question_text(item), list(item["audio"]), "", item["answer"]
    if kind == "audio_cot":
        return question_text(item), list(item["audio"]), need(reasoning_field), item["answer"]
    if kind == "caption":
        return caption_prompt, list(item["audio"]), "", need("caption")
    if kind == "surrogate":  # the surrogate chain with the answer it reaches (not the item's answer): coherent
        return question_text(item), list(item["audio"]), need("surrogate_cot"), need("surrogate_answer")
    if kind == "refusal":  # a text model's "I cannot hear audio" and a guess: the bias MGRD's DPO step corrects
        from audior1.data.selfcog import text_model_refusal
        return question_text(item), list(item["audio"]), text_model_refusal(item["id"]), need("surrogate_answer")
    if kind in ("text_cot", "text"):
        reasoning = need(reasoning_field) if kind == "text_cot" else ""
        return question_text(item, as_text=True), [], reasoning, item["answer"]
    raise ValueError(f"unknown rendering {kind!r}")


def user_message(text: str, audio_parts: list[dict]) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, *audio_parts]}]


def target_text(reasoning: str, answer: str) -> str:
    """What the model writes after the generation prompt: `{reasoning}\\n</think>\\n{answer}`."""
    full = format_target(reasoning, answer)
    assert full.startswith(THINK_PREFILL)  # the generation prompt ends with it; targets start after it
    return full[len(THINK_PREFILL):]


# ---- audio: clips, the encoder-output cache ----------------------------------------------------

@dataclass(frozen=True)
class Clip:
    path: str
    key: str  # content hash (+ front-end settings)
    num_tokens: tuple[int, ...]  # audio tokens per 25 s chunk


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """sha256 over the encoder's tensors (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class AudioStore:
    """Clip metadata, and audio inputs for a batch: cached encoder outputs, or log-mels.

    `cache_dir=None`: the encoder runs inside the training forward on log-mels, which are kept in memory
    after a clip's first use (`mel_memory`, within `memory_bytes`) or, with `mel_memory=False`, decoded and
    featurised again whenever a batch needs the clip."""

    def __init__(self, processor, cache_dir: str | Path | None, encoder: torch.nn.Module | None = None,
                 strict: bool = False, memory_bytes: int = 2 * 1024**3, mel_memory: bool = True, log=print):
        self.convention = processor.convention
        self.chunk_seconds = processor.chunk_seconds
        self.max_seconds = processor.max_audio_seconds
        self.strict = strict
        self.log = log
        self.clips: dict[str, Clip | None] = {}  # path → clip (None: skipped)
        self.skipped: Counter = Counter()
        self.skipped_files: dict[str, str] = {}
        self.encoder = encoder
        self.mel_memory = mel_memory
        self.cache_dir = None
        if cache_dir is not None:
            if encoder is None:
                raise ValueError("a feature cache needs the encoder")
            fingerprint = encoder_fingerprint(encoder)[:16] + f"-{self.convention}"
            self.cache_dir = Path(cache_dir) / fingerprint
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, list[torch.Tensor]] = {}
        self._memory_left = memory_bytes
        self.encoded = 0  # clips encoded by this store (cache misses)
        self.reused = 0  # clips found in the cache

    @property
    def cached(self) -> bool:
        return self.cache_dir is not None

    # -- preparation --

    def _skip(self, path: str, reason: str, detail: str) -> None:
        if self.strict:
            raise DataError(f"{path}: {detail} (strict: not skipping)")
        self.skipped[reason] += 1
        self.skipped_files[path] = detail
        self.clips[path] = None

    def _key(self, data: bytes) -> str:
        h = hashlib.sha256(data)
        h.update(f"|{self.convention}|{self.chunk_seconds}|{self.max_seconds}".encode())
        return h.hexdigest()

    def _cache_file(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    def prepare(self, paths, write: bool = True, progress=None) -> None:
        """Hash, check and (with a cache) encode every new clip. `write=False`: only read the cache (a
        clip missing from it is featurised to get its token counts; it will be encoded on use)."""
        todo = [p for p in dict.fromkeys(paths) if p not in self.clips]
        for path in (progress(todo) if progress else todo):
            try:
                data = Path(path).read_bytes()
            except FileNotFoundError:
                self._skip(path, "missing audio", "audio file not found")
                continue
            except OSError as e:
                self._skip(path, "unreadable audio", f"cannot read audio file ({e})")
                continue
            key = self._key(data)
            if self.cached and self._cache_file(key).exists():
                try:
                    with safe_open(self._cache_file(key), "pt") as f:
                        meta = f.metadata()
                    self.clips[path] = Clip(path, key, tuple(json.loads(meta["num_tokens"])))
                    self.reused += 1
                    continue
                except Exception:  # a damaged cache file: encode again
                    pass
            try:
                feats = audio_lib.featurize(data, convention=self.convention, max_seconds=self.max_seconds,
                                            chunk_seconds=self.chunk_seconds, name=path)
            except audio_lib.AudioError as e:
                self._skip(path, "corrupt audio", str(e))
                continue
            clip = Clip(path, key, tuple(feats.num_tokens))
            self.clips[path] = clip
            if self.cached and write:
                self._encode_and_store(clip, feats)
            elif not self.cached:
                self._remember(clip, feats)

    def release_encoder(self) -> int:
        """Drop the store's reference to the encoder once every clip of the run is cached (under torchrun
        that reference is the process's private fp32 copy); the run then only reads the cache. Returns the
        bytes of the encoder's tensors."""
        enc, self.encoder = self.encoder, None
        return sum(t.numel() * t.element_size() for t in enc.state_dict().values()) if enc is not None else 0

    @torch.no_grad()
    def _encode_and_store(self, clip: Clip, feats: audio_lib.AudioFeatures) -> list[torch.Tensor]:
        enc = self.encoder
        was_training = enc.training
        enc.eval()
        dtype = next(enc.parameters()).dtype
        device = next(enc.parameters()).device
        frames, lens = [], []
        for mel, length in zip(feats.mels, feats.mel_lengths):
            x, n = enc(mel[None].to(device=device, dtype=dtype), torch.tensor([length], device=device))
            frames.append(x[0].float().cpu().contiguous())
            lens.append(int(n[0]))
        enc.train(was_training)
        path = self._cache_file(clip.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({f"chunk_{i}": t for i, t in enumerate(frames)}, str(tmp),
                  metadata={"lens": json.dumps(lens), "num_tokens": json.dumps(list(clip.num_tokens)),
                            "source": clip.path})
        os.replace(tmp, path)
        self.encoded += 1
        return frames

    # -- batch inputs --

    def _load(self, clip: Clip) -> tuple[list[torch.Tensor], list[int]]:
        """A cached clip's encoder outputs per chunk and their valid lengths."""
        if clip.key in self._memory:
            return self._memory[clip.key]
        path = self._cache_file(clip.key)
        if not path.exists():  # prepared with write=False (another process owns writing): encode now
            if self.encoder is None:
                raise DataError(f"{clip.path}: its encoder outputs are missing from the feature cache ({path}); "
                                "was the cache directory cleared during the run?")
            feats = audio_lib.featurize(clip.path, convention=self.convention, max_seconds=self.max_seconds,
                                        chunk_seconds=self.chunk_seconds)
            self._encode_and_store(clip, feats)
        with safe_open(path, "pt") as f:
            meta = f.metadata()
            lens = json.loads(meta["lens"])
            frames = [f.get_tensor(f"chunk_{i}") for i in range(len(lens))]
        size = sum(t.numel() * t.element_size() for t in frames)
        if size <= self._memory_left:
            self._memory[clip.key] = (frames, lens)
            self._memory_left -= size
        return frames, lens

    def batch_audio(self, clips: list[Clip]) -> dict:
        """Audio inputs for `Policy.forward`, chunks in prompt order: cached encoder outputs
        (`enc` [N, T, C] zero-padded, `enc_lens` [N]) or fresh log-mels (`mels`, `mel_lens`, `mel_frames`)."""
        if not clips:
            return {}
        if self.cached:
            frames, lens = [], []
            for clip in clips:
                f, n = self._load(clip)
                frames += f
                lens += n
            width = max(f.shape[0] for f in frames)
            enc = torch.zeros(len(frames), width, frames[0].shape[1])
            for i, f in enumerate(frames):
                enc[i, : f.shape[0]] = f
            return {"enc": enc, "enc_lens": torch.tensor(lens, dtype=torch.long)}
        mels, mel_lens, mel_frames = collate_mels([self._features(c) for c in clips])
        return {"mels": mels, "mel_lens": mel_lens, "mel_frames": mel_frames}

    def _features(self, clip: Clip) -> audio_lib.AudioFeatures:
        if clip.key in self._memory:
            return self._memory[clip.key]
        feats = audio_lib.featurize(clip.path, convention=self.convention, max_seconds=self.max_seconds,
                                    chunk_seconds=self.chunk_seconds)
        self._remember(clip, feats)
        return feats

    def _remember(self, clip: Clip, feats: audio_lib.AudioFeatures) -> None:
        size = sum(m.numel() * m.element_size() for m in feats.mels)
        if self.mel_memory and clip.key not in self._memory and size <= self._memory_left:
            self._memory[clip.key] = feats
            self._memory_left -= size

    def summary(self) -> str:
        parts = [f"{sum(c is not None for c in self.clips.values())} clips"]
        if self.cached:
            parts.append(f"feature cache {self.cache_dir}: {self.encoded} encoded, {self.reused} reused")
        else:
            parts.append("no feature cache (encoder runs every step; log-mels "
                         + ("kept in memory)" if self.mel_memory else "recomputed every step)"))
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items())))
        return "; ".join(parts)


# ---- examples -----------------------------------------------------------------------------------

@dataclass
class Example:
    input_ids: list[int]
    n_prompt: int  # the first n_prompt tokens carry no loss
    clips: list[Clip]
    item: dict = field(default_factory=dict)  # the manifest item (id, task, answer, choices …)
    no_loss: list[int] = field(default_factory=list)  # positions after the prompt that carry no loss (forced)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_target(self) -> int:
        return len(self.input_ids) - self.n_prompt - len(self.no_loss)


def prompt_ids(tokenizer, text: str, clips: list[Clip], think: bool = True) -> list[int]:
    parts = [{"type": "audio", "num_tokens": list(c.num_tokens)} for c in clips]
    return encode_prompt(tokenizer, user_message(text, parts), think=think)


def build_examples(items: list[dict], kind: str, tokenizer, store: AudioStore, *, max_len: int | None,
                   caption_prompt: str = "Describe the audio in detail.", reasoning_field: str = "text_cot",
                   skipped: Counter | None = None, no_think_prompt: bool = False) -> list[Example]:
    """Render, tokenise and attach clips; items that cannot be used are counted in `skipped`. With
    `no_think_prompt`, an example without reasoning is prompted as `think=False` prompts are (the empty, closed
    think block is prompt, not target): it teaches the answer, not to skip reasoning when asked to think."""
    skipped = skipped if skipped is not None else Counter()
    out = []
    for item in items:
        try:
            text, paths, reasoning, answer = render(item, kind, caption_prompt, reasoning_field)
        except KeyError as e:
            skipped[f"no {e.args[0]}"] += 1
            continue
        clips = [store.clips.get(p) for p in paths]
        if any(c is None for c in clips):
            skipped["bad audio"] += 1
            continue
        think = bool(reasoning) or not no_think_prompt  # no think prompt: the closed empty block is prompt
        ids = prompt_ids(tokenizer, text, clips, think=think)
        n_prompt = len(ids)
        ids = ids + tokenizer.encode(target_text(reasoning, answer) if think else answer) + [tokenizer.eot_id]
        if max_len is not None and len(ids) > max_len:
            skipped["longer than max_seq_len"] += 1
            continue
        out.append(Example(ids, n_prompt, clips, item))
    return out


# ---- the mixture ---------------------------------------------------------------------------------

class MixtureSampler:
    """An endless, seeded stream of (source, index) draws; the position is a few integers."""

    BLOCK = 4096

    def __init__(self, sizes: list[int], weights: list[float], seed: int):
        if not sizes or any(n < 1 for n in sizes):
            raise DataError(f"every mixture source needs at least one usable example (sizes {sizes})")
        self.sizes, self.seed = list(sizes), seed
        w = np.asarray(weights, dtype=np.float64)
        self.p = w / w.sum()
        self.position = 0
        self.draws = [0] * len(sizes)
        self._block: tuple[int, np.ndarray] | None = None
        self._perms: dict[int, tuple[int, np.ndarray]] = {}

    def _source_at(self, k: int) -> int:
        b = k // self.BLOCK
        if self._block is None or self._block[0] != b:
            rng = np.random.default_rng([self.seed, 7919, b])
            self._block = (b, rng.choice(len(self.sizes), size=self.BLOCK, p=self.p))
        return int(self._block[1][k % self.BLOCK])

    def _index(self, s: int, j: int) -> int:
        epoch = j // self.sizes[s]
        if s not in self._perms or self._perms[s][0] != epoch:
            self._perms[s] = (epoch, np.random.default_rng([self.seed, s, epoch]).permutation(self.sizes[s]))
        return int(self._perms[s][1][j % self.sizes[s]])

    def next(self) -> tuple[int, int]:
        s = self._source_at(self.position)
        index = self._index(s, self.draws[s])
        self.position += 1
        self.draws[s] += 1
        return s, index

    def epochs(self) -> list[float]:
        return [d / n for d, n in zip(self.draws, self.sizes)]

    def state_dict(self) -> dict:
        return {"position": self.position, "draws": list(self.draws)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["draws"]) != len(self.sizes):
            raise DataError(f"checkpoint data position has {len(state['draws'])} sources, the config {len(self.sizes)}")
        self.position, self.draws = int(state["position"]), [int(d) for d in state["draws"]]


class BatchBuilder:
    """Global batches of `rows` rows: packed (examples in stream order, each row ≤ `row_len` tokens) or one
    example per row."""

    def __init__(self, sources: list[list[Example]], weights: list[float], seed: int, rows: int,
                 row_len: int, packing: bool):
        self.sources = sources
        self.sampler = MixtureSampler([len(s) for s in sources], weights, seed)
        self.rows, self.row_len, self.packing = rows, row_len, packing
        self.carry: tuple[int, int] | None = None

    def _next(self) -> tuple[int, int]:
        if self.carry is not None:
            draw, self.carry = self.carry, None
            return draw
        return self.sampler.next()

    def next_batch(self) -> list[list[Example]]:
        out = []
        for _ in range(self.rows):
            row, used = [], 0
            while True:
                draw = self._next()
                ex = self.sources[draw[0]][draw[1]]
                if row and (not self.packing or used + len(ex) > self.row_len):
                    self.carry = draw
                    break
                row.append(ex)
                used += len(ex)
                if not self.packing:
                    break
            out.append(row)
        return out

    def state_dict(self) -> dict:
        return {**self.sampler.state_dict(), "carry": list(self.carry) if self.carry else None}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
        self.carry = tuple(state["carry"]) if state.get("carry") else None


# ---- collation -------------------------------------------------------------------------------------

@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T] bool
    position_ids: torch.Tensor  # [B, T], restarting at 0 for every packed example
    segment_ids: torch.Tensor | None  # [B, T], 1.. per packed example, 0 on padding; None without packing
    labels: torch.Tensor  # [B, T], IGNORE_INDEX outside targets
    audio_mask: torch.Tensor  # [B, T] bool: the prompts' <audio_patch> slots (generated ones are text)
    audio: dict  # see AudioStore.batch_audio
    n_tokens: int  # real tokens
    n_targets: int  # tokens with a loss

    def to(self, device) -> "TrainBatch":
        move = lambda t: None if t is None else t.to(device)
        return TrainBatch(move(self.input_ids), move(self.attention_mask), move(self.position_ids),
                          move(self.segment_ids), move(self.labels), move(self.audio_mask),
                          {k: move(v) for k, v in self.audio.items()}, self.n_tokens, self.n_targets)

    def inputs(self) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "position_ids": self.position_ids, "segment_ids": self.segment_ids, "labels": self.labels,
                "audio_mask": self.audio_mask, **self.audio}


def collate(rows: list[list[Example]], store: AudioStore, tokenizer, packed: bool) -> TrainBatch:
    """Right-padded rows; audio chunks in row-major order of their `<audio_patch>` runs."""
    pad_id = tokenizer.endoftext_id if tokenizer.endoftext_id is not None else 0
    width = max(sum(len(e) for e in row) for row in rows)
    b = len(rows)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.bool)
    pos = torch.zeros((b, width), dtype=torch.long)
    seg = torch.zeros((b, width), dtype=torch.long)
    labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    prompt = torch.zeros((b, width), dtype=torch.bool)
    clips = []
    for r, row in enumerate(rows):
        start = 0
        for s, ex in enumerate(row, 1):
            n = len(ex)
            t = torch.tensor(ex.input_ids)
            ids[r, start : start + n] = t
            mask[r, start : start + n] = True
            pos[r, start : start + n] = torch.arange(n)
            seg[r, start : start + n] = s
            labels[r, start + ex.n_prompt : start + n] = t[ex.n_prompt :]
            for p in ex.no_loss:
                labels[r, start + p] = IGNORE_INDEX
            prompt[r, start : start + ex.n_prompt] = True
            clips += ex.clips
            start += n
    n_tokens = int(mask.sum())
    n_targets = sum(e.n_target for row in rows for e in row)
    audio_mask = prompt & (ids == tokenizer.audio_patch_id)
    return TrainBatch(ids, mask, pos, seg if packed else None, labels, audio_mask, store.batch_audio(clips),
                      n_tokens, n_targets)


def eval_subset(items: list[dict], n: int, seed: int = 0) -> list[dict]:
    """A seeded subset of n items (all when n is 0), spread over the manifest rather than its first rows."""
    if not n or n >= len(items):
        return list(items)
    order = np.random.default_rng([seed, 104729]).permutation(len(items))[:n]
    return [items[i] for i in sorted(order)]
