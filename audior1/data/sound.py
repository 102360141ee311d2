"""Sound and music task families: one function per family, `Spec -> Draft`.

Each family states its difficulty knobs at the top of its function (closeness of values, background SNR via
`core.background`, number of events, length). Captions report measurements (Hz, note names, seconds, dBFS,
counts), not the answers a question derives from them; for atomic percepts that have no simpler measurement
(waveform, noise colour) the caption also names the category. Text CoTs reason from the caption's facts;
surrogate chains reason from an (empty) transcript and sound tags only.
"""

from __future__ import annotations

import numpy as np

from audior1.data import dsp
from audior1.data.core import Draft, Spec, background, event, guess, noise_phrase, number_events, r, segment, \
    surrogate_intro
from audior1.data.dsp import fmt_db, fmt_hz, fmt_s

ORD = ("first", "second")


def surrogate(tags: str, what: str, answer: str, transcript: str | None = None) -> str:
    return (f"{surrogate_intro(tags, transcript)} Nothing in those words describes {what}, so I can only go by "
            f"the wording of the question and pick the answer {answer}.")


def guessed(spec: Spec, tags: str, what: str, choices: list[str] | None, numeric: tuple[int, int] | None = None,
            transcript: str | None = None) -> tuple[str, str]:
    """(surrogate chain, surrogate answer): the chain admits it has nothing to go on and picks an answer drawn
    independently of the true one (`core.guess`), and the answer is that pick."""
    g = guess(spec, choices, numeric)
    return surrogate(tags, what, g, transcript), g


def render(spec: Spec, length: float, events: list[tuple[float, np.ndarray]], ref_db: float
           ) -> tuple[np.ndarray, dict]:
    """Place the events, add the item's background noise; return (audio, background facts)."""
    bg = background(spec, ref_db)
    x = dsp.add_noise(dsp.place(length, events), bg["colour"], bg["level_db"], spec.rng)
    return x, bg


def base_meta(bg: dict, **facts) -> dict:
    labels = facts.pop("labels", {})
    labels["background"] = bg["colour"]
    return {**facts, "labels": labels, "background": bg}


def note_list(midis, with_hz: bool = True) -> str:
    return ", ".join(f"{dsp.note_name(m)} ({fmt_hz(dsp.midi_to_hz(m))})" if with_hz else dsp.note_name(m)
                     for m in midis)


def sequence(spec: Spec, freqs: list[float], durs: list[float], gaps: list[float], level: float,
             waveform: str = "sine", jitter_db: float = 0.0, lead: float | None = None, kind: str = "tone",
             groups: list[dict] | None = None):
    """Tones one after another. Returns (events for `place`, event records of `kind` (unnumbered), total
    length); `groups[i]` places tone i in a group (see `core.event`)."""
    t = float(spec.rng.uniform(0.1, 0.25)) if lead is None else lead
    events, facts = [], []
    for i, (f, d, g) in enumerate(zip(freqs, durs, gaps)):
        lv = level + float(spec.rng.uniform(-jitter_db, jitter_db)) if jitter_db else level
        events.append((t, dsp.tone(f, d, lv, waveform)))
        facts.append(event(kind, t, d, lv, f, waveform=waveform, group=groups[i] if groups else None))
        t += d + g
    return events, facts, t + 0.15


def plural_name(kind: str) -> str:
    return {"speech": "speech", "noise": "noise"}.get(kind, kind + "s")


def timeline(facts: list[dict], *spans: tuple) -> dict:
    """`events` (numbered, see `core.number_events`) and `segments` for meta. Each span is (name, select,
    extra fields): a segment over the numbered events `select(event)` keeps (None: all). With no spans, one
    segment over every event, named after their kind ("tones", "beeps", "notes", ...)."""
    events = number_events(facts)
    kind = events[0]["kind"]
    spans = spans or ((kind if len(events) == 1 else plural_name(kind), None, {}),)
    segs = [segment(name, [e for e in events if select is None or select(e)], **extra) for name, select, extra in spans]
    return {"events": events, "segments": segs}


