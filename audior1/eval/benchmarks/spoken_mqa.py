"""Spoken MQA (splits short_digit, long_digit, single_step_reasoning, multi_step_reasoning). Rule-based.

Record: id (else the record number), audio (relative to the data file), answer (reasoning splits:
GSM8K-style text ending "#### N"), split (else taken from the file name when it names a split), question
(optional, unused). Prompt: "Solve the given math question step by step." then the audio.
Scorers: "number" (ours, the headline: a number reading modelled on AudioBench's cleaner, without its quirks),
"number+spelled" (ours: spelled numbers such as "forty-two" are also read) and "official" (AudioBench's
compute_score, the protocol the Spoken-MQA release points to, on the post-think answer exactly as written:
`official.audiobench_match`; items whose split is none of the four have no official verdict).
"""

from __future__ import annotations

from pathlib import Path

from audior1.eval import extract, official
from audior1.eval.items import (Checker, EvalItem, audio_part, check_unique_ids, read_records, resolve_audio,
                                text_part, user)
from audior1.eval.scoring import number_match

NAME = "spoken_mqa"
BREAKDOWN = ("split",)
COLUMNS = {
    "number": "ours: the first number after the last \"the answer is\" / \"####\" (any case), else the last "
              "number; 5.0 = 5, 3/4 = 0.75 on both sides",
    "number+spelled": "ours: `number`, also reading spelled numbers (\"forty-two\")",
    "official": f"official: compute_score of {official.SPOKEN_MQA} on the post-think answer exactly as written",
}
SCORERS = tuple(COLUMNS)
EXTRACTORS = (extract.post_think, extract.number, extract.number_spelled, extract.reference_number,
              official.audiobench_answer)
SAMPLING: dict = {}
TEMPLATE = "Solve the given math question step by step."
JUDGE = None
SPLITS = official.ARITHMETIC_SPLITS + official.REASONING_SPLITS


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


def score(item: EvalItem, answer: str | None, judge=None, *, given_answer: str | None) -> tuple[dict, dict]:
    plain, spelled = extract.number(answer), extract.number_spelled(answer)
    scores = {"number": float(number_match(plain, item.answer)),
              "number+spelled": float(number_match(spelled, item.answer))}
    response = official.script_input(given_answer)                      # what the script reads, untouched
    reference = official.audiobench_reference(item.meta["reference_raw"], item.fields["split"])
    if reference is not None:                          # a split the script knows: absent → not applicable
        scores["official"] = float(official.audiobench_match(response, reference))
    return scores, {"predicted_number": plain, "predicted_number_spelled": spelled,
                    "official_prediction": official.audiobench_answer(response) or "empty",
                    "official_reference": reference}


def answer_key(item: EvalItem, answer: str | None) -> str | None:
    return extract.number(answer)
