"""Per-segment attention for packed rows: the same logits, losses and gradients as the dense masked
attention and as separate forwards of each example; the adapter on valid frames only equals `forward`."""

import conftest
import pytest
import torch

from audior1.model import IGNORE_INDEX, PackedSegments, segment_attention

# Rows of one micro-batch: examples of very different lengths, each row ending in padding (except one full).
LAYOUTS = [[1, 37, 5, 2], [60], [3, 3, 3, 40], [64]]
WIDTH = 64
PROMPT = 2  # the first tokens of every example carry no loss (as in SFT, and so no loss crosses examples)


def tiny_model(seed=0, **text_overrides):
    return conftest.tiny_model(seed, **text_overrides).train()


def packed_batch(layouts=LAYOUTS, width=WIDTH, seed=0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    b = len(layouts)
    batch = {"input_ids": torch.randint(10, 1000, (b, width), generator=gen),
             "attention_mask": torch.zeros(b, width, dtype=torch.bool),
             "position_ids": torch.zeros(b, width, dtype=torch.long),
             "segment_ids": torch.zeros(b, width, dtype=torch.long),
             "labels": torch.full((b, width), IGNORE_INDEX)}
    for r, lengths in enumerate(layouts):
        start = 0
        for s, n in enumerate(lengths, 1):
            span = slice(start, start + n)
            batch["attention_mask"][r, span] = True
            batch["position_ids"][r, span] = torch.arange(n)
            batch["segment_ids"][r, span] = s
            batch["labels"][r, start + PROMPT : start + n] = batch["input_ids"][r, start + PROMPT : start + n]
            start += n
    return batch


def forward_backward(model, batch, per_segment: bool):
    """(logits, summed loss, gradient of every parameter) of one training forward."""
    model.per_segment_attention = per_segment
    model.zero_grad(set_to_none=True)
    out = model(**batch, loss_reduction="sum")
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), out.loss.detach(), grads


def assert_same_grads(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=atol), name


@pytest.mark.parametrize("kv_heads", [2, 4])  # grouped-query (the presets) and plain multi-head
def test_per_segment_attention_equals_the_dense_mask(kv_heads):
    model = tiny_model(num_key_value_heads=kv_heads)
    batch = packed_batch()
    segments = PackedSegments.of(batch["attention_mask"], batch["segment_ids"])
    assert segments is not None and sum(segments.real) == sum(len(r) for r in LAYOUTS)
    logits, loss, grads = forward_backward(model, batch, per_segment=True)
    ref_logits, ref_loss, ref_grads = forward_backward(model, batch, per_segment=False)
    valid = batch["attention_mask"]
    assert (logits[valid] - ref_logits[valid]).abs().max() < 1e-4
    # padding positions too: under the mask a padding token sees only itself, here it is its own value
    assert (logits - ref_logits).abs().max() < 1e-4
    assert torch.allclose(loss, ref_loss, rtol=1e-5)
    assert_same_grads(grads, ref_grads)


def test_per_segment_attention_equals_separate_forwards():
    model = tiny_model()
    batch = packed_batch()
    logits, loss, grads = forward_backward(model, batch, per_segment=True)
    model.zero_grad(set_to_none=True)
    total = 0.0
    for r, lengths in enumerate(LAYOUTS):
        start = 0
        for n in lengths:
            ids = batch["input_ids"][r : r + 1, start : start + n]
            out = model(ids, labels=batch["labels"][r : r + 1, start : start + n], loss_reduction="sum")
            assert (out.logits[0] - logits[r, start : start + n]).abs().max() < 1e-4
            if n > PROMPT:  # an example without targets has no loss to differentiate
                out.loss.backward()  # gradients accumulate over the examples
            total += float(out.loss.detach())
            start += n
    alone = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert abs(total - float(loss)) < 1e-3 * abs(total)
    assert_same_grads(grads, alone)


def test_gradient_checkpointing_keeps_per_segment_gradients():
    batch = packed_batch()
    plain = forward_backward(tiny_model(), batch, per_segment=True)
    model = tiny_model()
    model.set_gradient_checkpointing(True)
    ckpt = forward_backward(model, batch, per_segment=True)
    assert torch.allclose(plain[1], ckpt[1]) and torch.allclose(plain[0], ckpt[0], atol=1e-6)
    assert_same_grads(plain[2], ckpt[2], atol=1e-6)


def test_runs_of_a_packed_batch():
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)  # right / left padding
    seg = torch.tensor([[1, 1, 2, 2, 2, 0, 0], [0, 0, 5, 5, 5, 5, 5]])
    runs = PackedSegments.of(mask, seg)
    assert runs.lengths == (2, 3, 2, 2, 5) and runs.real == (True, True, False, False, True)
    assert PackedSegments.of(mask, None) is None
    # all tokens valid when no attention mask is given; the same id in two rows is two segments
    runs = PackedSegments.of(None, torch.tensor([[0, 0, 1], [0, 1, 1]]))
    assert runs.lengths == (2, 1, 1, 2) and all(runs.real)


