"""Markdown tables for the README, generated from config.OPTIONS and csvout.COLUMNS.

``python -m tui_grad.docs`` prints them; a test checks the README holds the current text.
"""

from __future__ import annotations

from tui_grad.config import OPTIONS
from tui_grad.csvout import COLUMNS


def options_table() -> str:
    """Every option: name, default, allowed values, live or restart, help."""
    lines = ["| option | default | allowed | on change | what it does |",
             "|---|---|---|---|---|"]
    for opt in OPTIONS:
        default = str(opt.default).lower() if isinstance(opt.default, bool) else f"{opt.default}"
        allowed = opt.describe_range()
        if opt.aliases:
            allowed += " (aliases: " + ", ".join(f"{a}" for a in opt.aliases) + ")"
        lines.append(f"| `{opt.name}` | `{default}` | {allowed} | "
                     f"{'restarts' if opt.restart else 'live'} | {opt.help} |")
    return "\n".join(lines)


def columns_table() -> str:
    """The CSV columns and what each holds."""
    lines = ["| column | meaning |", "|---|---|",
             "| `variant` | the [[compare]] variant (only when the scenario has them) |"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in COLUMNS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(options_table())
    print()
    print(columns_table())
