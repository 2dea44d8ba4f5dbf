"""The sweep map in the TUI: sweeps record their table, the map marks the current configuration."""

from __future__ import annotations

import json
import os

from tui_helpers import endless_app, screen_text, wait_for

from tui_grad.cli import main
from tui_grad.plot import MARKER, draw_map
from tui_grad.sweep.command import record_sweep, recorded_sweeps
from tui_grad.tui.screens import MapScreen

GLYPH = MARKER[0]
SWEEP = """\
[scenario]
name = "map-test"

[network]
width = 8
depth = 2

[data]
input_dim = 8
n_samples = 64

[training]
batch_size = 32

[sweep]
steps = 2
seeds = [0]

[sweep.grid]
network.depth = [1, 2]
"network.init_gain" = [0.5, 2.0]
"""


def grid(gains, depths, value=lambda i, j: 1 + i + 2 * j) -> list[dict[str, str]]:
    """A hand-made result table: cell (gain i, depth j) holds ``value(i, j)``."""
    return [{"network.depth": str(d), "network.init_gain": str(g), "seed": "0",
             "loss_ratio": str(value(i, j)), "final_loss": str(value(i, j) / 10)}
            for j, d in enumerate(depths) for i, g in enumerate(gains)]


def neighbours(text: str) -> str:
    """The characters left and right of the marker on the map."""
    lines = [line for line in text.splitlines() if GLYPH in line and "you are here" not in line]
    assert len(lines) == 1, text
    column = lines[0].index(GLYPH)
    return lines[0][column - 1] + lines[0][column + 1]


def test_the_marker_sits_in_the_cell_of_the_configuration():
    """Values 1, 2 / 3, 4 shade as _ - / * @: the marker is drawn inside its own cell."""
    rows = grid(["0.5", "2.0"], ["2", "4"])
    for gain, depth, glyph in ((2.0, 2, "-"), (0.5, 4, "*"), (0.5, 2, "_"), (2.0, 4, "@")):
        text = draw_map(rows, "loss_ratio", width=60, height=24, color=False,
                        marker={"network.init_gain": gain, "network.depth": depth})
        assert neighbours(text) == glyph * 2, text
        assert text.splitlines()[-1] == (f"{GLYPH} you are here: network.init_gain = {gain:g}, "
                                         f"network.depth = {depth}")
    # between the grid's values it interpolates: a quarter of the way up is still the bottom row
    text = draw_map(rows, "loss_ratio", width=60, height=24, color=False,
                    marker={"network.init_gain": 1.75, "network.depth": 2.5})
    assert neighbours(text) == "--", text


def test_a_configuration_off_the_map_is_said_not_drawn():
    text = draw_map(grid(["0.5", "2.0"], ["2", "4"]), "loss_ratio", width=60, height=24,
                    color=False, marker={"network.init_gain": 3.0, "network.depth": 2})
    assert text.count(GLYPH) == 1
    assert text.endswith("network.init_gain = 3, network.depth = 2 (outside this map)")
    assert GLYPH not in draw_map(grid(["0.5", "2.0"], ["2", "4"]), "loss_ratio", color=False)


def test_a_sweep_records_its_table_for_the_scenario(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GRAD_STATE_DIR", str(tmp_path / "state"))
    source, out = tmp_path / "map-test.toml", tmp_path / "results.csv"
    source.write_text(SWEEP)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(source), "--out", "results.csv", "--workers", "0"]) == 0
    state = json.loads((tmp_path / "state" / "sweeps.json").read_text())
    assert state == {"map-test": str(out.resolve())}
    record_sweep("other", "other.csv")  # the last sweep per scenario wins, others stay
    record_sweep("map-test", "again.csv")
    assert recorded_sweeps() == {"map-test": str(tmp_path / "again.csv"),
                                 "other": str(tmp_path / "other.csv")}
    monkeypatch.setenv("TUI_GRAD_STATE_DIR", str(out))  # a file, not a folder: silently skipped
    record_sweep("map-test", "results.csv")
    assert recorded_sweeps() == {}


async def test_m_opens_the_map_with_the_current_configuration_marked(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GRAD_STATE_DIR", str(tmp_path))
    app = endless_app("default", paused=True)
    config = app.session.config
    gain, depth = config["network.init_gain"], config["network.depth"]
    table = tmp_path / "results.csv"
    rows = grid([str(gain / 2), str(gain * 2)], ["1", str(depth * 2)])
    table.write_text(",".join(rows[0]) + "\n" + "".join(",".join(r.values()) + "\n" for r in rows))
    record_sweep("default", str(table))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("M")
        assert isinstance(app.screen, MapScreen)
        await wait_for(pilot, lambda: "you are here" in screen_text(app), timeout=5)
        text = screen_text(app)
        assert f"you are here: network.init_gain = {gain:g}, network.depth = {depth}" in text
        assert text.count(GLYPH) == 2  # on the map and in the line under it
        assert "loss_ratio (median over seeds)" in text
        await pilot.press("m")  # the next metric
        await wait_for(pilot, lambda: "final_loss (median" in screen_text(app), timeout=5)
        await pilot.press("escape")
        assert not isinstance(app.screen, MapScreen)


async def test_without_a_sweep_the_map_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GRAD_STATE_DIR", str(tmp_path))
    app = endless_app("depth", paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("M")
        assert isinstance(app.screen, MapScreen)
        await wait_for(pilot, lambda: "tui-grad sweep FILE --out results.csv" in screen_text(app),
                       timeout=5)
        assert "'depth'" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, MapScreen)


async def test_another_scenarios_sweep_is_shown_and_named_when_this_one_has_none(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GRAD_STATE_DIR", str(tmp_path))
    rows = grid(["0.5", "2.0"], ["2", "4"])
    for name in ("older", "newer"):
        table = tmp_path / f"{name}.csv"
        table.write_text(",".join(rows[0]) + "\n" + "".join(",".join(r.values()) + "\n" for r in rows))
        record_sweep(name, str(table))
    os.utime(tmp_path / "older.csv", (1e9, 1e9))  # written long ago: "newer" is the last sweep
    app = endless_app("depth", paused=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("M")
        await wait_for(pilot, lambda: "loss_ratio (median" in screen_text(app), timeout=5)
        assert "no sweep of 'depth' yet; the last sweep, of 'newer'" in screen_text(app)
