"""Synthetic speech (espeak-ng) families: voice pitch, speaking rate, word counting, and textual-surrogate traps.

Design choices:
- espeak-ng is called as a subprocess (`--stdout` WAV, 22.05 kHz), trimmed of silence and resampled to 16 kHz
  with soxr. Its output is deterministic, so results are cached by (text, voice, rate, pitch): in memory per
  process, and optionally on disk (`set_cache_dir`, the CLI's `--speech-cache`), which makes repeated builds and
  benchmarks cheap (the disk key includes the espeak-ng version). Parameters are quantised (rate to 5 wpm,
  pitch to 5 units; coarser for counted words and trap announcements) so the cache actually hits.
- Labels never rest on an odd rendering: voice-pitch and speaking-rate items are redrawn until the measured F0
  or words per second of the clean speech lies in its class band, away from the boundary.
- Sentences use a vocabulary of monosyllabic words, so speaking rate in words per minute maps directly to a
  syllable rate, and counted words are separated by audible pauses (each word is synthesised on its own).
- Traps put speech that contradicts the sound before the sound ("here come three beeps" and five follow): only
  listening gives the answer, and the surrogate chain (which follows the words) lands on the wrong one.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audior1.data import dsp
from audior1.data.core import Draft, Spec, event, number_word, r, surrogate_intro
from audior1.data.dsp import fmt_hz, fmt_s
from audior1.data.sound import ORD, base_meta, build_chord, chord_cot, chord_facts, count_options, event_train, \
    guessed, note_list, noise_phrase, render, timeline, two_tones

ESPEAK = "espeak-ng"
MALE_VOICES = ("en-us", "en-gb", "en-029", "en-gb-scotland")
FEMALE_VOICES = ("en-us+f1", "en-us+f2", "en-us+f3", "en-029+f3", "en-gb-scotland+f4")
WORDS = ("cat", "dog", "sun", "red", "blue", "tree", "fish", "bird", "book", "lamp", "ship", "road", "hat", "cup",
         "pen", "door", "box", "key", "ring", "bell", "milk", "rain", "wind", "star", "moon", "fox", "bear", "frog",
         "goat", "cake", "bread", "chair", "desk", "shoe", "sock", "coat", "boat", "train", "car", "bus", "hill",
         "lake", "sand", "rock", "leaf", "rose", "corn", "salt", "soup", "tea", "jam", "egg", "pig", "cow", "duck",
         "owl", "wolf", "deer", "mouse", "horse", "green", "black", "white", "small")
SPEECH_LEVEL_DB = -22.0
VOICE_PITCH_SPLIT_HZ = 103.0  # between the "low" and "high" ranges of every difficulty (see voice_pitch)

_cache_dir: Path | None = None


def available() -> bool:
    return shutil.which(ESPEAK) is not None


def set_cache_dir(path: str | Path | None) -> None:
    """Also keep synthesised speech on disk (one .npy per (text, voice, rate, pitch))."""
    global _cache_dir
    _cache_dir = Path(path) if path else None
    if _cache_dir:
        _cache_dir.mkdir(parents=True, exist_ok=True)


def trim(x: np.ndarray, rel_db: float = -45.0, margin_s: float = 0.02) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > np.max(np.abs(x)) * dsp.db_to_amp(rel_db))
    if len(idx) == 0:
        return x
    m = dsp.n_samples(margin_s)
    return x[max(0, idx[0] - m): idx[-1] + m + 1]


@functools.lru_cache(maxsize=1)
def espeak_version() -> str:
    if not available():
        return "missing"
    return subprocess.run([ESPEAK, "--version"], capture_output=True, text=True).stdout.strip()


@functools.lru_cache(maxsize=8192)
def speak(text: str, voice: str = "en-us", rate: int = 170, pitch: int = 50) -> np.ndarray:
    """espeak-ng speech at 16 kHz, trimmed, RMS-normalised to SPEECH_LEVEL_DB. Returned array is read-only."""
    key = hashlib.sha1(repr((espeak_version(), text, voice, rate, pitch)).encode()).hexdigest()
    path = _cache_dir / f"{key}.npy" if _cache_dir else None
    if path is not None and path.exists():
        y = np.load(path)
    else:
        if not available():
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng); speech families need it")
        cmd = [ESPEAK, "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text]
        wav = subprocess.run(cmd, capture_output=True, check=True).stdout
        x, sr = sf.read(io.BytesIO(wav), dtype="float32")
        y = trim(soxr.resample(x, sr, dsp.SR).astype(np.float32))
        y = (y * (dsp.db_to_amp(SPEECH_LEVEL_DB) / max(dsp.rms(y), 1e-9))).astype(np.float32)
        if path is not None:
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # atomic for concurrent workers
            np.save(tmp, y)
            tmp.replace(path)
    y.setflags(write=False)
    return y


def q5(x: float) -> int:
    return int(5 * round(x / 5))


def sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[i] for i in rng.choice(len(WORDS), n, replace=False))


def gender(voice: str) -> str:
    return "female" if "+f" in voice else "male"


def speech_clip(spec: Spec, parts: list[np.ndarray], gaps: list[float], lead: float | None = None):
    """Join speech parts with pauses; returns (events, onsets, end time)."""
    t = float(spec.rng.uniform(0.1, 0.2)) if lead is None else lead
    events, onsets = [], []
    for y, g in zip(parts, gaps):
        events.append((t, y))
        onsets.append(t)
        t += len(y) / dsp.SR + g
    return events, onsets, t


# ---------------------------------------------------------------------------------------------- voice pitch
# espeak-ng pitch settings per class, and the band the measured F0 of the clean speech must fall in (items
# outside it are redrawn, so a label never rests on an odd espeak rendering). Every band leaves a gap around
# VOICE_PITCH_SPLIT_HZ.
VOICE_PITCH = {  # difficulty: ((low pitch range, max Hz), (high pitch range, min Hz, female voices?))
    "easy": (((10, 24), 92.0), ((50, 80), 160.0, True)),
    "medium": (((10, 24), 92.0), ((80, 99), 130.0, False)),
    "hard": (((30, 40), 98.0), ((60, 75), 108.0, False)),
}


def voice_pitch(spec: Spec) -> Draft:
    high = spec.pick(2) == 1
    (lo_rng, lo_max), (hi_rng, hi_min, female) = VOICE_PITCH[spec.difficulty]
    for _ in range(50):
        voices = FEMALE_VOICES if high and female else MALE_VOICES
        voice = voices[int(spec.rng.integers(len(voices)))]
        pitch = q5(spec.rng.uniform(*(hi_rng if high else lo_rng)))
        rate = q5(spec.rng.uniform(150, 190))
        text = sentence(spec.rng, int(spec.rng.integers(4, 7)))
        y = speak(text, voice, rate, pitch)
        f0 = voice_f0_hz(y)
        if (f0 >= hi_min) if high else (0 < f0 <= lo_max):
            break
    else:
        raise RuntimeError(f"no {'high' if high else 'low'} voice rendering within its F0 band")
    events, onsets, end = speech_clip(spec, [y], [0.0])
    x, bg = render(spec, end + 0.15, events, SPEECH_LEVEL_DB)
    label = "high-pitched" if high else "low-pitched"
    said = event("speech", onsets[0], len(y) / dsp.SR, SPEECH_LEVEL_DB, f0, note=False, text=text,
                 words=len(text.split()), voice=voice)
    meta = base_meta(bg, transcript=text, voice=voice, espeak_pitch=pitch, rate_wpm=rate, f0_hz=r(f0),
                     durations_s=[r(len(y) / dsp.SR, 3)], level_db=SPEECH_LEVEL_DB,
                     **timeline([said], ("speech", None, {"text": text, "f0_hz": r(f0)})),
                     labels={"voice_pitch": "high" if high else "low", "gender": gender(voice)})
    cap = (f'A {gender(voice)} voice, {label} (median pitch about {fmt_hz(f0)}), says "{text}"{noise_phrase(bg)}.')
    cot = f"The voice's pitch stays around {fmt_hz(f0)}. {voice_pitch_verdict(f0, gender(voice), high)}"
    q = "Is the speaker's voice low-pitched or high-pitched?"
    choices, ans = spec.layout(label, ["low-pitched" if high else "high-pitched"])
    return Draft([x], q, choices, ans, meta, cap, cot,
                 *guessed(spec, "speech", "how high the voice is", choices, transcript=text))


# Typical median F0 of adult speaking voices in Hz (the reference chain compares the measured pitch with these;
# it words them without numbers, which are not facts about the clip).
MALE_F0_HZ = (85.0, 155.0)
FEMALE_F0_HZ = (165.0, 255.0)
DEEP_F0_HZ = 100.0  # below this, the deep end of men's voices; every low-class voice lies below it


def voice_pitch_verdict(f0: float, sex: str, high: bool) -> str:
    """The reference chain's reading of a median F0, worded from the value — a 115 Hz man's voice is an
    ordinary man's voice, not "high for a speaking voice" — then the choice between the two answers.
    Every low-class voice lies below DEEP_F0_HZ and every high-class one above VOICE_PITCH_SPLIT_HZ."""
    label = "high-pitched" if high else "low-pitched"
    if f0 < MALE_F0_HZ[0]:
        where = "That is below the usual range of a man's speaking voice: very low for a speaking voice"
    elif f0 < DEEP_F0_HZ:
        where = "That is at the deep end of a man's usual speaking range, low for a speaking voice"
    elif f0 <= MALE_F0_HZ[1]:
        return ("That is an ordinary pitch for a man's speaking voice, neither high nor low for a man, but clearly "
                f"above the deepest voices, so of the two choices the voice is {label}.")
    elif sex == "male":
        where = "That is above the usual range of a man's speaking voice: high for a man's voice"
    elif f0 < FEMALE_F0_HZ[0]:
        where = "That is at the bottom of a woman's usual speaking range and above a man's"
    elif f0 <= FEMALE_F0_HZ[1]:
        where = "That is within a woman's usual speaking range, high for a speaking voice"
    else:
        where = "That is above a woman's usual speaking range: very high for a speaking voice"
    return f"{where}, so the voice is {label}."


def voice_f0_hz(y: np.ndarray) -> float:
    """Median F0 of the clean speech (cepstrum), written into meta as the measured voice pitch."""
    from audior1.data.measure import voice_f0_hz as f0
    return f0(y)


# ---------------------------------------------------------------------------------------------- speaking rate
# espeak-ng rate (words per minute) per class, and the band the spoken words per second must fall in.
RATES = {"easy": (((80, 100), 2.2), ((280, 340), 4.5)), "medium": (((100, 120), 2.5), ((230, 260), 4.0)),
         "hard": (((120, 135), 2.8), ((200, 215), 3.6))}


def speech_rate(spec: Spec) -> Draft:
    fast = spec.pick(2) == 1
    (slow_rng, slow_max), (fast_rng, fast_min) = RATES[spec.difficulty]
    voices = MALE_VOICES + FEMALE_VOICES
    for _ in range(50):
        rate = q5(spec.rng.uniform(*(fast_rng if fast else slow_rng)))
        voice = voices[int(spec.rng.integers(len(voices)))]
        pitch = q5(spec.rng.uniform(30, 70))
        n = int(spec.rng.integers(5, 8))
        text = sentence(spec.rng, n)
        y = speak(text, voice, rate, pitch)
        dur = len(y) / dsp.SR
        wps = n / dur
        if (wps >= fast_min) if fast else (wps <= slow_max):
            break
    else:
        raise RuntimeError(f"no {'fast' if fast else 'slow'} rendering within its words-per-second band")
    events, onsets, end = speech_clip(spec, [y], [0.0])
    x, bg = render(spec, end + 0.15, events, SPEECH_LEVEL_DB)
    label = "fast" if fast else "slow"
    pace = {"words": n, "words_per_sec": r(wps, 2), "speaking_rate_wpm": r(60 * wps)}
    said = event("speech", onsets[0], dur, SPEECH_LEVEL_DB, text=text, voice=voice, **pace)
    meta = base_meta(bg, transcript=text, voice=voice, espeak_pitch=pitch, rate_wpm=rate, counts={"word": n},
                     words_per_sec=r(wps, 2), durations_s=[r(dur, 3)], level_db=SPEECH_LEVEL_DB,
                     **timeline([said], ("speech", None, {"text": text, **pace})),
                     labels={"rate": label, "gender": gender(voice)})
    cap = (f'A {gender(voice)} voice speaking {"quickly" if fast else "slowly"} says "{text}": {n} words in '
           f"{fmt_s(dur)}, about {wps:.1f} words per second{noise_phrase(bg)}.")
    cot = (f"The {n} words take about {fmt_s(dur)}, so the speaker says about {wps:.1f} words per second, or about "
           f"{60 * wps:.0f} per minute. {speech_rate_verdict(60 * wps, fast)}")
    q = "Is the person speaking slowly or quickly?"
    choices, ans = spec.layout("quickly" if fast else "slowly", ["slowly" if fast else "quickly"])
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "speech", "the pace", choices, transcript=text))


# An ordinary conversational pace in words per minute, and where quick speech begins (the reference chain
# compares the measured rate with these). The rate bands of RATES keep every slow item at or below 168 and
# every fast one at or above 216 words per minute.
CONVERSATIONAL_WPM = (120, 170)
QUICK_WPM = 200


def speech_rate_verdict(wpm: float, fast: bool) -> str:
    """The reference chain's reading of a speaking rate, worded from the value as the chain states it (140-148
    words per minute is an ordinary conversational pace, not "well below" one), then the choice between
    slowly and quickly."""
    lo, hi = CONVERSATIONAL_WPM
    ordinary = f"an ordinary conversational pace (about {lo} to {hi} per minute)"
    label = "fast" if fast else "slow"
    stated = round(wpm)
    if stated < lo - 20:
        return f"That is well below {ordinary}, so this is slow speech."
    if stated < lo:
        return f"That is below {ordinary}, so this is slow speech."
    if stated <= hi:
        return (f"That is {ordinary}, unhurried and below the pace of quick speech (over {QUICK_WPM} per minute), "
                f"so of the two choices this is {label} speech.")
    if stated <= QUICK_WPM:
        return f"That is above {ordinary}, so this is {label} speech."
    return f"That is well above {ordinary}, so this is fast speech."


# ---------------------------------------------------------------------------------------------- word count
def word_count(spec: Spec) -> Draft:
    lo, hi = {"easy": (2, 4), "medium": (3, 6), "hard": (5, 8)}[spec.difficulty]
    n = lo + spec.pick(hi - lo + 1)
    voices = MALE_VOICES + FEMALE_VOICES
    voice = voices[int(spec.rng.integers(len(voices)))]
    # coarse voice settings: each word is synthesised on its own, so this keeps the speech cache hitting
    rate, pitch = (155, 185)[int(spec.rng.integers(2))], 50
    words = sentence(spec.rng, n).split()
    gap = {"easy": (0.25, 0.4), "medium": (0.2, 0.3), "hard": (0.17, 0.22)}[spec.difficulty]
    parts = [speak(w, voice, rate, pitch) for w in words]
    events, onsets, end = speech_clip(spec, parts, list(spec.rng.uniform(*gap, n)))
    x, bg = render(spec, end + 0.1, events, SPEECH_LEVEL_DB)
    text = " ".join(words)
    said = [event("word", t, len(p) / dsp.SR, SPEECH_LEVEL_DB, text=w) for t, p, w in zip(onsets, parts, words)]
    meta = base_meta(bg, transcript=text, voice=voice, espeak_pitch=pitch, rate_wpm=rate, counts={"word": n},
                     **timeline(said, ("speech", None, {"text": text})),
                     level_db=SPEECH_LEVEL_DB, labels={"gender": gender(voice)})
    cap = f'A {gender(voice)} voice says {n} separate words with pauses between them: "{text}"{noise_phrase(bg)}.'
    listing = ", ".join(f'"{w}" at {t:.2f} s' for w, t in zip(words, onsets))
    cot = f"Going through the clip word by word: {listing}. That makes {n} words."
    q = "How many words does the speaker say?"
    if spec.qtype == "count_mc":
        choices, ans = count_options(spec, n)
    else:
        choices, ans = None, str(n)
    # The transcript does answer this one: word counting is the speech control family, not a perception test.
    scot = (f'{surrogate_intro("speech", text)} The transcript has {n} words, so the speaker says {n} words.')
    return Draft([x], q, choices, ans, meta, cap, cot, scot)


# ---------------------------------------------------------------------------------------------- traps
def announce(spec: Spec, text: str):
    voices = MALE_VOICES + FEMALE_VOICES
    voice = voices[int(spec.rng.integers(len(voices)))]
    y = speak(text, voice, (160, 175, 190)[int(spec.rng.integers(3))], (40, 55)[int(spec.rng.integers(2))])
    t0 = float(spec.rng.uniform(0.1, 0.2))
    return (t0, y), voice, t0 + len(y) / dsp.SR + float(spec.rng.uniform(0.3, 0.45))


def announcement(speech: tuple, text: str, voice: str) -> dict:
    """The trap's spoken announcement as a speech event."""
    return event("speech", speech[0], len(speech[1]) / dsp.SR, SPEECH_LEVEL_DB, text=text,
                 words=len(text.split()), voice=voice)


