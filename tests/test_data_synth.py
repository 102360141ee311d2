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


# ---------------------------------------------------------------------------------------------- meta schema
# The count noun of each family's sound events (`meta.events[i].kind`); speech is the announcement of a trap or
# the voice of a speech family.
EVENT_KINDS = {"pitch_compare": {"tone"}, "melody_contour": {"note"}, "interval_size": {"note"},
               "chord_quality": {"note"}, "count_events": {"beep", "click"}, "tempo": {"click"},
               "loudness_trend": {"tone", "beep", "noise"}, "duration_compare": {"tone"}, "timbre": {"tone"},
               "noise_colour": {"noise"}, "voice_pitch": {"speech"}, "speech_rate": {"speech"},
               "word_count": {"word"}, "trap_count": {"speech", "beep"}, "trap_chord": {"speech", "note"},
               "trap_pitch": {"speech", "tone"}, "high_low_count": {"beep"}, "melody_range": {"note"},
               "pitch_and_duration": {"tone"}, "fsdd_digit": {"digit"}, "fsdd_arith": {"digit"},
               "fsdd_speaker": {"digit"}}
COUNT_KINDS = {"tone": ("tone", "beep"), "note": ("note",), "click": ("click",), "word": ("word",),
               "digit": ("digit",)}


def close(a, b, tol=0.0015):
    return abs(a - b) <= tol


def disagreements(it) -> list[str]:
    """Where the per-event records (`events`, `segments`, `clip`) disagree with the item's other facts:
    counts, frequencies, note names, durations, labels, transcript, digits, background, clip length."""
    m, out = it["meta"], []
    ev = m["events"]
    kinds = {e["kind"] for e in ev}
    if not kinds <= EVENT_KINDS[it["task"]]:
        out.append(f"event kinds {kinds} for {it['task']}")
    sounds = [e for e in ev if not (m.get("trap") and e["kind"] == "speech")]  # what the question is about
    for noun, n in (m.get("counts") or {}).items():
        qual, _, base = noun.rpartition(" ")
        sel = [e for e in ev if e["kind"] in COUNT_KINDS[base] and (not qual or e["position"].get("register") == qual)]
        k = len(sel) if sel or base != "word" else sum(e.get("words", 0) for e in ev if e["kind"] == "speech")
        if k != n:
            out.append(f"counts[{noun!r}] = {n} but {k} such events")
    pitched = [e for e in sounds if "f0_hz" in e and e["kind"] != "speech"]
    if "freqs_hz" in m and sorted({e["f0_hz"] for e in pitched}) != sorted(set(m["freqs_hz"])):
        out.append(f"freqs_hz {m['freqs_hz']} vs event f0s {[e['f0_hz'] for e in pitched]}")
    if "notes" in m and [e["note"] for e in pitched] != m["notes"]:
        out.append(f"notes {m['notes']} vs event notes {[e.get('note') for e in pitched]}")
    by_melody = [[e["note"] for e in pitched if e["position"].get("melody") == k] for k in (1, 2)]
    if "melodies" in m and by_melody != m["melodies"]:
        out.append("melodies differ from the notes of each melody group")
    if "sequence" in m and [e["position"]["register"] for e in sounds] != m["sequence"]:
        out.append("sequence differs from the registers of the beeps")
    durs = [e["duration_sec"] for e in sounds]
    if "durations_s" in m:
        if len(m["durations_s"]) == len(durs):
            if not all(close(a, b) for a, b in zip(m["durations_s"], durs)):
                out.append(f"durations_s {m['durations_s']} vs events {durs}")
        elif not all(any(close(d, x) for x in durs + [s["duration_sec"] for s in m["segments"]])
                     for d in m["durations_s"]):
            out.append(f"durations_s {m['durations_s']} not among event or segment durations")
    lab = m.get("labels", {})
    if len(pitched) == 2 and "higher" in lab:
        if lab["higher"] != ("first" if pitched[0]["f0_hz"] > pitched[1]["f0_hz"] else "second"):
            out.append("labels.higher disagrees with the events' f0")
    if len(sounds) == 2 and "longer" in lab:
        if lab["longer"] != ("first" if durs[0] > durs[1] else "second"):
            out.append("labels.longer disagrees with the events' durations")
    if "transcript" in m:
        said = [e for e in ev if e["kind"] in ("speech", "word", "digit")]
        text = said[0]["text"] if said[0]["kind"] == "speech" else " ".join(e["text"] for e in said)
        if text != m["transcript"]:
            out.append(f"spoken events say {text!r}, transcript {m['transcript']!r}")
        if not any(s["name"] in ("speech", "announcement") and s.get("text") == m["transcript"] for s in m["segments"]):
            out.append("no speech or announcement segment holds the transcript")
    if "digits" in m:
        digits = [e for e in ev if e["kind"] == "digit"]
        if [e["digit"] for e in digits] != m["digits"] or [e["speaker"] for e in digits] != m["speakers"] \
                or [e["file"] for e in digits] != m["files"]:
            out.append("digit events disagree with digits / speakers / files")
    if "speech_end_s" in m:
        a = next(e for e in ev if e["kind"] == "speech")
        if not close(a["onset_sec"] + a["duration_sec"], m["speech_end_s"], 0.002):
            out.append("the announcement event does not end at speech_end_s")
        if not m["speech_end_s"] <= min(e["onset_sec"] for e in sounds):
            out.append("a sound starts before the announcement ends")
    if m["clip"]["duration_sec"] != m["clip_s"]:
        out.append(f"clip.duration_sec {m['clip']['duration_sec']} != clip_s {m['clip_s']}")
    bg = m.get("background")
    want = None if bg is None else {"colour": bg["colour"], "snr_db": bg["snr_db"], "level_dbfs": bg["level_db"]}
    if m["clip"]["background"] != want:
        out.append(f"clip.background {m['clip']['background']} vs background {bg}")
    if any(s["name"] == "background" for s in m["segments"]) != (bg is not None):
        out.append("a background segment exactly when there is background noise")
    for s in m["segments"]:
        inside = [e for e in ev if e["index"] in s["events"]]
        if any(e["onset_sec"] < s["onset_sec"] - 1e-9 or e["onset_sec"] + e["duration_sec"] >
               s["onset_sec"] + s["duration_sec"] + 0.002 for e in inside):
            out.append(f"segment {s['name']} does not cover its events")
    return out


