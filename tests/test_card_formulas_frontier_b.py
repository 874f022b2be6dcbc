"""The numbers and formulas on the frontier cards and quizzes of days 9, 12 and 13 (issue 15, part B):
RL training systems, process and verifiable rewards, MoE training, long context, inference for rollouts.

Each test finds a card or question by id, asserts that its text states the number (English and Chinese)
and recomputes it: memory, KV and MoE numbers with ``llmcore_tui.core.calc``; the verifiable reward with
the GRPO lab's own scorer; speculative sampling with ``labs.speculative``; the rest from the definitions
(ring attention and Ulysses simulated block by block against full attention, Math-Shepherd labels and
acceptance chains sampled, RoPE frequencies per pair). Numbers from a paper name the paper here.
Change a formula or an example on one side only and a test here fails.
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from llmcore_tui.core import calc
from llmcore_tui.core.content import parse_card_file
from llmcore_tui.core.quiz import draw, parse_quiz_file

ROOT = Path(__file__).resolve().parents[1]
TOPICS = {  # file stem (same name under cards/ and quizzes/): module, day, card id prefix
    "09-rlhf-systems": ("rlhf", 9, "rlhf-sys-"),
    "09-rlhf-process-rewards": ("rlhf", 9, "rlhf-prm-"),
    "12-parallelism-moe": ("parallelism", 12, "parallelism-moe-"),
    "12-parallelism-long-context": ("parallelism", 12, "parallelism-long-"),
    "13-reference-inference": ("reference", 13, "ref-inf-"),
}
LLAMA2, LLAMA3 = calc.get_preset("llama-2-7b"), calc.get_preset("llama-3-8b")
KIB, MIB, GIB = 2**10, 2**20, 2**30


# -- the texts -------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _files(stem: str):
    return parse_card_file(ROOT / "cards" / f"{stem}.md"), parse_quiz_file(ROOT / "quizzes" / f"{stem}.md", root=ROOT)


@lru_cache(maxsize=None)
def _texts() -> dict[str, dict[str, str]]:
    """Card backs and question explanations of this part's files, whitespace-collapsed, by id and language."""
    found: dict[str, dict[str, str]] = {}
    for stem in TOPICS:
        deck, quiz = _files(stem)
        for item, sections in [*((c, c.back) for c in deck.cards), *((q, q.explanation) for q in quiz.questions)]:
            found[item.id] = {lang: " ".join(text.split()) for lang, text in sections.items()}
    return found


def states(item_id: str, *texts: str) -> None:
    """A card's back (or a question's explanation) contains every string of ``texts`` in both languages."""
    for lang, text in _texts()[item_id].items():
        for wanted in texts:
            assert wanted in text, f"{item_id} ({lang}) does not state {wanted!r}"


def question(question_id: str):
    for stem in TOPICS:
        if question_id in _files(stem)[1].by_id:
            return _files(stem)[1].by_id[question_id]
    raise AssertionError(f"no question {question_id!r} in {', '.join(TOPICS)}")


def numeric_answer(question_id: str) -> float:
    assert question(question_id).kind == "numeric", question_id
    return question(question_id).value


def right_choice(question_id: str) -> str:
    (index,) = question(question_id).answer
    return question(question_id).choices["en"][index]


def drawn_params(question_id: str, draws: int = 20) -> list[dict]:
    """The parameters a parametric question draws, over several seeds."""
    return [draw(question(question_id), random.Random(seed)).params for seed in range(draws)]


def close(a: float, b: float, rel: float = 1e-3) -> bool:
    return math.isclose(a, b, rel_tol=rel)


@pytest.mark.parametrize("stem", TOPICS)
def test_each_topic_has_six_cards_at_most_two_core_and_four_questions(stem):
    module, day, prefix = TOPICS[stem]
    deck, quiz = _files(stem)
    assert deck.problems == [] and quiz.problems == [], [str(p) for p in deck.problems + quiz.problems]
    assert len(deck.cards) >= 6 and len(quiz.questions) >= 4
    core = [c.id for c in deck.cards if "advanced" not in c.tags]
    assert 1 <= len(core) <= 2, core
    for item in [*deck.cards, *quiz.questions]:
        assert (item.module, item.day) == (module, day), item.id
    assert all(c.id.startswith(prefix) for c in deck.cards)
    assert all(q.id.startswith(f"{module}-q-") for q in quiz.questions)


# -- day 9: RL training systems --------------------------------------------------------------

