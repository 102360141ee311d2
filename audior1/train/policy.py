"""What training runs a forward pass on: the policy (the model) and the PPO value model.

Design choices
- Each is one `nn.Module` whose single forward goes from a batch to what the losses need (per-token
  log-probabilities and entropy; per-token values), so FSDP can wrap it as its root and everything —
  adapter on cached encoder outputs, decoder, head — runs inside that one forward.
- Audio comes either as cached encoder outputs (`enc` [N, T, C] zero-padded per chunk, `enc_lens` [N]):
  only the adapter runs, on exactly the frames `model.audio_embeddings` would give it (its linear layers on
  valid frames only: `Adapter.valid_frames`); or as log-mels
  (`mels`, `mel_lens`, `mel_frames`): the encoder runs too (needed when it is trainable).
- The value model is a copy of the policy's network with a scalar head on the final hidden state, initialised
  from the policy as in the paper (the head starts at zero). Its `lm_head` is kept (frozen, unused) so the
  backbone stays a plain `StepAudioR1ForCausalLM`.
"""

from __future__ import annotations

import torch
from torch import nn

from audior1.model import StepAudioR1ForCausalLM
from audior1.train.losses import token_logprobs


def audio_embeds(model: StepAudioR1ForCausalLM, enc=None, enc_lens=None, mels=None, mel_lens=None,
                 mel_frames=None) -> torch.Tensor | None:
    """[sum(n_i), D] adapter outputs of every chunk in prompt order, or None without audio."""
    if enc is not None:
        return model.adapter.valid_frames(enc.to(model.dtype), enc_lens)
    if mels is not None:
        return model.audio_embeddings(mels, mel_lens, mel_frames)
    return None


def unused_audio_ghost(model: StepAudioR1ForCausalLM, has_audio: bool) -> torch.Tensor | float:
    """0 × Σ(trainable encoder/adapter parameters) for a batch without audio. Added to the output, it gives
    those parameters a zero gradient instead of none, so every rank reduces the same gradients under FSDP
    (a text-only batch on one rank would otherwise desynchronise the reduce-scatter)."""
    if has_audio:
        return 0.0
    params = [p for m in (model.encoder, model.adapter) for p in m.parameters() if p.requires_grad]
    return sum(p.sum() for p in params) * 0.0 if params else 0.0


PARTS_OF = {"encoder": ("encoder.",), "adapter": ("adapter.",), "decoder": ("model.", "lm_head.")}


def set_trainable(model: nn.Module, parts: list[str], prefix: str = "") -> int:
    """requires_grad only for the named parts (encoder / adapter / decoder); returns trainable parameters.
    The encoder's positional table stays frozen (it is a fixed sinusoid table in every release)."""
    keep = tuple(prefix + p for part in parts for p in PARTS_OF[part])
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(keep) and not name.endswith("positional_embedding.weight"))
        n += p.numel() if p.requires_grad else 0
    return n


class Policy(nn.Module):
    def __init__(self, model: StepAudioR1ForCausalLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, segment_ids, labels, audio_mask=None, enc=None,
                enc_lens=None, mels=None, mel_lens=None, mel_frames=None, with_entropy: bool = False,
                temperature: float = 1.0):
        """→ (logp [B, T], entropy [B, T] or None), label-aligned (see losses.py), of softmax(logits / T)."""
        embeds = audio_embeds(self.model, enc, enc_lens, mels, mel_lens, mel_frames)
        out = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         segment_ids=segment_ids, audio_embeds=embeds, audio_mask=audio_mask, return_logits=False)
        logp, entropy = token_logprobs(self.model.lm_head, out.hidden_states, labels, with_entropy, temperature)
        return logp + unused_audio_ghost(self.model, embeds is not None), entropy


class ValueModel(nn.Module):
    def __init__(self, backbone: StepAudioR1ForCausalLM):
        super().__init__()
        self.model = backbone
        self.value_head = nn.Linear(backbone.config.text.hidden_size, 1)
        self.reset_head()
        self.model.lm_head.weight.requires_grad_(False)

    @torch.no_grad()
    def reset_head(self) -> None:
        """The head starts at zero (also after a sharded load, which allocates it uninitialised)."""
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, position_ids, segment_ids, labels=None, audio_mask=None, enc=None,
                enc_lens=None, mels=None, mel_lens=None, mel_frames=None):
        """→ values [B, T]: values[:, t] = V(tokens_<t) (values[:, 0] = 0)."""
        embeds = audio_embeds(self.model, enc, enc_lens, mels, mel_lens, mel_frames)
        out = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         segment_ids=segment_ids, audio_embeds=embeds, audio_mask=audio_mask, return_logits=False)
        v = self.value_head(out.hidden_states).squeeze(-1).float()  # [B, T]: value after token t
        v = v + unused_audio_ghost(self.model, embeds is not None)
        return torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], dim=1)
