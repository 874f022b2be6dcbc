"""Card Markdown and LaTeX as safe HTML: MathML from the optional ``latex2mathml`` package,
rebuilt through an allow-list, else escaped Unicode (:mod:`llmcore_tui.core.mathtext`)."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from llmcore_tui.core.brief.prose import CODE_SPAN, MATH_SPAN

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def mathml_converter():
    """latex2mathml's ``convert``, or None when the package is not installed."""
    try:
        from latex2mathml.converter import convert
    except ImportError:
        return None
    return convert


# What latex2mathml may emit, and all the brief lets through: MathML presentation elements and
# their layout attributes. Anything else (an <img>, an event handler, a <script>) means the
# formula is shown as escaped Unicode text instead.
_MATHML_TAGS = frozenset(
    "math semantics mrow mi mo mn ms mtext mspace msub msup msubsup mfrac msqrt mroot mstyle merror mpadded "
    "mphantom mfenced menclose munder mover munderover mmultiscripts mprescripts none mtable mtr mtd".split())
_MATHML_ATTRS = frozenset(
    "xmlns display displaystyle scriptlevel mathvariant stretchy fence separator separators lspace rspace accent "
    "accentunder columnalign columnlines columnspacing rowalign rowlines rowspacing frame framespacing "
    "linethickness minsize maxsize movablelimits symmetric largeop form width height depth voffset notation "
    "open close align rowspan columnspan".split())
_MATHML_NS = "http://www.w3.org/1998/Math/MathML"
# latex2mathml copies the argument of \text and its kin into <mtext> unescaped: those characters
# travel through the conversion as private-use stand-ins and come back escaped.
_TEXT_COMMAND = re.compile(r"\\(?:text(?:rm|bf|it|sf|tt|up|normal)?|mbox|hbox|mathrm|operatorname)\s*\{")
_STAND_IN = {"&": "\ue000", "<": "\ue001", ">": "\ue002", '"': "\ue003"}
_STAND_OUT = {v: k for k, v in _STAND_IN.items()}


def _protect_text_args(latex: str) -> str:
    """``latex`` with ``& < > "`` inside text-command arguments replaced by stand-ins."""
    out: list[str] = []
    pos = 0
    while (m := _TEXT_COMMAND.search(latex, pos)) is not None:
        out.append(latex[pos:m.end()])
        depth, j = 1, m.end()
        while j < len(latex) and depth:
            depth += {"{": 1, "}": -1}.get(latex[j], 0) if latex[j - 1] != "\\" else 0
            j += 1
        out.append("".join(_STAND_IN.get(c, c) for c in latex[m.end():j]))
        pos = j
    out.append(latex[pos:])
    return "".join(out)


class _MathmlFilter(HTMLParser):
    """Re-serialises latex2mathml's output through an allow-list: known MathML elements with
    known attributes, balanced, one <math> root; every text node escaped anew. ``ok`` is False
    as soon as anything else shows up."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[str] = []
        self.roots = 0
        self.ok = True

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], empty: bool) -> None:
        if tag not in _MATHML_TAGS or (not self.stack and (tag != "math" or self.roots)):
            self.ok = False
            return
        parts = [tag]
        for name, value in attrs:
            if name not in _MATHML_ATTRS or (name == "xmlns" and value != _MATHML_NS):
                self.ok = False
                return
            parts.append(f'{name}="{html.escape(value or "")}"')
        self.roots += tag == "math" and not self.stack
        self.out.append("<" + " ".join(parts) + ("/>" if empty else ">"))
        if not empty:
            self.stack.append(tag)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, True)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.ok = False
            return
        self.stack.pop()
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.stack:
            self.ok = self.ok and not data.strip()
            return
        self.out.append(html.escape("".join(_STAND_OUT.get(c, c) for c in data), quote=False))

    def handle_comment(self, data: str) -> None:
        self.ok = False

    def handle_decl(self, decl: str) -> None:
        self.ok = False

    def handle_pi(self, data: str) -> None:
        self.ok = False

    def unknown_decl(self, data: str) -> None:
        self.ok = False


def safe_mathml(markup: str) -> str | None:
    """``markup`` (latex2mathml's output) rebuilt from allowed MathML only; None when it holds
    anything else or is not one balanced <math> element."""
    parser = _MathmlFilter()
    parser.feed(markup)
    parser.close()
    if not parser.ok or parser.stack or parser.roots != 1:
        return None
    return "".join(parser.out)


def math_html(latex: str, display: bool = False, mathml: bool = True) -> str:
    """One formula as MathML (with latex2mathml, filtered through an allow-list), else as
    escaped Unicode text in a span."""
    convert = mathml_converter() if mathml else None
    if convert is not None:
        try:
            out = safe_mathml(convert(_protect_text_args(latex), display="block" if display else "inline"))
            if out is not None and out.startswith("<math") and "<mi>\\</mi>" not in out:
                return out.replace("<math ", f"<math alttext=\"{html.escape(latex)}\" ", 1)
        except Exception:  # noqa: BLE001 - an unusual formula falls back to Unicode
            pass
    from llmcore_tui.core.mathtext import latex_to_unicode

    tag = "div" if display else "span"
    return f'<{tag} class="math" title="{html.escape(latex)}">{html.escape(latex_to_unicode(latex))}</{tag}>'


def inline_html(text: str, mathml: bool = True) -> str:
    """Card Markdown (one paragraph) as HTML: `code`, **bold**, *em*, $math$ and $$math$$."""
    out: list[str] = []
    for chunk in CODE_SPAN.split(text):
        if not chunk:
            continue
        if chunk.startswith("`") and chunk.endswith("`") and len(chunk) > 1:
            out.append(f"<code>{html.escape(chunk[1:-1])}</code>")
            continue
        for part in MATH_SPAN.split(chunk):
            if not part:
                continue
            if part.startswith("$$") and part.endswith("$$") and len(part) > 4:
                out.append(math_html(part[2:-2].strip(), True, mathml))
            elif part.startswith("$") and part.endswith("$") and len(part) > 2:
                out.append(math_html(part[1:-1].strip(), False, mathml))
            else:
                escaped = html.escape(part, quote=False)
                escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
                escaped = _EM.sub(r"<em>\1</em>", escaped)
                out.append(escaped)
    return "".join(out)
