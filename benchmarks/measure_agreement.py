"""Does measuring the audio agree with `meta`? Generates suite items, states every measurable fact of each item's
`meta` as a claim about its referent, checks it with `audior1.data.facts.check` (meta hidden), and prints JSON.

For every claim kind (pitch, note, onset, duration, count, level, tempo, trend, level change, start/end level,
noise colour, background colour and level, SNR, voice F0, speaking rate, speech span, clip length) and family:
- `true`: the fact as `meta` states it; agreement = share judged "consistent" (the rest are "inconsistent",
  i.e. a measurement that would wrongly contradict a true claim, or "cannot tell");
- `moved`: the same claim with the value of another referent of the item (the other tone's pitch, the next
  beep's onset, another count, the other colours and trends ...) where that value differs from the truth by more
  than a listener's resolution; caught = share judged "inconsistent", false accepts = share judged "consistent".

    python benchmarks/measure_agreement.py [--n-per-task 30] [--seed 913] [--split dev] [--tasks ...]
                                           [--fsdd ../shared/data/fsdd/recordings] [--examples 3]

Seed 913 / split dev is used by no test. Reads `meta` in the current schema (`onset_s`, `dur_s`, `freq_hz`,
`level_db`) or the per-event one (`onset_sec`, `duration_sec`, `f0_hz`, `level_dbfs`, `kind`, `position`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from audior1.data import facts, measure, speech, synth
from audior1.data.facts import CANNOT_TELL, CONSISTENT, INCONSISTENT

WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


class _Ordinals:
    """ORD[k]: the ordinal of position k + 1 ("first" ... "tenth", then "11th", "21st", ...)."""

    def __getitem__(self, k: int) -> str:
        n = k + 1
        if n <= len(WORDS):
            return WORDS[n - 1]
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix}"


ORD = _Ordinals()
KIND_NOUN = {"beep": "beep", "tone": "tone", "note": "note", "click": "click", "tick": "click", "word": "word",
             "digit": "digit", "chord": "chord", "noise": "noise", "pulse": "beep"}
COUNT_NOUN = {"tone": "tones", "note": "notes", "click": "clicks", "word": "words", "digit": "digits",
              "high tone": "high tones", "low tone": "low tones", "beep": "beeps"}
TARGET = 0.95


def get(d: dict, *keys, default=None):
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return default


def event_facts(meta: dict) -> list[dict]:
    """Per-event facts in either schema: kind, onset, duration, f0, level, note, position."""
    out = []
    counts = meta.get("counts") or {}
    base = [k for k in counts if " " not in k]
    noun = base[0] if base else None
    for k, e in enumerate(meta.get("events") or []):
        pos = e.get("position") or {}
        out.append({"kind": e.get("kind") or noun or "sound", "onset": get(e, "onset_sec", "onset_s"),
                    "dur": get(e, "duration_sec", "dur_s"), "f0": get(e, "f0_hz", "freq_hz"),
                    "level": get(e, "level_dbfs", "level_db"), "note": e.get("note"), "of_kind": pos.get("of_kind"),
                    "register": pos.get("register"), "in_register": pos.get("in_register"), "raw": e})
    notes = meta.get("notes")
    if notes and len(notes) == len(out) and all(o["f0"] for o in out):
        for o, n in zip(out, notes):
            o["note"] = o["note"] or n
    return out


def claims(item: dict) -> list[dict]:
    """Every measurable fact of the item's meta as (kind, referent, value, moved values, skip reason)."""
    meta, task = item["meta"], item["task"]
    out = []

    def add(kind, referent, value, moved=(), claim_tol=None, skip=""):
        if value is None:
            return
        out.append({"kind": kind, "referent": referent, "value": value, "moved": [v for v in moved if v is not None],
                    "claim_tol": claim_tol, "skip": skip})

    # facts `meta` states that are not what the audio holds (reported, not scored)
    beeps_ramp = meta.get("source") == "beeps"
    not_audible = ("a ramp of beeps: meta's span and end level are the gain ramp's, which runs on after the "
                   "last beep") if beeps_ramp else ""
    labels = meta.get("labels") or {}
    evs = event_facts(meta)
    speech_evs = [e for e in evs if e["kind"] == "speech"]
    sounds = [e for e in evs if e["kind"] != "speech"]
    # simultaneous events (the per-event schema gives a chord's notes one record each) make one chord
    chord = bool(meta.get("root") is not None or labels.get("chord"))
    if chord and len({e["onset"] for e in sounds}) == 1 and len(sounds) > 1:
        on, dur = sounds[0]["onset"], sounds[0]["dur"]
        levels = [e["level"] for e in sounds if e["level"] is not None]
        total = 10 * np.log10(sum(10 ** (lv / 10) for lv in levels)) if levels else None
        sounds = [{"kind": "chord", "onset": on, "dur": dur, "f0": None, "note": None, "level": total,
                   "of_kind": 1, "register": None, "in_register": None, "raw": {}}]
    by_kind = defaultdict(list)
    for e in sounds:
        by_kind[e["kind"]].append(e)
    for kind, group in by_kind.items():
        noun = "chord" if chord and len(group) == 1 else KIND_NOUN.get(kind, "sound")
        ramp = ("start_level_db" in meta or "start_level_dbfs" in meta) and len(group) == 1
        if ramp:  # one passage (a tone or a noise) changing in level
            add("onset", "the sound", group[0]["onset"])
            add("duration", "the sound", group[0]["dur"], skip=not_audible)
            continue
        for k, e in enumerate(group):
            pos = e["of_kind"] or k + 1
            ref = f"the {ORD[pos - 1]} {noun}" if len(group) > 1 else f"the {noun}"
            others = [o for o in group if o is not e]
            add("onset", ref, e["onset"], [o["onset"] for o in others if abs(o["onset"] - e["onset"]) > 0.1][:1])
            add("duration", ref, e["dur"], [o["dur"] for o in others
                                           if abs(o["dur"] - e["dur"]) > max(0.05, 0.25 * e["dur"])][:1])
            if e["f0"]:
                add("pitch", ref, e["f0"],
                    [o["f0"] for o in others if o["f0"] and abs(o["f0"] / e["f0"] - 1) > 0.03][:1])
            if e["note"] and e["f0"]:
                add("note", ref, e["note"], [o["note"] for o in others if o["note"] and o["note"] != e["note"]][:1])
            if e["level"] is not None and not beeps_ramp:
                add("level", ref, e["level"], [o["level"] for o in others if abs(o["level"] - e["level"]) > 3][:1])
            if e["register"] and e["in_register"] and e["f0"]:  # "the second high beep"
                rref = f"the {ORD[e['in_register'] - 1]} {e['register']} {noun}"
                add("register_pitch", rref, e["f0"], [o["f0"] for o in others
                                                       if o["f0"] and abs(o["f0"] / e["f0"] - 1) > 0.03][:1])
    if chord:
        from audior1.data.dsp import note_name, note_to_midi
        names = meta.get("notes") or []
        for n in names:  # a note of the chord; moved: a semitone off (the other quality's third)
            off = note_name(note_to_midi(n) + 1)
            add("note", "the chord", n, [off] if off not in names else [])
        freqs = meta.get("freqs_hz") or []
        for f in freqs:
            up = f * 2 ** (1 / 12)
            add("pitch", "the chord", f, [up] if all(abs(up / g - 1) > 0.03 for g in freqs) else [])
        if names:
            add("count", "the chord", len(names), [len(names) + 1, len(names) - 1])
    counts = meta.get("counts") or {}
    for noun, n in counts.items():
        if chord and noun == "note":
            continue
        if noun == "word" and task == "speech_rate":  # connected speech: words counted as syllable nuclei
            add("count_connected_words", "words", n, [n - 1, n + 1])
            continue
        add("count", COUNT_NOUN.get(noun, noun + "s"), n, [n - 1, n + 1] if n > 1 else [n + 1])
    for seg in meta.get("segments") or []:  # "the second melody has 4 notes"
        if seg.get("name") == "melody" and seg.get("position"):
            n = len(seg.get("events") or [])
            add("count", f"the {ORD[seg['position'] - 1]} melody", n, [n + 1])
    if meta.get("bpm"):
        b = meta["bpm"]
        add("tempo", None, b, [b * 1.15, b / 1.15])
        if labels.get("tempo"):
            add("tempo_range", None, labels["tempo"].replace(" BPM", ""))
    trend = labels.get("loudness")
    if trend:
        name = {"crescendo": "rising", "decrescendo": "falling", "steady": "steady"}.get(trend, trend)
        add("trend", "the sound", name, [t for t in ("rising", "falling", "steady") if t != name])
        ch = get(meta, "change_db")
        if ch is not None:
            signed = ch if name == "rising" else -ch if name == "falling" else 0.0
            add("level_change", "the sound", signed, [-signed] if abs(signed) > 3 else [signed + 10],
                skip=not_audible)
        s_, e_ = get(meta, "start_level_dbfs", "start_level_db"), get(meta, "end_level_dbfs", "end_level_db")
        add("start_level", "the sound", s_, [e_] if e_ is not None and abs(e_ - s_) > 3 else [])
        add("end_level", "the sound", e_, [s_] if s_ is not None and abs(e_ - s_) > 3 else [], skip=not_audible)
    if labels.get("noise"):
        c = labels["noise"]
        add("noise_colour", "the noise", c, [o for o in ("white", "pink", "brown") if o != c])
    if meta.get("tilt_db") is not None:
        add("noise_tilt", "the noise", meta["tilt_db"], [meta["tilt_db"] + 3, meta["tilt_db"] - 3])
    bg = meta.get("background") or (meta.get("clip") or {}).get("background")
    if bg:
        c = bg.get("colour")
        add("background_colour", "the background", c, [o for o in ("white", "pink", "brown") if o != c])
        lv = get(bg, "level_dbfs", "level_db")
        if lv is not None:
            add("background_level", "the background", lv, [lv + 8, lv - 8])
        if bg.get("snr_db") is not None:
            add("snr", None, bg["snr_db"], [bg["snr_db"] + 8, bg["snr_db"] - 8],
                skip="meta's SNR is against the ramp's quietest level; the measured one against the mean" if
                trend else "")
    sp = speech_evs[0]["raw"] if len(speech_evs) == 1 else {}
    f0 = get(meta, "f0_hz") if not isinstance(meta.get("f0_hz"), list) else None
    f0 = f0 or sp.get("f0_hz")
    if f0 and task not in ("pitch_compare",):
        add("voice_f0", "the speech", f0, [f0 * 1.3, f0 / 1.3])
    wps = get(meta, "words_per_sec", "words_per_s") or sp.get("words_per_sec")
    if wps:
        add("speaking_rate", "the speech", wps, [wps * 1.6, wps / 1.6])
    if speech_evs and len(speech_evs) == 1:  # the per-event schema: the speech as one event
        e = speech_evs[0]
        add("speech_onset", "the speech", e["onset"], [e["onset"] + 0.3])
        add("speech_duration", "the speech", e["dur"], [e["dur"] * 1.5, e["dur"] / 1.5])
        add("speech_level", "the speech", e["level"], [e["level"] + 8, e["level"] - 8] if e["level"] else [])
        if task != "speech_rate" and sp.get("words"):
            add("count_connected_words", "words", sp["words"], [sp["words"] - 1, sp["words"] + 1])
    elif task in ("voice_pitch", "speech_rate") and meta.get("durations_s"):
        d = meta["durations_s"][0]
        add("speech_duration", "the speech", d, [d * 1.5, d / 1.5])
    if meta.get("speech_end_s") is not None and not speech_evs:
        add("speech_end", "the speech", meta["speech_end_s"], [meta["speech_end_s"] + 0.3])
    clip = get(meta, "clip_s") or get(meta.get("clip") or {}, "duration_sec")
    add("clip_duration", "the clip", clip, [clip + 0.5] if clip else [])
    return out