def test_weight_sync_bytes_and_time_over_a_link():
    link = 25e9  # bytes/s: one 200 Gb/s InfiniBand port
    assert 200e9 / 8 == link
    seven_b, seventy_b = calc.weight_bytes(7e9, "bf16"), calc.weight_bytes(70e9, "bf16")
    assert seven_b == 1.4e10 and close(seven_b / link, 0.56) and close(seventy_b / link, 5.6)
    states("rlhf-sys-weight-sync-cost", "7 \\times 10^9 \\times 2 = 1.4 \\times 10^{10}", "14 / 25 = 0.56", "5.6")
    assert numeric_answer("rlhf-q-sys-sync-bytes") == seventy_b == 1.4e11
    states("rlhf-q-sys-sync-bytes", "70 \\times 10^9 \\times 2 = 1.4 \\times 10^{11}", "140", "5.6")
    assert close(seventy_b / GIB, 130, rel=0.01)


def test_truncated_importance_weight_is_unbiased_uncapped_and_bounded_capped():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=50) * 3

    def softmax(z):
        return np.exp(z - z.max()) / np.exp(z - z.max()).sum()

    p_train = softmax(logits)
    q_rollout = softmax(logits + rng.normal(size=50) * 0.5)  # the engine's logits differ a little
    f = rng.normal(size=50)  # any per-token quantity, e.g. an advantage-weighted score
    w = p_train / q_rollout
    assert math.isclose(np.sum(q_rollout * w * f), np.sum(p_train * f))  # E_rollout[w f] = E_train[f]
    cap = 2.0
    assert w.max() > cap  # some tokens would be over-weighted
    capped = np.minimum(w, cap)
    assert capped.max() <= cap and np.sum(q_rollout * capped**2) <= cap**2
    assert np.sum(q_rollout * capped**2) < np.sum(q_rollout * w**2)  # lower second moment...
    assert not math.isclose(np.sum(q_rollout * capped * f), np.sum(p_train * f))  # ...for some bias
    uncapped = np.minimum(w, w.max())  # a cap at or above every weight changes nothing
    assert math.isclose(np.sum(q_rollout * uncapped * f), np.sum(p_train * f))
    states("rlhf-sys-truncated-is", "w_t = \\min\\left(\\frac{\\pi_{train}(y_t)}{\\pi_{rollout}(y_t)}, C\\right)",
           "C^2", "arXiv 1802.01561")
    assert right_choice("rlhf-q-sys-tis") == "2" == str(int(min(0.2 / 0.01, cap)))
    states("rlhf-q-sys-tis", "0.2 / 0.01 = 20", "\\min(20, 2) = 2")


def test_engine_and_trainer_kernels_give_different_log_probs_in_bf16():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    h, w = torch.randn(8, 4096, generator=gen), torch.randn(4096, 1000, generator=gen) / 64

    def split_k_logits(h, w, parts):  # another kernel: partial products summed in another order
        return sum(a @ b for a, b in zip(h.chunk(parts, 1), w.chunk(parts, 0)))

    one = torch.log_softmax((h.bfloat16() @ w.bfloat16()).float(), -1)
    other = torch.log_softmax(split_k_logits(h.bfloat16(), w.bfloat16(), 4).float(), -1)
    exact = [torch.log_softmax(split_k_logits(h.double(), w.double(), parts), -1) for parts in (1, 4)]
    assert (one - other).abs().max() > 1e-3  # same weights, different log-probs
    assert (exact[0] - exact[1]).abs().max() < 1e-10  # only rounding makes the order matter
    assert tuple(question("rlhf-q-sys-mismatch").answer) == (0, 1, 3)


def test_stale_rollouts_need_the_behaviour_policy_in_the_ratio_and_clip_more():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(6, generator=gen, dtype=torch.float64)
    advantage = torch.randn(6, generator=gen, dtype=torch.float64)
    drift = [torch.randn(6, generator=gen, dtype=torch.float64) * 0.3 for _ in range(4)]

    def grad_of(objective):
        t = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(objective(torch.softmax(t, 0)), t)
        return g

    behaviour = torch.softmax(theta - sum(drift), 0)  # the policy 4 updates ago generated the data
    true = grad_of(lambda pi: (pi * advantage).sum())
    weighted = grad_of(lambda pi: (behaviour * (pi / behaviour) * advantage).sum())
    pretend_fresh = grad_of(lambda pi: (behaviour * torch.log(pi) * advantage).sum())
    assert torch.allclose(weighted, true) and not torch.allclose(pretend_fresh, true)

    walks = torch.randn(500, 4, 6, generator=gen, dtype=torch.float64) * 0.3  # 500 histories of 4 updates each
    clipped = []
    for n in range(1, 5):
        old = torch.softmax(theta - walks[:, :n].sum(1), 1)
        ratio = torch.softmax(theta, 0) / old
        clipped.append(float((old * ((ratio < 0.8) | (ratio > 1.2))).sum(1).mean()))  # share of sampled tokens clipped
    assert clipped == sorted(clipped) and clipped[-1] > clipped[0]
    states("rlhf-sys-async-staleness", "\\pi_\\theta / \\pi_{\\theta_{k-n}}", "arXiv 2505.24298")
    states("rlhf-sys-verl-openrlhf", "arXiv 2409.19256", "arXiv 2405.11143")  # HybridFlow; OpenRLHF


