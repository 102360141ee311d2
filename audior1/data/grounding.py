"""The MGRD keep/drop filter: is a sampled chain correct, grounded in the sound, coherent, and the model's own?

`judge_chain(item, completion) -> Verdict` (paper §4.2, step 3c) keeps a completion only if all hold:
- **correct** and not **truncated**: the answer after the first `</think>` is right by the evaluation's own
  rule (`eval.benchmarks.synthetic.is_correct`);
- **grounded**: every claim the chain makes about the sound (`audior1.data.claims`) is checked against THE
  referent it names — in the item's `meta`, or, for audio without `meta`, in measurements of the clip
  (`audior1.data.measure`); both become `facts.ClipFacts`, so one checker decides. No claim may be
  contradicted, and at least one measurement (a number with a unit, a count, a note name) must be borne out
  that is not just the answer restated ("There are 5 beeps." proves nothing about listening). A count of a
  kind of sound the clip does not hold ("beeps" in a clip of clicks) is contradicted;
- **coherent**: the chain's arithmetic and inequalities hold, its comparisons follow from the values it stated,
  no two of its claims about one referent disagree, and its conclusion names the answer it gives;
- **not a surrogate**: it does not reason from a transcript, caption, sound tags, the question's wording, or
  an announcement of what the sound will be (`surrogate_cues`);
- **not a refusal** ("I cannot hear audio", `audior1.data.refusal`; optionally an LLM judge).

Tolerances are a listener's resolution, stated once in `LISTENER_TOL` and added to whatever the source allows
(`meta` is exact; a measurement carries its own precision) and to how precisely the claim was written.

The grounding score `G / (G + 2C + U/4 + 1)` (G borne-out claims, C contradicted, U unverifiable) ranks
chains; the keep/drop decision does not use it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from audior1.chat import split_reasoning
from audior1.data import facts as F
from audior1.data.claims import Claim, ChainReading, read_chain
from audior1.data.refusal import is_refusal
from audior1.eval import extract
from audior1.eval.benchmarks.synthetic import is_correct

REASONS = ("incorrect", "truncated", "ungrounded", "contradicted", "incoherent", "surrogate", "refusal")
GROUNDED, CONTRADICTED, UNVERIFIABLE = "grounded", "contradicted", "unverifiable"
STATUS = {F.CONSISTENT: GROUNDED, F.INCONSISTENT: CONTRADICTED, F.CANNOT_TELL: UNVERIFIABLE}

# How far a listener's statement may sit from the truth and still be right: value -> tolerance.
LISTENER_TOL = {
    "pitch": lambda v: max(0.025 * v, 2.0),         # under half a semitone (2.9%)
    "overtone": lambda v: max(0.025 * v, 2.0),
    "voice_f0": lambda v: 0.05 * v,
    "duration": lambda v: max(0.03, 0.05 * v),
    "onset": lambda v: 0.05, "offset": lambda v: 0.05,
    "pause": lambda v: max(0.03, 0.08 * v),
    "level": lambda v: 2.0, "start_level": lambda v: 2.0, "end_level": lambda v: 2.0,
    "level_change": lambda v: 3.0, "snr": lambda v: 3.0, "noise_tilt": lambda v: 1.0, "noise_slope": lambda v: 1.0,
    "tempo": lambda v: 0.04 * v, "speaking_rate": lambda v: 0.06 * v,
}
NOT_ABOUT_THE_SOUND = ("semitones",)             # derived from other claims; checked as steps

SURROGATE_SOURCE = re.compile(
    r"\btranscri(?:pt|ption|bed)\w*|\bsound tagger\b|\btagger\b|\b(?:sound|audio) tags?\b|\btagged as\b|"
    r"\blabels? (?:it|the clip|this|the audio) as\b|\bcaption\w*|\bsubtitle\w*|\bmetadata\b|\bfile ?name\b|"
    r"\bthe (?:description|text) (?:says|reads|states)\b")
SURROGATE_GUESS = re.compile(
    r"\bwording of the question\b|\bcan only (?:guess|go by)\b|\bguess(?:ing)?\b|\bwithout (?:hearing|listening)\b|"
    r"\bbased on the (?:question|text|words|wording)\b|\bpick the answer\b|\bgo by the\b")
ANNOUNCED = re.compile(r"\b(?:speaker|voice|announcer|narrator|announcement|recording)\s+(?:says|said|announces|"
                       r"announced|calls|called|states|tells|promises|mentions|describes|claims|reads)\b")
CONTRAST = re.compile(r"\bbut\b|\bhowever\b|\byet\b|\bignor\w+|\bregardless\b|\bnot what\b|\binstead\b|\bactually\b|"
                      r"\bwrong\b|\bdecides?\b|\bcontrary\b|\bdespite\b|\brather than\b|\bnot (?:the|a)\b")
SOUND_WORDS = re.compile(r"\b(?:beeps?|tones?|chords?|notes?|clicks?|higher|lower|major|minor|louder|softer|"
                         r"melod\w+|pitch\w*|rising|falling|loud|quiet|noise)\b", re.I)


@dataclass
class ClaimCheck:
    """One claim and how it fared. `verified_by`: "meta", "measurement", or None (not checked)."""
    kind: str
    referent: str
    value: str
    text: str
    status: str
    verified_by: str | None
    detail: str
    evidence: bool = False          # a borne-out measurement that is not the answer restated


@dataclass
class Verdict:
    keep: bool
    reasons: list[str]
    score: float
    claims: list[ClaimCheck]
    why: dict = field(default_factory=dict)       # reason -> what triggered it
    source: str | None = None                     # "meta" | "measurement" | None
    conclusion: str = ""
    answer: str | None = None

    @property
    def grounded(self) -> int:
        return sum(c.status == GROUNDED for c in self.claims)

    @property
    def contradicted(self) -> int:
        return sum(c.status == CONTRADICTED for c in self.claims)

    @property
    def unverifiable(self) -> int:
        return sum(c.status == UNVERIFIABLE for c in self.claims)

    def to_dict(self) -> dict:
        return {"keep": self.keep, "reasons": self.reasons, "score": round(self.score, 4), "source": self.source,
                "why": self.why, "conclusion": self.conclusion, "answer": self.answer,
                "claims": [asdict(c) for c in self.claims]}


# ------------------------------------------------------------------------------------------- facts
def facts_for(item: dict, source: str = "auto", audio_root: str | Path | None = None) -> F.ClipFacts | None:
    """The facts a chain is checked against: `meta` (source "meta"), measurements of the item's first audio
    file (source "audio"; paths relative to `audio_root`), or whichever exists ("auto": meta first)."""
    if source not in ("auto", "meta", "audio"):
        raise ValueError(f"source must be auto, meta or audio, got {source!r}")
    meta = item.get("meta")
    if source in ("auto", "meta") and isinstance(meta, dict) and isinstance(meta.get("events"), list) and \
            isinstance(meta.get("clip"), dict):
        return F.from_meta(meta)
    if source == "meta":
        return None
    audio = item.get("audio")
    path = audio[0] if isinstance(audio, list) and audio else audio
    if not path:
        return None
    path = Path(path) if audio_root is None or Path(path).is_absolute() else Path(audio_root) / path
    if not path.exists():
        if source == "audio":
            raise FileNotFoundError(f"{item.get('id', '?')}: audio file {path} not found (set audio_root)")
        return None
    return _measured(str(path.resolve()))


@lru_cache(maxsize=256)
def _measured(path: str) -> F.ClipFacts:
    from audior1.data.measure import measure_clip
    return measure_clip(path)


# ------------------------------------------------------------------------------------------- claims
def _tolerance(c: Claim) -> float | None:
    """Rounding of the written value plus a listener's tolerance (None: the checker's own rule)."""
    if c.kind not in LISTENER_TOL:
        return None
    try:
        v, ulp = F._parse(c.value)
    except ValueError:
        return None
    if c.kind == "speaking_rate" and c.unit == "wpm":
        return ulp + LISTENER_TOL[c.kind](v)
    return ulp + LISTENER_TOL[c.kind](abs(v))


def _resolve_member(c: Claim, facts: F.ClipFacts):
    """The referent a claim's `member` names within its group (a `facts.Referent`), or (None, why)."""
    ref, why = F.resolve(c.referent or None, facts)
    if ref is None or c.member is None:
        return ref, why
    if c.member == "whole":
        return F.Referent("group", ref.events, ref.name, whole=True, noun=ref.noun), ""
    if c.member == "any":
        return ref, ""
    idx = list(ref.events) or list(range(len(facts.events)))
    k = {"first": 0, "last": -1}.get(c.member, c.member - 1 if isinstance(c.member, int) else None)
    if k is None or not -len(idx) <= k < len(idx):
        return None, f"{ref.name} has {len(idx)} events, no {c.member}"
    return F.Referent("event", (idx[k],), f"{c.member} of {ref.name}"), ""


