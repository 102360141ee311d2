"""What a reasoning chain says about the sound: claims bound to their referents, the steps it takes, its conclusion.

`read_chain(reasoning) -> ChainReading` is pure text work (no facts needed), so it is testable on its own and
the same reading is checked against `meta` or against measurements of the audio (`audior1.data.grounding`).

- **Claims** (`Claim`): a value about one referent — "the first tone is about 677 Hz" (pitch of "the first
  tone"), "the second about 0.23 s" (a bare ordinal takes its noun from the sentence), "click 3 at 1.00 s"
  (onset of "the third click"), "4 high beeps" (count of "the high beeps"), "from about -15 dBFS at the start"
  (start level of the clip), "every 0.38 s" (a period, i.e. a tempo), "pink noise", "getting softer". The
  referent is the nearest noun phrase before the value in its clause, else the one the sentence was talking
  about (a clause without a subject continues the previous one). `member` picks one event of a group:
  "the melody starts on F#4" (first), "ends on" (last), "the first melody goes G4, A#3, F4" (1st, 2nd, 3rd),
  "from A#3 up to G4" (some member). Quoted speech is reported speech, never a claim about the sound; norms
  ("an ordinary pace is about 120 to 170 per minute") and overtones are not claims about a referent.
- **Steps** (`Step`): what follows from the chain's own numbers and can be checked without any facts — an
  inequality ("12 is more than 9"), arithmetic ("60 divided by 0.38 is about 158", "4 + 6 + 9 = 19"), the
  semitones between two stated pitches, a stated value inside a stated range, a count against the events the
  chain enumerated, a loudness word against the stated change. Each carries `ok`.
- **Comparisons** (`Comparison`): "the second tone is higher", "the longer tone is the higher one", "it ends
  higher than it starts" — checked by the grounding module against the values the chain itself stated.
- **Conclusions**: each sentence's deciding part (after its first "so / therefore / that makes / gives / = / :"),
  last sentence first; the grounding module takes the first that names an answer.

Design choice: patterns over normalised text (lower case except note names, number words as digits where
they count or number things), not a parser: the chains to read are the suite's templates, their rule-based
paraphrases and what a small model learnt from them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
COUNT_NOUNS = ("beep", "tone", "note", "click", "tick", "pulse", "word", "digit", "number", "syllable", "sound",
               "event", "chord", "melody", "knock", "clap", "burst")
NOUN = r"(?:beep|tone|note|click|tick|pulse|word|digit|number|syllable|sound|event|chord|melod(?:y|ie)|knock|" \
       r"clap|burst|pitch(?:e)?)s?"
ADJ = r"(?:high|low|higher|lower|high-pitched|low-pitched|sharp|sine|square|sawtooth|soft|short|long|loud|" \
      r"quiet|separate|spoken|distinct|short|brief|steady|pure|single|evenly spaced|regular|separate)"
ORD = r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final|penultimate|\d+(?:st|nd|rd|th))"
NUM = r"[-+]?\d+(?:\.\d+)?"
ABOUT = r"(?:(?:about|around|roughly|approximately|nearly|almost|some|~|≈)\s+)?"
NOTE = re.compile(r"(?<![\w#♯♭])([A-G](?:#|♯|b|♭)?)(-?\d)(?![\w#])")
QUOTE = re.compile(r"[\"“”]([^\"“”]{0,200})[\"“”]")
CONCLUDE = re.compile(r"\b(?:so|therefore|thus|hence|which means|that means|that makes|that gives|in total there "
                      r"(?:are|is)|this gives|gives|giving|which is|the answer is|meaning)\b|=|:")
NORM = re.compile(r"\b(?:usual|typical|ordinary|normal|average|conversational|everyday|speaking range|"
                  r"human|a man's|a woman's|adult)\b")


@dataclass(frozen=True)
class Claim:
    """One value the chain states about one referent. `kind` is a quantity of `audior1.data.facts.check` (or
    `pause`, `waveform`, `semitones`, `overtone`, `transcript`); `value` is as written (`unit` is an ordinal "k"
    for a pause or an overtone: the k-th); `referent` a phrase `facts.resolve` reads ("" is
    the clip); `member` one event of a group referent ("first", "last", an int from 1, or "any")."""
    kind: str
    value: object
    referent: str
    text: str
    sentence: int
    unit: str = ""
    member: object = None
    measurement: bool = True        # a number with a unit, a count or a note name (a label is not)

    def describe(self) -> str:
        who = self.referent or "the clip"
        if self.member is not None:
            who = f"{self.member if isinstance(self.member, str) else _ordinal(self.member)} member of {who}"
        if self.unit.isdigit():  # an ordinal: the k-th pause, the k-th overtone
            return f"{self.kind} {self.unit} of {who} = {self.value}"
        return f"{self.kind} of {who} = {self.value}{(' ' + self.unit) if self.unit else ''}"


@dataclass(frozen=True)
class Step:
    """A step the chain takes from its own numbers; `ok` whether it holds."""
    kind: str                       # inequality | arithmetic | semitones | in_range | enumeration | trend_word
    text: str
    ok: bool
    why: str = ""


@dataclass(frozen=True)
class Comparison:
    """"A is <relation> than B": `a`/`b` are referent phrases (`b` "" for "the other one"); `relation` one of
    higher, lower, longer, shorter, louder, softer, wider, narrower; `same` for "A is the <relation> one"
    (A is the one that is most so)."""
    a: str
    relation: str
    b: str
    text: str
    sentence: int
    negated: bool = False


@dataclass
class ChainReading:
    claims: list[Claim] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    conclusions: list[str] = field(default_factory=list)  # deciding statements, the last sentence's first
    quotes: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)


def _ordinal(k: int) -> str:
    return ORDINALS[k - 1] if 1 <= k <= len(ORDINALS) else f"{k}th"


def _num(s: str) -> float:
    return float(s.replace("−", "-").replace(",", ""))


# ------------------------------------------------------------------------------------------- normalising
def normalise(text: str) -> tuple[str, list[str]]:
    """Lower-cased text with note names kept upper case, quotes replaced by `qN` markers, unicode minus and
    dashes simplified, and number words that count or number things as digits ("five clicks", "click one")."""
    quotes: list[str] = []

    def keep_quote(mm):
        quotes.append(mm[1])
        return f" q{len(quotes) - 1}q "

    t = QUOTE.sub(keep_quote, text.replace("’", "'").replace("−", "-"))
    notes = {}

    def keep_note(mm):
        notes[f"nn{len(notes)}nn"] = mm[0]
        return f"nn{len(notes) - 1}nn"

    t = NOTE.sub(keep_note, t).lower()
    t = re.sub(r"(\d),(\d{3})", r"\1\2", t)
    words = "|".join(NUMBER_WORDS)
    t = re.sub(rf"\b({words})\b(?=(?:\s+{ADJ}){{0,2}}\s+{NOUN}\b)",
               lambda mm: str(NUMBER_WORDS[mm[1]]) if not (mm[1] == "one" and re.match(r"\s+of\b", t[mm.end():]))
               else mm[1], t)
    t = re.sub(rf"\b({NOUN})\s+({words})\b", lambda mm: f"{mm[1]} {NUMBER_WORDS[mm[2]]}", t)
    t = re.sub(rf"\b({words}) (of the)\b", lambda mm: f"{NUMBER_WORDS[mm[1]]} {mm[2]}", t)
    t = re.sub(rf"\b(is|are|gives?|makes?|total(?:s| of)?|equals?|=|count(?:ed)? to)\s+({words})\b(?!\s*-)",
               lambda mm: f"{mm[1]} {NUMBER_WORDS[mm[2]]}", t)
    for k, v in notes.items():
        t = t.replace(k, v)
    return " ".join(t.split()), quotes


def sentences(t: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[a-z0-9(\"A-G-])", t) if s.strip()]


def clauses(sentence: str) -> list[str]:
    """A sentence cut where a new subject may start: after ';', ', and', ' and the', ', then', ', but'."""
    parts = re.split(r";\s+|,\s+(?:and|but|then|while|whereas)\s+|\s+and\s+(?=the\s|its\s|it\s|that\s|each\s)|"
                     r",\s+(?=the\s(?:first|second|third|last|other|next)\b)", sentence)
    return [p.strip(" ,") for p in parts if p.strip(" ,")]


# ------------------------------------------------------------------------------------------- referents
REF = re.compile(
    rf"\b(?P<det>the|its|their|each|every|both)\s+(?P<ord>{ORD}\s+)?(?P<n>\d+\s+)?(?P<reg>(?:high|low|higher|lower)"
    rf"(?:-pitched)?\s+)?(?:{ADJ}\s+){{0,2}}(?P<noun>{NOUN})\b(?!\s+\d)"
    rf"|\b(?P<enum>beep|tone|note|click|tick|word|digit|number|pulse|chord|melody)\s+(?P<k>\d+)\b"
    rf"|\bthe\s+(?P<bare>{ORD}|other|latter|former)\b(?!\s+(?:{ADJ}\s+)*{NOUN}\b)"
    rf"|\b(?:a|an)\s+(?:(?:{ADJ}|\d+(?:\.\d+)?\s*k?hz|burst of|series of|row of)\s+)*(?P<anoun>(?:tone|beep|chord|"
    rf"click|note)s?|melody|melodies|noise)\b"
    rf"|\bthe\s+(?P<rg>high|low)(?:-pitched)?\s+(?P<ones>ones?)\b"
    rf"|\bthe\s+(?P<cmp>higher|lower|longer|shorter|louder|softer|quieter)(?:-pitched)?\s+(?P<cnoun>{NOUN}|one)\b"
    rf"|\b(?P<whole>the (?:voice|speaker|speech|background(?: noise)?|noise floor|announcement|level|loudness|"
    rf"noise|sound|clip|recording|audio|spectrum|chord|melody|tone|pause|pauses))(?:'s)?\b"
    rf"|\b(?P<it>it|its|they|their)\b")


def _canonical(mm: re.Match, context_noun: str) -> tuple[str, str]:
    """(referent phrase, its noun) of a REF match; bare ordinals borrow the sentence's noun."""
    if mm["enum"]:
        noun = "melody" if mm["enum"] == "melody" else mm["enum"]
        return f"the {_ordinal(int(mm['k']))} {noun}", noun
    if mm["bare"]:
        word = mm["bare"]
        if word in ("other", "latter", "former"):
            return f"the {word}", context_noun
        return f"the {word} {context_noun}" if context_noun else f"the {word}", context_noun
    if mm["anoun"]:                                   # "a steady 418 Hz tone": the tone
        return f"the {mm['anoun']}", mm["anoun"]
    if mm["rg"]:                                      # "the low ones": a register of the sentence's events
        noun = context_noun or "tone"
        return f"the {mm['rg']} {noun}s", noun
    if mm["cmp"]:
        noun = mm["cnoun"] if mm["cnoun"] != "one" else (context_noun or "one")
        return f"the {mm['cmp']} {_singular(noun)}", _singular(noun)
    if mm["whole"]:
        w = mm["whole"].removeprefix("the ")
        w = {"speaker": "speech", "voice": "speech", "announcement": "speech", "level": "", "loudness": "",
             "sound": "sound", "clip": "", "recording": "", "audio": "", "spectrum": "", "background noise":
             "background", "noise floor": "background", "pauses": "pause"}.get(w, w)
        return ("the " + w if w else ""), w
    if mm["it"]:
        return "it", context_noun
    noun = _singular(mm["noun"])
    plural = mm["noun"] != noun
    parts = [p.strip() for p in (mm["ord"], mm["n"], mm["reg"]) if p]
    reg = (mm["reg"] or "").strip()
    if reg:
        parts[-1] = "high" if reg.startswith("high") else "low"
    phrase = " ".join(["the", *parts, mm["noun"] if plural or mm["n"] else noun])
    if mm["det"] in ("each", "every", "both"):
        phrase = "the " + " ".join([*parts, noun + "s" if not noun.endswith("y") else noun[:-1] + "ies"])
    return phrase, noun


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("ches"):
        return word[:-2]
    return word[:-1] if word.endswith("s") and word[:-1] in COUNT_NOUNS + ("pitch",) else word


