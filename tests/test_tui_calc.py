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


async def test_mixtral_shows_stored_and_active_parameters_and_speculative_decoding(course):
    app = LlmcoreApp(course)
    async with app.run_test(size=(140, 50)) as pilot:
        screen = CalcScreen("mixtral-8x7b")
        await app.push_screen(screen)
        await pilot.pause()
        r = screen.result
        assert r is not None and r.model.is_moe
        assert (r.moe.total, r.moe.active) == (46_702_792_704, 12_879_925_248)
        assert "12.88B active" in str(screen.query_one("#calc-summary").content)
        # 2048 tokens (default), h = 4096, top-2, bf16, over 8 devices: 7/8 of 2·2048·2·4096·2 B
        assert r.all_to_all is not None and r.all_to_all.total == 2 * 2048 * 2 * 4096 * 2 * 7 / 8
        screen.query_one("#calc-ep", Input).value = "1"
        await pilot.pause()
        assert screen.result.all_to_all.total == 0
        assert screen.result.speculative_tokens == (1 - 0.8**5) / (1 - 0.8)
        screen.query_one("#calc-alpha", Input).value = "1"
        screen.query_one("#calc-lookahead", Input).value = "6"
        await pilot.pause()
        assert screen.result.speculative_tokens == 7
        assert "7 tokens per forward" in str(screen.query_one("#calc-speculative").content)

        screen.query_one("#calc-alpha", Input).value = "1.5"
        await pilot.pause()
        assert "alpha must be a number from 0 to 1" in str(screen.query_one("#calc-error").content)
        assert screen.result.speculative_tokens == 7  # the last good result stays
        screen.query_one("#calc-alpha", Input).value = "0.8"
        screen.query_one("#calc-preset", Select).value = "llama-3-8b"
        await pilot.pause()
        assert screen.error == "" and screen.result.all_to_all is None
        assert "is dense" in str(screen.query_one("#calc-moe").content)
