"""The parallel lab: TP, PP, DP and ZeRO on real gloo processes."""

from __future__ import annotations

import math

import pytest
import torch

from labs import parallel as par
from labs._runtime import LabUsageError, make_config, run_in_process


@pytest.mark.lab
def test_toy_run_matches_one_process_and_the_formulas(tmp_path):
    events = run_in_process("parallel", toy=True, out_dir=tmp_path)
    head = events[-1]["headline"]
    assert head["world_size"] >= 2
    # tensor and data parallel: the same outputs and gradients as one process
    assert head["tp_max_abs_err"] < 1e-5
    assert head["dp_max_abs_err"] < 1e-5
    assert head["pp_max_abs_err_grad"] < 1e-5
    assert head["zero1_max_abs_err"] < 1e-5
    assert head["fsdp_max_abs_err"] < 1e-5
    # every rank's counted bytes equal the analytic count (ring all-reduce: 2(p-1)/p N)
    assert head["bytes_match_analytic"] is True
    assert head["tp_bytes_per_rank"] == pytest.approx(head["tp_bytes_analytic"])
    assert head["dp_bytes_per_rank"] == pytest.approx(head["dp_bytes_analytic"])
    # the pipeline's measured idle fraction is close to (p-1)/(m+p-1)
    assert head["pp_bubble_max_deviation"] < 0.08
    assert head["pp_1f1b_peak_live"] < head["pp_gpipe_peak_live"]
    # ZeRO shards Adam's states: 8 Psi / p bytes per rank
    assert head["zero_opt_bytes_match_formula"] is True
    assert head["zero1_opt_bytes_per_rank"] < head["adam_bytes_unsharded"]
    tables = {e["name"] for e in events if e["event"] == "table"}
    assert {"tensor_parallel", "pipeline_bubble", "data_parallel_and_zero"} <= tables
    assert (tmp_path / "pipeline_timelines.json").exists()


def test_ring_allreduce_bytes_formula():
    assert par.ring_allreduce_bytes(1000, 1) == 0
    assert par.ring_allreduce_bytes(1000, 2) == pytest.approx(1000 * 4)  # 2 * 1/2 * N * 4 bytes
    assert par.ring_allreduce_bytes(1200, 4, bytes_per=2) == pytest.approx(2 * 3 / 4 * 1200 * 2)
    # tends to 2N as p grows: the bandwidth cost does not grow with the number of ranks
    assert par.ring_allreduce_bytes(10**6, 1024) < 2 * 10**6 * 4


def test_bubble_formula():
    assert par.bubble_fraction(1, 8) == 0
    assert par.bubble_fraction(2, 1) == pytest.approx(0.5)
    assert par.bubble_fraction(4, 4) == pytest.approx(3 / 7)
    assert par.bubble_fraction(4, 64) < par.bubble_fraction(4, 8)


def test_tensor_parallel_shards_sum_to_the_full_block():
    """Without processes: the row-parallel partial outputs of every rank add up to the full MLP."""
    cfg = par.Config(hidden=32, heads=4, tp=4)
    w = par.block_weights(cfg, "cpu")
    x = torch.randn(2, 5, 32)
    full = torch.nn.functional.gelu(x @ w["w1"]) @ w["w2"]
    shards = [par.tp_shard(w, 4, i, 32) for i in range(4)]
    partial = sum(torch.nn.functional.gelu(x @ s["w1"]) @ s["w2"] for s in shards)
    assert torch.allclose(partial, full, atol=1e-5)
    att = par.attention(x, w["wq"], w["wk"], w["wv"], w["wo"], 4)
    att_tp = sum(par.attention(x, s["wq"], s["wk"], s["wv"], s["wo"], 1) for s in shards)
    assert torch.allclose(att_tp, att, atol=1e-5)
    assert sum(v.numel() for s in shards for v in s.values()) == sum(v.numel() for v in w.values())


def test_mesh_sizes_are_validated():
    with pytest.raises(LabUsageError):
        make_config(par, toy=True, seed=None, device=None, assignments=["tp=3"])  # 4 heads
    cfg = make_config(par, toy=True, seed=None, device=None, assignments=["tp=1", "pp=2", "dp=1"])
    assert cfg.tp * cfg.pp * cfg.dp == 2
    assert math.isclose(par.padded(10, 4), 12)
