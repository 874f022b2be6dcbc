"""GRPO: group-relative policy optimisation (Shao et al., 2024) on a verifiable task.

No critic. For each prompt x the policy samples a group of G completions y_1..y_G, each
scored by the task's verifier (1 for the exact sum, 0 otherwise). A completion's advantage is
its reward standardised within its own group,

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps),

with std the Bessel-corrected sample std (divide by G - 1; the TRL convention: rewards
[1, 0, 0, 1] give A = +-0.866; minimind's population std would give +-1.0), and every token
of y_i shares A_i. The loss is PPO's clipped surrogate with a KL penalty to the reference,

    L = - 1/G sum_i 1/|y_i| sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta * KL_it ],
    KL_it = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1          (per token, unbiased, >= 0)

A group whose rewards are all equal (all right or all wrong) has A = 0 for every member and
adds no gradient: the lab reports that fraction. Since the baseline is the group mean, GRPO
keeps no value model: it holds the policy, the reference, and (here) a reward *function*,
against PPO's policy, reference, reward model and value model; the lab counts parameters.

Reported: mean reward, pass rate (sampled, held out; greedy too), group reward std, the
fraction of zero-std groups, KL to the reference, clip fraction; pass rate before vs after.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labs import _tinylm as tl
from labs import sft
from labs._runtime import LabFailure


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    sft_preset: str = "full"  # which SFT model to start from: "full" or "toy"
    sft_seed: int = 0
    iterations: int = 100
    prompts_per_iter: int = 64
    group_size: int = 8  # G completions per prompt
    updates_per_batch: int = 2  # gradient steps on each batch of samples (the clip matters from the 2nd)
    lr: float = 3e-4
    warmup_steps: int = 10  # optimizer steps of linear learning-rate warm-up
    clip_eps: float = 0.2
    kl_coef: float = 0.04  # beta
    eval_every: int = 20
    eval_problems: int = 1000

    def validate(self) -> None:
        sft.check_preset(self.sft_preset)
        if self.group_size < 2:
            raise ValueError("group_size must be at least 2 (the std of one reward is undefined)")


TOY = {"sft_preset": "toy", "iterations": 20, "eval_every": 5, "eval_problems": 300}


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(r - group mean) / (group std + eps) for rewards laid out group after group, shape (N*G,).

    std is the Bessel-corrected sample std (divisor G - 1), as in TRL; rewards [1, 0, 0, 1]
    give +-0.866 (eps=0). A group of equal rewards gives zeros.
    """
    groups = rewards.view(-1, group_size)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True, unbiased=True)
    return ((groups - mean) / (std + eps)).reshape(-1)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float, kl_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss: per-token clipped surrogate minus beta * KL, averaged over each completion's
    tokens, then over completions. ``advantages`` has one value per completion, shape (B,);
    the rest are (B, T). Returns ``(loss, {"kl", "clip_fraction"})`` (token means)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    log_ref_ratio = ref_logp - logp
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    per_token = surrogate - kl_coef * kl
    loss = -tl.masked_mean(per_token, mask, dim=1).mean()
    return loss, {"kl": tl.masked_mean(kl, mask).detach(),
                  "clip_fraction": tl.masked_mean(((ratio - 1).abs() > clip_eps).float(), mask).detach()}


@torch.no_grad()
def sampled_pass_rate(policy: torch.nn.Module, task: tl.AdditionTask, problems: list[tl.Problem], cfg: Config,
                      samples: int = 4) -> float:
    """Mean exact-match rate over ``samples`` sampled answers (temperature 1) per held-out problem."""
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 99)
    return sum(tl.pass_rate(policy, task, problems, cfg.device, greedy=False, generator=gen)
               for _ in range(samples)) / samples


def run(cfg: Config, emit: Any, out_dir: Path) -> None:
    with tl.cpu_threads(cfg.threads):
        _run(cfg, emit, out_dir)


