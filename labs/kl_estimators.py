"""k1, k2, k3: three Monte Carlo estimators of KL(q||p), as values and as gradients (Schulman, 2020).

With samples x ~ q (the policy), p the reference and the ratio r = p(x)/q(x):

    k1 = -log r              E_q[k1] = KL(q||p)    unbiased; negative wherever p(x) > q(x)
    k2 = 1/2 (log r)^2       E_q[k2] != KL(q||p)   biased (by O(d^3) at distance d), >= 0, low variance
    k3 = (r - 1) - log r     E_q[k3] = KL(q||p)    unbiased, since E_q[r] = sum_x p(x) = 1; >= 0, as log r <= r - 1

k3 is k1 plus the zero-mean control variate r - 1. When q ~ p, r - 1 ~ log r, so it cancels
k1's first-order noise: with log r about Gaussian, Var[k1] ~ 2 KL while Var[k3] ~ 2 KL^2, so
k1's relative std sqrt(2/KL) explodes as KL -> 0 while k3's stays near sqrt(2) (1.1-1.3 for the
skewed tokens). Far apart, r is heavy-tailed (tokens rare under q but likely under p) and k3
loses its edge. For unit Gaussians q = N(0, 1), p = N(mu, 1): log r = mu x - mu^2/2, KL = mu^2/2 and
E[k2] = KL + mu^4/8, a relative bias of mu^2/4 that no number of samples removes (for tokens,
whose log r is skewed, the bias starts at third order).

As a gradient. In GRPO's loss the samples are drawn from q_theta and detached: the gradient
flows through l = log q_theta(x) only, with grad log r = -grad l and E_q[grad l] = sum_x grad q = 0:

    grad k1 = grad l                     E = 0                                    (no pull at all)
    grad k2 = (log q - log p) grad l     E = E_q[log(q/p) grad log q] = grad KL(q||p)   (reverse)
    grad k3 = (1 - r) grad l             E = -sum_x p grad log q       = grad KL(p||q)   (forward)

An unbiased value is not an unbiased gradient: k1 and k3 estimate KL(q||p), yet in the loss
k1 pulls nowhere on average and k3 follows the forward KL; the biased k2 follows the reverse
KL. "KL in the reward" (REINFORCE on -k1, its value detached) has the per-sample gradient
k1 grad l = grad k2: the same as k2 in the loss, sample by sample.

Off-policy: samples from q_old with the ratio w = q_theta(x)/q_old(x) kept in the graph:
E_old[w k] = E_q[k], so the loss's gradient is the gradient of the estimator's mean: the
reverse KL's for k1 and k3 (unbiased values), a biased one for k2. Without w (GRPO's k3 once
theta has moved from theta_old) the mean is E_old[(1 - r) grad l], neither KL's gradient.

For a categorical q = softmax(theta) over a vocabulary: grad_theta log q(x) = e_x - q,
grad_theta KL(q||p) = q * (log(q/p) - KL(q||p)) and grad_theta KL(p||q) = q - p. The lab
checks these against central finite differences of the closed forms, then measures every
Monte Carlo gradient against both, as the number of samples grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from labs._runtime import Emitter, LabFailure, Range, torch_threads
from labs.protocol import Chart

KS = ("k1", "k2", "k3")
MAX_DRAW = 1 << 24  # samples drawn at once: 128 MiB of float64 each for x, log r and the three estimates
FAMILIES = ("tokens", "gaussian")

# (key, label, estimator, how the samples are drawn and weighted): the rows of the gradient table
GRADIENTS = (
    ("k1", "k1", "k1", "on-policy"),
    ("k2", "k2", "k2", "on-policy"),
    ("k3", "k3", "k3", "on-policy"),
    ("k1_reward", "k1 as reward", "k1", "reward"),  # REINFORCE on -k1: its value detached, times the score
    ("k1_off", "k1 off-policy", "k1", "ratio"),
    ("k2_off", "k2 off-policy", "k2", "ratio"),
    ("k3_off", "k3 off-policy", "k3", "ratio"),
    ("k3_off_no_ratio", "k3 off-policy, no ratio", "k3", "no ratio"),
)

CHARTS = [
    Chart("Bias of the n-sample estimate", ("value/bias_k1", "value/bias_k2", "value/bias_k3"), log_x=True,
          look_for="k1 and k3 scatter around 0 ever more tightly; k2 settles on a bias more samples cannot remove",
          x_label="samples n", y_label="mean estimate - KL(q||p)"),
    Chart("Variance of the n-sample estimate", ("value/var_k1", "value/var_k2", "value/var_k3"), log_x=True,
          log_y=True, look_for="all fall as 1/n; k1 sits far above k2 and k3 when q and p are close",
          x_label="samples n", y_label="variance"),
    Chart("How often the estimate is negative", ("value/neg_frac_k1", "value/neg_frac_k3"), log_x=True,
          look_for="k1 is often below 0 for small n; k3 never is", x_label="samples n", y_label="P(estimate < 0)"),
    Chart("Relative std per sample vs KL (tokens)", ("std_k1/kl", "std_k2/kl", "std_k3/kl"), x="kl",
          table="sweep_tokens", log_x=True, log_y=True,
          look_for="k1's relative noise explodes as KL -> 0; k3's stays near 1 there and loses its edge far apart"),
    Chart("Relative bias of k2 vs KL (tokens)", ("bias_k2/kl",), x="kl", table="sweep_tokens", log_x=True,
          look_for="k2's bias grows with the distance between q and p"),
    Chart("Gradient error to grad KL(q||p) (reverse)",
          ("grad/k1_err_reverse", "grad/k2_err_reverse", "grad/k3_err_reverse"), log_x=True, log_y=True,
          look_for="k2 falls as 1/sqrt(N): it follows the reverse KL; k1 stays at 1 (zero gradient), k3 flattens",
          x_label="samples N", y_label="|g - grad| / |grad|"),
    Chart("Gradient error to grad KL(p||q) (forward)",
          ("grad/k1_err_forward", "grad/k2_err_forward", "grad/k3_err_forward"), log_x=True, log_y=True,
          look_for="k3 falls as 1/sqrt(N): it follows the forward KL; k2 flattens", x_label="samples N",
          y_label="|g - grad| / |grad|"),
]


@dataclass
class Config:
    seed: int = 0  # the sampling noise; the distributions are fixed by pair_seed
    device: str = "cpu"
    pair_seed: int = 0  # draws the token distributions q, p and the old policy
    vocab: int = 32  # size of the categorical "token" distributions
    distances: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)  # p's shift from q (KL ~ d^2/2 when small)
    sweep_samples: int = 1 << 21  # single samples per (family, distance) in the sweep
    value_distance: float = 0.25  # the pair whose n-sample estimates are studied
    sample_sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 4096)
    repeats: int = 4096  # independent n-sample estimates per n
    grad_distance: float = 2.0  # far enough apart that the two KLs' gradients differ
    old_shift: float = 0.5  # how far q_old (the sampler of the off-policy rows) is from q_theta
    grad_samples: int = 1 << 22  # the largest N of the gradient estimates (N = 4^k up to it)

    def validate(self) -> None:
        if self.repeats * max(self.sample_sizes, default=1) > MAX_DRAW:
            raise ValueError(f"repeats x the largest sample size must be at most {MAX_DRAW} (they are drawn at once)")


TOY = {"sweep_samples": 1 << 19, "repeats": 1024, "grad_samples": 1 << 20}
LIMITS = {"vocab": Range(2), "distances": Range(0, 4, low_open=True), "sweep_samples": Range(16, MAX_DRAW),
          "value_distance": Range(0, 4, low_open=True), "sample_sizes": Range(1, 1 << 16),
          "repeats": Range(2, 1 << 16), "grad_distance": Range(0, 4, low_open=True), "old_shift": Range(0, 4),
          "grad_samples": Range(64, MAX_DRAW)}


# -- the estimators and the closed forms ----------------------------------------------------

def estimates(log_r: torch.Tensor) -> dict[str, torch.Tensor]:
    """k1, k2, k3 per sample from log r = log p(x) - log q(x). expm1 keeps k3 >= 0 near r = 1."""
    return {"k1": -log_r, "k2": 0.5 * log_r ** 2, "k3": torch.expm1(log_r) - log_r}


def kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a||b) of two categoricals given as log-probabilities."""
    return (log_a.exp() * (log_a - log_b)).sum()


