"""The Chinese interface: every UI string in the catalog and translated, the screens without English
words, ``z`` switching the cards alone, and the CLI's help in Chinese.

A new ``_("...")`` that nobody translated fails :func:`test_every_ui_string_is_translated`; the fix
is in README ("The Chinese interface"): extract, update, translate, compile.
"""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmcore_tui import i18n
from llmcore_tui.tui.app import LlmcoreApp

REPO = Path(__file__).resolve().parents[1]
LOCALE = REPO / "llmcore_tui" / "locale"
PO = LOCALE / "zh" / "LC_MESSAGES" / "llmcore.po"
MO = PO.with_suffix(".mo")
KEYWORDS = ("_", "N_", "ngettext")
MARKUP = r"\[/?(?:b|i|green|yellow|dim)\]"  # the Rich markup our msgids use


@pytest.fixture(autouse=True)
def english_afterwards():
    """The interface language is process-wide: leave it English for the tests that follow."""
    yield
    i18n.set_language("en")


# -- (a) the catalog -------------------------------------------------------------------------
def _extracted() -> set[str]:
    """Every msgid Babel's extractor finds in the package, as babel.cfg configures it."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with open(REPO / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(REPO, method_map, options_map):
        found.update([message] if isinstance(message, str) else message)
    return found


def _po() -> dict[str, tuple[str, bool]]:
    """msgid (each plural form too) -> (msgstr, fuzzy) of the zh catalog."""
    from babel.messages.pofile import read_po

    with open(PO, "rb") as f:
        catalog = read_po(f)
    out = {}
    for message in catalog:
        if not message.id:
            continue
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        for msgid in ids:
            out[msgid] = (strings[0] if strings else "", message.fuzzy)
    return out


def test_every_ui_string_is_translated():
    extracted = _extracted()
    assert len(extracted) > 150  # the extractor really read the package
    po = _po()
    untranslated = sorted(m for m in extracted if not po.get(m, ("", False))[0].strip())
    fuzzy = sorted(m for m in extracted if m in po and po[m][1])
    assert not untranslated, f"no Chinese for {untranslated[:10]}: see README, 'The Chinese interface'"
    assert not fuzzy, f"fuzzy (unchecked) translations: {fuzzy[:10]}"


def test_the_template_is_the_extraction():
    """messages.pot is what pybabel extract writes from today's source (no stale or missing msgid)."""
    from babel.messages.pofile import read_po

    with open(LOCALE / "messages.pot", "rb") as f:
        template = {m for message in read_po(f) if message.id
                    for m in ([message.id] if isinstance(message.id, str) else message.id)}
    assert template == _extracted()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in KEYWORDS:
            yield node


def test_every_marked_string_is_a_literal_the_extractor_sees():
    """_(f"...") or _("..." + x) escapes extraction, and so does a _("...") inside an f-string:
    such a string would silently stay English."""
    extracted = _extracted()
    wrong = []
    for path in (REPO / "llmcore_tui").rglob("*.py"):
        for call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            if not call.args:
                continue
            arg = call.args[0]
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if arg.value and arg.value not in extracted:
                    wrong.append(f"{where} {arg.value[:40]!r} is not extracted")
            elif isinstance(arg, (ast.JoinedStr, ast.BinOp)):
                wrong.append(f"{where} builds its msgid at run time")
    assert not wrong, "\n".join(wrong)


def test_translations_keep_placeholders_and_markup():
    """A dropped {n} loses a number; an extra one raises KeyError; [b] without [/b] breaks markup."""
    fields = re.compile(r"\{[a-z_]*\}")
    tags = re.compile(MARKUP + r"|\*\*")
    wrong = [msgid for msgid, (msgstr, _fuzzy) in _po().items() if msgstr and (
        sorted(set(fields.findall(msgid))) != sorted(set(fields.findall(msgstr)))
        or sorted(tags.findall(msgid)) != sorted(tags.findall(msgstr)))]
    assert not wrong, wrong