def _run(cfg: Config, emit: Any, out_dir: Path) -> None:
    emit.start(cfg, total_steps=cfg.iterations)
    sft_model, task = sft.start_from(cfg, emit)
    torch.manual_seed(cfg.seed)
    ref = tl.frozen_copy(sft_model)
    policy = tl.trainable_copy(sft_model)
    eval_set = task.eval_set(cfg.eval_problems)

    n_policy = tl.count_parameters(policy)
    value_model = tl.ValueModel(sft_model)
    n_value = tl.count_parameters(value_model)
    emit.table("memory_vs_ppo", ["algorithm", "models held", "parameters", "trained", "adam_state"], [
        ["GRPO", "policy, reference (reward: the verifier)", 2 * n_policy, n_policy, 2 * n_policy],
        ["PPO", "policy, reference, value model (reward: the verifier)", 2 * n_policy + n_value,
         n_policy + n_value, 2 * (n_policy + n_value)],
        ["PPO in RLHF", "policy, reference, value model, reward model", 3 * n_policy + n_value,
         n_policy + n_value, 2 * (n_policy + n_value)],
    ])
    del value_model
    emit.log(f"no value model: GRPO trains {n_policy} parameters where PPO trains {n_policy + n_value}, and keeps "
             f"no critic's activations or Adam state; the price is compute: G = {cfg.group_size} samples of every "
             f"prompt to estimate its baseline, where PPO samples once and asks the critic")

    before = {"pass_rate": sampled_pass_rate(policy, task, eval_set, cfg),
              "greedy_pass_rate": tl.pass_rate(policy, task, eval_set, cfg.device)}
    emit.metric(0, **{"eval/pass_rate": before["pass_rate"], "eval/greedy_pass_rate": before["greedy_pass_rate"]})
    emit.log(f"SFT policy on held-out problems: pass rate {before['pass_rate']:.3f} sampled, "
             f"{before['greedy_pass_rate']:.3f} greedy")

    opt, sched = tl.make_optimizer(policy.parameters(), cfg.lr, cfg.warmup_steps)
    rng = random.Random(cfg.seed)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    p_len, max_new, g = task.prompt_len, task.answer_len + 1, cfg.group_size
    last: dict[str, float] = {}
    for it in range(1, cfg.iterations + 1):
        problems = task.sample(rng, cfg.prompts_per_iter)
        grouped = [p for p in problems for _ in range(g)]  # G copies of each prompt, side by side
        prompts = tl.encode_prompts(task, grouped, cfg.device)
        completions = tl.generate(policy, prompts, max_new, generator=gen)
        mask = tl.completion_mask(completions)
        ids = torch.cat([prompts, completions], dim=1)
        with torch.no_grad():
            rewards = tl.gold_scores(task, grouped, completions)
            advantages = group_advantages(rewards, g)
            old_logp = tl.token_logprobs(tl.completion_logits(policy, ids, p_len), completions)
            ref_logp = tl.token_logprobs(tl.completion_logits(ref, ids, p_len), completions)
            group_std = rewards.view(-1, g).std(dim=1, unbiased=True)
        policy.train()
        for _ in range(cfg.updates_per_batch):
            logp = tl.token_logprobs(tl.completion_logits(policy, ids, p_len), completions)
            loss, info = grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg.clip_eps, cfg.kl_coef)
            if not torch.isfinite(loss):
                raise LabFailure(f"GRPO loss became {loss.item()} at iteration {it}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            sched.step()
        policy.eval()
        values = {"charts/mean_reward": float(rewards.mean()), "charts/group_reward_std": float(group_std.mean()),
                  "charts/zero_std_fraction": float((group_std == 0).float().mean()),
                  "charts/kl": float(info["kl"]), "charts/clip_fraction": float(info["clip_fraction"]),
                  "charts/length": float(mask.sum(-1).mean()), "losses/policy": float(loss.detach())}
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            last = {"pass_rate": sampled_pass_rate(policy, task, eval_set, cfg),
                    "greedy_pass_rate": tl.pass_rate(policy, task, eval_set, cfg.device),
                    "kl_to_ref": tl.kl_to_reference(policy, ref, task, eval_set, cfg.device,
                                                    torch.Generator(device=cfg.device).manual_seed(cfg.seed + 5))}
            values.update({"eval/pass_rate": last["pass_rate"], "eval/greedy_pass_rate": last["greedy_pass_rate"],
                           "eval/kl_to_ref": last["kl_to_ref"]})
        emit.metric(it, **values)
        emit.progress(it)

    tl.save_model(out_dir / "grpo_policy.pt", policy, {"pass_rate": last["pass_rate"]})
    emit.table("pass_rate", ["", "sampled (t=1)", "greedy"],
               [["before (SFT)", before["pass_rate"], before["greedy_pass_rate"]],
                ["after GRPO", last["pass_rate"], last["greedy_pass_rate"]]])
    emit.summary({"pass_rate_before": before["pass_rate"], "pass_rate_after": last["pass_rate"],
                  "greedy_pass_rate_before": before["greedy_pass_rate"],
                  "greedy_pass_rate_after": last["greedy_pass_rate"], "kl_to_ref": last["kl_to_ref"],
                  "policy_parameters": n_policy, "ppo_extra_value_parameters": n_value},
                 artifacts=["grpo_policy.pt"])
