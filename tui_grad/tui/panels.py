"""Control panels generated from config.OPTIONS: one row widget per option, grouped by key.

Choice and on/off rows change with left/right or enter; numeric rows take typed values,
validated by the option's own rules with the error shown inline (never raised). A number
field takes only what can be part of a number, so every other key still reaches the app
(panel keys, space, q). Up and down move between values.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from rich.cells import chop_cells
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Static

from tui_grad.config import OPTIONS_BY_NAME, Config, ConfigError, Option
from tui_grad.i18n import N_, tr


@dataclass(frozen=True)
class Group:
    """A panel: a title, the key that focuses it, and the options it holds (the title and
    ``short`` are marked English: ``tr`` them where they are shown)."""

    key: str
    title: str
    options: tuple[str, ...]

    @property
    def short(self) -> str:
        """The footer's word for the panel."""
        return SHORT_TITLES.get(self.title, self.title)


SHORT_TITLES = {"activation": N_("act"), "norm": N_("norm"), "residual": N_("res"),
                "clipping": N_("clip"), "learning rate": N_("lr"), "depth / width": N_("size"),
                "weight decay": N_("wd"), "batch size": N_("batch"), "optimizer": N_("opt"),
                "task / loss": N_("task"), "recurrent": N_("rnn")}  # panel title -> footer word


GROUPS: tuple[Group, ...] = (
    Group("a", N_("activation"), ("network.activation", "network.negative_slope", "network.prelu_init")),
    Group("i", N_("init"), ("network.init", "network.init_std", "network.init_a", "network.init_gain",
                        "network.bias_init", "network.parametrization")),
    Group("b", N_("norm"), ("network.norm", "network.norm_position", "network.bn_eps")),
    Group("r", N_("residual"), ("network.residual", "network.residual_block", "network.residual_alpha",
                            "network.learn_alpha")),
    Group("c", N_("clipping"), ("training.clipping", "training.max_norm", "training.clip_value")),
    Group("l", N_("learning rate"), ("training.lr", "training.schedule", "training.warmup_steps",
                                 "training.decay_steps", "training.decay_factor",
                                 "run.sharpness_every")),
    Group("d", N_("depth / width"), ("network.depth", "network.width", "network.dtype")),
    Group("w", N_("weight decay"), ("training.weight_decay",)),
    Group("z", N_("batch size"), ("training.batch_size",)),
    Group("m", N_("optimizer"), ("training.optimizer", "training.momentum", "training.adam_beta1",
                             "training.adam_beta2", "training.adam_eps")),
    Group("t", N_("task / loss"), ("data.task", "training.loss", "data.n_samples", "data.input_dim",
                               "data.n_classes", "data.noise")),
    Group("k", N_("recurrent"), ("network.model", "data.seq_len", "network.recurrent_init",
                             "network.recurrent_gain", "network.forget_bias")),
)


class OptionChanged(Message):
    """A row asks for ``name`` to become ``value`` (validated by the App against the Config)."""

    def __init__(self, row: OptionRow, name: str, value: Any) -> None:
        super().__init__()
        self.row = row
        self.name = name
        self.value = value


def show_value(value: Any) -> str:
    """Compact display of an option value."""
    if isinstance(value, bool):
        return "on" if value else "off"  # option values: typed as they are shown
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class OptionRow(Vertical):
    """One option: its name, its current value and an inline error line."""

    DEFAULT_CSS = """
    OptionRow { height: auto; }
    OptionRow .error { color: $error; height: auto; width: 1fr; display: none; }
    OptionRow .number { height: 1; }
    OptionRow .name { width: 15; }
    """

    def __init__(self, opt: Option, value: Any, locked: bool) -> None:
        super().__init__(id="opt-" + opt.name.replace(".", "-"))
        self.option = opt
        self.value = value
        self.locked = locked

    def compose(self) -> ComposeResult:
        if self.option.choices or self.option.kind is bool:
            yield ChoiceValue(self)
        else:
            with Horizontal(classes="number"):
                yield Label(self._field_name(), classes="name")
                yield NumberValue(self)
        yield Label("", classes="error")

    def set_locked(self, locked: bool) -> None:
        """Lock or unlock the row (another lesson step's scenario locks other options)."""
        if locked == self.locked:
            return
        self.locked = locked
        for label in self.query(".name").results(Label):
            label.update(self._field_name())
        self.query_one(VALUE_SELECTOR).refresh()

    def _field_name(self) -> str:
        """The number field's name, in its 15 cells."""
        name = tr("{key} (locked)", key=self.option.key) if self.locked else self.option.key
        return chop_cells(name, 15)[0]

    def set_value(self, value: Any) -> None:
        """Show ``value`` (after the App accepted it, or a reset)."""
        self.value = value
        self.query_one(VALUE_SELECTOR).show(value)
        self.set_error("")

    def set_error(self, message: str) -> None:
        """Show (or clear) the inline validation message."""
        label = self.query_one(".error", Label)
        label.update(message)
        label.display = bool(message)


VALUE_SELECTOR = "ChoiceValue, NumberValue"  # the focusable value editors
MOVE_BINDINGS = [Binding("up", "app.focus_previous", "previous value", show=False),
                 Binding("down", "app.focus_next", "next value", show=False)]
