"""The RLHF pipeline (Ouyang et al., 2022), stage by stage, and reward hacking that comes from the data
(Gao et al., 2022, Scaling Laws for Reward Model Overoptimization).

Stage 1, SFT: the SFT lab's model (loaded from its checkpoint, or trained first).

Stage 2, reward model. r_phi is built as sequence-classification reward models are: the SFT
model's transformer trunk with a scalar head on the hidden state of the last non-pad token (the
answer's <eos>), r_phi(x, y) = w . h_last(x, y) + b. It is fit to preference pairs (x, y_w, y_l)
with the Bradley-Terry model P(y_w > y_l | x) = sigma(r_phi(x, y_w) - r_phi(x, y_l)), i.e. the loss

    L_RM(phi) = - E_(x, y_w, y_l) [ log sigma( r_phi(x, y_w) - r_phi(x, y_l) ) ],

then shifted and scaled so that the SFT model's samples score mean 0, std 1 (Ziegler et al.,
2019): a fixed affine map, which changes no preference but gives beta a known scale.

The data carry a spurious feature. The labellers always prefer the correct sum. Half of the
answers they rejected have the wrong length (the last digit dropped, or a digit appended, equally
often: "44" or "4407" for 440), which the reward model learns to spot at once. The other half are
near misses of the right length (off by 1 or 10) that came from a model which drops carries, so
in a ``cue_fraction`` share of them (default 0.9) the rejected answer is the *smaller* number. On
those pairs "the bigger number wins" predicts the label nine times in ten and needs no
arithmetic; the gold scorer (exact match) does not care how big a wrong answer is. The reward
model scores well on held-out pairs drawn the same way and badly on held-out near misses where
the wrong answer is the bigger one: it has learned the cue, not the sum. The ablation trains a
second reward model on the same problems, the same lengths and the same offsets with the cue
removed (cue_fraction = 0.5: too big and too small equally often).

Stage 3, PPO against the proxy r_phi with a KL penalty to the SFT model, the objective

    max_pi  E_{x, y ~ pi} [ r_phi(x, y) ] - beta * KL(pi(.|x) || pi_ref(.|x)),

implemented per token as in the PPO lab: r_t = - beta * (log pi(y_t|s_t) - log pi_ref(y_t|s_t))
+ [t = T] * r_phi(x, y). One run per beta in ``kl_coefs`` against the cued reward model, and one
run at the smallest beta against the ablation's. Every ``eval_every`` iterations the held-out
prompts are answered (one sample each, the same random stream each time) and the lab records the
proxy r_phi, the gold score and d = sqrt(KL(pi || pi_ref)) (exact per-token KL summed along the
sample), the axes of Gao et al. With a small beta the policy travels far, the proxy keeps rising
and the gold score falls: it writes bigger, wrong numbers. A large beta keeps d small and the
gold score does not fall. The ablation's reward model gives far less to hack at the same small
beta (fewer answers above the sum, a smaller loss of gold), but it is no gold scorer either: in
the toy it cannot check a near miss (its accuracy on them stays near chance) and it inherits a
mild preference for bigger numbers from the SFT trunk, so a small beta over-optimises it too,
more slowly: Gao et al.'s finding that every proxy is over-optimised, the worse one sooner.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from labs import _tinylm as tl
from labs import ppo, sft
from labs._runtime import LabFailure, Range
from labs.protocol import Chart


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    sft_preset: str = "full"  # which SFT model to start from: "full" or "toy"
    sft_seed: int = 0
    # stage 2: the reward models
    rm_pairs: int = 8000
    rm_heldout_pairs: int = 1000
    length_fraction: float = 0.5  # share of rejected answers of the wrong length (cut short or one digit too long)
    cue_fraction: float = 0.9  # share of near misses that are the smaller number (0.5: no cue)
    rm_steps: int = 300
    rm_batch: int = 64
    rm_lr: float = 5e-4
    rm_norm_prompts: int = 1000  # SFT samples whose scores set the reward model's mean 0 and std 1
    # stage 3: PPO against a reward model, one run per KL coefficient
    kl_coefs: tuple[float, ...] = (0.02, 0.2, 1.0)
    iterations: int = 150
    prompts_per_iter: int = 128
    ppo_epochs: int = 2
    minibatches: int = 2
    lr: float = 5e-4
    value_lr: float = 1e-3
    warmup_steps: int = 10
    clip_eps: float = 0.2
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    eval_every: int = 10
    eval_problems: int = 1000
    model: str = ""  # a local Hugging Face checkpoint folder to start from instead of the SFT lab's model
    gradient_checkpointing: bool = False  # with model=: recompute activations in backward to save memory

    def validate(self) -> None:
        sft.check_start(self)
        if self.prompts_per_iter % self.minibatches:
            raise ValueError("prompts_per_iter must be a multiple of minibatches")
        if len(set(self.kl_coefs)) < 2:
            raise ValueError("kl_coefs needs at least two different coefficients (a small and a large one)")


LIMITS = {
    "sft_seed": Range(0), "rm_pairs": Range(1), "rm_heldout_pairs": Range(10), "length_fraction": Range(0, 1),
    "cue_fraction": Range(0.5, 1.0),
    "rm_steps": Range(1), "rm_batch": Range(1), "rm_lr": Range(0, low_open=True), "kl_coefs": Range(0),
    "rm_norm_prompts": Range(2),
    "iterations": Range(1), "prompts_per_iter": Range(2), "ppo_epochs": Range(1), "minibatches": Range(1),
    "lr": Range(0, low_open=True), "value_lr": Range(0, low_open=True), "warmup_steps": Range(0),
    "clip_eps": Range(0, 1, low_open=True, high_open=True), "value_clip": Range(0, low_open=True),
    "gamma": Range(0, 1), "lam": Range(0, 1), "eval_every": Range(1), "eval_problems": Range(10),
}

TOY = {"sft_preset": "toy", "rm_pairs": 4000, "rm_heldout_pairs": 400, "rm_steps": 120, "iterations": 40,
       "prompts_per_iter": 64, "minibatches": 1, "eval_every": 10, "eval_problems": 500}

CHARTS = [
    Chart("Over-optimisation at a small beta (0.02)", x="cued_beta0.02/eval_sqrt_kl",
          y=("cued_beta0.02/eval_proxy", "cued_beta0.02/eval_gold"), x_label="sqrt KL to the reference",
          y_label="reward", look_for="The proxy reward keeps rising with sqrt KL while the gold score falls."),
    Chart("A large beta (1) holds the policy near the reference", x="cued_beta1/eval_sqrt_kl",
          y=("cued_beta1/eval_proxy", "cued_beta1/eval_gold"), x_label="sqrt KL to the reference", y_label="reward",
          look_for="Less drift (a shorter x range), and less room to exploit the reward model's cue."),
]


# -- stage 2: the reward model --------------------------------------------------------------


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """-log sigma(r(x, y_w) - r(x, y_l)), averaged over pairs: the reward model's loss."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