def unit_direction(gen: torch.Generator, logits: torch.Tensor) -> torch.Tensor:
    """A random logit direction with mean 0 and std 1 under softmax(logits): a shift by d times it
    moves the distribution by KL ~ d^2/2, as the Gaussians' mean shift by d does."""
    q = logits.softmax(-1)
    u = torch.randn(logits.shape, generator=gen, dtype=logits.dtype)
    u = u - (q * u).sum()
    return u / (q * u ** 2).sum().sqrt()


@dataclass
class TokenPair:
    """q = softmax(logits), p = softmax(logits + distance * direction), q_old = softmax(logits + old_shift * other)."""

    logits: torch.Tensor
    direction: torch.Tensor
    other: torch.Tensor

    @classmethod
    def draw(cls, vocab: int, pair_seed: int) -> "TokenPair":
        gen = torch.Generator().manual_seed(pair_seed)
        logits = 1.5 * torch.randn(vocab, generator=gen, dtype=torch.float64)  # a peaked, token-like q
        return cls(logits, unit_direction(gen, logits), unit_direction(gen, logits))

    def log_q(self) -> torch.Tensor:
        return self.logits.log_softmax(-1)

    def log_p(self, distance: float) -> torch.Tensor:
        return (self.logits + distance * self.direction).log_softmax(-1)

    def log_old(self, shift: float) -> torch.Tensor:
        return (self.logits + shift * self.other).log_softmax(-1)


