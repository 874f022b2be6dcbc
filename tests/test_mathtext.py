"""LaTeX to Unicode for the terminal: meaning kept (grouping, spacing, operators), nothing dropped."""

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcore_tui.core.mathtext import (_SUB, _SUP, SYMBOLS, iter_math, latex_to_unicode, math_problems,
                                       render_math)


@pytest.mark.parametrize("latex, text", [
    # the five classes of issue 12, as shipped in cards/ and quizzes/
    (r"\|TV - TU\|_\infty \le \gamma \|V - U\|_\infty", "‖TV - TU‖_∞ ≤ γ ‖V - U‖_∞"),
    (r"\lVert TV - TU \rVert_\infty \le \gamma \lVert V - U \rVert_\infty", "‖TV - TU‖_∞ ≤ γ ‖V - U‖_∞"),
    (r"KL(\pi_\theta \| p)", "KL(π_θ ‖ p)"),
    (r"KL(\pi_{old} \Vert \pi_\theta)", "KL(π_old ‖ π_θ)"),
    (r"\mathrm{KL}(\pi \parallel \pi^*)", "KL(π ∥ π*)"),
    (r"\pi^*(s) = \arg\max_a Q^*(s, a)", "π*(s) = argmaxₐ Q*(s, a)"),
    (r"\operatorname{argmax}_{a'} Q_1(s', a')", "argmax_a′ Q₁(s′, a′)"),
    (r"\operatorname*{arg\,max}_y r(x, y)", "arg max_y r(x, y)"),
    (r"\binom{K}{2} = K(K-1)/2 = 6", "C(K, 2) = K(K - 1)/2 = 6"),
    (r"-\log \sigma(\beta x)", "-log σ(β x)"),
    (r"\beta \log \frac{\pi_\theta(y_w|x)}{\pi_{ref}(y_w|x)}", "β log(π_θ(y_w|x)/π_ref(y_w|x))"),
    (r"\mathbb{E}_{y \sim \pi_\theta}[r(x, y)]", "𝔼_{y∼π_θ}[r(x, y)]"),
    # spacing by class: rel and bin spaced, signs not, ops spaced but not from brackets
    (r"\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)", "δₜ = rₜ + γ V(sₜ₊₁) - V(sₜ)"),
    (r"a=-b", "a = -b"),
    (r"\pi(\cdot \mid s) + Q(s, \cdot)", "π(· | s) + Q(s, ·)"),
    (r"\exp\left( -\frac{1}{N} \sum_{t=1}^{N} \log p(y_t) \right)", "exp(-(1/N) ∑ₜ₌₁^N log p(yₜ))"),
    (r"\frac{1}{G}\sum_{i=1}^{G}\frac{1}{|o_i|}", "(1/G) ∑ᵢ₌₁^G (1/|oᵢ|)"),
    # fractions: parts that are not atoms get parentheses; the whole one too beside a factor
    (r"\frac{p-1}{m+p-1}", "(p - 1)/(m + p - 1)"),
    (r"\frac{\exp r_w}{\exp r_w + \exp r_l}", "(exp r_w)/(exp r_w + exp rₗ)"),
    (r"W = W_0 + \frac{\alpha}{r} B A", "W = W₀ + (α/r) B A"),
    (r"\frac{d}{d\Delta}\left(-\log \sigma(\Delta)\right)", "(d/dΔ)(-log σ(Δ))"),
    # scripts: small forms, _x for an atom or word, _{…} and ^(…) for anything else
    (r"\gamma^{k} r_{t+k}", "γᵏ rₜ₊ₖ"),
    (r"\pi_{\mathrm{ref}}(y \mid x)", "π_ref(y | x)"),
    (r"d_{head} \cdot n_{kv}", "d_head · n_kv"),
    (r"\pi_{\theta_{old}}", "π_{θ_old}"),
    (r"V^{\pi_k}(s)", "V^(πₖ)(s)"),
    (r"A \in \mathbb{R}^{d_{out} \times r}", "A ∈ ℝ^(d_out×r)"),
    (r"e^{-x} + 10^{-8}", "e⁻ˣ + 10⁻⁸"),
    (r"x_{ij}^2", "x_{ij}²"),
    (r"\hat{A}_t^{(1)}", "A\u0302ₜ⁽¹⁾"),
    (r"\mathbb{E}_{(s, a) \sim D}[Q]", "𝔼_{(s, a)∼D}[Q]"),
    (r"\mathbb{E}_{(x, y_w, y_l)}", "𝔼_(x, y_w, yₗ)"),
    (r"B^{\top} g\, x^\top", "Bᵀ g xᵀ"),
    (r"V^*(s) = \max_a Q^{*}(s,a)", "V*(s) = maxₐ Q*(s,a)"),
    (r"\pi^\star", "π*"),
    # fonts, text, roots, delimiters, escapes
    (r"(\mathcal{S}, \mathcal{A}, P, R, \gamma)", "(𝒮, 𝒜, P, R, γ)"),
    (r"2 \cdot 32 \text{ layers} \cdot 8", "2 · 32 layers · 8"),
    (r"\sqrt{(G-1)/G} + 1/\sqrt{G}", "√((G - 1)/G) + 1/√G"),
    (r"\lceil \ln 10^{-3} / \ln 0.9 \rceil = 66", "⌈ln 10⁻³ / ln 0.9⌉ = 66"),
    (r"D = \{(s, a, r, s')\}", "D = {(s, a, r, s′)}"),
    (r"3/11 \approx 27.3\%", "3/11 ≈ 27.3%"),
    (r"a \not= b", "a =\u0338 b"),
])
def test_latex_to_unicode(latex, text):
    assert latex_to_unicode(latex) == text