# -- day 9: process rewards and verifiable rewards -------------------------------------------

def test_prm_paper_numbers():
    # Lightman et al. 2023, arXiv 2305.20050: best-of-N on a representative MATH subset, PRM 78.2% vs ORM 72.4%;
    # PRM800K has 800,000 step labels; active learning improved data efficiency 2.6x.
    states("rlhf-prm-vs-orm", "78.2%", "72.4%", "arXiv 2305.20050")
    states("rlhf-prm-prm800k", "2.6")
    assert "800,000" in _texts()["rlhf-prm-prm800k"]["en"] and "80 万" in _texts()["rlhf-prm-prm800k"]["zh"]


def test_process_supervision_token_advantages():
    steps = [[0.9, 0.2], [0.8, 0.9]]  # step rewards of two sampled solutions
    flat = np.concatenate(steps)
    assert close(flat.mean(), 0.7)
    for ddof in (0, 1):  # either std convention: the pattern is the same
        sigma = flat.std(ddof=ddof)
        normalised = [(np.array(s) - flat.mean()) / sigma for s in steps]
        advantage = [np.cumsum(r[::-1])[::-1] for r in normalised]  # own step plus every later step
        assert np.allclose(advantage[0] * sigma, [-0.3, -0.5])
        assert advantage[0][1] < advantage[0][0] < 0 < advantage[1][1] < advantage[1][0]
    states("rlhf-prm-step-credit", "$0.7$", "-0.5/\\sigma", "(0.2 - 0.5)/\\sigma = -0.3/\\sigma", "arXiv 2402.03300")


def test_math_shepherd_soft_label_is_unbiased_and_hard_label_optimistic():
    p, n = 0.2, 8
    rng = np.random.default_rng(0)
    successes = rng.binomial(1, p, size=(200_000, n))
    soft, hard = successes.mean(1), successes.max(1)
    assert abs(soft.mean() - p) < 0.003
    assert abs(hard.mean() - (1 - (1 - p) ** n)) < 0.003
    assert close(1 - 0.8**8, 0.8322, rel=1e-4)
    states("rlhf-prm-math-shepherd", "1 - 0.8^8 \\approx 0.83", "arXiv 2312.08935")
    assert close(numeric_answer("rlhf-q-prm-hard-label"), 1 - 0.8**8, rel=1e-3)
    states("rlhf-q-prm-hard-label", "1 - 0.8^8 = 1 - 0.168 = 0.832")


def test_best_of_n_product_prefers_short_and_minimum_ignores_length():
    long, short = [0.95] * 10, [0.8] * 2
    assert round(math.prod(long), 3) == 0.599 and round(math.prod(short), 2) == 0.64
    assert math.prod(short) > math.prod(long) and min(long) > min(short)
    states("rlhf-prm-best-of-n", "0.95^{10} \\approx 0.599", "0.8^2 = 0.64")
    assert right_choice("rlhf-q-prm-aggregate").startswith("Towards short")
    states("rlhf-q-prm-aggregate", "0.95^{10} \\approx 0.60", "0.64")


def test_the_grpo_lab_reward_is_exact_match_with_eos():
    pytest.importorskip("torch")
    from labs import _tinylm as tl
    from labs import sft

    for toy in (True, False):
        task = sft.task_of(sft.preset(toy, 0, "cpu", 1))
        assert task.prompt((7, 8)) == "007+8="
        right = tl.encode_completions(["15", "16", "015"], width=task.answer_len + 1)
        assert tl.gold_scores(task, [(7, 8)] * 3, right).tolist() == [1.0, 0.0, 0.0]
        cut = right[:1, :2]  # "15" with its <eos> cut off by the length limit
        assert tl.gold_scores(task, [(7, 8)], cut).tolist() == [0.0]
    states("rlhf-prm-rlvr", "`007+8=`", "`15`", "arXiv 2411.15124", "arXiv 2501.12948")
    assert tuple(question("rlhf-q-prm-rlvr-hacks").answer) == (0, 1, 3)


# -- day 12: MoE -----------------------------------------------------------------------------

MIXTRAL = dict(layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=32000, experts=8, top_k=2)


def mixtral_parts() -> dict[str, float]:
    m = MIXTRAL
    attention = m["layers"] * m["hidden"] * m["head_dim"] * (2 * m["heads"] + 2 * m["kv_heads"])
    expert = 3 * m["hidden"] * m["ffn"]  # SwiGLU: gate, up, down
    shared = (attention + 2 * m["vocab"] * m["hidden"] + m["layers"] * m["hidden"] * m["experts"]  # + router
              + (2 * m["layers"] + 1) * m["hidden"])  # RMSNorm weights
    return {"attention": attention, "embeddings": 2 * m["vocab"] * m["hidden"],
            "experts": m["layers"] * m["experts"] * expert, "active_experts": m["layers"] * m["top_k"] * expert,
            "total": shared + m["layers"] * m["experts"] * expert, "active": shared + m["layers"] * m["top_k"] * expert}


