"""Speculative decoding: a cheap draft proposes, the target verifies (Leviathan et al. 2023; Chen et al. 2023).

A target p and a smaller draft q, tiny Llama-style causal LMs built from a ``transformers``
config, are trained here on a synthetic language (an order-2 Markov chain in which every context
allows a few next tokens). The draft is saved at several points of its training: drafts of
rising quality against one target.

One round. The draft samples k tokens x_1..x_k from the current prefix, one at a time (k cheap
forwards). The target scores the prefix plus all k drafts in ONE forward, which gives p at the
k drafted positions and at one more. Then, for j = 1..k in order:

    accept x_j with probability min(1, p_j(x_j) / q_j(x_j))
    at the first rejection, emit a token from the residual r_j = norm(max(0, p_j - q_j)) and stop
    if all k are accepted, emit a bonus token from p_{k+1}

Why the output is distributed exactly as p. At one position, with beta = sum_x min(p(x), q(x)),

    P(emit x) = q(x) min(1, p(x)/q(x)) + (1 - beta) r(x)
              = min(p(x), q(x)) + (1 - beta) (p(x) - min(p(x), q(x))) / (1 - beta) = p(x),

since sum_x max(0, p(x) - q(x)) = 1 - beta. Skipping the residual (sampling from p after a
rejection) gives min(p, q) + (1 - beta) p instead, which is not p: the lab's broken control.
Greedy decoding is the same rule with one-hot p and q: a draft is kept exactly when it is the
target's argmax and a rejection emits the target's argmax, so the output is the target's own
greedy decoding, token for token.

Tokens per target forward. The acceptance rate is alpha = E[beta]. If each draft is accepted
independently with probability alpha, a round emits (accepted drafts + 1) tokens, on average

    E[tokens per target forward] = 1 + alpha + ... + alpha^k = (1 - alpha^(k+1)) / (1 - alpha),

and with a draft forward costing c target forwards the wall-clock speed-up over plain decoding
is (1 - alpha^(k+1)) / ((1 - alpha)(c k + 1)). The lab measures alpha, tokens per target forward
and time for drafts of several qualities and for k = 1..8. (Times on a shared CPU are noisy and,
without a KV cache, a batch runs at its longest row; the forward counts are exact.)

The sampling check: after fixed prompts, the first tokens of many speculative samples against
the exact target distribution, by Pearson's chi-square as z = (chi2 - dof) / sqrt(2 dof), about
N(0, 1) when they agree. The control without the residual must fail the same test.
"""

from __future__ import annotations

import itertools
import math
import time
import timeit
from dataclasses import dataclass
from pathlib import Path

import torch

from labs._runtime import Emitter, LabFailure, Range
from labs._tinylm import build_model, cpu_threads, frozen_copy, make_optimizer, model_config
from labs.protocol import Chart


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    # the synthetic language: an order-2 Markov chain, each context allowing `support` next tokens
    vocab: int = 16
    support: int = 3
    seq_len: int = 64  # training sequences; decoding never goes past this length either
    # the models
    target_layers: int = 2
    target_width: int = 64
    draft_layers: int = 1
    draft_width: int = 32
    train_steps: int = 600  # target
    draft_steps: tuple[int, ...] = (0, 50, 150, 400, 1200)  # the draft saved after each count: its quality
    batch: int = 32
    lr: float = 3e-3
    # decoding
    prompt_len: int = 8
    prompts: int = 128  # rows decoded at once in every measurement
    lookaheads: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)  # k
    k: int = 4  # k of the draft-quality sweep, the greedy check and the wall-clock run
    new_tokens: int = 40  # compared in the greedy check
    check_draft: int = 1  # index into draft_steps: the draft of the greedy check and the distribution test
    # the distribution test
    test_prompts: int = 8
    test_samples: int = 20000  # per prompt
    test_tokens: int = 2  # with k = 1 these cover a kept draft, a residual draw and a bonus token
    test_k: int = 1

    def validate(self) -> None:  # single-field bounds are in LIMITS below
        longest = self.prompt_len + max(self.new_tokens, *self.lookaheads, self.k, self.test_k) + 1
        problems = {"draft_steps: must increase": list(self.draft_steps) != sorted(set(self.draft_steps)),
                    "check_draft: must index draft_steps": self.check_draft >= len(self.draft_steps),
                    "support: must be at most vocab": self.support > self.vocab,
                    "draft_width, target_width: must divide by 4 heads": self.draft_width % 4 or self.target_width % 4,
                    "test_prompts: must be at most prompts": self.test_prompts > self.prompts,
                    "seq_len: shorter than prompt_len + new_tokens (or k) + 1": longest > self.seq_len}
        for message in (m for m, broken in problems.items() if broken):
            raise ValueError(message)


