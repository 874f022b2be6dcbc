"""The personal technical brief (day 14): content on an empty and on a populated database,
Markdown and self-contained HTML, atomic writing, the ``export-brief`` command, and the page in
headless Chromium (skipped when Chromium is not installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

import pytest
import typer
from typer.testing import CliRunner

from llmcore_tui.core import brief as B
from llmcore_tui.core import roadmap
from llmcore_tui.core.srs import AGAIN, GOOD, NewItem
from tests.conftest import FIXED_NOW

DAY = 86400.0
START = "2026-02-27"  # FIXED_NOW (2026-03-02 10:00 UTC) is then day 4 of the plan
D1 = FIXED_NOW - 3 * DAY  # 2026-02-27 10:00 UTC
RUN_ID = "mdp-20260228-120000-ab12"


def _lab_commands() -> list[str]:
    from labs.registry import LABS

    return [f"`llmcore-tui lab run {lab.name} --toy`" for lab in LABS]


# -- a populated course -------------------------------------------------------------------------

def _populate(course) -> None:
    """Three study days of work: reviews (one undone), quiz answers, a lab run with metrics,
    and a failed run of another lab."""
    course.store.set_setting("start_date", START)
    srs = course.srs
    mdp = [NewItem(f"mdp-{n}", "card", "mdp", 1) for n in ("one", "two", "three")]
    # day 1: three new cards
    srs.rate(mdp[0], GOOD, D1)
    srs.rate(mdp[1], GOOD, D1 + 60)
    srs.rate(mdp[2], GOOD, D1 + 120)
    # day 2: mdp-one forgotten twice, mdp-two fine, a TD card introduced and its rating undone
    srs.rate("mdp-one", AGAIN, D1 + DAY)
    srs.rate("mdp-one", AGAIN, D1 + DAY + 600)
    srs.rate("mdp-two", GOOD, D1 + DAY + 700)
    srs.rate(NewItem("td-one", "card", "td_learning", 2), GOOD, D1 + DAY + 800)
    srs.undo(D1 + DAY + 801)
    # day 3: one more review
    srs.rate("mdp-one", GOOD, D1 + 2 * DAY)
    with course.store.transaction() as conn:
        for i, ok in enumerate((1, 1, 1, 0)):  # 3 of 4 right on day 2
            conn.execute("INSERT INTO quiz_attempts(sitting, question_id, module, day, answer, correct, score,"
                         " attempted_ts) VALUES ('s1', ?, 'mdp', 1, 'a', ?, ?, ?)",
                         (f"mdp-q-{i}", ok, float(ok), D1 + DAY + 1000 + i))
        conn.execute("INSERT INTO quiz_sittings(id, module, day, started_ts, finished_ts, questions, correct, score,"
                     " passed) VALUES ('s1', 'mdp', 1, ?, ?, 4, 3, 0.75, 0)", (D1 + DAY + 1000, D1 + DAY + 1010))
        conn.execute(
            "INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, ended_ts, exit_code,"
            " headline_json, log_tail) VALUES (?, 'mdp', 1, 'toy', '{}', 'succeeded', ?, ?, 0, ?, '')",
            (RUN_ID, D1 + DAY + 2000, D1 + DAY + 2003.5,
             json.dumps({"vi_sweeps": 56, "V_start": 4.4513326, "policies_agree": True})))
        conn.executemany("INSERT INTO lab_metrics(run_id, step, key, value) VALUES (?, ?, ?, ?)",
                         [(RUN_ID, k, "vi/bellman_residual", 10.0 ** (1 - k / 2)) for k in range(1, 21)]
                         + [(RUN_ID, k, "pi/policy_changes", float(v)) for k, v in enumerate((5, 3, 1, 0), 1)]
                         + [(RUN_ID, 1, "constant", 1.0), (RUN_ID, 2, "constant", 1.0)])
        conn.execute(
            "INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, ended_ts, exit_code,"
            " error, log_tail) VALUES ('td_learning-20260301-1', 'td_learning', 2, 'toy', '{}', 'failed', ?, ?, 1,"
            " 'the lab exited with code 1', '')", (D1 + 2 * DAY + 100, D1 + 2 * DAY + 101))


@pytest.fixture
def populated(course):
    _populate(course)
    return course


# -- content ------------------------------------------------------------------------------------

def test_empty_database_names_every_module_and_what_is_missing(course):
    brief = B.build_brief(course, "en")
    md = B.render_markdown(brief)
    learning = [d for d in roadmap.DAYS if d.module in roadmap.LEARNING_MODULES]
    assert [m.module for m in brief.modules] == [d.module for d in learning]
    assert len(brief.modules) == 13
    for day in learning:
        assert f"### Day {day.number} · {day.title['en']}" in md
        assert f"| {day.number} | {day.title['en']} |" in md  # the mastery table
    assert "No lab runs yet — run `llmcore-tui lab run mdp --toy`." in md
    assert "No reviews yet" in md and "No quiz answered yet" in md
    for command in _lab_commands():  # each module says which lab to run
        assert command in md
    assert "no cards reviewed yet — review day 1's cards" in md
    assert "No cards introduced yet: nothing to rank." in md
    assert brief.totals.introduced == 0 and brief.totals.reviews == 0 and brief.totals.lab_runs == 0
    assert [d.number for d in brief.timeline] == list(range(1, 15))
    assert brief.timeline[0].today and all(d.future for d in brief.timeline[1:])
    # the key ideas come from the cards, math kept as LaTeX
    assert "**What is $\\gamma$?** — The discount." in md


def test_empty_database_in_chinese(course):
    md = B.render_markdown(B.build_brief(course, "zh"))
    for day in roadmap.DAYS[:13]:
        assert day.title["zh"] in md
    assert "还没有实验运行记录 —— 运行 `llmcore-tui lab run mdp --toy`" in md
    assert "问题：What is $\\gamma$?" in md  # the cards' Chinese side


def test_populated_database_shows_mastery_evidence_and_timeline(populated):
    from llmcore_tui.core import stats

    brief = B.build_brief(populated, "en")
    md = B.render_markdown(brief)
    mdp = next(m for m in brief.modules if m.module == "mdp")
    mastery = {m.module: m for m in stats.module_mastery(populated)}["mdp"]
    assert mdp.mastery == mastery
    assert mastery.introduced == 3 and mastery.reviews == 7 and mastery.quiz_attempts == 4
    recall = f"{mastery.mean_retrievability:.0%}"
    lapses = f"{mastery.lapses} lapse" + ("" if mastery.lapses == 1 else "s")
    assert (f"3/3 cards introduced · recall today {recall} · 7 reviews · {lapses} · "
            "quiz: 4 answers, mean score 75%") in md
    assert f"| 1 | MDP | open | 3/3 | {recall} | 7 | {mastery.lapses} | 75% (4) | mdp ✓ |" in md
    # lab evidence: the run, its headline numbers and its curves
    assert f"run `{RUN_ID}` · succeeded 2026-02-28 10:33 · took 3.5s · preset toy · 1 of 1 runs succeeded" in md
    assert "| `vi_sweeps` | 56 |" in md and "| `V_start` | 4.451 |" in md and "| `policies_agree` | true |" in md
    assert "vi/bellman_residual: 3.162 → 1e-09 (min 1e-09, max 3.162; 20 points, log scale)" in md
    assert "pi/policy_changes: 5 → 0 (min 5, max 0" not in md  # min/max are real min/max
    assert "pi/policy_changes: 5 → 0 (min 0, max 5; 4 points)" in md
    assert "constant" not in md  # a flat series is no curve
    # the failed lab says so, with the command that fixes it
    assert ("lab td_learning: 1 run, none succeeded (latest failed: the lab exited with code 1) — run "
            "`llmcore-tui lab run td_learning --toy`") in md
    assert "No lab runs yet" not in md and "No reviews yet" not in md
    # weakest: mdp-one, rated Again twice (hardest, least recalled), comes first
    assert brief.weakest[0].card_id == "mdp-one"
    assert brief.weakest[0].difficulty == max(w.difficulty for w in brief.weakest)
    assert "| 1 | What is $\\gamma$? `mdp-one` | D1 MDP |" in md  # the weakest-cards table, as in HTML
    revisit = {r.module: r for r in brief.revisit}
    assert "mdp" in revisit and any("quiz accuracy 75%" in r for r in revisit["mdp"].reasons)
    assert any("lab td_learning not run successfully" in r for r in revisit["td_learning"].reasons)
    # timeline: the undone rating does not count; the run sits on its day
    days = brief.timeline
    assert [d.reviews for d in days[:4]] == [3, 3, 1, 0]
    assert [d.new_cards for d in days[:4]] == [3, 0, 0, 0]
    assert (days[1].quiz_answers, days[1].quiz_score, days[1].sittings, days[1].passed) == (4, 3.0, 1, 0)
    assert days[1].lab_runs == (("mdp", "succeeded"),) and days[2].lab_runs == (("td_learning", "failed"),)
    assert days[3].today and not days[3].future and days[4].future
    assert "| D2 | 2026-02-28 | 3 ████████████ | 0 | 3/4 | mdp succeeded |" in md
    assert "| D4 (today) | 2026-03-02 | 0 | 0 | — | — |" in md
    tot = brief.totals
    assert (tot.introduced, tot.reviews, tot.card_reviews, tot.quiz_answers, tot.quiz_score, tot.lab_runs,
            tot.lab_succeeded) == (3, 7, 7, 4, 0.75, 2, 1)


def test_activity_after_day_14_gets_one_row(populated):
    populated.srs.rate("mdp-two", GOOD, D1 + 20 * DAY)
    brief = B.build_brief(populated, "en", now=D1 + 20 * DAY + 60)
    assert len(brief.timeline) == 15 and brief.timeline[-1].number is None and brief.timeline[-1].reviews == 1
    assert "| after day 14 | — | 1" in B.render_markdown(brief)


def test_short_text_keeps_math_whole_and_stops_at_the_first_sentence():
    assert B.short_text("No. Each group is scored against its own mean, so no critic is needed. More.") == (
        "No. Each group is scored against its own mean, so no critic is needed.")
    assert B.short_text("With $x = 0.5$ the value is e.g. high, i.e. fine for this case here. Next sentence.") == (
        "With $x = 0.5$ the value is e.g. high, i.e. fine for this case here.")
    assert B.short_text("line one\nline two.\n\nsecond paragraph") == "line one line two."
    long = "$" + "a+" * 200 + "b$ tail"
    assert B.short_text(long) == long[:long.index(" tail")] + " …"  # never cut inside $…$
    cut = B.short_text("word " * 100)
    assert cut.endswith(" …") and len(cut) <= B.model.MAX_BACK_CHARS + 2
    assert B.short_text("不需要。组内均值充当基线。") == "不需要。组内均值充当基线。"


def test_curves_prefer_long_series_one_per_group():
    series = {"gamma_sweep/gamma": [(1, 0.5), (2, 0.9)], "gamma_sweep/steps": [(1, 2.0), (2, 9.0)],
              "vi/residual": [(k, 1.0 / k) for k in range(1, 30)], "vi/log": [(k, -k) for k in range(1, 30)],
              "eval/return": [(1, 1.0), (2, 2.0)], "flat": [(1, 1.0), (2, 1.0)]}
    assert B.pick_curves(series, 3) == ["eval/return", "vi/log", "gamma_sweep/gamma"]


# -- HTML ---------------------------------------------------------------------------------------

class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action", "poster", "data")]

    handle_startendtag = handle_starttag


def _check_self_contained(page: str) -> _Refs:
    parser = _Refs()
    parser.feed(page)
    assert not [r for r in parser.refs if r.startswith(("http:", "https:", "//", "file:", "data:"))]
    assert not {"script", "link", "img", "iframe", "object"} & set(parser.tags)
    assert "@import" not in page and "url(" not in page
    return parser


def test_html_is_well_formed_self_contained_with_svg_charts(populated):
    page = B.render_html(B.build_brief(populated, "en"))
    root = ET.fromstring(page)  # well-formed XML (the DOCTYPE included)
    ns = "{http://www.w3.org/1999/xhtml}"
    assert root.tag == f"{ns}html"
    svgs = root.findall(".//{http://www.w3.org/2000/svg}svg")
    assert len(svgs) >= 4  # mastery, timeline and the run's two curves
    parser = _check_self_contained(page)
    assert all(r.startswith("#m-") for r in parser.refs)  # only links within the page
    assert f"<code>{RUN_ID}</code>" in page and "vi/bellman_residual" in page
    assert "4.451" in page and ">56<" in page
    assert "No lab runs yet" not in page


def test_empty_html_is_valid_and_says_what_is_missing(course):
    page = B.render_html(B.build_brief(course, "en"))
    ET.fromstring(page)
    _check_self_contained(page)
    assert "<code>llmcore-tui lab run mdp --toy</code>" in page
    assert page.count("<svg") == 2  # no run, no curve: the mastery and timeline charts only


def test_html_math_unicode_fallback(course):
    page = B.render_html(B.build_brief(course, "en"), mathml=False)
    assert '<span class="math" title="\\gamma">γ</span>' in page
    assert "<math" not in page
    ET.fromstring(page)


def test_html_math_as_mathml_when_latex2mathml_is_installed(course):
    pytest.importorskip("latex2mathml")
    page = B.render_html(B.build_brief(course, "en"))
    assert re.search(r'<math (?=[^>]*alttext="\\gamma")(?=[^>]*xmlns="http://www.w3.org/1998/Math/MathML")', page)
    ET.fromstring(page)


def test_inline_html_escapes_and_formats():
    out = B.inline_html("a <b> & `x<y` **bold** $\\alpha$", mathml=False)
    assert out.startswith("a &lt;b&gt; &amp; <code>x&lt;y</code> <strong>bold</strong> ")
    assert "α" in out


# -- writing ------------------------------------------------------------------------------------

def test_write_brief_is_atomic_and_records_the_export(populated, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "brief.html"
    assert populated.store.get_setting(B.SETTING) is None
    B.write_brief(populated, target, "html", "en")
    assert os.listdir(out_dir) == ["brief.html"]  # no temporary file left behind
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert populated.store.get_setting(B.SETTING) == FIXED_NOW
    brief_day = next(s for s in populated.day_statuses() if s.day.module == "brief")
    assert any(c.name == "brief" and c.met for c in brief_day.criteria)
    # a second export replaces the file
    B.write_brief(populated, target, "markdown", "zh")
    assert target.read_text(encoding="utf-8").startswith("# 个人技术简报")
    assert os.listdir(out_dir) == ["brief.html"]


def test_write_brief_refuses_folders_and_missing_folders(course, tmp_path):
    with pytest.raises(B.BriefError, match="is a folder"):
        B.write_brief(course, tmp_path, "md")
    with pytest.raises(B.BriefError, match="does not exist"):
        B.write_brief(course, tmp_path / "nope" / "brief.md", "md")
    with pytest.raises(B.BriefError, match="unknown format"):
        B.write_brief(course, tmp_path / "b.pdf", "pdf")
    with pytest.raises(B.BriefError, match="unknown language"):
        B.write_brief(course, tmp_path / "b.md", "md", "fr")
    assert course.store.get_setting(B.SETTING) is None
    assert not (tmp_path / "nope").exists() and not (tmp_path / "b.pdf").exists()


def test_a_failed_render_keeps_the_old_file(course, tmp_path, monkeypatch):
    target = tmp_path / "brief.md"
    target.write_text("old", encoding="utf-8")
    before = set(os.listdir(tmp_path))

    def broken(text):
        raise RuntimeError("boom")

    monkeypatch.setattr(B.output, "render", lambda brief, fmt: "x" * 10)
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(RuntimeError):
        B.write_brief(course, target, "md")
    assert target.read_text(encoding="utf-8") == "old"
    assert set(os.listdir(tmp_path)) == before
    assert course.store.get_setting(B.SETTING) is None


def test_an_unwritable_folder_or_file_is_refused(course, tmp_path, monkeypatch):
    target = tmp_path / "brief.md"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(B.BriefError, match="the folder .* is not writable"):
        B.write_brief(course, target, "md")
    monkeypatch.setattr(os, "access", real_access)
    target.write_text("old", encoding="utf-8")
    target.chmod(0o444)
    if not os.access(target, os.W_OK):  # root may write anything: then only the folder check applies
        with pytest.raises(B.BriefError, match="read-only"):
            B.write_brief(course, target, "md")
    target.chmod(0o644)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)  # the folder looked writable but is not (ACLs, read-only mount)
    with pytest.raises(B.BriefError, match="cannot write .*: Permission denied"):
        B.write_brief(course, target, "md")
    assert target.read_text(encoding="utf-8") == "old"
    assert course.store.get_setting(B.SETTING) is None


# -- the command --------------------------------------------------------------------------------

def _cli(db: Path) -> typer.Typer:
    """A throwaway root like llmcore_tui.cli.app: --db/--lang set ctx.obj, then export-brief."""
    from llmcore_tui.cli import Options
    from llmcore_tui.cli.brief import export_brief

    app = typer.Typer(add_completion=False)

    @app.callback()
    def root(ctx: typer.Context, lang: Optional[str] = typer.Option(None, "--lang")) -> None:
        ctx.obj = Options(db, "--db", lang or "en")

    app.command("export-brief")(export_brief)
    return app


runner = CliRunner()


def test_cli_writes_html_and_markdown(tmp_path, content, monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "p.db"
    result = runner.invoke(_cli(db), ["export-brief", "--format", "html", "-o", "mine.html"])
    assert result.exit_code == 0, result.output
    assert "wrote mine.html (html, en): 13 modules" in result.output
    assert "No lab runs yet — run `llmcore-tui lab run mdp --toy`." in result.output
    ET.fromstring((tmp_path / "mine.html").read_text(encoding="utf-8"))
    result = runner.invoke(_cli(db), ["export-brief"])  # default: brief.md here
    assert result.exit_code == 0, result.output
    assert (tmp_path / "brief.md").read_text(encoding="utf-8").startswith("# Personal technical brief")
    result = runner.invoke(_cli(db), ["export-brief", "--format", "html"])
    assert result.exit_code == 0 and (tmp_path / "brief.html").is_file()
    from llmcore_tui.core.store import Store

    store = Store(db)
    try:
        assert store.get_setting(B.SETTING) is not None
    finally:
        store.close()


def test_cli_language_comes_from_the_command_then_the_root(tmp_path, content, monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    db = tmp_path / "p.db"
    out = tmp_path / "b.md"
    assert runner.invoke(_cli(db), ["export-brief", "-o", str(out), "--lang", "zh"]).exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("# 个人技术简报")
    assert runner.invoke(_cli(db), ["--lang", "zh", "export-brief", "-o", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("# 个人技术简报")
    assert runner.invoke(_cli(db), ["--lang", "zh", "export-brief", "-o", str(out), "--lang", "en"]).exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("# Personal technical brief")


@pytest.mark.parametrize("args, message", [
    (["--format", "pdf"], "unknown format 'pdf': expected md or html"),
    (["--lang", "fr"], "unknown language 'fr'"),
    (["-o", "{tmp}"], "is a folder"),
    (["-o", "{tmp}/missing/brief.md"], "does not exist"),
    (["-o", "{tmp}/file.txt/brief.md"], "is not a folder"),
])
def test_cli_usage_errors_exit_2(tmp_path, content, monkeypatch, args, message):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    db = tmp_path / "p.db"
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(_cli(db), ["export-brief", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not db.exists()  # refused before the database was opened


# -- headless Chromium ----------------------------------------------------------------------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit, non-interlaced PNG (Chromium's)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, head = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = head
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(v for k, v in enumerate(line) if k % 4 != 3))
        prev = line
    return width, height, rows


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_html_opens_in_headless_chromium_and_draws_its_charts(populated, tmp_path):
    page = tmp_path / "brief.html"
    B.write_brief(populated, page, "html", "en")
    browser = _chromium()
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}", "--force-device-scale-factor=1",
              "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == page.read_text(encoding="utf-8").count("<svg")
    assert "Personal technical brief" in dom.stdout
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr
    shot = tmp_path / "shot.png"
    run = subprocess.run([*common, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    blue = bytes((0x3B, 0x7D, 0xD8))  # the recall and review bars
    orange = bytes((0xF0, 0x96, 0x2F))  # the quiz bars
    pixels = [row[i:i + 3] for row in rows[::2] for i in range(0, len(row), 6)]
    assert pixels.count(blue) > 200 and pixels.count(orange) > 50