def check_claim(c: Claim, facts: F.ClipFacts | None) -> tuple[str, str]:
    """(status, detail) of one claim against one source of facts."""
    if facts is None:
        return UNVERIFIABLE, "no meta and no audio to measure"
    kind, value, tol = c.kind, c.value, _tolerance(c)
    if kind == "period":           # "every 0.38 s" is a tempo of 60 / 0.38 BPM
        p, ulp = F._parse(value)
        kind, value = "tempo", 60.0 / p
        tol = 60.0 * ulp / p ** 2 + LISTENER_TOL["tempo"](value)
    chord = _chord_note(c, facts, tol)
    if chord is not None:
        return chord
    ref, why = _resolve_member(c, facts)
    if ref is None:
        return _unresolved(c, facts, why)
    if c.member == "any":
        results = [F.check(kind, value, facts, F.Referent("event", (i,), f"{ref.name} member {k + 1}"),
                           claim_tol=tol, unit=c.unit) for k, i in enumerate(ref.events)]
        statuses = [s for s, _ in results]
        status = F.CONSISTENT if F.CONSISTENT in statuses else \
            F.INCONSISTENT if statuses and all(s == F.INCONSISTENT for s in statuses) else F.CANNOT_TELL
        return STATUS[status], f"some member of {ref.name}: " + "; ".join(d for _, d in results[:6])
    status, detail = F.check(kind, value, facts, ref, claim_tol=tol, unit=c.unit)
    return STATUS[status], detail


