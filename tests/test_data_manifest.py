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
