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
from tui_grad.sweep.runner import RESULT_COLUMNS

QUANTIFIERS = ("all", "any", "none")
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
    """One parsed [[expect]] entry of a sweep file."""

    text: str
    check: Comparison
    where: tuple[Comparison, ...]
    rows: str


@dataclass(frozen=True)
class ClaimResult:
    """A claim checked against a table: how many of the selected rows satisfied it."""

    text: str
    passed: bool
    measured: str

    def line(self) -> str:
        """``PASS  claim  (3 of 3 rows)`` as printed by --check."""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.text}  ({self.measured})"


class _Column(str):
    """A term that names a result column."""


def parse_claims(entries: Any, grid: tuple, lines: Any) -> tuple[Claim, ...]:
    """Parse the sweep's [[expect]] entries against its columns; ConfigError with the line."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError("must be written as [[expect]] tables", key="expect", line=lines.of("expect"))
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
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (use {', '.join(CLAIM_KEYS)})")
    text, where, rows = entry.get("check"), entry.get("where", ""), entry.get("rows", "all")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError('needs check = "column < value", e.g. "loss_ratio < 0.5"')
    if not isinstance(where, str):
        raise ConfigError(f'where must be text like "network.depth <= 8" (got {where!r})')
    if rows not in QUANTIFIERS:
        raise ConfigError(f"rows must be one of {', '.join(QUANTIFIERS)} (got {rows!r})")
    conditions = tuple(_comparison(part, columns) for part in re.split(r"\s+and\s+", where) if part.strip())
    shown = f"{rows} rows" + (f" where {where}" if where.strip() else "") + f": {text}"
    return Claim(shown, _comparison(text, columns), conditions, rows)


def _comparison(text: str, columns: set[str]) -> Comparison:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ConfigError(f"cannot read {text[pos:].strip()!r} in {text!r}")
        pos = match.end()
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
    ops = [i for i, (kind, _) in enumerate(tokens) if kind == "op"]
    if len(ops) != 1:
        raise ConfigError(f"needs exactly one comparison (< <= > >= == !=) in {text!r}")
    op = tokens[ops[0]][1]
    return Comparison(_terms(tokens[:ops[0]], op, columns, text), op,
                      _terms(tokens[ops[0] + 1:], op, columns, text))


def _terms(tokens: list[tuple[str, str]], op: str, columns: set[str], text: str) -> tuple:
    if not tokens or len(tokens) % 2 == 0:
        raise ConfigError(f"incomplete expression {text!r}")
    terms: list[Any] = []
    for i, (kind, value) in enumerate(tokens):
        if i % 2 == 1:
            if kind != "mul":
                raise ConfigError(f"expected * or / between values in {text!r}")
            terms.append(value)
        elif kind == "number":
            terms.append(float(value))
        elif kind == "name" and value in columns:
            terms.append(_Column(value))
        elif kind in ("name", "quoted") and op in ("==", "!=") and len(tokens) == 1:
            terms.append(None if value == "none" else value)
        elif kind == "quoted":
            raise ConfigError(f"text {value!r} can only be compared with == or != in {text!r}")
        else:
            raise ConfigError(f"unknown column {value!r} in {text!r}")
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
        results.append(ClaimResult(claim.text, passed, f"{held} of {len(selected)} rows"))
    return results
