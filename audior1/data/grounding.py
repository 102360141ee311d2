"""Is a chain of reasoning grounded in the sound? Claim extraction and matching against an item's `meta`.

`grounding_score(reasoning, meta)` finds the acoustic claims in a chain — numbers with units (Hz, dB, s, ms,
BPM, semitones, ranges of those), counts of things ("five beeps", "2 high beeps"), note names, interval and
chord names, comparisons ("the second tone is higher"), and labels (waveform, noise colour, contour, loudness
trend, voice pitch, speaking rate, gender, accent, speaker, spoken digit) — and checks each against the facts
in `meta` with tolerances. Each claim is grounded, contradicted or unverifiable (meta has nothing to check it
against). Quoted text is treated as a report of what is *said* and checked against the transcript instead
(it counts separately: reading the words is not listening).

Score: `G / (G + 2C + U/4 + 1)` with G grounded acoustic claims, C contradicted claims (including misquoted
transcripts), U unverifiable ones. It is 0 with no acoustic evidence (surrogate chains), rises with every
verified measurement, and a single wrong measurement costs two right ones. `report.ok` (at least one grounded
measurement — a number with a unit, a count or a note — none contradicted, no "I cannot hear audio" refusal)
is the MGRD keep/drop filter; a label alone ("so it is a square wave") may only restate the answer.

Without meta (real benchmarks) the score is the acoustic-vocabulary score: the share of sentences that talk
about sound (pitch, loudness, timbre, rhythm, noise, voice quality...) without leaning on transcripts or tags.

Conventions for meta (what the generators write; docs/data.md): numeric keys carry their unit as a suffix
(`_hz`, `_dbfs`/`_db`, `_sec`/`_s`, `_semitones`; `bpm`; rates end in `_per_sec` or `_wpm` and are not read as
durations), scalars or lists, at any depth, including the per-event records of `events`, `segments` and
`clip`; `counts` maps a canonical noun ("tone", "note", "click", "word", "digit", optionally qualified: "high
tone") to an integer; `labels` maps a category to a value; `notes`/`melodies` hold note names; `transcript` the
spoken words; `digits` spoken digits.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from audior1.data.dsp import note_to_midi
from audior1.data.refusal import is_refusal

NUM_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
NUM_WORDS.update({"oh": 0, "a single": 1, "single": 1})
_NUMW = r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|" \
        r"sixteen|seventeen|eighteen|nineteen|twenty)"
_NUM = r"[-+]?\d+(?:\.\d+)?"
UNITS = {"hz": "hz", "khz": "hz", "db": "db", "dbfs": "db", "bpm": "bpm", "beats per minute": "bpm",
         "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s", "ms": "s",
         "semitone": "semitones", "semitones": "semitones"}
_UNIT = r"(khz|hz|dbfs|db|bpm|beats per minute|ms|seconds|second|secs|sec|s|semitones|semitone)\b"
NOUNS = {"beep": "tone", "tone": "tone", "pulse": "tone", "pip": "tone", "chime": "tone", "blip": "tone",
         "note": "note", "click": "click", "tick": "click", "knock": "click", "word": "word", "digit": "digit",
         "number": "digit", "sound": "any", "event": "any"}
_NOUN = r"(beeps?|tones?|pulses?|pips?|chimes?|blips?|notes?|clicks?|ticks?|knocks?|words?|digits?|numbers?|" \
        r"sounds?|events?)\b"
RELATIONS = {"higher": "lower", "lower": "higher", "longer": "shorter", "shorter": "longer", "louder": "softer",
             "softer": "louder", "quieter": "louder", "wider": "narrower", "narrower": "wider", "larger": "smaller",
             "smaller": "larger"}
_ORD = {"first": "first", "second": "second", "third": "third", "1st": "first", "2nd": "second"}
TOL = {"hz": lambda v: max(3.0, 0.06 * abs(v)), "db": lambda v: 3.0, "s": lambda v: max(0.06, 0.15 * abs(v)),
       "bpm": lambda v: max(2.0, 0.08 * abs(v)), "semitones": lambda v: 0.6}

# (category, pattern, value) in priority order; a span matched earlier is not matched again.
LABEL_PATTERNS: list[tuple[str, str, str | None]] = [
    ("interval", r"\b(?:minor|major|perfect)\s+(?:second|third|fourth|fifth|sixth|seventh)\b|\boctave\b|"
                 r"\btritone\b|\bunison\b", None),
    ("contour", r"\brising then falling\b|\brises (?:and )?then falls\b|\bup then down\b", "rising then falling"),
    ("contour", r"\bfalling then rising\b|\bfalls (?:and )?then rises\b|\bdown then up\b", "falling then rising"),
    ("loudness", r"\bcrescendo\b|\bgetting louder\b|\bgrows louder\b|\blouder and louder\b", "crescendo"),
    ("loudness", r"\bdecrescendo\b|\bdiminuendo\b|\bgetting (?:softer|quieter)\b|\bfades? out\b", "decrescendo"),
    ("loudness", r"\bstaying about the same\b|\bsteady (?:level|loudness)\b|\bconstant (?:level|loudness)\b",
     "steady"),
    ("contour", r"\b(?:melody|it|pitch) is (rising|falling)\b|\b(rising|falling) (?:melody|contour)\b|"
                r"\b(ascending|descending)\b", None),
    ("chord", r"\b(major|minor)\b", None),
    ("waveform", r"\b(sine|square|sawtooth|triangle)(?:[- ]waves?|\b)", None),
    ("noise", r"\b(white|pink|brown)\s+(?:\w+\s+)?noise\b", None),
    ("voice_pitch", r"\b(low|high)[- ]pitched\s+(?:voice|speaker)\b|\bvoice(?: is|,)?\s+(low|high)[- ]pitched\b",
     None),
    ("rate", r"\b(slow|fast)\s+(?:speech|pace|speaker|talker)\b|\bspeak(?:s|ing)\s+(slowly|quickly|fast)\b",
     None),
    ("gender", r"\b(male|female|man's|woman's)\s+voice\b", None),
    ("accent", r"\b(american|belgian|french|german|greek)(?:\s+(?:english|french))?\s+accent\b", None),
    ("speaker", r"\bspeaker\s+(jackson|theo|nicolas|lucas|george)\b|\b(jackson|theo|nicolas|lucas|george)\b",
     None),
]
LABEL_ALIASES = {"ascending": "rising", "descending": "falling", "slowly": "slow", "quickly": "fast",
                 "man's": "male", "woman's": "female", "belgian": "french", "american": "american"}
ACOUSTIC_TERMS = re.compile(
    r"\b(pitch\w*|hz|khz|frequen\w+|tone|tones|tonal|timbre|loud\w*|quiet\w*|soft(?:er)?|volume|decibel\w*|db|"
    r"rhythm\w*|tempo|bpm|beat\w*|melod\w+|chord\w*|note|notes|harmon\w+|overtone\w*|bass|treble|echo\w*|reverb\w*|"
    r"noise|noisy|hiss\w*|rumbl\w+|buzz\w*|resonan\w+|vibrato|intonation|prosod\w+|accent\w*|breath\w*|rasp\w*|"
    r"husky|crescendo|fad\w+|onset\w*|spectr\w+|formant\w*|register|staccato|sustain\w*|muffled|timing|pace|"
    r"rising|falling|pause\w*|sound\w*|audio|listen\w*|hear\w*|voice\w*|vocal\w*|speaking rate|tremb\w+|"
    r"beep\w*|click\w*|tick\w*|chime\w*|drum\w*|whistl\w+|ring\w*)\b", re.I)
SURROGATE_TERMS = re.compile(r"\b(transcript\w*|caption\w*|the text says|the words say|written|subtitle\w*|"
                             r"metadata|tagger|tags?|according to the (?:description|text))\b", re.I)
SPEECH_VERB = re.compile(r"\b(says?|said|saying|announc\w*|reads?|spoken|speaks?|utter\w*|words?|transcript|"
                         r"voice|speaker)\b\W*$", re.I)
NEGATION = re.compile(r"\bnot\b|n't\b|\bnever\b|\bno\b")


@dataclass
class Claim:
    kind: str            # number | count | note | relation | label | transcript
    text: str            # the span in the reasoning
    value: object        # what it claims (normalised)
    status: str          # grounded | contradicted | unverifiable
    expected: object = None  # what meta says, when it disagrees


@dataclass
class GroundingReport:
    grounded: int
    contradicted: int
    unverifiable: int
    score: float
    vocabulary_score: float
    transcript_grounded: int = 0
    measured: int = 0    # grounded measurements: numbers with units, counts, note names
    refusal: bool = False
    mode: str = "meta"   # meta | vocabulary
    claims: list[Claim] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The MGRD filter: at least one verified measurement (a label or comparison alone may just restate
        the answer), nothing contradicted, no refusal."""
        return self.measured >= 1 and self.contradicted == 0 and not self.refusal

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


