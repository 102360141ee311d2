"""What a clip holds, and whether a claim about one part of it is borne out: the one checker for claims.

`ClipFacts` lists a clip's sound events (kind, onset, duration, level, pitch / note, chord partials, noise
tilt and colour), its speech, background, level, loudness trend, tempo and SNR. Every value is a `Quantity`
that carries the tolerance its source supports, so the same `check` serves two sources:
- `from_meta(meta)`: the generator's facts (exact; tolerances are a listener's resolution, see `META_TOL`);
- `audior1.data.measure.measure_clip(audio)`: measured on the audio (tolerances of the measurement).

`resolve(phrase, facts)` finds the referent a phrase names ("the first tone", "the last beep", "the high
beeps", "the first two notes", "the second melody", "the higher one", "the tones after the announcement",
"the speech", "the background", "the clip"); `check(quantity, claimed, facts, referent)` compares a claimed
value with THAT referent's fact only — a value that matches another referent is inconsistent for this one —
and answers consistent, inconsistent or cannot tell, with a detail saying what was compared.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from audior1.data.dsp import hz_to_midi, midi_to_hz, note_name, note_to_midi

CONSISTENT, INCONSISTENT, CANNOT_TELL = "consistent", "inconsistent", "cannot tell"
COLOURS = {"white": 0.0, "pink": 3.0, "brown": 6.0, "blue": -3.0, "violet": -6.0}  # dB per octave the spectrum falls
TREND_CHANGE_DB = 3.0   # |change| below this is "steady"


@dataclass(frozen=True)
class Quantity:
    """A measured value with the precision its measurement supports.

    A claim within `tol` (plus the claim's own rounding) is consistent; one more than `tol + margin` away is
    inconsistent; in between the measurement cannot tell. `margin = inf` marks a measurement that can confirm a
    claim but not refute it."""
    value: float
    tol: float
    unit: str
    margin: float = 0.0
    above: float = 0.0                   # extra tolerance for claims above the value (e.g. a speech boundary
    below: float = 0.0                   # the detector may place early: quiet edges under the noise floor)

    def verdict(self, claimed: float, claim_tol: float = 0.0) -> str:
        d = float(claimed) - self.value
        t = self.tol + claim_tol + (self.above if d > 0 else self.below)
        if abs(d) <= t:
            return CONSISTENT
        return INCONSISTENT if abs(d) > t + self.margin else CANNOT_TELL

    def __str__(self) -> str:
        if self.above or self.below:
            return f"{self.value:.4g} (-{self.tol + self.below:.2g}/+{self.tol + self.above:.2g}) {self.unit}".rstrip()
        return f"{self.value:.4g} ± {self.tol:.2g} {self.unit}".rstrip()


@dataclass
class Event:
    """One sound event. `kind`: tone (one pitch), chord (several), click (< 45 ms), noise (unpitched),
    speech (voiced, moving pitch: a word or a run of words)."""
    kind: str
    onset: Quantity
    duration: Quantity
    level: Quantity                      # dBFS: RMS of the sustained part (the loudest 10 ms for clicks)
    f0: Quantity | None = None           # Hz (tones: the fundamental; speech: median voice F0)
    note: str | None = None              # nearest equal-tempered note of f0 (tones)
    cents: float | None = None           # f0 relative to that note
    pitches: list = field(default_factory=list)   # chord: the partials (Quantity, Hz), low to high
    tilt: Quantity | None = None         # noise: dB per octave the spectrum falls (white 0, pink 3, brown 6)
    colour: str | None = None            # noise colour named from the tilt (None where it falls between)
    tonality: float = 0.0                # share of the power in the strongest spectral lines (0..1)
    waveform: str | None = None          # sine / square / sawtooth (measured from the 2nd and 3rd harmonics)
    strongest_hz: float | None = field(default=None, repr=False)   # the strongest line (classification only)

    @property
    def offset(self) -> float:
        return self.onset.value + self.duration.value

    @property
    def notes(self) -> list[str]:
        return [_note(q.value) for q in self.pitches] if self.pitches else ([self.note] if self.note else [])


@dataclass
class Trend:
    """Loudness over time: a line fitted to the level of every 100 ms piece of the events."""
    label: str                           # rising | falling | steady
    change: Quantity                     # dB, end minus start
    slope: Quantity                      # dB per second
    start_level: Quantity                # dBFS at the first onset
    end_level: Quantity                  # dBFS at the last offset
    span: tuple[float, float]


@dataclass
class Speech:
    """Everything classified as speech, taken together."""
    onset: Quantity
    duration: Quantity                   # first speech onset to last speech offset
    level: Quantity
    f0: Quantity | None                  # median F0 of voiced frames (pYIN)
    syllables: int                       # syllable nuclei (intensity peaks in voiced frames)
    rate: Quantity | None                # syllables per second over the speech span (= words/s for monosyllables)
    words: Quantity | None               # separate words, or the syllable count for connected speech
    events: list[int] = field(default_factory=list)
    utterances: int = 0                  # runs of speech separated by pauses of UTTERANCE_GAP_S or more

    @property
    def offset(self) -> float:
        return self.onset.value + self.duration.value


@dataclass
class Background:
    """What lies between the events (at least 40 ms away from any)."""
    seconds: float
    level: Quantity | None               # dBFS RMS; None for digital silence
    tilt: Quantity | None
    colour: str | None


@dataclass
class ClipFacts:
    """What a clip holds, measured (`audior1.data.measure.measure_clip`) or stated by its generator (`from_meta`)."""
    duration: Quantity
    events: list[Event]
    level: Quantity | None               # dBFS RMS over the events
    trend: Trend | None                  # over the non-speech events (over the speech where there is nothing else)
    tempo: Quantity | None               # BPM of a regular train of onsets (>= 4 events); None where not rhythmic
    speech: Speech | None
    background: Background | None
    snr: Quantity | None                 # dB, event level over background level
    env_db: np.ndarray = field(default=None, repr=False)   # 10 ms frames, 5 ms hop: for group trends
    groups: dict = field(default_factory=dict)             # noun -> event index lists ("melody": the generator's)
    transcript: str | None = None                          # what is said (meta only: no speech recogniser here)
    source: str = "measurement"                            # or "meta"

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if not kinds or e.kind in kinds]

    @property
    def sounds(self) -> list[Event]:
        """The non-speech events."""
        return [e for e in self.events if e.kind != "speech"]

    @property
    def noise_colour(self) -> str | None:
        """The colour of the longest noise event, else of the background."""
        noise = [e for e in self.events if e.kind == "noise" and e.colour]
        if noise:
            return max(noise, key=lambda e: e.duration.value).colour
        return self.background.colour if self.background else None

    def to_dict(self) -> dict:
        def conv(v):
            if isinstance(v, Quantity):
                return {"value": round(v.value, 4), "tol": round(v.tol, 4), "unit": v.unit,
                        **({"margin": v.margin if math.isfinite(v.margin) else "inf"} if v.margin else {})}
            if isinstance(v, (list, tuple)):
                return [conv(u) for u in v]
            if isinstance(v, float):
                return round(v, 4)
            if hasattr(v, "__dataclass_fields__"):
                return {k: conv(getattr(v, k)) for k in v.__dataclass_fields__ if k != "env_db"}
            return v
        return conv(self)


# ------------------------------------------------------------------------------------------- helpers
def _note(hz: float) -> str:
    return note_name(hz_to_midi(hz))


def _colour(tilt: float, band: float) -> str | None:
    """The colour whose tilt is nearest, unless `tilt` lies within `band` of the midpoint to a neighbour."""
    name, ref = min(COLOURS.items(), key=lambda kv: abs(kv[1] - tilt))
    if abs(tilt - ref) > 1.5 - band:
        return None
    return name


def _regular_tempo(onsets: list[float]) -> Quantity | None:
    """BPM of a regular train: >= 4 onsets whose intervals vary by under 8%; the period is the slope of a line
    through (index, onset)."""
    if len(onsets) < 4:
        return None
    ioi = np.diff(onsets)
    if np.std(ioi) > 0.08 * np.mean(ioi) or np.min(ioi) <= 0:
        return None
    idx = np.arange(len(onsets))
    period, _ = np.polyfit(idx, onsets, 1)
    bpm = 60.0 / period
    return Quantity(bpm, max(0.02 * bpm, 1.0), "BPM")


def envelope_points(env_db: np.ndarray, events: list[Event], hop: float = 0.005) -> list[tuple[float, float]]:
    """(time, dB) of each 100 ms piece of the events' sustained parts (one point per short event), read from a
    level envelope of 10 ms frames every `hop` seconds."""
    pts = []
    for e in events:
        a, b = e.onset.value, e.offset
        edge = min(0.03, (b - a) / 4)
        i, j = int((a + edge) / hop), int((b - edge) / hop)
        j = max(j, i + 1)
        for k in range(i, j, 20):
            piece = env_db[k:min(k + 20, j)]
            if len(piece):
                pts.append((a + edge + (k - i + len(piece) / 2) * hop,
                            10 * math.log10(max(float(np.mean(10 ** (piece / 10))), 1e-12))))
    return pts


def trend_from_points(pts: list[tuple[float, float]], t0: float, t1: float) -> Trend | None:
    """A line through (time, dB) points evaluated at `t0` (the first onset) and `t1` (the last offset); its
    tolerance grows with the scatter around the line."""
    if len(pts) < 3:
        return None
    t, v = np.array(pts).T
    slope, icept = np.polyfit(t, v, 1)
    resid = float(np.std(v - (slope * t + icept)))
    start, end = slope * t0 + icept, slope * t1 + icept
    change = end - start
    tol = 1.5 + min(resid, 3.0) / 2
    label = "rising" if change >= TREND_CHANGE_DB else "falling" if change <= -TREND_CHANGE_DB else "steady"
    return Trend(label, Quantity(change, tol, "dB"), Quantity(slope, tol / max(t1 - t0, 0.1), "dB/s"),
                 Quantity(start, 2.0 + min(resid, 3.0) / 2, "dBFS"), Quantity(end, 2.0 + min(resid, 3.0) / 2, "dBFS"),
                 (t0, t1))


def group_trend(m: ClipFacts, events: list[Event]) -> Trend | None:
    """The loudness trend of some events: from the clip's level envelope where it was measured, else from the
    events' own levels (facts from `meta`)."""
    if not events:
        return None
    if m.env_db is None:
        return levels_trend(events)
    return trend_from_points(envelope_points(m.env_db, events), events[0].onset.value, max(e.offset for e in events))


def levels_trend(events: list[Event]) -> Trend | None:
    """The trend of events from their own levels (one point each)."""
    ok = [e for e in events if math.isfinite(e.level.value)]
    if len(ok) < 3:
        return None
    return trend_from_points([(e.onset.value + e.duration.value / 2, e.level.value) for e in ok],
                             ok[0].onset.value, max(e.offset for e in ok))


# ------------------------------------------------------------------------------------------- referents
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
            "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "6th": 6, "7th": 7, "8th": 8,
            "9th": 9, "10th": 10, "last": -1, "final": -1, "penultimate": -2, "second to last": -2,
            "second-to-last": -2, "opening": 1}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10}
