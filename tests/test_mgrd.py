"""`audior1 mgrd run` / `report` and `audior1 curate`: the loop end to end on a tiny model (T = 2), resume by
fingerprint, a changed config named, an interrupted stage continued, filter counts and pass@k banding."""

import json
import re
from pathlib import Path

import pytest
import yaml

from audior1.chat import THINK_END
from audior1.cli import main
from audior1.config import ConfigError
from audior1.data import synth
from audior1.data.manifest import read_manifest, write_manifest
from audior1.mgrd.config import MGRDConfig
from audior1.mgrd.run import Planner
from audior1.train.config import load_config
from test_eval_e2e import serve  # noqa: F401  (the scripted OpenAI-compatible server fixture)

TINY = {
    "init_preset": "tiny",
    "data": {"tasks": ["pitch_compare", "duration_compare"], "n_per_task": 6, "seed": 0},
    "cold_start": {"max_steps": 3, "batch_size": 4, "micro_batch_size": 4, "max_seq_len": 256, "eval_every": 0,
                   "save_every": 3},
    "text_rl": {"max_steps": 1, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 16,
                "eval_every": 0, "save_every": 1, "minibatches": 1, "epochs": 1},
    "iterations": 2,
    "select": {"limit": 4},
    "sample": {"k": 2, "max_tokens": 24},
    "distill": {"max_steps": 2, "batch_size": 4, "micro_batch_size": 4, "max_seq_len": 256, "eval_every": 0,
                "save_every": 2},
    "passk": {"k": 4, "band": [0, 4], "limit": 4},
    "dpo": {"max_steps": 1, "batch_size": 2, "micro_batch_size": 2, "max_seq_len": 256, "save_every": 1},
    "rl": {"max_steps": 1, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 16, "eval_every": 0,
           "save_every": 1, "minibatches": 1, "epochs": 1},
    "eval": {"limit": 4, "max_tokens": 24, "sampled_k": 2, "self_cognition": 4},
}


def write_config(tmp_path, **changes) -> str:
    cfg = {**TINY, "out_dir": str(tmp_path / "run"), **changes}
    path = tmp_path / "mgrd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def records(run) -> dict[str, dict]:
    return {d.name: json.loads((d / "stage.json").read_text()) for d in sorted((run / "stages").iterdir())}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mgrd")
    config = write_config(tmp)
    assert main(["mgrd", "run", "--config", config]) == 0
    return tmp, config


