"""The lora lab: hand-written LoRA, merging, trainable fractions, and measured training memory."""

from __future__ import annotations

import pytest
import torch

from labs import lora
from labs._runtime import run_in_process


@pytest.mark.lab
def test_toy_run_lora_matches_full_finetuning_and_the_calculator(tmp_path):
    events = run_in_process("lora", toy=True, out_dir=tmp_path)
    head = events[-1]["headline"]
    assert head["base_copy_exact_match"] > 0.9
    assert head["base_task_exact_match"] < 0.1  # the new task is new
    assert head["full_ft_task_exact_match"] > 0.9
    assert head["lora_r8_task_exact_match"] > 0.9
    assert head["merged_max_abs_diff"] <= 1e-5
    fractions = [head[f"lora_r{r}_trainable_fraction"] for r in (1, 2, 4, 8, 16)]
    assert fractions == sorted(fractions) and fractions[-1] < 1
    assert head["adam_bytes_lora_r8"] < head["adam_bytes_full"] / 4
    # measured from the tensors, equal to the calculator's fp32 model-state formula
    assert head["calc_available"] is True
    assert head["calc_model_states_match"] is True
    assert head["measured_gradient_bytes"] == head["measured_weights_bytes"] == 4 * head["params"]
    assert 0.5 < head["calc_activation_ratio"] < 2
    tables = {e["name"] for e in events if e["event"] == "table"}
    assert {"lora_by_rank", "finetune_scores", "training_memory"} <= tables


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
    lora.add_lora(model, r=4, alpha=8.0)
    pred = lora.calculator_prediction(cfg, n, lora.trainable(model), 11, 2)
    assert pred["params"] == n
    assert lora.trainable(model) == pred["lora_params"].get(4, calc.lora_params(pred["model"], 4, "all"))
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
