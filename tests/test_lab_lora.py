"""The lora lab: hand-written LoRA, merging, trainable fractions, and measured training memory."""

from __future__ import annotations

import io

import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import lora
from labs._runtime import EXIT_USAGE, main, run_in_process


CLAIMS = [
    Claim("full fine-tuning task exact match - base model's", lambda r: r.h["full_ft_task_exact_match"]
          - r.h["base_task_exact_match"], ">", 0.6),
    Claim("LoRA r=8 task exact match - base model's", lambda r: r.h["lora_r8_task_exact_match"]
          - r.h["base_task_exact_match"], ">", 0.6),
    Claim("LoRA r=8 - full fine-tuning task exact match", lambda r: r.h["lora_r8_task_exact_match"]
          - r.h["full_ft_task_exact_match"], ">", -0.1, null=None),
    Claim("merged vs adapter logits, max |diff| (fp64)", "merged_max_abs_diff", "<", 1e-5, null=None),
    Claim("full fine-tuning Adam bytes / LoRA r=8 Adam bytes",
          lambda r: r.h["full_adam_bytes"] / r.h["lora_adam_bytes"], ">", 3.5, null=1),
]


def _calculator_numbers(head):
    """The app's calculator on the lab's reported shape and counts (fp32 numbers, no ZeRO)."""
    calc = pytest.importorskip("llmcore_tui.core.calc")
    model = calc.ModelConfig("lab-tiny-llama", layers=head["model_layers"], hidden=head["model_hidden"],
                             heads=head["model_heads"], kv_heads=head["model_kv_heads"],
                             intermediate=head["model_intermediate"], vocab=head["model_vocab"])
    fp32 = dict(gpus=1, stage=0, optimizer_bytes=8, weight_bytes_per_param=4, grad_bytes_per_param=4)
    full = calc.zero_memory_breakdown(head["params"], **fp32)
    adapters = calc.zero_memory_breakdown(head["memory_lora_trainable"], **fp32)
    return calc, model, {
        "full_weights_bytes": calc.weight_bytes(head["params"], "fp32"),
        "full_gradients_bytes": full.get("gradients (fp16)"),  # the label says fp16; the bytes per number are 4
        "full_adam_bytes": full.get("optimizer states (fp32)"),
        "lora_weights_bytes": calc.weight_bytes(head["params"], "fp32") + adapters.get("weights (fp16)"),
        "lora_gradients_bytes": adapters.get("gradients (fp16)"),
        "lora_adam_bytes": adapters.get("optimizer states (fp32)"),
    }


@pytest.mark.lab
def test_toy_run_lora_matches_full_finetuning_and_the_calculator(tmp_path):
    events = run_in_process("lora", toy=True, out_dir=tmp_path)
    head = events[-1]["headline"]
    check_claims(CLAIMS, LabResult.of(events))
    assert head["base_copy_exact_match"] > 0.9
    fractions = [head[f"lora_r{r}_trainable_fraction"] for r in (1, 2, 4, 8, 16)]
    assert fractions == sorted(fractions) and fractions[-1] < 1
    # measured from the tensors of one step, equal to the calculator's fp32 model-state formula
    calc, model, predicted = _calculator_numbers(head)
    assert calc.param_count(model) == head["params"]
    for r in (1, 2, 4, 8, 16):
        assert calc.lora_params(model, r, "all") == head[f"lora_r{r}_trainable_params"]
    assert calc.lora_params(model, head["memory_lora_rank"], "all") == head["memory_lora_trainable"]
    assert {key: head[key] for key in predicted} == predicted
    assert head["full_gradients_bytes"] == head["full_weights_bytes"] == 4 * head["params"]
    # Korthikanti et al.'s activation estimate (fp16, GELU MLP, dropout) doubled for fp32: same order
    act_fp32 = 2 * calc.activation_bytes(head["seq_len"], head["batch"], head["model_hidden"], head["model_heads"],
                                         head["model_layers"])
    assert 0.5 < head["full_activations_bytes"] / act_fp32 < 2
    tables = {e["name"] for e in events if e["event"] == "table"}
    assert {"lora_by_rank", "finetune_scores", "training_memory"} <= tables


def test_the_lab_does_not_import_the_app():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(lora))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.startswith("llmcore_tui")]


@pytest.mark.parametrize("bad", ["ranks=", "train_ranks=0", "seq_k=1", "lr_lora=0", "batch=0"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["lora", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE


def test_lora_starts_at_the_base_and_merges_exactly():
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 7)
    layer = lora.LoRALinear(base, r=3, alpha=6.0)
    x = torch.randn(5, 12, dtype=torch.float64)
    layer.double()
    assert torch.equal(layer(x), base(x))  # B = 0: exactly the base model
    with torch.no_grad():
        layer.B.normal_()
    merged = layer.merged()
    assert merged.weight.dtype == torch.float64
    assert (merged(x) - layer(x)).abs().max().item() < 1e-12
    expected = base.weight + (6.0 / 3) * layer.B @ layer.A
    assert torch.allclose(lora.merge_weight(base.weight, layer.A, layer.B, 2.0), expected)
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == 3 * (12 + 7)


def test_add_lora_freezes_the_base_and_counts_like_the_calculator():
    from labs._tinylm import build_model, model_config

    calc = pytest.importorskip("llmcore_tui.core.calc")
    cfg = lora.Config()
    torch.manual_seed(0)
    model = build_model(model_config(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, vocab_size=cfg.n_symbols + 1))
    n = sum(p.numel() for p in model.parameters())
    shape = calc.ModelConfig("lab-tiny-llama", layers=cfg.n_layers, hidden=cfg.d_model, heads=cfg.n_heads,
                             kv_heads=cfg.n_heads, intermediate=cfg.d_ff, vocab=cfg.n_symbols + 1)
    assert calc.param_count(shape) == n
    lora.add_lora(model, r=4, alpha=8.0)
    assert lora.trainable(model) == calc.lora_params(shape, 4, "all")
    assert all(not p.requires_grad for name, p in model.named_parameters() if not name.endswith((".A", ".B")))


def test_measured_memory_of_a_step():
    model = torch.nn.Sequential(torch.nn.Embedding(5, 8), torch.nn.Linear(8, 5))

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, input_ids):
            return type("Out", (), {"logits": self.net(input_ids)})()

    ids = torch.randint(5, (3, 6))
    mem = lora.measure_training_step(Wrapper(), ids, 2, 1e-3)
    n = sum(p.numel() for p in model.parameters())
    assert mem["weights"] == mem["gradients"] == 4 * n
    assert mem["adam"] == 8 * n
    assert mem["activations"] > 0
