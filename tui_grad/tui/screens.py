"""Modal screens: help (every key and option), the scenario's notes, and export."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Markdown

from tui_grad.config import OPTIONS, Config
from tui_grad.scenario import to_toml
from tui_grad.tui.panels import GROUPS


class HelpScreen(ModalScreen[None]):
    """Every key binding and every option with its range and help."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close", id="help.close")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self._keys = bindings

    def compose(self) -> ComposeResult:
        keys = ["## Keys", "", "| key | action |", "|---|---|"]
        panels = {g.key: g.title for g in GROUPS}
        keys += [f"| `{b.key}` | {panels[b.key] + ' panel' if b.key in panels else b.description} |"
                 for b in self._keys]
        keys += ["| `up` / `down` / `tab` | move between values |",
                 "| `left` / `right` / `enter` | change a choice; type a number and press enter |",
                 "| `escape` | leave a panel |", "", "## Options", "",
                 "| option | allowed | on change | what it does |", "|---|---|---|---|"]
        keys += [f"| `{o.name}` | {o.describe_range()} | {'restarts' if o.restart else 'live'} | "
                 f"{o.help} |" for o in OPTIONS]
        with VerticalScroll(id="dialog"):
            yield Markdown("\n".join(keys))


class NotesScreen(ModalScreen[None]):
    """The scenario's teaching notes; `t` switches between English and Chinese."""

    BINDINGS = [Binding("escape,q,o", "dismiss", "close", id="notes.close"),
                Binding("t", "translate", "English / 中文", id="notes.translate")]

    def __init__(self, title: str, notes: str, notes_zh: str) -> None:
        super().__init__()
        self._title, self._texts, self._index = title, [notes, notes_zh], 0

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Markdown(self._text())

    def _text(self) -> str:
        body = self._texts[self._index] or "(no notes in this language)"
        hint = "\n\n*t: English / 中文 - escape: close*" if all(self._texts) else "\n\n*escape: close*"
        return f"# {self._title}\n\n{body}{hint}"

    def action_translate(self) -> None:
        if all(self._texts):
            self._index = 1 - self._index
            self.query_one(Markdown).update(self._text())


class ExportScreen(ModalScreen[str | None]):
    """Ask for a file name and write the current configuration as a scenario file."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel", id="export.cancel")]

    def __init__(self, config: Config, name: str, title: str, notes: str, lock: tuple[str, ...]) -> None:
        super().__init__()
        self._config, self._name, self._title = config, name, title
        self._notes, self._lock = notes, lock
        self._confirm_overwrite: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Export the current configuration as a scenario file (enter: write, "
                        "escape: cancel)")
            yield Input(value=self._free_name(), id="export-path")
            yield Label("", id="export-message")

    def _free_name(self) -> str:
        base = f"{self._name}-export"
        candidate, number = f"{base}.toml", 2
        while Path(candidate).exists():
            candidate, number = f"{base}-{number}.toml", number + 1
        return candidate

    @on(Input.Submitted)
    def write(self, event: Input.Submitted) -> None:
        from tui_grad.config import ConfigError
        from tui_grad.files import write_new_file

        path = event.value.strip()
        message = self.query_one("#export-message", Label)
        if not path:
            message.update("give a file name")
            return
        if Path(path).exists() and self._confirm_overwrite != path:
            self._confirm_overwrite = path
            message.update(f"{path} exists: press enter again to overwrite it")
            return
        text = to_toml(self._config, name=self._name, title=self._title, notes=self._notes,
                       lock=self._lock)
        try:
            write_new_file(path, text)
        except ConfigError as exc:
            message.update(str(exc))
            return
        self.dismiss(path)