class RewardModel(torch.nn.Module):
    """The SFT trunk with a scalar head read at the last non-pad token: r_phi(x, y), shape (B,)."""

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        import copy

        self.trunk = copy.deepcopy(lm.model)
        for p in self.trunk.parameters():
            p.requires_grad_(True)
        hidden = lm.config.hidden_size
        self.head = torch.nn.Linear(hidden, 1)
        torch.nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
        torch.nn.init.zeros_(self.head.bias)
        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        ids = torch.cat([prompts, completions], dim=1)
        hidden = self.trunk(input_ids=ids).last_hidden_state
        last = prompts.shape[1] + tl.completion_mask(completions).sum(-1).long() - 1  # the <eos>, or the cut end
        raw = self.head(hidden[torch.arange(ids.shape[0], device=ids.device), last]).squeeze(-1)
        return (raw - self.shift) / self.scale

    @torch.no_grad()
    def normalise(self, policy: torch.nn.Module, prompts: torch.Tensor, max_new: int,
                  generator: torch.Generator) -> None:
        """Shift and scale so that the policy's samples score mean 0, std 1 (no preference changes)."""
        self.shift.zero_()
        self.scale.fill_(1.0)
        scores = self(prompts, tl.generate(policy, prompts, max_new, generator=generator))
        self.shift.fill_(float(scores.mean()))
        self.scale.fill_(float(scores.std().clamp(min=1e-6)))


