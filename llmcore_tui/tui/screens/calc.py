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
    table.add_column("item")
    table.add_column(b.unit, justify="right")
    table.add_column("formula", style="dim")
    for item in b.items:
        table.add_row(item.label, b.format(item.value), item.formula)
    table.add_row("[b]total[/b]", f"[b]{b.format(b.total)}[/b]", "")
    for note in b.notes:
        table.add_row(f"[dim]{note}[/dim]", "", "")
    return table


def moe_table(counts: calc.MoeParams) -> Table:
    """Parameters stored against parameters one token uses, part by part."""
    table = Table(title=f"{counts.parts.title}: stored against used per token", title_justify="left", expand=True,
                  show_edge=False)
    for name, justify in (("part", "left"), ("stored", "right"), ("per token", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    active = {i.label: i.value for i in counts.active_parts.items}
    for item in counts.parts.items:
        table.add_row(item.label, calc.format_count(item.value), calc.format_count(active[item.label]))
    table.add_row("[b]total[/b]", f"[b]{calc.format_count(counts.total)}[/b]",
                  f"[b]{calc.format_count(counts.active)}[/b] ({counts.active_fraction:.1%})")
    return table


class CalcScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="calc.back", tooltip="Leave the calculator"),
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
                yield Label("Model preset")
                yield Select([(name, name) for name in calc.PRESETS], value=self.initial_preset,
                             allow_blank=False, id="calc-preset")
                yield Label("Sequence length (tokens)")
                yield Input("2048", id="calc-seq")
                yield Label("Batch (sequences)")
                yield Input("1", id="calc-batch")
                yield Label("Dtype (weights, KV cache)")
                yield Select([(d, d) for d in DTYPES], value="bf16", allow_blank=False, id="calc-dtype")
                yield Label("GPUs (data parallel)")
                yield Input("8", id="calc-gpus")
                yield Label("ZeRO stage")
                yield Select([(f"{s}" + (" (plain DP)" if s == 0 else ""), s) for s in STAGES], value=0,
                             allow_blank=False, id="calc-stage")
                yield Label("LoRA rank")
                yield Input("16", id="calc-rank")
                yield Label("Expert-parallel devices (MoE)")
                yield Input("8", id="calc-ep")
                yield Label("Speculative decoding: acceptance α")
                yield Input("0.8", id="calc-alpha")
                yield Label("Speculative decoding: look-ahead k")
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
            raise ValueError(f"{name}: {text!r} is not a whole number") from None
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
        return value

    def _float(self, widget_id: str, name: str) -> float:
        text = self.query_one(f"#{widget_id}", Input).value.strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number") from None

    def read_inputs(self) -> CalcInputs:
        return CalcInputs(
            preset=str(self.query_one("#calc-preset", Select).value),
            seq_len=self._int("calc-seq", "sequence length"),
            batch=self._int("calc-batch", "batch"),
            dtype=str(self.query_one("#calc-dtype", Select).value),
            gpus=self._int("calc-gpus", "GPUs"),
            stage=int(self.query_one("#calc-stage", Select).value),  # type: ignore[arg-type]
            lora_rank=self._int("calc-rank", "LoRA rank"),
            ep=self._int("calc-ep", "expert-parallel devices"),
            alpha=self._float("calc-alpha", "acceptance α"),  # its range: calc checks it
            lookahead=self._int("calc-lookahead", "look-ahead k"),
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
        lora_table.add_row(f"[dim]trainable {calc.format_count(lora.trainable)} of {calc.format_count(lora.total)} "
                           f"({lora.fraction:.3%}); saves {calc.format_bytes(lora.saving_bytes)} against full "
                           f"fine-tuning ({calc.format_bytes(lora.full.total)})[/dim]", "", "")
        self.query_one("#calc-lora", Static).update(lora_table)
        self.query_one("#calc-moe", Static).update(
            Group(moe_table(result.moe), "", breakdown_table(result.all_to_all)) if result.all_to_all is not None
            else f"[dim]{result.model.name} is dense: every token uses all {calc.format_count(result.model.params)} "
                 f"parameters (pick an MoE preset such as mixtral-8x7b for experts)[/dim]")
        self.query_one("#calc-speculative", Static).update(
            f"[b]Speculative decoding[/b]: {calc.format_number(result.speculative_tokens)} tokens per forward "
            f"pass of {result.model.name} with α = {calc.format_number(inputs.alpha)}, k = {inputs.lookahead} "
            f"[dim](1 − α^(k+1)) / (1 − α); at most k + 1 = {inputs.lookahead + 1}[/dim]")

    def summary_text(self) -> str:
        r = self.result
        if r is None:
            return ""
        active = f", {calc.format_count(r.moe.active)} active" if r.model.is_moe else ""
        return (f"{r.model.name} ({r.model.attention}, {calc.format_count(r.model.params)} params{active}) · "
                f"KV cache: {r.kv.format(r.kv.total)} · weights: {r.weights.format(r.weights.total)} · "
                f"training per GPU: {r.training.format(r.training.total)} · "
                f"LoRA: {r.lora.lora.format(r.lora.lora.total)}")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.recompute()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.recompute()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.app.switch_mode("today")
