"""The dpo lab's --toy run: held-out preference accuracy, margin, and beta bounding the drift."""

from __future__ import annotations

import math

import pytest

from labs._runtime import run_in_process


@pytest.mark.lab
def test_dpo_toy_learns_the_preferences(tmp_path):
    events = run_in_process("dpo", toy=True, out_dir=tmp_path)
    metrics = [e for e in events if e["event"] == "metric"]
    assert metrics[0]["values"]["eval/loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference
    head = next(e for e in events if e["event"] == "summary")["headline"]
    assert head["preference_accuracy"] >= 0.9
    assert head["reward_margin"] > 0
    assert head["chosen_reward"] > head["rejected_reward"]
    assert head["kl_to_ref"] > 0
    sweep = next(e for e in events if e["event"] == "table" and e["name"] == "beta_sweep")
    betas = [row[0] for row in sweep["rows"]]
    assert betas == sorted(betas) and len(betas) >= 3
    assert head["sweep_kl_smallest_beta"] > head["sweep_kl_largest_beta"]  # a small beta drifts further
    assert (tmp_path / "dpo_policy.pt").exists()
