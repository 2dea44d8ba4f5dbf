"""Every string a user reads, in English and Simplified Chinese: one catalogue, one switch.

Code is written in English and wraps what a user reads:

- ``tr("step {step}", step=3)`` translates now, then fills the ``{fields}``;
- ``N_("help")`` only marks a string (a class attribute, a table) that is passed through
  ``tr`` where it is shown.

The Chinese catalogue is ``tui_grad/locale/zh/*.toml``: each entry is the English text as key
and its Chinese text as value, with the same ``{fields}``. ``tests/test_i18n.py`` reads every
``tr``/``N_`` in the package and fails on a missing, unused or mismatched entry.

The language is chosen once per process, before any text is made: ``--lang``, else the locale
(``LC_ALL``, ``LC_MESSAGES``, ``LANG``: ``zh*`` is Chinese), else English. What stays English
whatever the language, being an interface: option keys, CSV column names, scenario file keys,
option values (relu, xavier_normal), command and flag names.
"""

from __future__ import annotations

import os
import string
import tomllib
from functools import cache
from pathlib import Path

LANGUAGES = ("en", "zh")
CATALOGUE_DIR = Path(__file__).with_name("locale") / "zh"

_language = "en"


def language_from_environment(environ: dict[str, str] | None = None) -> str:
    """The locale's language: zh for a zh_* locale, else en (LC_ALL wins over LANG)."""
    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def use(language: str | None) -> str:
    """Make ``language`` (en or zh; None: from the environment) the one every ``tr`` uses."""
    global _language
    chosen = language or language_from_environment()
    if chosen not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)} (got {chosen!r})")
    _language = chosen
    return chosen


def current() -> str:
    """The language in use: en or zh."""
    return _language


@cache
def catalogue() -> dict[str, str]:
    """English text -> Chinese text, from every file of the catalogue."""
    entries: dict[str, str] = {}
    for path in sorted(CATALOGUE_DIR.glob("*.toml")):
        with path.open("rb") as stream:
            entries.update(tomllib.load(stream))
    return entries


def tr(text: str, /, **fields: object) -> str:
    """``text`` in the language in use, its ``{fields}`` filled in."""
    if _language != "en":
        text = catalogue().get(text, text)
    return text.format(**fields) if fields else text


def N_(text: str, /) -> str:  # noqa: N802 (gettext's name for "mark, translate later")
    """Mark ``text`` for the catalogue; it is translated where it is shown, with ``tr``."""
    return text


def fields_of(text: str) -> set[str]:
    """The names of the ``{fields}`` in ``text``."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}
