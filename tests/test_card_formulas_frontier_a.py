"""The numbers and formulas on the frontier cards and quizzes of days 6, 7, 8 and 11 (issue 15, part A):
the DPO family, critic-free baselines, KL estimators as values and as gradients, GRPO's descendants,
and VLM post-training.

Each test finds a card (or quiz question) by id, asserts that the number it states appears in both
languages, and recomputes the number: with ``labs.grpo`` where the lab implements the formula
(group advantages, the GRPO / Dr. GRPO loss), with torch autograd or numpy from the definitions, or
by simulation (an estimator's bias, a baseline's effect on the gradient). Numbers that come from a
paper (DAPO's clip range, GSPO's clip range, RLHF-V's data size) name the paper where they are checked.
Change a formula or an example on one side only and a test here fails.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from llmcore_tui.core.content import parse_card_file
from llmcore_tui.core.quiz import parse_quiz_file

ROOT = Path(__file__).resolve().parents[1]
TOPICS = {  # file stem: (module, day)
    "06-dpo-family": ("dpo", 6),
    "07-ppo-critic-free": ("ppo", 7),
    "08-grpo-kl-estimators": ("grpo", 8),
    "08-grpo-descendants": ("grpo", 8),
    "11-vlm-post-training": ("vlm", 11),
}
MIN_CARDS, MAX_CORE, MIN_QUESTIONS = 6, 2, 4


# -- reading cards and quizzes ---------------------------------------------------------------

@lru_cache(maxsize=None)
def _deck(stem: str):
    return parse_card_file(ROOT / "cards" / f"{stem}.md")


@lru_cache(maxsize=None)
def _quiz(stem: str):
    return parse_quiz_file(ROOT / "quizzes" / f"{stem}.md", root=ROOT)


def _flat(text: str) -> str:
    return " ".join(text.split())


def back(card_id: str, lang: str) -> str:
    for stem in TOPICS:
        for card in _deck(stem).cards:
            if card.id == card_id:
                return _flat(card.back[lang])
    raise AssertionError(f"card {card_id!r} not found in the frontier files")


def question(question_id: str):
    for stem in TOPICS:
        found = _quiz(stem).by_id.get(question_id)
        if found is not None:
            return found
    raise AssertionError(f"question {question_id!r} not found in the frontier quizzes")


def states(card_id: str, *numbers: str) -> None:
    """Every string in ``numbers`` appears in the card's back, in English and in Chinese."""
    for lang in ("en", "zh"):
        text = back(card_id, lang)
        for number in numbers:
            assert number in text, f"{card_id} back.{lang} does not state {number!r}"


def explains(question_id: str, *numbers: str) -> None:
    q = question(question_id)
    for lang in ("en", "zh"):
        for number in numbers:
            assert number in _flat(q.explanation[lang]), f"{question_id} explanation.{lang} lacks {number!r}"


def answer_is(question_id: str, value: float, rel: float = 2e-3) -> None:
    q = question(question_id)
    assert q.kind == "numeric" and q.value is not None
    assert math.isclose(q.value, value, rel_tol=rel), (question_id, q.value, value)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- the files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", TOPICS)
def test_topic_files_are_valid_with_few_core_cards(stem):
    module, day = TOPICS[stem]
    deck, quiz = _deck(stem), _quiz(stem)
    assert deck.problems == [] and quiz.problems == [], [str(p) for p in deck.problems + quiz.problems]
    assert len(deck.cards) >= MIN_CARDS and len(quiz.questions) >= MIN_QUESTIONS
    core = [c.id for c in deck.cards if "advanced" not in c.tags]
    assert 1 <= len(core) <= MAX_CORE, core
    for item in [*deck.cards, *quiz.questions]:
        assert (item.module, item.day) == (module, day), item.id
        assert item.id.startswith(module), item.id


def test_ids_are_unique_across_the_repository():
    cards = [c.id for path in sorted((ROOT / "cards").glob("[0-9]*.md")) for c in parse_card_file(path).cards]
    questions = [q.id for path in sorted((ROOT / "quizzes").glob("[0-9]*.md"))
                 for q in parse_quiz_file(path, root=ROOT).questions]
    for ids in (cards, questions):
        assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


