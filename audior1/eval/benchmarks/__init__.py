"""One small module per benchmark. Each provides:

- `NAME`, `BREAKDOWN` (record fields reported per value), `COLUMNS` (scorer name → what it is, the line the
  report's headline prints; "official…" only for a benchmark script's own verdict, "ours: …" for our
  readings), `SCORERS` = `tuple(COLUMNS)` (first = primary), `EXTRACTORS` (the versioned rules it uses),
  `SAMPLING` (overrides of `Sampling` defaults), `TEMPLATE` (default prompt text, recorded and hashed), `JUDGE`
  (None, or the default judge prompt file name and runs);
- `load(path, *, audio_root=None, template=None) -> list[EvalItem]` (schema checked, prompts built);
- `score(item, answer, judge=None, *, given_answer) -> (scores, details)`: `scores` maps scorer name →
  1.0/0.0 (or a judge score in [0, 1]), None meaning "dropped from the denominator by the official rule", a
  missing name "does not apply to this item". `answer` is post_think's (None: no answer) and feeds our
  readings; `given_answer` is `Extraction.given`, the post-think answer exactly as the model wrote it (None:
  the think block never closed), the only text an official column reads (`official.script_input`). It is
  required, so no caller can score an official column on an already-normalised answer by leaving it out;
- `answer_key(item, answer) -> str | None`: what majority voting counts as the same answer.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("mmau", "mmar", "mmsu", "big_bench_audio", "spoken_mqa", "wild_speech", "synthetic")
ALIASES = {"bba": "big_bench_audio", "big-bench-audio": "big_bench_audio", "spoken-mqa": "spoken_mqa",
           "wildspeech": "wild_speech", "wild-speech": "wild_speech"}


def get(name: str) -> ModuleType:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in NAMES:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"audior1.eval.benchmarks.{key}")
