"""Direct preference optimisation (Rafailov et al., 2023) from the SFT model, on its own mistakes.

Given preference pairs (x, y_w, y_l), y_w preferred to y_l, DPO fits the policy directly, with
no reward model and no sampling during training, through the loss

    L_DPO = - log sigma( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

where pi_ref is a frozen copy of the SFT model and log pi(y|x) sums the completion's token
log-probabilities (through its <eos>). The bracket is a difference of *implicit rewards*

    r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)),

the reward under which the policy is the optimum of the KL-regularised RL objective
max E[r] - beta * KL(pi || pi_ref). At the start pi = pi_ref, every implicit reward is 0
and the loss is ln 2 = 0.693. beta sets the exchange rate between reward and KL: a small
beta needs a large log-ratio to reach the same margin, so the policy drifts further from
the reference; the lab's beta sweep measures that drift (KL to the reference, same data,
seed and steps for every beta).

The pairs: on-policy negatives. For a prompt "435+5=", y_w = "440<eos>" (the correct answer)
and y_l = a wrong answer *sampled from the SFT model itself* (``samples_per_prompt`` draws at
``temperature``; the first wrong one is kept, so y_l ~ pi_ref(. | x, y wrong); prompts where
every draw was right give no pair). We keep all of them, with no filter on the SFT model's
own ranking: filtering on the quantity we measure would make the baseline low by
construction. What matters is that these are the mistakes the model actually makes (a
dropped last digit learnt from sloppy demonstrations, a carry gone wrong), so its own
log-probs often rank them above the correct answer; hand-made negatives (one random digit
changed, ``corrupt``) are a different matter: the SFT model already ranks ~97% of those
correctly, so DPO on them has nothing to show. The lab measures both rankings.

Held-out pairs are built the same way on the held-out prompts, and the headline compares, on
the same pairs and in the same run:

    before  the SFT model's ranking: the fraction with log pi_ref(y_w|x) > log pi_ref(y_l|x);
    after   the DPO policy's implicit reward: the fraction with r(x, y_w) > r(x, y_l),
            and the DPO policy's own ranking log pi(y_w|x) > log pi(y_l|x).

Ties count one half (the chance level), never silently as right or wrong, and are counted in
the headline: at pi = pi_ref every implicit reward is 0, so the implicit-reward accuracy of the
untrained policy is exactly 0.5, not 0. The noise of an accuracy p on n pairs is the binomial
std sqrt(p (1 - p) / n); the gain is reported in units of sqrt(var_before + var_after), which
overstates the noise of a difference of two positively correlated measurements (the same
pairs), so the ratio errs low. Also measured: the gold score
(exact match, greedy decoding, the held-out problems) before and after, and the KL to the
reference (the exact per-token KL summed along the policy's own samples).

The default beta = 1 is large for DPO, and chosen by the sweep: at the usual beta = 0.1 the
policy drifts much further from the reference in the same steps, the chosen answers' log-probs
can fall along with the rejected ones, and the gold score gains least or falls (seed 0, from
gold 0.593: toy, 50 steps, KL 1.70 and gold 0.44 at beta = 0.1 against KL 0.61 and gold 0.67
at beta = 1; full preset, 200 steps, gold 0.59 / 0.63 / 0.79 / 0.84 / 0.80 at beta = 0.03 /
0.1 / 0.3 / 1 / 3). Read gold_score next to kl_to_ref in the table.

Both presets start from the SFT lab's --toy model (gold ~0.6): DPO needs a model that makes
mistakes. The SFT lab's full model (gold 0.989) already ranks 98% of its own sampled wrong
answers below the right one; from it (``--set sft_preset=full``, seed 0) DPO moves that to 0.989
(0.8 binomial std, noise) while gold falls to 0.960, and the lab fails, as it should.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from labs import _distributed as ddp
from labs import _tinylm as tl
from labs import sft
from labs._runtime import LabFailure, Range
from labs.protocol import Chart


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    # the SFT model to start from, "full" or "toy": the toy one (gold ~0.6) makes mistakes for DPO to fix; the
    # full one (gold 0.989) already ranks 98% of its own sampled wrong answers below the right one (gain ~0)
    sft_preset: str = "toy"
    sft_seed: int = 0
    beta: float = 1.0  # large for DPO, and the best here: the sweep shows smaller betas drift and lose gold
    lr: float = 3e-4
    warmup_steps: int = 10
    steps: int = 400
    batch_pairs: int = 128
    train_prompts: int = 20000  # training prompts; each with a wrong sample gives one pair
    heldout_prompts: int = 1000  # held-out prompts for the pairs, the gold score and the KL
    samples_per_prompt: int = 4  # draws from the SFT model per prompt to find a wrong answer
    temperature: float = 1.0  # of those draws
    eval_every: int = 50
    sweep_betas: tuple[float, ...] = (0.03, 0.1, 0.3, 3.0)  # extra runs: same pairs, seed and steps
    sweep_steps: int = 200  # steps of each sweep run (a multiple of eval_every)
    model: str = ""  # a local Hugging Face checkpoint folder to start from instead of the SFT lab's model
    gradient_checkpointing: bool = False  # with model=: recompute activations in backward to save memory

    def validate(self) -> None:
        sft.check_start(self)
        ddp.check_divides(self.batch_pairs, "batch_pairs")
        if self.sweep_betas and (self.sweep_steps > self.steps or self.sweep_steps % self.eval_every):
            raise ValueError("sweep_steps must be a multiple of eval_every and at most steps")


LIMITS = {
    "seed": Range(0), "threads": Range(1), "sft_seed": Range(0),
    "beta": Range(0, low_open=True), "lr": Range(0, low_open=True), "warmup_steps": Range(0),
    "steps": Range(1), "batch_pairs": Range(1), "train_prompts": Range(1), "heldout_prompts": Range(1),
    "samples_per_prompt": Range(1), "temperature": Range(0, low_open=True), "eval_every": Range(1),
    "sweep_betas": Range(0, low_open=True, may_be_empty=True), "sweep_steps": Range(1),
}

TOY = {"sft_preset": "toy", "steps": 100, "train_prompts": 3000, "samples_per_prompt": 2, "eval_every": 50,
       "sweep_betas": (0.1, 3.0), "sweep_steps": 50}

CHARTS = [
    Chart("DPO implicit rewards of chosen and rejected answers", y=("eval/chosen_reward", "eval/rejected_reward"),
          x_label="step", y_label="beta * log(pi / pi_ref), held out",
          look_for="The gap opens: chosen above rejected. Both may fall; DPO only asks the margin to grow."),
    Chart("Beta sets how far the policy drifts", table="beta_sweep", x="beta", y=("kl_to_ref",), log_x=True,
          x_label="beta", y_label="KL to the reference (nats)",
          look_for="The smaller beta, the further the policy moves from the reference."),
]


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


def pairwise_accuracy(score_w: torch.Tensor, score_l: torch.Tensor) -> tuple[float, int]:
    """Fraction of pairs with score_w > score_l, a tie counting one half; and the number of ties."""
    wins, ties = (score_w > score_l).float(), (score_w == score_l).float()
    return float((wins + 0.5 * ties).mean()), int(ties.sum())


def binomial_std(p: float, n: int) -> float:
    """The standard deviation of an accuracy p measured on n independent pairs."""
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def corrupt(answer: str, rng: random.Random) -> str:
    """A wrong answer: ``answer`` with one digit replaced by a different digit (no leading zero)."""
    i = rng.randrange(len(answer))
    choices = [d for d in "0123456789" if d != answer[i] and not (i == 0 and d == "0" and len(answer) > 1)]
    return answer[:i] + rng.choice(choices) + answer[i + 1 :]


@torch.no_grad()
def on_policy_pairs(model: torch.nn.Module, task: tl.AdditionTask, problems: list[tl.Problem], k: int,
                    temperature: float, gen: torch.Generator, device: str, chunk: int = 2000) -> dict[str, Any]:
    """Pairs (correct answer, the model's first wrong sample of ``k``) for the prompts that have one.

    The rejected completions are the sampled token ids themselves (<eos>, then <pad>), so their
    log-probs are those of exactly what the model wrote, unfinished answers included.
    """
    width = task.answer_len + 1
    kept, rejected = [], []
    for i in range(0, len(problems), chunk):
        part = problems[i : i + chunk]
        prompts = tl.encode_prompts(task, part, device).repeat(k, 1)  # draw j of prompt p at row j*len + p
        samples = tl.generate(model, prompts, width, temperature=temperature, generator=gen)
        wrong = (tl.gold_scores(task, part * k, samples) == 0).view(k, len(part))
        first = wrong.float().argmax(0)  # index of the first wrong draw (0 if none: masked below)
        has = wrong.any(0)
        rows = (first * len(part) + torch.arange(len(part), device=device))[has]
        kept += [p for p, h in zip(part, has.tolist()) if h]
        rejected.append(samples[rows])
    if not kept:
        raise LabFailure("the SFT model got every sampled answer right: no on-policy negatives to learn from")
    return {"problems": kept, "prompts": tl.encode_prompts(task, kept, device),
            "chosen": tl.encode_completions([task.answer(p) for p in kept], width, device),
            "rejected": torch.cat(rejected)}


def corrupted_pairs(task: tl.AdditionTask, problems: list[tl.Problem], rng: random.Random,
                    device: str) -> dict[str, Any]:
    """The hand-made contrast: chosen correct, rejected one digit changed (``corrupt``)."""
    width = task.answer_len + 1
    return {"problems": problems, "prompts": tl.encode_prompts(task, problems, device),
            "chosen": tl.encode_completions([task.answer(p) for p in problems], width, device),
            "rejected": tl.encode_completions([corrupt(task.answer(p), rng) for p in problems], width, device)}


@torch.no_grad()
def pair_logps(model: torch.nn.Module, pairs: dict[str, Any], chunk: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs of every pair's chosen and rejected completion under ``model``."""
    chosen, rejected = [], []
    for i in range(0, pairs["prompts"].shape[0], chunk):
        prompts = pairs["prompts"][i : i + chunk]
        chosen.append(tl.sequence_logprob(model, prompts, pairs["chosen"][i : i + chunk]))
        rejected.append(tl.sequence_logprob(model, prompts, pairs["rejected"][i : i + chunk]))
    return torch.cat(chosen), torch.cat(rejected)


@torch.no_grad()
def evaluate(policy: torch.nn.Module, ref: torch.nn.Module, heldout: dict[str, Any], ref_logps: tuple,
             task: tl.AdditionTask, problems: list[tl.Problem], cfg: Config, beta: float) -> dict[str, float]:
    """Held-out DPO loss, implicit-reward and log-prob rankings, margin, KL to pi_ref, gold score."""
    policy.eval()
    chosen, rejected = pair_logps(policy, heldout)
    loss, r_w, r_l = dpo_loss(chosen, rejected, ref_logps[0], ref_logps[1], beta)
    reward_acc, reward_ties = pairwise_accuracy(r_w, r_l)
    logp_acc, _ = pairwise_accuracy(chosen, rejected)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 1)
    out = {
        "loss": float(loss), "preference_accuracy": reward_acc, "reward_ties": reward_ties,
        "logp_accuracy": logp_acc, "margin": float((r_w - r_l).mean()),
        "chosen_reward": float(r_w.mean()), "rejected_reward": float(r_l.mean()),
        "chosen_logp": float(chosen.mean()), "rejected_logp": float(rejected.mean()),
        "kl_to_ref": tl.kl_to_reference(policy, ref, task, problems, cfg.device, gen),
        "gold_score": tl.pass_rate(policy, task, problems, cfg.device),
    }
    policy.train()
    return out


