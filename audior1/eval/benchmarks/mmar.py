"""MMAR (1000 items, 2–6 choices). Same token-set rule as MMAU; repetition penalty 1.07 as released.

Record: id, audio_path (relative to the JSON file), question, choices, answer, modality, category,
sub-category, language, … The official script reads the prediction from `answer_prediction`; we score our
own extracted answer with the same rule.
"""

from __future__ import annotations

from pathlib import Path

from audior1.eval import extract
from audior1.eval.benchmarks.common import load_multiple_choice, token_set_key, token_set_scores
from audior1.eval.items import MC_TEMPLATE, EvalItem

NAME = "mmar"
BREAKDOWN = ("modality", "category", "sub-category", "language")
SCORERS = ("normalised", "official-raw")
EXTRACTORS = (extract.post_think, extract.option_text)
SAMPLING = {"repetition_penalty": 1.07}
TEMPLATE = MC_TEMPLATE
JUDGE = None


def load(path: str | Path, *, audio_root: str | Path | None = None, template: str | None = None) -> list[EvalItem]:
    return load_multiple_choice(path, audio_root=audio_root, template=template or TEMPLATE, audio_key="audio_path",
                                fields=("modality", "category", "sub-category", "language"), max_choices=6)


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None = None) -> tuple[dict, dict]:
    return token_set_scores(item, answer, given_answer)


answer_key = token_set_key
