"""Audio front end: any common container -> 16 kHz mono float32 -> 25 s chunks -> log-mel [128, T].

Design choices (the numbers are stated and explained in docs/design.md §2):
- The container is sniffed from the bytes (RIFF/WAVE, fLaC, OggS, ID3 or an MPEG frame sync), never taken from
  the file name; libsndfile decodes it and we check that it agrees with the sniff.
- Only the first channel is kept, as the official code does; no down-mix.
- Resampling uses soxr 'HQ' (why: see RESAMPLE_QUALITY).
- Every chunk (at most 25 s) is featurised and normalised on its own, as upstream does; the `max - 8` floor is
  per chunk.
- Token counts follow the official HF code (valid mel length T_mel - 2) by default; StepFun's vLLM fork
  (no -2) is available as `convention="vllm"`.
- Every problem with the audio itself raises one error type, `AudioError`, naming the source and the reason.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = [
    "SAMPLE_RATE", "CHUNK_SECONDS", "N_MELS", "N_FFT", "HOP_LENGTH", "PAD_SAMPLES", "DEFAULT_MAX_SECONDS",
    "MAX_CHUNK_SAMPLES", "CONVENTIONS", "RESAMPLE_QUALITY",
    "AudioError", "AudioFeatures",
    "sniff_format", "load_audio", "decode_base64_audio", "resample", "chunk_audio",
    "mel_filters", "log_mel", "num_mel_frames", "encoder_input_length", "num_audio_tokens", "featurize",
]

SAMPLE_RATE = 16000
CHUNK_SECONDS = 25.0
N_MELS = 128
N_FFT = 400
HOP_LENGTH = 160
PAD_SAMPLES = 479
# 10 minutes = 24 chunks = about 7 500 audio tokens: bounds memory and context for untrusted input.
DEFAULT_MAX_SECONDS = 600.0
# The encoder's positional table has 1500 rows and conv2 halves T_mel, so T_mel <= 3000, i.e. 29.98 s.
MAX_CHUNK_SAMPLES = 3001 * HOP_LENGTH - PAD_SAMPLES - 1  # 479 680: the largest N with (N + 479) // 160 <= 3000
CONVENTIONS = ("hf", "vllm")
# Measured on the shared 24/44.1/48 kHz clips: HQ and VHQ log-mels agree to 4e-5 in mel bands 0-125 and differ
# (by up to 0.14) only in the top two, above 7.7 kHz, where VHQ's anti-alias filter cuts off more steeply.
# The official torchaudio sinc resampler (roll-off 0.99, 6 zero crossings) rolls off far more gently than
# either (48 -> 16 kHz at 7.8 kHz: about -5 dB, against -24 dB for HQ and -31 dB for VHQ), so HQ is the nearer
# of the two; it is also no slower.
RESAMPLE_QUALITY = "HQ"

AudioSource = Union[str, bytes, bytearray, memoryview, os.PathLike]


class AudioError(ValueError):
    """Bad audio input: missing, empty, undecodable, too long, or containing non-finite samples."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"audio {source!r}: {reason}")

    def __reduce__(self):
        # Exceptions are pickled as cls(*args); ours takes two arguments, so say so (data-loader workers pickle).
        return (type(self), (self.source, self.reason))


# ----------------------------------------------------------------------------------------------------------
# Container sniffing
# ----------------------------------------------------------------------------------------------------------

# What libsndfile may report for each sniffed container (WAVE_FORMAT_EXTENSIBLE files come back as WAVEX).
_LIBSNDFILE_NAMES = {"WAV": {"WAV", "WAVEX", "RF64"}, "FLAC": {"FLAC"}, "OGG": {"OGG"}, "MP3": {"MP3"}}
_ID3_HEADER_BYTES = 10
# Enough of a file's head to sniff it, including a typical ID3 tag in front of the audio.
_SNIFF_HEAD_BYTES = 64 * 1024


def _id3_tag_end(data: bytes) -> int:
    """Offset just past an ID3v2 tag (size is 4 'syncsafe' 7-bit bytes, plus a 10-byte footer if flagged)."""
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    has_footer = len(data) > 5 and data[5] & 0x10
    return _ID3_HEADER_BYTES + size + (_ID3_HEADER_BYTES if has_footer else 0)