# ------------------------------------------------------------------------------------------- value patterns
# (kind, pattern, unit): the first pattern to match a span claims it. Groups: v (value), v2 (range end).
VALUE_PATTERNS: list[tuple[str, str, str]] = [
    ("tempo_range", r"(?P<v>\d+(?:\.\d+)?)\s*(?:-|–|—|to)\s*(?P<v2>\d+(?:\.\d+)?)\s*(?:bpm|beats per minute)",
     "BPM"),
    ("norm", rf"{ABOUT}\d+(?:\.\d+)?\s*(?:-|–|—|to)\s*\d+(?:\.\d+)?\s*(?:hz|words? per (?:second|minute)|per "
             rf"(?:second|minute)|wpm)", ""),
    ("noise_slope", rf"slope of\s+{ABOUT}(?P<v>{NUM})\s*db\s*(?:per|/|an|a|each)\s*octave", "dB/oct"),
    ("noise_tilt", rf"{ABOUT}(?P<v>{NUM})\s*db\s*(?:per|/|an|a|each)\s*octave", "dB/oct"),
    ("snr", rf"{ABOUT}(?P<v>{NUM})\s*db\s*(?:below|under|quieter than|beneath)\s+(?:the\s+)?\w+", "dB"),
    ("level_change", rf"(?P<dir>drop|fall|decrease|decline|rise|increase|gain|swell|change|climb)s?\s+(?:of|by)\s+"
                     rf"{ABOUT}(?P<v>{NUM})\s*db\b", "dB"),
    ("level", rf"{ABOUT}(?P<v>{NUM})\s*dbfs\b", "dBFS"),
    ("rate_min", rf"{ABOUT}(?P<v>{NUM})\s*(?:words?\s+|syllables?\s+)?(?:per|a|/)\s*minute|{ABOUT}(?P<v_>{NUM})\s*wpm",
     "wpm"),
    ("speaking_rate", rf"{ABOUT}(?P<v>{NUM})\s*(?:words?|syllables?|digits?)\s*(?:per|a|/)\s*(?:second|sec|s)\b",
     "1/s"),
    ("tempo", rf"{ABOUT}(?P<v>{NUM})\s*(?:bpm|beats per minute|beats a minute)", "BPM"),
    ("period", rf"(?:every|once every|one every)\s+{ABOUT}(?P<v>{NUM})\s*(?P<u>ms|s|sec|secs|seconds?)\b", "s"),
    ("pitch", rf"{ABOUT}(?P<v>{NUM})\s*(?P<u>khz|hz)\b", "Hz"),
    ("semitones", rf"{ABOUT}(?P<v>{NUM})\s*semitones?\b", "semitones"),
    ("seconds", rf"{ABOUT}(?P<v>{NUM})\s*(?P<u>ms|s|sec|secs|seconds?)\b(?!\s*(?:per|/))", "s"),
    ("note", r"(?<![\w#])(?P<v>[A-G](?:#|♯|b|♭)?-?\d)(?![\w#])", ""),
]
_VALUE = [(k, re.compile(p), u) for k, p, u in VALUE_PATTERNS]
COUNT = re.compile(rf"(?<![\w.])(?P<n>\d+)\s+(?P<of>of the\s+)?(?P<adj>(?:{ADJ}\s+){{0,2}})(?P<noun>{NOUN})\b"
                   rf"(?:\s+(?:are|were|is)\s+(?P<pred>high|low|higher|lower)(?:-pitched)?\b)?")
