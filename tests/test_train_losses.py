"""The loss module and the reward registry: pure tensor math, checked against hand computations."""

import math

import pytest
import torch

from audior1.model import IGNORE_INDEX
from audior1.train import losses, rewards


def test_token_logprobs_match_full_softmax_and_entropy():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    h = torch.randn(2, 5, 8)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5], [IGNORE_INDEX, 1, 2, IGNORE_INDEX, IGNORE_INDEX]])
    logp, ent = losses.token_logprobs(head, h, labels, with_entropy=True)
    full = torch.log_softmax(head(h).float(), -1)
    for b in range(2):
        for t in range(5):
            if labels[b, t] == IGNORE_INDEX:
                assert logp[b, t] == 0 and ent[b, t] == 0
            else:
                assert logp[b, t].item() == pytest.approx(full[b, t - 1, labels[b, t]].item(), abs=1e-5)
                assert ent[b, t].item() == pytest.approx(losses.mean_entropy_from_logits(head(h[b, t - 1])).item(), abs=1e-5)


def test_token_logprobs_chunked_gradient_matches(monkeypatch):
    torch.manual_seed(1)
    head = torch.nn.Linear(4, 7, bias=False)
    h = torch.randn(1, 9, 4, requires_grad=True)
    labels = torch.randint(0, 7, (1, 9))
    labels[0, :2] = IGNORE_INDEX
    ref = torch.log_softmax(head(h[:, :-1]), -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    ref = (ref * (labels[:, 1:] != IGNORE_INDEX)).sum()
    g_ref = torch.autograd.grad(ref, h)[0]
    monkeypatch.setattr(losses, "LOGIT_CHUNK_ROWS", 2)  # several chunks, recomputed in backward
    logp, _ = losses.token_logprobs(head, h, labels)
    g = torch.autograd.grad(logp.sum(), h)[0]
    assert logp.sum().item() == pytest.approx(ref.item(), abs=1e-5)
    assert torch.allclose(g, g_ref, atol=1e-6)


def test_final_token_rewards_and_gae_with_gamma_lambda_one():
    mask = torch.tensor([[False, True, True, True, False], [False, False, True, False, False]])
    r = losses.final_token_rewards(torch.tensor([1.0, 0.5]), mask)
    assert r.tolist() == [[0, 0, 0, 1.0, 0], [0, 0, 0.5, 0, 0]]
    values = torch.tensor([[9.0, 0.2, 0.4, 0.6, 9.0], [9.0, 9.0, 0.3, 9.0, 9.0]])
    adv, ret = losses.gae(r, values, mask, 1.0, 1.0)
    # γ = λ = 1: A_t = R − V_t on generated tokens, returns = R.
    assert torch.allclose(adv, torch.tensor([[0, 0.8, 0.6, 0.4, 0], [0, 0, 0.2, 0, 0]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[0, 1.0, 1.0, 1.0, 0], [0, 0, 0.5, 0, 0]]), atol=1e-6)


def test_gae_general_gamma_lambda_by_hand():
    mask = torch.tensor([[True, True, True]])
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.2, 0.1]])
    g, lam = 0.9, 0.8
    d2 = 1.0 - 0.1
    d1 = 0 + g * 0.1 - 0.2
    d0 = 0 + g * 0.2 - 0.5
    a2, a1 = d2, d1 + g * lam * d2
    a0 = d0 + g * lam * a1
    adv, ret = losses.gae(r, v, mask, g, lam)
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2]]), atol=1e-6)
    assert torch.allclose(ret, adv + v, atol=1e-6)


def test_group_advantages():
    s = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5])
    a = losses.group_advantages(s, 2, scale=False)
    assert a.tolist() == [0.5, -0.5, -0.5, 0.5, 0.0, 0.0]
    a = losses.group_advantages(s, 2, scale=True)
    assert a[0].item() == pytest.approx(1.0, abs=1e-4) and a[4].item() == 0.0


@pytest.mark.parametrize("norm", ["per-sequence", "per-token", "global-token"])
def test_policy_loss_at_ratio_one_is_minus_advantage_weighted_logp(norm):
    torch.manual_seed(0)
    logp = torch.randn(2, 4, requires_grad=True)
    adv = torch.tensor([[0, 1.0, 1.0, 1.0], [0, -2.0, -2.0, 0]])
    mask = torch.tensor([[False, True, True, True], [False, True, True, False]])
    denom = {"per-sequence": 2, "per-token": 5, "global-token": 10}[norm]
    loss, st = losses.policy_loss(logp, logp.detach(), adv, mask, clip=0.2, norm=norm, denom=denom)
    (g,) = torch.autograd.grad(loss, logp)
    if norm == "per-sequence":
        expect = -adv * mask / torch.tensor([[3.0], [2.0]]) / denom
    else:
        expect = -adv * mask / denom
    assert torch.allclose(g, expect, atol=1e-6)
    assert st["clip_fraction_sum"] == 0 and st["approx_kl_sum"] == pytest.approx(0, abs=1e-7) and st["tokens"] == 5


def test_policy_loss_clips():
    old = torch.zeros(1, 3)
    logp = torch.tensor([[0.0, math.log(1.5), math.log(0.5)]], requires_grad=True)
    adv = torch.tensor([[0.0, 1.0, -1.0]])
    mask = torch.tensor([[False, True, True]])
    loss, st = losses.policy_loss(logp, old, adv, mask, clip=0.2, norm="per-token", denom=2)
    # both tokens are outside the trust region on the side that would increase the objective: no gradient
    (g,) = torch.autograd.grad(loss, logp)
    assert torch.allclose(g, torch.zeros_like(g))
    assert st["clip_fraction_sum"] == 2
    assert loss.item() == pytest.approx(-(1.2 * 1 + 0.8 * -1) / 2, abs=1e-6)
    assert st["approx_kl_sum"] > 0