SOUND_KINDS = ("tone", "chord", "click", "noise", "sound")
NOUNS = {  # noun (singular) -> event kinds it names (None: whatever the clip's events are)
    "tone": ("tone",), "beep": ("tone",), "bleep": ("tone",), "pulse": ("tone", "click"), "note": ("tone",),
    "pitch": ("tone",), "click": ("click",), "tick": ("click",), "knock": ("click",), "clap": ("click",),
    "chord": ("chord",), "noise": ("noise",), "burst": ("noise", "click"), "hiss": ("noise",),
    "word": ("speech",), "digit": ("speech",), "number": ("speech",), "syllable": ("speech",),
    "sound": None, "event": None, "one": None, "part": None,
}
PLURALS = {"melodies": "melody", "phrases": "phrase", "noises": "noise", "pitches": "pitch", "bursts": "burst"}
CLIP_WORDS = {"", "clip", "whole clip", "entire clip", "recording", "audio", "whole recording", "everything",
              "whole thing", "overall", "sound as a whole", "clip as a whole", "track", "file"}
BACKGROUND_WORDS = {"background", "background noise", "noise floor", "floor", "backdrop", "hiss in the background",
                    "background hiss"}
SPEECH_WORDS = {"speech", "voice", "speaker", "announcement", "spoken part", "talking", "spoken words", "narrator",
                "utterance", "sentence", "spoken sentence", "voice's pitch", "speaking voice"}


@dataclass(frozen=True)
class Referent:
    """What a claim is about: the clip, the background, the speech, one event, or a group of events (indices into
    `ClipFacts.events`). `whole`: the group taken as one span (a melody, "the sound" of several beeps)."""
    kind: str                            # clip | background | speech | event | group
    events: tuple = ()
    name: str = ""
    whole: bool = False
    noun: str = ""                       # the noun that named it (singular), if any


def _singular(word: str) -> str:
    if word in PLURALS:
        return PLURALS[word]
    return word[:-1] if word.endswith("s") and word[:-1] in NOUNS else word


def _candidates(m: ClipFacts, kinds) -> list[int]:
    if kinds is None:
        sounds = [i for i, e in enumerate(m.events) if e.kind != "speech"]
        return sounds or [i for i, e in enumerate(m.events)]
    return [i for i, e in enumerate(m.events) if e.kind in kinds]


