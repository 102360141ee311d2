"""Apply known mutants one at a time to a temporary copy of the repository and check the tests catch each.

Each mutant is a deliberate bug of a kind that once passed the whole suite (a resume that restarts, forking that
does not fork, checkpointing that is off, a flipped KL, a dropped penalty, a stream that arrives all at once, a
budget that is not enforced, ...). For each: copy the tracked files, replace one exact snippet (it must occur
exactly once, so a refactor that moves the code fails loudly here instead of testing nothing), run the named
tests, and require them to FAIL. The unmutated copy runs the same tests first and must pass.

    .venv/bin/python scripts/mutation_check.py            # all mutants (a few minutes on 2 cores)
    .venv/bin/python scripts/mutation_check.py kl_k3      # the named ones

Exit status 0 when every mutant is caught; the table printed says which tests caught what.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant("resume_restarts", "audior1/train/state.py",
           "    return max(done, key=lambda p: int(p.name.split(\"-\")[1])) if done else None",
           "    return None",
           ("tests/test_train_sft.py::test_resume_after_kill_9_gives_the_same_losses",
            "tests/test_train_rl.py::test_rl_resume_continues_identically",
            "tests/test_train_distributed.py::test_ppo_with_kl_resumed_under_two_processes_matches_one")),
    Mutant("fork_is_a_prefill_per_sample", "audior1/engine.py",
           "        input_ids, attention_mask = self._left_padded([r.encoded.input_ids for r in requests])\n",
           "        requests = [r for r in requests for _ in range(r.params.n)]  # MUTANT: one prefill row per sample\n"
           "        for r in requests:\n"
           "            r.samples.clear()\n"
           "        input_ids, attention_mask = self._left_padded([r.encoded.input_ids for r in requests])\n",
           ("tests/test_engine.py::test_n_samples_share_one_prefill",)),
    Mutant("checkpointing_off", "audior1/model.py",
           "        self.model.gradient_checkpointing = enabled\n        self.encoder.gradient_checkpointing = enabled",
           "        pass",
           ("tests/test_model.py::test_activation_checkpointing_recomputes_in_backward",)),
    Mutant("kl_k3_flipped", "audior1/train/losses.py",
           "    r = ref_logp - logp\n", "    r = logp - ref_logp\n",
           ("tests/test_train_losses.py::test_kl_and_value_loss",)),
    Mutant("no_contradiction_penalty", "audior1/data/grounding.py",
           "    return g / (g + 2 * k + u / 4 + 1)", "    return g / (g + u / 4 + 1)",
           ("tests/test_data_grounding.py::test_grounding_scores_are_exact",)),
    Mutant("conclusion_not_checked", "audior1/data/grounding.py",
           "        problems += _conclusion_problems(reading, item, answer)\n", "        pass\n",
           ("tests/test_data_grounding.py::test_the_conclusion_must_name_the_given_answer",)),
    Mutant("restated_answer_is_evidence", "audior1/data/grounding.py",
           "c.measurement and not _restates_answer(c, item)", "c.measurement",
           ("tests/test_data_grounding.py::test_a_count_restating_the_answer_is_not_evidence",)),
    Mutant("stream_only_at_the_end", "audior1/engine.py",
           "        callback = s.request.on_piece\n        if callback is None:\n            return\n",
           "        callback = s.request.on_piece\n        if callback is None or not final:\n            return\n",
           ("tests/test_think_markers.py::test_server_streams_reasoning_then_content_and_never_the_marker",)),
    Mutant("eval_budget_ignored", "audior1/eval/backends.py",
           "max_think_tokens=None if no_think else sampling.think_budget)",
           "max_think_tokens=None)",
           ("tests/test_eval_local.py::test_local_backend_yields_every_sample_and_honours_budgets",)),
    Mutant("mmsu_official_reads_the_normalised_letter", "audior1/eval/benchmarks/mmsu.py",
           '"official": official.mmsu_official(response, item.answer, item.choices)',
           '"official": official.mmsu_official(letter_answer or "", item.answer, item.choices)',
           ("tests/test_eval_official.py::test_mmsu_official_is_the_script_verdict",)),
    Mutant("official_raw_reads_the_stripped_answer", "audior1/eval/benchmarks/common.py",
           "token_set_match(script_input(given_answer), item.answer, item.choices)",
           "token_set_match(answer, item.answer, item.choices)",
           ("tests/test_eval_official.py::test_token_set_official_raw_is_the_script_verdict",)),
    Mutant("answer_after_the_last_close", "audior1/chat.py",
           "    at = text.find(THINK_END)\n", "    at = text.rfind(THINK_END)\n",
           ("tests/test_chat.py", "tests/test_eval_extract.py")),
    Mutant("loss_gradient_scaled", "audior1/model.py",
           "        return per_token.sum() / (targets != IGNORE_INDEX).sum().clamp(min=1)",
           "        return per_token.sum() / (targets != IGNORE_INDEX).sum().clamp(min=1) * (1 + per_token.sum() * 0)"
           " + (per_token.sum() - per_token.sum().detach()) * 0.5",
           ("tests/test_model.py::test_loss_reductions_agree_with_cross_entropy",)),
    Mutant("rollout_server_never_updated", "audior1/train/rollout.py",
           '        only = None if everything or self.cfg.sync == "reload" else _changing(model)\n',
           '        only = None if everything or self.cfg.sync == "reload" else (lambda name: False)\n',
           ("tests/test_rl_decoupled.py::test_decoupled_ppo_matches_colocated_in_one_process",)),
    Mutant("server_logprobs_ignored", "audior1/train/rl.py",
           '    server = getattr(c, "logprobs", None)\n',
           '    server = None\n',
           ("tests/test_rl_decoupled.py::test_reload_sync_with_lag",)),
)


def copy_repo(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as they are in the working tree."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[bool, float]:
    env = {**os.environ, "PYTHONPATH": str(copy)}  # the copy's audior1, not the installed checkout's
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=copy,
                          env=env, capture_output=True, text=True)
    return proc.returncode == 0, time.perf_counter() - t0


def apply(copy: Path, m: Mutant) -> None:
    path = copy / m.file
    text = path.read_text(encoding="utf-8")
    if text.count(m.old) != 1:
        raise SystemExit(f"mutant {m.name}: the snippet occurs {text.count(m.old)} times in {m.file} (expected once); "
                         "update the mutant to the current code")
    path.write_text(text.replace(m.old, m.new), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"mutants to run (default all): {', '.join(m.name for m in MUTANTS)}")
    args = p.parse_args(argv)
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        p.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    failures = []
    for m in chosen:
        with tempfile.TemporaryDirectory(prefix=f"mutant-{m.name}-") as tmp:
            copy = Path(tmp)
            copy_repo(copy)
            passed, t_base = run_tests(copy, m.tests)
            if not passed:
                failures.append(m.name)
                print(f"{m.name:32s} BASELINE FAILS: {' '.join(m.tests)} must pass before mutation", flush=True)
                continue
            apply(copy, m)
            survived, t_mut = run_tests(copy, m.tests)
            verdict = "SURVIVED" if survived else "caught"
            if survived:
                failures.append(m.name)
            print(f"{m.name:32s} {verdict:8s} by {' '.join(t.split('::')[-1] for t in m.tests)} "
                  f"({t_base:.0f} s clean, {t_mut:.0f} s mutated)", flush=True)
    print(f"{len(chosen) - len(failures)}/{len(chosen)} mutants caught" + (f"; not: {', '.join(failures)}"
                                                                          if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
