"""`audior1 eval --model DIR`: the local engine backend, end to end on a tiny checkpoint."""

import json

import pytest

from audior1.checkpoint import init_checkpoint
from audior1.eval.backends import LocalBackend, Sampling
from audior1.eval import benchmarks

from test_eval_e2e import dataset, run_cli


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    init_checkpoint("tiny", path, seed=0)
    return path


def test_local_backend_yields_every_sample_and_honours_budgets(tmp_path, tiny_dir):
    items = benchmarks.get("mmau").load(dataset(tmp_path, "mmau", "mmau.json"))[:3]
    backend = LocalBackend(str(tiny_dir), batch_size=2)
    sampling = Sampling(temperature=1.0, max_tokens=24, n=2, seed=3, think_budget=4)
    done = list(backend.generate(items, sampling, skip={(items[0].id, 0)}))
    assert sorted((c.item_id, c.sample) for c in done) == sorted(
        [(items[0].id, 1)] + [(i.id, s) for i in items[1:] for s in range(2)])
    closing = len(backend.engine.tokenizer.encode("\n</think>\n"))
    for c in done:
        assert c.prompt_tokens > 0 and c.completion_tokens <= 24
        # The budget closes the think block after 4 reasoning tokens (+ the forced closing tokens): the
        # reasoning stayed within the budget, and the model went on to answer.
        assert "</think>" in c.text and c.answer is not None and c.forced_close
        assert 4 < c.reasoning_tokens <= 4 + closing
    again = list(backend.generate(items, sampling, skip={(items[0].id, 0)}))
    assert [c.text for c in again] == [c.text for c in done]  # seeded: reproducible
    no_think = list(backend.generate(items[:1], Sampling(temperature=0, max_tokens=8, think=False)))
    assert no_think[0].reasoning == "" and no_think[0].reasoning_tokens == 0


def test_eval_cli_with_local_model_writes_a_result_directory(tmp_path, tiny_dir, capsys):
    data = dataset(tmp_path, "mmau", "mmau.json")
    out = tmp_path / "run"
    code, stdout, err = run_cli(["--bench", "mmau", "--data", str(data), "--model", str(tiny_dir), "--out", str(out),
                                 "--max-tokens", "16", "--temperature", "0", "--no-plots"], capsys)
    assert code == 0, err
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["backend"] == "local" and summary["counts"]


def test_endpoint_backend_against_our_own_server_matches_the_local_engine(tmp_path, tiny_dir, capsys):
    """The same greedy run through `audior1 serve` (OpenAI-compatible, vLLM-style prefill) and in-process."""
    from audior1.server import ServerConfig, create_app, load_engine
    from test_server import LiveServer

    data = dataset(tmp_path, "mmau", "mmau.json")
    common = ["--bench", "mmau", "--data", str(data), "--max-tokens", "16", "--temperature", "0", "--no-plots"]
    code, _, err = run_cli([*common, "--model", str(tiny_dir), "--out", str(tmp_path / "local")], capsys)
    assert code == 0, err
    engine, config = load_engine(tiny_dir, ServerConfig(model_name="tiny", max_tokens=64))
    with LiveServer(create_app(engine, config)) as live:
        code, _, err = run_cli([*common, "--endpoint", live.url, "--served-model", "tiny",
                                "--out", str(tmp_path / "served")], capsys)
    assert code == 0, err
    read = lambda run: {r["id"]: r for r in map(json.loads, (tmp_path / run / "predictions.jsonl").read_text().splitlines())}
    local, served = read("local"), read("served")
    assert set(local) == set(served) and len(local) == 6
    for item_id, row in local.items():
        # The server returns reasoning and answer apart, stripped at their edges (as vLLM's parsers do), and
        # the endpoint backend joins them again: equal up to that whitespace.
        assert served[item_id]["reasoning"].strip() == row["reasoning"].strip(), item_id
        assert served[item_id]["answer"] == row["answer"] and served[item_id]["scores"] == row["scores"]
