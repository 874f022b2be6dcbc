"""PPO for language models (Ouyang et al., 2022; Ziegler et al., 2019) from the SFT model.

Four models take part: the policy pi_theta (trained), the frozen reference pi_ref (the SFT
model), a reward (here the task's gold scorer; the RLHF lab swaps in a learned reward model)
and a value model V_phi (the SFT trunk with a scalar head, trained as the critic).

Each iteration samples one completion y per prompt x, then treats every completion token as
an action. The per-token reward is a KL penalty, plus the sequence's score on its last token:

    r_t = - kl_coef * (log pi_old(y_t|s_t) - log pi_ref(y_t|s_t))  +  [t = T] * score(x, y)

GAE (``labs.gae.compute_gae``, gamma = 1, lambda = 0.95) turns r and V into advantages A_t
and returns R_t = A_t + V(s_t); advantages are whitened over the batch. Then a few epochs of
minibatch updates of the clipped surrogate and the clipped value loss:

    rho_t    = pi_theta(y_t|s_t) / pi_old(y_t|s_t)
    L_policy = - mean_t min(rho_t * A_t, clip(rho_t, 1 - eps, 1 + eps) * A_t)
    L_value  = 1/2 mean_t max((V_t - R_t)^2, (V_old,t + clip(V_t - V_old,t, -eps_v, eps_v) - R_t)^2)

Reported: reward, KL to the reference (sum over the completion of log pi_old - log pi_ref,
averaged over samples), clip fraction (tokens with |rho - 1| > eps), approximate KL between
the old and new policy (mean of (rho - 1) - log rho), entropy, value loss, and, before and
after training, the held-out gold score of greedy answers and of one sampled answer per prompt
(the reward PPO maximises, measured on prompts it never trained on, with the same random stream
both times). A second pair of runs from the same start takes large steps (a high learning rate,
many epochs) with and without the clip, to show what the clip is for.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from labs import _tinylm as tl
from labs import sft
from labs._runtime import LabFailure, Range
from labs.gae import compute_gae
from labs.protocol import Chart

RewardFn = Callable[[Sequence[tl.Problem], torch.Tensor], torch.Tensor]


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    sft_preset: str = "full"  # which SFT model to start from: "full" or "toy"
    sft_seed: int = 0
    iterations: int = 300
    prompts_per_iter: int = 128
    ppo_epochs: int = 2
    minibatches: int = 2
    lr: float = 3e-4
    value_lr: float = 1e-3
    warmup_steps: int = 10  # optimizer steps of linear learning-rate warm-up
    clip_eps: float = 0.2
    value_clip: float = 0.2
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    eval_every: int = 20
    eval_problems: int = 1000
    # the clipping demonstration: large steps, with and without the clip
    big_lr: float = 5e-4
    big_epochs: int = 8
    big_iterations: int = 20
    model: str = ""  # a local Hugging Face checkpoint folder to start from instead of the SFT lab's model
    gradient_checkpointing: bool = False  # with model=: recompute activations in backward to save memory

    def validate(self) -> None:
        sft.check_start(self)
        if self.prompts_per_iter % self.minibatches:
            raise ValueError("prompts_per_iter must be a multiple of minibatches")


LIMITS = {
    "sft_seed": Range(0), "iterations": Range(1), "prompts_per_iter": Range(2), "ppo_epochs": Range(1),
    "minibatches": Range(1), "lr": Range(0, low_open=True), "value_lr": Range(0, low_open=True),
    "warmup_steps": Range(0), "clip_eps": Range(0, 1, low_open=True, high_open=True),
    "value_clip": Range(0, low_open=True), "kl_coef": Range(0), "gamma": Range(0, 1), "lam": Range(0, 1),
    "eval_every": Range(1), "eval_problems": Range(10), "big_lr": Range(0, low_open=True), "big_epochs": Range(1),
    "big_iterations": Range(1),
}

TOY = {"sft_preset": "toy", "iterations": 80, "prompts_per_iter": 64, "minibatches": 1, "eval_every": 20,
       "eval_problems": 500, "big_iterations": 8}

CHARTS = [
    Chart("PPO: reward and held-out score", y=("charts/reward", "eval/gold_score"),
          x_label="iteration", y_label="reward (the verifier: 0 or 1)",
          look_for="The batch reward and the held-out gold score rise together from the SFT policy's level."),
    Chart("PPO: KL to the reference and clip fraction", y=("charts/kl", "charts/clip_fraction"),
          x_label="iteration", y_label="nats / fraction",
          look_for="KL grows slowly and the clip fraction stays small: each update stays near the sampling policy."),
    Chart("Large steps, clipped then unclipped", y=("large_steps/clipped_kl", "large_steps/unclipped_kl"),
          log_y=True, x_label="iteration (clipped run, then unclipped run)", y_label="KL to the reference (nats)",
          look_for="Without the clip the same large steps carry the policy much further from the reference."),
]


# -- the losses -----------------------------------------------------------------------------


def kl_penalized_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float) -> torch.Tensor:
    """Per-token rewards (B, T): -kl_coef * (log pi - log pi_ref) on every token, plus the
    sequence score on the last token of each completion (the last position where mask is 1)."""
    rewards = -kl_coef * (logp - ref_logp) * mask
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores
    return rewards


def token_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                     lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over completion tokens, (B, T) in and out: each completion ends (done) at its last token."""
    n_tokens = rewards.shape[1]
    last = mask.sum(-1, keepdim=True) - 1
    dones = (torch.arange(n_tokens, device=rewards.device).unsqueeze(0) >= last).float()
    adv, ret = compute_gae(rewards.T, (values * mask).T, dones.T, torch.zeros_like(rewards[:, 0]), gamma, lam)
    return adv.T * mask, ret.T * mask


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the entries where mask is 1 (population std); 0 elsewhere."""
    mean = tl.masked_mean(x, mask)
    var = tl.masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip_eps: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped surrogate -mean_t min(rho A, clip(rho, 1-eps, 1+eps) A) over masked tokens.

    ``clip_eps=None`` gives the unclipped importance-weighted objective -mean_t rho A.
    Returns ``(loss, clip_fraction, approx_kl)``; approx_kl = mean((rho - 1) - log rho), an
    estimate of KL(pi_old || pi_theta) that is never negative.
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    if clip_eps is None:
        objective = unclipped
        clip_frac = torch.zeros((), device=logp.device)
    else:
        objective = torch.min(unclipped, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
        clip_frac = tl.masked_mean(((ratio - 1).abs() > clip_eps).float(), mask).detach()
    approx_kl = tl.masked_mean((ratio - 1) - log_ratio, mask).detach()
    return -tl.masked_mean(objective, mask), clip_frac, approx_kl


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip_range: float | None) -> torch.Tensor:
    """1/2 mean_t max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2) over masked tokens."""
    loss = (values - returns) ** 2
    if clip_range is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
        loss = torch.max(loss, (clipped - returns) ** 2)
    return 0.5 * tl.masked_mean(loss, mask)


# -- the loop -------------------------------------------------------------------------------


def train_ppo(cfg: Any, policy: torch.nn.Module, ref: torch.nn.Module, value_model: torch.nn.Module,
              reward_fn: RewardFn, task: tl.AdditionTask, *, iterations: int, lr: float, epochs: int,
              clip_eps: float | None, kl_coef: float, gold_fn: RewardFn | None = None,
              max_new_tokens: int | None = None,
              on_iter: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Run PPO in place on ``policy`` and ``value_model``; returns one stats dict per iteration.

    ``cfg`` supplies seed, device, prompts_per_iter, minibatches, value_lr, value_clip, gamma,
    lam and warmup_steps. ``reward_fn(problems, completions)`` scores the samples; ``gold_fn`` (default: the
    reward) is recorded alongside as the true score.
    """
    device = cfg.device
    p_len = task.prompt_len
    max_new = max_new_tokens or task.answer_len + 1
    opt_pi, sched_pi = tl.make_optimizer(policy.parameters(), lr, cfg.warmup_steps)
    opt_v, sched_v = tl.make_optimizer(value_model.parameters(), cfg.value_lr, cfg.warmup_steps)
    rng = random.Random(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    history = []
    for it in range(1, iterations + 1):
        # 1. rollout: sample, score, and compute everything the update holds fixed
        problems = task.sample(rng, cfg.prompts_per_iter)
        prompts = tl.encode_prompts(task, problems, device)
        completions = tl.generate(policy, prompts, max_new, generator=gen)
        mask = tl.completion_mask(completions)
        ids = torch.cat([prompts, completions], dim=1)
        with torch.no_grad():
            old_logp = tl.token_logprobs(tl.completion_logits(policy, ids, p_len), completions)
            ref_logp = tl.token_logprobs(tl.completion_logits(ref, ids, p_len), completions)
            old_values = value_model(ids)[:, p_len - 1 : -1] * mask
            scores = reward_fn(problems, completions).float()
            gold = gold_fn(problems, completions).float() if gold_fn else scores
            rewards = kl_penalized_rewards(scores, old_logp, ref_logp, mask, kl_coef)
            advantages, returns = token_advantages(rewards, old_values, mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, mask)

        # 2. update: a few epochs of minibatch steps on the clipped objectives
        stats: dict[str, list[float]] = {"clip_fraction": [], "approx_kl": [], "entropy": [], "policy_loss": [],
                                         "value_loss": []}
        policy.train()
        for _ in range(epochs):
            order = torch.randperm(len(problems), generator=gen, device=device)
            for mb in order.chunk(cfg.minibatches):
                logits = tl.completion_logits(policy, ids[mb], p_len)
                logp = tl.token_logprobs(logits, completions[mb])
                pg_loss, clip_frac, approx_kl = ppo_policy_loss(logp, old_logp[mb], advantages[mb], mask[mb], clip_eps)
                opt_pi.zero_grad(set_to_none=True)
                pg_loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                opt_pi.step()
                sched_pi.step()
                values = value_model(ids[mb])[:, p_len - 1 : -1]
                v_loss = ppo_value_loss(values, old_values[mb], returns[mb], mask[mb], cfg.value_clip)
                opt_v.zero_grad(set_to_none=True)
                v_loss.backward()
                torch.nn.utils.clip_grad_norm_(value_model.parameters(), 1.0)
                opt_v.step()
                sched_v.step()
                with torch.no_grad():
                    entropy = tl.masked_mean(tl.entropy_from_logits(logits), mask[mb])
                for k, v in (("clip_fraction", clip_frac), ("approx_kl", approx_kl), ("entropy", entropy),
                             ("policy_loss", pg_loss), ("value_loss", v_loss)):
                    stats[k].append(float(v.detach()))
        policy.eval()
        row = {k: sum(v) / len(v) for k, v in stats.items()}
        row.update(reward=float(scores.mean()), gold=float(gold.mean()),
                   kl=float(((old_logp - ref_logp) * mask).sum(-1).mean()),
                   length=float(mask.sum(-1).mean()))
        if not all(math.isfinite(v) for v in row.values()):
            raise LabFailure(f"PPO produced a non-finite statistic at iteration {it}: {row}")
        history.append(row)
        if on_iter:
            on_iter(it, row)
    return history


def gold_reward(task: tl.AdditionTask) -> RewardFn:
    """The task's exact-match scorer as a reward function."""
    return lambda problems, completions: tl.gold_scores(task, problems, completions)


def run(cfg: Config, emit: Any, out_dir: Path) -> None:
    with tl.cpu_threads(cfg.threads):
        _run(cfg, emit, out_dir)


def _run(cfg: Config, emit: Any, out_dir: Path) -> None:
    emit.start(cfg, total_steps=cfg.iterations + 2 * cfg.big_iterations)
    sft_model, task = sft.start_from(cfg, emit)
    eval_set = task.eval_set(cfg.eval_problems)

    def fresh_models() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
        torch.manual_seed(cfg.seed)
        return tl.trainable_copy(sft_model), tl.frozen_copy(sft_model), tl.ValueModel(sft_model).to(cfg.device)

    policy, ref, value_model = fresh_models()
    sizes = {"policy": tl.count_parameters(policy), "reference": tl.count_parameters(ref),
             "value model": tl.count_parameters(value_model), "reward (gold scorer)": 0}
    emit.table("models", ["model", "parameters", "trained"],
               [[k, v, k in ("policy", "value model")] for k, v in sizes.items()])
    def sampled_reward(model: torch.nn.Module) -> float:
        """Held-out reward of one sampled answer per prompt, the same random stream every time."""
        gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 31)
        return tl.pass_rate(model, task, eval_set, cfg.device, greedy=False, generator=gen)

    gold_before, sampled_before = tl.pass_rate(policy, task, eval_set, cfg.device), sampled_reward(policy)
    emit.metric(0, **{"eval/gold_score": gold_before, "eval/sampled_reward": sampled_before})
    emit.log(f"held-out score of the SFT policy: {gold_before:.3f} greedy, {sampled_before:.3f} sampled")

    def report(it: int, row: dict[str, float]) -> None:
        values = {"charts/reward": row["reward"], "charts/kl": row["kl"], "charts/clip_fraction": row["clip_fraction"],
                  "charts/approx_kl": row["approx_kl"], "charts/entropy": row["entropy"],
                  "losses/policy": row["policy_loss"], "losses/value": row["value_loss"]}
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            values["eval/gold_score"] = tl.pass_rate(policy, task, eval_set, cfg.device)
        emit.metric(it, **values)
        emit.progress(it)

    history = train_ppo(cfg, policy, ref, value_model, gold_reward(task), task, iterations=cfg.iterations,
                        lr=cfg.lr, epochs=cfg.ppo_epochs, clip_eps=cfg.clip_eps, kl_coef=cfg.kl_coef, on_iter=report)
    gold_after, sampled_after = tl.pass_rate(policy, task, eval_set, cfg.device), sampled_reward(policy)
    tl.save_model(out_dir / "ppo_policy.pt", policy, {"gold_score": gold_after})
    n = max(1, len(history) // 10)  # a tenth of the run at each end, averaged: one batch is noisy
    first, final = ({k: sum(r[k] for r in part) / n for k in part[0]} for part in (history[:n], history[-n:]))
    emit.log(f"reward {first['reward']:.3f} -> {final['reward']:.3f} (means of the first and last {n} iterations); "
             f"held-out gold score {gold_before:.3f} -> {gold_after:.3f} greedy, {sampled_before:.3f} -> "
             f"{sampled_after:.3f} sampled")

    # large steps: a higher learning rate and many epochs on each batch, with and without the clip
    # end_* columns: means over the last quarter of each run's iterations (one batch of KL is noisy)
    columns = ["run", "lr", "epochs", "clip", "mean_approx_kl", "end_kl_to_ref", "end_entropy", "end_reward",
               "gold_score"]

    def mean_of(rows: list[dict[str, float]], key: str, last: bool = False) -> float:
        rows = rows[-max(1, len(rows) // 4):] if last else rows
        return sum(r[key] for r in rows) / len(rows)

    def row_of(label: str, lr: float, epochs: int, clip: Any, rows: list[dict[str, float]], gold: float) -> list:
        return [label, lr, epochs, clip, mean_of(rows, "approx_kl"), mean_of(rows, "kl", True),
                mean_of(rows, "entropy", True), mean_of(rows, "reward", True), gold]

    rows = [row_of("normal", cfg.lr, cfg.ppo_epochs, cfg.clip_eps, history, gold_after)]
    for label, clip in (("clipped", cfg.clip_eps), ("unclipped", None)):
        emit.log(f"large steps, {label}: lr={cfg.big_lr}, {cfg.big_epochs} epochs per batch")
        big_policy, big_ref, big_value = fresh_models()
        offset = cfg.iterations + (0 if clip is not None else cfg.big_iterations)

        def report_big(it: int, row: dict[str, float], label: str = label, offset: int = offset) -> None:
            emit.metric(offset + it, **{f"large_steps/{label}_reward": row["reward"],
                                        f"large_steps/{label}_kl": row["kl"],
                                        f"large_steps/{label}_approx_kl": row["approx_kl"],
                                        f"large_steps/{label}_entropy": row["entropy"]})
            emit.progress(offset + it)

        big = train_ppo(cfg, big_policy, big_ref, big_value, gold_reward(task), task, iterations=cfg.big_iterations,
                        lr=cfg.big_lr, epochs=cfg.big_epochs, clip_eps=clip, kl_coef=cfg.kl_coef, on_iter=report_big)
        rows.append(row_of(f"large steps, {label}", cfg.big_lr, cfg.big_epochs, clip if clip is not None else "none",
                           big, tl.pass_rate(big_policy, task, eval_set, cfg.device)))
    emit.table("clipping", columns, rows)
    emit.log("the clip removes the incentive to push a token's ratio beyond 1 +- eps, so many epochs on one "
             "batch cannot run away; without it the same steps carry the policy far from where its samples "
             "were drawn (approx_kl, KL to the reference) and the reward falls")
    emit.summary({
        "reward_start": first["reward"], "reward_end": final["reward"], "kl_to_ref": final["kl"],
        "clip_fraction": final["clip_fraction"], "approx_kl": final["approx_kl"], "entropy": final["entropy"],
        "value_loss": final["value_loss"], "gold_score_before": gold_before, "gold_score_after": gold_after,
        "sampled_reward_before": sampled_before, "sampled_reward_after": sampled_after,
        "large_clipped_mean_approx_kl": rows[1][4], "large_unclipped_mean_approx_kl": rows[2][4],
        "large_clipped_end_kl": rows[1][5], "large_unclipped_end_kl": rows[2][5],
        "large_clipped_gold_score": rows[1][8], "large_unclipped_gold_score": rows[2][8],
    }, artifacts=["ppo_policy.pt"])
