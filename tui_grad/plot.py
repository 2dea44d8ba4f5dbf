"""The map of a sweep: a plotext heatmap of one result column over the two swept axes.

Cells are the grid's values, one equal-sized cell each (log-spaced values therefore sit on
a log axis); seeds are combined by their median. Over the map: the theory's critical line
chi_1 = 1 (where chi_1 crosses 1 between two columns) and, when the vertical axis is the depth
and the results carry xi_c, the trainability bound L = 6 xi_c (Schoenholz et al. 2017).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import sys
from collections.abc import Sequence

from tui_grad.config import ConfigError
from tui_grad.i18n import tr

GLYPHS = "_.:-=+*#%@"  # low to high, readable without colour
COLORS = (17, 18, 19, 25, 31, 37, 71, 142, 178, 202)  # blue (low) to orange (high), xterm-256
NOT_FINITE = ("x", 160)
BOUND_FACTOR = 6.0
KEY_COLUMNS_END = "seed"
LOSS_COLUMNS = ("final_loss", "loss_ratio")
MARKER = ("◆", 201)  # the configuration marked on the map: a glyph no cell uses, bright magenta


def draw_map(rows: list[dict[str, str]], metric: str, *, sweep=None, width: int | None = None,
             height: int | None = None, color: bool | None = None,
             marker: dict[str, float | str] | None = None) -> str:
    """The map of ``metric`` as text (with colour codes when ``color``), ready to print.

    ``marker`` (swept option -> value) marks one configuration with ◆ where it falls between
    the grid's values, and a line under the map says where it is."""
    import plotext as plt

    axes = _axes(rows, sweep)
    if not rows:
        raise ConfigError(tr("the result table has no rows to plot"))
    if metric not in rows[0] or metric in axes or metric == KEY_COLUMNS_END:
        results = [c for c in rows[0] if c not in axes and c != KEY_COLUMNS_END]
        raise ConfigError(tr("no result column {metric} (columns: {columns})", metric=repr(metric),
                             columns=", ".join(results)))
    x_name, y_name = (axes + [""])[:2] if axes else ("", "")
    if x_name == "network.depth" and y_name:
        x_name, y_name = y_name, x_name  # depth goes up, as in the papers' maps
    x_values, y_values = _levels(rows, x_name), _levels(rows, y_name)
    cells = _cells(rows, metric, x_name, y_name)
    width = width or min(shutil.get_terminal_size((100, 30)).columns, 120)
    height = height or max(min(shutil.get_terminal_size((100, 30)).lines - 6, 30), 12)
    color = (sys.stdout.isatty() and "NO_COLOR" not in os.environ) if color is None else color
    plt.clf()
    plt.plotsize(width, height)
    plt.theme("clear" if not color else "default")
    finite = sorted(v for v in cells.values() if math.isfinite(v))
    low, high = (finite[0], finite[-1]) if finite else (0.0, 1.0)
    # colour by log10 when the values are positive and span decades (loss ratios)
    log_colour = low > 0 and high / low > 100
    shade = {k: (math.log10(v) if log_colour and math.isfinite(v) else v) for k, v in cells.items()}
    scale = (math.log10(low), math.log10(high)) if log_colour else (low, high)
    _fill(plt, shade, x_values, y_values, *scale, width, height, color)
    extra = _theory(plt, rows, x_name, y_name, x_values, y_values, color)
    if marker is not None:
        extra.append(_mark(plt, marker, x_name, y_name, x_values, y_values, color))
    plt.xticks(list(range(len(x_values))), [_label(v) for v in x_values])
    plt.yticks(list(range(len(y_values))), [_label(v) for v in y_values])
    plt.xlim(-0.5, len(x_values) - 0.5)
    plt.ylim(-0.5, len(y_values) - 0.5)
    plt.xlabel(x_name)
    plt.ylabel(y_name)
    wide = WideText()
    plt.title(wide(tr("{metric} (median over seeds)", metric=metric)))
    legend = " ".join(f"{g}" for g in GLYPHS) + (tr(", log scale") if log_colour else "")
    text = wide.restore(plt.build() if color else plt.uncolorize(plt.build()))
    not_finite = any(not math.isfinite(v) for v in cells.values())
    return (text + f"\n{metric}: {GLYPHS[0]} {low:.3g} .. {GLYPHS[-1]} {high:.3g}  [{legend}]"
            + ("  " + tr("x: diverged or not a number") if not_finite else "")
            + "".join(f"\n{line}" for line in extra))


