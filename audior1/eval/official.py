"""The benchmarks' own scoring scripts, restated rule by rule: what the `official*` columns compute.

Each function names the script, the repository, the commit read and the lines it restates; the quirks are
kept on purpose (docs/eval.md, "Official columns"). Nothing here normalises, strips or re-reads an answer:
an official column is given the post-think answer exactly as the model wrote it (`script_input`) and
applies the script's rule to it, so its number is the one the benchmark's script would print.

Design choices:
- The scripts' code is not copied; each rule is written afresh from the cited lines, and tests
  (tests/test_eval_official.py) check it style by style against verdicts derived by hand from those lines.
- A row a script skips (leaves out of its denominator) is `None`, the scorer convention for "dropped".
- Two quirks depend on the *previous* row of the script's input file (MMSU's empty response, Spoken MQA's
  `None` prediction reuse the last row's reading), so no per-row rule can reproduce them: such a row is
  kept in the denominator, as the script keeps it, and counted wrong (`STALE`).
- No text is ever passed to `eval`: where AudioBench's `delete_extra_zero` falls back on Python's `eval`,
  `_eval_division` computes exactly what `eval` gives for the strings its number pattern can produce
  ("3/4", "-1/.5"), and leaves anything else as written, as `eval` failing would.
"""

from __future__ import annotations

import re

from audior1.eval.extract import versioned

MMAU = "Sakshi113/MMAU evaluation.py@74682927 (unchanged to 110127f5)"
MMAR = "ddlBoJack/MMAR code/evaluation.py@a355584b (unchanged to 3bce090a)"
MMSU = "dingdongwang/MMSU_Bench mmsu_evaluation.py@321b2767 (unchanged to f0ef334b)"
SPOKEN_MQA = ("AudioLLMs/AudioBench src/dataset_src/spoken_mqa.py@420b28a4 + math_utils/utils.py@3c4e3861 "
              "(unchanged to e991641d)")


def script_input(given: str | None) -> str:
    """The text a benchmark's script is given for one row: the post-think answer exactly as written
    (`Extraction.given`), or "" when the think block never closed (a pipeline that writes the post-think text
    writes an empty string; no row is left out of the file)."""
    return "" if given is None else given


# ---------------------------------------------------------------------------------------------------------
# MMAU and MMAR: string_match (the same function in both scripts, lines 8-34)
# ---------------------------------------------------------------------------------------------------------


def tokens(s: str) -> set[str]:
    """tok(s): the set of lowercase \\b\\w+\\b tokens (string_match's tokenize, L10-12)."""
    return set(re.findall(r"\b\w+\b", s.lower()))


def token_set_match(prediction: str | None, answer: str, choices: list[str]) -> bool:
    """string_match: correct ⇔ A ⊆ P and P ∩ W = ∅, W = ⋃ over choices c with tok(c) ≠ A of (tok(c) − A).

    L15-19: no prediction token → wrong. L22-26: a choice tokenising exactly like the answer (a duplicate) adds
    nothing to W. L29, L32: the two conditions. The scripts read `model_output` (MMAU L55, L70) /
    `answer_prediction` (MMAR L59, L75) as stored, and count every row that has the key (MMAU L97, MMAR L102).
    None (no answer at all) is wrong here; the official column passes `script_input` instead.
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
# MMSU: mmsu_evaluation.py, calculate_accuracy_per_task_and_category (lines 28-80)
# ---------------------------------------------------------------------------------------------------------

MMSU_LETTERS = "ABCD"       # L41, L45 test these four whatever the item's option count
READ, DROPPED, STALE = "read", "dropped", "stale"


@versioned("mmsu_script", "1")
def mmsu_script_letter(response: str) -> tuple[str | None, str]:
    """What the script reads from one `response`: (letter, READ), (None, DROPPED) or (None, STALE).

    L35: strip, then remove every newline. L40: an empty result or the text "None" skips the reading, and the
    row is scored with the previous row's letter (STALE; a NameError on the first row). L41-42: the first
    character, if it is A, B, C or D (upper case only). L44-46: else, if longer than one character, the
    second-to-last ("The answer is A."). L47-52: else the row is skipped (DROPPED: not in the denominator).
    """
    predict = response.strip().replace("\n", "")
    if predict == "None" or not predict:
        return None, STALE
    if predict[0] in MMSU_LETTERS:
        return predict[0], READ
    if len(predict) > 1 and predict[-2] in MMSU_LETTERS:
        return predict[-2], READ
    return None, DROPPED


def mmsu_official(response: str, answer: str, choices: list[str]) -> float | None:
    """The script's verdict on one row: None when it skips the row, else 1.0 iff the option under the letter
    it read equals `answer_gt` exactly (L55-76; a letter past the item's options reads `''`, L56-61, so it is
    wrong). A STALE row is counted (L79-80) but its letter is the previous row's: counted wrong here."""
    letter, how = mmsu_script_letter(response)
    if how == DROPPED:
        return None
    if how == STALE:
        return 0.0
    i = MMSU_LETTERS.index(letter)
    return float(i < len(choices) and choices[i] == answer)


# ---------------------------------------------------------------------------------------------------------
# Spoken MQA: AudioBench's spoken_mqa.py compute_score + math_utils/utils.py (answer_clean for 'gsm8k')
# ---------------------------------------------------------------------------------------------------------

