"""Modal screens: help (every key and option), the scenario's notes, export, the sweep map."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tui_grad.config import OPTIONS, Config
from tui_grad.i18n import N_, current, tr
from tui_grad.scenario import Scenario, to_toml
from tui_grad.tui.linebreak import join_chinese_lines
from tui_grad.tui.panels import GROUPS


def _markdown(text: str):
    """Textual's Markdown widget, imported when notes or help first open (markdown-it and
    the widget take 0.07 s of the app's start-up otherwise)."""
    from textual.widgets import Markdown

    return Markdown(text)


def translated_bindings(node: DOMNode) -> None:
    """Show ``node``'s key bindings in the language in use. BINDINGS are class attributes,
    made before the language is chosen: their descriptions and tooltips are marked English
    (``N_``) and translated here, once, after ``super().__init__()`` copied them to the node
    (the Footer shows ``Binding.description`` as it is)."""
    bindings = node._bindings
    bindings.key_to_bindings = {
        key: [dataclasses.replace(b, description=tr(b.description), tooltip=tr(b.tooltip))
              for b in group]
        for key, group in bindings.key_to_bindings.items()}


class HelpScreen(ModalScreen[None]):
    """Every key binding and every option with its range and help, laid out to the width."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", N_("close"), id="help.close")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        translated_bindings(self)
        self._keys = bindings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(self._keys_table(), id="help-keys")
            yield Static(self._options_text(), id="help-options")

    def _keys_table(self) -> Table:
        table = Table(title=tr("Keys (escape closes)"), title_justify="left", box=None, expand=True,
                      show_header=False, padding=(0, 1))
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("does", ratio=1, overflow="fold")  # a Chinese sentence has no spaces
        panels = {g.key: g.title for g in GROUPS}
        for binding in self._keys:  # marked English (or already translated): tr shows either
            does = tr("{panel} panel", panel=tr(panels[binding.key])) if binding.key in panels else (
                tr(binding.tooltip or binding.description))
            table.add_row(Text(binding.key_display or binding.key), Text(does))  # not markup
        for keys, does in PANEL_KEYS:
            table.add_row(Text(tr(keys)), Text(tr(does)))
        return table

    @staticmethod
    def _options_text() -> Text:
        text = Text("\n" + tr("Options"), style="bold")
        for opt in OPTIONS:
            text.append(f"\n{opt.name}", style="bold")
            allowed = opt.describe_range()
            text.append("  " + (tr("{allowed}; restarts", allowed=allowed) if opt.restart
                                else tr("{allowed}; live", allowed=allowed)), style="italic")
            text.append(f"\n    {tr(opt.help)}")
        return text


PANEL_KEYS = (  # keys inside the panels, beside the app's bindings
    ("up down tab", N_("move between values")),
    ("left right enter", N_("change a choice (enter: next value)")),
    ("0-9 . e + -", N_("type a number in a number field; enter applies it, escape restores it")),
    (N_("other keys"), N_("in a number field: leave it unapplied and do what they do elsewhere")),
    ("escape", N_("leave the panels")),
)


class NotesScreen(ModalScreen[None]):
    """The scenario's teaching notes, in the interface's language where the scenario has
    them; `t` switches between English and Chinese."""

    BINDINGS = [Binding("escape,q,o", "dismiss", N_("close"), id="notes.close"),
                Binding("t", "translate", "English / 中文", id="notes.translate")]

    def __init__(self, title: str, notes: str, notes_zh: str) -> None:
        super().__init__()
        translated_bindings(self)
        self._title, self._texts = title, [notes, notes_zh]
        self._index = 1 if current() == "zh" else 0
        if not self._texts[self._index]:  # the other language's notes, rather than none
            self._index = 1 - self._index

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield _markdown(self._text())

    def _text(self) -> str:
        body = self._texts[self._index] or tr("(no notes in this language)")
        keys = tr("escape: close")
        if all(self._texts):
            keys = f"t: English / 中文 - {keys}"
        return join_chinese_lines(f"# {self._title}\n\n{body}\n\n*{keys}*")

    def action_translate(self) -> None:
        if all(self._texts):
            self._index = 1 - self._index
            self.query_one("Markdown").update(self._text())


class ExportScreen(ModalScreen[str | None]):
    """Ask for a file name and write the current configuration as a scenario file."""

    BINDINGS = [Binding("escape", "dismiss(None)", N_("cancel"), id="export.cancel")]

    def __init__(self, config: Config, scenario: Scenario) -> None:
        super().__init__()
        translated_bindings(self)
        self._config, self._name, self._scenario = config, scenario.name, scenario
        self._confirm_overwrite: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(tr("Export the current configuration as a scenario file (enter: write, "
                           "escape: cancel)"))
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
            message.update(tr("give a file name"))
            return
        if Path(path).exists() and self._confirm_overwrite != path:
            self._confirm_overwrite = path
            message.update(tr("{path} exists: press enter again to overwrite it", path=path))
            return
        scenario = self._scenario  # its texts and locks, with the configuration as it is now
        text = to_toml(self._config, name=scenario.name, title=scenario.title, notes=scenario.notes,
                       lock=scenario.lock, title_zh=scenario.title_zh, notes_zh=scenario.notes_zh)
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

    BINDINGS = [Binding("escape,q,M", "dismiss", N_("close"), id="map.close"),
                Binding("m", "next_metric", N_("next metric"), id="map.metric")]

    def __init__(self, scenario: str, config: Config) -> None:
        super().__init__()
        translated_bindings(self)
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
            self._source = tr("no sweep of {scenario} yet; the last sweep, of {other}:",
                              scenario=repr(self._scenario), other=repr(last[0])) + "\n"
            self._path = last[1]
        if self._path is None:
            self._problem = tr("No sweep has been made yet. Make one with\n\n"
                               "    tui-grad sweep FILE --out results.csv\n\n"
                               "(a sweep file whose [scenario] name is {scenario} maps this "
                               "scenario: its file name, unless it says otherwise); then press M again.",
                               scenario=repr(self._scenario))
        else:
            try:
                self._rows = read_table(self._path)
            except ConfigError as exc:
                self._problem = tr("cannot read the last sweep of {scenario}: {error}",
                                   scenario=repr(self._scenario), error=exc)
        if self._rows:
            self._metrics = [m for m in MAP_METRICS if m in self._rows[0]] or ["loss_ratio"]
        elif not self._problem:
            self._problem = tr("{path}: the sweep has no rows yet", path=self._path)
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
            hint.update(Text(tr("escape: close"), style="italic"))
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
        hint.update(Text(tr("m: next metric ({metrics}) - escape: close", metrics=", ".join(self._metrics))
                         + f"\n{self._source}{self._path}", style="italic"))


class LessonPromptScreen(ModalScreen[bool]):
    """A lesson step's prompt, shown before its run starts: space starts it, N and P go to
    the next or previous step, escape just closes (the run stays paused)."""

    BINDINGS = [Binding("space", "dismiss(True)", N_("start"), id="lesson.start"),
                Binding("escape,enter", "dismiss(False)", N_("close"), id="lesson.close"),
                Binding("N", "app.lesson_step(1)", N_("next step"), id="lesson.prompt_next"),
                Binding("P", "app.lesson_step(-1)", N_("previous step"), id="lesson.prompt_previous"),
                Binding("t", "translate", "English / 中文", id="lesson.translate"),
                Binding("o", "app.notes", N_("notes"), id="lesson.notes")]

    def __init__(self, lesson, index: int, lang: str) -> None:
        """``lang``: the language of the lesson's own texts (title, prompt), which ``t``
        switches; the rest of the screen is in the interface's language."""
        super().__init__()
        translated_bindings(self)
        self._lesson, self._index, self._step = lesson, index, lesson.steps[index]
        self._lang, self._last = lang, index == len(lesson.steps) - 1

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield _markdown(self._text())

    def _text(self) -> str:
        title, prompt = self._step.text(self._lang)
        position = tr("step {k}/{n}: {title}", k=self._index + 1, n=len(self._lesson.steps), title=title)
        lines = [f"# {position}", f"*{self._lesson.heading(self._lang)}*", "", prompt]
        if self._step.watch:
            lines += ["", "**" + tr("Watch:") + "**"]
            lines += [f"- `{claim.text}`" for claim in self._step.watch]
        keys = [tr("space: start the run"), tr("last step") if self._last else tr("N: next step")]
        if self._index > 0:
            keys.append(tr("P: previous step"))
        other = "English" if self._lang == "zh" else "中文"  # what t switches the lesson's text to
        keys += [tr("o: notes"), f"t: {other}", tr("escape: close")]
        return join_chinese_lines("\n".join(lines) + "\n\n*" + " - ".join(keys) + "*")

    def action_translate(self) -> None:
        self._lang = "en" if self._lang == "zh" else "zh"
        self.query_one("Markdown").update(self._text())
