"""Supervised fine-tuning: completion-only cross-entropy on a tiny transformer.

The model reads a prompt x = "435+5=" and is trained to write the completion y = "440<eos>".
SFT is next-token cross-entropy, but only on the completion's tokens:

    L_SFT(theta) = - (1 / sum_t m_t) * sum_t m_t * log p_theta(s_t | s_<t)

over the concatenated sequence s = x ++ y, with the loss mask m_t = 1 on the tokens of y
(its <eos> included) and 0 on the prompt and on padding. Masking the prompt matters: the
operands are random digits, so predicting them is irreducible noise (ln 10 = 2.30 nats a
digit); an unmasked loss spends much of its gradient and most of its value on them. The lab
trains the masked model, then replays the same initial weights, data and learning-rate
schedule without the mask for ``compare_steps`` steps, and compares both on the same
held-out numbers: completion loss, token accuracy and the gold score (exact-match answers,
greedy decoding) before and after.

The demonstrations are imperfect, as real ones are: a ``cut_short`` share (15%) of them lost
the answer's last digit ("44" for 440). SFT imitates its data, flaws included, so the model
learns to stop early now and then; the RL labs that start from it can remove the habit,
because their reward checks the answer rather than imitating the demonstrators.

The masked model is the starting point of the DPO, PPO, GRPO and RLHF labs: it is cached
under ``output/labs/_checkpoints/sft-<key>.pt`` (see ``pretrained``).

``--set model=PATH`` fine-tunes a local Hugging Face checkpoint instead of the tiny model (see
``_hfmodel``; the model fields are then the checkpoint's own), and saves the result as a
checkpoint folder ``sft_model/`` that the later labs take as their ``model=``. Under torchrun the
batch is split over the ranks (see ``_distributed``).
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from labs import _distributed as ddp
from labs import _hfmodel as hf
from labs import _tinylm as tl
from labs._runtime import LabFailure, Range
from labs.protocol import Chart


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    threads: int = 1  # torch CPU threads (fixed so that a seed reproduces exactly)
    digits: int = 3  # width of the first operand of the addition task
    b_digits: int = 1  # width of the second operand
    cut_short: float = 0.15  # share of demonstrations whose answer lost its last digit (sloppy data)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    steps: int = 500
    batch_size: int = 128
    lr: float = 5e-3
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_problems: int = 1000  # held-out problems in every evaluation
    compare_steps: int = 250  # length of the unmasked comparison run (0 skips it)
    model: str = ""  # a local Hugging Face checkpoint folder to fine-tune instead of the tiny model
    gradient_checkpointing: bool = False  # with model=: recompute activations in backward to save memory

    def validate(self) -> None:
        if self.compare_steps > self.steps or self.compare_steps % self.eval_every:
            raise ValueError("compare_steps must lie between 0 and steps and be a multiple of eval_every")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must divide by n_heads")
        ddp.check_divides(self.batch_size, "batch_size")
        if self.model:
            hf.check_folder(self.model)


TOY = {"steps": 150, "eval_every": 25, "eval_problems": 300, "compare_steps": 75}
LIMITS = {
    "threads": Range(1), "digits": Range(1, 6), "b_digits": Range(1, 6), "cut_short": Range(0, 1, high_open=True),
    "d_model": Range(1), "n_layers": Range(1), "n_heads": Range(1), "d_ff": Range(1), "steps": Range(1),
    "batch_size": Range(1), "lr": Range(0, low_open=True), "warmup_steps": Range(0), "min_lr_ratio": Range(0, 1),
    "grad_clip": Range(0, low_open=True), "eval_every": Range(1), "eval_problems": Range(1), "compare_steps": Range(0),
}

CHARTS = [
    Chart("SFT: completion loss, train and held out", y=("losses/train_completion", "losses/heldout"),
          x_label="step", y_label="nats per completion token",
          look_for="Both fall together; held-out loss turning up while train falls would be overfitting."),
    Chart("SFT: exact answers and token accuracy", y=("eval/gold_score", "eval/token_accuracy"),
          x_label="step", y_label="held-out fraction",
          look_for="Both rise from near 0: token accuracy first, whole answers once every digit is right."),
]

# the fields that decide the trained weights (the evaluation fields do not): the checkpoint key
TRAINING_FIELDS = ("seed", "device", "threads", "digits", "b_digits", "cut_short", "d_model", "n_layers", "n_heads",
                   "d_ff", "steps", "batch_size", "lr", "warmup_steps", "min_lr_ratio", "grad_clip")


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor,
             tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Masked next-token cross-entropy: sum_t m_t * -log p(target_t) / sum_t m_t.

    ``logits`` (B, T, V) are the predictions for ``targets`` (B, T) (already shifted: position t
    predicts targets[:, t]); ``loss_mask`` (B, T) is 1 where a token counts, 0 elsewhere.
    ``tokens`` replaces the denominator sum_t m_t: a rank's slice of a batch divides by the
    count of the whole batch, so that the ranks' losses add up to the batch's.
    """
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    mask = loss_mask.reshape(-1).float()
    tokens = mask.sum() if tokens is None else tokens
    return (nll * mask).sum() / tokens.clamp(min=1.0)