# -- 1. the DPO family (day 6) -------------------------------------------------------------------

def test_off_policy_dpo_step_moves_mass_to_an_unseen_response():
    import torch

    probs = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)  # chosen, rejected, unseen
    logits = probs.log().requires_grad_(True)
    logp = torch.log_softmax(logits, -1)
    loss = -torch.nn.functional.logsigmoid(0.1 * (logp[0] - logp[1]))  # DPO with pi_ref = uniform
    loss.backward()
    direction = -logits.grad / logits.grad[0].abs()  # one step down the loss, scaled to g = 1
    assert torch.allclose(direction, torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))
    dlog_unseen = -(probs[0] - probs[1])  # d log pi(c) / dg = -(pi_w - pi_l)
    assert math.isclose(float(dlog_unseen), 0.5)
    after = torch.softmax(logits.detach() + 1e-3 * direction, -1)
    assert after[2] > probs[2] and after[0] > probs[0]
    states("dpo-family-off-policy-limit", "-(\\pi(y_w) - \\pi(y_l)) = 0.5")


def test_ipo_minimum_and_dpo_has_none():
    tau = 0.1
    hs = np.linspace(-5, 20, 25001)
    ipo = (hs - 1 / (2 * tau)) ** 2
    assert math.isclose(hs[np.argmin(ipo)], 5.0, abs_tol=1e-3)
    beta = 0.1
    dpo_grad = -beta / (1 + np.exp(beta * hs))  # d/dh of -log sigmoid(beta h)
    assert np.all(dpo_grad < 0)  # always downhill: no finite minimiser
    for p in (1.0, 0.75, 0.5):  # a pair seen with both labels, a share p one way
        mixed = p * (hs - 1 / (2 * tau)) ** 2 + (1 - p) * (-hs - 1 / (2 * tau)) ** 2
        assert math.isclose(hs[np.argmin(mixed)], (2 * p - 1) / (2 * tau), abs_tol=1e-3)
    states("dpo-ipo-loss", "(h - 1/(2\\tau))^2", "\\tau = 0.1", "$5$", "(2p - 1)/(2\\tau)")
    answer_is("dpo-q-ipo-target", 1 / (2 * 0.25))


def test_kto_value_saturates_and_is_steepest_at_the_reference_point():
    import torch

    beta, z0 = 0.1, 0.3
    r = torch.linspace(-100, 100, 20001, dtype=torch.float64, requires_grad=True)
    value = torch.sigmoid(beta * (r - z0))  # a desirable example, lambda_D = 1
    (grad,) = torch.autograd.grad(value.sum(), r)
    steepest = float(r.detach()[int(grad.argmax())])
    assert math.isclose(steepest, z0, abs_tol=0.02)
    assert math.isclose(float(torch.sigmoid(torch.tensor(0.0))), 0.5)
    assert float(grad[0]) < 0.01 * float(grad.max()) and float(grad[-1]) < 0.01 * float(grad.max())
    states("dpo-kto-loss", "\\frac{\\lambda_D n_D}{\\lambda_U n_U} \\in [1, \\frac{4}{3}]")  # Ethayarajh et al. 2024, eq. 8
    states("dpo-kto-reference-point", "\\lambda \\sigma(0) = \\lambda / 2")


def orpo_term(p_w: float, p_l: float) -> float:
    odds = lambda p: p / (1 - p)  # noqa: E731
    return -math.log(sigmoid(math.log(odds(p_w) / odds(p_l))))


def test_orpo_odds_ratio_term():
    assert math.isclose(orpo_term(0.5, 0.2), math.log(1.25))
    states("dpo-orpo-loss", "\\log 4 \\approx 1.386", "\\log(1 + 0.25) \\approx 0.223")
    assert f"{math.log(4):.3f}" == "1.386" and f"{math.log(1.25):.3f}" == "0.223"
    answer_is("dpo-q-orpo-worked", orpo_term(0.6, 0.4))
    explains("dpo-q-orpo-worked", "2.25", "0.368")