def test_the_loop_runs_end_to_end_with_two_iterations(finished_run, capsys):
    tmp, _ = finished_run
    run = tmp / "run"
    recs = records(run)
    names = [n.split("-", 1)[1] for n in recs]
    evals = ["think", "no-think", "sampled", "grounding", "selfcog"]
    assert names == ["data", "eval-items", "selfcog-audit", "init", "cold_start", "text_rl",
                     *[f"eval0-{e}" for e in evals],
                     *[s for t in (1, 2) for s in (f"iter{t}-select", f"iter{t}-sample", f"iter{t}-filter",
                                                   f"iter{t}-distill", f"iter{t}-distill-selfcog",
                                                   f"iter{t}-dpo-pairs", f"iter{t}-dpo", f"iter{t}-dpo-selfcog",
                                                   f"iter{t}-passk", f"iter{t}-rl", *[f"eval{t}-{e}" for e in evals])]]
    for name, r in recs.items():
        assert r["finished"] and r["command"].startswith("audior1 ") and len(r["fingerprint"]) == 16, name
    assert len({r["fingerprint"] for r in recs.values()}) == len(recs)
    sample = next(r for n, r in recs.items() if n.endswith("iter1-sample"))
    assert "--n 2" in sample["command"] and sample["inputs"]  # the selected manifest's hash
    filt = next(r for n, r in recs.items() if n.endswith("iter1-filter"))["counts"]
    assert filt["samples"] == 8 and set(filt["reasons"]) >= {"incorrect", "ungrounded", "surrogate"}
    assert 0 <= filt["grounding_score"] <= 1
    # a tiny untrained model keeps no chain: distillation is skipped and says so, the model passes through
    distill = next(r for n, r in recs.items() if n.endswith("iter1-distill"))
    if filt["kept"] == 0:
        assert "holds no item" in distill["skipped"]
        assert (run / "stages" / next(n for n in recs if n.endswith("iter1-distill")) / "checkpoints").exists()
    passk = next(r for n, r in recs.items() if n.endswith("iter1-passk"))["counts"]
    assert passk["k"] == 4 and sum(passk["histogram"].values()) == passk["items"] == 4
    greedy = [r for n, r in recs.items() if re.search(r"-eval\d-(no-)?think$", n)]
    assert len(greedy) == 6 and all(r["counts"]["n"] == 4 for r in greedy)
    assert "--no-think" in greedy[1]["command"] and "--think" in greedy[0]["command"]
    sampled = [r for n, r in recs.items() if n.endswith("-sampled")]
    assert len(sampled) == 3 and all(r["counts"]["k"] == 2 and "majority@2" in r["counts"] for r in sampled)
    selfcog = [r for n, r in recs.items() if n.endswith("-selfcog")]
    assert len(selfcog) == 7 and all(r["counts"]["prompts"] == 4 for r in selfcog)
    pairs = next(r for n, r in recs.items() if n.endswith("iter1-dpo-pairs"))
    assert "--synthetic-refusal" in pairs["command"]

    assert main(["mgrd", "report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "| cold start |" in report and "| iteration 2 |" in report and "## Filter" in report
    assert "## pass@k curation" in report and (run / "accuracy.png").is_file()
    assert "self-cognition errors" in report and "majority@k" in report and "## RL (rollouts" in report


def test_resume_skips_finished_stages_and_names_what_changed(finished_run, capsys):
    tmp, config = finished_run
    assert main(["mgrd", "run", "--config", config]) == 2
    assert "pass --resume" in capsys.readouterr().err
    before = records(tmp / "run")
    assert main(["mgrd", "run", "--config", config, "--resume"]) == 0
    out = capsys.readouterr().out
    assert out.count(": skipped]") == len(before) and "$ audior1" not in out
    assert records(tmp / "run") == before
    assert main(["mgrd", "run", "--config", config, "--resume", "distill.max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "iter1-distill no longer matches" in err and "max_steps" in err


def test_an_interrupted_stage_continues_to_the_same_artefacts(finished_run, capsys):
    """A stage cut short (no `finished`, half its samples written) reruns with its command's own resume and ends
    with the samples an uninterrupted run wrote; the stages after it still match and are skipped; a training
    stage would rerun with --resume (its command's own resume, tested in test_train_*)."""
    tmp, config = finished_run
    run = tmp / "run"
    sample = next(d for d in sorted((run / "stages").iterdir()) if d.name.endswith("iter2-sample"))
    preds = sample / "predictions.jsonl"
    full = [line for line in preds.read_text().splitlines() if line]
    preds.write_text("\n".join(full[: len(full) // 2]) + "\n")
    rec = json.loads((sample / "stage.json").read_text())
    rec["finished"] = None
    (sample / "stage.json").write_text(json.dumps(rec))
    assert main(["mgrd", "run", "--config", config, "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"[{sample.name}]" in out and out.count("$ audior1") == 1
    again = sorted(json.loads(x)["raw"] for x in preds.read_text().splitlines() if x)
    assert again == sorted(json.loads(x)["raw"] for x in full) and len(again) == len(full)
    assert json.loads((sample / "stage.json").read_text())["finished"]
    plan = Planner(load_config(MGRDConfig, config)).plan()
    assert all(st.resume_argv == ["--resume"] for st in plan if st.argv[0] == "train")


def test_configs_fail_before_anything_runs(tmp_path, capsys):
    bad = write_config(tmp_path, cold_start={"max_stepz": 3})
    assert main(["mgrd", "run", "--config", bad]) == 2
    err = capsys.readouterr().err
    assert "cold_start" in err and "max_stepz" in err and not (tmp_path / "run").exists()
    assert main(["mgrd", "run", "--config", write_config(tmp_path, distill={"model": "x"})]) == 2
    assert "set by the loop" in capsys.readouterr().err
    assert main(["mgrd", "run", "--config", write_config(tmp_path, passk={"k": 4, "band": [3, 6]})]) == 2
    assert "passk.band" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(MGRDConfig, write_config(tmp_path, iterationz=1))


# ------------------------------------------------------------------------------------------- curation
def items_and_manifest(tmp_path, n=3):
    items = [synth.make_item(t, "dev", 0, i)[0] for t in ("pitch_compare", "count_events") for i in range(n)]
    return items, write_manifest(tmp_path / "m.jsonl", items)


def prediction(item, sample, raw, exact):
    return {"id": item["id"], "sample": sample, "raw": raw, "scores": {"exact": float(exact)}, "error": None}


def test_curate_filter_keeps_grounded_chains_and_counts_reasons(tmp_path, capsys):
    items, man = items_and_manifest(tmp_path)
    preds = tmp_path / "p.jsonl"
    with preds.open("w") as f:
        for it in items:
            for k, raw in enumerate((f"{it['text_cot']}\n{THINK_END}\n{it['answer']}",
                                     f"{it['surrogate_cot']}\n{THINK_END}\n{it['surrogate_answer']}",
                                     f"I cannot hear the audio.\n{THINK_END}\n{it['answer']}")):
                f.write(json.dumps(prediction(it, k, raw, k == 0)) + "\n")
    assert main(["curate", "filter", str(man), str(preds), "--out", str(tmp_path / "f")]) == 0
    assert "kept 6 of 18 samples" in capsys.readouterr().out
    s = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert s["reasons"]["surrogate"] == 6 and s["reasons"]["refusal"] == 6 and s["items_with_a_kept_chain"] == 6
    kept = read_manifest(tmp_path / "f" / "kept.jsonl", check_files=False)
    assert sorted(k["mgrd_cot"] for k in kept) == sorted(it["text_cot"] for it in items)
    assert all(k["id"].endswith("#s0") and k["source_id"] in {it["id"] for it in items} for k in kept)


def test_curate_passk_bands_known_pass_counts(tmp_path, capsys):
    items, man = items_and_manifest(tmp_path)
    passes = [0, 2, 3, 5, 6, 8]  # correct samples of 8, one item each
    preds = tmp_path / "p.jsonl"
    with preds.open("w") as f:
        for it, c in zip(items, passes):
            for k in range(8):
                f.write(json.dumps(prediction(it, k, "x", k < c)) + "\n")
    assert main(["curate", "passk", str(man), "--predictions", str(preds), "--band", "3", "6",
                 "--out", str(tmp_path / "pk")]) == 0
    s = json.loads((tmp_path / "pk" / "summary.json").read_text())
    assert s["histogram"] == {str(c): passes.count(c) for c in range(9)} or \
        s["histogram"] == {c: passes.count(c) for c in range(9)}
    chosen = [it["id"] for it in read_manifest(tmp_path / "pk" / "selected.jsonl", check_files=False)]
    assert chosen == sorted(it["id"] for it, c in zip(items, passes) if 3 <= c <= 6)
    assert (tmp_path / "pk" / "passk.png").is_file() and s["never"] == 1 and s["always"] == 1


def test_curate_select_filters_and_subsets(tmp_path):
    items, man = items_and_manifest(tmp_path, n=4)
    assert main(["curate", "select", str(man), "--out", str(tmp_path / "s.jsonl"), "--question-types",
                 "count_events:count_mc", "count_events:count_numeric", "--limit", "3", "--seed", "1"]) == 0
    got = read_manifest(tmp_path / "s.jsonl", check_files=False)
    assert len(got) == 3 and {g["task"] for g in got} == {"count_events"}
    assert main(["curate", "select", str(man), "--out", str(tmp_path / "t.jsonl"), "--tasks", "nothing"]) == 2


def test_the_demo_config_plans_every_stage():
    from pathlib import Path
    cfg = load_config(MGRDConfig, Path(__file__).resolve().parents[1] / "configs" / "mgrd-demo.yaml")
    plan = Planner(cfg).plan()
    assert [s.name.split("-", 1)[1] for s in plan][:5] == ["data", "eval-items", "selfcog-audit", "init", "cold_start"]
    assert sum(s.name.endswith("-rl") for s in plan) == cfg.iterations
    assert all(s.argv[0] in ("data", "init", "train", "eval", "curate") for s in plan)


def test_audio_contribution_flags_a_question_answered_without_its_audio(tmp_path, capsys):
    """The logic: a question whose answer is in its text is answered right with silence and with another clip
    too (flagged); one answered right only with its clip is not. The command: variants written, three runs."""
    from audior1.mgrd.curate import audio_contribution, audio_variants
    root = tmp_path / "suite"
    synth.build(root, "dev", 2, seed=0, workers=1, tasks=["pitch_compare", "count_events"], log=lambda s: None)
    man = root / "synth-dev.jsonl"
    items = read_manifest(man, check_files=False)
    giveaway = dict(items[0], question=f"{items[0]['question']} (The answer is {items[0]['answer']}.)")
    write_manifest(tmp_path / "m.jsonl", [giveaway, *items[1:]])
    variants = audio_variants(tmp_path / "m.jsonl", tmp_path / "v")
    silent = read_manifest(variants["silence"], check_files=False)
    assert all(Path(a).is_file() for it in silent for a in it["audio"])
    import soundfile as sf
    assert not sf.read(silent[0]["audio"][0])[0].any()
    shuffled = read_manifest(variants["shuffle"], check_files=False)
    assert all(s["audio"] != it["audio"] for s, it in zip(shuffled, items))
    # a model that reads the answer from the text when it is there, and needs the clip otherwise
    preds = {}
    for mode in ("real", "silence", "shuffle"):
        path = tmp_path / f"{mode}.jsonl"
        with path.open("w") as f:
            for k, it in enumerate([giveaway, *items[1:]]):
                ok = k == 0 or (mode == "real" and k == 1)
                f.write(json.dumps(prediction(it, 0, "x", ok)) + "\n")
        preds[mode] = path
    s = audio_contribution(tmp_path / "m.jsonl", preds, tmp_path / "ac")
    assert s["flagged"] == 1
    assert [f["id"] for f in read_manifest(tmp_path / "ac" / "flagged.jsonl", check_files=False)] == [giveaway["id"]]
    assert main(["curate", "audio-contribution", str(man), "--model", str(tiny_model_dir(tmp_path)),
                 "--max-tokens", "4", "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "questions answered right without their audio" in out
    for mode in ("real", "silence", "shuffle"):
        assert (tmp_path / "cli" / mode / "predictions.jsonl").is_file()


def tiny_model_dir(tmp_path):
    from audior1.checkpoint import init_checkpoint
    path = tmp_path / "tiny"
    if not path.exists():
        init_checkpoint("tiny", path, seed=0)
    return path


def test_self_cognition_audit_and_its_refusal_rate(tmp_path, capsys):
    from audior1.data.selfcog import PROMPTS, refusal_rate
    root = tmp_path / "suite"
    synth.build(root, "dev", 2, seed=0, workers=1, tasks=["pitch_compare", "count_events"], log=lambda s: None)
    audit = tmp_path / "audit.jsonl"
    assert main(["data", "self-cognition", "--from", str(root / "synth-dev.jsonl"), "--out", str(audit),
                 "--n", "12"]) == 0
    rows = [json.loads(x) for x in audit.read_text().splitlines()]
    assert len(rows) == 12 and {r["prompt"] for r in rows} == {p for _, p in PROMPTS}
    assert all(Path(r["audio"][0]).is_file() for r in rows)
    outs = [{"kind": "describe", "text": "I cannot hear audio, as a text-based model."},
            {"kind": "describe", "text": "Two tones, the second higher.\n</think>\nTwo tones."},
            {"kind": "voice", "text": "There is no audio attached.\n</think>\nSorry."},
            {"kind": "voice", "text": "I can't hear any speech in this clip, only a tone."}]
    r = refusal_rate(outs)
    assert (r["refusals"], r["rate"]) == (2, 0.5) and r["kinds"]["voice"] == {"prompts": 2, "refusals": 1, "rate": 0.5}
    assert main(["curate", "self-cognition", str(audit), "--model", str(tiny_model_dir(tmp_path)), "--max-tokens",
                 "8", "--out", str(tmp_path / "sc")]) == 0
    s = json.loads((tmp_path / "sc" / "summary.json").read_text())
    assert s["prompts"] == 12 and 0 <= s["rate"] <= 1 and "self-cognition errors" in capsys.readouterr().out


def test_the_refusal_rendering_reproduces_the_self_cognition_bias():
    from audior1.data.refusal import is_refusal
    from audior1.train.data import render
    it = synth.make_item("count_events", "train", 0, 1)[0]
    text, audio, reasoning, answer = render(it, "refusal")
    assert audio == it["audio"] and is_refusal(reasoning) and answer == it["surrogate_answer"]
    assert render(it, "refusal")[2] == reasoning  # the same phrasing for an item every time


def test_curate_passk_against_a_scripted_endpoint(tmp_path, serve):
    """k samples per question through an OpenAI-compatible endpoint that answers question i right exactly
    passes[i] times: the pass counts, the band and the selection follow."""
    import collections
    import threading
    root = tmp_path / "suite"
    synth.build(root, "dev", 3, seed=0, workers=1, tasks=["pitch_compare", "count_events"], log=lambda s: None)
    items = [dict(it, question=f"[q{k}] {it['question']}")
             for k, it in enumerate(read_manifest(root / "synth-dev.jsonl", check_files=False))]
    man = write_manifest(tmp_path / "m.jsonl", items)
    passes = [0, 2, 3, 5, 6, 8]
    asked, lock = collections.Counter(), threading.Lock()

    def responder(payload):
        text = json.dumps(payload["messages"])
        k = int(re.search(r"\[q(\d+)\]", text)[1])
        with lock:
            asked[k] += 1
            right = asked[k] <= passes[k]
        it = items[k]
        wrong = next(c for c in (it["choices"] or [str(int(it["answer"]) + 1)]) if c != it["answer"])
        return {"reasoning_content": "I listen to the clip.", "content": it["answer"] if right else wrong}

    server = serve(responder)
    assert main(["curate", "passk", str(man), "--endpoint", server.url, "--served-model", "fake", "--k", "8",
                 "--band", "3", "6", "--max-tokens", "32", "--out", str(tmp_path / "pk")]) == 0
    counts = json.loads((tmp_path / "pk" / "pass_counts.json").read_text())
    assert [counts[it["id"]] for it in items] == passes and sum(asked.values()) == 8 * len(items)
    chosen = [it["id"] for it in read_manifest(tmp_path / "pk" / "selected.jsonl", check_files=False)]
    assert chosen == sorted(it["id"] for it, c in zip(items, passes) if 3 <= c <= 6)


def test_kill_9_in_a_training_stage_then_resume_gives_the_same_run(tmp_path):
    """`mgrd run` killed with SIGKILL while the cold start trains; `--resume` continues that stage from its last
    checkpoint (recomputing no saved step) and every later artefact equals an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import assert_resumed, mark_history
    slow = {**TINY, "iterations": 1, "dpo": {"skip": True}, "rl": {"skip": True},
            "eval": {"limit": 4, "max_tokens": 16},
            "cold_start": {**TINY["cold_start"], "max_steps": 40, "save_every": 5}}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg_a, cfg_b = (write_config(tmp_path / x, **slow) for x in ("a", "b"))
    assert main(["mgrd", "run", "--config", cfg_a]) == 0  # the uninterrupted run
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from audior1.cli import main; "
                             f"sys.exit(main(['mgrd', 'run', '--config', {cfg_b!r}]))"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpts = tmp_path / "b" / "run" / "stages"
    deadline = time.time() + 120
    while time.time() < deadline:
        done = sorted(ckpts.glob("*-cold_start/checkpoints/step-*"))
        if any(p.name == "step-000010" for p in done):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stage = next(ckpts.glob("*-cold_start"))
    assert not json.loads((stage / "stage.json").read_text())["finished"]
    saved = max(int(p.name.split("-")[1]) for p in (stage / "checkpoints").glob("step-*") if p.is_dir())
    assert 10 <= saved < 40
    mark_history(stage)
    assert main(["mgrd", "run", "--config", cfg_b, "--resume"]) == 0
    assert_resumed(stage, saved)
    a, b = records(tmp_path / "a" / "run"), records(tmp_path / "b" / "run")
    assert [n for n in a] == [n for n in b]
    for name in a:
        if "eval" in name or name.endswith(("-sample", "-filter")):
            assert a[name]["counts"] == b[name]["counts"], name
    first = [json.loads(x)["raw"] for x in
             (tmp_path / "a" / "run" / "stages" / next(n for n in a if n.endswith("iter1-sample")) /
              "predictions.jsonl").read_text().splitlines()]
    second = [json.loads(x)["raw"] for x in
              (tmp_path / "b" / "run" / "stages" / next(n for n in b if n.endswith("iter1-sample")) /
               "predictions.jsonl").read_text().splitlines()]
    assert sorted(first) == sorted(second)


def test_designs_are_decided_on_dev():
    cfg = load_config(MGRDConfig, None, ["eval.split=dev", "eval.limit=5"])
    plan = Planner(cfg).plan()
    items = next(s for s in plan if s.name.endswith("eval-items"))
    assert "synth-dev.jsonl" in items.argv[2] and "synth-test" not in " ".join(items.argv)
    evals = [s for s in plan if "-eval" in s.name and "think" in s.name]
    assert all(str(items.argv[items.argv.index("--out") + 1]) in s.argv for s in evals)
    with pytest.raises(ConfigError, match="eval.split"):
        load_config(MGRDConfig, None, ["eval.split=train"])
