"""The card loader: every problem with file and line, valid cards still loaded, cache."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmcore_tui.core.content import load_deck, parse_card_file
from llmcore_tui.core.roadmap import MODULE_DAYS
from tests.conftest import card_block, write_card_file


def problems_of(path, **kw):
    return [str(p) for p in parse_card_file(path, path.parent.parent, MODULE_DAYS, **kw).problems]


def test_valid_file_loads_every_card(content):
    deck = load_deck(content / "cards", MODULE_DAYS)
    assert deck.problems == []
    assert [c.id for c in deck.cards] == ["mdp-one", "mdp-two", "mdp-three", "td-one", "td-two"]
    card = deck.by_id["mdp-one"]
    assert card.front["en"] == "What is $\\gamma$?" and card.back["zh"] == "答案：The discount."
    assert card.module == "mdp" and card.day == 1 and card.line == 8


def test_missing_section_is_reported_with_its_line_and_other_cards_still_load(tmp_path):
    good = card_block("mdp-good")
    bad = "## mdp-bad\n\n### front.en\nQ\n\n### back.en\nA\n\n### front.zh\n问\n"
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, [good, bad])
    deck = parse_card_file(path, tmp_path, MODULE_DAYS)
    assert [c.id for c in deck.cards] == ["mdp-good"]
    bad_line = path.read_text().splitlines().index("## mdp-bad") + 1
    assert [str(p) for p in deck.problems] == [f"cards/01-mdp.md:{bad_line}: card mdp-bad: missing section(s) back.zh"]


def test_each_kind_of_mistake_names_file_and_line(tmp_path):
    text = (
        "---\nmodule: mdp\nday: 1\ntitle.en: MDP\ntitle.zh: 马尔可夫\n---\n\n"  # lines 1-7
        "## Bad_ID\n\n### front.en\nQ\n\n### back.en\nA\n\n### front.zh\n问\n\n### back.zh\n答\n\n"  # 8
        "## mdp-x\n\n### front.en\nQ\n\n### back.en\n\n### front.zh\n问\n\n### back.zh\n答\n\n"  # 22: empty back.en at 27
        "## mdp-y\n\n### front.en\nQ $x\n\n### back.en\nA\n\n### front.zh\n问\n\n### back.zh\n答\n\n"  # 35: unbalanced $ at 37
        "## mdp-z\n\n### front.en\nQ\n\n### back.en\nA\n\n### front.fr\nQ\n\n### front.zh\n问\n\n### back.zh\n答\n"  # 49: front.fr at 57
    )
    path = tmp_path / "cards" / "01-mdp.md"
    path.parent.mkdir()
    path.write_text(text)
    assert problems_of(path) == [
        "cards/01-mdp.md:8: card id 'Bad_ID' must be lowercase letters, digits and '-'",
        "cards/01-mdp.md:27: card mdp-x: section 'back.en' is empty",
        "cards/01-mdp.md:37: card mdp-y: unbalanced '$' in 'front.en'",
        "cards/01-mdp.md:57: card mdp-z: unknown section 'front.fr'; expected one of front.en, back.en, front.zh, back.zh",
    ]


def test_front_matter_problems(tmp_path):
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "a.md").write_text("## no-front-matter\n")
    (folder / "b.md").write_text("---\nmodule: nonsense\nday: 3\ntitle.en: x\ntitle.zh: y\n---\n")
    (folder / "c.md").write_text("---\nmodule: mdp\nday: 2\ntitle.en: x\ntitle.zh: y\n---\n")
    (folder / "d.md").write_text("---\nmodule: mdp\nday: one\ntitle.en: x\n---\n")
    assert problems_of(folder / "a.md")[0] == "cards/a.md:1: missing front matter: the file must start with a '---' line"
    assert problems_of(folder / "b.md")[0].startswith("cards/b.md:2: unknown module 'nonsense'")
    assert problems_of(folder / "c.md") == ["cards/c.md:3: module 'mdp' belongs to day 1, not 2"]
    assert problems_of(folder / "d.md") == ["cards/d.md:3: 'day' must be a number from 1 to 14, got 'one'",
                                            "cards/d.md:1: front matter has no 'title.zh'"]


def test_duplicate_ids_across_files_keep_the_first(tmp_path):
    write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, [card_block("same-id")])
    write_card_file(tmp_path / "cards", "02-td.md", "td_learning", 2, [card_block("same-id")])
    deck = load_deck(tmp_path / "cards", MODULE_DAYS)
    assert [c.module for c in deck.cards] == ["mdp"]
    assert [str(p) for p in deck.problems] == ["cards/02-td.md:8: duplicate card id 'same-id' (first at cards/01-mdp.md:8)"]


def test_headings_inside_code_blocks_are_not_cards(tmp_path):
    block = card_block("mdp-code", back="Example:\n\n```\n## not-a-card\n### back.zh\n```\n")
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, [block])
    deck = parse_card_file(path, tmp_path, MODULE_DAYS)
    assert deck.problems == [] and [c.id for c in deck.cards] == ["mdp-code"]
    assert "## not-a-card" in deck.cards[0].back["en"]


def test_cache_returns_the_same_deck_and_notices_edits(tmp_path):
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, [card_block("mdp-a")])
    cache = tmp_path / "cache"
    first = load_deck(tmp_path / "cards", MODULE_DAYS, cache)
    assert list(cache.glob("cards-*.json"))
    assert load_deck(tmp_path / "cards", MODULE_DAYS, cache).cards == first.cards
    path.write_text(path.read_text() + card_block("mdp-b"))
    assert [c.id for c in load_deck(tmp_path / "cards", MODULE_DAYS, cache).cards] == ["mdp-a", "mdp-b"]


def test_not_utf8_is_reported_at_its_line_and_the_other_cards_still_load(tmp_path):
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1,
                           [card_block("mdp-a"), card_block("mdp-b", back="caf\u00e9 ok"), card_block("mdp-c")])
    text = path.read_text(encoding="utf-8")
    path.write_bytes(text.replace("caf\u00e9 ok", "caf\u00e9 ok").encode("utf-8").replace(b"caf\xc3\xa9", b"caf\xe9", 1))
    bad_line = text.splitlines().index("caf\u00e9 ok") + 1
    deck = parse_card_file(path, tmp_path, MODULE_DAYS)
    assert [c.id for c in deck.cards] == ["mdp-a", "mdp-c"]
    assert [str(p) for p in deck.problems] == [
        f"cards/01-mdp.md:{bad_line}: not UTF-8 text: byte 0xe9 at column 4 (invalid continuation byte); "
        "save the file as UTF-8 (the card or question holding this line is skipped)"]


def test_not_utf8_in_front_matter_is_a_problem_not_a_crash(tmp_path):
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "01-mdp.md").write_bytes(b"---\nmodule: mdp\n\xff\xfe\n")
    problems = problems_of(folder / "01-mdp.md")
    assert problems[0].startswith("cards/01-mdp.md:3: not UTF-8 text: byte 0xff at column 1")


def english_back(card_id: str, back: str) -> str:
    """A card whose back.en is ``back`` and whose other sections are plain text."""
    return f"## {card_id}\n\n### front.en\nQ\n\n### back.en\n{back}\n\n### front.zh\n问\n\n### back.zh\n答\n\n"


def test_an_unclosed_fence_is_reported_where_it_opens_and_swallows_nothing(tmp_path):
    blocks = [card_block(f"mdp-{k}") for k in range(20)]
    blocks[1] = english_back("mdp-1", "Example:\n\n```python\nx = 1\n")  # never closed
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, blocks)
    fence_line = path.read_text(encoding="utf-8").splitlines().index("```python") + 1
    deck = parse_card_file(path, tmp_path, MODULE_DAYS)
    assert [c.id for c in deck.cards] == [f"mdp-{k}" for k in range(20) if k != 1]
    assert [str(p) for p in deck.problems] == [
        f"cards/01-mdp.md:{fence_line}: code fence ``` opened here is never closed: add a closing ``` line "
        "(the card or question holding it is skipped until then)"]


def test_a_fence_left_open_before_another_block_is_blamed_not_the_block(tmp_path):
    blocks = [english_back("mdp-a", "```\nleft open\n"), card_block("mdp-b"),
              english_back("mdp-c", "```python\n## not-a-card\n```")]
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, blocks)
    lines = path.read_text(encoding="utf-8").splitlines()
    deck = parse_card_file(path, tmp_path, MODULE_DAYS)
    assert [c.id for c in deck.cards] == ["mdp-b", "mdp-c"]
    assert "## not-a-card" in deck.by_id["mdp-c"].back["en"]
    assert [p.line for p in deck.problems] == [lines.index("```") + 1]
    assert f"still open at line {lines.index('```python') + 1}" in deck.problems[0].message


def test_a_line_of_inline_code_is_not_a_fence(tmp_path):
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1,
                           [card_block("mdp-a", back="```x``` is inline code"), card_block("mdp-b")])
    deck = parse_card_file(path, tmp_path, MODULE_DAYS)
    assert deck.problems == [] and [c.id for c in deck.cards] == ["mdp-a", "mdp-b"]


def test_math_the_terminal_cannot_show_is_reported_at_its_line_and_the_card_kept(tmp_path):
    back = "First line.\nThen $x + \\foo{y}$ and\n$$\\frac{1}$$"
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, [card_block("mdp-m", back=back)])
    lines = path.read_text(encoding="utf-8").splitlines()
    deck = parse_card_file(path, tmp_path, MODULE_DAYS)
    assert [c.id for c in deck.cards] == ["mdp-m"]
    en, zh = lines.index("Then $x + \\foo{y}$ and") + 1, lines.index("答案：First line.") + 2
    assert [str(p) for p in deck.problems] == [
        f"cards/01-mdp.md:{en}: card mdp-m: math in 'back.en': unknown LaTeX command \\foo: the terminal "
        "cannot show it (use a standard command, or teach llmcore_tui/core/mathtext.py)",
        f"cards/01-mdp.md:{en + 1}: card mdp-m: math in 'back.en': \\frac needs an argument",
        f"cards/01-mdp.md:{zh}: card mdp-m: math in 'back.zh': unknown LaTeX command \\foo: the terminal "
        "cannot show it (use a standard command, or teach llmcore_tui/core/mathtext.py)",
        f"cards/01-mdp.md:{zh + 1}: card mdp-m: math in 'back.zh': \\frac needs an argument",
    ]


def test_section_checks_are_one_list_shared_with_quizzes(tmp_path, monkeypatch):
    from llmcore_tui.core import content, quiz

    def shout(text, section):
        if "TODO" in text:
            yield text.index("TODO"), f"TODO left in {section}"

    monkeypatch.setattr(content, "SECTION_CHECKS", [*content.SECTION_CHECKS, shout])
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, [card_block("mdp-t", back="TODO")])
    assert [p.message for p in parse_card_file(path, tmp_path, MODULE_DAYS).problems] == [
        "card mdp-t: TODO left in back.en", "card mdp-t: TODO left in back.zh"]
    text = ("---\nmodule: mdp\nday: 1\ntitle.en: M\ntitle.zh: M\n---\n\n## mdp-q\nkind: recall\n\n"
            "### question.en\nQ?\n\n### question.zh\n问？\n\n### answer.en\nA\n\n### answer.zh\n答\n\n"
            "### explanation.en\nTODO\n\n### explanation.zh\n解\n")
    bank = quiz.parse_quiz(text, "quizzes/01-mdp.md", {"mdp": 1})
    assert [str(p) for p in bank.problems] == ["quizzes/01-mdp.md:24: question mdp-q: TODO left in explanation.en"]
    assert [q.id for q in bank.questions] == ["mdp-q"]


def test_quizzes_report_an_unclosed_fence_and_keep_the_questions_after_it():
    from llmcore_tui.core import quiz

    def question(qid, explanation="E"):
        return (f"## {qid}\nkind: recall\n\n### question.en\nQ?\n\n### question.zh\n问？\n\n"
                f"### answer.en\nA\n\n### answer.zh\n答\n\n### explanation.en\n{explanation}\n\n"
                "### explanation.zh\n解\n\n")

    text = ("---\nmodule: mdp\nday: 1\ntitle.en: M\ntitle.zh: M\n---\n\n"
            + question("mdp-a", "```\ncode") + question("mdp-b") + question("mdp-c"))
    bank = quiz.parse_quiz(text, "quizzes/01-mdp.md", {"mdp": 1})
    assert [q.id for q in bank.questions] == ["mdp-b", "mdp-c"]
    fence_line = text.splitlines().index("```") + 1
    assert [(p.line, p.message.split(":")[0]) for p in bank.problems] == [(fence_line, "code fence ``` opened here is never closed")]


# '"' too: in a zh section an ASCII double quote is reported (Chinese quotes with “…”)
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="#$`~\\<>&*_[]|\""),
                min_size=1, max_size=60).map(str.strip).filter(bool)


@settings(max_examples=60, deadline=None)
@given(front=_text, back=_text)
def test_any_plain_text_round_trips(tmp_path_factory, front, back):
    folder = tmp_path_factory.mktemp("deck") / "cards"
    path = write_card_file(folder, "01-mdp.md", "mdp", 1, [card_block("mdp-prop", front, back)])
    deck = parse_card_file(path, folder.parent, MODULE_DAYS)
    assert deck.problems == []
    assert deck.cards[0].front["en"] == front and deck.cards[0].back["en"] == back
