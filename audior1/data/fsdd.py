"""Real speech: tasks on the Free Spoken Digit Dataset (FSDD, CC BY-SA 4.0, Z. Jackson et al.).

Recordings are `{digit}_{speaker}_{take}.wav`, 8 kHz mono. Splits follow FSDD's official one — takes 0-4 are
test, 5-49 train — and dev is carved out of train deterministically by take: takes 5-9 are dev, 10-49 train.
So a recording belongs to exactly one split, for every seed.

Families: `fsdd_digit` (which digit is spoken), `fsdd_arith` (two or three recordings joined with pauses: sum,
difference, which is larger), `fsdd_speaker` (accent or identity, from the speaker metadata in
../shared/data/ATTRIBUTION.md). Each recording is resampled to 16 kHz (audior1.audio.load_audio), trimmed of
silence and set to -22 dBFS RMS; harder items add background noise. The output WAVs are self-contained copies,
so a manifest does not depend on where FSDD lives.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audior1.data import dsp
from audior1.data.core import SPLITS, DataError, Draft, Family, Spec, event, finish, guess, item_id, make_spec, \
    number_word, r, surrogate_intro
from audior1.data.dsp import fmt_hz, fmt_s
from audior1.data.sound import ORD, base_meta, noise_phrase, render, timeline
from audior1.data.speech import SPEECH_LEVEL_DB

# From ATTRIBUTION.md: all male, English.
SPEAKERS = {"jackson": "american", "theo": "american", "nicolas": "french", "lucas": "german", "george": "greek"}
ACCENT_TEXT = {"american": "an American English accent", "french": "a Belgian French accent",
               "german": "a German accent", "greek": "a Greek accent"}
ACCENTS = tuple(ACCENT_TEXT)
NAME_RE = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def split_of_take(take: int) -> str:
    """FSDD's official split (takes 0-4 test), with dev = takes 5-9 of the official train set."""
    return "test" if take < 5 else "dev" if take < 10 else "train"


@dataclass(frozen=True)
class Recording:
    path: str
    digit: int
    speaker: str
    take: int

    @property
    def name(self) -> str:
        return Path(self.path).name


@functools.lru_cache(maxsize=8)
def index(recordings: str) -> tuple[Recording, ...]:
    """All parseable recordings under a directory (sorted, so the order never depends on the file system)."""
    root = Path(recordings)
    if not root.is_dir():
        raise FileNotFoundError(f"FSDD recordings directory not found: {root}")
    recs = []
    for p in sorted(root.glob("*.wav")):
        m = NAME_RE.match(p.name)
        if m:
            recs.append(Recording(str(p), int(m.group(1)), m.group(2), int(m.group(3))))
    if not recs:
        raise FileNotFoundError(f"no FSDD recordings ({{digit}}_{{speaker}}_{{take}}.wav) in {root}")
    return tuple(recs)


@functools.lru_cache(maxsize=8 * 3)
def by_split(recordings: str, split: str) -> dict:
    """{'digit': {d: [...]}, 'speaker': {s: [...]}} for one split, known speakers only."""
    recs = [x for x in index(recordings) if split_of_take(x.take) == split and x.speaker in SPEAKERS]
    out: dict = {"digit": {}, "speaker": {}}
    for x in recs:
        out["digit"].setdefault(x.digit, []).append(x)
        out["speaker"].setdefault(x.speaker, []).append(x)
    return out


def _read(path: str) -> np.ndarray:
    try:
        from audior1.audio import load_audio
    except ImportError:  # the front end not built yet: same result via soundfile + soxr
        import soundfile as sf
        import soxr
        x, sr = sf.read(path, dtype="float32", always_2d=True)
        return soxr.resample(x[:, 0], sr, dsp.SR).astype(np.float32)
    return load_audio(path, max_seconds=60)


@functools.lru_cache(maxsize=4096)
def load(path: str) -> np.ndarray:
    """16 kHz, trimmed of silence (-35 dB re. peak), -22 dBFS RMS (lowered if it would clip). Read-only."""
    from audior1.data.speech import trim
    y = trim(_read(path), rel_db=-35.0)
    y = y * (dsp.db_to_amp(SPEECH_LEVEL_DB) / max(dsp.rms(y), 1e-9))
    peak = float(np.max(np.abs(y)))
    if peak > 0.7:
        y = y * (0.7 / peak)
    y = y.astype(np.float32)
    y.setflags(write=False)
    return y


def f0_of(y: np.ndarray) -> float:
    from audior1.data.measure import voice_f0_hz
    return voice_f0_hz(y)


def speaker_desc(spk: str, capital: bool = False) -> str:
    return f"{'A' if capital else 'a'} man with {ACCENT_TEXT[SPEAKERS[spk]]} (speaker {spk})"