ENUM_AT = re.compile(rf"\b(?P<noun>beep|tone|note|click|tick|word|digit|pulse)\s+(?P<k>\d+)\s+(?:at|starts at|comes at)"
                     rf"\s+{ABOUT}(?P<v>{NUM})\s*(?P<u>ms|s|sec|seconds?)\b")
REGISTERS = re.compile(r"\bthe\s+(?P<noun>beeps|tones|notes|pulses)\s+(?:go|are|come|run)\s*:?\s+(?P<seq>(?:high|low)"
                       r"(?:(?:,\s*|\s+then\s+|,?\s+and\s+|\s+)(?:high|low))+)")
QUOTE_AT = re.compile(rf"\bq(?P<q>\d+)q\s+(?:at|starts at|comes at)\s+{ABOUT}(?P<v>{NUM})\s*(?P<u>ms|s|sec|seconds?)\b")
LABELS: list[tuple[str, str, str | None]] = [
    ("trend", r"\b(?:getting|grows?|growing|becom\w+|gets?)\s+(louder|softer|quieter)\b|\b(crescendo|decrescendo|"
              r"diminuendo)\b|\b(?:stays?|staying|remains?|keeps?)\s+(?:about\s+)?(?:the same|steady|level|constant)\b",
     None),
    ("noise_colour", r"\b(white|pink|brown|brownian|red)\s+(?:background\s+)?noise\b", None),
    ("waveform", r"\b(sine|square|sawtooth|triangle)(?:[- ]wave)?\b", None),
]
TREND_OF = {"louder": "rising", "crescendo": "rising", "softer": "falling", "quieter": "falling",
            "decrescendo": "falling", "diminuendo": "falling", None: "steady"}