def test_every_family_carries_the_event_schema_and_it_agrees_with_the_other_facts():
    """Every family, every (question type, difficulty): `events`, `segments` and `clip` are schema-valid
    (`manifest.meta_problems`) and agree with the counts, frequencies, notes, durations, labels, transcript and
    background the item already states; a manifest holding them reads back."""
    from audior1.data.manifest import meta_problems
    for task in tasks():
        n = len(synth.FAMILIES[task].qtypes) * len(DIFFICULTIES) * 2
        for i in range(n):
            it, audio = synth.make_item(task, "dev", 7, i)
            m = it["meta"]
            assert meta_problems(m) == [], (it["id"], meta_problems(m))
            assert disagreements(it) == [], (it["id"], disagreements(it))
            assert m["clip"]["duration_sec"] == round(len(audio[0]) / 16000, 3)
            peak = max(e["level_dbfs"] for e in m["events"] + m["segments"] if "level_dbfs" in e)
            assert m["clip"]["level_dbfs"] <= peak + 0.5  # the clip's RMS never exceeds its loudest sound's


def test_event_positions_name_the_groups_a_question_refers_to():
    it, _ = synth.make_item("high_low_count", "test", 0, 0)
    ev = it["meta"]["events"]
    for reg in ("high", "low"):
        mine = [e for e in ev if e["position"]["register"] == reg]
        assert [e["position"]["in_register"] for e in mine] == list(range(1, len(mine) + 1))
        assert len({e["f0_hz"] for e in mine}) == 1
    it, _ = synth.make_item("melody_range", "test", 0, 0)
    segs = [s for s in it["meta"]["segments"] if s["name"] == "melody"]
    assert [s["position"] for s in segs] == [1, 2] and segs[0]["onset_sec"] < segs[1]["onset_sec"]
    per = len(it["meta"]["melodies"][0])
    assert [e["position"]["in_melody"] for e in it["meta"]["events"]] == list(range(1, per + 1)) * 2
    it, _ = synth.make_item("chord_quality", "test", 0, 0)
    assert sorted(e["role"] for e in it["meta"]["events"]) == ["fifth", "root", "third"]
    assert len({e["onset_sec"] for e in it["meta"]["events"]}) == 1  # the notes sound together


