"""The worked numbers on the day 7-13 cards (PPO, GRPO, RLHF, offline RL, VLM, parallelism,
reference), checked against the implementations.

Each test finds a card by id in ``cards/NN-<module>.md``, asserts that the number the card states
appears in its back (English and Chinese), and recomputes the number:

- memory and compute numbers with ``llmcore_tui.core.calc`` (KV cache, weights by dtype, ZeRO
  stages, LoRA parameters, activations, FLOPs);
- ring all-reduce bytes and pipeline bubbles with ``labs.parallel``;
- GAE over tokens with ``labs.gae.compute_gae``; the CQL penalty with ``labs.cql.cql_penalty``;
- GRPO group advantages with ``labs.grpo`` when that lab exposes a group-advantage function, and
  with the formula written out here in any case (both std conventions);
- everything else (clipping, KL estimators, Bradley-Terry, CQL, online softmax, LoRA gradients)
  with torch autograd or numpy from the definitions.

Change a formula or an example on one side only and a test here fails.
"""

from __future__ import annotations

import importlib
import inspect
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from llmcore_tui.core import calc
from llmcore_tui.core.content import parse_card_file

CARDS = Path(__file__).resolve().parents[1] / "cards"
FILES = {
    "ppo": ("07-ppo.md", 7, 16, "ppo-"),
    "grpo": ("08-grpo.md", 8, 16, "grpo-"),
    "rlhf": ("09-rlhf.md", 9, 16, "rlhf-"),
    "offline_rl": ("10-offline_rl.md", 10, 16, "offline-rl-"),
    "vlm": ("11-vlm.md", 11, 16, "vlm-"),
    "parallelism": ("12-parallelism.md", 12, 16, "parallelism-"),
    "reference": ("13-reference.md", 13, 32, "ref-"),
}
LLAMA2 = calc.get_preset("llama-2-7b")
LLAMA3 = calc.get_preset("llama-3-8b")


# -- reading cards ---------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _deck(module: str):
    return parse_card_file(CARDS / FILES[module][0])


def back(card_id: str, lang: str) -> str:
    for module in FILES:
        for card in _deck(module).cards:
            if card.id == card_id:
                return " ".join(card.back[lang].split())
    raise AssertionError(f"card {card_id!r} not found in {', '.join(f[0] for f in FILES.values())}")


def states(card_id: str, *numbers: str, langs: tuple[str, ...] = ("en", "zh")) -> None:
    """Every string in ``numbers`` appears in the card's back, in every language in ``langs``."""
    for lang in langs:
        text = back(card_id, lang)
        for number in numbers:
            assert number in text, f"{card_id} back.{lang} does not state {number!r}"


def r(x: float, digits: int) -> str:
    """``x`` rounded to ``digits`` decimals, as the cards print it."""
    return f"{x:.{digits}f}"


def test_every_file_is_valid_and_large_enough():
    for module, (name, day, minimum, prefix) in FILES.items():
        deck = _deck(module)
        assert deck.problems == [], [str(p) for p in deck.problems]
        assert len(deck.cards) >= minimum, f"{name}: {len(deck.cards)} cards"
        for card in deck.cards:
            assert card.module == module and card.day == day, card.id
            assert card.id.startswith(prefix), card.id
            assert all(card.front[lang].strip() and card.back[lang].strip() for lang in ("en", "zh")), card.id


def test_ids_are_unique_across_all_card_files():
    seen: dict[str, str] = {}
    for path in sorted(CARDS.glob("[0-9]*.md")):
        for card in parse_card_file(path).cards:
            assert card.id not in seen, f"{card.id} in {path.name} and {seen[card.id]}"
            seen[card.id] = path.name


# -- day 7: PPO --------------------------------------------------------------------------------

def clipped_objective_and_grad(ratio: float, adv: float, eps: float = 0.2) -> tuple[float, float]:
    import torch

    rt = torch.tensor(ratio, dtype=torch.float64, requires_grad=True)
    obj = torch.min(rt * adv, torch.clamp(rt, 1 - eps, 1 + eps) * adv)
    obj.backward()
    return float(obj.detach()), float(rt.grad)


def test_ppo_clip_worked_cases():
    cases = {  # (A, r): (objective, gradient active?)
        (1, 1.3): (1.2, False), (1, 0.7): (0.7, True), (-1, 1.3): (-1.3, True), (-1, 0.7): (-0.8, False)}
    for (adv, ratio), (value, active) in cases.items():
        obj, grad = clipped_objective_and_grad(ratio, adv)
        assert math.isclose(obj, value, abs_tol=1e-12)
        assert (grad != 0) == active, (adv, ratio)
    states("ppo-clip-worked-cases", "\\min(1.3, 1.2) = 1.2", "\\min(0.7, 0.8) = 0.7",
           "\\min(-1.3, -1.2) = -1.3", "\\min(-0.7, -0.8) = -0.8")


