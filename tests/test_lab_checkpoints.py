"""``--set model=PATH``: the alignment labs on a local Hugging Face checkpoint.

The checkpoints are made here, offline: a tiny Llama with a character-level tokenizer and a
chat template, and a tiny GPT-2 with no template, each saved with ``save_pretrained``. The
wrapper must give exactly the checkpoint's own logits at the positions the task reads; every
alignment lab's toy, shrunk with ``--set`` to a few seconds, must run on it and report its
headline; a folder that is not a usable checkpoint is a usage error that names it.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import pytest
import torch

from labs import _hfmodel as hf
from labs import _tinylm as tl
from labs._runtime import EXIT_USAGE, main, run_in_process

SPECIAL = ["<pad>", "<eos>", "<unk>", "<bos>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CHARACTERS = "0123456789+=:,. abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

# each lab's toy shrunk to a few seconds on a 25k-parameter checkpoint
SHRUNK = {
    "sft": ["steps=20", "eval_every=10", "compare_steps=10", "eval_problems=40", "batch_size=16"],
    "dpo": ["steps=6", "eval_every=3", "train_prompts=120", "heldout_prompts=40", "batch_pairs=16",
            "sweep_betas=3", "sweep_steps=3"],
    "ppo": ["iterations=3", "eval_every=3", "prompts_per_iter=16", "eval_problems=20", "big_iterations=2",
            "big_epochs=2"],
    "grpo": ["iterations=3", "eval_every=3", "prompts_per_iter=8", "group_size=4", "eval_problems=20",
             "eval_samples=2"],
    "rlhf": ["iterations=2", "eval_every=2", "prompts_per_iter=16", "eval_problems=20", "rm_pairs=64",
             "rm_heldout_pairs=20", "rm_steps=3", "rm_batch=16", "rm_norm_prompts=64", "kl_coefs=0.1,1"],
}
HEADLINE = {"sft": "gold_score_after", "dpo": "preference_accuracy_dpo", "ppo": "gold_score_after",
            "grpo": "pass_rate_after", "rlhf": "small_beta_gold_end"}


def char_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
    """A one-token-per-character tokenizer with the special tokens a chat model has."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + list(CHARACTERS))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", bos_token="<bos>",
                                        additional_special_tokens=SPECIAL[4:])
    tokenizer.chat_template = chat_template
    return tokenizer


