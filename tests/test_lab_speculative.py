"""The speculative decoding lab: exact greedy outputs, the target's distribution, tokens per target forward."""

from __future__ import annotations

import io

import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import speculative as spec
from labs._runtime import EXIT_USAGE, main, run_in_process
from labs._tinylm import build_model, cpu_threads, model_config

CLAIMS = [
    Claim("greedy speculative tokens that differ from the target's own greedy decoding", "greedy_mismatched_tokens",
          "<", 0.5, null=None),
    Claim("draft tokens the greedy check rejected and corrected (so it tests something)", "greedy_drafts_rejected",
          ">", 200),
    Claim("speculative samples vs the exact target distribution, chi-square z", "chi2_z_speculative", "<", 5,
          null=None),
    Claim("the same test on the control without the residual, chi-square z", "chi2_z_no_residual", ">", 20),
    Claim("tokens per target forward vs (1 - a^(k+1)) / (1 - a) at the measured a, max relative error",
          "formula_max_rel_err", "<", 0.08, null=None),
    Claim("acceptance rate, best draft - weakest (untrained) draft",
          lambda r: r.h["alpha_best_draft"] - r.h["alpha_weakest_draft"], ">", 0.2),
    Claim("tokens per target forward, best draft at k=4 (plain decoding: 1)", "tokens_per_target_forward_at_k", ">", 2,
          null=1),
]


@pytest.mark.lab
def test_toy_run_is_exact_and_matches_the_formula(tmp_path):
    events = run_in_process("speculative", toy=True, out_dir=tmp_path)
    result = LabResult.of(events)
    check_claims(CLAIMS, result)
    assert {"distribution_test", "draft_quality", "lookahead", "wall_clock"} <= result.tables.keys()
    assert result.column("lookahead", "k") == list(spec.TOY["lookaheads"])
    for chart in spec.CHARTS:  # every declared chart reads columns the run really emits
        assert set(chart.series) <= set(result.tables[chart.table][0])


@pytest.mark.parametrize("bad", ["k=0", "draft_steps=", "draft_steps=40,0", "check_draft=9", "test_tokens=4",
                                 "support=20", "new_tokens=100", "lookaheads=0", "draft_width=10"])
def test_bad_settings_are_usage_errors_naming_the_field(bad, tmp_path, capsys):
    assert main(["speculative", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE
    assert bad.split("=")[0] in capsys.readouterr().err


# -- the accept/reject step on hand-built distributions -------------------------------------------

P = torch.tensor([0.5, 0.3, 0.2, 0.0])
Q = torch.tensor([0.1, 0.2, 0.3, 0.4])
P_NEXT = torch.tensor([0.1, 0.1, 0.1, 0.7])  # the target's distribution at the bonus position


def one_round(n: int, residual: bool, seed: int = 0):
    """k = 1 on n identical rows: the draft samples from Q, the target's p is P then P_NEXT."""
    gen = torch.Generator().manual_seed(seed)
    drafted = torch.multinomial(Q.double(), n, replacement=True, generator=gen)[:, None]
    p = torch.stack([P, P_NEXT]).double().expand(n, -1, -1)
    q = Q.double().expand(n, 1, -1)
    kept, token = spec.accept_reject(p, q, drafted, gen, residual)
    return drafted[:, 0], kept, token


def test_accept_reject_emits_exactly_the_target_distribution():
    n = 200_000
    drafted, kept, token = one_round(n, residual=True)
    first = torch.where(kept == 1, drafted, token)
    assert (torch.bincount(first, minlength=4) / n - P).abs().max() < 0.005
    assert abs(kept.double().mean() - torch.minimum(P, Q).sum()) < 0.005  # P(accept) = sum min(p, q) = 0.6
    bonus = token[kept == 1]  # after a kept draft, the next token comes from the next position's p
    assert (torch.bincount(bonus, minlength=4) / len(bonus) - P_NEXT).abs().max() < 0.01
    assert not (first == 3).any()  # p(3) = 0: never emitted, although the draft proposes it most


def test_skipping_the_residual_is_not_the_target_distribution():
    n = 200_000
    drafted, kept, token = one_round(n, residual=False)
    first = torch.where(kept == 1, drafted, token)
    # min(p, q) + (1 - beta) p, not p: token 0 gets 0.1 + 0.4 * 0.5 = 0.3 instead of 0.5
    expected = torch.minimum(P, Q) + (1 - torch.minimum(P, Q).sum()) * P
    assert (torch.bincount(first, minlength=4) / n - expected).abs().max() < 0.005
    assert abs(float((first == 0).double().mean()) - 0.5) > 0.15


def test_rejection_stops_the_round_at_the_first_refused_draft():
    p = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]]).double()  # k = 2: the target refuses token 0 always
    q = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]).double()
    kept, token = spec.accept_reject(p, q, torch.tensor([[0, 0]]), torch.Generator().manual_seed(0))
    assert kept.tolist() == [0] and token.tolist() == [1]  # the second draft (which p would accept) is not looked at
    q = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]).double()
    kept, _ = spec.accept_reject(p, q, torch.tensor([[1, 0]]), torch.Generator().manual_seed(0))
    assert kept.tolist() == [2]  # both equal to p: both kept, the token is the bonus


