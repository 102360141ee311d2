"""FSDD tasks: official split by take (dev carved from train), consistent answers and metadata, manifests."""

import pytest

from audior1.chat import THINK_END
from audior1.data import fsdd
from audior1.data.grounding import judge_chain
from audior1.data.manifest import read_manifest


@pytest.fixture(scope="module")
def recordings(shared_data):
    path = shared_data / "fsdd" / "recordings"
    if not path.is_dir():
        pytest.skip(f"FSDD recordings not found at {path}")
    return str(path)


def test_split_by_take():
    assert [fsdd.split_of_take(t) for t in (0, 4, 5, 9, 10, 49)] == ["test", "test", "dev", "dev", "train", "train"]


def test_index_and_split_sizes(recordings):
    recs = fsdd.index(recordings)
    assert len(recs) == 2500 and {r.speaker for r in recs} == set(fsdd.SPEAKERS)
    sizes = {s: sum(len(v) for v in fsdd.by_split(recordings, s)["digit"].values()) for s in ("train", "dev", "test")}
    assert sizes == {"train": 2000, "dev": 250, "test": 250}


@pytest.fixture(scope="module")
def built(recordings, tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdd")
    return {s: read_manifest(fsdd.build(recordings, out, s, 12, seed=1, workers=1, log=lambda m: None))
            for s in ("train", "dev", "test")}


def test_items_use_only_their_split_recordings(built):
    seen = {}
    for split, items in built.items():
        files = {f for it in items for f in it["meta"]["files"]}
        assert all(fsdd.split_of_take(int(f.split("_")[2].split(".")[0])) == split for f in files)
        seen[split] = files
    assert not (seen["train"] & seen["dev"]) and not (seen["train"] & seen["test"]) and not (seen["dev"] & seen["test"])


def test_answers_follow_from_the_metadata(built):
    words = "zero one two three four five six seven eight nine".split()
    for items in built.values():
        for it in items:
            m = it["meta"]
            assert m["transcript"] == " ".join(words[d] for d in m["digits"])
            assert [f.split("_")[0] for f in m["files"]] == [str(d) for d in m["digits"]]
            assert [f.split("_")[1] for f in m["files"]] == m["speakers"]
            q = it["question_type"]
            if q == "digit_mc":
                assert it["answer"] == words[m["digits"][0]]
            elif q == "digit_numeric":
                assert it["answer"] == str(m["digits"][0])
            elif q == "sum":
                assert it["answer"] == str(sum(m["digits"])) and len(m["digits"]) in (2, 3)
            elif q == "difference":
                assert it["answer"] == str(m["digits"][0] - m["digits"][1])
            elif q == "larger":
                first = m["digits"][0] > m["digits"][1]
                assert it["answer"] == ("the first number" if first else "the second number")
            elif q == "accent":
                assert it["answer"] == fsdd.ACCENT_TEXT[fsdd.SPEAKERS[m["speakers"][0]]]
            else:
                assert it["answer"] == m["speakers"][0] and len(set(m["speakers"])) == 1
            verdict = judge_chain(it, f"{it['text_cot']}\n{THINK_END}\n{it['answer']}")
            assert verdict.keep, (it["text_cot"], verdict.why)
            assert "surrogate" in judge_chain(it, f"{it['surrogate_cot']}\n{THINK_END}\n{it['surrogate_answer']}").reasons


def test_same_seed_same_bytes(recordings, tmp_path):
    a = fsdd.build(recordings, tmp_path / "a", "dev", 3, seed=5, tasks=["fsdd_arith"], workers=1, log=lambda m: None)
    b = fsdd.build(recordings, tmp_path / "b", "dev", 3, seed=5, tasks=["fsdd_arith"], workers=2, log=lambda m: None)
    assert a.read_bytes() == b.read_bytes()
    wavs = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    assert wavs and all((tmp_path / "a" / w).read_bytes() == (tmp_path / "b" / w).read_bytes() for w in wavs)


def test_wrong_directory_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no FSDD recordings"):
        fsdd.build(tmp_path, tmp_path / "out", "test", 1)


def test_digit_events_follow_the_schema_and_agree_with_the_metadata(built):
    """Each spoken digit is an event of kind "digit" with its value, speaker and source file, in time order;
    the speech segment holds the transcript (and the speaker's median pitch for fsdd_speaker)."""
    from test_data_synth import disagreements

    from audior1.data.manifest import meta_problems
    for items in built.values():
        for it in items:
            m = it["meta"]
            assert meta_problems(m) == [] and disagreements(it) == [], (it["id"], meta_problems(m), disagreements(it))
            assert [e["text"] for e in m["events"]] == m["transcript"].split()
            speech = next(s for s in m["segments"] if s["name"] == "speech")
            assert speech["events"] == [e["index"] for e in m["events"]]
            if it["task"] == "fsdd_speaker":
                assert speech["f0_hz"] == m["f0_hz"]


def test_speaker_surrogate_guesses_independently(built):
    """The transcript does not say who speaks: the surrogate chain's pick is a guess, not the answer."""
    items = [it for its in built.values() for it in its if it["task"] == "fsdd_speaker"]
    assert all(it["surrogate_cot"].endswith(f"pick the answer {it['surrogate_answer']}.") for it in items)
    assert all(it["surrogate_answer"] in it["choices"] for it in items)
    assert sum(it["surrogate_answer"] != it["answer"] for it in items) >= len(items) // 3
    # digits and sums are read off the transcript: those surrogate chains reach the answer, and say so
    arith = [it for its in built.values() for it in its if it["task"] in ("fsdd_digit", "fsdd_arith")]
    assert all(it["surrogate_answer"] == it["answer"] for it in arith)


def test_one_suite_mixes_synthetic_and_fsdd_families(recordings, tmp_path):
    """`data synth --tasks count_events fsdd_arith --recordings DIR` writes one manifest holding both (what an
    experiment over both needs); the items equal the ones `data fsdd` writes for the same seed."""
    from audior1.cli import main
    from audior1.data import synth
    from audior1.data.core import DataError

    assert main(["data", "synth", "--out", str(tmp_path / "mix"), "--split", "dev", "--n-per-task", "3",
                 "--tasks", "count_events", "fsdd_arith", "--recordings", recordings, "--workers", "1"]) == 0
    items = read_manifest(tmp_path / "mix" / "synth-dev.jsonl")
    assert [it["task"] for it in items] == ["count_events"] * 3 + ["fsdd_arith"] * 3
    alone = read_manifest(fsdd.build(recordings, tmp_path / "alone", "dev", 3, tasks=["fsdd_arith"], workers=1,
                                     log=lambda m: None))
    strip = lambda it: {k: v for k, v in it.items() if k != "audio"}  # noqa: E731 (absolute paths differ)
    assert [strip(it) for it in items[3:]] == [strip(it) for it in alone]
    with pytest.raises(DataError, match="--recordings"):
        synth.build(tmp_path / "x", "dev", 1, tasks=["fsdd_digit"], workers=1, log=lambda m: None)
    assert main(["data", "synth", "--out", str(tmp_path / "y"), "--tasks", "fsdd_digit", "--recordings",
                 str(tmp_path / "nowhere")]) != 0