class WideText:
    """Texts for a plotext figure that may hold wide (Chinese) characters.

    plotext counts every character as one terminal cell, so a title in Chinese would make its
    line wider than the figure. Each such text goes to plotext as a placeholder of as many
    cells (a private-use character repeated) and is put back in the built figure."""

    def __init__(self) -> None:
        self._texts: list[tuple[str, str]] = []

    def __call__(self, text: str) -> str:
        """``text`` itself when it is one cell a character, else its placeholder."""
        from rich.cells import cell_len

        cells = cell_len(text)
        if cells == len(text):
            return text
        mark = chr(0xE000 + len(self._texts))
        self._texts.append((mark, text))
        return mark * cells

    def restore(self, figure: str) -> str:
        """The built figure with every placeholder replaced by its text (cut, where plotext
        cut the placeholder)."""
        from rich.cells import set_cell_size

        for mark, text in self._texts:
            figure = re.sub(f"{mark}+", lambda m, text=text: set_cell_size(text, len(m.group())), figure)
        return figure


def _label(value: str) -> str:
    try:
        return f"{float(value):.4g}" if "." in value or "e" in value else value
    except ValueError:
        return value


def _axes(rows: list[dict[str, str]], sweep) -> list[str]:
    if sweep is not None:
        return list(sweep.swept)[:2]
    if not rows:
        return []
    names = list(rows[0])
    if KEY_COLUMNS_END not in names:
        raise ConfigError(tr("not a result table of tui-grad sweep (no seed column)"))
    return names[:names.index(KEY_COLUMNS_END)][:2]


def _levels(rows: list[dict[str, str]], name: str) -> list[str]:
    """The axis' values in grid order (as first seen, numbers sorted)."""
    if not name:
        return [""]
    seen = list(dict.fromkeys(r[name] for r in rows))
    try:
        return sorted(seen, key=float)
    except ValueError:
        return seen


def _cells(rows, metric, x_name, y_name) -> dict[tuple[str, str], float]:
    grouped: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        key = (row[x_name] if x_name else "", row[y_name] if y_name else "")
        # a diverged run's last loss is a blow-up, not a value to put on the colour scale
        diverged = metric in LOSS_COLUMNS and row.get("diverged_at", "") != ""
        grouped.setdefault(key, []).append(math.inf if diverged else _number(row[metric]))
    return {key: _median(values) for key, values in grouped.items()}


def _number(text: str) -> float:
    try:
        return float(text) if text != "" else math.nan
    except ValueError:
        return math.nan


def _median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) * 2 <= len(values) and len(finite) < len(values):
        return math.inf  # most seeds diverged or have no value: the cell says so
    return statistics.median(finite)