def sample_log_r(family: str, pair: TokenPair, distance: float, n: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, float]:
    """n samples x ~ q of log r(x), and the exact KL(q||p)."""
    if family == "gaussian":  # q = N(0, 1), p = N(distance, 1)
        x = torch.randn(n, generator=gen, dtype=torch.float64)
        return distance * x - distance ** 2 / 2, distance ** 2 / 2
    log_q, log_p = pair.log_q(), pair.log_p(distance)
    x = torch.multinomial(log_q.exp(), n, replacement=True, generator=gen)
    return (log_p - log_q)[x], float(kl(log_q, log_p))


# -- as a value ------------------------------------------------------------------------------

def sweep_row(log_r: torch.Tensor, true_kl: float) -> dict[str, float]:
    """Per-sample bias and std of each estimator relative to the KL, and how often k1/k3 are negative."""
    ks = estimates(log_r)
    row = {"kl": true_kl}
    for name, k in ks.items():
        row[f"bias_{name}/kl"] = float(k.mean() - true_kl) / true_kl
    for name, k in ks.items():
        row[f"std_{name}/kl"] = float(k.std()) / true_kl
    row["var_k1/var_k3"] = float(ks["k1"].var() / ks["k3"].var())
    row["neg_frac_k1"] = float((ks["k1"] < 0).double().mean())
    row["neg_frac_k3"] = float((ks["k3"] < 0).double().mean())
    return row


def n_sample_stats(log_r: torch.Tensor, true_kl: float) -> dict[str, float]:
    """log_r of shape (repeats, n): bias, variance and P(< 0) of each n-sample mean, and the bias's standard error."""
    out: dict[str, float] = {}
    repeats = log_r.shape[0]
    for name, k in estimates(log_r).items():
        means = k.mean(dim=1)
        out[f"bias_{name}"] = float(means.mean()) - true_kl
        out[f"var_{name}"] = float(means.var())
        out[f"se_{name}"] = math.sqrt(out[f"var_{name}"] / repeats)
        out[f"neg_frac_{name}"] = float((means < 0).double().mean())
    return out


# -- as a gradient ---------------------------------------------------------------------------

def surrogate_loss(estimator: str, mode: str, theta: torch.Tensor, x: torch.Tensor, log_p: torch.Tensor,
                   log_old: torch.Tensor | None) -> torch.Tensor:
    """The KL term of a loss on detached samples x: the gradient flows through log q_theta(x) only.

    ``on-policy``: mean k(x), x ~ q_theta. ``reward``: mean of k(x) detached times log q_theta(x)
    (the KL as a reward, REINFORCE). ``ratio``: x ~ q_old, mean w k with w = q_theta/q_old in the
    graph. ``no ratio``: x ~ q_old, mean k(x), as if the samples were on-policy.
    """
    log_q = theta.log_softmax(-1)[x]
    k = estimates(log_p[x] - log_q)[estimator]
    if mode == "reward":
        return (k.detach() * log_q).mean()
    if mode == "ratio":
        return (torch.exp(log_q - log_old[x]) * k).mean()
    return k.mean()


