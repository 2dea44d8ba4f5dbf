"""The result table: one CSV row per run, written as runs finish, resumable; JSON beside it."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from tui_grad.config import ConfigError
from tui_grad.i18n import tr
from tui_grad.sweep.runner import RESULT_COLUMNS
from tui_grad.sweep.spec import Run, Sweep, cell


def columns(sweep: Sweep) -> tuple[str, ...]:
    """The result file's header: swept options by key, seed, then the run's results."""
    return (*sweep.swept, "seed", *RESULT_COLUMNS)


def format_row(run: Run, result: dict[str, Any]) -> list[str]:
    """One run's cells, as text that is identical whichever process computed them."""
    cells = [*run.key()]
    for name in RESULT_COLUMNS:
        value = result.get(name)
        if name in ("seconds", "train_seconds") and value is not None:
            value = round(value, 4)
        cells.append("" if value is None else repr(value) if isinstance(value, float) else cell(value))
    return cells


class ResultWriter:
    """Appends rows to the result file and flushes each, so an interrupted sweep leaves a valid
    file; with ``resume`` it keeps the rows already there and reports their runs as done."""

    def __init__(self, path: str, header: tuple[str, ...], *, resume: bool, force: bool) -> None:
        self.path = path
        self.header = header
        self.done: set[tuple[str, ...]] = set()
        self.rows: list[dict[str, str]] = []  # every row in the file, resumed ones first
        if path == "-":
            if resume:
                raise ConfigError(tr("--resume needs a file, not stdout"), path="--out")
            self._stream: TextIO = sys.stdout
            self._write_header()
            return
        target = Path(path)
        if target.is_dir():
            raise ConfigError(tr("is a directory"), path=path)
        if target.exists() and target.stat().st_size > 0 and resume:
            self._read_existing(target)
            self._stream = self._open(target, "a")
            return
        if target.exists() and target.stat().st_size > 0 and not force:
            raise ConfigError(tr("already exists; add --resume to continue it or --force to start over"),
                              path=path)
        self._stream = self._open(target, "w")
        self._write_header()

    def _open(self, target: Path, mode: str) -> TextIO:
        try:
            return open(target, mode, encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ConfigError(tr("cannot write ({reason})", reason=exc.strerror), path=self.path) from None

    def _write_header(self) -> None:
        csv.writer(self._stream, lineterminator="\n").writerow(self.header)
        self._stream.flush()

    def _read_existing(self, target: Path) -> None:
        text = target.read_text(encoding="utf-8")
        if not text.endswith("\n"):  # a row cut by a hard kill: drop it, its run is redone
            text = text[:text.rfind("\n") + 1]
            with open(target, "r+", encoding="utf-8") as stream:
                stream.truncate(len(text.encode("utf-8")))
        reader = csv.reader(io.StringIO(text))
        found = next(reader, None)
        if found is None:
            self._stream = self._open(target, "w")
            self._write_header()
            return
        if tuple(found) != self.header:
            raise ConfigError(tr("was written by a different sweep (its columns differ); "
                                 "use another --out, or --force to start over"), path=self.path)
        keys = len(self.header) - len(RESULT_COLUMNS)
        for line in reader:
            if len(line) != len(self.header):
                raise ConfigError(tr("has a row of {cells} cells, not {columns}; not a result file "
                                     "tui-grad can resume", cells=len(line), columns=len(self.header)),
                                  path=self.path)
            self.done.add(tuple(line[:keys]))
            self.rows.append(dict(zip(self.header, line, strict=True)))

    def write(self, run: Run, result: dict[str, Any]) -> None:
        """Append one run's row and flush it to the file."""
        cells = format_row(run, result)
        csv.writer(self._stream, lineterminator="\n").writerow(cells)
        self._stream.flush()
        self.done.add(run.key())
        self.rows.append(dict(zip(self.header, cells, strict=True)))

    def close(self) -> None:
        """Close the file (never stdout)."""
        if self._stream is not sys.stdout:
            self._stream.close()


def read_table(path: str) -> list[dict[str, str]]:
    """The rows of a result file as ``{column: text}``; ConfigError if it cannot be read."""
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            rows = list(csv.DictReader(stream))
    except FileNotFoundError:
        raise ConfigError(tr("no such file"), path=path) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(tr("cannot read a result table ({reason})", reason=exc), path=path) from None
    return rows


def number(text: str | None) -> float:
    """A cell as a float: empty -> NaN; words (a status, a phase) -> NaN."""
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def write_json(path: str, sweep: Sweep, rows: list[dict[str, str]], checks: list) -> None:
    """The whole table as JSON (numbers as numbers, empty cells as null), in grid order."""
    from tui_grad.files import write_new_file

    order = {run.key(): i for i, run in enumerate(sweep.runs())}
    keys = len(sweep.swept) + 1
    header = columns(sweep)
    ranked = sorted(rows, key=lambda r: order.get(tuple(r[c] for c in header[:keys]), len(order)))
    document = {"sweep": sweep.name, "steps": sweep.steps, "runs": sweep.size,
                "columns": list(header), "rows": [{k: _json_cell(v) for k, v in r.items()} for r in ranked],
                "checks": [{"check": c.text, "passed": c.passed, "measured": c.measured} for c in checks]}
    if path == "-":
        sys.stdout.write(json.dumps(document, indent=1) + "\n")
        return
    write_new_file(path, json.dumps(document, indent=1) + "\n")


def _json_cell(text: str) -> Any:
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text  # JSON has no nan/inf: keep the word