def _registers(m: ClipFacts, idx: list[int]) -> tuple[list[int], list[int]] | None:
    """Split pitched events into a high and a low register at the widest pitch gap (>= 1.5 semitones)."""
    pitched = sorted((m.events[i].f0.value, i) for i in idx if m.events[i].f0 is not None)
    if len(pitched) < 2:
        return None
    gaps = [(12 * math.log2(b[0] / a[0]), k) for k, (a, b) in enumerate(zip(pitched, pitched[1:]))]
    gap, k = max(gaps)
    if gap < 1.5:
        return None
    low = sorted(i for _, i in pitched[:k + 1])
    high = sorted(i for _, i in pitched[k + 1:])
    return high, low


def _phrases(m: ClipFacts, idx: list[int]) -> list[list[int]]:
    """Events grouped at pauses longer than twice the median gap and 0.3 s longer than it."""
    if len(idx) < 2:
        return [idx]
    gaps = [m.events[b].onset.value - m.events[a].offset for a, b in zip(idx, idx[1:])]
    med = float(np.median(gaps))
    out, cur = [], [idx[0]]
    for g, i in zip(gaps, idx[1:]):
        if g > max(2 * med, med + 0.3):
            out.append(cur)
            cur = []
        cur.append(i)
    return out + [cur]


_REF = re.compile(
    r"^(?:(?P<ord>first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(?:st|nd|rd|th)|last|final|"
    r"penultimate|second[- ]to[- ]last|opening)\s+)?"
    r"(?:(?P<num>one|two|three|four|five|six|seven|eight|nine|ten|\d+)\s+)?"
    r"(?:(?P<reg>high|higher|high-pitched|higher-pitched|low|lower|low-pitched|lower-pitched)\s+)?"
    r"(?P<noun>[a-z]+)?$")
_COMPARATIVE = re.compile(r"^(?P<cmp>higher|lower|longer|shorter|louder|quieter|softer|highest|lowest|longest|"
                          r"shortest|loudest|quietest|softest)(?:[- ]pitched)?\s+(?P<noun>[a-z]+)$")


def resolve(referent, m: ClipFacts) -> tuple[Referent | None, str]:
    """The referent a phrase names in these measurements, or (None, why not). `referent` is a phrase ("the first
    tone", "the last beep", "the second", "the high beeps", "the first two notes", "the second melody", "the higher
    one", "the tones after the announcement", "the speech", "the background", "the clip"), an event index (int,
    Python-style), or a `Referent`. Positions count events of the named kind (beeps: tones; words: speech)."""
    if isinstance(referent, Referent):
        return referent, ""
    if referent is None:
        return Referent("clip", name="the clip"), ""
    if isinstance(referent, (int, np.integer)):
        idx = _candidates(m, None)
        try:
            return Referent("event", (idx[int(referent)],), f"event {int(referent)}"), ""
        except IndexError:
            return None, f"no event {int(referent)} (found {len(idx)})"
    text = " ".join(str(referent).lower().replace("’", "'").split()).strip(" .,;:!?")
    text = re.sub(r"^(the|a|an|this|that|these|those)\s+", "", text)
    if text in CLIP_WORDS or text.endswith(" as a whole") and text[:-11] in CLIP_WORDS:
        return Referent("clip", name="the clip"), ""
    if text in BACKGROUND_WORDS:
        return Referent("background", name="the background"), ""
    if text in SPEECH_WORDS:
        return (Referent("speech", name="the speech"), "") if m.speech else (None, "no speech found in the clip")
    after = before = False
    for pat, flag in ((r"\s+(?:after|following)\s+(?:the\s+)?(?:announcement|voice|speech|speaker|words)$", "after"),
                      (r"\s+(?:before|preceding)\s+(?:the\s+)?(?:announcement|voice|speech|speaker|words)$", "before")):
        if re.search(pat, text):
            text = re.sub(pat, "", text)
            after, before = after or flag == "after", before or flag == "before"
    if (after or before) and not m.speech:
        return None, "no speech found to place the events against"

    def restrict(idx):
        if after:
            idx = [i for i in idx if m.events[i].onset.value >= m.speech.offset - 0.01]
        if before:
            idx = [i for i in idx if m.events[i].offset <= m.speech.onset.value + 0.01]
        return idx

    cm = _COMPARATIVE.match(text)
    if cm:
        noun = _singular(cm["noun"])
        if noun not in NOUNS:
            return None, f"unknown noun {cm['noun']!r}"
        idx = restrict(_candidates(m, NOUNS[noun]))
        key = {"high": lambda e: e.f0.value if e.f0 else None, "low": lambda e: -e.f0.value if e.f0 else None,
               "lon": lambda e: e.duration.value, "sho": lambda e: -e.duration.value,
               "lou": lambda e: e.level.value, "qui": lambda e: -e.level.value, "sof": lambda e: -e.level.value}
        f = key[cm["cmp"][:3] if cm["cmp"][:3] in key else cm["cmp"][:4]]
        vals = [(f(m.events[i]), i) for i in idx if f(m.events[i]) is not None]
        if len(vals) < 2:
            return None, f"'{cm['cmp']} {noun}' needs two or more {noun}s (found {len(vals)})"
        vals.sort(reverse=True)
        tol = {"hig": 0.006 * abs(vals[0][0]), "low": 0.006 * abs(vals[0][0]), "lon": 0.02, "sho": 0.02,
               "lou": 1.0, "qui": 1.0, "sof": 1.0}[cm["cmp"][:3]]
        if vals[0][0] - vals[1][0] <= 2 * tol:
            return None, f"no single {cm['cmp']} {noun}: the top two are within the measurement's precision"
        return Referent("event", (vals[0][1],), f"the {cm['cmp']} {noun}"), ""
    r = _REF.match(text)
    if not r:
        return None, f"cannot read the referent {referent!r}"
    word = r["noun"] or "one"
    noun = _singular(word)
    plural = word != noun or (r["num"] is not None and r["ord"] is not None)
    if noun in ("melody", "phrase", "group", "sequence", "run"):
        idx = restrict(_candidates(m, None))
        groups = m.groups.get("melody") if noun == "melody" and m.groups.get("melody") else _phrases(m, idx)
        k = ORDINALS.get(r["ord"] or "", None)
        if k is None:
            if len(groups) == 1 and not plural:
                return Referent("group", tuple(groups[0]), f"the {noun}", whole=True), ""
            return None, f"which {noun}? found {len(groups)}"
        if not -len(groups) <= (k - 1 if k > 0 else k) < len(groups):
            return None, f"no {r['ord']} {noun}: found {len(groups)}"
        g = groups[k - 1 if k > 0 else k]
        return Referent("group", tuple(g), f"the {r['ord']} {noun}", whole=True), ""
    if noun not in NOUNS:
        return None, f"unknown noun {word!r}"
    if noun == "pitch":  # "the first pitch": the first pitched event
        noun = "tone"
    idx = restrict(_candidates(m, NOUNS[noun]))
    chords = restrict(_candidates(m, ("chord",)))
    if not idx and noun in ("note", "tone") and len(chords) == 1 and not r["ord"] and not r["reg"]:
        return Referent("event", (chords[0],), f"the {word} of the chord", noun=noun), ""  # "3 notes", "the notes"
    name = " ".join(v for v in (r["ord"], r["num"], r["reg"], word) if v)
    if r["reg"]:
        if not idx:
            return None, f"no {noun} found in the clip"
        regs = _registers(m, idx)
        if regs is None:
            return None, "the pitches do not fall into a high and a low register"
        idx = regs[0] if r["reg"].startswith("high") else regs[1]
    if r["ord"]:
        k = ORDINALS[r["ord"]] if r["ord"] in ORDINALS else int(re.match(r"\d+", r["ord"])[0])
        if r["num"]:  # "the first two notes", "the last three beeps"
            n = NUMBER_WORDS.get(r["num"]) or int(r["num"])
            if n > len(idx):
                return None, f"only {len(idx)} {noun}s found"
            sel = idx[:n] if k > 0 else idx[-n:]
            return Referent("group", tuple(sel), f"the {name}"), ""
        pos = k - 1 if k > 0 else k
        if not -len(idx) <= pos < len(idx):
            return None, f"no {r['ord']} {noun}: found {len(idx)}"
        return Referent("event", (idx[pos],), f"the {name}"), ""
    if not idx:
        if plural and noun in ("word", "digit", "number", "syllable") and m.speech:  # connected speech: counted
            return Referent("speech", tuple(m.speech.events), f"the {name}", noun=noun), ""
        return None, f"no {noun} found in the clip"
    if plural or r["reg"]:
        return Referent("group", tuple(idx), f"the {name}", noun=noun), ""
    if len(idx) == 1:
        return Referent("event", (idx[0],), f"the {name}", noun=noun), ""
    return Referent("group", tuple(idx), f"the {name} (as a whole: {len(idx)} events)", whole=True, noun=noun), ""