def _unit_value(v: str, u: str | None) -> float:
    x = _num(v)
    if u and u.startswith("ms"):
        return x / 1000
    if u == "khz":
        return x * 1000
    return x


def _scaled(v: str, u: str | None) -> str:
    """The value in the claim's base unit, keeping the precision it was written with."""
    if u and (u.startswith("ms") or u == "khz"):
        dec = len(v.split(".")[1]) if "." in v else 0
        return f"{_unit_value(v, u):.{dec + 3 if u.startswith('ms') else max(dec - 3, 0)}f}"
    return v


# ------------------------------------------------------------------------------------------- reading
def read_chain(reasoning: str) -> ChainReading:
    """Claims, steps, comparisons and conclusion of a chain of reasoning (see the module docstring)."""
    text, quotes = normalise(reasoning)
    out = ChainReading(quotes=quotes, sentences=sentences(text))
    noun, subject = "", ""            # the sentence's noun ("tone") and the referent it talks about
    for si, sent in enumerate(out.sentences):
        noun = _sentence_noun(sent) or noun
        subject, noun = _read_sentence(sent, si, noun, subject, out)
    out.claims += _transcript_claims(out)
    out.steps += _enumeration_steps(out) + _trend_steps(out) + _digit_steps(out)
    out.conclusions = conclusions(out.sentences)
    return out


def _sentence_noun(sent: str) -> str:
    mm = re.search(rf"\b(?:the|two|2|both)\s+(?:{ORD}\s+)?(?:{ADJ}\s+){{0,2}}({NOUN})\b", sent)
    return _singular(mm[1]) if mm else ""


def _read_sentence(sent: str, si: int, noun: str, subject: str, out: ChainReading) -> tuple[str, str]:
    out.steps += numeric_steps(sent)
    out.comparisons += _comparisons(sent, si, noun)
    restated = _restating_spans(sent)
    for clause in clauses(sent):
        subject, noun = _read_clause(clause, si, noun, subject, out, restated)
    return subject, noun


def _restating_spans(sent: str) -> list[str]:
    """Clauses whose numbers restate earlier values to compare or compute with them (not new claims)."""
    return [m[0] for m in re.finditer(
        rf"{NUM}\s*\w*\s+(?:is|are)\s+(?:above|below|more|less|fewer|greater|larger|smaller|higher|lower|bigger|"
        rf"the (?:shorter|longer|higher|lower|louder|softer)|under|over)\b[^,;.]*|\b{NUM}\s*(?:divided by|times|"
        rf"plus|minus|[-+x×/])\s*{NUM}[^,;.]*|counting semitones from[^,;.]*", sent)]


def _read_clause(clause: str, si: int, noun: str, subject: str, out: ChainReading,
                 restated: list[str]) -> tuple[str, str]:
    refs = [(m.start(), *_canonical(m, noun), m) for m in REF.finditer(clause)]
    for mm in COUNT.finditer(clause):  # "4 high beeps (about 713 Hz)": the count names what follows
        refs.append((mm.start(), _count_referent(mm), _singular(mm["noun"]), mm))
    refs.sort(key=lambda r: r[0])
    if any(r[0] is not None for r in refs):
        for _, phrase, n, mm in refs:
            if phrase and phrase != "it" and not (mm.re is REF and mm["cmp"]):
                subject = phrase
            if n and n not in ("pause", "background", "speech", "sound", ""):
                noun = n
    over = re.search(r"\bovertones?\b", clause)
    skip_numbers = any(r in clause for r in restated)
    if over:  # "its first overtones are at X and Y": the values after the word
        for k, mm in enumerate(re.finditer(rf"{ABOUT}(?P<v>{NUM})\s*(?P<u>khz|hz)\b", clause[over.end():]), 1):
            out.claims.append(Claim("overtone", _scaled(mm["v"], mm["u"]), referent_before_clause(refs, subject), mm[0],
                                    si, str(k)))
    if NORM.search(clause):
        clause = re.sub(r"\([^)]*\)", " ", clause)
    taken: list[tuple[int, int]] = []

    def free(a, b):
        return all(b <= x or a >= y for x, y in taken)

    def referent_before(pos: int) -> str:
        best = None
        for start, phrase, _, mm in refs:
            if start < pos and phrase and phrase != "it" and not (mm.re is REF and mm["cmp"]):
                best = phrase
        return best if best is not None else subject

    for mm in ENUM_AT.finditer(clause):
        taken.append(mm.span())
        out.claims.append(Claim("onset", _scaled(mm["v"], mm["u"]), f"the {_ordinal(int(mm['k']))} {mm['noun']}",
                                mm[0], si, "s"))
    for k, mm in enumerate(QUOTE_AT.finditer(clause)):
        taken.append(mm.span())
        word_noun = noun if noun in ("word", "digit", "number") else "word"
        index = _enumerated_quote_index(out, si, int(mm["q"]))
        out.claims.append(Claim("onset", _scaled(mm["v"], mm["u"]), f"the {_ordinal(index)} {word_noun}", mm[0],
                                si, "s"))
    for mm in COUNT.finditer(clause):
        if not free(*mm.span()) or re.search(rf"\b{ORD}\s+$", clause[:mm.start()]) or \
                re.search(r"(?:[-+x×/=]|plus|minus|times|by)\s*$", clause[:mm.start()]):
            continue
        taken.append(mm.span())
        out.claims.append(Claim("count", mm["n"], _count_referent(mm), mm[0], si))
    for mm in REGISTERS.finditer(clause):
        taken.append(mm.span())
        seq = tuple(w for w in re.findall(r"high|low", mm["seq"]))
        out.claims.append(Claim("registers", " ".join(seq), f"the {mm['noun']}", mm[0], si))
    melody_members = _member_values(clause, referent_before)
    for kind, rx, unit in _VALUE:
        for mm in rx.finditer(clause):
            if not free(*mm.span()):
                continue
            taken.append(mm.span())
            if kind == "norm" or skip_numbers or (over and kind == "pitch" and mm.start() > over.start()):
                continue  # a norm, a restated value, an overtone (claimed above)
            if NORM.search(clause) and kind in ("pitch", "rate_min", "speaking_rate", "tempo", "seconds"):
                if re.search(r"\b(?:usual|typical|ordinary|normal|average|conversational)\b", clause):
                    continue
            claim = _value_claim(kind, mm, unit, clause, si, referent_before(mm.start()), melody_members)
            if claim is not None:
                out.claims.append(claim)
    for kind, pat, _ in LABELS:
        for mm in re.finditer(pat, clause):
            if not free(*mm.span()) or re.search(r"\b(?:not|n't|no|never|rather than|instead of)\s+(?:\w+\s+)?$",
                                                 clause[:mm.start()]):
                continue
            taken.append(mm.span())
            value = next(g for g in mm.groups() if g) if any(mm.groups()) else None
            if kind == "trend":
                value = TREND_OF[value]
            ref = referent_before(mm.start()) if kind != "noise_colour" else \
                ("the background" if "background" in mm[0] or
                 re.match(r"\s+(?:in|of) the background", clause[mm.end():])
                 else "")
            out.claims.append(Claim(kind, value, ref, mm[0], si, measurement=False))
    return subject, noun