def test_simpo_worked_loss():
    import torch

    beta, gamma = 2.0, 0.5
    logp_w = torch.full((10,), -0.5, dtype=torch.float64)  # per-token log-probs
    logp_l = torch.full((20,), -0.8, dtype=torch.float64)
    margin = beta * logp_w.mean() - beta * logp_l.mean() - gamma
    loss = float(-torch.nn.functional.logsigmoid(margin))
    assert math.isclose(float(logp_w.sum()), -5.0) and math.isclose(float(logp_l.sum()), -16.0)
    assert math.isclose(float(margin), 0.1, abs_tol=1e-6)
    assert f"{loss:.3f}" == "0.644"
    states("dpo-simpo-loss", "2 \\times 0.3 = 0.6", "-\\log \\sigma(0.1) \\approx 0.644")


# -- 2. critic-free baselines (day 7) ------------------------------------------------------------

def test_rloo_is_the_group_mean_advantage_scaled_by_g_over_g_minus_1():
    import torch

    from labs.grpo import group_advantages

    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.3, 0.9, 0.2, 0.5])
    for group in (4, 8):
        mean = group_advantages(rewards, group, scale_by_std=False, baseline="mean")
        rloo = group_advantages(rewards, group, scale_by_std=False, baseline="rloo")
        assert torch.allclose(rloo, mean * group / (group - 1), atol=1e-6)
    first = group_advantages(rewards[:4], 4, scale_by_std=False, baseline="rloo")
    assert torch.allclose(first, torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))
    states("ppo-rloo-group-mean", "$0.75$", "$-0.25$", "$-\\frac{1}{3}$", "\\frac{4}{3}")
    five = group_advantages(torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]), 5, scale_by_std=False, baseline="rloo")
    answer_is("ppo-q-rloo-advantage", float(five[0]))
    answer_is("ppo-q-group-mean-factor", 7 / 8)


def test_rloo_is_unbiased_and_the_group_mean_is_shrunk_by_simulation():
    """A 3-armed bandit, softmax policy: the exact gradient of E[r] against 200k groups of G = 4."""
    rng = np.random.default_rng(0)
    logits, payoff, group, trials = np.array([0.2, -0.3, 0.1]), np.array([1.0, 0.0, 0.5]), 4, 200_000
    pi = np.exp(logits) / np.exp(logits).sum()
    exact = pi * (payoff - pi @ payoff)  # d E[r] / d logits
    actions = rng.choice(3, size=(trials, group), p=pi)
    r = payoff[actions] + rng.normal(0, 0.5, size=actions.shape)  # noisy rewards
    score = np.eye(3)[actions] - pi  # grad log pi(a) w.r.t. the logits
    loo = r - (r.sum(1, keepdims=True) - r) / (group - 1)
    centred = r - r.mean(1, keepdims=True)
    est_loo = (loo[..., None] * score).mean((0, 1))
    est_mean = (centred[..., None] * score).mean((0, 1))
    noise = 4 * np.abs(exact).max() / math.sqrt(trials)
    assert np.allclose(est_loo, exact, atol=noise)
    assert np.allclose(est_mean, exact * (group - 1) / group, atol=noise)
    assert np.abs(est_mean - exact).max() > 3 * noise  # the shrinkage is visible
    states("ppo-rloo-baseline", "\\frac{k-1}{k}")


def test_baseline_removes_the_variance_of_the_two_armed_bandit():
    p = sigmoid(0.0)
    score = np.array([1 - p, -p])  # d log pi / d theta for actions 1 and 2
    probs, payoff = np.array([p, 1 - p]), np.array([10.0, 11.0])
    for b, variance in ((0.0, 27.5625), (10.5, 0.0)):
        g = (payoff - b) * score
        mean = probs @ g
        assert math.isclose(mean, -0.25)
        assert math.isclose(probs @ (g - mean) ** 2, variance, abs_tol=1e-12)
    states("ppo-baseline-variance", "10 \\times 0.5 = 5", "11 \\times (-0.5) = -5.5", "27.5625", "-0.25")


