"""The kl_estimators lab: k1/k2/k3 as values (bias, variance, sign) and as gradients (which KL each follows)."""

from __future__ import annotations

import io
import math

import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import kl_estimators as kle
from labs._runtime import EXIT_USAGE, main, run_in_process
from labs.protocol import LiveRun, decode

CLAIMS = [
    # as a value
    Claim("|bias(k3)| / KL of the 4096-sample estimate", "k3_abs_rel_bias_n_max", "<", 0.01, null=None),
    Claim("|bias(k3)| of the 4096-sample estimate, in standard errors",
          lambda r: abs(r.h["k3_bias_in_std_errors_n_max"]), "<", 4, null=None),
    Claim("|bias(k1)| / KL of the 4096-sample estimate", "k1_abs_rel_bias_n_max", "<", 0.02, null=None),
    Claim("bias(k2) of the 4096-sample estimate, in standard errors", "k2_bias_in_std_errors_n_max", ">", 10),
    Claim("bias(k2) / KL at the largest distance (tokens)", "k2_rel_bias_far", ">", 0.3),
    Claim("Var[k1] / Var[k3] at the smallest distance (tokens)", "var_ratio_k1_over_k3_close", ">", 30, null=1.0),
    Claim("fraction of k1 samples below 0 at the smallest distance", "neg_frac_k1_close", ">", 0.2),
    Claim("fraction of k3 samples below 0 at the smallest distance", "neg_frac_k3_close", "<", 1e-9, null=None),
    # as a gradient, on-policy: k2 follows the reverse KL, k3 the forward KL, k1 nothing
    Claim("|E grad k1| / |grad KL(q||p)|", "grad_k1_norm_over_reverse", "<", 0.02, null=None),
    Claim("k2's expected gradient: relative error to grad KL(q||p)", "grad_k2_err_reverse", "<", 0.02, null=None),
    Claim("k2's expected gradient: relative error to grad KL(p||q)", "grad_k2_err_forward", ">", 0.3),
    Claim("k3's expected gradient: relative error to grad KL(p||q)", "grad_k3_err_forward", "<", 0.02, null=None),
    Claim("k3's expected gradient: relative error to grad KL(q||p)", "grad_k3_err_reverse", ">", 0.2),
    # off-policy with the importance ratio in the graph: k1 and k3 follow the reverse KL
    Claim("k1 off-policy with ratio: relative error to grad KL(q||p)", "grad_k1_off_err_reverse", "<", 0.02,
          null=None),
    Claim("k3 off-policy with ratio: relative error to grad KL(q||p)", "grad_k3_off_err_reverse", "<", 0.02,
          null=None),
    Claim("k3 off-policy without ratio: relative error to the nearer KL gradient",
          lambda r: min(r.h["grad_k3_off_no_ratio_err_reverse"], r.h["grad_k3_off_no_ratio_err_forward"]),
          ">", 0.1),
]

SMALL = ["sweep_samples=4096", "repeats=16", "sample_sizes=1,4", "grad_samples=4096", "distances=0.5,1"]


@pytest.mark.lab
def test_toy_run_shows_bias_variance_and_the_gradient_each_estimator_follows(tmp_path):
    events = run_in_process("kl_estimators", toy=True, out_dir=tmp_path)
    assert events[0]["event"] == "start" and events[-1]["event"] == "summary"
    result = LabResult.of(events)
    check_claims(CLAIMS, result)
    sweep = result.tables["sweep_tokens"]
    assert [row["distance"] for row in sweep] == list(kle.Config().distances)
    kls = [row["kl"] for row in sweep]
    assert kls == sorted(kls)  # a larger shift moves p further from q
    assert all(row["neg_frac_k3"] == 0.0 for table in ("sweep_tokens", "sweep_gaussian")
               for row in result.tables[table])
    gaussian = result.tables["sweep_gaussian"]
    assert all(row["kl"] == pytest.approx(row["distance"] ** 2 / 2) for row in gaussian)
    # k2's relative bias for unit Gaussians is mu^2/4
    assert gaussian[-2]["bias_k2/kl"] == pytest.approx(gaussian[-2]["distance"] ** 2 / 4, abs=0.03)
    # the variance of the n-sample mean falls as 1/n
    var_k3 = result.column("value_vs_n", "var_k3")
    sizes = result.column("value_vs_n", "n")
    assert var_k3[0] / var_k3[-1] == pytest.approx(sizes[-1] / sizes[0], rel=0.3)
    # KL as a reward (REINFORCE on -k1) gives per sample the same gradient as k2 in the loss
    assert result.h["grad_k1_reward_err_reverse"] == pytest.approx(result.h["grad_k2_err_reverse"], rel=1e-6)


def test_every_chart_reads_series_the_lab_emits_and_draws_them(tmp_path):
    live = LiveRun()
    for event in run_in_process("kl_estimators", toy=True, assignments=SMALL, out_dir=tmp_path):
        live.apply(decode(event))
    live.charts = tuple(kle.CHARTS)  # what the runner sends as the run's charts event
    assert live.missing_series() == []
    for chart in live.charts:
        assert all(len(line.xs) >= 2 for line in live.chart_lines(chart)), chart.title


