"""The rlhf lab's --toy run: the reward model, then reward hacking without the KL term."""

from __future__ import annotations

import pytest

from labs._runtime import run_in_process


@pytest.mark.lab
def test_rlhf_toy_pipeline_and_reward_hacking(tmp_path):
    events = run_in_process("rlhf", toy=True, out_dir=tmp_path)
    logs = [e["text"] for e in events if e["event"] == "log"]
    assert [t for t in logs if t.startswith("stage ")] == [
        "stage 1/3: SFT", "stage 2/3: reward model from preference pairs (Bradley-Terry)",
        next(t for t in logs if t.startswith("stage 3/3"))]
    head = next(e for e in events if e["event"] == "summary")["headline"]
    assert head["rm_heldout_accuracy"] >= 0.8
    # kl_coef = 0: the proxy ends at its peak while the gold score has fallen from its peak
    assert head["no_kl_proxy_end"] >= head["no_kl_proxy_peak"] - 0.05
    assert head["no_kl_proxy_end"] > head["no_kl_proxy_start"]
    assert head["no_kl_gold_end"] < head["no_kl_gold_peak"] - 0.03
    # with the KL term both rise
    assert head["with_kl_proxy_end"] > head["with_kl_proxy_start"]
    assert head["with_kl_gold_end"] > head["with_kl_gold_start"]
    assert head["with_kl_gold_end"] > head["no_kl_gold_end"]
