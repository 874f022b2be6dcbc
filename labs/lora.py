"""LoRA on a tiny Llama-style LM, and the training memory of the model, measured.

LoRA (Hu et al., 2021) freezes a pretrained weight W (d_out x d_in) and learns a low-rank update

    W' = W + (alpha / r) * B A,      A: r x d_in (random init),  B: d_out x r (zero init)

so training starts exactly at the pretrained model (B A = 0) and trains r (d_in + d_out)
numbers per adapted matrix instead of d_in * d_out. After training the update can be merged,
W' = W + (alpha/r) B A, giving a plain model with no extra inference cost and the same outputs
as the adapter form. The lab checks the logits within 1e-5 in float64; in float32 the two
forms round differently (W + s B A is rounded once more), about 1e-5 on logits of size ~20,
which the table shows too. (``transformers``' RMSNorm computes in float32 even for a float64
model, so the float64 forms can agree to the last bit.) Written here by hand (no peft).

The lab
1. pretrains the tiny LM (a ``transformers`` LlamaForCausalLM from ``labs._tinylm``: 2 layers,
   hidden 64) on a base task, copying a sequence: ``x1..xk | x1..xk``;
2. fine-tunes it on a new task (``task``): ``shift``, each symbol's successor
   (``x1..xk | x1+1..xk+1``), or ``reverse`` (``x1..xk | xk..x1``, harder: it needs a new
   attention pattern), by full fine-tuning and by LoRA (on every linear layer of every
   block) at each rank in ``train_ranks``, reporting the exact-match score on held-out
   sequences (every completion token right under greedy decoding, which equals every
   teacher-forced argmax right);
3. counts trainable parameters and their fraction for each rank in ``ranks``, and the Adam
   state bytes that full fine-tuning needs and LoRA does not;
4. measures the training memory of one training step (full, and LoRA) from the tensors themselves:
   weights and gradients (``p.grad``), Adam's m and v (the optimizer's state), and activations
   (every tensor autograd saves for the backward pass, caught with saved_tensors_hooks, each
   storage counted once, parameters left out). Next to them it reports what a formula needs:
   the model's shape (layers, hidden, heads, intermediate, vocabulary), the parameter count N,
   LoRA's trainable count, sequence length and batch. The fp32 model-state formula is weights 4N,
   gradients 4N, Adam 8N bytes (for LoRA: 4N frozen + 4N_lora weights, gradients and Adam on the
   N_lora adapter numbers only); Korthikanti et al.'s activation estimate is s b h (34 + 5 a s / h)
   bytes per layer, which assumes fp16, a GELU MLP and dropout, so it is a ratio, not a match.
   The lab itself never imports the course's app: ``tests/test_lab_lora.py`` checks these
   measured numbers against the app's calculator (``llmcore_tui.core.calc``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from labs._runtime import Emitter, LabFailure, Range
from labs._tinylm import build_model, count_parameters, cpu_threads, model_config
from labs.protocol import Chart

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SEP = 0  # token 0 separates the input from the completion; symbols are 1..n_symbols


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    n_symbols: int = 16
    task: str = "shift"  # the fine-tuning task: shift or reverse (pretraining is always copy)
    seq_k: int = 5  # symbols per sequence
    batch: int = 32
    pretrain_steps: int = 1500
    finetune_steps: int = 800
    lr_pretrain: float = 3e-3
    lr_full: float = 1e-3
    lr_lora: float = 3e-3
    lora_alpha: float = 16.0
    ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # parameter counts
    train_ranks: tuple[int, ...] = (1, 4, 16)  # ranks actually fine-tuned
    eval_size: int = 512
    log_every: int = 50

    def validate(self) -> None:
        if min(self.ranks, default=0) < 1 or min(self.train_ranks, default=0) < 1:
            raise ValueError("ranks and train_ranks must be non-empty and positive")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must divide by n_heads")
        if self.task not in ("shift", "reverse"):
            raise ValueError("task must be shift or reverse")
        if self.seq_k < 2 or self.n_symbols < 2:
            raise ValueError("seq_k and n_symbols must be >= 2")


LIMITS = {"d_model": Range(1), "n_layers": Range(1), "n_heads": Range(1), "d_ff": Range(1), "n_symbols": Range(2),
          "seq_k": Range(2), "batch": Range(1), "pretrain_steps": Range(1), "finetune_steps": Range(1),
          "lr_pretrain": Range(0, low_open=True), "lr_full": Range(0, low_open=True),
          "lr_lora": Range(0, low_open=True), "lora_alpha": Range(0, low_open=True), "ranks": Range(1),
          "train_ranks": Range(1), "eval_size": Range(1), "log_every": Range(1)}

TOY = {"pretrain_steps": 400, "finetune_steps": 150, "train_ranks": (1, 8), "ranks": (1, 2, 4, 8, 16)}

CHARTS = [
    Chart("Trainable parameters vs LoRA rank", table="lora_by_rank", x="rank", y=("trainable_params",),
          x_label="rank r", y_label="trainable parameters",
          look_for="A straight line: r (d_in + d_out) per adapted matrix, a small fraction of the model."),
    Chart("Fine-tuning: task score and the old skill kept", table="finetune_scores",
          y=("task_exact_match", "copy_exact_match_after"), x_label="full fine-tuning, then LoRA by rank",
          y_label="exact-match fraction",
          look_for="Compare LoRA's task score with full fine-tuning's, and how much of the copy task each keeps."),
]


# -- data ----------------------------------------------------------------------------------

def make_batch(n: int, cfg: Config, task: str, gen: torch.Generator) -> torch.Tensor:
    """(n, 2k+1) sequences: k symbols, SEP, then the copy ('copy'), the reverse ('reverse') or
    each symbol's successor, n wrapping to 1 ('shift')."""
    x = torch.randint(1, cfg.n_symbols + 1, (n, cfg.seq_k), generator=gen)
    y = {"copy": x, "reverse": x.flip(1), "shift": x % cfg.n_symbols + 1}[task]
    return torch.cat([x, torch.full((n, 1), SEP), y], dim=1)


