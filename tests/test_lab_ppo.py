"""The ppo lab's --toy run: the reward rises; large unclipped steps run away where clipped ones do not."""

from __future__ import annotations

import pytest

from labs._runtime import run_in_process


@pytest.mark.lab
def test_ppo_toy_improves_and_shows_what_the_clip_does(tmp_path):
    events = run_in_process("ppo", toy=True, out_dir=tmp_path)
    head = next(e for e in events if e["event"] == "summary")["headline"]
    assert head["reward_end"] > head["reward_start"] + 0.08
    assert head["gold_score_after"] > head["gold_score_before"]
    assert 0 < head["kl_to_ref"] < 2.0
    # the same large steps: without the clip the policy ends far further from the reference, and worse
    assert head["large_unclipped_final_kl"] > 1.5 * head["large_clipped_final_kl"]
    assert head["large_unclipped_gold_score"] < head["large_clipped_gold_score"] - 0.1
    names = set().union(*(e["values"] for e in events if e["event"] == "metric"))
    assert {"charts/reward", "charts/kl", "charts/clip_fraction", "charts/approx_kl", "charts/entropy",
            "losses/value"} <= names
    models = next(e for e in events if e["event"] == "table" and e["name"] == "models")
    assert [row[0] for row in models["rows"]][:3] == ["policy", "reference", "value model"]