CHECK_KIND = {"note": "pitch", "tempo_range": "tempo", "background_colour": "noise_colour",
              "background_level": "level", "speech_duration": "duration", "speech_end": "offset",
              "speech_onset": "onset", "speech_level": "level", "clip_duration": "duration",
              "register_pitch": "pitch", "count_connected_words": "count"}


def run_item(item: dict, audio: np.ndarray, tally, adv, skipped, examples, n_examples: int, timing: list):
    t0 = time.perf_counter()
    m = measure.measure_clip(audio)
    timing.append(time.perf_counter() - t0)
    fam = item["task"]
    for c in claims(item):
        kind = CHECK_KIND.get(c["kind"], c["kind"])
        status, detail = facts.check(kind, c["value"], m, c["referent"], claim_tol=c["claim_tol"])
        if c["skip"]:
            skipped[(c["kind"], c["skip"])][status] += 1
            continue
        tally[(c["kind"], fam)][status] += 1
        if status != CONSISTENT and len(examples[c["kind"]]) < n_examples:
            examples[c["kind"]].append({"id": item["id"], "difficulty": item["difficulty"], "claim":
                                        f"{c['referent']}: {c['value']}", "status": status, "detail": detail})
        for v in c["moved"]:
            s2, d2 = facts.check(kind, v, m, c["referent"], claim_tol=c["claim_tol"])
            adv[(c["kind"], fam)][s2] += 1
            if s2 == CONSISTENT and len(examples["moved:" + c["kind"]]) < n_examples:
                examples["moved:" + c["kind"]].append({"id": item["id"], "claim": f"{c['referent']}: {v} "
                                                       f"(true {c['value']})", "detail": d2})


