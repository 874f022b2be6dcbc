"""One question block of a quiz file: ``## id``, its ``key: value`` lines and ``### sections``.

:class:`QuestionParser` checks a block against its kind (``quizzes/README.md``), records each
problem with its file and line, and returns a :class:`~llmcore_tui.core.quiz.model.Question`
or None. :func:`parse_param_spec` reads the values a parametric question draws from.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from llmcore_tui.core import calc
from llmcore_tui.core.content import CARD_ID, LANGS, Problem, check_section
from llmcore_tui.core.quiz.grading import evaluate
from llmcore_tui.core.quiz.model import (
    CHOICE_KINDS,
    KEYS,
    KINDS,
    LETTERS,
    MAX_CHOICES,
    PLACEHOLDER,
    SECTIONS,
    Question,
    Tolerance,
    read_quantity,
)

_BULLET = re.compile(r"[-*]\s+")
_META_KEY = re.compile(r"[a-z_]+(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _parse_scalar(text: str) -> Any:
    text = text.strip()
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_param_spec(spec: str) -> tuple[Any, ...]:
    """The values a parameter is drawn from.

    ``a | b | c`` (a list), ``lo..hi`` or ``lo..hi step k`` (inclusive range; floats allowed),
    or one value. Raises ValueError for an empty or backwards range.
    """
    spec = spec.strip()
    m = re.fullmatch(r"(\S+)\s*\.\.\s*(\S+?)(?:\s+step\s+(\S+))?", spec)
    if m and "|" not in spec:
        lo, hi, step = (_parse_scalar(x) for x in (m[1], m[2], m[3] or "1"))
        if not all(isinstance(x, (int, float)) for x in (lo, hi, step)):
            raise ValueError(f"range {spec!r} must be numbers: lo..hi [step k]")
        if step <= 0 or hi < lo:
            raise ValueError(f"range {spec!r} is empty: need lo <= hi and step > 0")
        count = int((hi - lo) / step + 1e-9) + 1
        if count > 100_000:
            raise ValueError(f"range {spec!r} has {count} values; use a coarser step")
        if all(isinstance(x, int) for x in (lo, hi, step)):
            return tuple(range(lo, hi + 1, step))
        decimals = max(len(str(x).partition(".")[2]) for x in (lo, step))
        return tuple(round(lo + i * step, decimals) for i in range(count))
    values = tuple(_parse_scalar(v) for v in spec.split("|"))
    if any(v == "" for v in values):
        raise ValueError(f"parameter values {spec!r} have an empty entry")
    return values



class QuestionParser:
    """Parses one ``## id`` block; records problems and returns None if the question is unusable."""

    def __init__(self, path: str, offset: int, lines: list[str], qid: str, start: int, end: int,
                 sections: list[tuple[int, str, int]], module: str, day: int, problems: list[Problem]):
        self.path, self.offset, self.lines, self.qid = path, offset, lines, qid
        self.start, self.end, self.sections = start, end, sections
        self.module, self.day, self.problems = module, day, problems
        self.ok = True

    def problem(self, line0: int, message: str) -> None:
        """Record a problem at zero-based body line ``line0``; the question is then dropped."""
        self.problems.append(Problem(self.path, self.offset + line0 + 1, f"question {self.qid}: {message}"))
        self.ok = False

    def parse(self) -> Question | None:
        if not CARD_ID.match(self.qid):
            self.problem(self.start, "id must be lowercase letters, digits and '-'")
        meta = self._meta()
        kind, kind_line = meta.pop("kind", ("", self.start))
        if kind not in KINDS:
            self.problem(kind_line, f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}" if kind
                         else f"no 'kind' line (one of {', '.join(KINDS)})")
            return None
        tags = tuple(t.strip() for t in meta.pop("tags", ("", 0))[0].split(",") if t.strip())
        texts = self._sections(kind)
        allowed = KEYS[kind]
        for key, (_, line) in meta.items():
            if key not in allowed and not (kind == "parametric" and key.startswith("param.")):
                self.problem(line, f"key {key!r} does not belong to a {kind} question "
                                   f"(allowed: {', '.join(allowed + (('param.NAME',) if kind == 'parametric' else ())) or 'none'})")
        fields: dict[str, Any] = dict(
            id=self.qid, kind=kind, module=self.module, day=self.day, tags=tags, path=self.path,
            line=self.offset + self.start + 1,
            text={lang: texts.get(f"question.{lang}", "") for lang in LANGS},
            explanation={lang: texts.get(f"explanation.{lang}", "") for lang in LANGS},
        )
        if kind in CHOICE_KINDS:
            fields.update(self._choices(kind, meta, texts))
        elif kind == "numeric":
            fields.update(self._numeric(meta))
        elif kind == "parametric":
            fields.update(self._parametric(meta, fields["text"], fields["explanation"]))
        else:
            fields["model_answer"] = {lang: texts.get(f"answer.{lang}", "") for lang in LANGS}
        if kind != "parametric":
            for name, text in texts.items():
                m = PLACEHOLDER.search(text)
                if m:
                    self.problem(self._section_line(name, m[0]), "'{{...}}' placeholders belong to parametric questions only")
        return Question(**fields) if self.ok else None

    # -- pieces ------------------------------------------------------------------------------

    def _meta(self) -> dict[str, tuple[str, int]]:
        meta: dict[str, tuple[str, int]] = {}
        stop = self.sections[0][2] if self.sections else self.end
        for j in range(self.start + 1, stop):
            line = self.lines[j].strip()
            if not line:
                continue
            key, sep, value = line.partition(":")
            key = key.strip()
            if not sep or not _META_KEY.fullmatch(key):
                self.problem(j, f"expected 'key: value' before the first section, got {line!r}")
                continue
            if key in meta:
                self.problem(j, f"key {key!r} given twice")
                continue
            meta[key] = (value.strip(), j)
        return meta

    def _section_line(self, name: str, needle: str = "") -> int:
        """The heading line of section ``name``, or with ``needle`` the first line in it holding it."""
        line0 = next((s[2] for s in self.sections if s[1] == name), self.start)
        if needle:
            end = next((s[2] for s in self.sections if s[2] > line0), self.end)
            return next((j for j in range(line0, end) if needle in self.lines[j]), line0)
        return line0

    def _sections(self, kind: str) -> dict[str, str]:
        wanted = SECTIONS[kind]
        texts: dict[str, str] = {}
        for k, (_, name, line0) in enumerate(self.sections):
            s_end = self.sections[k + 1][2] if k + 1 < len(self.sections) else self.end
            if name not in wanted:
                self.problem(line0, f"section {name!r} does not belong to a {kind} question; expected {', '.join(wanted)}")
                continue
            if name in texts:
                self.problem(line0, f"section {name!r} appears twice")
                continue
            raw = "\n".join(self.lines[line0 + 1:s_end])
            body = raw.strip()
            if not body:
                self.problem(line0, f"section {name!r} is empty")
            elif body.replace("\\$", "").count("$") % 2:
                self.problem(line0, f"unbalanced '$' in {name!r}")
            else:
                self.problems += check_section(self.path, self.offset + line0 + 2, raw, name, f"question {self.qid}")
            texts[name] = body
        missing = [s for s in wanted if s not in texts]
        if missing:
            self.problem(self.start, f"missing section(s) {', '.join(missing)}")
        return texts

    def _list_items(self, name: str, text: str) -> tuple[str, ...]:
        items: list[str] = []
        line0 = self._section_line(name)
        for j, raw in enumerate(text.splitlines()):
            bullet = _BULLET.match(raw)
            if bullet:
                items.append(raw[bullet.end():].strip())
            elif raw.strip() and items and raw.startswith((" ", "\t")):
                items[-1] += " " + raw.strip()
            elif raw.strip():
                self.problem(line0 + 1 + j, f"{name}: expected a list item '- ...', got {raw.strip()!r}")
        return tuple(items)

    def _choices(self, kind: str, meta: dict[str, tuple[str, int]], texts: dict[str, str]) -> dict[str, Any]:
        choices = {lang: self._list_items(f"choices.{lang}", texts.get(f"choices.{lang}", "")) for lang in LANGS}
        n = len(choices["en"])
        if "choices.en" in texts and not 2 <= n <= MAX_CHOICES:
            self.problem(self._section_line("choices.en"), f"needs 2 to {MAX_CHOICES} choices, has {n}")
        if "choices.zh" in texts and len(choices["zh"]) != n:
            self.problem(self._section_line("choices.zh"), f"choices.zh has {len(choices['zh'])} choices, choices.en has {n}")
        answer_text, line = meta.get("answer", ("", self.start))
        letters = [a.strip().upper() for a in answer_text.split(",") if a.strip()]
        answer: list[int] = []
        if not letters:
            self.problem(line, "no 'answer' line (the letter(s) of the right choice(s), e.g. 'answer: B')")
        for letter in letters:
            if len(letter) != 1 or letter not in LETTERS[:max(n, 1)]:
                self.problem(line, f"answer {letter!r} is not a choice letter A-{LETTERS[max(n, 1) - 1]}")
            elif LETTERS.index(letter) in answer:
                self.problem(line, f"answer {letter!r} given twice")
            else:
                answer.append(LETTERS.index(letter))
        if kind == "single" and len(letters) > 1:
            self.problem(line, f"a single-choice question has one answer, got {answer_text!r} (use kind: multiple)")
        return {"choices": choices, "answer": tuple(sorted(answer))}

    def _tolerance(self, meta: dict[str, tuple[str, int]], system: str, unit: str) -> Tolerance:
        if "tolerance" not in meta:
            return Tolerance()
        text, line = meta["tolerance"]
        try:
            if text.endswith("%"):
                rel = float(text[:-1]) / 100
                if rel < 0:
                    raise ValueError
                return Tolerance(relative=rel)
            value = calc.parse_quantity(text, system, unit)
            if value < 0:
                raise ValueError
            return Tolerance(relative=0.0, absolute=value)
        except ValueError:
            self.problem(line, f"tolerance {text!r} must be a percentage ('2%') or an amount in {system} ('0.1' or '0.1 {unit or 'unit'}')")
            return Tolerance()

    def _numeric(self, meta: dict[str, tuple[str, int]]) -> dict[str, Any]:
        text, line = meta.get("answer", ("", self.start))
        if not text:
            self.problem(line, "no 'answer' line (a number with an optional unit, e.g. 'answer: 2 GiB')")
            return {}
        try:
            value, unit, system = read_quantity(text)
        except ValueError as exc:
            self.problem(line, f"answer {text!r}: {exc}")
            return {}
        return {"value": value, "unit": unit, "system": system, "tolerance": self._tolerance(meta, system, unit)}

    def _parametric(self, meta: dict[str, tuple[str, int]], text: dict[str, str],
                    explanation: dict[str, str]) -> dict[str, Any]:
        function, fline = meta.get("function", ("", self.start))
        if function not in calc.QUIZ_FUNCTIONS:
            self.problem(fline, (f"unknown function {function!r}" if function else "no 'function' line")
                         + f"; calculator functions: {', '.join(calc.QUIZ_FUNCTIONS)}")
            return {}
        unit, uline = meta.get("unit", ("", self.start))
        system = calc.unit_system(unit)
        if system is None:
            self.problem(uline, f"unknown unit {unit!r}")
            return {}
        signature = inspect.signature(calc.QUIZ_FUNCTIONS[function]).parameters
        params: dict[str, tuple[Any, ...]] = {}
        for key, (spec, line) in meta.items():
            if not key.startswith("param."):
                continue
            name = key[len("param."):]
            if name not in signature:
                self.problem(line, f"{function}() has no parameter {name!r} (it takes {', '.join(signature)})")
                continue
            try:
                params[name] = parse_param_spec(spec)
            except ValueError as exc:
                self.problem(line, str(exc))
                continue
            if name == "model":
                unknown = [v for v in params[name] if str(v).lower() not in map(str.lower, calc.PRESETS)]
                if unknown:
                    self.problem(line, f"unknown preset(s) {', '.join(map(str, unknown))}; presets: {', '.join(calc.PRESETS)}")
        required = [n for n, p in signature.items() if p.default is inspect.Parameter.empty]
        missing = [n for n in required if n not in params]
        if missing:
            self.problem(fline, f"{function}() needs param.{', param.'.join(missing)}")
        for lang in LANGS:
            for where, texts, extra in (("question", text, ()), ("explanation", explanation, ("answer",))):
                for m in PLACEHOLDER.finditer(texts[lang]):
                    if m[1] not in params and m[1] not in extra:
                        self.problem(self._section_line(f"{where}.{lang}", m[0]), f"placeholder {m[0]} is not a parameter")
        if not self.ok:
            return {}
        for combo in ({n: v[0] for n, v in params.items()}, {n: v[-1] for n, v in params.items()}):
            try:
                value = evaluate(function, combo)
            except (ValueError, TypeError, KeyError) as exc:
                self.problem(fline, f"{function}({', '.join(f'{k}={v!r}' for k, v in combo.items())}) fails: {exc}")
                return {}
            if not value > 0:
                self.problem(fline, f"{function}() gives {value} for {combo}; answers must be positive")
                return {}
        return {"function": function, "params": params, "unit": unit, "system": system,
                "tolerance": self._tolerance(meta, system, unit)}