# ---------------------------------------------------------------------------------------------- pitch
def two_tones(spec: Spec, semitones: float, second_higher: bool, waveform: str | None = None):
    """Two tones `semitones` apart. Returns (events, facts, length, (f1, f2), (d1, d2), waveform, level)."""
    base = float(spec.rng.uniform(55, 77))
    m1, m2 = (base, base + semitones) if second_higher else (base + semitones, base)
    f1, f2 = dsp.midi_to_hz(m1), dsp.midi_to_hz(m2)
    d1, d2 = spec.rng.uniform(0.35, 0.6, 2)
    gap = float(spec.rng.uniform(0.15, 0.35))
    waveform = waveform or ("sine" if spec.difficulty == "easy" else ("sine", "soft")[int(spec.rng.integers(2))])
    level = float(spec.rng.uniform(-24, -16))
    ev, facts, length = sequence(spec, [f1, f2], [d1, d2], [gap, 0.0], level, waveform)
    return ev, facts, length, (f1, f2), (float(d1), float(d2)), waveform, level


def pitch_compare(spec: Spec) -> Draft:
    semis = {"easy": (4.0, 8.0), "medium": (1.5, 3.0), "hard": (0.5, 1.0)}[spec.difficulty]
    st = float(spec.rng.uniform(*semis))
    hi = spec.pick(2)  # 0: first higher, 1: second higher
    ev, facts, length, (f1, f2), (d1, d2), wave, level = two_tones(spec, st, second_higher=bool(hi))
    x, bg = render(spec, length, ev, level)
    if spec.qtype == "which_higher":
        q = "Which of the two tones is higher in pitch?"
        choices, ans = spec.layout(f"the {ORD[hi]} tone", [f"the {ORD[1 - hi]} tone"])
        verdict = f"so the {ORD[hi]} tone is higher."
    else:
        q = "Is the second tone higher or lower in pitch than the first?"
        choices, ans = spec.layout("higher" if hi else "lower", ["lower" if hi else "higher"])
        verdict = f"so the second tone is {'higher' if hi else 'lower'} than the first."
    fh, fl = max(f1, f2), min(f1, f2)
    meta = base_meta(bg, freqs_hz=[r(f1), r(f2)], notes=[dsp.note_name(dsp.hz_to_midi(f)) for f in (f1, f2)],
                     difference_semitones=r(st, 2), durations_s=[r(d1, 3), r(d2, 3)], waveform=wave,
                     counts={"tone": 2}, **timeline(facts),
                     labels={"higher": ORD[hi], "lower": ORD[1 - hi]})
    n1, n2 = meta["notes"]
    cap = (f"Two {wave} tones: the first about {fmt_hz(f1)} (near {n1}), lasting {fmt_s(d1)}, then the second "
           f"about {fmt_hz(f2)} (near {n2}), lasting {fmt_s(d2)}{noise_phrase(bg)}.")
    cot = (f"The first tone is about {fmt_hz(f1)} and the second about {fmt_hz(f2)}. {fmt_hz(fh)} is above "
           f"{fmt_hz(fl)} by about {st:.1f} semitones, {verdict}")
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "beep, tone", "the pitches", choices))


# ---------------------------------------------------------------------------------------------- melody
CONTOURS = ("rising", "falling", "rising then falling", "falling then rising")


def contour_steps(rng: np.random.Generator, contour: str, n: int, lo: int, hi: int) -> list[int]:
    size = lambda: int(rng.integers(lo, hi + 1))  # noqa: E731
    if contour == "rising":
        return [size() for _ in range(n - 1)]
    if contour == "falling":
        return [-size() for _ in range(n - 1)]
    peak = int(rng.integers(1, n - 1))  # index of the turning note
    sign = 1 if contour == "rising then falling" else -1
    return [sign * size() if i < peak else -sign * size() for i in range(n - 1)]


