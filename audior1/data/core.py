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
