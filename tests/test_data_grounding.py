"""The grounding scorer: claim extraction, tolerances, ranking of chains, vocabulary mode, the CLI."""

import json
import re

import pytest

from audior1.data import speech, synth
from audior1.data.cli import main as data_main
from audior1.data.cli import reasoning_of
from audior1.data.grounding import TOL, GroundingReport, facts_from_meta, grounding_score, vocabulary_score
from audior1.data.manifest import write_manifest

META = {"freqs_hz": [440.0, 660.0], "notes": ["A4", "E5"], "durations_s": [0.5, 0.3], "level_db": -20.0,
        "counts": {"tone": 5, "high tone": 3, "low tone": 2}, "bpm": 120.0,
        "labels": {"higher": "second", "lower": "first", "chord": "minor", "waveform": "square",
                   "background": "pink"},
        "transcript": "here come three beeps"}

UNITS = {"hz": "hz", "dbfs": "db", "db": "db", "s": "s", "bpm": "bpm", "semitones": "semitones"}
NUM_UNIT = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?) ?(Hz|dBFS|dB|s|BPM|semitones)\b")
COUNT = re.compile(r"(?<![\w.])(\d+) (beeps|clicks|words|notes|high beeps|low beeps|spoken digits)\b")


def wrong_measurement(chain: str, meta: dict) -> str:
    """The chain with its first measurement (or count) changed to a value that matches no fact in meta."""
    m = NUM_UNIT.search(chain)
    if m:
        unit = UNITS[m.group(2).lower()]
        known = facts_from_meta(meta).numbers[unit]
        v = float(m.group(1))
        size = abs if unit == "semitones" else (lambda x: x)
        for cand in (v * 1.6 + 1, v * 2.3 + 3, v * 0.45 - 2, v * 3.1 + 7, v + 40, v - 40, v + 90):
            if all(abs(size(cand) - size(k)) > 2 * TOL[unit](k) for k in known):
                return chain[:m.start(1)] + f"{cand:.2f}" + chain[m.end(1):]
    m = COUNT.search(chain)
    assert m, f"no measurement to perturb in: {chain}"
    return chain[:m.start(1)] + str(int(m.group(1)) + 3) + chain[m.end(1):]


def statuses(text, meta=META):
    return {c.text: c.status for c in grounding_score(text, meta).claims}


def test_numbers_with_units_are_checked_with_tolerance():
    s = statuses("The first tone is about 445 Hz, the second 0.66 kHz; later 1000 Hz; it lasts 500 ms at -21 dBFS.")
    assert s["445 hz"] == "grounded" and s["0.66 khz"] == "grounded"
    assert s["1000 hz"] == "contradicted"
    assert s["500 ms"] == "grounded" and s["-21 dbfs"] == "grounded"
    assert statuses("about 118 BPM, in the 110-130 BPM range")["110-130 bpm"] == "grounded"
    assert statuses("about 60 BPM")["60 bpm"] == "contradicted"


def test_counts_relations_notes_labels_quotes():
    s = statuses('The voice says "here come three beeps", but I count five beeps: 3 high beeps and 2 low beeps. '
                 "The second tone is higher than the first. The notes are A4 and E5, not C4. A minor chord, "
                 "a square wave, over pink background noise.")
    assert s["five beeps"] == "grounded" and s["3 high beeps"] == "grounded" and s["2 low beeps"] == "grounded"
    assert s["second tone is higher"] == "grounded"
    assert s["A4"] == "grounded" and s["E5"] == "grounded" and s["C4"] == "contradicted"
    assert s["minor"] == "grounded" and s["square wave"] == "grounded" and s["pink background noise"] == "grounded"
    assert s['"here come three beeps"'] == "grounded"  # a quote is checked against the transcript
    s = statuses('The speaker says "four beeps", so there are three beeps and the first tone is higher.')
    assert s['"four beeps"'] == "contradicted" and s["three beeps"] == "contradicted"
    assert s["first tone is higher"] == "contradicted"


def test_negated_comparisons_and_unknown_facts():
    s = statuses("The first tone is not higher. The chord sounds like a sawtooth wave.", {"labels": {}})
    assert "first tone is not higher" not in s
    assert s["sawtooth wave"] == "unverifiable"


def test_score_orders_grounded_surrogate_and_wrong_chains():
    good = grounding_score("I hear five beeps at about 440 Hz, each 0.5 s long, so the answer is 5.", META)
    surrogate = grounding_score("The transcript says three beeps, so there are three beeps.", META)
    wrong = grounding_score("I hear five beeps at about 880 Hz, each 0.5 s long, so the answer is 5.", META)
    none = grounding_score("Let me think. The answer is B.", META)
    assert isinstance(good, GroundingReport) and good.ok and good.grounded == 3 and good.contradicted == 0
    assert good.score > wrong.score > surrogate.score == 0
    # Exact values, by hand from score = g / (g + 2·contradicted + 0.25·unverifiable + 1): a contradiction
    # costs twice a grounded claim (wrong: 2 grounded, 1 contradicted → 2 / (2 + 2 + 1)).
    assert good.score == pytest.approx(3 / (3 + 1)) and wrong.score == pytest.approx(2 / (2 + 2 + 1))
    no_waveform = {**META, "labels": {k: v for k, v in META["labels"].items() if k != "waveform"}}
    unsure = grounding_score("I hear five beeps at about 440 Hz over a sawtooth wave.", no_waveform)
    assert (unsure.grounded, unsure.contradicted, unsure.unverifiable) == (2, 0, 1)
    assert unsure.score == pytest.approx(2 / (2 + 0.25 + 1), abs=1e-4)
    assert surrogate.contradicted == 2 and wrong.contradicted == 1
    assert none.score == 0 and not none.ok
    assert not wrong.ok and not surrogate.ok
    d = good.to_dict()
    assert d["ok"] is True and d["claims"][0]["status"] == "grounded"