def _is_mpeg_audio_frame(header: bytes) -> bool:
    """True for a plausible MPEG-1/2/2.5 Layer I-III frame header (11-bit sync, no reserved field values).

    Checking the reserved values, not just the sync, keeps random bytes starting 0xFF and AAC's ADTS
    headers (layer bits 00), which libsndfile cannot decode, from being taken as MP3.
    """
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return False
    version_bits = (header[1] >> 3) & 0x3
    layer_bits = (header[1] >> 1) & 0x3
    bitrate_index = header[2] >> 4
    sample_rate_index = (header[2] >> 2) & 0x3
    return version_bits != 0b01 and layer_bits != 0b00 and bitrate_index != 0xF and sample_rate_index != 0b11


def sniff_format(data: bytes, *, source: str = "<bytes>") -> str:
    """Container of `data` from its magic bytes: 'WAV', 'FLAC', 'OGG' or 'MP3'; AudioError otherwise."""
    head = bytes(data[:12])
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:3] == b"ID3":
        # An ID3 tag usually fronts MP3, but libsndfile also accepts it in front of FLAC: look past it.
        end = _id3_tag_end(data)
        return "FLAC" if bytes(data[end:end + 4]) == b"fLaC" else "MP3"
    if _is_mpeg_audio_frame(head):
        return "MP3"
    if not head:
        raise AudioError(source, "empty input")
    raise AudioError(source, f"not a WAV/FLAC/OGG/MP3 file (first bytes {head!r})")


# ----------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------

# Read multi-channel files in blocks so that only the kept channel is ever held in full.
_READ_BLOCK_FRAMES = 1 << 20


def _check_duration(num_frames: int, sample_rate: int, source: str, max_seconds: float | None) -> None:
    duration = num_frames / sample_rate
    if max_seconds is not None and duration > max_seconds:
        raise AudioError(source, f"too long: {duration:.2f} s exceeds the limit of {max_seconds:g} s (max_seconds)")


def _check_samples(wav: np.ndarray, source: str) -> None:
    if wav.size == 0:
        raise AudioError(source, "no audio samples (0 frames)")
    if not np.isfinite(wav).all():
        raise AudioError(source, "contains NaN or infinite samples")


def _read_first_channel(sound: sf.SoundFile) -> np.ndarray:
    if sound.channels == 1:
        return sound.read(dtype="float32")
    blocks = []
    while True:
        block = sound.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if len(block) == 0:
            break
        blocks.append(block[:, 0].copy())
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def _decode(stream: BinaryIO, container: str, source: str, max_seconds: float | None) -> np.ndarray:
    """Decode a sniffed container from a file object (never a path: libsndfile must not see an extension)."""
    try:
        with sf.SoundFile(stream) as sound:
            if sound.format not in _LIBSNDFILE_NAMES[container]:
                raise AudioError(source, f"looks like {container} but decodes as {sound.format}")
            # Reject over-long audio from the header before spending time decoding it.
            _check_duration(sound.frames, sound.samplerate, source, max_seconds)
            wav = _read_first_channel(sound)
            sample_rate = sound.samplerate
    except (sf.SoundFileError, RuntimeError) as error:  # LibsndfileError is a RuntimeError
        raise AudioError(source, f"could not decode {container} data: {error}") from error
    # Header frame counts can be estimates (MP3), so check what was actually decoded too.
    _check_duration(len(wav), sample_rate, source, max_seconds)
    _check_samples(wav, source)
    return resample(wav, sample_rate)


def _decode_bytes(data: bytes, source: str, max_seconds: float | None) -> np.ndarray:
    if not data:
        raise AudioError(source, "empty input")
    return _decode(io.BytesIO(data), sniff_format(data, source=source), source, max_seconds)


def _load_path(path: Path, source: str, max_seconds: float | None) -> np.ndarray:
    if not path.exists():
        raise AudioError(source, "no such file")
    if not path.is_file():
        raise AudioError(source, "not a regular file")
    try:
        with open(path, "rb") as stream:
            head = stream.read(_SNIFF_HEAD_BYTES)
            if not head:
                raise AudioError(source, "empty file")
            container = sniff_format(head, source=source)
            stream.seek(0)
            return _decode(stream, container, source, max_seconds)
    except OSError as error:
        raise AudioError(source, f"cannot read file: {error.strerror or error}") from error


