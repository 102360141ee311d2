"""What every benchmark module produces: `EvalItem`s, plus the record reading and checking they share.

Design choices:
- A message is OpenAI-style (`{"role", "content": [parts]}`) except that audio stays a local file until a
  backend sends it: `{"type": "audio", "audio": "/abs/path.wav"}` (the shape StepFun's own client uses).
  The endpoint backend turns it into one base64 `input_audio` part per ≤ 25 s chunk; a local engine can read
  the path directly. Nothing is decoded at load time.
- Loading is all-or-nothing and happens before any model call: the first malformed record stops the load
  with its number and field (`SchemaError`); then every missing audio file is listed at once
  (`MissingAudioError`).
- The prompt hash covers the rendered text and audio file names, so the same question asked differently
  gets a different hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audior1.chat import MCQ_TEMPLATE as MC_TEMPLATE  # noqa: F401 - re-exported for the benchmarks
from audior1.chat import mcq_prompt as mc_text  # noqa: F401
from audior1.eval.extract import letters


class SchemaError(ValueError):
    """A record does not have the shape its benchmark needs (names the record number and the field)."""


class MissingAudioError(FileNotFoundError):
    def __init__(self, missing: list[str]):
        self.missing = missing
        shown = "\n  ".join(missing[:20]) + (f"\n  … and {len(missing) - 20} more" if len(missing) > 20 else "")
        super().__init__(f"{len(missing)} audio file(s) missing:\n  {shown}")


@dataclass
class EvalItem:
    id: str
    messages: list[dict]                     # user turn(s); the backend adds the assistant prefill
    answer: str | None                       # reference: option text, number string, official answer
    choices: list[str] | None = None         # in the presented order (letters follow this order)
    fields: dict[str, str] = field(default_factory=dict)   # breakdown keys: task, category, difficulty, …
    meta: dict[str, Any] = field(default_factory=dict)     # what scorers/judges need (question text, checklist)

    def audio_paths(self) -> list[str]:
        return [p["audio"] for m in self.messages if isinstance(m.get("content"), list)
                for p in m["content"] if p.get("type") == "audio"]

    def prompt_text(self) -> str:
        return "".join(p["text"] for m in self.messages if isinstance(m.get("content"), list)
                       for p in m["content"] if p.get("type") == "text")

    def prompt_hash(self) -> str:
        canon = [[m["role"], [p.get("text") if p.get("type") == "text" else Path(p.get("audio", "")).name
                              for p in m["content"]] if isinstance(m.get("content"), list) else m["content"]]
                 for m in self.messages]
        return sha256_text(json.dumps(canon, ensure_ascii=False))[:16]


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def audio_part(path: str | Path) -> dict:
    return {"type": "audio", "audio": str(path)}


def user(*parts: dict) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def sha256_text(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------

# Step-Audio-R1's released multiple-choice prompt (MMAU, MMSU, MMAR: text, then audio) is chat's `MCQ_TEMPLATE`,
# rendered by `chat.mcq_prompt` (imported here as `MC_TEMPLATE` / `mc_text`).


# ---------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------


def read_records(path: str | Path) -> list[dict]:
    """A JSON list, or JSON Lines (blank lines skipped). Record numbers in errors are 1-based positions."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"{path}: not valid JSON ({e})") from None
    else:
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SchemaError(f"{path}: record {len(records) + 1} (line {lineno}): not valid JSON ({e})") \
                        from None
    for n, r in enumerate(records, 1):
        if not isinstance(r, dict):
            raise SchemaError(f"{path}: record {n}: expected an object, got {type(r).__name__}")
    return records


class Checker:
    """Field checks that fail with `<file>: record N: field 'x': problem`."""

    def __init__(self, path: str | Path):
        self.path = path

    def fail(self, n: int, name: str, problem: str):
        raise SchemaError(f"{self.path}: record {n}: field {name!r}: {problem}")

    def text(self, r: dict, n: int, name: str, *, optional: bool = False, allow_empty: bool = False) -> str | None:
        if name not in r or r[name] is None:
            if optional:
                return None
            self.fail(n, name, "missing")
        v = r[name]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            self.fail(n, name, f"expected a string, got {type(v).__name__}")
        if not allow_empty and not v.strip():
            self.fail(n, name, "empty")
        return v

    def first(self, r: dict, n: int, names: tuple[str, ...]) -> str:
        """The first of several accepted field names (published files disagree on spelling)."""
        for name in names:
            if r.get(name) is not None:
                return self.text(r, n, name)
        self.fail(n, names[0], "missing" + (f" (also accepted: {', '.join(names[1:])})" if len(names) > 1 else ""))

    def choices(self, r: dict, n: int, name: str, lo: int = 2, hi: int = 26) -> list[str]:
        v = r.get(name)
        if v is None:
            self.fail(n, name, "missing")
        if not isinstance(v, list) or not all(isinstance(c, str) for c in v):
            self.fail(n, name, "expected a list of strings")
        if not lo <= len(v) <= hi:
            self.fail(n, name, f"expected {lo}–{hi} choices, got {len(v)}")
        return v

    def answer_in(self, n: int, name: str, answer: str, choices: list[str]) -> None:
        """The answer must be one of the choices (whitespace-insensitive: some choices carry stray spaces)."""
        if answer.strip() not in [c.strip() for c in choices]:
            self.fail(n, name, f"{answer!r} is not one of the choices {choices}")


def resolve_audio(ref: str, base: Path) -> Path:
    p = Path(ref)
    return p if p.is_absolute() else (base / p)


def check_audio(items: list[EvalItem]) -> None:
    """Raise MissingAudioError listing every missing file (before any model call)."""
    missing, seen = [], set()
    for item in items:
        for p in item.audio_paths():
            if p not in seen:
                seen.add(p)
                if not Path(p).is_file():
                    missing.append(p)
    if missing:
        raise MissingAudioError(missing)


def check_unique_ids(items: list[EvalItem], path: str | Path) -> None:
    seen = {}
    for n, item in enumerate(items, 1):
        if item.id in seen:
            raise SchemaError(f"{path}: record {n}: field 'id': duplicate of record {seen[item.id]} ({item.id!r})")
        seen[item.id] = n
