"""GRPO's variants against hand-computed numbers: Dr. GRPO's loss and advantages, the RLOO baseline."""

from __future__ import annotations

import io
import math

import pytest
import torch

from labs import grpo
from labs._runtime import EXIT_USAGE, main


def test_rloo_advantage_is_the_leave_one_out_difference():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])  # two groups of G = 4
    adv = grpo.group_advantages(rewards, group_size=4, scale_by_std=False, baseline="rloo")
    # r_1 = 1 against the other three (0, 0, 0): +1; r_2 = 0 against (1, 0, 0): -1/3
    assert adv[:4].tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3], abs=1e-6)
    assert adv[4:].tolist() == pytest.approx([1 / 3, 1 / 3, -1.0, 1 / 3], abs=1e-6)


def test_group_mean_advantage_is_rloo_shrunk_by_g_minus_one_over_g():
    gen = torch.Generator().manual_seed(0)
    rewards = torch.bernoulli(torch.full((6 * 8,), 0.4), generator=gen)
    for scale in (False, True):
        mean = grpo.group_advantages(rewards, 8, scale_by_std=scale, baseline="mean")
        rloo = grpo.group_advantages(rewards, 8, scale_by_std=scale, baseline="rloo")
        assert mean.tolist() == pytest.approx((rloo * 7 / 8).tolist(), abs=1e-6)


def test_dr_grpo_advantages_keep_the_mean_and_drop_the_std():
    adv = grpo.group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), group_size=4, scale_by_std=False)
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25], abs=1e-6)
    assert grpo.group_advantages(torch.ones(4), 4, scale_by_std=False).tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="baseline"):
        grpo.group_advantages(torch.ones(4), 4, baseline="median")


def test_dr_grpo_loss_divides_by_the_budget_not_the_length():
    logp = torch.log(torch.full((2, 4), 0.5))
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # |o| = 2 and 4, budget L_max = 4
    adv = torch.tensor([1.0, -0.5])
    # ratio 1, no KL: GRPO -1/2 (1 + (-0.5)) = -0.25; Dr. GRPO -1/2 (2 * 1 / 4 + 4 * (-0.5) / 4) = 0.0
    loss, _ = grpo.grpo_loss(logp, logp, logp, adv, mask, clip_eps=0.2, kl_coef=0.1)
    assert loss.item() == pytest.approx(-0.25, abs=1e-6)
    loss, info = grpo.grpo_loss(logp, logp, logp, adv, mask, clip_eps=0.2, kl_coef=0.1, loss_type="dr_grpo")
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and info["kl"].item() == 0.0
    with pytest.raises(ValueError, match="loss_type"):
        grpo.grpo_loss(logp, logp, logp, adv, mask, 0.2, 0.1, loss_type="dapo")


def test_token_weights_depend_on_length_only_under_grpo():
    """d loss / d logp_t at ratio 1: -A_i / |o_i| for GRPO, -A_i / L_max for Dr. GRPO, on every real token."""
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    adv = torch.tensor([-1.0, -1.0])  # two wrong answers, a short and a long one
    weights = {}
    for loss_type in grpo.LOSS_TYPES:
        logp = torch.log(torch.full((2, 4), 0.5)).requires_grad_(True)
        loss, _ = grpo.grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, 0.2, 0.0, loss_type)
        loss.backward()
        weights[loss_type] = logp.grad * 2  # undo the mean over the two completions
    assert weights["grpo"].flatten().tolist() == pytest.approx([0.5, 0.5, 0, 0, 0.25, 0.25, 0.25, 0.25])
    assert weights["dr_grpo"].flatten().tolist() == pytest.approx([0.25, 0.25, 0, 0, 0.25, 0.25, 0.25, 0.25])


def test_length_stats_split_right_and_wrong():
    stats = grpo.length_stats(torch.tensor([4, 3, 9, 4]), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert stats == {"length": 5.0, "right_length": 4.0, "wrong_length": 6.0}
    assert math.isnan(grpo.length_stats(torch.tensor([4]), torch.tensor([1.0]))["wrong_length"])  # not 0


@pytest.mark.parametrize("bad", ["group_size=1", "extra_tokens=8", "clip_eps=0", "lr=0", "eval_samples=0",
                                 "loss_type=dapo", "baseline=median", "iterations=0"])
def test_bad_grpo_settings_are_usage_errors(bad, tmp_path):
    assert main(["grpo", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE
