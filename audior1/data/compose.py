"""Multi-step families: each question combines two perceptions that other families teach one at a time.

They exist for the small-scale experiments of docs/design.md §4.2: perception is learnt from the single-percept
families (pitch, counting, duration, melody), the logic from text CoT, and these items test whether the model
composes the two inside an audio chain of thought. Every caption states all the facts the question needs
(each beep's register, every note, every duration), so a text-only rendering is complete.
"""

from __future__ import annotations

import numpy as np

from audior1.data import dsp
from audior1.data.core import Draft, Spec, r
from audior1.data.dsp import fmt_hz, fmt_s
from audior1.data.sound import ORD, base_meta, guessed, note_list, noise_phrase, render, sequence, timeline


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------------------------- high/low
def high_low_count(spec: Spec) -> Draft:
    lo_n, hi_n = {"easy": (3, 5), "medium": (5, 7), "hard": (7, 9)}[spec.difficulty]
    if spec.qtype == "more_high":
        more_high = spec.pick(2) == 0
        while True:
            n = int(spec.rng.integers(lo_n, hi_n + 1))
            h = int(spec.rng.integers(1, n))
            if h != n - h and (h > n - h) == more_high:
                break
    else:
        n = int(spec.rng.integers(lo_n, hi_n + 1))
        h = 1 + spec.pick(n - 1, f"n{n}")
    low_n = n - h
    if spec.difficulty == "hard":
        f_hi, f_lo = float(spec.rng.uniform(650, 850)), float(spec.rng.uniform(330, 430))
    else:
        f_hi, f_lo = float(spec.rng.uniform(1000, 1600)), float(spec.rng.uniform(250, 450))
    seq = ["high"] * h + ["low"] * low_n
    seq = [seq[i] for i in spec.rng.permutation(n)]
    ioi = {"easy": (0.28, 0.36), "medium": (0.22, 0.32), "hard": (0.18, 0.26)}[spec.difficulty]
    beep = 0.1 if spec.difficulty != "hard" else 0.08
    freqs = [f_hi if s == "high" else f_lo for s in seq]
    gaps = [float(g) - beep for g in spec.rng.uniform(*ioi, n)]
    level = float(spec.rng.uniform(-22, -16))
    ev, facts, length = sequence(spec, freqs, [beep] * n, gaps[:-1] + [0.0], level, jitter_db=1.0, kind="beep",
                                 groups=[{"register": s} for s in seq])
    x, bg = render(spec, length, ev, level)
    meta = base_meta(bg, counts={"tone": n, "high tone": h, "low tone": low_n}, freqs_hz=[r(f_hi), r(f_lo)],
                     sequence=seq, durations_s=[beep], **timeline(facts),
                     labels={"more": "high" if h > low_n else ("low" if low_n > h else "equal")})
    # The caption reports measurements (each beep's register, in order, and the two pitches), never the high and
    # low counts, which are the answer to `count_high` and decide `more_high`.
    cap = (f"{n} beeps in a row: {', '.join(seq)}; the high {'beep is' if h == 1 else 'beeps are'} at about "
           f"{fmt_hz(f_hi)} and the low {'one' if low_n == 1 else 'ones'} at about {fmt_hz(f_lo)}{noise_phrase(bg)}.")
    if spec.qtype == "more_high":
        yes = h > low_n
        q = "Are there more high-pitched beeps than low-pitched beeps?"
        choices, ans = spec.layout("yes" if yes else "no", ["no" if yes else "yes"])
        cot = (f"The beeps go {', '.join(seq)}. That is {plural(h, 'high beep')} (about {fmt_hz(f_hi)}) and "
               f"{plural(low_n, 'low beep')} (about {fmt_hz(f_lo)}). {h} is {'more' if yes else 'fewer'} than "
               f"{low_n}, so {'yes' if yes else 'no'}: there are {'more' if yes else 'fewer'} high beeps than low.")
    else:
        q = "How many high-pitched beeps are there?"
        choices, ans = None, str(h)
        cot = (f"The beeps go {', '.join(seq)}, with the high ones at about {fmt_hz(f_hi)} and the low ones at about "
               f"{fmt_hz(f_lo)}. Counting only the high ones gives {plural(h, 'high beep')}.")
    return Draft([x], q, choices, ans, meta, cap, cot,
                 *guessed(spec, "beep, bleep", "the pitch of each beep", choices, (1, 8)))


# ---------------------------------------------------------------------------------------------- melody range
def melody_with_range(rng: np.random.Generator, n: int, span: int) -> list[int]:
    base = int(rng.integers(55, 80 - span))
    inner = [base + int(rng.integers(0, span + 1)) for _ in range(n - 2)]
    notes = [base, base + span] + inner
    return [notes[i] for i in rng.permutation(n)]


