"""The alignment labs' losses against hand-computed numbers, and the shared task/model helpers."""

from __future__ import annotations

import math
import random

import pytest
import torch

from labs import _tinylm as tl
from labs import dpo, grpo, ppo, rlhf, sft

LN2 = math.log(2.0)


# -- SFT ----------------------------------------------------------------------------------------

def test_sft_loss_counts_only_masked_tokens():
    # position 0: uniform over 3 tokens (p = 1/3); position 1: logits (0, ln 2, 0) so p(1) = 2/4
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, LN2, 0.0]]])
    targets = torch.tensor([[0, 1]])
    assert sft.sft_loss(logits, targets, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(LN2, abs=1e-6)
    both = (math.log(3.0) + LN2) / 2  # 0.895880
    assert sft.sft_loss(logits, targets, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(both, abs=1e-6)


def test_sft_batch_masks_the_prompt_and_the_padding():
    task = tl.AdditionTask()
    batch = sft.make_batch(task, [(7, 5), (435, 5)], "cpu")  # answers "12" and "440"
    # targets are shifted by one: prompt "007+5=" predicts 5 tokens, then the completion
    assert batch["completion_mask"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 0, 0],
                                                 [0, 0, 0, 0, 0, 1, 1, 1, 1, 0]]
    assert batch["all_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]]


def test_sft_training_is_deterministic_for_a_seed():
    cfg = sft.Config(steps=3, batch_size=8, eval_every=1, eval_problems=5, compare_steps=0)
    with tl.cpu_threads(cfg.threads):
        first, history = sft.train(cfg)
        torch.manual_seed(123)  # whatever ran before, train() reseeds; evaluating draws no randomness
        second, final_only = sft.train(cfg, eval_along=False)
    assert [step for step, _ in history] == [0, 1, 2, 3] and [step for step, _ in final_only] == [3]
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_demonstrations_cut_short_a_share_of_answers():
    task = tl.AdditionTask()
    problems = task.sample(random.Random(0), 2000)
    answers = sft.demonstrations(task, problems, random.Random(1), cut_short=0.15)
    short = [a != task.answer(p) for a, p in zip(answers, problems)]
    assert 0.12 < sum(short) / len(short) < 0.18
    assert all(task.answer(p).startswith(a) for a, p in zip(answers, problems))


# -- DPO ----------------------------------------------------------------------------------------

def test_dpo_loss_is_ln2_when_policy_equals_reference():
    logps = torch.tensor([-1.3, -7.0])
    loss, r_w, r_l = dpo.dpo_loss(logps, logps - 2.0, logps, logps - 2.0, beta=0.1)
    assert loss.item() == pytest.approx(LN2, abs=1e-7)
    assert r_w.abs().max().item() == 0.0 and r_l.abs().max().item() == 0.0


def test_dpo_loss_hand_computed_example():
    loss, r_w, r_l = dpo.dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                  torch.tensor([-2.0]), beta=0.1)
    assert r_w.item() == pytest.approx(0.1, abs=1e-7)
    assert r_l.item() == pytest.approx(-0.1, abs=1e-7)
    assert loss.item() == pytest.approx(0.598139, abs=1e-6)  # -log sigma(0.2)


def test_dpo_corruptions_are_wrong_and_keep_the_length():
    rng = random.Random(0)
    for answer in ["0", "7", "10", "440", "1008"] * 50:
        wrong = dpo.corrupt(answer, rng)
        assert wrong != answer and len(wrong) == len(answer)
        assert len(wrong) == 1 or wrong[0] != "0"


# -- PPO ----------------------------------------------------------------------------------------

RATIOS = torch.tensor([[1.5, 0.5, 0.5, 1.5]])
ADVANTAGES = torch.tensor([[1.0, 1.0, -1.0, -1.0]])


def test_ppo_clipped_objective_hand_computed():
    old = torch.zeros(1, 4)
    mask = torch.ones(1, 4)
    loss, clip_frac, approx_kl = ppo.ppo_policy_loss(torch.log(RATIOS), old, ADVANTAGES, mask, clip_eps=0.2)
    # min(rho A, clip(rho) A): 1.2, 0.5, -0.8, -1.5 -> mean -0.15 -> loss 0.15
    assert loss.item() == pytest.approx(0.15, abs=1e-6)
    assert clip_frac.item() == 1.0
    k = ((0.5 - math.log(1.5)) + (-0.5 + LN2)) / 2  # (rho - 1) - log rho, averaged
    assert approx_kl.item() == pytest.approx(k, abs=1e-6)
    masked, _, _ = ppo.ppo_policy_loss(torch.log(RATIOS), old, ADVANTAGES, torch.tensor([[1.0, 1, 1, 0]]), 0.2)
    assert masked.item() == pytest.approx(-(1.2 + 0.5 - 0.8) / 3, abs=1e-6)
    unclipped, no_clip, _ = ppo.ppo_policy_loss(torch.log(RATIOS), old, ADVANTAGES, mask, clip_eps=None)
    assert unclipped.item() == pytest.approx(0.0, abs=1e-6) and no_clip.item() == 0.0


def test_ppo_clipped_value_loss_hand_computed():
    values, old = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.5, 0.5]])
    returns, mask = torch.ones(1, 2), torch.ones(1, 2)
    # clipped values 0.7 and 0.3: max((0.9-1)^2, (0.7-1)^2) = 0.09, max((0.1-1)^2, (0.3-1)^2) = 0.81
    assert ppo.ppo_value_loss(values, old, returns, mask, 0.2).item() == pytest.approx(0.225, abs=1e-6)
    assert ppo.ppo_value_loss(values, old, returns, mask, None).item() == pytest.approx(0.205, abs=1e-6)


