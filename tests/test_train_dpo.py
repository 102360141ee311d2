"""`audior1 train dpo` and `audior1 curate dpo-pairs`: the loss by hand, a tiny model whose preference margin
rises, the cached reference on resume, and pairs built from judged samples."""

import json
import math

import pytest
import torch

from audior1.chat import THINK_END
from audior1.cli import main
from audior1.data.manifest import read_manifest, write_manifest
from audior1.train.logging import read_metrics
from audior1.train.losses import dpo_loss


def test_dpo_loss_by_hand():
    pc, pr = torch.tensor([-10.0, -3.0]), torch.tensor([-12.0, -2.0])
    rc, rr = torch.tensor([-11.0, -3.0]), torch.tensor([-11.0, -3.0])
    losses, margin = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 1: 0.5·((−10+11) − (−12+11)) = 1.0; pair 2: 0.5·((0) − (1)) = −0.5
    assert margin.tolist() == pytest.approx([1.0, -0.5])
    assert losses.tolist() == pytest.approx([math.log1p(math.exp(-1.0)), math.log1p(math.exp(0.5))])


def write_pairs(assets, path):
    items = read_manifest(assets / "synth" / "synth-train.jsonl", check_files=False)[:6]
    pairs = []
    for it in items:
        wrong = next((c for c in (it.get("choices") or []) if c != it["answer"]), "0")
        pairs.append({**it, "chosen": {"reasoning": it["text_cot"], "answer": it["answer"]},
                      "rejected": {"reasoning": "I cannot hear the audio, so I will guess.", "answer": wrong}})
    write_manifest(path, pairs)
    return path


def config(assets, tmp_path, out, **extra):
    cfg = {"model": str(assets / "tiny"), "out_dir": str(out), "pairs": [str(write_pairs(assets, tmp_path / "p.jsonl"))],
           "beta": 0.1, "max_steps": 8, "batch_size": 4, "micro_batch_size": 2, "max_seq_len": 512,
           "feature_cache": str(tmp_path / "cache"), "save_every": 4, "log_every": 1, "progress": False,
           "threads": 1, "optim": {"lr": 3e-3, "warmup_steps": 1, "min_lr_ratio": 1.0}, **extra}
    path = tmp_path / "dpo.yaml"
    path.write_text(json.dumps(cfg))
    return path


def test_dpo_raises_the_preference_margin_and_resumes_against_the_same_reference(assets, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "dpo", "--config", str(config(assets, tmp_path, out))]) == 0
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert rows[0]["margin"] == pytest.approx(0.0, abs=0.05)  # step 1 starts at the reference
    assert rows[-1]["margin"] > rows[0]["margin"] + 0.1 and rows[-1]["pref_accuracy"] == 1.0
    assert rows[-1]["loss"] < math.log(2)
    ref = json.loads((out / "reference_logps.json").read_text())
    assert len(ref["logps"]) == 6 and all(len(p) == 2 for p in ref["logps"])
    assert (out / "plots" / "margin.png").is_file() and json.loads((out / "result.json").read_text())["step"] == 8
    # a resumed run keeps the cached reference (the start's weights are gone) and continues at step 4
    resumed = tmp_path / "resumed"
    assert main(["train", "dpo", "--config", str(config(assets, tmp_path, resumed, max_steps=4))]) == 0
    assert main(["train", "dpo", "--config", str(config(assets, tmp_path, resumed)), "--resume"]) == 0
    again = [r for r in read_metrics(resumed / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["loss"] for r in again if r["step"] > 4] == pytest.approx([r["loss"] for r in rows if r["step"] > 4],
                                                                           rel=1e-4)
    (resumed / "reference_logps.json").unlink()
    with pytest.raises(RuntimeError, match="cannot be recomputed"):
        from audior1.train.config import DPOConfig, load_config
        from audior1.train.dpo import train
        train(load_config(DPOConfig, config(assets, tmp_path, resumed, max_steps=10)), resume=True)


def test_dpo_config_and_pairs_errors(assets, tmp_path, capsys):
    assert main(["train", "dpo", "--config", str(config(assets, tmp_path, tmp_path / "r", beta=0))]) == 2
    assert "beta must be > 0" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    it = read_manifest(assets / "synth" / "synth-train.jsonl", check_files=False)[0]
    write_manifest(bad, [{**it, "chosen": "text only", "rejected": {"reasoning": "r", "answer": "a"}}])
    path = config(assets, tmp_path, tmp_path / "r2")
    cfg = json.loads(path.read_text())
    cfg["pairs"] = [str(bad)]
    path.write_text(json.dumps(cfg))
    assert main(["train", "dpo", "--config", str(path)]) == 2
    assert "field 'chosen'" in capsys.readouterr().err


def test_curate_dpo_pairs_from_judged_samples(tmp_path, capsys):
    from audior1.data import synth
    items = [synth.make_item("count_events", "dev", 0, i)[0] for i in range(3)]
    man = write_manifest(tmp_path / "m.jsonl", items)
    with (tmp_path / "p.jsonl").open("w") as f:
        for k, it in enumerate(items):
            raws = [f"{it['text_cot']}\n{THINK_END}\n{it['answer']}"]
            if k == 0:
                raws.append(f"I cannot hear the audio.\n{THINK_END}\n{it['answer']}")
            if k == 1:
                raws.append(f"{it['surrogate_cot']}\n{THINK_END}\n{it['surrogate_answer']}")
            for s, raw in enumerate(raws):
                f.write(json.dumps({"id": it["id"], "sample": s, "raw": raw, "scores": {"exact": 1.0}}) + "\n")
    assert main(["curate", "dpo-pairs", str(man), str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "d.jsonl")]) == 0
    pairs = read_manifest(tmp_path / "d.jsonl", check_files=False)
    assert [p["rejected_because"] for p in pairs] == ["refusal", "surrogate"]
    assert all(p["chosen"]["reasoning"] == p["text_cot"] for p in pairs)
    assert main(["curate", "dpo-pairs", str(man), str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "e.jsonl"),
                 "--synthetic-refusal"]) == 0
    assert [p["rejected_because"] for p in read_manifest(tmp_path / "e.jsonl", check_files=False)] == \
        ["refusal", "surrogate", "synthetic"]