def melody_contour(spec: Spec) -> Draft:
    n = {"easy": 3, "medium": 4, "hard": int(spec.rng.integers(5, 7))}[spec.difficulty]
    lo, hi = {"easy": (3, 5), "medium": (2, 3), "hard": (1, 2)}[spec.difficulty]
    note_dur = {"easy": 0.35, "medium": 0.3, "hard": 0.22}[spec.difficulty]
    if spec.qtype == "contour":
        contour = CONTOURS[spec.pick(4)]
        steps = contour_steps(spec.rng, contour, n, lo, hi)
        end_up = None
    else:
        end_up = spec.pick(2) == 0
        options = ("rising", "rising then falling", "falling then rising") if end_up else \
            ("falling", "rising then falling", "falling then rising")
        while True:
            contour = options[int(spec.rng.integers(3))]
            steps = contour_steps(spec.rng, contour, n, lo, hi)
            if (sum(steps) > 0) == end_up and sum(steps) != 0:
                break
    cum = np.concatenate([[0], np.cumsum(steps)])
    start = int(spec.rng.integers(55 - cum.min(), 82 - cum.max()))
    midis = [int(start + c) for c in cum]
    freqs = [dsp.midi_to_hz(m) for m in midis]
    durs = list(spec.rng.uniform(note_dur * 0.9, note_dur * 1.1, n))
    gaps = list(spec.rng.uniform(0.08, 0.12, n - 1)) + [0.0]
    wave = ("sine", "soft")[int(spec.rng.integers(2))]
    level = float(spec.rng.uniform(-24, -16))
    ev, facts, length = sequence(spec, freqs, durs, gaps, level, wave, kind="note")
    x, bg = render(spec, length, ev, level)
    up_down = "higher" if sum(steps) > 0 else "lower" if sum(steps) < 0 else "same"
    meta = base_meta(bg, notes=[dsp.note_name(m) for m in midis], freqs_hz=[r(f) for f in freqs],
                     steps_semitones=[int(s) for s in steps], net_semitones=int(sum(steps)), counts={"note": n},
                     waveform=wave, **timeline(facts, ("melody", None, {})),
                     labels={"contour": contour, "end_vs_start": up_down})
    cap = (f"A melody of {n} {wave} notes, each about {fmt_s(note_dur)}: {note_list(midis)}{noise_phrase(bg)}.")
    step_txt = ", ".join(f"{s:+d}" for s in steps)
    if spec.qtype == "contour":
        q = "How does the pitch of the melody move?"
        choices, ans = spec.layout(contour, [c for c in CONTOURS if c != contour])
        shape = {"rising": "every step goes up", "falling": "every step goes down",
                 "rising then falling": "it climbs to a top note and then comes back down",
                 "falling then rising": "it drops to a bottom note and then climbs back up"}[contour]
        cot = (f"The notes are {note_list(midis)}. The steps between them are {step_txt} semitones: {shape}, "
               f"so the melody is {contour}.")
    else:
        q = "Does the melody end higher or lower than it starts?"
        choices, ans = spec.layout(up_down, ["lower" if up_down == "higher" else "higher"])
        cot = (f"The melody starts on {dsp.note_name(midis[0])} ({fmt_hz(freqs[0])}) and ends on "
               f"{dsp.note_name(midis[-1])} ({fmt_hz(freqs[-1])}), {abs(sum(steps))} semitones "
               f"{'above' if up_down == 'higher' else 'below'} the start, so it ends {up_down} than it starts.")
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "music, melody, tone", "the notes", choices))


# ---------------------------------------------------------------------------------------------- interval
INTERVALS = {1: "a minor second", 2: "a major second", 3: "a minor third", 4: "a major third",
             5: "a perfect fourth", 6: "a tritone", 7: "a perfect fifth", 8: "a minor sixth", 9: "a major sixth",
             10: "a minor seventh", 11: "a major seventh", 12: "an octave"}
INTERVAL_SETS = {"easy": (2, 4, 7, 12), "medium": (3, 4, 5, 7), "hard": tuple(range(1, 13))}


def interval_size(spec: Spec) -> Draft:
    pool = INTERVAL_SETS[spec.difficulty]
    k = pool[spec.pick(len(pool))]
    up = bool(spec.rng.integers(2))
    m1 = int(spec.rng.integers(55, 72))
    m2 = m1 + k if up else m1 - k
    f1, f2 = dsp.midi_to_hz(m1), dsp.midi_to_hz(m2)
    durs = list(spec.rng.uniform(0.4, 0.6, 2))
    wave = "sine" if spec.difficulty == "easy" else ("sine", "soft")[int(spec.rng.integers(2))]
    level = float(spec.rng.uniform(-24, -16))
    ev, facts, length = sequence(spec, [f1, f2], durs, [float(spec.rng.uniform(0.15, 0.3)), 0.0], level, wave,
                                 kind="note")
    x, bg = render(spec, length, ev, level)
    name = INTERVALS[k]
    meta = base_meta(bg, notes=[dsp.note_name(m1), dsp.note_name(m2)], freqs_hz=[r(f1), r(f2)],
                     interval_semitones=k, direction="up" if up else "down", waveform=wave, counts={"note": 2},
                     **timeline(facts), labels={"interval": name.split(" ", 1)[1],
                                           "higher": ORD[int(up)], "lower": ORD[1 - int(up)]})
    cap = (f"Two {wave} notes one after the other: {dsp.note_name(m1)} (about {fmt_hz(f1)}) then "
           f"{dsp.note_name(m2)} (about {fmt_hz(f2)}){noise_phrase(bg)}.")
    cot = (f"The first note is {dsp.note_name(m1)} (about {fmt_hz(f1)}) and the second {dsp.note_name(m2)} "
           f"(about {fmt_hz(f2)}). Counting semitones from {dsp.note_name(min(m1, m2))} up to "
           f"{dsp.note_name(max(m1, m2))} gives {k}, which is {name}.")
    if spec.qtype == "interval_name":
        q = "What is the musical interval between the two notes?"
        near = sorted((i for i in pool if i != k), key=lambda i: (abs(i - k), i))[:3]
        choices, ans = spec.layout(name, [INTERVALS[i] for i in near])
    else:
        q = "How many semitones apart are the two notes?"
        choices, ans = None, str(k)
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "music, tone", "the notes", choices, (1, 12)))


