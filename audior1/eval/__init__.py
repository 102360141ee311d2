"""Evaluation: the benchmarks Step-Audio-R1 reports, run the way docs/eval.md pins them.

Modules (data flows down this list):
- `extract`   named, versioned answer-extraction rules (post-`</think>` answer, letters ↔ options, numbers)
- `scoring`   the matching rules (MMAU/MMAR token sets, MMSU letters, numbers, judge verdicts and scores)
- `items`     `EvalItem`, record reading and schema checks, the multiple-choice prompt
- `benchmarks/` one small module per benchmark: loader, prompt builder, scorers
- `backends`  where completions come from (OpenAI-compatible endpoint; a hook for the local engine)
- `judge`     LLM judges over any OpenAI-compatible endpoint, with prompt files and a disk cache (also the
              refusal judge, for what `audior1.data.refusal`'s patterns miss)
- `harness`   resumable runs and think-budget sweeps
- `report`    summaries, markdown, plots, comparison
- `cli`       `audior1 eval …`
Importing this package imports nothing heavy.
"""
