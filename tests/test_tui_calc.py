"""Pilot test: the calculator recomputes as the preset and inputs change; bad input is inline."""

from __future__ import annotations

from textual.widgets import Input, Select

from llmcore_tui.core import calc
from llmcore_tui.tui.app import LlmcoreApp
from llmcore_tui.tui.screens.calc import CalcScreen


async def test_kv_cache_of_llama_2_7b_at_4096_tokens_is_2_gib(course):
    app = LlmcoreApp(course)
    async with app.run_test(size=(140, 50)) as pilot:
        screen = CalcScreen()
        await app.push_screen(screen)
        await pilot.pause()
        assert screen.result is not None and screen.result.model.name == "llama-3-8b"
        screen.query_one("#calc-preset", Select).value = "llama-2-7b"
        screen.query_one("#calc-seq", Input).value = "4096"
        screen.query_one("#calc-dtype", Select).value = "fp16"
        await pilot.pause()
        assert screen.result.model.name == "llama-2-7b"
        assert screen.result.kv.total == 2 * calc.GiB
        assert "KV cache: 2 GiB" in str(screen.query_one("#calc-summary").content)

        # ZeRO-3 on 8 GPUs shards everything: less per GPU than plain data parallelism
        plain = screen.result.training.total
        screen.query_one("#calc-stage", Select).value = 3
        await pilot.pause()
        assert screen.result.training.total < plain

        # bad input: an inline error, the last good result stays, no crash
        screen.query_one("#calc-seq", Input).value = "lots"
        await pilot.pause()
        assert "sequence length" in str(screen.query_one("#calc-error").content)
        assert screen.result.kv.total == 2 * calc.GiB
        screen.query_one("#calc-gpus", Input).value = "0"
        screen.query_one("#calc-seq", Input).value = "8192"
        await pilot.pause()
        assert "GPUs must be at least 1" in str(screen.query_one("#calc-error").content)
        screen.query_one("#calc-gpus", Input).value = "8"
        await pilot.pause()
        assert screen.error == "" and screen.result.kv.total == 4 * calc.GiB
