"""Writing the files a user asks for (exported scenarios, JSON summaries), whole or not at all.

Below both the command line and the UI, so neither imports the other to write a file.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TextIO

from tui_grad.config import ConfigError
from tui_grad.i18n import tr


class FileExists(ConfigError):
    """The file to write exists and the caller asked not to overwrite it."""


def write_new_file(path: str, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` to ``path`` via a temporary file, so a failure never leaves half a file.

    Raises ConfigError naming the path when it cannot be written, and FileExists when it
    exists and ``overwrite`` is False.
    """
    target = Path(path)
    if target.is_dir():
        raise ConfigError(tr("is a directory"), path=path)
    if not overwrite and target.exists():
        raise FileExists(tr("already exists"), path=path)
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise ConfigError(tr("cannot write ({reason})", reason=exc.strerror), path=path) from None


def open_output(path: str | None) -> TextIO | None:
    """A stream for a CSV the user asked for: None without a path, stdout for ``-``, else
    the file (the caller closes it); ConfigError naming the path if it cannot be written."""
    if path is None:
        return None
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by caller
    except OSError as exc:
        raise ConfigError(tr("cannot write ({reason})", reason=exc.strerror), path=path) from None