# -- 3. KL estimators as values and as gradients (day 8) ----------------------------------------

ESTIMATORS = {
    "k1": lambda log_r: -log_r,
    "k2": lambda log_r: 0.5 * log_r ** 2,
    "k3": lambda log_r: log_r.exp() - 1 - log_r,
}


def _categoricals(seed: int = 0, vocab: int = 7):
    """A policy q_theta (softmax of logits that carry gradients), a reference p and an old policy."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(vocab, generator=gen, dtype=torch.float64).requires_grad_(True)
    ref = torch.softmax(torch.randn(vocab, generator=gen, dtype=torch.float64), -1)
    old = torch.softmax(logits.detach() + 0.3 * torch.randn(vocab, generator=gen, dtype=torch.float64), -1)
    return logits, ref, old


def _grad(value, logits):
    import torch

    (g,) = torch.autograd.grad(value, logits, retain_graph=True)
    return g


def test_estimator_values_by_simulation():
    """k1 and k3 unbiased, k2 biased; k1 negative on some samples; k3 and k2 never negative."""
    import torch

    logits, ref, _ = _categoricals()
    q = torch.softmax(logits.detach(), -1)
    kl = float((q * (q / ref).log()).sum())
    gen = torch.Generator().manual_seed(1)
    x = torch.multinomial(q, 400_000, replacement=True, generator=gen)
    log_r = (ref / q).log()[x]
    est = {name: f(log_r) for name, f in ESTIMATORS.items()}
    for name in ("k1", "k3"):
        se = float(est[name].std()) / math.sqrt(len(x))
        assert abs(float(est[name].mean()) - kl) < 4 * se, name
    exact_k2 = float((q * 0.5 * (ref / q).log() ** 2).sum())
    assert abs(exact_k2 - kl) > 0.01 * kl  # biased for these distributions
    assert float(est["k1"].min()) < 0 and float(est["k2"].min()) >= 0 and float(est["k3"].min()) >= 0
    assert float(est["k3"].std()) < float(est["k1"].std())


def test_expected_gradients_in_the_loss_follow_zero_reverse_and_forward_kl():
    """Exact expectations over the vocabulary, samples treated as detached (weights q.detach())."""
    import torch

    logits, ref, _ = _categoricals()
    q = torch.softmax(logits, -1)
    log_r = ref.log() - q.log()
    reverse = _grad((q * (q.log() - ref.log())).sum(), logits)
    forward = _grad((ref * (ref.log() - q.log())).sum(), logits)
    expected = {name: _grad((q.detach() * f(log_r)).sum(), logits) for name, f in ESTIMATORS.items()}
    assert torch.allclose(expected["k1"], torch.zeros_like(reverse), atol=1e-12)
    assert torch.allclose(expected["k2"], reverse, atol=1e-12)
    assert torch.allclose(expected["k3"], forward, atol=1e-12)
    assert not torch.allclose(reverse, forward, atol=1e-3)  # the two directions really differ here
    # k1 as a reward (score-function route) gives the reverse KL's gradient
    score_route = _grad((q.detach() * log_r.detach().neg() * q.log()).sum(), logits)
    assert torch.allclose(score_route, reverse, atol=1e-12)
    for x in range(len(ref)):  # per sample: k1 times the score is the gradient of k2
        assert torch.allclose(-log_r[x].detach() * _grad(q.log()[x], logits), _grad(0.5 * log_r[x] ** 2, logits))
    states("grpo-kl-gradients", r"\nabla k_3 = (1 - r)\nabla \log q_\theta", r"\nabla KL(p \Vert q_\theta)")
    states("grpo-kl-k1-in-reward", r"\mathbb{E}_q[k_1 \nabla \log q_\theta]", r"k_1 \nabla \log q_\theta = \nabla k_2")


def test_importance_weighted_k3_restores_value_and_reverse_kl_gradient():
    import torch

    logits, ref, old = _categoricals()
    q = torch.softmax(logits, -1)
    log_r = ref.log() - q.log()
    reverse = _grad((q * (q.log() - ref.log())).sum(), logits)
    w = q / old  # kept in the graph
    for name in ("k1", "k3"):
        weighted = (old * w * ESTIMATORS[name](log_r)).sum()
        assert math.isclose(float(weighted.detach()), float((q * (q / ref).log()).sum().detach()), rel_tol=1e-12)
        assert torch.allclose(_grad(weighted, logits), reverse, atol=1e-12)
    unweighted = (old * ESTIMATORS["k3"](log_r)).sum()  # samples from pi_old, no correction
    assert abs(float(unweighted.detach()) - float((q * (q / ref).log()).sum().detach())) > 1e-3
    on_policy_w = q / q.detach()  # w = 1 in value, but its gradient is the score
    grad_k1 = _grad((q.detach() * on_policy_w * ESTIMATORS["k1"](log_r)).sum(), logits)
    assert torch.allclose(grad_k1, reverse, atol=1e-12)
    states("grpo-kl-off-policy", r"\mathbb{E}_{\pi_{old}}[w\, k_3] = \mathbb{E}_{\pi_\theta}[k_3]")


def test_gaussian_table_of_schulman_2020():
    """q = N(0, 1), p = N(mu, 1): moments by quadrature, against Schulman (2020)'s table."""
    x = np.linspace(-14, 14, 560_001)
    dx = x[1] - x[0]
    density = np.exp(-x ** 2 / 2) / math.sqrt(2 * math.pi)
    table = {0.1: {"k1": (0.0, 20.0), "k2": (0.0025, 1.42), "k3": (0.0, 1.42)},
             1.0: {"k1": (0.0, 2.0), "k2": (0.25, 1.73), "k3": (0.0, 1.70)}}
    for mu, rows in table.items():
        log_r, kl = mu * x - mu ** 2 / 2, mu ** 2 / 2
        for name, (bias, std) in rows.items():
            k = ESTIMATORS[name](_TorchlessLog(log_r))
            mean = float((density * k).sum() * dx)
            sd = math.sqrt(float((density * (k - mean) ** 2).sum() * dx))
            assert math.isclose((mean - kl) / kl, bias, abs_tol=1e-6), (mu, name)
            assert math.isclose(sd / kl, std, abs_tol=0.005), (mu, name, sd / kl)
    assert round((20 / 1.42) ** 2, -1) == 200
    states("grpo-kl-gaussian-numbers", "$20$", "$0.0025$", "$0.25$", "\\approx 1.42$", "$1.73$", "$1.70$",
           "(20/1.42)^2 \\approx 200")
    answer_is("grpo-q-kl-k1-noise", 2 / 0.2)
    answer_is("grpo-q-kl-k2-value", 0.5 * math.log(2) ** 2)


