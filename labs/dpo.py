"""Direct preference optimisation (Rafailov et al., 2023) from the SFT model.

Given preference pairs (x, y_w, y_l), y_w preferred to y_l, DPO fits the policy directly, with
no reward model and no sampling, through the loss

    L_DPO = - log sigma( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

where pi_ref is a frozen copy of the SFT model and log pi(y|x) sums the completion's token
log-probabilities. The bracket is a difference of *implicit rewards*

    r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)),

the reward under which the policy is the optimum of the KL-regularised RL objective
max E[r] - beta * KL(pi || pi_ref). At the start pi = pi_ref, every implicit reward is 0
and the loss is ln 2 = 0.693. beta sets the exchange rate between reward and KL: a small
beta needs a large log-ratio to reach the same margin, so the policy drifts further from
the reference; the lab's beta sweep measures that drift.

Pairs come from the task: for a prompt "435+5=", y_w = "440" (correct) and y_l = the answer
with one digit changed (wrong). Held-out pairs use held-out prompts. Metrics: the loss, the
implicit rewards of chosen and rejected, their margin, preference accuracy (the fraction of
pairs with r(x, y_w) > r(x, y_l); ties count as wrong, so it starts at 0), the KL to the
reference (the exact per-token KL summed along the policy's own samples) and the gold score
of greedy answers. The default beta = 1 is large for DPO: at this scale and batch size it
generalises best to held-out prompts; the sweep shows the smaller, more usual values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

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
    beta: float = 1.0  # large for a DPO run: these pairs are easy to tell apart (see the sweep for smaller)
    lr: float = 3e-4
    warmup_steps: int = 10
    steps: int = 400
    batch_pairs: int = 128
    train_pairs: int = 20000
    heldout_pairs: int = 1000
    eval_every: int = 50
    kl_samples: int = 500  # held-out prompts sampled for the KL estimate
    sweep_betas: tuple[float, ...] = (0.03, 0.1, 0.3, 3.0)  # extra runs: same data, seed and steps
    sweep_steps: int = 200  # steps of each sweep run (a multiple of eval_every)

    def validate(self) -> None:
        sft.check_preset(self.sft_preset)
        if self.beta <= 0 or any(b <= 0 for b in self.sweep_betas):
            raise ValueError("beta must be positive")
        if self.sweep_betas and (self.sweep_steps > self.steps or self.sweep_steps % self.eval_every):
            raise ValueError("sweep_steps must be a multiple of eval_every and at most steps")


TOY = {"sft_preset": "toy", "steps": 100, "train_pairs": 8000, "heldout_pairs": 300, "eval_every": 25,
       "kl_samples": 300, "sweep_betas": (0.03, 0.3), "sweep_steps": 50}


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sigmoid DPO loss (mean over pairs) and the implicit rewards of chosen and rejected.

    Arguments are sequence log-probabilities log pi(y|x), shape (B,). Returns
    ``(loss, chosen_rewards, rejected_rewards)`` with reward = beta * (log pi - log pi_ref)
    (per pair, shape (B,)). With policy = reference the loss is ln 2.
    """
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


def corrupt(answer: str, rng: random.Random) -> str:
    """A wrong answer: ``answer`` with one digit replaced by a different digit (no leading zero)."""
    i = rng.randrange(len(answer))
    choices = [d for d in "0123456789" if d != answer[i] and not (i == 0 and d == "0" and len(answer) > 1)]
    return answer[:i] + rng.choice(choices) + answer[i + 1 :]


def make_pairs(task: tl.AdditionTask, problems: list[tl.Problem], rng: random.Random,
               device: str) -> dict[str, Any]:
    """Prompts, chosen (correct) and rejected (one digit wrong) completions as id tensors."""
    width = task.answer_len + 1
    return {
        "problems": problems,
        "prompts": tl.encode_prompts(task, problems, device),
        "chosen": tl.encode_completions([task.answer(p) for p in problems], width, device),
        "rejected": tl.encode_completions([corrupt(task.answer(p), rng) for p in problems], width, device),
    }