def _chord_note(c: Claim, facts: F.ClipFacts, tol: float | None) -> tuple[str, str] | None:
    """"The chord's notes are F#3 (185 Hz), A#3 (233 Hz), …": the k-th note of a chord, low to high."""
    if c.kind != "pitch" or not isinstance(c.member, int):
        return None
    ref, _ = F.resolve(c.referent or None, facts)
    if ref is None or len(ref.events) != 1 or facts.events[ref.events[0]].kind != "chord":
        return None
    notes = facts.events[ref.events[0]].pitches
    if c.member > len(notes):
        return CONTRADICTED, f"{ref.name} has {len(notes)} notes, not {c.member}"
    q = notes[c.member - 1]
    hz = _stated_hz(c)
    t = (tol if tol is not None and not F._NOTE.match(str(c.value)) else 0.029 * hz)
    return STATUS[q.verdict(hz, t)], f"note {c.member} of {ref.name}: {q} (claimed {c.value})"


def _unresolved(c: Claim, facts: F.ClipFacts, why: str) -> tuple[str, str]:
    """A referent the clip does not hold. Counting (or placing) a kind of sound that is absent while other
    sounds are there is a wrong claim, not an unverifiable one."""
    mm = re.match(r"no (\w+) found in the clip", why)
    if mm and c.kind in ("count", "onset", "duration", "pitch") and facts.events:
        kinds = sorted({e.kind for e in facts.events})
        if not (c.kind == "count" and c.value in ("0",)):
            return CONTRADICTED, f"{why}: the clip's events are {', '.join(kinds)}"
    return UNVERIFIABLE, why


def _restates_answer(c: Claim, item: dict) -> bool:
    answer = str(item.get("answer", ""))
    if c.kind == "count":
        return extract.normalise_number(answer) == extract.normalise_number(str(c.value))
    if c.kind == "tempo" and "-" in str(c.value):
        return str(c.value).replace("-", "–") in answer.replace("-", "–")
    return False


