"""Model configuration: small dataclasses, the presets, and the config.json layouts.

Design choices
- The field names are the official config.json keys, so reading and writing is a plain mapping and a
  reader of the released files recognises every name.
- Two layouts are read: the released nested one (`model_type: step_audio_2`, `text_config` +
  `audio_encoder_config`) and the flat vLLM one (`model_type: step_audio_qwen2`, text keys at the top
  level). Only the nested layout is written.
- Token ids that the model itself needs (the `<audio_patch>` id) live in the config because the model must
  work without a tokenizer; everything else is read from the tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

# Label value that marks a position without loss (PyTorch's cross-entropy default): the processor writes it,
# the model's and the trainers' losses skip it.
IGNORE_INDEX = -100

# Ids of the released Step-Audio vocabulary (docs/design.md §3.3).
OFFICIAL_VOCAB_SIZE = 158720
OFFICIAL_AUDIO_PATCH_ID = 151690
OFFICIAL_EOS_IDS = (151643, 151645, 151665)
ADAPTER_HIDDEN = 2048  # hard-coded in the released adapter, not a config key


class ConfigError(ValueError):
    """A config.json (or preset, or override) that does not describe a valid model."""


@dataclass
class AudioEncoderConfig:
    n_mels: int = 128
    n_audio_ctx: int = 1500
    n_audio_state: int = 1280
    n_audio_head: int = 20
    n_audio_layer: int = 32
    llm_dim: int = 5120
    kernel_size: int = 3
    adapter_stride: int = 2
    n_codebook_size: int = 4096  # legacy key, unused by the model; kept so files round-trip

    @property
    def mlp_dim(self) -> int:
        return 4 * self.n_audio_state  # Whisper's fixed ratio; the config has no key for it


@dataclass
class TextConfig:
    hidden_size: int = 5120
    intermediate_size: int = 27648
    num_hidden_layers: int = 64
    num_attention_heads: int = 40
    num_key_value_heads: int = 8
    vocab_size: int = OFFICIAL_VOCAB_SIZE
    rms_norm_eps: float = 1e-5
    rope_theta: float = 1e6
    max_position_embeddings: int = 65536
    hidden_act: str = "silu"
    eos_token_id: list[int] = field(default_factory=lambda: list(OFFICIAL_EOS_IDS))
    pad_token_id: int = 151643
    bos_token_id: int = 151643

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class ModelConfig:
    text: TextConfig = field(default_factory=TextConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    torch_dtype: str = "bfloat16"
    audio_patch_token_id: int = OFFICIAL_AUDIO_PATCH_ID

    def validate(self) -> "ModelConfig":
        t, a = self.text, self.audio
        problems = []
        if t.hidden_size % t.num_attention_heads:
            problems.append(f"text_config.hidden_size {t.hidden_size} is not a multiple of num_attention_heads {t.num_attention_heads}")
        if t.num_attention_heads % t.num_key_value_heads:
            problems.append(f"num_attention_heads {t.num_attention_heads} is not a multiple of num_key_value_heads {t.num_key_value_heads}")
        if a.n_audio_state % a.n_audio_head:
            problems.append(f"audio_encoder_config.n_audio_state {a.n_audio_state} is not a multiple of n_audio_head {a.n_audio_head}")
        if a.llm_dim != t.hidden_size:
            problems.append(f"audio_encoder_config.llm_dim {a.llm_dim} must equal text_config.hidden_size {t.hidden_size}")
        if a.kernel_size != 3 or a.adapter_stride != 2:
            problems.append("only the released adapter (kernel_size 3, adapter_stride 2) is supported")
        if not 0 <= self.audio_patch_token_id < t.vocab_size:
            problems.append(f"audio_patch_token_id {self.audio_patch_token_id} is outside the vocabulary (size {t.vocab_size})")
        if self.torch_dtype not in ("float32", "bfloat16", "float16"):
            problems.append(f"torch_dtype {self.torch_dtype!r} is not one of float32, bfloat16, float16")
        if problems:
            raise ConfigError("invalid model config: " + "; ".join(problems))
        return self

    # ---- config.json -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The released nested layout (what `save_checkpoint` writes)."""
        text = dataclasses.asdict(self.text)
        text["num_attention_groups"] = self.text.num_key_value_heads  # released files carry both
        text["max_seq_len"] = self.text.max_position_embeddings
        text["rope_scaling"] = None
        text["torch_dtype"] = self.torch_dtype
        out = {
            "architectures": ["StepAudio2ForCausalLM"],
            "model_type": "step_audio_2",
            "torch_dtype": self.torch_dtype,
            "text_config": text,
            "audio_encoder_config": dataclasses.asdict(self.audio),
        }
        if self.audio_patch_token_id != OFFICIAL_AUDIO_PATCH_ID:
            out["audio_patch_token_id"] = self.audio_patch_token_id  # only for our small vocabularies
        return out

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config.json") -> "ModelConfig":
        model_type = raw.get("model_type")
        if "text_config" in raw:
            text_raw = raw["text_config"]
        elif model_type == "step_audio_qwen2" or "hidden_size" in raw:
            text_raw = raw  # flat layout: text keys at the top level
        else:
            raise ConfigError(f"{source}: neither a nested 'text_config' nor flat text keys (model_type={model_type!r})")
        if "audio_encoder_config" not in raw:
            raise ConfigError(f"{source}: missing 'audio_encoder_config'")
        text = _fill_dataclass(TextConfig, _with_rope_theta(text_raw, source), f"{source}: text config")
        if "num_attention_groups" in text_raw and text_raw["num_attention_groups"] != text.num_key_value_heads:
            raise ConfigError(f"{source}: num_attention_groups {text_raw['num_attention_groups']} != num_key_value_heads {text.num_key_value_heads}")
        text.eos_token_id = _eos_list(text_raw.get("eos_token_id") or text.eos_token_id, text.vocab_size)
        audio = _fill_dataclass(AudioEncoderConfig, raw["audio_encoder_config"], f"{source}: audio_encoder_config")
        dtype = raw.get("torch_dtype") or raw.get("dtype") or text_raw.get("torch_dtype") or "bfloat16"
        patch = raw.get("audio_patch_token_id", OFFICIAL_AUDIO_PATCH_ID)
        return cls(text=text, audio=audio, torch_dtype=dtype, audio_patch_token_id=patch).validate()

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json (is this a model directory?)") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(raw, str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _fill_dataclass(cls, raw: dict, where: str):
    """Take the dataclass's fields from `raw`, ignoring keys the model does not use (HF adds many)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw and raw[f.name] is not None:
            kwargs[f.name] = raw[f.name]
    try:
        obj = cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        if f.type in ("int", "float") and not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: field {f.name!r} should be a number, got {value!r}")
    return obj


def _with_rope_theta(text_raw: dict, source: str) -> dict:
    """Newer transformers write RoPE settings as `rope_parameters`; only plain RoPE is supported."""
    rope = text_raw.get("rope_parameters") or text_raw.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", None):
        raise ConfigError(f"{source}: RoPE scaling {kind!r} is not supported (Step-Audio-R1 uses plain RoPE)")
    if "rope_theta" not in text_raw and "rope_theta" in rope:
        return {**text_raw, "rope_theta": rope["rope_theta"]}
    return text_raw


def _eos_list(value, vocab_size: int) -> list[int]:
    ids = [value] if isinstance(value, int) else list(value)
    if vocab_size == OFFICIAL_VOCAB_SIZE:
        # The released config class always forces these three into the list (docs/design.md §5.1).
        ids = list(OFFICIAL_EOS_IDS) + [i for i in ids if i not in OFFICIAL_EOS_IDS]
    return ids


# ---- presets -------------------------------------------------------------------------------------

SMALL_VOCAB_SIZE = 1024  # the byte-level BPE that audior1 trains for tiny/demo (audior1.chat)


def _official(hidden, inter, layers, heads, kv, eps, max_pos) -> ModelConfig:
    text = TextConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, rms_norm_eps=eps,
                      max_position_embeddings=max_pos)
    return ModelConfig(text=text, audio=AudioEncoderConfig(llm_dim=hidden))


def _small(hidden, inter, layers, heads, kv, enc_width, enc_heads, enc_layers) -> ModelConfig:
    # Small presets keep the real front end (128 mels, 1500 positions) and the real adapter shape
    # (2048 hidden), so the only differences from the released model are widths and depths.
    text = TextConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, vocab_size=SMALL_VOCAB_SIZE,
                      rms_norm_eps=1e-6, max_position_embeddings=4096, eos_token_id=[], pad_token_id=0,
                      bos_token_id=0)
    audio = AudioEncoderConfig(n_audio_state=enc_width, n_audio_head=enc_heads, n_audio_layer=enc_layers,
                               llm_dim=hidden)
    # Where audior1's small tokenizer puts <audio_patch> (its specials come last); `init` re-reads it from
    # the tokenizer, this default only lets a bare preset build a model.
    return ModelConfig(text=text, audio=audio, torch_dtype="float32", audio_patch_token_id=SMALL_VOCAB_SIZE - 3)


PRESETS = {
    "step-audio-r1": lambda: _official(5120, 27648, 64, 40, 8, 1e-5, 65536),
    "step-audio-2-mini": lambda: _official(3584, 18944, 28, 28, 4, 1e-6, 16384),
    # demo: ~2.5 M parameters, trains on 2 CPU cores in minutes.
    "demo": lambda: _small(128, 384, 4, 4, 2, enc_width=128, enc_heads=4, enc_layers=2),
    # tiny: a test runs in milliseconds.
    "tiny": lambda: _small(32, 64, 2, 4, 2, enc_width=32, enc_heads=2, enc_layers=2),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
