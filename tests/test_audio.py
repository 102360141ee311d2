"""Tests for the audio front end (audior1.audio): lengths, log-mel parity, decoding, and errors."""

import base64
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audior1 import audio
from audior1.audio import AudioError

SR = audio.SAMPLE_RATE


def tone(freq: float, seconds: float, sample_rate: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def samples_dir(shared_data: Path) -> Path:
    return shared_data / "samples"


# ---------------------------------------------------------------------------------------------------------
# Length arithmetic (docs/design.md §2.2)
# ---------------------------------------------------------------------------------------------------------

# seconds, N, T_mel, HF valid length, HF tokens, vLLM tokens
TOKEN_TABLE = [
    (0.5, 8_000, 52, 50, 6, 7),
    (1, 16_000, 102, 100, 13, 13),
    (2, 32_000, 202, 200, 25, 25),
    (5, 80_000, 502, 500, 63, 63),
    (10, 160_000, 1002, 1000, 125, 125),
    (20, 320_000, 2002, 2000, 250, 250),
    (25, 400_000, 2502, 2500, 313, 313),
    (29.98, 479_680, 3000, 2998, 375, 375),
]


@pytest.mark.parametrize("seconds, n, t_mel, valid, hf_tokens, vllm_tokens", TOKEN_TABLE)
def test_token_table_both_conventions(seconds, n, t_mel, valid, hf_tokens, vllm_tokens):
    assert round(seconds * SR) == n
    assert audio.num_mel_frames(n) == t_mel
    assert audio.encoder_input_length(t_mel) == valid
    assert audio.encoder_input_length(t_mel, "vllm") == t_mel
    assert audio.num_audio_tokens(n) == hf_tokens
    assert audio.num_audio_tokens(n, convention="hf") == hf_tokens
    assert audio.num_audio_tokens(n, convention="vllm") == vllm_tokens


def test_conventions_differ_exactly_for_t_mel_3_or_4_mod_8():
    differing = []
    for t_mel in range(3, 3001):
        n = t_mel * audio.HOP_LENGTH - audio.PAD_SAMPLES  # the shortest chunk with this many mel frames
        assert audio.num_mel_frames(n) == t_mel
        hf, vllm = audio.num_audio_tokens(n, "hf"), audio.num_audio_tokens(n, "vllm")
        if hf != vllm:
            assert vllm == hf + 1
            differing.append(t_mel)
    assert differing == [t for t in range(3, 3001) if t % 8 in (3, 4)]
    assert len(differing) == 750


def test_length_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="'hf', 'vllm'|hf, vllm"):
        audio.num_audio_tokens(16000, convention="sglang")
    with pytest.raises(ValueError, match="hf, vllm"):
        audio.encoder_input_length(100, convention="HF")
    with pytest.raises(ValueError, match="chunk"):
        audio.num_audio_tokens(audio.MAX_CHUNK_SAMPLES + 1)
    with pytest.raises(ValueError):
        audio.num_mel_frames(-1)


@pytest.mark.parametrize("n", [1, 159, 160, 161, 8000, 16000 + 37])
def test_log_mel_shape_matches_num_mel_frames(n):
    mel = audio.log_mel(np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1)
    assert mel.dtype == torch.float32
    assert tuple(mel.shape) == (audio.N_MELS, audio.num_mel_frames(n))


# ---------------------------------------------------------------------------------------------------------
# Mel filters and log-mel parity with the transformers reference
# ---------------------------------------------------------------------------------------------------------

def test_mel_filters_match_transformers():
    audio_utils = pytest.importorskip("transformers.audio_utils")
    reference = audio_utils.mel_filter_bank(
        num_frequency_bins=201, num_mel_filters=128, min_frequency=0, max_frequency=8000,
        sampling_rate=16000, norm="slaney", mel_scale="slaney")
    ours = audio.mel_filters()
    assert ours.shape == (128, 201) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), reference.T, rtol=1e-5, atol=1e-7)
    ours[0, 0] = 123.0  # callers get a copy: the cached bank must not change
    assert audio.mel_filters()[0, 0] != 123.0


