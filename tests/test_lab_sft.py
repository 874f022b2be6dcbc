"""The sft lab's --toy run: completion-only SFT learns the task; the unmasked comparison is reported."""

from __future__ import annotations

import pytest

from labs import sft
from labs._runtime import run_in_process


def _by_type(events, kind):
    return [e for e in events if e["event"] == kind]


@pytest.mark.lab
def test_sft_toy_learns_the_task_and_compares_masking(tmp_path):
    events = run_in_process("sft", toy=True, out_dir=tmp_path)
    head = _by_type(events, "summary")[-1]["headline"]
    assert head["gold_score_before"] <= 0.02  # an untrained model answers nothing right
    assert head["gold_score_after"] >= head["gold_score_before"] + 0.4
    assert head["token_accuracy"] > 0.8
    # the same steps without the prompt mask: a worse completion loss and fewer exact answers
    assert head["unmasked_heldout_loss"] > head["heldout_loss"]
    assert head["unmasked_gold_score"] < head["masked_gold_score_at_compare"]
    table = next(t for t in _by_type(events, "table") if t["name"] == "prompt_masking")
    assert [row[0] for row in table["rows"]] == ["masked (completion only)", "unmasked (every token)"]
    names = set().union(*(e["values"] for e in _by_type(events, "metric")))
    assert {"losses/train", "losses/heldout", "eval/token_accuracy", "eval/gold_score",
            "compare/unmasked_gold_score"} <= names
    assert (tmp_path / "sft_model.pt").exists()
    assert sft.checkpoint_path(sft.preset(True, 0, "cpu", 1)).exists()  # cached for the later labs
