"""Shared pieces of the alignment labs (Days 5-9): task, tokenizer, tiny model, sampling, checkpoints.

The task. Addition of a three-digit and a one-digit number, operands zero-padded to a fixed
width and the answer free-length:

    prompt      "435+5="          (always digits + b_digits + 2 characters: a batch needs no padding)
    completion  "440" <eos>       (the sum without leading zeros, then end-of-sequence)

The gold scorer is exact match: a completion scores 1 when the text before <eos> is the
sum and <eos> was emitted, 0 otherwise. Every lab reports this true score next to its losses.
A fixed 10% of all problems (chosen by a hash of the operands, independent of any seed) is
held out: no lab trains on them, every lab evaluates on them.

The model. A Llama-style causal LM built from a ``transformers.LlamaConfig`` (2 layers,
hidden 64, 4 heads, a 14-symbol vocabulary, untied embeddings; about 0.13M parameters).
Nothing is downloaded: the weights start random and the SFT lab trains them. Sequences are
about a dozen tokens, so sampling recomputes the whole prefix at each step instead of
keeping a KV cache.

Checkpoints. The SFT model is cached under ``output/labs/_checkpoints/sft-<key>.pt`` (or
``$LLMCORE_LAB_CHECKPOINTS``), where the key hashes the SFT config and the source of the code
that trains it, so a changed recipe never loads a stale model. Files are written to a
temporary name and renamed into place, so concurrent runs never read half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from labs._runtime import torch_threads

# -- tokenizer ------------------------------------------------------------------------------

VOCAB: tuple[str, ...] = ("<pad>", "<eos>", *"0123456789", "+", "=")
PAD_ID, EOS_ID = 0, 1


class Tokenizer:
    """One token per character over ``VOCAB``; ``<pad>`` and ``<eos>`` are single special ids."""

    def __init__(self, vocab: Sequence[str] = VOCAB):
        self.vocab = tuple(vocab)
        self.ids = {s: i for i, s in enumerate(self.vocab)}
        self.pad_id = self.ids["<pad>"]
        self.eos_id = self.ids["<eos>"]

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.ids[ch] for ch in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> tuple[str, bool]:
        """The text before the first <eos>, and whether an <eos> was emitted at all."""
        chars = []
        for i in ids:
            if i == self.eos_id:
                return "".join(chars), True
            if i != self.pad_id:
                chars.append(self.vocab[i])
        return "".join(chars), False


TOKENIZER = Tokenizer()

# -- the task -------------------------------------------------------------------------------

Problem = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class AdditionTask:
    """``a+b=`` with a ``digits``-digit and a ``b_digits``-digit operand (zero-padded) and the
    exact sum as the answer: "07+8=" -> "15"."""

    digits: int = 3
    b_digits: int = 1
    held_out_percent: int = 10

    @property
    def prompt_len(self) -> int:
        return self.digits + self.b_digits + 2

    @property
    def answer_len(self) -> int:
        """Characters in the longest answer (one more than the wider operand)."""
        return max(self.digits, self.b_digits) + 1

    def prompt(self, problem: Problem) -> str:
        a, b = problem
        return f"{a:0{self.digits}d}+{b:0{self.b_digits}d}="

    def answer(self, problem: Problem) -> str:
        return str(problem[0] + problem[1])

    def is_held_out(self, problem: Problem) -> bool:
        digest = hashlib.blake2b(f"{problem[0]},{problem[1]}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "little") % 100 < self.held_out_percent

    def sample(self, rng: random.Random, n: int, split: str = "train") -> list[Problem]:
        """``n`` random problems (with replacement) from the training or the held-out split."""
        want_held_out = {"train": False, "held_out": True}[split]
        out: list[Problem] = []
        while len(out) < n:
            p = (rng.randrange(10**self.digits), rng.randrange(10**self.b_digits))
            if self.is_held_out(p) == want_held_out:
                out.append(p)
        return out

    def eval_set(self, n: int) -> list[Problem]:
        """The same ``n`` distinct held-out problems for every lab and every seed (fewer if the
        held-out split is smaller)."""
        held_out = [(a, b) for a in range(10**self.digits) for b in range(10**self.b_digits)
                    if self.is_held_out((a, b))]
        random.Random(1234).shuffle(held_out)
        return held_out[:n]

    def score(self, problem: Problem, text: str, finished: bool = True) -> float:
        """The gold score: 1.0 for exactly the sum followed by <eos>, else 0.0."""
        return float(finished and text == self.answer(problem))


# -- model ----------------------------------------------------------------------------------


def model_config(d_model: int = 64, n_layers: int = 2, n_heads: int = 4, d_ff: int = 256,
                 max_len: int = 16, vocab_size: int = len(VOCAB)) -> dict[str, Any]:
    """The ``LlamaConfig`` fields of the tiny model, as a plain dict (stored in checkpoints)."""
    return dict(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_ff,
                num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_heads,
                max_position_embeddings=max_len, tie_word_embeddings=False,
                pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=None)


def build_model(config: dict[str, Any]) -> torch.nn.Module:
    """A freshly initialised ``LlamaForCausalLM`` (from the global torch RNG: seed first)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**config)
    cfg._attn_implementation = "eager"  # tiny sequences: eager is as fast and fully deterministic
    return LlamaForCausalLM(cfg)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class ValueModel(torch.nn.Module):
    """A transformer trunk with a scalar head, V(prefix) at every position: PPO's critic.
    Built from a causal LM, whose trunk it copies; the head starts at zero."""

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        import copy

        self.trunk = copy.deepcopy(lm.model)
        self.head = torch.nn.Linear(lm.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Scalar per position, shape (B, T)."""
        hidden = self.trunk(input_ids=ids).last_hidden_state
        return self.head(hidden).squeeze(-1)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (0 = leave as is), then restore the previous count.

    A fixed count keeps a seed's results identical across machines, and one thread avoids
    the slow-down of spinning OpenMP workers when several processes share two cores.
    """
    old = torch.get_num_threads()
    n = torch_threads(n)
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# -- batches --------------------------------------------------------------------------------


def encode_prompts(task: AdditionTask, problems: Sequence[Problem], device: str = "cpu") -> torch.Tensor:
    """Prompt ids, shape (B, prompt_len): fixed width, so no padding is needed."""
    return torch.tensor([TOKENIZER.encode(task.prompt(p)) for p in problems], dtype=torch.long, device=device)


def encode_completions(texts: Sequence[str], width: int, device: str = "cpu") -> torch.Tensor:
    """Completion ids ``text <eos>`` right-padded with <pad> to ``width`` tokens, shape (B, width)."""
    rows = []
    for text in texts:
        ids = TOKENIZER.encode(text) + [EOS_ID]
        if len(ids) > width:
            raise ValueError(f"completion {text!r} does not fit in {width} tokens")
        rows.append(ids + [PAD_ID] * (width - len(ids)))
    return torch.tensor(rows, dtype=torch.long, device=device)


def completion_mask(completions: torch.Tensor) -> torch.Tensor:
    """1.0 for each completion token up to and including the first <eos>, 0.0 after it.

    A completion that never emits <eos> (cut at the length limit) is all ones.
    """
    is_eos = (completions == EOS_ID).long()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos  # how many <eos> strictly before t
    return (eos_before == 0).float()


def decode_completions(completions: torch.Tensor) -> list[tuple[str, bool]]:
    return [TOKENIZER.decode(row) for row in completions.tolist()]


def completion_logits(model: torch.nn.Module, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Logits of the positions that predict completion tokens: shape (B, T - prompt_len, V)."""
    logits = model(input_ids=ids).logits
    return logits[:, prompt_len - 1 : -1].float()


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under ``logits``, elementwise: (B, C, V), (B, C) -> (B, C)."""
    return torch.gather(F.log_softmax(logits, dim=-1), -1, targets.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def completion_logprobs(model: torch.nn.Module, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """Per-token log pi(y_t | x, y_<t) of each completion token, shape (B, C) (unmasked)."""
    ids = torch.cat([prompts, completions], dim=1)
    return token_logprobs(completion_logits(model, ids, prompts.shape[1]), completions)


def sequence_logprob(model: torch.nn.Module, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """log pi(y | x) = sum over the completion's tokens (through its <eos>), shape (B,)."""
    return (completion_logprobs(model, prompts, completions) * completion_mask(completions)).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


@torch.no_grad()
def generate(model: torch.nn.Module, prompts: torch.Tensor, max_new_tokens: int, greedy: bool = False,
             temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample (or greedily decode) completions, shape (B, max_new_tokens), <pad> after each <eos>."""
    was_training = model.training
    model.eval()
    ids = prompts
    done = torch.zeros(prompts.shape[0], dtype=torch.bool, device=prompts.device)
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids).logits[:, -1].float()
        if greedy:
            nxt = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
        done |= nxt == EOS_ID
        ids = torch.cat([ids, nxt.unsqueeze(1)], dim=1)
        if bool(done.all()):
            break
    model.train(was_training)
    completions = ids[:, prompts.shape[1] :]
    if completions.shape[1] < max_new_tokens:  # everyone finished early: pad to a fixed width
        pad = completions.new_full((completions.shape[0], max_new_tokens - completions.shape[1]), PAD_ID)
        completions = torch.cat([completions, pad], dim=1)
    return completions


def gold_scores(task: AdditionTask, problems: Sequence[Problem], completions: torch.Tensor) -> torch.Tensor:
    """The gold (exact-match) score of each completion, shape (B,)."""
    decoded = decode_completions(completions)
    return torch.tensor([task.score(p, text, fin) for p, (text, fin) in zip(problems, decoded)],
                        device=completions.device)


def pass_rate(model: torch.nn.Module, task: AdditionTask, problems: Sequence[Problem], device: str = "cpu",
              greedy: bool = True, generator: torch.Generator | None = None, batch: int = 500) -> float:
    """Fraction of ``problems`` solved exactly: greedy decoding, or one sample each."""
    solved = 0.0
    for i in range(0, len(problems), batch):
        chunk = problems[i : i + batch]
        completions = generate(model, encode_prompts(task, chunk, device), task.answer_len + 1,
                               greedy=greedy, generator=generator)
        solved += float(gold_scores(task, chunk, completions).sum())
    return solved / len(problems)


# -- checkpoints ----------------------------------------------------------------------------


def checkpoint_dir() -> Path:
    return Path(os.environ.get("LLMCORE_LAB_CHECKPOINTS", Path("output") / "labs" / "_checkpoints"))


def recipe_key(config: dict[str, Any], sources: Sequence[bytes]) -> str:
    """A short hash of a config and of the source code (as loaded) that turns it into a model."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for src in sources:
        h.update(src)
    h.update(torch.__version__.encode())
    return h.hexdigest()[:12]


def save_model(path: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Write ``{config, state_dict, meta}`` atomically: to a temporary file, then rename (a ``model=``
    checkpoint: the folder ``path`` without its suffix, loadable with ``model=``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_folder"):
        return model.save_folder(path.with_suffix(""), meta)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"config": model.config.to_dict() if hasattr(model, "config") else {}, "state_dict": state,
               "meta": meta}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_model(path: Path, config: dict[str, Any], device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The causal LM saved at ``path`` (built from ``config``), and the metadata saved with it."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(config)
    model.load_state_dict(payload["state_dict"])
    return model.to(device), payload["meta"]


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A detached, eval-mode copy whose parameters take no gradient (a reference model)."""
    import copy

    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def trainable_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy to train (a policy starting from the SFT model), whatever the original's flags."""
    import copy

    policy = copy.deepcopy(model)
    for p in policy.parameters():
        p.requires_grad_(True)
    return policy


@torch.no_grad()
def kl_to_reference(policy: torch.nn.Module, ref: torch.nn.Module, task: AdditionTask,
                    problems: Sequence[Problem], device: str = "cpu",
                    generator: torch.Generator | None = None) -> float:
    """KL(pi || pi_ref) between completion distributions, in nats per prompt.

    By the chain rule KL over sequences = E_{y ~ pi} [ sum_t KL(pi(.|x, y_<t) || pi_ref(.|x, y_<t)) ]:
    one sample per prompt, the exact per-token KL summed along it (non-negative, low variance).
    """
    prompts = encode_prompts(task, problems, device)
    completions = generate(policy, prompts, task.answer_len + 1, generator=generator)
    ids = torch.cat([prompts, completions], dim=1)
    logp = F.log_softmax(completion_logits(policy, ids, task.prompt_len), dim=-1)
    logq = F.log_softmax(completion_logits(ref, ids, task.prompt_len), dim=-1)
    per_token = (logp.exp() * (logp - logq)).sum(-1)
    return float((per_token * completion_mask(completions)).sum(-1).mean())


def make_optimizer(params: Any, lr: float, warmup_steps: int = 0) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no weight decay) with a linear learning-rate warm-up over ``warmup_steps`` steps.

    Adam's first steps move every parameter by about ``lr`` whatever the size of its gradient;
    on a noisy RL or preference gradient that is a random kick to the whole model, so the
    alignment labs ramp the rate up. Call ``scheduler.step()`` after each ``optimizer.step()``.
    """
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / max(1, warmup_steps)))
    return opt, sched
