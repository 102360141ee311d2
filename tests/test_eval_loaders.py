"""Loaders: schema errors name the record and field, missing audio is listed up front, prompts are exact."""

import json
import shutil
from pathlib import Path

import pytest

from audior1.eval import benchmarks
from audior1.eval.items import MissingAudioError, SchemaError, check_audio

FIX = Path(__file__).parent / "fixtures" / "eval"
MC_PROMPT = ("Which of the following best describes the male vocal in the audio?\nPlease choose the answer from the "
             "following options, do not provide any additional explanations or content: \nA. Soft and melodic\n"
             "B. Aggressive and talking\nC. High-pitched and singing\nD. Whispering\n")


def test_mmau_prompt_is_step_audio_r1s_text_then_audio():
    items = benchmarks.get("mmau").load(FIX / "mmau.json")
    first = items[0]
    parts = first.messages[0]["content"]
    assert first.messages[0]["role"] == "user"
    assert parts[0] == {"type": "text", "text": MC_PROMPT}
    assert parts[1]["type"] == "audio"
    assert parts[1]["audio"] == str(FIX / "test-mini-audios" / "59a98d10-a56c-4ae3-9a8d-bd16b141a70c.wav")
    assert first.choices == ["Soft and melodic", "Aggressive and talking", "High-pitched and singing", "Whispering"]
    assert first.fields == {"task": "music", "difficulty": "easy", "sub-category": "Vocal characteristics",
                            "category": "Music Genre and Style", "dataset": "MusicCaps", "split": "test-mini"}
    dup = next(i for i in items if i.id == "fixture-duplicate-choices")
    assert "A. Man\nB. Man\nC. Woman\nD. Child\n" in dup.prompt_text()        # presented order kept
    assert len({i.prompt_hash() for i in items}) == len(items)


def test_prompt_template_override_and_other_prompts(tmp_path):
    items = benchmarks.get("mmau").load(FIX / "mmau.json", template="Q: {question}\n{options}Answer:",
                                        audio_root=tmp_path)
    assert items[0].prompt_text().startswith("Q: Which of the following") and items[0].prompt_text().endswith("Answer:")
    assert items[0].audio_paths()[0].startswith(str(tmp_path))
    default = benchmarks.get("mmau").load(FIX / "mmau.json")
    assert items[0].prompt_hash() != default[0].prompt_hash()
    mqa = benchmarks.get("spoken_mqa").load(FIX / "spoken_mqa_multi_step_reasoning.jsonl")
    assert [p["type"] for p in mqa[0].messages[0]["content"]] == ["text", "audio"]
    assert mqa[0].prompt_text() == "Solve the given math question step by step."
    assert mqa[0].answer == "18" and mqa[1].answer == "1234" and mqa[0].fields == {"split": "multi_step_reasoning"}
    bba = benchmarks.get("big_bench_audio").load(FIX / "big_bench_audio.jsonl")
    assert [p["type"] for p in bba[0].messages[0]["content"]] == ["audio", "text"]      # audio first
    assert bba[0].prompt_text().startswith('仅用 "valid" 或 "invalid"')
    assert bba[0].id == "0" and bba[2].answer == "7"
    ws = benchmarks.get("wild_speech").load(FIX / "wild_speech.jsonl")
    assert [p["type"] for p in ws[0].messages[0]["content"]] == ["audio"]             # audio only
    assert ws[1].meta["checklist"] == "- Gives a balanced view\n- Keeps it conversational"
    syn = benchmarks.get("synthetic").load(FIX / "synthetic" / "manifest.jsonl")
    rerooted = benchmarks.get("synthetic").load(FIX / "synthetic" / "manifest.jsonl", audio_root=tmp_path)
    assert rerooted[0].audio_paths()[0] == str(tmp_path / "audio" / "pitch-0001-a.wav")
    assert [p["type"] for p in syn[0].messages[0]["content"]] == ["text", "audio", "audio"]
    assert syn[0].audio_paths()[1] == str(FIX / "synthetic" / "audio" / "pitch-0001-b.wav")
    assert syn[1].prompt_text() == "How many beeps do you hear?"                       # open question: no options
    mmar = benchmarks.get("mmar").load(FIX / "mmar.json")
    assert "F. 6\n" in mmar[1].prompt_text()


def _write(tmp_path: Path, name: str, records) -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(records))
    else:
        path.write_text("".join(json.dumps(r) + "\n" if not isinstance(r, str) else r + "\n" for r in records))
    return path


def _mmau_records():
    return json.loads((FIX / "mmau.json").read_text())


@pytest.mark.parametrize("bench, name, mutate, record, field", [
    ("mmau", "m.json", lambda rs: rs[2].pop("answer"), 3, "answer"),
    ("mmau", "m.json", lambda rs: rs[1].update(answer="Alien"), 2, "answer"),
    ("mmau", "m.json", lambda rs: rs[0].update(choices="Man, Woman"), 1, "choices"),
    ("mmau", "m.json", lambda rs: rs[4].update(task="noise"), 5, "task"),
    ("mmau", "m.json", lambda rs: rs[3].update(difficulty="extreme"), 4, "difficulty"),
    ("mmau", "m.json", lambda rs: rs[5].update(id=rs[0]["id"]), 6, "id"),
    ("mmau", "m.json", lambda rs: rs[1].update(question="  "), 2, "question"),
])
def test_mmau_schema_errors_name_record_and_field(tmp_path, bench, name, mutate, record, field):
    rs = _mmau_records()
    mutate(rs)
    with pytest.raises(SchemaError) as e:
        benchmarks.get(bench).load(_write(tmp_path, name, rs))
    assert f"record {record}:" in str(e.value) and f"field {field!r}" in str(e.value)