LIMITS = {"vocab": Range(2, 64), "support": Range(1), "seq_len": Range(4), "target_layers": Range(1),
          "target_width": Range(8), "draft_layers": Range(1), "draft_width": Range(8), "train_steps": Range(1),
          "draft_steps": Range(0), "batch": Range(1), "lr": Range(0, low_open=True), "prompt_len": Range(2),
          "prompts": Range(1), "lookaheads": Range(1), "k": Range(1), "new_tokens": Range(1), "check_draft": Range(0),
          "test_prompts": Range(1), "test_samples": Range(100), "test_tokens": Range(1, 3), "test_k": Range(1)}

TOY = {"train_steps": 120, "draft_steps": (0, 30, 100, 300), "prompts": 64, "lookaheads": (1, 2, 3, 4, 6, 8),
       "test_samples": 4000}

CHARTS = [
    Chart("Tokens per target forward against look-ahead k", y=("tokens_per_target_forward",), x="k",
          table="lookahead", reference=("formula_tokens_per_forward",), x_label="k", y_label="tokens / target forward",
          look_for="the measured points sit on (1 - alpha^(k+1)) / (1 - alpha), which flattens as alpha^k vanishes"),
    Chart("Acceptance rate against draft training", y=("alpha",), x="draft_train_steps", table="draft_quality",
          x_label="draft training steps", y_label="alpha", look_for="a draft closer to the target is accepted more"),
]


# -- the synthetic language and training -------------------------------------------------------

def make_language(vocab: int, support: int, gen: torch.Generator) -> torch.Tensor:
    """P(next | previous two) as a (vocab, vocab, vocab) tensor: `support` allowed tokens per context,
    with Dirichlet(1) weights (normalised exponentials)."""
    allowed = torch.rand(vocab, vocab, vocab, generator=gen).topk(support, dim=-1).indices
    weights = -torch.rand(vocab, vocab, support, generator=gen).log()
    table = torch.zeros(vocab, vocab, vocab).scatter_(-1, allowed, weights)
    return table / table.sum(-1, keepdim=True)


def sample_language(table: torch.Tensor, n: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """`n` sequences of `length` tokens: two uniform tokens, then the chain."""
    seq = torch.randint(table.shape[0], (n, 2), generator=gen)
    for _ in range(length - 2):
        seq = torch.cat([seq, torch.multinomial(table[seq[:, -2], seq[:, -1]], 1, generator=gen)], dim=1)
    return seq


def train(model: torch.nn.Module, table: torch.Tensor, steps: int, cfg: Config, gen: torch.Generator,
          save_at: tuple[int, ...]) -> tuple[list[torch.nn.Module], float]:
    """Next-token cross-entropy on fresh sequences; returns frozen copies taken after each step count
    in `save_at` (0: the initial weights) and the last batch's loss."""
    opt, sched = make_optimizer(model.parameters(), cfg.lr, warmup_steps=steps // 10)
    saved, loss = [frozen_copy(model)] if 0 in save_at else [], float("nan")
    for step in range(1, steps + 1):
        batch = sample_language(table, cfg.batch, cfg.seq_len, gen).to(cfg.device)
        out = model(input_ids=batch, labels=batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        sched.step()
        loss = out.loss.item()
        if step in save_at:
            saved.append(frozen_copy(model))
    return saved, loss


# -- speculative decoding (buffers and sampling on the CPU with one seeded generator; forwards on the device) --

def next_token_dists(model: torch.nn.Module, buf: torch.Tensor, positions: torch.Tensor, greedy: bool,
                     dedup: bool = False) -> torch.Tensor:
    """p(. | buf[b, :i+1]) for each row b and each position i in positions[b]: (B, m, V), float64.

    Whatever follows a row's real length never matters: a causal model's output at position i
    depends only on tokens up to i. `greedy`: the one-hot of each argmax. `dedup`: one forward
    per distinct row (exact; for many samples after a few prompts)."""
    ids = buf[:, : int(positions.max()) + 1]
    if dedup:  # tokens after a row's last queried position cannot matter: blank them, then deduplicate
        ids = ids * (torch.arange(ids.shape[1]) <= positions.max(dim=1).values[:, None])
        unique, inverse = torch.unique(ids, dim=0, return_inverse=True)
        logits = model(input_ids=unique.to(model.device)).logits.cpu()[inverse]
    else:
        logits = model(input_ids=ids.to(model.device)).logits.cpu()
    logits = logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1])).double()
    if greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    return torch.softmax(logits, dim=-1)