def completion_loss(model: torch.nn.Module, ids: torch.Tensor, k: int) -> torch.Tensor:
    logits = model(input_ids=ids).logits[:, k:-1]  # positions that predict the completion
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, k + 1:].reshape(-1))


@torch.no_grad()
def exact_match(model: torch.nn.Module, ids: torch.Tensor, k: int) -> float:
    pred = model(input_ids=ids).logits[:, k:-1].argmax(-1)
    return (pred == ids[:, k + 1:]).all(dim=1).float().mean().item()


# -- LoRA ----------------------------------------------------------------------------------

class LoRALinear(torch.nn.Module):
    """y = x W^T + (alpha/r) x A^T B^T, with W frozen, A ~ Kaiming-uniform, B = 0."""

    def __init__(self, base: torch.nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        self.r, self.scale = r, alpha / r
        self.A = torch.nn.Parameter(torch.empty(r, base.in_features))
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale

    def merged(self) -> torch.nn.Linear:
        """A plain Linear with W + (alpha/r) B A."""
        w = self.base.weight
        out = torch.nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                              dtype=w.dtype, device=w.device)
        with torch.no_grad():
            out.weight.copy_(merge_weight(self.base.weight, self.A, self.B, self.scale))
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def merge_weight(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scale: float) -> torch.Tensor:
    return W + scale * (B @ A)