def melody_range(spec: Spec) -> Draft:
    n = 4 if spec.difficulty == "hard" else 3
    diff = {"easy": (6, 8), "medium": (3, 5), "hard": (2, 2)}[spec.difficulty]
    wider = spec.pick(2)  # index of the melody with the wider range
    d = int(spec.rng.integers(diff[0], diff[1] + 1))
    narrow = int(spec.rng.integers(2, 14 - d))
    spans = [narrow, narrow + d] if wider else [narrow + d, narrow]
    mel = [melody_with_range(spec.rng, n, s) for s in spans]
    note_dur = float(spec.rng.uniform(0.22, 0.28))
    freqs = [dsp.midi_to_hz(m) for m in mel[0] + mel[1]]
    gaps = list(spec.rng.uniform(0.06, 0.1, 2 * n))
    gaps[n - 1] = float(spec.rng.uniform(0.6, 0.8))
    gaps[-1] = 0.0
    level = float(spec.rng.uniform(-24, -16))
    ev, facts, length = sequence(spec, freqs, [note_dur] * (2 * n), gaps, level, kind="note",
                                 groups=[{"melody": 1 + i // n} for i in range(2 * n)])
    x, bg = render(spec, length, ev, level)
    meta = base_meta(bg, melodies=[[dsp.note_name(m) for m in mm] for mm in mel], notes=[dsp.note_name(m) for m in
                     mel[0] + mel[1]], freqs_hz=[r(f) for f in freqs], ranges_semitones=spans,
                     counts={"note": 2 * n},
                     **timeline(facts, *(("melody", lambda e, k=k: e["position"]["melody"] == k, {"position": k})
                                         for k in (1, 2))),
                     labels={"wider": ORD[wider], "narrower": ORD[1 - wider]})
    cap = (f"Two short sine-tone melodies separated by a pause. The first: {note_list(mel[0])}; the "
           f"second: {note_list(mel[1])}{noise_phrase(bg)}.")
    parts = []
    for k, mm in enumerate(mel):
        parts.append(f"The {ORD[k]} melody goes {note_list(mm, with_hz=False)}: from {dsp.note_name(min(mm))} "
                     f"({fmt_hz(dsp.midi_to_hz(min(mm)))}) up to {dsp.note_name(max(mm))} "
                     f"({fmt_hz(dsp.midi_to_hz(max(mm)))}), a range of {spans[k]} semitones.")
    big, small = max(spans), min(spans)
    if spec.qtype == "second_wider":
        q = "Does the second melody span a wider range of pitch than the first?"
        choices, ans = spec.layout("yes" if wider else "no", ["no" if wider else "yes"])
        tail = f"{spans[1]} is {'more' if wider else 'less'} than {spans[0]}, so {'yes' if wider else 'no'}."
    else:
        q = "Which melody spans the wider range of pitch?"
        choices, ans = spec.layout(f"the {ORD[wider]} melody", [f"the {ORD[1 - wider]} melody"])
        tail = f"{big} is more than {small}, so the {ORD[wider]} melody spans the wider range."
    cot = " ".join(parts) + " " + tail
    return Draft([x], q, choices, ans, meta, cap, cot, *guessed(spec, "music, melody", "the notes", choices))


# ---------------------------------------------------------------------------------------------- pitch & duration
def pitch_and_duration(spec: Spec) -> Draft:
    semis = float(spec.rng.uniform(*{"easy": (4, 7), "medium": (2, 3), "hard": (1, 1.5)}[spec.difficulty]))
    ratio = float(spec.rng.uniform(*{"easy": (2, 2.5), "medium": (1.5, 1.8), "hard": (1.25, 1.4)}[spec.difficulty]))
    target = spec.pick(2)
    hi = int(spec.rng.integers(2))  # which tone is higher
    # higher_is_longer: target 0 -> yes (the higher one is longer). longer_pitch: target 0 -> longer is higher.
    longer = hi if target == 0 else 1 - hi
    base = float(spec.rng.uniform(57, 74))
    m = [base + semis, base] if hi == 0 else [base, base + semis]
    freqs = [dsp.midi_to_hz(v) for v in m]
    short = float(spec.rng.uniform(0.2, 0.4))
    durs = [short * ratio, short] if longer == 0 else [short, short * ratio]
    level = float(spec.rng.uniform(-24, -16))
    ev, facts, length = sequence(spec, freqs, durs, [float(spec.rng.uniform(0.2, 0.35)), 0.0], level)
    x, bg = render(spec, length, ev, level)
    meta = base_meta(bg, freqs_hz=[r(f) for f in freqs], durations_s=[r(d, 3) for d in durs],
                     difference_semitones=r(semis, 2), counts={"tone": 2}, **timeline(facts),
                     labels={"higher": ORD[hi], "lower": ORD[1 - hi], "longer": ORD[longer],
                             "shorter": ORD[1 - longer]})
    cap = (f"Two tones: the first about {fmt_hz(freqs[0])}, lasting {fmt_s(durs[0])}; the second about "
           f"{fmt_hz(freqs[1])}, lasting {fmt_s(durs[1])}{noise_phrase(bg)}.")
    facts_txt = (f"The first tone is about {fmt_hz(freqs[0])} and lasts {fmt_s(durs[0])}; the second is about "
                 f"{fmt_hz(freqs[1])} and lasts {fmt_s(durs[1])}. So the {ORD[hi]} tone is higher and the "
                 f"{ORD[longer]} tone is longer.")
    if spec.qtype == "higher_is_longer":
        yes = hi == longer
        q = "Is the higher-pitched tone also the longer one?"
        choices, ans = spec.layout("yes" if yes else "no", ["no" if yes else "yes"])
        cot = f"{facts_txt} {'They are the same tone, so yes.' if yes else 'They are different tones, so no.'}"
    else:
        up = hi == longer
        q = "Is the longer tone higher or lower in pitch than the shorter one?"
        choices, ans = spec.layout("higher" if up else "lower", ["lower" if up else "higher"])
        cot = f"{facts_txt} The longer tone is therefore the {'higher' if up else 'lower'} one."
    return Draft([x], q, choices, ans, meta, cap, cot,
                 *guessed(spec, "beep, tone", "the pitches or durations", choices))

