"""Matching rules, written exactly as docs/eval.md (Protocols) states them; one function per rule, no hidden state.

Conventions shared by every scorer (the harness relies on them):
- A scorer returns 1.0 / 0.0 (or a judge score scaled to [0, 1]), or None when the official rule *drops*
  the row from the denominator (MMSU "official"). No answer (None) is always 0.0, never dropped.
- Scorers take the already-extracted post-think answer; extraction lives in `extract.py`.
"""

from __future__ import annotations

import re

from audior1.eval.extract import letters, normalise_number

# ---------------------------------------------------------------------------------------------------------
# MMAU / MMAR: the official token-set rule
# ---------------------------------------------------------------------------------------------------------


def tokens(s: str) -> set[str]:
    """tok(s): the set of lowercase \\b\\w+\\b tokens."""
    return set(re.findall(r"\b\w+\b", s.lower()))


def token_set_match(prediction: str | None, answer: str, choices: list[str]) -> bool:
    """correct ⇔ A ⊆ P and P ∩ W = ∅, where W = ⋃ over choices c with tok(c) ≠ A of (tok(c) − A).

    An empty prediction is wrong. Duplicate choices and stray whitespace need no special case: a duplicate of
    the answer has tok(c) = A and is skipped, whitespace never makes a token.
    """
    if prediction is None:
        return False
    p, a = tokens(prediction), tokens(answer)
    if not p:
        return False
    wrong = set()
    for c in choices:
        tc = tokens(c)
        if tc != a:
            wrong |= tc - a
    return a <= p and not (p & wrong)


# ---------------------------------------------------------------------------------------------------------
# MMSU: first character, else second-to-last character
# ---------------------------------------------------------------------------------------------------------


def mmsu_letter(prediction: str | None, n_choices: int = 4) -> tuple[str | None, bool]:
    """The official letter rule: (letter, parsed). Strip, remove newlines; first character in A–D, else the
    second-to-last (for "The answer is A."), else unparsed. Empty → ("", True): a parsed, wrong answer."""
    valid = letters(n_choices)
    s = (prediction or "").strip().replace("\n", "")
    if not s:
        return "", True
    if s[0] in valid:
        return s[0], True
    if len(s) >= 2 and s[-2] in valid:
        return s[-2], True
    return None, False


def mmsu_match(prediction: str | None, answer: str, choices: list[str], *, strict: bool) -> float | None:
    """official (strict=False): unparsed rows return None (dropped from the denominator, as the official
    script does). strict: unparsed rows are wrong. No answer at all (None) is wrong in both."""
    if prediction is None:
        return 0.0
    letter, parsed = mmsu_letter(prediction, len(choices))
    if not parsed:
        return 0.0 if strict else None
    if not letter:
        return 0.0
    return float(choices[letters(len(choices)).index(letter)] == answer)


# ---------------------------------------------------------------------------------------------------------
# Spoken MQA: exact match of normalised numbers
# ---------------------------------------------------------------------------------------------------------


def number_match(predicted: str | None, reference: str | None) -> bool:
    """Both sides already extracted and normalised (`extract.number`, `extract.reference_number`)."""
    if predicted is None or reference is None:
        return False
    return normalise_number(predicted) == normalise_number(reference)


# ---------------------------------------------------------------------------------------------------------
# Judges: verdict and score parsing
# ---------------------------------------------------------------------------------------------------------

_VERDICT_EDGES = re.compile(r"^[\s*_`\"'.:\[\]]+|[\s*_`\"'.:\[\]!]+$")


def parse_verdict(reply: str | None) -> bool | None:
    """CORRECT → True, INCORRECT → False, anything else → None (an invalid verdict, counted as wrong).

    The whole reply, without surrounding markup/punctuation and case, must equal the verdict: a substring
    test would read "INCORRECT" as containing "CORRECT".
    """
    v = _VERDICT_EDGES.sub("", (reply or "").strip()).upper()
    if v == "CORRECT":
        return True
    if v == "INCORRECT":
        return False
    return None


_SCORE_LINE = re.compile(r"^\W*score\W*:\W*\[?\s*(\d+(?:\.\d+)?)\s*\]?\W*$", re.I)


def parse_score(reply: str | None, lo: int = 1, hi: int = 10) -> float | None:
    """The judge's score from its last `Score: N` line (also `Score: [N]`, `**Score:** N`); None when
    there is no such line or N is outside [lo, hi]."""
    for line in reversed((reply or "").strip().splitlines()):
        m = _SCORE_LINE.match(line.strip())
        if m:
            value = float(m.group(1))
            return value if lo <= value <= hi else None
    return None
