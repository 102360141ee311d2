"""Our own matching rules (the forgiving readings, the judges' reply parsing), written as docs/eval.md states them.

The benchmarks' official rules live in `official.py`; the readings here apply or extend them after our own
answer extraction and are reported under their own names (`normalised`, `strict`, `number`, `judge`).

Conventions shared by every scorer (the harness relies on them):
- A scorer returns 1.0 / 0.0 (or a judge score scaled to [0, 1]), or None when the official rule *drops*
  the row from the denominator (MMSU "official"). No answer (None) is always 0.0, never dropped.
- Scorers take the already-extracted post-think answer; extraction lives in `extract.py`.
"""

from __future__ import annotations

import re

from audior1.eval.extract import letters, normalise_number
from audior1.eval.official import token_set_match, tokens  # noqa: F401 - `normalised` applies the official rule

# ---------------------------------------------------------------------------------------------------------
# MMSU "strict": our reading of the script's letter test
# ---------------------------------------------------------------------------------------------------------


def mmsu_letter(prediction: str | None, n_choices: int = 4) -> tuple[str | None, bool]:
    """(letter, parsed) by the script's character test, limited to the item's options: strip, remove newlines;
    the first character if it is an option letter, else the second-to-last ("The answer is A."), else
    unparsed. Empty → ("", True): a parsed, wrong answer (the script would reuse the previous row's letter)."""
    valid = letters(n_choices)
    s = (prediction or "").strip().replace("\n", "")
    if not s:
        return "", True
    if s[0] in valid:
        return s[0], True
    if len(s) >= 2 and s[-2] in valid:
        return s[-2], True
    return None, False


def mmsu_strict(prediction: str | None, answer: str, choices: list[str]) -> float:
    """`strict`: the letter `mmsu_letter` reads names the right option; no answer, an empty or an unparsed
    one is wrong (never dropped). The caller has already turned the answer into a bare letter where it names
    an option (`extract.bare_letter`)."""
    if prediction is None:
        return 0.0
    letter, parsed = mmsu_letter(prediction, len(choices))
    if not parsed or not letter:
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
