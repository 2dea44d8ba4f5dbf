"""``[[expect]]`` in a sweep file: claims on the result table, checked by ``sweep --check``.

    [[expect]]
    check = "loss_ratio < 0.5"                # per row: columns, numbers, * and /, one comparison
    where = "network.depth <= 8 and phase == chaotic"   # optional: the rows the claim is about
    rows = "all"                              # all (default), any or none of those rows

Names are result columns (``network.depth``, ``loss_ratio``, ``xi_c``, ...); beside == and !=
a bare word is text (``diverged``, ``relu``) and ``none`` is an empty cell (never diverged).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tui_grad.config import ConfigError
from tui_grad.expect import COMPARISONS
from tui_grad.i18n import N_, tr
from tui_grad.sweep.runner import RESULT_COLUMNS

QUANTIFIERS = ("all", "any", "none")
SHOWN = {  # (rows, with a where) -> how a claim reads in --check's lines
    ("all", False): N_("all rows: {check}"),
    ("all", True): N_("all rows where {where}: {check}"),
    ("any", False): N_("any rows: {check}"),
    ("any", True): N_("any rows where {where}: {check}"),
    ("none", False): N_("none rows: {check}"),
    ("none", True): N_("none rows where {where}: {check}")}
CLAIM_KEYS = ("check", "where", "rows")
_TOKEN = re.compile(r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)|'(?P<quoted>[^']*)'"
                    r"|(?P<op><=|>=|==|!=|<|>)|(?P<mul>[*/]))")


@dataclass(frozen=True)
class Comparison:
    """``left OP right``; each side a tuple of terms joined by * and / (odd: operators)."""

    left: tuple
    op: str
    right: tuple

    def holds(self, row: dict[str, str]) -> bool:
        """Whether the comparison is true for this row (NaN compares false, except !=)."""
        left, right = _side(self.left, row), _side(self.right, row)
        if isinstance(left, float) and math.isnan(left) or isinstance(right, float) and math.isnan(right):
            return self.op == "!="
        if isinstance(left, float) != isinstance(right, float):
            return self.op == "!="  # a number is never equal to text or an empty cell
        return COMPARISONS[self.op](left, right)


@dataclass(frozen=True)
class Claim:
    """One parsed [[expect]] entry of a sweep file: ``text`` is what the JSON file records
    (English, like the file's keys); ``shown()`` is how --check's line reads it."""

    text: str
    check: Comparison
    where: tuple[Comparison, ...]
    rows: str
    check_text: str
    where_text: str

    def shown(self) -> str:
        """The claim in the language in use: which rows, then the check."""
        return tr(SHOWN[(self.rows, bool(self.where_text.strip()))], where=self.where_text,
                  check=self.check_text)


@dataclass(frozen=True)
class ClaimResult:
    """A claim checked against a table: ``held`` of the ``selected`` rows satisfied it."""

    claim: Claim
    passed: bool
    held: int
    selected: int

    @property
    def text(self) -> str:
        """The claim as the JSON file records it."""
        return self.claim.text

    @property
    def measured(self) -> str:
        """``3 of 3 rows``, as the JSON file records it."""
        return f"{self.held} of {self.selected} rows"

    def line(self) -> str:
        """``PASS  claim  (3 of 3 rows)`` as printed by --check."""
        measured = tr("({held} of {selected} rows)", held=self.held, selected=self.selected)
        return f"{tr('PASS') if self.passed else tr('FAIL')}  {self.claim.shown()}  {measured}"


class _Column(str):
    """A term that names a result column."""


def parse_claims(entries: Any, grid: tuple, lines: Any) -> tuple[Claim, ...]:
    """Parse the sweep's [[expect]] entries against its columns; ConfigError with the line."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(tr("must be written as [[expect]] tables"), key="expect", line=lines.of("expect"))
    columns = {name for name, _ in grid} | {"seed"} | set(RESULT_COLUMNS)
    claims = []
    for i, entry in enumerate(entries):
        try:
            claims.append(_claim(entry, columns))
        except ConfigError as exc:
            raise ConfigError(exc.message, key=f"expect[{i + 1}]", line=lines.of("expect", None, i)) from None
    return tuple(claims)


def _claim(entry: dict[str, Any], columns: set[str]) -> Claim:
    unknown = set(entry) - set(CLAIM_KEYS)
    if unknown:
        raise ConfigError(tr("unknown key {key} (use {keys})", key=repr(sorted(unknown)[0]),
                             keys=", ".join(CLAIM_KEYS)))
    text, where, rows = entry.get("check"), entry.get("where", ""), entry.get("rows", "all")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(tr('needs check = "column < value", e.g. "loss_ratio < 0.5"'))
    if not isinstance(where, str):
        raise ConfigError(tr('where must be text like "network.depth <= 8" (got {value})', value=repr(where)))
    if rows not in QUANTIFIERS:
        raise ConfigError(tr("rows must be one of {choices} (got {value})", choices=", ".join(QUANTIFIERS),
                             value=repr(rows)))
    conditions = tuple(_comparison(part, columns) for part in re.split(r"\s+and\s+", where) if part.strip())
    recorded = f"{rows} rows" + (f" where {where}" if where.strip() else "") + f": {text}"
    return Claim(recorded, _comparison(text, columns), conditions, rows, text, where)


def _comparison(text: str, columns: set[str]) -> Comparison:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ConfigError(tr("cannot read {part} in {text}", part=repr(text[pos:].strip()),
                                 text=repr(text)))
        pos = match.end()
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
    ops = [i for i, (kind, _) in enumerate(tokens) if kind == "op"]
    if len(ops) != 1:
        raise ConfigError(tr("needs exactly one comparison (< <= > >= == !=) in {text}", text=repr(text)))
    op = tokens[ops[0]][1]
    return Comparison(_terms(tokens[:ops[0]], op, columns, text), op,
                      _terms(tokens[ops[0] + 1:], op, columns, text))


def _terms(tokens: list[tuple[str, str]], op: str, columns: set[str], text: str) -> tuple:
    if not tokens or len(tokens) % 2 == 0:
        raise ConfigError(tr("incomplete expression {text}", text=repr(text)))
    terms: list[Any] = []
    for i, (kind, value) in enumerate(tokens):
        if i % 2 == 1:
            if kind != "mul":
                raise ConfigError(tr("expected * or / between values in {text}", text=repr(text)))
            terms.append(value)
        elif kind == "number":
            terms.append(float(value))
        elif kind == "name" and value in columns:
            terms.append(_Column(value))
        elif kind in ("name", "quoted") and op in ("==", "!=") and len(tokens) == 1:
            terms.append(None if value == "none" else value)
        elif kind == "quoted":
            raise ConfigError(tr("text {value} can only be compared with == or != in {text}",
                                 value=repr(value), text=repr(text)))
        else:
            raise ConfigError(tr("unknown column {column} in {text}", column=repr(value), text=repr(text)))
    return tuple(terms)


def _cell(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _side(terms: tuple, row: dict[str, str]) -> Any:
    value = _cell(row.get(terms[0])) if isinstance(terms[0], _Column) else terms[0]
    for i in range(1, len(terms), 2):
        other = _cell(row.get(terms[i + 1])) if isinstance(terms[i + 1], _Column) else terms[i + 1]
        if not isinstance(value, float) or not isinstance(other, float):
            return math.nan  # arithmetic on an empty cell or on text: not a number
        value = value * other if terms[i] == "*" else (value / other if other else math.nan)
    return value


def evaluate_claims(claims: tuple[Claim, ...], rows: list[dict[str, str]]) -> list[ClaimResult]:
    """Check every claim on the table's rows; a claim about no rows at all fails."""
    results = []
    for claim in claims:
        selected = [row for row in rows if all(c.holds(row) for c in claim.where)]
        held = sum(claim.check.holds(row) for row in selected)
        passed = bool(selected) and {"all": held == len(selected), "any": held > 0,
                                     "none": held == 0}[claim.rows]
        results.append(ClaimResult(claim, passed, held, len(selected)))
    return results
