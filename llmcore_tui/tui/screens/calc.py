"""Calculator: pick a model and a setting, see where the memory goes, item by item.

All numbers come from ``llmcore_tui.core.calc``; this screen only reads inputs and shows
breakdowns (KV cache, weights, training memory per GPU under ZeRO, LoRA, a mixture of experts'
stored and active parameters and its all-to-all traffic, speculative decoding). It recomputes
on every change; input it cannot read is reported inline and the last good result stays.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select, Static

from llmcore_tui.core import calc
from llmcore_tui.i18n import N_, Localized, _

DTYPES = tuple(calc.DTYPE_BYTES)
STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class CalcInputs:
    preset: str
    seq_len: int
    batch: int
    dtype: str
    gpus: int
    stage: int
    lora_rank: int
    ep: int = 8  # expert-parallel devices, for an MoE preset
    alpha: float = 0.8  # speculative decoding: chance a draft token is accepted
    lookahead: int = 4  # speculative decoding: draft tokens per step


@dataclass(frozen=True)
class CalcResult:
    model: calc.ModelConfig
    kv: calc.Breakdown
    weights: calc.Breakdown
    training: calc.Breakdown
    lora: calc.LoraEstimate
    moe: calc.MoeParams
    all_to_all: calc.Breakdown | None  # None for a dense model
    speculative_tokens: float


def compute(inputs: CalcInputs) -> CalcResult:
    """Every breakdown the screen shows (ValueError/KeyError on bad inputs)."""
    model = calc.get_preset(inputs.preset)
    act = calc.activation_bytes(inputs.seq_len, inputs.batch, model.hidden, model.heads, model.layers)
    return CalcResult(
        model,
        calc.kv_cache_breakdown(model, inputs.seq_len, inputs.batch, inputs.dtype),
        calc.weights_breakdown(model, inputs.dtype),
        calc.zero_memory_breakdown(model, inputs.gpus, inputs.stage, activation_bytes=act),
        calc.lora_estimate(model, inputs.lora_rank, base_dtype=inputs.dtype),
        calc.moe_param_counts(model),
        calc.expert_parallel_all_to_all_breakdown(inputs.seq_len * inputs.batch, model.hidden,
                                                  model.experts_per_token, inputs.ep, inputs.dtype)
        if model.is_moe else None,
        calc.speculative_tokens_per_step(inputs.alpha, inputs.lookahead),
    )


def breakdown_table(b: calc.Breakdown) -> Table:
    table = Table(title=b.title, title_justify="left", expand=True, show_edge=False)
    table.add_column(_("item"))
    table.add_column(b.unit, justify="right")
    table.add_column(_("formula"), style="dim")
    for item in b.items:
        table.add_row(item.label, b.format(item.value), item.formula)
    table.add_row("[b]" + _("total") + "[/b]", f"[b]{b.format(b.total)}[/b]", "")
    for note in b.notes:
        table.add_row(f"[dim]{note}[/dim]", "", "")
    return table


def moe_table(counts: calc.MoeParams) -> Table:
    """Parameters stored against parameters one token uses, part by part."""
    table = Table(title=_("{title}: stored against used per token").format(title=counts.parts.title),
                  title_justify="left", expand=True, show_edge=False)
    for name, justify in ((_("part"), "left"), (_("stored"), "right"), (_("per token"), "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    active = {i.label: i.value for i in counts.active_parts.items}
    for item in counts.parts.items:
        table.add_row(item.label, calc.format_count(item.value), calc.format_count(active[item.label]))
    table.add_row("[b]" + _("total") + "[/b]", f"[b]{calc.format_count(counts.total)}[/b]",
                  f"[b]{calc.format_count(counts.active)}[/b] ({counts.active_fraction:.1%})")
    return table


class CalcScreen(Localized, Screen):
    BINDINGS = [
        Binding("escape", "back", N_("Back"), id="calc.back", tooltip=N_("Leave the calculator")),
    ]
    DEFAULT_CSS = """
    CalcScreen #calc-form { width: 34; padding: 0 1; }
    CalcScreen #calc-form Label { margin-top: 1; }
    CalcScreen #calc-error { color: $error; margin-top: 1; }
    CalcScreen #calc-out { width: 1fr; padding: 0 1; }
    CalcScreen #calc-summary { text-style: bold; margin-bottom: 1; }
    CalcScreen .calc-section { margin-bottom: 1; }
    """

    def __init__(self, preset: str = "llama-3-8b") -> None:
        super().__init__()
        self.initial_preset = preset if preset in calc.PRESETS else next(iter(calc.PRESETS))
        self.result: CalcResult | None = None
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="calc-form"):
                yield Label(_("Model preset"))
                yield Select([(name, name) for name in calc.PRESETS], value=self.initial_preset,
                             allow_blank=False, id="calc-preset")
                yield Label(_("Sequence length (tokens)"))
                yield Input("2048", id="calc-seq")
                yield Label(_("Batch (sequences)"))
                yield Input("1", id="calc-batch")
                yield Label(_("Dtype (weights, KV cache)"))
                yield Select([(d, d) for d in DTYPES], value="bf16", allow_blank=False, id="calc-dtype")
                yield Label(_("GPUs (data parallel)"))
                yield Input("8", id="calc-gpus")
                yield Label(_("ZeRO stage"))
                yield Select([(f"{s}" + (" " + _("(plain DP)") if s == 0 else ""), s) for s in STAGES], value=0,
                             allow_blank=False, id="calc-stage")
                yield Label(_("LoRA rank"))
                yield Input("16", id="calc-rank")
                yield Label(_("Expert-parallel devices (MoE)"))
                yield Input("8", id="calc-ep")
                yield Label(_("Speculative decoding: acceptance α"))
                yield Input("0.8", id="calc-alpha")
                yield Label(_("Speculative decoding: look-ahead k"))
                yield Input("4", id="calc-lookahead")
                yield Static(id="calc-error")
            with VerticalScroll(id="calc-out"):
                yield Static(id="calc-summary")
                for section in ("kv", "weights", "training", "lora", "moe", "speculative"):
                    yield Static(id=f"calc-{section}", classes="calc-section")
        yield Footer()

    def on_mount(self) -> None:
        self.recompute()

    # -- reading inputs -------------------------------------------------------------------
    def _int(self, widget_id: str, name: str, low: int = 1) -> int:
        text = self.query_one(f"#{widget_id}", Input).value.strip().replace(",", "").replace("_", "")
        try:
            value = int(float(text)) if text and float(text).is_integer() else int(text)
        except ValueError:
            raise ValueError(_("{name}: {text} is not a whole number").format(name=name, text=repr(text))) from None
        if value < low:
            raise ValueError(_("{name} must be at least {low}, got {value}").format(name=name, low=low, value=value))
        return value

    def _float(self, widget_id: str, name: str) -> float:
        text = self.query_one(f"#{widget_id}", Input).value.strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(_("{name}: {text} is not a number").format(name=name, text=repr(text))) from None

    def read_inputs(self) -> CalcInputs:
        return CalcInputs(
            preset=str(self.query_one("#calc-preset", Select).value),
            seq_len=self._int("calc-seq", _("sequence length")),
            batch=self._int("calc-batch", _("batch")),
            dtype=str(self.query_one("#calc-dtype", Select).value),
            gpus=self._int("calc-gpus", _("GPUs")),
            stage=int(self.query_one("#calc-stage", Select).value),  # type: ignore[arg-type]
            lora_rank=self._int("calc-rank", _("LoRA rank")),
            ep=self._int("calc-ep", _("expert-parallel devices")),
            alpha=self._float("calc-alpha", _("acceptance α")),  # its range: calc checks it
            lookahead=self._int("calc-lookahead", _("look-ahead k")),
        )

    # -- showing --------------------------------------------------------------------------
    def recompute(self) -> None:
        error = self.query_one("#calc-error", Static)
        try:
            inputs = self.read_inputs()
            result = compute(inputs)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            self.error = str(exc).strip("'\"")
            error.update(f"⚠ {self.error}")
            return
        self.error = ""
        error.update("")
        self.result = result
        kv, weights, training, lora = result.kv, result.weights, result.training, result.lora
        self.query_one("#calc-summary", Static).update(self.summary_text())
        self.query_one("#calc-kv", Static).update(breakdown_table(kv))
        self.query_one("#calc-weights", Static).update(breakdown_table(weights))
        self.query_one("#calc-training", Static).update(breakdown_table(training))
        lora_table = breakdown_table(lora.lora)
        lora_table.add_row("[dim]" + _("trainable {trainable} of {total} ({fraction}); saves {saving} against full "
                                       "fine-tuning ({full})").format(
            trainable=calc.format_count(lora.trainable), total=calc.format_count(lora.total),
            fraction=f"{lora.fraction:.3%}", saving=calc.format_bytes(lora.saving_bytes),
            full=calc.format_bytes(lora.full.total)) + "[/dim]", "", "")
        self.query_one("#calc-lora", Static).update(lora_table)
        self.query_one("#calc-moe", Static).update(
            Group(moe_table(result.moe), "", breakdown_table(result.all_to_all)) if result.all_to_all is not None
            else "[dim]" + _("{model} is dense: every token uses all {params} parameters (pick an MoE preset such as "
                             "mixtral-8x7b for experts)").format(model=result.model.name,
                                                                 params=calc.format_count(result.model.params))
            + "[/dim]")
        self.query_one("#calc-speculative", Static).update(
            _("[b]Speculative decoding[/b]: {tokens} tokens per forward pass of {model} with α = {alpha}, k = {k} "
              "[dim](1 − α^(k+1)) / (1 − α); at most k + 1 = {most}[/dim]").format(
                tokens=calc.format_number(result.speculative_tokens), model=result.model.name,
                alpha=calc.format_number(inputs.alpha), k=inputs.lookahead, most=inputs.lookahead + 1))

    def summary_text(self) -> str:
        r = self.result
        if r is None:
            return ""
        active = ", " + _("{n} active").format(n=calc.format_count(r.moe.active)) if r.model.is_moe else ""
        return _("{model} ({attention}, {params} params{active}) · KV cache: {kv} · weights: {weights} · training per "
                 "GPU: {training} · LoRA: {lora}").format(
            model=r.model.name, attention=r.model.attention, params=calc.format_count(r.model.params), active=active,
            kv=r.kv.format(r.kv.total), weights=r.weights.format(r.weights.total),
            training=r.training.format(r.training.total), lora=r.lora.lora.format(r.lora.lora.total))

    def on_input_changed(self, event: Input.Changed) -> None:
        self.recompute()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.recompute()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.app.switch_mode("today")
