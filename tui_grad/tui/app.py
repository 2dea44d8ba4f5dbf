"""The Textual app: composition, key bindings, the simulation worker and event handlers."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import reactive
from textual.widget import MountError, Widget
from textual.widgets import Static
from textual.worker import get_current_worker

from tui_grad import i18n
from tui_grad.config import Config, ConfigError, fit_change
from tui_grad.engine_text import describe_theory
from tui_grad.history import Frame
from tui_grad.i18n import N_, tr
from tui_grad.lesson import Lesson
from tui_grad.scenario import Scenario
from tui_grad.session import Diverged, Finished, Restarted, Rewound, Session
from tui_grad.tui import linebreak
from tui_grad.tui.charts import ActivationChart, GradientChart, Heatmap, LossChart, UpdateRatioChart
from tui_grad.tui.keybar import KeyBar
from tui_grad.tui.panels import GROUPS, NumberValue, OptionChanged, OptionRow, Panel, show_value
from tui_grad.tui.screens import (
    ExportScreen,
    HelpScreen,
    LessonPromptScreen,
    MapScreen,
    NotesScreen,
    translated_bindings,
)

if TYPE_CHECKING:
    from tui_grad.warmup import FirstStep

linebreak.enable()  # Chinese text wraps between characters, in this process's Rich and Textual
NARROW_WIDTH = 120  # below this one chart is shown at a time
CHUNK_SECONDS = 0.04  # compute between checks for cancellation and new requests
YIELD_SECONDS = 0.01  # after each chunk the worker sleeps, leaving the GIL to the UI thread
REDRAW_SECONDS = 1 / 12
FIRST_DRAW_WAIT_SECONDS = 2.0
# how long the worker waits for warmup.FirstStep's step 0 before loading the kernels itself
# (the child answers in about 1 s on 2 cores; longer means a long step, taken twice in a row)
FIRST_STEP_WAIT_SECONDS = 2.0
FIRST_FRAME_WAIT_SECONDS = 0.25  # for that step 0, to paint it in the first frame
MESSAGE_SECONDS = 4.0  # a message line stays this long (the report area keeps what must stay)
# Explicit foreground and background (not ANSI names, which themes and browsers remap):
# readable on every theme, in a terminal and in a browser; Textual downgrades them for
# 256- and 16-colour terminals, and NO_COLOR leaves the verdict's words.
VERDICT_STYLE = {"healthy": "bold #000000 on #3fb950", "vanishing": "bold #ffffff on #1f5fbf",
                 "exploding": "bold #000000 on #e3b341", "diverged": "bold #ffffff on #c62828"}
VERDICT_WORDS = {"healthy": N_("HEALTHY"), "vanishing": N_("VANISHING"), "exploding": N_("EXPLODING"),
                 "diverged": N_("DIVERGED")}
CHARTS = (("chart-grad", GradientChart), ("chart-loss", LossChart), ("chart-act", ActivationChart),
          ("chart-update", UpdateRatioChart), ("chart-heat", Heatmap))
CHART_TIPS = (N_("show chart 1 on a narrow screen"), N_("show chart 2 on a narrow screen"),
              N_("show chart 3 on a narrow screen"), N_("show chart 4 on a narrow screen"),
              N_("show chart 5 on a narrow screen"))


def lower_thread_priority(niceness: int = 10) -> None:
    """Make the calling thread yield the CPU to the UI thread (and sshd) on a busy machine.

    Linux applies nice values per thread; elsewhere this quietly does nothing.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class StatusBar(Widget):
    """The status line: one line of the screen's width (app.tcss) whatever it says, so a new
    text is repainted without a layout of the whole screen (Static.update lays it out)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = Text()

    def show(self, text: Text) -> None:
        if text != self.text:  # (redraw asks 12 times a second; most of the time it is the same)
            self.text = text
            self.refresh()

    def render(self) -> Text:
        return self.text


@dataclass
class SimulationEvent(Message):
    """Something the simulation worker reports: Restarted, Diverged or Rewound."""

    event: object


class GradApp(App[None]):
    """tui-grad's terminal UI."""

    CSS_PATH = "app.tcss"
    TITLE = "tui-grad"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # footer order: what a newcomer needs first fits at 80 columns
        Binding("question_mark", "help", N_("help"), key_display="?", id="app.help",
                tooltip=N_("this help: every key and option")),
        Binding("space", "toggle_run", N_("run/pause"), id="run.toggle", tooltip=N_("run / pause")),
        Binding("n", "step", N_("step"), id="run.step", tooltip=N_("pause and take one step")),
        Binding("N", "lesson_step(1)", N_("next"), id="lesson.next",
                tooltip=N_("lesson: the next step (its scenario and prompt)")),
        Binding("P", "lesson_step(-1)", N_("prev"), id="lesson.previous",
                tooltip=N_("lesson: the previous step")),
        Binding("o", "notes", N_("notes"), id="app.notes",
                tooltip=N_("the scenario's notes (t: English / 中文)")),
        Binding("q", "quit", N_("quit"), id="app.quit", tooltip=N_("quit")),
        Binding("ctrl+c", "quit", N_("quit"), show=False, priority=True, id="app.interrupt",
                tooltip=N_("quit, as in every terminal program")),
        Binding("x", "reset", N_("reset"), id="run.reset",
                tooltip=N_("reset: step 0, same seed (identical numbers)")),
        Binding("p", "pin", N_("pin"), id="view.pin",
                tooltip=N_("pin this run as a baseline drawn beside the live one")),
        Binding("u", "rewind", N_("rewind"), id="run.rewind",
                tooltip=N_("rewind to the last rewind point (every 10 steps)")),
        Binding("v", "variant", N_("variant"), id="run.variant",
                tooltip=N_("show the next [[compare]] variant, at the same step")),
        Binding("e", "export", N_("export"), id="app.export",
                tooltip=N_("export the configuration as a scenario file")),
        Binding("D", "probes", N_("probes"), show=False, id="app.probes",
                tooltip=N_("per-layer distributions, the Jacobian's spectrum and sharpness, measured "
                           "on request (MLP)")),
        Binding("M", "sweep_map", N_("map"), show=False, id="app.map",
                tooltip=N_("the last sweep's map of this scenario, the current configuration marked")),
        Binding("s", "new_seed", N_("new seed"), id="run.seed", tooltip=N_("new seed: step 0")),
        Binding("g", "toggle_signal", N_("dW/dh"), id="view.signal",
                tooltip=N_("gradient chart: ||dL/dW|| or ||dL/dh||")),
        Binding("y", "toggle_theory", N_("theory"), id="view.theory",
                tooltip=N_("theory overlay on / off")),
        Binding("left_square_bracket", "speed(-1)", N_("slower"), key_display="[", id="run.slower",
                tooltip=N_("slower (1 to 100 steps/s, or unlimited)")),
        Binding("right_square_bracket", "speed(1)", N_("faster"), key_display="]", id="run.faster",
                tooltip=N_("faster")),
        Binding("h", "toggle_controls", N_("panels"), id="view.controls",
                tooltip=N_("hide / show the panels")),
        Binding("escape", "leave_panel", N_("leave panel"), show=False, id="app.leave",
                tooltip=N_("leave the panels")),
        *[Binding(str(n), f"chart({n})", N_("chart"), show=False, id=f"view.chart{n}",
                  tooltip=tip) for n, tip in enumerate(CHART_TIPS, start=1)],
        # priority: the app takes a panel key as it reads it, so the keys typed after it go
        # to the field it focuses (others reach the app only once they have passed the
        # focused widget, and the next key was routed to what had focus before: l 0.005 typed
        # fast, as a browser sends it, gave .005). Not on a dialog (check_action).
        *[Binding(g.key, f"panel('{g.key}')", g.short, id=f"panel.{g.key}", priority=True)
          for g in GROUPS],
    ]

    selected_chart: reactive[int] = reactive(1)
    """Which chart is shown when the screen is too narrow for all of them (1-based)."""
    show_signal: reactive[bool] = reactive(False)
    """The gradient chart shows ||dL/dh|| instead of ||dL/dW||."""
    show_theory: reactive[bool] = reactive(True)
    """The gradient chart overlays the mean-field prediction of ||dL/dh||."""

    def __init__(self, scenario: Scenario | None = None, *, autostart: bool = True,
                 lesson: Lesson | None = None, lesson_step: int = 0, lang: str | None = None,
                 first_step: FirstStep | None = None) -> None:
        super().__init__()
        translated_bindings(self)
        # the lesson's language (the prompt's t switches its own); the interface's is i18n's
        self.lesson, self.lesson_index, self.lang = lesson, lesson_step, lang or i18n.current()
        if lesson is not None:
            scenario = lesson.steps[lesson_step].scenario
        self.scenario = scenario
        self.session = Session(scenario, self._watch())
        if lesson is not None:
            self.session.running = False  # the prompt first: predict, then press space
            self.session.preview_allowed = False  # (and no step 0 to give the answer away)
        self.baseline: Frame | None = None
        self.autostart = autostart
        self._drawn_version = -1
        self._message_timer = None
        self.startup_text = ""  # what the worker is doing before the first step
        self._first_drawn = threading.Event()  # the worker waits for it after its first step
        # a child taking step 0 while this process starts (warmup.FirstStep; the worker
        # shows its step and ends it)
        self._first_step = first_step
        self._preview_at_mount = False  # its step was shown by on_mount, in the first frame
        # With that child the first frame is the step: the option panels are mounted right
        # after it (at 80x24 the first four took 0.2 s of the main thread before the frame)
        self._first_panels_due = first_step is not None
        self._other_panels = None  # their mount (Textual's AwaitMount), once begun
        self._watch_said: dict[int, str] = {}  # claim index -> the state last announced

    # ------------------------------------------------------------ composition
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        # classes that depend on the screen are set here, not in on_mount: changing a class
        # after mounting restyles every widget (0.3 s of a 2-core machine's start)
        narrow = "narrow" if self.size.width < NARROW_WIDTH else ""
        with Horizontal(id="main", classes=narrow):
            with VerticalScroll(id="controls"):
                if not self._first_panels_due:  # (else _mount_first_panels)
                    for group in GROUPS[:self._eager_panels()]:  # the rest: _mount_other_panels
                        yield Panel(group, self._current_options)
            with Container(id="charts"):
                for number, (name, kind) in enumerate(CHARTS, start=1):
                    chart = kind(id=name, classes="chart -selected" if number == 1 else "chart")
                    chart.number = number
                    chart.border_title = f"{number} {tr(kind.title_text)}"
                    yield chart
                with Vertical(id="texts"):
                    yield Static("", id="message")
                    yield Static("", id="report")
        yield KeyBar()

    def on_mount(self) -> None:
        # widgets of the main screen, kept because App.query_one searches the active screen,
        # which is a dialog while help, notes or export is open
        self._status = self.query_one("#status", StatusBar)
        self._report_widget = self.query_one("#report", Static)
        self._message = self.query_one("#message", Static)
        self._main = self.query_one("#main")
        self._charts = {name: self.query_one(f"#{name}") for name, _ in CHARTS}
        self.sub_title = self._title()
        self._layout_for(self.size.width)
        self._preview_at_mount = self._first_step_now()
        self.set_interval(REDRAW_SECONDS, self.redraw)
        self.redraw(force=True)
        if self._first_panels_due:
            self.call_after_refresh(self._mount_first_panels)
        if not self.autostart:  # (else the worker asks for them once the kernels are loaded
            # from the cache, before any compile)
            self.call_after_refresh(self._mount_other_panels)
        if self.autostart:
            self.simulate()  # the worker starts now: its kernels load while the screen paints
        if self.lesson is not None:
            self._show_prompt()

    def _current_options(self) -> tuple[Config, tuple[str, ...]]:
        """What a panel shows when it composes: the shown run's config, the scenario's lock."""
        return self.session.config, self.scenario.lock

    def _eager_panels(self) -> int:
        """How many option panels the first screen shows (4 at 80x24, 9 at 160x48): those
        are composed with it (or, with a first-step child, mounted right after the first
        frame), the rest mounted later."""
        room, count = self.size.height - 2, 0  # (status bar and footer)
        while count < len(GROUPS) and room > 0:
            room -= len(GROUPS[count].options) + 2  # a row per option, and the border
            count += 1
        return count

    def _first_step_now(self) -> bool:
        """Show the first-step child's step 0 in the first frame: wait for it a moment (it is
        usually there within 0.1 s, and a frame painted without it is painted again, charts
        and all); returns whether it is shown."""
        child = self._first_step
        if child is None:
            return False
        # (a spawned child, where forking is not safe, takes over a second: no use waiting)
        give_up = time.monotonic() + (FIRST_FRAME_WAIT_SECONDS if child.forked else 0)
        while (first := child.poll()) is None and time.monotonic() < give_up:
            time.sleep(0.005)
        return bool(first) and self.session.show_first_steps(child.configs, first)

    def _paint_first_steps(self, configs, first) -> None:
        """From the worker: show ``first`` (a child's step 0 of each config, or None/[]) and
        wait until it is painted: now, not at the next redraw tick, and before this process
        loads the kernels."""
        if first and self.session.show_first_steps(configs, first):
            with contextlib.suppress(RuntimeError):  # (the app closed meanwhile)
                self.call_from_thread(self.redraw)
            self._first_drawn.wait(FIRST_DRAW_WAIT_SECONDS)

    async def _mount_first_panels(self) -> None:
        """The panels of the first screen (_eager_panels), after the frame with the first
        step; the worker loads numba once they are painted too (_first_frame_done)."""
        if self._other_panels is None:  # (else a panel key was faster: all are mounting)
            mounting = self._mount_panels(self._eager_panels())
            if mounting is not None:
                with contextlib.suppress(MountError):
                    await mounting
        self._first_panels_due = False
        self.call_after_refresh(self._first_frame_done)

    def _first_frame_done(self) -> None:
        """Once the first step and the first panels are on screen, the worker may load numba
        (which needs the interpreter lock painting needs)."""
        if self.session.history.latest is not None and not self._first_panels_due:
            self._first_drawn.set()

    def _mount_other_panels(self):
        """The option panels below the first screen (_eager_panels), once the first step is
        on screen and the kernels are loaded: 3/4 of the app's widgets, which took half of
        its start-up, and mounting them beside the kernels' loading doubled that (both need
        the interpreter lock). A key for one of them mounts them at once (action_panel).
        Returns the mount (Textual's AwaitMount; None if the app is closing)."""
        if self._other_panels is None:
            self._other_panels = self._mount_panels(len(GROUPS))
        return self._other_panels

    def _mount_panels(self, stop: int):
        """Mount the panels of GROUPS[:stop] not mounted yet; their mount (Textual's
        AwaitMount), None if the app is closing."""
        with contextlib.suppress(MountError):
            controls = self._main.query_one("#controls")
            mounted = len(controls.query(Panel))
            return controls.mount_all(Panel(group, self._current_options)
                                      for group in GROUPS[mounted:stop])
        return None

    async def _await_other_panels(self) -> None:
        mounting = self._mount_other_panels()
        if mounting is not None:
            with contextlib.suppress(MountError):
                await mounting
        if self._first_panels_due:  # (every panel is there now, whatever became of that call)
            self._first_panels_due = False
            self._first_frame_done()

    def _watch(self) -> tuple:
        """The claims the lesson's current step asks to watch (none outside a lesson)."""
        return () if self.lesson is None else self.lesson.steps[self.lesson_index].watch

    def _announce_watched(self, watched: list, finished: str = "") -> None:
        """Say the verdicts of watched claims that became known since the last call, in one
        message; at run.steps (``finished``: what to say about that) the claims on the last
        step again, whose verdict is final then."""
        from tui_grad.headless import Check

        lines, failed = [finished] if finished else [], False
        for index, item in enumerate(watched):
            if item.state == "waiting":
                self._watch_said.pop(index, None)
                continue
            if self._watch_said.get(index) == item.state and not (finished and item.so_far):
                continue
            self._watch_said[index] = item.state
            failed |= item.state == "fail"
            check = Check(item.claim, self.session.variant_name, item.state == "pass", item.measured)
            lines.append(tr("watch: {check}", check=check.line(show_variant=False)))
        if lines:
            self.say("\n".join(lines), error=failed)

    def _title(self) -> str:
        """The scenario's title in the interface's language."""
        return self.scenario.heading()

    def on_resize(self, event) -> None:
        if not hasattr(self, "_main"):  # a resize can arrive before mount
            return
        self._layout_for(event.size.width)
        self._drawn_version = -1

    def _layout_for(self, width: int) -> None:
        if self._main.has_class("narrow") != (width < NARROW_WIDTH):  # a change restyles all
            self._main.set_class(width < NARROW_WIDTH, "narrow")

    # ------------------------------------------------------------ the worker
    @work(thread=True, exclusive=True, exit_on_error=False, group="simulation")
    def simulate(self) -> None:
        """Compile the kernels first if numba's cache lacks them (in a child process, so the
        app stays live and quits at once), then advance the session in short chunks until
        cancelled; report events as messages."""
        from tui_grad import warmup

        worker = get_current_worker()
        # this worker's session: a lesson's next step gives the app a new one and a new worker
        session, first_drawn = self.session, self._first_drawn
        configs = [variant.config for variant in session.scenario.variants]
        child, self._first_step = self._first_step, None
        warm = None  # the warm-up, once there is one: its child ends on every way out
        try:
            if child is not None:
                give_up = time.monotonic() + FIRST_STEP_WAIT_SECONDS
                with child:  # leaving the block ends the child (unless taken over)
                    while (first := child.poll()) is None:  # (no numba imported meanwhile)
                        if worker.is_cancelled:
                            return
                        if time.monotonic() > give_up:  # a long first step: take it here
                            break
                        time.sleep(0.01)
                    # a child that found the cache cold has said so, and compiles: the
                    # warm-up is that child, and this process neither imports numba to find
                    # it out again nor starts one (2 s of a cold start)
                    warm = warmup.Warmup.taking_over(child, configs)
                if self._preview_at_mount:  # in the first frame already
                    first_drawn.wait(FIRST_DRAW_WAIT_SECONDS)
                else:
                    self._paint_first_steps(child.configs, first)
            # needed() False: every kernel was cached, and is loaded now
            if warm is None and warmup.needed(configs):
                warm = warmup.Warmup(configs)
            with contextlib.suppress(RuntimeError):  # (the app closed meanwhile)
                # the other panels, before the first step of this process: a panel key once
                # the run is paused or stepping finds its panel there
                self.call_from_thread(self._await_other_panels)
            if warm is not None:
                warm.start()
                while not (progress := warm.poll()).done:
                    self.startup_text = progress.text
                    if worker.is_cancelled:
                        return
                    time.sleep(0.1)
                self.startup_text = progress.text
                # the child's step 0 (it has every kernel in memory) on screen now, while
                # this process loads the kernels (about half a second)
                if progress.error is None:
                    self._paint_first_steps(configs, warm.first_steps())
        finally:
            if warm is not None:
                warm.cancel()
        frozen = waited = False
        while not worker.is_cancelled:
            for event in session.advance(CHUNK_SECONDS):
                if not worker.is_cancelled:
                    self.post_message(SimulationEvent(event))
            if session.history.latest is not None and not waited:
                # the first paint of the screen is slow and needs the GIL: let the user see
                # the first step before computing more (bounded, and once: should the signal
                # never come, a wait at every chunk would slow the run for good)
                first_drawn.wait(FIRST_DRAW_WAIT_SECONDS)
                waited = True
            if not frozen:
                # numba and llvmlite leave a huge heap of long-lived objects; every full
                # garbage collection walked it and stalled the UI ~100 ms. Once the kernels
                # are loaded, freeze what exists so collections only see new objects.
                gc.freeze()
                frozen = True
                lower_thread_priority()  # after the first step, which the user waits for
            time.sleep(YIELD_SECONDS if session.running else 0.02)

    # ------------------------------------------------------------ drawing
    def redraw(self, force: bool = False) -> None:
        """Redraw the charts if the history changed, and the status bar always."""
        history = self.session.history
        # (StatusBar: only when it changed, and without a layout; a layout of the whole
        # screen at every tick took a third of a core, from the compiling warm-up and the
        # worker)
        self._status.show(self.status_line(self._status.size.width or self.size.width))
        if not force and history.version == self._drawn_version:
            return
        if history.latest is not None and not self._first_drawn.is_set():
            # set once this frame is out: the worker then loads numba, which needs the
            # interpreter lock the painting does (set at once, the first step showed 0.1-0.4 s
            # later on the 2-core machine). The refresh right after this call can come before
            # the frame with the step in it, so the flag waits for the one after.
            self.call_after_refresh(self.call_after_refresh, self._first_frame_done)
        self._drawn_version = history.version
        if self.session.claims:
            self._announce_watched(self.session.watched())
        frame = history.frame()
        network = self.session.config.network
        options = {"signal": self.show_signal, "theory": self.show_theory,
                   "activation": network.activation, "model": network.model}
        report = self.session.run.report
        if report:
            report = tr("{report} Press u to rewind, change a remedy, then space.", report=report)
        self._report_widget.update(escape(report) if report else self._theory_text())
        self._report_widget.set_class(bool(report), "-diverged")
        narrow = self._main.has_class("narrow")
        for number, (name, _) in enumerate(CHARTS, start=1):
            if not narrow or number == self.selected_chart:
                self._charts[name].draw(frame, self.baseline, options)

    def status_line(self, width: int) -> Text:
        """The status bar, most important first (verdict, step, run state), cut to ``width``."""
        session, latest = self.session, self.session.history.latest
        name = self.scenario.name
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        variant = f"[{session.variant_name}]" if len(self.scenario.variants) > 1 else ""
        if self.lesson is not None:  # which step of the lesson first; the variant before the
            # step's title, which a narrow screen cuts
            name = f"{variant} {self.lesson.steps[self.lesson_index].text(self.lang)[0]}".lstrip()
            line.append(tr("lesson {k}/{n}", k=self.lesson_index + 1, n=len(self.lesson.steps)) + " ",
                        style="bold reverse")
            if session.claims:
                watched = session.watched()
                passed = sum(item.state == "pass" for item in watched)
                failed = sum(item.state == "fail" for item in watched)
                line.append(" " + tr("watch {passed}/{total}", passed=passed, total=len(watched)) + " ",
                            style="bold red" if failed else "bold green" if passed else "bold")
        elif variant:
            name += f" {variant}"
        if latest is None:
            line.append(f"{name} | ")
            line.append(self.startup_text or tr("preparing the first step..."))
            line.truncate(max(width - 2, 1), overflow="ellipsis")
            return line
        verdict = tr(VERDICT_WORDS[latest.status])
        if latest.diverged_at is not None:
            verdict = tr("DIVERGED at step {step}", step=latest.diverged_at)
        line.append(f" {verdict} ", style=VERDICT_STYLE[latest.status])
        line.append(" " + tr("step {step}", step=latest.step) + " | ")
        if session.sim is None:  # step 0 from warmup.FirstStep; this process is loading
            line.append(self.startup_text or tr("loading the kernels..."))
        elif not session.running:
            line.append(tr("PAUSED"), style="bold")
        else:
            rate, cap = session.steps_per_second, session.max_rate
            if rate is not None and cap is not None:
                rate = min(rate, cap)  # timer jitter is no reason to show 31 of at most 30
            rate_text = "..." if rate is None else f"{rate:.0f}"
            line.append(tr("{rate} steps/s (max)", rate=rate_text) if cap is None else
                        tr("{rate} steps/s (max {cap})", rate=rate_text, cap=f"{cap:g}"))
        line.append(" | " + tr("loss {loss}", loss=f"{latest.loss:.4g}") + f" | {name}")
        if latest.clipped:
            line.append(" | " + tr("clip x{scale}", scale=f"{latest.clip_scale:.2g}"))
        line.truncate(max(width - 2, 1), overflow="ellipsis")
        return line

    def say(self, text: str, *, error: bool = False) -> None:
        """Show a one-line message below the charts for a few seconds (covers nothing)."""
        self._message.update(Text(text, style="bold red" if error else "bold"))
        self._message.display = True
        if self._message_timer is not None:
            self._message_timer.stop()
        self._message_timer = self.set_timer(MESSAGE_SECONDS, self._clear_message)

    def _clear_message(self) -> None:
        self._message.update("")
        self._message.display = False

    def watch_selected_chart(self, old: int, new: int) -> None:
        if not self.is_mounted:
            return
        self._charts[CHARTS[old - 1][0]].remove_class("-selected")
        self._charts[CHARTS[new - 1][0]].add_class("-selected")
        self._drawn_version = -1

    def watch_show_signal(self) -> None:
        self._drawn_version = -1

    def watch_show_theory(self) -> None:
        self._drawn_version = -1

    def _theory_text(self) -> str:
        sim = self.session.sim
        if sim is None or not self.show_theory:
            return ""
        theory = sim.theory
        text = describe_theory(theory)
        return escape(text if not theory.covered else
                      tr("{theory} (at initialisation; y hides it)", theory=text))

    # ------------------------------------------------------------ events
    @on(OptionChanged)
    def option_changed(self, event: OptionChanged) -> None:
        """Validate a panel's change against the whole config and hand it to the worker.

        A model, task or loss that no longer fits the other two brings them along (mlp needs
        a feed-forward task, rnn/lstm a sequence task), and the message says so."""
        if event.name in self.scenario.lock:
            event.row.set_error(tr("locked by this scenario"))
            return
        current = self.session.config
        try:
            config, companions = fit_change(current, event.name, event.value)
            locked = [name for name in companions if name in self.scenario.lock]
            if locked:
                raise ConfigError(tr("needs {name} changed, which this scenario locks", name=locked[0]))
        except ConfigError as exc:
            event.row.set_error(exc.message)
            return
        event.row.set_value(config[event.name])
        if config == current:
            return
        change = f"{event.name} = {show_value(config[event.name])}"
        if companions:
            change = tr("{change}, so {companions}", change=change, companions=", ".join(
                f"{name} = {value}" for name, value in companions.items()))
        reached = self.session.request(config, tr("{change}: restarted", change=change))
        self._sync_rows()
        if not current.needs_restart(config):
            self.say(tr("{change}: applied live to all {count} variants", change=change, count=reached)
                     if reached > 1 else tr("{change}: applied live", change=change))

    @on(SimulationEvent)
    def simulation_event(self, message: SimulationEvent) -> None:
        """Say what the worker did; the divergence report itself stays in the report area."""
        event = message.event
        if isinstance(event, Restarted):
            self.say(event.reason)
            self._sync_rows()
        elif isinstance(event, Diverged):
            self.say(tr("DIVERGED at step {step}: paused; u rewinds", step=event.step), error=True)
        elif isinstance(event, Finished):
            self._announce_watched(self.session.watched(), finished=tr(
                "reached run.steps = {steps}: paused (space continues)", steps=event.steps))
        elif isinstance(event, Rewound):
            if event.step is None:
                self.say(tr("no earlier rewind point"), error=True)
            else:
                self.say(tr("rewound: step {step} is next; change a remedy, then space", step=event.step))
        self._drawn_version = -1

    def _sync_rows(self) -> None:
        config = self.session.config
        for row in self._main.query(OptionRow):
            if row.value != config[row.option.name]:
                row.set_value(config[row.option.name])

    # ------------------------------------------------------------ actions
    # ------------------------------------------------------------ lessons
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Next/previous step only in a lesson (hidden from the footer otherwise)."""
        if action == "lesson_step":
            return self.lesson is not None
        if action == "panel":  # (a priority binding: a dialog's own keys and fields come first)
            return len(self.screen_stack) == 1
        return True

    def _show_prompt(self) -> None:
        session = self.session
        session.preview_allowed = False  # no step on screen before the prediction

        def closed(start: bool | None) -> None:
            session.preview_allowed = True
            if start:
                session.running = True

        self.push_screen(LessonPromptScreen(self.lesson, self.lesson_index, self.lang), closed)

    def action_lesson_step(self, delta: int) -> None:
        """Open the next (+1) or previous (-1) step: its scenario from step 0, paused, and
        its prompt."""
        if self.lesson is None:
            return
        index = self.lesson_index + delta
        if not 0 <= index < len(self.lesson.steps):
            self.say(tr("this is the last step of the lesson") if delta > 0 else
                     tr("this is the first step of the lesson"), error=True)
            return
        while len(self.screen_stack) > 1:  # the old step's prompt, help, notes, probes...
            self.pop_screen()
        self.lesson_index = index
        self.scenario = self.lesson.steps[index].scenario
        self.session = Session(self.scenario, self._watch())  # the old worker keeps its own
        self.session.running = False
        self.session.preview_allowed = False  # until the prompt closes
        self.baseline = None
        self._first_drawn = threading.Event()
        self._watch_said = {}
        self.sub_title = self._title()
        for row in self._main.query(OptionRow):
            row.set_locked(row.option.name in self.scenario.lock)
        self._sync_rows()
        self._drawn_version = -1
        self.redraw(force=True)
        if self.autostart:
            self.simulate()  # exclusive: cancels the previous step's worker
        self._show_prompt()

    def action_toggle_run(self) -> None:
        self.session.toggle_running()

    def action_step(self) -> None:
        self.session.pause()
        self.session.request_step()

    def action_reset(self) -> None:
        self.session.request_reset(tr("reset: same seed, step 0"))

    def action_new_seed(self) -> None:
        config = self.session.config
        seed = (config.run.seed + 1) % 2**32
        self.session.request(config.replace(run__seed=seed), "!" + tr("new seed {seed}: step 0", seed=seed))

    def action_pin(self) -> None:
        self.baseline = self.session.history.frame()
        self._drawn_version = -1
        self.say(tr("pinned this run: it stays drawn beside the live one"))

    def action_rewind(self) -> None:
        self.session.pause()
        self.session.request_rewind()

    def action_variant(self) -> None:
        """Show the next [[compare]] variant at the same step (they train in lock-step)."""
        if len(self.session.runs) == 1:
            self.say(tr("this scenario has no [[compare]] variants to switch to"))
            return
        name = self.session.next_variant()
        self._sync_rows()
        self._drawn_version = -1
        latest = self.session.history.latest
        where = dict(name=name, k=self.session.shown + 1, n=len(self.session.runs))
        self.say(tr("variant {name} at step {step} ({k} of {n})", step=latest.step, **where)
                 if latest is not None else tr("variant {name} ({k} of {n})", **where))

    def action_speed(self, direction: int) -> None:
        rate = self.session.change_speed(direction)
        self.say(tr("speed: unlimited") if rate is None else
                 tr("speed: at most {rate} steps/s", rate=f"{rate:g}"))

    def action_toggle_theory(self) -> None:
        self.show_theory = not self.show_theory

    def action_toggle_signal(self) -> None:
        self.show_signal = not self.show_signal

    def action_toggle_controls(self) -> None:
        controls = self._main.query_one("#controls")
        controls.display = not controls.display

    def action_chart(self, number: int) -> None:
        self.selected_chart = number

    def action_panel(self, key: str, retries: int = 50) -> None:
        if isinstance(self.focused, NumberValue):  # an edit not applied with enter is dropped
            self.focused.discard_edit()
        self._main.query_one("#controls").display = True
        try:
            self._main.query_one(f"#panel-{key}", Panel).focus_first()
        except NoMatches:  # before the other panels were mounted (or composed): mount them
            self._mount_other_panels()  # now, and focus once they are
            if retries:
                self.call_after_refresh(self.action_panel, key, retries - 1)

    def action_leave_panel(self) -> None:
        self.set_focus(None)

    def action_notes(self) -> None:
        if not (self.scenario.notes or self.scenario.notes_zh):
            self.say(tr("this scenario has no notes"))
            return
        self.push_screen(NotesScreen(self._title() or self.scenario.name, self.scenario.notes,
                                     self.scenario.notes_zh))

    def action_help(self) -> None:
        self.push_screen(HelpScreen([b for b in self.BINDINGS if isinstance(b, Binding)]))

    def action_probes(self) -> None:
        from tui_grad.tui.probes import ProbeScreen

        self.push_screen(ProbeScreen(self.session))

    def action_sweep_map(self) -> None:
        self.push_screen(MapScreen(self.scenario.name, self.session.config))

    def action_export(self) -> None:
        def written(path: str | None) -> None:
            if path:
                self.say(tr("wrote {path}", path=path))
        self.push_screen(ExportScreen(self.session.config, self.scenario), written)
