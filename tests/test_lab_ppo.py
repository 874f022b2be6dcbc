"""The ppo lab's --toy run: the held-out reward rises; large unclipped steps run away where clipped ones do not."""

from __future__ import annotations

import io

import pytest

from claims import Claim, LabResult, check_claims
from labs import ppo
from labs._runtime import EXIT_USAGE, main, run_in_process

CLAIMS = [
    Claim("held-out sampled reward, after - before PPO", lambda r: r.h["sampled_reward_after"]
          - r.h["sampled_reward_before"], ">", 0.08),
    Claim("held-out greedy gold score, after - before PPO", lambda r: r.h["gold_score_after"]
          - r.h["gold_score_before"], ">", 0.01),
    Claim("KL(pi || pi_ref) at the end (nats per answer)", "kl_to_ref", "<", 2.0, null=None),
    # the same large steps from the same start: without the clip the policy ends further from the reference, and worse
    Claim("large steps: end KL to ref, unclipped / clipped", lambda r: r.h["large_unclipped_end_kl"]
          / r.h["large_clipped_end_kl"], ">", 1.35, null=1.0),
    Claim("large steps: gold score, clipped - unclipped", lambda r: r.h["large_clipped_gold_score"]
          - r.h["large_unclipped_gold_score"], ">", 0.08),
]


@pytest.mark.lab
def test_ppo_toy_improves_and_shows_what_the_clip_does(tmp_path):
    events = run_in_process("ppo", toy=True, out_dir=tmp_path)
    result = LabResult.of(events)
    check_claims(CLAIMS, result)
    assert result.h["kl_to_ref"] > 0
    assert {"charts/reward", "charts/kl", "charts/clip_fraction", "charts/approx_kl", "charts/entropy",
            "losses/value", "eval/gold_score", "eval/sampled_reward"} <= result.metrics.keys()
    assert [row["model"] for row in result.tables["models"]][:3] == ["policy", "reference", "value model"]
    assert [row["run"] for row in result.tables["clipping"]] == ["normal", "large steps, clipped",
                                                                 "large steps, unclipped"]


@pytest.mark.parametrize("bad", ["clip_eps=0", "prompts_per_iter=1", "minibatches=0", "big_epochs=0", "lam=1.5"])
def test_bad_settings_are_usage_errors(bad, tmp_path, capsys):
    assert main(["ppo", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE
    assert bad.split("=")[0] in capsys.readouterr().err


def test_every_numeric_field_has_limits():
    numeric = {f for f, v in vars(ppo.Config()).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and f not in ("seed", "threads")}
    assert numeric <= ppo.LIMITS.keys()