# ------------------------------------------------------------------------------------------- check
QUANTITIES = {
    "pitch": "pitch", "f0": "pitch", "frequency": "pitch", "note": "pitch",
    "voice_f0": "voice_f0", "voice_pitch": "voice_f0",
    "tempo": "tempo", "bpm": "tempo",
    "duration": "duration", "length": "duration", "clip_duration": "duration",
    "onset": "onset", "start": "onset", "time": "onset",
    "offset": "offset", "end": "offset",
    "count": "count", "number": "count",
    "level": "level", "loudness": "level",
    "trend": "trend", "loudness_trend": "trend",
    "level_change": "level_change", "change": "level_change",
    "start_level": "start_level", "end_level": "end_level",
    "speaking_rate": "speaking_rate", "rate": "speaking_rate", "words_per_second": "speaking_rate",
    "noise_colour": "noise_colour", "noise_color": "noise_colour", "colour": "noise_colour", "color": "noise_colour",
    "noise_tilt": "noise_tilt", "spectral_slope": "noise_tilt", "noise_slope": "noise_slope",
    "snr": "snr",
    "pause": "pause", "gap": "pause",
    "registers": "registers", "sequence": "registers",
    "waveform": "waveform",
    "overtone": "overtone",
    "transcript": "transcript", "says": "transcript",
}
TREND_WORDS = {
    "rising": ("rising", "louder", "getting louder", "crescendo", "increasing", "up", "growing", "swelling",
               "rises", "grows", "gets louder"),
    "falling": ("falling", "softer", "quieter", "getting softer", "getting quieter", "decrescendo", "diminuendo",
                "fading", "fading out", "decreasing", "down", "falls", "fades", "gets softer", "gets quieter"),
    "steady": ("steady", "same", "the same", "constant", "staying about the same", "level", "flat", "unchanged",
               "even", "stays the same", "stable"),
}
_NOTE = re.compile(r"^([A-Ga-g])([#♯b♭]?)(-?\d)$")


def _parse(claimed) -> tuple[float, float]:
    """(value, half a unit of its last written digit): "1.8" -> (1.8, 0.05), "440 Hz" -> (440, 0.5), 0.3 -> (0.3, 0)."""
    if isinstance(claimed, (int, float, np.integer, np.floating)) and not isinstance(claimed, bool):
        return float(claimed), 0.0
    text = str(claimed).strip().replace("−", "-").replace(",", "")
    mm = re.match(r"^[~≈]?\s*(?:about\s+|around\s+|roughly\s+)?([-+]?\d+(?:\.(\d+))?)", text)
    if not mm:
        raise ValueError(f"not a number: {claimed!r}")
    return float(mm[1]), 0.5 * 10 ** -len(mm[2] or "")


def _range(claimed) -> tuple[float, float] | None:
    if isinstance(claimed, (tuple, list)) and len(claimed) == 2:
        return float(claimed[0]), float(claimed[1])
    if isinstance(claimed, str):
        mm = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(?:-|–|—|to)\s*(\d+(?:\.\d+)?)", claimed)
        if mm:
            return float(mm[1]), float(mm[2])
    return None


def _combine(verdicts: list[str]) -> str:
    """A group claim ("the beeps are at 1180 Hz"): consistent if every member is, inconsistent if most are not."""
    if not verdicts:
        return CANNOT_TELL
    if all(v == CONSISTENT for v in verdicts):
        return CONSISTENT
    if sum(v == INCONSISTENT for v in verdicts) * 2 > len(verdicts):
        return INCONSISTENT
    return CANNOT_TELL


def _cell_verdict(value: float, tol: float, lo: float, hi: float) -> str:
    """A claimed category that is an interval [lo, hi) of the measured scale (a trend, a noise colour)."""
    if lo <= value < hi:
        return CONSISTENT
    return INCONSISTENT if value + tol < lo or value - tol >= hi else CANNOT_TELL


def _members(ref: Referent, m: ClipFacts) -> list[Event]:
    return [m.events[i] for i in ref.events]


def check(quantity: str, claimed, m: ClipFacts, referent=None, *, claim_tol: float | None = None,
          unit: str | None = None) -> tuple[str, str]:
    """Is a claim about a measurable quantity of one referent borne out by the clip's measurements?

    quantity: pitch (Hz, or a note name such as "A4"), voice_f0 (Hz), tempo (BPM, or a range such as "110-130"),
    duration / onset / offset (s), count, level (dBFS), trend ("rising" / "falling" / "steady" and synonyms),
    level_change (dB, end minus start), start_level / end_level (dBFS), speaking_rate (words per second; unit="wpm"
    for per minute), noise_colour ("white" / "pink" / "brown"), noise_tilt (dB per octave the spectrum falls),
    snr (dB). referent: see `resolve` (default: the clip). claim_tol: how precisely the claim was stated (by
    default half a unit of the last digit when `claimed` is a string, else 0).

    Returns (status, detail): status is "consistent", "inconsistent" or "cannot tell" (nothing to measure, the
    referent not found, or the claim within the measurement's uncertainty of being wrong); detail says what was
    measured. A value that matches another referent's measurement is inconsistent for this one."""
    q = QUANTITIES.get(quantity.lower().replace(" ", "_").replace("-", "_"))
    if q is None:
        raise ValueError(f"unknown quantity {quantity!r}; known: {', '.join(sorted(set(QUANTITIES.values())))}")
    if q == "voice_f0" and (referent is None or (isinstance(referent, str) and referent.strip().lower() in
                                                 ("", "clip", "the clip"))):
        referent = "speech"
    ref, why = resolve(referent, m)
    if ref is None:
        return CANNOT_TELL, why
    try:
        return globals()[f"_check_{q}"](claimed, m, ref, claim_tol, unit)
    except ValueError as e:
        return CANNOT_TELL, str(e)