class _TorchlessLog(np.ndarray):
    """A numpy array with ``.exp()``, so ``ESTIMATORS`` serve numpy arrays as well as tensors."""

    def __new__(cls, values):
        return np.asarray(values).view(cls)

    def exp(self):
        return np.exp(np.asarray(self))


# -- 4. GRPO's descendants (day 8) ---------------------------------------------------------------

def test_dapo_clip_higher_caps():
    """Yu et al. 2025 (DAPO, arXiv:2503.14476), sec. 3.1: eps_low = 0.2, eps_high = 0.28; the 0.01 / 0.9 example."""
    import torch

    old = torch.tensor([0.01, 0.9], dtype=torch.float64)
    for eps, caps in ((0.2, (0.012, 1.08)), (0.28, (0.0128, 1.152))):
        assert torch.allclose(old * (1 + eps), torch.tensor(caps, dtype=torch.float64))
        # the clipped surrogate stops the gradient just past the cap (A > 0)
        ratio = torch.tensor(1 + eps + 1e-6, dtype=torch.float64, requires_grad=True)
        torch.min(ratio, ratio.clamp(1 - 0.2, 1 + eps)).backward()
        assert float(ratio.grad) == 0.0
    states("grpo-dapo-clip-higher", "0.01 \\times 1.2 = 0.012", "0.9 \\times 1.2 = 1.08", "$0.0128$", "$0.002$")
    states("grpo-dapo-overview", "\\epsilon_{low} = 0.2", "\\epsilon_{high} = 0.28", "50", "47")
    answer_is("grpo-q-dapo-clip-cap", 0.05 * 1.28)


