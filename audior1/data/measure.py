"""Acoustic measurements of a clip: the runtime verifier for audio without `meta`, and the label checks of the tests.

None of this reads the generator's parameters. Two layers:
- helpers the label tests use (`segments`, `peak_hz`, `tempo_bpm`, `loudness_change_db`,
  `spectral_tilt_db_per_octave`, `voice_f0_hz`, ...): an energy detector, a spectral peak, autocorrelation of an
  onset train, a regression on the RMS envelope, the slope of a Welch spectrum, the cepstrum of voiced frames;
- `measure_clip(audio) -> ClipFacts`: every sound event (onset, duration, level, pitch and note, kind), tempo,
  loudness level and trend, noise colour of the noise and of the background, and for speech the voice F0
  (librosa's pYIN) and the speaking rate (syllable nuclei). Each value is a `Quantity` carrying the tolerance
  its measurement supports; `audior1.data.facts.check` then says whether a claim about one referent is borne
  out, exactly as it does for the generator's `meta`. See docs/data.md, "Measuring a clip".

numpy only at import; librosa (pYIN) is imported when a clip has speech-like events.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from audior1.data.facts import (Background, ClipFacts, Event, Quantity, Speech, _colour, _note, _regular_tempo,
                                envelope_points, trend_from_points)

SR = 16000


def frame_db(x: np.ndarray, win: float = 0.01, hop: float = 0.005) -> np.ndarray:
    """RMS level in dB of overlapping frames."""
    w, h = int(win * SR), int(hop * SR)
    if len(x) < w:
        x = np.pad(x, (0, w - len(x)))
    n = 1 + (len(x) - w) // h
    idx = np.arange(w)[None, :] + h * np.arange(n)[:, None]
    e = np.mean(np.square(x[idx], dtype=np.float64), axis=1)
    return 10 * np.log10(e + 1e-12)


def segments(x: np.ndarray, min_gap: float = 0.04, min_len: float = 0.015, rel: float = 0.4,
             start: float = 0.0) -> list[tuple[float, float]]:
    """Sound events as (onset, offset) seconds: frames above floor + rel*(peak - floor), where floor is a low
    percentile of frame levels (the background) and peak the loudest frame; gaps under `min_gap` are bridged."""
    off = int(start * SR)
    db = frame_db(x[off:])
    peak = db.max()
    floor = max(np.percentile(db, 3), peak - 60)  # clips keep >= 0.25 s of background around events
    on = db > floor + rel * (peak - floor)
    segs, i, hop = [], 0, 0.005
    while i < len(on):
        if on[i]:
            j = i
            while j < len(on) and on[j]:
                j += 1
            segs.append([i * hop, j * hop + 0.005])
            i = j
        else:
            i += 1
    merged: list[list[float]] = []
    for s in segs:
        if merged and s[0] - merged[-1][1] < min_gap:
            merged[-1][1] = s[1]
        else:
            merged.append(s)
    return [(a + start, b + start) for a, b in merged if b - a >= min_len]


def _spectrum(x: np.ndarray, nfft_min: int = 1 << 15) -> tuple[np.ndarray, np.ndarray]:
    n = max(nfft_min, 1 << int(np.ceil(np.log2(len(x) * 4))))
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    return np.fft.rfftfreq(n, 1 / SR), mag


def _interp(mag: np.ndarray, k: int) -> float:
    a, b, c = np.log(mag[k - 1:k + 2] + 1e-12)
    d = a - 2 * b + c
    return k + (0.5 * (a - c) / d if d else 0.0)


def spectral_peaks(x: np.ndarray, k: int = 1, fmin: float = 50, fmax: float = 7900,
                   min_sep: float = 0.03) -> list[tuple[float, float]]:
    """The k strongest spectral peaks as (Hz, magnitude), at least `min_sep` (relative) apart, sorted by Hz."""
    f, mag = _spectrum(x)
    band = (f >= fmin) & (f <= fmax)
    loc = np.flatnonzero(band[1:-1] & (mag[1:-1] > mag[:-2]) & (mag[1:-1] >= mag[2:])) + 1
    loc = loc[np.argsort(mag[loc])[::-1]]
    out: list[tuple[float, float]] = []
    for i in loc:
        hz = _interp(mag, int(i)) * (f[1] - f[0])
        if all(abs(hz - o) > min_sep * o for o, _ in out):
            out.append((hz, float(mag[i])))
        if len(out) == k:
            break
    return sorted(out)


def peak_hz(x: np.ndarray) -> float:
    return spectral_peaks(x, 1)[0][0]


def voice_f0_hz(x: np.ndarray, fmin: float = 60, fmax: float = 400) -> float:
    """Median F0 (Hz) of voiced 40 ms frames, from the real cepstrum's peak between 1/fmax and 1/fmin.

    The cepstrum separates the glottal period from formant ringing, which fools a plain autocorrelation on
    low voices (an /i/ with F1 near 300 Hz reads as a 300 Hz voice). Frames quieter than -10 dB relative to
    the clip's RMS, or with a weak cepstral peak, count as unvoiced."""
    w, h, n = int(0.04 * SR), int(0.01 * SR), 2048
    x = x.astype(np.float64)
    thr = 0.3 * np.sqrt(np.mean(x ** 2))
    lo, hi = int(SR / fmax), int(SR / fmin)
    win = np.hanning(w)
    out = []
    for i in range(0, len(x) - w, h):
        fr = x[i:i + w]
        if np.sqrt(np.mean(fr ** 2)) < thr:
            continue
        ceps = np.fft.irfft(np.log(np.abs(np.fft.rfft((fr - fr.mean()) * win, n)) + 1e-6))
        k = lo + int(np.argmax(ceps[lo:hi]))
        if ceps[k] >= 0.1:
            out.append(SR / k)
    return float(np.median(out)) if out else 0.0