def referent_before_clause(refs, subject: str) -> str:
    named = [phrase for _, phrase, _, mm in refs if phrase and phrase != "it" and not (mm.re is REF and mm["cmp"])]
    return named[0] if named else subject


def _count_referent(mm: re.Match) -> str:
    """"4 high beeps" -> "the high beeps"; "3 of the beeps are high" -> "the high beeps"."""
    noun = _singular(mm["noun"])
    reg = mm["pred"] or next((a for a in (mm["adj"] or "").split() if a.startswith(("high", "low"))), None)
    reg = None if reg is None else ("high" if reg.startswith("high") else "low")
    plural = noun + "s" if not noun.endswith("y") else noun[:-1] + "ies"
    return f"the {reg + ' ' if reg else ''}{plural}"


def _enumerated_quote_index(out: ChainReading, si: int, q: int) -> int:
    """Position of quote `q` among the quotes enumerated with times in this chain (1-based)."""
    earlier = [c for c in out.claims if c.kind == "onset" and c.sentence == si and " q" in f" {c.text}"]
    return len(earlier) + 1


NOTE_RUN = re.compile(rf"(?:{NOTE.pattern}(?:\s*\({ABOUT}{NUM}\s*hz\))?"
                      rf"(?:,\s*|\s+and\s+|\s+then\s+|,\s*and\s+)?){{2,}}")


def _member_values(clause: str, referent_before) -> dict[int, object]:
    """Which member of a group each pitch value in the clause names, by where it starts: a run of notes
    ("goes G4, A#3, F4", "the notes are C5 (523 Hz), A#4 (466 Hz)") names members in order, the pitch in
    parentheses the same member as its note; "starts on" the first, "ends on" the last, "from … to" some."""
    members: dict[int, object] = {}
    for mm in re.finditer(r"\b(?:starts?|begins?|opens?)\s+(?:on|at|with)\s+", clause):
        members[mm.end()] = "first"
    for mm in re.finditer(r"\b(?:ends?|finish(?:es)?|closes?|lands?)\s+(?:on|at|with)\s+", clause):
        members[mm.end()] = "last"
    for mm in re.finditer(r"\bfrom\s+", clause):
        members[mm.end()] = "any"
    for mm in re.finditer(r"\b(?:up|down)\s+to\s+|\bto\s+(?=[A-G])", clause):
        members[mm.end()] = "any"
    for run in NOTE_RUN.finditer(clause):
        if any(run.start() == pos for pos in members):
            continue
        for k, nm in enumerate(NOTE.finditer(run[0]), 1):
            members[run.start() + nm.start()] = k
    return members


