"""Manifest I/O: JSONL, one item per line, audio paths relative to the manifest's directory.

`read_manifest` validates every item and resolves audio paths to absolute ones; an error names the file, the
line and the field. `write_manifest` writes items in the documented key order with paths made relative, so
the same items give the same bytes (a multiple-choice item's prompt is rendered by `chat.mcq_prompt`). The
format is documented in docs/data.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

KEY_ORDER = ("id", "audio", "question", "choices", "answer", "task", "question_type", "category", "difficulty",
             "split", "meta", "caption", "text_question", "text_cot", "surrogate_cot", "surrogate_answer")
REQUIRED = ("id", "audio", "question", "choices", "answer", "task", "question_type", "category", "difficulty",
            "meta")
RENDERINGS = ("caption", "text_question", "text_cot", "surrogate_cot")
CATEGORIES = ("sound", "music", "speech")
DIFFICULTIES = ("easy", "medium", "hard")


class ManifestError(ValueError):
    """A manifest line that does not follow the format (the message names file, line and field)."""


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def validate_item(item: object, where: str, base: Path | None = None, check_files: bool = True) -> dict:
    """Check one item; return a copy with audio paths resolved against `base`. `where` prefixes errors."""
    def fail(field: str, msg: str):
        raise ManifestError(f"{where}: field '{field}': {msg}")

    if not isinstance(item, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(item).__name__}")
    for k in REQUIRED:
        if k not in item:
            fail(k, "missing")
    for k in ("id", "question", "answer", "task", "question_type"):
        if not isinstance(item[k], str) or not item[k]:
            fail(k, f"must be a non-empty string, got {item[k]!r}")
    audio = item["audio"]
    if isinstance(audio, str):
        audio = [audio]
    if not isinstance(audio, list) or not audio or not all(isinstance(a, str) and a for a in audio):
        fail("audio", f"must be a non-empty list of paths, got {item['audio']!r}")
    choices = item["choices"]
    if choices is not None:
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            fail("choices", f"must be null or a list of at least two strings, got {choices!r}")
        if len(set(choices)) != len(choices):
            fail("choices", f"options repeat: {choices!r}")
        if item["answer"] not in choices:
            fail("answer", f"{item['answer']!r} is not one of the choices {choices!r}")
    elif not _is_number(item["answer"]):
        fail("answer", f"with choices null the answer must be a number as a string, got {item['answer']!r}")
    if item["category"] not in CATEGORIES:
        fail("category", f"must be one of {', '.join(CATEGORIES)}, got {item['category']!r}")
    if item["difficulty"] not in DIFFICULTIES:
        fail("difficulty", f"must be one of {', '.join(DIFFICULTIES)}, got {item['difficulty']!r}")
    if not isinstance(item["meta"], dict):
        fail("meta", f"must be an object, got {type(item['meta']).__name__}")
    for k in RENDERINGS + ("surrogate_answer",):
        if item.get(k) is not None and not isinstance(item[k], str):
            fail(k, f"must be a string or absent, got {type(item[k]).__name__}")
    out = dict(item)
    resolved = []
    for a in audio:
        p = Path(a)
        if base is not None and not p.is_absolute():
            p = base / p
        p = Path(os.path.normpath(p))
        if check_files and not p.is_file():
            fail("audio", f"file not found: {p}")
        resolved.append(str(p))
    out["audio"] = resolved
    return out


def read_manifest(path: str | Path, check_files: bool = True) -> list[dict]:
    """Read and validate a JSONL manifest; audio paths come back absolute. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    base = path.resolve().parent
    items, seen = [], {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
            item = validate_item(raw, where, base, check_files)
            if item["id"] in seen:
                raise ManifestError(f"{where}: field 'id': {item['id']!r} already used on line {seen[item['id']]}")
            seen[item["id"]] = n
            items.append(item)
    return items


def write_manifest(path: str | Path, items: list[dict]) -> Path:
    """Write items as JSONL (documented key order first, then any others); absolute audio paths under the
    manifest's directory are made relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    lines = []
    for it in items:
        it = dict(it)
        audio = it.get("audio")
        if isinstance(audio, str):
            audio = [audio]
        rel = []
        for a in audio or []:
            p = Path(a)
            if p.is_absolute():
                try:
                    p = p.resolve().relative_to(base)
                except ValueError:
                    pass
            rel.append(p.as_posix())
        it["audio"] = rel
        ordered = {k: it[k] for k in KEY_ORDER if k in it}
        ordered.update({k: v for k, v in it.items() if k not in ordered})
        lines.append(json.dumps(ordered, ensure_ascii=False))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)
    return path
