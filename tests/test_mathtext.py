"""LaTeX to Unicode for the terminal."""

import pytest

from llmcore_tui.core.mathtext import latex_to_unicode, render_math


@pytest.mark.parametrize("latex, text", [
    (r"\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)", "δₜ = rₜ + γ V(sₜ₊₁) - V(sₜ)"),
    (r"\frac{p-1}{m+p-1}", "(p-1)/(m+p-1)"),
    (r"\gamma^{k} r_{t+k}", "γᵏ rₜ₊ₖ"),
    (r"\pi_{\mathrm{ref}}(y \mid x)", "π_ref(y | x)"),
    (r"(\mathcal{S}, \mathcal{A}, P, R, \gamma)", "(𝒮, 𝒜, P, R, γ)"),
    (r"\max_a Q(s,a)", "maxₐ Q(s,a)"),
    (r"d_{head}", "d_head"),
    (r"V^*(s) = \max_a Q^{*}(s,a)", "V*(s) = maxₐ Q*(s,a)"),
    (r"\pi^\star", "π*"),
    (r"\mathbb{E}_{a\sim\pi}[A] = 0", "𝔼_(a∼π)[A] = 0"),
])
def test_latex_to_unicode(latex, text):
    assert latex_to_unicode(latex) == text


def test_render_math_marks_formulas_as_code_and_keeps_prose():
    out = render_math("The TD error $\\delta_t$ drives $$V(s) \\leftarrow V(s) + \\alpha \\delta$$ learning.")
    assert out.startswith("The TD error `δₜ` drives")
    assert "`V(s) ← V(s) + αδ`" in out and out.rstrip().endswith("learning.")


def test_malformed_latex_never_raises():
    assert isinstance(latex_to_unicode(r"\frac{1}{"), str)
    assert isinstance(render_math("a $\\sum_{ b"), str)