def _value_claim(kind, mm, unit, clause, si, ref, members) -> Claim | None:
    v = mm.groupdict().get("v") or mm.groupdict().get("v_")
    u = mm.groupdict().get("u")
    before = clause[:mm.start()]
    member = None
    for pos, mem in sorted(members.items()):  # the nearest marker before the value, inside its own item
        if pos == mm.start() or (pos < mm.start() and re.fullmatch(rf"(?:{NOTE.pattern}\s*\(\s*)?{ABOUT}",
                                                                     clause[pos:mm.start()])):
            member = mem
    group_ref = ref and re.search(r"\bmelod(?:y|ies)\b|\bthe (?:notes|tones|beeps|chord)\b", ref)
    if kind == "tempo_range":
        return Claim("tempo", f"{mm['v']}-{mm['v2']}", "", mm[0], si, unit)
    if kind == "rate_min":
        return Claim("speaking_rate", v, "the speech", mm[0], si, "wpm")
    if kind == "speaking_rate":
        return Claim("speaking_rate", v, "the speech", mm[0], si, "1/s")
    if kind == "period":
        return Claim("period", _scaled(v, u), ref, mm[0], si, "s")
    if kind in ("noise_tilt", "noise_slope"):  # "falls 3 dB per octave"; "a slope of 1 dB per octave" (either way)
        return Claim(kind, v, "the background" if "background" in clause else "", mm[0], si, unit)
    if kind == "snr":
        return Claim("snr", v, "", mm[0], si, unit)
    if kind == "level_change":
        sign = -1 if mm["dir"] in ("drop", "fall", "decrease", "decline") else 1
        return Claim("level_change", f"{sign * _num(v):g}", ref if ref != "the sound" else "", mm[0], si, unit)
    if kind == "level":
        after = clause[mm.end():mm.end() + 30]
        which = "start_level" if re.match(r"\s*(?:at|in)\s+the\s+(?:start|beginning|outset|first)", after) or \
            re.search(r"\b(?:starting|starts|begins|beginning|from)\s+(?:at\s+)?" + ABOUT + "$", before) else \
            "end_level" if re.match(r"\s*(?:at|by)\s+the\s+(?:end|last|close|finish)", after) or \
            re.search(r"\b(?:ending|ends|finishing|to)\s+(?:at\s+)?" + ABOUT + "$", before) else "level"
        return Claim(which, v, ref if which == "level" or (ref and ref not in ("the sound",)) else "", mm[0], si,
                     unit)
    if kind == "semitones":
        return Claim("semitones", v, ref, mm[0], si, unit, measurement=False)
    if kind == "pitch":
        q = "voice_f0" if ref in ("the speech",) or re.search(r"\b(?:voice|speaker|speech|f0 of the voice)\b",
                                                                  clause) else "pitch"
        return Claim(q, _scaled(v, u), ref if q == "pitch" else "the speech", mm[0], si, "Hz",
                     member=member if group_ref else None)
    if kind == "note":
        return Claim("pitch", v, ref, mm[0], si, "", member=member if group_ref else None)
    if kind == "seconds":
        if re.search(r"\bpauses?\s+(?:of\s+)?" + ABOUT + r"$|\bpauses?\s+(?:of\s+)?" + ABOUT + rf"{NUM}\s*s\s+and\s+"
                     + ABOUT + "$", before):
            listed = re.search(r"\bpauses?\s+(?:of\s+)?" + ABOUT + rf"{NUM}\s*s\s+and\s+" + ABOUT + "$", before)
            first = re.search(r"\bpauses\s+(?:of\s+)?" + ABOUT + "$", before) and \
                re.match(rf"\s+and\s+{ABOUT}{NUM}\s*s\b", clause[mm.end():])
            nth = "2" if listed else "1" if first else ""  # "pauses of 0.36 s and 0.51 s": the first, the second
            return Claim("pause", _scaled(v, u), ref, mm[0], si, nth)
        if re.search(r"\b(?:at|starts?\s+at|begins?\s+at|comes?\s+at|onset\s+(?:of|at)|after)\s+" + ABOUT + "$",
                     before):
            return Claim("onset", _scaled(v, u), ref, mm[0], si, "s")
        if re.search(r"\b(?:ends?|stops?|finish(?:es)?)\s+(?:at|by)\s+" + ABOUT + "$", before):
            return Claim("offset", _scaled(v, u), ref, mm[0], si, "s")
        of = re.match(rf"\s+of\s+(?:{ADJ}\s+)*(noise|speech|silence|{NOUN})\b", clause[mm.end():])
        if of:                                      # "1.1 s of steady noise": the noun after it
            return Claim("duration", _scaled(v, u), "the " + of[1], mm[0], si, "s",
                         member="whole" if of[1].endswith("s") else None)
        whole = re.search(r"\b(?:spread over|over|across|within|in|take|takes|span|spans)\s+" + ABOUT + "$", before) \
            or (re.search(r"\b(?:series|row|train|sequence|run)\b", before) and re.search(r"\blast(?:s|ing)?\s+" + ABOUT
                                                                                         + "$", before))
        if whole and ref and re.search(r"s$|ies$", ref):
            return Claim("duration", _scaled(v, u), ref, mm[0], si, "s", member="whole")
        return Claim("duration", _scaled(v, u), ref, mm[0], si, "s")
    return None


SPEECH_VERB = re.compile(r"\b(?:says?|said|saying|speaks?|spoke|reads?|utters?|announces?|hear|heard|calls? out)\b")


def _transcript_claims(out: ChainReading) -> list[Claim]:
    """What the chain says the speech says: the quote after a speech verb ('the voice says "..."'), or the
    quotes a sentence lists word by word ('"wind" at 0.15 s, "milk" at 0.77 s'), joined."""
    claims = []
    for si, sent in enumerate(out.sentences):
        marks = [(m.start(), int(m[1])) for m in re.finditer(r"\bq(\d+)q\b", sent)]
        if not marks:
            continue
        verb = SPEECH_VERB.search(sent[:marks[0][0]])
        if verb and len(marks) == 1 or (verb and re.match(r"\s*q\d+q\s*[,.;:]?\s*$|\s*q\d+q\s*[,;]",
                                                          sent[verb.end():])):
            k = marks[0][1]
            claims.append(Claim("transcript", out.quotes[k], "the speech", f'"{out.quotes[k]}"', si,
                                measurement=False))
        else:
            words = " ".join(out.quotes[k] for _, k in marks)
            claims.append(Claim("transcript", words, "the speech", words, si, measurement=False))
    return claims