def test_a_segment_split_in_two_runs_falls_back_to_the_mask():
    """Under the mask rule a later run of a segment sees its earlier run: not a per-segment layout."""
    seg = torch.tensor([[1, 1, 2, 2, 1, 1, 3, 3]])
    assert PackedSegments.of(None, seg) is None
    model = tiny_model().eval()
    ids = torch.randint(10, 1000, (1, 8), generator=torch.Generator().manual_seed(3))
    pos = torch.tensor([[0, 1, 0, 1, 2, 3, 0, 1]])
    with torch.no_grad():
        model.per_segment_attention = True
        a = model(ids, position_ids=pos, segment_ids=seg).logits
        model.per_segment_attention = False
        b = model(ids, position_ids=pos, segment_ids=seg).logits
    assert torch.equal(a, b)


def test_cache_decoding_ignores_per_segment_attention():
    """With a KV cache the mask path is used whatever the switch says (packing is a training layout)."""
    model = tiny_model().eval()
    ids = torch.randint(10, 1000, (2, 6), generator=torch.Generator().manual_seed(4))
    outs = []
    for flag in (True, False):
        model.per_segment_attention = flag
        cache = model.new_cache(2, 8)
        with torch.no_grad():
            outs.append(model(ids, cache=cache).logits)
    assert torch.equal(outs[0], outs[1])


def test_adapter_valid_frames_equal_forward_and_its_gradients():
    model = tiny_model()
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 30, model.config.audio.n_audio_state, generator=gen)
    lens = torch.tensor([30, 7, 18])
    x = x * (torch.arange(30)[None, :, None] < lens[:, None, None])  # zero-padded, as the feature cache gives it
    got = model.adapter.valid_frames(x, lens)
    full, n = model.adapter(x, lens)
    want = torch.cat([full[i, : int(k)] for i, k in enumerate(n)])
    assert got.shape == want.shape == (15 + 4 + 9, model.config.text.hidden_size)
    assert torch.allclose(got, want, atol=1e-6)
    weights = torch.randn(got.shape, generator=gen)
    (got * weights).sum().backward()
    g_new = model.adapter.linear1.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    (want * weights).sum().backward()
    assert torch.allclose(g_new, model.adapter.linear1.weight.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_unpacked_padded_rows_attend_within_their_valid_run(side, monkeypatch):
    """One example per row (no segment_ids), as the padded trainer and RL scoring send them: per-row
    attention over the valid tokens gives the dense mask's loss, gradients and every real token's logits."""
    import audior1.model as M

    calls = []
    monkeypatch.setattr(M, "segment_attention", lambda *a: calls.append(a[3]) or segment_attention(*a))
    model = tiny_model()
    gen = torch.Generator().manual_seed(5)
    lengths, width = [64, 9, 40, 1], 64
    valid = torch.zeros(len(lengths), width, dtype=torch.bool)
    for r, n in enumerate(lengths):
        valid[r, :n] = True
    if side == "left":
        valid = valid.flip(1)
    ids = torch.randint(10, 1000, (len(lengths), width), generator=gen)
    labels = torch.where(valid, ids, torch.full_like(ids, IGNORE_INDEX))
    batch = {"input_ids": ids, "attention_mask": valid, "labels": labels}
    assert PackedSegments.of(valid, valid.long()).real.count(True) == len(lengths)
    fast = forward_backward(model, batch, per_segment=True)
    assert len(calls) == model.config.text.num_hidden_layers and sum(calls[0].real) == len(lengths)
    dense = forward_backward(model, batch, per_segment=False)
    assert len(calls) == model.config.text.num_hidden_layers  # the mask path: no more per-segment calls
    assert torch.allclose(fast[0][valid], dense[0][valid], atol=1e-5)
    assert torch.allclose(fast[1], dense[1], rtol=1e-5)
    assert_same_grads(fast[2], dense[2])


def test_rows_with_holes_fall_back_to_the_mask():
    """Valid tokens in two runs of one row: not one segment, so the dense mask keeps its meaning."""
    model = tiny_model().eval()
    valid = torch.tensor([[1, 1, 0, 1, 1, 1]], dtype=torch.bool)
    assert PackedSegments.of(valid, valid.long()) is None
    ids = torch.randint(10, 1000, (1, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        outs = []
        for flag in (True, False):
            model.per_segment_attention = flag
            outs.append(model(ids, attention_mask=valid).logits)
    assert torch.equal(outs[0], outs[1])
