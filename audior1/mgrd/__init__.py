"""MGRD, Modality-Grounded Reasoning Distillation (paper §4): the iterative loop and its curation steps.

Modules: `config` (the run's YAML), `run` (the plan of `audior1` commands, run and resumed by fingerprint),
`curate` (select questions, filter sampled chains with `data.grounding.judge_chain`, pass@k banding), `report`
(one page across iterations), `cli` (`audior1 mgrd …`, `audior1 curate …`). See docs/mgrd.md.
"""