def test_the_compiled_catalog_matches_the_po():
    from babel.messages.pofile import read_po

    with open(MO, "rb") as f:
        compiled = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    with open(PO, "rb") as f:
        catalog = read_po(f)
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, str):
            assert compiled.get(message.id) == message.string, f"{message.id!r}: run pybabel compile"
        else:
            assert compiled.get((message.id[0], 0)) == message.string[0], f"{message.id[0]!r}: run pybabel compile"


def test_the_plus_key_names_the_catch_up_step():
    from llmcore_tui.core.plan import CATCH_UP_STEP
    from llmcore_tui.tui.screens.today import TodayScreen

    (plus,) = [b for b in TodayScreen.BINDINGS if b.key == "plus"]
    assert plus.description == f"+{CATCH_UP_STEP} new" and str(CATCH_UP_STEP) in plus.tooltip


def test_an_unknown_language_is_refused_and_english_needs_no_catalog():
    with pytest.raises(ValueError, match="en or zh"):
        i18n.set_language("fr")
    i18n.set_language("zh")
    assert i18n._("Quit") == "退出" and i18n.ngettext("{n} question", "{n} questions", 2) == "{n} 道题"
    i18n.set_language("en")
    assert i18n._("Quit") == "Quit" and i18n._("") == ""
    assert i18n.language_in(["--db", "x", "--lang=zh", "stats"], "en") == "zh"
    assert i18n.language_in(["stats", "--", "--lang", "zh"], "en") == "en"


# -- (b) the screens ---------------------------------------------------------------------------
def screen_text(app) -> str:
    """What the terminal shows, as plain text (one line per row)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


# not the Calculator: its breakdowns (items, notes) are worded in core/calc, in English
SCREEN_KEYS = {"Today": [], "Review": ["r", "space"], "Roadmap": ["m"], "Help": ["question_mark"], "Labs": ["l"],
               "Quiz": ["k"], "Stats": ["s"]}


async def _texts(course, lang: str) -> dict[str, str]:
    """Each screen's text; on a course of its own, since the app closes its course when it ends."""
    from llmcore_tui.core.course import Course

    course = Course.open(course.store.path, course.content_root, clock=course.clock, fuzz=False)
    app = LlmcoreApp(course, lang)
    texts = {}
    async with app.run_test(size=(120, 40)) as pilot:
        for name, keys in SCREEN_KEYS.items():
            await pilot.press("escape", "t", *keys)
            await pilot.pause(0.2)
            texts[name] = screen_text(app)
    return texts


def _english_fragments(text: str) -> set[str]:
    """The literal pieces of every msgid (markup and placeholders cut out) that ``text`` shows,
    but for those a translation keeps as they are (keys, command names, the program's name)."""
    po = _po()
    kept = "\n".join(msgstr for msgstr, _fuzzy in po.values())
    pieces = set()
    for msgid in po:
        for piece in re.split(r"\{[a-z_]*\}|" + MARKUP + r"|\*\*|\n", msgid):
            piece = piece.strip(" .:;,()—·")
            if re.search(r"[A-Za-z]{4}", piece) and not _shows(kept, piece) and _shows(text, piece):
                pieces.add(piece)
    return pieces


def _shows(text: str, words: str) -> bool:
    return re.search(rf"(?<![A-Za-z]){re.escape(words)}(?![A-Za-z])", text) is not None


def _without_criteria(text: str) -> str:
    """The day's criteria lines ('· 0/20 MDP cards introduced'): test_the_roadmap_criteria_are_chinese
    looks at them."""
    return "\n".join(line for line in text.splitlines() if not re.match(r"\W*[·✓] ", line))


async def test_the_chinese_screens_show_no_english_ui_words(real_course):
    english = await _texts(real_course, "en")
    chinese = await _texts(real_course, "zh")
    for name in SCREEN_KEYS:
        shown_in_english = _english_fragments(_without_criteria(english[name]))
        assert len(shown_in_english) >= 3, f"{name}: the English screen shows too few catalog words to compare"
        left = {p for p in shown_in_english if _shows(_without_criteria(chinese[name]), p)}
        assert not left, f"{name} in Chinese still shows {sorted(left)}"


