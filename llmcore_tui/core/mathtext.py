"""LaTeX math in card text, shown as readable Unicode in the terminal.

``$\\gamma^{k} r_{t+k}$`` becomes ``γᵏ rₜ₊ₖ``. The source is parsed into a small tree (atoms,
groups, scripts, fractions, ``\\left…\\right``, text) and each atom has a class, as in TeX:
ord (letters, digits, ``\\|``), op (``\\log``, ``\\sum``, ``\\operatorname{…}``), bin (``+``,
``\\cdot``), rel (``=``, ``\\le``, ``\\mid``), open, close and punct. The class decides spacing:

- rel and bin get a space on each side (``‖TV - TU‖_∞ ≤ γ ‖V - U‖_∞``); a bin with nothing
  to its left is a sign (``-log σ(x)``); inside sub/superscripts, as in TeX, neither is spaced
  (``𝔼_{y∼π_θ}``);
- an op is spaced from its neighbours (``β log σ(x)``) but not from a bracket (``log(x)``);
- between ords, a space in the source is kept (``γ V(s′)``) and none is added (``Q(s,a)``).

Grouping a reader needs is kept: a sub/superscript uses small Unicode forms when every
character has one (``sₜ₊₁``, ``10⁻⁸``), ``_x`` for one atom or word (``π_θ``, ``d_head``), else
``_{…}`` and ``^(…)`` (``𝔼_{(s,a)∼D}``, ``e^(βr)``); a fraction is ``a/b`` with parentheses
around a part that is not an atom (``(p - 1)/(m + p - 1)``) and around the whole fraction when
it stands next to a factor (``β log(π_θ(y|x)/π_ref(y|x))``); ``\\binom{n}{k}`` is ``C(n, k)``;
``\\arg\\max_a`` is ``argmaxₐ``.

Nothing is dropped silently: a command the renderer does not know stays visible as ``\\name``,
and :func:`math_problems` lists it (with unbalanced braces, missing arguments and the like) so
that ``llmcore-tui check`` fails at its file and line. Pure Python, no import beyond the
standard library: parsing all 3,941 shipped spans takes 0.08 s where pylatexenc's walker took
1.1 s on the same machine, and both parses and renderings are cached, since ``check`` parses
every span and the review screen renders a card per key press.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

# ---------------------------------------------------------------------------------------------
# What the renderer knows: every table here is also what `check` accepts.

_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "varpi": "ϖ", "rho": "ρ", "varrho": "ϱ", "sigma": "σ", "varsigma": "ς", "tau": "τ",
    "upsilon": "υ", "phi": "ϕ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ",
    "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
_ORD = {
    "infty": "∞", "nabla": "∇", "partial": "∂", "ell": "ℓ", "hbar": "ℏ", "forall": "∀", "exists": "∃",
    "emptyset": "∅", "varnothing": "∅", "neg": "¬", "lnot": "¬", "top": "⊤", "bot": "⊥", "prime": "′",
    "dots": "…", "ldots": "…", "cdots": "⋯", "vdots": "⋮", "ddots": "⋱", "aleph": "ℵ", "Re": "ℜ", "Im": "ℑ",
    "angle": "∠", "triangle": "△", "|": "‖", "Vert": "‖", "vert": "|", "%": "%", "#": "#", "&": "&",
    "_": "_", "$": "$",
}
_REL = {
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈", "sim": "∼",
    "simeq": "≃", "cong": "≅", "equiv": "≡", "propto": "∝", "in": "∈", "notin": "∉", "ni": "∋",
    "subset": "⊂", "subseteq": "⊆", "supset": "⊃", "supseteq": "⊇", "to": "→", "rightarrow": "→",
    "leftarrow": "←", "gets": "←", "longrightarrow": "⟶", "longleftarrow": "⟵", "leftrightarrow": "↔",
    "Rightarrow": "⇒", "Leftarrow": "⇐", "Leftrightarrow": "⇔", "implies": "⟹", "impliedby": "⟸",
    "iff": "⟺", "mapsto": "↦", "uparrow": "↑", "downarrow": "↓", "ll": "≪", "gg": "≫", "prec": "≺",
    "succ": "≻", "preceq": "⪯", "succeq": "⪰", "mid": "|", "parallel": "∥", "perp": "⊥",
    "triangleq": "≜", "models": "⊨", "vdash": "⊢",
}
_BIN = {
    "cdot": "·", "times": "×", "pm": "±", "mp": "∓", "div": "÷", "ast": "∗", "star": "⋆", "circ": "∘",
    "bullet": "∙", "odot": "⊙", "otimes": "⊗", "oplus": "⊕", "cup": "∪", "cap": "∩", "setminus": "∖",
    "wedge": "∧", "land": "∧", "vee": "∨", "lor": "∨",
}
_LARGE_OPS = {"sum": "∑", "prod": "∏", "coprod": "∐", "int": "∫", "iint": "∬", "oint": "∮",
              "bigcup": "⋃", "bigcap": "⋂", "bigoplus": "⨁", "bigotimes": "⨂"}
_NAMED_OPS = frozenset(
    "log ln lg exp max min arg sup inf lim limsup liminf det dim ker deg gcd hom Pr sin cos tan cot sec csc "
    "sinh cosh tanh coth arcsin arccos arctan".split())
_OPEN = {"langle": "⟨", "lceil": "⌈", "lfloor": "⌊", "lvert": "|", "lVert": "‖", "{": "{", "lbrace": "{"}
_CLOSE = {"rangle": "⟩", "rceil": "⌉", "rfloor": "⌋", "rvert": "|", "rVert": "‖", "}": "}", "rbrace": "}"}
_SPACES = {**dict.fromkeys([",", ":", ";", ">", " ", "\n", "\t", "quad", "qquad", "enspace", "thinspace",
                            "medspace", "thickspace"], " "), "!": "", "negthinspace": ""}
_IGNORED = frozenset(  # sizes and styles: the terminal has one size
    "displaystyle textstyle scriptstyle scriptscriptstyle limits nolimits big Big bigg Bigg bigl bigr Bigl Bigr "
    "biggl biggr Biggl Biggr bigm Bigm".split())
_ACCENTS = {"hat": "\u0302", "widehat": "\u0302", "bar": "\u0304", "overline": "\u0305", "tilde": "\u0303",
            "widetilde": "\u0303", "dot": "\u0307", "ddot": "\u0308", "vec": "\u20d7", "check": "\u030c",
            "breve": "\u0306", "acute": "\u0301", "grave": "\u0300", "mathring": "\u030a"}
_FONTS = frozenset("mathbb mathcal mathbf mathrm mathit mathsf mathtt mathnormal boldsymbol".split())
_TEXTS = frozenset("text textrm textbf textit textsf texttt textnormal mbox".split())
_FRACS = frozenset("frac dfrac tfrac".split())
_BINOMS = frozenset("binom dbinom tbinom".split())
_TEXT_ESCAPES = {"%": "%", "&": "&", "_": "_", "#": "#", "$": "$", "{": "{", "}": "}", " ": " ", ",": " "}

SYMBOLS: dict[str, tuple[str, str]] = {  # command -> (glyph, class), for tests and tools
    **{k: (v, "ord") for k, v in {**_GREEK, **_ORD}.items()}, **{k: (v, "rel") for k, v in _REL.items()},
    **{k: (v, "bin") for k, v in _BIN.items()}, **{k: (v, "op") for k, v in _LARGE_OPS.items()},
    **{k: (k, "op") for k in _NAMED_OPS}, **{k: (v, "open") for k, v in _OPEN.items()},
    **{k: (v, "close") for k, v in _CLOSE.items()},
}

_CHAR_CLASS = {**dict.fromkeys("+-*", "bin"), **dict.fromkeys("=<>", "rel"), **dict.fromkeys(",;:", "punct"),
               **dict.fromkeys("([", "open"), **dict.fromkeys(")]!?", "close")}
_DELIMS = {**{c: c for c in "()[]|/<>"}, ".": "", "<": "⟨", ">": "⟩", "{": "{", "}": "}", "|": "|",
           "\\|": "‖", "\\Vert": "‖", "\\vert": "|", **{f"\\{k}": v for k, v in {**_OPEN, **_CLOSE}.items()},
           "\\uparrow": "↑", "\\downarrow": "↓", "\\backslash": "\\"}

_SUB = dict(zip("0123456789+-=()aehijklmnoprstuvxβγρφχ", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓᵦᵧᵨᵩᵪ"))
_SUP = dict(zip("0123456789+-=()abcdefghijklmnoprstuvwxyzTθ⊤",
                "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᵀᶿᵀ"))
_SUP_INLINE = {"*": "*", "∗": "*", "⋆": "*", "′": "′", "″": "″"}  # V*, f′: written inline, as on paper
_WORD = re.compile(r"[A-Za-z0-9\u0370-\u03ff]+[′″]*|.[′″]*", re.S)
_LETTER_RUN = re.compile(r"[^\W\d_]{2,}")


def _styled(upper: int, lower: int, holes: dict[str, str]) -> dict[str, str]:
    table = {c: chr(upper + i) for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
    table.update({c: chr(lower + i) for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")})
    table.update(holes)
    return table


_FONT_MAPS = {
    "mathbb": {**_styled(0x1D538, 0x1D552, dict(zip("CHNPQRZ", "ℂℍℕℙℚℝℤ"))),
               **{str(d): chr(0x1D7D8 + d) for d in range(10)}},
    "mathcal": _styled(0x1D49C, 0x1D4B6, dict(zip("BEFHILMRego", "ℬℰℱℋℐℒℳℛℯℊℴ"))),
}


# ---------------------------------------------------------------------------------------------
# The tree


@dataclass(eq=False)
class _Node:
    kind: str                      # atom, group, frac, binom, sqrt, fenced, text, accent, opname, space
    text: str = ""                 # glyph, text, accent mark, or the opening delimiter
    cls: str = "ord"
    parts: tuple = ()              # child rows
    close: str = ""                # the closing delimiter of a fenced node
    sub: list | None = None
    sup: list | None = None
    primes: str = ""
    gap: bool = False              # whitespace before it in the source

    @property
    def scripted(self) -> bool:
        return bool(self.sub or self.sup or self.primes)


@dataclass
class _Parser:
    s: str
    i: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    def problem(self, pos: int, message: str) -> None:
        self.problems.append((pos, message))

    def ws(self) -> bool:
        start = self.i
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1
        return self.i > start

    def at_command(self, name: str) -> bool:
        end = self.i + 1 + len(name)
        return self.s.startswith("\\" + name, self.i) and not (end < len(self.s) and self.s[end].isalpha())

    def command(self) -> str:
        """The command at ``\\``: a run of letters, or one other character."""
        j = self.i + 1
        while j < len(self.s) and self.s[j].isalpha():
            j += 1
        if j == self.i + 1:
            j = min(j + 1, len(self.s))
        name, self.i = self.s[self.i + 1:j], j
        return name

    def row(self, stop: str = "") -> list[_Node]:
        """Nodes up to ``stop`` (``}``, ``]`` or ``right``; left unread) or the end."""
        nodes: list[_Node] = []
        while True:
            gap = self.ws()
            if self.i >= len(self.s):
                return nodes
            c, pos = self.s[self.i], self.i
            if c == "}" or (c == "]" and stop == "]"):
                if stop == c:
                    return nodes
                self.problem(pos, "unmatched '}'")
                self.i += 1
                continue
            if stop == "right" and self.at_command("right"):
                return nodes
            if c in "_^":
                self.i += 1
                self._script(nodes, c, pos)
                continue
            if c == "'":
                self.i += 1
                if not nodes or nodes[-1].kind == "space":
                    nodes.append(_Node("atom"))
                nodes[-1].primes += "′"
                continue
            node = self.item()
            if node is None:
                continue
            node.gap = gap
            last = nodes[-1] if nodes else None
            if (last is not None and node.cls == "op" and node.text in ("max", "min") and last.text == "arg"
                    and last.kind == "atom" and not last.scripted):
                last.text += node.text  # \arg\max is one operator, argmax
                continue
            nodes.append(node)

    def _script(self, nodes: list[_Node], mark: str, pos: int) -> None:
        arg = self.arg(mark, pos)
        if not nodes or nodes[-1].kind == "space":
            nodes.append(_Node("atom"))
        base = nodes[-1]
        slot = "sub" if mark == "_" else "sup"
        if getattr(base, slot) is not None:
            self.problem(pos, f"double {'subscript' if mark == '_' else 'superscript'}: group it, as in x_{{ab}}")
            arg = getattr(base, slot) + arg
        setattr(base, slot, arg)

    def arg(self, owner: str, pos: int) -> list[_Node]:
        """One argument: a ``{…}`` group or a single token, as TeX reads ``\\frac12``."""
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] in "}_^&":
            self.problem(pos, f"{owner} needs an argument")
            return []
        if self.s[self.i] == "{":
            return self.group()
        node = self.item()
        return [node] if node is not None else []

    def group(self) -> list[_Node]:
        start = self.i
        self.i += 1
        inner = self.row("}")
        if self.i < len(self.s) and self.s[self.i] == "}":
            self.i += 1
        else:
            self.problem(start, "'{' is never closed")
        return inner

    def delimiter(self, owner: str, pos: int) -> str:
        self.ws()
        if self.i >= len(self.s):
            self.problem(pos, f"{owner} needs a delimiter")
            return ""
        if self.s[self.i] == "\\":
            start = self.i
            name = "\\" + self.command()
            if name not in _DELIMS:
                self.problem(start, f"{name} is not a delimiter the terminal can show after {owner}")
                return name
            return _DELIMS[name]
        c = self.s[self.i]
        self.i += 1
        if c not in _DELIMS:
            self.problem(pos, f"{c!r} is not a delimiter for {owner}")
            return c
        return _DELIMS[c]

    def text_arg(self, owner: str, pos: int) -> str:
        """The raw text of ``\\text{…}``: spaces kept, only escapes allowed."""
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] != "{":
            self.problem(pos, f"{owner} needs a {{…}} argument")
            return ""
        depth, out, start = 0, [], self.i
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\":
                at = self.i
                name = self.command()
                if name in _TEXT_ESCAPES:
                    out.append(_TEXT_ESCAPES[name])
                else:
                    self.problem(at, f"\\{name} inside {owner}{{…}}: only plain text and "
                                     "\\%, \\&, \\_, \\{, \\} are shown")
                    out.append("\\" + name)
                continue
            self.i += 1
            if c == "{":
                depth += 1
                if depth == 1:
                    continue
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return "".join(out)
            out.append(" " if c in "~\n\t" else c)
        self.problem(start, "'{' is never closed")
        return "".join(out)

    def item(self) -> _Node | None:
        c, pos = self.s[self.i], self.i
        if c == "{":
            return _Node("group", parts=(self.group(),))
        if c != "\\":
            self.i += 1
            if c == "%":
                self.problem(pos, "a bare % starts a LaTeX comment: write \\%")
            elif c in "&#":
                self.problem(pos, f"{c!r} has no meaning here (alignment needs an environment the terminal cannot show)")
            elif c == "~":
                return _Node("space", " ", "space")
            return _Node("atom", c, _CHAR_CLASS.get(c, "ord"))
        name = self.command()
        cmd = "\\" + name
        if name in SYMBOLS:
            glyph, cls = SYMBOLS[name]
            return _Node("atom", glyph, cls)
        if name in _SPACES:
            return _Node("space", _SPACES[name], "space")
        if name in _IGNORED:
            return None
        if name in _FRACS or name in _BINOMS:
            first = self.arg(cmd, pos)
            return _Node("frac" if name in _FRACS else "binom", parts=(first, self.arg(cmd, pos)))
        if name == "sqrt":
            self.ws()
            index: list[_Node] = []
            if self.i < len(self.s) and self.s[self.i] == "[":
                self.i += 1
                index = self.row("]")
                if self.i < len(self.s) and self.s[self.i] == "]":
                    self.i += 1
                else:
                    self.problem(pos, "\\sqrt[ is never closed by ]")
            return _Node("sqrt", parts=(self.arg(cmd, pos), index))
        if name == "left":
            opening = self.delimiter(cmd, pos)
            inner = self.row("right")
            if self.at_command("right"):
                self.i += len("\\right")
                closing = self.delimiter("\\right", pos)
            else:
                self.problem(pos, "\\left has no matching \\right")
                closing = ""
            return _Node("fenced", opening, parts=(inner,), close=closing)
        if name == "right":
            self.problem(pos, "\\right without \\left")
            self.delimiter(cmd, pos)
            return None
        if name == "middle":
            return _Node("atom", self.delimiter(cmd, pos), "rel")
        if name == "not":
            nodes = self.arg(cmd, pos)
            if len(nodes) == 1 and nodes[0].kind == "atom":
                nodes[0].text += "\u0338"
                return nodes[0]
            return _Node("group", parts=(nodes,))
        if name in _TEXTS:
            return _Node("text", self.text_arg(cmd, pos))
        if name in _FONTS:
            nodes = self.arg(cmd, pos)
            if name in _FONT_MAPS:
                _restyle(nodes, _FONT_MAPS[name])
            return _Node("group", parts=(nodes,))
        if name in _ACCENTS:
            return _Node("accent", _ACCENTS[name], parts=(self.arg(cmd, pos),))
        if name == "operatorname":
            if self.i < len(self.s) and self.s[self.i] == "*":
                self.i += 1
            return _Node("opname", cls="op", parts=(self.arg(cmd, pos),))
        if name == "\\":
            self.problem(pos, "\\\\ (a line break) needs an environment the terminal cannot show")
            return _Node("space", " ", "space")
        self.problem(pos, f"unknown LaTeX command {cmd}: the terminal cannot show it "
                          "(use a standard command, or teach llmcore_tui/core/mathtext.py)")
        return _Node("atom", cmd)


def _restyle(nodes: list[_Node] | None, table: dict[str, str]) -> None:
    """Letters and digits typed as such take the font (``\\mathbb{R}``: ℝ); names such as
    ``\\log`` or Greek letters keep theirs, as in LaTeX."""
    for node in nodes or ():
        if node.kind == "atom" and node.cls == "ord" and node.text in table:
            node.text = table[node.text]
        for part in node.parts:
            _restyle(part, table)
        _restyle(node.sub, table)
        _restyle(node.sup, table)


@lru_cache(maxsize=8192)
def _parse(latex: str) -> tuple[list[_Node], tuple[tuple[int, str], ...]]:
    parser = _Parser(latex)
    nodes = parser.row()
    return nodes, tuple(parser.problems)


# ---------------------------------------------------------------------------------------------
# Rendering


def _classes(node: _Node) -> tuple[str, str]:
    if node.kind == "atom" or node.kind == "space" or node.kind == "opname":
        return node.cls, node.cls
    if node.kind == "fenced" and node.text:
        return "open", "close" if node.close else "ord"
    return "ord", "ord"


def _is_atom(text: str) -> bool:
    """Whether ``text`` reads as one factor: no sign, space or operator outside brackets
    (``π_θ(y | x)``, ``|o_i|`` and ``0.5`` are atoms; ``a+b``, ``exp r`` and ``1/N`` are not)."""
    if not text or text[0] in "+-±∓":
        return False
    depth = bars = 0
    for ch in text:
        if ch in "([{⟨⌈⌊":
            depth += 1
        elif ch in ")]}⟩⌉⌋":
            depth -= 1
        elif depth == 0 and ch in " +-±∓×·/=<>≤≥≈∼≠→←,;:∝≡∈":
            return False
        elif depth == 0 and ch in "|‖":
            bars += 1
    return depth == 0 and (bars == 0 or (bars == 2 and text[0] in "|‖"))


def _script(text: str, mark: str) -> str:
    """A sub- or superscript that keeps its grouping: small forms, ``_x``, ``_{…}`` or ``^(…)``."""
    if not text:
        return ""
    table = _SUB if mark == "_" else _SUP
    if mark == "^" and text in _SUP_INLINE:
        return _SUP_INLINE[text]
    if all(ch in table for ch in text) and not _LETTER_RUN.search(text):
        return "".join(table[ch] for ch in text)
    if _WORD.fullmatch(text) or (text[0] in "([" and _closes_at_end(text)):
        return mark + text
    return f"_{{{text}}}" if mark == "_" else f"^({text})"


def _closes_at_end(text: str) -> bool:
    depth = 0
    for k, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            return k == len(text) - 1
    return False


def _scripts(node: _Node, body: str) -> str:
    sub = _script(_row(node.sub, True), "_") if node.sub else ""
    sup = _script(_row(node.sup, True), "^") if node.sup else ""
    if sub.startswith("_") and not sub.startswith("_{") and sup and len(sub) > 1:
        sub = f"_{{{sub[1:]}}}"  # x_{ij}² rather than x_ij², which reads as x_(ij²)
    return body + node.primes.replace("′′", "″") + sub + sup


def _body(node: _Node, compact: bool, wrap: bool) -> str:
    """The node's own text, before its scripts; ``wrap`` parenthesises a fraction."""
    kind = node.kind
    if kind in ("atom", "space", "text"):
        return node.text
    if kind == "group":
        return _row(node.parts[0], compact)
    if kind == "opname":
        return _row(node.parts[0], True)
    if kind == "accent":
        inner = _row(node.parts[0], compact)
        return inner + node.text if len(inner) == 1 else f"({inner}){node.text}"
    if kind == "fenced":
        return node.text + _row(node.parts[0], compact) + node.close
    if kind == "sqrt":
        inner, index = _row(node.parts[0], compact), _row(node.parts[1], True)
        root = ("".join(_SUP[c] for c in index) if all(c in _SUP for c in index) else f"({index})") + "√" \
            if index else "√"
        return root + (inner if _is_atom(inner) else f"({inner})")
    if kind == "binom":
        return f"C({_row(node.parts[0], compact)}, {_row(node.parts[1], compact)})"
    num, den = (_row(part, compact) for part in node.parts)  # frac
    text = "/".join(part if _is_atom(part) else f"({part})" for part in (num, den))
    return f"({text})" if wrap else text


