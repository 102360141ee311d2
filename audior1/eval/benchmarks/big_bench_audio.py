"""Big Bench Audio (1000 spoken questions, 4 BBH categories × 250). Scored by an LLM judge.

Record: {category, official_answer, file_name, id}; file_name is relative to the data file. No question text
ships with the data; an optional `question` (or `transcript`) field is passed to the judge when present.
The judge sees only the post-think answer; it must reply exactly CORRECT or INCORRECT; 3 runs are averaged;
an unparseable model output is INCORRECT without asking the judge.
No official column: Big Bench Audio publishes an evaluator prompt (huggingface/blog big-bench-audio-release.md),
no script, and its judge model and reply parsing are not part of what is published, so "judge" is our reading
(docs/eval.md); `--judge-prompt` runs the published prompt instead of ours.
"""

from __future__ import annotations

import re
from pathlib import Path

from audior1.eval import extract
from audior1.eval.benchmarks.common import check_enum
from audior1.eval.items import (Checker, EvalItem, audio_part, check_unique_ids, read_records, resolve_audio,
                                text_part, user)
from audior1.eval.scoring import parse_verdict

NAME = "big_bench_audio"
BREAKDOWN = ("category",)
COLUMNS = {"judge": "ours: an LLM judge with our prompt on the post-think answer (wrappers stripped), mean of 3 "
                    "runs; the benchmark publishes a prompt, no script"}
SCORERS = tuple(COLUMNS)
EXTRACTORS = (extract.post_think,)
SAMPLING: dict = {}
# Step-Audio-R1's released instruction (audio first, then this text): answer only with "valid"/"invalid",
# "yes"/"no", or a number, with no other description.
TEMPLATE = '仅用 "valid" 或 "invalid"，"yes" 或 "no"，或者数字来直接回答上面的问题，不要添加任何其他描述。'
JUDGE = {"prompt": "big_bench_audio_judge.txt", "runs": 3}
CATEGORIES = ("formal_fallacies", "navigate", "object_counting", "web_of_lies")
NO_QUESTION = "(not available: the question was only spoken)"


def load(path: str | Path, *, audio_root: str | Path | None = None, template: str | None = None) -> list[EvalItem]:
    path = Path(path)
    base, chk, items = Path(audio_root) if audio_root else path.parent, Checker(path), []
    for n, r in enumerate(read_records(path), 1):
        item_id = chk.text(r, n, "id")
        category = chk.text(r, n, "category")
        check_enum(chk, r, n, "category", CATEGORIES)
        answer = chk.text(r, n, "official_answer")
        audio = chk.text(r, n, "file_name")
        question = r.get("question") or r.get("transcript") or NO_QUESTION
        messages = user(audio_part(resolve_audio(audio, base)), text_part(template or TEMPLATE))
        items.append(EvalItem(item_id, messages, answer, None, {"category": category}, {"question": question}))
    check_unique_ids(items, path)
    return items


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None) -> tuple[dict, dict]:
    """`given_answer` is unused: there is no official column."""
    if answer is None or not answer.strip():
        return {"judge": 0.0}, {"verdicts": [], "judge_skipped": "no answer"}
    if judge is None:
        raise ValueError("big_bench_audio needs a judge (--judge-endpoint URL --judge-model NAME)")
    replies = judge.ask_runs(question=item.meta["question"], official_answer=item.answer, candidate_answer=answer)
    verdicts = [parse_verdict(r) for r in replies]
    return ({"judge": sum(v is True for v in verdicts) / len(verdicts)},
            {"verdicts": ["CORRECT" if v else "INCORRECT" if v is False else "INVALID" for v in verdicts],
             "judge_invalid": sum(v is None for v in verdicts),
             "judge_replies": [r[:200] for r in replies]})


def answer_key(item: EvalItem, answer: str | None) -> str | None:
    if answer is None:
        return None
    return " ".join(re.findall(r"\w+", answer.lower())) or None