def tempo_bpm(x: np.ndarray, lo_bpm: float = 40, hi_bpm: float = 240) -> float:
    """Tempo from the autocorrelation of an onset train: detected event onsets (5 ms grid) smoothed by a 35 ms
    Hann window; the shortest lag scoring within 70% of the best is the beat (so 2T is not taken for T)."""
    hop = 0.005
    train = np.zeros(int(len(x) / SR / hop) + 1)
    for a, _ in segments(x, min_gap=0.04, min_len=0.005, rel=0.5):
        train[int(round(a / hop))] = 1.0
    train = np.convolve(train, np.hanning(9), "same")
    ac = np.correlate(train, train, "full")[len(train) - 1:]
    lags = np.arange(int(60 / hi_bpm / hop), min(int(60 / lo_bpm / hop) + 1, len(ac) - 1))
    best = ac[lags].max()
    cand = [k for k in lags if ac[k] >= 0.7 * best and ac[k] >= ac[k - 1] and ac[k] >= ac[k + 1]]
    k = int(cand[0]) if cand else int(lags[np.argmax(ac[lags])])
    a, b, c = ac[k - 1:k + 2]
    d = a - 2 * b + c
    return 60.0 / ((k + (0.5 * (a - c) / d if d else 0.0)) * hop)


def loudness_change_db(x: np.ndarray) -> float:
    """Level change (dB) from the first to the last sound event: a line fitted to the median frame level of
    each 100 ms piece of every detected event (one point per short beep), evaluated across the events' span."""
    db = frame_db(x, 0.01, 0.005)
    pts = []
    for a, b in segments(x):
        edge = min(0.06, (b - a) / 4)  # skip fades
        i, j = int((a + edge) / 0.005), int((b - edge) / 0.005)
        for k in range(i, max(j, i + 1), 20):
            piece = db[k:min(k + 20, j)] if j > i else db[i:i + 1]
            if len(piece):
                pts.append((a + (k - i) * 0.005 + len(piece) * 0.0025, float(np.median(piece))))
    if len(pts) < 3:
        return 0.0
    t, v = np.array(pts).T
    slope, _ = np.polyfit(t, v, 1)
    return float(slope * (t[-1] - t[0]))


