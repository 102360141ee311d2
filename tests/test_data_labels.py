"""Every generated label agrees with an independent measurement of the audio (audior1.data.measure).

The generators never see these measurements and the measurements never read the generation parameters
(except where a segment boundary is needed: the end of the spoken announcement in trap items).
"""

import math

import numpy as np
import pytest

from audior1.data import measure, speech
from audior1.data.synth import FAMILIES, make_item

SEEDS = (0, 1, 2)
N = 9  # items per family and seed: every (question type, difficulty) combination of every family


def semis(a, b):
    return 12 * math.log2(b / a)


TONES = {"rel": 0.5, "min_len": 0.03}  # tonal events last >= 60 ms and sit 12+ dB over the background


def seg_pitches(x, k=None, **kw):
    segs = measure.segments(x, **{**TONES, **kw})
    if k is not None:
        assert len(segs) == k, f"expected {k} events, found {len(segs)}: {segs}"
    return [measure.peak_hz(x[int(a * 16000):int(b * 16000)]) for a, b in segs], segs


def two_tone_order(x, start=0.0):
    (f1, f2), _ = seg_pitches(x[int(start * 16000):], 2)
    return f1, f2


def check_pitch_compare(it, x):
    f1, f2 = two_tone_order(x)
    higher = "second" if f2 > f1 else "first"
    assert it["meta"]["labels"]["higher"] == higher
    assert abs(abs(semis(f1, f2)) - it["meta"]["difference_semitones"]) < 0.15


def check_melody_contour(it, x):
    freqs, _ = seg_pitches(x, len(it["meta"]["notes"]))
    steps = [round(semis(a, b)) for a, b in zip(freqs, freqs[1:])]
    assert steps == it["meta"]["steps_semitones"]
    signs = [s > 0 for s in steps]
    turn = signs.index(not signs[0]) if (not signs[0]) in signs else len(signs)
    contour = ("rising" if signs[0] else "falling") if turn == len(signs) else \
        ("rising then falling" if signs[0] else "falling then rising")
    assert all(s == signs[turn] for s in signs[turn:])  # at most one turn
    assert it["meta"]["labels"]["contour"] == contour
    end = semis(freqs[0], freqs[-1])
    assert it["meta"]["labels"]["end_vs_start"] == ("higher" if end > 0.5 else "lower" if end < -0.5 else "same")


def check_interval_size(it, x):
    f1, f2 = two_tone_order(x)
    assert round(abs(semis(f1, f2))) == it["meta"]["interval_semitones"]
    if it["choices"] is None:
        assert it["answer"] == str(round(abs(semis(f1, f2))))


def chord_quality_of(x):
    peaks = measure.spectral_peaks(x, 3)
    midis = sorted(round(69 + 12 * math.log2(f / 440)) for f, _ in peaks)
    pcs = {m % 12 for m in midis}
    for root in pcs:
        rel = {(p - root) % 12 for p in pcs}
        if rel == {0, 4, 7}:
            return "major"
        if rel == {0, 3, 7}:
            return "minor"
    return None


def check_chord_quality(it, x):
    assert chord_quality_of(x) == it["meta"]["labels"]["chord"]


def check_count_events(it, x):
    segs = measure.segments(x, min_gap=0.04, min_len=0.005, rel=0.5)
    assert len(segs) == int(next(iter(it["meta"]["counts"].values())))


def check_tempo(it, x):
    bpm = measure.tempo_bpm(x)
    lo, hi = (float(v) for v in it["meta"]["labels"]["tempo"].split(" ")[0].split("–"))
    assert lo <= bpm <= hi, (bpm, lo, hi)


def check_loudness_trend(it, x):
    change = measure.loudness_change_db(x)
    label = it["meta"]["labels"]["loudness"]
    measured = "crescendo" if change > 3 else "decrescendo" if change < -3 else "steady"
    assert measured == label, (change, label)


def check_duration_compare(it, x):
    _, segs = seg_pitches(x, 2)
    d1, d2 = (b - a for a, b in segs)
    assert it["meta"]["labels"]["longer"] == ("first" if d1 > d2 else "second")


def check_timbre(it, x):
    f0 = measure.peak_hz(x)
    h = measure.harmonic_profile(x, f0, 3)
    wave = "sine" if max(h[1], h[2]) < 0.05 else ("square" if h[1] < 0.1 else "sawtooth")
    assert wave == it["meta"]["labels"]["waveform"], h


def check_noise_colour(it, x):
    a, b = measure.active_span(x)
    tilt = measure.spectral_tilt_db_per_octave(x[int(a * 16000):int(b * 16000)])
    colour = min({"white": 0.0, "pink": -3.0, "brown": -6.0}.items(), key=lambda kv: abs(kv[1] - tilt))[0]
    assert colour == it["meta"]["labels"]["noise"], tilt