def trap_timeline(speech: tuple, text: str, voice: str, facts: list[dict], name: str) -> dict:
    """Events and segments of a trap: the announcement, then the sounds it misdescribes (segment `name`)."""
    return timeline([announcement(speech, text, voice)] + facts,
                    ("announcement", lambda e: e["kind"] == "speech", {"text": text}),
                    (name, lambda e: e["kind"] != "speech", {}))


def trap_count(spec: Spec) -> Draft:
    lo, hi = {"easy": (2, 5), "medium": (3, 6), "hard": (4, 8)}[spec.difficulty]
    n = lo + spec.pick(hi - lo + 1)
    far = {"easy": (2, 3), "medium": (1, 2), "hard": (1, 1)}[spec.difficulty]
    while True:
        k = n + int(spec.rng.choice([-1, 1])) * int(spec.rng.integers(far[0], far[1] + 1))
        if 1 <= k <= 9 and k != n:
            break
    templates = ("Here come {} beeps.", "Listen to these {} beeps.", "You will hear {} beeps.")
    text = templates[int(spec.rng.integers(3))].format(number_word(k))
    speech, voice, start = announce(spec, text)
    freq = float(np.exp(spec.rng.uniform(np.log(600), np.log(1800))))
    level = float(spec.rng.uniform(-22, -16))
    ev, facts, length, beep, _ = event_train(spec, n, "beep", freq, level)
    shift = start - ev[0][0]
    ev = [speech] + [(t + shift, y) for t, y in ev]
    for f in facts:
        f["onset_sec"] = r(f["onset_sec"] + shift, 3)
    x, bg = render(spec, length + shift, ev, level)
    meta = base_meta(bg, transcript=text, voice=voice, spoken_count=k, counts={"tone": n}, freqs_hz=[r(freq)],
                     durations_s=[r(beep, 3)], speech_end_s=r(speech[0] + len(speech[1]) / dsp.SR, 3),
                     **trap_timeline(speech, text, voice, facts, "beeps"), trap=True,
                     labels={"gender": gender(voice)})
    cap = (f'A voice says "{text}", then {n} beeps at about {fmt_hz(freq)} follow, each about {fmt_s(beep)} '
           f"long{noise_phrase(bg)}.")
    onsets = ", ".join(f"beep {i + 1} at {f['onset_sec']:.2f} s" for i, f in enumerate(facts))
    cot = f'The voice says "{text}", but counting the beeps that follow: {onsets}. That makes {n} beeps.'
    q = "How many beeps follow the voice?"
    choices, ans = count_options(spec, n)
    if str(k) not in choices:  # the announced number must be one of the options
        choices[next(i for i, c in enumerate(choices) if c != ans)] = str(k)
    scot = (f'{surrogate_intro("speech, beep", text)} The speaker announces {number_word(k)} beeps, so there are '
            f"{k} beeps.")
    return Draft([x], q, choices, ans, meta, cap, cot, scot, surrogate_answer=str(k))


