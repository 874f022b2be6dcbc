"""Every screen at 80x24 and 120x40: no footer binding is cut off."""

from __future__ import annotations

import pytest
from textual.widgets import Footer

from llmcore_tui.tui.app import LlmcoreApp

SCREEN_KEYS = ["t", "r", "m", "l", "k", "s", "c"]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_no_footer_binding_is_cut(real_course, size):
    app = LlmcoreApp(real_course)
    async with app.run_test(size=size) as pilot:
        for key in SCREEN_KEYS:
            if key != "t":
                await pilot.press("escape")
            await pilot.press(key)
            for _ in range(50):  # a busy machine: wait until the footer is laid out
                await pilot.pause(0.1)
                footer = app.screen.query_one(Footer)
                keys = list(footer.query("FooterKey"))
                if keys and footer.region.width and all(k.region.width for k in keys):
                    break
            assert keys, f"{type(app.screen).__name__} shows no keys"
            cut = [str(k.render()).strip() for k in keys
                   if k.region.right > footer.region.right
                   or k.region.width < k.get_content_width(footer.size, footer.size)]
            assert not cut, f"{type(app.screen).__name__} at {size}: cut {cut}"