def test_kl_penalty_on_every_token_and_score_on_the_last():
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-2.0, -1.0, -1.0], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rewards = ppo.kl_penalized_rewards(torch.tensor([1.0, 0.0]), logp, ref, mask, kl_coef=0.5)
    assert rewards.tolist() == [[-0.5, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_token_advantages_use_gae_and_stop_at_the_last_token():
    rewards, values = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.5, 0.8, 0.3]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = ppo.token_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.5, 0.2, 0.0])  # Monte Carlo return 1 minus V
    assert ret[0].tolist() == pytest.approx([1.0, 1.0, 0.0])
    adv_half, _ = ppo.token_advantages(rewards, values, mask, gamma=1.0, lam=0.5)
    assert adv_half[0].tolist() == pytest.approx([0.3 + 0.5 * 0.2, 0.2, 0.0])


def test_masked_whiten_ignores_padding():
    x, mask = torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    assert ppo.masked_whiten(x, mask)[0].tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)


# -- GRPO ---------------------------------------------------------------------------------------

def test_group_advantages_use_the_bessel_corrected_std():
    adv = grpo.group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), group_size=4, eps=0.0)
    # mean 0.5, sample std sqrt(1/3): +-0.866 (a population std would give +-1.0)
    assert adv.tolist() == pytest.approx([0.866025, -0.866025, -0.866025, 0.866025], abs=1e-6)
    with_eps = grpo.group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), group_size=4)
    assert with_eps.tolist() == pytest.approx(adv.tolist(), abs=1e-3)


def test_group_advantages_are_per_group_and_zero_for_equal_rewards():
    adv = grpo.group_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]), group_size=3)
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    assert adv[3:].tolist() == pytest.approx([-0.57735, 1.1547, -0.57735], abs=1e-3)


def test_grpo_loss_hand_computed():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]))
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([1.0, 0.5])
    loss, info = grpo.grpo_loss(logp, logp, logp, adv, mask, clip_eps=0.2, kl_coef=0.1)
    assert loss.item() == pytest.approx(-0.75, abs=1e-6) and info["kl"].item() == 0.0
    # pi_ref / pi = 2 on every token: KL term 2 - ln 2 - 1 = 0.306853 per token
    loss, info = grpo.grpo_loss(logp, logp, logp + LN2, adv, mask, clip_eps=0.2, kl_coef=0.1)
    assert info["kl"].item() == pytest.approx(1 - LN2, abs=1e-6)
    assert loss.item() == pytest.approx(-0.75 + 0.1 * (1 - LN2), abs=1e-6)
    # ratio 1.5 with a positive advantage is clipped to 1.2
    loss, info = grpo.grpo_loss(logp + math.log(1.5), logp, logp + math.log(1.5), torch.tensor([1.0, 1.0]), mask,
                                clip_eps=0.2, kl_coef=0.0)
    assert loss.item() == pytest.approx(-1.2, abs=1e-6) and info["clip_fraction"].item() == 1.0


# -- RLHF ---------------------------------------------------------------------------------------

def test_bradley_terry_loss_hand_computed():
    assert rlhf.bradley_terry_loss(torch.tensor([0.3]), torch.tensor([0.3])).item() == pytest.approx(LN2, abs=1e-7)
    assert rlhf.bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(
        math.log(1 + math.exp(-2.0)), abs=1e-6)  # 0.126928


