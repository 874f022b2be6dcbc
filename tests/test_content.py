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


def test_not_utf8_is_a_problem_not_a_crash(tmp_path):
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "01-mdp.md").write_bytes(b"---\nmodule: mdp\n\xff\xfe\n")
    assert problems_of(folder / "01-mdp.md")[0].startswith("cards/01-mdp.md:1: not UTF-8 text")


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="#$`~\\<>&*_[]|"),
                min_size=1, max_size=60).map(str.strip).filter(bool)


@settings(max_examples=60, deadline=None)
@given(front=_text, back=_text)
def test_any_plain_text_round_trips(tmp_path_factory, front, back):
    folder = tmp_path_factory.mktemp("deck") / "cards"
    path = write_card_file(folder, "01-mdp.md", "mdp", 1, [card_block("mdp-prop", front, back)])
    deck = parse_card_file(path, folder.parent, MODULE_DAYS)
    assert deck.problems == []
    assert deck.cards[0].front["en"] == front and deck.cards[0].back["en"] == back
