"""MMAU (test-mini, 1000 items). Scored by the official script's token-set rule (`official.token_set_match`) on
two readings: "normalised" (ours: letters and answer statements read as option text first) and "official-raw"
(the post-think answer exactly as written: the script's own verdict).

Record: id, audio_id ("./test-mini-audios/<id>.wav", relative to the JSON file), question, choices,
answer (one of choices), dataset, task (sound|music|speech), split, category, sub-category,
difficulty (easy|medium|hard). Revision v05.15.25 changed ~25% of items: pass `--revision`.
"""

from __future__ import annotations

from pathlib import Path

from audior1.eval import extract, official
from audior1.eval.benchmarks.common import (load_multiple_choice, token_set_columns, token_set_key,
                                            token_set_scores)
from audior1.eval.items import MC_TEMPLATE, EvalItem

NAME = "mmau"
BREAKDOWN = ("task", "difficulty", "sub-category")
COLUMNS = token_set_columns(official.MMAU)
SCORERS = tuple(COLUMNS)
EXTRACTORS = (extract.post_think, extract.option_text)
SAMPLING: dict = {}
TEMPLATE = MC_TEMPLATE
JUDGE = None


def load(path: str | Path, *, audio_root: str | Path | None = None, template: str | None = None) -> list[EvalItem]:
    return load_multiple_choice(path, audio_root=audio_root, template=template or TEMPLATE, audio_key="audio_id",
                                fields=("task", "difficulty", "sub-category", "category", "dataset", "split"),
                                enums={"task": ("sound", "music", "speech"), "difficulty": ("easy", "medium", "hard")})


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None) -> tuple[dict, dict]:
    return token_set_scores(item, answer, given_answer)


answer_key = token_set_key