# ----------------------------------------------------------------------------------------------------------
# Base64
# ----------------------------------------------------------------------------------------------------------

# Standard and URL-safe alphabets, padding and line breaks. '.' is absent, so a path with an extension never
# looks like base64.
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/_\-=\s]+")
# Shorter strings are far more likely to be a mistyped path than a (tiny) encoded audio file.
_MIN_BASE64_CHARS = 64


def _looks_like_base64(text: str) -> bool:
    return len(text) >= _MIN_BASE64_CHARS and _BASE64_TEXT.fullmatch(text) is not None


def _strip_data_url(text: str, source: str) -> str:
    """The payload of 'data:<mediatype>;base64,<payload>'. The media type is ignored: the bytes are sniffed."""
    if not text.startswith("data:"):
        return text
    header, comma, payload = text.partition(",")
    if not comma or not header.endswith(";base64"):
        raise AudioError(source, "data: URL is not of the form 'data:<type>;base64,<payload>'")
    return payload


def _b64decode(payload: str, source: str) -> bytes:
    compact = "".join(payload.split()).translate(str.maketrans("-_", "+/"))  # accept the URL-safe alphabet
    compact += "=" * (-len(compact) % 4)  # and missing padding, which many encoders omit
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as error:
        raise AudioError(source, f"invalid base64 ({error})") from error


def decode_base64_audio(text: str, *, name: str | None = None,
                        max_seconds: float | None = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Decode base64 audio (optionally a `data:audio/...;base64,` URL) to 16 kHz mono float32."""
    source = name or "<base64>"
    payload = _strip_data_url(text, source)
    data = _b64decode(payload, source)
    if not data:
        raise AudioError(source, "empty input (no base64 payload)")
    return _decode_bytes(data, source, max_seconds)


# ----------------------------------------------------------------------------------------------------------
# Loading: dispatch on what the caller gave us
# ----------------------------------------------------------------------------------------------------------

def _is_existing_path(text: str) -> bool:
    try:
        return os.path.exists(text)
    except (OSError, ValueError):  # names too long or with NUL bytes name nothing
        return False


def _load_with_source(src: AudioSource, max_seconds: float | None, name: str | None) -> tuple[np.ndarray, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        source = name or "<bytes>"
        return _decode_bytes(bytes(src), source, max_seconds), source
    if isinstance(src, os.PathLike):
        source = name or os.fspath(src)
        return _load_path(Path(src), source, max_seconds), source
    if isinstance(src, str):
        if not src:
            raise AudioError(name or "", "empty path")
        if src.startswith("data:"):
            source = name or "<base64>"
            return decode_base64_audio(src, name=source, max_seconds=max_seconds), source
        if _is_existing_path(src):  # a directory too, so that the error says what it is
            source = name or src
            return _load_path(Path(src), source, max_seconds), source
        if _looks_like_base64(src):
            source = name or "<base64>"
            try:
                return decode_base64_audio(src, name=source, max_seconds=max_seconds), source
            except AudioError as error:
                if not error.reason.startswith("invalid base64"):
                    raise
                # A long extension-less path can also look like base64: say both readings failed.
                raise AudioError(source, f"neither an existing file nor valid base64: {error.reason}") from error
        raise AudioError(name or src, "no such file")
    raise TypeError(f"audio source must be a path, bytes or a base64 string, not {type(src).__name__} "
                    "(pass a loaded 16 kHz array to featurize instead)")


def load_audio(src: AudioSource, *, max_seconds: float | None = DEFAULT_MAX_SECONDS,
               name: str | None = None) -> np.ndarray:
    """Load audio as float32, mono (first channel), 16 kHz.

    `src` is a path (str or os.PathLike), raw bytes, or a base64 string (optionally a data: URL). A str naming
    an existing file is a path; a str starting with 'data:' or made only of base64 characters (and long) is
    base64; anything else is reported as a missing file. `name` replaces the source shown in errors.
    `max_seconds=None` lifts the length limit.
    """
    wav, _ = _load_with_source(src, max_seconds, name)
    return wav


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample with soxr (quality RESAMPLE_QUALITY) to float32; a no-op when the rates already match."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    wav = np.asarray(wav, dtype=np.float32)
    if orig_sr == target_sr:
        return wav
    return np.ascontiguousarray(soxr.resample(wav, orig_sr, target_sr, quality=RESAMPLE_QUALITY), dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# Chunking and length arithmetic (docs/design.md §2.2)
# ----------------------------------------------------------------------------------------------------------

def chunk_audio(wav: np.ndarray, chunk_seconds: float = CHUNK_SECONDS) -> list[np.ndarray]:
    """Consecutive chunks (views) of at most `chunk_seconds`; the last may be shorter."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {wav.shape}")
    if wav.size == 0:
        raise ValueError("cannot chunk an empty waveform")
    chunk_samples = int(round(chunk_seconds * SAMPLE_RATE))
    if not 1 <= chunk_samples <= MAX_CHUNK_SAMPLES:
        raise ValueError(f"chunk_seconds must give 1..{MAX_CHUNK_SAMPLES} samples (the encoder holds at most "
                         f"{MAX_CHUNK_SAMPLES / SAMPLE_RATE} s), got {chunk_seconds}")
    return [wav[start:start + chunk_samples] for start in range(0, wav.size, chunk_samples)]


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown token-count convention {convention!r}; valid: {', '.join(CONVENTIONS)}")


