"""Our own manifests (docs/data.md, `audior1.data.manifest`): procedurally generated audio questions.

Record (JSONL, validated by `read_manifest`): id, audio (list of paths relative to the manifest), question,
choices (list or null), answer (option text, or a number string when choices is null), task, question_type,
category, difficulty, meta. The prompt is the question (with the multiple-choice instruction and options when
there are choices) followed by the audio clips in order. Scorers: "exact" (the answer names exactly the right
option, or the right number), plus for choices the MMAU token-set rule ("normalised", "official-raw": MMAU's
script's verdict on the answer as written; our manifests have no script of their own).
"""

from __future__ import annotations

from pathlib import Path

from audior1.data.manifest import ManifestError, read_manifest
from audior1.eval import extract, official
from audior1.eval.benchmarks.common import str_fields, token_set_columns, token_set_key, token_set_scores
from audior1.eval.items import (MC_TEMPLATE, EvalItem, SchemaError, audio_part, mc_text, text_part, user)

NAME = "synthetic"
# Question types are named within a task (`count_mc` is one of three tasks'), so they are broken down as
# (task, question type) pairs: "count_events:count_mc".
BREAKDOWN = ("task", "task:question_type", "category", "difficulty")
COLUMNS = {"exact": "ours: the answer names exactly the right option (by its text or letter) or the right number",
           **token_set_columns(official.MMAU + ", our manifests having no script of their own")}
SCORERS = tuple(COLUMNS)
EXTRACTORS = (extract.post_think, extract.option_text, extract.number)
SAMPLING: dict = {}
TEMPLATE = MC_TEMPLATE
JUDGE = None


def load(path: str | Path, *, audio_root: str | Path | None = None, template: str | None = None) -> list[EvalItem]:
    path = Path(path)
    try:                                   # the data module owns the format; missing audio is listed by the harness
        records = read_manifest(path, check_files=False)
    except ManifestError as e:
        raise SchemaError(str(e)) from None
    base = path.resolve().parent
    items = []
    for r in records:
        audio = r["audio"]
        if audio_root:                     # read_manifest resolved against the manifest's folder: re-root
            audio = [str(Path(audio_root) / Path(a).relative_to(base)) if Path(a).is_relative_to(base) else a
                     for a in audio]
        choices = r["choices"]
        text = mc_text(r["question"], choices, template or TEMPLATE) if choices else r["question"]
        messages = user(text_part(text), *[audio_part(a) for a in audio])
        items.append(EvalItem(r["id"], messages, r["answer"], choices,
                              str_fields(r, ("task", "question_type", "category", "difficulty")),
                              {"question": r["question"], "meta": r["meta"]}))
    return items


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None) -> tuple[dict, dict]:
    if item.choices:
        scores, details = token_set_scores(item, answer, given_answer)
        i, _ = extract.option_index(answer, item.choices)
        return {"exact": float(i is not None and item.choices[i] == item.answer), **scores}, details
    predicted = extract.number(answer)
    return ({"exact": float(predicted is not None and predicted == extract.normalise_number(item.answer))},
            {"predicted_number": predicted})


def is_correct(completion: str, answer: str, choices: list[str] | None = None) -> bool:
    """A raw completion (reasoning, `</think>`, answer) against its reference by the "exact" rule: the one
    correctness rule of training rewards, the MGRD filter and evaluation."""
    post = extract.post_think(completion, think=True)
    if post.answer is None:
        return False
    scores, _ = score(EvalItem("", [], answer, choices or None), post.answer, given_answer=post.given)
    return scores["exact"] == 1.0


def answer_key(item: EvalItem, answer: str | None) -> str | None:
    if answer is None:
        return None
    return token_set_key(item, answer) if item.choices else extract.number(answer)
