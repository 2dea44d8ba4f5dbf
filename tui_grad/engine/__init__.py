"""tui-grad's engine: pure computation, no UI and no files.

>>> from tui_grad.engine import Simulator
>>> from tui_grad.config import Config
>>> sim = Simulator(Config.from_overrides({"network.depth": 50, "network.activation": "sigmoid"}))
>>> metrics = sim.step()

The names below are imported on first use: loading a scenario file (which needs VERDICTS)
does not import numba, so the UI can start loading the kernels in a thread at once.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Simulator", "Snapshot", "StepMetrics", "VERDICTS"]
_HOMES = {"Simulator": "simulator", "Snapshot": "simulator", "StepMetrics": "metrics",
          "VERDICTS": "diagnose"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'tui_grad.engine' has no attribute {name!r}")
    if _HOMES[name] == "simulator":
        # recurrent.py defines the rnn/lstm Simulator subclass that Simulator(config) picks
        importlib.import_module("tui_grad.engine.recurrent")
    value = getattr(importlib.import_module(f"tui_grad.engine.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
