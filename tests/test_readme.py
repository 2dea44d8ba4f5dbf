"""The README's Python examples run as written: a reader can paste any of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[int, str]]:
    """(line number, source) of every ```python block in the README."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start()) + 1, match.group(1))
            for match in PYTHON_BLOCK.finditer(text)]


def test_the_readme_has_python_examples():
    """The Python API section keeps its example (so the test below checks something)."""
    assert python_blocks()


@pytest.mark.parametrize("line,source", python_blocks(), ids=lambda v: f"README.md:{v}"
                         if isinstance(v, int) else "")
def test_readme_python_block_runs_as_written(line, source):
    """Every ```python block of README.md runs without an error, each in a fresh namespace."""
    code = compile(source, f"README.md:{line}", "exec")
    exec(code, {"__name__": "readme_example"})
