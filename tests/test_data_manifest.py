"""Manifest I/O: round trip, path resolution, validation errors that name file, line and field; the MCQ prompt."""

import json

import pytest

from audior1.data.manifest import ManifestError, read_manifest, write_manifest


def item(**kw):
    base = {"id": "a", "audio": ["audio/a.wav"], "question": "Which tone is higher?",
            "choices": ["the first tone", "the second tone"], "answer": "the second tone", "task": "pitch_compare",
            "question_type": "which_higher", "category": "music", "difficulty": "easy",
            "meta": {"freqs_hz": [440.0, 660.0]}, "caption": "Two tones.", "text_question": "Two tones. Which?",
            "text_cot": "660 Hz is higher.", "surrogate_cot": "No words."}
    base.update(kw)
    return base


@pytest.fixture
def root(tmp_path):
    (tmp_path / "audio").mkdir()
    for name in ("a.wav", "b.wav"):
        (tmp_path / "audio" / name).write_bytes(b"RIFF")
    return tmp_path


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_round_trip_resolves_and_relativises_paths(root):
    items = [item(), item(id="b", audio=[str(root / "audio" / "b.wav")], choices=None, answer="7")]
    path = write_manifest(root / "m.jsonl", items)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert raw[1]["audio"] == ["audio/b.wav"]  # absolute paths under the manifest's directory become relative
    assert list(raw[0])[:10] == ["id", "audio", "question", "choices", "answer", "task", "question_type",
                                 "category", "difficulty", "meta"]
    back = read_manifest(path)
    assert back[0]["audio"] == [str(root / "audio" / "a.wav")]
    assert back[1]["answer"] == "7" and back[1]["choices"] is None
    assert write_manifest(root / "m2.jsonl", items).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("row, field, message", [
    ("{not json", None, "invalid JSON"),
    (item(answer="the third tone"), "answer", "not one of the choices"),
    (item(choices=None, answer="many"), "answer", "number as a string"),
    (item(category="noise"), "category", "one of sound, music, speech"),
    (item(difficulty="trivial"), "difficulty", "one of easy"),
    (item(audio=[]), "audio", "non-empty list"),
    (item(audio=["audio/zzz.wav"]), "audio", "file not found"),
    (item(choices=["x", "x"], answer="x"), "choices", "repeat"),
    ({k: v for k, v in item().items() if k != "task"}, "task", "missing"),
    (item(caption=3), "caption", "string"),
])
def test_errors_name_file_line_and_field(root, row, field, message):
    path = write_lines(root / "bad.jsonl", [item(id="ok"), "", row])
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    text = str(e.value)
    assert f"{path}:3" in text and message in text
    if field:
        assert f"field '{field}'" in text


def test_duplicate_ids_and_missing_manifest(root):
    with pytest.raises(ManifestError, match="already used on line 1"):
        read_manifest(write_lines(root / "dup.jsonl", [item(), item()]))
    with pytest.raises(FileNotFoundError):
        read_manifest(root / "nope.jsonl")


def test_audio_check_can_be_skipped(root):
    path = write_lines(root / "m.jsonl", [item(audio=["elsewhere/x.wav"])])
    assert read_manifest(path, check_files=False)[0]["audio"] == [str(root / "elsewhere" / "x.wav")]


def schema_meta(**changes):
    """A well-formed per-event meta (two tones over background noise), with `changes` applied to event 0."""
    ev = [{"kind": "tone", "index": 1, "position": {"of_kind": 1}, "onset_sec": 0.1, "duration_sec": 0.4,
           "f0_hz": 440.0, "note": "A4", "level_dbfs": -20.0},
          {"kind": "tone", "index": 2, "position": {"of_kind": 2}, "onset_sec": 0.7, "duration_sec": 0.4,
           "f0_hz": 660.0, "note": "E5", "level_dbfs": -20.0}]
    ev[0].update(changes)
    bg = {"colour": "pink", "snr_db": 20.0, "level_dbfs": -40.0}
    return {"events": ev, "segments": [{"name": "tones", "onset_sec": 0.1, "duration_sec": 1.0, "events": [1, 2]},
                                       {"name": "background", "onset_sec": 0.0, "duration_sec": 1.3, "events": [],
                                        **bg}],
            "clip": {"duration_sec": 1.3, "level_dbfs": -22.0, "background": bg}}


def test_meta_schema_problems_are_named():
    from audior1.data.manifest import meta_problems
    assert meta_problems(schema_meta()) == []
    for changes, says in [({"kind": "thing"}, "events[0].kind"), ({"index": 2}, "events[0].index"),
                          ({"onset_sec": 1.2}, "ends at"), ({"words_per_s": 3.0}, "ending in '_s'"),
                          ({"position": {}}, "of_kind"), ({"level_dbfs": None}, "level_dbfs"),
                          ({"f0_hz": "high"}, "f0_hz"), ({"onset_sec": 0.8}, "time order")]:
        problems = meta_problems(schema_meta(**changes))
        assert any(says in p for p in problems), (changes, problems)
    bad = schema_meta()
    bad["segments"][0]["events"] = [3]
    assert any("segments[0].events" in p for p in meta_problems(bad))
    bad = schema_meta()
    bad["clip"]["background"] = {"colour": "pink"}
    assert any("clip.background" in p for p in meta_problems(bad))


def test_reading_checks_the_event_schema_where_present(root):
    good = write_lines(root / "good.jsonl", [item(meta=schema_meta()), item(id="b", meta={"f0": [220]})])
    assert len(read_manifest(good)) == 2  # meta without `clip` (e.g. real benchmarks) is not held to it
    path = write_lines(root / "bad.jsonl", [item(meta=schema_meta(duration_sec=0))])
    with pytest.raises(ManifestError, match=r"bad\.jsonl:1: field 'meta': meta\.events\[0\]"):
        read_manifest(path)