def _fill(plt, cells, x_values, y_values, low, high, width, height, color) -> None:
    """Cover every cell with points at the terminal's character resolution."""
    xs, ys, markers, colors = [], [], [], []
    nx, ny = len(x_values), len(y_values)
    steps_x, steps_y = max(width // nx, 1) + 1, max(height // ny, 1) + 1
    for i, x in enumerate(x_values):
        for j, y in enumerate(y_values):
            value = cells.get((x, y), math.nan)
            if math.isfinite(value):
                level = 0 if high <= low else min(int((value - low) / (high - low) * len(GLYPHS)),
                                                  len(GLYPHS) - 1)
                glyph, shade = GLYPHS[level], COLORS[level]
            else:
                glyph, shade = NOT_FINITE
            for a in range(steps_x):
                for b in range(steps_y):
                    xs.append(i - 0.5 + (a + 0.5) / steps_x)
                    ys.append(j - 0.5 + (b + 0.5) / steps_y)
                    markers.append("█" if color else glyph)
                    colors.append(shade)
    plt.scatter(xs, ys, marker=markers, color=colors if color else "default")


def _position(value: float, levels: Sequence[str]) -> float | None:
    """Where ``value`` falls on an axis of these levels (index units), interpolating between
    neighbours on a log scale when the levels are log-spaced; None outside or not numeric."""
    try:
        numbers = [float(v) for v in levels]
    except ValueError:
        return None
    if len(numbers) < 2 or not numbers[0] <= value <= numbers[-1]:
        return None
    log = _log_spaced(numbers)
    scale = (lambda v: math.log(v)) if log else (lambda v: v)
    for k in range(len(numbers) - 1):
        a, b = numbers[k], numbers[k + 1]
        if a <= value <= b:
            return k + (scale(value) - scale(a)) / (scale(b) - scale(a)) if b > a else float(k)
    return None


def _mark(plt, marker, x_name, y_name, x_values, y_values, color) -> str:
    """Draw the marker where ``marker``'s values fall on both axes; the line that says so."""
    where = [_place(marker.get(name), name, levels)
             for name, levels in ((x_name, x_values), (y_name, y_values))]
    shown = ", ".join(f"{name} = {_label(str(marker[name]))}" for name in (x_name, y_name)
                      if name and name in marker)
    if any(w is None for w in where):
        return f"{MARKER[0]} " + tr("you are here: {where} (outside this map)",
                                    where=shown or tr("not a swept configuration"))
    plt.scatter([where[0]], [where[1]], marker=MARKER[0], color=MARKER[1] if color else "default")
    return f"{MARKER[0]} " + tr("you are here: {where}", where=shown)


def _place(value, name: str, levels: Sequence[str]) -> float | None:
    """Index position of ``value`` on an axis: interpolated for numbers, exact for words."""
    if not name:
        return 0.0  # a one-axis sweep: the single row
    if value is None:
        return None
    if str(value) in levels:
        return float(levels.index(str(value)))
    try:
        return _position(float(value), levels)
    except (TypeError, ValueError):
        return None


def _log_spaced(numbers: Sequence[float]) -> bool:
    """Positive values whose ratios are more even than their differences (1, 2, 4, 8 ...)."""
    if len(numbers) < 3 or numbers[0] <= 0:
        return False
    diffs = [b - a for a, b in zip(numbers, numbers[1:], strict=False)]
    ratios = [b / a for a, b in zip(numbers, numbers[1:], strict=False)]
    spread = lambda seq: max(seq) / min(seq) if min(seq) > 0 else math.inf  # noqa: E731
    return spread(ratios) < spread(diffs)


def _theory(plt, rows, x_name, y_name, x_values, y_values, color) -> list[str]:
    """Draw chi_1 = 1 and L = 6 xi_c where the table allows; return lines saying what was drawn."""
    said = []
    by_x = {x: [r for r in rows if (r[x_name] if x_name else "") == x] for x in x_values}
    chi = {x: _median([_number(r.get("chi_1", "")) for r in group]) for x, group in by_x.items()}
    crossing = None
    for (xa, ca), (xb, cb) in zip(list(chi.items()), list(chi.items())[1:], strict=False):
        if math.isfinite(ca) and math.isfinite(cb) and (ca - 1.0) * (cb - 1.0) <= 0 and ca != cb:
            pa, pb = _position(float(xa), x_values), _position(float(xb), x_values)
            if pa is not None and pb is not None:
                crossing = pa + (1.0 - ca) / (cb - ca) * (pb - pa)
                break
    if crossing is not None:
        ys = [j / 4.0 - 0.5 for j in range(4 * len(y_values) + 1)]  # over the cells, not under
        plt.scatter([crossing] * len(ys), ys, marker="|", color="red" if color else "default")
        left = min(int(crossing), len(x_values) - 2)  # chi_1 = 1 exactly at the last column
        said.append("| " + tr("chi_1 = 1, the theory's critical line (between {axis} = {low} and {high})",
                              axis=x_name, low=_label(x_values[left]), high=_label(x_values[left + 1])))
    if y_name == "network.depth":
        points = []
        for i, (_x, group) in enumerate(by_x.items()):
            xi_c = _median([_number(r.get("xi_c", "")) for r in group])
            if math.isfinite(xi_c) and xi_c > 0:
                depth = BOUND_FACTOR * xi_c
                top = float(y_values[-1])
                where = _position(min(max(depth, float(y_values[0])), top), y_values)
                if where is not None:
                    points.append((i, where))
        if points:
            plt.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                     color="white" if color else "default")
            said.append("o " + tr("L = 6 xi_c (trainable depth bound, Schoenholz et al. 2017), clipped to "
                                  "the axis"))
    return said