def test_other_schema_errors(tmp_path):
    mmar = json.loads((FIX / "mmar.json").read_text())
    mmar[1]["choices"] = [str(i) for i in range(7)]
    with pytest.raises(SchemaError, match=r"record 2: field 'choices': expected 2–6 choices, got 7"):
        benchmarks.get("mmar").load(_write(tmp_path, "mmar.json", mmar))
    mmsu = [json.loads(line) for line in (FIX / "mmsu.jsonl").read_text().splitlines()]
    mmsu[3]["answer_gt"] = "to run"
    with pytest.raises(SchemaError, match=r"record 4: field 'answer_gt'"):
        benchmarks.get("mmsu").load(_write(tmp_path, "mmsu.jsonl", mmsu))
    with pytest.raises(SchemaError, match=r"record 2 \(line 3\): not valid JSON"):
        benchmarks.get("mmsu").load(_write(tmp_path, "bad.jsonl", [mmsu[0], "", "{oops"]))
    bba = [{"category": "navigate", "official_answer": "Yes", "file_name": "x.mp3", "id": 0},
           {"category": "geometry", "official_answer": "Yes", "file_name": "y.mp3", "id": 1}]
    with pytest.raises(SchemaError, match=r"record 2: field 'category'"):
        benchmarks.get("big_bench_audio").load(_write(tmp_path, "bba.jsonl", bba))
    with pytest.raises(SchemaError, match=r"record 1: field 'answer': no number"):
        benchmarks.get("spoken_mqa").load(_write(tmp_path, "mqa.jsonl", [{"audio": "a.wav", "answer": "#### none"}]))
    syn = [json.loads(line) for line in (FIX / "synthetic" / "manifest.jsonl").read_text().splitlines()]
    syn[1]["audio"] = []
    with pytest.raises(SchemaError, match=r"s\.jsonl:2: field 'audio'"):     # the data module's checks, line 2
        benchmarks.get("synthetic").load(_write(tmp_path, "s.jsonl", syn))
    ws = [{"audio": "a.wav", "user_query": "hi", "taskType": "Opinion Exchange"}]
    with pytest.raises(SchemaError, match=r"record 1: field 'id'"):
        benchmarks.get("wild_speech").load(_write(tmp_path, "w.jsonl", ws))
    with pytest.raises(SchemaError, match="record 1: expected an object"):
        benchmarks.get("mmau").load(_write(tmp_path, "list.json", [[1, 2]]))


def test_missing_audio_is_listed_before_any_call(tmp_path):
    shutil.copy(FIX / "mmau.json", tmp_path / "mmau.json")
    (tmp_path / "test-mini-audios").mkdir()
    (tmp_path / "test-mini-audios" / "fixture-voice-source.wav").write_bytes(b"RIFF")
    items = benchmarks.get("mmau").load(tmp_path / "mmau.json")
    with pytest.raises(MissingAudioError) as e:
        check_audio(items)
    assert len(e.value.missing) == 5 and "5 audio file(s) missing" in str(e.value)
    assert all("fixture-voice-source" not in m for m in e.value.missing)
    assert isinstance(e.value, FileNotFoundError)


def test_unknown_benchmark():
    with pytest.raises(ValueError, match="unknown benchmark"):
        benchmarks.get("nope")
    assert benchmarks.get("BBA").NAME == "big_bench_audio"


def test_synthetic_breakdown_keys_question_types_by_task():
    """Question types are named within a task ("compare" is pitch's and loudness's here): the per-type
    breakdown groups (task, question type) pairs, never merging two tasks' types."""
    from audior1.eval import report
    bench = benchmarks.get("synthetic")
    items = bench.load(FIX / "synthetic" / "manifest.jsonl")
    assert "task:question_type" in bench.BREAKDOWN and "question_type" not in bench.BREAKDOWN
    assert [report.breakdown_value(i, "task:question_type") for i in items] == \
        ["pitch:compare", "count:count", "loudness:compare"]
    assert items[0].fields["question_type"] == "compare"  # the record keeps the plain field
    records = [{"id": i.id, "sample": 0, "scores": {s: float(k == 0) for s in bench.SCORERS}, "parseable": True,
                "n_think_close": 1, "latency_s": 0.1} for k, i in enumerate(items)]
    summary = report.summarize(bench, items, records, {"sampling": {"n": 1}})
    groups = summary["breakdown"]["task:question_type"]
    assert set(groups) == {"pitch:compare", "count:count", "loudness:compare"}
    assert groups["pitch:compare"]["exact"]["pass@1"] == 1.0 and groups["loudness:compare"]["exact"]["pass@1"] == 0.0
    assert report.breakdown_value(items[0], "nope:other") == "unknown"