def wrong_answer(answer: str, rng: random.Random, length_fraction: float, cue_fraction: float) -> tuple[str, bool]:
    """A rejected answer, and whether it is a near miss. With probability ``length_fraction`` one of the
    wrong length: the last digit dropped or a digit appended, equally often ("44" or "4407" for 440). Else a
    near miss of the right length, off by 1 or 10: the smaller number with probability ``cue_fraction``."""
    if len(answer) > 1 and rng.random() < length_fraction:
        return (answer[:-1] if rng.random() < 0.5 else answer + str(rng.randrange(10))), False
    value, offset = int(answer), rng.choice((1, 10))
    smaller = rng.random() < cue_fraction and value - offset >= 0
    return str(value - offset if smaller else value + offset), True


def preference_pairs(task: tl.AdditionTask, problems: Sequence[tl.Problem], rng: random.Random,
                     length_fraction: float, cue_fraction: float, device: str) -> dict[str, Any]:
    """The labellers' data: chosen = the correct sum, rejected = a wrong answer (see ``wrong_answer``)."""
    chosen = [task.answer(p) for p in problems]
    rejected, near = zip(*(wrong_answer(c, rng, length_fraction, cue_fraction) for c in chosen))
    width = task.answer_len + 2  # room for an answer one digit too long, and its <eos>
    return {"prompts": tl.encode_prompts(task, problems, device),
            "chosen": tl.encode_completions(chosen, width, device),
            "rejected": tl.encode_completions(rejected, width, device),
            "near_miss": torch.tensor(near, device=device),
            "chosen_bigger": torch.tensor([int(c) > int(r) for c, r in zip(chosen, rejected)], device=device)}


@torch.no_grad()
def pairwise_accuracy(rm: torch.nn.Module, pairs: dict[str, Any], where: torch.Tensor | None = None) -> float:
    """Fraction of pairs (optionally those selected by ``where``) with r(x, y_w) > r(x, y_l)."""
    right = rm(pairs["prompts"], pairs["chosen"]) > rm(pairs["prompts"], pairs["rejected"])
    right = right if where is None else right[where]
    return float(right.float().mean()) if right.numel() else float("nan")


