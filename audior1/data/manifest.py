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


EVENT_KINDS = ("tone", "beep", "click", "note", "noise", "word", "digit", "speech")
RATE_SUFFIXES = ("_per_sec", "_wpm")
UNIT_SUFFIXES = ("_sec", "_hz", "_dbfs", "_db", "_semitones", "_bpm") + RATE_SUFFIXES


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def meta_problems(meta: dict) -> list[str]:
    """What is wrong with the per-event schema of `meta` (`events`, `segments`, `clip`; docs/data.md), as
    'meta.events[2].onset_sec: ...' strings; empty when it is well-formed. Checks types, units (no key in
    these records ends in `_s`: seconds are `_sec`, rates `_per_sec`/`_wpm`), numbering, time order, and that
    every event and segment lies inside the clip."""
    out: list[str] = []
    clip, events, segments = meta.get("clip"), meta.get("events"), meta.get("segments")

    def units(d: dict, where: str) -> None:
        for k, v in d.items():
            if k.endswith("_s"):
                out.append(f"{where}.{k}: a key ending in '_s' (seconds are '_sec', rates '_per_sec' or '_wpm')")
            if any(k.endswith(u) for u in UNIT_SUFFIXES) and v is not None and not (
                    _num(v) or (isinstance(v, list) and all(_num(x) for x in v))):
                out.append(f"{where}.{k}: must be a number, got {v!r}")
            if isinstance(v, dict):
                units(v, f"{where}.{k}")

    if not isinstance(clip, dict):
        return ["meta.clip: must be an object"]
    units(clip, "meta.clip")
    dur = clip.get("duration_sec")
    if not _num(dur) or dur <= 0:
        out.append(f"meta.clip.duration_sec: must be a positive number, got {dur!r}")
        dur = float("inf")
    if not _num(clip.get("level_dbfs")):
        out.append("meta.clip.level_dbfs: missing")
    bg = clip.get("background", "missing")
    if bg is not None and not (isinstance(bg, dict) and {"colour", "snr_db", "level_dbfs"} <= set(bg)):
        out.append(f"meta.clip.background: must be null or an object with colour, snr_db, level_dbfs, got {bg!r}")
    if not isinstance(events, list) or not events:
        return out + ["meta.events: must be a non-empty list of event records"]
    seen: dict[str, int] = {}
    last = 0.0
    for i, e in enumerate(events):
        w = f"meta.events[{i}]"
        if not isinstance(e, dict):
            out.append(f"{w}: must be an object")
            continue
        units(e, w)
        kind = e.get("kind")
        if kind not in EVENT_KINDS:
            out.append(f"{w}.kind: {kind!r} is not one of {', '.join(EVENT_KINDS)}")
        if e.get("index") != i + 1:
            out.append(f"{w}.index: must be {i + 1} (1-based, in time order), got {e.get('index')!r}")
        seen[kind] = seen.get(kind, 0) + 1
        pos = e.get("position")
        if not isinstance(pos, dict) or pos.get("of_kind") != seen[kind]:
            out.append(f"{w}.position: must hold of_kind = {seen[kind]} (its place among the {kind} events)")
        on, d = e.get("onset_sec"), e.get("duration_sec")
        if not (_num(on) and _num(d)) or on < 0 or d <= 0:
            out.append(f"{w}: onset_sec >= 0 and duration_sec > 0 required, got {on!r}, {d!r}")
            continue
        if on < last:
            out.append(f"{w}.onset_sec: {on} is before the previous event's ({last}): events are in time order")
        if on + d > dur + 0.002:
            out.append(f"{w}: ends at {on + d:.3f} s, after the clip ({dur} s)")
        last = on
        if not _num(e.get("level_dbfs")):
            out.append(f"{w}.level_dbfs: missing")
        if "f0_hz" in e and not (_num(e["f0_hz"]) and e["f0_hz"] > 0):
            out.append(f"{w}.f0_hz: must be a positive number")
        if "note" in e and ("f0_hz" not in e or not isinstance(e["note"], str)):
            out.append(f"{w}.note: a note name goes with an f0_hz")
    if not isinstance(segments, list):
        return out + ["meta.segments: must be a list"]
    for i, sg in enumerate(segments):
        w = f"meta.segments[{i}]"
        if not isinstance(sg, dict) or not isinstance(sg.get("name"), str):
            out.append(f"{w}: must be an object with a name")
            continue
        units(sg, w)
        on, d = sg.get("onset_sec"), sg.get("duration_sec")
        if not (_num(on) and _num(d)) or on < 0 or d < 0 or on + d > dur + 0.002:
            out.append(f"{w}: onset_sec and duration_sec must lie inside the clip, got {on!r}, {d!r}")
        ids = sg.get("events")
        if not isinstance(ids, list) or not all(isinstance(k, int) and 1 <= k <= len(events) for k in ids):
            out.append(f"{w}.events: must list event indices (1..{len(events)}), got {ids!r}")
    return out


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
    if "clip" in item["meta"]:  # the per-event schema of generated data (docs/data.md): checked where present
        problems = meta_problems(item["meta"])
        if problems:
            fail("meta", problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
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
