"""Markdown tables for the README, generated from config.OPTIONS and csvout.COLUMNS.

``python -m tui_grad.docs`` prints them; ``python -m tui_grad.docs --update README.md``
rewrites them in place. A test checks the README holds the current text.
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


def update(text: str) -> str:
    """``text`` with its option and column tables replaced by the generated ones."""
    for header, table in (("| option | default |", options_table()),
                          ("| column | meaning |", columns_table())):
        start = text.index(header)
        end = text.find("\n\n", start)
        text = text[:start] + table + (text[end:] if end >= 0 else "\n")
    return text


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if len(sys.argv) == 3 and sys.argv[1] == "--update":
        path = Path(sys.argv[2])
        path.write_text(update(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(options_table())
        print()
        print(columns_table())
