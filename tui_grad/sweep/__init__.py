"""Sweeps: a grid of option values x seeds -> one run each -> one tidy row each.

``spec`` reads sweep files, ``runner`` is the pure function (Config, steps) -> row that every
executor calls, ``table`` writes and resumes result files, ``executors`` run the grid in this
process or on dask.distributed (imported only there, so ``tui-grad`` never pays for it).
"""

from tui_grad.sweep.spec import Run, Sweep, load_sweep

__all__ = ["Run", "Sweep", "load_sweep"]