def test_ppo_clip_gradient_is_zero_beyond_the_favourable_bound():
    for adv, ratio in ((2.0, 1.5), (2.0, 1.21), (-2.0, 0.5), (-2.0, 0.79)):
        assert clipped_objective_and_grad(ratio, adv)[1] == 0.0
    # the unfavourable side is never clipped: the gradient equals A
    assert clipped_objective_and_grad(1.5, -2.0)[1] == -2.0
    assert clipped_objective_and_grad(0.5, 2.0)[1] == 2.0


def test_ppo_surrogate_gradient_equals_policy_gradient_at_old_params():
    import torch

    torch.manual_seed(0)
    logits = torch.randn(5, dtype=torch.float64, requires_grad=True)
    action, adv = 3, 1.7
    old = torch.log_softmax(logits, -1)[action].detach()
    ratio = torch.exp(torch.log_softmax(logits, -1)[action] - old)
    (g_surrogate,) = torch.autograd.grad(ratio * adv, logits)
    (g_pg,) = torch.autograd.grad(torch.log_softmax(logits, -1)[action] * adv, logits)
    assert math.isclose(float(ratio), 1.0)
    assert torch.allclose(g_surrogate, g_pg)


def test_ppo_k1_and_k3_estimate_kl_old_new():
    rng = np.random.default_rng(0)
    p_old = rng.dirichlet(np.ones(6))
    p_new = rng.dirichlet(np.ones(6))
    kl = float(np.sum(p_old * np.log(p_old / p_new)))
    ratio = p_new / p_old
    k1 = float(np.sum(p_old * -np.log(ratio)))  # expectations under the sampling policy
    k3 = float(np.sum(p_old * ((ratio - 1) - np.log(ratio))))
    assert math.isclose(k1, kl) and math.isclose(k3, kl)
    assert np.all((ratio - 1) - np.log(ratio) >= 0)
    states("ppo-approx-kl", "(r_t - 1) - \\log r_t", "\\mathbb{E}_{\\pi_{old}}[r_t] = 1")


def test_ppo_gae_over_tokens_with_gamma_lambda_one_is_reward_to_go_minus_value():
    from labs.gae import compute_gae

    rng = np.random.default_rng(1)
    T, beta = 6, 0.1
    logp, logp_ref = rng.normal(size=T), rng.normal(size=T)
    rewards = -beta * (logp - logp_ref)
    rewards[-1] += 2.5  # the reward-model score arrives at the last token
    values = rng.normal(size=T)
    dones = np.zeros(T)
    dones[-1] = 1.0
    adv, returns = compute_gae(rewards.copy(), values, dones, 0.0, gamma=1.0, lam=1.0)
    to_go = np.cumsum(rewards[::-1])[::-1]
    assert np.allclose(adv, to_go - values)
    assert np.allclose(returns, to_go)
    # the summed per-token penalty is -beta times the sequence log-ratio
    assert math.isclose(float(np.sum(rewards)) - 2.5, -beta * float(np.sum(logp - logp_ref)))
    states("ppo-llm-gae-tokens", "\\gamma = \\lambda = 1", "\\lambda \\approx 0.95")
    states("ppo-llm-per-token-reward", "r_\\phi - \\beta\\,\\hat{D}_{KL}")


# -- day 8: GRPO -------------------------------------------------------------------------------

def group_advantages(rewards, bessel: bool, eps: float = 0.0) -> list[float]:
    x = np.asarray(rewards, dtype=np.float64)
    std = x.std(ddof=1 if bessel else 0)
    return list((x - x.mean()) / (std + eps))


def test_grpo_advantage_worked_one_correct_of_four():
    rewards = [1, 0, 0, 0]
    sample = group_advantages(rewards, bessel=True)
    population = group_advantages(rewards, bessel=False)
    assert np.allclose(sample, [1.5, -0.5, -0.5, -0.5])
    assert np.allclose(population, [math.sqrt(3), -1 / math.sqrt(3)] + [-1 / math.sqrt(3)] * 2)
    assert math.isclose(np.std(rewards), math.sqrt(0.1875)) and r(np.std(rewards), 3) == "0.433"
    assert math.isclose(sum(sample), 0, abs_tol=1e-12)
    states("grpo-advantage-worked", "\\sqrt{0.75/3} = 0.5", "= 1.5", "= -0.5", "0.433",
           r(population[0], 3), r(population[1], 3))


