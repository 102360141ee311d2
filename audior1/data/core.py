"""What every task family shares: the `Family` record, per-item seeding, balanced labels, option layout.

Design choices:
- An item is a pure function of (seed, split, family, index): its generator is
  `default_rng([seed, split_code, family_code, index])`, so items can be made in any order, in any process,
  and the same seed gives byte-identical files. Splits use different streams, so they never share an item.
- Balance is structural, not hoped for. Items are dealt in blocks: each block holds every (question type,
  difficulty) combination once in a seeded order, and within one combination the answer label and the
  position of the correct option each walk through seeded permutations. So labels, positions, difficulties
  and question types are equal (to within one block) in every family, for any N.
- A family function receives a `Spec` (difficulty, question type, `pick`/`layout` helpers, rng) and returns a
  `Draft`: audio, question, choices, answer, meta and the three renderings. `finish` turns it into a
  manifest item; `text_question` is always "caption + question", so a caption states every fact needed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

SPLITS = ("train", "dev", "test")
SPLIT_CODE = {"train": 1, "dev": 2, "test": 3}
DIFFICULTIES = ("easy", "medium", "hard")

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                "nineteen", "twenty")


class DataError(ValueError):
    """Data that cannot be built or used (unknown task or split, an unusable training source, ...): the CLI
    prints it as one line naming the file, field or value."""


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def code(name: str) -> int:
    """A stable 31-bit code for a name (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@dataclass
class Draft:
    """What a family function returns for one item."""
    audio: list[np.ndarray]            # one array per audio file (usually one)
    question: str
    choices: list[str] | None          # None for a numeric answer
    answer: str
    meta: dict
    caption: str                       # what a careful listener reports, with measurements
    text_cot: str                      # reference reasoning from the facts in the caption
    surrogate_cot: str                 # reasoning from transcript / tags only, never from the sound
    surrogate_answer: str | None = None  # where the surrogate chain lands (defaults to `answer`)


@dataclass(frozen=True)
class Family:
    name: str
    category: str                      # sound | music | speech
    qtypes: tuple[str, ...]
    make: Callable[["Spec"], Draft]
    needs_speech: bool = False         # needs espeak-ng
    doc: str = ""


@dataclass
class Spec:
    family: str
    split: str
    seed: int
    index: int
    difficulty: str
    qtype: str
    rng: np.random.Generator
    _block: int = 0
    _stream: tuple = field(default_factory=tuple)

    def pick(self, n: int, name: str = "label") -> int:
        """A balanced index in range(n): over the items of one (family, qtype, difficulty) stream, every
        value appears equally often (seeded permutation per block of n)."""
        return balanced(self._stream + (code(name), n), self._block, n)

    def side_rng(self, name: str) -> np.random.Generator:
        """A random stream of its own for this item (e.g. the surrogate chain's guess): drawing from it never
        shifts the item's main stream, so adding one changes nothing else the item holds."""
        return np.random.default_rng([*self._stream[:3], self.index, code(name)])

    def layout(self, correct: str, distractors: list[str]) -> tuple[list[str], str]:
        """Options with `correct` at a balanced position; distractors in seeded random order."""
        others = [d for d in distractors if d != correct]
        order = [others[i] for i in self.rng.permutation(len(others))]
        pos = self.pick(len(others) + 1, "position")
        choices = order[:pos] + [correct] + order[pos:]
        if len(set(choices)) != len(choices):
            raise ValueError(f"{self.family}: duplicate options {choices}")
        return choices, correct


def balanced(key: tuple, j: int, n: int) -> int:
    """Element j of an endless sequence made of seeded permutations of range(n)."""
    block, k = divmod(j, n)
    perm = np.random.default_rng([*key, block]).permutation(n)
    return int(perm[k])


def make_spec(fam: Family, split: str, seed: int, index: int) -> Spec:
    """Deal item `index` of a family: its question type, difficulty and random stream."""
    if split not in SPLIT_CODE:
        raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    combos = [(q, d) for q in fam.qtypes for d in DIFFICULTIES]
    block, k = divmod(index, len(combos))
    base = (seed, SPLIT_CODE[split], code(fam.name))
    order = np.random.default_rng([*base, 7, block]).permutation(len(combos))
    qtype, difficulty = combos[int(order[k])]
    rng = np.random.default_rng([*base, index])
    return Spec(fam.name, split, seed, index, difficulty, qtype, rng, _block=block,
                _stream=(*base, code(qtype), code(difficulty)))


def item_id(family: str, split: str, seed: int, index: int) -> str:
    return f"{family}-{split}-s{seed}-{index:05d}"


def finish(fam: Family, spec: Spec, draft: Draft, audio_paths: list[str]) -> dict:
    """Assemble the manifest item (key order is the documented one)."""
    if draft.choices is not None and draft.answer not in draft.choices:
        raise ValueError(f"{fam.name}: answer {draft.answer!r} not among {draft.choices}")
    meta = dict(draft.meta)
    meta.setdefault("clip_s", round(sum(len(a) for a in draft.audio) / 16000, 3))
    meta.update(clip_facts(meta, draft.audio))
    return {
        "id": item_id(fam.name, spec.split, spec.seed, spec.index),
        "audio": audio_paths,
        "question": draft.question,
        "choices": draft.choices,
        "answer": draft.answer,
        "task": fam.name,
        "question_type": spec.qtype,
        "category": fam.category,
        "difficulty": spec.difficulty,
        "split": spec.split,
        "meta": meta,
        "caption": draft.caption,
        "text_question": f"{draft.caption} {draft.question}",
        "text_cot": draft.text_cot,
        "surrogate_cot": draft.surrogate_cot,
        "surrogate_answer": draft.answer if draft.surrogate_answer is None else draft.surrogate_answer,
    }


def guess(spec: Spec, choices: list[str] | None, numeric: tuple[int, int] | None = None) -> str:
    """What a chain that cannot hear the sound picks: an option drawn uniformly, or for a numeric question an
    integer drawn uniformly from `numeric` (a fixed range of the question type), from the item's own
    "surrogate" stream. Its law does not depend on the true answer, so the guess is right only by chance."""
    rng = spec.side_rng("surrogate")
    if choices:
        return choices[int(rng.integers(len(choices)))]
    if numeric is None:
        raise ValueError(f"{spec.family}: a numeric question needs a guessing range")
    return str(int(rng.integers(numeric[0], numeric[1] + 1)))


def surrogate_intro(tags: str, transcript: str | None = None) -> str:
    """The opening of a textual-surrogate chain: what an ASR transcript and a sound tagger would say."""
    if transcript:
        return f'The transcript of the clip reads "{transcript}", and a sound tagger labels it as {tags}.'
    return f"An automatic transcript of the clip is empty (no speech), and a sound tagger labels it as {tags}."


def r(x: float, nd: int = 1) -> float:
    """Round for meta: floats stay short and JSON output stays byte-stable."""
    return round(float(x), nd)


# Background noise per difficulty: (snr_db range, colours). Easy items still get a faint floor, which also
# makes every clip's bytes unique across splits.
SNR = {"easy": (38.0, 45.0), "medium": (20.0, 26.0), "hard": (12.0, 16.0)}


def background(spec: Spec, ref_level_db: float) -> dict:
    """Choose the background noise for an item: colour, SNR and absolute level (relative to `ref_level_db`,
    the RMS of the sounds the question is about)."""
    snr = float(spec.rng.uniform(*SNR[spec.difficulty]))
    colour = ("white", "pink")[int(spec.rng.integers(2))]
    return {"colour": colour, "snr_db": r(snr), "level_db": r(ref_level_db - snr)}


def noise_phrase(bg: dict) -> str:
    """How a caption mentions the background: nothing when it is inaudible."""
    if bg["snr_db"] >= 30:
        return ""
    return f", over {bg['colour']} background noise about {bg['snr_db']:.0f} dB below the sounds"


# ---------------------------------------------------------------------------------------------- meta schema
# The per-event schema of `meta` (docs/data.md, "meta: the facts"): `events` (one record per sound event, in
# time order), `segments` (named spans: the speech, the announcement, the sounds after it, the background)
# and `clip` (the whole clip). Units are key suffixes that cannot collide: `_sec`, `_hz`, `_dbfs` (levels),
# `_db` (SNRs and changes), `_semitones`, `_bpm`, `_wpm`, `_per_sec` (a rate; no rate ends in `_s`).
# Event kinds and the schema check: `audior1.data.manifest` (EVENT_KINDS, meta_problems).


def event(kind: str, onset: float, dur: float, level: float | None, f0: float | None = None, *,
          note: bool = True, group: dict | None = None, **extra) -> dict:
    """One sound event (before numbering): onset and duration in seconds, RMS level in dBFS, and where pitched
    its frequency and (with `note`) the nearest note name. `group` places it in a group of its kind (e.g.
    {"melody": 2} or {"register": "high"}); `number_events` turns that into its position within the group."""
    from audior1.data.dsp import hz_to_midi, note_name  # dsp imports nothing from here; keep core light
    e: dict = {"kind": kind, "onset_sec": r(onset, 3), "duration_sec": r(dur, 3)}
    if f0 is not None:
        e["f0_hz"] = r(f0)
        if note:
            e["note"] = note_name(hz_to_midi(f0))
    if level is not None:
        e["level_dbfs"] = r(level)
    if group:
        e["group"] = dict(group)
    e.update(extra)
    return e


def number_events(events: list[dict]) -> list[dict]:
    """Sort events by onset (stable: simultaneous ones keep their order) and give each its `index` (1-based,
    in the clip) and `position`: `of_kind` (1-based among events of its kind) and, for a grouped event, the
    group's value and its place in the group (`"melody": 2, "in_melody": 1`)."""
    out, seen = [], {}
    for i, e in enumerate(sorted(events, key=lambda e: e["onset_sec"])):
        e = dict(e)
        group = e.pop("group", None) or {}
        seen[e["kind"]] = seen.get(e["kind"], 0) + 1
        pos = {"of_kind": seen[e["kind"]]}
        for g, v in group.items():
            key = (e["kind"], g, v)
            seen[key] = seen.get(key, 0) + 1
            pos.update({g: v, f"in_{g}": seen[key]})
        head = {"kind": e.pop("kind"), "index": i + 1, "position": pos}
        out.append({**head, **e})
    return out


def segment(name: str, events: list[dict], **extra) -> dict:
    """A named span holding numbered `events` (their indices); its onset and duration cover them unless
    `extra` gives them (a sound whose span is wider than its events, e.g. a ramp of beeps)."""
    on = min(e["onset_sec"] for e in events)
    end = max(e["onset_sec"] + e["duration_sec"] for e in events)
    seg = {"name": name, "onset_sec": r(on, 3), "duration_sec": r(end - on, 3), "events": [e["index"] for e in events]}
    seg.update(extra)
    return seg


def clip_facts(meta: dict, audio: list[np.ndarray]) -> dict:
    """`clip` (duration, RMS level, background) and the background segment, from the audio and the item's
    background facts; computed from the samples, so nothing random is drawn."""
    x = np.concatenate([np.asarray(a, np.float64) for a in audio]) if audio else np.zeros(0)
    rms = float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
    dur = round(len(x) / 16000, 3)
    bg = meta.get("background")
    background = None if not bg else {"colour": bg["colour"], "snr_db": bg["snr_db"], "level_dbfs": bg["level_db"]}
    segments = list(meta.get("segments") or [])
    if background:
        segments.append({"name": "background", "onset_sec": 0.0, "duration_sec": dur, "events": [], **background})
    return {"segments": segments,
            "clip": {"duration_sec": dur, "level_dbfs": r(20 * np.log10(max(rms, 1e-9))), "background": background}}
