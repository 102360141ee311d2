"""The procedural acoustic-reasoning suite: the family registry and the builder that writes WAVs + a manifest.

`build(out, split, n_per_task, seed)` writes `out/audio/{split}/{task}/{id}.wav` (16 kHz mono PCM_16) and the
manifest `out/synth-{split}.jsonl`. Items are pure functions of (seed, split, task, index) (see `core`), so the
work is spread over processes in chunks and the output is identical for any number of workers.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from audior1.data import compose, dsp, sound, speech
from audior1.data.core import SPLITS, DataError, Family, finish, item_id, make_spec
from audior1.data.manifest import write_manifest

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("pitch_compare", "music", ("which_higher", "second_vs_first"), sound.pitch_compare,
           doc="two tones; which is higher (0.5-8 semitones apart)"),
    Family("melody_contour", "music", ("contour", "end_vs_start"), sound.melody_contour,
           doc="3-6 notes; rising / falling / rising then falling / falling then rising"),
    Family("interval_size", "music", ("interval_name", "semitones"), sound.interval_size,
           doc="two notes one after the other; name or size of the interval"),
    Family("chord_quality", "music", ("quality", "mood"), sound.chord_quality,
           doc="a sine triad, possibly inverted; major or minor"),
    Family("count_events", "sound", ("count_mc", "count_numeric"), sound.count_events,
           doc="1-8 beeps or clicks, regular or uneven"),
    Family("tempo", "music", ("bpm_range",), sound.tempo, doc="a click track; which BPM range"),
    Family("loudness_trend", "sound", ("trend",), sound.loudness_trend,
           doc="a tone, beeps or noise getting louder / softer / staying level (7-26 dB)"),
    Family("duration_compare", "sound", ("which_longer", "which_shorter"), sound.duration_compare,
           doc="two tones, duration ratio 1.15-3"),
    Family("timbre", "music", ("waveform",), sound.timbre, doc="sine / square / sawtooth tone"),
    Family("noise_colour", "sound", ("colour",), sound.noise_colour, doc="white / pink / brown noise"),
    Family("voice_pitch", "speech", ("voice_pitch",), speech.voice_pitch, needs_speech=True,
           doc="an espeak-ng sentence; low- or high-pitched voice"),
    Family("speech_rate", "speech", ("rate",), speech.speech_rate, needs_speech=True,
           doc="an espeak-ng sentence; spoken slowly or quickly"),
    Family("word_count", "speech", ("count_mc", "count_numeric"), speech.word_count, needs_speech=True,
           doc="2-8 separate spoken words (the transcript answers this one: a speech control)"),
    Family("trap_count", "sound", ("count_mc",), speech.trap_count, needs_speech=True,
           doc='a voice announces k beeps, n != k follow'),
    Family("trap_chord", "music", ("quality",), speech.trap_chord, needs_speech=True,
           doc='a voice announces "a cheerful major chord", a minor one follows (or the reverse)'),
    Family("trap_pitch", "music", ("second_vs_first",), speech.trap_pitch, needs_speech=True,
           doc='a voice says the next tone goes up, it goes down (or the reverse)'),
    Family("high_low_count", "sound", ("more_high", "count_high"), compose.high_low_count,
           doc="a row of high and low beeps; more high than low? how many high?"),
    Family("melody_range", "music", ("second_wider", "which_wider"), compose.melody_range,
           doc="two short melodies; which spans the wider pitch range"),
    Family("pitch_and_duration", "sound", ("higher_is_longer", "longer_pitch"), compose.pitch_and_duration,
           doc="two tones; is the higher one also the longer one?"),
)}


def make_item(task: str, split: str, seed: int, index: int) -> tuple[dict, list[np.ndarray]]:
    """One item and its audio, in memory (audio paths are the ones `build` would write)."""
    fam = FAMILIES[task]
    spec = make_spec(fam, split, seed, index)
    try:
        draft = fam.make(spec)
    except Exception as e:  # name the item: a generator bug must be reproducible from the message
        raise RuntimeError(f"generating {item_id(task, split, seed, index)}: {e}") from e
    iid = item_id(task, split, seed, index)
    names = [f"{iid}.wav"] if len(draft.audio) == 1 else [f"{iid}_{k}.wav" for k in range(len(draft.audio))]
    paths = [f"audio/{split}/{task}/{n}" for n in names]
    return finish(fam, spec, draft, paths), draft.audio


def _work(job: tuple) -> list[dict]:
    maker, task, split, seed, indices, out, cache = job
    if cache:
        speech.set_cache_dir(cache)
    items = []
    for i in indices:
        item, audio = maker(task, split, seed, i)
        for rel, x in zip(item["audio"], audio):
            path = Path(out) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(dsp.to_wav_bytes(x))
        items.append(item)
    return items


def write_items(out: Path, split: str, tasks: list[str], n_per_task: int, seed: int, maker: Callable,
                manifest: str, workers: int | None = None, speech_cache: str | Path | None = None,
                chunk: int = 48, log=lambda s: print(s, file=sys.stderr)) -> Path:
    """Run `maker(task, split, seed, index) -> (item, audio)` for every item, in `workers` processes, write the
    WAVs under `out` and the manifest `out/manifest`; the output does not depend on `workers`."""
    out.mkdir(parents=True, exist_ok=True)
    cache = str(speech_cache) if speech_cache else None
    jobs = [(maker, t, split, seed, list(range(a, min(a + chunk, n_per_task))), str(out), cache)
            for t in tasks for a in range(0, n_per_task, chunk)]
    workers = max(1, min(workers or min(2, os.cpu_count() or 1), len(jobs) or 1))
    t0 = time.perf_counter()
    if workers == 1:
        chunks = [_work(j) for j in jobs]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            chunks = pool.map(_work, jobs, chunksize=1)
    items = [it for c in chunks for it in c]
    path = write_manifest(out / manifest, items)
    log(f"wrote {len(items)} items ({len(tasks)} tasks) to {path} in {time.perf_counter() - t0:.1f} s")
    return path


def resolve_tasks(tasks: list[str] | None, warn=print) -> list[str]:
    """The families to build: synthetic ones and, by name, FSDD ones (`all`: every synthetic family)."""
    from audior1.data import fsdd

    names = list(FAMILIES) if not tasks or tasks == ["all"] else list(tasks)
    unknown = [t for t in names if t not in FAMILIES and t not in fsdd.FAMILIES]
    if unknown:
        raise DataError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join([*FAMILIES, *fsdd.FAMILIES])}")
    if not speech.available():
        skipped = [t for t in names if t in FAMILIES and FAMILIES[t].needs_speech]
        if skipped:
            warn(f"warning: espeak-ng not found, skipping speech families: {', '.join(skipped)} "
                 "(apt-get install espeak-ng)")
        names = [t for t in names if t not in skipped]
    return names


def make_any(task: str, split: str, seed: int, index: int, recordings: str | None = None):
    """`make_item` for a synthetic family, `fsdd.make_item` (which needs the recordings) for an FSDD one."""
    if task in FAMILIES:
        return make_item(task, split, seed, index)
    from audior1.data import fsdd

    return fsdd.make_item(task, split, seed, index, recordings)


def build(out: str | Path, split: str, n_per_task: int, seed: int = 0, tasks: list[str] | None = None,
          workers: int | None = None, speech_cache: str | Path | None = None, manifest: str | None = None,
          recordings: str | Path | None = None, log=lambda s: print(s, file=sys.stderr)) -> Path:
    """Generate `n_per_task` items of each task for one split; return the manifest path. FSDD families
    (`fsdd_digit`, `fsdd_arith`, `fsdd_speaker`) may be named beside the synthetic ones: their clips are cut from
    the recordings in `recordings`, and one manifest holds both (a mixed suite for one experiment)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    names = resolve_tasks(tasks, warn=log)
    maker = make_item
    if any(t not in FAMILIES for t in names):
        from audior1.data import fsdd

        if recordings is None:
            raise DataError(f"task(s) {', '.join(t for t in names if t not in FAMILIES)} are cut from the Free "
                            "Spoken Digit recordings: give their directory (--recordings DIR)")
        recordings = str(Path(recordings).resolve())
        fsdd.index(recordings)  # fail early, in the parent, on a wrong directory
        maker = functools.partial(make_any, recordings=recordings)
    return write_items(Path(out), split, names, n_per_task, seed, maker, manifest or f"synth-{split}.jsonl",
                       workers, speech_cache, log=log)
