"""The main screen's last line: its keys and what they do, in one widget.

It shows what Textual's compact Footer shows (each shown binding of the screen's active
bindings, once per action: the key in the accent colour, then its description; a disabled
one dimmed; a left click presses the key). The Footer is a widget per key (28 here) that it
composes only after the first frame, and composes again whenever focus moves: on the 2-core
machine that took 0.1-0.2 s of the main thread at the very moment the first step was to be
painted. Here the keys are one line of text, rebuilt when the bindings change. What it leaves
out: the Footer's hover highlight and tooltips, and scrolling the line sideways with the
mouse wheel (the keyboard reaches every key, and ``?`` lists them all).
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widget import Widget


class KeyBar(Widget, can_focus=False):
    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"keybar--key", "keybar--description"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        text-wrap: nowrap;
        text-overflow: clip;
        color: $footer-foreground;
        background: $footer-background;
        .keybar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .keybar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self._keys: list[tuple[Binding, bool]] = []  # (binding, enabled), in the footer's order
        self._spans: list[tuple[int, int, Binding, bool]] = []  # cells [start, end) of each key

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def _bindings_changed(self, screen) -> None:
        if screen is not self.screen:
            return
        keys, actions = [], set()
        for _node, binding, enabled, _tooltip in screen.active_bindings.values():
            if binding.show and binding.action not in actions:  # one per action, as the Footer
                actions.add(binding.action)
                keys.append((binding, enabled))
        if keys != self._keys:
            self._keys = keys
            self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keybar--key")
        description_style = self.get_component_rich_style("keybar--description")
        text, self._spans = Text(no_wrap=True, overflow="crop"), []
        for binding, enabled in self._keys:
            if text:
                text.append(" ")
            first, start = len(text), cell_len(text.plain)  # characters, cells (a click's x)
            text.append(self.app.get_key_display(binding), key_style)
            if binding.description:
                text.append(" " + binding.description, description_style)
            if not enabled:
                text.stylize("dim", first)
            self._spans.append((start, cell_len(text.plain), binding, enabled))
        return text

    def on_mouse_down(self, event: events.MouseDown) -> None:
        if event.button != 1:  # the left button only
            return
        for start, end, binding, enabled in self._spans:
            if start <= event.x < end:
                if enabled:
                    self.app.simulate_key(binding.key)
                else:
                    self.app.bell()
                return