# ---------------------------------------------------------------------------------------------- chord
TRIADS = {"major": (0, 4, 7), "minor": (0, 3, 7)}


def build_chord(spec: Spec, quality: str, inversion: int | None = None):
    """A three-note sine chord. Returns (samples, midis low-to-high, root midi, inversion, dur, level)."""
    root = int(spec.rng.integers(52, 66))
    if inversion is None:
        inversion = 0 if spec.difficulty == "easy" else int(spec.rng.integers(3))
    pcs = list(TRIADS[quality])
    for _ in range(inversion):
        pcs = pcs[1:] + [pcs[0] + 12]
    midis = [root + p for p in pcs]
    dur = float(spec.rng.uniform(*{"easy": (1.2, 1.6), "medium": (0.8, 1.2), "hard": (0.5, 0.8)}[spec.difficulty]))
    level = float(spec.rng.uniform(-20, -15))
    return dsp.chord([dsp.midi_to_hz(m) for m in midis], dur, level), midis, root, inversion, dur, level


def chord_facts(bg: dict, quality: str, midis, root: int, inversion: int, dur: float, level: float,
                onset: float, announcement: dict | None = None) -> dict:
    """The chord's meta; its three notes are simultaneous events (low to high, each at the chord's level less
    10*log10(3) dB, with its `role`), after the trap's `announcement` (a speech event) when there is one."""
    third = TRIADS[quality][1]
    role = {0: "root", third: "third", 7: "fifth"}
    notes = [event("note", onset, dur, level - 10 * np.log10(len(midis)), dsp.midi_to_hz(m), waveform="sine",
                   role=role[(m - root) % 12]) for m in midis]
    spans = [("chord", lambda e: e["kind"] == "note", {"level_dbfs": r(level)})]
    if announcement:
        spans.insert(0, ("announcement", lambda e: e["kind"] == "speech", {"text": announcement["text"]}))
    return base_meta(bg, notes=[dsp.note_name(m) for m in midis], freqs_hz=[r(dsp.midi_to_hz(m)) for m in midis],
                     root=dsp.note_name(root)[:-1], inversion=inversion, third_semitones=third, fifth_semitones=7,
                     durations_s=[r(dur, 3)], level_db=r(level), counts={"note": 3},
                     **timeline(([announcement] if announcement else []) + notes, *spans), labels={"chord": quality})


def chord_cot(quality: str, midis, root: int) -> str:
    third = TRIADS[quality][1]
    rn = dsp.note_name(root)[:-1]
    names = [dsp.note_name(root + p)[:-1] for p in TRIADS[quality]]
    return (f"The chord's notes are {note_list(midis)}. Stacked from the root {rn}, they are {', '.join(names)}: "
            f"a third of {third} semitones and a fifth of 7 semitones above {rn}, so the chord is {quality}.")


def chord_quality(spec: Spec) -> Draft:
    quality = ("major", "minor")[spec.pick(2)]
    y, midis, root, inv, dur, level = build_chord(spec, quality)
    onset = float(spec.rng.uniform(0.1, 0.25))
    x, bg = render(spec, onset + dur + 0.15, [(onset, y)], level)
    meta = chord_facts(bg, quality, midis, root, inv, dur, level, onset)
    cap = f"A chord of three sine notes sounding together for {fmt_s(dur)}: {note_list(midis)}{noise_phrase(bg)}."
    if spec.qtype == "quality":
        q = "Is this chord major or minor?"
        choices, ans = spec.layout(quality, ["minor" if quality == "major" else "major"])
    else:
        q = "Does this chord sound bright (major) or dark (minor)?"
        bright, dark = "bright (major)", "dark (minor)"
        choices, ans = spec.layout(bright if quality == "major" else dark, [dark if quality == "major" else bright])
    return Draft([x], q, choices, ans, meta, cap, chord_cot(quality, midis, root),
                 *guessed(spec, "music, chord, synthesizer", "the notes of the chord", choices))