NUMBER_CHARACTERS = frozenset("0123456789.eE+-")  # all a typed number can hold


def choice_text(name: str, value: str, width: int) -> str:
    """``name  < value >`` in ``width`` cells: the name gives way first, then the spaces."""
    for shown in (f"< {value} >", f"<{value}>"):
        room = width - len(shown) - 1
        if room >= min(len(name), 6):
            label = name if len(name) <= room else name[:room - 1] + "…"
            return f"{label:<{min(room, 15)}} {shown}"
    return f"<{value}>"


class ChoiceValue(Static):
    """A choice or on/off value: left/right cycle, enter advances."""

    can_focus = True
    BINDINGS = [Binding("left", "cycle(-1)", "previous", show=False),
                Binding("right", "cycle(1)", "next", show=False),
                Binding("enter", "cycle(1)", "next", show=False), *MOVE_BINDINGS]
    DEFAULT_CSS = """
    ChoiceValue { height: 1; }
    ChoiceValue:focus { background: $accent; color: $text; }
    """

    def __init__(self, row: OptionRow) -> None:
        super().__init__()
        self.row = row

    def on_mount(self) -> None:
        self.show(self.row.value)

    def show(self, value: Any) -> None:
        """Show ``value``; the row is laid out to the width at render time."""
        self.tooltip = tr(self.row.option.help)
        self.refresh()

    def render(self) -> Text:
        value, width = show_value(self.row.value), self.size.width or 40
        text = (tr("{key} {value} (locked)", key=f"{self.row.option.key:<15.15}", value=value)
                if self.row.locked else choice_text(self.row.option.key, value, width))
        return Text(text, no_wrap=True, overflow="ellipsis")

    def action_cycle(self, direction: int) -> None:
        opt = self.row.option
        values: tuple[Any, ...] = (False, True) if opt.kind is bool else opt.choices
        index = values.index(self.row.value) if self.row.value in values else 0
        self.post_message(OptionChanged(self.row, opt.name, values[(index + direction) % len(values)]))


class NumberValue(Input):
    """A numeric value typed in; enter applies, escape restores the current value."""

    BINDINGS = [Binding("escape", "restore", "restore", show=False), *MOVE_BINDINGS]
    DEFAULT_CSS = """
    NumberValue { height: 1; border: none; padding: 0 1; width: 1fr; }
    NumberValue:focus { border: none; background: $accent 30%; }
    NumberValue.-invalid, NumberValue.-invalid:focus { border: none; }
    """

    def __init__(self, row: OptionRow) -> None:
        super().__init__(value=show_value(row.value), tooltip=tr(row.option.help))
        self.row = row

    def show(self, value: Any) -> None:
        self.value = show_value(value)

    def check_consume_key(self, key: str, character: str | None) -> bool:
        """Only what can be part of a number is typed here; the footer keeps the other keys."""
        return character is not None and character in NUMBER_CHARACTERS

    async def _on_key(self, event: events.Key) -> None:
        if self.row.locked and event.is_printable and event.character in NUMBER_CHARACTERS:
            event.stop()
            event.prevent_default()  # focusable, so it can say why it does not change
            self.row.set_error(tr("locked by this scenario"))
            return
        if event.is_printable and event.character not in NUMBER_CHARACTERS:
            # not part of a number: leave the field (unapplied) and let the app have the key
            event.stop()
            event.prevent_default()
            self.action_restore()
            self.app.post_message(events.Key(event.key, event.character))

    def action_restore(self) -> None:
        self.discard_edit()
        self.screen.set_focus(None)

    def discard_edit(self) -> None:
        """Show the option's value again (what was typed and not applied goes)."""
        self.show(self.row.value)
        self.row.set_error("")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            value = self.row.option.coerce(event.value)
        except ConfigError as exc:
            self.row.set_error(exc.message)
            return
        self.post_message(OptionChanged(self.row, self.row.option.name, value))


class Panel(Vertical):
    """A titled group of option rows."""

    DEFAULT_CSS = """
    Panel { height: auto; border: round $primary 50%; padding: 0 1; }
    Panel:focus-within { border: round $accent; }
    """

    def __init__(self, group: Group, current: Callable[[], tuple[Config, Container[str]]]) -> None:
        """``current()``: the config to show and the options locked, read when the panel
        composes (a panel mounted after the first screen shows them as they are then)."""
        super().__init__(id=f"panel-{group.key}")
        self.group = group
        self.border_title = f"{tr(group.title)} ({group.key})"
        self._current = current

    def compose(self) -> ComposeResult:
        config, locked = self._current()
        for name in self.group.options:
            yield OptionRow(OPTIONS_BY_NAME[name], config[name], name in locked)

    def focus_first(self) -> None:
        """Put the keyboard focus on this panel's first value, at once: Widget.focus() moves
        it at the app's next turn, and keys typed right after the panel key (queued behind it
        on a busy machine) went to what had focus before, the field's first digit lost."""
        self.screen.set_focus(self.query(VALUE_SELECTOR).first())
        self.scroll_visible()