def spectral_tilt_db_per_octave(x: np.ndarray, fmin: float = 100, fmax: float = 6000) -> float:
    """Slope of the Welch power spectrum in dB per octave (white 0, pink -3, brown -6)."""
    n = 1024
    frames = [x[i:i + n] * np.hanning(n) for i in range(0, len(x) - n, n // 2)]
    p = np.mean([np.abs(np.fft.rfft(fr)) ** 2 for fr in frames], axis=0)
    f = np.fft.rfftfreq(n, 1 / SR)
    band = (f >= fmin) & (f <= fmax)
    slope, _ = np.polyfit(np.log2(f[band]), 10 * np.log10(p[band] + 1e-20), 1)
    return float(slope)


def harmonic_profile(x: np.ndarray, f0: float, n: int = 5) -> list[float]:
    """Magnitude at k*f0 (k = 1..n) relative to the fundamental, from the peak within +-3%."""
    f, mag = _spectrum(x)
    out = []
    for k in range(1, n + 1):
        band = (f > k * f0 * 0.97) & (f < k * f0 * 1.03)
        out.append(float(mag[band].max()) if band.any() else 0.0)
    return [v / out[0] for v in out]


def active_span(x: np.ndarray, min_gap: float = 0.25) -> tuple[float, float]:
    """(first onset, last offset) of everything above the event threshold."""
    segs = segments(x, min_gap=min_gap)
    return (segs[0][0], segs[-1][1]) if segs else (0.0, len(x) / SR)


# =============================================================================================================
# The runtime verifier: measure a clip, then check claims about its referents against the measurements.
# =============================================================================================================

LINE_PROMINENCE = 10 ** 1.2  # a spectral line is 12 dB over the median of its neighbourhood
STEADY_SIMILARITY = 0.985  # a held tone's or chord's spectrum hardly changes (see _stationarity)
STEADY_CENTS = 30.0     # a tone's pitch wanders less than this over the event (see _pitch_spread_cents)
SPEECH_CONTEXT_S = 0.45  # short fragments this close to speech are part of it
VOICE_MAX_HZ = 500.0    # speaking voices' F0 lies below this
UTTERANCE_GAP_S = 0.25  # pauses this long separate utterances (spoken digits, phrases)
SPEECH_GAP_S = 0.1      # speech fragments closer than this are one word (stop closures, quiet consonants)


# ------------------------------------------------------------------------------------------- small helpers
def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def _db(p: float) -> float:
    return 10 * math.log10(max(p, 1e-12))


def _fine_db(x: np.ndarray, win: int = 64, hop: int = 16) -> np.ndarray:
    """RMS level (dB) of 4 ms frames every 1 ms; frame k covers samples [k*hop, k*hop + win)."""
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    c = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    starts = np.arange(0, len(x) - win + 1, hop)
    return 10 * np.log10((c[starts + win] - c[starts]) / win + 1e-12)


def _tilt(x: np.ndarray, n: int = 1024) -> float | None:
    if len(x) < n:
        return None
    return -spectral_tilt_db_per_octave(x, fmin=100, fmax=6000) if len(x) >= n + n // 2 else \
        -spectral_tilt_db_per_octave(np.pad(x, (0, n // 2)), fmin=100, fmax=6000)


def _spectral_lines(seg: np.ndarray, fmin: float = 50, fmax: float = 7900, rel_db: float = -20,
                    k: int = 10) -> tuple[list[tuple[float, float]], float]:
    """The strongest spectral lines of a segment as (Hz, power), sorted by Hz, and the share of the power (in
    fmin..fmax) that lies within their main lobes (1 for a steady tone or chord, low for noise or speech)."""
    n = len(seg)
    nfft = max(1 << 15, 1 << int(np.ceil(np.log2(n * 4))))
    spec = np.abs(np.fft.rfft((seg - seg.mean()) * np.hanning(n), nfft)) ** 2
    df = SR / nfft
    band = np.zeros(len(spec), bool)
    band[int(fmin / df):int(fmax / df)] = True
    total = float(spec[band].sum()) + 1e-30
    loc = np.flatnonzero(band[1:-1] & (spec[1:-1] > spec[:-2]) & (spec[1:-1] >= spec[2:])) + 1
    loc = loc[np.argsort(spec[loc])[::-1]]
    lobe = max(2.5 * nfft / n, 1.0)  # Hann main lobe half-width in padded bins (2 bins of the n-point DFT)
    lines, mask = [], np.zeros(len(spec), bool)
    for i in loc:
        if len(lines) == k or spec[i] < spec[loc[0]] * 10 ** (rel_db / 10):
            break
        if mask[i]:
            continue
        # a line stands out from its neighbourhood (+-10 main lobes); a bump of coloured noise does not
        w = int(10 * lobe)
        hood = np.concatenate([spec[max(int(i - w), 0):max(int(i - lobe), 0)], spec[int(i + lobe) + 1:int(i + w) + 1]])
        if len(hood) and spec[i] < LINE_PROMINENCE * np.median(hood):
            continue
        a = max(int(i - lobe), 0)
        mask[a:int(i + lobe) + 1] = True
        hz = _interp(np.sqrt(spec), int(i)) * df
        lines.append((hz, float(spec[i])))
    return sorted(lines), float(spec[mask & band].sum()) / total


def _pitch_spread_cents(body: np.ndarray, hz: float) -> float | None:
    """How far the line near `hz` wanders over the event: the 10th-90th percentile range (cents) of its
    interpolated frequency in 32 ms frames (64 ms under 250 Hz), a quarter frame apart. A synthetic or played tone
    holds its pitch (a few cents); a voice's harmonics glide (tens of cents within a syllable). None if too short."""
    return _pitch_spread_at(body, hz, 1024 if hz < 250 else 512)


def _pitch_spread_at(body: np.ndarray, hz: float, n: int) -> float | None:
    if len(body) < n + n // 2:
        return None
    nfft = 8 * n
    win = np.hanning(n)
    df = SR / nfft
    lo, hi = int(hz * 0.92 / df), int(hz * 1.08 / df) + 1
    freqs = []
    for i in range(0, len(body) - n + 1, n // 4):
        mag = np.abs(np.fft.rfft(body[i:i + n] * win, nfft))
        k = lo + int(np.argmax(mag[lo:hi]))
        if lo < k < hi - 1:
            freqs.append(_interp(mag, k) * df)
    if len(freqs) < 3:
        return None
    f = np.array(freqs)
    return float(1200 * np.log2(np.percentile(f, 90) / np.percentile(f, 10)))


def _stationarity(body: np.ndarray, lines: list[tuple[float, float]]) -> float | None:
    """How steady the spectrum is: the lowest cosine similarity between the power spectra of consecutive frames
    (frames long enough to resolve the event's closest spectral lines, 32-128 ms). About 1 for a held tone or
    chord at any level, and lower for a voice, whose formants and harmonics move. None if too short."""
    fs = sorted(f for f, _ in lines)
    gap = min([b - a for a, b in zip(fs, fs[1:])] + [fs[0]]) if fs else 100.0
    n = int(min(2048, max(512, 1 << int(np.ceil(np.log2(4 * SR / max(gap, 1.0)))))))
    hop = n if len(body) >= 2 * n else n // 2
    if len(body) < n + hop:
        return None
    win = np.hanning(n)
    spec = [np.abs(np.fft.rfft(body[i:i + n] * win)) ** 2 for i in range(0, len(body) - n + 1, hop)]
    sims = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)) for a, b in zip(spec, spec[1:])]
    return min(sims)


def _harmonic_f0(lines: list[tuple[float, float]], tol: float = 0.015) -> float | None:
    """The fundamental of a harmonic set of lines, or None (a chord, or no clear series).

    The candidate is the lowest line whose multiples (within `tol`) account for every line above it, with at
    least 40% of those multiples present up to the highest line; lines below the candidate may only be weak
    (12 dB under the strongest: a noise bump in a short window), else the set is not one pitch; a weak candidate
    needs three members of its series (a noise bump an octave below a beep is not its fundamental)."""
    if not lines:
        return None
    top = max(p for _, p in lines)
    for f0, p0 in sorted(lines):
        above = [(f, p) for f, p in lines if f >= f0 * 0.98]
        below = [(f, p) for f, p in lines if f < f0 * 0.98]
        if any(p > top * 10 ** -1.2 for _, p in below):
            return None
        ks = set()
        for f, _ in above:
            k = round(f / f0)
            if k < 1 or abs(f / (k * f0) - 1) > tol:
                break
            ks.add(k)
        else:
            kmax = max(ks)
            weak = p0 < top * 10 ** -1.2  # a weak lowest line must be borne out by a series, not one partner
            if (kmax <= 2 or len(ks) >= 0.4 * kmax) and not (weak and len(ks) < 3):
                return f0
    return None


# ------------------------------------------------------------------------------------------- measure_clip
def _load(audio, sr: int) -> np.ndarray:
    if isinstance(audio, (str, Path)):
        from audior1.audio import load_audio
        return np.asarray(load_audio(str(audio), max_seconds=None), dtype=np.float64)
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    if sr != SR:
        from audior1.audio import resample
        x = np.asarray(resample(x.astype(np.float32), sr, SR), dtype=np.float64)
    return x


def _smooth_track(f0: np.ndarray, lo: float = 63.0, hi: float = 475.0, tol: float = 0.05, run: int = 5
                  ) -> np.ndarray:
    """Frames where pYIN's best F0 guess glides smoothly (within `tol` of both neighbours, inside the voice range)
    for at least `run` frames: a voice pYIN deems improbable (band-limited, rough recordings) still draws a
    continuous contour, while noise makes its guess jump or stick to a search bound."""
    ok = (f0 > lo) & (f0 < hi)
    sm = np.zeros(len(f0), bool)
    if len(f0) >= 3:
        with np.errstate(invalid="ignore", divide="ignore"):
            sm[1:-1] = ok[1:-1] & ok[:-2] & ok[2:] & (np.abs(f0[1:-1] / f0[:-2] - 1) < tol) & \
                (np.abs(f0[1:-1] / f0[2:] - 1) < tol)
    out = np.zeros(len(f0), bool)
    k = 0
    while k < len(sm):
        if sm[k]:
            j = k
            while j < len(sm) and sm[j]:
                j += 1
            out[k:j] = j - k >= run
            k = j
        else:
            k += 1
    return out


def _pyin(x: np.ndarray, fmin: float = 60.0, fmax: float = 500.0, hop: int = 160, min_prob: float = 0.1):
    """librosa's pYIN: (F0 per frame, NaN where unvoiced; voiced flags); frame k is centred at k*hop.

    Voiced means a voicing probability of at least `min_prob`, not pYIN's own HMM decision: with silence around
    a short word the HMM's unvoiced state is sticky and it can call a whole spoken digit unvoiced (voicing
    probabilities up to 0.4), while noise and clicks stay at 0 (measured on the suite and FSDD)."""
    import librosa
    f0, _, prob = librosa.pyin(x.astype(np.float32), fmin=fmin, fmax=fmax, sr=SR, frame_length=1024,
                               hop_length=hop, fill_na=None)
    voiced = prob >= min_prob
    return np.where(voiced, f0, np.nan), voiced, _smooth_track(f0)


def _cepstral_voicing(x: np.ndarray, n_frames: int, fmin: float = 60.0, fmax: float = 500.0,
                      min_peak: float = 0.12) -> np.ndarray:
    """Voiced flags on pYIN's 10 ms grid from the real cepstrum of 40 ms frames: a peak of at least `min_peak`
    between 1/fmax and 1/fmin whose F0 stays within 8% of a neighbouring frame's. A second opinion for voices
    pYIN calls aperiodic (breathy or rough synthetic voices); noise makes scattered, weaker peaks."""
    w, h, n = 640, 160, 2048
    lo, hi = int(SR / fmax), int(SR / fmin)
    win = np.hanning(w)
    peaks, f0 = [], []
    for i in range(0, max(len(x) - w, 0) + 1, h):
        fr = x[i:i + w]
        if len(fr) < w:
            break
        c = np.fft.irfft(np.log(np.abs(np.fft.rfft((fr - fr.mean()) * win, n)) + 1e-6))
        k = lo + int(np.argmax(c[lo:hi]))
        peaks.append(c[k])
        f0.append(SR / k)
    peaks, f0 = np.array(peaks), np.array(f0)
    ok = peaks >= min_peak
    near = np.zeros(len(ok), bool)
    near[1:] |= ok[1:] & ok[:-1] & (np.abs(f0[1:] / np.maximum(f0[:-1], 1) - 1) <= 0.08)
    near[:-1] |= ok[:-1] & ok[1:] & (np.abs(f0[:-1] / np.maximum(f0[1:], 1) - 1) <= 0.08)
    out = np.zeros(n_frames, bool)
    # frame i covers [i*h, i*h + w): its centre is pYIN frame i + 2
    idx = np.arange(len(near)) + 2
    keep = idx < n_frames
    out[idx[keep]] = near[keep]
    return out


def _event_bounds(x: np.ndarray) -> tuple[list[tuple[float, float]], np.ndarray, float]:
    """Events as (onset, offset): an energy detector (`segments`), then each boundary moved to where the 4 ms
    level falls 30 dB below the event's peak, or to the background's 95th percentile + 3 dB if that is higher.
    Returns the bounds, the fine envelope and that background threshold (dB)."""
    coarse = segments(x, min_gap=0.04, min_len=0.005, rel=0.5)
    fine = _fine_db(x)
    t = (np.arange(len(fine)) * 16 + 32) / SR  # frame centres
    bg = np.ones(len(fine), bool)
    for a, b in coarse:
        bg &= (t < a - 0.04) | (t > b + 0.04)
    floor = float(np.percentile(fine[bg], 95) if bg.sum() > 50 else np.percentile(fine, 5)) + 3.0
    out: list[list[float]] = []
    for n, (a, b) in enumerate(coarse):
        i, j = int(np.searchsorted(t, a)), int(np.searchsorted(t, b))
        j = max(j, i + 1)
        peak = float(fine[i:j].max())
        thr = max(peak - 30.0, floor)
        above = np.flatnonzero(fine[i:j] >= thr)
        if len(above) == 0:
            continue
        lo, hi = i + int(above[0]), i + int(above[-1])
        left = int(np.searchsorted(t, out[-1][1])) + 1 if out else 0
        right = int(np.searchsorted(t, coarse[n + 1][0])) - 1 if n + 1 < len(coarse) else len(fine) - 1
        while lo - 1 >= max(left, 0) and fine[lo - 1] >= thr:
            lo -= 1
        while hi + 1 <= right and fine[hi + 1] >= thr:
            hi += 1
        on, off = float(t[lo]) - 0.002, float(t[hi]) + 0.002
        if out and on <= out[-1][1]:
            out[-1][1] = max(out[-1][1], off)
        else:
            out.append([max(on, 0.0), min(off, len(x) / SR)])
    return [(a, b) for a, b in out], fine, floor


def _high_band(x: np.ndarray, bg_mask: np.ndarray, lo_hz: float = 2500.0) -> tuple[np.ndarray, float]:
    """Level (dB) above `lo_hz` in 16 ms frames every 5 ms, and a floor 5 dB over the background's median."""
    n, hop = 256, 80
    if len(x) < n:
        return np.full(1, -120.0), 0.0
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    f = np.fft.rfftfreq(n, 1 / SR)
    lev = 10 * np.log10((np.abs(np.fft.rfft(frames, axis=1)) ** 2)[:, f >= lo_hz].sum(axis=1) + 1e-12)
    centre = np.minimum(np.arange(len(lev)) * hop + n // 2, len(x) - 1)
    bg = lev[bg_mask[centre]]
    floor = float(np.median(bg) if len(bg) >= 10 else np.percentile(lev, 10)) + 5.0
    return lev, floor


def _extend(fine: np.ndarray, floor: float, a: float, b: float, lo: float, hi: float, drop_db: float,
            hop: int = 16, win: int = 64, max_gap: float = 0.0) -> tuple[float, float]:
    """Move the bounds (a, b) of an event outwards, within (lo, hi), over frames (`win` samples every `hop`)
    above both the event's peak minus `drop_db` and `floor`, bridging dips up to `max_gap` seconds (a stop
    closure before a final fricative)."""
    t = (np.arange(len(fine)) * hop + win // 2) / SR
    i, j = int(np.searchsorted(t, a)), min(int(np.searchsorted(t, b)), len(fine) - 1)
    if i > j:
        return a, b
    thr = max(float(fine[i:j + 1].max()) - drop_db, floor)
    li, hj = int(np.searchsorted(t, lo)) + 1, min(int(np.searchsorted(t, hi)) - 1, len(fine) - 1)
    gap = int(max_gap * SR / hop)
    k, miss = i, 0
    while k - 1 >= max(li, 0) and miss <= gap:
        k -= 1
        if fine[k] >= thr:
            i, miss = k, 0
        else:
            miss += 1
    k, miss = j, 0
    while k + 1 <= hj and miss <= gap:
        k += 1
        if fine[k] >= thr:
            j, miss = k, 0
        else:
            miss += 1
    half = win / 2 / SR / 2
    return min(a, float(t[i]) - half), max(b, float(t[j]) + half)


def _background_frames(x: np.ndarray, spans: list[tuple[float, float]]):
    """What lies 40 ms or more from every event: (mask, samples, 32 ms frames, their powers, background power).
    The power is the median frame's: quiet sounds that escaped the detector (breath, a consonant) sit in the
    upper tail."""
    mask = np.ones(len(x), bool)
    for a, b in spans:
        mask[max(int((a - 0.04) * SR), 0):int((b + 0.04) * SR)] = False
    runs, start = [], None
    for k, v in enumerate(np.append(mask, False)):
        if v and start is None:
            start = k
        elif not v and start is not None:
            runs.append((start, k))
            start = None
    frames = [x[i:i + 512] for a, b in runs for i in range(a, b - 511, 256)]
    powers = np.array([_power(fr) for fr in frames])
    bg_x = x[mask]
    power = float(np.median(powers)) if len(powers) >= 6 else (_power(bg_x) if len(bg_x) >= 800 else 0.0)
    return mask, bg_x, frames, powers, power


def _analyse(x: np.ndarray, a: float, b: float, bg_power: float) -> Event:
    """Kind, level and pitch of the event [a, b) (speech is decided later, from pYIN)."""
    dur = b - a
    seg = x[int(a * SR):int(b * SR)]
    edge = min(0.03, dur / 5)
    body = x[int((a + edge) * SR):int((b - edge) * SR)]
    if len(body) < 64:
        body = seg
    onset_q = Quantity(a, 0.015, "s")
    dur_q = Quantity(dur, max(0.02, 0.03 * dur), "s")
    if dur < 0.045:  # a click: level as a 10 ms meter at the onset reads it
        p = max((_power(seg[i:i + 160]) for i in range(0, max(len(seg) - 159, 1), 16)), default=0.0)
        level = Quantity(_db(max(p - bg_power, p * 0.1)), 2.0, "dBFS")
        return Event("click", onset_q, dur_q, level)
    p = _power(body)
    level = Quantity(_db(max(p - bg_power, p * 0.1)), 1.5, "dBFS")
    lines, tonality = _spectral_lines(body)
    if tonality >= 0.6 and lines:
        f0 = _harmonic_f0(lines)
        if f0 is None:  # only the strong lines (within 12 dB), with a looser tolerance: a gliding voice's harmonics
            f0 = _harmonic_f0([fl for fl in lines if fl[1] >= 10 ** -1.2 * max(p for _, p in lines)], tol=0.03)
        strongest = max(lines, key=lambda fl: fl[1])[0]
        st = _stationarity(body, lines)
        steady = st is None or st >= STEADY_SIMILARITY
        if f0 is not None:
            # a voice's strongest harmonic sits on a formant, above the fundamental; an instrument's rarely does
            ks = sorted({round(f / f0) for f, _ in lines})
            gaps = [b - a - 1 for a, b in zip(ks, ks[1:])]
            formant_like = f0 < 400 and (strongest > 1.5 * f0 or max(gaps, default=0) >= 3)
            spread = _pitch_spread_cents(body, strongest)
            if steady and not formant_like and (spread is None or spread <= STEADY_CENTS or len(body) < 2048):
                from audior1.data.dsp import hz_to_midi
                m = hz_to_midi(f0)
                return Event("tone", onset_q, dur_q, level, f0=Quantity(f0, max(0.006 * f0, 1.0), "Hz"),
                             note=_note(f0), cents=100 * (m - round(m)), tonality=tonality,
                             waveform=_waveform(body, f0))
        else:
            strong = sorted(sorted(lines, key=lambda fl: -fl[1])[:4])
            sep = min((b / a - 1 for (a, _), (b, _) in zip(strong, strong[1:])), default=1.0)
            if sep >= 0.05 and st is not None and steady:  # a voice's smeared harmonics make close pairs
                return Event("chord", onset_q, dur_q, level, tonality=tonality,
                             pitches=[Quantity(f, max(0.006 * f, 1.0), "Hz") for f, _ in strong])
        # pitched but not steady: a voice (if pYIN finds voicing) or a gliding sound
        ev = Event("voiced", onset_q, dur_q, level, tonality=tonality,
                   f0=Quantity(f0, 0.03 * f0, "Hz", margin=math.inf) if f0 else None)
        ev.strongest_hz = strongest
        return ev
    tilt = _tilt(body)
    # noise fades in and out more slowly than a tone's attack: its threshold crossings wander more
    ev = Event("noise", Quantity(a, 0.03, "s"), Quantity(dur, max(0.04, 0.05 * dur), "s"), level,
               tonality=tonality)  # or speech: decided from pYIN
    if tilt is not None:
        tol = 0.5 if len(body) >= SR // 2 else 0.8
        ev.tilt, ev.colour = Quantity(tilt, tol, "dB/oct"), _colour(tilt, tol)
    return ev


def _waveform(body: np.ndarray, f0: float) -> str | None:
    """sine (no overtones), square (odd ones only, 1/n) or sawtooth (every one, 1/n), from the 2nd and 3rd
    harmonics relative to the fundamental; None where the profile fits none clearly."""
    if 3 * f0 > 7900:
        return None
    h = harmonic_profile(body, f0, 3)
    if max(h[1], h[2]) < 0.05:
        return "sine"
    if h[1] < 0.1 and 0.2 < h[2] < 0.5:
        return "square"
    if 0.3 < h[1] < 0.7 and 0.2 < h[2] < 0.5:
        return "sawtooth"
    return None


def _voice_band_share(x: np.ndarray, e: Event) -> float:
    """Share of an event's power between 250 and 4000 Hz, where a voice's formants carry most of it (brown or
    rumbling noise, which pYIN may call voiced at its lowest F0, has little there)."""
    seg = x[int(e.onset.value * SR):int(e.offset * SR)]
    if len(seg) < 64:
        return 0.0
    p = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    f = np.fft.rfftfreq(len(seg), 1 / SR)
    return float(p[(f >= 250) & (f <= 4000)].sum() / (p[f >= 20].sum() + 1e-30))


def _syllables(x: np.ndarray, spans: list[tuple[float, float]], voiced_at) -> int:
    """Syllable nuclei: peaks of the 300-3000 Hz level (10 ms hop, 50 ms smoothing) inside speech spans that rise
    3 dB over the dips on both sides, lie within 25 dB of the loudest, are voiced, and are 80 ms apart."""
    n, hop = 512, 160
    if len(x) < n:
        return 0
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    f = np.fft.rfftfreq(n, 1 / SR)
    lev = 10 * np.log10(spec[:, (f >= 300) & (f <= 3000)].sum(axis=1) + 1e-12)
    lev = np.convolve(lev, np.ones(5) / 5, "same")
    t = (np.arange(len(lev)) * hop + n / 2) / SR
    inside = np.zeros(len(lev), bool)
    for a, b in spans:
        inside |= (t >= a) & (t <= b)
    if not inside.any():
        return 0
    top = lev[inside].max()
    count, last = 0, -1.0
    cand = [k for k in range(1, len(lev) - 1) if inside[k] and lev[k] >= lev[k - 1] and lev[k] > lev[k + 1]
            and lev[k] >= top - 25]
    for k in cand:
        # dips: the minimum between this peak and the nearest higher level on each side (or the span edge)
        lo = k
        while lo > 0 and inside[lo - 1] and lev[lo - 1] <= lev[k]:
            lo -= 1
        hi = k
        while hi < len(lev) - 1 and inside[hi + 1] and lev[hi + 1] <= lev[k]:
            hi += 1
        left, right = lev[lo:k + 1].min(), lev[k:hi + 1].min()
        if lev[k] - max(left, right) < 3.0 and not (lo == 0 or not inside[lo - 1]) and \
                not (hi == len(lev) - 1 or not inside[hi + 1]):
            continue
        if lev[k] - min(left, right) < 3.0:
            continue
        if not voiced_at(t[k]) or t[k] - last < 0.08:
            continue
        count, last = count + 1, t[k]
    return count


def measure_clip(audio, sr: int = SR) -> ClipFacts:
    """Measure a clip (a mono array at `sr`, or a path): its events, tempo, loudness, noise and speech.

    Events come from an energy detector with boundaries refined at 1 ms; each is classified as a tone (steady
    spectral lines, all multiples of the lowest: f0 from the interpolated spectral peak), a chord (steady lines
    that are not), a click (under 45 ms), speech (pYIN finds voicing in it: neighbouring fragments within
    0.1 s, voiced or not, join it into one word) or noise (unpitched: colour from the Welch slope)."""
    x = _load(audio, sr)
    clip = Quantity(len(x) / SR, 1.0 / SR + 0.005, "s")
    env = frame_db(x, 0.01, 0.005)
    if len(x) < 320 or not np.any(x):
        return ClipFacts(clip, [], None, None, None, None, None, None, env_db=env)
    bounds, fine, floor = _event_bounds(x)
    # background: everything at least 40 ms from an event
    mask, bg_x, bg_frames, bg_fp, bg_power = _background_frames(x, bounds)
    events = [_analyse(x, a, b, bg_power) for a, b in bounds]

    # speech: pYIN over the clip when an unsteady pitched event, or an unpitched one long enough to be a word,
    # may be a voice. Seeds are such events with voicing in a quarter of their frames; then short fragments
    # beside speech (within SPEECH_CONTEXT_S: unvoiced consonants, steady-looking vowels) are speech too; then
    # speech closer than SPEECH_GAP_S is one word.
    f0_track = None
    voiced_at = lambda t: False  # noqa: E731
    if any(e.kind == "voiced" or (e.kind == "noise" and e.duration.value >= 0.06) for e in events):
        f0_track, voiced, smooth = _pyin(x)
        # pYIN's F0 pinned at a search bound is an octave error or noise, not a voice
        voiced = (voiced & (f0_track > 1.05 * 60.0) & (f0_track < 0.95 * VOICE_MAX_HZ)) | \
            _cepstral_voicing(x, len(voiced))
        f0_track = np.where(voiced & (f0_track > 1.05 * 60.0) & (f0_track < 0.95 * VOICE_MAX_HZ), f0_track, np.nan)
        times = np.arange(len(f0_track)) * 160 / SR
        voiced_at = lambda t: bool(voiced[min(int(round(t * SR / 160)), len(voiced) - 1)])  # noqa: E731
        vfrac = []
        for e in events:
            sel = (times >= e.onset.value) & (times <= e.offset)
            vfrac.append(float(voiced[sel].mean()) if sel.sum() else 0.0)
            if e.kind not in ("voiced", "noise") or e.duration.value < 0.06 or _voice_band_share(x, e) < 0.3:
                continue
            strongest = e.f0.value if e.f0 is not None else e.strongest_hz
            if (e.kind == "voiced" and strongest is not None and strongest < 2 * VOICE_MAX_HZ) or \
                    (voiced[sel].sum() >= 5 and vfrac[-1] >= 0.08) or smooth[sel].mean() >= 0.3:
                e.kind = "speech"  # a gliding pitch in a voice's range, 50 ms of voicing, or a smooth F0 contour

        if any(e.kind == "speech" for e in events):  # in a clip with a voice, a word-long sound with a little
            for k, e in enumerate(events):            # voicing and a voice's spectrum is another word
                sel = (times >= e.onset.value) & (times <= e.offset)
                if e.kind in ("voiced", "noise", "sound") and 0.1 <= e.duration.value <= 1.0 and \
                        (voiced[sel] | smooth[sel]).sum() >= 2 and _voice_band_share(x, e) >= 0.5:
                    e.kind = "speech"

        def fragment(k: int) -> bool:
            e = events[k]
            low = e.f0.value < VOICE_MAX_HZ if e.f0 is not None else (
                bool(e.pitches) and e.pitches[0].value < VOICE_MAX_HZ)
            return e.kind in ("voiced", "noise", "click", "sound") and e.duration.value < 0.6 or (
                e.kind in ("tone", "chord") and low and e.duration.value < 0.25 and
                (vfrac[k] >= 0.5 or e.duration.value < 0.1))

        changed = True
        while changed:
            changed = False
            for k, e in enumerate(events):
                if e.kind == "speech" or not fragment(k):
                    continue
                near = [o for o in events if o.kind == "speech" and
                        max(o.onset.value - e.offset, e.onset.value - o.offset) < SPEECH_CONTEXT_S]
                if near:
                    e.kind, changed = "speech", True
        for e in events:
            if e.kind == "speech":
                e.tilt = e.colour = e.note = e.cents = None
                e.pitches = []
    for e in events:
        if e.kind == "voiced":  # pitched but unsteady, and no voice: a glide (tonal) or a noise
            e.kind = "sound" if e.tonality >= 0.8 else "noise"
            if e.kind == "noise":
                body = x[int(e.onset.value * SR):int(e.offset * SR)]
                tilt = _tilt(body)
                if tilt is not None:
                    tol = 0.5 if len(body) >= SR // 2 else 0.8
                    e.f0, e.tilt, e.colour = None, Quantity(tilt, tol, "dB/oct"), _colour(tilt, tol)
    if any(e.kind == "speech" for e in events):
        hb, hb_floor = _high_band(x, mask)
        for k, e in enumerate(events):  # a word's quiet edges: down to 45 dB under its peak (or the floor),
            if e.kind == "speech":      # and fricatives, which stand out from the background only above 2.5 kHz
                lo = events[k - 1].offset if k else 0.0
                hi = events[k + 1].onset.value if k + 1 < len(events) else len(x) / SR
                a, b = _extend(fine, floor, e.onset.value, e.offset, lo, hi, 45.0, max_gap=0.05)
                a, b = _extend(hb, hb_floor, a, b, max(lo, a - 0.35), min(hi, b + 0.35), 35.0, hop=80, win=256,
                               max_gap=0.15)
                e.onset, e.duration = Quantity(a, 0.05, "s"), Quantity(b - a, 0.1, "s")
        events = _join_speech(x, events, bg_power, f0_track)

    speech = None
    sp = [i for i, e in enumerate(events) if e.kind == "speech"]
    if sp:
        t0, t1 = events[sp[0]].onset.value, max(events[i].offset for i in sp)
        times = np.arange(len(f0_track)) * 160 / SR
        sel = np.zeros(len(times), bool)
        for i in sp:
            sel |= (times >= events[i].onset.value) & (times <= events[i].offset)
        f0s = f0_track[sel & ~np.isnan(f0_track)]
        if len(f0s) >= 5:
            med = float(np.median(f0s))
        else:  # pYIN found too little voicing: the cepstrum over the speech
            med = voice_f0_hz(np.concatenate([x[int(events[i].onset.value * SR):int(events[i].offset * SR)]
                                              for i in sp]))
        f0q = Quantity(med, 0.08 * med, "Hz", margin=0.08 * med) if med > 0 else None
        syl = _syllables(x, [(events[i].onset.value, events[i].offset) for i in sp], voiced_at)
        span = t1 - t0
        rate = Quantity(syl / span, 0.2 * syl / span, "1/s", margin=0.15 * syl / span) if syl and span > 0.3 else None
        gaps = [events[b].onset.value - events[a].offset for a, b in zip(sp, sp[1:])]
        separate = len(sp) > 1 and all(events[i].duration.value <= 0.8 for i in sp) and min(gaps) >= 0.15
        if separate or (len(sp) == 1 and syl <= 1):  # words with pauses between them: count the words
            words = Quantity(float(len(sp)), 0.0, "")
        elif len(sp) == 1 and events[sp[0]].duration.value <= 0.8:  # one short utterance: a word, a few at most
            words = Quantity(1.0, 0.0, "", margin=1.0)
        else:  # connected speech: syllable nuclei (= words for monosyllables); one off cannot be told
            words = Quantity(float(syl), 0.0, "", margin=max(1.0, round(0.3 * syl))) if syl else None
        p = sum(_power(x[int(events[i].onset.value * SR):int(events[i].offset * SR)]) * events[i].duration.value
                for i in sp) / sum(events[i].duration.value for i in sp)
        utt = 1 + sum(events[b].onset.value - events[a].offset >= UTTERANCE_GAP_S for a, b in zip(sp, sp[1:]))
        speech = Speech(Quantity(t0, 0.05, "s", margin=0.08, below=0.1),
                        Quantity(span, max(0.08, 0.05 * span), "s", margin=0.1, above=0.15),
                        Quantity(_db(max(p - bg_power, p * 0.1)), 2.5, "dBFS"), f0q, syl, rate, words, sp, utt)

    sounds = [e for e in events if e.kind != "speech"]
    main = sounds or [e for e in events]
    tempo = None
    if sounds:
        kinds = {}
        for e in sounds:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        top = max(kinds, key=kinds.get)
        tempo = _regular_tempo([e.onset.value for e in sounds if e.kind == top])
    trend = trend_from_points(envelope_points(env, main), main[0].onset.value, max(e.offset for e in main)) \
        if main else None
    lv = None
    if main:
        w = [e.duration.value for e in main]
        p = sum(10 ** (e.level.value / 10) * d for e, d in zip(main, w)) / sum(w)
        lv = Quantity(_db(p), 1.5, "dBFS")

    background = None
    # again, away from the final events (speech has grown by its quiet edges)
    mask, bg_x, bg_frames, bg_fp, bg_power = _background_frames(x, [(e.onset.value, e.offset) for e in events])
    secs = len(bg_x) / SR
    if secs >= 0.05:
        blev = Quantity(_db(bg_power), 2.0, "dBFS") if bg_power > 1e-10 else None
        # Welch over the background's 32 ms frames (those not louder than twice the median)
        frames = [fr for fr, pw in zip(bg_frames, bg_fp) if pw <= 2 * bg_power]
        tilt = colour = None
        if blev is not None and len(frames) >= 6:
            p = np.mean([np.abs(np.fft.rfft(fr * np.hanning(512))) ** 2 for fr in frames], axis=0)
            f = np.fft.rfftfreq(512, 1 / SR)
            band = (f >= 100) & (f <= 6000)
            slope, _ = np.polyfit(np.log2(f[band]), 10 * np.log10(p[band] + 1e-20), 1)
            tol = 0.6 if len(frames) >= 20 else 0.9
            tilt, colour = Quantity(-float(slope), tol, "dB/oct"), _colour(-float(slope), tol)
        background = Background(secs, blev, tilt, colour)
    snr = None
    if background and background.level and lv:
        snr = Quantity(lv.value - background.level.value, 3.0, "dB")
    return ClipFacts(clip, events, lv, trend, tempo, speech, background, snr, env_db=env)


def _join_speech(x: np.ndarray, events: list[Event], bg_power: float, f0_track) -> list[Event]:
    """Speech events closer than SPEECH_GAP_S become one (a word); each gets its level over its whole extent
    and its median pYIN F0."""
    out: list[Event] = []
    for e in events:
        prev = out[-1] if out else None
        if not (prev is not None and prev.kind == e.kind == "speech" and e.onset.value - prev.offset < SPEECH_GAP_S):
            out.append(e)
            continue
        a, b = prev.onset.value, max(prev.offset, e.offset)
        seg = x[int(a * SR):int(b * SR)]
        p = _power(seg)
        f0 = prev.f0 if prev.kind == "speech" else e.f0
        if f0_track is not None:
            times = np.arange(len(f0_track)) * 160 / SR
            v = f0_track[(times >= a) & (times <= b)]
            v = v[~np.isnan(v)]
            if len(v):
                med = float(np.median(v))
                f0 = Quantity(med, 0.08 * med, "Hz", margin=0.08 * med)
        out[-1] = Event("speech", Quantity(a, 0.015, "s"), Quantity(b - a, max(0.02, 0.05 * (b - a)), "s"),
                        Quantity(_db(max(p - bg_power, p * 0.1)), 2.0, "dBFS"), f0=f0)
    times = np.arange(len(f0_track)) * 160 / SR
    for e in out:
        if e.kind == "speech":
            v = f0_track[(times >= e.onset.value) & (times <= e.offset)]
            v = v[~np.isnan(v)]
            e.f0 = Quantity(float(np.median(v)), 0.08 * float(np.median(v)), "Hz", margin=0.08 * float(np.median(v))) \
                if len(v) else None
            p = _power(x[int(e.onset.value * SR):int(e.offset * SR)])
            e.level = Quantity(_db(max(p - bg_power, p * 0.1)), 2.5, "dBFS")
            e.onset = Quantity(e.onset.value, 0.04, "s", margin=0.04, below=0.06)
            e.duration = Quantity(e.duration.value, max(0.05, 0.1 * e.duration.value), "s", margin=0.05, above=0.1)
    return out