def task_of(cfg: Config) -> tl.AdditionTask:
    return tl.AdditionTask(digits=cfg.digits, b_digits=cfg.b_digits)


def model_config_of(cfg: Config) -> dict[str, Any]:
    task = task_of(cfg)
    return tl.model_config(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff,
                           max_len=task.prompt_len + task.answer_len + 8)


def demonstrations(task: tl.AdditionTask, problems: list[tl.Problem], rng: random.Random,
                   cut_short: float) -> list[str]:
    """The demonstrators' answers: correct, except that a ``cut_short`` share lost their last digit."""
    answers = [task.answer(p) for p in problems]
    return [a[:-1] if len(a) > 1 and rng.random() < cut_short else a for a in answers]


def make_batch(task: tl.AdditionTask, problems: list[tl.Problem], device: str,
               answers: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Inputs, shifted targets and the two loss masks (completion only / every real token).

    ``answers`` defaults to the correct ones (what evaluation uses)."""
    prompts = tl.encode_prompts(task, problems, device)
    answers = answers if answers is not None else [task.answer(p) for p in problems]
    completions = tl.encode_completions(answers, task.answer_len + 1, device)
    ids = torch.cat([prompts, completions], dim=1)
    targets = ids[:, 1:]
    real = (targets != tl.PAD_ID).float()
    completion = torch.zeros_like(real)
    completion[:, task.prompt_len - 1 :] = real[:, task.prompt_len - 1 :]
    return {"ids": ids, "targets": targets, "completion_mask": completion, "all_mask": real}


def lr_at(cfg: Config, step: int) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: tl.AdditionTask, problems: list[tl.Problem],
             device: str) -> dict[str, float]:
    """Held-out completion loss, prompt-token loss, token accuracy (teacher forced), gold score (greedy)."""
    model.eval()
    batch = make_batch(task, problems, device)
    logits = model(input_ids=batch["ids"]).logits[:, :-1]
    completion = batch["completion_mask"]
    prompt = batch["all_mask"] - completion
    correct = (logits.argmax(-1) == batch["targets"]).float()
    out = {
        "heldout_loss": float(sft_loss(logits, batch["targets"], completion)),
        "prompt_loss": float(sft_loss(logits, batch["targets"], prompt)),
        "token_accuracy": float(tl.masked_mean(correct, completion)),
        "gold_score": tl.pass_rate(model, task, problems, device),
    }
    model.train()
    return out


def initial_model(cfg: Config) -> torch.nn.Module:
    """The model SFT starts from: the tiny model initialised from the seed, or the checkpoint ``model=``."""
    torch.manual_seed(cfg.seed)
    if cfg.model:
        return hf.load(cfg.model, task_of(cfg), cfg.device, cfg.gradient_checkpointing)
    return tl.build_model(model_config_of(cfg))


def train(cfg: Config, mask_prompt: bool = True, steps: int | None = None, init_state: dict | None = None,
          on_eval: Callable[[int, dict[str, float]], None] | None = None,
          eval_along: bool = True, world: ddp.World = ddp.World()) -> tuple[torch.nn.Module, list]:
    """Train from the seed's initial weights (or ``init_state``); returns the model and the eval history.

    Evaluates every ``cfg.eval_every`` steps, or only at the end when ``eval_along`` is False
    (evaluation draws no randomness, so the weights are the same either way). Deterministic
    for a config: it reseeds torch for the initial weights and draws its data from its own
    ``random.Random(seed)``, whatever ran before it in the process. Over several ranks each
    computes the loss of its slice of the same global batch (every rank evaluates in full).
    """
    task = task_of(cfg)
    model = initial_model(cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(cfg.device).train()
    forward = world.wrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
    rng = random.Random(cfg.seed)
    eval_set = task.eval_set(cfg.eval_problems)
    history: list[tuple[int, dict[str, float]]] = []
    steps = cfg.steps if steps is None else steps
    mask_key = "completion_mask" if mask_prompt else "all_mask"

    def record(step: int, train_loss: float, train_completion_loss: float) -> None:
        values = {"train_loss": train_loss, "train_completion_loss": train_completion_loss,
                  **evaluate(model, task, eval_set, cfg.device)}
        history.append((step, values))
        if on_eval:
            on_eval(step, values)

    if eval_along:
        record(0, math.nan, math.nan)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        problems = task.sample(rng, cfg.batch_size)  # the global batch: every rank draws the same one
        batch = make_batch(task, problems, cfg.device, demonstrations(task, problems, rng, cfg.cut_short))
        mine = world.shard(cfg.batch_size)
        logits = forward(input_ids=batch["ids"][mine]).logits[:, :-1]
        tokens = batch[mask_key].sum() if world.size > 1 else None
        loss = sft_loss(logits, batch["targets"][mine], batch[mask_key][mine], tokens)
        if not torch.isfinite(loss):
            raise LabFailure(f"SFT loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        world.backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if (eval_along and (step + 1) % cfg.eval_every == 0) or step + 1 == steps:
            with torch.no_grad():
                tokens = batch["completion_mask"].sum() if world.size > 1 else None
                completion_loss = sft_loss(logits, batch["targets"][mine], batch["completion_mask"][mine], tokens)
            record(step + 1, float(world.sum(loss)), float(world.sum(completion_loss)))
    model.eval()
    return model, history


# the code that trains the model, read once at import: the key describes the code actually running
_RECIPE_SOURCES = (Path(__file__).read_bytes(), Path(tl.__file__).read_bytes())


def checkpoint_path(cfg: Config) -> Path:
    """Where the model for ``cfg`` is cached: keyed on the training fields and the training code."""
    fields = {k: getattr(cfg, k) for k in TRAINING_FIELDS}
    key = tl.recipe_key(fields, _RECIPE_SOURCES)
    return tl.checkpoint_dir() / f"sft-{key}.pt"


def preset(toy: bool, seed: int, device: str, threads: int) -> Config:
    """The SFT config a downstream lab starts from: this lab's full or --toy preset."""
    overrides = dict(TOY) if toy else {}
    return dataclasses.replace(Config(), **overrides, seed=seed, device=device, threads=threads)


def check_preset(name: str) -> None:
    """A later lab's ``sft_preset`` names this lab's full preset or its --toy preset."""
    if name not in ("full", "toy"):
        raise ValueError(f"sft_preset must be 'full' or 'toy', not {name!r}")


def check_start(lab_cfg: Any) -> None:
    """A later lab's starting point: its ``sft_preset``, and its checkpoint folder when ``model=`` names one."""
    check_preset(lab_cfg.sft_preset)
    if lab_cfg.model:
        hf.check_folder(lab_cfg.model)


def start_from(lab_cfg: Any, emit: Any) -> tuple[torch.nn.Module, tl.AdditionTask]:
    """The model a later lab starts from: the checkpoint its ``model=`` names (on the SFT preset's
    task), else the SFT model its sft_preset, sft_seed, device and threads name."""
    check_preset(lab_cfg.sft_preset)
    cfg = preset(lab_cfg.sft_preset == "toy", lab_cfg.sft_seed, lab_cfg.device, lab_cfg.threads)
    if lab_cfg.model:
        task = task_of(cfg)
        model = hf.load(lab_cfg.model, task, lab_cfg.device, lab_cfg.gradient_checkpointing)
        emit.log(hf.describe(model, task, lab_cfg.model))
        return model.eval(), task
    return pretrained(cfg, emit)


def check_claim(cfg: Any, holds: bool, message: str, emit: Any) -> None:
    """A claim the lab makes about its result: a failure on the tiny model it was tuned for; a
    warning on a checkpoint (``model=``), whose run is a measurement whichever way it comes out."""
    if holds:
        return
    if not cfg.model:
        raise LabFailure(message)
    emit.log(f"warning: {message}")


def pretrained(cfg: Config, emit: Any) -> tuple[torch.nn.Module, tl.AdditionTask]:
    """The SFT model for ``cfg``: loaded from the checkpoint cache, or trained now and cached."""
    path = checkpoint_path(cfg)
    task = task_of(cfg)
    if path.exists():
        model, meta = tl.load_model(path, model_config_of(cfg), cfg.device)
        emit.log(f"SFT model loaded from {path} (held-out gold score {meta['gold_score']:.3f})")
        return model.eval(), task
    emit.log(f"no SFT checkpoint at {path}: training the SFT model first ({cfg.steps} steps)")
    model, history = train(cfg, eval_along=False)
    gold = history[-1][1]["gold_score"]
    tl.save_model(path, model, {"gold_score": gold, "steps": cfg.steps})
    emit.log(f"SFT model trained and cached at {path} (held-out gold score {gold:.3f})")
    return model, task


def run(cfg: Config, emit: Any, out_dir: Path) -> None:
    with tl.cpu_threads(cfg.threads), ddp.session(cfg.device) as world:
        _run(cfg, ddp.main_rank_reports(emit, world), out_dir, world)


def _run(cfg: Config, emit: Any, out_dir: Path, world: ddp.World = ddp.World()) -> None:
    total = cfg.steps + cfg.compare_steps
    emit.start(cfg, total_steps=total)
    task = task_of(cfg)
    emit.log(f"task: {task.prompt((7, 45))} -> {task.answer((7, 45))}<eos>; "
             f"{cfg.eval_problems} held-out problems for every evaluation")

    init_state = None  # a checkpoint is its own initial state
    if not cfg.model:
        torch.manual_seed(cfg.seed)
        init_state = {k: v.clone() for k, v in tl.build_model(model_config_of(cfg)).state_dict().items()}
    if world.size > 1:
        emit.log(world.describe(cfg.batch_size, "sequences"))

    def report_masked(step: int, v: dict[str, float]) -> None:
        emit.metric(step, **{"losses/train": v["train_loss"], "losses/train_completion": v["train_completion_loss"],
                             "losses/heldout": v["heldout_loss"], "losses/heldout_prompt": v["prompt_loss"],
                             "eval/token_accuracy": v["token_accuracy"], "eval/gold_score": v["gold_score"]})
        emit.progress(step)

    emit.log("run 1: prompt tokens masked out of the loss (completion-only SFT)")
    model, masked = train(cfg, mask_prompt=True, init_state=init_state, on_eval=report_masked, world=world)
    before, after = masked[0][1], masked[-1][1]
    n_params = tl.count_parameters(model)
    if cfg.model:
        emit.log(hf.describe(model, task, cfg.model))
    emit.log(f"{n_params} parameters; held-out gold score {before['gold_score']:.3f} -> {after['gold_score']:.3f}")
    check_claim(cfg, after["gold_score"] > before["gold_score"], f"SFT did not learn the task: gold score "
                f"{before['gold_score']:.3f} -> {after['gold_score']:.3f}", emit)

    meta = {"gold_score": after["gold_score"], "steps": cfg.steps}
    if world.is_main and cfg.model:
        tl.save_model(out_dir / "sft_model.pt", model, meta)
        emit.log(f"SFT model saved as the checkpoint folder {out_dir / 'sft_model'}: later labs start from it "
                 "with --set model=<that folder>")
    elif world.is_main:
        path = checkpoint_path(cfg)
        tl.save_model(path, model, meta)
        tl.save_model(out_dir / "sft_model.pt", model, meta)
        emit.log(f"SFT model cached at {path} for the DPO, PPO, GRPO and RLHF labs")

    headline: dict[str, Any] = {
        "gold_score_before": before["gold_score"], "gold_score_after": after["gold_score"],
        "heldout_loss": after["heldout_loss"], "token_accuracy": after["token_accuracy"],
        "parameters": n_params,
    }
    if cfg.compare_steps:
        emit.log(f"run 2: the same initial weights, data and schedule, prompt tokens NOT masked "
                 f"({cfg.compare_steps} steps)")

        def report_unmasked(step: int, v: dict[str, float]) -> None:
            emit.metric(cfg.steps + step, **{
                "compare/unmasked_train_loss": v["train_loss"], "compare/unmasked_heldout_loss": v["heldout_loss"],
                "compare/unmasked_token_accuracy": v["token_accuracy"], "compare/unmasked_gold_score": v["gold_score"]})
            emit.progress(cfg.steps + step)

        _, unmasked = train(cfg, mask_prompt=False, steps=cfg.compare_steps, init_state=init_state,
                            on_eval=report_unmasked, world=world)
        at_step = {"masked (completion only)": dict(masked)[cfg.compare_steps],  # an eval step (validated)
                   "unmasked (every token)": unmasked[-1][1]}
        keys = ("train_loss", "heldout_loss", "prompt_loss", "token_accuracy", "gold_score")
        emit.table("prompt_masking", ["run", "step", "objective", "heldout_completion_loss", "heldout_prompt_loss",
                                      "token_accuracy", "gold_score"],
                   [[run_name, cfg.compare_steps, *(v[k] for k in keys)] for run_name, v in at_step.items()])
        emit.log("the unmasked objective mixes in the prompt's digits, which are random: their loss cannot "
                 "fall below ln 10 = 2.30 a digit, so the number it reports says little about the answers")
        u = at_step["unmasked (every token)"]
        headline.update({"unmasked_gold_score": u["gold_score"], "unmasked_heldout_loss": u["heldout_loss"],
                         "masked_gold_score_at_compare": at_step["masked (completion only)"]["gold_score"]})
    emit.summary(headline, artifacts=["sft_model" if cfg.model else "sft_model.pt"])
