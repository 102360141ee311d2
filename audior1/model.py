"""The Step-Audio-R1 network: Whisper-style encoder, 12.5 Hz adapter, Qwen2 decoder, KV cache.

Design choices
- Parameter names are the released ones (`encoder.blocks.{i}.attn.query`, `adapter.linear1`,
  `model.layers.{i}.self_attn.q_proj`, …), so official checkpoints load with `strict=True` and no key map.
  The only buffer is RoPE's `inv_freq`, which is non-persistent: the state dict holds exactly the
  released tensors (1264 for Step-Audio-R1).
- One attention-mask rule serves training, packing and cached decoding: a query may see a key when the
  key is valid and not in its future, and (for packed rows) in the same segment. Every query also sees
  itself, so rows of pure padding never produce NaNs.
- Forwards without a cache (training, scoring) do not build that mask: attention runs segment by segment
  (`PackedSegments`, `segment_attention`), each a plain causal attention over its own tokens, so a row of
  several examples costs what the examples cost instead of a dense T × T masked attention. A packed row's
  segments come from `segment_ids`; an unpacked row is one segment, its run of valid tokens, so padding costs
  the linear layers but not attention (as flash-attention's unpadding does). The linear layers still see the
  [B, T] layout; only attention is split, by `split` and `cat` (whose backward is one `cat` / one split, not a
  full-size zero tensor per slice). A padding token attends to itself alone, so its output is its own value
  (under the mask a right-padding token also sees its row: no loss or real token ever reads it). Segments must
  be contiguous runs; otherwise (or with `model.per_segment_attention = False`) the dense mask is used, which
  tests hold equal to the per-segment path on every real token.
- Audio embeddings overwrite the `<audio_patch>` positions in row-major order, as the released code does;
  audio frames take ordinary RoPE positions.
- Encoder attention runs its softmax in fp32 (as released); the decoder uses `scaled_dot_product_attention`.
- The loss never materialises full-vocabulary logits for the whole batch at once: it is computed in
  sequence chunks in fp32, which matters for a 158 720-row head. `loss_reduction="none"` returns one value
  per token (what RL needs for log-probabilities).
- The adapter applies its GELU on every path (the upstream code drops it under gradient checkpointing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from audior1.config import ADAPTER_HIDDEN, IGNORE_INDEX, AudioEncoderConfig, ModelConfig, TextConfig

LOSS_CHUNK_TOKENS = 2048


# ---- audio encoder (OpenAI-Whisper naming) ------------------------------------------------------

class EncoderAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        # x [B, T, C]; key_bias [B, 1, 1, T] additive (0 valid, -1e10 padding)
        b, t, c = x.shape
        split = lambda y: y.view(b, t, self.heads, c // self.heads).transpose(1, 2).float()
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)  # softmax in fp32
        return self.out(y.to(x.dtype).transpose(1, 2).reshape(b, t, c))


class EncoderBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_dim: int):
        super().__init__()
        self.attn = EncoderAttention(width, heads)
        self.attn_ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, width))
        self.mlp_ln = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), key_bias)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """log-mel [B, n_mels, T] at 100 Hz → [B, T//4, C] at 25 Hz."""

    def __init__(self, cfg: AudioEncoderConfig):
        super().__init__()
        c = cfg.n_audio_state
        self.conv1 = nn.Conv1d(cfg.n_mels, c, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(c, c, kernel_size=3, stride=2, padding=1)
        self.positional_embedding = nn.Embedding(cfg.n_audio_ctx, c)
        self.positional_embedding.weight.requires_grad_(False)  # frozen table, stored in checkpoints
        self.blocks = nn.ModuleList(EncoderBlock(c, cfg.n_audio_head, cfg.mlp_dim) for _ in range(cfg.n_audio_layer))
        self.avg_pooler = nn.AvgPool1d(2, stride=2)
        self.after_norm = nn.LayerNorm(c)
        self.gradient_checkpointing = False

    def forward(self, mels: torch.Tensor, mel_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t_pad = mels.shape[-1]
        x = F.gelu(self.conv1(mels))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B, ceil(T/2), C]
        if x.shape[1] > self.positional_embedding.num_embeddings:
            raise ValueError(f"audio chunk too long for the encoder: {t_pad} mel frames "
                             f"(at most {2 * self.positional_embedding.num_embeddings}, i.e. 29.98 s)")
        x = x + self.positional_embedding.weight[: x.shape[1]].to(x.dtype)
        key_bias = _encoder_key_bias(mel_lens, t_pad, x.shape[1])
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, key_bias, use_reentrant=False)
            else:
                x = block(x, key_bias)
        x = self.avg_pooler(x.transpose(1, 2)).transpose(1, 2)
        return self.after_norm(x), (mel_lens + 1) // 2 // 2


def _encoder_key_bias(mel_lens: torch.Tensor, t_pad: int, t2: int) -> torch.Tensor:
    """The released key-padding rule: a 100 Hz validity mask subsampled from index (T+1) % 2 in steps of 2."""
    frames = torch.arange(t_pad, device=mel_lens.device)
    valid = frames[None, :] < mel_lens[:, None]
    valid = valid[:, (t_pad + 1) % 2 :: 2][:, :t2]
    bias = torch.zeros(valid.shape, dtype=torch.float32, device=mel_lens.device)
    return bias.masked_fill(~valid, -1e10)[:, None, None, :]


class Adapter(nn.Module):
    """25 Hz encoder frames → 12.5 Hz LLM embeddings: Conv1d(k3,s2)+GELU → 2048 → ReLU → D."""

    def __init__(self, cfg: AudioEncoderConfig):
        super().__init__()
        c = cfg.n_audio_state
        self.conv = nn.Conv1d(c, c, kernel_size=cfg.kernel_size, stride=cfg.adapter_stride, padding=1)
        self.linear1 = nn.Linear(c, ADAPTER_HIDDEN)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(ADAPTER_HIDDEN, cfg.llm_dim)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # exact GELU on every path
        return self.linear2(self.relu(self.linear1(x))), (lens - 1) // 2 + 1

    def valid_frames(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """`forward`'s valid frames of every chunk, concatenated in chunk order: [sum(n_i), D]. The convolution
        runs on the padded batch (a chunk's last window must see the zeros `forward` sees); the two linear
        layers, most of the adapter's work (C → 2048 → D), run on valid frames only, so a batch of chunks of
        mixed lengths costs what its frames cost."""
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        n = (lens - 1) // 2 + 1
        keep = torch.arange(x.shape[1], device=x.device)[None, :] < n[:, None]
        return self.linear2(self.relu(self.linear1(x[keep])))


# ---- Qwen2 decoder ------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions[..., None].float() * self.inv_freq  # [B, T, head_dim/2]
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(dtype)[:, None], angles.sin().to(dtype)[:, None]  # [B, 1, T, head_dim]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class DecoderAttention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        d, hd = cfg.hidden_size, cfg.head_dim
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, hd
        self.q_proj = nn.Linear(d, self.heads * hd)
        self.k_proj = nn.Linear(d, self.kv_heads * hd)
        self.v_proj = nn.Linear(d, self.kv_heads * hd)
        self.o_proj = nn.Linear(self.heads * hd, d, bias=False)

    def forward(self, x, cos, sin, mask, cache: "KVCache | None", layer_idx: int):
        b, t, _ = x.shape
        if isinstance(mask, PackedSegments):
            return self.o_proj(self._per_segment(x, cos, sin, mask))
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.write(layer_idx, k, v)  # now every key so far: [B, kv_heads, S, head_dim]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.heads != self.kv_heads)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))

    def _per_segment(self, x, cos, sin, segments: "PackedSegments") -> torch.Tensor:
        """Attention of packed rows, one segment at a time → [B, T, heads * head_dim]. Works token-major
        ([B·T, heads, head_dim], the projections' own layout), so segments are plain row ranges."""
        b, t, _ = x.shape
        cos, sin = cos.transpose(1, 2), sin.transpose(1, 2)  # [B, T, 1, head_dim]: same values, token-major
        q = _rotate(self.q_proj(x).view(b, t, self.heads, self.head_dim), cos, sin)
        k = _rotate(self.k_proj(x).view(b, t, self.kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim)
        y = segment_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), segments)
        return y.view(b, t, -1)


class DecoderMLP(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.self_attn = DecoderAttention(cfg)
        self.mlp = DecoderMLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None, layer_idx=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer_idx)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen2Model(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.gradient_checkpointing = False

    def forward(self, h, positions, mask, cache=None):
        cos, sin = self.rotary(positions, h.dtype)
        for i, layer in enumerate(self.layers):
            if self.gradient_checkpointing and self.training and cache is None:
                h = checkpoint(layer, h, cos, sin, mask, None, i, use_reentrant=False)
            else:
                h = layer(h, cos, sin, mask, cache, i)
        return self.norm(h)


# ---- KV cache -----------------------------------------------------------------------------------

class KVCache:
    """Keys/values of every layer for a batch of rows, plus which slots hold real tokens.

    Tensors: k, v [layers, B, kv_heads, capacity, head_dim]; `valid` [B, capacity] (False for padding
    and empty slots); `next_position` [B] (RoPE position of each row's next token). All rows share the
    slot counter `length`, so one decode step writes one column. `select` forks rows (n samples that
    share one prefill) without recomputing anything.
    """

    def __init__(self, cfg: TextConfig, batch_size: int, capacity: int, dtype: torch.dtype, device):
        shape = (cfg.num_hidden_layers, batch_size, cfg.num_key_value_heads, capacity, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.valid = torch.zeros(batch_size, capacity, dtype=torch.bool, device=device)
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def reserve(self, new_tokens: int) -> None:
        """Grow the slot capacity (doubling) so that `new_tokens` more fit."""
        need = self.length + new_tokens
        if need <= self.capacity:
            return
        grow = max(need, 2 * self.capacity) - self.capacity
        pad = lambda x: F.pad(x, (0, 0, 0, grow))
        self.k, self.v = pad(self.k), pad(self.v)
        self.valid = F.pad(self.valid, (0, grow))

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def commit(self, new_valid: torch.Tensor) -> None:
        """After all layers wrote a step: mark the new slots and advance positions."""
        t = new_valid.shape[1]
        self.valid[:, self.length : self.length + t] = new_valid
        self.next_position += new_valid.sum(1)
        self.length += t

    @staticmethod
    def concat(caches: list["KVCache"]) -> "KVCache":
        """Stack the rows of several caches; shorter ones are left-padded with invalid slots, which is
        harmless because every row carries its own positions and validity (a request joining a batch)."""
        length = max(c.length for c in caches)
        capacity = max(length + (c.capacity - c.length) for c in caches)
        def left_pad(c: KVCache, x: torch.Tensor, dim: int) -> torch.Tensor:
            x = x.narrow(dim, 0, c.length)
            pad = [0, 0] * (x.dim() - 1 - dim) + [length - c.length, capacity - length]
            return F.pad(x, pad)
        out = KVCache.__new__(KVCache)
        out.k = torch.cat([left_pad(c, c.k, 3) for c in caches], dim=1)
        out.v = torch.cat([left_pad(c, c.v, 3) for c in caches], dim=1)
        out.valid = torch.cat([left_pad(c, c.valid, 1) for c in caches], dim=0)
        out.next_position = torch.cat([c.next_position for c in caches])
        out.length = length
        return out

    def select(self, rows: torch.Tensor) -> "KVCache":
        """A new cache made of the given rows (repeats allowed: forking a prefill into n samples)."""
        out = KVCache.__new__(KVCache)
        out.k, out.v = self.k.index_select(1, rows), self.v.index_select(1, rows)
        out.valid, out.next_position = self.valid.index_select(0, rows), self.next_position.index_select(0, rows)
        out.length = self.length
        return out

    def keep(self, rows: torch.Tensor, first: int = 0) -> "KVCache":
        """The given rows without the slot columns before `first` (columns no remaining row uses: a
        long-running server's cache does not grow without end)."""
        out = KVCache.__new__(KVCache)
        out.k = self.k[:, :, :, first:].index_select(1, rows)
        out.v = self.v[:, :, :, first:].index_select(1, rows)
        out.valid = self.valid[:, first:].index_select(0, rows)
        out.next_position = self.next_position.index_select(0, rows)
        out.length = self.length - first
        return out


# ---- the whole model ----------------------------------------------------------------------------

@dataclass
class ModelOutput:
    logits: torch.Tensor | None = None  # [B, T, V] (or [B, 1, V] with last_logits_only)
    loss: torch.Tensor | None = None  # scalar, or [B, T] with loss_reduction="none"
    hidden_states: torch.Tensor | None = None  # [B, T, D] after the final norm


class StepAudioR1ForCausalLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        # Cache-free forwards attend segment by segment (False: through the dense mask; same numbers on
        # real tokens, T² cost).
        self.per_segment_attention = True
        # Children in the released order: model, encoder, adapter, lm_head.
        self.model = Qwen2Model(config.text)
        self.encoder = AudioEncoder(config.audio)
        self.adapter = Adapter(config.audio)
        self.lm_head = nn.Linear(config.text.hidden_size, config.text.vocab_size, bias=False)

    # ---- parts ----

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.model.gradient_checkpointing = enabled
        self.encoder.gradient_checkpointing = enabled

    def encode_audio(self, mels: torch.Tensor, mel_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded chunks [N, n_mels, T] with valid lengths [N] → adapter outputs [N, T', D] and lengths [N]."""
        x, lens = self.encoder(mels.to(self.dtype), mel_lens)
        return self.adapter(x, lens)

    def audio_embeddings(self, mels: torch.Tensor, mel_lens: torch.Tensor,
                         mel_frames: torch.Tensor | None = None) -> torch.Tensor:
        """All chunks' valid adapter frames, concatenated in chunk order: [sum(n_i), D].

        With `mel_frames` (each chunk's real mel length before batch padding), chunks of equal length are
        encoded together without padding: the convolutions at a chunk's end then see exactly what they see
        when the chunk is encoded alone, so a prompt's audio embeddings do not depend on its batch (full
        25 s chunks all have 2502 frames, so long audio still batches). Without it, the padded batch is
        encoded as one, as the released code does."""
        if mel_frames is None:
            frames, lens = self.encode_audio(mels, mel_lens)
            return torch.cat([frames[i, : int(n)] for i, n in enumerate(lens)])
        pieces: list[torch.Tensor | None] = [None] * mels.shape[0]
        for width in sorted(set(mel_frames.tolist())):
            rows = (mel_frames == width).nonzero().flatten()
            frames, lens = self.encode_audio(mels[rows, :, :width], mel_lens[rows])
            for k, row in enumerate(rows.tolist()):
                pieces[row] = frames[k, : int(lens[k])]
        return torch.cat(pieces)

    def embed(self, input_ids, audio_embeds=None, audio_mask=None) -> torch.Tensor:
        h = self.model.embed_tokens(input_ids)
        if audio_mask is None:
            audio_mask = input_ids == self.config.audio_patch_token_id
        n_slots = int(audio_mask.sum())
        n_frames = 0 if audio_embeds is None else audio_embeds.shape[0]
        if n_slots != n_frames:
            raise ValueError(f"the prompt has {n_slots} <audio_patch> positions but the audio gives {n_frames} "
                             "embeddings (the Processor computes both from the same audio; were they mixed?)")
        if n_slots:
            h = h.masked_scatter(audio_mask[..., None], audio_embeds.to(h.dtype))
        return h

    # ---- forward ----

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, T]
        *,
        attention_mask: torch.Tensor | None = None,  # [B, T], 1 for real tokens
        position_ids: torch.Tensor | None = None,  # [B, T]
        segment_ids: torch.Tensor | None = None,  # [B, T], packed samples (no cache)
        audio_mels: torch.Tensor | None = None,  # [N, n_mels, T_mel] padded chunks, prompt order
        audio_mel_lens: torch.Tensor | None = None,  # [N] valid encoder input lengths
        audio_mel_frames: torch.Tensor | None = None,  # [N] real mel lengths before padding (batch-invariant)
        audio_embeds: torch.Tensor | None = None,  # [sum(n_i), D] precomputed (feature cache)
        audio_mask: torch.Tensor | None = None,  # [B, T] bool, default: input_ids == <audio_patch>
        cache: KVCache | None = None,
        labels: torch.Tensor | None = None,  # [B, T], IGNORE_INDEX where no loss
        loss_reduction: str = "mean",  # "mean" | "sum" | "none"
        return_logits: bool = True,
        last_logits_only: bool = False,
    ) -> ModelOutput:
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones(b, t, dtype=torch.bool, device=input_ids.device)
        attention_mask = attention_mask.bool()
        if audio_embeds is None and audio_mels is not None:
            audio_embeds = self.audio_embeddings(audio_mels, audio_mel_lens, audio_mel_frames)
        h = self.embed(input_ids, audio_embeds, audio_mask)

        if position_ids is None:
            start = cache.next_position[:, None] if cache is not None else 0
            position_ids = start + (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        if cache is not None:
            cache.reserve(t)
            key_valid = torch.cat([cache.valid[:, : cache.length], attention_mask], dim=1)
            mask = _attention_mask(key_valid, query_start=cache.length)
        else:
            mask = None
            if self.per_segment_attention:  # an unpacked row is one segment: its run of valid tokens
                mask = PackedSegments.of(attention_mask, segment_ids if segment_ids is not None
                                         else attention_mask.long())
            if mask is None:
                mask = _attention_mask(attention_mask, query_start=0, segment_ids=segment_ids)
        h = self.model(h, position_ids, mask, cache)
        if cache is not None:
            cache.commit(attention_mask)

        out = ModelOutput(hidden_states=h)
        if labels is not None:
            out.loss = self.loss_from_hidden(h, labels, loss_reduction)
        if return_logits:
            out.logits = self.lm_head(h[:, -1:] if last_logits_only else h)
        return out

    def loss_from_hidden(self, h: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Next-token cross-entropy. "none" → [B, T] where [b, t] is -log p(labels[b, t] | tokens < t)
        (0 at t = 0 and where labels are IGNORE_INDEX); "mean" averages over target tokens."""
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"loss_reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        targets, h = labels[:, 1:], h[:, :-1]  # position t predicts token t + 1
        per_token = torch.zeros(labels.shape, dtype=torch.float32, device=h.device)
        for s in range(0, targets.shape[1], LOSS_CHUNK_TOKENS):
            logits = self.lm_head(h[:, s : s + LOSS_CHUNK_TOKENS]).float()
            chunk_targets = targets[:, s : s + LOSS_CHUNK_TOKENS]
            loss = F.cross_entropy(logits.transpose(1, 2), chunk_targets, ignore_index=IGNORE_INDEX, reduction="none")
            per_token[:, 1 + s : 1 + s + chunk_targets.shape[1]] = loss
        if reduction == "none":
            return per_token
        if reduction == "sum":
            return per_token.sum()
        return per_token.sum() / (targets != IGNORE_INDEX).sum().clamp(min=1)

    def new_cache(self, batch_size: int, capacity: int) -> KVCache:
        return KVCache(self.config.text, batch_size, capacity, self.dtype, self.device)

    # ---- initialisation ----

    @torch.no_grad()
    def init_weights(self, seed: int = 0, std: float = 0.02) -> None:
        """Fill every tensor with its initial value (see `initial_value`), reproducibly from `seed`."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        for name, tensor in self.state_dict(keep_vars=True).items():
            tensor.copy_(initial_value(name, tuple(tensor.shape), gen, std))


def initial_value(name: str, shape: tuple[int, ...], gen: torch.Generator, std: float = 0.02) -> torch.Tensor:
    """The initial fp32 value of one state-dict tensor, by name: Whisper's sinusoids for the positional
    table, ones for norm weights, zeros for biases, normal(0, std) for everything else. Kept by name so a
    checkpoint can be initialised one tensor at a time (`audior1 init` of 33 B never holds it all)."""
    if name.endswith("positional_embedding.weight"):
        return sinusoids(*shape)
    if name.endswith(".bias"):
        return torch.zeros(shape)
    if name.endswith(("norm.weight", "_ln.weight", "layernorm.weight")):
        return torch.ones(shape)
    return torch.empty(shape).normal_(0.0, std, generator=gen)


class FastDecoder:
    """One decode step (one new token per row) with the same math as `forward(tokens[:, None], cache=…)`,
    written as a flat loop over the live weights: no module calls, RoPE tables built once, one-query
    attention by grouped heads without copying K/V per head, and no mask at all when no row has padding
    (`padded=False`). About 2× faster than `forward` for small models on CPU, where per-call overhead
    dominates; tests hold the two equal. Use `forward` for wrapped or sharded models."""

    def __init__(self, model: "StepAudioR1ForCausalLM"):
        self.model = model
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        self._weight_list: tuple | None = None

    @staticmethod
    def supports(model: "StepAudioR1ForCausalLM") -> bool:
        """Whether this step computes what `forward` does for `model`: every decoder projection and the head
        must be a plain `nn.Linear`, whose `weight` is all there is to it (a quantized weight is still one
        tensor). A wrapped layer — a training-time LoRA layer — computes more than its `weight` says, so such
        a model decodes through `forward`."""
        layers = model.model.layers
        projections = [m for layer in layers for m in (*layer.self_attn.children(), *layer.mlp.children())]
        return all(isinstance(m, nn.Linear) for m in projections + [model.lm_head])

    def rope_tables(self, needed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-folded sin [positions, head_dim], as `RotaryEmbedding` computes them, so that
        rotate(x) * sin == roll(x, half) * sin_signed."""
        if self._rope is None or self._rope[0].shape[0] < needed or self._rope[0].dtype != dtype:
            rotary = self.model.model.rotary
            size = max(needed, 2 * (self._rope[0].shape[0] if self._rope else 0), 1024)
            angles = torch.arange(size, device=rotary.inv_freq.device).float()[:, None] * rotary.inv_freq
            angles = torch.cat([angles, angles], dim=-1)
            half = angles.shape[-1] // 2
            sin = angles.sin()
            sin = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)
            self._rope = (angles.cos().to(dtype), sin.to(dtype))
        return self._rope

    def weights(self) -> tuple:
        """The decoder's parameters, gathered once (module attribute lookups cost more than a small matmul).
        Parameters updated in place (optimizers, `load_state_dict`, `.to()`) stay current; if the parameter
        objects themselves are replaced, the list is gathered again."""
        m, head = self.model.model, self.model.lm_head
        if self._weight_list is None or self._weight_list[0] is not m.embed_tokens.weight \
                or self._weight_list[2] is not head.weight:
            layers = [(l.input_layernorm.weight, l.input_layernorm.eps, l.self_attn.q_proj.weight,
                       l.self_attn.q_proj.bias, l.self_attn.k_proj.weight, l.self_attn.k_proj.bias,
                       l.self_attn.v_proj.weight, l.self_attn.v_proj.bias, l.self_attn.o_proj.weight,
                       l.post_attention_layernorm.weight, l.post_attention_layernorm.eps, l.mlp.gate_proj.weight,
                       l.mlp.up_proj.weight, l.mlp.down_proj.weight) for l in m.layers]
            self._weight_list = (m.embed_tokens.weight, (m.norm.weight, m.norm.eps), head.weight, layers)
        return self._weight_list

    def __call__(self, tokens: torch.Tensor, cache: KVCache, padded: bool = True) -> torch.Tensor:
        """One token per row through the decoder, writing the cache: logits [rows, V]. Same math as
        `model.forward(tokens[:, None], cache=cache)`, without the per-call generality. Attention for one
        query per row: the query heads grouped by kv head [B, kv, group, hd] attend as `group` queries to
        that head's cached keys (no repeat of K/V per head), padding as an additive bias built once a step."""
        cfg = self.model.config.text
        b, heads, kv_heads, hd = tokens.shape[0], cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        group, half = heads // kv_heads, hd // 2
        embed, final_norm, head, layers = self.weights()
        cache.reserve(1)
        slot = cache.length
        end = slot + 1
        cache.valid[:, slot] = True  # the new token sees itself
        x = F.embedding(tokens, embed)[:, None]  # [B, 1, D]
        bias = None
        if padded:
            bias = torch.zeros((b, 1, 1, end), dtype=torch.float32, device=x.device)
            bias = bias.masked_fill_(~cache.valid[:, None, None, :end], float("-inf")).to(x.dtype)
        cos_table, sin_table = self.rope_tables(int(cache.next_position.max()) + 1, x.dtype)
        cos = cos_table[cache.next_position][:, None, None]  # [B, 1, 1, hd]
        sin = sin_table[cache.next_position][:, None, None]
        keys, values = cache.k[:, :, :, :end], cache.v[:, :, :, :end]  # [L, B, kv, S, hd] views
        new_keys, new_values = cache.k[:, :, :, slot], cache.v[:, :, :, slot]  # [L, B, kv, hd] views
        for i, (ln1, eps1, wq, bq, wk, bk, wv, bv, wo, ln2, eps2, w_gate, w_up, w_down) in enumerate(layers):
            h = rms_norm(x, ln1, eps1)
            q = F.linear(h, wq, bq).view(b, kv_heads, group, hd)
            k = F.linear(h, wk, bk).view(b, kv_heads, hd)
            new_values[i].copy_(F.linear(h, wv, bv).view(b, kv_heads, hd))
            q = torch.addcmul(q * cos, q.roll(half, -1), sin)  # RoPE: x·cos + rotate(x)·sin
            new_keys[i].copy_(torch.addcmul(k * cos[:, 0], k.roll(half, -1), sin[:, 0]))
            # each kv head's `group` query heads attend as `group` queries to that head's keys
            y = F.scaled_dot_product_attention(q, keys[i], values[i], attn_mask=bias)  # [B, kv, group, hd]
            x = x + F.linear(y.reshape(b, 1, heads * hd), wo)
            h = rms_norm(x, ln2, eps2)
            x = x + F.linear(F.silu(F.linear(h, w_gate)) * F.linear(h, w_up), w_down)
        x = rms_norm(x, *final_norm)
        cache.next_position += 1
        cache.length = end
        return F.linear(x[:, 0], head)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`RMSNorm.forward`: normalise in fp32, cast back, scale."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed positional table (sin half then cos half)."""
    log_step = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-log_step * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


@dataclass(frozen=True)
class PackedSegments:
    """Packed rows cut into runs, in flattened [B·T] token order: `lengths` (summing to B·T) and, per run,
    whether it is a real segment (causal attention within it) or padding (each token sees only itself).
    Runs never cross rows. Plain ints, computed once per forward and shared by every layer."""

    lengths: tuple[int, ...]
    real: tuple[bool, ...]

    @staticmethod
    def of(attention_mask: torch.Tensor | None, segment_ids: torch.Tensor | None) -> "PackedSegments | None":
        """The runs of a packed batch, or None when per-segment attention does not apply: no `segment_ids`,
        or a segment split into several runs (the mask rule then lets a later run see an earlier one)."""
        if segment_ids is None:
            return None
        b, t = segment_ids.shape
        valid = attention_mask.bool() if attention_mask is not None else torch.ones_like(segment_ids, dtype=torch.bool)
        new_run = torch.ones(b, t, dtype=torch.bool, device=segment_ids.device)  # column 0: every row starts one
        new_run[:, 1:] = (valid[:, 1:] != valid[:, :-1]) | (segment_ids[:, 1:] != segment_ids[:, :-1])
        starts = new_run.flatten().nonzero().flatten()
        real = valid.flatten()[starts]
        # a segment id may appear in one run per row only
        low, high = int(segment_ids.min()), int(segment_ids.max())
        keys = (starts // t) * (high - low + 1) + segment_ids.flatten()[starts] - low
        if int(keys[real].unique().numel()) != int(real.sum()):
            return None
        lengths = torch.diff(starts, append=starts.new_tensor([b * t]))
        return PackedSegments(tuple(lengths.tolist()), tuple(real.tolist()))


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segments: PackedSegments) -> torch.Tensor:
    """Token-major q [N, heads, hd], k/v [N, kv_heads, hd] (N = B·T, RoPE applied) → [N, heads, hd]:
    causal attention within each real run, identity (a token's own value) on padding runs.

    One SDPA call per segment on views of the inputs: on CPU this beats gathering segments into a padded
    [segments, longest, …] batch (no padding compute, no copies), and it is correct on any device; a GPU run
    with many short segments per step would do better with a variable-length kernel here."""
    group = q.shape[1] // k.shape[1]
    out = []
    for qs, ks, vs, real in zip(q.split(segments.lengths), k.split(segments.lengths), v.split(segments.lengths),
                                segments.real):
        if real:  # [L, heads, hd] → [1, heads, L, hd] and back
            y = F.scaled_dot_product_attention(qs.transpose(0, 1)[None], ks.transpose(0, 1)[None],
                                               vs.transpose(0, 1)[None], is_causal=True, enable_gqa=group > 1)
            out.append(y[0].transpose(0, 1))
        else:
            out.append(vs.repeat_interleave(group, dim=1) if group > 1 else vs)
    return torch.cat(out)


def _attention_mask(key_valid: torch.Tensor, query_start: int, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean [B, 1, T_q, S] mask: key s visible to query slot q iff s <= q and key s is valid (and in
    the same packed segment); a query always sees itself."""
    s_len = key_valid.shape[1]
    q_slots = torch.arange(query_start, s_len, device=key_valid.device)
    k_slots = torch.arange(s_len, device=key_valid.device)
    causal = k_slots[None, :] <= q_slots[:, None]  # [T_q, S]
    mask = causal[None] & key_valid[:, None, :]
    if segment_ids is not None:
        mask = mask & (segment_ids[:, :, None] == segment_ids[:, None, :])
    mask = mask | (k_slots[None, :] == q_slots[:, None])[None]
    return mask[:, None]