CHORD_WORDS = {"major": ("a cheerful major chord", "a happy major chord", "a bright major chord"),
               "minor": ("a sad minor chord", "a gloomy minor chord", "a dark minor chord")}


def trap_chord(spec: Spec) -> Draft:
    quality = ("major", "minor")[spec.pick(2)]
    said = "minor" if quality == "major" else "major"
    phrase = CHORD_WORDS[said][int(spec.rng.integers(3))]
    text = ("Here is {}.", "Listen to {}.", "Now, {}.")[int(spec.rng.integers(3))].format(phrase)
    speech, voice, start = announce(spec, text)
    y, midis, root, inv, dur, level = build_chord(spec, quality)
    x, bg = render(spec, start + dur + 0.15, [speech, (start, y)], level)
    meta = chord_facts(bg, quality, midis, root, inv, dur, level, start, announcement=announcement(speech, text, voice))
    meta.update(transcript=text, voice=voice, announced=said, trap=True,
                speech_end_s=r(speech[0] + len(speech[1]) / dsp.SR, 3))
    cap = (f'A voice says "{text}", then a chord of three sine notes sounds for {fmt_s(dur)}: {note_list(midis)}'
           f"{noise_phrase(bg)}.")
    cot = f'The voice says "{text}", but the chord itself decides. {chord_cot(quality, midis, root)}'
    q = "Is the chord that follows the voice major or minor?"
    choices, ans = spec.layout(quality, [said])
    scot = f'{surrogate_intro("speech, music, chord", text)} The speaker calls it {phrase}, so the chord is {said}.'
    return Draft([x], q, choices, ans, meta, cap, cot, scot, surrogate_answer=said)