def test_a_restated_answer_is_not_evidence():
    meta = {"bpm": 112.0, "labels": {"waveform": "square"}}
    assert not grounding_score("The answer is 105-120 BPM.", meta, answer="105–120 BPM").ok
    assert grounding_score("Clicks every 0.54 s, about 112 BPM: 105-120 BPM.", {**meta, "period_s": 0.536},
                           answer="105–120 BPM").ok
    assert not grounding_score("It is a square wave.", meta).ok  # a label alone may only restate the answer


def test_refusals_and_vocabulary_mode():
    r = grounding_score("I'm sorry, but I cannot hear audio. Based on the text, the answer is A.", None)
    assert r.refusal and r.mode == "vocabulary" and not r.ok
    acoustic = "The voice is breathy and low-pitched. The tempo is slow with a steady beat."
    textual = "The transcript mentions a party. The caption says people are happy."
    assert vocabulary_score(acoustic) == 1.0 and vocabulary_score(textual) == 0.0
    assert grounding_score(acoustic).score > grounding_score(textual).score


@pytest.mark.parametrize("task", list(synth.FAMILIES))
def test_reference_chains_are_grounded_and_rank_first(task):
    if synth.FAMILIES[task].needs_speech and not speech.available():
        pytest.skip(f"{task} needs espeak-ng, which is not installed (apt-get install espeak-ng)")
    for i in range(6):
        it, _ = synth.make_item(task, "test", 4, i)
        meta = it["meta"]
        cot = grounding_score(it["text_cot"], meta, it["answer"])
        cap = grounding_score(it["caption"], meta)
        assert cot.ok, (it["id"], it["text_cot"], [c for c in cot.claims if c.status != "grounded"])
        assert cap.contradicted == 0, (it["id"], [c for c in cap.claims if c.status == "contradicted"])
        sur = grounding_score(it["surrogate_cot"], meta)
        wrong = wrong_measurement(it["text_cot"], meta)
        bad = grounding_score(wrong, meta)
        assert cot.score > sur.score, (it["id"], cot.score, sur.score)
        assert cot.score > bad.score and bad.contradicted >= 1, (it["id"], wrong)
        if meta.get("trap"):
            assert sur.contradicted >= 1  # following the words contradicts the sound


def test_reasoning_is_read_from_think_blocks():
    assert reasoning_of({"id": "x", "response": "<think>\nfive beeps\n</think>\n5"}) == "five beeps"
    assert reasoning_of({"id": "x", "reasoning": "r", "response": "<think>t</think>"}) == "r"
    assert reasoning_of({"id": "x", "text": "plain"}) == "plain"


def test_verify_grounding_command(tmp_path, capsys):
    items = [synth.make_item(t, "dev", 0, i)[0] for t in ("pitch_compare", "count_events") for i in range(3)]
    for it in items:
        it["audio"] = ["missing.wav"]  # verify-grounding does not need the audio files
    man = write_manifest(tmp_path / "m.jsonl", items)
    preds = tmp_path / "p.jsonl"
    with preds.open("w") as f:
        for k, it in enumerate(items):
            chain = it["text_cot"] if k % 2 == 0 else it["surrogate_cot"]
            f.write(json.dumps({"id": it["id"], "response": f"<think>\n{chain}\n</think>\n{it['answer']}"}) + "\n")
        f.write(json.dumps({"id": "not-in-manifest", "reasoning": "The pitch rises and the tone is loud."}) + "\n")
    assert data_main(["verify-grounding", str(man), str(preds), "--out", str(tmp_path / "r.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "pitch_compare" in out and "ALL" in out and "(unknown id)" in out
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 7
    assert [r["ok"] for r in rows[:6]] == [True, False, True, False, True, False]
    assert rows[-1]["mode"] == "vocabulary" and rows[-1]["score"] > 0


def test_meta_key_units_cannot_collide():
    """Numbers are read by their key's unit suffix: `_sec` and `_s` are seconds, `_dbfs` a level, and rates
    (`_per_sec`, `_wpm`) are never seconds: 'words_per_s' used to make "4.8 s" look grounded."""
    from audior1.data.grounding import key_unit
    assert [key_unit(k) for k in ("onset_sec", "durations_s", "level_dbfs", "snr_db", "f0_hz", "bpm",
                                  "interval_semitones", "words_per_sec", "speaking_rate_wpm", "rate_wpm")] == \
        ["s", "s", "db", "db", "hz", "bpm", "semitones", None, None, None]
    meta = {"events": [{"kind": "speech", "index": 1, "position": {"of_kind": 1}, "onset_sec": 0.2,
                        "duration_sec": 1.5, "level_dbfs": -22.0, "words_per_sec": 4.8}]}
    facts = facts_from_meta(meta)
    assert facts.numbers["s"] == [0.2, 1.5] and facts.numbers["db"] == [-22.0]
    assert grounding_score("The speech lasts about 1.5 s.", meta).grounded == 1
    assert grounding_score("The speech lasts about 4.8 s.", meta).contradicted == 1


@pytest.mark.parametrize("task", [t for t in synth.FAMILIES if t not in ("word_count",)])
def test_surrogate_chains_measure_nothing(task):
    """The surrogate chain (now ending on its own guess) still states no measurement, so it is never kept."""
    if synth.FAMILIES[task].needs_speech and not speech.available():
        pytest.skip(f"{task} needs espeak-ng")
    for i in range(4):
        it, _ = synth.make_item(task, "test", 6, i)
        assert not grounding_score(it["surrogate_cot"], it["meta"], it["surrogate_answer"]).ok, it["id"]