def test_mixtral_total_and_active_parameters():
    parts = mixtral_parts()
    # Jiang et al. 2024, arXiv 2401.04088: 46.7B total, 12.9B active
    assert round(parts["total"] / 1e9, 1) == 46.7 and round(parts["active"] / 1e9, 1) == 12.9
    assert round(parts["experts"] / 1e9, 1) == 45.1 and round(parts["attention"] / 1e9, 2) == 1.34
    assert round(parts["embeddings"] / 1e9, 2) == 0.26 and round(parts["active_experts"] / 1e9, 2) == 11.27
    assert round(calc.weight_bytes(parts["total"], "bf16") / 1e9) == 93
    states("parallelism-moe-total-active", "32 \\cdot 8 \\cdot 3 \\cdot 4096 \\cdot 14336 \\approx 45.1", "$1.34$B",
           "$0.26$B", "$46.7$B", "11.27 + 1.34 + 0.26 \\approx 12.9", "$93$ GB")
    counts = calc.moe_param_counts(calc.get_preset("mixtral-8x7b"))  # the calculator's preset agrees
    assert close(counts.total, parts["total"], rel=2e-3) and close(counts.active, parts["active"], rel=2e-3)
    assert right_choice("parallelism-q-moe-active").startswith("About 93 GB of weights (all experts)")
    states("parallelism-q-moe-active", "$46.7$B", "$93$ GB", "2 \\times 12.9")


def test_topk_gate_is_the_renormalised_softmax_and_top1_renormalising_kills_the_router_gradient():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([0.3, 2.0, -1.0, 1.4, 0.1, -0.2, 0.9, 0.0], dtype=torch.float64, requires_grad=True)
    top = torch.topk(logits, 2).indices
    full = torch.softmax(logits, 0)
    assert torch.allclose(torch.softmax(logits[top], 0), full[top] / full[top].sum())
    (grad_renormalised,) = torch.autograd.grad(torch.softmax(logits[top[:1]], 0).sum(), logits)
    (grad_switch,) = torch.autograd.grad(full[top[0]], logits)
    assert torch.all(grad_renormalised == 0) and grad_switch.abs().sum() > 0
    states("parallelism-moe-router", "y = \\sum_{i \\in \\mathrm{TopK}} g_i \\, \\mathrm{FFN}_i(x)", "arXiv 2101.03961")


def switch_aux(probs, expert_of_token, n):
    """N * sum_i f_i * P_i: f from the hard assignment (no gradient), P the mean router probability."""
    import torch

    f = torch.bincount(expert_of_token, minlength=n).to(probs.dtype) / len(expert_of_token)
    return n * (f * probs.mean(0)).sum()


def test_switch_load_balancing_loss_is_one_balanced_and_n_collapsed():
    torch = pytest.importorskip("torch")
    n = 8
    tokens = torch.arange(800) % n
    assert math.isclose(float(switch_aux(torch.full((800, n), 1 / n), tokens, n)), 1.0)
    collapsed = torch.zeros(800, n)
    collapsed[:, 0] = 1
    assert float(switch_aux(collapsed, torch.zeros(800, dtype=torch.long), n)) == n
    assert numeric_answer("parallelism-q-moe-aux-collapse") == n
    states("parallelism-q-moe-aux-collapse", "8 \\times 1 \\times 1 = 8", "$f_i = P_i = 1/8$")
    logits = torch.randn(800, n, generator=torch.Generator().manual_seed(0)) + torch.linspace(2, 0, n)
    logits.requires_grad_(True)
    probs = torch.softmax(logits, 1)
    (grad,) = torch.autograd.grad(switch_aux(probs, probs.argmax(1).detach(), n), logits)
    load = torch.bincount(probs.argmax(1), minlength=n)
    busiest, idlest = int(load.argmax()), int(load.argmin())
    assert grad[:, busiest].sum() > 0 > grad[:, idlest].sum()  # descent lowers the busiest expert's logits
    states("parallelism-moe-aux-loss", "L_{aux} = \\alpha N \\sum_{i=1}^{N} f_i P_i", "N \\cdot N / N^2 = 1", "10^{-2}")


