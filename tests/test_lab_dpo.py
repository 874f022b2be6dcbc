"""The dpo lab: DPO on the SFT model's own wrong answers beats the SFT model's own ranking.

The baseline is measured in the same run on the same held-out pairs: the SFT model's
log-prob ranking of (correct answer, its own sampled wrong answer). The noise of a held-out
accuracy is its binomial std, sqrt(p (1 - p) / n) on n ~ 770 pairs, about 0.02; the gain
claims ask for many of those.
"""

from __future__ import annotations

import io
import math
import random

import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import _tinylm as tl
from labs import dpo
from labs._runtime import EXIT_USAGE, main, run_in_process


def _sweep_kl_drop(r: LabResult) -> float:
    """KL to the reference at the smallest beta minus at the largest (same data, seed and steps)."""
    kl = r.column("beta_sweep", "kl_to_ref")
    return kl[0] - kl[-1]


CLAIMS = [
    Claim("held-out preference accuracy, DPO implicit reward - SFT log-prob ranking",
          "preference_accuracy_gain", ">", 0.10),
    Claim("that gain in binomial std of the held-out accuracy", "gain_over_noise", ">", 4.0),
    Claim("held-out ranking by log-probs, DPO policy - SFT model",
          lambda r: r.h["logp_accuracy_dpo"] - r.h["preference_accuracy_sft"], ">", 0.10),
    Claim("gold score (greedy exact match) at the default beta, after - before",
          lambda r: r.h["gold_score_after"] - r.h["gold_score_before"], ">", 0.05),
    Claim("beta sweep: KL to reference at the smallest beta - at the largest", _sweep_kl_drop, ">", 0.5),
]


@pytest.mark.lab
def test_dpo_toy_beats_the_sft_ranking_and_keeps_gold(tmp_path):
    events = run_in_process("dpo", toy=True, out_dir=tmp_path)
    result = LabResult.of(events)
    check_claims(CLAIMS, result)
    metrics = [e for e in events if e["event"] == "metric"]
    assert metrics[0]["values"]["eval/loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference
    assert metrics[0]["values"]["eval/preference_accuracy"] == 0.5  # every implicit reward ties at 0
    head = result.h
    assert head["heldout_pairs"] >= 300 and head["train_pairs"] >= 1000
    assert head["ties_dpo"] == 0
    assert head["chosen_reward"] > head["rejected_reward"]
    assert head["kl_to_ref"] > 0
    assert head["sft_accuracy_on_corrupted"] > head["preference_accuracy_sft"]  # why hand-made negatives teach nothing
    betas = result.column("beta_sweep", "beta")
    assert betas == sorted(betas) and len(betas) >= 3
    assert (tmp_path / "dpo_policy.pt").exists()


def test_ties_count_one_half_and_are_reported():
    acc, ties = dpo.pairwise_accuracy(torch.tensor([1.0, 0.0, 2.0, 0.0]), torch.tensor([0.0, 0.0, 3.0, 0.0]))
    assert acc == pytest.approx((1 + 0.5 + 0 + 0.5) / 4) and ties == 2
    assert dpo.binomial_std(0.5, 100) == pytest.approx(0.05)


def test_on_policy_pairs_reject_only_the_models_wrong_samples():
    task = tl.AdditionTask()
    torch.manual_seed(0)
    model = tl.build_model(tl.model_config(d_model=16, n_layers=1, n_heads=2, d_ff=32)).eval()  # untrained
    problems = task.sample(random.Random(0), 40)
    pairs = dpo.on_policy_pairs(model, task, problems, k=3, temperature=1.0,
                                gen=torch.Generator().manual_seed(0), device="cpu")
    assert len(pairs["problems"]) == pairs["rejected"].shape[0] == pairs["chosen"].shape[0] > 0
    rejected = tl.gold_scores(task, pairs["problems"], pairs["rejected"])
    chosen = tl.gold_scores(task, pairs["problems"], pairs["chosen"])
    assert rejected.sum().item() == 0 and chosen.min().item() == 1.0


@pytest.mark.parametrize("bad", ["beta=0", "temperature=0", "samples_per_prompt=0", "heldout_prompts=0",
                                 "sweep_betas=0.1,-1", "sweep_steps=75"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["dpo", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE
