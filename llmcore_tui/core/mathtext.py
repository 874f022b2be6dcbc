"""LaTeX math in card text, shown as readable Unicode in the terminal.

``$\\gamma^{k} r_{t+k}$`` becomes ``γᵏ rₜ₊ₖ``: pylatexenc turns commands into symbols; sub- and
superscripts become Unicode where every character has a small form, and ``_(…)`` otherwise
so that grouping is never lost (pylatexenc alone would print ``s_t+1`` for ``s_{t+1}``).
"""

from __future__ import annotations

import re
from functools import lru_cache

_SUB = dict(zip("0123456789+-=()aehijklmnoprstuvxβγρφχ", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓᵦᵧᵨᵩᵪ"))
_SUP = dict(zip("0123456789+-=()abcdefghijklmnoprstuvwxyzTθ",
                "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᵀᶿ"))
_SCRIPT_GROUP = re.compile(r"([_^])\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_COMMAND_BEFORE_SCRIPT = re.compile(r"(\\[A-Za-z]+)(?=[_^])")
_MARK = {"_": "\x00", "^": "\x01"}  # scripts already resolved: hidden from later passes
_SCRIPT_CHAR = re.compile(r"([_^])(\\[A-Za-z]+|[A-Za-z0-9*'])")
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)", re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_MATH_CLEANUPS = [
    (re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])"), ""),
    (re.compile(r"\\(?:mathrm|text|operatorname|mathbf|mathit|textrm|textbf|boldsymbol)\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\\[,;:! ]"), " "),
    (re.compile(r"\\quad|\\qquad"), "  "),
    (re.compile(r"\\top(?![A-Za-z])"), "ᵀ"),
]


@lru_cache(maxsize=1)
def _converter():
    from pylatexenc.latex2text import LatexNodes2Text

    return LatexNodes2Text(math_mode="text", strict_latex_spaces="based-on-source")


def _plain(latex: str) -> str:
    return _converter().latex_to_text(latex).strip()


def _script(kind: str, body: str) -> str:
    text = _plain(body) if "\\" in body else body
    table = _SUB if kind == "_" else _SUP
    if kind == "^" and text in ("*", "∗", "⋆", "'", "′", "″"):  # V*, f′: written inline, as on paper
        return {"'": "′", "∗": "*", "⋆": "*"}.get(text, text)
    if text and all(ch in table for ch in text):
        return "".join(table[ch] for ch in text)
    if len(text) == 1 or text.isalnum():
        return f"{_MARK[kind]}{text}"
    return f"{_MARK[kind]}({text})"


def _fraction(m: re.Match[str]) -> str:
    def part(text: str) -> str:
        return f"({text})" if re.search(r"[\s+\-*/·]", text.strip()) else text

    return f"{part(m.group(1))}/{part(m.group(2))}"


@lru_cache(maxsize=4096)
def latex_to_unicode(latex: str) -> str:
    """One LaTeX math expression as Unicode text."""
    src = latex
    for pattern, repl in _MATH_CLEANUPS:
        src = pattern.sub(repl, src)
    # a command right before a script must stay a command: \gamma^k is \gamma{}^k
    src = _COMMAND_BEFORE_SCRIPT.sub(r"\1{}", src)
    # innermost groups first, so nested scripts and fractions resolve from the inside out
    for _ in range(10):
        new = _FRAC.sub(_fraction, src)
        new = _SCRIPT_GROUP.sub(lambda m: _script(m.group(1), m.group(2)), new)
        if new == src:
            break
        src = new
    src = _SCRIPT_CHAR.sub(lambda m: _script(m.group(1), m.group(2)), src)
    try:
        out = _plain(src)
    except Exception:  # pylatexenc is lenient, but a card must never crash the screen
        return latex
    out = out.replace(_MARK["_"], "_").replace(_MARK["^"], "^")
    return re.sub(r"[ \t]{2,}", " ", out)


def render_math(markdown: str, wrap: str = "`") -> str:
    """Replace ``$…$`` and ``$$…$$`` in Markdown with Unicode, wrapped as inline code so that
    the Markdown renderer leaves the symbols alone and the formula stands out."""
    def display(m: re.Match[str]) -> str:
        return f"\n\n{wrap}{latex_to_unicode(m.group(1).strip())}{wrap}\n\n"

    def inline(m: re.Match[str]) -> str:
        return f"{wrap}{latex_to_unicode(m.group(1).strip())}{wrap}"

    return _INLINE.sub(inline, _DISPLAY.sub(display, markdown))
