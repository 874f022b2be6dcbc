"""``llmcore-tui calc ...``: the memory and compute calculator on the command line.

Every command takes ``--preset NAME`` (see ``calc presets``) or explicit numbers; explicit
numbers given with a preset override the preset's. ``--json`` prints the itemised result as
JSON (the same ``Breakdown.to_dict()`` the UI uses); otherwise a readable table. Sizes such as
``--params 7B`` or ``--activations "20 GiB"`` take units.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import typer

from llmcore_tui.core import calc
from llmcore_tui.i18n import N_, _, ngettext

app = typer.Typer(
    help=N_("Memory and compute calculator: KV cache, weights, ZeRO training memory, LoRA, activations, FLOPs, "
         "mixture of experts, speculative decoding."),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

PresetOpt = typer.Option(None, "--preset", "-p", help=N_("a model preset (see `calc presets`)"), show_default=False)
JsonOpt = typer.Option(False, "--json", help=N_("print JSON instead of a table"))
ParamsOpt = typer.Option(None, "--params", help=N_("parameter count, e.g. 7B, 6.74e9 (instead of --preset)"), show_default=False)


def _opt(default: Any, flag: str, help_text: str, **kw: Any) -> Any:
    return typer.Option(default, flag, help=help_text, show_default=default is not None, **kw)


# ---- inputs ------------------------------------------------------------------------------------

_ARCH_FLAGS = {"layers": "--layers", "hidden": "--hidden", "heads": "--heads", "kv_heads": "--kv-heads",
               "head_dim": "--head-dim", "intermediate": "--intermediate", "vocab": "--vocab"}


def _preset(name: str) -> calc.ModelConfig:
    try:
        return calc.get_preset(name)
    except KeyError as exc:
        raise typer.BadParameter(exc.args[0], param_hint="--preset") from None


def _model(preset: Optional[str], required: tuple[str, ...], **arch: Optional[int]) -> calc.ModelConfig:
    """The preset with any explicit numbers applied, or a model built from explicit numbers.

    ``required`` names the fields this command needs when there is no preset; the fields it
    does not use get harmless placeholders.
    """
    given = {k: v for k, v in arch.items() if v is not None}
    try:
        if preset:
            base = _preset(preset)
            if not given:
                return base
            if {"hidden", "heads"} & set(given) and "head_dim" not in given:
                given["head_dim"] = 0  # derive it again from the new shape
            return dataclasses.replace(base, name=f"{base.name} (modified)", published_params=None, **given)
        missing = [_ARCH_FLAGS[k] for k in required if k not in given]
        if missing:
            raise typer.BadParameter(f"give --preset NAME or all of {', '.join(missing)}", param_hint="--preset")
        heads = given.get("heads") or given.get("kv_heads") or 1
        head_dim = given.get("head_dim") or 0
        filled = {"layers": 1, "heads": heads, "kv_heads": heads,
                  "hidden": given.get("hidden") or heads * (head_dim or 1), "intermediate": 1, "vocab": 1}
        return calc.ModelConfig("custom", **{**filled, **given})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _count(text: str, flag: str) -> float:
    try:
        value = calc.parse_quantity(text, "count")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None
    if value <= 0:
        raise typer.BadParameter("must be positive", param_hint=flag)
    return value


def _params(preset: Optional[str], params: Optional[str]) -> tuple[float, str]:
    """A parameter count and a label, from --preset or --params (exactly one)."""
    if preset and params:
        raise typer.BadParameter("give --preset or --params, not both", param_hint="--params")
    if preset:
        model = _preset(preset)
        return model.params, model.name
    if params:
        n = _count(params, "--params")
        return n, f"{calc.format_count(n)} params"
    raise typer.BadParameter("give --preset NAME or --params N (e.g. 7B)", param_hint="--preset")


def _dtype(dtype: str, flag: str = "--dtype") -> str:
    try:
        calc.dtype_bytes(dtype)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None
    return dtype.lower()


# ---- output ------------------------------------------------------------------------------------

def _table(rows: list[list[str]], right: set[int] = frozenset({1})) -> str:
    from rich.cells import cell_len  # terminal cells: a Chinese heading's characters take two each

    widths = [max(cell_len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [" " * (w - cell_len(c)) + c if i in right else c + " " * (w - cell_len(c))
                 for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return "\n".join(out)


def _both_bytes(n: float) -> str:
    return f"{calc.format_bytes(n)} ({calc.format_bytes(n, binary=False)})"


def _show(b: calc.Breakdown) -> None:
    """A breakdown as a table: each part, its value and its formula; then the total and notes."""
    fmt = _both_bytes if b.unit == "bytes" else b.format
    rows = [[i.label, fmt(i.value), i.formula] for i in b.items]
    rows.append([_("total"), fmt(b.total), ""])
    typer.echo(b.title)
    typer.echo(_table(rows))
    for note in b.notes:
        typer.echo("  " + _("note: {note}").format(note=note))


def _json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _emit(b: calc.Breakdown, as_json: bool, **inputs: Any) -> None:
    """One breakdown: as JSON (the inputs, then the breakdown's fields) or as a table."""
    if as_json:
        _json({**inputs, **b.to_dict()})
    else:
        _show(b)


def _wrap(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a calculator function, turning its ValueError into a usage error."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


# ---- commands ----------------------------------------------------------------------------------

@app.command(help=N_("The model presets: their configs and parameter counts (computed vs published)."))
def presets(as_json: bool = JsonOpt) -> None:
    models = list(calc.PRESETS.values())
    if as_json:
        _json([{**{f.name: getattr(m, f.name) for f in dataclasses.fields(m)}, "params": m.params,
                "attention": m.attention} for m in models])
        return
    rows = [["name", "layers", "hidden", "heads", "kv", "head_dim", "ffn", "vocab", "attn", "experts", "params",
             "published"]]
    for m in models:
        rows.append([m.name, str(m.layers), str(m.hidden), str(m.heads), str(m.kv_heads), str(m.head_dim),
                     str(m.intermediate), str(m.vocab), m.attention,
                     f"{m.experts} (top-{m.experts_per_token})" if m.is_moe else "-", calc.format_count(m.params),
                     calc.format_count(m.published_params) if m.published_params else "-"])
    typer.echo(_table(rows, right=set(range(1, 8)) | {9, 10, 11}))


@app.command(help=N_("KV cache: 2 · layers · kv_heads · head_dim · seq_len · batch · bytes_per_value."))
def kv(
    preset: Optional[str] = PresetOpt,
    layers: Optional[int] = _opt(None, "--layers", N_("transformer layers"), min=1),
    kv_heads: Optional[int] = _opt(None, "--kv-heads", N_("key/value heads (= heads for MHA, 1 for MQA)"), min=1),
    head_dim: Optional[int] = _opt(None, "--head-dim", N_("dimension of one head"), min=1),
    heads: Optional[int] = _opt(None, "--heads", N_("query heads (only to compare with MHA)"), min=1),
    seq_len: int = _opt(4096, "--seq-len", N_("tokens in context"), min=1),
    batch: int = _opt(1, "--batch", N_("sequences decoded together"), min=1),
    dtype: str = _opt("fp16", "--dtype", N_("cache dtype: fp32, bf16, fp16, int8, int4")),
    as_json: bool = JsonOpt,
) -> None:
    dtype = _dtype(dtype)
    model = _model(preset, ("layers", "kv_heads", "head_dim"), layers=layers, kv_heads=kv_heads,
                   head_dim=head_dim, heads=heads)
    b = calc.kv_cache_breakdown(model, seq_len, batch, dtype)
    if preset is None and heads is None:
        b = dataclasses.replace(b, notes=b.notes[:1])  # without --heads, MHA vs GQA is unknown
    _emit(b, as_json, model=model.name, layers=model.layers, kv_heads=model.kv_heads, head_dim=model.head_dim,
          seq_len=seq_len, batch=batch, dtype=dtype)


@app.command(help=N_("Weight memory: parameters · bytes per parameter (fp32 4, bf16/fp16 2, int8 1, int4 0.5)."))
def weights(
    preset: Optional[str] = PresetOpt,
    params: Optional[str] = ParamsOpt,
    dtype: Optional[str] = _opt(None, "--dtype", N_("one dtype, itemised (default: a table of every dtype)")),
    as_json: bool = JsonOpt,
) -> None:
    n, label = _params(preset, params)
    subject: calc.ModelConfig | float = _preset(preset) if preset else n
    if dtype is not None:
        b = calc.weights_breakdown(subject, _dtype(dtype))
        _emit(b, as_json, model=label, params=calc.tidy(n), dtype=dtype.lower())
        return
    sizes = {d: calc.weight_bytes(n, d) for d in calc.DTYPE_BYTES}
    if as_json:
        _json({"model": label, "params": calc.tidy(n), "bytes": sizes})
        return
    typer.echo(_("Weights of {model} ({n} parameters)").format(model=label, n=calc.format_count(n)) if preset
               else _("Weights of {model}").format(model=label))
    typer.echo(_table([["dtype", _("binary"), _("decimal")]] + [
        [d, calc.format_bytes(v), calc.format_bytes(v, binary=False)] for d, v in sizes.items()], right={1, 2}))


@app.command(help=N_("Training memory per GPU: plain data parallelism and ZeRO 1/2/3 with mixed-precision Adam "
                     "(16 B/param)."))
def train(
    preset: Optional[str] = PresetOpt,
    params: Optional[str] = ParamsOpt,
    gpus: int = _opt(8, "--gpus", N_("data-parallel GPUs"), min=1),
    stage: Optional[int] = _opt(None, "--stage", N_("ZeRO stage 0-3, itemised (default: a table of all stages)"), min=0, max=3),
    activations: Optional[str] = _opt(None, "--activations", N_("activation memory per GPU to add, e.g. '20 GiB' (ZeRO does not shard it)")),
    as_json: bool = JsonOpt,
) -> None:
    n, label = _params(preset, params)
    act = 0.0
    if activations is not None:
        try:
            act = calc.parse_quantity(activations, "bytes", "B")
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--activations") from None
    stages = [stage] if stage is not None else [0, 1, 2, 3]
    results = [_wrap(calc.zero_memory_breakdown, n, gpus, s, activation_bytes=act) for s in stages]
    if as_json:
        data = [{"model": label, "params": calc.tidy(n), "gpus": gpus, "stage": s, **b.to_dict()}
                for s, b in zip(stages, results)]
        _json(data[0] if stage is not None else data)
        return
    if stage is not None:
        _show(results[0])
        return
    typer.echo(ngettext("Training memory per GPU for {model}, {n} GPU, mixed-precision Adam",
                        "Training memory per GPU for {model}, {n} GPUs, mixed-precision Adam", gpus).format(
        model=label, n=gpus))
    head = ([_("stage"), _("weights"), _("gradients"), _("optimizer")] + ([_("activations")] if act else [])
            + [_("total"), _("total (GB)")])
    rows = [head]
    for s, b in zip(stages, results):
        rows.append([("0 (DP)" if s == 0 else str(s))] + [calc.format_bytes(i.value) for i in b.items]
                    + [calc.format_bytes(b.total), calc.format_bytes(b.total, binary=False)])
    typer.echo(_table(rows, right=set(range(1, len(head)))))


@app.command(help=N_("LoRA: trainable parameters r·(d_in + d_out) per adapted matrix, and the memory saved vs full "
                     "fine-tuning."))
def lora(
    preset: Optional[str] = PresetOpt,
    rank: int = _opt(8, "--rank", N_("LoRA rank r"), min=1),
    targets: str = _opt("qv", "--targets", N_("comma-separated modules (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or qv, attention, mlp, all")),
    base_dtype: str = _opt("bf16", "--base-dtype", N_("dtype of the frozen base weights (int4 = QLoRA)")),
    layers: Optional[int] = _opt(None, "--layers", N_("transformer layers"), min=1),
    hidden: Optional[int] = _opt(None, "--hidden", N_("hidden size"), min=1),
    heads: Optional[int] = _opt(None, "--heads", N_("attention heads"), min=1),
    kv_heads: Optional[int] = _opt(None, "--kv-heads", N_("key/value heads (default: --heads)"), min=1),
    intermediate: Optional[int] = _opt(None, "--intermediate", N_("MLP intermediate size"), min=1),
    vocab: Optional[int] = _opt(None, "--vocab", N_("vocabulary size"), min=1),
    as_json: bool = JsonOpt,
) -> None:
    base_dtype = _dtype(base_dtype, "--base-dtype")
    model = _model(preset, ("layers", "hidden", "heads", "intermediate", "vocab"), layers=layers, hidden=hidden,
                   heads=heads, kv_heads=kv_heads, intermediate=intermediate, vocab=vocab)
    try:
        est = calc.lora_estimate(model, rank, targets, base_dtype)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--targets") from None
    if as_json:
        _json({"model": model.name, **est.to_dict()})
        return
    shapes = model.matrix_shapes()
    typer.echo(_("LoRA r={rank} on {model}: {targets}").format(rank=rank, model=model.name,
                                                                targets=", ".join(est.targets)))
    rows = [[_("module"), "d_in x d_out", _("per layer")]] + [
        [t, f"{shapes[t][0]} x {shapes[t][1]}", f"{calc.lora_matrix_params(rank, *shapes[t]):,}"] for t in est.targets]
    typer.echo(_table(rows, right={1, 2}))
    typer.echo("  " + _("trainable: {trainable} of {total} ({fraction}) over {layers} layers").format(
        trainable=f"{est.trainable:,}", total=f"{est.total:,}", fraction=f"{est.fraction:.4%}", layers=model.layers))
    typer.echo("")
    _show(est.full)
    typer.echo("")
    _show(est.lora)
    typer.echo("\n  " + _("LoRA saves {saving} of model-state memory ({share})").format(
        saving=_both_bytes(est.saving_bytes), share=f"{est.saving_bytes / est.full.total:.1%}"))


@app.command(help=N_("Activation memory (Korthikanti et al. 2022): layers · s·b·h·(34 + 5·a·s/h) bytes in fp16."))
def activations(
    preset: Optional[str] = PresetOpt,
    layers: Optional[int] = _opt(None, "--layers", N_("transformer layers"), min=1),
    hidden: Optional[int] = _opt(None, "--hidden", N_("hidden size"), min=1),
    heads: Optional[int] = _opt(None, "--heads", N_("attention heads"), min=1),
    seq_len: int = _opt(4096, "--seq-len", N_("sequence length"), min=1),
    batch: int = _opt(1, "--batch", N_("micro-batch size"), min=1),
    recompute: str = _opt("none", "--recompute", N_("none, selective or full")),
    tp: int = _opt(1, "--tp", N_("tensor-parallel size"), min=1),
    sequence_parallel: bool = _opt(False, "--sequence-parallel", N_("shard the non-tensor-parallel parts too")),
    as_json: bool = JsonOpt,
) -> None:
    if recompute not in calc.RECOMPUTE_MODES:
        raise typer.BadParameter(f"expected one of {', '.join(calc.RECOMPUTE_MODES)}", param_hint="--recompute")
    model = _model(preset, ("layers", "hidden", "heads"), layers=layers, hidden=hidden, heads=heads)
    b = _wrap(calc.activation_breakdown, model, seq_len, batch, recompute, tp, sequence_parallel)
    _emit(b, as_json, model=model.name, seq_len=seq_len, batch=batch, recompute=recompute, tp=tp,
          sequence_parallel=sequence_parallel)


@app.command(help=N_("FLOPs: about 6·N per token to train, 2·N per token for inference; 6·N·D in total."))
def flops(
    preset: Optional[str] = PresetOpt,
    params: Optional[str] = ParamsOpt,
    tokens: Optional[str] = _opt(None, "--tokens", N_("training tokens, e.g. 1.4T (default: per token)")),
    as_json: bool = JsonOpt,
) -> None:
    n, label = _params(preset, params)
    d = _count(tokens, "--tokens") if tokens is not None else 0.0
    b = calc.flops_breakdown(n, d)
    data = {"model": label, "params": calc.tidy(n), "tokens": calc.tidy(d),
            "train_per_token": calc.flops_per_token(n), "inference_per_token": calc.flops_per_token(n, training=False),
            "train_total": calc.training_flops(n, d) if d else None, **b.to_dict()}
    if as_json:
        _json(data)
        return
    typer.echo(_("FLOPs for {model}").format(model=label))
    rows = [[_("training, per token"), calc.format_flops(data["train_per_token"]), "6·N"],
            [_("inference, per token"), calc.format_flops(data["inference_per_token"]), "2·N"]]
    if d:
        rows.append([_("training on {n} tokens").format(n=calc.format_count(d)), calc.format_flops(data["train_total"]),
                     "6·N·D"])
    typer.echo(_table(rows))


@app.command(help=N_("Mixture of experts: parameters stored (every expert) against those one token uses (top-k)."))
def moe(
    preset: str = typer.Argument(..., help=N_("a model preset (see `calc presets`), e.g. mixtral-8x7b"),
                                 show_default=False),
    experts: Optional[int] = _opt(None, "--experts", N_("routed experts per layer (makes a dense preset an MoE)"),
                                  min=1),
    top_k: Optional[int] = _opt(None, "--top-k", N_("experts each token is routed to"), min=1),
    shared_experts: Optional[int] = _opt(None, "--shared-experts", N_("experts every token goes through"), min=0),
    as_json: bool = JsonOpt,
) -> None:
    base = _preset(preset)
    given = {k: v for k, v in (("experts", experts), ("experts_per_token", top_k),
                               ("shared_experts", shared_experts)) if v is not None}
    model = base
    if given:
        model = _wrap(dataclasses.replace, base, name=f"{base.name} (modified)", published_params=None, **given)
    counts = calc.moe_param_counts(model)
    if as_json:
        _json({"model": model.name, "experts": model.experts, "experts_per_token": model.experts_per_token,
               "shared_experts": model.shared_experts, **counts.to_dict()})
        return
    kind = (_("{n} experts, top-{k}").format(n=model.experts, k=model.experts_per_token)
            + (", " + _("{n} shared").format(n=model.shared_experts) if model.shared_experts else "")
            ) if model.is_moe else _("dense")
    typer.echo(_("Parameters of {model} ({kind}): stored vs used per token").format(model=model.name, kind=kind))
    active = {i.label: i.value for i in counts.active_parts.items}
    rows = [[_("part"), _("stored"), _("per token"), _("formula (stored)")]]
    rows += [[i.label, calc.format_count(i.value), calc.format_count(active[i.label]), i.formula]
             for i in counts.parts.items]
    rows.append([_("total"), calc.format_count(counts.total), calc.format_count(counts.active), ""])
    typer.echo(_table(rows, right={1, 2}))
    stored = " " + _("(every expert is stored)") if model.is_moe else ""
    typer.echo("  " + _("active share: {share}; weights in bf16: {weights}{stored}; inference: {flops} per token "
                        "(2·N_active)").format(
        share=f"{counts.active_fraction:.1%}", weights=_both_bytes(calc.weight_bytes(counts.total, "bf16")),
        stored=stored, flops=calc.format_flops(calc.flops_per_token(model, training=False))))


@app.command("moe-a2a", help=N_("Expert-parallel all-to-all per MoE layer: 2 · T · k · h · bytes · (EP − 1)/EP sent "
                                "by one device."))
def moe_a2a(
    tokens: str = typer.Option(..., "--tokens", help=N_("tokens on one device in the layer, e.g. 4096 or 8k"),
                               show_default=False),
    ep: int = typer.Option(..., "--ep", help=N_("expert-parallel devices the experts are spread over"), min=1,
                           show_default=False),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=N_("an MoE preset: its hidden size and top-k"),
                                         show_default=False),
    hidden: Optional[int] = _opt(None, "--hidden", N_("hidden size h (the vector each routed token carries)"), min=1),
    top_k: Optional[int] = _opt(None, "--top-k", N_("experts each token is routed to"), min=1),
    dtype: str = _opt("bf16", "--dtype", N_("dtype of the hidden vectors sent")),
    as_json: bool = JsonOpt,
) -> None:
    dtype = _dtype(dtype)
    n_tokens = _count(tokens, "--tokens")
    if preset:
        model = _preset(preset)
        if not model.is_moe:
            raise typer.BadParameter(f"{model.name} is dense; use an MoE preset or give --hidden and --top-k",
                                     param_hint="--preset")
        hidden, top_k = hidden or model.hidden, top_k or model.experts_per_token
    if hidden is None or top_k is None:
        raise typer.BadParameter("give --preset NAME (an MoE model) or both --hidden and --top-k",
                                 param_hint="--hidden")
    b = _wrap(calc.expert_parallel_all_to_all_breakdown, n_tokens, hidden, top_k, ep, dtype)
    _emit(b, as_json, tokens=calc.tidy(n_tokens), hidden=hidden, top_k=top_k, ep=ep, dtype=dtype)


@app.command(help=N_("Speculative decoding: (1 − α^(k+1)) / (1 − α) tokens per forward pass of the target model."))
def speculative(
    alpha: float = typer.Option(..., "--alpha", help=N_("chance each draft token is accepted, from 0 to 1"),
                                show_default=False),
    k: int = typer.Option(..., "--k", "-k", help=N_("draft tokens proposed per step (look-ahead)"), show_default=False),
    draft_cost: Optional[float] = _opt(None, "--draft-cost",
                                       "a draft forward's cost in target forwards (e.g. 0.05): adds the speed-up"),
    as_json: bool = JsonOpt,
) -> None:
    tokens = _wrap(calc.speculative_tokens_per_step, alpha, k)
    speedup = None if draft_cost is None else _wrap(calc.speculative_speedup, alpha, k, draft_cost)
    shown = range(1, k + 1) if k <= 16 else (k,)  # the diminishing return of a longer look-ahead
    by_k = [{"k": j, "tokens_per_step": calc.speculative_tokens_per_step(alpha, j),
             "speedup": None if draft_cost is None else calc.speculative_speedup(alpha, j, draft_cost)} for j in shown]
    if as_json:
        _json({"alpha": alpha, "k": k, "tokens_per_step": tokens, "draft_cost": draft_cost, "speedup": speedup,
               "by_k": by_k})
        return
    typer.echo(_("Speculative decoding, acceptance α = {alpha}, look-ahead k = {k}").format(
        alpha=calc.format_number(alpha), k=k))
    line = _("{tokens} tokens per target forward = (1 − α^(k+1)) / (1 − α)").format(
        tokens=calc.format_number(tokens))
    if speedup is not None:
        line += "; " + _("speed-up {speedup}x with a draft costing {cost} of a target forward = tokens / (k·c + 1)"
                         ).format(speedup=calc.format_number(speedup), cost=calc.format_number(draft_cost))
    typer.echo("  " + line)
    rows = [["k", _("tokens per step")] + ([_("speed-up")] if draft_cost is not None else [])]
    rows += [[str(r["k"]), calc.format_number(r["tokens_per_step"])]
             + ([calc.format_number(r["speedup"])] if draft_cost is not None else []) for r in by_k]
    typer.echo(_table(rows, right={0, 1, 2}))