# ---------------------------------------------------------------------------------------------- counting
COUNT_RANGE = {"easy": (1, 4), "medium": (3, 6), "hard": (5, 8)}


def count_options(spec: Spec, n: int, lo: int = 1) -> tuple[list[str], str]:
    cands = sorted((c for c in range(max(lo, n - 3), n + 4) if c != n), key=lambda c: (abs(c - n), c))
    near = cands[:5]
    pick = [near[i] for i in spec.rng.permutation(len(near))[:3]]
    return spec.layout(str(n), [str(c) for c in pick])


def event_train(spec: Spec, n: int, kind: str, freq: float, level: float):
    """n beeps or clicks; spacing per difficulty. Returns (events, facts, length, beep_dur, regular)."""
    d = spec.difficulty
    ioi = {"easy": (0.3, 0.4), "medium": (0.2, 0.45), "hard": (0.17, 0.3)}[d]
    beep = float(spec.rng.uniform(*{"easy": (0.08, 0.12), "medium": (0.08, 0.12), "hard": (0.06, 0.09)}[d]))
    regular = d == "easy"
    gaps = [float(spec.rng.uniform(*ioi))] * n if regular else list(spec.rng.uniform(*ioi, n))
    t = float(spec.rng.uniform(0.1, 0.25))
    events, facts = [], []
    jit = {"easy": 1.0, "medium": 1.5, "hard": 2.0}[d]
    for i in range(n):
        lv = level + float(spec.rng.uniform(-jit, jit))
        if kind == "beep":
            y, dur = dsp.tone(freq, beep, lv, attack=0.005, release=0.01), beep
        else:
            y, dur = dsp.click(lv, "noise", rng=spec.rng), 0.025
        events.append((t, y))
        facts.append(event(kind, t, dur, lv, freq if kind == "beep" else None))
        t += gaps[i] if i < n - 1 else dur
    return events, facts, t + 0.15, beep, regular


def count_events(spec: Spec) -> Draft:
    lo, hi = COUNT_RANGE[spec.difficulty]
    n = lo + spec.pick(hi - lo + 1)
    kind = ("beep", "click")[int(spec.rng.integers(2))]
    freq = float(np.exp(spec.rng.uniform(np.log(500), np.log(2000))))
    level = float(spec.rng.uniform(-22, -16)) - (8.0 if kind == "click" else 0.0)  # clicks have a high crest
    ev, facts, length, beep, regular = event_train(spec, n, kind, freq, level)
    x, bg = render(spec, length, ev, level)
    noun = "tone" if kind == "beep" else "click"
    meta = base_meta(bg, counts={noun: n}, kind=kind, **timeline(facts), level_db=r(level),
                     **({"freqs_hz": [r(freq)], "durations_s": [r(beep, 3)]} if kind == "beep" else {}))
    plural = kind + ("s" if n != 1 else "")
    what = (f"short beeps at about {fmt_hz(freq)}, each about {fmt_s(beep)} long" if kind == "beep"
            else "sharp clicks")
    if n == 1:
        what = what.replace("beeps", "beep").replace("clicks", "click").replace("each ", "")
    spacing = "" if n == 1 else (" at a regular pace" if regular else " at an uneven pace")
    cap = f"{n} {what}{spacing}, spread over {fmt_s(length)}{noise_phrase(bg)}."
    onsets = ", ".join(f"{kind} {i + 1} at {f['onset_sec']:.2f} s" for i, f in enumerate(facts))
    cot = f"Counting the {kind}s as they come: {onsets}. That makes {n} {plural}."
    q = f"How many {kind}s are there in the clip?"
    if spec.qtype == "count_mc":
        choices, ans = count_options(spec, n)
    else:
        choices, ans = None, str(n)
    tags = "beep, bleep" if kind == "beep" else "click, tick"
    return Draft([x], q, choices, ans, meta, cap, cot,
                 *guessed(spec, tags, f"how many {kind}s there are", choices, (1, 8)))