def test_grpo_std_convention_two_of_four():
    rewards = [1, 0, 0, 1]
    sample = group_advantages(rewards, bessel=True)
    population = group_advantages(rewards, bessel=False)
    assert r(sample[0], 3) == "0.866" and np.allclose(population, [1, -1, -1, 1])
    assert r(np.std(rewards, ddof=1), 3) == "0.577"
    assert math.isclose(sample[0] / population[0], math.sqrt(3 / 4))
    states("grpo-std-convention", "\\pm 0.866", "\\pm 1.0", "0.577", "\\sqrt{(G-1)/G}")


def test_grpo_std_is_torch_std_in_trl_convention():
    import torch

    t = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert r(float(t.std()), 3) == "0.577"  # torch.std is Bessel-corrected by default


def test_grpo_dr_std_bias_example():
    assert r(group_advantages([1, 0, 0, 0], bessel=False)[0], 2) == "1.73"
    assert np.allclose(group_advantages([1, 1, 0, 0], bessel=False), [1, 1, -1, -1])
    states("grpo-dr-std-bias", "+1.73", "\\pm 1.0", "r_i - \\mathrm{mean}(r)")


def test_grpo_equal_rewards_give_zero_advantage():
    for rewards in ([1, 1, 1, 1], [0, 0, 0, 0]):
        assert group_advantages(rewards, bessel=True, eps=1e-4) == [0.0] * 4


def _lab_group_advantage_fn():
    try:
        mod = importlib.import_module("labs.grpo")
    except ModuleNotFoundError:
        return None
    names = [n for n, f in vars(mod).items()
             if callable(f) and not n.startswith("_") and "advantage" in n.lower() and inspect.isfunction(f)]
    return getattr(mod, sorted(names, key=len)[0]) if names else None


