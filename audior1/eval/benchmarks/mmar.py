"""MMAR (1000 items, 2–6 choices). Its script's string_match is MMAU's, line for line; repetition penalty 1.07
as released. Columns as MMAU: "normalised" (ours) and "official-raw" (the script's verdict on the post-think
answer exactly as written; the script reads it from `answer_prediction`).

Record: id, audio_path (relative to the JSON file), question, choices, answer, modality, category,
sub-category, language, …
"""

from __future__ import annotations

from pathlib import Path

from audior1.eval import extract, official
from audior1.eval.benchmarks.common import (load_multiple_choice, token_set_columns, token_set_key,
                                            token_set_scores)
from audior1.eval.items import MC_TEMPLATE, EvalItem

NAME = "mmar"
BREAKDOWN = ("modality", "category", "sub-category", "language")
COLUMNS = token_set_columns(official.MMAR)
SCORERS = tuple(COLUMNS)
EXTRACTORS = (extract.post_think, extract.option_text)
SAMPLING = {"repetition_penalty": 1.07}
TEMPLATE = MC_TEMPLATE
JUDGE = None


def load(path: str | Path, *, audio_root: str | Path | None = None, template: str | None = None) -> list[EvalItem]:
    return load_multiple_choice(path, audio_root=audio_root, template=template or TEMPLATE, audio_key="audio_path",
                                fields=("modality", "category", "sub-category", "language"), max_choices=6)


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None) -> tuple[dict, dict]:
    return token_set_scores(item, answer, given_answer)


answer_key = token_set_key
