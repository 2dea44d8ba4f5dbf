"""Recurrent mode: RNN and LSTM gradients through time are exact, and the phenomena show."""

from __future__ import annotations

import numpy as np
import pytest
from tests_helpers import assert_gradients_match

from tui_grad.config import Config
from tui_grad.engine import Simulator
from tui_grad.engine.recurrent import RecurrentSimulator


def recurrent(model: str, task: str = "adding", **overrides) -> Simulator:
    loss = "cross_entropy" if task == "copy_first" else "mse"
    return Simulator(Config.from_overrides({
        "network.model": model, "data.task": task, "training.loss": loss, "data.n_classes": 3,
        **{k.replace("__", "."): v for k, v in overrides.items()}}), keep_grads=True)


@pytest.mark.parametrize("model,activation,task", [
    ("rnn", "tanh", "adding"), ("rnn", "relu", "adding"), ("rnn", "sigmoid", "copy_first"),
    ("lstm", "tanh", "adding"), ("lstm", "tanh", "copy_first")])
def test_bptt_matches_finite_differences(model, activation, task):
    """Every parameter's gradient through time (weight_ih, weight_hh, bias, output layer)
    agrees with central differences to 1e-6 (float64)."""
    sim = recurrent(model, task, network__width=4, network__activation=activation,
                    network__dtype="float64", network__bias_init=0.1, network__recurrent_gain=0.9,
                    data__seq_len=6, training__lr=0.0)
    assert isinstance(sim, RecurrentSimulator)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 6, sim.config.input_dim))
    y = rng.integers(0, 3, size=5) if task == "copy_first" else rng.normal(size=(5, 1))
    assert_gradients_match(sim, (x, y), allow_zero=False)  # every recurrent parameter matters


def test_rnn_vanishes_through_time_while_lstm_keeps_the_gradient():
    """Over 100 steps a tanh RNN's ||dL/dh_1|| falls many decades below ||dL/dh_T||; an LSTM
    with forget bias 1 keeps it within a few decades."""
    rnn_metrics = recurrent("rnn", network__width=32, network__recurrent_gain=0.8,
                            data__seq_len=100).step()
    lstm_metrics = recurrent("lstm", network__width=32, network__forget_bias=3.0,
                             data__seq_len=100).step()
    rnn_drop = rnn_metrics.signal_norm_log10[-2] - rnn_metrics.signal_norm_log10[0]
    lstm_drop = lstm_metrics.signal_norm_log10[-2] - lstm_metrics.signal_norm_log10[0]
    assert rnn_drop > 8 and lstm_drop < 4, (rnn_drop, lstm_drop)
    assert rnn_metrics.status == "vanishing"
    assert lstm_metrics.forget_gate_mean[0] > 0.9


def test_long_sequences_report_tiny_gradients_exactly():
    """At 1000 steps the RNN's gradient at t = 1 is far below float32's range and still
    reported (not 0), with underflow flagged."""
    metrics = recurrent("rnn", network__width=16, network__recurrent_gain=0.5,
                        data__seq_len=1000).step()
    assert -1000 < metrics.signal_norm_log10[0] < -60
    assert metrics.underflow[0]


def test_clip_grad_norm_prevents_the_rnn_explosion():
    """An RNN with large recurrent weights diverges with plain SGD; clip_grad_norm keeps it
    finite (Pascanu et al. 2013)."""
    def run(clipping):
        sim = recurrent("rnn", network__width=32, network__recurrent_gain=3.0,
                        network__activation="relu", data__seq_len=30, training__lr=0.01,
                        training__clipping=clipping, training__max_norm=1.0)
        for _ in range(40):
            metrics = sim.step()
        return metrics
    assert run("none").diverged_at is not None
    assert run("clip_grad_norm").diverged_at is None


@pytest.mark.parametrize("model", ["rnn", "lstm"])
def test_clip_scale_is_one_when_nothing_is_clipped(model):
    """Without clipping, clip_scale is 1 (not clipped) and the applied norm is the global norm;
    the UI's status bar shows it as "clip x1", not "clip x0"."""
    metrics = recurrent(model, network__width=8, data__seq_len=5).step()
    assert metrics.clip_scale == 1.0 and not metrics.clipped
    assert metrics.clipped_grad_norm_log10 == metrics.global_grad_norm_log10
    clipped = recurrent(model, network__width=8, data__seq_len=5, training__clipping="clip_grad_norm",
                        training__max_norm=1e-3).step()
    assert 0 < clipped.clip_scale < 1 and clipped.clipped


def test_model_and_task_must_match():
    """A recurrent model needs a sequence task and the MLP a feed-forward one."""
    from tui_grad.config import ConfigError
    with pytest.raises(ConfigError, match="model 'rnn' needs task adding or copy_first"):
        Config.from_overrides({"network.model": "rnn"})


def test_recurrent_csv_rows_are_time_steps(tmp_path, capsys):
    """The CSV's layer column counts time steps for rnn/lstm and LSTMs fill forget_gate."""
    import csv
    import io

    from tui_grad.cli import main
    path = tmp_path / "rnn.csv"
    assert main(["run", "rnn-vs-lstm", "--headless", "--steps", "1", "--set", "data.seq_len=7",
                 "--csv", str(path)]) == 0
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    lstm = [r for r in rows if r["variant"] == "lstm"]
    assert [r["layer"] for r in lstm] == [str(t) for t in range(1, 9)]
    assert all(float(r["forget_gate"]) > 0.9 for r in lstm[:-1]) and lstm[-1]["forget_gate"] == ""
    assert all(r["forget_gate"] == "" for r in rows if r["variant"] == "rnn")
    assert all(0 < float(r["input_gate"]) < 1 and 0 < float(r["output_gate"]) < 1 for r in lstm[:-1])


async def test_recurrent_panel_switches_model_and_axis():
    """k focuses the recurrent panel; switching mlp -> rnn brings a sequence task along (the
    adding task); from an rnn scenario, v goes to the lstm and the chart says time."""
    from tui_grad.scenario import load_scenario
    from tui_grad.tui.app import GradApp
    app = GradApp(load_scenario("default"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("k", "right")
        for _ in range(300):
            if app.session.sim is not None and app.session.sim.config.network.model == "rnn":
                break
            await pilot.pause(0.1)
        assert app.session.sim.config.data.task == "adding"
        row = app.query_one("#opt-network-model")
        assert not str(row.query_one(".error").render())
    app = GradApp(load_scenario("rnn-vs-lstm"))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("v")
        deadline = 300
        while (app.session.sim is None or app.session.sim.config.network.model != "lstm"
               or app.session.history.latest is None) and deadline:
            await pilot.pause(0.1)
            deadline -= 1
        await pilot.pause(0.3)
        assert "time step" in app._charts["chart-grad"].border_title


async def test_rnn_scenario_draws_every_chart():
    """The vanilla RNN has no gates: its activation chart shows the saturated fraction
    (the LSTM's forget-gate series would be empty, which plotext cannot draw)."""
    from tui_grad.scenario import load_scenario
    from tui_grad.tui.app import GradApp
    app = GradApp(load_scenario("rnn-vs-lstm"))
    async with app.run_test(size=(160, 48)) as pilot:  # wide: every chart on screen
        for _ in range(300):
            latest = app.session.history.latest
            if latest is not None and latest.step >= 2:
                break
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        assert app.session.sim.config.network.model == "rnn"
        assert "saturated (right)" in app._charts["chart-act"].plt.build()