def save_checkpoint(folder: Path, kind: str = "llama") -> Path:
    """A tiny random causal LM and its tokenizer, saved as a checkpoint folder: a Llama with a chat
    template, or a GPT-2 (tied embeddings) without one."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = char_tokenizer(CHAT_TEMPLATE if kind == "llama" else None)
    ids = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=2,
                                             max_position_embeddings=128, **ids))
    else:
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, **ids))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-llama")


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_wrapper_gives_the_checkpoints_own_logits_at_the_task_positions(kind, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = save_checkpoint(tmp_path / kind, kind)
    task = tl.AdditionTask()
    model = hf.load(str(folder), task, "cpu")
    raw = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    problems = [(435, 5), (7, 9)]
    ids = torch.cat([tl.encode_prompts(task, problems), tl.encode_completions(["440", "16"], 4)], dim=1)
    trunk = model.model
    prefix, suffix, p = trunk.prefix.tolist(), trunk.suffix.tolist(), task.prompt_len
    if kind == "llama":
        assert prefix[0] == 4 and suffix == [6, 5]  # <|user|> ... <|end|><|assistant|>
    else:
        assert prefix == [3] and suffix == []  # <bos>, then the problem
    tokens = trunk.symbol_ids[ids]
    framed = torch.cat([torch.tensor([prefix] * 2), tokens[:, :p], torch.tensor([suffix] * 2, dtype=torch.long)
                        .view(2, len(suffix)), tokens[:, p:]], dim=1)
    with torch.no_grad():
        want = raw(input_ids=framed).logits[..., trunk.symbol_ids[1:]]
        got = model(input_ids=ids).logits
    # the task's "=" reads the frame's last token, the answer's tokens come after the whole frame
    at = [len(prefix) + t + (len(suffix) if t >= p - 1 else 0) for t in range(ids.shape[1])]
    torch.testing.assert_close(got[..., 1:], want[:, at], rtol=1e-5, atol=1e-5)
    assert torch.all(got[..., 0] == got[..., 1:].amax(-1) - hf.PAD_BELOW_BEST)  # <pad> is never an answer


def test_gradient_checkpointing_recomputes_each_layer_and_changes_no_number(checkpoint):
    task = tl.AdditionTask()
    ids = torch.cat([tl.encode_prompts(task, [(435, 5), (7, 9)]), tl.encode_completions(["440", "16"], 4)], dim=1)
    grads, checkpointed = [], []
    for on in (False, True):
        model = hf.load(str(checkpoint), task, "cpu", gradient_checkpointing=on).train()
        calls = []
        for layer in model.hf_model.base_model.layers:
            if on:  # count the layers that run under torch's checkpoint
                inner = layer._gradient_checkpointing_func
                layer._gradient_checkpointing_func = lambda *a, inner=inner, **k: calls.append(1) or inner(*a, **k)
        tl.token_logprobs(model(input_ids=ids).logits, ids).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        checkpointed.append(len(calls))
    assert checkpointed == [0, len(model.hf_model.base_model.layers)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-7)


def _run(lab: str, folder: Path, out_dir: Path) -> tuple[dict, list[str], float]:
    start = time.perf_counter()
    events = run_in_process(lab, toy=True, seed=0, threads=1, out_dir=out_dir,
                            assignments=[f"model={folder}", *SHRUNK[lab]])
    seconds = time.perf_counter() - start
    headline = next(e["headline"] for e in events if e["event"] == "summary")
    logs = [e["text"] for e in events if e["event"] == "log"]
    return headline, logs, seconds


@pytest.mark.lab
@pytest.mark.parametrize("lab", list(SHRUNK))
def test_each_alignment_lab_runs_on_a_checkpoint(lab, checkpoint, tmp_path):
    headline, logs, seconds = _run(lab, checkpoint, tmp_path / "out")
    value = headline[HEADLINE[lab]]
    assert value is not None and math.isfinite(value) and 0.0 <= value <= 1.0
    assert any("LlamaForCausalLM" in line and "<|assistant|>" in line for line in logs)  # the model, as it reads
    print(f"{lab} on a checkpoint: {seconds:.1f} s, {HEADLINE[lab]} = {value:.3f}")


@pytest.mark.lab
def test_sft_saves_a_checkpoint_the_next_lab_starts_from(checkpoint, tmp_path):
    _run("sft", checkpoint, tmp_path / "sft")
    saved = tmp_path / "sft" / "sft_model"
    hf.check_folder(str(saved))  # a usable checkpoint folder, tokenizer and chat template included
    original = hf.load(str(checkpoint), tl.AdditionTask(), "cpu").state_dict()
    trained = hf.load(str(saved), tl.AdditionTask(), "cpu").state_dict()
    assert any(not torch.equal(original[k], trained[k]) for k in original)  # SFT's weights, not the start's


def _not_causal(folder: Path) -> Path:
    from transformers import DistilBertConfig

    DistilBertConfig().save_pretrained(folder)
    return folder


def _no_tokenizer(folder: Path) -> Path:
    save_checkpoint(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    return folder


def _no_weights(folder: Path) -> Path:
    save_checkpoint(folder)
    (folder / "model.safetensors").unlink()
    return folder


@pytest.mark.parametrize("lab", ["sft", "grpo"])
@pytest.mark.parametrize("make, problem", [
    (lambda f: f, "no such folder"),
    (lambda f: (f.mkdir(), f)[1], "no config.json"),
    (_not_causal, "not a causal language model"),
    (_no_tokenizer, "no tokenizer"),
    (_no_weights, "no weights"),
])
def test_an_unusable_model_folder_is_a_usage_error(lab, make, problem, tmp_path, capsys):
    folder = make(tmp_path / "model")
    code = main([lab, "--toy", "--set", f"model={folder}", "--out", str(tmp_path / "out")], io.StringIO())
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"model={folder}" in err and problem in err and "Traceback" not in err