def join(spec: Spec, recs: list[Recording]):
    """Recordings one after another with 0.35-0.6 s pauses, plus background noise."""
    t = float(spec.rng.uniform(0.1, 0.2))
    events, facts = [], []
    for k, rec in enumerate(recs):
        y = load(rec.path)
        events.append((t, y))
        facts.append(event("digit", t, len(y) / dsp.SR, 20 * np.log10(max(dsp.rms(y), 1e-9)), digit=rec.digit,
                           text=number_word(rec.digit), speaker=rec.speaker, file=rec.name))
        t += len(y) / dsp.SR + (float(spec.rng.uniform(0.35, 0.6)) if k < len(recs) - 1 else 0.0)
    x, bg = render(spec, t + 0.15, events, SPEECH_LEVEL_DB)
    return x, bg, facts


def _meta(bg: dict, recs: list[Recording], facts: list[dict], **extra) -> dict:
    spk = recs[0].speaker if len({x.speaker for x in recs}) == 1 else None
    labels = extra.pop("labels", {})
    labels["gender"] = "male"
    if spk:
        labels.update(speaker=spk, accent=SPEAKERS[spk])
    pauses = [r(b["onset_sec"] - a["onset_sec"] - a["duration_sec"], 3) for a, b in zip(facts, facts[1:])]
    transcript = " ".join(number_word(x.digit) for x in recs)
    speech = {"text": transcript, **({"f0_hz": extra["f0_hz"]} if "f0_hz" in extra else {})}
    return base_meta(bg, transcript=transcript, digits=[x.digit for x in recs],
                     speakers=[x.speaker for x in recs], files=[x.name for x in recs], counts={"digit": len(recs)},
                     durations_s=[f["duration_sec"] for f in facts], pauses_s=pauses,
                     **timeline(facts, ("speech", None, speech)), labels=labels, **extra)


# ---------------------------------------------------------------------------------------------- families
def fsdd_digit(spec: Spec, recordings: str) -> Draft:
    pool = by_split(recordings, spec.split)["digit"]
    d = sorted(pool)[spec.pick(len(pool))]
    rec = pool[d][spec.pick(len(pool[d]), f"rec{d}")]
    x, bg, facts = join(spec, [rec])
    meta = _meta(bg, [rec], facts)
    word = number_word(d)
    cap = f'{speaker_desc(rec.speaker, True)} says "{word}" ({fmt_s(facts[0]["duration_sec"])}){noise_phrase(bg)}.'
    cot = f'The speaker says "{word}", one word lasting about {fmt_s(facts[0]["duration_sec"])}: the digit {d}.'
    q = "Which digit does the speaker say?"
    if spec.qtype == "digit_mc":
        others = [number_word(k) for k in spec.rng.permutation([k for k in range(10) if k != d])[:3]]
        choices, ans = spec.layout(word, others)
    else:
        q, choices, ans = "Which digit does the speaker say? Answer with a number.", None, str(d)
    scot = f"{surrogate_intro('speech', word)} The transcript is the digit {d}."
    return Draft([x], q, choices, ans, meta, cap, cot, scot)


def fsdd_arith(spec: Spec, recordings: str) -> Draft:
    split = by_split(recordings, spec.split)
    n = 3 if spec.qtype == "sum" and spec.difficulty == "hard" else 2
    digits = [int(v) for v in spec.rng.integers(0, 10, n)]
    if spec.qtype == "larger":
        first_larger = spec.pick(2) == 0
        a, b = sorted(int(v) for v in spec.rng.choice(10, 2, replace=False))
        digits = [b, a] if first_larger else [a, b]
    speakers = sorted(split["speaker"])
    if spec.difficulty == "easy":
        spk = [speakers[int(spec.rng.integers(len(speakers)))]] * n
    else:
        spk = [speakers[int(i)] for i in spec.rng.integers(0, len(speakers), n)]
    recs = []
    for d, s in zip(digits, spk):
        cands = [x for x in split["digit"][d] if x.speaker == s] or split["digit"][d]
        recs.append(cands[int(spec.rng.integers(len(cands)))])
    x, bg, facts = join(spec, recs)
    words = [number_word(d) for d in digits]
    said = ", then ".join(f'{speaker_desc(x.speaker)} says "{w}"' for x, w in zip(recs, words))
    cap = f"{len(recs)} spoken digits separated by pauses: {said}{noise_phrase(bg)}."
    heard = ", ".join(f'"{w}" ({d})' for w, d in zip(words, digits))
    if spec.qtype == "sum":
        q, choices, ans = "What is the sum of the spoken numbers?", None, str(sum(digits))
        tail = f"{' + '.join(map(str, digits))} = {sum(digits)}."
        labels = {}
    elif spec.qtype == "difference":
        q, choices = "What is the first spoken number minus the second?", None
        ans = str(digits[0] - digits[1])
        tail = f"{digits[0]} - {digits[1]} = {digits[0] - digits[1]}."
        labels = {}
    else:
        q = "Which spoken number is larger, the first or the second?"
        k = 0 if digits[0] > digits[1] else 1
        choices, ans = spec.layout(f"the {ORD[k]} number", [f"the {ORD[1 - k]} number"])
        tail = f"{max(digits)} is more than {min(digits)}, so the {ORD[k]} number is larger."
        labels = {"larger": ORD[k], "smaller": ORD[1 - k]}
    meta = _meta(bg, recs, facts, labels=labels)
    cot = (f"I hear {len(recs)} spoken digits separated by pauses of about "
           f"{' and '.join(fmt_s(p) for p in meta['pauses_s'])}: {heard}. {tail}")
    scot = f"{surrogate_intro('speech', ' '.join(words))} Reading the numbers from the transcript, {tail}"
    return Draft([x], q, choices, ans, meta, cap, cot, scot)