def test_render_math_marks_formulas_as_code_and_keeps_prose():
    out = render_math("The TD error $\\delta_t$ drives $$V(s) \\leftarrow V(s) + \\alpha\\delta$$ learning.")
    assert out.startswith("The TD error `δₜ` drives")
    assert "`V(s) ← V(s) + αδ`" in out and out.rstrip().endswith("learning.")
    assert render_math("costs \\$5 and \\$6") == "costs \\$5 and \\$6"


def test_iter_math_gives_offsets_of_each_span():
    text = "a $x_1$ b\n$$\\frac{1}{2}$$ c"
    spans = list(iter_math(text))
    assert [(s.latex, s.display) for s in spans] == [("x_1", False), ("\\frac{1}{2}", True)]
    assert all(text[s.offset:s.offset + len(s.latex)] == s.latex for s in spans)


@pytest.mark.parametrize("latex, offset, needle", [
    (r"a + \foo{b}", 4, "unknown LaTeX command \\foo"),
    (r"\argmax_a Q", 0, "unknown LaTeX command \\argmax"),
    (r"\frac{1}", 0, "\\frac needs an argument"),
    (r"\left( x", 0, "\\left has no matching \\right"),
    (r"x \right)", 2, "\\right without \\left"),
    (r"{x", 0, "'{' is never closed"),
    (r"x}", 1, "unmatched '}'"),
    (r"x_a_b", 3, "double subscript"),
    (r"50%", 2, "write \\%"),
    (r"\text{\textbf{x}}", 6, "inside \\text"),
    (r"a & b \\ c", 2, "alignment"),
])
def test_problems_name_the_offset(latex, offset, needle):
    problems = math_problems(latex)
    assert any(pos == offset and needle in message for pos, message in problems), problems


def test_unknown_commands_stay_visible():
    assert "\\foo" in latex_to_unicode(r"a + \foo b")


def test_malformed_latex_never_raises():
    for bad in (r"\frac{1}{", "a $\\sum_{ b", "}}}{{{", "\\", "_^_^", "\\left", "\\sqrt[", "{" * 5000):
        assert isinstance(latex_to_unicode(bad), str)
        assert isinstance(math_problems(bad), list)
    assert isinstance(render_math("a $\\sum_{ b"), str)


# -- property: every symbol-bearing command leaves a trace ------------------------------------

_SCRIPT_ALIASES = {"∗": "*", "⋆": "*", "⊤": "ᵀ"}


def test_every_symbol_has_a_visible_glyph():
    assert all(glyph.strip() for glyph, _ in SYMBOLS.values())


def _traces(glyph: str) -> set[str]:
    forms = {glyph, _SUB.get(glyph, glyph), _SUP.get(glyph, glyph)}
    return forms | ({_SCRIPT_ALIASES[glyph]} if glyph in _SCRIPT_ALIASES else set())


_COMMANDS = sorted(SYMBOLS)
_atom = st.one_of(
    st.sampled_from(_COMMANDS).map(lambda name: f"\\{name} "),
    st.sampled_from(list("xyzB0123+-=(),") + ["\\, ", "\\quad ", "\\! ", "{}"]),
)


def _compose(children):
    seq = st.lists(children, min_size=1, max_size=4).map("".join)
    return st.one_of(
        seq,
        st.tuples(seq, seq).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
        st.tuples(seq, seq).map(lambda t: f"\\binom{{{t[0]}}}{{{t[1]}}}"),
        st.tuples(seq, seq).map(lambda t: f"y_{{{t[0]}}}^{{{t[1]}}}"),
        seq.map(lambda s: f"z^{{{s}}}"),
        seq.map(lambda s: f"\\sqrt{{{s}}}"),
        seq.map(lambda s: f"{{{s}}}"),
        seq.map(lambda s: f"\\left( {s} \\right)"),
        seq.map(lambda s: f"\\hat{{{s}}}"),
        seq.map(lambda s: f"\\mathbb{{{s}}}"),
        seq.map(lambda s: f"\\mathrm{{{s}}}"),
        seq.map(lambda s: f"\\operatorname{{{s}}}_x"),
    )


@settings(max_examples=300, deadline=None)
@given(st.recursive(_atom, _compose, max_leaves=14))
def test_every_symbol_command_leaves_a_trace(latex):
    out = latex_to_unicode(latex)
    assert math_problems(latex) == [], latex
    assert "\\" not in out, (latex, out)
    wanted = Counter(SYMBOLS[name][0] for name in re.findall(r"\\([A-Za-z]+|[^A-Za-z])", latex) if name in SYMBOLS)
    for glyph, count in wanted.items():
        found = sum(out.count(form) for form in _traces(glyph))
        assert found >= count, f"{glyph!r} x{count} in {latex!r} left {found} trace(s) in {out!r}"


def test_rendering_and_checking_import_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; from llmcore_tui.core.mathtext import latex_to_unicode, math_problems; "
            "latex_to_unicode(r'\\frac{1}{2}'); math_problems('x'); "
            "print(','.join(m for m in ('pylatexenc', 'markdown_it', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
