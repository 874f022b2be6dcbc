"""The lab: every rank's demonstrations in order, then the tables and the headline."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.distributed.device_mesh import DeviceMesh

from labs._distributed import launched_world, main_rank_reports
from labs._runtime import Emitter, LabFailure, torch_threads
from labs.parallel.config import OMP_PASSIVE, Config, bubble_fraction
from labs.parallel.dp import reference_step, run_dp, run_fsdp, run_zero1
from labs.parallel.mesh import Mesh, Traffic, join_launched, launch
from labs.parallel.pp import run_pp, summarise_pipeline
from labs.parallel.three_d import run_three_d
from labs.parallel.tp import run_tp
from labs.protocol import Chart

CHARTS = [
    Chart("Pipeline bubble vs micro-batches", y=("pipeline/gpipe_idle", "pipeline/1f1b_idle"),
          reference=("pipeline/bubble_formula",), x_label="micro-batches m", y_label="idle fraction of a stage",
          look_for="Both schedules' measured idle time sits on (p-1)/(m+p-1): more micro-batches, a smaller bubble."),
]

PHASES = ["tp", "pp", "zero", "3d"]


def rank_body(cfg: Config, mesh: Mesh, device: str, traffic: Traffic, say: Callable, progress: Callable) -> dict:
    """What every rank runs, in the same order on all of them (collectives must match)."""
    world = cfg.tp * cfg.pp * cfg.dp
    cube = torch.arange(world).view(cfg.dp, cfg.pp, cfg.tp)
    dev_mesh = DeviceMesh(device.split(":")[0], cube, mesh_dim_names=("dp", "pp", "tp"))
    result: dict[str, Any] = {"rank": mesh.rank, "coords": [mesh.dp_i, mesh.pp_i, mesh.tp_i]}
    result["tp"] = run_tp(cfg, mesh, device, traffic)
    progress("tp")
    result["pp"] = run_pp(cfg, mesh, device, traffic, say)
    progress("pp")
    ref = reference_step(cfg, device)
    result["dp"] = run_dp(cfg, mesh, device, traffic, ref)
    result["zero1"] = run_zero1(cfg, mesh, device, traffic, ref)
    result["fsdp"] = run_fsdp(cfg, mesh, device, traffic, ref, dev_mesh["dp"])
    progress("zero")
    result["3d"] = run_three_d(cfg, mesh, device, traffic)
    progress("3d")
    return result


def rel_gap(sent: float, analytic: float) -> float:
    return abs(sent - analytic) / max(1.0, abs(analytic))


def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    launched = launched_world()  # torchrun started this process as one rank, or None: start the ranks here
    lead = launched is None or launched.is_main
    if launched:  # rank 0 speaks for the run; a failing rank's error still reaches the stream (the runner's)
        emit = main_rank_reports(emit, launched)
    world = cfg.tp * cfg.pp * cfg.dp
    emit.start(cfg, total_steps=len(PHASES))
    cores = os.cpu_count() or 1
    emit.log(f"{world} processes (tp={cfg.tp} x pp={cfg.pp} x dp={cfg.dp}) "
             f"{'started by torchrun' if launched else 'started here'}, {cores} cores on this machine, "
             f"{'nccl' if cfg.device.startswith('cuda') else 'gloo'} backend")
    if cfg.device.startswith("cuda") and not launched and torch.cuda.device_count() < world:
        raise LabFailure(f"NCCL needs one GPU per process: {world} processes, {torch.cuda.device_count()} GPUs; "
                         "lower tp/pp/dp or use --device cpu")
    if torch_threads(1) > 1 and not OMP_PASSIVE:
        emit.log("warning: torch was loaded before this lab could set OMP_WAIT_POLICY=PASSIVE; with more than one "
                 "thread per rank, spinning OpenMP threads slow the ranks and inflate the pipeline's measured "
                 "compute (run it as python -m labs parallel, or set OMP_WAIT_POLICY=PASSIVE)")
    t0 = time.perf_counter()
    if launched:
        results = join_launched(cfg, rank_body, launched, PHASES, emit)
    else:
        with tempfile.TemporaryDirectory(prefix="llmcore-parallel-") as tmp:
            results = launch(cfg, rank_body, PHASES, emit, Path(tmp))
    wall = time.perf_counter() - t0

    # tensor parallelism
    emit.table("tensor_parallel", ["rank", "params_per_rank", "max_err_out", "max_err_grad", "all_reduces",
                                   "bytes_sent", "bytes_analytic"],
               [[r["rank"], r["tp"]["params_per_rank"], r["tp"]["max_abs_err_out"], r["tp"]["max_abs_err_grad"],
                 r["tp"]["allreduces"], r["tp"]["bytes_sent"], r["tp"]["bytes_analytic"]] for r in results])

    # pipeline (pipeline 0: ranks with dp_i = tp_i = 0, in stage order)
    stage_results = sorted((r for r in results if r["coords"][0] == 0 and r["coords"][2] == 0), key=lambda r: r["coords"][1])
    rows = summarise_pipeline(cfg, [r["pp"] for r in stage_results])
    emit.table("pipeline_bubble", ["schedule", "m", "idle_measured", "bubble_formula", "idle_min", "idle_spread",
                                   "idle_wall_clock", "peak_live_per_stage", "bytes_sent_per_stage",
                                   "bytes_analytic_per_stage"],
               [[r["schedule"], r["m"], r["idle"], r["bubble"], r["idle_min"], r["idle_spread"], r["idle_wall"],
                 r["peak_live"], r["bytes_sent"], r["bytes_analytic"]] for r in rows])
    for r in rows:  # at step m, so the bubble chart's x is the number of micro-batches
        values = {f"pipeline/{r['schedule']}_idle": r["idle"], f"pipeline/{r['schedule']}_idle_wall": r["idle_wall"],
                  f"pipeline/{r['schedule']}_peak_live": max(r["peak_live"])}
        if r["schedule"] == rows[0]["schedule"]:  # the formula once per m
            values["pipeline/bubble_formula"] = r["bubble"]
        emit.metric(r["m"], **values)
    timeline_path = out_dir / "pipeline_timelines.json"
    if lead:  # other ranks may share the folder (or be on other machines)
        timeline_path.write_text(json.dumps([r["pp"]["runs"] for r in stage_results]))

    # data parallel and ZeRO
    emit.table("data_parallel_and_zero", ["rank", "what", "max_err_params", "opt_state_bytes", "opt_bytes_formula",
                                          "param_bytes", "bytes_sent", "bytes_analytic"],
               [[r["rank"], "DP (ring all-reduce)", r["dp"]["max_abs_err_params"], None, None, None,
                 r["dp"]["bytes_sent"], r["dp"]["bytes_analytic"]] for r in results]
               + [[r["rank"], "ZeRO-1 (ZeroRedundancyOptimizer)", r["zero1"]["max_abs_err_params"], r["zero1"]["opt_bytes"],
                   r["zero1"]["opt_bytes_formula"], None, r["zero1"]["bytes_sent"], r["zero1"]["bytes_analytic"]]
                  for r in results]
               + [[r["rank"], "ZeRO-3 (FSDP2 fully_shard)", r["fsdp"]["max_abs_err_params"], r["fsdp"]["opt_bytes"],
                   r["fsdp"]["opt_bytes_formula"], r["fsdp"]["param_bytes"], r["fsdp"]["bytes_sent"],
                   r["fsdp"]["bytes_analytic"]] for r in results])

    # the composed 3-D step
    emit.table("three_d_step", ["rank", "dp_i", "pp_i", "tp_i", "params_per_rank", "max_err_grad", "loss",
                                "tp_bytes", "tp_analytic", "pp_bytes", "pp_analytic", "dp_bytes", "dp_analytic"],
               [[r["rank"], *r["coords"], r["3d"]["params_per_rank"], r["3d"]["max_abs_err_grad"], r["3d"]["loss"],
                 *[r["3d"][k][axis] for axis in ("3d_tp", "3d_pp", "3d_dp") for k in ("bytes_sent", "bytes_analytic")]]
                for r in results])

    gaps = {  # the largest relative gap between counted and analytic bytes, per demonstration
        "tp": max(rel_gap(r["tp"]["bytes_sent"], r["tp"]["bytes_analytic"]) for r in results),
        "pp": max(rel_gap(a, b) for r in rows for a, b in zip(r["bytes_sent"], r["bytes_analytic"])),
        "dp": max(rel_gap(r["dp"]["bytes_sent"], r["dp"]["bytes_analytic"]) for r in results),
        "zero1": max(rel_gap(r["zero1"]["bytes_sent"], r["zero1"]["bytes_analytic"]) for r in results),
        "fsdp": max(rel_gap(r["fsdp"]["bytes_sent"], r["fsdp"]["bytes_analytic"]) for r in results),
        "3d": max(rel_gap(r["3d"]["bytes_sent"][k], r["3d"]["bytes_analytic"][k])
                  for r in results for k in r["3d"]["bytes_sent"]),
    }
    for name, gap in gaps.items():
        if gap > 1e-9:
            emit.log(f"note: {name}: counted bytes differ from the analytic count by {gap:.2e} (see the tables)")
    zero_gap = max(max(rel_gap(r["zero1"]["opt_bytes"], r["zero1"]["opt_bytes_formula"]),
                       rel_gap(r["fsdp"]["opt_bytes"], r["fsdp"]["opt_bytes_formula"]),
                       rel_gap(r["fsdp"]["param_bytes"], r["fsdp"]["param_bytes_formula"])) for r in results)
    by = {(r["schedule"], r["m"]): r for r in rows}
    m_max = max(cfg.micro_batches)
    emit.summary({
        "world_size": world,
        "tp_max_abs_err": max(max(r["tp"]["max_abs_err_out"], r["tp"]["max_abs_err_grad"]) for r in results),
        "tp_bytes_per_rank": results[0]["tp"]["bytes_sent"],
        "tp_bytes_analytic": results[0]["tp"]["bytes_analytic"],
        "pp_max_abs_err_grad": max(r["pp"]["max_abs_err_grad"] for r in results),
        "pp_max_abs_err_loss": max(r["pp"]["max_abs_err_loss"] for r in results),
        "pp_bubble_max_deviation": max(abs(r["idle"] - r["bubble"]) for r in rows),
        "pp_wall_bubble_max_deviation": max(abs(r["idle_wall"] - r["bubble"]) for r in rows),
        "pp_gpipe_idle_at_max_m": by[("gpipe", m_max)]["idle"],
        "pp_1f1b_idle_at_max_m": by[("1f1b", m_max)]["idle"],
        "pp_bubble_formula_at_max_m": bubble_fraction(cfg.pp, m_max),
        "pp_gpipe_peak_live": max(by[("gpipe", m_max)]["peak_live"]),
        "pp_1f1b_peak_live": max(by[("1f1b", m_max)]["peak_live"]),
        "dp_max_abs_err": max(max(r["dp"]["max_abs_err_grad"], r["dp"]["max_abs_err_params"]) for r in results),
        "dp_bytes_per_rank": results[0]["dp"]["bytes_sent"],
        "dp_bytes_analytic": results[0]["dp"]["bytes_analytic"],
        "zero1_max_abs_err": max(r["zero1"]["max_abs_err_params"] for r in results),
        "zero1_opt_bytes_per_rank": max(r["zero1"]["opt_bytes"] for r in results),
        "fsdp_max_abs_err": max(r["fsdp"]["max_abs_err_params"] for r in results),
        "fsdp_opt_bytes_per_rank": max(r["fsdp"]["opt_bytes"] for r in results),
        "fsdp_param_bytes_per_rank": max(r["fsdp"]["param_bytes"] for r in results),
        "adam_bytes_unsharded": results[0]["zero1"]["opt_bytes_unsharded"],
        "zero_bytes_max_rel_gap": zero_gap,  # optimizer (ZeRO-1, FSDP) and parameter (FSDP) bytes vs 8Psi/p, 4Psi/p
        "3d_max_abs_err_loss": max(r["3d"]["max_abs_err_loss"] for r in results),
        "3d_max_abs_err_grad": max(r["3d"]["max_abs_err_grad"] for r in results),
        "3d_loss": next(r["3d"]["loss"] for r in results if r["3d"]["loss"] is not None),
        "3d_loss_one_process": results[0]["3d"]["loss_ref"],
        "bytes_max_rel_gap": max(gaps.values()),
        "wall_s": wall,
    }, artifacts=[timeline_path.name])
