"""The procedural suite: determinism, disjoint splits, balance, renderings, traps, manifests, clip lengths."""

import hashlib
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from audior1.data import speech, synth
from audior1.data.core import DIFFICULTIES
from audior1.data.manifest import read_manifest

NEEDS_ESPEAK = "espeak-ng is not installed (apt-get install espeak-ng)"
QUICK = ["pitch_compare", "count_events", "timbre", "high_low_count"] + (["trap_count"] if speech.available() else [])


def tasks():
    """The families the tests here can build: the speech ones only where espeak-ng is installed (a shrink that
    `test_speech_families_are_built_here` reports as a skip, never silently)."""
    return [t for t in synth.FAMILIES if speech.available() or not synth.FAMILIES[t].needs_speech]


def test_speech_families_are_built_here():
    missing = [t for t in synth.FAMILIES if t not in tasks()]
    if missing:
        pytest.skip(f"{NEEDS_ESPEAK}: the speech families {', '.join(missing)} are left out of this file's tests")
    assert any(synth.FAMILIES[t].needs_speech for t in tasks())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every family, all three splits, 6 items each (one full deal of question types x difficulties for most)."""
    out = tmp_path_factory.mktemp("synth")
    paths = {s: synth.build(out, s, 6, seed=3, workers=2, log=lambda m: None) for s in ("train", "dev", "test")}
    return out, paths


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registry_has_the_required_families():
    fams = synth.FAMILIES
    assert len(fams) >= 14
    assert {f.category for f in fams.values()} == {"sound", "music", "speech"}
    for f in fams.values():
        assert f.qtypes and f.doc


def test_manifests_load_and_describe_every_item(built):
    out, paths = built
    for split, path in paths.items():
        items = read_manifest(path)
        assert len(items) == 6 * len(tasks())
        for it in items:
            assert it["split"] == split and it["task"] in synth.FAMILIES
            assert it["category"] == synth.FAMILIES[it["task"]].category
            assert it["question_type"] in synth.FAMILIES[it["task"]].qtypes
            assert it["difficulty"] in DIFFICULTIES
            assert all(isinstance(it[k], str) and it[k] for k in ("caption", "text_cot", "surrogate_cot"))
            assert it["text_question"] == f"{it['caption']} {it['question']}"
            assert it["meta"]["clip_s"] > 0 and it["meta"]["labels"] is not None
            assert it["audio"][0].startswith(str(out))  # resolved to absolute


def test_splits_share_no_item(built):
    _, paths = built
    ids, hashes = {}, {}
    for split, path in paths.items():
        items = read_manifest(path)
        ids[split] = {it["id"] for it in items}
        hashes[split] = {digest(Path(a)) for it in items for a in it["audio"]}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not ids[a] & ids[b]
        assert not hashes[a] & hashes[b], f"{a} and {b} share audio"
    assert len(hashes["train"]) == len(ids["train"])  # and no duplicate clips within a split


def test_same_seed_gives_byte_identical_output(tmp_path):
    a = synth.build(tmp_path / "a", "dev", 4, seed=11, tasks=QUICK, workers=1, log=lambda m: None)
    b = synth.build(tmp_path / "b", "dev", 4, seed=11, tasks=QUICK, workers=2, log=lambda m: None)
    assert a.read_bytes() == b.read_bytes()
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.wav"))
    assert files_a == files_b and files_a
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)
    c = synth.build(tmp_path / "c", "dev", 4, seed=12, tasks=QUICK, workers=1, log=lambda m: None)
    assert c.read_bytes() != a.read_bytes()


@pytest.mark.skipif(not speech.available(), reason=NEEDS_ESPEAK)
def test_speech_cache_on_disk_changes_nothing(tmp_path):
    try:
        a = synth.build(tmp_path / "a", "test", 3, seed=2, tasks=["trap_pitch"], workers=1, log=lambda m: None)
        b = synth.build(tmp_path / "b", "test", 3, seed=2, tasks=["trap_pitch"], workers=1, log=lambda m: None,
                        speech_cache=tmp_path / "cache")
        speech.speak.cache_clear()  # the second cached run reads the .npy files
        c = synth.build(tmp_path / "c", "test", 3, seed=2, tasks=["trap_pitch"], workers=1, log=lambda m: None,
                        speech_cache=tmp_path / "cache")
    finally:
        speech.set_cache_dir(None)
    assert list((tmp_path / "cache").glob("*.npy"))
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    wavs = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    assert all((tmp_path / "a" / w).read_bytes() == (tmp_path / "c" / w).read_bytes() for w in wavs)


def test_answers_and_positions_are_balanced():
    """Within each (task, question type, difficulty) stream the correct option's position, and the answer label
    when the option set is fixed, never differ by more than one between values."""
    for task in tasks():
        fam = synth.FAMILIES[task]
        n = len(fam.qtypes) * len(DIFFICULTIES) * 4  # four items per stream
        streams = defaultdict(list)
        for i in range(n):
            it, _ = synth.make_item(task, "train", 5, i)
            streams[(it["question_type"], it["difficulty"])].append(it)
        for key, its in streams.items():
            mc = [it for it in its if it["choices"]]
            if not mc:
                continue
            k = len(mc[0]["choices"])
            pos = Counter(it["choices"].index(it["answer"]) for it in mc)
            counts = [pos.get(p, 0) for p in range(k)]
            assert max(counts) - min(counts) <= 1, (task, key, counts)
            if len({tuple(sorted(it["choices"])) for it in mc}) == 1:  # fixed option set: labels balanced too
                ans = Counter(it["answer"] for it in mc)
                counts = [ans.get(c, 0) for c in mc[0]["choices"]]
                assert max(counts) - min(counts) <= 1, (task, key, ans)


def test_always_picking_one_position_scores_chance():
    items = [synth.make_item(t, "test", 0, i)[0] for t in tasks() for i in range(18)]
    mc = [it for it in items if it["choices"]]
    for p in range(2):
        acc = sum(it["choices"].index(it["answer"]) == p for it in mc) / len(mc)
        chance = sum(1 / len(it["choices"]) for it in mc) / len(mc)
        assert abs(acc - chance) < 0.06, (p, acc, chance)


@pytest.mark.skipif(not speech.available(), reason=NEEDS_ESPEAK)
def test_trap_transcripts_contradict_the_answer():
    words = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
    for task in ("trap_count", "trap_chord", "trap_pitch"):
        for i in range(12):
            it, _ = synth.make_item(task, "test", 1, i)
            m, text = it["meta"], it["meta"]["transcript"].lower()
            assert m["trap"] is True and it["surrogate_answer"] != it["answer"]
            if task == "trap_count":
                said = next(v for w, v in words.items() if w in text.split())
                assert said == m["spoken_count"] != int(it["answer"]) == m["counts"]["tone"]
                assert str(said) in it["choices"]  # the announced number is offered
            elif task == "trap_chord":
                assert m["announced"] in text and m["announced"] != it["answer"]
            else:
                claims_up = "higher" in text or "up" in text
                assert claims_up == (it["answer"] == "lower")


def test_clips_are_short():
    durs = [synth.make_item(t, "train", 2, i)[0]["meta"]["clip_s"] for t in tasks() for i in range(6)]
    assert max(durs) < 8.0
    assert sum(0.3 <= d <= 4.0 for d in durs) / len(durs) > 0.9


def test_numeric_items_have_numeric_answers():
    for task in ("count_events", "interval_size", "high_low_count"):
        for i in range(12):
            it, _ = synth.make_item(task, "dev", 0, i)
            if it["choices"] is None:
                assert it["answer"].lstrip("-").isdigit()


def test_unknown_task_and_split_are_reported():
    with pytest.raises(ValueError, match="unknown task"):
        synth.resolve_tasks(["pitch_compare", "nope"])
    with pytest.raises(ValueError, match="unknown split"):
        synth.build("/tmp/never", "validation", 1)