def test_log_mel_matches_whisper_on_interior_frames(shared_data):
    transformers = pytest.importorskip("transformers")
    wav = audio.load_audio(samples_dir(shared_data) / "jfk.flac")[: 10 * SR]
    ours = audio.log_mel(wav)

    extractor = transformers.WhisperFeatureExtractor(feature_size=128)
    theirs = torch.from_numpy(extractor(wav, sampling_rate=SR, return_tensors="np")["input_features"][0])

    # Frames whose 400-sample window ends before our reflect padding see the same samples in both (audio, then
    # zeros): Whisper zero-pads to 30 s, we pad 479 zeros and reflect. At most our last frame differs.
    same_input_frames = (len(wav) + audio.PAD_SAMPLES - audio.N_FFT // 2) // audio.HOP_LENGTH + 1
    assert ours.shape[1] - same_input_frames in (0, 1)
    # Both floor at (max - 8) over their own frames; Whisper's extra frames are padding (log10 1e-10), so the
    # floors agree when this clip's peak lies in a shared frame. Check that rather than assume it.
    assert ours.max(dim=0).values.argmax() < same_input_frames
    assert torch.isclose(ours.max(), theirs.max(), atol=1e-6)

    torch.testing.assert_close(ours[:, :same_input_frames], theirs[:, :same_input_frames], rtol=0, atol=1e-5)
    assert (ours[:, :same_input_frames] > ours.min()).float().mean() > 0.5  # real speech, not just the floor


def test_log_mel_accepts_numpy_and_tensor_and_device():
    wav = tone(440, 0.5)
    from_numpy = audio.log_mel(wav)
    from_tensor = audio.log_mel(torch.from_numpy(wav), device="cpu")
    torch.testing.assert_close(from_numpy, from_tensor)
    with pytest.raises(ValueError):
        audio.log_mel(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(ValueError):
        audio.log_mel(np.zeros(0, dtype=np.float32))


def test_pure_tone_peaks_in_its_mel_band():
    filters = audio.mel_filters().numpy()
    bin_hz = np.arange(filters.shape[1]) * SR / audio.N_FFT
    band_centres_hz = (filters * bin_hz).sum(axis=1) / filters.sum(axis=1)
    # Tones on FFT bins (multiples of 40 Hz). Well below 1 kHz the mel bands (~23 Hz apart) are narrower than
    # the 40 Hz bins, so "the" band of a tone is not well defined there.
    for freq in (1000.0, 3000.0, 6000.0):
        mel = audio.log_mel(tone(freq, 1.0))
        loudest_band = int(mel[:, 5:-5].mean(dim=1).argmax())
        assert loudest_band == int(np.abs(band_centres_hz - freq).argmin()), freq


# ---------------------------------------------------------------------------------------------------------
# Decoding real and generated audio
# ---------------------------------------------------------------------------------------------------------

# file, container, duration (s), HF tokens per chunk. jfk.flac is stored as 44.1 kHz stereo, whatever
# ATTRIBUTION.md says; the MP3's 1.904 s tail is 30 464 samples -> T_mel 193 -> 24 tokens.
SHARED_CLIPS = [
    ("mmau_59a98d10.wav", "WAV", 10.0, [125]),
    ("mmau_3fe64f3d.wav", "WAV", 10.0, [125]),
    ("mmar_5jX8pPYe.wav", "WAV", 10.0, [125]),
    ("big_bench_audio_example.wav", "MP3", 26.9, [313, 24]),
    ("jfk.flac", "FLAC", 11.0, [138]),
]


@pytest.mark.parametrize("name, container, duration, tokens", SHARED_CLIPS)
def test_shared_clip_loads(shared_data, name, container, duration, tokens):
    path = samples_dir(shared_data) / name
    assert audio.sniff_format(path.read_bytes()[:64]) == container
    feats = audio.featurize(path)
    assert feats.source == str(path)
    assert feats.duration == pytest.approx(duration, abs=0.02)
    assert feats.num_tokens == tokens and len(feats.mels) == len(tokens)
    assert all(torch.isfinite(mel).all() for mel in feats.mels)


def test_every_shared_sample_loads(shared_data):
    labelled = {entry["audio"] for entry in json.loads((samples_dir(shared_data) / "labels.json").read_text())}
    assert labelled <= {name for name, *_ in SHARED_CLIPS}
    for path in sorted(samples_dir(shared_data).iterdir()):
        if path.suffix not in (".json", ".md"):
            assert audio.featurize(path).total_tokens > 0, path.name


def test_mp3_named_wav_is_decoded_as_mp3(shared_data):
    path = samples_dir(shared_data) / "big_bench_audio_example.wav"
    assert path.suffix == ".wav"
    assert audio.sniff_format(path.read_bytes()) == "MP3"
    assert len(audio.load_audio(path)) == pytest.approx(26.904 * SR, abs=0.02 * SR)


def test_stereo_keeps_first_channel(shared_data, tmp_path):
    left, right = tone(440, 1.0), tone(2000, 1.0, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    np.testing.assert_array_equal(audio.load_audio(path), left)

    real = samples_dir(shared_data) / "mmar_5jX8pPYe.wav"
    both, rate = sf.read(real, dtype="float32", always_2d=True)
    assert both.shape[1] == 2 and rate == 48000
    np.testing.assert_array_equal(audio.load_audio(real), audio.resample(both[:, 0], rate))


def test_bytes_base64_and_data_url_match_path(shared_data):
    path = samples_dir(shared_data) / "mmau_3fe64f3d.wav"
    from_path = audio.load_audio(path)
    raw = path.read_bytes()
    encoded = base64.b64encode(raw).decode()
    for src in (raw, bytearray(raw), memoryview(raw), str(path), encoded, "data:audio/wav;base64," + encoded):
        np.testing.assert_array_equal(audio.load_audio(src), from_path)
    np.testing.assert_array_equal(audio.decode_base64_audio(encoded), from_path)
    assert audio.featurize(raw).source == "<bytes>"
    assert audio.featurize(encoded).source == "<base64>"
    assert audio.featurize(raw, name="upload-1").source == "upload-1"


def test_fsdd_8khz_resamples_to_16khz(shared_data):
    path = shared_data / "fsdd" / "recordings" / "0_george_0.wav"
    info = sf.info(path)
    assert info.samplerate == 8000
    wav = audio.load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == 2 * info.frames


@pytest.mark.parametrize("fmt, subtype, tolerance", [("WAV", "PCM_16", 1e-4), ("FLAC", "PCM_24", 1e-6),
                                                     ("OGG", "VORBIS", None)])
def test_generated_tone_round_trips(tmp_path, fmt, subtype, tolerance):
    wav = tone(1000, 2.0)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, wav, SR, format=fmt, subtype=subtype)
    loaded = audio.load_audio(path)
    assert audio.sniff_format(path.read_bytes()) == fmt
    assert len(loaded) == len(wav)
    if tolerance is not None:
        np.testing.assert_allclose(loaded, wav, atol=tolerance)
    else:  # lossy: the tone must still be there at the same frequency and level
        spectrum = np.abs(np.fft.rfft(loaded))
        assert np.argmax(spectrum) * SR / len(loaded) == pytest.approx(1000, abs=1)
        assert np.sqrt(np.mean(loaded ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_other_rate_is_resampled(tmp_path):
    path = tmp_path / "tone_22k.wav"
    sf.write(path, tone(1000, 1.5, sample_rate=22050), 22050, subtype="FLOAT")
    loaded = audio.load_audio(path)
    assert len(loaded) == 24000
    np.testing.assert_allclose(loaded[2000:-2000], tone(1000, 1.5)[2000:-2000], atol=1e-3)


def test_sniff_format():
    assert audio.sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "WAV"
    assert audio.sniff_format(b"fLaC\x00\x00\x00\x22") == "FLAC"
    assert audio.sniff_format(b"OggS\x00\x02") == "OGG"
    assert audio.sniff_format(b"ID3\x04\x00\x00\x00\x00\x00\x00") == "MP3"
    assert audio.sniff_format(b"ID3\x04\x00\x00\x00\x00\x00\x02" + b"\x00\x00" + b"fLaC") == "FLAC"
    assert audio.sniff_format(b"\xff\xfb\x90\x64") == "MP3"  # MPEG-1 Layer III, 128 kb/s, 44.1 kHz
    for not_audio in (b"\xff\xf1\x50\x80", b"RIFF\x00\x00\x00\x00AVI ", b"\xff\xff\xff\xff", b"{\"a\": 1}"):
        with pytest.raises(AudioError, match="not a WAV/FLAC/OGG/MP3 file"):
            audio.sniff_format(not_audio)


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------

def write_wav(path: Path, wav: np.ndarray) -> Path:
    sf.write(path, wav, SR, subtype="FLOAT")
    return path


def error_cases(tmp_path: Path):
    """(call, expected source, expected fragment of the reason) for each kind of bad audio."""
    empty_file = tmp_path / "empty.wav"
    empty_file.write_bytes(b"")
    silent = write_wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    nan = write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], dtype=np.float32))
    inf = write_wav(tmp_path / "inf.wav", np.array([0.0, np.inf, 0.1], dtype=np.float32))
    two_seconds = write_wav(tmp_path / "two.wav", tone(440, 2.0))
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(two_seconds.read_bytes()[:20])
    missing = str(tmp_path / "missing.wav")
    return [
        (lambda: audio.load_audio(missing), missing, "no such file"),
        (lambda: audio.load_audio("clip.wav"), "clip.wav", "no such file"),
        (lambda: audio.load_audio(empty_file), str(empty_file), "empty file"),
        (lambda: audio.load_audio(b""), "<bytes>", "empty"),
        (lambda: audio.load_audio(b"hello, this is not audio"), "<bytes>", "not a WAV/FLAC/OGG/MP3 file (first bytes"),
        (lambda: audio.load_audio(truncated), str(truncated), "could not decode WAV"),
        (lambda: audio.load_audio(silent), str(silent), "no audio samples"),
        (lambda: audio.load_audio(nan), str(nan), "NaN or infinite"),
        (lambda: audio.load_audio(inf), str(inf), "NaN or infinite"),
        (lambda: audio.load_audio(two_seconds, max_seconds=1.0), str(two_seconds),
         "too long: 2.00 s exceeds the limit of 1 s"),
        (lambda: audio.load_audio("data:audio/wav;base64,UklGR!!!"), "<base64>", "invalid base64"),
        (lambda: audio.decode_base64_audio("abc$", name="req-7"), "req-7", "invalid base64"),
        (lambda: audio.decode_base64_audio("data:audio/wav,plain"), "<base64>", "data: URL"),
        (lambda: audio.load_audio("A" * 63 + "$" * 10), "A" * 63 + "$" * 10, "no such file"),
        (lambda: audio.load_audio(b"\x00" * 16, name="mic"), "mic", "not a WAV/FLAC/OGG/MP3 file"),
        (lambda: audio.featurize(np.zeros((2, 10), dtype=np.float32)), "<array>", "1-D"),
        (lambda: audio.featurize(np.full(10, np.nan, dtype=np.float32)), "<array>", "NaN"),
        (lambda: audio.featurize(np.ones(16000, dtype=np.int16), name="pcm"), "pcm", "float samples"),
        (lambda: audio.load_audio(tmp_path), str(tmp_path), "not a regular file"),
        (lambda: audio.load_audio(str(tmp_path)), str(tmp_path), "not a regular file"),
    ]


def test_each_audio_error_names_source_and_reason(tmp_path):
    for call, source, reason in error_cases(tmp_path):
        with pytest.raises(AudioError) as caught:
            call()
        error = caught.value
        assert error.source == source
        assert reason in error.reason, (reason, error.reason)
        assert str(error).startswith(f"audio {source!r}: ")
        assert isinstance(error, ValueError)


def test_audio_error_pickles():
    error = pickle.loads(pickle.dumps(AudioError("clip.wav", "empty file")))
    assert (error.source, error.reason, str(error)) == ("clip.wav", "empty file", "audio 'clip.wav': empty file")


def test_wrong_source_type_is_a_type_error():
    with pytest.raises(TypeError, match="featurize"):
        audio.load_audio(np.zeros(10, dtype=np.float32))


# ---------------------------------------------------------------------------------------------------------
# Chunking and featurize
# ---------------------------------------------------------------------------------------------------------

def test_chunk_audio():
    wav = np.zeros(2 * 400_000 + 1, dtype=np.float32)
    assert [len(c) for c in audio.chunk_audio(wav)] == [400_000, 400_000, 1]
    assert [len(c) for c in audio.chunk_audio(wav[:400_000])] == [400_000]
    assert [len(c) for c in audio.chunk_audio(wav[:16_000], chunk_seconds=0.4)] == [6400, 6400, 3200]
    with pytest.raises(ValueError):
        audio.chunk_audio(wav[:0])
    with pytest.raises(ValueError):
        audio.chunk_audio(wav, chunk_seconds=30.0)  # more than the encoder holds


def test_featurize_array_normalises_each_chunk_separately():
    quiet, loud = tone(500, 25.0, amplitude=0.01), tone(500, 5.0, amplitude=0.9)
    feats = audio.featurize(np.concatenate([quiet, loud]))
    assert feats.source == "<array>" and feats.duration == 30.0
    assert [m.shape[1] for m in feats.mels] == [2502, 502]
    assert feats.mel_lengths == [2500, 500] and feats.num_tokens == [313, 63] and feats.total_tokens == 376
    # Each chunk reaches its own maximum: normalising the file as a whole would squash the quiet chunk.
    torch.testing.assert_close(feats.mels[0], audio.log_mel(quiet))
    assert feats.mels[0].max() < feats.mels[1].max()

    vllm = audio.featurize(torch.from_numpy(np.concatenate([quiet, loud])), convention="vllm")
    assert vllm.mel_lengths == [2502, 502] and vllm.num_tokens == [313, 63]


def test_featurize_drops_a_tail_that_gives_no_tokens():
    wav = tone(500, 25.0 + 100 / SR)  # 100 samples past a full chunk
    assert audio.num_audio_tokens(100, "hf") == 0
    assert len(audio.featurize(wav).mels) == 1
    assert audio.featurize(wav, convention="vllm").num_tokens == [313, 1]
    with pytest.raises(AudioError, match="too short"):
        audio.featurize(wav[:100])


def test_featurize_rejects_unknown_convention_before_decoding():
    with pytest.raises(ValueError, match="hf, vllm"):
        audio.featurize("no-such-file.wav", convention="nope")