def test_token_weights_of_grpo_dapo_and_dr_grpo():
    """Per-token gradient weights from ``labs.grpo.grpo_loss`` (GRPO, Dr. GRPO) and DAPO's token mean."""
    import torch

    from labs.grpo import grpo_loss

    lengths, horizon = (10, 100), 100
    mask = torch.zeros(2, horizon)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    weights = {}
    for loss_type in ("grpo", "dr_grpo"):
        logp = torch.full((2, horizon), -1.0, dtype=torch.float64, requires_grad=True)
        loss, _ = grpo_loss(logp, logp.detach(), logp.detach(), torch.ones(2, dtype=torch.float64),
                            mask.double(), clip_eps=0.2, kl_coef=0.0, loss_type=loss_type)
        loss.backward()
        weights[loss_type] = (-logp.grad[0, 0].item(), -logp.grad[1, 0].item())
    assert np.allclose(weights["grpo"], (1 / (2 * 10), 1 / (2 * 100)))
    assert np.allclose(weights["dr_grpo"], (1 / 200, 1 / 200))
    dapo = 1 / sum(lengths)  # token-level mean over the batch
    assert f"{dapo:.4f}" == "0.0091"
    states("grpo-dapo-token-level-loss", "\\frac{1}{2 \\times 10} = 0.05", "\\frac{1}{2 \\times 100} = 0.005",
           "\\frac{1}{110} \\approx 0.0091", "\\frac{1}{200} = 0.005")


