"""tui-grad's engine: pure computation, no UI and no files.

>>> from tui_grad.engine import Simulator
>>> from tui_grad.config import Config
>>> sim = Simulator(Config.from_overrides({"network.depth": 50, "network.activation": "sigmoid"}))
>>> metrics = sim.step()
"""

# recurrent.py defines the rnn/lstm Simulator subclass that Simulator(config) picks
from tui_grad.engine import recurrent  # noqa: F401
from tui_grad.engine.diagnose import VERDICTS
from tui_grad.engine.metrics import StepMetrics
from tui_grad.engine.simulator import Simulator, Snapshot

__all__ = ["Simulator", "Snapshot", "StepMetrics", "VERDICTS"]