def test_kl_and_value_loss():
    logp = torch.tensor([[0.0, -1.0]])
    assert losses.kl_k3(logp, logp).abs().max() == 0
    # Where they differ, by hand: k3 = exp(r) − r − 1 with r = log π_ref − log π (Schulman's estimator of
    # KL(π ‖ π_ref) from samples of π). Swapping the arguments gives e − 2 ≈ 0.718 instead of 1/e ≈ 0.368.
    k3 = losses.kl_k3(torch.tensor([[0.0, -1.0]]), torch.tensor([[-1.0, 0.0]]))
    assert k3[0, 0].item() == pytest.approx(math.exp(-1.0)) and k3[0, 1].item() == pytest.approx(math.e - 2)
    k3 = losses.kl_k3(torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.2)]]))
    assert k3.item() == pytest.approx(0.4 - math.log(0.4) - 1)  # ratio π_ref/π = 0.4
    v = torch.tensor([[0.0, 0.5]], requires_grad=True)
    mask = torch.tensor([[False, True]])
    loss, st = losses.value_loss(v, torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]), mask, norm="per-token", denom=1)
    assert loss.item() == pytest.approx(0.125) and st["value_loss_sum"] == pytest.approx(0.125)
    loss, _ = losses.value_loss(v, torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]), mask, norm="per-token", denom=1,
                                clip=0.1)
    assert loss.item() == pytest.approx(0.5 * 0.9 ** 2)


def test_sft_loss_is_summed_nll_over_denominator():
    logp = torch.tensor([[0.0, -1.0, -3.0]])
    assert losses.sft_loss(logp, torch.tensor([[False, True, True]]), 4).item() == pytest.approx(1.0)


# ---- rewards -----------------------------------------------------------------------------------------

def test_reward_registry_and_paper_rewards():
    comps = ["The first is higher.\n</think>\nthe first tone", "\n</think>\nB", "never closed", "x\n</think>\n7.0",
             "</think>\n</think>\n7"]
    cols = {"answer": ["the first tone", "the second tone", "a", "7", "7"],
            "choices": [["the first tone", "the second tone"]] * 2 + [None] * 3, "task": ["t"] * 5}
    assert rewards.get("correct")(comps, **cols) == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert rewards.get("format")(comps, **cols) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert rewards.get("audio")(comps, **cols) == pytest.approx([1.0, 0.8, 0.0, 1.0, 0.8])
    assert rewards.get("text")(comps, **cols) == [1.0, 1.0, 0.0, 1.0, 1.0]
    with pytest.raises(KeyError, match="registered"):
        rewards.get("nope")


def test_correctness_uses_option_text_not_substrings():
    choices = ["the first tone", "the second tone"]
    assert not rewards.is_correct("\n</think>\nthe second tone", "the first tone", choices)
    assert rewards.is_correct("\n</think>\nA", "the first tone", choices)
    assert not rewards.is_correct("\n</think>\n", "the first tone", choices)


def test_token_logprobs_with_temperature_are_those_of_the_tempered_distribution():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    h = torch.randn(1, 4, 8)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, 5]])
    logp, ent = losses.token_logprobs(head, h, labels, with_entropy=True, temperature=1.5)
    ref = torch.log_softmax(head(h).float() / 1.5, -1)
    assert logp[0, 2].item() == pytest.approx(ref[0, 1, 4].item(), abs=1e-5)
    assert ent[0, 2].item() == pytest.approx(losses.mean_entropy_from_logits(head(h[0, 1]) / 1.5).item(), abs=1e-5)


def test_reward_variants_for_ablations():
    from audior1.train import rewards
    choices = ["the first tone", "the second tone"]
    texts = ["I compare them.\n</think>\nthe first tone", "\n</think>\nthe first tone",
             "I compare them.\n</think>\nthe second tone", "\n</think>\nthe second tone"]
    cols = {"answer": ["the first tone"] * 4, "choices": [choices] * 4}
    assert rewards.get("audio")(texts, **cols) == pytest.approx([1.0, 0.8, 0.2, 0.0])
    assert rewards.get("accuracy")(texts, **cols) == [1.0, 1.0, 0.0, 0.0]
    assert rewards.get("audio_format_if_correct")(texts, **cols) == pytest.approx([1.0, 0.8, 0.0, 0.0])


def test_rl_refuses_nucleus_sampling_and_masks_forced_tokens():
    from audior1.config import ConfigError
    from audior1.train.config import RLConfig, from_dict
    from audior1.train.data import Example, collate

    with pytest.raises(ConfigError, match="top_p must be 1 in RL"):
        from_dict(RLConfig, {"model": "m", "top_p": 0.9}, "config").validate()

    class Tok:
        endoftext_id, audio_patch_id = 0, 99

    class Store:
        def batch_audio(self, clips):
            return None

    ex = Example([5, 6, 7, 8, 9, 10], 2, [], {}, no_loss=[3, 4])  # tokens 8 and 9 were forced
    batch = collate([[ex]], Store(), Tok(), False)
    assert batch.labels[0].tolist() == [-100, -100, 7, -100, -100, 10] and ex.n_target == 2
