"""Quizzes: parsing, validation (file:line), grading of every kind, parametric draws, and the
shipped quiz files (counts, both languages, every answer consistent)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from llmcore_tui.core import calc, quiz
from llmcore_tui.core.calc import GiB
from llmcore_tui.core.quiz import draw, grade

ROOT = Path(__file__).resolve().parents[1]
QUIZ_DIR = ROOT / "quizzes"
MODULES = quiz.module_days()

FRONT = """---
module: reference
day: 13
title.en: Reference
title.zh: 参考
---
"""


def section(name: str, text: str) -> str:
    return f"### {name}\n{text}\n\n"


def common(q_en="Question?", q_zh="问题？", e_en="Because.", e_zh="因为。") -> str:
    return (section("question.en", q_en) + section("question.zh", q_zh)
            + section("explanation.en", e_en) + section("explanation.zh", e_zh))


SINGLE = "## ref-q-single\nkind: single\nanswer: B\n\n" + common() + section(
    "choices.en", "- one\n- two\n- three") + section("choices.zh", "- 一\n- 二\n- 三")
MULTIPLE = "## ref-q-multi\nkind: multiple\nanswer: A, C\ntags: x, y\n\n" + common() + section(
    "choices.en", "- a\n- b\n- c\n- d") + section("choices.zh", "- 甲\n- 乙\n- 丙\n- 丁")
NUMERIC = "## ref-q-num\nkind: numeric\nanswer: 2 GiB\n\n" + common()
NUMERIC_ABS = "## ref-q-num-abs\nkind: numeric\nanswer: 10\ntolerance: 0.5\n\n" + common()
PARAMETRIC = """## ref-q-param
kind: parametric
function: kv_cache_bytes
param.layers: 24 | 32
param.kv_heads: 1..8
param.head_dim: 64 | 128
param.seq_len: 1024..8192 step 1024
param.batch: 1 | 2 | 4
param.bytes_per_value: 2
unit: GiB

""" + common("KV cache of {{layers}} layers, {{kv_heads}} KV heads x {{head_dim}}, {{seq_len}} tokens, batch {{batch}}?",
             "{{layers}} 层、{{kv_heads}} 个 KV 头（维度 {{head_dim}}），{{seq_len}} 个 token，批大小 {{batch}}，KV 缓存多大？",
             "2·{{layers}}·{{kv_heads}}·{{head_dim}}·{{seq_len}}·{{batch}}·2 B = {{answer}}",
             "2·{{layers}}·{{kv_heads}}·{{head_dim}}·{{seq_len}}·{{batch}}·2 B = {{answer}}")
PRESET_PARAM = """## ref-q-preset
kind: parametric
function: kv_cache
param.model: llama-2-7b | llama-3-8b
param.seq_len: 4096
unit: GiB