def check_claims(reading: ChainReading, facts: F.ClipFacts | None, item: dict) -> list[ClaimCheck]:
    out = []
    for c in reading.claims:
        if c.kind in NOT_ABOUT_THE_SOUND:
            continue
        status, detail = check_claim(c, facts)
        out.append(ClaimCheck(c.kind, c.describe().split(" = ")[0].split(" of ", 1)[1], str(c.value), c.text,
                              status, facts.source if facts is not None and status != UNVERIFIABLE else None, detail,
                              evidence=status == GROUNDED and c.measurement and not _restates_answer(c, item)))
    return out


# ------------------------------------------------------------------------------------------- surrogates
def surrogate_cues(reasoning: str) -> list[str]:
    """Why a chain reasons from something other than the sound: a transcript, caption or tags it relies on,
    a guess from the question's wording, or what a voice announced the sound would be, taken at its word."""
    text = reasoning.lower()
    cues = []
    for s in re.split(r"(?<=[.!?;])\s+", text):
        for mm in SURROGATE_SOURCE.finditer(s):
            if not re.search(r"\b(?:not|never|ignor\w+|instead of|rather than|without)\b[^.]{0,40}$", s[:mm.start()]):
                cues.append(f"relies on {mm[0]!r}")
        if SURROGATE_GUESS.search(s):
            cues.append(f"guesses ({SURROGATE_GUESS.search(s)[0]!r})")
    for mm in ANNOUNCED.finditer(text):
        quoted = re.findall(r"[\"“]([^\"”]*)[\"”]", text[mm.end():mm.end() + 200])
        said = quoted[0] if quoted else text[mm.end():mm.end() + 80]
        if SOUND_WORDS.search(said) and not CONTRAST.search(text):
            cues.append(f"takes the announcement at its word ({mm[0]!r})")
    return list(dict.fromkeys(cues))


# ------------------------------------------------------------------------------------------- coherence
RELATION_KIND = {"higher": "pitch", "lower": "pitch", "longer": "duration", "shorter": "duration",
                 "louder": "level", "softer": "level", "wider": "semitones", "narrower": "semitones"}
GREATER = {"higher", "longer", "louder", "wider"}
SYNONYMS = {"louder": ("crescendo", "rising", "increasing"), "softer": ("quieter", "decrescendo", "fading",
            "falling", "diminuendo"), "same": ("steady", "constant", "level", "unchanged"),
            "quickly": ("quick", "fast", "rapid", "rapidly"), "slowly": ("slow",), "major": ("bright",),
            "minor": ("dark",), "low": ("deep",), "high": ("bright",)}
STOP = {"the", "a", "an", "of", "is", "it", "about", "staying", "getting", "(", ")", "noise", "sound"}


def _stated_hz(c: Claim) -> float | None:
    try:
        if F._NOTE.match(str(c.value)):
            from audior1.data.dsp import midi_to_hz, note_to_midi
            return midi_to_hz(note_to_midi(str(c.value)))
        return F._parse(c.value)[0]
    except ValueError:
        return None


def _key(phrase: str, member, facts: F.ClipFacts | None):
    """What a phrase refers to, as a comparable key: the event indices in the facts where they resolve."""
    if facts is not None:
        ref, _ = F.resolve(phrase or None, facts)
        if ref is not None:
            events = ref.events
            if member is not None and member not in ("any", "whole") and events:
                k = {"first": 0, "last": -1}.get(member, member - 1 if isinstance(member, int) else 0)
                events = (events[k],) if -len(events) <= k < len(events) else events
            elif member == "any":
                return None
            return (ref.kind, tuple(events))
    return (phrase, member)


def _stated(reading: ChainReading, facts) -> dict:
    """(referent key, quantity) -> values the chain stated (pitches in Hz)."""
    values: dict = {}
    for c in reading.claims:
        kind = "pitch" if c.kind == "pitch" else c.kind
        v = _stated_hz(c) if kind == "pitch" else (F._parse(c.value)[0] if kind in LISTENER_TOL or kind ==
                                                       "semitones" else None)
        if v is not None and c.kind == "speaking_rate" and c.unit == "wpm":
            v /= 60
        k = _key(c.referent, c.member, facts)
        if v is None or k is None:
            continue
        values.setdefault((k, kind), []).append((v, c))
    return values


