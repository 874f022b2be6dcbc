"""One Chinese term per concept: the glossary (cards/glossary.md) and the check rule."""

from pathlib import Path

import pytest

from conftest import write_card_file
from llmcore_tui.core import glossary as G
from llmcore_tui.core.content import card_files, load_deck, parse_card_file
from llmcore_tui.core.roadmap import MODULE_DAYS

REPO = Path(__file__).resolve().parents[1]


def shipped() -> list[G.Term]:
    return G.parse_glossary((REPO / "cards" / G.GLOSSARY_FILE).read_text(encoding="utf-8"))


def test_the_shipped_glossary_fixes_the_terms_the_review_found_mixed():
    terms = {t.english: t for t in shipped()}
    assert terms["on-policy"].chinese == "同策略" and "在策略" in terms["on-policy"].variants
    assert terms["off-policy"].chinese == "异策略" and "离策略" in terms["off-policy"].variants
    assert terms["actor"].chinese == "演员" and {"行动者", "执行者"} <= set(terms["actor"].variants)
    assert terms["reward hacking"].chinese == "奖励投机" and "奖励黑客" in terms["reward hacking"].variants
    assert terms["trust region"].chinese == "信赖域" and "信任域" in terms["trust region"].variants
    # no standard term is another row's variant: the rule could never be satisfied
    variants = {v for t in terms.values() for v in t.variants}
    assert not variants & {t.chinese for t in terms.values()}


def card(zh_back: str, en_back: str = "Answer.") -> str:
    return (f"## mdp-g\n\n### front.en\nQ?\n\n### back.en\n{en_back}\n\n"
            f"### front.zh\n问题？\n\n### back.zh\n{zh_back}\n\n")


def problems(tmp_path, *cards: str) -> list[str]:
    path = write_card_file(tmp_path / "cards", "01-mdp.md", "mdp", 1, list(cards))
    return [str(p) for p in parse_card_file(path, tmp_path, MODULE_DAYS).problems]


def test_a_variant_is_reported_at_its_line_with_the_term_to_use(tmp_path):
    found = problems(tmp_path, card("第一行。\nQ-learning 是离策略方法，PPO 是在策略方法。"))
    assert len(found) == 2
    line = 21  # front matter: lines 1-7; '## mdp-g' 8; '### back.zh' 19; '第一行。' 20
    assert all(p.startswith(f"cards/01-mdp.md:{line}: card mdp-g: 'back.zh' uses ") for p in found), found
    assert any("'离策略' for 'off-policy': write '异策略'" in p for p in found)
    assert any("'在策略' for 'on-policy': write '同策略'" in p for p in found)


def test_ordinary_phrases_math_code_and_english_are_not_reported(tmp_path):
    zh = ("状态在策略下的价值；得分函数在策略梯度中期望为零；策略偏离策略分布。"
          "`\"离策略\"` 与 $\\text{离策略}$ 都不算。“引号”没问题。")
    assert problems(tmp_path, card(zh, en_back='An "off-policy" method; 离策略 in English text is not checked.')) == []


def test_ascii_double_quotes_in_chinese_text_are_reported(tmp_path):
    found = problems(tmp_path, card('所谓"致命三要素"。'))
    assert len(found) == 2 and all("ASCII double quote" in p and "“…”" in p for p in found)


def test_a_quiz_section_is_checked_too():
    from llmcore_tui.core import quiz

    text = ("---\nmodule: mdp\nday: 1\ntitle.en: M\ntitle.zh: M\n---\n\n## mdp-q-g\nkind: recall\n\n"
            "### question.en\nQ?\n\n### question.zh\n什么是奖励黑客？\n\n### answer.en\nA\n\n### answer.zh\n答\n\n"
            "### explanation.en\nE\n\n### explanation.zh\n解\n")
    bank = quiz.parse_quiz(text, "quizzes/01-mdp.md", {"mdp": 1})
    assert [(p.line, "write '奖励投机'" in p.message) for p in bank.problems] == [(15, True)]


def test_a_broken_glossary_is_refused_not_silently_empty():
    head = "| English | 中文 | replaces | fine inside |\n|---|---|---|---|\n"
    with pytest.raises(ValueError, match="4 cells"):
        G.parse_glossary(head + "| actor | 演员 | 行动者 |\n")
    with pytest.raises(ValueError, match="both the term and a variant"):
        G.parse_glossary(head + "| actor | 演员 | 演员, 行动者 | |\n")
    with pytest.raises(ValueError, match="none of the variants"):
        G.parse_glossary(head + "| actor | 演员 | 行动者 | 好人 |\n")
    with pytest.raises(ValueError, match="no table"):
        G.parse_glossary("no table here\n")


def test_the_glossary_is_not_read_as_a_card_file():
    assert (REPO / "cards" / G.GLOSSARY_FILE).exists()
    assert G.GLOSSARY_FILE not in [p.name for p in card_files(REPO / "cards")]


def test_the_shipped_content_follows_the_glossary():
    from llmcore_tui.core import quiz

    deck = load_deck(REPO / "cards", MODULE_DAYS)
    bank = quiz.load_bank(REPO / "quizzes")
    bad = [str(p) for p in deck.problems + bank.problems if "glossary" in p.message or "ASCII double quote" in p.message]
    assert bad == []
    titles = "".join(v for t in deck.titles.values() for v in t.values())
    assert not [v for t in shipped() for v in t.variants if v in titles]


def test_the_rule_reads_the_glossary_of_the_content_in_use(tmp_path, monkeypatch):
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / G.GLOSSARY_FILE).write_text(
        "| English | 中文 | replaces | fine inside |\n|---|---|---|---|\n| agent | 智能体 | 代理 | 代理奖励 |\n",
        encoding="utf-8")
    monkeypatch.setenv("LLMCORE_CONTENT", str(tmp_path))
    found = list(G.check_terms("代理学习；代理奖励；离策略。", "back.zh"))
    assert [m.split(":")[0] for _, m in found] == ["'back.zh' uses '代理' for 'agent'"]
    assert list(G.check_terms("代理学习", "back.en")) == []