def _call_group_advantages(fn, rewards: list[float], G: int) -> np.ndarray:
    """Call the lab's function with the shapes a group-advantage function usually takes."""
    import torch

    params = inspect.signature(fn).parameters
    kwargs = {}
    for name in ("group_size", "num_generations", "G", "g", "n"):
        if name in params:
            kwargs[name] = G
    attempts = [torch.tensor(rewards, dtype=torch.float64), torch.tensor([rewards], dtype=torch.float64),
                np.asarray(rewards, dtype=np.float64)]
    last: Exception | None = None
    for arg in attempts:
        try:
            out = fn(arg, **kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            last = exc
            continue
        out = out[0] if isinstance(out, tuple) else out
        return np.asarray(out.detach() if hasattr(out, "detach") else out, dtype=np.float64).reshape(-1)
    raise AssertionError(f"could not call {fn.__name__} with a group of rewards: {last}")


def test_grpo_card_numbers_match_the_lab_when_it_exists():
    fn = _lab_group_advantage_fn()
    if fn is None:
        pytest.skip("labs.grpo has no group-advantage function yet: GRPO numbers checked against the formula above")
    for rewards in ([1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]):
        out = _call_group_advantages(fn, rewards, 4)
        conventions = [group_advantages(rewards, bessel=b) for b in (True, False)]
        assert any(np.allclose(out, c, atol=1e-3) for c in conventions), (fn.__name__, rewards, out)
    zero = _call_group_advantages(fn, [1.0, 1.0, 1.0, 1.0], 4)
    assert np.allclose(zero, 0.0)


def test_grpo_k3_estimator_value_and_unbiasedness():
    rho = 0.5
    k3 = rho - math.log(rho) - 1
    assert r(k3, 3) == "0.193" and r(-math.log(rho), 3) == "0.693"
    states("grpo-k3-estimator", "\\approx 0.193", "0.693")
    rng = np.random.default_rng(2)
    pi, ref = rng.dirichlet(np.ones(8)), rng.dirichlet(np.ones(8))
    ratio = ref / pi
    assert math.isclose(float(np.sum(pi * ratio)), 1.0)
    assert math.isclose(float(np.sum(pi * (ratio - np.log(ratio) - 1))), float(np.sum(pi * np.log(pi / ref))))


def test_grpo_group_size_informative_probability():
    def informative(p: float, G: int) -> float:
        return 1 - p ** G - (1 - p) ** G

    assert r(informative(0.1, 4), 2) == "0.34" and r(informative(0.1, 16), 2) == "0.81"
    states("grpo-group-size", "1 - p^G - (1-p)^G", "0.34", "0.81")


def test_grpo_single_iteration_is_reinforce_with_group_baseline():
    import torch

    torch.manual_seed(3)
    logits = torch.randn(7, dtype=torch.float64, requires_grad=True)
    token, adv, eps = 2, -0.5, 0.2
    logp = torch.log_softmax(logits, -1)[token]
    ratio = torch.exp(logp - logp.detach())
    obj = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
    (g,) = torch.autograd.grad(obj, logits)
    (g_pg,) = torch.autograd.grad(torch.log_softmax(logits, -1)[token] * adv, logits)
    assert torch.allclose(g, g_pg)


# -- day 9: RLHF -------------------------------------------------------------------------------

def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_and_reward_model_loss():
    assert r(sigmoid(2), 2) == "0.88"
    states("rlhf-bradley-terry", "$88\\%$")
    assert math.isclose(-math.log(sigmoid(0)), math.log(2)) and r(math.log(2), 3) == "0.693"
    assert r(-math.log(sigmoid(2)), 3) == "0.127" and math.isclose(-math.log(sigmoid(2)), math.log1p(math.exp(-2)))
    states("rlhf-rm-loss", "\\log 2 \\approx 0.693", "\\log(1 + e^{-2}) \\approx 0.127")


def test_reward_model_gradient_weights():
    import torch

    weights = {}
    for delta in (2.0, 0.0, -1.0):
        d = torch.tensor(delta, dtype=torch.float64, requires_grad=True)
        (-torch.nn.functional.logsigmoid(d)).backward()
        weights[delta] = -float(d.grad)
        assert math.isclose(weights[delta], sigmoid(-delta))
    assert r(weights[2.0], 2) == "0.12" and r(weights[0.0], 1) == "0.5" and r(weights[-1.0], 2) == "0.73"
    states("rlhf-rm-gradient", "\\sigma(-2) \\approx 0.12", "$0.5$", "0.73")


def test_ranking_pairs_and_shift_invariance():
    assert math.comb(9, 2) == 9 * 8 // 2 == 36
    states("rlhf-ranking-to-pairs", "K(K-1)/2", "$36$")
    loss = lambda rw, rl: -math.log(sigmoid(rw - rl))  # noqa: E731
    assert math.isclose(loss(3.7, 1.2), loss(3.7 + 10, 1.2 + 10))


def test_kl_regularised_optimum_is_reweighted_reference():
    rng = np.random.default_rng(4)
    ref, reward, beta = rng.dirichlet(np.ones(5)), rng.normal(size=5), 0.5
    star = ref * np.exp(reward / beta)
    star /= star.sum()

    def objective(p):
        return float(np.sum(p * reward) - beta * np.sum(p * np.log(p / ref)))

    for _ in range(200):
        other = rng.dirichlet(np.ones(5))
        assert objective(other) <= objective(star) + 1e-12
    # a reward gap of beta multiplies relative probability by e
    i, j = 0, 1
    ratio = (star[i] / star[j]) / (ref[i] / ref[j])
    assert math.isclose(ratio, math.exp((reward[i] - reward[j]) / beta))


def test_adaptive_kl_controller_step():
    def step(beta, kl, target, k_beta=0.1):
        e = min(max((kl - target) / target, -0.2), 0.2)
        return beta * (1 + k_beta * e)

    assert math.isclose(step(1.0, 12.0, 6.0), 1.02)
    assert math.isclose(step(1.0, 3.0, 6.0), 0.98)
    states("rlhf-kl-adaptive", "K_\\beta = 0.1", "e_t = 0.2", "$2\\%$")


def test_best_of_n_kl():
    n = 16
    kl = math.log(n) - (n - 1) / n
    assert r(math.log(16), 3) == "2.773" and r(15 / 16, 3) == "0.938" and r(kl, 3) == "1.835"
    states("rlhf-bon-kl", "\\log n - \\frac{n-1}{n}", "2.773", "0.938", "1.835")


# -- day 10: offline RL ------------------------------------------------------------------------

def test_expected_max_of_ten_standard_normals():
    n = 10
    x = np.linspace(-10, 10, 400_001)
    pdf = np.exp(-x ** 2 / 2) / math.sqrt(2 * math.pi)
    cdf = np.cumsum(pdf) * (x[1] - x[0])
    expected_max = float(np.sum(x * n * pdf * cdf ** (n - 1)) * (x[1] - x[0]))
    assert r(expected_max, 2) == "1.54"
    states("offline-rl-max-overestimation-worked", "1.54")


def test_cql_penalty_and_gradient_worked():
    import torch

    from labs.cql import cql_penalty

    q = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    penalty = cql_penalty(q, torch.tensor([0]))  # the lab's penalty, data action a_1 (index 0)
    penalty.backward()
    assert math.isclose(float(penalty), math.log(4)) and r(math.log(4), 3) == "1.386"
    assert torch.allclose(q.grad, torch.tensor([[-0.75, 0.25, 0.25, 0.25]], dtype=torch.float64))
    states("offline-rl-cql-gradient-worked", "\\log 4 \\approx 1.386", "0.25", "1 - 0.25 = 0.75")
    # the penalty is never negative: logsumexp >= max >= the data action's Q
    rng = np.random.default_rng(5)
    for _ in range(100):
        qs = torch.tensor(rng.normal(size=(1, 6)) * 3)
        assert float(cql_penalty(qs, torch.tensor([int(rng.integers(6))]))) >= 0


def test_iql_expectile_tends_to_the_max_in_support():
    values = np.array([0.0, 1.0, 3.0])
    grid = np.linspace(-1, 4, 50_001)

    def expectile(tau):
        u = values[None, :] - grid[:, None]
        loss = (np.abs(tau - (u < 0)) * u ** 2).sum(1)
        return grid[np.argmin(loss)]

    assert math.isclose(expectile(0.5), values.mean(), abs_tol=1e-3)
    assert expectile(0.9) > expectile(0.7) > expectile(0.5)
    assert expectile(0.999) > 2.9


# -- day 11: VLM -------------------------------------------------------------------------------

def test_vit_patch_counts():
    assert (224 // 16) ** 2 == 196
    states("vlm-vit-patches", "14 \\times 14 = 196")
    assert 336 // 14 == 24 and 24 ** 2 == 576 and (224 // 14) ** 2 == 256
    states("vlm-llava-576", "336 / 14 = 24", "24 \\times 24 = 576", "16 \\times 16 = 256")
    assert (672 // 14) ** 2 == 2304 == 4 * 576
    states("vlm-resolution-token-budget", "672 / 14 = 48", "48^2 = 2304")
    assert 5 * 576 == 2880
    states("vlm-anyres-tiling", "5 \\times 576 = 2880")
    assert 576 // 4 == 144 and (448 // 14) ** 2 == 1024 and 1024 // 4 == 256
    states("vlm-token-reduction", "144", "$1024$", "$256$")


def test_llava_mlp_projector_parameters():
    import torch

    projector = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096))
    n = sum(p.numel() for p in projector.parameters())
    assert n == 20_979_712 and round(n / 1e6) == 21
    states("vlm-mlp-projector", "1024 \\cdot 4096 + 4096 \\cdot 4096", "$21$M")


def test_image_token_kv_cache():
    per_token = calc.kv_cache(LLAMA2, 1, 1, "fp16")
    assert per_token == 512 * calc.KiB
    assert calc.kv_cache(LLAMA2, 576, 1, "fp16") == 288 * calc.MiB
    assert calc.kv_cache(LLAMA2, 2880, 1, "fp16") == 1440 * calc.MiB
    states("vlm-image-kv-cost", "= 512$ KiB", "= 288$ MiB", "1440 MiB")


# -- day 12: parallelism -----------------------------------------------------------------------

def test_ring_allreduce_worked_data_parallel():
    from labs.parallel import ring_allreduce_bytes

    grads = calc.weight_bytes(7e9, "fp16")
    assert grads == 14 * calc.GB
    sent = ring_allreduce_bytes(int(7e9), 8, bytes_per=2)
    assert math.isclose(sent, 24.5 * calc.GB)
    assert math.isclose(sent / (50 * calc.GB), 0.49)
    states("parallelism-ring-allreduce-worked", "= 14$ GB", "2 \\cdot \\frac{7}{8} \\cdot 14 = 24.5$ GB", "50$ GB/s")
    states("parallelism-ring-allreduce", "2\\frac{p-1}{p}N")


def test_tensor_parallel_allreduce_size():
    from labs.parallel import ring_allreduce_bytes

    activation = 1 * 4096 * 8192 * calc.dtype_bytes("bf16")
    assert activation == 64 * calc.MiB
    assert math.isclose(ring_allreduce_bytes(1 * 4096 * 8192, 8, bytes_per=2), 112 * calc.MiB)
    states("parallelism-tp-intra-node", "4096 \\cdot 8192 \\cdot 2$ B $= 64$ MiB", "2 \\cdot \\frac{7}{8} \\cdot 64 = 112$ MiB")
    states("ref-tp-allreduce-recap", "64 MiB", "2\\frac{t-1}{t}")


def test_pipeline_bubble_numbers():
    from labs.parallel import bubble_fraction

    assert math.isclose(bubble_fraction(4, 8), 3 / 11) and r(100 * bubble_fraction(4, 8), 1) == "27.3"
    assert r(100 * bubble_fraction(8, 32), 1) == "17.9"
    states("parallelism-pipeline-bubble", "\\frac{p - 1}{m + p - 1}", "3/11 \\approx 27.3\\%", "7/39 \\approx 17.9\\%")
    # Megatron's convention: bubble time over ideal compute time
    assert (4 - 1) / 8 == 0.375 and r(100 * 7 / 32, 1) == "21.9"
    # the two conventions describe the same bubble: total = ideal + bubble
    for p, m in ((4, 8), (8, 32), (2, 1)):
        ideal, bubble = m, p - 1
        assert math.isclose(bubble_fraction(p, m), bubble / (ideal + bubble))
    states("parallelism-bubble-conventions", "$37.5\\%$", "$27.3\\%$", "\\frac{p-1}{m}")
    states("ref-pipeline-bubble-recap", "\\frac{7}{39} \\approx 17.9\\%", "\\frac{7}{32} \\approx 21.9\\%")
    # interleaving by v divides Megatron's bubble by v
    assert math.isclose((4 - 1) / (2 * 8), 0.1875)


def test_world_size_example():
    assert 8 * 4 * 16 == 512
    states("parallelism-3d-world-size", "512 = 8 \\times 4 \\times 16")


def test_zero_stage_formulas_match_the_calculator():
    psi, nd, k = 1e9, 64, 12
    formulas = {0: (2 + 2 + k) * psi, 1: 4 * psi + k * psi / nd, 2: 2 * psi + (2 + k) * psi / nd,
                3: (2 + 2 + k) * psi / nd}
    for stage, expected in formulas.items():
        assert math.isclose(calc.zero_memory_bytes(psi, nd, stage), expected)
    states("parallelism-zero-stages", "4\\Psi + K\\Psi/N_d", "2\\Psi + (2 + K)\\Psi/N_d", "(2 + 2 + K)\\Psi/N_d")
    # ZeRO shards model states only: activations pass through unchanged
    act = 5 * calc.GiB
    b = calc.zero_memory_breakdown(psi, nd, 3, activation_bytes=act)
    assert b.get("activations") == act


def test_zero3_communication_is_one_and_a_half_times_dp():
    psi = 1.0
    dp = 2 * psi  # all-reduce = reduce-scatter + all-gather
    zero12 = psi + psi  # reduce-scatter grads + all-gather params
    zero3 = psi + psi + psi  # all-gather forward, all-gather backward, reduce-scatter grads
    assert zero12 == dp and zero3 / dp == 1.5
    states("parallelism-zero-communication", "3\\Psi", "1.5")


# -- day 13: reference -------------------------------------------------------------------------

def test_kv_cache_llama2_and_llama3():
    assert calc.kv_cache_bytes(32, 32, 128, 4096, 1, 2) == 2 * calc.GiB == 2 ** 31
    assert calc.kv_cache(LLAMA2, 4096) == 2 * calc.GiB
    assert calc.kv_cache(LLAMA2, 1) == 512 * calc.KiB
    weights = calc.weight_bytes(LLAMA2, "fp16")
    assert r(weights / calc.GB, 1) == "13.5" and round(100 * 2 * calc.GiB / weights) == 16
    states("ref-kv-cache-llama2-7b", "2 \\cdot 32 \\cdot 32 \\cdot 128 \\cdot 4096 \\cdot 1 \\cdot 2 = 2^{31}", "= 2$ GiB",
           "512 KiB", "16%", "13.5 GB")
    assert calc.kv_cache(LLAMA3, 4096) == 0.5 * calc.GiB
    assert calc.kv_cache(LLAMA3, 1) == 128 * calc.KiB
    assert LLAMA3.heads // LLAMA3.kv_heads == 4
    states("ref-kv-cache-llama3-8b", "$= 0.5$ GiB", "128 KiB", "$4\\times$")


def test_kv_cache_formula_card():
    states("ref-kv-cache-formula", "2 \\cdot L \\cdot n_{kv} \\cdot d_{head} \\cdot s \\cdot b \\cdot B")
    # linear in every factor
    base = calc.kv_cache_bytes(32, 8, 128, 1000, 1, 2)
    assert calc.kv_cache_bytes(32, 8, 128, 2000, 1, 2) == 2 * base == calc.kv_cache_bytes(32, 8, 128, 1000, 2, 2)


def test_kv_cache_batch_and_long_context():
    assert calc.kv_cache(LLAMA2, 4096, 16) == 32 * calc.GiB
    weights = calc.weight_bytes(LLAMA2, "fp16")
    assert r(weights / calc.GiB, 1) == "12.6" and calc.kv_cache(LLAMA2, 4096, 16) > 2 * weights
    states("ref-kv-cache-batch", "16 \\times 2$ GiB $= 32$ GiB", "13.5", "12.6")
    assert calc.kv_cache(LLAMA3, 131072) == 16 * calc.GiB
    assert calc.kv_cache_bytes(32, 32, 128, 131072, 1, 2) == 64 * calc.GiB
    assert round(calc.weight_bytes(LLAMA3, "bf16") / calc.GB) == 16
    states("ref-kv-cache-long-context", "= 16$ GiB", "2 \\cdot 32 \\cdot 8 \\cdot 128 \\cdot 131072 \\cdot 2", "64 GiB", "16 GB")


def test_mqa_gqa_kv_saving():
    sizes = [calc.kv_cache_bytes(32, kv, 128, 4096, 1, 2) for kv in (32, 8, 1)]
    assert sizes == [2 * calc.GiB, 512 * calc.MiB, 64 * calc.MiB]
    states("ref-mqa-saving", "2 GiB, 512 MiB", "64 MiB", "$4\\times$", "$32\\times$", langs=("en",))
    states("ref-mqa-saving", "2 GiB、512 MiB", "64 MiB", "$4$ 倍", "$32$ 倍", langs=("zh",))


def test_weight_bytes_by_dtype():
    expected = {"fp32": 28, "fp16": 14, "bf16": 14, "int8": 7, "int4": 3.5}
    for dtype, gb in expected.items():
        assert calc.weight_bytes(7e9, dtype) == gb * calc.GB
    assert r(14 * calc.GB / calc.GiB, 1) == "13.0"
    states("ref-weight-bytes", "28 GB, 14 GB, 7 GB and 3.5 GB", "13.0 GiB", langs=("en",))
    states("ref-weight-bytes", "28 GB、14 GB、7 GB 和 3.5 GB", "13.0 GiB", langs=("zh",))


def test_mixed_precision_adam_bytes():
    assert calc.zero_memory_bytes(1, 1, 0) == 16 == 2 + 2 + calc.ADAM_STATE_BYTES
    assert calc.zero_memory_bytes(7e9, 1, 0) == 112 * calc.GB
    states("ref-adam-16-bytes", "2 + 2 + 12 = 16", "$112$ GB")
    assert 16 / calc.dtype_bytes("fp16") == 8 and 16 / calc.dtype_bytes("fp32") == 4
    states("ref-adam-misconception", "$16$", "$8", "$4")


def test_zero_paper_example():
    gb = [calc.zero_memory_bytes(7.5e9, 64, stage) / calc.GB for stage in range(4)]
    assert gb[0] == 120 and r(gb[1], 1) == "31.4" and r(gb[2], 1) == "16.6" and r(gb[3], 1) == "1.9"
    states("ref-zero-paper-example", "= 120$ GB", "\\approx 31.4$ GB", "\\approx 16.6$ GB", "\\approx 1.9$ GB")


def test_lora_parameter_counts():
    n = calc.lora_matrix_params(8, 4096, 4096)
    assert n == 65_536 and r(100 * n / 4096 ** 2, 2) == "0.39"
    states("ref-lora-params", "65{,}536", "16{,}777{,}216", "0.39\\%")
    t = calc.lora_params(LLAMA2, 8, "qv")
    assert t == 32 * 2 * 8 * (4096 + 4096) == 4_194_304
    assert r(100 * t / LLAMA2.params, 2) == "0.06"
    assert round(16 * t / calc.MB) == 67
    states("ref-lora-llama-qv", "4{,}194{,}304", "0.06\\%", "67$ MB", "108 GB")


def test_lora_memory_estimate():
    est = calc.lora_estimate(LLAMA2, 8, "qv", base_dtype="fp16")
    assert round(est.full.total / calc.GB) == 108
    assert r(est.lora.total / calc.GB, 1) == "13.5"
    assert r(est.lora.get("frozen base weights (fp16)") / calc.GB, 1) == "13.5"
    states("ref-lora-memory-misconception", "108 GB", "13.5 GB", "14 of the 16", langs=("en",))
    states("ref-lora-memory-misconception", "108 GB", "13.5 GB", "16 字节中的 14 字节", langs=("zh",))


def test_lora_initialisation_gradients():
    import torch

    torch.manual_seed(6)
    d_in, d_out, rank = 6, 5, 2
    x = torch.randn(3, d_in, dtype=torch.float64)
    target = torch.randn(3, d_out, dtype=torch.float64)
    w0 = torch.randn(d_out, d_in, dtype=torch.float64)

    def grads(a_init, b_init):
        a = a_init.clone().requires_grad_(True)
        b = b_init.clone().requires_grad_(True)
        out = x @ w0.T + (x @ a.T) @ b.T
        ((out - target) ** 2).sum().backward()
        return a.grad, b.grad, out

    a_rand = torch.randn(rank, d_in, dtype=torch.float64)
    zero_b = torch.zeros(d_out, rank, dtype=torch.float64)
    ga, gb, out = grads(a_rand, zero_b)
    assert torch.allclose(out, x @ w0.T)  # starts as the pretrained function
    assert torch.count_nonzero(ga) == 0 and torch.count_nonzero(gb) > 0
    ga, gb, _ = grads(torch.zeros_like(a_rand), zero_b)
    assert torch.count_nonzero(ga) == 0 and torch.count_nonzero(gb) == 0


def test_qlora_double_quantisation_overhead():
    single = 32 / 64
    double = 8 / 64 + 32 / (64 * 256)
    assert single == 0.5 and r(double, 3) == "0.127"
    states("ref-qlora", "$0.5$", "$0.127$", "65B", "48 GB")


def test_int4_group_quantisation_bytes():
    bits = 4 + 16 / 128
    assert bits == 4.125 and r(bits / 8, 2) == "0.52"
    assert r(7e9 * bits / 8 / calc.GB, 1) == "3.6"
    assert calc.weight_bytes(7e9, "int4") == 3.5 * calc.GB and calc.weight_bytes(7e9, "int8") == 7 * calc.GB
    assert 16 / 32 == 0.5
    states("ref-quantisation-bytes", "16/128 = 0.125", "$4.125$", "$0.52$", "$3.6$ GB", "$3.5$ GB", "$0.5$")


def test_activation_memory_and_checkpointing():
    s, b, h, a, L = 4096, 1, 4096, 32, 32
    none = calc.activation_bytes(s, b, h, a, L, "none")
    selective = calc.activation_bytes(s, b, h, a, L, "selective")
    full = calc.activation_bytes(s, b, h, a, L, "full")
    assert none == L * s * b * h * (34 + 5 * a * s / h)
    assert (none / calc.GiB, selective / calc.GiB, full / calc.GiB) == (97, 17, 1)
    assert (none - selective) / calc.GiB == 80
    states("ref-activation-memory", "s b h (34 + 5 a s / h)", "97 GiB", "80 GiB", "17 GiB")
    states("ref-activation-checkpointing", "97 GiB", "1 GiB", "$2 sbh$", "$8N$", "33%")
    assert r(100 * (8 - 6) / 6, 0) == "33"


def test_training_and_inference_flops():
    assert calc.flops_per_token(1, training=True) == 6 and calc.flops_per_token(1, training=False) == 2
    c = calc.training_flops(7e9, 2e12)
    assert c == 8.4e22
    throughput = 1000 * 989e12 * 0.4
    assert r(throughput / 1e17, 2) == "3.96"
    seconds = c / throughput
    assert r(seconds / 1e5, 1) == "2.1" and r(seconds / 86400, 1) == "2.5"
    assert calc.flops_per_token(7e9, training=False) == 14e9
    states("ref-flops-worked", "8.4 \\times 10^{22}", "3.96 \\times 10^{17}", "2.1 \\times 10^5", "2.5 days", "= 14$",
           langs=("en",))
    states("ref-flops-worked", "8.4 \\times 10^{22}", "3.96 \\times 10^{17}", "2.1 \\times 10^5", "2.5 天", "= 14$",
           langs=("zh",))
    states("ref-flops-6n", "$2N$", "$4N$", "$6N$")


def test_decode_is_memory_bound():
    weights = calc.weight_bytes(7e9, "fp16")
    per_token = weights / 3.35e12
    assert r(per_token * 1e3, 1) == "4.2" and round(1 / per_token, -1) == 240
    assert round(989e12 / 3.35e12, -2) == 300
    states("ref-decode-memory-bound", "\\approx 4.2$", "240", "300")


def test_online_softmax_recurrences_are_exact():
    """The card's recurrences for m, l and O, run block by block, equal softmax(S) V."""
    rng = np.random.default_rng(7)
    n_keys, d, block = 37, 4, 8
    scores = rng.normal(size=n_keys) * 5
    values = rng.normal(size=(n_keys, d))
    m, ell, out = -np.inf, 0.0, np.zeros(d)
    for start in range(0, n_keys, block):
        s_j, v_j = scores[start:start + block], values[start:start + block]
        m_new = max(m, s_j.max())
        scale = math.exp(m - m_new) if np.isfinite(m) else 0.0
        p = np.exp(s_j - m_new)
        ell = scale * ell + p.sum()
        out = scale * out + p @ v_j
        m = m_new
    exact = np.exp(scores - scores.max())
    exact = (exact / exact.sum()) @ values
    assert np.allclose(out / ell, exact)
    states("ref-online-softmax", "m' = \\max(m, \\max S_j)", "\\ell' = e^{m - m'}\\ell + \\sum e^{S_j - m'}",
           "O' = e^{m - m'}O + e^{S_j - m'}V_j")


def test_reference_lora_scaling_and_merge():
    import torch

    torch.manual_seed(8)
    d, rank, alpha = 8, 2, 16
    w0 = torch.randn(d, d, dtype=torch.float64)
    a = torch.randn(rank, d, dtype=torch.float64)
    b = torch.randn(d, rank, dtype=torch.float64)
    x = torch.randn(3, d, dtype=torch.float64)
    adapter = x @ w0.T + (alpha / rank) * (x @ a.T) @ b.T
    merged = x @ (w0 + (alpha / rank) * b @ a).T
    assert torch.allclose(adapter, merged)
    states("ref-lora-merge", "W = W_0 + \\frac{\\alpha}{r} B A")
    states("ref-lora-formula", "\\Delta W = \\frac{\\alpha}{r} B A")
