"""The numbers and claims that the expert review (issue 12 part 3) added to the cards, recomputed.

Each test finds its card by id, asserts that the statement is in the back in both languages,
and computes it from the definitions: exact expectations over every outcome of a small softmax
policy (no sampling noise), torch autograd for gradients, ``labs.parallel`` for ring traffic.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from pathlib import Path

import pytest

from llmcore_tui.core.content import parse_card_file

torch = pytest.importorskip("torch")

CARDS = Path(__file__).resolve().parents[1] / "cards"


@lru_cache(maxsize=None)
def _backs() -> dict[str, dict[str, str]]:
    cards = {}
    for path in sorted(CARDS.glob("[0-9]*.md")):
        for card in parse_card_file(path).cards:
            cards[card.id] = {lang: " ".join(text.split()) for lang, text in card.back.items()}
    return cards


def states(card_id: str, *texts: str, zh: tuple[str, ...] | None = None) -> None:
    """Every string of ``texts`` is in the English back, and of ``zh`` (default: the same) in the Chinese."""
    backs = _backs()[card_id]
    for lang, wanted in (("en", texts), ("zh", texts if zh is None else zh)):
        for text in wanted:
            assert text in backs[lang], f"{card_id} back.{lang} does not state {text!r}"


# -- GRPO: the group mean is a biased baseline -------------------------------------------------

LOGITS = torch.tensor([0.3, -0.5, 0.1], dtype=torch.float64)
REWARDS = torch.tensor([1.0, 0.0, 0.4], dtype=torch.float64)


def expected_group_gradient(G: int, advantage, logits=LOGITS, rewards=REWARDS) -> torch.Tensor:
    """E over all G-sample groups of grad log pi(a_1) * advantage(rewards of the group, index 0).

    By symmetry this is (1/G) of the expected summed gradient of a whole group.
    """
    theta = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, 0)
    probs = logp.exp().detach()
    total = torch.zeros(())
    for group in itertools.product(range(len(logits)), repeat=G):
        weight = math.prod(float(probs[a]) for a in group)
        total = total + weight * logp[group[0]] * advantage(rewards[list(group)])
    (grad,) = torch.autograd.grad(total, theta)
    return grad


def true_gradient(logits=LOGITS, rewards=REWARDS) -> torch.Tensor:
    theta = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((torch.softmax(theta, 0) * rewards).sum(), theta)
    return grad


@pytest.mark.parametrize("G", [2, 3, 4])
def test_group_mean_baseline_shrinks_the_gradient_by_g_minus_1_over_g(G):
    mean = expected_group_gradient(G, lambda r: r[0] - r.mean())
    loo = expected_group_gradient(G, lambda r: r[0] - r[1:].mean())
    true = true_gradient()
    assert torch.allclose(loo, true, atol=1e-12)                  # RLOO: unbiased
    assert torch.allclose(mean, (G - 1) / G * true, atol=1e-12)   # group mean: scaled by (G-1)/G
    assert not torch.allclose(mean, true, atol=1e-3)
    # and the identity the card writes: r_i - mean = (G-1)/G (r_i - leave-one-out mean)
    r = torch.rand(G, dtype=torch.float64, generator=torch.Generator().manual_seed(G))
    assert torch.allclose(r[0] - r.mean(), (G - 1) / G * (r[0] - r[1:].mean()))


def test_dividing_by_the_group_std_weights_prompts_unequally():
    """Two prompts with their own parameters and 0/1 rewards, solved with probability 0.5 and 0.05.
    The mean baseline scales both prompts' gradients by the same (G-1)/G, a learning-rate factor;
    dividing by the group std gives each prompt its own factor (measured: 1.74 and 2.31 at G = 8),
    which changes the direction of the summed gradient."""
    G = 8
    right_wrong = torch.tensor([1.0, 0.0], dtype=torch.float64)
    prompts = [(torch.tensor([math.log(p / (1 - p)), 0.0], dtype=torch.float64), right_wrong) for p in (0.5, 0.05)]

    def factor(advantage, logits, rewards):
        est, true = expected_group_gradient(G, advantage, logits, rewards), true_gradient(logits, rewards)
        assert torch.allclose(est, float(est @ true / (true @ true)) * true, atol=1e-9)  # parallel within a prompt
        return float(est @ true / (true @ true))

    mean = [factor(lambda r: r[0] - r.mean(), *p) for p in prompts]
    std = [factor(lambda r: (r[0] - r.mean()) / (r.std() + 1e-4), *p) for p in prompts]
    assert all(math.isclose(f, (G - 1) / G, rel_tol=1e-9) for f in mean)
    assert max(std) / min(std) > 1.2, std


def test_grpo_cards_state_the_bias_and_the_unbiased_alternative():
    states("grpo-no-critic", "(G-1)/G", "RLOO", "\\bar{r}_{-i}", "Dr. GRPO")
    states("grpo-vs-ppo-baseline", "(G-1)/G", "RLOO", "Dr. GRPO")
    for card in ("grpo-no-critic", "grpo-vs-ppo-baseline"):
        assert "unbiased and" not in _backs()[card]["en"] and "无偏、" not in _backs()[card]["zh"]


# -- k3: an unbiased value, the gradient of the other KL -----------------------------------------

def test_k3_value_is_reverse_kl_but_its_gradient_is_forward_kl():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, dtype=torch.float64, generator=gen)
    ref = torch.softmax(torch.randn(5, dtype=torch.float64, generator=gen), 0)

    theta = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, 0)
    probs = logp.exp()
    rho = ref / probs
    k3 = rho - torch.log(rho) - 1
    # on-policy: the tokens are drawn from pi_theta, so their weights carry no gradient
    value = (probs.detach() * k3).sum()
    (grad_k3,) = torch.autograd.grad(value, theta, retain_graph=True)

    reverse = (probs * (logp - ref.log())).sum()   # KL(pi_theta || pi_ref)
    forward = (ref * (ref.log() - logp)).sum()     # KL(pi_ref || pi_theta)
    (grad_reverse,) = torch.autograd.grad(reverse, theta, retain_graph=True)
    (grad_forward,) = torch.autograd.grad(forward, theta)
    assert math.isclose(float(value), float(reverse), rel_tol=1e-12)
    assert torch.allclose(grad_k3, grad_forward, atol=1e-12)
    assert not torch.allclose(grad_k3, grad_reverse, atol=1e-3)
    states("grpo-k3-estimator", "KL(\\pi_{ref} \\Vert \\pi_\\theta)", "\\pi_{old}", "\\rho - 1")
    states("grpo-kl-in-loss", "(1 - \\rho)\\nabla_\\theta \\log \\pi_\\theta", "KL(\\pi_{ref} \\Vert \\pi_\\theta)", "\\pi_{old}")


def test_approx_kl_variance_falls_because_of_the_control_variate():
    """Close policies: k1 = -log r has variance of order d^2, k3 = k1 + (r - 1) of order d^4.
    Non-negativity alone does not do it: |k1| is non-negative too and keeps the d^2 variance."""
    gen = torch.Generator().manual_seed(1)
    old = torch.softmax(torch.randn(6, dtype=torch.float64, generator=gen), 0)
    direction = torch.randn(6, dtype=torch.float64, generator=gen)
    for d in (0.1, 0.01):
        new = torch.softmax(old.log() + d * direction, 0)
        r = new / old

        def var(x):
            return float((old * x ** 2).sum() - (old * x).sum() ** 2)

        k1, k3 = -r.log(), (r - 1) - r.log()
        assert math.isclose(float((old * k1).sum()), float((old * k3).sum()), rel_tol=1e-9)  # same mean
        assert var(k3) < 0.05 * var(k1)
        assert var(k1.abs()) > 0.2 * var(k1)
    states("ppo-approx-kl", "r_t - 1", zh=("r_t - 1", "控制变量"))


# -- parallelism: ring latency and torch's ZeRO-1 traffic ---------------------------------------

def ring_time(p: int, n_bytes: float, alpha: float, beta: float) -> float:
    """Time of a ring all-reduce step by step: 2 (p-1) steps, each one message of N/p bytes."""
    return sum(alpha + (n_bytes / p) * beta for _ in range(2 * (p - 1)))


def test_ring_allreduce_latency_term_grows_with_p():
    n, alpha, beta = 1e6, 5e-6, 1 / 50e9
    for p in (2, 8, 64, 512):
        assert math.isclose(ring_time(p, n, alpha, beta), 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta)
    # bandwidth part bounded by 2 N beta, latency part linear in p: at 512 ranks latency dominates
    assert ring_time(512, n, alpha, 0) > 10 * ring_time(512, n, 0, beta)
    states("parallelism-ring-allreduce", "2(p-1)\\alpha + 2\\frac{p-1}{p}N\\beta", "NCCL")


def test_torch_zero1_moves_one_and_a_half_times_deepspeed_zero1():
    from labs.parallel import ring_allreduce_bytes

    psi = 1_000_000
    for p in (2, 4, 8):
        share = (p - 1) / p * psi * 4                      # one ring share of the fp32 parameters
        torch_zero1 = ring_allreduce_bytes(psi, p) + share  # all-reduce grads + broadcast params
        deepspeed_zero1 = share + share                     # reduce-scatter grads + all-gather params
        assert math.isclose(torch_zero1, 3 * (p - 1) / p * psi * 4)
        assert math.isclose(torch_zero1 / deepspeed_zero1, 1.5)
    states("parallelism-zero-communication", "3\\frac{p-1}{p}\\Psi", "ZeroRedundancyOptimizer", "DeepSpeed",
           zh=("3\\frac{p-1}{p}\\Psi", "ZeroRedundancyOptimizer", "DeepSpeed", "$1.5$ 倍"))
    states("parallelism-3d-world-size", "TP \\times CP \\times PP \\times DP")


# -- SFT packing: position ids alone do not isolate examples -----------------------------------

def test_packing_needs_a_block_diagonal_mask_with_sdpa():
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    a, b = 3, 4  # two packed examples
    q, k, v = (torch.randn(1, 1, a + b, 8, generator=gen) for _ in range(3))
    alone = F.scaled_dot_product_attention(q[..., a:, :], k[..., a:, :], v[..., a:, :], is_causal=True)
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)[..., a:, :]
    mask = torch.zeros(a + b, a + b, dtype=torch.bool)
    mask[:a, :a] = torch.ones(a, a).tril().bool()
    mask[a:, a:] = torch.ones(b, b).tril().bool()
    block = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[..., a:, :]
    assert not torch.allclose(causal, alone, atol=1e-3)  # leaks: example 2 attends to example 1
    assert torch.allclose(block, alone, atol=1e-6)
    states("sft-packing", "cu_seqlens", "SDPA")
