"""``[[expect]]`` in a sweep file: claims on the result table (filled in below)."""

from __future__ import annotations

from typing import Any


def parse_claims(entries: Any, grid: tuple, lines: Any) -> tuple:
    """Parse the sweep's [[expect]] entries."""
    return ()


def evaluate_claims(claims: tuple, rows: list) -> list:
    """Evaluate claims on the rows."""
    return []
