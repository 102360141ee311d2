"""MMSU (5000 items, 47 sub-tasks). Two columns:

- "strict" (ours, the headline): the answer read as the option it names (`extract.bare_letter`: "cough",
  "Answer: C", "(C)" are C), then the script's first / second-to-last character test; unreadable = wrong;
- "official": the script (`official.mmsu_official`) on the post-think answer exactly as written, with its
  quirks: "Answer: C" is A (its first character), "cough" and "(C)" are skipped and leave the denominator
  (counted in `excluded`), an empty answer is counted wrong (the script would reuse the previous row's letter).

Record: id, audio (relative to the data file), question, choice_a … choice_d, answer_gt (option text),
task_name, category, sub-category, …
"""

from __future__ import annotations

from pathlib import Path

from audior1.eval import extract, official
from audior1.eval.benchmarks.common import str_fields
from audior1.eval.items import (MC_TEMPLATE, Checker, EvalItem, audio_part, check_unique_ids, mc_text, read_records,
                                resolve_audio, text_part, user)
from audior1.eval.scoring import mmsu_letter, mmsu_strict

NAME = "mmsu"
BREAKDOWN = ("category", "sub-category", "task_name")
COLUMNS = {
    "strict": "ours: the answer read as the option it names (\"cough\", \"Answer: C\", \"(C)\" are C), then the "
              "first / second-to-last character test; unreadable = wrong",
    "official": f"official: {official.MMSU} on the post-think answer exactly as written; rows it skips are "
                "excluded",
}
SCORERS = tuple(COLUMNS)
EXTRACTORS = (extract.post_think, extract.bare_letter, official.mmsu_script_letter)
SAMPLING: dict = {}
TEMPLATE = MC_TEMPLATE
JUDGE = None
CHOICE_FIELDS = ("choice_a", "choice_b", "choice_c", "choice_d")


def load(path: str | Path, *, audio_root: str | Path | None = None, template: str | None = None) -> list[EvalItem]:
    path = Path(path)
    base, chk, items = Path(audio_root) if audio_root else path.parent, Checker(path), []
    for n, r in enumerate(read_records(path), 1):
        item_id = chk.text(r, n, "id")
        audio = chk.text(r, n, "audio")
        question = chk.text(r, n, "question")
        choices = [chk.text(r, n, f, allow_empty=True) for f in CHOICE_FIELDS[:2]]
        for f in CHOICE_FIELDS[2:]:                       # a few sub-tasks have fewer than four options
            if r.get(f) is not None:
                choices.append(chk.text(r, n, f, allow_empty=True))
        answer = chk.text(r, n, "answer_gt")
        if answer not in choices:                          # the official rule compares exactly
            chk.fail(n, "answer_gt", f"{answer!r} is not one of choice_a…choice_d {choices}")
        messages = user(text_part(mc_text(question, choices, template or TEMPLATE)),
                        audio_part(resolve_audio(audio, base)))
        items.append(EvalItem(item_id, messages, answer, choices,
                              str_fields(r, ("category", "sub-category", "task_name")), {"question": question}))
    check_unique_ids(items, path)
    return items


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None) -> tuple[dict, dict]:
    letter_answer = extract.bare_letter(answer, item.choices)
    letter, parsed = mmsu_letter(letter_answer, len(item.choices)) if answer is not None else (None, False)
    response = official.script_input(given_answer)                      # what the script reads, untouched
    script_letter, read = official.mmsu_script_letter(response)
    return ({"strict": mmsu_strict(letter_answer, item.answer, item.choices),
             "official": official.mmsu_official(response, item.answer, item.choices)},
            {"letter": letter, "letter_parsed": parsed, "official_letter": script_letter, "official_read": read})


def answer_key(item: EvalItem, answer: str | None) -> str | None:
    if answer is None:
        return None
    letter, parsed = mmsu_letter(extract.bare_letter(answer, item.choices), len(item.choices))
    return letter if parsed and letter else None
