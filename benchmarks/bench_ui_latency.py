"""How long the UI can take to answer a key while a deep network trains (run by hand).

``python benchmarks/bench_ui_latency.py`` runs the app headlessly (Textual's test driver) on
depth 1000 at width 64 and 256, lets it train, and measures the event loop's lag (a key is
handled by that loop) and the time from pressing ``h`` until the layout changed, against
the 100 ms target. Over SSH add the network's round trip.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from textual import events  # noqa: E402

from tui_grad.scenario import load_scenario  # noqa: E402
from tui_grad.session import SPEEDS  # noqa: E402
from tui_grad.tui.app import GradApp  # noqa: E402

TARGET_MS = 100.0


async def measure(width: int) -> None:
    scenario = load_scenario("default").with_overrides(
        {"network.depth": 1000, "network.width": width, "run.steps": 10_000_000})
    app = GradApp(scenario)
    app.session.speed_index = len(SPEEDS) - 1  # as fast as it goes: the worst case
    async with app.run_test(size=(160, 48)):
        while app.session.history.latest is None:
            await asyncio.sleep(0.1)
        lags, last = [], time.perf_counter()
        end = last + 6.0
        while time.perf_counter() < end:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            lags.append((now - last - 0.005) * 1e3)
            last = now
        answers = []
        controls = app._main.query_one("#controls")
        for _ in range(20):
            shown = controls.display
            started = time.perf_counter()
            app.post_message(events.Key("h", None))  # as the terminal driver delivers it
            while controls.display == shown:
                await asyncio.sleep(0.001)
            answers.append((time.perf_counter() - started) * 1e3)
            await asyncio.sleep(0.2)
        p99 = sorted(lags)[int(0.99 * len(lags))]
        print(f"depth 1000 width {width:3d} ({app.session.steps_per_second or 0:.1f} steps/s): "
              f"loop lag p99 {p99:.0f} ms, max {max(lags):.0f} ms; key 'h' answered in "
              f"median {statistics.median(answers):.0f} ms, max {max(answers):.0f} ms "
              f"= {max(answers) / TARGET_MS:.2f} x the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    for width in (64, 256):
        asyncio.run(measure(width))
