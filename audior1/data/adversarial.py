"""Adversarial and paraphrased completions for testing a grounding filter (`audior1.data.grounding.judge_chain`).

Design
------
Every case starts from an item's reference chain (`text_cot`), which is true for the item, and changes it by one
rule, so that the only thing wrong with a corruption is the thing the rule did, and the only thing different
about a paraphrase is its wording. A case is `Case(kind, completion, expect)`: `completion` is what a model
writes after the prefilled "<think>\\n" (`f"{reasoning}\\n</think>\\n{answer}"`), `expect` the set of reasons the
filter must give (the verdict must drop the case and name at least one of them; an empty set: it must keep it).

- `reference_case(item)`: the chain with its true answer (keep).
- `paraphrases(item, rng)`: the chain reworded by one rule per case (keep): `synonyms`, `clause_order`,
  `numbers_as_words`. Quoted speech and the answer's own wording are never touched.
- `surrogate_case(item)`: the item's `surrogate_cot` with its `surrogate_answer` (expect {"surrogate"}).
- `corruptions(item, pool, rng)`: `moved_value` (a value replaced by another referent's value of the same item),
  `flipped_conclusion` and `flipped_conclusion_and_answer`, `surrogate_plus_fact`, `wrong_noun_count`,
  `bare_count`, `borrowed` (another item's chain). A corruption that does not apply to an item is skipped, and
  none is produced that is not actually wrong (a moved value within a listener's resolution of the truth, a
  "different" choice with the same wording, a borrowed chain stating the same facts).

Where a corruption does not apply: `moved_value` needs a value (Hz, s, dB/dBFS, BPM, words per second, a note
name; its first mention) whose referent has a sibling with a value beyond resolution (>= 8% for Hz/s/BPM/rates and
>= 30 ms for seconds, >= 3 dB, another note name), so it skips a chord's notes (one set, not separate referents),
one voice's pitch, a noise's slope, the tempo, and two tones closer than 8%; a span with no sibling of its kind
(a beat period, a speech's length) takes the length of another thing (the clip, a click). `wrong_noun_count`
needs a count of the item's events ("5 clicks", outside quotes) and a noun of a kind the clip lacks; `bare_count`
a "How many ..." question with a numeric answer; `flipped_conclusion` the answer's wording (or number) in the last
sentence; `borrowed` another item of the task whose chain states other values, quotes or counts.

What the chain says is located in its text by pattern (values with units, note names, counts, the answer's
wording), and what the item holds is read from its `meta` (the per-event records, segments and clip, see
docs/data.md); nothing here depends on the filter's own claim extraction, so the cases test it rather than
mirror it. Everything is deterministic for a given `random.Random`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from audior1.chat import THINK_END

KEEP: frozenset[str] = frozenset()
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
WORD_VALUE = {w: i for i, w in enumerate(NUMBER_WORDS)}

# a listener's resolution: values closer than this to the truth are not "moved"
MIN_RATIO = {"hz": 1.08, "s": 1.08, "bpm": 1.08, "wps": 1.08}
MIN_ABS = {"s": 0.03, "db": 3.0, "slope": 1.5}  # slope: dB per octave

_QUOTE = re.compile(r'"[^"]*"')
_VALUE = re.compile(r"(?<![\w.–-])(-?\d+(?:\.\d+)?) ?(Hz|dBFS|dB|s|BPM|beats per minute|words per second)\b"
                    r"(?! per octave)")
_NOTE = re.compile(r"(?<![\w#])([A-G]#?-?\d)(?![\w#])")
_COUNT_NOUNS = r"(clicks?|beeps?|tones?|notes?|words?|digits?)"
_COUNT = re.compile(r"(?<![\w.#-])(\d+|" + "|".join(NUMBER_WORDS) + r") ((?:high |low |spoken )?)"
                    + _COUNT_NOUNS + r"\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"])")
UNIT = {"hz": "hz", "dbfs": "db", "db": "db", "s": "s", "bpm": "bpm", "beats per minute": "bpm",
        "words per second": "wps"}
# the count nouns of another event kind that a wrong-noun corruption may use
OTHER_NOUN = {"click": ("beep", "tone"), "beep": ("click",), "tone": ("click",), "note": ("click",),
              "word": ("beep",), "digit": ("beep",)}
KIND_CLASS = {"beep": "tonal", "tone": "tonal", "click": "click", "note": "note", "word": "speech",
              "speech": "speech", "digit": "speech", "noise": "noise"}
ALIASES = {"slowly": ("slow",), "quickly": ("fast",)}


@dataclass
class Case:
    """One completion to judge: `expect` is the set of acceptable drop reasons (empty: it must be kept)."""
    kind: str
    completion: str
    expect: frozenset[str] = KEEP
    detail: dict = field(default_factory=dict, compare=False)

    @property
    def reasoning(self) -> str:
        return self.completion.split(f"\n{THINK_END}\n", 1)[0]

    @property
    def answer(self) -> str:
        return self.completion.split(f"\n{THINK_END}\n", 1)[1]


def completion(reasoning: str, answer: str) -> str:
    """What a model writes after the prefilled "<think>\\n"."""
    return f"{reasoning}\n{THINK_END}\n{answer}"


def reference_case(item: dict) -> Case:
    return Case("reference", completion(item["text_cot"], str(item["answer"])), KEEP)


def surrogate_case(item: dict) -> Case:
    return Case("surrogate", completion(item["surrogate_cot"], str(item["surrogate_answer"])),
                frozenset({"surrogate"}))


# ---------------------------------------------------------------------------------------------- text helpers

def quoted_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _QUOTE.finditer(text)]


def in_spans(pos: int, spans) -> bool:
    return any(a <= pos < b for a, b in spans)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, the end after its full stop; a full stop inside a quote ends none."""
    quotes = quoted_spans(text)
    cuts = [m for m in _SENTENCE_END.finditer(text) if not in_spans(m.start(), quotes)]
    starts = [0] + [m.end() for m in cuts]
    ends = [m.start() for m in cuts] + [len(text.rstrip())]
    return list(zip(starts, ends, strict=True))


def last_sentence_start(text: str) -> int:
    return sentence_spans(text)[-1][0]


def splice(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def number_value(s: str) -> float:
    return float(WORD_VALUE[s.lower()]) if s.lower() in WORD_VALUE else float(s)


def decimals(s: str) -> int:
    return len(s.split(".")[1]) if "." in s else 0


def format_like(value: float, like: str, unit: str) -> str:
    """`value` written with the precision of the chain's token `like` (Hz over 1000: three significant figures)."""
    d = decimals(like)
    if d:
        return f"{value:.{d}f}"
    if unit == "hz" and abs(value) >= 1000:
        return str(int(round(value, -1)))
    return str(int(round(value)))


def rounding_tol(token: str) -> float:
    """How far the true value may be from a chain's rounded token."""
    v = abs(float(token))
    return max(0.51 * 10 ** -decimals(token), 0.006 * v)


def beyond_resolution(unit: str, a: float | str, b: float | str) -> bool:
    """Whether a listener can tell `a` from `b` (note names: different names)."""
    if unit == "note":
        return a != b
    a, b = float(a), float(b)
    if unit in MIN_ABS and abs(a - b) < MIN_ABS[unit]:
        return False
    if unit in MIN_RATIO:
        lo, hi = sorted((abs(a), abs(b)))
        return lo == 0 or hi / lo >= MIN_RATIO[unit]
    return True


# ---------------------------------------------------------------------------------------------- facts of an item

@dataclass(frozen=True)
class Fact:
    """One value of one referent: `quantity` (pitch, note, onset, duration, level, pause, period, clip, tempo,
    rate), `unit` (hz, note, s, db, bpm, wps), `referent` (e.g. "click 2", "overtone 3", "clip")."""
    quantity: str
    unit: str
    referent: str
    value: float | str


SPAN = ("duration", "pause", "period", "clip")  # seconds that measure a length, not a moment


def item_facts(meta: dict) -> list[Fact]:
    """The per-referent values of an item's `meta` that a chain may state."""
    out: list[Fact] = []
    events = meta.get("events") or []
    onsets = [e.get("onset_sec") for e in events]
    for e in events:
        ref = f"{e.get('kind', 'sound')} {(e.get('position') or {}).get('of_kind', e.get('index'))}"
        simultaneous = onsets.count(e.get("onset_sec")) > 1  # a chord's notes: a set, not separate referents
        for key, q, unit in (("onset_sec", "onset", "s"), ("duration_sec", "duration", "s"),
                             ("level_dbfs", "level", "db"), ("f0_hz", "pitch", "hz"), ("note", "note", "note"),
                             ("words_per_sec", "rate", "wps")):
            v = e.get(key)
            if v is None or (simultaneous and q in ("pitch", "note", "onset", "duration")):
                continue
            out.append(Fact(q, unit, "voice" if e.get("kind") == "speech" and q == "pitch" else ref, v))
    for k, f in enumerate((meta.get("harmonics_hz") or [])[1:], start=2):
        out.append(Fact("pitch", "hz", f"overtone {k}", f))
    if isinstance(meta.get("f0_hz"), (int, float)) and not any(f.referent == "voice" for f in out):
        out.append(Fact("pitch", "hz", "voice", meta["f0_hz"]))
    for k, p in enumerate(meta.get("pauses_s") or [], start=1):
        out.append(Fact("pause", "s", f"pause {k}", p))
    if meta.get("period_s"):
        out.append(Fact("period", "s", "beat period", meta["period_s"]))
    if meta.get("bpm"):
        out.append(Fact("tempo", "bpm", "tempo", meta["bpm"]))
    for key, ref in (("start_level_dbfs", "start of the ramp"), ("start_level_db", "start of the ramp"),
                     ("end_level_dbfs", "end of the ramp"), ("end_level_db", "end of the ramp")):
        if meta.get(key) is not None and not any(f.referent == ref for f in out):
            out.append(Fact("level", "db", ref, meta[key]))
    clip = meta.get("clip") or {}
    if clip.get("duration_sec"):
        out.append(Fact("clip", "s", "clip", clip["duration_sec"]))
    bg = clip.get("background") or {}
    if bg.get("level_dbfs") is not None:
        out.append(Fact("level", "db", "background", bg["level_dbfs"]))
    return out


@dataclass(frozen=True)
class Token:
    """A value the chain states: its text, unit, position."""
    text: str
    unit: str
    start: int
    end: int

    @property
    def value(self) -> float | str:
        return self.text if self.unit == "note" else float(self.text)


def value_tokens(text: str) -> list[Token]:
    """The values with units and the note names a chain states, outside quotes and ranges ("150–170 BPM")."""
    quotes = quoted_spans(text)
    out = []
    for m in _VALUE.finditer(text):
        if not in_spans(m.start(), quotes):
            out.append(Token(m.group(1), UNIT[m.group(2).lower()], m.start(1), m.end(1)))
    for m in _NOTE.finditer(text):
        if not in_spans(m.start(), quotes):
            out.append(Token(m.group(1), "note", m.start(1), m.end(1)))
    return sorted(out, key=lambda t: t.start)


def matching_facts(token: Token, facts: list[Fact]) -> list[Fact]:
    if token.unit == "note":
        return [f for f in facts if f.unit == "note" and f.value == token.text]
    tol = rounding_tol(token.text)
    return [f for f in facts if f.unit == token.unit and abs(float(f.value) - float(token.text)) <= tol]


def move_candidates(token: Token, facts: list[Fact]) -> list[tuple[Fact, str]]:
    """Other referents' values for `token`, rendered like it and beyond resolution of it: the same quantity
    first (the other tone's pitch, the next click's onset), else a value of the same kind (a length for a length,
    a level for a level: the clip's length for a span nothing else shares)."""
    truth = matching_facts(token, facts)
    if not truth:
        return []
    refs = {f.referent for f in truth}
    quantities = {f.quantity for f in truth}
    tiers = [lambda f: f.quantity in quantities]
    if quantities & set(SPAN):
        tiers.append(lambda f: f.quantity in SPAN)
    for tier in tiers:
        out, seen = [], set()
        for f in facts:
            if f.unit != token.unit or f.referent in refs or not tier(f):
                continue
            new = f.value if token.unit == "note" else format_like(float(f.value), token.text, token.unit)
            rendered = new if token.unit == "note" else float(new)
            if new in seen or not beyond_resolution(token.unit, rendered, token.value):
                continue
            if token.unit != "note" and any(not beyond_resolution(token.unit, rendered, t.value) for t in truth):
                continue
            seen.add(new)
            out.append((f, new))
        if out:
            return out
    return []


DERIVED = re.compile(r"semitones|divided by|per second|per minute|a (?:drop|rise) of|range of|shorter of|"
                     r"longer of|is (?:above|below)|more than|less than|fewer than")


# ---------------------------------------------------------------------------------------------- corruptions

def moved_value(item: dict, rng) -> Case | None:
    """One value replaced by the value of another referent of the same item (expect contradicted)."""
    chain, facts = item["text_cot"], item_facts(item.get("meta") or {})
    tokens, seen = [], set()
    for t in value_tokens(chain):  # a value's first mention: the one that says whose it is
        if (t.unit, t.text) not in seen:
            tokens.append(t)
        seen.add((t.unit, t.text))
    options = [(t, c) for t in tokens if (c := move_candidates(t, facts))]
    if not options:
        return None
    token, cands = rng.choice(options)
    fact, new = rng.choice(cands)
    text = splice(chain, token.start, token.end, new)
    expect = {"contradicted"}
    if DERIVED.search(chain) or chain.count(token.text) > 1:
        expect.add("incoherent")
    true_refs = sorted({f.referent for f in matching_facts(token, facts)})
    return Case("moved_value", completion(text, str(item["answer"])), frozenset(expect),
                {"unit": token.unit, "start": token.start, "original": token.text, "moved": new,
                 "referent": true_refs, "moved_from": fact.referent, "moved_fact": fact.value})


def answer_forms(choice: str) -> dict[str, str]:
    """The ways a chain may word a choice: as is, without its article, the part in brackets ("major" of
    "bright (major)"), the adjective of an adverb ("slow" for "slowly"), a number as digits or as a word."""
    c = choice.strip()
    forms = {"exact": c}
    bare = re.sub(r"^(?:a|an|the) ", "", c)
    if bare != c:
        forms["bare"] = bare
    m = re.search(r"\(([^)]+)\)", c)
    if m:
        forms["bracket"] = m.group(1)
        forms["head"] = c[:m.start()].strip()
    for k, alias in enumerate(ALIASES.get(c.lower(), ())):
        forms[f"alias{k}"] = alias
    if c.lower() in WORD_VALUE:
        forms["digits"] = str(WORD_VALUE[c.lower()])
    elif re.fullmatch(r"\d+", c) and int(c) < len(NUMBER_WORDS):
        forms["word"] = NUMBER_WORDS[int(c)]
    return forms


def find_wording(text: str, wording: str, start: int) -> list[tuple[int, int]]:
    """Whole-word occurrences of `wording` in text[start:], outside quotes."""
    quotes = quoted_spans(text)
    if re.fullmatch(r"-?\d+", wording):
        pat = re.compile(r"(?<![\w#.-])" + re.escape(wording) + r"(?!\.\d)(?![\w#])")
    else:
        pat = re.compile(r"(?<![\w-])" + re.escape(wording) + r"(?![\w-])", re.IGNORECASE)
    return [m.span() for m in pat.finditer(text, start) if not in_spans(m.start(), quotes)]


def conclusion_wording(text: str, answer: str) -> tuple[str, int, int] | None:
    """Where the last sentence words the answer: (form, start, end) of the last occurrence, the longest wording
    of it ("a German accent", not "German accent")."""
    start = last_sentence_start(text)
    hits = [(e, e - s, form, s) for form, w in answer_forms(answer).items() for s, e in find_wording(text, w, start)]
    if not hits:
        return None
    e, _, form, s = max(hits)
    return form, s, e


def with_case(new: str, old: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def flipped(item: dict, rng) -> list[Case]:
    """The chain's conclusion changed to another choice (or another number), with the true answer after
    </think> (expect incoherent) and with the flipped one (expect incorrect or incoherent)."""
    chain, answer, choices = item["text_cot"], str(item["answer"]), item.get("choices")
    if choices:
        found = conclusion_wording(chain, answer)
        if not found:
            return []
        form, s, e = found
        others = [c for c in choices if c != answer and form in answer_forms(c)
                  and answer_forms(c)[form].lower() != chain[s:e].lower()]
        if not others:
            return []
        other = rng.choice(others)
        new_word, new_answer = with_case(answer_forms(other)[form], chain[s:e]), other
    else:
        if not re.fullmatch(r"-?\d+", answer.strip()):
            return []
        hits = find_wording(chain, answer.strip(), last_sentence_start(chain))
        if not hits:
            return []
        s, e = hits[-1]
        a = int(answer)
        lowest = 1 if _COUNT.match(chain, s) else 0
        cands = [a + d for d in (-2, -1, 1, 2) if a < 0 or a + d >= lowest]
        new = rng.choice(cands)
        new_word = new_answer = str(new)
    text = splice(chain, s, e, new_word)
    detail = {"start": s, "original": chain[s:e], "flipped_to": new_word, "new_answer": new_answer}
    return [Case("flipped_conclusion", completion(text, answer), frozenset({"incoherent"}), detail),
            Case("flipped_conclusion_and_answer", completion(text, new_answer), frozenset({"incorrect", "incoherent"}),
                 detail)]


def true_sentence(item: dict, rng) -> str | None:
    """A generic true sentence about the clip: when its first sound starts, or how long it lasts."""
    meta = item.get("meta") or {}
    options = []
    events = meta.get("events") or []
    if events and events[0].get("onset_sec") is not None:
        options.append(f"The first sound starts at about {events[0]['onset_sec']:.2f} s.")
    clip = (meta.get("clip") or {}).get("duration_sec")
    if clip:
        options.append(f"The clip lasts about {clip:.1f} s.")
    return rng.choice(options) if options else None


def surrogate_plus_fact(item: dict, rng) -> Case | None:
    """The surrogate chain with one true sentence about the clip appended (expect surrogate)."""
    sentence = true_sentence(item, rng)
    if not sentence or not item.get("surrogate_cot"):
        return None
    text = f"{item['surrogate_cot'].rstrip()} {sentence}"
    return Case("surrogate_plus_fact", completion(text, str(item["surrogate_answer"])), frozenset({"surrogate"}),
                {"sentence": sentence})


def present_classes(meta: dict) -> set[str]:
    return {KIND_CLASS.get(e.get("kind"), e.get("kind")) for e in meta.get("events") or []}


def count_values(meta: dict) -> set[int]:
    out = {int(v) for v in (meta.get("counts") or {}).values()}
    for e in meta.get("events") or []:
        if e.get("words"):
            out.add(int(e["words"]))
    return out


def count_phrases(text: str, meta: dict) -> list[re.Match]:
    """"5 clicks", "4 high beeps", "2 spoken digits" outside quotes, whose number is one of the item's counts."""
    quotes = quoted_spans(text)
    counts = count_values(meta)
    return [m for m in _COUNT.finditer(text) if not in_spans(m.start(), quotes)
            and int(number_value(m.group(1))) in counts]


def singular(noun: str) -> str:
    return noun[:-1] if noun.endswith("s") else noun


def wrong_noun_count(item: dict, rng) -> Case | None:
    """A count's noun replaced by one of an event kind the clip does not hold (expect contradicted)."""
    chain, meta = item["text_cot"], item.get("meta") or {}
    present = present_classes(meta)
    options = []
    for m in count_phrases(chain, meta):
        noun = singular(m.group(3))
        for other in OTHER_NOUN.get(noun, ()):
            if KIND_CLASS[other] not in present:
                options.append((m, other))
    if not options:
        return None
    m, other = rng.choice(options)
    plural = number_value(m.group(1)) != 1
    qual = "" if m.group(2) == "spoken " else m.group(2)
    new = f"{m.group(1)} {qual}{other}{'s' if plural else ''}"
    text = splice(chain, m.start(), m.end(), new)
    return Case("wrong_noun_count", completion(text, str(item["answer"])), frozenset({"contradicted"}),
                {"start": m.start(), "original": m.group(0), "replaced_by": new})


_HOW_MANY = re.compile(r"^How many ((?:high-pitched |low-pitched )?(?:beeps|clicks|tones|notes|words|digits))\b")


def bare_count(item: dict) -> Case | None:
    """For a count question: the chain replaced by "There are {answer} {noun}." (expect ungrounded)."""
    m = _HOW_MANY.match(item.get("question") or "")
    answer = str(item["answer"]).strip()
    if not m or not re.fullmatch(r"\d+", answer):
        return None
    noun = m.group(1)
    text = f"There is 1 {singular(noun)}." if answer == "1" else f"There are {answer} {noun}."
    return Case("bare_count", completion(text, answer), frozenset({"ungrounded"}), {"noun": noun})


_SLOPE = re.compile(r"(-?\d+(?:\.\d+)?) dB per octave")


def stated_facts(text: str) -> tuple:
    """What a chain states, for telling chains apart: its values (spectral slopes too), quotes and counts."""
    values = [(t.unit, t.value) for t in value_tokens(text)] + [("slope", float(v)) for v in _SLOPE.findall(text)]
    return values, [q for q in _QUOTE.findall(text)], [m.group(0) for m in _COUNT.finditer(text)]


def states_different_facts(a: str, b: str) -> bool:
    va, qa, ca = stated_facts(a)
    vb, qb, cb = stated_facts(b)
    if qa != qb or ca != cb or len(va) != len(vb):
        return True
    return any(ua != ub or beyond_resolution(ua, x, y) for (ua, x), (ub, y) in zip(va, vb, strict=True))


def borrowed(item: dict, pool: list[dict], rng) -> Case | None:
    """Another item's reference chain (same task, the same question type where the pool has one, different
    facts) with this item's answer (expect contradicted or incoherent)."""
    others = sorted((o for o in pool if o.get("task") == item.get("task") and o.get("id") != item.get("id")
                     and states_different_facts(o["text_cot"], item["text_cot"])), key=lambda o: o["id"])
    same_type = [o for o in others if o.get("question_type") == item.get("question_type")]
    if not others:
        return None
    other = rng.choice(same_type or others)
    return Case("borrowed", completion(other["text_cot"], str(item["answer"])),
                frozenset({"contradicted", "incoherent"}), {"source_id": other["id"]})


def corruptions(item: dict, pool: list[dict], rng) -> list[Case]:
    """Every corruption that applies to the item, one each (two for the flipped conclusion)."""
    cases = [moved_value(item, rng), *flipped(item, rng), surrogate_plus_fact(item, rng),
             wrong_noun_count(item, rng), bare_count(item), borrowed(item, pool, rng)]
    return [c for c in cases if c is not None]


# ---------------------------------------------------------------------------------------------- paraphrases

def protected_spans(text: str, item: dict) -> list[tuple[int, int]]:
    """Quotes and every wording of the item's choices and answer: a paraphrase leaves them as they are."""
    spans = quoted_spans(text)
    for c in (item.get("choices") or []) + [str(item["answer"])]:
        for w in answer_forms(c).values():
            if not re.fullmatch(r"-?\d+", w):
                spans += find_wording(text, w, 0)
    return spans


def substitute(text: str, pattern: re.Pattern, repl, spans) -> tuple[str, int]:
    """re.sub that skips matches starting inside `spans` (positions of the original text)."""
    out, last, n = [], 0, 0
    for m in pattern.finditer(text):
        if in_spans(m.start(), spans):
            continue
        out.append(text[last:m.start()])
        out.append(repl(m))
        last, n = m.end(), n + 1
    out.append(text[last:])
    return "".join(out), n


SYNONYMS = (
    (re.compile(r"\bThat makes (\d+|" + "|".join(NUMBER_WORDS) + r")\b"),
     lambda m, rng: f"{rng.choice(['That gives', 'In total there ' + ('is' if m.group(1) in ('1', 'one') else 'are')])}"
                    f" {m.group(1)}"),
    (re.compile(r"\babout\b"), lambda m, rng: rng.choice(["roughly", "around", "approximately"])),
    (re.compile(r"\blasts\b"), lambda m, rng: rng.choice(["is held for", "runs for"])),
    (re.compile(r", so\b"), lambda m, rng: rng.choice([", therefore", ", which means"])),
    (re.compile(r"(?<=\. )So\b"), lambda m, rng: "Therefore"),
)


def synonyms(item: dict, rng) -> str | None:
    text, n = item["text_cot"], 0
    for pattern, repl in SYNONYMS:
        text, k = substitute(text, pattern, lambda m, r=repl: r(m, rng), protected_spans(text, item))
        n += k
    return text if n else None


def _lower_first(s: str) -> str:
    first = s.split(" ", 1)[0]
    if first == "I" or _NOTE.fullmatch(first) or not s[:1].isupper():
        return s
    return s[:1].lower() + s[1:]


_CLAUSE = r"(?:[^.;:,]|\.(?=\d))+?"  # a stretch of one clause: no sentence, clause or list break
CLAUSE_RULES = (
    # "The first tone is about 677 Hz and the second about 1030 Hz." (also "lasts", "note is F#4 (...)")
    (re.compile(r"\b([Tt])he first((?: \w+)?) (is|lasts) ((?:about|[A-G]#?\d)" + _CLAUSE
                + r") and the second ((?:about|[A-G]#?\d)" + _CLAUSE + r")(?=\.(?:\s|$)|, so )"),
     lambda m: f"{m.group(1)}he second{m.group(2)} {m.group(3)} {m.group(5)} and the first {m.group(4)}"),
    # "The first tone is about 275 Hz and lasts 0.33 s; the second is about 322 Hz and lasts 0.58 s."
    (re.compile(r"\bThe first (\w+) ([^;]+?); the second ([^;]+?)(?=\.(?:\s|$))"),
     lambda m: f"The second {m.group(1)} {m.group(3)}; the first {m.group(2)}"),
    # "That is 4 high beeps (about 713 Hz) and 5 low beeps (about 331 Hz)."
    (re.compile(r"\bThat is (\d+ (?:high|low) beeps? \([^)]*\)) and (\d+ (?:high|low) beeps? \([^)]*\))"),
     lambda m: f"That is {m.group(2)} and {m.group(1)}"),
    # "A male voice with a median pitch of about 110 Hz and an American English accent says"
    (re.compile(r"\bwith (a median pitch of about \d+ Hz) and (an? [\w ]+? accent) says"),
     lambda m: f"with {m.group(2)} and {m.group(1)} says"),
    # "So the second tone is higher and the first tone is longer."
    (re.compile(r"\bSo (the \w+ \w+ is \w+) and (the \w+ \w+ is \w+)(?=\.)"),
     lambda m: f"So {m.group(2)} and {m.group(1)}"),
)


def clause_order(item: dict) -> str | None:
    """Two clauses that state two facts swapped; else the last "X, so Y." sentence said as "Y, because X."."""
    chain = item["text_cot"]
    spans = quoted_spans(chain)
    for pattern, repl in CLAUSE_RULES:
        text, n = substitute(chain, pattern, repl, spans)
        if n:
            return text
    for s, e in reversed(sentence_spans(chain)):
        m = re.fullmatch(r"(.+?), so (.+)\.", chain[s:e])
        if not m or ", so " in m.group(2) or '"' in m.group(0) or re.match(r"(?:yes|no)\b", m.group(2)):
            continue
        facts_part, conclusion = m.group(1), m.group(2)
        return chain[:s] + f"{conclusion[:1].upper()}{conclusion[1:]}, because {_lower_first(facts_part)}." + chain[e:]
    return None


def numbers_as_words(item: dict) -> str | None:
    """Small integers of counts and positions as words: "5 clicks" -> "five clicks", "click 1" -> "click one"."""
    chain = item["text_cot"]
    spans = quoted_spans(chain)
    count = re.compile(r"(?<![\w.#-])(\d{1,2})( (?:high |low |spoken )?" + _COUNT_NOUNS + r")\b")
    position = re.compile(r"\b(click|beep|tone|note|word|digit) (\d{1,2})(?![\w.])")

    def word(s: str) -> str:
        return NUMBER_WORDS[int(s)] if int(s) < len(NUMBER_WORDS) else s

    text, n1 = substitute(chain, count, lambda m: word(m.group(1)) + m.group(2), spans)
    text, n2 = substitute(text, position, lambda m: f"{m.group(1)} {word(m.group(2))}", quoted_spans(text))
    return text if n1 + n2 and text != chain else None


def paraphrases(item: dict, rng) -> list[Case]:
    """The reference chain reworded, one rule per case; each must be kept."""
    answer = str(item["answer"])
    out = []
    for kind, text in (("synonyms", synonyms(item, rng)), ("clause_order", clause_order(item)),
                       ("numbers_as_words", numbers_as_words(item))):
        if text and text != item["text_cot"]:
            out.append(Case(kind, completion(text, answer), KEEP))
    return out


def all_cases(item: dict, pool: list[dict], rng) -> list[Case]:
    """The reference, its paraphrases, its corruptions and the surrogate chain."""
    cases = [reference_case(item), *paraphrases(item, rng), *corruptions(item, pool, rng)]
    if item.get("surrogate_cot"):
        cases.append(surrogate_case(item))
    return cases