def num_mel_frames(num_samples: int) -> int:
    """Mel frames of one chunk: center=True STFT of N + 479 samples gives 1 + (N+479)//160; the last is dropped."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return (num_samples + PAD_SAMPLES) // HOP_LENGTH


def encoder_input_length(num_mel_frames: int, convention: str = "hf") -> int:
    """Valid mel length handed to the encoder: T_mel - 2 in the official HF code, T_mel in StepFun's vLLM fork."""
    _check_convention(convention)
    return num_mel_frames - 2 if convention == "hf" else num_mel_frames


def num_audio_tokens(num_samples: int, convention: str = "hf") -> int:
    """Audio tokens (adapter outputs, i.e. <audio_patch> slots) for ONE chunk of `num_samples` at 16 kHz."""
    _check_convention(convention)
    if num_samples > MAX_CHUNK_SAMPLES:
        raise ValueError(f"a chunk holds at most {MAX_CHUNK_SAMPLES} samples "
                         f"({MAX_CHUNK_SAMPLES / SAMPLE_RATE} s), got {num_samples}; chunk the audio first")
    valid_mels = encoder_input_length(num_mel_frames(num_samples), convention)
    frames_25hz = (valid_mels + 1) // 2 // 2  # conv2 (stride 2) then AvgPool (2)
    return (frames_25hz - 1) // 2 + 1  # adapter conv, stride 2, padding 1


# ----------------------------------------------------------------------------------------------------------
# Log-mel (docs/design.md §2.3)
# ----------------------------------------------------------------------------------------------------------

# Slaney mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic (27 mels per factor 6.4) above.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log_mel_value = _SLANEY_BREAK_MEL + np.log(np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_BREAK_HZ, log_mel_value, hz / _SLANEY_HZ_PER_MEL)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_hz = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_BREAK_MEL))
    return np.where(mel >= _SLANEY_BREAK_MEL, log_hz, mel * _SLANEY_HZ_PER_MEL)