def coherence_problems(reading: ChainReading, facts: F.ClipFacts | None, item: dict, answer: str | None
                       ) -> list[str]:
    problems = [f"{s.kind}: {s.text!r} ({s.why})" for s in reading.steps if not s.ok]
    stated = _stated(reading, facts)
    problems += _disagreements(stated, facts)
    problems += _comparison_problems(reading, stated, facts)
    if answer is not None:
        problems += _conclusion_problems(reading, item, answer)
    return problems


def _disagreements(stated: dict, facts) -> list[str]:
    """Two values for one referent's single-valued quantity that cannot both be right (a chord has several
    pitches, a group several durations)."""
    out = []
    for (key, kind), vals in stated.items():
        single = key[0] in ("event", "speech", "clip", "background") and len(key[1]) <= 1 and not (
            facts is not None and key[1] and facts.events[key[1][0]].kind == "chord")
        if kind not in LISTENER_TOL or kind in ("pause", "overtone") or len(vals) < 2 or not single:
            continue
        (v0, c0), rest = vals[0], vals[1:]
        for v, c in rest:
            if abs(v - v0) > 2 * LISTENER_TOL[kind](max(abs(v), abs(v0))) + 1e-9:
                out.append(f"contradicts itself: {c0.text!r} and {c.text!r} about {c.referent or 'the clip'}")
    return out


def _value_of(stated: dict, key, kind):
    vals = stated.get((key, kind))
    return vals[-1][0] if vals else None


def _comparison_problems(reading: ChainReading, stated: dict, facts) -> list[str]:
    out = []
    for cmp in reading.comparisons:
        if cmp.negated:
            continue
        kind = RELATION_KIND[cmp.relation]
        keyed = {k: v[-1][0] for (k, q), v in stated.items() if q == kind}
        if cmp.b == "=":                              # "the longer tone is the higher one"
            a_key = _comparative_key(cmp.a, stated)
            top = _extreme(keyed, cmp.relation in GREATER)
            if a_key is not None and top is not None and a_key != top:
                out.append(f"comparison {cmp.text!r} does not follow from the values the chain stated")
            continue
        if cmp.a in ("end", "start"):
            melody = next((c.referent for c in reading.claims if c.member in ("first", "last")), None)
            a = _value_of(stated, _key(melody, "last", facts), kind) if melody else None
            b = _value_of(stated, _key(melody, "first", facts), kind) if melody else None
        else:
            a_key = _key(cmp.a, None, facts)
            a = keyed.get(a_key)
            if cmp.b:
                b = keyed.get(_key(cmp.b, None, facts))
            else:                                     # "the second tone is higher": than the other one
                others = [v for k, v in keyed.items() if k != a_key]
                b = others[0] if len(others) == 1 else None
        if a is None or b is None:
            continue
        if a == b or (a > b) != (cmp.relation in GREATER):  # equal values decide nothing
            out.append(f"comparison {cmp.text!r} contradicts the chain's own values ({a:g} vs {b:g})")
    return out


def _comparative_key(phrase: str, stated: dict):
    mm = re.match(r"the (higher|lower|longer|shorter|louder|softer)", phrase)
    if not mm:
        return None
    keyed = {k: v[-1][0] for (k, q), v in stated.items() if q == RELATION_KIND[mm[1]]}
    return _extreme(keyed, mm[1] in GREATER)


def _extreme(keyed: dict, greatest: bool):
    if len(keyed) < 2:
        return None
    ranked = sorted(keyed.items(), key=lambda kv: kv[1], reverse=greatest)
    return ranked[0][0] if ranked[0][1] != ranked[1][1] else None


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+(?:\.\d+)?", text.lower().replace("-", " "))


