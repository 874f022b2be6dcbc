"""The rlhf lab: a Bradley-Terry reward model picks up the data's spurious cue, and PPO against it hacks at a
small KL coefficient but not at a large one (the shape of Gao et al.); a reward model without the cue is hacked
far less at the same small coefficient."""

from __future__ import annotations

import io
import random

import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import _tinylm as tl
from labs import rlhf
from labs._runtime import EXIT_USAGE, main, run_in_process

CLAIMS = [
    Claim("reward model: held-out pairwise accuracy", "rm_heldout_accuracy", ">", 0.69, null=0.5),
    Claim("small beta: proxy reward, end - start", lambda r: r.h["small_beta_proxy_end"]
          - r.h["small_beta_proxy_start"], ">", 0.3),
    Claim("small beta: gold score, start - end (it falls)", lambda r: r.h["small_beta_gold_start"]
          - r.h["small_beta_gold_end"], ">", 0.15),
    Claim("large beta: gold score, start - end (does not fall)", lambda r: r.h["large_beta_gold_start"]
          - r.h["large_beta_gold_end"], "<", 0.1, null=None),
    Claim("same small beta: gold lost, cued RM - ablation RM", lambda r: (r.h["small_beta_gold_start"]
          - r.h["small_beta_gold_end"]) - (r.h["ablation_gold_start"] - r.h["ablation_gold_end"]), ">", 0.05),
    Claim("same small beta: rise of answers above the sum, cued - ablation", lambda r: (
        r.h["small_beta_too_big_end"] - r.h["small_beta_too_big_start"])
        - (r.h["ablation_too_big_end"] - r.h["ablation_too_big_start"]), ">", 0.15),
]


@pytest.mark.lab
def test_rlhf_toy_reward_hacking_comes_from_the_data(tmp_path):
    events = run_in_process("rlhf", toy=True, out_dir=tmp_path)
    result = LabResult.of(events)
    check_claims(CLAIMS, result)
    logs = [e["text"] for e in events if e["event"] == "log"]
    assert [t.split(":")[0] for t in logs if t.startswith("stage ")] == ["stage 1/3", "stage 2/3", "stage 3/3"]
    table = result.tables["overoptimization"]
    cfg = rlhf.Config(**{k: v for k, v in rlhf.TOY.items()})
    assert {(r["reward_model"], r["beta"]) for r in table} == {*(("cued", b) for b in cfg.kl_coefs),
                                                              ("ablation", min(cfg.kl_coefs))}
    assert all(r["sqrt_kl"] == 0 for r in table if r["iteration"] == 0)
    # the cued reward model learned the cue: it ranks the bigger near miss above the right answer
    assert result.h["rm_accuracy_right_is_smaller"] < 0.5 < result.h["rm_heldout_accuracy"]
    assert [r["reward_model"] for r in result.tables["reward_models"]] == ["cued", "ablation"]


def test_reward_model_reads_the_last_real_token():
    torch.manual_seed(0)
    rm = rlhf.RewardModel(tl.build_model(tl.model_config()))
    task = tl.AdditionTask()
    prompts = tl.encode_prompts(task, [(435, 5), (435, 5)])
    short = tl.encode_completions(["440"], task.answer_len + 1)
    padded = tl.encode_completions(["440"], task.answer_len + 3)  # more <pad> after the <eos>
    with torch.no_grad():
        a, b = rm(prompts[:1], short), rm(prompts[:1], padded)
        ids = torch.cat([prompts[:1], short], 1)
        by_hand = rm.head(rm.trunk(input_ids=ids).last_hidden_state[0, task.prompt_len + 3]).item()
    assert a.item() == pytest.approx(b.item(), abs=1e-5) == pytest.approx(by_hand, abs=1e-5)


def test_preference_pairs_carry_the_cue_only_on_near_misses():
    task = tl.AdditionTask()
    problems = task.sample(random.Random(0), 4000)
    cued = rlhf.preference_pairs(task, problems, random.Random(1), 0.5, 0.9, "cpu")
    plain = rlhf.preference_pairs(task, problems, random.Random(1), 0.5, 0.5, "cpu")
    near = cued["near_miss"]
    assert 0.45 < float(near.float().mean()) < 0.55 and torch.equal(near, plain["near_miss"])
    assert 0.87 < float(cued["chosen_bigger"][near].float().mean()) < 0.93
    assert 0.46 < float(plain["chosen_bigger"][near].float().mean()) < 0.54
    assert 0.45 < float(cued["chosen_bigger"][~near].float().mean()) < 0.55  # cut short or one digit too long
    for i in range(200):
        chosen, rejected = (tl.TOKENIZER.decode(cued[k][i].tolist())[0] for k in ("chosen", "rejected"))
        assert chosen == task.answer(problems[i]) and rejected != chosen
        assert (len(rejected) == len(chosen)) == bool(near[i]) or abs(int(rejected) - int(chosen)) in (1, 10)


@pytest.mark.parametrize("bad", ["cue_fraction=0.3", "kl_coefs=", "kl_coefs=0.1,0.1", "eval_problems=0",
                                 "rm_batch=0"])
def test_bad_settings_are_usage_errors(bad, tmp_path, capsys):
    assert main(["rlhf", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE
    assert bad.split("=")[0] in capsys.readouterr().err


def test_every_numeric_field_has_limits():
    numeric = {f for f, v in vars(rlhf.Config()).items()
               if isinstance(v, (int, float, tuple)) and not isinstance(v, bool) and f not in ("seed", "threads")}
    assert numeric <= rlhf.LIMITS.keys()
