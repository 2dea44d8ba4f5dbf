"""The bundled scenarios: installed as the package tui_grad.scenarios (see pyproject.toml)."""
