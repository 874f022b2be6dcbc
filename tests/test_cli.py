"""The CLI (typer) through CliRunner: check, stats, settings, database choice and errors."""

from __future__ import annotations

import sqlite3

from typer.testing import CliRunner

from llmcore_tui.cli import app
from llmcore_tui.core.store import APPLICATION_ID, SCHEMA_VERSION
from tests.conftest import card_block, write_card_file

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("check", "stats", "settings"):
        assert command in result.output


def test_check_passes_on_valid_content_and_counts_cards(content, monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["1", "mdp", "3"] for line in lines)
    assert any(line.split()[:3] == ["2", "td_learning", "2"] for line in lines)


def test_check_fails_with_file_and_line(content, monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    broken = card_block("mdp-broken").replace("### back.zh\n答案：Answer.\n", "")
    write_card_file(content / "cards", "03-more.md", "mdp", 1, [broken])
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "cards/03-more.md:8: card mdp-broken: missing section(s) back.zh" in result.output


def test_stats_names_the_database_and_today(tmp_path, content, monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    db = tmp_path / "mine.db"
    result = runner.invoke(app, ["--db", str(db), "stats"])
    assert result.exit_code == 0, result.output
    assert f"database: {db} (--db)" in result.output
    assert "calendar day 1 of 14; on day 1" in result.output and "new available today: 3" in result.output
    assert "next: [r] Learn 3 new cards (3 MDP)" in result.output


def test_env_var_chooses_the_database(tmp_path, content, monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    monkeypatch.setenv("LLMCORE_DB", str(tmp_path / "env.db"))
    result = runner.invoke(app, ["stats"])
    assert f"database: {tmp_path / 'env.db'} (LLMCORE_DB)" in result.output


def test_settings_set_validates(tmp_path, content, monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    db = str(tmp_path / "p.db")
    first = runner.invoke(app, ["--db", db, "settings", "set", "new_per_day", "7"])
    assert first.stdout.strip() == "new_per_day = 7"
    assert "created a new progress database" in first.stderr  # the first use says so, on stderr
    bad = runner.invoke(app, ["--db", db, "settings", "set", "new_per_day", "lots"])
    assert bad.exit_code == 2 and "new_per_day must be a int" in bad.output
    shown = runner.invoke(app, ["--db", db, "settings", "show"])
    assert "new_per_day" in shown.output and " 7 " in shown.output


def test_newer_database_gives_a_clear_error_not_a_traceback(tmp_path, content, monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    db = tmp_path / "future.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # as a newer llmcore-tui writes it
    conn.close()
    result = runner.invoke(app, ["--db", str(db), "stats"])
    assert result.exit_code == 1
    assert "newer llmcore-tui" in result.output and "Traceback" not in result.output


def test_bad_lang_is_rejected():
    result = runner.invoke(app, ["--lang", "fr", "stats"])
    assert result.exit_code == 2


def test_plain_launch_is_recognised_and_everything_else_goes_to_typer():
    from pathlib import Path

    from llmcore_tui.cli import plain_launch

    assert plain_launch([]) == (None, None)
    assert plain_launch(["--db", "x.db", "--lang", "zh"]) == (Path("x.db"), "zh")
    assert plain_launch(["--db=x.db"]) == (Path("x.db"), None)
    for argv in (["stats"], ["--help"], ["--db"], ["--lang", "fr"], ["--db", "a", "--db", "b"], ["--db", "a", "check"]):
        assert plain_launch(argv) is None, argv