AUDIOBENCH_TRIGGERS = ("The answer is:", "The answer is", "the answer is", "####")   # spoken_mqa.py L6-10
_TRIGGER_SPLIT = re.compile("|".join(re.escape(t) for t in AUDIOBENCH_TRIGGERS))    # utils.py L263
_AUDIOBENCH_NUMBER = re.compile(r"-?\d+/?\.?\d*")                                   # utils.py L288
ARITHMETIC_SPLITS = ("short_digit", "long_digit")                                   # dataset.py L513-519
REASONING_SPLITS = ("single_step_reasoning", "multi_step_reasoning")               # dataset.py L521-527
_INT = r"(?:0+|[1-9][0-9]*)"                     # Python's decimal integer literal: no leading zeros
_FLOAT = r"(?:[0-9]+\.[0-9]*|\.[0-9]+)"          # its float literal, without an exponent
_OPERAND = rf"[ \t]*([+-]?)[ \t]*({_FLOAT}|{_INT})[ \t]*"
_DIVISION = re.compile(rf"[ \t\n]*{_OPERAND}/{_OPERAND}[ \t\n]*")


def _eval_division(s: str) -> float | None:
    """What `eval(s)` gives for a division of two number literals, the only expression AudioBench's number
    pattern produces that `float` refuses ("3/4", "-1/.5"); None where `eval` raises (a SyntaxError such as
    "08/2" or "3/", a ZeroDivisionError) and for anything else (never evaluated here: left as written)."""
    m = _DIVISION.fullmatch(s)
    if not m:
        return None

    def literal(sign: str, digits: str) -> float | int:
        value = float(digits) if "." in digits else int(digits)
        return -value if sign == "-" else value

    try:                               # too many digits, a quotient past float range: eval raises too
        return literal(m.group(1), m.group(2)) / literal(m.group(3), m.group(4))
    except (ValueError, OverflowError, ZeroDivisionError):
        return None


def delete_extra_zero(s: str) -> str:
    """utils.py L11-26: `float(s)` (else `eval(s)`, else `s` unchanged); a float is printed by `str`, its
    trailing zeros dropped, and then an integer if only "." is left, else `str(float(...))` again (so 5.0 → "5",
    0.50 → "0.5", and the quirk 1e20 → "1e+2" → "100.0" is kept)."""
    try:
        value = float(s)
    except ValueError:
        value = _eval_division(s)
        if value is None:
            return s
    text = str(value).rstrip("0")
    return str(int(text.rstrip("."))) if text.endswith(".") else str(float(text))


@versioned("audiobench_answer_clean", "1")
def audiobench_answer(text: str) -> str:
    """answer_clean('gsm8k', triggers, text), utils.py L251-322.

    L252: strip newlines at both ends. L255-260: if any trigger occurs more than once, keep only the text
    before the first blank line. L263-269: split on the triggers (case-sensitive); if there was one, keep the
    last piece (and later take its first number), else the whole text (and later its last number). L270:
    strip newlines, then trailing "." and "/", then spaces. L286-288: drop commas; every match of
    `-?\\d+/?\\.?\\d*` through delete_extra_zero. L309-317: none → "", else the first (a trigger) or the last.
    L320: trailing "." and "/" removed again.
    """
    pred = text.strip("\n")
    if any(pred.count(t) > 1 for t in AUDIOBENCH_TRIGGERS):
        pred = pred.split("\n\n")[0]
    pieces = _TRIGGER_SPLIT.split(pred)
    after_trigger = len(pieces) > 1
    if after_trigger:
        pred = pieces[-1]
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").replace(",", "")
    found = [delete_extra_zero(s) for s in _AUDIOBENCH_NUMBER.findall(pred)]
    if not found:
        return ""
    return (found[0] if after_trigger else found[-1]).rstrip(".").rstrip("/")


def audiobench_reference(raw: str, split: str) -> str | None:
    """The reference as compute_score holds it: the arithmetic splits use the answer text as it is
    (spoken_mqa.py L76); the reasoning splits keep the part after "#### " without commas, through
    delete_extra_zero, then delete_extra_zero again (L169-174). None for a split the script does not know."""
    if split in ARITHMETIC_SPLITS:
        reference = raw
    elif split in REASONING_SPLITS:
        reference = raw
        if "####" in reference:
            reference = delete_extra_zero(reference.split("#### ")[-1].replace(",", ""))
        reference = delete_extra_zero(reference)
    else:
        return None
    return reference or "empty"                          # L79, L177


def audiobench_match(response: str, reference: str) -> bool:
    """compute_score's verdict on one row (spoken_mqa.py L72-90 / L165-188, utils.py L331-353): the cleaned
    answer ("empty" when nothing was found), cut to 100 characters, equals the reference ignoring case; a
    reference "(a)"…"(f)" only has to occur in it; "\\text{" is removed from both. The `None` prediction that
    reuses the previous row's reading (L70-71) cannot occur: `script_input` is always text."""
    prediction = audiobench_answer(response) or "empty"
    prediction = prediction[:100]
    if "\\text{" in prediction:
        prediction = prediction.replace("\\text{", "").rstrip("}")
    if "\\text{" in reference:
        reference = reference.replace("\\text{", "").rstrip("}")
    if reference.lower() in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        return reference.lower() in prediction.lower()
    return prediction.lower() == reference.lower()