def test_expert_capacity_and_dropping():
    tokens, experts, k = 4096, 8, 2
    assert 1.25 * tokens * k / experts == 1280
    assert 1.5 * 8192 * 2 / 16 == numeric_answer("parallelism-q-moe-capacity") == 1536
    states("parallelism-q-moe-capacity", "1.5 \\times 8192 \\times 2 / 16 = 1536")
    states("parallelism-moe-capacity", "1.25 \\times 4096 \\times 2 / 8 = 1280", "arXiv 2211.15841")
    rng = np.random.default_rng(0)
    popularity = rng.dirichlet(np.ones(experts) * 20)  # a mildly unbalanced router
    choices = np.array([rng.choice(experts, size=k, replace=False, p=popularity) for _ in range(tokens)])
    load = np.bincount(choices.ravel(), minlength=experts)

    def dropped(factor: float) -> int:
        return int(np.maximum(load - factor * tokens * k / experts, 0).sum())

    assert dropped(1.0) > dropped(1.25) >= 0 and dropped(1.0) > 0


def test_expert_parallel_all_to_all_bytes():
    tokens, hidden, k, ep, bf16 = 4096, 4096, 2, 8, 2
    per_direction = tokens * k * hidden * bf16 * (ep - 1) / ep
    assert per_direction == 58_720_256 == 56 * MIB
    states("parallelism-moe-all-to-all", "4096 \\times 2 \\times 4096 \\times 2 \\times 7/8 = 58{,}720{,}256", "56 MiB",
           "112 MiB", "arXiv 2412.19437")
    rng = np.random.default_rng(0)  # uniform routing: 7 in 8 of the token copies leave their rank
    expert = rng.integers(0, 64, size=(tokens, k))
    leaving = np.mean(expert // (64 // ep) != 0)  # the tokens of rank 0; experts 0..7 live on rank 0
    assert abs(leaving - (ep - 1) / ep) < 0.01
    assert calc.expert_parallel_all_to_all_bytes(tokens, hidden, k, ep, dtype="bf16") == 2 * per_direction == 112 * MIB
    for drawn in drawn_params("parallelism-q-moe-a2a-bytes"):  # the parametric question's formula, as explained
        t, h, k_, e = drawn["tokens"], drawn["hidden"], drawn["top_k"], drawn["ep"]
        assert math.isclose(calc.expert_parallel_all_to_all_bytes(t, h, k_, e), 2 * t * k_ * h * 2 * (e - 1) / e)
    states("parallelism-q-moe-a2a-bytes", "2 \\cdot T \\cdot k \\cdot h \\cdot 2 \\cdot (ep - 1)/ep")


def test_bias_based_balancing_equalises_load_without_touching_the_gates():
    rng = np.random.default_rng(0)
    experts, k, gamma = 8, 2, 0.01
    skew = np.linspace(1.0, -1.0, experts)
    bias = np.zeros(experts)
    scores = 1 / (1 + np.exp(-(rng.normal(size=(2048, experts)) + skew)))  # sigmoid affinities
    imbalance = []
    for _ in range(300):
        chosen = np.argsort(-(scores + bias), axis=1)[:, :k]  # the bias only steers the choice
        load = np.bincount(chosen.ravel(), minlength=experts)
        imbalance.append(load.max() / load.mean())
        bias -= gamma * np.sign(load - load.mean())
    assert imbalance[0] > 1.5 and imbalance[-1] < 1.1
    assert bias[0] < 0 < bias[-1]  # the favoured expert was pushed down, the neglected one up
    states("parallelism-moe-aux-free", "arXiv 2408.15664", "arXiv 2412.19437", "$\\gamma$")


# -- day 12: long context --------------------------------------------------------------------

def attention(q, k, v):
    s = q @ k.T / math.sqrt(q.shape[-1])
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True) @ v


def test_ring_attention_with_online_softmax_is_exact_in_any_block_order():
    rng = np.random.default_rng(0)
    p, block, d = 4, 16, 32
    q, k, v = (rng.normal(size=(p * block, d)) for _ in range(3))
    full = attention(q, k, v)
    for rank in range(p):
        mine = slice(rank * block, (rank + 1) * block)
        m = np.full(block, -np.inf)
        denom, out = np.zeros(block), np.zeros((block, d))
        for step in range(p):  # the KV block held at this step came from rank - step
            src = (rank - step) % p
            kv = slice(src * block, (src + 1) * block)
            s = q[mine] @ k[kv].T / math.sqrt(d)
            m_new = np.maximum(m, s.max(1))
            scale = np.exp(m - m_new)
            e = np.exp(s - m_new[:, None])
            denom, out, m = denom * scale + e.sum(1), out * scale[:, None] + e @ v[kv], m_new
        assert np.allclose(out / denom[:, None], full[mine])
    states("parallelism-long-ring-attention", "e^{m_{old} - m_{new}}", "arXiv 2310.01889")
    assert right_choice("parallelism-q-long-ring").startswith("Key/value blocks")