""" + common("KV cache of {{model}} at {{seq_len}} tokens?", "{{model}} 在 {{seq_len}} 个 token 时的 KV 缓存？")
RECALL = "## ref-q-recall\nkind: recall\n\n" + common() + section("answer.en", "Model answer.") + section(
    "answer.zh", "参考答案。")

ALL = SINGLE + MULTIPLE + NUMERIC + NUMERIC_ABS + PARAMETRIC + PRESET_PARAM + RECALL


def parse(body: str, front: str = FRONT) -> quiz.QuizBank:
    return quiz.parse_quiz(front + "\n" + body, "quizzes/13-reference.md", MODULES)


@pytest.fixture(scope="module")
def sample() -> dict[str, quiz.Question]:
    bank = parse(ALL)
    assert bank.problems == []
    return bank.by_id


# ---- parsing -----------------------------------------------------------------------------------

def test_parses_every_kind(sample):
    assert [q.kind for q in sample.values()] == ["single", "multiple", "numeric", "numeric", "parametric",
                                                 "parametric", "recall"]
    single = sample["ref-q-single"]
    assert single.choices == {"en": ("one", "two", "three"), "zh": ("一", "二", "三")}
    assert single.answer == (1,) and single.module == "reference" and single.day == 13
    assert single.text == {"en": "Question?", "zh": "问题？"}
    assert single.explanation["zh"] == "因为。"
    assert sample["ref-q-multi"].answer == (0, 2) and sample["ref-q-multi"].tags == ("x", "y")
    num = sample["ref-q-num"]
    assert (num.value, num.unit, num.system) == (2 * GiB, "GiB", "bytes")
    assert num.tolerance == quiz.Tolerance(0.01, 0)
    assert sample["ref-q-num-abs"].tolerance == quiz.Tolerance(0.0, 0.5)
    param = sample["ref-q-param"]
    assert param.params["kv_heads"] == tuple(range(1, 9))
    assert param.params["seq_len"] == (1024, 2048, 3072, 4096, 5120, 6144, 7168, 8192)
    assert param.params["bytes_per_value"] == (2,)
    assert sample["ref-q-recall"].model_answer == {"en": "Model answer.", "zh": "参考答案。"}
    # question line numbers point at the heading
    text = (FRONT + "\n" + ALL).splitlines()
    assert text[sample["ref-q-num"].line - 1] == "## ref-q-num"


@pytest.mark.parametrize("spec, values", [
    ("8 | 16 | 32", (8, 16, 32)), ("1..4", (1, 2, 3, 4)), ("0..10 step 5", (0, 5, 10)),
    ("0.9..0.99 step 0.03", (0.9, 0.93, 0.96, 0.99)), ("llama-2-7b | qwen2.5-7b", ("llama-2-7b", "qwen2.5-7b")),
    ("2", (2,)), ("int4", ("int4",)),
])
def test_param_specs(spec, values):
    assert quiz.parse_param_spec(spec) == values


@pytest.mark.parametrize("spec", ["8..1", "1..8 step 0", "a..b", "1 | | 2"])
def test_bad_param_specs(spec):
    with pytest.raises(ValueError):
        quiz.parse_param_spec(spec)


# ---- validation: every problem names the file and line -----------------------------------------

def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


BROKEN = [
    # (body or full text, the line the problem is on (a needle), part of the message)
    (SINGLE.replace("answer: B", "answer: E"), "answer: E", "not a choice letter A-C"),
    (SINGLE.replace("answer: B", "answer: A, B"), "answer: A, B", "single-choice question has one answer"),
    (SINGLE.replace("answer: B\n", ""), "## ref-q-single", "no 'answer' line"),
    (SINGLE.replace("- 二\n", ""), "### choices.zh", "choices.zh has 2 choices, choices.en has 3"),
    (SINGLE.replace("- two\n- three", "two"), "two", "expected a list item"),
    (SINGLE.replace("kind: single", "kind: essay"), "kind: essay", "'kind' must be one of"),
    (SINGLE.replace("kind: single\n", ""), "## ref-q-single", "no 'kind' line"),
    (SINGLE.replace("answer: B", "answer: B\nanswer: C"), "answer: C", "given twice"),
    (SINGLE.replace("answer: B", "answer: B\nfunction: kv_cache"), "function: kv_cache", "does not belong to a single"),
    (SINGLE.replace("### question.zh\n问题？", "### question.zh\n"), "### question.zh", "is empty"),
    (SINGLE.replace("### explanation.zh\n因为。\n", ""), "## ref-q-single", "missing section(s) explanation.zh"),
    (SINGLE.replace("### question.en", "### question.fr"), "### question.fr", "section 'question.fr' does not belong"),
    (SINGLE.replace("Question?", "Cost $x?"), "### question.en", "unbalanced '$'"),
    (SINGLE.replace("Question?", "Cost {{x}}?"), "Cost {{x}}?", "placeholders belong to parametric"),
    (SINGLE.replace("## ref-q-single", "## Ref_Q"), "## Ref_Q", "id must be lowercase"),
    (SINGLE + SINGLE, "## ref-q-single", "duplicate question id"),
    (NUMERIC.replace("2 GiB", "2 parsecs"), "2 parsecs", "unknown unit 'parsecs'"),
    (NUMERIC.replace("2 GiB", "lots"), "answer: lots", "not a number"),
    (NUMERIC.replace("answer: 2 GiB", "answer: 2 GiB\ntolerance: lots"), "tolerance: lots", "tolerance 'lots'"),
    (NUMERIC.replace("answer: 2 GiB", "answer: 2 GiB\ntolerance: 3 GFLOPs"), "tolerance: 3 GFLOPs", "amount in bytes"),
    (RECALL.replace("### answer.zh\n参考答案。\n", ""), "## ref-q-recall", "missing section(s) answer.zh"),
    (PARAMETRIC.replace("kv_cache_bytes", "kv_cache_size"), "function: kv_cache_size", "unknown function 'kv_cache_size'"),
    (PARAMETRIC.replace("param.batch: 1 | 2 | 4", "param.batches: 1 | 2 | 4"), "param.batches",
     "kv_cache_bytes() has no parameter 'batches'"),
    (PARAMETRIC.replace("param.layers: 24 | 32\n", ""), "function: kv_cache_bytes", "needs param.layers"),
    (PARAMETRIC.replace("1..8", "8..1"), "param.kv_heads", "is empty"),
    (PARAMETRIC.replace("unit: GiB", "unit: furlongs"), "unit: furlongs", "unknown unit"),
    (PARAMETRIC.replace("{{head_dim}}, {{seq_len}}", "{{head_dims}}, {{seq_len}}"), "{{head_dims}}",
     "placeholder {{head_dims}} is not a parameter"),
    (PARAMETRIC.replace("param.seq_len: 1024..8192 step 1024", "param.seq_len: -8 | 8"), "function: kv_cache_bytes",
     "fails: seq_len must be non-negative"),
    (PRESET_PARAM.replace("llama-3-8b", "gpt-9"), "param.model", "unknown preset(s) gpt-9"),
    ("Some text\n" + SINGLE, "Some text", "text before the first question"),
    ("# Title\n" + SINGLE, "# Title", "unexpected heading 'Title'"),
    ("## ref-q-x\nwhat is this\n" + common(), "what is this", "expected 'key: value'"),
]


@pytest.mark.parametrize("body, needle, message", BROKEN, ids=[b[2][:40] for b in BROKEN])
def test_each_problem_is_reported_with_file_and_line(body, needle, message):
    text = FRONT + "\n" + body
    bank = parse(body)
    expected_line = line_of(text, needle)
    if message == "duplicate question id":  # the second copy is the duplicate
        expected_line = [i for i, line in enumerate(text.splitlines(), 1) if line == needle][1]
    hits = [p for p in bank.problems if message in p.message]
    assert hits, bank.problems
    assert hits[0].path == "quizzes/13-reference.md"
    assert hits[0].line == expected_line, (hits[0], expected_line)
    assert str(hits[0]).startswith(f"quizzes/13-reference.md:{expected_line}: ")


def test_duplicate_ids_within_a_file_keep_the_first():
    bank = parse(SINGLE + SINGLE.replace("answer: B", "answer: C"))
    assert bank.by_id["ref-q-single"].answer == (1,)


@pytest.mark.parametrize("front, needle, message", [
    ("module: reference\nday: 13\ntitle.en: R\n", "---", "no 'title.zh'"),
    ("module: nosuch\nday: 13\ntitle.en: R\ntitle.zh: 参\n", "module: nosuch", "unknown module 'nosuch'"),
    ("module: mdp\nday: 2\ntitle.en: R\ntitle.zh: 参\n", "day: 2", "belongs to day 1, not 2"),
    ("module: review\nday: 12\ntitle.en: R\ntitle.zh: 参\n", "day: 12", "belongs to day 13, not 12"),
    ("module: mdp\nday: x\ntitle.en: R\ntitle.zh: 参\n", "day: x", "'day' must be a number"),
    ("module: mdp\nday: 1\ntitle.en: R\ntitle.zh: 参\npass: 120%\n", "pass: 120%", "'pass' must be a share"),
    ("module: mdp\nday: 1\ntitle.en: R\ntitle.zh: 参\ncolour: red\n", "colour: red", "unknown front matter key"),
])
def test_front_matter_problems(front, needle, message):
    text = "---\n" + front + "---\n\n" + SINGLE
    bank = quiz.parse_quiz(text, "q.md", MODULES)
    hits = [p for p in bank.problems if message in p.message]
    assert hits, bank.problems
    assert hits[0].line == line_of(text, needle)


def test_missing_front_matter_and_bad_files(tmp_path):
    assert "missing front matter" in quiz.parse_quiz(SINGLE, "q.md", MODULES).problems[0].message
    (tmp_path / "quizzes").mkdir()
    (tmp_path / "quizzes" / "01-bad.md").write_bytes(b"---\n\xff\xfe")
    (tmp_path / "quizzes" / "13-a.md").write_text(FRONT + SINGLE, encoding="utf-8")
    (tmp_path / "quizzes" / "13-b.md").write_text(FRONT + SINGLE, encoding="utf-8")
    bank = quiz.load_bank(tmp_path / "quizzes")
    messages = [str(p) for p in bank.problems]
    assert any(m.startswith("quizzes/01-bad.md:2:") and "UTF-8" in m for m in messages)  # the bytes' real line
    assert any(m.startswith("quizzes/13-b.md:") and "first at quizzes/13-a.md:" in m for m in messages)
    assert len(bank.questions) == 1
    assert quiz.load_bank(tmp_path / "nowhere").problems[0].message == "quiz folder not found"


# ---- grading -----------------------------------------------------------------------------------

def shown(sample, qid, seed=0):
    return draw(sample[qid], random.Random(seed))


@pytest.mark.parametrize("answer, correct, valid", [
    ("B", True, True), ("b", True, True), ([1], True, True), ("A", False, True), ("D", False, False),
    ("A, B", False, False), ("", False, False),
])
def test_grade_single(sample, answer, correct, valid):
    g = grade(shown(sample, "ref-q-single"), answer)
    assert (g.correct, g.valid) == (correct, valid)
    assert g.score == (1.0 if correct else 0.0)
    assert g.expected == "B: two" and g.expected_zh == "B: 二"
    assert g.explanation_en == "Because." and g.explanation_zh == "因为。"
    if not valid:
        assert g.feedback_for("en") and g.feedback_for("zh")


@pytest.mark.parametrize("answer, correct, score", [
    ("A, C", True, 1.0), ("ca", True, 1.0), (["A", "C"], True, 1.0), ([0, 2], True, 1.0),
    ("A", False, 0.5), ("A, B, C", False, 0.5), ("A, B", False, 0.0), ("B, D", False, 0.0),
])
def test_grade_multiple_with_partial_credit(sample, answer, correct, score):
    g = grade(shown(sample, "ref-q-multi"), answer)
    assert (g.correct, g.score) == (correct, score)
    assert g.given == ",".join(sorted(g.given.split(",")))


@pytest.mark.parametrize("answer, correct", [
    ("2 GiB", True), ("2GiB", True), ("2048 MiB", True), ("2", True), ("2.01", True), ("2^31 B", True),
    ("2,147,483,648 bytes", True), ("2.147 GB", True), ("2.15 GB", True), ("2.2 GB", False), ("2 GB", False),
    ("1 GiB", False), ("2.05 GiB", False), ("2 TiB", False),
])
def test_grade_numeric_with_units_and_tolerance(sample, answer, correct):
    g = grade(shown(sample, "ref-q-num"), answer)
    assert g.valid and g.correct is correct
    assert g.expected == "2 GiB"


@pytest.mark.parametrize("answer, message", [("two", "Could not read a number"), ("2 GFLOPs", "units of bytes")])
def test_grade_numeric_unreadable_answers_are_invalid(sample, answer, message):
    g = grade(shown(sample, "ref-q-num"), answer)
    assert not g.valid and not g.correct and message in g.feedback["en"] and g.feedback["zh"]


@pytest.mark.parametrize("answer, correct", [("10", True), ("10.5", True), ("9.4", False), ("1e1", True)])
def test_grade_numeric_absolute_tolerance(sample, answer, correct):
    assert grade(shown(sample, "ref-q-num-abs"), answer).correct is correct


def test_numeric_hints(sample):
    s = shown(sample, "ref-q-num")
    assert (s.unit_hint, s.tolerance_hint) == ("GiB", "±1%")
    assert shown(sample, "ref-q-num-abs").tolerance_hint == "±0.5"


@pytest.mark.parametrize("answer, score, correct", [
    ("yes", 1.0, True), (True, 1.0, True), ("对", 1.0, True), ("partly", 0.5, False), (0.5, 0.5, False),
    ("no", 0.0, False), (False, 0.0, False), ("错", 0.0, False),
])
def test_grade_recall_is_self_graded(sample, answer, score, correct):
    s = shown(sample, "ref-q-recall")
    assert s.model_answer_for("zh") == "参考答案。"
    g = grade(s, answer)
    assert (g.score, g.correct) == (score, correct)
    assert g.expected == "Model answer." and g.expected_zh == "参考答案。"


def test_grade_recall_rejects_nonsense(sample):
    assert not grade(shown(sample, "ref-q-recall"), "maybe").valid
    assert not grade(shown(sample, "ref-q-recall"), 3).valid


# ---- parametric ----------------------------------------------------------------------------------

def test_parametric_draw_is_seeded_and_graded_by_the_calculator(sample):
    q = sample["ref-q-param"]
    a, b = draw(q, random.Random(7)), draw(q, random.Random(7))
    assert a.params == b.params and a.text == b.text
    draws = {tuple(draw(q, random.Random(seed)).params.values()) for seed in range(30)}
    assert len(draws) > 20  # numbers really vary
    for seed in range(30):
        s = draw(q, random.Random(seed))
        p = s.params
        expected = calc.kv_cache_bytes(p["layers"], p["kv_heads"], p["head_dim"], p["seq_len"], p["batch"], 2)
        assert s.expected_value == expected
        assert f"{p['layers']} layers" in s.text_for("en") and f"{p['layers']} 层" in s.text_for("zh")
        assert "{{" not in s.text_for("en") + s.text_for("zh") + s.explanation_for("en")
        assert grade(s, f"{expected / GiB} GiB").correct
        assert grade(s, f"{expected} B").correct
        assert grade(s, f"{expected / 2**20:.1f} MiB").correct
        assert not grade(s, f"{expected * 1.1 / GiB} GiB").correct
        assert s.explanation_for("en").endswith(s.expected_for("en"))


def test_parametric_with_a_preset(sample):
    seen = {}
    for seed in range(20):
        s = draw(sample["ref-q-preset"], random.Random(seed))
        seen[s.params["model"]] = s
    assert set(seen) == {"llama-2-7b", "llama-3-8b"}
    assert seen["llama-2-7b"].expected_value == 2 * GiB and seen["llama-3-8b"].expected_value == 0.5 * GiB
    assert grade(seen["llama-3-8b"], "512 MiB").correct
    assert "llama-3-8b" in seen["llama-3-8b"].text_for("en")
    assert quiz.present_with(sample["ref-q-preset"], {"model": "llama-2-7b", "seq_len": 4096}).expected_for("en") == "2 GiB"


# ---- sittings and the pass mark -----------------------------------------------------------------

def test_summarize_and_pass_threshold(sample):
    qs = list(sample.values())
    sitting = quiz.draw_sitting(qs, random.Random(1))
    assert sorted(s.id for s in sitting) == sorted(sample)
    assert len(quiz.draw_sitting(qs, random.Random(1), limit=3)) == 3
    right = grade(shown(sample, "ref-q-single"), "B")
    wrong = grade(shown(sample, "ref-q-single"), "A")
    half = grade(shown(sample, "ref-q-multi"), "A")
    assert quiz.summarize([right] * 4 + [wrong]).passed  # exactly 80%
    assert not quiz.passed([right] * 3 + [wrong])
    r = quiz.summarize([right, half])
    assert (r.score, r.correct, r.total) == (0.75, 1, 2)
    assert quiz.passed([right, half], threshold=0.7)
    assert not quiz.summarize([]).passed
    assert quiz.PASS_THRESHOLD == 0.8


def test_pass_threshold_from_front_matter(tmp_path):
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "13-x.md").write_text(FRONT.replace("title.zh: 参考", "title.zh: 参考\npass: 90%") + SINGLE,
                                            encoding="utf-8")
    bank = quiz.load_bank(tmp_path / "q")
    assert bank.problems == []
    assert bank.pass_threshold("reference") == 0.9
    assert bank.pass_threshold("mdp") == quiz.PASS_THRESHOLD


# ---- the shipped quizzes -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> quiz.QuizBank:
    return quiz.load_bank(QUIZ_DIR)


def test_shipped_quizzes_have_no_problems(shipped):
    assert [str(p) for p in shipped.problems] == []


def test_shipped_counts(shipped):
    from llmcore_tui.core import roadmap

    counts = {m: len(shipped.for_module(m)) for m in shipped.modules}
    for module in roadmap.LEARNING_MODULES:
        assert counts.get(module, 0) >= 10, (module, counts)
    assert counts.get("review", 0) >= 25
    for q in shipped.questions:
        for lang in ("en", "zh"):
            assert q.text[lang].strip() and q.explanation[lang].strip(), q.location
        if q.kind in quiz.CHOICE_KINDS:
            assert all(q.choices["zh"]), q.location
        if q.kind == "recall":
            assert q.model_answer["zh"].strip(), q.location
    # files are named NN-<module>.md after their day, or NN-<module>-<topic>.md for a second file
    for info in shipped.quizzes:
        name = Path(info.path).name
        assert name == f"{info.day:02d}-{info.module}.md" or name.startswith(f"{info.day:02d}-{info.module}-"), name


def test_shipped_zh_texts_are_chinese(shipped):
    for q in shipped.questions:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in q.text["zh"] + q.explanation["zh"]), q.location


def test_shipped_ids_follow_the_module(shipped):
    for q in shipped.questions:
        assert q.id.startswith(q.module.replace("_", "-") + "-q-"), q.location


def test_every_shipped_question_grades_its_own_answer(shipped):
    rng = random.Random(0)
    for q in shipped.questions:
        for _ in range(5 if q.kind == "parametric" else 1):
            s = draw(q, rng)
            if q.kind in quiz.CHOICE_KINDS:
                answer = [*q.answer]
            elif q.kind == "recall":
                answer = "yes"
            else:
                answer = s.expected_for("en")
            g = grade(s, answer)
            assert g.correct and g.score == 1.0, (q.location, answer, g)


def test_shipped_zh_lines_do_not_break_between_chinese_characters(shipped):
    # A soft line break renders as a space: between two Chinese characters, or next to
    # full-width punctuation, that space is a typo.
    import re

    han, punct = "\u4e00-\u9fff", "\u3000-\u303f\uff00-\uffef"
    broken = re.compile(rf"[{han}]\n[{han}]|[{punct}]\n|\n[{punct}]")
    for q in shipped.questions:
        for text in (q.text["zh"], q.explanation["zh"], q.model_answer.get("zh", ""), *q.choices.get("zh", ())):
            m = broken.search(text)
            assert m is None, f"{q.location}: line break in {text[m.start() - 5:m.end() + 5]!r}"


def test_bad_bytes_skip_only_the_question_that_holds_them(tmp_path):
    folder = tmp_path / "quizzes"
    folder.mkdir()
    broken = NUMERIC.replace("answer: 2 GiB", "answer: 2 GiB").encode("utf-8").replace(b"kind: numeric", b"kind: numeric \xff")
    (folder / "13-x.md").write_bytes((FRONT + SINGLE).encode("utf-8") + broken + MULTIPLE.encode("utf-8"))
    bank = quiz.load_bank(folder)
    assert sorted(q.id for q in bank.questions) == ["ref-q-multi", "ref-q-single"]
    line = (FRONT + SINGLE).count("\n") + 2  # the numeric question's 'kind' line
    assert any(p.line == line and "UTF-8" in p.message for p in bank.problems), bank.problems
