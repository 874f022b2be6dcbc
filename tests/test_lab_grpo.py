"""The grpo lab's --toy run: pass rate before vs after, and the memory note against PPO."""

from __future__ import annotations

import pytest

from labs._runtime import run_in_process


@pytest.mark.lab
def test_grpo_toy_raises_the_pass_rate(tmp_path):
    events = run_in_process("grpo", toy=True, out_dir=tmp_path)
    head = next(e for e in events if e["event"] == "summary")["headline"]
    assert head["pass_rate_after"] >= head["pass_rate_before"] + 0.1
    assert head["greedy_pass_rate_after"] > head["greedy_pass_rate_before"]
    memory = next(e for e in events if e["event"] == "table" and e["name"] == "memory_vs_ppo")
    grpo_row, ppo_row = memory["rows"][:2]
    assert grpo_row[2] < ppo_row[2] and grpo_row[3] < ppo_row[3]  # no value model to hold or train
    assert head["policy_parameters"] == grpo_row[3]
    values = [e["values"] for e in events if e["event"] == "metric" and "charts/zero_std_fraction" in e["values"]]
    assert values and all(0.0 <= v["charts/zero_std_fraction"] <= 1.0 for v in values)
    assert all(v["charts/group_reward_std"] >= 0.0 for v in values)
