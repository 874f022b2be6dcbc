"""The parallel lab: TP, PP, DP, ZeRO and the composed 3-D step on real gloo processes."""

from __future__ import annotations

import math

import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import parallel as par
from labs._runtime import LabUsageError, make_config, run_in_process
from labs.parallel import pp, tp

CLAIMS = [
    # every parallel computation equals one process computing the same thing on the whole batch
    Claim("TP block: max |output, gradient - one process|", "tp_max_abs_err", "<", 1e-5, null=None),
    Claim("pipeline: max |gradient - one process|", "pp_max_abs_err_grad", "<", 1e-5, null=None),
    Claim("pipeline: |loss - one process|", "pp_max_abs_err_loss", "<", 1e-5, null=None),
    Claim("DP: max |gradient, Adam step - one process|", "dp_max_abs_err", "<", 1e-5, null=None),
    Claim("ZeRO-1: max |Adam step - one process|", "zero1_max_abs_err", "<", 1e-5, null=None),
    Claim("FSDP2: max |Adam step - one process|", "fsdp_max_abs_err", "<", 1e-5, null=None),
    Claim("3-D step (tp=pp=dp=2): |loss - one process|", "3d_max_abs_err_loss", "<", 1e-5, null=None),
    Claim("3-D step: max |gradient shard - one process|", "3d_max_abs_err_grad", "<", 1e-5, null=None),
    # counted bytes and memory equal the formulas
    Claim("max relative gap, counted bytes vs analytic (all demos)", "bytes_max_rel_gap", "<", 1e-9, null=None),
    Claim("max relative gap, ZeRO bytes per rank vs 8Psi/p, 4Psi/p", "zero_bytes_max_rel_gap", "<", 1e-9, null=None),
    # the pipeline's measured idle fraction follows (p-1)/(m+p-1); 1F1B holds fewer micro-batches
    Claim("max |measured idle - (p-1)/(m+p-1)| over schedules and m", "pp_bubble_max_deviation", "<", 0.05,
          null=None),
    Claim("peak live micro-batches, GPipe - 1F1B (m=4, p=2)",
          lambda r: r.h["pp_gpipe_peak_live"] - r.h["pp_1f1b_peak_live"], ">", 1, null=0),
    Claim("1F1B peak live micro-batches - p", lambda r: r.h["pp_1f1b_peak_live"] - r.config["pp"], "<", 0.5,
          null=None),
]


@pytest.mark.lab
def test_toy_run_matches_one_process_and_the_formulas(tmp_path):
    events = run_in_process("parallel", toy=True, out_dir=tmp_path)
    result = LabResult.of(events)
    check_claims(CLAIMS, result)
    head = result.h
    assert head["world_size"] == 8
    assert head["3d_loss"] == pytest.approx(head["3d_loss_one_process"], abs=1e-5)
    assert head["zero1_opt_bytes_per_rank"] < head["adam_bytes_unsharded"]
    assert {"tensor_parallel", "pipeline_bubble", "data_parallel_and_zero", "three_d_step"} <= result.tables.keys()
    bubble = result.tables["pipeline_bubble"]
    assert {(row["schedule"], row["m"]) for row in bubble} == {(s, m) for s in ("gpipe", "1f1b") for m in (1, 2, 4)}
    assert all(row["bubble_formula"] == par.bubble_fraction(2, row["m"]) for row in bubble)
    assert len(result.tables["three_d_step"]) == 8
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


def test_idle_fraction_of_a_hand_made_gpipe_timeline():
    """p = 2, m = 2, t_f = 1, t_b = 2: the step takes (m+p-1)(t_f+t_b) = 9, each stage computes 6."""
    stage0 = [("F", 0, 0, 1), ("F", 1, 1, 2), ("B", 1, 5, 7), ("B", 0, 7, 9)]
    stage1 = [("F", 0, 1, 2), ("F", 1, 2, 3), ("B", 1, 3, 5), ("B", 0, 5, 7)]
    assert pp.idle_fraction([stage0, stage1], start=0.0) == pytest.approx(par.bubble_fraction(2, 2))
    # a stage that waits longer than the schedule needs shows up as more idle time
    late = [(k, i, b + 1, e + 1) for k, i, b, e in stage0[2:]]
    assert pp.idle_fraction([stage0[:2] + late, stage1], start=0.0) > par.bubble_fraction(2, 2) + 0.05


def test_tensor_parallel_shards_sum_to_the_full_block():
    """Without processes: the row-parallel partial outputs of every rank add up to the full MLP."""
    cfg = par.Config(hidden=32, heads=4, tp=4)
    w = tp.block_weights(cfg, "cpu")
    x = torch.randn(2, 5, 32)
    full = torch.nn.functional.gelu(x @ w["w1"]) @ w["w2"]
    shards = [tp.tp_shard(w, 4, i) for i in range(4)]
    partial = sum(torch.nn.functional.gelu(x @ s["w1"]) @ s["w2"] for s in shards)
    assert torch.allclose(partial, full, atol=1e-5)
    att = tp.attention(x, w["wq"], w["wk"], w["wv"], w["wo"], 4)
    att_tp = sum(tp.attention(x, s["wq"], s["wk"], s["wv"], s["wo"], 1) for s in shards)
    assert torch.allclose(att_tp, att, atol=1e-5)
    assert sum(v.numel() for s in shards for v in s.values()) == sum(v.numel() for v in w.values())


def test_mesh_sizes_are_validated():
    with pytest.raises(LabUsageError):
        make_config(par, toy=True, seed=None, device=None, assignments=["tp=3"])  # 4 heads
    with pytest.raises(LabUsageError, match="three_d_micro_batches"):
        make_config(par, toy=True, seed=None, device=None, assignments=["three_d_micro_batches=3"])  # batch 8
    cfg = make_config(par, toy=True, seed=None, device=None, assignments=["tp=1", "pp=2", "dp=1"])
    assert cfg.tp * cfg.pp * cfg.dp == 2
    assert math.isclose(par.padded(10, 4), 12)


@pytest.mark.parametrize("assignment, field", [
    ("pp=0", "pp"), ("tp=-1", "tp"), ("micro_batches=2,0", "micro_batches"), ("micro_batches=", "micro_batches"),
    ("pp_repeats=0", "pp_repeats"), ("three_d_micro_batches=0", "three_d_micro_batches"), ("lr=0", "lr"),
    ("timeout_s=0", "timeout_s"),
])
def test_limits_refuse_bad_values_naming_the_field(assignment, field):
    with pytest.raises(LabUsageError, match=field):
        make_config(par, toy=True, seed=None, device=None, assignments=[assignment])
