"""Modal screens: help (every key and option), the scenario's notes, export, the sweep map."""

from __future__ import annotations

import os
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Markdown, Static

from tui_grad.config import OPTIONS, Config
from tui_grad.scenario import to_toml
from tui_grad.tui.panels import GROUPS


class HelpScreen(ModalScreen[None]):
    """Every key binding and every option with its range and help, laid out to the width."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close", id="help.close")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self._keys = bindings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(self._keys_table(), id="help-keys")
            yield Static(self._options_text(), id="help-options")

    def _keys_table(self) -> Table:
        table = Table(title="Keys (escape closes)", title_justify="left", box=None, expand=True,
                      show_header=False, padding=(0, 1))
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("does", ratio=1)
        panels = {g.key: g.title for g in GROUPS}
        for binding in self._keys:
            does = f"{panels[binding.key]} panel" if binding.key in panels else (
                binding.tooltip or binding.description)
            table.add_row(Text(binding.key_display or binding.key), Text(does))  # not markup
        for keys, does in PANEL_KEYS:
            table.add_row(Text(keys), Text(does))
        return table

    @staticmethod
    def _options_text() -> Text:
        text = Text("\nOptions", style="bold")
        for opt in OPTIONS:
            text.append(f"\n{opt.name}", style="bold")
            text.append(f"  {opt.describe_range()}; {'restarts' if opt.restart else 'live'}",
                        style="italic")
            text.append(f"\n    {opt.help}")
        return text


PANEL_KEYS = (  # keys inside the panels, beside the app's bindings
    ("up down tab", "move between values"),
    ("left right enter", "change a choice (enter: next value)"),
    ("0-9 . e + -", "type a number in a number field; enter applies it, escape restores it"),
    ("other keys", "in a number field: leave it unapplied and do what they do elsewhere"),
    ("escape", "leave the panels"),
)


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



MAP_METRICS = ("loss_ratio", "final_loss", "grad_ratio_log10", "chi_1", "xi")  # m cycles through


class MapScreen(ModalScreen[None]):
    """The last sweep's map for this scenario (``tui-grad sweep`` records it), with the current
    configuration marked; ``m`` shows the next result column."""

    BINDINGS = [Binding("escape,q,M", "dismiss", "close", id="map.close"),
                Binding("m", "next_metric", "next metric", id="map.metric")]

    def __init__(self, scenario: str, config: Config) -> None:
        super().__init__()
        self._scenario, self._config = scenario, config
        self._rows: list[dict[str, str]] = []
        self._path: str | None = None
        self._problem = ""
        self._source = ""  # what the map is, when it is not this scenario's own sweep
        self._metrics: list[str] = []
        self._index = 0

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static("", id="map-body")
            yield Static("", id="map-hint")

    def on_mount(self) -> None:
        from tui_grad.config import ConfigError
        from tui_grad.sweep.command import last_sweep, recorded_sweeps
        from tui_grad.sweep.table import read_table

        self._path = recorded_sweeps().get(self._scenario)
        last = last_sweep()
        if self._path is None and last is not None:  # another scenario's sweep: say whose
            self._source = f"no sweep of {self._scenario!r} yet; the last sweep, of {last[0]!r}:\n"
            self._path = last[1]
        if self._path is None:
            self._problem = (f"No sweep has been made yet. Make one with\n\n"
                             "    tui-grad sweep FILE --out results.csv\n\n"
                             f"(a sweep file whose [scenario] name is {self._scenario!r} maps this "
                             "scenario: its file name, unless it says otherwise); then press M again.")
        else:
            try:
                self._rows = read_table(self._path)
            except ConfigError as exc:
                self._problem = f"cannot read the last sweep of {self._scenario!r}: {exc}"
        if self._rows:
            self._metrics = [m for m in MAP_METRICS if m in self._rows[0]] or ["loss_ratio"]
        elif not self._problem:
            self._problem = f"{self._path}: the sweep has no rows yet"
        self.call_after_refresh(self._draw)

    def action_next_metric(self) -> None:
        if self._metrics:
            self._index = (self._index + 1) % len(self._metrics)
            self._draw()

    def marker(self) -> dict[str, float | str]:
        """The current configuration's values of the table's swept options."""
        names = list(self._rows[0])[:list(self._rows[0]).index("seed")] if "seed" in self._rows[0] else []
        marked = {}
        for name in names:
            try:
                marked[name] = self._config[name]
            except (KeyError, ValueError):  # ConfigError is a ValueError
                continue
        return marked

    def _draw(self) -> None:
        from tui_grad.config import ConfigError
        from tui_grad.plot import draw_map

        body, hint = self.query_one("#map-body", Static), self.query_one("#map-hint", Static)
        if self._problem:
            body.update(Text(self._problem))
            hint.update(Text("escape: close", style="italic"))
            return
        metric = self._metrics[self._index]
        size = self.query_one("#dialog").content_size
        try:
            text = draw_map(self._rows, metric, width=max(size.width - 3, 30),
                            height=max(size.height - 7, 10), color="NO_COLOR" not in os.environ,
                            marker=self.marker())
        except ConfigError as exc:
            body.update(Text(f"{self._path}: {exc}"))
        else:
            body.update(Text.from_ansi(text))
        hint.update(Text(f"m: next metric ({', '.join(self._metrics)}) - escape: close\n"
                         f"{self._source}{self._path}",
                         style="italic"))


class LessonPromptScreen(ModalScreen[bool]):
    """A lesson step's prompt, shown before its run starts: space starts it, N and P go to
    the next or previous step, escape just closes (the run stays paused)."""

    BINDINGS = [Binding("space", "dismiss(True)", "start", id="lesson.start"),
                Binding("escape,enter", "dismiss(False)", "close", id="lesson.close"),
                Binding("N", "app.lesson_step(1)", "next step", id="lesson.prompt_next"),
                Binding("P", "app.lesson_step(-1)", "previous step", id="lesson.prompt_previous"),
                Binding("t", "translate", "English / 中文", id="lesson.translate"),
                Binding("o", "app.notes", "notes", id="lesson.notes")]

    def __init__(self, lesson, index: int, lang: str) -> None:
        super().__init__()
        self._lesson, self._index, self._step = lesson, index, lesson.steps[index]
        self._lang, self._last = lang, index == len(lesson.steps) - 1

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Markdown(self._text())

    def _text(self) -> str:
        title, prompt = self._step.text(self._lang)
        k, n = self._index + 1, len(self._lesson.steps)
        position = f"第 {k}/{n} 步" if self._lang == "zh" else f"step {k}/{n}"
        lines = [f"# {position}: {title}", f"*{self._lesson.heading(self._lang)}*", "", prompt]
        if self._step.watch:
            lines += ["", "**Watch:**" if self._lang != "zh" else "**观察:**"]
            lines += [f"- `{claim.text}`" for claim in self._step.watch]
        first = self._index == 0
        if self._lang == "zh":
            more = "最后一步" if self._last else "N:下一步"
            back = "" if first else " - P:上一步"
            keys = f"空格:开始运行 - {more}{back} - o:说明 - t:English - escape:关闭"
        else:
            more = "last step" if self._last else "N: next step"
            back = "" if first else " - P: previous step"
            keys = f"space: start the run - {more}{back} - o: notes - t: 中文 - escape: close"
        return "\n".join(lines) + f"\n\n*{keys}*"

    def action_translate(self) -> None:
        self._lang = "en" if self._lang == "zh" else "zh"
        self.query_one(Markdown).update(self._text())