_BARE_BEFORE = (None, "rel", "bin", "unary", "punct", "open")
_BARE_AFTER = (None, "rel", "bin", "punct", "close")


def _row(nodes: list[_Node] | None, compact: bool = False) -> str:
    if not nodes:
        return ""
    classes = [list(_classes(n)) for n in nodes]
    solid = [k for k, n in enumerate(nodes) if n.kind != "space"]  # spaces do not change a neighbour's role
    for j, k in enumerate(solid):
        if classes[k][0] != "bin":
            continue
        prev = classes[solid[j - 1]][1] if j else None
        nxt = classes[solid[j + 1]][0] if j + 1 < len(solid) else None
        if nxt in (None, "rel", "close", "punct"):
            classes[k] = ["ord", "ord"]  # π(· | s), Q(s, ·), 1.5×: an operand, not an operator
        elif prev in (None, "bin", "rel", "op", "open", "punct", "unary"):
            classes[k] = ["unary", "unary"]  # a sign: -x, (−1)
    for j, k in enumerate(solid):
        if nodes[k].kind != "frac":
            continue
        prev = classes[solid[j - 1]][1] if j else None
        nxt = classes[solid[j + 1]][0] if j + 1 < len(solid) else None
        if nodes[k].scripted or prev not in _BARE_BEFORE or nxt not in _BARE_AFTER:
            classes[k] = ["open", "close"]  # next to a factor: (a/b)
    out: list[str] = []
    prev_class: str | None = None
    prev_scripted = False
    for k, node in enumerate(nodes):
        left, right = classes[k]
        wrap = node.kind == "frac" and left == "open"
        out.append(_gap(prev_class, left, node.gap, compact, prev_scripted))
        out.append(_scripts(node, _body(node, compact, wrap)))
        prev_class, prev_scripted = right, node.scripted
    return "".join(out)