def test_greedy_is_the_same_rule_with_one_hot_distributions():
    one_hot = lambda i: torch.nn.functional.one_hot(torch.tensor(i), 4).double()  # noqa: E731
    p = torch.stack([torch.stack([one_hot(2), one_hot(1), one_hot(3)])])
    for drafts, kept, token in (([2, 1], 2, 3), ([2, 0], 1, 1), ([0, 1], 0, 2)):
        q = torch.stack([torch.stack([one_hot(d) for d in drafts])])
        got = spec.accept_reject(p, q, torch.tensor([drafts]), torch.Generator().manual_seed(1))
        assert (got[0].item(), got[1].item()) == (kept, token)


def test_formula_and_chi_square():
    assert spec.tokens_per_forward_formula(0.0, 4) == 1.0
    assert spec.tokens_per_forward_formula(1.0, 4) == 5.0
    assert spec.tokens_per_forward_formula(0.5, 2) == pytest.approx(1.75)
    probs = torch.tensor([[0.5, 0.3, 0.17, 0.02, 0.01], [0.2, 0.2, 0.2, 0.2, 0.2]]).double()
    stat, dof = spec.chi_square(probs * 100, probs)
    assert stat == pytest.approx(0.0, abs=1e-9) and dof == 2 + 4  # row 1: 50, 30 and 17 + 2 + 1 (3 alone is small)
    stat, _ = spec.chi_square(torch.tensor([[60.0, 20.0, 14.0, 6.0, 0.0]]).double(), probs[:1])
    assert stat == pytest.approx(10**2 / 50 + 10**2 / 30 + 0**2 / 20)


# -- decoding with real (untrained) tiny models ------------------------------------------------------

@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    target = build_model(model_config(32, 2, 4, 64, 40, 12)).eval()
    draft = build_model(model_config(16, 1, 4, 32, 40, 12)).eval()
    with cpu_threads(1):  # tiny forwards: more threads only spin on a shared CPU (10x slower here)
        yield target, draft


def test_padding_and_dedup_do_not_change_the_distributions(models):
    target, _ = models
    buf = torch.randint(12, (6, 10), generator=torch.Generator().manual_seed(3))
    buf[3] = buf[0]
    positions = torch.tensor([[2, 4]] * 6)
    plain = spec.next_token_dists(target, buf, positions, greedy=False)
    assert torch.allclose(spec.next_token_dists(target, buf, positions, greedy=False, dedup=True), plain, atol=1e-6)
    noisy = buf.clone()
    noisy[:, 5:] = 11 - noisy[:, 5:]  # change everything after the last queried position
    assert torch.allclose(spec.next_token_dists(target, noisy, positions, greedy=False), plain, atol=1e-6)


def test_greedy_speculative_decoding_equals_the_targets_greedy_decoding(models):
    target, draft = models
    prompts = torch.randint(12, (16, 5), generator=torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(0)
    for k in (1, 3, 6):
        buf, lengths, totals = spec.speculative_decode(target, draft, prompts, k, gen, new_tokens=20, greedy=True)
        assert (lengths >= 25).all() and totals["checked"] > totals["kept"]  # an untrained draft is often wrong
        assert torch.equal(buf[:, 5:25], spec.target_decode(target, prompts, 20, True, gen)[:, 5:])