def _digit_steps(out: ChainReading) -> list[Step]:
    """A spoken number and the digit the chain reads from it agree: '"three" (3)', 'says "two" …: the digit 2'."""
    steps = []
    for sent in out.sentences:
        for mm in re.finditer(r"\bq(\d+)q\s*\((-?\d+)\)", sent):
            word = out.quotes[int(mm[1])].strip().lower()
            if word in NUMBER_WORDS:
                ok = NUMBER_WORDS[word] == int(mm[2])
                steps.append(Step("digit", f'"{word}" ({mm[2]})', ok, f"{word} is {NUMBER_WORDS[word]}"))
        quotes = [out.quotes[int(k)].strip().lower() for k in re.findall(r"\bq(\d+)q\b", sent)]
        digit = re.search(r"\bthe (?:digit|number)\s+(\d+)\b", sent)
        if digit and len(quotes) == 1 and quotes[0] in NUMBER_WORDS:
            ok = NUMBER_WORDS[quotes[0]] == int(digit[1])
            steps.append(Step("digit", digit[0], ok, f'"{quotes[0]}" is {NUMBER_WORDS[quotes[0]]}'))
    return steps


# ------------------------------------------------------------------------------------------- steps
_CMP_WORDS = {"above": ">", "over": ">", "more": ">", "greater": ">", "larger": ">", "higher": ">", "bigger": ">",
              "longer": ">", "louder": ">", "wider": ">", "below": "<", "under": "<", "less": "<", "fewer": "<",
              "smaller": "<", "lower": "<", "shorter": "<", "softer": "<", "quieter": "<", "narrower": "<"}


def numeric_steps(sent: str) -> list[Step]:
    """Inequalities, arithmetic and semitone distances stated with numbers, each checked."""
    steps = []
    for mm in re.finditer(rf"(?P<a>{NUM})\s*(?P<ua>[a-z]*)\s+(?:is|are)\s+(?:also\s+)?(?P<w>above|over|more|greater|"
                          rf"larger|higher|bigger|below|under|less|fewer|smaller|lower)(?:\s+than)?\s+(?P<b>{NUM})\b",
                          sent):
        a, b = _num(mm["a"]), _num(mm["b"])
        ok = a > b if _CMP_WORDS[mm["w"]] == ">" else a < b
        steps.append(Step("inequality", mm[0], ok, f"{a:g} {_CMP_WORDS[mm['w']]} {b:g} is {'true' if ok else 'false'}"))
    for mm in re.finditer(rf"(?P<a>{NUM})\s*(?:[a-z]+\s+)?(?P<op>divided by|times|multiplied by|plus|minus|"
                          rf"[-+x×/*])\s*"
                          rf"(?P<b>{NUM})(?:\s*(?P<op2>plus|minus|[-+])\s*(?P<c>{NUM}))?\s*(?:[a-z]+\s+)?(?:is|are|"
                          rf"=|equals|gives|makes)\s+{ABOUT}(?P<r>{NUM})", sent):
        vals = [_num(mm["a"]), _num(mm["b"])]
        res = _apply(vals[0], mm["op"], vals[1])
        if mm["op2"]:
            res = _apply(res, mm["op2"], _num(mm["c"]))
        r = _num(mm["r"])
        tol = _ulp(mm["r"]) + 0.01 * abs(res) + 1e-9 if re.search(r"about|around|roughly", mm[0]) or "." in mm["r"] \
            or mm["op"] in ("divided by", "/") else 1e-9
        ok = abs(res - r) <= tol
        steps.append(Step("arithmetic", mm[0], ok, f"{res:g} {'≈' if ok else '≠'} {r:g}"))
    steps += _semitone_steps(sent)
    from audior1.data.dsp import midi_to_hz, note_to_midi
    for mm in re.finditer(rf"(?P<n>{NOTE.pattern})\s*\({ABOUT}(?P<v>{NUM})\s*hz\)", sent):
        hz, v = midi_to_hz(note_to_midi(mm["n"])), _num(mm["v"])
        ok = abs(v - hz) <= 0.03 * hz
        steps.append(Step("note_hz", mm[0], ok, f"{mm['n']} is {hz:.0f} Hz"))
    for mm in re.finditer(rf"(?P<v>{NUM})\s*(?:beats per minute|bpm)?,?\s+which\s+(?:lies|falls|is)\s+(?:in|within|"
                          rf"inside)\s+the\s+(?P<a>{NUM})\s*(?:-|–|to)\s*(?P<b>{NUM})", sent):
        v, a, b = _num(mm["v"]), _num(mm["a"]), _num(mm["b"])
        ok = a - 0.5 <= v <= b + 0.5
        steps.append(Step("in_range", mm[0], ok, f"{v:g} {'in' if ok else 'outside'} {a:g}-{b:g}"))
    return steps


def _apply(a: float, op: str, b: float) -> float:
    if op in ("divided by", "/"):
        return a / b if b else math.inf
    if op in ("times", "multiplied by", "x", "×", "*"):
        return a * b
    return a + b if op in ("plus", "+") else a - b


def _ulp(s: str) -> float:
    return 0.5 * 10 ** -len(s.split(".")[1]) if "." in s else 0.5


