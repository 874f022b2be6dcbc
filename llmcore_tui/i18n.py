"""The app's own words in the learner's language: the one home of ``_()`` and ``ngettext``.

Every label, key description, message and CLI help is written in English in the source and
wrapped in ``_()``; ``pybabel`` (a dev tool, see README) extracts them into
``locale/messages.pot``, a translator fills ``locale/zh/LC_MESSAGES/llmcore.po``, and the compiled
``llmcore.mo`` beside it is read here with the standard library's ``gettext`` (no run-time
dependency, ~1 ms). English needs no catalog: a msgid is its own English text.

The language is chosen once at start (``--lang``, else the stored ``lang`` setting, else the
locale) with :func:`set_language`. Card and quiz *content* is bilingual in its own files and has
its own switch (``z`` in Review); this module is only about the interface around it.

A string built when a module is imported (a key description in ``BINDINGS``, a typer ``help=``)
cannot call ``_()`` then: the language is not chosen yet. Such strings are marked with
:func:`N_` (extraction only) and translated where they are shown: :class:`Localized` for
Textual's key bindings, :func:`localize_command` for the click command typer builds.
"""

from __future__ import annotations

import dataclasses
import gettext
from pathlib import Path
from typing import Any

DOMAIN = "llmcore"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("en", "zh")

_language = "en"
_catalog: gettext.NullTranslations = gettext.NullTranslations()


def set_language(lang: str) -> None:
    """Use ``lang``'s catalog for every later ``_()``; ValueError for a language we do not ship."""
    global _language, _catalog
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: expected {' or '.join(LANGUAGES)}")
    # English is the source text; a missing zh catalog is a packaging bug, so no silent fallback
    _catalog = gettext.NullTranslations() if lang == "en" else gettext.translation(DOMAIN, LOCALE_DIR, [lang])
    _language = lang


def language() -> str:
    """The interface language in use: 'en' or 'zh'."""
    return _language


def _(message: str) -> str:
    """``message`` in the interface language. The empty string stays empty (gettext would answer
    the catalog's header for it)."""
    return _catalog.gettext(message) if message else message


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, in the interface language (Chinese has one form)."""
    return _catalog.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark ``message`` for extraction without translating it now: it is translated where shown."""
    return message


def pick(texts: dict[str, str]) -> str:
    """The interface language's entry of a bilingual ``{'en': ..., 'zh': ...}`` (module and day
    titles live in the course's data, not in the catalog), English when it has none."""
    return texts.get(_language) or texts.get("en") or ""


# -- Textual: key descriptions and tooltips ---------------------------------------------------
def localize_bindings(node: Any) -> None:
    """Translate the key descriptions and tooltips of one Textual node (a screen, the app).

    Textual turns a class's ``BINDINGS`` into its own Binding objects when the class is built,
    that is at import, and copies them into each instance; so the class keeps the English msgids
    and each instance gets translated copies, in the language chosen at start."""
    table = node._bindings.key_to_bindings  # Textual's per-instance copy (a dict of lists)
    for key, bindings in table.items():
        table[key] = [dataclasses.replace(b, description=_(b.description), tooltip=_(b.tooltip)) for b in bindings]


class Localized:
    """Mix into a Textual screen (before ``Screen``) so its footer shows the keys in the interface
    language: ``class ReviewScreen(Localized, Screen)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        localize_bindings(self)


# -- click/typer: the CLI's help ---------------------------------------------------------------
def language_in(argv: list[str], default: str) -> str:
    """The language a command line asks for with ``--lang X`` or ``--lang=X``, else ``default``.
    Read before typer parses: ``--help`` is answered before the root's ``--lang`` is processed."""
    for i, token in enumerate(argv):
        if token == "--":
            break
        if token.startswith("--lang="):
            value = token.partition("=")[2]
        elif token == "--lang" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        if value in LANGUAGES:
            return value
    return default


def localize_command(command: Any) -> Any:
    """Translate the help of a click command built by typer (its parameters, its ``--help`` and
    its sub-commands) and the headings typer draws around them; returns ``command``."""
    from typer import rich_utils

    # typer reads these module constants when it draws a help page; they were set, in English,
    # when typer was imported (set in English too, so a later English run is English again)
    rich_utils.OPTIONS_PANEL_TITLE, rich_utils.COMMANDS_PANEL_TITLE = _("Options"), _("Commands")
    rich_utils.ARGUMENTS_PANEL_TITLE, rich_utils.ERRORS_PANEL_TITLE = _("Arguments"), _("Error")
    rich_utils.DEFAULT_STRING, rich_utils.REQUIRED_LONG_STRING = _("[default: {}]"), _("[required]")
    names = (command.context_settings or {}).get("help_option_names", ["--help"])
    context_class = _usage_context(command.context_class)
    _localize_tree(command, lambda cmd: context_class(cmd, help_option_names=names), context_class)
    return command


def _usage_context(base: Any) -> Any:
    """The command's own context class (typer's click), whose help pages say "Usage:" in the
    interface language: the click typer ships writes it in English."""

    class Formatter(base.formatter_class):  # type: ignore[name-defined,misc]
        def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
            super().write_usage(prog, args, _("Usage:") + " " if prefix is None else prefix)

    class Context(base):  # type: ignore[valid-type,misc]
        formatter_class = Formatter

    return Context


def _localize_tree(command: Any, context: Any, context_class: Any) -> None:
    command.context_class = context_class
    for attr in ("help", "short_help", "epilog"):
        if getattr(command, attr, None):
            setattr(command, attr, _(getattr(command, attr)))
    for param in command.params:
        if getattr(param, "help", None):
            param.help = _(param.help)
    help_option = command.get_help_option(context(command))  # click makes it once, in English
    if help_option is not None:
        help_option.help = _("Show this message and exit.")
    for sub in getattr(command, "commands", {}).values():
        _localize_tree(sub, context, context_class)
