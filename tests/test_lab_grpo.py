"""The grpo lab's --toy run: pass rate before vs after, the memory note against PPO, GRPO vs Dr. GRPO lengths."""

from __future__ import annotations

import math

import pytest

from claims import Claim, LabResult, check_claims
from labs._runtime import run_in_process


def _row(r: LabResult, table: str, first: str) -> dict:
    return next(row for row in r.tables[table] if next(iter(row.values())) == first)


def _memory(r: LabResult, algorithm: str, column: str) -> float:
    return _row(r, "memory_vs_ppo", algorithm)[column]


CLAIMS = [
    Claim("sampled pass rate gain, after - before GRPO",
          lambda r: r.h["pass_rate_after"] - r.h["pass_rate_before"], ">", 0.06),
    Claim("greedy pass rate gain, after - before GRPO",
          lambda r: r.h["greedy_pass_rate_after"] - r.h["greedy_pass_rate_before"], ">", 0.02),
    Claim("parameters held, PPO - GRPO (the value model)",
          lambda r: _memory(r, "PPO", "parameters") - _memory(r, "GRPO", "parameters"), ">", 0,
          null=0.0),
    Claim("sampled pass rate gain of Dr. GRPO, same run",
          lambda r: _row(r, "length_bias", "dr_grpo")["pass_rate"] - r.h["pass_rate_before"], ">", 0.06),
    Claim("greedy pass rate gain of Dr. GRPO, same run",
          lambda r: _row(r, "length_bias", "dr_grpo")["greedy_pass_rate"] - r.h["greedy_pass_rate_before"],
          ">", 0.02),
    # probably as the SFT model's cut-short answers ("44" for 440), its shortest wrong ones, grow rarer
    # (not measured separately)
    Claim("wrong-answer length, after - before GRPO",
          lambda r: r.h["wrong_length_after"] - r.h["wrong_length_before"], ">", 0.1),
    # GRPO vs Dr. GRPO on wrong-answer length goes the way Dr. GRPO predicts on the grid, but by
    # +0.010 to +0.024 tokens on a 3.9-token answer: too small to hold on every CPU, so the
    # length_bias table reports it and no claim rests on it (answers here are too short to ramble)
]


@pytest.mark.lab
def test_grpo_toy_raises_the_pass_rate_and_tables_both_loss_types(tmp_path):
    events = run_in_process("grpo", toy=True, out_dir=tmp_path)
    result = LabResult.of(events)
    check_claims(CLAIMS, result)
    head = result.h
    grpo_row, ppo_row = result.tables["memory_vs_ppo"][:2]
    assert grpo_row["trained"] < ppo_row["trained"] and head["policy_parameters"] == grpo_row["trained"]
    lengths = result.tables["length_bias"]
    assert [row["policy"] for row in lengths] == ["SFT (start)", "grpo", "dr_grpo"]
    budget = result.config["extra_tokens"] + 5  # answer_len + 1 + extra for three-digit + one-digit sums
    for row in lengths:
        assert 2 <= row["mean_length"] <= budget and 0.0 <= row["pass_rate"] <= 1.0
        assert row["wrong_length"] is None or 1 <= row["wrong_length"] <= budget  # None: no wrong answer
    # the table repeats the headline of the main run
    assert lengths[1]["pass_rate"] == head["pass_rate_after"] and lengths[0]["pass_rate"] == head["pass_rate_before"]
    assert head["dr_grpo_pass_rate"] == lengths[2]["pass_rate"]
    for prefix in ("charts", "compare/charts"):
        fractions = [v for _, v in result.metrics[f"{prefix}/zero_std_fraction"]]
        assert len(fractions) == result.config["iterations"] and all(0.0 <= f <= 1.0 for f in fractions)
        assert all(v >= 0.0 for _, v in result.metrics[f"{prefix}/group_reward_std"])
        assert all(math.isfinite(v) for _, v in result.metrics[f"{prefix}/length"])
    assert (tmp_path / "grpo_policy.pt").exists()