def test_no_rate_key_ends_in_seconds():
    """`words_per_s` read as seconds was a bug: rates end in `_per_sec` or `_wpm`, durations in `_sec` / `_s`."""
    def keys(d):
        if isinstance(d, dict):
            for k, v in d.items():
                yield k
                yield from keys(v)
        elif isinstance(d, list):
            for v in d:
                yield from keys(v)
    for task in tasks():
        it, _ = synth.make_item(task, "test", 0, 0)
        bad = [k for k in keys(it["meta"]) if "_per_" in k and not k.endswith(("_per_sec", "_wpm"))]
        assert not bad, (task, bad)


# ---------------------------------------------------------------------------------------------- data fixes
# Digests of the quickstart families' generated items (question, choices, answer, caption, text_cot and WAV
# bytes; seed 5, test split, items 0-8), taken before the meta schema and the data fixes of issue 13: the
# README's quickstart numbers rest on these items staying exactly what they were.
QUICKSTART_DIGESTS = {
    "noise_colour": "f1e9274d95d010e5c756c7241eba6f485d51190d939bc597914fbdbb822d4566",
    "timbre": "4684f006da6a4fcbc840262ede6a2243c76ca4ff658ffaccc48c24a22b9f5e38",
    "count_events": "824736170b68ea919a4a1ca1d2b440654f94fd6c49d5a2bb83330031dd044804",
}


@pytest.mark.parametrize("task", sorted(QUICKSTART_DIGESTS))
def test_quickstart_items_are_unchanged(task):
    import json

    from audior1.data import dsp
    h = hashlib.sha256()
    for i in range(9):
        it, audio = synth.make_item(task, "test", 5, i)
        h.update(json.dumps([it[k] for k in ("question", "choices", "answer", "caption", "text_cot")]).encode())
        for a in audio:
            h.update(dsp.to_wav_bytes(a))
    assert h.hexdigest() == QUICKSTART_DIGESTS[task], f"{task}: generated items changed (audio or renderings)"


def test_high_low_count_caption_states_measurements_not_the_counts():
    """The caption lists each beep's register in order and the two pitches; it never states how many are
    high or low (that is `count_high`'s answer and decides `more_high`)."""
    import re
    for i in range(24):
        it, _ = synth.make_item("high_low_count", "test", 0, i)
        cap, m = it["caption"], it["meta"]
        assert ", ".join(m["sequence"]) in cap
        assert not re.search(r"\b(\d+|one|two|three|four|five|six|seven|eight)\s+(high|low)\b", cap), cap
        # the only numbers: the number of beeps, then measurements with their units
        numbers = re.sub(r"\d+ (Hz|dB)", "", cap)
        assert re.findall(r"\d+", numbers) == [str(len(m["sequence"]))], cap


@pytest.mark.parametrize("wpm, fast, says", [
    (85, False, "well below an ordinary conversational pace"), (110, False, "below an ordinary"),
    (140, False, "an ordinary conversational pace"), (148, False, "an ordinary conversational pace"),
    (168, False, "an ordinary conversational pace"), (230, True, "well above an ordinary"),
])
def test_speech_rate_wording_follows_the_value(wpm, fast, says):
    text = speech.speech_rate_verdict(wpm, fast)
    assert says in text and text.endswith(f"this is {'fast' if fast else 'slow'} speech.")
    if 120 <= wpm <= 170:
        assert "below an ordinary" not in text and "above an ordinary" not in text