def compare_methods(items: list[tuple[dict, np.ndarray]]) -> dict:
    """The hand-written measurements against librosa's on the same clips: per-event pitch (spectral peak of the
    event vs pYIN's median over it), tempo (line through the onsets vs `beat_track`), event count (energy
    detector vs `onset_detect`)."""
    import librosa
    pitch = {"spectral_peak": [], "pyin": []}
    tempo = {"onset_line": [], "librosa_beat_track": []}
    count = {"energy_detector": [], "librosa_onset_detect": []}
    for item, x in items:
        meta = item["meta"]
        m = measure.measure_clip(x)
        evs = [e for e in event_facts(meta) if e["f0"]]
        tones = m.of_kind("tone")
        if evs and len(tones) == len(evs):
            for e, t in zip(evs, tones):
                seg = x[int(t.onset.value * 16000):int(t.offset * 16000)].astype(np.float32)
                f0, _, prob = librosa.pyin(seg, fmin=50, fmax=2100, sr=16000, frame_length=512, hop_length=64,
                                           fill_na=None)
                good = f0[prob >= 0.1] if (prob >= 0.1).any() else f0
                for name, v in (("spectral_peak", t.f0.value), ("pyin", float(np.median(good)))):
                    pitch[name].append(abs(1200 * np.log2(v / e["f0"])))
        if meta.get("bpm"):
            bpm = meta["bpm"]
            b, _ = librosa.beat.beat_track(y=x.astype(np.float32), sr=16000)
            for name, v in (("onset_line", m.tempo.value if m.tempo else None),
                            ("librosa_beat_track", float(np.atleast_1d(b)[0]))):
                tempo[name].append(None if v is None else abs(v / bpm - 1))
        n = next((v for k, v in (meta.get("counts") or {}).items() if k in ("tone", "click")), None)
        if n is not None and item["task"] == "count_events":
            on = librosa.onset.onset_detect(y=x.astype(np.float32), sr=16000, units="time")
            count["energy_detector"].append(len(m.sounds) == n)
            count["librosa_onset_detect"].append(len(on) == n)

    def cents(v):
        return {"events": len(v), "median_cents": round(float(np.median(v)), 2) if v else None,
                "p95_cents": round(float(np.percentile(v, 95)), 2) if v else None,
                "within_10_cents": round(float(np.mean(np.array(v) <= 10)), 4) if v else None}

    def rel(v):
        ok = [u for u in v if u is not None]
        return {"clips": len(v), "within_2pct": round(sum(u <= 0.02 for u in ok) / len(v), 4) if v else None,
                "median_rel_error": round(float(np.median(ok)), 4) if ok else None}
    return {"pitch": {k: cents(v) for k, v in pitch.items()}, "tempo": {k: rel(v) for k, v in tempo.items()},
            "count": {k: {"clips": len(v), "exact": round(float(np.mean(v)), 4) if v else None}
                      for k, v in count.items()}}