# ---------------------------------------------------------------------------------------------- tempo
TEMPO_RANGES = {"easy": ((60, 75), (105, 120), (150, 170)), "medium": ((72, 84), (100, 112), (128, 140)),
                "hard": ((84, 92), (100, 108), (116, 124))}


def tempo(spec: Spec) -> Draft:
    ranges = TEMPO_RANGES[spec.difficulty]
    k = spec.pick(3)
    lo, hi = ranges[k]
    bpm = float(spec.rng.uniform(lo + 0.5, hi - 0.5))
    period = 60.0 / bpm
    length = float(spec.rng.uniform(3.0, 4.0))
    kind = ("tick", "noise")[int(spec.rng.integers(2))]
    freq = float(spec.rng.uniform(1500, 3000))
    level = float(spec.rng.uniform(-28, -22))
    jitter = 0.005 if spec.difficulty == "hard" else 0.0
    t, events, facts = float(spec.rng.uniform(0.05, 0.2)), [], []
    while t + 0.05 < length - 0.1:
        on = t + float(spec.rng.uniform(-jitter, jitter))
        events.append((on, dsp.click(level, kind, freq, spec.rng)))
        facts.append(event("click", on, 0.025, level))
        t += period
    x, bg = render(spec, length, events, level)
    label = f"{lo}–{hi} BPM"
    meta = base_meta(bg, bpm=r(bpm), period_s=r(period, 3), counts={"click": len(events)}, kind=kind,
                     level_db=r(level), **timeline(facts), labels={"tempo": label})
    cap = (f"A steady click track: {len(events)} clicks, one every {period:.2f} s, i.e. about {bpm:.0f} BPM"
           f"{noise_phrase(bg)}.")
    cot = (f"The clicks come every {period:.2f} s, and 60 divided by {period:.2f} is about {bpm:.0f} beats per "
           f"minute, which lies in the {label} range.")
    q = "What is the tempo of the click track?"
    choices, ans = spec.layout(label, [f"{a}–{b} BPM" for a, b in ranges if (a, b) != (lo, hi)])
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "click, metronome, tick", "the tempo", choices))


# ---------------------------------------------------------------------------------------------- loudness
TRENDS = ("getting louder", "getting softer", "staying about the same")
TREND_LABEL = {"getting louder": "crescendo", "getting softer": "decrescendo", "staying about the same": "steady"}