def check_voice_pitch(it, x):
    f0 = measure.voice_f0_hz(x)
    assert (f0 > speech.VOICE_PITCH_SPLIT_HZ) == (it["meta"]["labels"]["voice_pitch"] == "high"), f0


def check_speech_rate(it, x):
    a, b = measure.active_span(x, min_gap=0.3)
    wps = it["meta"]["counts"]["word"] / (b - a)
    assert (wps > 3.2) == (it["meta"]["labels"]["rate"] == "fast"), wps


def check_word_count(it, x):
    assert len(measure.segments(x, min_gap=0.13, min_len=0.05)) == it["meta"]["counts"]["word"]


def check_trap_count(it, x):
    start = it["meta"]["speech_end_s"] + 0.05
    assert len(measure.segments(x, start=start, **TONES)) == it["meta"]["counts"]["tone"]
    assert it["meta"]["spoken_count"] != it["meta"]["counts"]["tone"]


def check_trap_chord(it, x):
    start = int((it["meta"]["speech_end_s"] + 0.05) * 16000)
    assert chord_quality_of(x[start:]) == it["meta"]["labels"]["chord"] != it["meta"]["announced"]


def check_trap_pitch(it, x):
    f1, f2 = two_tone_order(x, it["meta"]["speech_end_s"] + 0.05)
    actual = "higher" if f2 > f1 else "lower"
    assert it["meta"]["labels"]["higher"] == ("second" if f2 > f1 else "first")
    assert it["meta"]["announced"] != actual


def check_high_low_count(it, x):
    freqs, _ = seg_pitches(x, it["meta"]["counts"]["tone"])
    split = math.sqrt(max(freqs) * min(freqs))
    high = sum(f > split for f in freqs)
    assert high == it["meta"]["counts"]["high tone"]
    assert ["high" if f > split else "low" for f in freqs] == it["meta"]["sequence"]


def check_melody_range(it, x):
    segs = measure.segments(x, **TONES)
    n = len(it["meta"]["melodies"][0])
    assert len(segs) == 2 * n
    gaps = [b[0] - a[1] for a, b in zip(segs, segs[1:])]
    assert int(np.argmax(gaps)) == n - 1  # the pause between the melodies is the longest gap
    freqs = [measure.peak_hz(x[int(a * 16000):int(b * 16000)]) for a, b in segs]
    ranges = [round(semis(min(fs), max(fs))) for fs in (freqs[:n], freqs[n:])]
    assert ranges == it["meta"]["ranges_semitones"]
    assert it["meta"]["labels"]["wider"] == ("second" if ranges[1] > ranges[0] else "first")


def check_pitch_and_duration(it, x):
    (f1, f2), segs = seg_pitches(x, 2)
    d1, d2 = (b - a for a, b in segs)
    lab = it["meta"]["labels"]
    assert lab["higher"] == ("first" if f1 > f2 else "second")
    assert lab["longer"] == ("first" if d1 > d2 else "second")


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_")}


def test_every_family_has_a_check():
    assert set(CHECKS) == set(FAMILIES)


@pytest.mark.parametrize("task", list(FAMILIES))
def test_labels_match_measurements(task):
    if FAMILIES[task].needs_speech and not speech.available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    for seed in SEEDS:
        for i in range(N):
            item, audio = make_item(task, "test", seed, i)
            try:
                CHECKS[task](item, audio[0])
            except AssertionError as e:
                raise AssertionError(f"{item['id']} ({item['difficulty']}): {e}") from None


TIMED = ("pitch_compare", "melody_contour", "interval_size", "duration_compare", "pitch_and_duration",
         "high_low_count", "melody_range", "count_events", "timbre", "trap_pitch", "trap_count")


@pytest.mark.parametrize("task", TIMED)
def test_event_records_match_the_audio(task):
    """`meta.events` says where each tone, beep or note is: the energy detector finds one sound per record,
    starting within 30 ms of its onset_sec, lasting within 40 ms of its duration_sec, at its f0_hz (±3%)."""
    if FAMILIES[task].needs_speech and not speech.available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    for seed in SEEDS:
        for i in range(N):
            item, audio = make_item(task, "test", seed, i)
            m, x = item["meta"], audio[0]
            ev = [e for e in m["events"] if e["kind"] in ("tone", "beep", "note")]
            if not ev:  # clicks
                continue
            start = m["speech_end_s"] + 0.05 if "speech_end_s" in m else 0.0
            segs = [(a + start, b + start) for a, b in measure.segments(x[int(start * 16000):], **TONES)]
            assert len(segs) == len(ev), (item["id"], segs)
            for e, (a, b) in zip(ev, segs):
                assert abs(a - e["onset_sec"]) < 0.03 and abs((b - a) - e["duration_sec"]) < 0.04, (item["id"], e)
                f = measure.peak_hz(x[int(a * 16000):int(b * 16000)])
                assert abs(f / e["f0_hz"] - 1) < 0.03, (item["id"], e, f)
