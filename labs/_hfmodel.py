"""A local Hugging Face checkpoint as the alignment labs' model: ``--set model=PATH``.

The labs' task speaks a 14-symbol vocabulary (``_tinylm.VOCAB``: <pad>, <eos>, the digits, "+"
and "="); a real model speaks its tokenizer's. Rather than teach every lab about padding and
attention masks, the checkpoint is wrapped so that it speaks the task's vocabulary:

    in   each task symbol is one token of the model's tokenizer (digits, "+" and "=" have a
         token of their own in every common tokenizer; <eos> is the tokenizer's end token,
         for a chat model the end of the assistant's turn). The prompt "435+5=" is rendered
         through the chat template when the tokenizer has one:

             [template, instruction] 4 3 5 + 5 = [template up to the assistant's answer]

         and otherwise follows the tokenizer's <bos>. One token per symbol keeps every prompt
         the same length, so a batch needs no padding and no attention mask, as with the tiny
         model, and every lab runs unchanged.
    out  the next-token logits of the answer symbols only: the model answers in the task's
         alphabet, its distribution renormalised over those tokens (constrained decoding).
         The labs' log-probs, KLs and entropies are over this distribution. Reading 13 rows
         of the output layer instead of the whole vocabulary also saves a real model's
         largest activation. <pad> is never an answer: its logit sits 30 nats below the best.

Outputs come back at the task layout's positions: the output read for "=" (which predicts the
first answer token) is that of the template's last token, the one that really precedes the
answer. Weights load in bfloat16 on CUDA (float32 on CPU), and ``gradient_checkpointing``
trades compute for activation memory. The logits are the output layer's rows applied to the
trunk's last hidden state: a model that post-processes its logits (Gemma 2's soft-capping) is
read without that step.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import torch

from labs import _tinylm as tl
from labs._runtime import LabUsageError

INSTRUCTION = "Reply with the sum only, digits and nothing else: "
PLACEHOLDER = "\x00prompt\x00"  # where the problem goes in the rendered chat template
PAD_BELOW_BEST = 30.0  # nats: <pad> is never sampled, and its log-prob stays finite (0 * finite = 0)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise LabUsageError(f"model={path}: no such folder (a local Hugging Face checkpoint folder is expected)")
    if not (folder / "config.json").is_file():
        raise LabUsageError(f"model={path}: no config.json in the folder, so it is not a Hugging Face checkpoint")
    return folder


def load_tokenizer(path: str) -> Any:
    folder = _folder(path)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise LabUsageError(f"model={path}: no tokenizer in the folder (none of {', '.join(TOKENIZER_FILES)})")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means the folder's tokenizer is unusable
        raise LabUsageError(f"model={path}: the tokenizer cannot be loaded ({type(exc).__name__}: {exc})") from None


def symbol_ids(tokenizer: Any, path: str) -> list[int]:
    """The tokenizer's id of each task symbol, in ``tl.VOCAB`` order (<pad> falls back to <eos>)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise LabUsageError(f"model={path}: the tokenizer has no end-of-sequence token, so no answer can end")
    ids = [tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos, eos]
    for symbol in tl.VOCAB[2:]:
        found = tokenizer.convert_tokens_to_ids(symbol)
        if found is None or found == tokenizer.unk_token_id:
            alone = tokenizer.encode(symbol, add_special_tokens=False)
            found = alone[0] if len(alone) == 1 else None
        if found is None:
            raise LabUsageError(f"model={path}: the tokenizer has no single token for {symbol!r}")
        ids.append(found)
    return ids


def check_folder(path: str) -> None:
    """Everything a usage error should catch before the run: the folder, its config (a causal
    LM), its weights and a tokenizer that can spell the task. Raises LabUsageError."""
    folder = _folder(path)
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise LabUsageError(f"model={path}: config.json cannot be read ({type(exc).__name__}: {exc})") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise LabUsageError(f"model={path}: not a causal language model (model_type {config.model_type!r} "
                            "has no ...ForCausalLM class)")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir()):
        raise LabUsageError(f"model={path}: no weights in the folder (*.safetensors or *.bin)")
    symbol_ids(load_tokenizer(path), path)


def prompt_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids before and after the problem's symbols: the chat template's user turn (with
    the instruction) up to the assistant's answer, or just <bos> for a model without one."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": INSTRUCTION + PLACEHOLDER}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        before, _, after = text.partition(PLACEHOLDER)
        return (tokenizer.encode(before, add_special_tokens=False),
                tokenizer.encode(after, add_special_tokens=False) if after else [])
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []), []


