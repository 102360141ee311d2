"""`audior1 mgrd reproduce`: the plan's arms branch off the MGRD line, the verdict statistics decide as documented,
and the CI-sized `--quick` run produces every artefact (mechanics only: the science is docs/reproduction.md's)."""

import json
from pathlib import Path

import numpy as np
import pytest

from audior1.cli import main
from audior1.data.manifest import read_manifest, write_manifest
from audior1.mgrd import reproduce
from audior1.mgrd.verdicts import Effect, Check, combine, paired

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "reproduce.yaml"


# ---- statistics -------------------------------------------------------------------------------------------
def seeds_of(per_seed: list[list[float]]) -> list[dict[str, float]]:
    return [{f"item{i}": x for i, x in enumerate(values)} for values in per_seed]


def test_paired_effect_is_the_mean_item_difference_with_a_bootstrap_interval():
    rng = np.random.default_rng(1)
    a = [rng.integers(0, 2, 200).astype(float) for _ in range(3)]
    b = [np.zeros(200) for _ in range(3)]
    e = paired(seeds_of(a), seeds_of(b))
    assert e.n == 200 and len(e.seeds) == 3
    assert e.mean == pytest.approx(np.mean(a))
    assert e.lo < e.mean < e.hi and e.lo > 0.35  # ~0.5 ± 0.04
    assert e.sd == pytest.approx(np.std([x.mean() for x in a], ddof=1))
    # only the items both conditions have, and only the ids asked for
    e2 = paired(seeds_of(a), seeds_of(b), ids={"item0", "item1", "nope"})
    assert e2.n == 2


def test_verdicts_need_the_interval_and_the_seed_spread():
    clear = Effect(0.10, 0.05, 0.15, 300, [0.09, 0.10, 0.11], 0.01)
    assert Check("x", clear, 0.02).verdict == "reproduced"
    noisy_seeds = Effect(0.10, 0.05, 0.15, 300, [-0.1, 0.1, 0.3], 0.2)  # the seeds disagree more than the effect
    assert Check("x", noisy_seeds, 0.02).verdict == "inconclusive"
    null = Effect(0.0, -0.01, 0.01, 300, [0.0, 0.0, 0.0], 0.0)  # rules out an effect of 2 points
    assert Check("x", null, 0.02).verdict == "not reproduced"
    wide = Effect(0.0, -0.10, 0.10, 30, [0.0], None)
    assert Check("x", wide, 0.02).verdict == "inconclusive"
    # "A is no better than B" (C0) mirrors it
    assert Check("x", null, 0.02, better=False).verdict == "reproduced"
    assert Check("x", clear, 0.02, better=False).verdict == "not reproduced"
    assert Check("x", wide, 0.02, better=False).verdict == "inconclusive"
    assert Check("x", None, 0.02).verdict == "not run"
    # a claim holds when all its tests do
    assert combine([Check("x", clear, 0.02), Check("y", clear, 0.02)]) == "reproduced"
    assert combine([Check("x", clear, 0.02), Check("y", wide, 0.02)]) == "inconclusive"
    assert combine([Check("x", clear, 0.02), Check("y", null, 0.02)]) == "not reproduced"