def test_ring_attention_hides_communication_above_f_over_b_tokens():
    flops, nic, nvlink = 989e12, 50e9, 450e9
    c, d = flops / nic, 4096
    assert math.isclose(4 * c**2 * d / flops, 4 * c * d / nic)  # compute time equals transfer time at c = F/B
    assert 4 * (2 * c) ** 2 * d / flops > 4 * (2 * c) * d / nic  # and exceeds it above
    assert c == 19_780 and round(flops / nvlink, -2) == 2_200
    states("parallelism-long-ring-overlap", "4c^2 d", "2 \\cdot c \\cdot d \\cdot 2 = 4cd", "c \\ge F / B", "19{,}780",
           "2{,}200")


def test_ulysses_all_to_all_head_sharding_is_exact_and_bounded_by_kv_heads():
    rng = np.random.default_rng(0)
    p, s, heads, dh = 4, 32, 8, 8
    q, k, v = (rng.normal(size=(heads, s, dh)) for _ in range(3))
    full = np.stack([attention(q[h], k[h], v[h]) for h in range(heads)])
    seq, hp = s // p, heads // p
    # rank r starts with tokens [r*seq, (r+1)*seq) of every head
    start = [[t[:, r * seq:(r + 1) * seq] for t in (q, k, v)] for r in range(p)]
    # the all-to-all: rank r receives from every rank that rank's tokens of heads [r*hp, (r+1)*hp)
    after = [[np.concatenate([start[src][i][r * hp:(r + 1) * hp] for src in range(p)], axis=1) for i in range(3)]
             for r in range(p)]
    out = np.concatenate([np.stack([attention(*(t[h] for t in after[r])) for h in range(hp)]) for r in range(p)])
    assert np.allclose(out, full)
    assert (LLAMA3.heads, LLAMA3.kv_heads) == (32, 8)
    assert numeric_answer("parallelism-q-long-ulysses-limit") == LLAMA3.kv_heads
    states("parallelism-long-ulysses", "arXiv 2309.14509", "$p \\le 8$", "arXiv 2405.07719")