def overlong_penalty(length: int, l_max: int = 20_480, cache: int = 4_096) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13; 16,384 + 4,096 = 20,480 tokens, sec. 4.1)."""
    if length <= l_max - cache:
        return 0.0
    if length <= l_max:
        return ((l_max - cache) - length) / cache
    return -1.0


def test_dapo_overlong_shaping():
    assert overlong_penalty(16_384) == 0.0 and overlong_penalty(20_480) == -1.0 and overlong_penalty(30_000) == -1.0
    assert overlong_penalty(18_432) == -0.5
    states("grpo-dapo-overlong-shaping", "\\frac{16{,}384 - 18{,}432}{4{,}096} = -0.5")
    answer_is("grpo-q-dapo-overlong", overlong_penalty(19_456))


def test_dynamic_sampling_cost():
    mixed = lambda p, g: 1 - p ** g - (1 - p) ** g  # noqa: E731
    assert f"{mixed(0.9, 16):.3f}" == "0.815" and f"{1 / mixed(0.9, 16):.2f}" == "1.23"
    assert f"{1 / mixed(0.99, 16):.1f}" == "6.7"
    rng = np.random.default_rng(0)
    correct = rng.random((200_000, 16)) < 0.9
    kept = np.mean((correct.sum(1) > 0) & (correct.sum(1) < 16))
    assert abs(kept - mixed(0.9, 16)) < 0.005
    states("grpo-dapo-dynamic-sampling", "\\approx 0.815", "\\approx 1.23", "\\approx 6.7")


def test_gspo_sequence_ratio_is_the_length_normalised_geometric_mean():
    import torch

    gen = torch.Generator().manual_seed(0)
    logp_old = -torch.rand(1000, generator=gen, dtype=torch.float64) * 3
    logp_new = logp_old + 0.01
    s = torch.exp((logp_new - logp_old).mean())
    geometric = torch.exp(torch.log(torch.exp(logp_new - logp_old)).mean())
    assert torch.allclose(s, geometric)
    assert f"{math.exp(10):,.0f}" == "22,026" and f"{float(s):.2f}" == "1.01"
    states("grpo-gspo-sequence-ratio", "e^{10} \\approx 22{,}026", "e^{0.01} \\approx 1.01",
           "3 \\times 10^{-4}", "4 \\times 10^{-4}")  # Zheng et al. 2025 (GSPO, arXiv:2507.18071), sec. 5.1
    answer_is("grpo-q-gspo-ratio", math.exp(np.mean([0.1, -0.1, 0.2, 0.0])))
    explains("grpo-q-gspo-ratio", "e^{0.2} \\approx 1.221")
    assert f"{math.exp(0.2):.3f}" == "1.221"


def test_entropy_change_follows_the_covariance_rule():
    """One small policy-gradient step on a softmax: exact entropy change vs -eta Cov(log pi, pi A)."""
    import torch

    probs = torch.tensor([0.6, 0.25, 0.1, 0.05], dtype=torch.float64)
    entropy = lambda p: float(-(p * p.log()).sum())  # noqa: E731
    eta = 1e-4
    for token, sign in ((0, -1), (3, +1)):  # reward the likeliest token, then the rarest
        logits = probs.log().clone().requires_grad_(True)
        torch.log_softmax(logits, -1)[token].backward()  # A = 1 on the sampled token
        after = torch.softmax(logits.detach() + eta * logits.grad, -1)
        change = entropy(after) - entropy(probs)
        assert math.copysign(1, change) == sign
        # first order: -eta * Cov_a(log pi(a), pi(a) A(a)) with A the expected update's centred advantage
        adv = torch.zeros(4, dtype=torch.float64)
        adv[token] = 1 / probs[token]  # a one-sample gradient equals E_a[A(a) grad log pi(a)] with this A
        adv = adv - (probs * adv).sum()
        logp = probs.log()
        cov = float((probs * (logp - (probs * logp).sum()) * (probs * adv - (probs * probs * adv).sum())).sum())
        assert math.isclose(change, -eta * cov, rel_tol=1e-3)
    states("grpo-entropy-collapse", "\\Delta H \\approx -\\eta\\, \\mathrm{Cov}_{a \\sim \\pi}(\\log \\pi(a),\\ \\pi(a) A(a))")


# -- 5. VLM post-training (day 11) ---------------------------------------------------------------

def qwen2_vl_tokens(height: int, width: int, patch: int = 14, merge: int = 2, markers: int = 2) -> int:
    """Tokens of one image in Qwen2-VL: 14-px patches, 2x2 merged, plus <|vision_start|> and
    <|vision_end|> (Wang et al. 2024, arXiv:2409.12191, sec. 2.1: 224 x 224 -> 66 tokens)."""
    side = patch * merge
    return (height // side) * (width // side) + markers


def llava_next_tokens(height: int, width: int, rows: int, cols: int, tile: int = 336, patch: int = 14) -> int:
    """LLaVA-NeXT AnyRes on an image that fills its grid (no unpadding): the tiles' feature map with a
    newline token after each row, plus the overview's features."""
    per_side = tile // patch
    assert (height, width) == (rows * tile, cols * tile)
    grid_h, grid_w = rows * per_side, cols * per_side
    return grid_h * (grid_w + 1) + per_side ** 2


def mrope_positions(text_before: int, grid_rows: int, grid_cols: int) -> tuple[np.ndarray, int]:
    """M-RoPE ids (temporal, height, width) of an image after ``text_before`` text tokens, and the id of
    the next text token: the image starts at the previous maximum + 1, the next modality likewise."""
    start = text_before
    rows, cols = np.meshgrid(np.arange(grid_rows), np.arange(grid_cols), indexing="ij")
    ids = np.stack([np.full(rows.size, start), start + rows.ravel(), start + cols.ravel()])
    return ids, int(ids.max()) + 1