# ---------------------------------------------------------------------------------------------- facts
@dataclass
class Facts:
    numbers: dict[str, list[float]]
    counts: dict[str, int]
    labels: dict[str, str]
    midis: set[int]
    root: str | None
    transcript: str | None
    digits: list[int]


def _num_values(v) -> list[float]:
    if isinstance(v, bool):
        return []
    if isinstance(v, (int, float)):
        return [float(v)]
    if isinstance(v, list):
        return [float(x) for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
    return []


# Key suffix -> unit of the numbers it holds (first match wins): rates (`_per_sec`, `_wpm`) are not durations,
# `_sec`/`_s` are seconds, `_dbfs` levels and `_db` SNRs and changes both count as dB.
UNIT_SUFFIXES = (("_per_sec", None), ("_wpm", None), ("_hz", "hz"), ("_dbfs", "db"), ("_db", "db"),
                 ("_sec", "s"), ("_s", "s"), ("_semitones", "semitones"), ("_bpm", "bpm"))


def key_unit(key: str) -> str | None:
    """The unit a meta key's numbers carry, from its suffix (`bpm` etc. also as a whole key), else None."""
    if key in ("hz", "db", "s", "bpm", "semitones"):
        return key
    return next((unit for suffix, unit in UNIT_SUFFIXES if key.endswith(suffix)), None)


def facts_from_meta(meta: dict) -> Facts:
    nums: dict[str, list[float]] = {"hz": [], "db": [], "s": [], "bpm": [], "semitones": []}

    def walk(d):
        if isinstance(d, dict):
            for k, v in d.items():
                unit = key_unit(k)
                if unit:
                    nums[unit] += _num_values(v)
                walk(v)
        elif isinstance(d, list):
            for v in d:
                walk(v)
    walk(meta)
    labels = {k: str(v).lower() for k, v in (meta.get("labels") or {}).items()}
    if "waveform" not in labels and isinstance(meta.get("waveform"), str):
        labels["waveform"] = meta["waveform"]
    for k in ("accent", "speaker", "gender"):
        if isinstance(meta.get(k), str) and k not in labels:
            labels[k] = meta[k].lower()
    names = list(meta.get("notes") or []) + [n for m in (meta.get("melodies") or []) for n in m]
    midis = set()
    for n in names:
        try:
            midis.add(note_to_midi(n))
        except (ValueError, IndexError):
            pass
    counts = {str(k).lower(): int(v) for k, v in (meta.get("counts") or {}).items()}
    digits = [int(d) for d in meta.get("digits") or []]
    return Facts(nums, counts, labels, midis, meta.get("root"), meta.get("transcript"), digits)


# ---------------------------------------------------------------------------------------------- extraction
def _to_num(s: str) -> float:
    s = s.strip().lower()
    return float(NUM_WORDS[s]) if s in NUM_WORDS else float(s)


def _norm_words(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", s.lower()))


def _check_number(unit: str, v: float, f: Facts) -> tuple[str, object]:
    known = f.numbers.get(unit) or []
    if unit == "semitones":
        v, known = abs(v), [abs(k) for k in known]
    if not known:
        return "unverifiable", None
    if any(abs(v - k) <= TOL[unit](k) for k in known):
        return "grounded", None
    return "contradicted", sorted(set(known))[:6]


def _check_range(unit: str, lo: float, hi: float, f: Facts) -> tuple[str, object]:
    known = f.numbers.get(unit) or []
    if not known:
        return "unverifiable", None
    lo, hi = min(lo, hi), max(lo, hi)
    ok = any(lo - TOL[unit](k) * 0.25 <= k <= hi + TOL[unit](k) * 0.25 for k in known)
    return ("grounded", None) if ok else ("contradicted", sorted(set(known))[:6])


def _check_count(qual: str | None, noun: str, n: int, f: Facts) -> tuple[str, object]:
    canon = NOUNS[noun.rstrip("s") if noun.rstrip("s") in NOUNS else noun]
    c = f.counts
    keys = [f"{qual} {canon}"] if qual else [canon]
    if canon in ("tone", "note"):
        other = "note" if canon == "tone" else "tone"
        keys.append(f"{qual} {other}" if qual else other)
    for k in keys:
        if k in c:
            return ("grounded", None) if c[k] == n else ("contradicted", c[k])
    if canon == "any" and c:
        return ("grounded", None) if n in c.values() else ("contradicted", sorted(c.values()))
    return "unverifiable", None


def _check_label(cat: str, value: str, f: Facts) -> tuple[str, object]:
    value = LABEL_ALIASES.get(value, value)
    if cat == "interval":
        value = re.sub(r"^(a|an)\s+", "", value)
    if cat == "noise":
        have = [f.labels[k] for k in ("noise", "background") if k in f.labels]
        if not have:
            return "unverifiable", None
        return ("grounded", None) if value in have else ("contradicted", have)
    if cat == "accent":
        have = f.labels.get("accent")
        if have is None:
            return "unverifiable", None
        return ("grounded", None) if value in have else ("contradicted", have)
    if cat not in f.labels:
        return "unverifiable", None
    return ("grounded", None) if f.labels[cat] == value else ("contradicted", f.labels[cat])


def _check_relation(rel: str, ordinal: str, f: Facts) -> tuple[str, object]:
    if rel in f.labels:
        return ("grounded", None) if f.labels[rel] == ordinal else ("contradicted", f.labels[rel])
    inv = RELATIONS[rel]
    if inv in f.labels:
        return ("contradicted", f"{inv}: {f.labels[inv]}") if f.labels[inv] == ordinal else ("grounded", None)
    return "unverifiable", None


def extract_claims(reasoning: str, meta: dict | None) -> tuple[list[Claim], int]:
    """All claims found in `reasoning`, checked against `meta`; also returns the number of grounded quotes."""
    f = facts_from_meta(meta or {})
    claims: list[Claim] = []
    text = reasoning.replace("\u2212", "-").replace("\u2013", "–")
    # 1. quotes: what was said, checked against the transcript; blanked so their words are not re-read.
    quote_ok = 0
    for m in re.finditer(r'"([^"]{1,300})"|\u201c([^\u201d]{1,300})\u201d', text):
        q = _norm_words(m.group(1) or m.group(2))
        said = SPEECH_VERB.search(text[max(0, m.start() - 30):m.start()])
        if f.transcript is None or not q:
            st = "unverifiable"
        elif q in _norm_words(f.transcript):
            st = "grounded"
        else:  # a misquote only counts against the chain when it is presented as what was said
            st = "contradicted" if said else "unverifiable"
        quote_ok += st == "grounded"
        claims.append(Claim("transcript", m.group(0), q, st, None if st != "contradicted" else f.transcript))
    low = re.sub(r'"[^"]{1,300}"|\u201c[^\u201d]{1,300}\u201d', lambda m: " " * len(m.group(0)), text)
    used = [False] * len(low)
    used_rel = [False] * len(low)  # relations may span numbers ("the first tone, at 440 Hz, is higher")

    def take(m: re.Match, mask: list[bool] = used) -> bool:
        if any(mask[m.start():m.end()]):
            return False
        mask[m.start():m.end()] = [True] * (m.end() - m.start())
        return True

    lower = low.lower()
    # 2. ranges and numbers with units
    for m in re.finditer(rf"({_NUM})\s*(?:–|-|to)\s*({_NUM})\s*{_UNIT}", lower):
        if take(m):
            unit = UNITS[m.group(3)]
            scale = 1000.0 if m.group(3) in ("khz",) else (0.001 if m.group(3) == "ms" else 1.0)
            st, exp = _check_range(unit, float(m.group(1)) * scale, float(m.group(2)) * scale, f)
            claims.append(Claim("number", m.group(0), [float(m.group(1)) * scale, float(m.group(2)) * scale],
                                st, exp))
    for m in re.finditer(rf"(?<![\w.])(?:({_NUM})\s*|({_NUMW})\s+){_UNIT}", lower):  # "5s", "five s"; not "ones"
        if take(m):
            unit, num = UNITS[m.group(3)], m.group(1) or m.group(2)
            v = _to_num(num) * (1000.0 if m.group(3) == "khz" else 0.001 if m.group(3) == "ms" else 1.0)
            st, exp = _check_number(unit, v, f)
            claims.append(Claim("number", m.group(0), {unit: v}, st, exp))
    # 3. counts: "five beeps", "2 high beeps"
    for m in re.finditer(rf"(?<![\w.])(\d+|{_NUMW})\s+(?:(high|low)(?:-pitched)?\s+|(?!hz\b|db\b|s\b)[a-z]+\s+)?"
                         rf"{_NOUN}", lower):
        if take(m):
            n = int(_to_num(m.group(1)))
            noun = m.group(3).rstrip("s") if m.group(3).rstrip("s") in NOUNS else m.group(3)
            st, exp = _check_count(m.group(2), noun, n, f)
            claims.append(Claim("count", m.group(0), {(m.group(2) + " " if m.group(2) else "") + noun: n}, st, exp))
    # 4. note names (case-sensitive) and roots
    for m in re.finditer(r"\b([A-G])([#b\u266f\u266d]?)(\d)\b", low):
        if take(m):
            midi = note_to_midi(m.group(0))
            st = "unverifiable" if not f.midis else ("grounded" if midi in f.midis else "contradicted")
            claims.append(Claim("note", m.group(0), m.group(0), st, None if st != "contradicted" else
                                sorted(f.midis)))
    for m in re.finditer(r"\broot(?: note)?(?: is)?\s+([A-G][#b]?)(?![\w#])", low):
        if take(m):
            st = "unverifiable" if not f.root else ("grounded" if (note_to_midi(m.group(1) + "4") -
                                                    note_to_midi(f.root + "4")) % 12 == 0 else "contradicted")
            claims.append(Claim("note", m.group(0), m.group(1), st, f.root if st == "contradicted" else None))
    # 5. relations: "the second tone is higher", "the higher one is the first"
    rel_words = "|".join(RELATIONS)
    for m in re.finditer(rf"\b(first|second|third|1st|2nd)\b((?:(?!\b(?:first|second|third)\b)[^.;:!?]){{0,40}}?)"
                         rf"\b({rel_words})\b", lower):
        if NEGATION.search(m.group(2)) or not take(m, used_rel):
            continue
        st, exp = _check_relation(m.group(3), _ORD[m.group(1)], f)
        claims.append(Claim("relation", m.group(0), f"{m.group(3)}: {_ORD[m.group(1)]}", st, exp))
    for m in re.finditer(rf"\b({rel_words})(?:[- ]pitched)?\s+(?:one|tone|note|melody)\s+is\s+(?:also\s+)?the\s+"
                         r"(first|second|third)\b", lower):
        if take(m, used_rel):
            st, exp = _check_relation(m.group(1), m.group(2), f)
            claims.append(Claim("relation", m.group(0), f"{m.group(1)}: {m.group(2)}", st, exp))
    # 6. labels
    for cat, pat, fixed in LABEL_PATTERNS:
        for m in re.finditer(pat, lower):
            if not take(m):
                continue
            value = fixed or next((g for g in m.groups() if g), m.group(0))
            st, exp = _check_label(cat, value, f)
            claims.append(Claim("label", m.group(0), f"{cat}: {LABEL_ALIASES.get(value, value)}", st, exp))
    # 7. spoken digits: "says seven", "the digit 7"
    for m in re.finditer(rf"\b(?:says|said|digit|number is)\s+({_NUMW}|\d)\b", lower):
        if take(m):
            d = int(_to_num(m.group(1)))
            st = "unverifiable" if not f.digits else ("grounded" if d in f.digits else "contradicted")
            claims.append(Claim("label", m.group(0), f"digit: {d}", st, f.digits if st == "contradicted" else None))
    return claims, quote_ok


# ---------------------------------------------------------------------------------------------- scores
def vocabulary_score(reasoning: str) -> float:
    """Share of sentences that describe sound without leaning on transcripts, captions or tags."""
    sents = [s for s in re.split(r"(?<=[.!?])\s+|\n+", reasoning) if s.strip()]
    if not sents:
        return 0.0
    good = sum(bool(ACOUSTIC_TERMS.search(s)) and not SURROGATE_TERMS.search(s) for s in sents)
    return good / len(sents)


def grounding_score(reasoning: str, meta: dict | None = None, answer: str | None = None) -> GroundingReport:
    """Check the acoustic claims of a reasoning chain against `meta` (see the module docstring). With `answer`
    (the item's answer text), a measurement that merely restates it ("105-120 BPM") is not counted as evidence
    for `ok`."""
    vocab = vocabulary_score(reasoning)
    refusal = is_refusal(reasoning)
    if not meta:
        return GroundingReport(0, 0, 0, vocab, vocab, refusal=refusal, mode="vocabulary")
    claims, quotes = extract_claims(reasoning, meta)
    acoustic = [c for c in claims if c.kind != "transcript"]
    g = sum(c.status == "grounded" for c in acoustic)
    u = sum(c.status == "unverifiable" for c in acoustic)
    c = sum(cl.status == "contradicted" for cl in claims)
    score = g / (g + 2 * c + 0.25 * u + 1)
    restated = _norm_words(answer) if answer else None
    measured = sum(cl.status == "grounded" and cl.kind in ("number", "count", "note")
                   and not (restated and _norm_words(cl.text) in restated) for cl in acoustic)
    return GroundingReport(g, c, u, round(score, 4), round(vocab, 4), quotes, measured, refusal, "meta", claims)