def loudness_trend(spec: Spec) -> Draft:
    trend = TRENDS[spec.pick(3)]
    delta = float(spec.rng.uniform(*{"easy": (20, 26), "medium": (12, 16), "hard": (7, 9)}[spec.difficulty]))
    src = ("tone", "beeps", "noise")[int(spec.rng.integers(3))]
    top = float(spec.rng.uniform(*((-20, -17) if src == "noise" else (-16, -12))))  # noise peaks ~13 dB over RMS
    start, end = {"getting louder": (top - delta, top), "getting softer": (top, top - delta)}.get(
        trend, (top - delta / 2, top - delta / 2))
    dur = float(spec.rng.uniform(1.5, 3.0))
    freq = float(spec.rng.uniform(200, 800))
    n = dsp.n_samples(dur)
    beeps = []  # (start sample, length) of each beep
    if src == "tone":
        wave = ("sine", "soft")[int(spec.rng.integers(2))]
        y = dsp.tone(freq, dur, 0.0, wave, attack=0.05, release=0.05)
    elif src == "noise":
        y = dsp.noise("pink", dur, 0.0, spec.rng) * dsp.envelope(n, 0.05, 0.05)
    else:
        y = np.zeros(n, np.float32)
        step = float(spec.rng.uniform(0.2, 0.3))
        for i in range(int(dur / step)):
            b = dsp.tone(freq, min(0.12, step / 2), 0.0, attack=0.005, release=0.01)
            y[dsp.n_samples(i * step):dsp.n_samples(i * step) + len(b)] += b
            beeps.append((dsp.n_samples(i * step), len(b)))
    y = (y * dsp.ramp_db(n, start, end)).astype(np.float32)
    onset = float(spec.rng.uniform(0.1, 0.25))
    ends = {"start_level_dbfs": r(start), "end_level_dbfs": r(end)}
    if src == "beeps":  # each beep's level: the ramp (linear in dB) at its middle
        facts = [event("beep", onset + i0 / dsp.SR, k / dsp.SR, start + (end - start) * (i0 + k / 2) / (n - 1), freq,
                       waveform="sine") for i0, k in beeps]
    elif src == "tone":
        facts = [event("tone", onset, dur, max(start, end), freq, waveform=wave, **ends)]
    else:
        facts = [event("noise", onset, dur, max(start, end), colour="pink", **ends)]
    x, bg = render(spec, onset + dur + 0.15, [(onset, y)], min(start, end))
    label = TREND_LABEL[trend]
    meta = base_meta(bg, start_level_db=r(start), end_level_db=r(end), change_db=r(abs(end - start)),
                     source=src, durations_s=[r(dur, 3)],
                     **timeline(facts, (src, None, {"onset_sec": r(onset, 3), "duration_sec": r(dur, 3), **ends,
                                                    "change_db": r(abs(end - start))})),
                     labels={"loudness": label, **({"noise": "pink"} if src == "noise" else {})},
                     **({"freqs_hz": [r(freq)]} if src != "noise" else {}))
    what = {"tone": f"steady {fmt_hz(freq)} tone", "noise": "burst of pink noise",
            "beeps": f"series of {fmt_hz(freq)} beeps"}[src]
    cap = (f"A {what} lasting {fmt_s(dur)}, starting at about {fmt_db(start)} and ending at about "
           f"{fmt_db(end)}{noise_phrase(bg)}.")
    if label == "steady":
        cot = (f"The level is about {fmt_db(start)} at the start and still about {fmt_db(end)} at the end, "
               f"so the loudness is staying about the same.")
    else:
        cot = (f"The level goes from about {fmt_db(start)} at the start to about {fmt_db(end)} at the end, a "
               f"{'rise' if label == 'crescendo' else 'drop'} of about {abs(end - start):.0f} dB, so the sound is "
               f"{trend} (a {label}).")
    q = "How does the loudness of the sound change over time?"
    choices, ans = spec.layout(trend, [t for t in TRENDS if t != trend])
    tags = {"tone": "tone, hum", "noise": "noise, whoosh", "beeps": "beep, bleep"}[src]
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, tags, "the loudness", choices))


# ---------------------------------------------------------------------------------------------- duration
def duration_compare(spec: Spec) -> Draft:
    ratio = float(spec.rng.uniform(*{"easy": (2.0, 3.0), "medium": (1.4, 1.7), "hard": (1.15, 1.3)}[spec.difficulty]))
    longer = spec.pick(2)
    short = float(spec.rng.uniform(0.2, 0.45))
    durs = [short, short * ratio] if longer else [short * ratio, short]
    f = float(spec.rng.uniform(300, 1000))
    freqs = [f, f] if spec.difficulty != "hard" else [f, f * 2 ** (float(spec.rng.uniform(-4, 4)) / 12)]
    level = float(spec.rng.uniform(-24, -16))
    ev, facts, length = sequence(spec, freqs, durs, [float(spec.rng.uniform(0.2, 0.35)), 0.0], level)
    x, bg = render(spec, length, ev, level)
    meta = base_meta(bg, durations_s=[r(d, 3) for d in durs], freqs_hz=[r(v) for v in freqs], ratio=r(ratio, 2),
                     counts={"tone": 2}, **timeline(facts),
                     labels={"longer": ORD[longer], "shorter": ORD[1 - longer]})
    cap = (f"Two tones: the first about {fmt_hz(freqs[0])}, lasting about {fmt_s(durs[0])}, then the second about "
           f"{fmt_hz(freqs[1])}, lasting about {fmt_s(durs[1])}{noise_phrase(bg)}.")
    which = "longer" if spec.qtype == "which_longer" else "shorter"
    k = longer if which == "longer" else 1 - longer
    cot = (f"The first tone lasts about {fmt_s(durs[0])} and the second about {fmt_s(durs[1])}. "
           f"{fmt_s(max(durs) if which == 'longer' else min(durs))} is the {which} of the two, "
           f"so the {ORD[k]} tone is {which}.")
    q = f"Which of the two tones lasts {which}?"
    choices, ans = spec.layout(f"the {ORD[k]} tone", [f"the {ORD[1 - k]} tone"])
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "beep, tone", "how long the tones last", choices))