def fsdd_speaker(spec: Spec, recordings: str) -> Draft:
    split = by_split(recordings, spec.split)
    speakers = sorted(s for s in split["speaker"] if s in SPEAKERS)
    if spec.qtype == "accent":
        accent = ACCENTS[spec.pick(len(ACCENTS))]
        options = [s for s in speakers if SPEAKERS[s] == accent]
        spk = options[int(spec.rng.integers(len(options)))]
    else:
        spk = speakers[spec.pick(len(speakers))]
    n = {"easy": 3, "medium": 2, "hard": 1}[spec.difficulty]
    pool = split["speaker"][spk]
    recs = [pool[int(i)] for i in spec.rng.choice(len(pool), n, replace=False)]
    x, bg, facts = join(spec, recs)
    f0 = f0_of(np.concatenate([load(rc.path) for rc in recs]))  # 0 where no voicing is found: then not stated
    meta = _meta(bg, recs, facts, **({"f0_hz": r(f0)} if f0 > 0 else {}))
    words = " ".join(number_word(rc.digit) for rc in recs)
    pitch = f" with a median pitch of about {fmt_hz(f0)}" if f0 > 0 else ""
    span = facts[-1]["onset_sec"] + facts[-1]["duration_sec"] - facts[0]["onset_sec"]
    # no pitch to state: state the words' span instead (a chain must measure something)
    heard = "" if f0 > 0 else f", {len(recs)} word{'s' if len(recs) > 1 else ''} over about {fmt_s(span)}"
    cap = (f'{speaker_desc(spk, True)}{f", median pitch about {fmt_hz(f0)}," if f0 > 0 else ""} says "{words}"'
           f"{noise_phrase(bg)}.")
    accent = ACCENT_TEXT[SPEAKERS[spk]]
    if spec.qtype == "accent":
        q = "Which accent does the speaker have?"
        choices, ans = spec.layout(accent, [ACCENT_TEXT[a] for a in ACCENTS if a != SPEAKERS[spk]])
        cot = f'A male voice{pitch} says "{words}"{heard}; its vowels and consonants carry {accent}.'
    else:
        q = "Which of these speakers is talking?"
        others = [s for s in speakers if s != spk]
        others = [others[int(i)] for i in spec.rng.permutation(len(others))[:3]]
        choices, ans = spec.layout(spk, others)
        cot = (f'A male voice{pitch} {"and" if pitch else "with"} {accent} says "{words}"{heard}; that voice and '
               f"accent belong to speaker {spk}.")
    pick = guess(spec, choices)  # independent of the answer: the words do not say who speaks
    scot = (f"{surrogate_intro('speech', words)} Nothing in those words tells who is speaking, so I can only go "
            f"by the wording of the question and pick the answer {pick}.")
    return Draft([x], q, choices, ans, meta, cap, cot, scot, surrogate_answer=pick)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("fsdd_digit", "speech", ("digit_mc", "digit_numeric"), fsdd_digit, doc="which digit is spoken"),
    Family("fsdd_arith", "speech", ("sum", "difference", "larger"), fsdd_arith,
           doc="two or three spoken digits: sum, difference, which is larger"),
    Family("fsdd_speaker", "speech", ("accent", "identity"), fsdd_speaker,
           doc="1-3 digits by one speaker: accent or speaker identity"),
)}


def make_item(task: str, split: str, seed: int, index: int, recordings: str) -> tuple[dict, list[np.ndarray]]:
    fam = FAMILIES[task]
    spec = make_spec(fam, split, seed, index)
    iid = item_id(task, split, seed, index)
    try:
        draft = fam.make(spec, recordings)
    except (FileNotFoundError, KeyError) as e:
        raise RuntimeError(f"generating {iid}: {e}") from e
    return finish(fam, spec, draft, [f"audio/{split}/{task}/{iid}.wav"]), draft.audio


def build(recordings: str | Path, out: str | Path, split: str, n_per_task: int, seed: int = 0,
          tasks: list[str] | None = None, workers: int | None = None, manifest: str | None = None,
          log=lambda s: print(s, file=sys.stderr)) -> Path:
    """Generate `n_per_task` items of each FSDD task for one split; return the manifest path."""
    from audior1.data.synth import write_items
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    names = list(FAMILIES) if not tasks or tasks == ["all"] else list(tasks)
    unknown = [t for t in names if t not in FAMILIES]
    if unknown:
        raise DataError(f"unknown FSDD task(s) {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    recordings = str(Path(recordings).resolve())
    index(recordings)  # fail early, in the parent, on a wrong directory
    maker = functools.partial(make_item, recordings=recordings)
    return write_items(Path(out), split, names, n_per_task, seed, maker, manifest or f"fsdd-{split}.jsonl",
                       workers, log=log)
