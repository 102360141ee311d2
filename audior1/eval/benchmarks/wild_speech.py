"""Wild Speech (WildSpeech-Bench, 1100 spoken queries, 5 categories). Scored 1–10 by an LLM judge.

Record (the published fields): audio (relative to the data file), user_query (or query), taskType (or
category), checklist (string or list), conversation_hash, modification_type; `id` if present, else
conversation_hash[:modification_type]. The prompt is the audio alone.
The judge sees the query text, a general checklist plus the query's own checklist, and our post-think answer;
its last `Score: N` line is the score. Reported as mean × 10 (the paper's scale). ADAPTATION: the official
path judges the Whisper transcript of the model's *speech* output; a text-output model is judged on its
post-think text. No answer (unparseable) scores 1 without a judge call; an unreadable judge reply is
excluded from the mean and counted.
No official column: the official judge (Tencent/WildSpeech-Bench tools/api_judge.py) scores a transcript of
speech output with its own prompt and gpt-4o-mini, which a text-output model cannot reproduce; "judge" is our
reading (docs/eval.md).
"""

from __future__ import annotations

from pathlib import Path

from audior1.eval import extract
from audior1.eval.items import Checker, EvalItem, audio_part, check_unique_ids, read_records, resolve_audio, user
from audior1.eval.scoring import parse_score

NAME = "wild_speech"
BREAKDOWN = ("category",)
COLUMNS = {"judge": "ours: an LLM judge's 1-10 score ×10 with our prompt on the post-think answer; the official "
                    "judge scores a transcript of speech output"}
SCORERS = tuple(COLUMNS)
METRIC = "mean score ×10"                               # judge scores 1–10 stored as score/10
EXTRACTORS = (extract.post_think,)
SAMPLING: dict = {}
TEMPLATE = ""                                            # audio only
JUDGE = {"prompt": "wild_speech_judge.txt", "runs": 1}
GENERAL_CHECKLIST = """\
- Following the user's instructions is essential: a reply that does not fully follow them has a serious flaw.
- Correctness is essential: factual errors are serious flaws.
- Long repetitive passages are a serious flaw.
"""


def load(path: str | Path, *, audio_root: str | Path | None = None, template: str | None = None) -> list[EvalItem]:
    path = Path(path)
    base, chk, items = Path(audio_root) if audio_root else path.parent, Checker(path), []
    for n, r in enumerate(read_records(path), 1):
        audio = chk.first(r, n, ("audio", "audio_path"))
        query = chk.first(r, n, ("user_query", "query"))
        category = chk.first(r, n, ("taskType", "category"))
        checklist = r.get("checklist")
        if isinstance(checklist, list) and all(isinstance(c, str) for c in checklist):
            checklist = "\n".join(f"- {c}" for c in checklist)
        elif checklist is not None and not isinstance(checklist, str):
            chk.fail(n, "checklist", "expected a string or a list of strings")
        item_id = chk.text(r, n, "id", optional=True)
        if item_id is None:
            item_id = chk.text(r, n, "conversation_hash", optional=True)
            if item_id is None:
                chk.fail(n, "id", "missing (and no conversation_hash to use instead)")
            if r.get("modification_type"):
                item_id += f":{r['modification_type']}"
        parts = [audio_part(resolve_audio(audio, base))]
        if template:
            parts.append({"type": "text", "text": template})
        items.append(EvalItem(item_id, user(*parts), None, None, {"category": category},
                              {"query": query, "checklist": checklist or ""}))
    check_unique_ids(items, path)
    return items


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None) -> tuple[dict, dict]:
    """`given_answer` is unused: there is no official column."""
    if answer is None or not answer.strip():
        return {"judge": 0.1}, {"judge_scores": [1.0], "judge_skipped": "no answer"}
    if judge is None:
        raise ValueError("wild_speech needs a judge (--judge-endpoint URL --judge-model NAME)")
    replies = judge.ask_runs(query=item.meta["query"], response=answer,
                             checklist=GENERAL_CHECKLIST + item.meta["checklist"])
    scores = [parse_score(r) for r in replies]
    valid = [s for s in scores if s is not None]
    return ({"judge": sum(valid) / len(valid) / 10 if valid else None},
            {"judge_scores": scores, "judge_invalid": len(scores) - len(valid),
             "judge_replies": [r[-200:] for r in replies]})


def answer_key(item: EvalItem, answer: str | None) -> str | None:
    return None                                          # open-ended: no majority vote