def named_choice(text: str, choices: list[str]) -> int | None:
    """The choice a conclusion names: a whole choice phrase, else the earliest word (or synonym) that only one
    choice has; None when it names none or two at once."""
    low = " ".join(_tokens(text))
    spots = []
    for i, ch in enumerate(choices):
        phrase = " ".join(t for t in _tokens(ch) if t not in ("a", "an", "the"))
        mm = re.search(rf"\b{re.escape(phrase)}\b", low) if phrase else None
        if mm:
            spots.append((mm.start(), -len(phrase), i))
    if spots:
        spots.sort()
        return spots[0][2]
    sets = [set(_tokens(ch)) - STOP for ch in choices]
    common = set.intersection(*sets) if sets else set()
    words = low.split()
    best = []
    for i, s in enumerate(sets):
        distinct = (s - common) | {syn for w in s - common for syn in SYNONYMS.get(w, ())}
        others = set().union(*(sets[j] for j in range(len(sets)) if j != i)) if len(sets) > 1 else set()
        distinct -= others
        pos = [k for k, w in enumerate(words) if w in distinct]
        if pos:
            best.append((pos[0], i))
    best.sort()
    if not best or (len(best) > 1 and best[0][0] == best[1][0]):
        return None
    return best[0][1]


def _conclusion_problems(reading: ChainReading, item: dict, answer: str) -> list[str]:
    """The chain's deciding statement must name the answer the completion gives."""
    choices = item.get("choices")
    numeric = not choices or all(extract.normalise_number(str(c)) is not None for c in choices)
    for text in reading.conclusions:
        if numeric:
            mm = re.search(r"(?<![\w#.])-?\d+(?:\.\d+)?(?![\w#])", re.sub(r"\b[A-G][#b]?\d\b", " ", text))
            if not mm:
                continue
            given = extract.number(answer)
            if given is not None and extract.normalise_number(mm[0]) != given:
                return [f"concludes {mm[0]!r} ({text!r}) but answers {answer!r}"]
            return []
        named = named_choice(text, choices)
        if named is None:
            continue
        given, _ = extract.option_index(answer, choices)
        if given is not None and given != named:
            return [f"concludes {choices[named]!r} ({text!r}) but answers {choices[given]!r}"]
        return []
    return []


# ------------------------------------------------------------------------------------------- the verdict
def grounding_score(checks: list[ClaimCheck]) -> float:
    g = sum(c.status == GROUNDED for c in checks)
    k = sum(c.status == CONTRADICTED for c in checks)
    u = sum(c.status == UNVERIFIABLE for c in checks)
    return g / (g + 2 * k + u / 4 + 1)


def judge_chain(item: dict, completion: str, *, source: str = "auto", audio_root: str | Path | None = None,
                facts: F.ClipFacts | None = None, refusal_judge=None) -> Verdict:
    """Keep or drop one sampled completion (what follows the `<think>\\n` prompt) for an item (a manifest record:
    `answer`, `choices`, `meta` and/or `audio`). `facts` overrides `source` (pass measured facts once for many
    samples); `refusal_judge(texts) -> list[bool]` adds an LLM's reading to the refusal patterns."""
    split = split_reasoning(completion)
    reasoning = split.reasoning
    if facts is None:
        facts = facts_for(item, source, audio_root)
    reading = read_chain(reasoning)
    checks = check_claims(reading, facts, item)
    answer = extract.post_think(completion).answer if split.closed else None
    why: dict = {}
    if not split.closed:
        why["truncated"] = "the think block never closes: no answer"
    if not is_correct(completion, str(item["answer"]), item.get("choices")):
        why["incorrect"] = f"answer {answer!r}, expected {item['answer']!r}"
    bad = [c for c in checks if c.status == CONTRADICTED]
    if bad:
        why["contradicted"] = "; ".join(f"{c.text!r}: {c.detail}" for c in bad[:4])
    if not any(c.evidence for c in checks):
        why["ungrounded"] = "no measurement of the sound is borne out" + (
            "" if facts is not None else " (no meta and no audio to check against)")
    problems = coherence_problems(reading, facts, item, answer)
    if problems:
        why["incoherent"] = "; ".join(problems[:4])
    cues = surrogate_cues(reasoning)
    if cues:
        why["surrogate"] = "; ".join(cues)
    refused = is_refusal(reasoning) or is_refusal(split.answer or "")
    if not refused and refusal_judge is not None:
        refused = bool(refusal_judge([completion])[0])
    if refused:
        why["refusal"] = "claims it cannot hear or was given no audio"
    reasons = [r for r in REASONS if r in why]
    return Verdict(not reasons, reasons, grounding_score(checks), checks, why,
                   facts.source if facts is not None else None, reading.conclusions[0] if reading.conclusions else "",
                   answer)