def accept_reject(p: torch.Tensor, q: torch.Tensor, drafted: torch.Tensor, gen: torch.Generator,
                  residual: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The verification step for a batch of rows.

    p: (B, k+1, V) target distributions at the k drafted positions and one more; q: (B, k, V) the
    draft's; drafted: (B, k) its tokens. Returns how many drafts each row keeps (B,) and the token
    emitted after them (B,): from norm(max(0, p - q)) at the first rejection, or from p at position
    k+1 when all are kept. `residual=False` is the broken control: it samples p after a rejection."""
    rows, k = torch.arange(p.shape[0]), q.shape[1]
    p_x, q_x = (dist.gather(-1, drafted[..., None]).squeeze(-1) for dist in (p[:, :k], q))
    accepted = torch.rand(drafted.shape, generator=gen, dtype=p.dtype) * q_x < p_x  # u < min(1, p/q)
    kept = accepted.long().cumprod(dim=1).sum(dim=1)  # drafts before the first rejection
    p_next = p[rows, kept]
    q_next = torch.cat([q, torch.zeros_like(q[:, :1])], dim=1)[rows, kept]  # no draft at k+1: residual = p
    fix = (p_next - q_next).clamp(min=0) if residual else p_next
    mass = fix.sum(-1, keepdim=True)
    fix = torch.where(mass > 0, fix / mass.clamp(min=1e-300), p_next)  # mass 0 only if p == q: never rejected
    return kept, torch.multinomial(fix, 1, generator=gen).squeeze(-1)


@torch.no_grad()
def speculative_round(target, draft, buf: torch.Tensor, lengths: torch.Tensor, k: int, gen: torch.Generator,
                      greedy: bool = False, residual: bool = True, dedup: bool = False):
    """One round on every row of `buf` (B, W), in place: k draft forwards, one target forward.
    Returns the new lengths and per-row counts of drafts kept and of drafts checked."""
    rows = torch.arange(buf.shape[0])
    qs = []
    for j in range(k):
        qs.append(next_token_dists(draft, buf, (lengths + j - 1)[:, None], greedy, dedup)[:, 0])
        buf[rows, lengths + j] = torch.multinomial(qs[-1], 1, generator=gen).squeeze(-1)  # one-hot: the argmax
    q, drafted = torch.stack(qs, dim=1), buf[rows[:, None], lengths[:, None] + torch.arange(k)]
    p = next_token_dists(target, buf, lengths[:, None] - 1 + torch.arange(k + 1), greedy, dedup)
    kept, token = accept_reject(p, q, drafted, gen, residual)
    buf[rows, lengths + kept] = token
    checked = (kept + 1).clamp(max=k)  # drafts that met the accept test: up to and with the first rejection
    return lengths + kept + 1, {"kept": kept, "checked": checked}


@torch.no_grad()
def speculative_decode(target, draft, prompts: torch.Tensor, k: int, gen: torch.Generator, new_tokens: int = 0,
                       rounds: int = 0, greedy: bool = False, residual: bool = True, dedup: bool = False):
    """Rounds until every row has `new_tokens` new tokens (finished rows rest), or exactly `rounds`
    rounds on every row. Returns the buffer (B, W), the lengths and totals: rounds (target
    forwards), tokens emitted, drafts kept and checked."""
    n, start = prompts.shape
    buf = torch.cat([prompts, prompts.new_zeros(n, rounds * (k + 1) if rounds else new_tokens + k + 1)], dim=1)
    lengths = torch.full((n,), start)
    totals = {"rounds": 0, "kept": 0.0, "checked": 0.0}
    while totals["rounds"] < rounds if rounds else bool((lengths < start + new_tokens).any()):
        active = torch.ones(n, dtype=torch.bool) if rounds else lengths < start + new_tokens
        part = buf[active]
        lengths[active], counts = speculative_round(target, draft, part, lengths[active], k, gen, greedy, residual,
                                                    dedup)
        buf[active] = part
        totals["rounds"] += 1
        for key, value in counts.items():
            totals[key] += float(value.sum())
    totals["tokens"] = float((lengths - start).sum())
    return buf, lengths, totals


@torch.no_grad()
def target_decode(model, prompts: torch.Tensor, new_tokens: int, greedy: bool, gen: torch.Generator) -> torch.Tensor:
    """Plain decoding, one target forward per token: the baseline."""
    seq = prompts
    for _ in range(new_tokens):
        dist = next_token_dists(model, seq, torch.full((len(seq), 1), seq.shape[1] - 1), greedy)[:, 0]
        seq = torch.cat([seq, torch.multinomial(dist, 1, generator=gen)], dim=1)
    return seq


def tokens_per_forward_formula(alpha: float, k: int) -> float:
    """(1 - alpha^(k+1)) / (1 - alpha): expected tokens per target forward with i.i.d. acceptance."""
    return float(k + 1) if alpha >= 1.0 else (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


# -- the distribution test -------------------------------------------------------------------

@torch.no_grad()
def exact_target_dist(target, prompts: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """P(first n_tokens | prompt) under the target, every continuation enumerated: (prompts, V^n), float64."""
    vocab, n = target.config.vocab_size, len(prompts)
    joint = torch.ones(n, 1, dtype=torch.float64)
    for depth in range(n_tokens):
        suffixes = torch.tensor(list(itertools.product(range(vocab), repeat=depth)), dtype=torch.long)
        ids = torch.cat([prompts.repeat_interleave(len(suffixes), 0), suffixes.repeat(n, 1)], dim=1)
        logits = target(input_ids=ids.to(target.device)).logits[:, -1].cpu().double()
        joint = (joint[..., None] * torch.softmax(logits, dim=-1).reshape(n, -1, vocab)).reshape(n, -1)
    return joint


def chi_square(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 10.0) -> tuple[float, int]:
    """Pearson's chi-square over rows (prompts): (statistic, dof). Cells expecting < `min_expected` are pooled,
    with the smallest other cell if the pool is still that small (tiny expectations give the statistic a long tail)."""
    stat, dof = 0.0, 0
    for observed, p in zip(counts, probs):
        expected, order = (p * observed.sum()).sort(descending=True)
        observed, big = observed[order], int((expected >= min_expected).sum())
        big -= int(big > 0 and float(expected[big:].sum()) < min_expected)
        observed, expected = (torch.cat([x[:big], x[big:].sum()[None]]) for x in (observed, expected))
        stat, dof = stat + float(((observed - expected) ** 2 / expected).sum()), dof + big
    return stat, dof


def distribution_test(target, draft, prompts: torch.Tensor, cfg: Config, gen: torch.Generator,
                      residual: bool) -> dict[str, float]:
    """Speculative samples of the first tokens after each prompt against the exact target distribution."""
    n = cfg.test_tokens
    buf, _, totals = speculative_decode(target, draft, prompts.repeat_interleave(cfg.test_samples, 0), cfg.test_k,
                                        gen, new_tokens=n, residual=residual, dedup=True)
    cell = (buf[:, cfg.prompt_len: cfg.prompt_len + n] * cfg.vocab ** torch.arange(n - 1, -1, -1)).sum(-1)
    cell += torch.arange(len(prompts)).repeat_interleave(cfg.test_samples) * cfg.vocab ** n  # one row per prompt
    counts = torch.bincount(cell, minlength=len(prompts) * cfg.vocab ** n).reshape(len(prompts), -1).double()
    exact = exact_target_dist(target, prompts, n)
    stat, dof = chi_square(counts, exact)
    if dof < 1:
        raise LabFailure("too few samples for a chi-square test: raise test_samples or lower test_tokens")
    p_value = torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(stat / 2))
    return {"chi2": stat, "dof": dof, "z": (stat - dof) / math.sqrt(2 * dof), "p_value": float(p_value),
            "tv": 0.5 * float((counts / cfg.test_samples - exact).abs().sum(-1).mean()),
            "alpha": totals["kept"] / totals["checked"]}


# -- the lab -------------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    emit.start(cfg, total_steps=3 + len(cfg.draft_steps) + len(cfg.lookaheads))
    with cpu_threads(1):  # one thread unless --threads says otherwise: steadier timings on a shared CPU
        _run(cfg, emit)


def measure(target, draft, prompts: torch.Tensor, k: int, cfg: Config, gen: torch.Generator) -> list[float]:
    """Rounds filling seq_len: [alpha, tokens per target forward, the formula, their rel. error, tokens, seconds]."""
    t0 = time.perf_counter()
    _, _, t = speculative_decode(target, draft, prompts, k, gen, rounds=(cfg.seq_len - cfg.prompt_len) // (k + 1))
    seconds, alpha = time.perf_counter() - t0, t["kept"] / t["checked"]
    measured, formula = t["tokens"] / (t["rounds"] * len(prompts)), tokens_per_forward_formula(alpha, k)
    return [alpha, measured, formula, measured / formula - 1, t["tokens"], seconds]


def seconds_per_call(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    return timeit.timeit(fn, number=repeats) / repeats


def _run(cfg: Config, emit: Emitter) -> None:
    gen = torch.Generator().manual_seed(cfg.seed)  # the language, the data and every sampling draw
    table = make_language(cfg.vocab, cfg.support, gen)
    entropy = float(-(table * table.clamp(min=1e-12).log()).sum(-1).mean())
    torch.manual_seed(cfg.seed)  # the initial weights
    target, draft = (build_model(model_config(width, layers, 4, ff * width, cfg.seq_len, cfg.vocab)).to(cfg.device)
                     for width, layers, ff in ((cfg.target_width, cfg.target_layers, 4),
                                               (cfg.draft_width, cfg.draft_layers, 2)))
    (target,), target_loss = train(target, table, cfg.train_steps, cfg, gen, save_at=(cfg.train_steps,))
    drafts, draft_loss = train(draft, table, cfg.draft_steps[-1], cfg, gen, save_at=cfg.draft_steps)
    emit.log(f"loss {target_loss:.3f} (target), {draft_loss:.3f} (best draft); the chain's entropy {entropy:.3f}")
    emit.progress(done := 1)
    prompts = sample_language(table, cfg.prompts, cfg.prompt_len, gen)
    check, best = drafts[cfg.check_draft], drafts[-1]

    # 1. greedy: speculative decoding reproduces the target's own greedy tokens
    buf, _, g = speculative_decode(target, check, prompts, cfg.k, gen, new_tokens=cfg.new_tokens, greedy=True)
    spec_tokens = buf[:, cfg.prompt_len: cfg.prompt_len + cfg.new_tokens]
    plain_tokens = target_decode(target, prompts, cfg.new_tokens, True, gen)[:, cfg.prompt_len:]
    mismatched, rejected = int((spec_tokens != plain_tokens).sum()), g["checked"] - g["kept"]
    emit.log(f"greedy: {mismatched} of {spec_tokens.numel()} tokens differ from the target's own greedy decoding; "
             f"{rejected:.0f} draft tokens were rejected and replaced by the target's choice")
    emit.progress(done := done + 1)

    # 2. sampling: the output distribution is the target's; the control without the residual is not
    tests = {name: distribution_test(target, check, prompts[: cfg.test_prompts], cfg, gen, residual)
             for name, residual in (("speculative", True), ("no_residual", False))}
    emit.table("distribution_test", ["sampler", "chi2", "dof", "z", "p_value", "tv_per_prompt", "alpha"],
               [[name, t["chi2"], t["dof"], t["z"], t["p_value"], t["tv"], t["alpha"]] for name, t in tests.items()])
    emit.progress(done := done + 1)

    # 3a. acceptance against draft quality, at k = cfg.k
    quality_rows = []
    for steps, d in zip(cfg.draft_steps, drafts):
        quality_rows.append(row := [steps, *measure(target, d, prompts, cfg.k, cfg, gen)])
        emit.metric(steps, **{"draft/alpha": row[1], "draft/tokens_per_target_forward": row[2]})
        emit.progress(done := done + 1)
    emit.table("draft_quality", ["draft_train_steps", "alpha", "tokens_per_target_forward",
                                 "formula_tokens_per_forward", "rel_err", "tokens", "seconds"], quality_rows)

    # 3b. against look-ahead k with the best draft; c = (draft forward time) / (target forward time)
    with torch.no_grad():
        ids = prompts.repeat(1, cfg.seq_len)[:, : cfg.seq_len].to(target.device)
        c = seconds_per_call(lambda: best(input_ids=ids)) / seconds_per_call(lambda: target(input_ids=ids))
    k_rows = []
    for k in cfg.lookaheads:
        alpha, measured, formula, rel_err, _, _ = measure(target, best, prompts, k, cfg, gen)
        k_rows.append([k, alpha, measured, formula, rel_err, formula / (c * k + 1)])
        emit.metric(k, **{"lookahead/alpha": alpha, "lookahead/tokens_per_target_forward": measured})
        emit.progress(done := done + 1)
    emit.table("lookahead", ["k", "alpha", "tokens_per_target_forward", "formula_tokens_per_forward", "rel_err",
                             "predicted_wall_clock_speedup"], k_rows)

    # 3c. wall clock: the best draft's run at k = cfg.k against plain decoding of as many tokens per row
    alpha, _, _, _, spec_tokens_n, spec_seconds = quality_rows[-1][1:]
    per_row, rounds = max(1, round(spec_tokens_n / len(prompts))), (cfg.seq_len - cfg.prompt_len) // (cfg.k + 1)
    plain_seconds = seconds_per_call(lambda: target_decode(target, prompts, per_row, False, gen), repeats=1)
    plain_tps, spec_tps = per_row * len(prompts) / plain_seconds, spec_tokens_n / spec_seconds
    predicted = tokens_per_forward_formula(alpha, cfg.k) / (c * cfg.k + 1)
    emit.table("wall_clock", ["decoder", "tokens", "seconds", "tokens_per_s", "target_forwards", "draft_forwards"],
               [["target", per_row * len(prompts), plain_seconds, plain_tps, per_row, 0],
                ["speculative", spec_tokens_n, spec_seconds, spec_tps, rounds, rounds * cfg.k]])
    emit.log(f"k={cfg.k}: {spec_tps / plain_tps:.2f}x the tokens per second of plain decoding ({predicted:.2f}x "
             f"predicted); a draft forward costs c={c:.2f} target forwards")
    emit.progress(done + 1)

    emit.summary({
        "language_entropy_nats": entropy, "target_loss": target_loss,
        "greedy_tokens_compared": spec_tokens.numel(), "greedy_mismatched_tokens": mismatched,
        "greedy_drafts_rejected": rejected,
        "chi2_z_speculative": tests["speculative"]["z"], "p_value_speculative": tests["speculative"]["p_value"],
        "chi2_z_no_residual": tests["no_residual"]["z"],
        "alpha_weakest_draft": quality_rows[0][1], "alpha_best_draft": quality_rows[-1][1],
        "tokens_per_target_forward_at_k": quality_rows[-1][2],
        "formula_max_rel_err": max(abs(r[4]) for r in quality_rows + k_rows),
        "draft_cost_ratio_c": c, "wall_clock_speedup": spec_tps / plain_tps, "predicted_wall_clock_speedup": predicted,
    })