def train_dpo(cfg: Config, sft_model: torch.nn.Module, ref: torch.nn.Module, task: tl.AdditionTask, beta: float,
              steps: int, train: dict[str, Any], train_ref: tuple, heldout: dict[str, Any], heldout_ref: tuple,
              emit: Any = None, world: ddp.World = ddp.World()) -> tuple[torch.nn.Module, dict[int, dict[str, float]]]:
    """DPO from a fresh copy of the SFT model, the same batches for every beta.

    Evaluates on the held-out pairs every ``cfg.eval_every`` steps (history keyed by step) and
    emits metrics when ``emit`` is given. Over several ranks each takes its slice of the same
    batch of pairs (the loss is a mean over pairs, so DDP's average of the ranks' means is the
    batch's) and every rank evaluates in full.
    """
    policy = tl.trainable_copy(sft_model).train()
    forward = world.wrap(policy)
    opt, sched = tl.make_optimizer(policy.parameters(), cfg.lr, cfg.warmup_steps)
    rng = torch.Generator().manual_seed(cfg.seed)
    n = train["prompts"].shape[0]
    problems = task.eval_set(cfg.heldout_prompts)
    history: dict[int, dict[str, float]] = {}
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (cfg.batch_pairs,), generator=rng).to(cfg.device)[world.shard(cfg.batch_pairs)]
        prompts = train["prompts"][idx]
        both = torch.cat([train["chosen"][idx], train["rejected"][idx]])
        logps = tl.sequence_logprob(forward, torch.cat([prompts, prompts]), both)
        chosen, rejected = logps.split(len(idx))
        loss, r_w, r_l = dpo_loss(chosen, rejected, train_ref[0][idx], train_ref[1][idx], beta)
        if not torch.isfinite(loss):
            raise LabFailure(f"DPO loss became {loss.item()} at step {step} (beta={beta})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == steps:
            history[step] = ev = evaluate(policy, ref, heldout, heldout_ref, task, problems, cfg, beta)
            if emit is not None:  # the batch's means: the mean over the ranks of their equal slices' means
                emit.metric(step, **{
                    "losses/dpo": world.mean(loss.detach()), "rewards/chosen": world.mean(r_w.mean()),
                    "rewards/rejected": world.mean(r_l.mean()), "rewards/margin": world.mean((r_w - r_l).mean()),
                    "rewards/accuracy": world.mean(pairwise_accuracy(r_w, r_l)[0]),
                    **{f"eval/{k}": ev[k] for k in ("loss", "preference_accuracy", "logp_accuracy", "margin",
                                                     "chosen_reward", "rejected_reward", "chosen_logp",
                                                     "rejected_logp", "kl_to_ref", "gold_score")}})
                emit.progress(step)
    return policy.eval(), history


def run(cfg: Config, emit: Any, out_dir: Path) -> None:
    with tl.cpu_threads(cfg.threads), ddp.session(cfg.device) as world:
        _run(cfg, ddp.main_rank_reports(emit, world), out_dir, world)


def _run(cfg: Config, emit: Any, out_dir: Path, world: ddp.World = ddp.World()) -> None:
    emit.start(cfg, total_steps=cfg.steps + cfg.sweep_steps * len(cfg.sweep_betas))
    sft_model, task = sft.start_from(cfg, emit)
    ref = tl.frozen_copy(sft_model)
    torch.manual_seed(cfg.seed)

    # -- the data: the SFT model's own wrong answers against the correct ones --------------------
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    train_problems = task.sample(random.Random(cfg.seed), cfg.train_prompts)
    problems = task.eval_set(cfg.heldout_prompts)
    train = on_policy_pairs(ref, task, train_problems, cfg.samples_per_prompt, cfg.temperature, gen, cfg.device)
    held_gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 10_000)  # independent of train_prompts
    heldout = on_policy_pairs(ref, task, problems, cfg.samples_per_prompt, cfg.temperature, held_gen, cfg.device)
    n_train, n_held = len(train["problems"]), len(heldout["problems"])
    i = next((j for j, p in enumerate(heldout["problems"]) if len(task.answer(p)) == 3), 0)
    emit.log(f"{n_train} training pairs from {cfg.train_prompts} prompts, {n_held} held-out pairs from "
             f"{len(problems)} held-out prompts (prompts with a wrong answer among {cfg.samples_per_prompt} "
             f"samples at T={cfg.temperature}); e.g. {task.prompt(heldout['problems'][i])} chosen "
             f"{task.answer(heldout['problems'][i])!r}, rejected (sampled) "
             f"{tl.TOKENIZER.decode(heldout['rejected'][i].tolist())[0]!r}")
    if world.size > 1:
        emit.log(world.describe(cfg.batch_pairs, "pairs"))
    train_ref, heldout_ref = pair_logps(ref, train), pair_logps(ref, heldout)
    emit.log("reference log-probs computed once: pi_ref is frozen, so they never change")

    # -- the baseline, in this run: how well does the SFT model rank these pairs already? -------
    sft_acc, sft_ties = pairwise_accuracy(*heldout_ref)
    contrast = corrupted_pairs(task, problems, random.Random(cfg.seed + 7), cfg.device)
    corrupt_acc, _ = pairwise_accuracy(*pair_logps(ref, contrast))
    emit.log(f"SFT log-prob ranking: {sft_acc:.3f} of the held-out on-policy pairs right "
             f"(but {corrupt_acc:.3f} of one-digit corruptions of the same prompts: those teach nothing)")
    before = evaluate(ref, ref, heldout, heldout_ref, task, problems, cfg, cfg.beta)
    emit.metric(0, **{f"eval/{k}": before[k] for k in ("loss", "preference_accuracy", "logp_accuracy", "margin",
                                                        "chosen_logp", "rejected_logp", "kl_to_ref", "gold_score")})
    emit.log(f"policy = reference: loss {before['loss']:.4f} (ln 2 = 0.6931), every implicit reward 0 "
             f"({before['reward_ties']} ties of {n_held}, each counted 1/2: accuracy {before['preference_accuracy']:.2f})")

    # -- DPO at the default beta -----------------------------------------------------------------
    policy, history = train_dpo(cfg, sft_model, ref, task, cfg.beta, cfg.steps, train, train_ref, heldout,
                                heldout_ref, emit=emit, world=world)
    after = history[cfg.steps]
    gain = after["preference_accuracy"] - sft_acc
    noise = math.hypot(binomial_std(sft_acc, n_held), binomial_std(after["preference_accuracy"], n_held))
    emit.log(f"held-out preference accuracy: SFT ranking {sft_acc:.3f} -> DPO implicit reward "
             f"{after['preference_accuracy']:.3f} (policy's own ranking {after['logp_accuracy']:.3f}); gain "
             f"{gain:+.3f} = {gain / noise:.1f} binomial std ({noise:.3f} on {n_held} pairs)")
    emit.log(f"gold score {before['gold_score']:.3f} -> {after['gold_score']:.3f}, KL to reference "
             f"{after['kl_to_ref']:.3f} nats")
    sft.check_claim(cfg, gain > 2 * noise, f"DPO did not beat the SFT model's own ranking: {sft_acc:.3f} -> "
                    f"{after['preference_accuracy']:.3f} (noise {noise:.3f})", emit)
    if world.is_main:
        tl.save_model(out_dir / "dpo_policy.pt", policy, {"beta": cfg.beta, "steps": cfg.steps})

    headline = {
        "heldout_pairs": n_held, "train_pairs": n_train,
        "preference_accuracy_sft": sft_acc, "preference_accuracy_dpo": after["preference_accuracy"],
        "preference_accuracy_gain": gain, "accuracy_noise_std": noise, "gain_over_noise": gain / noise,
        "logp_accuracy_dpo": after["logp_accuracy"], "ties_sft": sft_ties, "ties_dpo": after["reward_ties"],
        "sft_accuracy_on_corrupted": corrupt_acc,
        "gold_score_before": before["gold_score"], "gold_score_after": after["gold_score"],
        "kl_to_ref": after["kl_to_ref"], "reward_margin": after["margin"], "loss": after["loss"],
        "chosen_reward": after["chosen_reward"], "rejected_reward": after["rejected_reward"],
        "chosen_logp_before": before["chosen_logp"], "chosen_logp_after": after["chosen_logp"],
    }

    # -- the beta sweep: same pairs, batches and steps; how far does each beta drift? -------------
    if cfg.sweep_betas:
        columns = ["beta", "steps", "preference_accuracy", "logp_accuracy", "margin", "kl_to_ref", "gold_score"]
        keys = columns[2:]
        at = history[cfg.sweep_steps]
        rows = [[cfg.beta, cfg.sweep_steps, *(at[k] for k in keys)]]
        for j, beta in enumerate(cfg.sweep_betas):
            emit.log(f"beta sweep: beta={beta}, {cfg.sweep_steps} steps from the same SFT model on the same batches")
            _, sweep = train_dpo(cfg, sft_model, ref, task, beta, cfg.sweep_steps, train, train_ref, heldout,
                                 heldout_ref, world=world)
            rows.append([beta, cfg.sweep_steps, *(sweep[cfg.sweep_steps][k] for k in keys)])
            emit.progress(cfg.steps + (j + 1) * cfg.sweep_steps)
        rows.sort(key=lambda r: r[0])
        emit.table("beta_sweep", columns, rows)
        emit.log("beta is the price of drift: the smaller it is, the further the policy moves from the reference "
                 "to buy the same preference margin (read kl_to_ref down the table)")
        headline["sweep_kl_smallest_beta"] = rows[0][columns.index("kl_to_ref")]
        headline["sweep_kl_largest_beta"] = rows[-1][columns.index("kl_to_ref")]
    emit.summary(headline, artifacts=["dpo_policy.pt"])