def _semitone_steps(sent: str) -> list[Step]:
    """"from E4 up to F#4 gives 2", "F#4 ... D#5 ..., 9 semitones above", "1030 Hz is above 677 Hz by about 7.3
    semitones": the distance between the two pitches the sentence names, against the number it states."""
    from audior1.data.dsp import hz_to_midi, note_to_midi
    pitches = [(m.start(), note_to_midi(m[0])) for m in NOTE.finditer(sent)]
    hz = [(m.start(), hz_to_midi(_num(m[1]) * (1000 if m[2] == "khz" else 1)))
          for m in re.finditer(rf"({NUM})\s*(khz|hz)\b", sent) if _num(m[1]) > 0]
    semis = list(re.finditer(rf"({NUM})\s*semitones?\b", sent)) or \
        list(re.finditer(rf"counting semitones\b[^,;]*?\b(?:gives|is|makes)\s+({NUM})", sent))
    if not semis or "range" in sent:
        return []
    pts = sorted(pitches if len(pitches) >= 2 else hz)
    if len(pts) != 2 or len(semis) != 1:
        return []
    stated = _num(semis[0][1])
    dist = abs(pts[1][1] - pts[0][1])
    ok = abs(dist - stated) <= max(_ulp(semis[0][1]), 0.5 if pts is hz or len(pitches) < 2 else 0.01) + 1e-9
    return [Step("semitones", semis[0][0], ok, f"{dist:.2f} semitones apart, stated {stated:g}")]


def _enumeration_steps(out: ChainReading) -> list[Step]:
    """A count after an enumeration ("click 1 at …, click 5 at …. That makes 5 clicks") must equal it."""
    steps = []
    enum = [c for c in out.claims if c.kind == "onset" and re.match(r"the \w+ \w+$", c.referent)
            and (re.match(r"\w+ \d+ ", c.text) or c.text.startswith("q"))]
    if not enum:
        return steps
    n_enum = len({c.referent for c in enum})
    last_sentence = max(c.sentence for c in enum)
    for c in out.claims:
        if c.kind == "count" and c.sentence >= last_sentence and not re.search(r"\b(?:high|low)\b", c.referent):
            if c.sentence == last_sentence and c.text in out.sentences[c.sentence].split(":")[0]:
                continue  # the count that announces the enumeration ("I hear 2 spoken digits: …") is a claim
            ok = int(c.value) == n_enum
            steps.append(Step("enumeration", c.text, ok, f"{n_enum} enumerated, {c.value} concluded"))
    return steps


def _trend_steps(out: ChainReading) -> list[Step]:
    """A loudness word against the change the chain stated (a drop of 14 dB is not "getting louder")."""
    change = next((float(c.value) for c in out.claims if c.kind == "level_change"), None)
    if change is None:
        start = next((float(c.value) for c in out.claims if c.kind == "start_level"), None)
        end = next((float(c.value) for c in out.claims if c.kind == "end_level"), None)
        change = None if start is None or end is None else end - start
    if change is None:
        return []
    steps = []
    for c in out.claims:
        if c.kind == "trend":
            want = "rising" if change >= 3 else "falling" if change <= -3 else "steady"
            steps.append(Step("trend_word", c.text, c.value == want, f"stated change {change:+g} dB is {want}"))
    return steps


# ------------------------------------------------------------------------------------------- comparisons
_REL = r"(?P<rel>higher|lower|longer|shorter|louder|softer|quieter|wider|narrower)"
_SIDE = rf"(?:the\s+(?:{ORD}|other|higher|lower|longer|shorter|louder|softer)(?:-pitched)?" \
        rf"(?:\s+(?:{ADJ}\s+)*{NOUN})?|" \
        rf"the\s+(?:{ADJ}\s+)*{NOUN}|it|one)"


def _comparisons(sent: str, si: int, noun: str) -> list[Comparison]:
    out = []
    for mm in re.finditer(rf"(?P<a>{_SIDE})\s+(?:is|sounds|lasts|was|seems|spans|ends|comes out)\s+(?P<neg>not\s+)?"
                          rf"(?:(?:therefore|also|clearly|slightly|much|a bit|the)\s+)*{_REL}"
                          rf"(?:\s+(?:in pitch|one|range|"
                          rf"of the two|pitched))?(?:\s+than\s+(?P<b>it starts|it began|the start|{_SIDE}))?", sent):
        a, rel, b = _side(mm["a"], noun), mm["rel"], mm["b"] or ""
        if rel == "quieter":
            rel = "softer"
        if b in ("it starts", "it began", "the start"):
            a, b = "end", "start"
        elif b:
            b = _side(b, noun)
        if mm["a"] == "it" and re.search(r"\bends\b", mm[0]) and not b:
            a, b = "end", "start"
        text = mm[0] + sent[mm.end(): mm.end() + 4].rstrip()
        if re.search(rf"\bthe\s+{mm['rel']}(?:\s+one|\s+of)", mm[0]) and not mm["b"]:
            b, text = "=", mm[0]  # "A is the higher one": A is the one most so
        out.append(Comparison(a, rel, b, text, si, negated=bool(mm["neg"])))
    return out


def _side(text: str, noun: str) -> str:
    text = text.strip()
    mm = re.match(rf"the\s+({ORD})$", text)
    if mm and noun:
        return f"the {mm[1]} {noun}"
    return text


# ------------------------------------------------------------------------------------------- conclusion
def conclusions(sents: list[str]) -> list[str]:
    """Each sentence's deciding part, last sentence first: what follows its first conclusion marker ("so",
    "therefore", "that makes", "gives", "=", ":" ...), or the whole sentence."""
    out = []
    for s in reversed(sents):
        mark = CONCLUDE.search(s)
        out.append((s[mark.end():] if mark and s[mark.end():].strip(" .,:;") else s).strip(" .,:;"))
    return out