def rate(c: dict, key: str) -> float | None:
    n = sum(c.values())
    return round(c[key] / n, 4) if n else None


def summary(tally, by) -> dict:
    out = {}
    groups = defaultdict(lambda: defaultdict(int))
    for (kind, fam), c in tally.items():
        k = kind if by == "kind" else fam
        for s, v in c.items():
            groups[k][s] += v
    for k, c in sorted(groups.items()):
        n = sum(c.values())
        out[k] = {"n": n, "consistent": rate(c, CONSISTENT), "inconsistent": rate(c, INCONSISTENT),
                  "cannot_tell": rate(c, CANNOT_TELL)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-per-task", type=int, default=30)
    ap.add_argument("--seed", type=int, default=913)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--tasks", nargs="*")
    default_fsdd = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
    ap.add_argument("--fsdd", default=str(default_fsdd), help="FSDD recordings ('' to skip)")
    ap.add_argument("--examples", type=int, default=3, help="disagreements shown per claim kind")
    ap.add_argument("--compare-methods", type=int, default=0, metavar="N",
                    help="also compare with librosa's pYIN / beat_track / onset_detect on N items per family")
    args = ap.parse_args()

    fsdd_names = ("fsdd_digit", "fsdd_arith", "fsdd_speaker")
    synth_tasks = [t for t in args.tasks if t not in fsdd_names] if args.tasks else None
    tasks = synth.resolve_tasks(synth_tasks, warn=lambda s: print(s, file=sys.stderr)) \
        if synth_tasks is None or synth_tasks else []
    makers = [(t, synth.make_item) for t in tasks if t in synth.FAMILIES]
    skipped = []
    if args.fsdd and Path(args.fsdd).is_dir():
        import functools

        from audior1.data import fsdd
        for t in fsdd.FAMILIES:
            if not args.tasks or t in args.tasks:
                makers.append((t, functools.partial(fsdd.make_item, recordings=str(Path(args.fsdd).resolve()))))
    else:
        skipped.append(f"FSDD families: no recordings at {args.fsdd}")
    if not speech.available():
        skipped.append("speech families: espeak-ng not installed")

    tally = defaultdict(lambda: defaultdict(int))
    adv = defaultdict(lambda: defaultdict(int))
    skipped_claims = defaultdict(lambda: defaultdict(int))
    examples = defaultdict(list)
    timing: list[float] = []
    t0 = time.perf_counter()
    for task, make in makers:
        for i in range(args.n_per_task):
            item, audio = make(task, args.split, args.seed, i)
            run_item(item, audio[0], tally, adv, skipped_claims, examples, args.examples, timing)
    methods = None
    if args.compare_methods:
        pool = [make(t, args.split, args.seed, i) for t, make in makers
                if t in ("pitch_compare", "melody_contour", "interval_size", "duration_compare", "high_low_count",
                         "melody_range", "pitch_and_duration", "timbre", "tempo", "count_events")
                for i in range(args.compare_methods)]
        methods = compare_methods([(it, a[0]) for it, a in pool])
    kinds = summary(tally, "kind")
    below = {k: v["consistent"] for k, v in kinds.items() if v["consistent"] is not None and v["consistent"] < TARGET}
    per_family = defaultdict(dict)
    for (kind, fam), c in sorted(tally.items()):
        per_family[fam][kind] = {"n": sum(c.values()), "consistent": rate(c, CONSISTENT),
                                 "inconsistent": rate(c, INCONSISTENT), "cannot_tell": rate(c, CANNOT_TELL)}
    moved = summary(adv, "kind")
    total = defaultdict(int)
    for c in tally.values():
        for s, v in c.items():
            total[s] += v
    import librosa
    report = {
        "benchmark": "measure_agreement",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "librosa": librosa.__version__},
        "config": {"seed": args.seed, "split": args.split, "n_per_task": args.n_per_task,
                   "tasks": [t for t, _ in makers], "skipped": skipped, "target": TARGET},
        "items": len(timing),
        "claims": sum(total.values()),
        "overall": {"consistent": rate(total, CONSISTENT), "inconsistent": rate(total, INCONSISTENT),
                    "cannot_tell": rate(total, CANNOT_TELL)},
        "true_claims_by_kind": kinds,
        "below_target": below,
        "moved_claims_by_kind": {k: {"n": v["n"], "caught": v["inconsistent"], "false_accepts": v["consistent"],
                                     "cannot_tell": v["cannot_tell"]} for k, v in moved.items()},
        "not_scored": [{"kind": k, "why": why, "n": sum(c.values()), **{s: v for s, v in c.items()}}
                       for (k, why), c in sorted(skipped_claims.items())],
        "true_claims_by_family": summary(tally, "family"),
        "by_family_and_kind": per_family,
        "methods": methods,
        "examples": dict(examples),
        "ms_per_clip": {"mean": round(1000 * float(np.mean(timing)), 1),
                        "p95": round(1000 * float(np.percentile(timing, 95)), 1)} if timing else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