def _num(claimed, claim_tol) -> tuple[float, float]:
    v, ulp = _parse(claimed)
    return v, ulp if claim_tol is None else claim_tol


def _by_quantity(ref: Referent, values: list[tuple[str, Quantity | None]], claimed: float, ctol: float,
                 what: str) -> tuple[str, str]:
    known = [(n, qv) for n, qv in values if qv is not None]
    if not known:
        return CANNOT_TELL, f"no {what} measured for {ref.name}"
    verdicts = [qv.verdict(claimed, ctol) for _, qv in known]
    detail = "; ".join(f"{n}: {qv}" for n, qv in known[:8]) + (" ..." if len(known) > 8 else "")
    return _combine(verdicts), f"{ref.name} {what} {detail} (claimed {claimed:g})"


def _check_pitch(claimed, m, ref, claim_tol, unit):
    if ref.kind == "background":
        return CANNOT_TELL, "the background has no pitch"
    if ref.kind == "speech":
        return _check_voice_f0(claimed, m, ref, claim_tol, unit)
    if ref.kind == "clip":
        pitched = [i for i, e in enumerate(m.events) if e.kind in ("tone", "chord")]
        if not pitched:
            if m.speech:
                return _check_voice_f0(claimed, m, Referent("speech", name="the speech"), claim_tol, unit)
            return CANNOT_TELL, "no pitched sound in the clip"
        ref = Referent("group", tuple(pitched), "the clip's pitched sounds")
    events = _members(ref, m)
    note = isinstance(claimed, str) and _NOTE.match(claimed.strip())
    if note:
        target = midi_to_hz(note_to_midi(claimed.strip()))
    else:
        target, ctol = _num(claimed, claim_tol)
    verdicts, parts = [], []
    for e in events:
        qs = e.pitches if e.kind == "chord" else ([e.f0] if e.f0 is not None else [])
        if not qs:
            parts.append(f"{e.kind} at {e.onset.value:.2f} s: no pitch")
            verdicts.append(CANNOT_TELL)
            continue
        if note:  # within half a semitone (plus the measurement's precision) of the note
            vs = []
            for qv in qs:
                cents = abs(1200 * math.log2(qv.value / target))
                tol_c = 1200 * math.log2(1 + qv.tol / qv.value)
                margin_c = 1200 * math.log2(1 + qv.margin / qv.value) if math.isfinite(qv.margin) else math.inf
                vs.append(CONSISTENT if cents <= 50 + tol_c else
                          INCONSISTENT if cents > 50 + tol_c + margin_c else CANNOT_TELL)
        else:
            vs = [qv.verdict(target, ctol) for qv in qs]
        # a chord matches a claimed pitch if any of its notes does
        verdicts.append(CONSISTENT if CONSISTENT in vs else CANNOT_TELL if CANNOT_TELL in vs else INCONSISTENT)
        parts.append(f"{e.kind} at {e.onset.value:.2f} s: " + ", ".join(f"{qv} ({_note(qv.value)})" for qv in qs))
    return _combine(verdicts), f"{ref.name}: " + "; ".join(parts[:8]) + f" (claimed {claimed})"


def _check_voice_f0(claimed, m, ref, claim_tol, unit):
    v, ctol = _num(claimed, claim_tol)
    if ref.kind == "speech":
        return _by_quantity(ref, [("median F0", m.speech.f0)], v, ctol, "voice")
    events = [e for e in _members(ref, m) if e.kind == "speech"] if ref.kind in ("event", "group") else []
    if not events:
        return CANNOT_TELL, f"{ref.name} is not speech"
    return _by_quantity(ref, [(f"word at {e.onset.value:.2f} s F0", e.f0) for e in events], v, ctol, "voice")


def _check_tempo(claimed, m, ref, claim_tol, unit):
    sounds = [i for i, e in enumerate(m.events) if e.kind != "speech"]
    if ref.kind == "group" and sorted(ref.events) == sounds and m.tempo is not None:
        ref = Referent("clip", name=ref.name)  # all the clip's sounds: the clip's tempo (meta's holds for 3 clicks)
    if ref.kind in ("group", "event") and len(ref.events) >= 4:
        tempo = _regular_tempo([m.events[i].onset.value for i in ref.events])
    elif ref.kind == "clip":
        tempo = m.tempo
    else:
        return CANNOT_TELL, f"{ref.name} has no tempo"
    if tempo is None:
        return CANNOT_TELL, f"{ref.name}: no regular beat (4 or more evenly spaced onsets) found"
    rng = _range(claimed)
    if rng:
        lo, hi = rng
        return _cell_verdict(tempo.value, tempo.tol, lo - tempo.tol, hi + tempo.tol + 1e-9), \
            f"{ref.name} tempo {tempo} (claimed {lo:g}-{hi:g} BPM)"
    v, ctol = _num(claimed, claim_tol)
    return tempo.verdict(v, ctol), f"{ref.name} tempo {tempo} (claimed {v:g})"


def _span(events: list[Event]) -> tuple[float, float]:
    return events[0].onset.value, max(e.offset for e in events)


def _check_duration(claimed, m, ref, claim_tol, unit):
    v, ctol = _num(claimed, claim_tol)
    if ref.kind == "clip":
        return _by_quantity(ref, [("length", m.duration)], v, ctol, "clip")
    if ref.kind == "speech":
        return _by_quantity(ref, [("span", m.speech.duration)], v, ctol, "speech")
    if ref.kind == "background":
        return CANNOT_TELL, "the background lasts the whole clip"
    events = _members(ref, m)
    if ref.whole:
        a, b = _span(events)
        last = max(events, key=lambda e: e.offset)
        span = Quantity(b - a, events[0].onset.tol + last.duration.tol, "s", margin=last.duration.margin,
                        above=last.duration.above, below=events[0].onset.below)
        return _by_quantity(ref, [("span", span)], v, ctol, "lasts")
    return _by_quantity(ref, [(f"{e.kind} at {e.onset.value:.2f} s", e.duration) for e in events], v, ctol,
                        "duration")


def _check_onset(claimed, m, ref, claim_tol, unit):
    v, ctol = _num(claimed, claim_tol)
    if ref.kind == "speech":
        return _by_quantity(ref, [("start", m.speech.onset)], v, ctol, "starts")
    if ref.kind == "background":
        return CANNOT_TELL, "the background has no onset"
    events = _members(ref, m) if ref.kind != "clip" else m.events
    if not events:
        return CANNOT_TELL, "no event found"
    if ref.kind == "clip" or ref.whole:
        return _by_quantity(ref, [("first onset", events[0].onset)], v, ctol, "starts")
    return _by_quantity(ref, [(f"{e.kind}", e.onset) for e in events], v, ctol, "onset")