@pytest.mark.parametrize("f0, sex, high, says, never", [
    (80, "male", False, "below the usual range of a man's", "ordinary"),
    (95, "male", False, "deep end of a man's usual speaking range", "high"),
    (108, "male", True, "ordinary pitch for a man's speaking voice", "high for a speaking voice"),
    (135, "male", True, "ordinary pitch for a man's speaking voice", "high for a speaking voice"),
    (165, "male", True, "above the usual range of a man's", "woman"),
    (220, "female", True, "within a woman's usual speaking range", " a man's"),
])
def test_voice_pitch_wording_follows_the_value(f0, sex, high, says, never):
    text = speech.voice_pitch_verdict(f0, sex, high)
    assert says in text and never not in text and text.endswith(f"{'high' if high else 'low'}-pitched.")


@pytest.mark.skipif(not speech.available(), reason=NEEDS_ESPEAK)
def test_speech_reference_chains_say_only_what_the_values_support():
    import re
    for i in range(36):
        it, _ = synth.make_item("speech_rate", "train", 3, i)
        wpm = int(re.search(r"or about (\d+) per minute", it["text_cot"]).group(1))
        fast = it["answer"] == "quickly"
        assert it["text_cot"].endswith(speech.speech_rate_verdict(wpm, fast)), it["text_cot"]
        assert (wpm > speech.QUICK_WPM) if fast else (wpm <= speech.CONVERSATIONAL_WPM[1]), (wpm, it["id"])
        it, _ = synth.make_item("voice_pitch", "train", 3, i)
        f0 = it["meta"]["f0_hz"]
        if f0 <= speech.MALE_F0_HZ[1] and it["meta"]["labels"]["gender"] == "male":
            assert "high for a speaking voice" not in it["text_cot"], it["text_cot"]
        assert (f0 < speech.DEEP_F0_HZ) == (it["answer"] == "low-pitched"), (f0, it["id"])


GUESSING = [t for t in synth.FAMILIES if t not in ("word_count", "trap_count", "trap_chord", "trap_pitch")]


def test_surrogate_guesses_are_independent_of_the_answer():
    """Where the surrogate chain has nothing to go on, its pick is a guess drawn from its own stream: right
    at about chance rate, never by construction, and the chain ends on the answer it records."""
    hits = chance = n = 0
    for task in [t for t in GUESSING if t in tasks()]:
        for i in range(36):
            it, _ = synth.make_item(task, "test", 2, i)
            assert it["surrogate_cot"].endswith(f"pick the answer {it['surrogate_answer']}."), it["id"]
            if it["choices"]:
                assert it["surrogate_answer"] in it["choices"]
                chance += 1 / len(it["choices"])
            else:
                assert it["surrogate_answer"].isdigit()
                chance += 1 / {"count_events": 8, "interval_size": 12, "high_low_count": 8}[task]
            hits += it["surrogate_answer"] == it["answer"]
            n += 1
    assert abs(hits - chance) / n < 0.06, (hits, chance, n)


def test_the_surrogate_stream_moves_no_other_draw(monkeypatch):
    """The guess comes from `Spec.side_rng("surrogate")`: with no guess drawn at all, every other field of the
    item is what it was, so the guess takes nothing from the item's main random stream."""
    from audior1.data import sound
    it, _ = synth.make_item("pitch_compare", "test", 0, 3)
    monkeypatch.setattr(sound, "guess", lambda spec, choices, numeric=None: choices[0])
    other, _ = synth.make_item("pitch_compare", "test", 0, 3)
    assert other["surrogate_answer"] == other["choices"][0]
    for k in ("question", "choices", "answer", "caption", "text_cot", "meta"):
        assert it[k] == other[k]