@torch.no_grad()
def pair_logps(model: torch.nn.Module, pairs: dict[str, Any], chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs of every pair's chosen and rejected completion under ``model``."""
    chosen, rejected = [], []
    for i in range(0, pairs["prompts"].shape[0], chunk):
        prompts = pairs["prompts"][i : i + chunk]
        chosen.append(tl.sequence_logprob(model, prompts, pairs["chosen"][i : i + chunk]))
        rejected.append(tl.sequence_logprob(model, prompts, pairs["rejected"][i : i + chunk]))
    return torch.cat(chosen), torch.cat(rejected)


@torch.no_grad()
def evaluate(policy: torch.nn.Module, ref: torch.nn.Module, heldout: dict[str, Any], ref_logps: tuple,
             task: tl.AdditionTask, kl_problems: list[tl.Problem], cfg: Config, beta: float) -> dict[str, float]:
    policy.eval()
    chosen, rejected = pair_logps(policy, heldout)
    loss, r_w, r_l = dpo_loss(chosen, rejected, ref_logps[0], ref_logps[1], beta)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 1)
    out = {
        "loss": float(loss),
        "preference_accuracy": float((r_w > r_l).float().mean()),
        "margin": float((r_w - r_l).mean()),
        "chosen_reward": float(r_w.mean()),
        "rejected_reward": float(r_l.mean()),
        "kl_to_ref": tl.kl_to_reference(policy, ref, task, kl_problems, cfg.device, gen),
        "gold_score": tl.pass_rate(policy, task, task.eval_set(len(heldout["problems"])), cfg.device),
    }
    policy.train()
    return out