def rope_thetas(d: int = 128, base: float = 10000.0) -> np.ndarray:
    return base ** (-2 * np.arange(d // 2) / d)


def test_rope_wavelengths_and_the_pairs_that_never_turn_in_training():
    theta = rope_thetas()
    wavelength = 2 * np.pi / theta
    assert math.isclose(wavelength[0], 2 * math.pi) and round(wavelength[-1]) == 54_410
    assert math.isclose(wavelength[-1], 2 * math.pi * 10000 ** (126 / 128))
    assert int((wavelength > 4096).sum()) == 18 and len(theta) == 64
    states("parallelism-long-rope-frequencies", "\\theta_i = b^{-2i/d}", "2\\pi \\approx 6.3", "54{,}410",
           "arXiv 2104.09864")


def test_position_interpolation_divides_every_frequency():
    theta, s, trained = rope_thetas(), 8, 4096
    pi_theta = theta / s
    assert np.allclose((s * trained) * pi_theta, trained * theta)  # the largest angles are the trained ones
    assert theta[0] == 1.0 and pi_theta[0] == 1 / s
    states("parallelism-long-position-interpolation", "\\theta_i \\to \\theta_i / s", "arXiv 2306.15595", "32768")
    assert right_choice("parallelism-q-long-pi").startswith("It turns $1/8$ radian")


def test_ntk_aware_base_keeps_the_fastest_pair_and_slows_the_slowest_by_s():
    d, base, s = 128, 10000.0, 4
    new_base = base * s ** (d / (d - 2))
    theta, ntk = rope_thetas(d, base), rope_thetas(d, new_base)
    assert ntk[0] == theta[0] and math.isclose(theta[-1] / ntk[-1], s)
    assert np.allclose(theta / ntk, s ** (2 * np.arange(d // 2) / (d - 2)))
    assert round(new_base, -1) == 40_890
    assert close(numeric_answer("parallelism-q-long-ntk-base"), new_base, rel=5e-3)
    states("parallelism-long-ntk-aware", "b' = b \\cdot s^{d/(d-2)}", "s^{-2i/(d-2)}", "40{,}890")
    assert round(d / (d - 2), 4) == 1.0159 and round(s ** (d / (d - 2)), 3) == 4.089
    states("parallelism-q-long-ntk-base", "4^{128/126} = 4^{1.0159} \\approx 4.089", "40{,}890")


def test_yarn_ramp_counts_and_attention_temperature():
    theta, trained, s, alpha, beta = rope_thetas(), 4096, 8, 1, 32
    turns = trained * theta / (2 * np.pi)
    ramp = np.clip((turns - alpha) / (beta - alpha), 0, 1)
    yarn = (1 - ramp) * theta / s + ramp * theta
    kept, interpolated = np.isclose(yarn, theta), np.isclose(yarn, theta / s)
    assert (int(kept.sum()), int(interpolated.sum()), int((~kept & ~interpolated).sum())) == (21, 18, 25)
    assert round(0.1 * math.log(8) + 1, 3) == 1.208
    states("parallelism-long-yarn", "r_i = L \\theta_i / 2\\pi", "\\sqrt{1/t} = 0.1 \\ln s + 1", "$1.208$",
           "arXiv 2309.00071")


# -- day 13: inference for rollouts ----------------------------------------------------------

def test_static_batch_utilisation_and_continuous_batching():
    lengths = [100] * 7 + [1000]  # 8 slots, one long straggler
    assert sum(lengths) == 1700 and len(lengths) * max(lengths) == 8000 and round(100 * 1700 / 8000) == 21
    states("ref-inf-continuous-batching", "8 \\times 1000 = 8000", "7 \\times 100 + 1000 = 1700", "21%")
    assert numeric_answer("reference-q-inf-static-batch") == (3 * 200 + 2000) / (4 * 2000) * 100 == 32.5
    states("reference-q-inf-static-batch", "4 \\times 2000 = 8000", "3 \\times 200 + 2000 = 2600",
           "2600 / 8000 = 32.5\\%")
    rng = np.random.default_rng(0)  # a queue of long-tailed rollouts on 8 slots
    queue = list(np.minimum(rng.pareto(1.5, 400) * 200 + 20, 8000).astype(int))
    static_steps = sum(max(queue[i:i + 8]) * 8 for i in range(0, len(queue), 8))
    slots, waiting, steps = [0] * 8, list(queue), 0
    while waiting or any(slots):
        slots = [max((left or (waiting.pop(0) if waiting else 0)) - 1, 0) for left in slots]  # refill, decode
        steps += 1
    assert sum(queue) / (8 * steps) > 2 * sum(queue) / static_steps


def test_prefix_sharing_saves_the_prompt_copies():
    per_token = calc.kv_cache(LLAMA3, 1, 1, "fp16")
    assert per_token == 2 * 32 * 8 * 128 * 2 == 131072 == 128 * KIB
    prompt = calc.kv_cache(LLAMA3, 1024, 1, "fp16")
    assert prompt == 128 * MIB and calc.kv_cache(LLAMA3, 1024, 16, "fp16") == 2 * GIB
    assert (16 - 1) * prompt == 1.875 * GIB
    states("ref-inf-prefix-sharing", "2 \\cdot 32 \\cdot 8 \\cdot 128 \\cdot 2 = 131072", "$= 128$ MiB", "2 GiB",
           "$1.875$ GiB", "arXiv 2312.07104")
    saved = calc.kv_cache(LLAMA3, 2048, 7, "fp16")
    assert saved == numeric_answer("reference-q-inf-prefix-saving") == 1.75 * GIB
    states("reference-q-inf-prefix-saving", "$= 256$ MiB", "$7 \\times 256$ MiB $= 1792$ MiB $= 1.75$ GiB")


def test_block_table_waste_against_a_contiguous_reservation():
    blocks = math.ceil(1000 / 16)
    last = 1000 - (blocks - 1) * 16
    assert (blocks, last, 16 - last) == (63, 8, 8)
    assert calc.kv_cache(LLAMA3, 16 - last, 1, "fp16") == 1 * MIB
    assert calc.kv_cache(LLAMA3, 4096 - 1000, 1, "fp16") == 387 * MIB
    states("ref-inf-block-table", "\\lceil 1000/16 \\rceil = 63", "1000 - 62 \\times 16 = 8", "1 MiB", "3096",
           "387 MiB",
           "arXiv 2309.06180")


def test_kv_budget_in_sequences_for_gqa_and_mha():
    budget = 0.9 * 80e9
    found = {}
    for model in (LLAMA3, LLAMA2):
        weights = calc.weight_bytes(model.params, "bf16")
        tokens = (budget - weights) / calc.kv_cache(model, 1, 1, "fp16")
        found[model.name] = (weights / 1e9, (budget - weights) / 1e9, tokens, tokens / 4096)
    w3, left3, tok3, seq3 = found["llama-3-8b"]
    w2, left2, tok2, seq2 = found["llama-2-7b"]
    assert (round(w3, 2), round(left3, 1), round(tok3, -2), int(seq3)) == (16.06, 55.9, 426_800, 104)
    assert (round(w2, 2), round(left2, 1), round(tok2, -2), int(seq2)) == (13.48, 58.5, 111_600, 27)
    assert calc.kv_cache(LLAMA2, 1, 1, "fp16") == 512 * KIB
    assert round(seq3 / seq2) == 4  # "about four times as many rollouts at once"
    states("ref-inf-kv-budget", "72 - 16.06 = 55.9", "426{,}800", "104", "72 - 13.48 = 58.5", "512 KiB",
           "111{,}600", "27")
    texts = _texts()["ref-inf-kv-budget"]
    assert "about four times as many" in texts["en"] and "约为原来的四倍" in texts["zh"]


def test_speculative_sampling_reproduces_the_target_distribution():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
    accept = np.minimum(1, p / q)
    residual = np.maximum(p - q, 0) / np.maximum(p - q, 0).sum()
    alpha = float(np.sum(q * accept))
    assert np.allclose(q * accept + (1 - alpha) * residual, p)  # exact
    assert math.isclose(alpha, np.minimum(p, q).sum()) and math.isclose(alpha, 1 - 0.5 * np.abs(p - q).sum())
    draws = rng.choice(6, size=200_000, p=q)
    kept = rng.random(draws.size) < accept[draws]
    out = np.where(kept, draws, rng.choice(6, size=draws.size, p=residual))
    assert np.abs(np.bincount(out, minlength=6) / draws.size - p).max() < 0.005  # sampled, too
    states("ref-inf-speculative-exact", "\\min(1, p(x)/q(x))", "1 - \\mathrm{TV}(p, q)", "arXiv 2211.17192")


def test_the_speculative_lab_keeps_the_target_distribution_and_its_control_does_not():
    torch = pytest.importorskip("torch")
    from labs import speculative

    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    rows = 200_000
    drafted = torch.multinomial(q.expand(rows, 4), 1, replacement=True, generator=gen)  # k = 1
    target, draft = p.expand(rows, 2, 4).contiguous(), q.expand(rows, 1, 4).contiguous()
    beta = float(torch.minimum(p, q).sum())
    for residual, expected in ((True, p), (False, torch.minimum(p, q) + (1 - beta) * p)):
        kept, token = speculative.accept_reject(target, draft, drafted, gen, residual=residual)
        first = torch.where(kept == 1, drafted[:, 0], token)
        assert torch.allclose(torch.bincount(first, minlength=4).double() / rows, expected, atol=0.005)
    assert not torch.allclose(torch.minimum(p, q) + (1 - beta) * p, p, atol=0.05)  # the control is visibly off
    assert math.isclose(speculative.tokens_per_forward_formula(0.8, 4), expected_tokens(0.8, 4))
    assert "samples $p$ instead of the residual" in _texts()["ref-inf-speculative-exact"]["en"]
    assert "改从 $p$ 采样的对照组" in _texts()["ref-inf-speculative-exact"]["zh"]
    assert "(p - q)_+" in right_choice("reference-q-inf-spec-exact")


def expected_tokens(alpha: float, k: int) -> float:
    return (1 - alpha ** (k + 1)) / (1 - alpha)


def test_speculative_tokens_per_target_step():
    rng = np.random.default_rng(0)
    for alpha, k in ((0.8, 4), (0.6, 4), (0.7, 3)):
        accepted = rng.random((200_000, k)) < alpha
        run = np.where(accepted.all(1), k, np.argmin(accepted, 1))  # accepted prefix length
        assert abs((run + 1).mean() - expected_tokens(alpha, k)) < 0.02  # plus the target's own token
        assert math.isclose(expected_tokens(alpha, k), sum(alpha**j for j in range(k + 1)))
    assert round(expected_tokens(0.8, 4), 2) == 3.36 and round(expected_tokens(0.6, 4), 2) == 2.31
    states("ref-inf-speculative-speedup", "\\frac{1 - \\alpha^{k+1}}{1 - \\alpha}", "(1 - 0.8^5)/0.2 = 3.36", "$2.31$")
    assert close(numeric_answer("reference-q-inf-spec-tokens"), expected_tokens(0.7, 3), rel=1e-3)
    assert math.isclose(0.7**4, 0.2401)
    states("reference-q-inf-spec-tokens", "\\frac{1 - 0.7^4}{0.3} = \\frac{1 - 0.2401}{0.3} \\approx 2.533")
    for alpha, k in ((0.8, 4), (0.6, 4), (0.7, 3)):
        assert math.isclose(calc.speculative_tokens_per_step(alpha, k), expected_tokens(alpha, k))
    speedup = expected_tokens(0.8, 4) / (4 * 0.1 + 1)
    assert round(speedup, 2) == 2.40 and math.isclose(calc.speculative_speedup(0.8, 4, 0.1), speedup)
    states("ref-inf-speculative-speedup", "$c = 0.1$", "3.36 / (4 \\times 0.1 + 1) = 2.40")
    for drawn in drawn_params("reference-q-inf-spec-speedup"):
        a, k, c = drawn["alpha"], drawn["k"], drawn["draft_cost"]
        assert math.isclose(calc.speculative_speedup(a, k, c), expected_tokens(a, k) / (k * c + 1))
    states("reference-q-inf-spec-speedup", "\\frac{1 - \\alpha^{k+1}}{1 - \\alpha}", "$k c + 1$")