@lru_cache(maxsize=1)
def _mel_filters_numpy() -> np.ndarray:
    """Triangles evenly spaced in slaney mels from 0 to 8 kHz, each scaled to unit area in Hz (slaney norm)."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_hz - lower) / (centre - lower)
    falling = (upper - fft_hz) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    weights = triangles * (2.0 / (upper - lower))
    # Computed in float64 and stored as float32, as librosa (and Whisper's mel_filters.npz) do.
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def _mel_filters_on(device: torch.device) -> torch.Tensor:
    return torch.from_numpy(_mel_filters_numpy()).to(device)


@lru_cache(maxsize=8)
def _hann_window_on(device: torch.device) -> torch.Tensor:
    return torch.hann_window(N_FFT, device=device)


def mel_filters() -> torch.Tensor:
    """The [128, 201] mel filter bank (a fresh copy; log_mel uses a cached one)."""
    return torch.from_numpy(_mel_filters_numpy().copy())


def log_mel(chunk: np.ndarray | torch.Tensor, *, device: str | torch.device | None = None) -> torch.Tensor:
    """Normalised log-mel [128, T_mel] float32 of one 16 kHz chunk, exactly as the official front end computes it."""
    wav = torch.as_tensor(chunk)
    if wav.ndim != 1 or wav.numel() == 0:
        raise ValueError(f"expected a non-empty 1-D chunk, got shape {tuple(wav.shape)}")
    target = torch.device(device) if device is not None else wav.device
    wav = wav.to(target, torch.float32)
    # Right-pad so that the centred STFT covers the end of the audio; the pad also keeps reflect padding
    # (200 samples) valid for even the shortest chunk.
    padded = torch.nn.functional.pad(wav, (0, PAD_SAMPLES))
    spectrum = torch.stft(padded, N_FFT, HOP_LENGTH, window=_hann_window_on(target), center=True,
                          pad_mode="reflect", return_complex=True)
    # Drop the last frame before squaring; contiguous so the matmul below takes the fast path.
    power = spectrum[:, :-1].abs().square().contiguous()
    mel = _mel_filters_on(target) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)  # 80 dB below this chunk's peak
    return (log_spec + 4.0) / 4.0


# ----------------------------------------------------------------------------------------------------------
# Everything together
# ----------------------------------------------------------------------------------------------------------

@dataclass
class AudioFeatures:
    """Log-mels and lengths of one audio input, one entry per chunk."""

    source: str
    duration: float  # seconds of audio at 16 kHz
    mels: list[torch.Tensor] = field(default_factory=list)  # [128, T_mel] per chunk
    mel_lengths: list[int] = field(default_factory=list)  # valid encoder input length per chunk (per convention)
    num_tokens: list[int] = field(default_factory=list)  # audio tokens per chunk

    @property
    def total_tokens(self) -> int:
        return sum(self.num_tokens)


def _as_waveform(wav: np.ndarray | torch.Tensor, source: str, max_seconds: float | None) -> np.ndarray:
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise AudioError(source, f"expected a 1-D 16 kHz waveform, got shape {wav.shape}")
    if not np.issubdtype(wav.dtype, np.floating):
        # Integer PCM would silently give features of a signal 32768 times too loud.
        raise AudioError(source, f"expected float samples in [-1, 1], got {wav.dtype}")
    wav = wav.astype(np.float32, copy=False)
    _check_samples(wav, source)
    _check_duration(wav.size, SAMPLE_RATE, source, max_seconds)
    return wav


def featurize(src_or_wav: AudioSource | np.ndarray | torch.Tensor, *, convention: str = "hf",
              max_seconds: float | None = DEFAULT_MAX_SECONDS, name: str | None = None,
              chunk_seconds: float = CHUNK_SECONDS) -> AudioFeatures:
    """Load (unless given a 16 kHz array), chunk and featurise audio for the encoder.

    A final chunk so short (about 20 ms with the HF convention) that it gives no audio token is dropped: the
    encoder would receive an empty sequence for it. Audio that gives no token at all raises AudioError.
    """
    _check_convention(convention)  # fail before spending time decoding
    if isinstance(src_or_wav, (np.ndarray, torch.Tensor)):
        source = name or "<array>"
        wav = _as_waveform(src_or_wav, source, max_seconds)
    else:
        wav, source = _load_with_source(src_or_wav, max_seconds, name)

    chunks = chunk_audio(wav, chunk_seconds)
    token_counts = [num_audio_tokens(len(chunk), convention) for chunk in chunks]
    if token_counts[-1] == 0:
        chunks, token_counts = chunks[:-1], token_counts[:-1]
    if not chunks:
        raise AudioError(source, f"too short: {wav.size / SAMPLE_RATE * 1000:.1f} ms gives no audio tokens")

    mels = [log_mel(chunk) for chunk in chunks]
    mel_lengths = [encoder_input_length(mel.shape[-1], convention) for mel in mels]
    return AudioFeatures(source=source, duration=wav.size / SAMPLE_RATE, mels=mels,
                         mel_lengths=mel_lengths, num_tokens=token_counts)
