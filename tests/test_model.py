"""The network: parity with transformers' Qwen2 and Qwen2-Audio on tiny configs, cache, loss, counts."""

import pytest
import torch
from conftest import reference_qwen2, tiny_model

from audior1.config import preset
from audior1.model import IGNORE_INDEX, StepAudioR1ForCausalLM, _encoder_key_bias

transformers = pytest.importorskip("transformers")


def test_decoder_matches_transformers_qwen2():
    model = tiny_model(rope_theta=10000.0)
    ref = reference_qwen2(model)
    ids = torch.randint(10, model.config.text.vocab_size, (2, 23), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids).logits, ref(ids).logits
    assert (ours - theirs).abs().max() < 1e-4


def test_decoder_matches_transformers_with_left_padding():
    model = tiny_model()
    ref = reference_qwen2(model)
    ids = torch.randint(10, 1000, (2, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, :5] = 0
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
        theirs = ref(ids, attention_mask=mask, position_ids=positions).logits
    assert (ours - theirs)[mask.bool()].abs().max() < 1e-4


def test_encoder_matches_transformers_qwen2_audio_encoder():
    model = tiny_model()
    a = model.config.audio
    cfg = transformers.Qwen2AudioEncoderConfig(
        num_mel_bins=a.n_mels, encoder_layers=a.n_audio_layer, encoder_attention_heads=a.n_audio_head,
        encoder_ffn_dim=a.mlp_dim, d_model=a.n_audio_state, max_source_positions=a.n_audio_ctx)
    cfg._attn_implementation = "eager"
    ref = transformers.models.qwen2_audio.modeling_qwen2_audio.Qwen2AudioEncoder(cfg).eval()
    # The key map of docs/design.md §5.4, applied in reverse to load our weights into the reference.
    from audior1.checkpoint import map_qwen2_audio_key

    ours_sd = model.state_dict()
    ref_sd = {k: ours_sd[map_qwen2_audio_key("audio_tower." + k)] for k in ref.state_dict()}
    ref.load_state_dict(ref_sd, strict=True)

    torch.manual_seed(3)
    mel_lens = torch.tensor([2998, 1000])
    mels = torch.randn(2, a.n_mels, 3000)  # Qwen2-Audio needs exactly 3000 frames
    for i, n in enumerate(mel_lens):
        mels[i, :, n:] = 0.0
    key_bias = _encoder_key_bias(mel_lens, 3000, 1500)  # [B,1,1,T2]; our rule, given to both
    ref_mask = key_bias.expand(-1, 1, 1500, -1).clone()
    with torch.no_grad():
        ours, out_lens = model.encoder(mels, mel_lens)
        theirs = ref(mels, attention_mask=ref_mask).last_hidden_state
    for i, n in enumerate(out_lens.tolist()):
        assert (ours[i, :n] - theirs[i, :n]).abs().max() < 1e-4
    assert out_lens.tolist() == [(2998 + 1) // 4, (1000 + 1) // 4]


def test_kv_cache_decoding_equals_full_recompute():
    model = tiny_model()
    ids = torch.randint(10, 1000, (1, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(1, capacity=8)  # too small on purpose: it must grow
        step_logits = [model(ids[:, :12], cache=cache).logits]
        for t in range(12, 20):
            step_logits.append(model(ids[:, t : t + 1], cache=cache).logits)
    incremental = torch.cat(step_logits, dim=1)
    assert (incremental - full).abs().max() < 1e-4
    assert cache.length == 20 and cache.next_position.tolist() == [20]


def test_left_padded_batch_with_cache_matches_single_prompt():
    model = tiny_model()
    gen = torch.Generator().manual_seed(5)
    short, long = torch.randint(10, 1000, (1, 6), generator=gen), torch.randint(10, 1000, (1, 11), generator=gen)
    pad = torch.zeros(1, 5, dtype=torch.long)
    batch = torch.cat([torch.cat([pad, short], 1), long])
    mask = torch.ones_like(batch, dtype=torch.bool)
    mask[0, :5] = False
    nxt = torch.randint(10, 1000, (2, 1), generator=gen)
    with torch.no_grad():
        cache = model.new_cache(2, 16)
        model(batch, attention_mask=mask, cache=cache)
        forked = cache.select(torch.tensor([0, 0, 1]))  # n samples sharing one prefill
        batched = model(nxt, cache=cache).logits
        alone_cache = model.new_cache(1, 16)
        model(short, cache=alone_cache)
        alone = model(nxt[:1], cache=alone_cache).logits
        again = model(nxt[[0, 0, 1]], cache=forked).logits
    assert (batched[0] - alone[0]).abs().max() < 1e-4
    assert (again[[0, 2]] - batched).abs().max() < 1e-5 and (again[1] - again[0]).abs().max() == 0


def test_packed_segments_do_not_attend_to_each_other():
    model = tiny_model()
    gen = torch.Generator().manual_seed(6)
    a, b = torch.randint(10, 1000, (1, 7), generator=gen), torch.randint(10, 1000, (1, 9), generator=gen)
    packed = torch.cat([a, b], 1)
    segments = torch.tensor([[0] * 7 + [1] * 9])
    positions = torch.tensor([list(range(7)) + list(range(9))])
    with torch.no_grad():
        together = model(packed, segment_ids=segments, position_ids=positions).logits
        alone_b = model(b).logits
    assert (together[:, 7:] - alone_b).abs().max() < 1e-4


def test_loss_reductions_agree_with_cross_entropy():
    model = tiny_model()
    ids = torch.randint(10, 1000, (2, 10), generator=torch.Generator().manual_seed(7))
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX
    out = model(ids, labels=labels, loss_reduction="none")
    logits = out.logits[:, :-1].reshape(-1, model.config.text.vocab_size)
    expected = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    per_token = out.loss
    assert per_token.shape == (2, 10) and (per_token[:, :4] == 0).all()
    assert torch.allclose(per_token.sum() / (labels[:, 1:] != IGNORE_INDEX).sum(), expected, atol=1e-5)
    mean = model(ids, labels=labels).loss
    assert torch.allclose(mean, expected, atol=1e-5)
    # and the gradients are those of the reference cross-entropy, not just present
    params = [model.lm_head.weight, model.model.layers[0].mlp.down_proj.weight]
    got = torch.autograd.grad(mean, params)
    want = torch.autograd.grad(expected, params)
    for g, w in zip(got, want):
        assert w.abs().max() > 0 and torch.allclose(g, w, atol=1e-6)


def test_audio_embeddings_replace_patch_positions_in_order():
    model = tiny_model()
    patch = model.config.audio_patch_token_id
    torch.manual_seed(8)
    mels = torch.randn(3, 128, 202)
    lens = torch.tensor([200, 100, 200])  # chunk 1 shorter: 13 tokens instead of 25
    embeds = model.audio_embeddings(mels, lens)
    assert embeds.shape[0] == 25 + 13 + 25
    ids = torch.full((2, 45), 11)
    ids[0, 2:27] = patch  # chunk 0
    ids[1, 1:14] = patch  # chunk 1
    ids[1, 20:45] = patch  # chunk 2
    h = model.embed(ids, embeds)
    assert torch.equal(h[0, 2:27], embeds[:25]) and torch.equal(h[1, 1:14], embeds[25:38])
    assert torch.equal(h[1, 20:45], embeds[38:])
    with pytest.raises(ValueError, match="63 embeddings"):
        model.embed(ids[:1], embeds)


def test_adapter_gelu_applies_with_and_without_checkpointing():
    model = tiny_model()
    x, lens = torch.randn(1, 30, model.config.audio.n_audio_state), torch.tensor([30])
    eval_out, _ = model.adapter(x, lens)
    model.train()
    model.set_gradient_checkpointing(True)
    train_out, _ = model.adapter(x, lens)
    assert torch.allclose(eval_out, train_out)
    manual = model.adapter.linear2(torch.relu(model.adapter.linear1(
        torch.nn.functional.gelu(model.adapter.conv(x.transpose(1, 2))).transpose(1, 2))))
    assert torch.allclose(eval_out, manual)


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = torch.randint(10, 1000, (1, 9), generator=torch.Generator().manual_seed(9))
    grads = []
    for ckpt in (False, True):
        model = tiny_model().train()
        model.set_gradient_checkpointing(ckpt)
        model(ids, labels=ids).loss.backward()
        grads.append(model.model.layers[0].mlp.up_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("name,billions,tensors", [("step-audio-r1", 33.49, 1264), ("step-audio-2-mini", 8.32, 832)])
def test_official_presets_have_the_released_sizes(name, billions, tensors):
    with torch.device("meta"):
        model = StepAudioR1ForCausalLM(preset(name))
    sd = model.state_dict()
    assert len(sd) == tensors
    assert round(sum(t.numel() for t in sd.values()) / 1e9, 2) == billions
    assert sd["encoder.blocks.0.attn.query.weight"].shape == (1280, 1280)
    assert "encoder.blocks.0.attn.key.bias" not in sd
    assert sd["adapter.linear1.weight"].shape == (2048, 1280)
    assert not model.encoder.positional_embedding.weight.requires_grad


def test_activation_checkpointing_recomputes_in_backward():
    """With checkpointing on, every decoder layer and encoder block runs its forward twice per training step
    (once, then again during backward) and the gradients are unchanged; off, once."""
    model = tiny_model().train()
    ids = torch.randint(10, 1000, (2, 24), generator=torch.Generator().manual_seed(3))
    mels = torch.randn(1, 128, 100, generator=torch.Generator().manual_seed(4))
    patch = model.config.audio_patch_token_id
    ids[0, 2:2 + model.audio_embeddings(mels, torch.tensor([100])).shape[0]] = patch
    calls = []
    modules = [*model.model.layers, *model.encoder.blocks]
    for i, m in enumerate(modules):
        m.register_forward_pre_hook(lambda *_, i=i: calls.append(i))  # a recompute may stop early: count starts

    def step() -> list[torch.Tensor]:
        calls.clear()
        model.zero_grad()
        model(ids, labels=ids, audio_mels=mels, audio_mel_lens=torch.tensor([100])).loss.backward()
        return [p.grad.clone() for p in (model.lm_head.weight, model.model.layers[0].mlp.up_proj.weight,
                                         model.encoder.blocks[0].mlp[0].weight)]

    plain = step()
    assert sorted(calls) == sorted(range(len(modules)))
    model.set_gradient_checkpointing(True)
    recomputed = step()
    assert sorted(calls) == sorted(2 * list(range(len(modules))))
    for a, b in zip(plain, recomputed):
        assert torch.allclose(a, b, atol=1e-6)