# ---------------------------------------------------------------------------------------------- timbre
WAVE_DESC = {
    "sine": ("a smooth, pure tone with no audible overtones", "no overtones at all, just the fundamental"),
    "square": ("a hollow, reedy buzz with overtones only at odd multiples, each weaker as 1/n",
               "overtones only at odd multiples of the fundamental, falling off as 1/n"),
    "sawtooth": ("a bright, brassy buzz with overtones at every multiple, each weaker as 1/n",
                 "overtones at every multiple of the fundamental, falling off as 1/n"),
}


def timbre(spec: Spec) -> Draft:
    wave = ("sine", "square", "sawtooth")[spec.pick(3)]
    f0 = float(spec.rng.uniform(*{"easy": (150, 300), "medium": (300, 600), "hard": (500, 900)}[spec.difficulty]))
    dur = float(spec.rng.uniform(*((0.5, 0.8) if spec.difficulty == "hard" else (0.8, 1.2))))
    level = float(spec.rng.uniform(-24, -16))
    onset = float(spec.rng.uniform(0.1, 0.25))
    y = dsp.tone(f0, dur, level, wave, attack=0.02, release=0.03)
    x, bg = render(spec, onset + dur + 0.15, [(onset, y)], level)
    harm = [f for f, _ in dsp.partials(wave, f0)][:5]
    meta = base_meta(bg, freqs_hz=[r(f0)], harmonics_hz=[r(f) for f in harm], durations_s=[r(dur, 3)],
                     level_db=r(level), **timeline([event("tone", onset, dur, level, f0, waveform=wave)]),
                     labels={"waveform": wave})
    sound, detail = WAVE_DESC[wave]
    cap = f"A steady tone at about {fmt_hz(f0)} lasting {fmt_s(dur)}: {sound} (a {wave} wave){noise_phrase(bg)}."
    overtones = "" if wave == "sine" else " Its first overtones are at about " + \
        " and ".join(fmt_hz(f) for f in harm[1:3]) + "."
    cot = (f"The tone's fundamental is about {fmt_hz(f0)}.{overtones} It has {detail}, which is the spectrum of "
           f"a {wave} wave.")
    q = "Which waveform does the tone have?"
    choices, ans = spec.layout(wave, [w for w in ("sine", "square", "sawtooth") if w != wave])
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "tone, synthesizer", "the timbre", choices))


# ---------------------------------------------------------------------------------------------- noise colour
NOISE_DESC = {"white": ("a flat spectrum", "an even, bright hiss"),
              "pink": ("a spectrum falling about 3 dB per octave", "a softer, balanced rush like steady rain"),
              "brown": ("a spectrum falling about 6 dB per octave", "a deep, muffled rumble like distant surf")}


def noise_colour(spec: Spec) -> Draft:
    colour = ("white", "pink", "brown")[spec.pick(3)]
    jit = {"easy": 0.1, "medium": 0.2, "hard": 0.3}[spec.difficulty]
    beta = dsp.NOISE_BETA[colour] + float(spec.rng.uniform(-jit, jit))
    dur = float(spec.rng.uniform(*{"easy": (1.5, 2.0), "medium": (1.0, 1.5), "hard": (0.5, 0.8)}[spec.difficulty]))
    level = float(spec.rng.uniform(-26, -18))
    n = dsp.n_samples(dur)
    y = dsp.noise(beta, dur, level, spec.rng) * dsp.envelope(n, 0.05, 0.05)
    onset = float(spec.rng.uniform(0.05, 0.15))
    x = dsp.place(onset + dur + 0.1, [(onset, y)])
    tilt = 10 * np.log10(2) * beta  # dB per octave the spectrum falls
    meta = {"beta": r(beta, 2), "tilt_db": r(tilt), "level_db": r(level), "durations_s": [r(dur, 3)],
            **timeline([event("noise", onset, dur, level, colour=colour)]), "labels": {"noise": colour}}
    spectrum, sound = NOISE_DESC[colour]
    cap = f"About {fmt_s(dur)} of steady noise at about {fmt_db(level)} with {spectrum}: {sound} ({colour} noise)."
    slope = (f"is flat across frequencies (a slope of about {abs(tilt):.0f} dB per octave)" if colour == "white"
             else f"falls about {tilt:.0f} dB per octave")
    cot = (f"The noise's spectrum {slope}, so it sounds like {sound[2:] if sound.startswith('a ') else sound}. "
           f"That spectrum is the mark of {colour} noise.")
    q = "What colour of noise is this?"
    choices, ans = spec.layout(f"{colour} noise", [f"{c} noise" for c in ("white", "pink", "brown") if c != colour])
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "noise, static, hiss", "the spectrum", choices))
