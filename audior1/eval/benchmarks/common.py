"""Shared by the multiple-choice benchmarks that use the MMAU token-set rule (MMAU, MMAR, synthetic)."""

from __future__ import annotations

from pathlib import Path

from audior1.eval.extract import option_index, option_text
from audior1.eval.items import (Checker, EvalItem, audio_part, check_unique_ids, mc_text, read_records, resolve_audio,
                                text_part, user)
from audior1.eval.official import script_input, token_set_match, tokens


def token_set_columns(script: str) -> dict[str, str]:
    """The two columns of a token-set benchmark and what each is (the report's headline), `script` naming the
    official script whose string_match the raw column runs."""
    return {
        "normalised": "ours: a letter or answer statement (\"B\", \"(B)\", \"The answer is B.\") read as the option "
                      "it names, wrappers stripped, then the token-set rule",
        "official-raw": f"official: string_match of {script} on the post-think answer exactly as written",
    }


def token_set_scores(item: EvalItem, answer: str | None, given_answer: str | None) -> tuple[dict, dict]:
    """The token-set rule (`official.token_set_match`, unchanged) on two readings of one output (docs/eval.md):

    - "normalised" (ours): `answer` (post_think's: wrappers such as `<RESPONSE>…</RESPONSE>` stripped), with a
      letter or an answer statement ("B", "(B)", "B. text", "The answer is B.", "Answer: B") mapped to its
      option text; no answer (None) is wrong;
    - "official-raw": what the script is given, `script_input(given_answer)`: the post-think answer exactly as
      the model wrote it, "" when the think block never closed (wrong: no token)."""
    normalised = option_text(answer, item.choices)
    _, how = option_index(answer, item.choices)
    return ({"normalised": float(token_set_match(normalised, item.answer, item.choices)),
             "official-raw": float(token_set_match(script_input(given_answer), item.answer, item.choices))},
            {"normalised_answer": normalised, "matched_by": how})


def token_set_key(item: EvalItem, answer: str | None) -> str | None:
    """The option the (normalised) answer selects under the token-set rule, else its token set."""
    if answer is None:
        return None
    normalised = option_text(answer, item.choices)
    for c in item.choices:
        if token_set_match(normalised, c, item.choices):
            return " ".join(sorted(tokens(c)))
    return " ".join(sorted(tokens(normalised or ""))) or None


def str_fields(r: dict, names: tuple[str, ...]) -> dict[str, str]:
    return {k: str(r[k]) for k in names if r.get(k) is not None}


def check_enum(chk, r: dict, n: int, name: str, allowed: tuple[str, ...]) -> None:
    if r.get(name) is not None and str(r[name]) not in allowed:
        chk.fail(n, name, f"{r[name]!r} is not one of {', '.join(allowed)}")


def load_multiple_choice(path: str | Path, *, audio_root: str | Path | None, template: str, audio_key: str,
                         fields: tuple[str, ...], enums: dict[str, tuple[str, ...]] | None = None,
                         max_choices: int = 26) -> list[EvalItem]:
    """Records of one audio, a question, a `choices` list and an `answer` among them (MMAU, MMAR): validated
    (errors name the record and field), prompted with text then audio, ids checked unique. Audio paths in
    `audio_key` are relative to `audio_root` (default: the data file's folder)."""
    path = Path(path)
    base, chk, items = Path(audio_root) if audio_root else path.parent, Checker(path), []
    for n, r in enumerate(read_records(path), 1):
        item_id = chk.text(r, n, "id")
        audio = chk.text(r, n, audio_key)
        question = chk.text(r, n, "question")
        choices = chk.choices(r, n, "choices", lo=2, hi=max_choices)
        answer = chk.text(r, n, "answer")
        chk.answer_in(n, "answer", answer, choices)
        for name, allowed in (enums or {}).items():
            check_enum(chk, r, n, name, allowed)
        messages = user(text_part(mc_text(question, choices, template)), audio_part(resolve_audio(audio, base)))
        items.append(EvalItem(item_id, messages, answer, choices, str_fields(r, fields), {"question": question}))
    check_unique_ids(items, path)
    return items
