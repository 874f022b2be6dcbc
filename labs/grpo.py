"""GRPO: group-relative policy optimisation (Shao et al., 2024) on a verifiable task, and Dr. GRPO.

No critic. For each prompt x the policy samples a group of G completions o_1..o_G, each
scored by the task's verifier (1 for the exact sum, 0 otherwise). A completion's advantage is
its reward standardised within its own group,

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps),

with std the Bessel-corrected sample std (divide by G - 1; the TRL convention: rewards
[1, 0, 0, 1] give A = +-0.866; minimind's population std would give +-1.0), and every token
of o_i shares A_i. The loss is PPO's clipped surrogate with a KL penalty to the reference,

    L_GRPO = - 1/G sum_i 1/|o_i| sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta * KL_it ],
    KL_it = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1          (per token, unbiased, >= 0)

A group whose rewards are all equal (all right or all wrong) has A = 0 for every member and
adds no gradient: the lab reports that fraction. Since the baseline is the group mean, GRPO
keeps no value model: it holds the policy, the reference, and (here) a reward *function*,
against PPO's policy, reference, reward model and value model; the lab counts parameters.

Dr. GRPO (Liu et al., 2025, "Understanding R1-Zero-like training") removes two factors
(``loss_type="dr_grpo"``):

    A_i = r_i - mean(r_1..r_G)                                   (no division by the std)
    L_Dr = - 1/G sum_i 1/L_max sum_t [ min(rho_it A_i, clip(rho_it) A_i) - beta * KL_it ]

with L_max a constant, here the generation budget (every completion is padded to it). The
1/|o_i| of GRPO gives each token of a short completion more weight than a token of a long
one: a short right answer is pushed up harder, a long wrong answer pushed down *less* per
token, so wrong answers may drift longer. The std division weighs prompts that are almost
always right or almost always wrong (small std) above medium ones. To give wrong answers room
to differ in length, completions may run ``extra_tokens`` past the longest answer before they
are cut (a cut completion has no <eos> and scores 0). With ``compare`` on, the lab trains
the other loss type too, from the same SFT model with the same seed, prompts and schedule,
and tables mean completion length (all, right, wrong) and pass rate for both.

Leave-one-out baseline (RLOO, Ahmadian et al. 2024; ``baseline="rloo"``): A_i = r_i - b_i with
b_i = 1/(G-1) sum_{j != i} r_j, a baseline independent of o_i. The group mean contains r_i
itself: r_i - mean(r) = (G-1)/G * (r_i - b_i), so the group-mean gradient is RLOO's shrunk by
(G-1)/G (0.875 for G = 8). The factor is the same for every group, so with Adam (which
undoes a constant gradient scale) the two train almost alike; with the std division on, it
is a constant factor again.

Reported: mean reward, pass rate (sampled, held out; greedy too), completion length (right and
wrong), group reward std, the fraction of zero-std groups, KL to the reference, clip fraction;
pass rate before vs after; the length table of both loss types.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labs import _tinylm as tl
from labs import sft
from labs._runtime import LabFailure, Range
from labs.protocol import Chart

LOSS_TYPES = ("grpo", "dr_grpo")
BASELINES = ("mean", "rloo")


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    sft_preset: str = "full"  # which SFT model to start from: "full" or "toy"
    sft_seed: int = 0
    loss_type: str = "grpo"  # "grpo": 1/|o_i| and std division; "dr_grpo": constant 1/L_max, no std division
    baseline: str = "mean"  # "mean": the group mean (r_i included); "rloo": the mean of the other G-1
    compare: bool = True  # also train the other loss_type from the same start, seed and prompts
    iterations: int = 100
    prompts_per_iter: int = 64
    group_size: int = 8  # G completions per prompt
    updates_per_batch: int = 2  # gradient steps on each batch of samples (the clip matters from the 2nd)
    lr: float = 3e-4
    warmup_steps: int = 10  # optimizer steps of linear learning-rate warm-up
    clip_eps: float = 0.2
    kl_coef: float = 0.04  # beta
    extra_tokens: int = 4  # generation budget past the longest answer (room for long wrong answers)
    eval_every: int = 20
    eval_problems: int = 1000
    eval_samples: int = 4  # sampled answers per held-out problem (pass rate and length)
    model: str = ""  # a local Hugging Face checkpoint folder to start from instead of the SFT lab's model
    gradient_checkpointing: bool = False  # with model=: recompute activations in backward to save memory

    def validate(self) -> None:
        sft.check_start(self)
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, not {self.loss_type!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {self.baseline!r}")


# the SFT model has prompt_len + answer_len + 8 positions: at most answer_len + 8 completion tokens
LIMITS = {"seed": Range(0), "threads": Range(1), "sft_seed": Range(0), "iterations": Range(1),
          "prompts_per_iter": Range(1), "group_size": Range(2),  # the std of one reward is undefined
          "updates_per_batch": Range(1), "lr": Range(0, low_open=True), "warmup_steps": Range(0),
          "clip_eps": Range(0, 1, low_open=True, high_open=True), "kl_coef": Range(0),
          "extra_tokens": Range(0, 7), "eval_every": Range(1), "eval_problems": Range(1), "eval_samples": Range(1)}

TOY = {"sft_preset": "toy", "iterations": 20, "eval_every": 10, "eval_problems": 300}

CHARTS = [
    Chart("GRPO: reward of the groups and held-out pass rate", y=("charts/mean_reward", "eval/pass_rate"),
          x_label="iteration", y_label="fraction right",
          look_for="Both rise from the SFT level with no value model: the group mean is the baseline."),
    Chart("Groups that teach nothing", y=("charts/zero_std_fraction",), x_label="iteration",
          y_label="groups with equal rewards",
          look_for="As the policy improves, more groups are all right: no reward spread, no advantage, no gradient."),
    Chart("Completion length", y=("charts/length", "charts/right_length", "charts/wrong_length"),
          x_label="iteration", y_label="tokens",
          look_for="Wrong answers grow longer: dividing a loss by its length lets long wrong answers off lightly."),
]


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4, scale_by_std: bool = True,
                     baseline: str = "mean") -> torch.Tensor:
    """(r - baseline) / (group std + eps) for rewards laid out group after group, shape (N*G,).

    ``baseline="mean"``: the group mean; ``"rloo"``: the mean of the other G-1 rewards, which
    gives G/(G-1) times the group-mean advantage. std is the Bessel-corrected sample std
    (divisor G - 1), as in TRL; rewards [1, 0, 0, 1] give +-0.866 (eps=0). ``scale_by_std=False``
    (Dr. GRPO) keeps r - baseline. A group of equal rewards gives zeros either way.
    """
    groups = rewards.view(-1, group_size)
    total = groups.sum(dim=1, keepdim=True)
    if baseline == "mean":
        base = total / group_size
    elif baseline == "rloo":
        base = (total - groups) / (group_size - 1)
    else:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {baseline!r}")
    adv = groups - base
    if scale_by_std:
        adv = adv / (groups.std(dim=1, keepdim=True, unbiased=True) + eps)
    return adv.reshape(-1)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float, kl_coef: float,
              loss_type: str = "grpo") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss: per-token clipped surrogate minus beta * KL, summed over each completion's
    tokens and divided by its length |o_i| (``"grpo"``) or by the constant L_max = mask.shape[1]
    (``"dr_grpo"``), then averaged over completions. ``advantages`` has one value per
    completion, shape (B,); the rest are (B, T). Returns ``(loss, {"kl", "clip_fraction"})``
    (token means)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    log_ref_ratio = ref_logp - logp
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    per_token = surrogate - kl_coef * kl
    if loss_type == "grpo":
        per_completion = tl.masked_mean(per_token, mask, dim=1)
    elif loss_type == "dr_grpo":
        per_completion = (per_token * mask).sum(dim=1) / mask.shape[1]
    else:
        raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, not {loss_type!r}")
    return -per_completion.mean(), {
        "kl": tl.masked_mean(kl, mask).detach(),
        "clip_fraction": tl.masked_mean(((ratio - 1).abs() > clip_eps).float(), mask).detach()}


def length_stats(lengths: torch.Tensor, rewards: torch.Tensor) -> dict[str, float]:
    """Mean completion length (tokens through <eos>, or the budget when cut) of all, right and wrong
    completions; NaN for a class with no member."""
    def mean(x: torch.Tensor) -> float:
        return float(x.float().mean()) if x.numel() else math.nan

    return {"length": mean(lengths), "right_length": mean(lengths[rewards > 0]),
            "wrong_length": mean(lengths[rewards == 0])}


@torch.no_grad()
def evaluate(policy: torch.nn.Module, ref: torch.nn.Module, task: tl.AdditionTask, problems: list[tl.Problem],
             cfg: Config) -> dict[str, float]:
    """Held out: pass rate and lengths over ``eval_samples`` sampled answers (t=1) per problem,
    greedy pass rate, KL to the reference. Fixed generator seeds: every call sees the same noise."""
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 99)
    prompts = tl.encode_prompts(task, problems, cfg.device)
    rewards, lengths = [], []
    for _ in range(cfg.eval_samples):
        completions = tl.generate(policy, prompts, task.answer_len + 1 + cfg.extra_tokens, generator=gen)
        rewards.append(tl.gold_scores(task, problems, completions))
        lengths.append(tl.completion_mask(completions).sum(-1))
    rewards_all = torch.cat(rewards)
    return {"pass_rate": float(rewards_all.mean()), **length_stats(torch.cat(lengths), rewards_all),
            "greedy_pass_rate": tl.pass_rate(policy, task, problems, cfg.device),
            "kl_to_ref": tl.kl_to_reference(policy, ref, task, problems, cfg.device,
                                            torch.Generator(device=cfg.device).manual_seed(cfg.seed + 5))}


def run(cfg: Config, emit: Any, out_dir: Path) -> None:
    with tl.cpu_threads(cfg.threads):
        _run(cfg, emit, out_dir)


def train(cfg: Config, loss_type: str, sft_model: torch.nn.Module, ref: torch.nn.Module, task: tl.AdditionTask,
          eval_set: list[tl.Problem], emit: Any, prefix: str, step0: int,
          eval_along: bool) -> tuple[torch.nn.Module, dict[str, float]]:
    """GRPO (or Dr. GRPO) from the SFT model; metrics ``<prefix>charts/...``, ``<prefix>eval/...`` at
    steps ``step0 + it``.

    Reseeds everything it draws from, so two calls with the same config see the same prompts
    and the same sampling noise; evaluates every ``eval_every`` iterations (or only at the end
    when ``eval_along`` is False). Returns the policy and its last evaluation."""
    torch.manual_seed(cfg.seed)
    policy = tl.trainable_copy(sft_model)
    opt, sched = tl.make_optimizer(policy.parameters(), cfg.lr, cfg.warmup_steps)
    rng = random.Random(cfg.seed)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    p_len, max_new, g = task.prompt_len, task.answer_len + 1 + cfg.extra_tokens, cfg.group_size
    last: dict[str, float] = {}
    for it in range(1, cfg.iterations + 1):
        problems = task.sample(rng, cfg.prompts_per_iter)
        grouped = [p for p in problems for _ in range(g)]  # G copies of each prompt, side by side
        prompts = tl.encode_prompts(task, grouped, cfg.device)
        completions = tl.generate(policy, prompts, max_new, generator=gen)  # padded to max_new = L_max
        mask = tl.completion_mask(completions)
        ids = torch.cat([prompts, completions], dim=1)
        with torch.no_grad():
            rewards = tl.gold_scores(task, grouped, completions)
            advantages = group_advantages(rewards, g, scale_by_std=loss_type == "grpo", baseline=cfg.baseline)
            old_logp = tl.token_logprobs(tl.completion_logits(policy, ids, p_len), completions)
            ref_logp = tl.token_logprobs(tl.completion_logits(ref, ids, p_len), completions)
            group_std = rewards.view(-1, g).std(dim=1, unbiased=True)
        policy.train()
        for _ in range(cfg.updates_per_batch):
            logp = tl.token_logprobs(tl.completion_logits(policy, ids, p_len), completions)
            loss, info = grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg.clip_eps, cfg.kl_coef, loss_type)
            if not torch.isfinite(loss):
                raise LabFailure(f"{loss_type} loss became {loss.item()} at iteration {it}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            sched.step()
        policy.eval()
        lengths = {k: v for k, v in length_stats(mask.sum(-1), rewards).items() if math.isfinite(v)}
        values = {"mean_reward": float(rewards.mean()), "group_reward_std": float(group_std.mean()),
                  "zero_std_fraction": float((group_std == 0).float().mean()),
                  "kl": float(info["kl"]), "clip_fraction": float(info["clip_fraction"]), **lengths}
        values = {f"{prefix}charts/{k}": v for k, v in values.items()}
        values[f"{prefix}losses/policy"] = float(loss.detach())
        if (eval_along and it % cfg.eval_every == 0) or it == cfg.iterations:
            last = evaluate(policy, ref, task, eval_set, cfg)
            values.update({f"{prefix}eval/{k}": v for k, v in last.items() if math.isfinite(v)})
        emit.metric(step0 + it, **values)
        emit.progress(step0 + it)
    return policy, last


def _run(cfg: Config, emit: Any, out_dir: Path) -> None:
    other = next(t for t in LOSS_TYPES if t != cfg.loss_type)
    emit.start(cfg, total_steps=cfg.iterations * (2 if cfg.compare else 1))
    sft_model, task = sft.start_from(cfg, emit)
    ref = tl.frozen_copy(sft_model)
    eval_set = task.eval_set(cfg.eval_problems)

    n_policy = tl.count_parameters(sft_model)
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

    before = evaluate(sft_model, ref, task, eval_set, cfg)
    emit.metric(0, **{f"eval/{k}": v for k, v in before.items() if math.isfinite(v)})
    emit.log(f"SFT policy on held-out problems: pass rate {before['pass_rate']:.3f} sampled, "
             f"{before['greedy_pass_rate']:.3f} greedy; mean length {before['length']:.2f} tokens "
             f"(wrong answers {before['wrong_length']:.2f}, budget {task.answer_len + 1 + cfg.extra_tokens})")

    emit.log(f"run 1: {cfg.loss_type}, baseline {cfg.baseline}")
    policy, last = train(cfg, cfg.loss_type, sft_model, ref, task, eval_set, emit, "", 0, eval_along=True)
    tl.save_model(out_dir / "grpo_policy.pt", policy, {"pass_rate": last["pass_rate"], "loss_type": cfg.loss_type})
    emit.table("pass_rate", ["", "sampled (t=1)", "greedy"],
               [["before (SFT)", before["pass_rate"], before["greedy_pass_rate"]],
                [f"after {cfg.loss_type}", last["pass_rate"], last["greedy_pass_rate"]]])
    headline: dict[str, Any] = {
        "pass_rate_before": before["pass_rate"], "pass_rate_after": last["pass_rate"],
        "greedy_pass_rate_before": before["greedy_pass_rate"], "greedy_pass_rate_after": last["greedy_pass_rate"],
        "kl_to_ref": last["kl_to_ref"], "length_before": before["length"], "length_after": last["length"],
        "wrong_length_before": before["wrong_length"], "wrong_length_after": last["wrong_length"],
        "policy_parameters": n_policy, "ppo_extra_value_parameters": n_value}

    if cfg.compare:
        emit.log(f"run 2: {other} from the same SFT model, seed and prompts (evaluated at the end)")
        _, last_other = train(cfg, other, sft_model, ref, task, eval_set, emit, "compare/", cfg.iterations,
                              eval_along=False)
        rows = [("SFT (start)", before), (cfg.loss_type, last), (other, last_other)]
        emit.table("length_bias", ["policy", "mean_length", "right_length", "wrong_length", "pass_rate",
                                   "greedy_pass_rate", "kl_to_ref"],
                   [[name, *(v[k] for k in ("length", "right_length", "wrong_length", "pass_rate",
                                            "greedy_pass_rate", "kl_to_ref"))] for name, v in rows])
        emit.log("lengths count tokens through <eos> (a cut completion counts the whole budget), on "
                 f"{cfg.eval_samples} sampled answers per held-out problem; wrong answers: "
                 f"{before['wrong_length']:.3f} tokens from SFT, {last['wrong_length']:.3f} after {cfg.loss_type}, "
                 f"{last_other['wrong_length']:.3f} after {other} (the two differ in both 1/|o_i| and the "
                 "std division, so a gap alone does not say which of the two caused it)")
        headline.update({f"{other}_{k}": last_other[k] for k in ("pass_rate", "greedy_pass_rate", "length",
                                                                 "wrong_length")})
    emit.summary(headline, artifacts=["grpo_policy.pt"])