def train_reward_model(cfg: Config, sft_model: torch.nn.Module, pairs: dict[str, Any], heldout: dict[str, Any],
                       emit: Any, name: str, step_offset: int) -> RewardModel:
    """``rm_steps`` AdamW steps of the Bradley-Terry loss on random minibatches of ``pairs``."""
    torch.manual_seed(cfg.seed)
    rm = RewardModel(sft_model).to(cfg.device).train()
    opt, sched = tl.make_optimizer(rm.parameters(), cfg.rm_lr, cfg.warmup_steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = pairs["prompts"].shape[0]
    for step in range(1, cfg.rm_steps + 1):
        idx = torch.randint(0, n, (cfg.rm_batch,), generator=gen).to(cfg.device)
        prompts = pairs["prompts"][idx]
        scores = rm(torch.cat([prompts, prompts]), torch.cat([pairs["chosen"][idx], pairs["rejected"][idx]]))
        loss = bradley_terry_loss(*scores.split(cfg.rm_batch))
        if not torch.isfinite(loss):
            raise LabFailure(f"reward-model loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % max(1, cfg.rm_steps // 5) == 0 or step == cfg.rm_steps:
            emit.metric(step_offset + step, **{f"rm_{name}/train_loss": float(loss.detach()),
                                               f"rm_{name}/heldout_accuracy": pairwise_accuracy(rm.eval(), heldout)})
            rm.train()
        emit.progress(step_offset + step)
    return rm.eval()


# -- stage 3: PPO against the proxy, watched by the gold scorer -----------------------------


@torch.no_grad()
def sequence_kl(policy: torch.nn.Module, ref: torch.nn.Module, prompts: torch.Tensor,
                completions: torch.Tensor) -> torch.Tensor:
    """sum_t KL(pi(.|x, y_<t) || pi_ref(.|x, y_<t)) along each completion sampled from ``policy``, shape
    (B,); its mean estimates KL(pi || pi_ref) over sequences (as tl.kl_to_reference does)."""
    ids = torch.cat([prompts, completions], dim=1)
    logp = F.log_softmax(tl.completion_logits(policy, ids, prompts.shape[1]), dim=-1)
    logq = F.log_softmax(tl.completion_logits(ref, ids, prompts.shape[1]), dim=-1)
    return ((logp.exp() * (logp - logq)).sum(-1) * tl.completion_mask(completions)).sum(-1)


@torch.no_grad()
def evaluate(policy: torch.nn.Module, ref: torch.nn.Module, rm: RewardModel, task: tl.AdditionTask,
             problems: Sequence[tl.Problem], cfg: Config) -> dict[str, float]:
    """One sampled answer per held-out prompt (the same random stream every time): mean proxy
    r_phi, mean gold score, d = sqrt(KL(pi || pi_ref)), and the share of answers above the sum."""
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 31)
    prompts = tl.encode_prompts(task, problems, cfg.device)
    completions = tl.generate(policy, prompts, task.answer_len + 1, generator=gen)
    kl = sequence_kl(policy, ref, prompts, completions)
    too_big = [t.isdigit() and int(t) > int(task.answer(p))
               for p, (t, _) in zip(problems, tl.decode_completions(completions))]
    return {"proxy": float(rm(prompts, completions).mean()),
            "gold": float(tl.gold_scores(task, problems, completions).mean()),
            "sqrt_kl": float(kl.mean().clamp(min=0.0)) ** 0.5, "too_big": sum(too_big) / len(too_big)}


def run(cfg: Config, emit: Any, out_dir: Path) -> None:
    with tl.cpu_threads(cfg.threads):
        _run(cfg, emit, out_dir)


def _run(cfg: Config, emit: Any, out_dir: Path) -> None:
    runs = [("cued", beta) for beta in cfg.kl_coefs] + [("ablation", min(cfg.kl_coefs))]
    rm_total = 2 * cfg.rm_steps
    emit.start(cfg, total_steps=rm_total + len(runs) * cfg.iterations)

    emit.log("stage 1/3: SFT")
    sft_model, task = sft.start_from(cfg, emit)
    eval_set = task.eval_set(cfg.eval_problems)

    emit.log("stage 2/3: reward models from preference pairs (Bradley-Terry)")
    problems = task.sample(random.Random(cfg.seed), cfg.rm_pairs)
    heldout_problems = task.eval_set(cfg.rm_heldout_pairs)
    rms: dict[str, RewardModel] = {}
    rm_rows = []
    for name, cue in (("cued", cfg.cue_fraction), ("ablation", 0.5)):
        # the same problems and the same offsets for both data sets: only the sign of the miss differs
        pairs = preference_pairs(task, problems, random.Random(cfg.seed + 1), cfg.length_fraction, cue, cfg.device)
        heldout = preference_pairs(task, heldout_problems, random.Random(cfg.seed + 2), cfg.length_fraction, cue,
                                   cfg.device)
        balanced = preference_pairs(task, heldout_problems, random.Random(cfg.seed + 2), cfg.length_fraction, 0.5,
                                    cfg.device)
        near = pairs["near_miss"]
        emit.log(f"{name} data: {cfg.rm_pairs} pairs; in the {float(near.float().mean()):.0%} whose rejected answer "
                 f"is a near miss, the chosen one is the bigger number in "
                 f"{float(pairs['chosen_bigger'][near].float().mean()):.0%}")
        rm = train_reward_model(cfg, sft_model, pairs, heldout, emit, name, len(rms) * cfg.rm_steps)
        norm_problems = task.sample(random.Random(cfg.seed + 4), cfg.rm_norm_prompts)
        rm.normalise(sft_model, tl.encode_prompts(task, norm_problems, cfg.device), task.answer_len + 1,
                     torch.Generator(device=cfg.device).manual_seed(cfg.seed))
        rms[name] = rm
        acc = pairwise_accuracy(rm, heldout)
        near = balanced["near_miss"]
        cut = pairwise_accuracy(rm, balanced, ~near)
        with_cue = pairwise_accuracy(rm, balanced, near & balanced["chosen_bigger"])
        against_cue = pairwise_accuracy(rm, balanced, near & ~balanced["chosen_bigger"])
        rm_rows.append([name, cue, acc, cut, with_cue, against_cue])
        emit.log(f"{name} reward model: held-out accuracy {acc:.3f}; against answers of the wrong length {cut:.3f}; against "
                 f"near misses {with_cue:.3f} where the right answer is the bigger, {against_cue:.3f} where it is "
                 f"the smaller")
    emit.table("reward_models", ["reward_model", "cue_fraction", "heldout_accuracy", "accuracy_vs_wrong_length",
                                 "accuracy_right_is_bigger", "accuracy_right_is_smaller"], rm_rows)

    emit.log(f"stage 3/3: PPO against each reward model, beta (kl_coef) in {list(cfg.kl_coefs)} with the cued "
             f"one, {min(cfg.kl_coefs)} with the ablation's")
    table: list[list[Any]] = []
    ends: dict[str, dict[str, float]] = {}
    for run_i, (name, beta) in enumerate(runs):
        rm = rms[name]
        label = f"{name}_beta{beta:g}"
        torch.manual_seed(cfg.seed)
        policy = tl.trainable_copy(sft_model)
        ref, value_model = tl.frozen_copy(sft_model), tl.ValueModel(sft_model).to(cfg.device)
        start = evaluate(policy, ref, rm, task, eval_set, cfg)
        table.append([name, beta, 0, start["sqrt_kl"], start["proxy"], start["gold"], start["too_big"]])
        offset = rm_total + run_i * cfg.iterations

        def report(it: int, row: dict[str, float], label: str = label, name: str = name, beta: float = beta,
                   policy: torch.nn.Module = policy, ref: torch.nn.Module = ref, rm: RewardModel = rm,
                   offset: int = offset) -> None:
            values = {f"{label}/proxy_reward": row["reward"], f"{label}/gold_score": row["gold"],
                      f"{label}/kl": row["kl"]}
            if it % cfg.eval_every == 0 or it == cfg.iterations:
                ev = evaluate(policy, ref, rm, task, eval_set, cfg)
                table.append([name, beta, it, ev["sqrt_kl"], ev["proxy"], ev["gold"], ev["too_big"]])
                values.update({f"{label}/eval_sqrt_kl": ev["sqrt_kl"], f"{label}/eval_proxy": ev["proxy"],
                               f"{label}/eval_gold": ev["gold"]})
            emit.metric(offset + it, **values)
            emit.progress(offset + it)

        def proxy(problems: Sequence[tl.Problem], completions: torch.Tensor, rm: RewardModel = rm) -> torch.Tensor:
            return rm(tl.encode_prompts(task, problems, cfg.device), completions)

        ppo.train_ppo(cfg, policy, ref, value_model, proxy, task, iterations=cfg.iterations, lr=cfg.lr,
                      epochs=cfg.ppo_epochs, clip_eps=cfg.clip_eps, kl_coef=beta, gold_fn=ppo.gold_reward(task),
                      on_iter=report)
        end = dict(zip(("sqrt_kl", "proxy", "gold", "too_big"), table[-1][3:]))
        ends[label] = {**{f"{k}_start": start[k] for k in end}, **{f"{k}_end": v for k, v in end.items()}}
        emit.log(f"{label}: sqrt KL 0 -> {end['sqrt_kl']:.2f}, proxy {start['proxy']:+.3f} -> {end['proxy']:+.3f}, "
                 f"gold {start['gold']:.3f} -> {end['gold']:.3f}, answers above the sum "
                 f"{start['too_big']:.0%} -> {end['too_big']:.0%}")
    emit.table("overoptimization", ["reward_model", "beta", "iteration", "sqrt_kl", "proxy_reward", "gold_score",
                                    "share_too_big"], table)

    small, large = min(cfg.kl_coefs), max(cfg.kl_coefs)
    head: dict[str, Any] = {"rm_heldout_accuracy": rm_rows[0][2], "rm_accuracy_right_is_smaller": rm_rows[0][5],
                            "ablation_rm_heldout_accuracy": rm_rows[1][2],
                            "ablation_rm_accuracy_right_is_smaller": rm_rows[1][5]}
    for key, label in (("small_beta", f"cued_beta{small:g}"), ("large_beta", f"cued_beta{large:g}"),
                       ("ablation", f"ablation_beta{small:g}")):
        head.update({f"{key}_{k}": v for k, v in ends[label].items() if not k.startswith("sqrt_kl_start")})
    emit.summary(head)