def test_estimators_on_known_values():
    ks = kle.estimates(torch.tensor([math.log(0.5), 0.0], dtype=torch.float64))
    assert ks["k1"].tolist() == pytest.approx([math.log(2), 0.0])
    assert ks["k2"].tolist() == pytest.approx([0.5 * math.log(2) ** 2, 0.0])
    assert ks["k3"].tolist() == pytest.approx([0.5 + math.log(2) - 1, 0.0])  # the card's example, ~0.193


def test_k2_and_k3_are_never_negative_even_near_r_equal_1():
    log_r = torch.cat([torch.linspace(-20, 5, 10_001, dtype=torch.float64),
                       torch.logspace(-300, -1, 300, dtype=torch.float64),
                       -torch.logspace(-300, -1, 300, dtype=torch.float64)])
    ks = kle.estimates(log_r)
    assert bool((ks["k2"] >= 0).all()) and bool((ks["k3"] >= 0).all())
    assert bool((ks["k1"] < 0).any())


def _pair_and_p(distance=1.5):
    pair = kle.TokenPair.draw(vocab=12, pair_seed=3)
    return pair, pair.log_p(distance)


def test_exact_expectations_k1_k3_unbiased_k2_biased():
    pair, log_p = _pair_and_p()
    log_q = pair.log_q()
    true_kl = float(kle.kl(log_q, log_p))
    means = {name: float((log_q.exp() * k).sum()) for name, k in kle.estimates(log_p - log_q).items()}
    assert means["k1"] == pytest.approx(true_kl, rel=1e-12)
    assert means["k3"] == pytest.approx(true_kl, rel=1e-12)
    assert means["k2"] > true_kl * 1.1


def test_exact_expected_gradients_follow_reverse_forward_and_nothing():
    """E_q[grad k] summed exactly over the vocabulary (samples weighted by a detached q)."""
    pair, log_p = _pair_and_p()
    reverse, forward = kle.exact_gradients(pair, 1.5)
    expected = {}
    for name in kle.KS:
        theta = pair.logits.clone().requires_grad_(True)
        log_q = theta.log_softmax(-1)
        (log_q.exp().detach() * kle.estimates(log_p - log_q)[name]).sum().backward()
        expected[name] = theta.grad
    assert expected["k1"].abs().max() < 1e-12
    assert torch.allclose(expected["k2"], reverse, atol=1e-8)
    assert torch.allclose(expected["k3"], forward, atol=1e-8)
    assert not torch.allclose(reverse, forward, atol=1e-2)


def test_surrogate_modes_on_a_tiny_sample():
    pair, log_p = _pair_and_p()
    log_old = pair.log_old(0.5)
    x = torch.tensor([0, 3, 3, 7])

    def grad(estimator, mode):
        theta = pair.logits.clone().requires_grad_(True)
        kle.surrogate_loss(estimator, mode, theta, x, log_p, log_old).backward()
        return theta.grad

    assert torch.allclose(grad("k1", "reward"), grad("k2", "on-policy"))  # grad k2 = k1 grad log q, per sample
    assert torch.allclose(grad("k3", "no ratio"), grad("k3", "on-policy"))  # same samples, no weight
    assert not torch.allclose(grad("k3", "ratio"), grad("k3", "on-policy"))


def test_finite_difference_of_a_known_function():
    theta = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    grad = kle.finite_difference(lambda t: (t ** 3).sum(), theta)
    assert torch.allclose(grad, 3 * theta ** 2, atol=1e-8)


def test_token_pair_direction_has_unit_spread_so_small_shifts_give_kl_d2_over_2():
    pair = kle.TokenPair.draw(vocab=32, pair_seed=0)
    q = pair.log_q().exp()
    assert float((q * pair.direction).sum()) == pytest.approx(0.0, abs=1e-12)
    assert float((q * pair.direction ** 2).sum()) == pytest.approx(1.0)
    assert float(kle.kl(pair.log_q(), pair.log_p(0.01))) == pytest.approx(0.01 ** 2 / 2, rel=0.05)


def test_deterministic_for_a_seed_and_the_seed_moves_only_the_noise(tmp_path):
    a, b, c = (run_in_process("kl_estimators", toy=True, seed=seed, assignments=SMALL, out_dir=tmp_path / str(i))
               for i, seed in enumerate((4, 4, 5)))
    assert a[-1]["headline"] == b[-1]["headline"]
    assert a[-1]["headline"] != c[-1]["headline"]
    assert a[-1]["headline"]["kl_far"] == c[-1]["headline"]["kl_far"]  # the pair is fixed by pair_seed


@pytest.mark.parametrize("bad", ["distances=0", "distances=", "vocab=1", "repeats=1", "sample_sizes=0",
                                 "grad_samples=10", "value_distance=-1",
                                 "repeats=8192", "old_shift=x", "nope=1"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["kl_estimators", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE
