"""Answer extraction: named, versioned rules that turn a raw model output into the answer that is scored.

Design choices (docs/eval.md, "Answer extraction"; the answer rule: docs/design.md §3.5):
- Every rule is a plain function carrying `NAME` and `VERSION` attributes; the harness records
  `{NAME: VERSION}` of every rule it used in each result file. Change a rule's behaviour → bump its VERSION.
- `post_think` applies audior1's one rule for where the answer starts (`chat.split_reasoning`: after the
  FIRST `</think>`, the rule the engine and server use, so a served answer and its score never disagree),
  then removes trailing stop tokens and answer wrappers. No `</think>` in think mode means no answer
  (`answer=None`, `parseable=False`): scored wrong, counted. `think=False` (the prompt already closed the
  think block) makes the whole output the answer. The benchmark protocols say "after the last `</think>`";
  the two rules differ only on outputs with several `</think>`, which are flagged `multiple_think_close` and
  counted in every report (docs/eval.md).
- Option rules never guess: a lowercase "a" is an English article, never option A, and "A dog barking" stays
  text unless a delimiter ("A.", "A)", "A:") or a phrase ("the answer is A") marks A as a letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from audior1.chat import THINK_START, split_reasoning

_TRAILING_SPECIAL = re.compile(r"(?:\s*(?:<\|EOT\|>|<\|endoftext\|>|<\|im_end\|>))+\s*$")
_WRAPPERS = ("RESPONSE", "answer")
_MARKDOWN = re.compile(r"^[\s*_`]+|[\s*_`]+$")


def versioned(name: str, version: str):
    def mark(fn):
        fn.NAME, fn.VERSION = name, version
        return fn
    return mark


def versions(*fns) -> dict[str, str]:
    """`{NAME: VERSION}` for the rules a benchmark used (what result files record)."""
    return {fn.NAME: fn.VERSION for fn in fns}


@dataclass
class Extraction:
    answer: str | None          # None: no answer could be extracted (unparseable)
    reasoning: str              # text before the first </think> (empty in no-think mode)
    parseable: bool
    n_think_close: int          # how many </think> the output held (>1 is logged)
    flags: list[str] = field(default_factory=list)
    given: str | None = None    # the answer as the model wrote it (wrappers kept): what official scripts read


def _strip_wrappers(text: str) -> str:
    text = _TRAILING_SPECIAL.sub("", text).strip()
    if text.startswith(THINK_START):
        text = text[len(THINK_START):].strip()
    for tag in _WRAPPERS:
        inner = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S | re.I)
        if inner:                                      # "<answer>B</answer>", possibly with text around it
            text = inner[-1].strip()
            continue
        text = re.sub(rf"^<{tag}>", "", text, flags=re.I).strip()   # unclosed or dangling wrappers
        text = re.sub(rf"</{tag}>$", "", text, flags=re.I).strip()
    return text


@versioned("post_think", "2")
def post_think(text: str | None, think: bool = True) -> Extraction:
    """The answer after the first `</think>` (`chat.split_reasoning`), trailing stop tokens and wrappers removed.

    think=True: no `</think>` → answer None (truncated or never closed). think=False: the prompt closed the
    think block, so the whole output is the answer (a `</think>` in it is flagged, and stays text).
    """
    split = split_reasoning(_TRAILING_SPECIAL.sub("", text or ""), in_reasoning=think)
    flags = ["multiple_think_close"] if split.closings > 1 else []
    if not think and split.closings:
        flags.append("think_in_no_think_mode")
    if not split.closed:
        return Extraction(None, split.reasoning, False, split.closings, flags + ["no_think_close"])
    return Extraction(_strip_wrappers(split.answer), split.reasoning, True, split.closings, flags, split.answer)


# ---------------------------------------------------------------------------------------------------------
# Multiple choice: letter answers → option text (MMAU, MMAR, synthetic) and option text → letter (MMSU)
# ---------------------------------------------------------------------------------------------------------

def letters(n: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]


def _norm(s: str) -> str:
    """Case, whitespace and edge punctuation do not distinguish two option texts."""
    return " ".join(re.sub(r"^[\W_]+|[\W_]+$", "", s.strip().casefold()).split())


_BARE = re.compile(r"^\(?([A-Z])\)?[.:]?$")                          # B  B.  (B)  B:
_PREFIXED = re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.:)])\s*(.+)$", re.S)  # B. text   (B) text   B) text
_PHRASE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|would be|:|=)?\s*(?:option\s+|choice\s+)?[:\s]*"
    r"\(?\**([A-Z])\**\)?(?=($|[.,:;)!*\n]|\s+\w))", re.I)
_WORD_FOLLOWS = re.compile(r"[ \t]+\w")   # the lookahead above found a word on the same line, not a delimiter


def _option_starting(text: str, choices: list[str]) -> int | None:
    """The option whose normalised text `text` starts with, as whole words (the longest when several do)."""
    best, best_len = None, 0
    for i, c in enumerate(choices):
        option = _norm(c)
        if (option and len(option) > best_len and text.startswith(option)
                and (len(text) == len(option) or not text[len(option)].isalnum())):
            best, best_len = i, len(option)
    return best


def option_index(answer: str | None, choices: list[str]) -> tuple[int | None, str]:
    """Which presented option an answer names, and how it was recognised.

    Order: whole-text match of an option (first of duplicates) → bare letter → letter with a delimiter →
    an answer statement "The answer is B.", "Answer: (B)", "Option B" (the first one; the letter itself must be
    upper case) → None ("text"). In a statement the letter ends at punctuation, a line break or the end ("The
    answer is A." is option A, as MMSU's official rule reads it too); a letter followed by words on the same
    line is read as an option's text when those words are one ("The answer is A dog barking": the longest
    such option), else as the letter, except "A" and "I", which are English words there.
    """
    if not answer or not choices:
        return None, "empty" if not answer else "text"
    s = _MARKDOWN.sub("", answer.strip())
    valid = letters(len(choices))
    norm = _norm(s)
    for i, c in enumerate(choices):
        if norm and norm == _norm(c):
            return i, "option_text"
    m = _BARE.match(s)
    if m and m.group(1) in valid:
        return valid.index(m.group(1)), "bare_letter"
    m = _PREFIXED.match(s)
    if m:
        letter = m.group(1) or m.group(2)
        if letter in valid:
            return valid.index(letter), "letter_prefixed"
    for m in _PHRASE.finditer(s):
        letter = m.group(1)
        if not (letter.isupper() and letter in valid):     # "the answer is a dog" is not option A
            continue
        if _WORD_FOLLOWS.fullmatch(m.group(2)):             # "answer is A dog barking": a word follows
            named = _option_starting(_norm(s[m.start(1):]), choices)
            if named is not None:
                return named, "answer_phrase_text"
            if letter in ("A", "I"):                        # an article or a pronoun, not a letter
                continue
        return valid.index(letter), "answer_phrase"
    return None, "text"


@versioned("option_text", "2")
def option_text(answer: str | None, choices: list[str]) -> str | None:
    """Map a letter answer ("B", "B.", "(B)", "B. text", "The answer is B.", "Answer: B") to the option's text;
    keep anything else unchanged so the official matching rule judges it. (v2: "The answer is A." / "(A)." /
    "I." are read as the letter, v1 took A and I before punctuation for words; option text after the letter
    must match whole words, the longest option winning, where v1 took the first option that was a prefix.)"""
    i, how = option_index(answer, choices)
    if i is None or how == "option_text":
        return answer
    return choices[i]


@versioned("bare_letter", "2")
def bare_letter(answer: str | None, choices: list[str]) -> str | None:
    """MMSU: turn an answer that names an option (by letter or by its exact text) into the bare letter;
    anything else is returned unchanged for the official first/second-to-last character rule."""
    i, _ = option_index(answer, choices)
    if i is None:
        return answer
    return letters(len(choices))[i]


# ---------------------------------------------------------------------------------------------------------
# Numbers (Spoken MQA): AudioBench's gsm8k-style cleaner, without its quirks
# ---------------------------------------------------------------------------------------------------------

TRIGGERS = ("the answer is", "####")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d[\d,]*(?:\.\d+)?)?")


def normalise_number(s: str | None) -> str | None:
    """'1,234.' → '1234', '5.0' → '5', '3/4' → '0.75', '-0.50' → '-0.5'; None if not a number."""
    if s is None:
        return None
    s = s.replace(",", "").replace("$", "").strip().rstrip("./").strip()
    try:
        if "/" in s:
            num, den = (float(x) for x in s.split("/"))
            value = num / den
        else:
            value = float(s)
    except (ValueError, ZeroDivisionError):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if value == int(value):
        return str(int(value))
    return f"{value:.10f}".rstrip("0").rstrip(".")


_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10 ** 6, "billion": 10 ** 9}
_WORD_RUN = re.compile(r"\b(?:(?:minus|negative)\s+)?(?:(?:%s)(?:[\s-]+(?:and[\s-]+)?)?)+" % "|".join(
    sorted(list(_UNITS) + list(_TENS) + list(_SCALES), key=len, reverse=True)), re.I)


def _words_to_int(phrase: str) -> int | None:
    words = [w for w in re.split(r"[\s-]+", phrase.lower().strip()) if w and w != "and"]
    sign = -1 if words and words[0] in ("minus", "negative") else 1
    words = words[1:] if sign < 0 else words
    if not words or all(w in _SCALES for w in words):
        return None
    total, current = 0, 0
    for w in words:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * _SCALES[w]
            current = 0
    return sign * (total + current)


def _numbers(text: str, spelled: bool) -> list[str]:
    """Numbers in order of appearance; with `spelled`, runs of number words count too (our extension)."""
    found = [(m.start(), m.group()) for m in _NUMBER.finditer(text)]
    if spelled:
        for m in _WORD_RUN.finditer(text):
            value = _words_to_int(m.group())
            if value is not None:
                found.append((m.start(), str(value)))
        found.sort()
    return [s for _, s in found]


def _number_from(text: str | None, spelled: bool) -> str | None:
    if not text:
        return None
    low = text.lower()
    cut = max((low.rfind(t) + len(t) if low.rfind(t) >= 0 else -1) for t in TRIGGERS)
    if cut >= 0:                                        # a trigger: the first number after the last one
        nums = _numbers(text[cut:], spelled)
        return normalise_number(nums[0]) if nums else None
    nums = _numbers(text, spelled)                      # no trigger: the last number in the text
    return normalise_number(nums[-1]) if nums else None


@versioned("number", "1")
def number(text: str | None) -> str | None:
    """Split on the last trigger ("The answer is", "####"): the first number after it, else the last number
    in the text; commas and trailing "./" dropped; normalised. None if there is no number."""
    return _number_from(text, spelled=False)


@versioned("number_spelled", "1")
def number_spelled(text: str | None) -> str | None:
    """`number`, also reading spelled numbers ("forty-two", "three hundred and five"). Our extension: the
    official cleaner reads digits only."""
    return _number_from(text, spelled=True)


@versioned("reference_number", "1")
def reference_number(answer: str) -> str | None:
    """The reference of a Spoken MQA item: the part after "#### " when present (reasoning splits)."""
    if "####" in answer:
        answer = answer.rsplit("####", 1)[1]
    value = normalise_number(answer.strip())
    if value is None:                                   # "72 dollars": the first number in it
        nums = _numbers(answer, spelled=False)
        value = normalise_number(nums[0]) if nums else None
    return value
