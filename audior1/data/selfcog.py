"""The self-cognition audit (paper §6.3): open audio-perception prompts whose right behaviour is to engage with
the audio, over clips of any manifest (synthetic or real speech).

A model trained on text-heavy data learns to answer such prompts with "I cannot hear audio" or "as a text-based
model …"; `audior1 curate self-cognition` runs a model on the audit set and counts those answers with the
refusal detector (`audior1.data.refusal`). The set has no reference answers: any engagement with the sound is
right, and only the refusal rate is scored.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from audior1.data.core import DataError
from audior1.data.manifest import read_manifest

# (kind, prompt): general description, sound sources, speech and voice, music, counting and time.
PROMPTS = (
    ("describe", "Can you describe what you hear?"),
    ("describe", "What is happening in this recording?"),
    ("describe", "Listen to this clip and tell me what it sounds like."),
    ("source", "What made this sound?"),
    ("source", "What instrument or device is this?"),
    ("source", "Is this music, speech or something else?"),
    ("voice", "Is the speaker calm or excited?"),
    ("voice", "Is there a voice in this clip? What does it say?"),
    ("music", "Is the pitch high or low?"),
    ("music", "Does the sound get louder or softer?"),
    ("time", "How many separate sounds do you hear?"),
    ("time", "Is there any background noise?"),
)


# What a model trained on text-heavy data says to an audio question (the `refusal` SFT rendering reproduces the
# bias at small scale, so that its correction can be measured).
TEXT_MODEL_REFUSALS = (
    "I am a text-based model and cannot hear audio, so I can only guess.",
    "As a language model I have no way to listen to the recording; I will pick an answer without hearing it.",
    "I can't process audio files. Going by the question alone, my best guess follows.",
    "There is no audio I can access, so I cannot tell what it sounds like; I will guess.",
)


def text_model_refusal(item_id: str) -> str:
    """One of `TEXT_MODEL_REFUSALS`, the same for an item every time."""
    return TEXT_MODEL_REFUSALS[sum(map(ord, item_id)) % len(TEXT_MODEL_REFUSALS)]


def build(manifests: list[str | Path], out: str | Path, n: int = 60, seed: int = 0) -> dict:
    """Write `n` audit prompts (each a clip of the given manifests with one of `PROMPTS`) as JSONL:
    {"id", "audio", "prompt", "kind", "source_id", "source_task"}."""
    clips = [it for m in manifests for it in read_manifest(m, check_files=True)]
    if not clips:
        raise DataError(f"{', '.join(map(str, manifests))}: no clip to build an audit set from")
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        item = rng.choice(clips)
        kind, prompt = PROMPTS[k % len(PROMPTS)]
        rows.append({"id": f"selfcog-s{seed}-{k:04d}", "audio": item["audio"][:1], "prompt": prompt, "kind": kind,
                     "source_id": item["id"], "source_task": item["task"]})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {"prompts": len(rows), "clips": len({r["source_id"] for r in rows}), "kinds": sorted({k for k, _ in PROMPTS})}


def read_audit(path: str | Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON: {e.msg}") from None
        for k in ("id", "audio", "prompt"):
            if not row.get(k):
                raise DataError(f"{path}:{n}: field '{k}': missing")
        rows.append(row)
    return rows


def refusal_rate(outputs: list[dict]) -> dict:
    """outputs: {"kind", "text"} per prompt → the share whose reasoning or answer is a refusal, overall and per
    kind, with the detector's family for each refusal."""
    from audior1.data.refusal import refusal_reason

    total, per_kind, families = 0, {}, {}
    for o in outputs:
        reason = refusal_reason(o["text"])
        k = per_kind.setdefault(o.get("kind", "?"), [0, 0])
        k[0] += 1
        if reason:
            total += 1
            k[1] += 1
            families[reason] = families.get(reason, 0) + 1
    n = len(outputs)
    return {"prompts": n, "refusals": total, "rate": round(total / n, 4) if n else 0.0,
            "kinds": {kind: {"prompts": a, "refusals": b, "rate": round(b / a, 4)} for kind, (a, b) in per_kind.items()},
            "families": families}