def finite_difference(f, theta: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """Central differences (f(theta + h e_i) - f(theta - h e_i)) / 2h, one coordinate at a time."""
    grad = torch.zeros_like(theta)
    for i in range(len(theta)):
        step = torch.zeros_like(theta)
        step[i] = h
        grad[i] = (f(theta + step) - f(theta - step)) / (2 * h)
    return grad


def exact_gradients(pair: TokenPair, distance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite-difference gradients of KL(q||p) and KL(p||q) in q's logits, checked against the formulas."""
    log_p = pair.log_p(distance)
    reverse = finite_difference(lambda t: kl(t.log_softmax(-1), log_p), pair.logits)
    forward = finite_difference(lambda t: kl(log_p, t.log_softmax(-1)), pair.logits)
    q, log_q = pair.log_q().exp(), pair.log_q()
    formula_reverse = q * (log_q - log_p - kl(log_q, log_p))
    formula_forward = q - log_p.exp()
    gap = max(float((reverse - formula_reverse).abs().max()), float((forward - formula_forward).abs().max()))
    if gap > 1e-7:
        raise LabFailure(f"finite differences disagree with the closed-form KL gradients by {gap:.2g}")
    return reverse, forward


def compare(g: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Relative error |g - target| / |target| and cosine similarity."""
    err = float((g - target).norm() / target.norm())
    cos = float(g @ target / (g.norm() * target.norm())) if g.norm() > 0 else 0.0
    return err, cos


def sample_sizes_for_gradients(largest: int) -> list[int]:
    sizes = [64]
    while sizes[-1] * 4 <= largest:
        sizes.append(sizes[-1] * 4)
    return sizes


# -- the lab --------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(torch_threads(1))
    try:
        _run(cfg, emit)
    finally:
        torch.set_num_threads(previous)


def distance_sweep(cfg: Config, pair: TokenPair, gen: torch.Generator, emit: Emitter) -> dict[str, list[dict]]:
    """Per-sample bias and noise of each estimator as p moves away from q, for tokens and Gaussians."""
    sweeps: dict[str, list[dict[str, float]]] = {}
    for family in FAMILIES:
        sweeps[family] = []
        for d in cfg.distances:
            log_r, true_kl = sample_log_r(family, pair, d, cfg.sweep_samples, gen)
            sweeps[family].append({"distance": d, **sweep_row(log_r, true_kl)})
            emit.progress(sum(map(len, sweeps.values())))
        columns = list(sweeps[family][0])
        emit.table(f"sweep_{family}", columns, [[row[c] for c in columns] for row in sweeps[family]])
    close, far = sweeps["tokens"][0], sweeps["tokens"][-1]
    emit.log(f"tokens (vocab {cfg.vocab}): at KL={close['kl']:.3g} k1's std is {close['std_k1/kl']:.1f} x KL and "
             f"k3's {close['std_k3/kl']:.2f} x KL (variance ratio {close['var_k1/var_k3']:.0f}); k1 is negative on "
             f"{close['neg_frac_k1']:.0%} of samples, k3 on {close['neg_frac_k3']:.0%}. At KL={far['kl']:.3g} k2's "
             f"bias is {far['bias_k2/kl']:+.0%} of the KL")
    return sweeps


def value_vs_n(cfg: Config, pair: TokenPair, gen: torch.Generator, emit: Emitter, step0: int) -> dict[str, float]:
    """The n-sample estimate of one pair, ``repeats`` times per n: its bias stays, its variance falls as 1/n.
    Returns the row of the largest n."""
    columns = ["n", "kl", *(f"{s}_{k}" for s in ("bias", "se", "var") for k in KS), "neg_frac_k1", "neg_frac_k3"]
    rows = []
    for i, n in enumerate(cfg.sample_sizes):
        log_r, true_kl = sample_log_r("tokens", pair, cfg.value_distance, cfg.repeats * n, gen)
        stats = {"n": n, "kl": true_kl, **n_sample_stats(log_r.view(cfg.repeats, n), true_kl)}
        emit.metric(n, **{f"value/{c}": stats[c] for c in columns[2:] if not c.startswith("se_")})
        rows.append([stats[c] for c in columns])
        emit.progress(step0 + i + 1)
    emit.table("value_vs_n", columns, rows)
    last = dict(zip(columns, rows[-1]))
    emit.log(f"n={last['n']}, {cfg.repeats} repeats, KL={last['kl']:.4g}: bias k1 {last['bias_k1']:+.2e}, "
             f"k2 {last['bias_k2']:+.2e}, k3 {last['bias_k3']:+.2e} (standard errors {last['se_k1']:.1e}, "
             f"{last['se_k2']:.1e}, {last['se_k3']:.1e})")
    return last


def gradient_study(cfg: Config, pair: TokenPair, gen: torch.Generator, emit: Emitter,
                   step0: int) -> tuple[dict[str, dict[str, float]], float]:
    """Each row of GRADIENTS in a loss on N detached samples, N = 64, 256, ... against both KLs'
    gradients. Returns each row's errors at the largest N, and how far apart the two gradients are."""
    log_p, log_old = pair.log_p(cfg.grad_distance), pair.log_old(cfg.old_shift)
    reverse, forward = exact_gradients(pair, cfg.grad_distance)
    sizes = sample_sizes_for_gradients(cfg.grad_samples)
    on_policy = torch.multinomial(pair.log_q().exp(), sizes[-1], replacement=True, generator=gen)
    off_policy = torch.multinomial(log_old.exp(), sizes[-1], replacement=True, generator=gen)
    rows, results = [], {}
    for i, (key, label, estimator, mode) in enumerate(GRADIENTS):
        x = on_policy if mode in ("on-policy", "reward") else off_policy
        for n in sizes:  # prefixes of one sample: the running estimate of the expected gradient
            theta = pair.logits.clone().requires_grad_(True)
            surrogate_loss(estimator, mode, theta, x[:n], log_p, log_old).backward()
            err_rev, cos_rev = compare(theta.grad, reverse)
            err_fwd, cos_fwd = compare(theta.grad, forward)
            if mode == "on-policy":
                emit.metric(n, **{f"grad/{key}_err_reverse": err_rev, f"grad/{key}_err_forward": err_fwd})
        norm_ratio = float(theta.grad.norm() / reverse.norm())
        results[key] = {"err_reverse": err_rev, "err_forward": err_fwd, "norm_ratio": norm_ratio}
        rows.append([label, mode, sizes[-1], cos_rev, err_rev, cos_fwd, err_fwd, norm_ratio])
        emit.progress(step0 + i + 1)
    emit.table("gradients", ["estimator", "samples", "N", "cos_reverse", "err_reverse", "cos_forward",
                             "err_forward", "norm/|grad reverse|"], rows)
    gap = float((reverse - forward).norm() / reverse.norm())
    log_q = pair.log_q()
    emit.log(f"KL(q||p)={float(kl(log_q, log_p)):.3f}, KL(p||q)={float(kl(log_p, log_q)):.3f}: their gradients "
             f"differ by {gap:.0%}; KL(q_old||q)={float(kl(log_old, log_q)):.3f}. Expected gradients from "
             f"N={sizes[-1]}: k1 {results['k1']['norm_ratio']:.3f} x |grad reverse|, k2 "
             f"{results['k2']['err_reverse']:.3f} from the reverse, k3 {results['k3']['err_forward']:.3f} "
             "from the forward")
    return results, gap


def _run(cfg: Config, emit: Emitter) -> None:
    n_sweep = len(FAMILIES) * len(cfg.distances)
    emit.start(cfg, total_steps=n_sweep + len(cfg.sample_sizes) + len(GRADIENTS))
    gen = torch.Generator().manual_seed(cfg.seed)  # all sampling noise; the distributions come from pair_seed
    pair = TokenPair.draw(cfg.vocab, cfg.pair_seed)
    sweeps = distance_sweep(cfg, pair, gen, emit)
    last = value_vs_n(cfg, pair, gen, emit, n_sweep)
    results, gap = gradient_study(cfg, pair, gen, emit, n_sweep + len(cfg.sample_sizes))

    close, far = sweeps["tokens"][0], sweeps["tokens"][-1]
    emit.summary({
        "kl_close": close["kl"], "kl_far": far["kl"],
        "var_ratio_k1_over_k3_close": close["var_k1/var_k3"], "var_ratio_k1_over_k3_far": far["var_k1/var_k3"],
        "neg_frac_k1_close": close["neg_frac_k1"], "neg_frac_k3_close": close["neg_frac_k3"],
        "k2_rel_bias_far": far["bias_k2/kl"], "k2_rel_bias_far_gaussian": sweeps["gaussian"][-1]["bias_k2/kl"],
        **{f"{k}_abs_rel_bias_n_max": abs(last[f"bias_{k}"]) / last["kl"] for k in KS},
        **{f"{k}_bias_in_std_errors_n_max": last[f"bias_{k}"] / last[f"se_{k}"] for k in KS},
        "reverse_forward_gradient_gap": gap,
        "grad_k1_norm_over_reverse": results["k1"]["norm_ratio"],
        **{f"grad_{key}_err_{target}": results[key][f"err_{target}"]
           for key in ("k2", "k3", "k1_reward", "k1_off", "k2_off", "k3_off", "k3_off_no_ratio")
           for target in ("reverse", "forward")},
    })