def add_lora(model: torch.nn.Module, r: int, alpha: float, targets=TARGETS) -> torch.nn.Module:
    """Freeze every parameter, then wrap each target Linear in a LoRALinear (in place)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, torch.nn.Linear):
                setattr(module, child_name, LoRALinear(child, r, alpha))
    return model


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every LoRALinear by its merged Linear (in place)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    return model


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# -- memory, measured ----------------------------------------------------------------------

def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def adam_state_bytes(opt: torch.optim.Optimizer) -> int:
    return nbytes(t for st in opt.state.values() for k, t in st.items() if k in ("exp_avg", "exp_avg_sq"))


def measure_training_step(model: torch.nn.Module, ids: torch.Tensor, k: int, lr: float) -> dict[str, int]:
    """One Adam step; bytes of weights, gradients, Adam states and saved activations."""
    params = [p for p in model.parameters() if p.requires_grad]
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in param_storages:
            saved[key] = max(saved.get(key, 0), t.untyped_storage().nbytes())
        return t

    opt = torch.optim.Adam(params, lr=lr)
    opt.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = completion_loss(model, ids, k)
    loss.backward()
    grads = nbytes(p.grad for p in params if p.grad is not None)
    opt.step()
    return {"weights": nbytes(model.parameters()), "gradients": grads, "adam": adam_state_bytes(opt),
            "activations": sum(saved.values())}


# -- training ------------------------------------------------------------------------------

def train(model: torch.nn.Module, cfg: Config, task: str, steps: int, lr: float, seed: int, on_log) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        loss = completion_loss(model, make_batch(cfg.batch, cfg, task, gen).to(cfg.device), cfg.seq_k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0:
            on_log(step, loss.item())
    return time.perf_counter() - t0


# -- the lab -------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    total = cfg.pretrain_steps + cfg.finetune_steps * (1 + len(cfg.train_ranks))
    emit.start(cfg, total_steps=total)
    with cpu_threads(1):
        _run(cfg, emit, out_dir, total)


def _run(cfg: Config, emit: Emitter, out_dir: Path, total: int) -> None:
    device, k = cfg.device, cfg.seq_k
    seq_len = 2 * k + 1
    eval_gen = torch.Generator().manual_seed(10_000 + cfg.seed)
    eval_copy = make_batch(cfg.eval_size, cfg, "copy", eval_gen).to(device)
    eval_task = make_batch(cfg.eval_size, cfg, cfg.task, eval_gen).to(device)
    done = 0

    def logger(name: str):
        def on_log(step: int, loss: float) -> None:
            emit.metric(done + step, **{f"losses/{name}": loss})
            emit.progress(done + step)
        return on_log

    # 1. pretrain on copying
    torch.manual_seed(cfg.seed)
    base = build_model(model_config(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, max_len=seq_len + 1,
                                    vocab_size=cfg.n_symbols + 1)).to(device)
    train(base, cfg, "copy", cfg.pretrain_steps, cfg.lr_pretrain, cfg.seed + 1, logger("pretrain"))
    done += cfg.pretrain_steps
    base_copy, base_task = exact_match(base, eval_copy, k), exact_match(base, eval_task, k)
    emit.log(f"pretrained on copying: exact match {base_copy:.3f} (copy), {base_task:.3f} ({cfg.task}, before fine-tuning)")
    if base_copy < 0.5:
        raise LabFailure(f"pretraining failed: copy exact match {base_copy:.3f}")
    state = {n: t.clone() for n, t in base.state_dict().items()}
    n_params = count_parameters(base)

    def fresh() -> torch.nn.Module:
        torch.manual_seed(cfg.seed)
        model = build_model(model_config(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, max_len=seq_len + 1,
                                         vocab_size=cfg.n_symbols + 1)).to(device)
        model.load_state_dict(state)
        return model

    # 2. fine-tune on reversing: full, then LoRA at each rank
    results = []
    full = fresh()
    secs = train(full, cfg, cfg.task, cfg.finetune_steps, cfg.lr_full, cfg.seed + 2, logger("full"))
    done += cfg.finetune_steps
    results.append({"method": "full fine-tuning", "rank": None, "trainable": trainable(full), "seconds": secs,
                    "task": exact_match(full, eval_task, k), "copy": exact_match(full, eval_copy, k)})
    merge_err = 0.0
    for r in cfg.train_ranks:
        model = add_lora(fresh(), r, cfg.lora_alpha)
        n_trainable = trainable(model)
        if exact_match(model, eval_copy, k) != base_copy:
            raise LabFailure("a fresh LoRA model (B = 0) should behave exactly like the base model")
        secs = train(model, cfg, cfg.task, cfg.finetune_steps, cfg.lr_lora, cfg.seed + 2, logger(f"lora_r{r}"))
        done += cfg.finetune_steps
        scores = {"task": exact_match(model, eval_task, k), "copy": exact_match(model, eval_copy, k)}
        with torch.no_grad():  # merging is exact algebra: check it in float64, report float32 too
            errs = []
            for dtype in (torch.float64, torch.float32):
                m = copy.deepcopy(model).to(dtype)
                adapter_logits = m(input_ids=eval_task).logits
                errs.append((merge_lora(m)(input_ids=eval_task).logits - adapter_logits).abs().max().item())
            err, err32 = errs
        merge_err = max(merge_err, err)
        results.append({"method": f"LoRA r={r}", "rank": r, "trainable": n_trainable, "seconds": secs, **scores,
                        "merge_err": err, "merge_err32": err32})
    if merge_err > 1e-5:
        raise LabFailure(f"merged weights differ from the adapter form by {merge_err:.3g} (> 1e-5)")

    # 3. trainable parameters and optimizer memory by rank
    r_mem = max(cfg.train_ranks)
    rank_rows = []
    full_adam = 8 * n_params
    for r in cfg.ranks:
        model = add_lora(fresh(), r, cfg.lora_alpha)
        t = trainable(model)
        rank_rows.append([r, t, t / n_params, 8 * t, full_adam - 8 * t])
    emit.table("lora_by_rank", ["rank", "trainable_params", "fraction_of_model", "adam_bytes",
                                "adam_bytes_saved_vs_full"], rank_rows)
    emit.table("finetune_scores", ["method", "trainable_params", "task_exact_match", "copy_exact_match_after",
                                   "train_seconds", "merged_vs_adapter_logits_fp64", "merged_vs_adapter_logits_fp32"],
               [[r["method"], r["trainable"], r["task"], r["copy"], r["seconds"], r.get("merge_err"), r.get("merge_err32")]
                for r in results])

    # 4. training memory, measured from the tensors of one step
    ids = make_batch(cfg.batch, cfg, cfg.task, torch.Generator().manual_seed(cfg.seed + 3)).to(device)
    measured_full = measure_training_step(fresh(), ids, k, cfg.lr_full)
    lora_model = add_lora(fresh(), r_mem, cfg.lora_alpha)
    n_lora = trainable(lora_model)
    measured_lora = measure_training_step(lora_model, ids, k, cfg.lr_lora)
    emit.table("training_memory", ["part", "full_ft_measured_bytes", f"lora_r{r_mem}_measured_bytes"],
               [[part, measured_full[part], measured_lora[part]] for part in ("weights", "gradients", "adam", "activations")])

    best_lora = max((r for r in results if r["rank"] is not None), key=lambda r: r["task"])
    emit.summary({
        "params": n_params,
        "base_copy_exact_match": base_copy,
        "base_task_exact_match": base_task,
        "full_ft_task_exact_match": results[0]["task"],
        **{f"lora_r{r['rank']}_task_exact_match": r["task"] for r in results if r["rank"] is not None},
        **{f"lora_r{row[0]}_trainable_params": row[1] for row in rank_rows},
        **{f"lora_r{row[0]}_trainable_fraction": row[2] for row in rank_rows},
        "best_lora_rank": best_lora["rank"],
        "merged_max_abs_diff": merge_err,
        # what a memory formula needs: the model's shape, the counts, the batch
        "model_layers": cfg.n_layers, "model_hidden": cfg.d_model, "model_heads": cfg.n_heads,
        "model_kv_heads": cfg.n_heads, "model_intermediate": cfg.d_ff, "model_vocab": cfg.n_symbols + 1,
        "seq_len": seq_len, "batch": cfg.batch, "memory_lora_rank": r_mem, "memory_lora_trainable": n_lora,
        # measured bytes of one training step
        **{f"full_{part}_bytes": measured_full[part] for part in measured_full},
        **{f"lora_{part}_bytes": measured_lora[part] for part in measured_lora},
    })