def _check_offset(claimed, m, ref, claim_tol, unit):
    v, ctol = _num(claimed, claim_tol)
    if ref.kind == "speech":
        return _by_quantity(ref, [("end", Quantity(m.speech.offset, 0.05, "s", margin=0.08, above=0.12))], v, ctol,
                            "ends")
    if ref.kind == "background":
        return CANNOT_TELL, "the background has no end"
    events = _members(ref, m) if ref.kind != "clip" else m.events
    if not events:
        return CANNOT_TELL, "no event found"
    q = lambda e: Quantity(e.offset, e.onset.tol + e.duration.tol, "s", margin=e.duration.margin,  # noqa: E731
                           above=e.duration.above)
    if ref.kind == "clip" or ref.whole:
        last = max(events, key=lambda e: e.offset)
        return _by_quantity(ref, [("last offset", q(last))], v, ctol, "ends")
    return _by_quantity(ref, [(f"{e.kind}", q(e)) for e in events], v, ctol, "end")


def _check_count(claimed, m, ref, claim_tol, unit):
    v, _ = _parse(claimed)
    if ref.kind == "speech" or (ref.kind == "group" and ref.events and
                                all(m.events[i].kind == "speech" for i in ref.events) and
                                len(ref.events) == len(m.speech.events if m.speech else ())):
        if not m.speech:
            return CANNOT_TELL, "no speech found"
        if ref.noun in ("digit", "number"):  # spoken numbers: utterances separated by pauses
            n = m.speech.utterances
            return (CONSISTENT if n == v else INCONSISTENT), \
                f"the speech: {n} utterances separated by pauses (claimed {v:g})"
        if ref.noun == "syllable":
            return Quantity(float(m.speech.syllables), 0.0, "", margin=max(1.0, round(0.3 * m.speech.syllables))
                            ).verdict(v), f"the speech: {m.speech.syllables} syllable nuclei (claimed {v:g})"
        words = m.speech.words
        if words is None:
            return CANNOT_TELL, "no words measured"
        return words.verdict(v), f"the speech: {words} words ({m.speech.syllables} syllable nuclei; claimed {v:g})"
    if ref.kind == "clip":
        ref = Referent("group", tuple(_candidates(m, None)), "the clip's events")
    if ref.kind == "background":
        return CANNOT_TELL, "nothing to count in the background"
    events = _members(ref, m)
    if ref.kind == "event" and events[0].kind == "chord":  # "the chord has three notes"
        n = len(events[0].pitches)
        return (CONSISTENT if n == v else INCONSISTENT), f"{ref.name}: {n} notes {events[0].notes} (claimed {v:g})"
    if ref.kind == "event":
        return CANNOT_TELL, f"{ref.name} is one event"
    chords = [e for e in events if e.kind == "chord"]
    if not events and chords:
        events = chords
    n = len(events)
    return (CONSISTENT if n == round(v) and v == round(v) else INCONSISTENT), \
        f"{ref.name}: {n} counted (claimed {v:g})"


def _check_level(claimed, m, ref, claim_tol, unit):
    v, ctol = _num(claimed, claim_tol)
    if ref.kind == "clip":
        return _by_quantity(ref, [("RMS over the events", m.level)], v, ctol, "level")
    if ref.kind == "speech":
        return _by_quantity(ref, [("RMS", m.speech.level)], v, ctol, "level")
    if ref.kind == "background":
        return _by_quantity(ref, [("RMS", m.background.level if m.background else None)], v, ctol, "level")
    events = _members(ref, m)
    return _by_quantity(ref, [(f"{e.kind} at {e.onset.value:.2f} s", e.level) for e in events], v, ctol, "level")


def _trend_of(m: ClipFacts, ref: Referent) -> Trend | None:
    if ref.kind == "clip":
        return m.trend
    if ref.kind == "speech":
        return group_trend(m, [m.events[i] for i in m.speech.events])
    if ref.kind == "background":
        return None
    sounds = [i for i, e in enumerate(m.events) if e.kind != "speech"]
    if m.trend is not None and sorted(ref.events) == sounds:  # all the clip's sounds: the clip's trend
        return m.trend
    return group_trend(m, _members(ref, m))


def _check_trend(claimed, m, ref, claim_tol, unit):
    tr = _trend_of(m, ref)
    if tr is None:
        return CANNOT_TELL, f"{ref.name}: too little sound to fit a loudness trend"
    word = " ".join(str(claimed).lower().split())
    label = next((k for k, ws in TREND_WORDS.items() if word in ws), None)
    if label is None:
        raise ValueError(f"not a loudness trend: {claimed!r}")
    lo, hi = {"rising": (TREND_CHANGE_DB, math.inf), "falling": (-math.inf, -TREND_CHANGE_DB),
              "steady": (-TREND_CHANGE_DB, TREND_CHANGE_DB)}[label]
    c = tr.change
    return _cell_verdict(c.value, c.tol, lo, hi if label != "falling" else hi + 1e-9), \
        f"{ref.name}: {tr.label}, change {c} ({tr.slope}) from {tr.start_level.value:.1f} to " \
        f"{tr.end_level.value:.1f} dBFS (claimed {claimed})"


def _trend_value(claimed, m, ref, claim_tol, what: str, name: str):
    tr = _trend_of(m, ref)
    v, ctol = _num(claimed, claim_tol)
    return (CANNOT_TELL, f"{ref.name}: no loudness trend") if tr is None else \
        _by_quantity(ref, [(name, getattr(tr, what))], v, ctol, "level")


def _check_level_change(claimed, m, ref, claim_tol, unit):
    return _trend_value(claimed, m, ref, claim_tol, "change", "change (end minus start)")


def _check_start_level(claimed, m, ref, claim_tol, unit):
    return _trend_value(claimed, m, ref, claim_tol, "start_level", "at the start")


def _check_end_level(claimed, m, ref, claim_tol, unit):
    return _trend_value(claimed, m, ref, claim_tol, "end_level", "at the end")


def _check_speaking_rate(claimed, m, ref, claim_tol, unit):
    v, ctol = _num(claimed, claim_tol)
    if unit and unit.lower() in ("wpm", "words per minute", "per minute", "spm", "syllables per minute"):
        v, ctol = v / 60, ctol / 60
    if not m.speech:
        return CANNOT_TELL, "no speech found"
    return _by_quantity(Referent("speech", name="the speech"),
                        [(f"{m.speech.syllables} syllables in {m.speech.duration.value:.2f} s", m.speech.rate)],
                        v, ctol, "rate (per second)")