def train_dpo(cfg: Config, sft_model: torch.nn.Module, ref: torch.nn.Module, task: tl.AdditionTask, beta: float,
              steps: int, train: dict[str, Any], train_ref: tuple, heldout: dict[str, Any], heldout_ref: tuple,
              emit: Any = None) -> tuple[torch.nn.Module, dict[int, dict[str, float]]]:
    """DPO from a fresh copy of the SFT model, the same batches for every beta.

    Evaluates on the held-out pairs every ``cfg.eval_every`` steps (history keyed by step) and
    emits metrics when ``emit`` is given.
    """
    policy = tl.trainable_copy(sft_model).train()
    opt, sched = tl.make_optimizer(policy.parameters(), cfg.lr, cfg.warmup_steps)
    rng = torch.Generator().manual_seed(cfg.seed)
    n = train["prompts"].shape[0]
    kl_problems = task.eval_set(cfg.kl_samples)
    history: dict[int, dict[str, float]] = {}
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (cfg.batch_pairs,), generator=rng).to(cfg.device)
        prompts = train["prompts"][idx]
        both = torch.cat([train["chosen"][idx], train["rejected"][idx]])
        logps = tl.sequence_logprob(policy, torch.cat([prompts, prompts]), both)
        chosen, rejected = logps.split(cfg.batch_pairs)
        loss, r_w, r_l = dpo_loss(chosen, rejected, train_ref[0][idx], train_ref[1][idx], beta)
        if not torch.isfinite(loss):
            raise LabFailure(f"DPO loss became {loss.item()} at step {step} (beta={beta})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == steps:
            history[step] = evaluate(policy, ref, heldout, heldout_ref, task, kl_problems, cfg, beta)
            if emit is not None:
                ev = history[step]
                emit.metric(step, **{
                    "losses/dpo": float(loss.detach()), "rewards/chosen": float(r_w.mean()),
                    "rewards/rejected": float(r_l.mean()), "rewards/margin": float((r_w - r_l).mean()),
                    "rewards/accuracy": float((r_w > r_l).float().mean()),
                    "eval/loss": ev["loss"], "eval/preference_accuracy": ev["preference_accuracy"],
                    "eval/margin": ev["margin"], "eval/chosen_reward": ev["chosen_reward"],
                    "eval/rejected_reward": ev["rejected_reward"], "eval/kl_to_ref": ev["kl_to_ref"],
                    "eval/gold_score": ev["gold_score"]})
                emit.progress(step)
    return policy.eval(), history


def run(cfg: Config, emit: Any, out_dir: Path) -> None:
    with tl.cpu_threads(cfg.threads):
        _run(cfg, emit, out_dir)


def _run(cfg: Config, emit: Any, out_dir: Path) -> None:
    emit.start(cfg, total_steps=cfg.steps + cfg.sweep_steps * len(cfg.sweep_betas))
    sft_model, task = sft.start_from(cfg, emit)
    ref = tl.frozen_copy(sft_model)
    torch.manual_seed(cfg.seed)

    rng = random.Random(cfg.seed)
    train = make_pairs(task, task.sample(rng, cfg.train_pairs), rng, cfg.device)
    heldout = make_pairs(task, task.eval_set(cfg.heldout_pairs), random.Random(cfg.seed + 7), cfg.device)
    example = heldout["problems"][0]
    emit.log(f"{cfg.train_pairs} training pairs, {len(heldout['problems'])} held-out pairs (held-out prompts); e.g. "
             f"{task.prompt(example)} chosen {task.answer(example)!r} rejected "
             f"{tl.TOKENIZER.decode(heldout['rejected'][0].tolist())[0]!r}")
    train_ref, heldout_ref = pair_logps(ref, train), pair_logps(ref, heldout)
    emit.log("reference log-probs computed once: pi_ref is frozen, so they never change")

    kl_problems = task.eval_set(cfg.kl_samples)
    before = evaluate(ref, ref, heldout, heldout_ref, task, kl_problems, cfg, cfg.beta)
    emit.metric(0, **{"eval/loss": before["loss"], "eval/preference_accuracy": before["preference_accuracy"],
                      "eval/margin": before["margin"], "eval/kl_to_ref": before["kl_to_ref"],
                      "eval/gold_score": before["gold_score"]})
    emit.log(f"policy = reference: loss {before['loss']:.4f} (ln 2 = 0.6931), every implicit reward 0")
    logp_acc_before = float((heldout_ref[0] > heldout_ref[1]).float().mean())

    policy, history = train_dpo(cfg, sft_model, ref, task, cfg.beta, cfg.steps, train, train_ref, heldout,
                                heldout_ref, emit=emit)
    after = history[cfg.steps]
    chosen, rejected = pair_logps(policy, heldout)
    logp_acc_after = float((chosen > rejected).float().mean())
    emit.log(f"held-out preference accuracy {after['preference_accuracy']:.3f}, margin {after['margin']:.3f}, "
             f"KL to reference {after['kl_to_ref']:.3f} nats; gold score {before['gold_score']:.3f} -> "
             f"{after['gold_score']:.3f}")
    if not after["preference_accuracy"] > 0.5:
        raise LabFailure(f"DPO did not learn the preferences: held-out accuracy {after['preference_accuracy']:.3f}")
    tl.save_model(out_dir / "dpo_policy.pt", policy, {"beta": cfg.beta, "steps": cfg.steps})

    headline = {
        "preference_accuracy": after["preference_accuracy"], "reward_margin": after["margin"],
        "chosen_reward": after["chosen_reward"], "rejected_reward": after["rejected_reward"],
        "kl_to_ref": after["kl_to_ref"], "loss": after["loss"],
        "gold_score_before": before["gold_score"], "gold_score_after": after["gold_score"],
        "logp_preference_accuracy_before": logp_acc_before, "logp_preference_accuracy_after": logp_acc_after,
    }
    if cfg.sweep_betas:
        columns = ["beta", "steps", "preference_accuracy", "margin", "kl_to_ref", "gold_score"]
        at = history[cfg.sweep_steps]
        rows = [[cfg.beta, cfg.sweep_steps, at["preference_accuracy"], at["margin"], at["kl_to_ref"], at["gold_score"]]]
        for i, beta in enumerate(cfg.sweep_betas):
            emit.log(f"beta sweep: beta={beta}, {cfg.sweep_steps} steps from the same SFT model on the same batches")
            _, sweep = train_dpo(cfg, sft_model, ref, task, beta, cfg.sweep_steps, train, train_ref, heldout,
                                 heldout_ref)
            res = sweep[cfg.sweep_steps]
            rows.append([beta, cfg.sweep_steps, res["preference_accuracy"], res["margin"], res["kl_to_ref"],
                         res["gold_score"]])
            emit.progress(cfg.steps + (i + 1) * cfg.sweep_steps)
        rows.sort(key=lambda r: r[0])
        emit.table("beta_sweep", columns, rows)
        emit.log("beta is the price of drift: the smaller it is, the further the policy moves from the reference "
                 "to buy the same preference margin (read kl_to_ref down the table)")
        headline["sweep_kl_smallest_beta"] = rows[0][4]
        headline["sweep_kl_largest_beta"] = rows[-1][4]
    emit.summary(headline, artifacts=["dpo_policy.pt"])
