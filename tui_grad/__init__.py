"""tui-grad: watch vanishing and exploding gradients in a terminal."""

__version__ = "0.1.0"
