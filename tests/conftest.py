"""Shared helpers for the test suite."""

from __future__ import annotations

import pytest

from tui_grad.config import Config
from tui_grad.engine import Simulator


def _make_sim(*, keep_grads: bool = False, **overrides) -> Simulator:
    return Simulator(Config.from_overrides({k.replace("__", "."): v for k, v in overrides.items()}),
                     keep_grads=keep_grads)


@pytest.fixture
def make_sim():
    """Build a Simulator from ``section__key=value`` keyword overrides (``network__depth=3``);
    ``keep_grads=True`` as for Simulator."""
    return _make_sim