def _gap(a: str | None, b: str, source_gap: bool, compact: bool, a_scripted: bool = False) -> str:
    """The space between a node of right class ``a`` and one of left class ``b``."""
    if a is None or a in ("open", "unary", "space") or b in ("close", "punct", "space"):
        return ""
    if "rel" in (a, b) or "bin" in (a, b):
        return "" if compact else " "
    if a == "op" and b == "open":
        return " " if a_scripted else ""  # log(x), but ∑ₜ₌₁^N (x), not ∑ₜ₌₁^N(x)
    if "op" in (a, b):
        return " "
    return " " if source_gap else ""


# ---------------------------------------------------------------------------------------------
# Public API

_MATH = re.compile(r"\$\$(?P<display>.+?)\$\$|(?<![\\$])\$(?!\$)(?P<inline>.+?)(?<![\\$])\$(?!\$)", re.S)


@lru_cache(maxsize=8192)
def latex_to_unicode(latex: str) -> str:
    """One LaTeX math expression as one line of Unicode text."""
    try:
        nodes, _ = _parse(latex)
        text = _row(nodes)
    except RecursionError:  # absurdly deep nesting: show the source rather than crash the screen
        return latex
    return re.sub(r"\s+", " ", text).strip()


def math_problems(latex: str) -> list[tuple[int, str]]:
    """(offset in ``latex``, message) for everything the terminal cannot show faithfully:
    unknown commands, unbalanced braces, missing arguments, double scripts, bare ``%``."""
    try:
        return list(_parse(latex)[1])
    except RecursionError:
        return [(0, "nested too deeply to show")]


@dataclass(frozen=True)
class MathSpan:
    start: int        # offset of the opening ``$`` in the text
    end: int          # offset after the closing ``$``
    latex: str        # between the dollars, as written
    offset: int       # offset of ``latex`` in the text
    display: bool


def iter_math(text: str) -> Iterator[MathSpan]:
    """Every ``$…$`` and ``$$…$$`` span of Markdown text, in order (``\\$`` is a dollar sign)."""
    for m in _MATH.finditer(text):
        group = "display" if m.group("display") is not None else "inline"
        yield MathSpan(m.start(), m.end(), m.group(group), m.start(group), group == "display")


def render_math(markdown: str, wrap: str = "`") -> str:
    """Replace ``$…$`` and ``$$…$$`` in Markdown with Unicode, wrapped as inline code so that
    the Markdown renderer leaves the symbols alone and the formula stands out."""
    def one(m: re.Match[str]) -> str:
        if m.group("display") is not None:
            return f"\n\n{wrap}{latex_to_unicode(m.group('display').strip())}{wrap}\n\n"
        return f"{wrap}{latex_to_unicode(m.group('inline').strip())}{wrap}"

    return _MATH.sub(one, markdown)