def _noise_target(m, ref):
    """(name, the thing whose noise a claim describes: a noise event or the background, or None)."""
    if ref.kind == "background":
        return "the background", m.background
    if ref.kind == "clip":
        noise = [e for e in m.events if e.kind == "noise" and (e.tilt is not None or e.colour)]
        if noise:
            e = max(noise, key=lambda e: e.duration.value)
            return f"the noise at {e.onset.value:.2f} s", e
        return "the background", m.background
    if ref.kind == "speech":
        return "the speech", None
    noise = [e for e in _members(ref, m) if e.tilt is not None or e.colour]
    return ref.name, max(noise, key=lambda e: e.duration.value) if noise else None


def _check_noise_colour(claimed, m, ref, claim_tol, unit):
    name, src = _noise_target(m, ref)
    colour = str(claimed).lower().replace("noise", "").replace("brownian", "brown").replace("red", "brown").strip()
    if colour not in COLOURS:
        raise ValueError(f"unknown noise colour {claimed!r}")
    if src is not None and src.colour and (src.tilt is None or m.source == "meta"):  # the generator's own word
        return (CONSISTENT if src.colour == colour else INCONSISTENT), f"{name}: {src.colour} noise (claimed {colour})"
    if src is None or src.tilt is None:
        return CANNOT_TELL, f"{name}: no noise to measure the colour of"
    tilt, r = src.tilt, COLOURS[colour]
    return _cell_verdict(tilt.value, tilt.tol, r - 1.5, r + 1.5), \
        f"{name}: spectrum falls {tilt} per octave ({_colour(tilt.value, tilt.tol) or 'between colours'}; " \
        f"white 0, pink 3, brown 6; claimed {colour})"


def _check_noise_tilt(claimed, m, ref, claim_tol, unit):
    name, src = _noise_target(m, ref)
    v, ctol = _num(claimed, claim_tol)
    return _by_quantity(Referent(ref.kind, ref.events, name), [("slope", src.tilt if src else None)], v, ctol,
                        "spectrum falls")


def _check_noise_slope(claimed, m, ref, claim_tol, unit):
    """A slope stated without its direction ("a slope of about 1 dB per octave"): its size."""
    name, src = _noise_target(m, ref)
    v, ctol = _num(claimed, claim_tol)
    tilt = src.tilt if src else None
    size = Quantity(abs(tilt.value), tilt.tol, tilt.unit, tilt.margin) if tilt else None
    return _by_quantity(Referent(ref.kind, ref.events, name), [("slope (either way)", size)], v, ctol, "spectrum")


def _check_snr(claimed, m, ref, claim_tol, unit):
    v, ctol = _num(claimed, claim_tol)
    return _by_quantity(ref, [("events over background", m.snr)], v, ctol, "SNR")


# ------------------------------------------------------------------------------------------- facts from meta
# `meta` values are exact; these tolerances absorb only how the generator rounded them (or, for a voice's F0
# and the background, that the generator itself measured them).
META_KINDS = {"tone": "tone", "beep": "tone", "note": "tone", "click": "click", "noise": "noise",
              "word": "speech", "digit": "speech", "speech": "speech"}


def _exact(value: float, unit: str, tol: float = 0.0) -> Quantity:
    return Quantity(float(value), tol, unit)


def _meta_event(r: dict, kind: str) -> Event:
    e = Event(kind, _exact(r["onset_sec"], "s", 0.0005), _exact(r["duration_sec"], "s", 0.0005),
              _exact(r.get("level_dbfs", float("nan")), "dBFS", 0.05))
    if r.get("f0_hz") is not None:
        f0 = float(r["f0_hz"])
        e.f0 = _exact(f0, "Hz", 0.05) if kind == "tone" else Quantity(f0, 0.01 * f0, "Hz")  # speech: the median
        e.note = r.get("note") or (_note(f0) if kind == "tone" else None)
    if r.get("colour"):
        e.colour = r["colour"]
    e.waveform = r.get("waveform")
    return e


def _meta_events(records: list[dict]) -> tuple[list[Event], dict[int, int]]:
    """Events in time order, the notes of a chord (sounding together, same onset) merged into one `chord`
    event, and the map from meta's 1-based `index` to the position in that list."""
    events, where = [], {}
    by_onset: dict[float, list[dict]] = {}
    for r in records:
        by_onset.setdefault(round(float(r["onset_sec"]), 4), []).append(r)
    for r in records:
        group = by_onset[round(float(r["onset_sec"]), 4)]
        kind = META_KINDS.get(r["kind"], "sound")
        if len(group) > 1 and kind == "tone":
            if r is group[0]:
                chord = _meta_event(r, "chord")
                chord.f0, chord.note = None, None
                chord.pitches = [_exact(g["f0_hz"], "Hz", 0.05) for g in sorted(group, key=lambda g: g["f0_hz"])]
                power = sum(10 ** (g.get("level_dbfs", -90.0) / 10) for g in group)
                chord.level = _exact(10 * math.log10(power), "dBFS", 0.1)
                events.append(chord)
            where[int(r["index"])] = len(events) - 1
            continue
        where[int(r["index"])] = len(events)
        events.append(_meta_event(r, kind))
    return events, where


def _meta_trend(meta: dict, events: list[Event]) -> Trend | None:
    """The ramp of a loudness family, as its generator set it (start and end level over the sounding span)."""
    seg = next((s for s in meta.get("segments", []) if "start_level_dbfs" in s), None)
    if seg is None:
        return None
    a, d = float(seg["onset_sec"]), float(seg["duration_sec"])
    start, end = float(seg["start_level_dbfs"]), float(seg["end_level_dbfs"])
    change = end - start
    label = "rising" if change >= TREND_CHANGE_DB else "falling" if change <= -TREND_CHANGE_DB else "steady"
    return Trend(label, _exact(change, "dB", 0.1), _exact(change / max(d, 1e-3), "dB/s", 0.1),
                 _exact(start, "dBFS", 0.1), _exact(end, "dBFS", 0.1), (a, a + d))


def _meta_speech(meta: dict, events: list[Event], where: dict[int, int]) -> Speech | None:
    """Everything spoken: a speech family's sentence, its separate words or digits, a trap's announcement."""
    idx = [i for i, e in enumerate(events) if e.kind == "speech"]
    if not idx:
        return None
    seg = next((s for s in meta.get("segments", []) if s.get("name") in ("speech", "announcement")), None)
    records = [r for r in meta["events"] if META_KINDS.get(r["kind"]) == "speech"]
    a, b = events[idx[0]].onset.value, max(events[i].offset for i in idx)
    words = sum(int(r.get("words") or len(str(r.get("text", "x")).split())) for r in records)
    rate = next((r.get("words_per_sec") for r in [seg or {}, *records] if r.get("words_per_sec")), None)
    f0s = [events[i].f0.value for i in idx if events[i].f0 is not None]
    f0 = (seg or {}).get("f0_hz") or (float(np.median(f0s)) if f0s else None)
    power = sum(10 ** (events[i].level.value / 10) * events[i].duration.value for i in idx) / \
        sum(events[i].duration.value for i in idx)
    return Speech(_exact(a, "s", 0.0005), _exact(b - a, "s", 0.001), _exact(10 * math.log10(power), "dBFS", 0.1),
                  Quantity(float(f0), 0.01 * float(f0), "Hz") if f0 else None, words,
                  _exact(rate, "1/s", 0.01) if rate else None, _exact(words, ""), idx, len(records))


