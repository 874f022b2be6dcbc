"""The RLHF pipeline (Ouyang et al., 2022), stage by stage, and reward hacking (Gao et al., 2022).

Stage 1, SFT: the SFT lab's model (loaded from its checkpoint, or trained first). Its
demonstrations were sloppy, so it sometimes stops an answer a digit early.

Stage 2, reward model: preference pairs (x, y_w, y_l) from "labellers" who always prefer the
correct answer, fit with the Bradley-Terry loss

    L_RM = - log sigma( r_phi(x, y_w) - r_phi(x, y_l) ).

r_phi is a copy of the SFT model that scores each completion token with its (unnormalised)
logit for that token and sums the scores: r_phi(x, y) = sum_t s_phi(y_t | x, y_<t). It starts
from the SFT model's judgement and is fit to the labels; after training it is shifted and
scaled so that the SFT model's samples score mean 0 and std 1 (Ziegler et al., 2019), which
gives kl_coef a known scale and changes no preference.

The labelled data carry a spurious feature, as real preference data do (longer answers tend
to win): half of the wrong answers the labellers saw were cut short ("44" for 440), the rest
near misses of the right length (off by 1 or 10). So whenever the two answers differ in
length, the longer one is preferred, and a sum over tokens can buy reward with length. The
reward model's held-out pairwise accuracy is high all the same; the lab also reports it on
the equal-length pairs, where length gives no hint.

Stage 3, PPO against the learned reward with a per-token KL penalty to the SFT model,

    r_t = - kl_coef * (log pi(y_t|s_t) - log pi_ref(y_t|s_t)) + [t = T] * r_phi(x, y),

exactly the PPO lab's loop with r_phi in place of the gold scorer, with room for two more
tokens than the longest correct answer. Two runs from the same start: kl_coef = 0 and
kl_coef > 0. Both optimise the proxy r_phi; the gold score (exact answers, one sample per
held-out prompt) is only watched. Near the SFT model "longer" and "right" agree (finishing a
cut-short answer helps both), and the KL-regularised run stays there: proxy and gold rise
together. Without the KL term nothing stops the policy from following length past the right
answer (digits appended, <eos> dropped): the proxy keeps rising while the gold score falls.
That is reward hacking; the lab's last table shows the answers.
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
from labs._runtime import LabFailure


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    sft_preset: str = "full"  # which SFT model to start from: "full" or "toy"
    sft_seed: int = 0
    # stage 2: the reward model
    rm_pairs: int = 8000
    rm_heldout_pairs: int = 1000
    short_fraction: float = 0.5  # share of rejected answers that are cut short (the spurious feature)
    rm_steps: int = 300
    rm_batch: int = 64
    rm_lr: float = 5e-4
    # stage 3: PPO against the reward model
    iterations: int = 200
    prompts_per_iter: int = 128
    ppo_epochs: int = 2
    minibatches: int = 2
    lr: float = 3e-4
    value_lr: float = 1e-3
    warmup_steps: int = 10
    clip_eps: float = 0.2
    value_clip: float = 0.2
    kl_coef: float = 0.2  # the regularised run (rewards are normalised to std 1); the other run uses 0
    gamma: float = 1.0
    lam: float = 0.95
    extra_tokens: int = 2  # room beyond the longest correct answer, so length can be exploited
    eval_every: int = 10
    eval_problems: int = 1000

    def validate(self) -> None:
        sft.check_preset(self.sft_preset)
        if not 0.0 <= self.short_fraction <= 1.0:
            raise ValueError("short_fraction must lie in [0, 1]")
        if self.prompts_per_iter % self.minibatches:
            raise ValueError("prompts_per_iter must be a multiple of minibatches")


TOY = {"sft_preset": "toy", "rm_pairs": 3000, "rm_heldout_pairs": 300, "rm_steps": 100, "iterations": 40,
       "prompts_per_iter": 64, "minibatches": 1, "eval_every": 10, "eval_problems": 300}


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """-log sigma(r(x, y_w) - r(x, y_l)), averaged over pairs: the reward model's loss.

    P(y_w > y_l) = sigma(r_w - r_l) is the Bradley-Terry model of a labeller's choice.
    """
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


class TokenRewardModel(torch.nn.Module):
    """r_phi(x, y) = sum over the completion's tokens of a per-token score s_phi(y_t | x, y_<t).

    A copy of the SFT model: s_phi is its (unnormalised) logit for the token actually written,
    so the reward model starts from the SFT model's own judgement of each token and is then
    fit to the labellers' choices. A sum over tokens also lets the reward grow with length.
    """

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        self.lm = tl.trainable_copy(lm)

        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        ids = torch.cat([prompts, completions], dim=1)
        logits = tl.completion_logits(self.lm, ids, prompts.shape[1])
        token_scores = torch.gather(logits, -1, completions.unsqueeze(-1)).squeeze(-1)
        raw = (token_scores * tl.completion_mask(completions)).sum(-1)
        return (raw - self.shift) / self.scale

    @torch.no_grad()
    def normalise(self, policy: torch.nn.Module, prompts: torch.Tensor, max_new: int,
                  generator: torch.Generator) -> None:
        """Shift and scale so that the policy's samples score mean 0, std 1 (Ziegler et al., 2019):
        a fixed affine map, so no preference changes, but kl_coef now has a known scale."""
        self.shift.zero_()
        self.scale.fill_(1.0)
        scores = self(prompts, tl.generate(policy, prompts, max_new, generator=generator))
        self.shift.fill_(float(scores.mean()))
        self.scale.fill_(float(scores.std().clamp(min=1e-6)))


def reward_scores(rm: torch.nn.Module, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """r_phi(x, y) for a batch, shape (B,)."""
    return rm(prompts, completions)


def near_miss(answer: str, rng: random.Random) -> str:
    """A plausible wrong answer: off by one or by ten (the SFT model's own commonest slips)."""
    value = int(answer)
    options = [v for v in (value - 1, value + 1, value - 10, value + 10) if v >= 0]
    return str(rng.choice(options))


def labelled_pairs(task: tl.AdditionTask, problems: Sequence[tl.Problem], rng: random.Random,
                   short_fraction: float, device: str) -> dict[str, Any]:
    """The labellers' data: chosen = the correct answer; rejected = a wrong one, cut short
    (last digit dropped) with probability ``short_fraction``, else a near miss (off by 1 or 10)."""
    chosen, rejected = [], []
    for p in problems:
        answer = task.answer(p)
        wrong = answer[:-1] if len(answer) > 1 and rng.random() < short_fraction else near_miss(answer, rng)
        chosen.append(answer)
        rejected.append(wrong)
    width = task.answer_len + 1
    return {"problems": list(problems), "prompts": tl.encode_prompts(task, problems, device),
            "chosen": tl.encode_completions(chosen, width, device),
            "rejected": tl.encode_completions(rejected, width, device),
            "chosen_longer": sum(len(c) > len(r) for c, r in zip(chosen, rejected)) / len(chosen)}


@torch.no_grad()
def pairwise_accuracy(rm: torch.nn.Module, pairs: dict[str, Any]) -> tuple[float, float]:
    """Fraction of pairs with r(x, y_w) > r(x, y_l), and the Bradley-Terry loss on them."""
    rm.eval()
    r_w = reward_scores(rm, pairs["prompts"], pairs["chosen"])
    r_l = reward_scores(rm, pairs["prompts"], pairs["rejected"])
    rm.train()
    return float((r_w > r_l).float().mean()), float(bradley_terry_loss(r_w, r_l))


def train_reward_model(cfg: Config, sft_model: torch.nn.Module, train: dict[str, Any], heldout: dict[str, Any],
                       emit: Any) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    rm = TokenRewardModel(sft_model).to(cfg.device).train()
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.rm_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = train["prompts"].shape[0]
    for step in range(1, cfg.rm_steps + 1):
        idx = torch.randint(0, n, (cfg.rm_batch,), generator=gen).to(cfg.device)
        prompts = train["prompts"][idx]
        both = torch.cat([train["chosen"][idx], train["rejected"][idx]])
        scores = reward_scores(rm, torch.cat([prompts, prompts]), both)
        r_w, r_l = scores.split(cfg.rm_batch)
        loss = bradley_terry_loss(r_w, r_l)
        if not torch.isfinite(loss):
            raise LabFailure(f"reward-model loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
        if emit is not None and (step % max(1, cfg.rm_steps // 10) == 0 or step == cfg.rm_steps):
            acc, held_loss = pairwise_accuracy(rm, heldout)
            emit.metric(step, **{"rm/train_loss": float(loss.detach()),
                                 "rm/train_accuracy": float((r_w > r_l).float().mean()),
                                 "rm/heldout_loss": held_loss, "rm/heldout_accuracy": acc})
    return rm.eval()


@torch.no_grad()
def evaluate_policy(policy: torch.nn.Module, rm: torch.nn.Module, task: tl.AdditionTask,
                    problems: Sequence[tl.Problem], cfg: Config, max_new: int) -> dict[str, float]:
    """One sampled answer per held-out prompt (the same random stream every time): its proxy
    reward r_phi, its gold score, and its length in characters."""
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 31)
    prompts = tl.encode_prompts(task, problems, cfg.device)
    completions = tl.generate(policy, prompts, max_new, generator=gen)
    decoded = tl.decode_completions(completions)
    return {"proxy_reward": float(reward_scores(rm, prompts, completions).mean()),
            "gold_score": float(tl.gold_scores(task, problems, completions).mean()),
            "length": sum(len(text) for text, _ in decoded) / len(decoded)}


def run(cfg: Config, emit: Any, out_dir: Path) -> None:
    with tl.cpu_threads(cfg.threads):
        _run(cfg, emit, out_dir)


def _run(cfg: Config, emit: Any, out_dir: Path) -> None:
    rm_total = cfg.rm_steps
    emit.start(cfg, total_steps=rm_total + 2 * cfg.iterations)

    emit.log("stage 1/3: SFT")
    sft_model, task = sft.start_from(cfg, emit)
    eval_set = task.eval_set(cfg.eval_problems)
    max_new = task.answer_len + 1 + cfg.extra_tokens
    emit.progress(0)

    emit.log("stage 2/3: reward model from preference pairs (Bradley-Terry)")
    rng = random.Random(cfg.seed)
    train = labelled_pairs(task, task.sample(rng, cfg.rm_pairs), rng, cfg.short_fraction, cfg.device)
    heldout = labelled_pairs(task, task.eval_set(cfg.rm_heldout_pairs), random.Random(cfg.seed + 3),
                             cfg.short_fraction, cfg.device)
    emit.log(f"{cfg.rm_pairs} labelled pairs: the preferred answer is always correct, and also the longer one "
             f"in {train['chosen_longer']:.0%} of pairs (the spurious feature)")
    rm = train_reward_model(cfg, sft_model, train, heldout, emit)
    rm.normalise(sft_model, tl.encode_prompts(task, task.sample(rng, 1000), cfg.device), max_new,
                 torch.Generator(device=cfg.device).manual_seed(cfg.seed))
    emit.log(f"reward normalised so that SFT samples score mean 0, std 1 (raw shift {float(rm.shift):.2f}, "
             f"scale {float(rm.scale):.2f})")
    rm_acc, rm_loss = pairwise_accuracy(rm, heldout)
    same = tl.completion_mask(heldout["chosen"]).sum(-1) == tl.completion_mask(heldout["rejected"]).sum(-1)
    rm_acc_same_len = pairwise_accuracy(rm, {k: heldout[k][same] for k in ("prompts", "chosen", "rejected")})[0]
    emit.log(f"reward model: held-out pairwise accuracy {rm_acc:.3f} ({rm_acc_same_len:.3f} on the pairs of equal "
             f"length, where length gives no hint)")
    emit.progress(rm_total)

    emit.log(f"stage 3/3: PPO against the reward model, kl_coef = 0 and kl_coef = {cfg.kl_coef}")

    def proxy_reward(problems: Sequence[tl.Problem], completions: torch.Tensor) -> torch.Tensor:
        return reward_scores(rm, tl.encode_prompts(task, problems, cfg.device), completions)

    results: dict[str, list[tuple[int, dict[str, float]]]] = {}
    policies: dict[str, torch.nn.Module] = {"sft": sft_model}
    for run_i, (label, kl_coef) in enumerate((("no_kl", 0.0), ("with_kl", cfg.kl_coef))):
        torch.manual_seed(cfg.seed)
        policy = tl.trainable_copy(sft_model)
        ref, value_model = tl.frozen_copy(sft_model), tl.ValueModel(sft_model).to(cfg.device)
        curve = [(0, evaluate_policy(policy, rm, task, eval_set, cfg, max_new))]
        offset = rm_total + run_i * cfg.iterations

        def report(it: int, row: dict[str, float], label: str = label, curve: list = curve, offset: int = offset,
                   policy: torch.nn.Module = policy) -> None:
            values = {f"{label}/proxy_reward": row["reward"], f"{label}/gold_score": row["gold"],
                      f"{label}/kl": row["kl"], f"{label}/length": row["length"]}
            if it % cfg.eval_every == 0 or it == cfg.iterations:
                ev = evaluate_policy(policy, rm, task, eval_set, cfg, max_new)
                curve.append((it, ev))
                values.update({f"{label}/eval_proxy_reward": ev["proxy_reward"],
                               f"{label}/eval_gold_score": ev["gold_score"],
                               f"{label}/eval_length": ev["length"]})
            emit.metric(offset + it, **values)
            emit.progress(offset + it)

        ppo.train_ppo(cfg, policy, ref, value_model, proxy_reward, task, iterations=cfg.iterations, lr=cfg.lr,
                      epochs=cfg.ppo_epochs, clip_eps=cfg.clip_eps, kl_coef=kl_coef, gold_fn=ppo.gold_reward(task),
                      max_new_tokens=max_new, on_iter=report)
        results[label] = curve
        policies[label] = policy
        first, peak_gold, last = curve[0][1], max(c[1]["gold_score"] for c in curve), curve[-1][1]
        emit.log(f"{label}: proxy reward {first['proxy_reward']:.3f} -> {last['proxy_reward']:.3f}, gold score "
                 f"{first['gold_score']:.3f} -> {last['gold_score']:.3f} (peak {peak_gold:.3f}), answer length "
                 f"{first['length']:.2f} -> {last['length']:.2f}")

    rows = []
    for label, curve in results.items():
        for it, ev in curve:
            rows.append([label, it, ev["proxy_reward"], ev["gold_score"], ev["length"]])
    emit.table("proxy_vs_gold", ["run", "iteration", "proxy_reward", "gold_score", "length"], rows)

    shown = eval_set[:8]
    prompts = tl.encode_prompts(task, shown, cfg.device)
    answers = {}
    for label, model in policies.items():
        completions = tl.generate(model, prompts, max_new, greedy=True)
        answers[label] = list(zip(tl.decode_completions(completions), reward_scores(rm, prompts, completions).tolist()))
    emit.table("greedy_answers", ["prompt", "correct", *(f"{k} (r_phi)" for k in policies)],
               [[task.prompt(p), task.answer(p),
                 *(f"{text}{'' if fin else '...'} ({r:+.2f})" for (text, fin), r in (answers[k][i] for k in policies))]
                for i, p in enumerate(shown)])
    head: dict[str, Any] = {"rm_heldout_accuracy": rm_acc, "rm_heldout_accuracy_same_length": rm_acc_same_len,
                            "rm_heldout_loss": rm_loss, "chosen_longer_fraction": train["chosen_longer"]}
    for label, curve in results.items():
        proxies = [ev["proxy_reward"] for _, ev in curve]
        golds = [ev["gold_score"] for _, ev in curve]
        head.update({f"{label}_proxy_start": proxies[0], f"{label}_proxy_end": proxies[-1],
                     f"{label}_proxy_peak": max(proxies), f"{label}_gold_start": golds[0],
                     f"{label}_gold_end": golds[-1], f"{label}_gold_peak": max(golds),
                     f"{label}_length_end": curve[-1][1]["length"]})
    emit.summary(head)