def test_claim_kinds_count_statuses_and_clean_chains(tmp_path):
    from audior1.mgrd.verdicts import claim_kinds

    rows = [{"claims": [{"kind": "pitch", "status": "grounded"}, {"kind": "pitch", "status": "contradicted"}]},
            {"claims": [{"kind": "onset", "status": "grounded"}, {"kind": "count", "status": "unverifiable"}]},
            {"claims": []}]  # a chain that claims nothing is not clean: the filter needs a borne-out measurement
    (tmp_path / "verdicts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds, chains, clean = claim_kinds(tmp_path)
    assert (chains, clean) == (3, 1)
    assert kinds["pitch"] == {"grounded": 1, "contradicted": 1} and kinds["count"] == {"unverifiable": 1}


# ---- the plan ---------------------------------------------------------------------------------------------
def test_the_plan_branches_every_arm_off_the_line(tmp_path):
    cfg = reproduce.load(CONFIG, [f"out_dir={tmp_path}"], quick=True)
    planner = reproduce.ReproducePlanner(cfg.seed_config(0), cfg)
    stages = {s.name.split("-", 1)[1]: s for s in planner.plan()}
    files = lambda name: next(iter(stages[name].files.values()))  # noqa: E731
    cold = files("cold_start")
    assert len(cfg.mgrd["held_out"]) == 2
    # held-out types get no direct / audio-CoT supervision, captions and text CoT keep them
    for src in cold["data"]:
        held = set(src.get("exclude_question_types") or [])
        assert held == (set(cfg.mgrd["held_out"])
                        if src["kind"] in ("direct", "audio_cot", "refusal") else set()), src
    # perception first: trained once, without the held-out types' direct answers; every seed starts from it
    cfg.perception["phases"] = [{"difficulties": ["easy"], "max_steps": 4}, {"max_steps": 6}]
    (first, first_ckpt), (second, second_ckpt) = cfg.perception_phases()
    pstages = {st.name.split("-", 1)[1]: st for st in reproduce.Planner(first).plan()}
    assert list(pstages) == ["data", "eval-items", "init", "cold_start", "eval0-no-think"]
    pdata = next(iter(pstages["cold_start"].files.values()))
    assert pdata["max_steps"] == 4 and [(src["kind"], src["difficulties"], set(src.get("exclude_question_types") or []))
                                        for src in pdata["data"]] == [
        ("direct", ["easy"], set(cfg.mgrd["held_out"])), ("caption", ["easy"], set())]
    later = reproduce.Planner(second)
    assert second.model == first_ckpt == reproduce.Planner(first).marks_after_plan()["cold_start"]
    assert second.cold_start["max_steps"] == 6 and "difficulties" not in second.cold_start["data"][0]
    planner = reproduce.ReproducePlanner(cfg.seed_config(0), cfg)
    stages = {s.name.split("-", 1)[1]: s for s in planner.plan()}
    assert files("cold_start")["model"] == later.marks_after_plan()["cold_start"] == second_ckpt
    assert cfg.seed_config(0).model == second_ckpt
    assert "init" not in stages
    with pytest.raises(Exception, match="perception.phases"):
        reproduce.load(CONFIG, ["perception.phases=oops"]).perception_phases()
    # distillation: the kept chains, then distill.data (direct answers replayed without the held-out types)
    distil = files("iter1-distill")["data"]
    assert [(x["kind"], set(x.get("exclude_question_types") or [])) for x in distil] == [
        ("audio_cot", set()), ("text_cot", set()), ("direct", set(cfg.mgrd["held_out"]))]
    assert distil[0]["manifest"].endswith("iter1-filter/kept.jsonl")
    final_cold = planner.marks["cold_start"]
    assert files("a-rl")["model"] == final_cold and files("b-sft")["model"] == final_cold
    assert files("c5-sft-grounded")["model"] == files("c5-sft-surrogate")["model"] == final_cold
    distilled = planner.marks["iter2-distilled"]
    assert distilled.endswith("step-000002") and "iter2-dpo" in distilled
    for arm in ("c3-rl-audio", "c3-rl-accuracy", "c4-rl-band", "c4-rl-never"):
        assert files(arm)["model"] == distilled, arm
    assert [p["reward"] for p in files("c3-rl-audio")["prompts"]] == ["audio"]
    assert [p["reward"] for p in files("c3-rl-accuracy")["prompts"]] == ["accuracy"]
    # the same budget: (a) runs T × the line's RL steps on the labelled union, (b) T × distill steps on it
    assert files("a-rl")["max_steps"] == 2 * 2 and files("b-sft")["max_steps"] == 2 * 4
    union = stages["labelled"].argv
    assert sum(a.endswith(".jsonl") for a in union) == 5  # 2 select pools + 2 pass@k pools + --out
    assert files("b-sft")["data"] == [{"manifest": union[union.index("--out") + 1], "kind": "direct", "weight": 1.0}]
    assert "--bands" in stages["c4-bands"].argv and "0-0" in stages["c4-bands"].argv
    # claims pick the arms; the line always runs
    only = reproduce.load(CONFIG, [f"out_dir={tmp_path}", "claims=[C2]"], quick=True)
    names = [s.name.split("-", 1)[1] for s in reproduce.ReproducePlanner(only.seed_config(0), only).plan()]
    assert "eval2-grounding" in names and not any(n.startswith(("a-", "b-", "c3", "c4", "c5")) for n in names)


def test_a_perception_checkpoint_trained_before_is_evaluated_not_retrained(tmp_path):
    from audior1.config import ConfigError

    ckpt = tmp_path / "perception-ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    cfg = reproduce.load(CONFIG, [f"out_dir={tmp_path / 'run'}", f"perception.checkpoint={ckpt}"], quick=True)
    [(phase, model)] = cfg.perception_phases()
    assert model == str(ckpt) and phase.model == str(ckpt)
    names = [st.name.split("-", 1)[1] for st in reproduce.Planner(phase).plan()]
    assert names == ["data", "eval-items", "eval0-no-think"]  # measured on this run's split, no training
    assert cfg.seed_config(0).model == str(ckpt)
    with pytest.raises(ConfigError, match=r"perception.checkpoint: .*nowhere.*config.json"):
        reproduce.load(CONFIG, [f"perception.checkpoint={tmp_path / 'nowhere'}"]).perception_phases()


def test_every_seed_is_evaluated_and_audited_on_the_same_items(tmp_path):
    # effects pair per item across seeds: the eval subset and audit prompts follow the data seed, not the seed
    cfg = reproduce.load(CONFIG, [f"out_dir={tmp_path}"], quick=True)
    argv = {}
    for seed in (0, 1, 2):
        plan = reproduce.ReproducePlanner(cfg.seed_config(seed), cfg).plan()
        argv[seed] = [[a for a in st.argv if str(tmp_path) not in a] for st in plan
                      if st.name.endswith(("eval-items", "selfcog-audit"))]
    assert len(argv[0]) == 2 and argv[0] == argv[1] == argv[2]
    cold = [st.files["sft.yaml"] for st in reproduce.ReproducePlanner(cfg.seed_config(1), cfg).plan()
            if st.name.endswith("cold_start")]
    assert cold[0]["seed"] == 1  # the training seed still seeds the training


def test_bad_claims_and_configs_are_named(tmp_path):
    from audior1.config import ConfigError

    with pytest.raises(ConfigError, match="C9"):
        reproduce.load(CONFIG, ["claims=[C9]"])
    with pytest.raises(ConfigError, match="iterations"):
        reproduce.load(CONFIG, ["mgrd.iterations=0"]).seed_config(0)
    with pytest.raises(ConfigError, match="held_out"):
        reproduce.load(CONFIG, ["mgrd.held_out=[sum]"]).seed_config(0)


# ---- curation helpers the arms use ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[dict]:
    from audior1.data import synth

    root = tmp_path_factory.mktemp("items")
    return read_manifest(synth.build(root, "train", 6, tasks=["count_events", "timbre"], workers=1,
                                     log=lambda m: None), check_files=False)


def test_select_takes_the_union_of_several_manifests_each_id_once(tmp_path, items):
    x, y = [it for it in items if it["task"] == "count_events"][:2]
    z = next(it for it in items if it["task"] == "timbre")
    write_manifest(tmp_path / "a.jsonl", [x, y])
    write_manifest(tmp_path / "b.jsonl", [y, z])
    assert main(["curate", "select", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out",
                 str(tmp_path / "u.jsonl")]) == 0
    assert [it["id"] for it in read_manifest(tmp_path / "u.jsonl", check_files=False)] == [x["id"], y["id"], z["id"]]
    assert main(["curate", "select", str(tmp_path / "a.jsonl"), "--tasks", "timbre", "--out",
                 str(tmp_path / "e.jsonl")]) != 0
    assert main(["curate", "select", str(tmp_path / "a.jsonl"), "--tasks", "timbre", "--allow-empty", "--out",
                 str(tmp_path / "e.jsonl")]) == 0
    assert (tmp_path / "e.jsonl").read_text() == ""


def test_bands_are_cut_to_the_same_size(tmp_path, items):
    items = items[:6]
    write_manifest(tmp_path / "m.jsonl", items)
    ids = [it["id"] for it in items]
    passes = dict(zip(ids, [4, 3, 2, 0, 0, 0]))  # of 4 samples
    with open(tmp_path / "p.jsonl", "w") as f:
        for i, n in passes.items():
            for s in range(4):
                f.write(json.dumps({"id": i, "sample": s, "raw": "1", "scores": {"exact": float(s < n)},
                                    "error": None}) + "\n")
    assert main(["curate", "bands", str(tmp_path / "m.jsonl"), str(tmp_path / "p.jsonl"), "--bands", "2-3", "0-0",
                 "--out", str(tmp_path / "out")]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["size"] == 2 and s["bands"] == {"2-3": {"found": 2, "kept": 2}, "0-0": {"found": 3, "kept": 2}}
    band = {it["id"] for it in read_manifest(tmp_path / "out" / "band-2-3.jsonl", check_files=False)}
    never = {it["id"] for it in read_manifest(tmp_path / "out" / "band-0-0.jsonl", check_files=False)}
    assert band == {ids[1], ids[2]} and never <= set(ids[3:]) and len(never) == 2
    with pytest.raises(SystemExit):
        main(["curate", "bands", str(tmp_path / "m.jsonl"), str(tmp_path / "p.jsonl"), "--bands", "3-2", "--out",
              str(tmp_path / "x")])


# ---- the smoke run ----------------------------------------------------------------------------------------
def test_quick_reproduce_writes_every_artefact_and_resumes(shared_data, tmp_path, capsys):
    out = tmp_path / "repro"
    assert main(["mgrd", "reproduce", "--quick", "--out", str(out)]) == 0
    md = (out / "reproduction.md").read_text()
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert sorted(verdicts["claims"]) == [f"C{k}" for k in range(7)] and verdicts["seeds"] == [0]
    for claim, v in verdicts["claims"].items():
        assert v["verdict"] in ("reproduced", "not reproduced", "inconclusive"), (claim, v)
        assert all("ci95" in t for t in v["tests"]), claim  # every test ran and has its interval
        assert f"| {claim} | {v['verdict']} |" in md
    for plot in ("accuracy_per_round", "keep_rate_per_round", "c3_reasoning_length", "c4_reward", "self_cognition"):
        assert (out / f"{plot}.png").is_file() and f"]({plot}.png)" in md
    assert (out / "perception" / "phase-1" / "plan.txt").is_file() and "| perception phase-1 (once) |" in md
    assert ("## The parts: direct accuracy (not thinking) per family and difficulty, perception phase-1 → "
            "perception phase-2 → cold start → round 2") in md
    assert "## The parts" in md and "## One chain before and after MGRD" in md and "One seed" in md
    assert "## What the model's own chains claim about the sound, cold start → round 2" in md
    capsys.readouterr()
    assert main(["mgrd", "reproduce", "--quick", "--out", str(out), "--resume"]) == 0
    log = capsys.readouterr().out
    assert "skipped]" in log and "$ audior1 train" not in log  # everything finished: nothing reruns
    (out / "reproduction.md").unlink()
    assert main(["mgrd", "reproduce", "--quick", "--out", str(out), "--report-only"]) == 0
    assert (out / "reproduction.md").read_text() == md
