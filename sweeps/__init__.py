"""The bundled sweeps: installed as the package tui_grad.sweeps (see pyproject.toml)."""