PITCH_WORDS = {"higher": ("The second tone will be higher.", "Listen, the next tone goes up."),
               "lower": ("The second tone will be lower.", "Listen, the next tone goes down.")}


def trap_pitch(spec: Spec) -> Draft:
    second_higher = spec.pick(2) == 1
    said = "lower" if second_higher else "higher"
    text = PITCH_WORDS[said][int(spec.rng.integers(2))]
    speech, voice, start = announce(spec, text)
    st = float(spec.rng.uniform(*{"easy": (4.0, 8.0), "medium": (2.0, 3.0), "hard": (1.0, 1.5)}[spec.difficulty]))
    ev, facts, length, (f1, f2), (d1, d2), wave, level = two_tones(spec, st, second_higher, "sine")
    shift = start - ev[0][0]
    x, bg = render(spec, length + shift, [speech] + [(t + shift, y) for t, y in ev], level)
    for f in facts:
        f["onset_sec"] = r(f["onset_sec"] + shift, 3)
    actual = "higher" if second_higher else "lower"
    meta = base_meta(bg, transcript=text, voice=voice, announced=said, trap=True, freqs_hz=[r(f1), r(f2)],
                     durations_s=[r(d1, 3), r(d2, 3)], difference_semitones=r(st, 2), counts={"tone": 2},
                     speech_end_s=r(speech[0] + len(speech[1]) / dsp.SR, 3),
                     **trap_timeline(speech, text, voice, facts, "tones"),
                     labels={"higher": ORD[int(second_higher)], "lower": ORD[1 - int(second_higher)],
                             "gender": gender(voice)})
    cap = (f'A voice says "{text}", then two sine tones follow: the first about {fmt_hz(f1)} and the second about '
           f"{fmt_hz(f2)}{noise_phrase(bg)}.")
    cot = (f'The voice says "{text}", but the tones decide: the first is about {fmt_hz(f1)} and the second about '
           f"{fmt_hz(f2)}, so the second tone is {actual} than the first.")
    q = "Is the second tone higher or lower in pitch than the first?"
    choices, ans = spec.layout(actual, [said])
    scot = (f'{surrogate_intro("speech, beep", text)} The speaker says the pitch will go '
            f'{"up" if said == "higher" else "down"}, so the second tone is {said} than the first.')
    return Draft([x], q, choices, ans, meta, cap, cot, scot, surrogate_answer=said)