def test_native_resolution_token_counts():
    assert qwen2_vl_tokens(224, 224) == 66 and qwen2_vl_tokens(448, 448) == 258
    assert (336 // 14) ** 2 == 576
    states("vlm-dynamic-resolution", "8 \\times 8 = 64", "= 66", "256 + 2 = 258")
    answer_is("vlm-q-qwen2vl-tokens", qwen2_vl_tokens(448, 448))


def test_anyres_and_native_counts_for_one_image():
    assert 5 * 576 == 2880
    assert llava_next_tokens(672, 672, 2, 2) == 48 * 49 + 576 == 2928
    assert qwen2_vl_tokens(672, 672) == 578
    assert round(2928 / 578) == 5
    states("vlm-anyres-token-count", "5 \\times 576 = 2880", "48 \\times 49 + 576 = 2928", "(672/28)^2 + 2 = 578")


def test_navit_packing_numbers():
    a, b = (224 // 16) ** 2, (448 // 16) * (224 // 16)
    assert (a, b, a + b) == (196, 392, 588)
    assert round(100 * (a ** 2 + b ** 2) / (a + b) ** 2) == 56
    states("vlm-navit-packing", "14 \\times 14 = 196", "28 \\times 14 = 392", "$588$", "56\\%")


def test_mrope_position_ids():
    ids, following = mrope_positions(3, 2, 3)
    assert set(ids[0]) == {3} and (ids[1].min(), ids[1].max()) == (3, 4) and (ids[2].min(), ids[2].max()) == (3, 5)
    assert following == 6
    assert 3 + 2 * 3 == 9  # a 1D scheme: the image takes ids 3..8
    states("vlm-mrope", "$0, 1, 2$", "$3$–$4$", "$3$–$5$", "$6$", "$3$–$8$", "$9$")
    _, following = mrope_positions(3, 4, 6)
    answer_is("vlm-q-mrope-next-id", following)
    explains("vlm-q-mrope-next-id", "$24$", "$27$")
    assert 4 * 6 == 24 and 3 + 24 == 27


def pope_metrics(answers_yes: np.ndarray, truth_yes: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(answers_yes & truth_yes))
    fp = float(np.sum(answers_yes & ~truth_yes))
    fn = float(np.sum(~answers_yes & truth_yes))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"accuracy": float(np.mean(answers_yes == truth_yes)), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall), "yes_ratio": float(np.mean(answers_yes))}


def test_pope_always_yes_model():
    truth = np.array([True, False] * 1500)  # balanced, as POPE builds its questions
    m = pope_metrics(np.ones_like(truth), truth)
    assert (m["accuracy"], m["precision"], m["recall"], m["yes_ratio"]) == (0.5, 0.5, 1.0, 1.0)
    assert f"{m['f1']:.3f}" == "0.667"
    states("vlm-hallucination-pope", "$50\\%$", "$0.5$", "$1$", "\\approx 0.667")


def chair(captions: list[set[str]], present: list[set[str]]) -> tuple[float, float]:
    mentions = sum(len(c) for c in captions)
    hallucinated = [len(c - p) for c, p in zip(captions, present)]
    return sum(hallucinated) / mentions, sum(h > 0 for h in hallucinated) / len(captions)


def test_chair_worked_example():
    captions = [{"dog", "frisbee"}, {"cat", "sofa", "remote"}, {"person"}, {"car", "bus"}]
    present = [{"dog", "frisbee", "grass"}, {"cat", "sofa"}, {"person", "kite"}, {"car", "road"}]
    assert chair(captions, present) == (0.25, 0.5)
    states("vlm-chair", "CHAIR$_i = 0.25", "CHAIR$_s = 0.5")
    answer_is("vlm-q-chair-i", 100 * 6 / 30)  # percent


def test_rlhf_v_reported_numbers():
    """Yu et al. 2024 (RLHF-V, arXiv:2312.00849), abstract: 1.4k annotated samples, hallucination rate
    of the base model reduced by 34.8%, against LLaVA-RLHF's 10k preference samples."""
    states("vlm-rlhf-v", "1.4k", "$34.8\\%$", "10k", "\\gamma > 1")
    explains("vlm-q-rlhf-v", "1.4k", "$34.8\\%$")