async def test_the_roadmap_criteria_are_chinese(real_course):
    chinese = await _texts(real_course, "zh")
    assert "cards introduced" not in chinese["Roadmap"] and "quiz not passed" not in chinese["Today"]


async def test_no_footer_key_is_cut_in_chinese(real_course, monkeypatch):
    """tests/test_layout.py's check at 80x24, on the app in Chinese (a CJK character is two cells)."""
    import test_layout

    monkeypatch.setattr(test_layout, "LlmcoreApp", lambda course: LlmcoreApp(course, "zh"))
    await test_layout.test_no_footer_binding_is_cut(real_course, (80, 24))
    assert i18n.language() == "zh"  # it really ran in Chinese


# -- (c) z switches the cards, not the interface -------------------------------------------------
async def test_z_switches_the_card_language_only(course):
    course.store.created = False
    app = LlmcoreApp(course, "zh")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r", "space")
        await pilot.pause(0.2)
        before = screen_text(app)
        assert "问题：What is" in before and "重来" in before and "撤销" in before  # zh card, zh keys
        await pilot.press("z")
        await pilot.pause(0.2)
        after = screen_text(app)
        assert "问题：" not in after and "What is" in after  # the English side of the card
        assert "重来" in after and "撤销" in after and "Again" not in after and "Undo" not in after
        assert app.lang == "en" and i18n.language() == "zh"
        assert course.settings.get("lang") == ""  # nor is the next start


# -- (d) the command line ----------------------------------------------------------------------
def _help(*args: str) -> str:
    from llmcore_tui.cli.commands import cli_command

    result = CliRunner().invoke(cli_command(list(args)), list(args), prog_name="llmcore-tui", terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_help_is_chinese_with_lang_zh():
    root = _help("--lang", "zh", "--help")
    assert "显示本帮助并退出" in root and "选项" in root and "间隔重复" in root and "查看或修改设置" in root
    assert "Show this message" not in root and "Options" not in root and "用法" in root and "Usage" not in root
    sub = _help("--lang", "zh", "check", "--help")
    assert "检查所有卡片和测验" in sub and "同时按文件统计卡片" in sub and "Validate" not in sub
    english = _help("--lang", "en", "--help")  # nothing left over from zh
    assert "Show this message" in english and "Usage:" in english and "Options" in english


def test_a_chinese_locale_chooses_chinese(monkeypatch):
    monkeypatch.setenv("LC_ALL", "zh_CN.UTF-8")
    assert "显示本帮助并退出" in _help("--help")


def test_the_stored_language_chooses_it_and_lang_overrides(tmp_path, monkeypatch):
    from llmcore_tui.cli import app
    from llmcore_tui.core.store import Store
    from llmcore_tui.core.settings import Settings

    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    db = tmp_path / "p.db"
    store = Store(db)
    Settings(store).set("lang", "zh")
    store.close()
    from typer.testing import CliRunner as TyperRunner

    runner = TyperRunner()
    stored = runner.invoke(app, ["--db", str(db), "stats"])
    assert stored.exit_code == 0 and "数据库：" in stored.output, stored.output
    given = runner.invoke(app, ["--db", str(db), "--lang", "en", "stats"])
    assert given.exit_code == 0 and "database:" in given.output and "数据库" not in given.output


def test_the_app_starts_in_the_stored_language_unless_lang_is_given(tmp_path, monkeypatch):
    from llmcore_tui.core import labruns
    from llmcore_tui.core.settings import Settings
    from llmcore_tui.core.store import Store
    from llmcore_tui.tui import app as app_module

    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    monkeypatch.setattr(labruns, "install_signal_handlers", lambda then: None)
    seen = {}
    monkeypatch.setattr(app_module.LlmcoreApp, "run", lambda self: seen.update(ui=i18n.language(), cards=self.lang))
    db = tmp_path / "p.db"
    store = Store(db)
    Settings(store).set("lang", "zh")
    store.close()
    assert app_module.run_app(db, None) == 0 and seen == {"ui": "zh", "cards": "zh"}
    assert app_module.run_app(db, "en") == 0 and seen == {"ui": "en", "cards": "en"}
