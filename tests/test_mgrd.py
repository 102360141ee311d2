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
    "rl": {"max_steps": 1, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 16, "eval_every": 0,
           "save_every": 1, "minibatches": 1, "epochs": 1},
    "eval": {"limit": 4, "max_tokens": 24},
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
    assert names == ["data", "eval-items", "init", "cold_start", "text_rl", "eval0-think", "eval0-no-think",
                     *[s for t in (1, 2) for s in (f"iter{t}-select", f"iter{t}-sample", f"iter{t}-filter",
                                                   f"iter{t}-distill", f"iter{t}-passk", f"iter{t}-rl",
                                                   f"eval{t}-think", f"eval{t}-no-think")]]
    for name, r in recs.items():
        assert r["finished"] and r["command"].startswith("audior1 ") and len(r["fingerprint"]) == 16, name
    assert len({r["fingerprint"] for r in recs.values()}) == len(recs)
    sample = next(r for n, r in recs.items() if n.endswith("iter1-sample"))
    assert "--n 2" in sample["command"] and sample["inputs"]  # the selected manifest's hash
    filt = next(r for n, r in recs.items() if n.endswith("iter1-filter"))["counts"]
    assert filt["samples"] == 8 and set(filt["reasons"]) >= {"incorrect", "ungrounded", "surrogate"}
    # a tiny untrained model keeps no chain: distillation is skipped and says so, the model passes through
    distill = next(r for n, r in recs.items() if n.endswith("iter1-distill"))
    if filt["kept"] == 0:
        assert "holds no item" in distill["skipped"]
        assert (run / "stages" / next(n for n in recs if n.endswith("iter1-distill")) / "checkpoints").exists()
    passk = next(r for n, r in recs.items() if n.endswith("iter1-passk"))["counts"]
    assert passk["k"] == 4 and sum(passk["histogram"].values()) == passk["items"] == 4
    evals = [r for n, r in recs.items() if re.search(r"-eval\d", n)]
    assert len(evals) == 6 and all(r["counts"]["n"] == 4 for r in evals)
    assert "--no-think" in evals[1]["command"] and "--think" in evals[0]["command"]

    assert main(["mgrd", "report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "| cold start |" in report and "| iteration 2 |" in report and "## Filter" in report
    assert "## pass@k curation" in report and (run / "accuracy.png").is_file()


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
    assert [s.name.split("-", 1)[1] for s in plan][:4] == ["data", "eval-items", "init", "cold_start"]
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