class ChatTrunk(torch.nn.Module):
    """The checkpoint's transformer on task-vocabulary ids: maps each id to the tokenizer's,
    wraps the prompt in its frame, and returns the hidden states (float32) at the task
    layout's positions: ``.last_hidden_state`` of shape (B, T, H) for ids of shape (B, T)."""

    def __init__(self, body: torch.nn.Module, ids: Sequence[int], prefix: Sequence[int], suffix: Sequence[int],
                 prompt_len: int):
        super().__init__()
        self.body = body
        self.register_buffer("symbol_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.register_buffer("prefix", torch.tensor(prefix, dtype=torch.long), persistent=False)
        self.register_buffer("suffix", torch.tensor(suffix, dtype=torch.long), persistent=False)
        self.prompt_len = prompt_len

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        batch, length = input_ids.shape
        p = self.prompt_len
        if length < p:
            raise ValueError(f"the model needs the whole prompt ({p} tokens), got {length}")
        ids = self.symbol_ids[input_ids]
        framed = torch.cat([self.prefix.expand(batch, -1), ids[:, :p], self.suffix.expand(batch, -1), ids[:, p:]],
                           dim=1)
        hidden = self.body(input_ids=framed, use_cache=False).last_hidden_state
        # task position t sits at t + len(prefix), and from "=" on (whose output is the frame's last
        # token's: the one that precedes the answer) len(suffix) further
        t = torch.arange(length, device=input_ids.device)
        where = t + len(self.prefix) + torch.where(t >= p - 1, len(self.suffix), 0)
        return SimpleNamespace(last_hidden_state=hidden[:, where].float())


class ChatLM(torch.nn.Module):
    """A causal LM on the task's vocabulary: ``model(input_ids=ids).logits`` is (B, T, len(VOCAB)),
    float32. ``.model`` is the trunk (the value and reward models copy it), ``.config`` the
    checkpoint's."""

    def __init__(self, hf_model: torch.nn.Module, tokenizer: Any, trunk: ChatTrunk):
        super().__init__()
        self.model = trunk
        self.head = hf_model.get_output_embeddings()
        self.config = hf_model.config
        # not a registered submodule (its parameters are those of .model and .head already), kept
        # to save the whole checkpoint; deepcopy copies it together with them
        self.__dict__["hf_model"] = hf_model
        self.__dict__["tokenizer"] = tokenizer

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        hidden = self.model(input_ids).last_hidden_state
        rows = self.model.symbol_ids[tl.EOS_ID :]  # what an answer can be: <eos> and the symbols (<pad> is id 0)
        bias = self.head.bias[rows].float() if getattr(self.head, "bias", None) is not None else None
        answers = torch.nn.functional.linear(hidden, self.head.weight[rows].float(), bias)
        pad = answers.detach().amax(-1, keepdim=True) - PAD_BELOW_BEST
        return SimpleNamespace(logits=torch.cat([pad, answers], dim=-1))

    def save_folder(self, folder: Path, meta: dict[str, Any]) -> None:
        """``save_pretrained`` of the weights and the tokenizer: a folder ``model=`` loads again."""
        self.hf_model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / "lab_meta.txt").write_text("".join(f"{k}: {v}\n" for k, v in meta.items()), encoding="utf-8")


def load(path: str, task: tl.AdditionTask, device: str, gradient_checkpointing: bool = False) -> ChatLM:
    """The checkpoint at ``path`` (checked by ``check_folder``), wrapped for ``task``."""
    import transformers
    from packaging.version import Version
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()  # the lab's own progress events say how far it is
    tokenizer = load_tokenizer(path)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    dtype_arg = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"  # renamed
    hf_model = AutoModelForCausalLM.from_pretrained(_folder(path), local_files_only=True, **{dtype_arg: dtype})
    if gradient_checkpointing and hasattr(hf_model, "activation_checkpointing_enable"):  # the newer name
        hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    prefix, suffix = prompt_frame(tokenizer)
    trunk = ChatTrunk(hf_model.base_model, symbol_ids(tokenizer, path), prefix, suffix, task.prompt_len)
    return ChatLM(hf_model, tokenizer, trunk).to(device)


def describe(model: ChatLM, task: tl.AdditionTask, path: str) -> str:
    """One line for the log: the checkpoint, its size, and a prompt exactly as the model reads it."""
    trunk = model.model
    ids = trunk.symbol_ids[tl.encode_prompts(task, [(435, 5)])[0]].tolist()
    shown = model.tokenizer.decode(trunk.prefix.tolist() + ids + trunk.suffix.tolist())
    return (f"model {path}: {type(model.hf_model).__name__}, {tl.count_parameters(model)} parameters; "
            f"a prompt as the model reads it: {shown!r}; answers use only the task's symbols and "
            f"{model.tokenizer.eos_token!r}")

