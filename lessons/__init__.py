"""The bundled lessons: installed as the package tui_grad.lessons (see pyproject.toml)."""