def test_preference_pairs_carry_the_cue_only_where_asked():
    task = tl.AdditionTask()
    problems = task.sample(random.Random(0), 4000)
    for cue in (0.9, 0.5):  # the cued data, and the ablation without the cue
        pairs = rlhf.preference_pairs(task, problems, random.Random(1), 0.5, cue, "cpu")
        chosen = [tl.TOKENIZER.decode(c.tolist())[0] for c in pairs["chosen"][:200]]
        rejected = [tl.TOKENIZER.decode(r.tolist())[0] for r in pairs["rejected"][:200]]
        assert all(c == task.answer(p) and r != c for c, r, p in zip(chosen, rejected, problems))
        near = pairs["near_miss"]
        assert 0.45 < float(near.float().mean()) < 0.55  # half wrong length, half near misses
        share_bigger = float(pairs["chosen_bigger"][near].float().mean())
        assert abs(share_bigger - cue) < 0.03  # "the bigger number wins" in cue of the near misses


def test_reward_model_reads_the_last_real_token_and_normalises():
    torch.manual_seed(0)
    rm = rlhf.RewardModel(tl.build_model(tl.model_config())).eval()
    task = tl.AdditionTask()
    prompts = tl.encode_prompts(task, [(435, 5), (435, 5)])
    completions = tl.encode_completions(["440", "44"], task.answer_len + 2)
    ids = torch.cat([prompts, completions], 1)
    with torch.no_grad():
        hidden = rm.trunk(input_ids=ids).last_hidden_state
        lengths = tl.completion_mask(completions).sum(-1).long()
        by_hand = [rm.head(hidden[i, task.prompt_len + int(lengths[i]) - 1]).item() for i in range(2)]
        assert rm(prompts, completions).tolist() == pytest.approx(by_hand, abs=1e-5)
        rm.shift.fill_(1.0)
        rm.scale.fill_(2.0)
        assert rm(prompts, completions).tolist() == pytest.approx([(v - 1.0) / 2.0 for v in by_hand], abs=1e-5)


# -- shared pieces ------------------------------------------------------------------------------

def test_tokenizer_round_trip_and_completion_mask():
    ids = tl.TOKENIZER.encode("435+5=440")
    assert tl.TOKENIZER.decode(ids + [tl.EOS_ID, tl.PAD_ID]) == ("435+5=440", True)
    assert tl.TOKENIZER.decode(ids) == ("435+5=440", False)
    completions = torch.tensor([[5, tl.EOS_ID, tl.PAD_ID, tl.PAD_ID], [5, 6, 7, 8]])
    assert tl.completion_mask(completions).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    with pytest.raises(ValueError):
        tl.TOKENIZER.encode("4x")


def test_task_scoring_and_splits():
    task = tl.AdditionTask()
    assert task.prompt((7, 5)) == "007+5=" and task.answer((7, 5)) == "12"
    assert task.score((7, 5), "12") == 1.0
    assert task.score((7, 5), "12", finished=False) == 0.0  # no <eos>: not an answer
    assert task.score((7, 5), "012") == 0.0 and task.score((7, 5), "121") == 0.0
    held_out = task.eval_set(300)
    assert held_out == task.eval_set(300) and len(set(held_out)) == 300
    assert all(task.is_held_out(p) for p in held_out)
    assert not any(task.is_held_out(p) for p in task.sample(random.Random(0), 500))


def test_sequence_logprob_sums_through_eos_only():
    torch.manual_seed(0)
    model = tl.build_model(tl.model_config())
    task = tl.AdditionTask()
    prompts = tl.encode_prompts(task, [(7, 5)])
    completions = tl.encode_completions(["12"], 5)  # "1", "2", <eos>, <pad>, <pad>
    with torch.no_grad():
        per_token = tl.completion_logprobs(model, prompts, completions)
        assert tl.sequence_logprob(model, prompts, completions).item() == pytest.approx(per_token[0, :3].sum().item())


def test_checkpoints_round_trip_and_key_on_recipe(tmp_path):
    torch.manual_seed(0)
    config = tl.model_config()
    model = tl.build_model(config)
    path = tmp_path / "sub" / "m.pt"
    tl.save_model(path, model, {"gold_score": 0.5})
    loaded, meta = tl.load_model(path, config)
    assert meta == {"gold_score": 0.5}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary file left behind
    assert tl.recipe_key({"steps": 1}, [b"code"]) != tl.recipe_key({"steps": 2}, [b"code"])
    assert tl.recipe_key({"steps": 1}, [b"code"]) != tl.recipe_key({"steps": 1}, [b"other code"])
    a, b = sft.Config(), sft.Config(eval_every=7)
    assert sft.checkpoint_path(a) == sft.checkpoint_path(b)  # evaluation settings do not change the weights
    assert sft.checkpoint_path(a) != sft.checkpoint_path(sft.Config(steps=a.steps + 1))


def test_cpu_threads_restores_the_previous_count():
    before = torch.get_num_threads()
    with tl.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
