"""Line breaks between Chinese characters, not only at spaces.

Rich and Textual wrap text at whitespace: a Chinese sentence, which has none, is one "word"
that moves to the next line whole or is chopped where the width ends. Chinese may break
between any two characters, except before closing punctuation (，。）...) and after opening
punctuation (（《“...). ``enable()`` teaches both wrappers that, by giving their word
patterns a Chinese character (with the punctuation that sticks to it) as a word of its own;
text without Chinese characters is split exactly as before.

Both patterns are module globals the wrappers read at each call (rich._wrap.re_word,
textual._wrap.re_chunk); tests/test_i18n_app.py fails should a new version rename them.
"""

from __future__ import annotations

import re

IDEOGRAPH = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff"
OPENING = "（《「『【〔“‘"
CLOSING = "，。、；：！？）》」』】〕”’…·"
# one ideograph, the opening punctuation before it and the closing punctuation after it
_CHARACTER = rf"[{OPENING}]*[{IDEOGRAPH}][{CLOSING}]*"
# a run of anything else up to the next ideograph (with its opening punctuation) or space
_OTHER = rf"[^\s{IDEOGRAPH}]+?(?=[{OPENING}]*[{IDEOGRAPH}]|\s|$)"
RICH_WORD = re.compile(rf"\s*(?:{_CHARACTER}|{_OTHER})\s*")
TEXTUAL_CHUNK = re.compile(rf"(?:{_CHARACTER}|{_OTHER})\s*|\s+")


def enable() -> None:
    """Let Rich's and Textual's wrapping break between Chinese characters."""
    import rich._wrap
    import textual._wrap

    rich._wrap.re_word = RICH_WORD
    textual._wrap.re_chunk = TEXTUAL_CHUNK


_IDEOGRAPH_END = re.compile(rf"[{IDEOGRAPH}{CLOSING}]$")
_IDEOGRAPH_START = re.compile(rf"^[{OPENING}{IDEOGRAPH}]")
_BLOCK_START = re.compile(r"^\s*(#|[-*+>|]|\d+[.)]|```|~~~)")  # Markdown that starts a block
_OWN_LINE = re.compile(r"^\s*(#|\|)")  # a heading or a table row: nothing joins onto it


def join_chinese_lines(text: str) -> str:
    """Markdown joins a paragraph's lines with a space, which Chinese does not put between
    characters: a line break between two Chinese characters inside a paragraph is removed.
    Headings, list items, quotes, tables, code blocks and hard breaks (two spaces) stay."""
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        fence = line.lstrip().startswith(("```", "~~~"))
        previous = out[-1] if out else ""
        if (not fenced and not fence and out and _IDEOGRAPH_END.search(previous.rstrip(" \t"))
                and not previous.endswith("  ") and not _OWN_LINE.match(previous)
                and _IDEOGRAPH_START.match(line.lstrip()) and not _BLOCK_START.match(line)):
            out[-1] = previous.rstrip(" \t") + line.lstrip()
            continue
        fenced ^= fence
        out.append(line)
    return "\n".join(out)


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` terminal cells, broken at spaces and between
    Chinese characters (for text no widget lays out, such as ``--help``)."""
    from rich.cells import cell_len

    lines, line = [], ""
    for match in TEXTUAL_CHUNK.finditer(text):
        chunk = match.group(0)
        if line and cell_len((line + chunk).rstrip()) > width:
            lines.append(line.rstrip())
            line = chunk.lstrip()
        else:
            line += chunk
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines
