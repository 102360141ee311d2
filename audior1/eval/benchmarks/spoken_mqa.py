"""Spoken MQA (splits short_digit, long_digit, single_step_reasoning, multi_step_reasoning). Rule-based.

Record: id (else the record number), audio (relative to the data file), answer (reasoning splits:
GSM8K-style text ending "#### N"), split (else taken from the file name when it names a split), question
(optional, unused). Prompt: "Solve the given math question step by step." then the audio.
Scorers: "number" (AudioBench's gsm8k-style cleaner, without its quirks) and "number+spelled" (our
extension: spelled numbers such as "forty-two" are also read).
"""

from __future__ import annotations

from pathlib import Path

from audior1.eval import extract
from audior1.eval.items import (Checker, EvalItem, audio_part, check_unique_ids, read_records, resolve_audio,
                                text_part, user)
from audior1.eval.scoring import number_match

NAME = "spoken_mqa"
BREAKDOWN = ("split",)
SCORERS = ("number", "number+spelled")
EXTRACTORS = (extract.post_think, extract.number, extract.number_spelled, extract.reference_number)
SAMPLING: dict = {}
TEMPLATE = "Solve the given math question step by step."
JUDGE = None
SPLITS = ("short_digit", "long_digit", "single_step_reasoning", "multi_step_reasoning")


def load(path: str | Path, *, audio_root: str | Path | None = None, template: str | None = None) -> list[EvalItem]:
    path = Path(path)
    base, chk, items = Path(audio_root) if audio_root else path.parent, Checker(path), []
    file_split = next((s for s in SPLITS if s in path.stem), None)
    for n, r in enumerate(read_records(path), 1):
        item_id = chk.text(r, n, "id", optional=True) or str(n)
        audio = chk.first(r, n, ("audio", "audio_path"))
        answer = chk.text(r, n, "answer")
        reference = extract.reference_number(answer)
        if reference is None:
            chk.fail(n, "answer", f"no number in {answer[-80:]!r}")
        split = chk.text(r, n, "split", optional=True) or file_split or "unknown"
        messages = user(text_part(template or TEMPLATE), audio_part(resolve_audio(audio, base)))
        items.append(EvalItem(item_id, messages, reference, None, {"split": split},
                              {"question": r.get("question"), "reference_raw": answer}))
    check_unique_ids(items, path)
    return items


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None = None) -> tuple[dict, dict]:
    plain, spelled = extract.number(answer), extract.number_spelled(answer)
    return ({"number": float(number_match(plain, item.answer)),
             "number+spelled": float(number_match(spelled, item.answer))},
            {"predicted_number": plain, "predicted_number_spelled": spelled})


def answer_key(item: EvalItem, answer: str | None) -> str | None:
    return extract.number(answer)
