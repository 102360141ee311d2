"""One small module per benchmark. Each provides:

- `NAME`, `BREAKDOWN` (record fields reported per value), `SCORERS` (first = primary), `EXTRACTORS`
  (the versioned `extract` rules it uses), `SAMPLING` (overrides of `Sampling` defaults), `TEMPLATE`
  (default prompt text, recorded and hashed), `JUDGE` (None, or the default judge prompt file name and runs);
- `load(path, *, audio_root=None, template=None) -> list[EvalItem]` (schema checked, prompts built);
- `score(item, answer, judge=None, *, given_answer=None) -> (scores, details)`: `scores` maps scorer name →
  1.0/0.0 (or a judge score in [0, 1]), None meaning "dropped from the denominator by the official rule".
  `answer` is post_think's (None: no answer); `given_answer` is the same text as the model wrote it, before
  wrappers were stripped, for scorers that apply an official rule to the raw output (MMAU/MMAR/synthetic
  "official-raw"); None → `answer` is used. The other benchmarks normalise first and ignore it;
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
