"""Learning-rate schedules (#15): formulas, what the engine applies, CSV, claims and the UI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tui_grad.engine.optim import scheduled_lr


@pytest.mark.parametrize("schedule,step,expected", [
    ("constant", 0, 0.4), ("constant", 999, 0.4),
    ("warmup_linear", 0, 0.4 * 1 / 8), ("warmup_linear", 3, 0.4 * 4 / 8),
    ("warmup_linear", 7, 0.4), ("warmup_linear", 500, 0.4),
    ("warmup_cosine", 0, 0.4 / 8), ("warmup_cosine", 7, 0.4),
    ("warmup_cosine", 7 + 10, 0.4 * 0.5 * (1 + math.cos(math.pi * 10 / 20))),  # halfway: 0.2
    ("warmup_cosine", 7 + 20, 0.0), ("warmup_cosine", 10_000, 0.0),
    ("step", 0, 0.4), ("step", 19, 0.4), ("step", 20, 0.4 * 0.5), ("step", 45, 0.4 * 0.25),
])
def test_schedules_follow_their_formulas(schedule, step, expected):
    """warmup_steps 8, decay_steps 20, decay_factor 0.5; steps count from 0."""
    assert scheduled_lr(0.4, schedule, step, 8, 20, 0.5) == pytest.approx(expected, rel=1e-15, abs=1e-17)


def test_warmup_cosine_is_half_the_lr_halfway_through_the_decay():
    assert scheduled_lr(0.4, "warmup_cosine", 7 + 10, 8, 20, 0.5) == pytest.approx(0.2)


def test_the_engine_steps_with_the_scheduled_lr(make_sim):
    """A warm-up run takes the same steps, bit for bit, as a constant-lr run whose lr is set
    by hand to the schedule's value before each step; metrics report the lr used."""
    options = dict(network__depth=5, network__width=16, network__dtype="float64", run__seed=4)
    warm = make_sim(training__lr=0.1, training__schedule="warmup_linear", training__warmup_steps=4,
                    **options)
    manual = make_sim(training__lr=0.025, **options)
    for step in range(6):
        lr = 0.1 * min(step + 1, 4) / 4
        manual.apply(manual.config.replace(training__lr=lr))
        metrics = warm.step()
        manual.step()
        assert metrics.lr == lr
        np.testing.assert_array_equal(warm._params, manual._params)


def test_recurrent_runs_follow_the_schedule_too(make_sim):
    sim = make_sim(network__model="rnn", data__task="adding", network__width=8, data__seq_len=5,
                   training__schedule="step", training__decay_steps=2, training__decay_factor=0.5,
                   training__lr=0.2)
    assert [sim.step().lr for _ in range(5)] == [0.2, 0.2, 0.1, 0.1, 0.05]


def test_csv_has_the_lr_of_each_step_and_claims_read_it(tmp_path, capsys):
    import csv

    from tui_grad.cli import main

    path = tmp_path / "s.toml"
    path.write_text("""
[network]
depth = 3
width = 8
[training]
lr = 0.2
schedule = "warmup_cosine"
warmup_steps = 2
decay_steps = 4
[run]
steps = 8
[[expect]]
check = "lr[step=1] == 0.2"
[[expect]]
check = "lr[step=last] == 0"
""")
    out = tmp_path / "m.csv"
    assert main(["run", str(path), "--headless", "--csv", str(out), "--check"]) == 0
    assert capsys.readouterr().out.count("PASS") == 2
    rows = [r for r in csv.DictReader(out.open()) if r["layer"] == "1"]
    lrs = [float(r["lr"]) for r in rows]
    expected = [0.1, 0.2] + [0.2 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3, 4)] + [0.0, 0.0]
    np.testing.assert_allclose(lrs, expected, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("value,message", [
    ("training.schedule=cosine", "training.schedule: must be one of constant, warmup_linear, "
                                 "warmup_cosine, step (got 'cosine'); did you mean 'warmup_cosine'?"),
    ("training.warmup_steps=0", "training.warmup_steps: must be 1..10000000 (got '0')"),
    ("training.decay_factor=0", "training.decay_factor: must be (0..1 (got '0')"),
])
def test_bad_schedule_values_are_one_line_errors(capsys, value, message):
    from tui_grad.cli import main

    assert main(["run", "default", "--headless", "--steps", "1", "--set", value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


async def test_the_lr_panel_switches_the_schedule_live_and_the_loss_chart_shows_the_lr():
    """In the lr panel the schedule is a choice row (right arrow), applied without a restart;
    the loss chart then draws the lr and its title gives the current value."""
    from tui_helpers import endless_app, wait_for

    from tui_grad.tui.charts import LossChart

    app = endless_app("default", paused=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.session.history.latest is not None, timeout=30)
        await pilot.press("l")
        await pilot.press("down")  # from lr to schedule
        await pilot.press("right")  # constant -> warmup_linear
        await wait_for(pilot, lambda: app.session.config.training.schedule == "warmup_linear")
        for _ in range(4):
            await pilot.press("n")
        await wait_for(pilot, lambda: app.session.history.frame().steps.size >= 5)
        frame = app.session.history.frame()
        assert frame.steps[0] == 0  # no restart: the run went on from step 0
        # the schedule counts from step 0 of the run: steps 1.. take lr * (t + 1) / 100
        np.testing.assert_allclose(frame.lr[1:], 0.01 * (frame.steps[1:] + 1) / 100)
        chart = app.query_one(LossChart)
        await wait_for(pilot, lambda: "lr 0.0005" in str(chart.border_title))