def from_meta(meta: dict) -> ClipFacts:
    """The generator's facts about a clip (`meta` in the per-event schema of docs/data.md) as `ClipFacts`, so that
    claims are checked against meta exactly as against measurements of the audio."""
    if not isinstance(meta, dict) or not isinstance(meta.get("events"), list) or not isinstance(meta.get("clip"), dict):
        raise ValueError("meta has no per-event facts (`events` and `clip`, docs/data.md)")
    events, where = _meta_events(meta["events"])
    clip = meta["clip"]
    for e, r in ((e, r) for r in meta["events"] for e in [events[where[int(r["index"])]]]):
        if e.kind == "noise" and meta.get("tilt_db") is not None:
            e.tilt = _exact(meta["tilt_db"], "dB/oct", 0.05)
    sounding = [e for e in events if e.kind != "speech"] or events
    level = None
    if sounding:
        total = sum(e.duration.value for e in sounding)
        power = sum(10 ** (e.level.value / 10) * e.duration.value for e in sounding if math.isfinite(e.level.value))
        level = _exact(10 * math.log10(power / total), "dBFS", 0.5) if power > 0 else None
    bg = clip.get("background")
    background = Background(float(clip["duration_sec"]), _exact(bg["level_dbfs"], "dBFS", 0.05), None, bg["colour"]) \
        if bg else None
    tempo = _exact(meta["bpm"], "BPM", 0.05) if meta.get("bpm") is not None else None
    groups = {}
    melodies = [s for s in meta.get("segments", []) if s.get("name") == "melody"]
    if melodies:
        groups["melody"] = [sorted({where[i] for i in s["events"]}) for s in
                            sorted(melodies, key=lambda s: s.get("position", 1))]
    return ClipFacts(_exact(clip["duration_sec"], "s", 0.0005), events, level,
                     _meta_trend(meta, events) or levels_trend(sounding), tempo,
                     _meta_speech(meta, events, where), background,
                     _exact(bg["snr_db"], "dB", 0.05) if bg else None, groups=groups, source="meta",
                     transcript=meta.get("transcript"))


def _check_pause(claimed, m, ref, claim_tol, unit):
    """A pause between consecutive events of the referent (the clip: its spoken words or else its sounds):
    the k-th pause where `unit` is an ordinal "k", else consistent if some pause matches."""
    v, ctol = _num(claimed, claim_tol)
    if ref.kind in ("event", "background"):
        return CANNOT_TELL, f"{ref.name} has no pauses"
    events = _members(ref, m) if ref.kind == "group" else \
        [m.events[i] for i in m.speech.events] if ref.kind == "speech" or (m.speech and not m.sounds) else m.sounds
    if len(events) < 2:
        return CANNOT_TELL, f"{ref.name}: fewer than two events, no pause"
    gaps = [Quantity(b.onset.value - a.offset, a.duration.tol + b.onset.tol, "s", margin=a.duration.margin,
                     above=a.duration.below, below=a.duration.above) for a, b in zip(events, events[1:])]
    if unit and str(unit).isdigit():
        k = int(unit)
        if k > len(gaps):
            return INCONSISTENT, f"{ref.name}: {len(gaps)} pauses, no pause {k}"
        gaps = [gaps[k - 1]]
    verdicts = [g.verdict(v, ctol) for g in gaps]
    status = CONSISTENT if CONSISTENT in verdicts else INCONSISTENT if all(x == INCONSISTENT for x in verdicts) \
        else CANNOT_TELL
    return status, f"{ref.name}: pauses " + ", ".join(f"{g.value:.2f} s" for g in gaps) + f" (claimed {v:g} s)"


def _check_registers(claimed, m, ref, claim_tol, unit):
    """"high, high, low, ...": each pitched event's register, in order."""
    said = str(claimed).replace(",", " ").split()
    idx = list(ref.events) if ref.kind == "group" else _candidates(m, ("tone",))
    regs = _registers(m, idx)
    if regs is None:
        return CANNOT_TELL, "the pitches do not fall into a high and a low register"
    high = set(regs[0])
    truth = ["high" if i in high else "low" for i in sorted(idx)]
    detail = f"{ref.name}: {', '.join(truth)} (claimed {', '.join(said)})"
    return (CONSISTENT if said == truth else INCONSISTENT), detail


def _check_waveform(claimed, m, ref, claim_tol, unit):
    events = _members(ref, m) if ref.kind in ("event", "group") else m.of_kind("tone")
    named = {e.waveform for e in events if e.waveform}
    if not named:
        return CANNOT_TELL, f"{ref.name}: no waveform found (no tone, or a harmonic profile that fits none)"
    said = str(claimed).lower()
    return (CONSISTENT if named == {said} else INCONSISTENT), f"{ref.name}: {', '.join(sorted(named))} (claimed {said})"


def _check_overtone(claimed, m, ref, claim_tol, unit):
    """The k-th overtone of a tone (`unit` "k": 1 = the lowest partial above the fundamental), from its
    waveform (stated by the generator, or measured)."""
    events = [e for e in _members(ref, m) if e.f0 is not None] if ref.kind in ("event", "group") else m.of_kind("tone")
    named = [e for e in events if e.waveform]
    if not named:
        return CANNOT_TELL, "no waveform known to place the overtones"
    from audior1.data.dsp import partials
    e = named[0]
    k = int(unit or 1)
    over = [f for f, _ in partials(e.waveform, e.f0.value)][1:]
    if k > len(over):
        return INCONSISTENT, f"{ref.name}: a {e.waveform} wave at {e.f0.value:.4g} Hz has {len(over)} overtones"
    v, ctol = _num(claimed, claim_tol)
    q = Quantity(over[k - 1], e.f0.tol * (k + 1), "Hz")
    return q.verdict(v, ctol), f"{ref.name}: overtone {k} of a {e.waveform} wave at {e.f0.value:.4g} Hz: {q} " \
        f"(claimed {v:g})"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", str(text).lower())


def _check_transcript(claimed, m, ref, claim_tol, unit):
    """What the speech says (a quote), against the transcript: the whole of it, or a run of its words."""
    if not m.transcript:
        return CANNOT_TELL, "no transcript to compare a quote with (speech is not recognised here)"
    said, truth = _words(claimed), _words(m.transcript)
    n = len(said)
    ok = n > 0 and any(truth[i:i + n] == said for i in range(len(truth) - n + 1))
    return (CONSISTENT if ok else INCONSISTENT), f"the speech says {m.transcript!r} (claimed {claimed!r})"
