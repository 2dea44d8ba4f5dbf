"""Probes: per-layer distributions, the Jacobian's spectrum and sharpness (engine/probe.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tui_grad.config import ACTIVATIONS
from tui_grad.engine import probe

GRAD_CASES = list(itertools.product(ACTIVATIONS, (False, True), (False, True), ("mse", "cross_entropy")))


def small(make_sim, **overrides):
    options = dict(keep_grads=True, network__depth=4, network__width=5, network__dtype="float64",
                   network__init="xavier_normal", network__bias_init=0.1, training__lr=0.0,
                   data__input_dim=3, data__n_samples=32, run__seed=3)
    return make_sim(**{**options, **overrides})


def assert_probe_pass_is_the_engines(sim, signal: bool = True):
    """One step; the probes' float64 pass gives the kernels' loss and every gradient (and,
    with ``signal``, the per-layer ||dL/dh|| the charts show). Returns the probe's values."""
    metrics = sim.step()
    values = sim.layer_values()
    assert values.loss == pytest.approx(metrics.loss, rel=1e-12)
    for mine, theirs in zip(values.grads, sim.grads(), strict=True):
        for key in theirs:
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-9, atol=1e-14, err_msg=key)
    if signal:
        norms = [np.log10(np.linalg.norm(g)) for g in values.signal]
        np.testing.assert_allclose(norms, metrics.signal_norm_log10[:-1], rtol=1e-9)
    return values


@pytest.mark.parametrize("activation,batch_norm,residual,loss", GRAD_CASES)
def test_the_probes_float64_pass_gives_the_engines_gradients(make_sim, activation, batch_norm, residual,
                                                             loss):
    """The probes' own forward and backward pass (NumPy, float64) is the engine's network:
    every parameter's gradient equals the kernels' (lr 0, so the step leaves the weights)."""
    task = "blobs" if loss == "cross_entropy" else "teacher"
    sim = small(make_sim, network__activation=activation, network__batch_norm=batch_norm,
                network__residual=residual, network__residual_block=2, network__residual_alpha=0.7,
                training__loss=loss, data__task=task)
    assert_probe_pass_is_the_engines(sim, signal=False)


@pytest.mark.parametrize("norm,position,learnable", [
    ("layer_norm", "layer", False), ("layer_norm", "pre", True), ("layer_norm", "post", False),
    ("batch_norm", "pre", False), ("batch_norm", "post", True)])
def test_the_probes_pass_covers_norms_around_the_shortcut(make_sim, norm, position, learnable):
    sim = small(make_sim, network__norm=norm, network__norm_position=position,
                network__residual=True, network__learn_alpha=learnable,
                network__residual_alpha=0.5)
    assert_probe_pass_is_the_engines(sim)
    with pytest.raises(ValueError, match="does not cover layer norm"):
        sim.jacobian_singular_values()


def test_the_jacobian_uses_each_blocks_learned_alpha(make_sim):
    """With learn_alpha the spectrum is that of the same weights with those alphas fixed."""
    options = dict(network__depth=8, network__width=12, network__residual=True,
                   network__dtype="float64", data__input_dim=12, training__lr=0.0, run__seed=2)
    learned = make_sim(network__learn_alpha=True, network__residual_alpha=0.1, **options)
    fixed = make_sim(network__residual_alpha=0.9, **options)
    for layer in learned.params:
        if "alpha" in layer:
            layer["alpha"][:] = 0.9
    learned.step(), fixed.step()
    np.testing.assert_allclose(learned.jacobian_singular_values().values,
                               fixed.jacobian_singular_values().values, rtol=1e-10)


def test_sharpness_on_the_chart_is_paired_with_the_scheduled_lr():
    """During a warm-up the 2/lr line uses each measured step's own lr."""
    from tui_grad.scenario import load_scenario
    from tui_grad.session import Session

    scenario = load_scenario("edge-of-stability").with_overrides(
        {"training.schedule": "warmup_linear", "training.warmup_steps": 10, "run.sharpness_every": 1,
         "run.steps": 1000})
    session = Session(scenario)
    while session.history.frame().steps.size < 4:
        session.advance(0.5)
    frame = session.history.frame()
    steps = frame.sharpness[:, 0]
    np.testing.assert_allclose(frame.sharpness[:, 2], 0.15 * (steps + 1) / 10)


def linear_net_jacobian(sim, example: int) -> np.ndarray:
    """d h_depth / d h_1 built independently: each layer's Jacobian diag(phi'(u)) W from
    sim.params and the pre-activations recomputed here, multiplied in float64."""
    from tui_grad.engine.theory import phi_and_derivative

    params = [{k: np.asarray(v, dtype=np.float64) for k, v in layer.items()} for layer in sim.params]
    h = np.asarray(sim._last_batch[0][example], dtype=np.float64)
    act = sim.config.network.activation
    jac = None
    for i in range(sim.config.network.depth):
        u = params[i]["weight"] @ h + params[i]["bias"]
        h, d = phi_and_derivative(act, u, 0.0)
        if i >= 1:
            layer = np.diag(np.broadcast_to(d, u.shape)) @ params[i]["weight"]
            jac = layer if jac is None else layer @ jac
    return jac


@pytest.mark.parametrize("activation,init", list(itertools.product(
    ("linear", "tanh", "relu"), ("orthogonal", "xavier_normal"))))
def test_jacobian_singular_values_match_an_independent_product(make_sim, activation, init):
    sim = make_sim(network__depth=12, network__width=16, network__activation=activation,
                   network__init=init, network__dtype="float64", network__bias_init=0.05,
                   data__input_dim=16, training__lr=0.0, run__seed=5)
    sim.step()
    for example in (0, 3):
        spectrum = sim.jacobian_singular_values(example)
        expected = np.linalg.svd(linear_net_jacobian(sim, example), compute_uv=False)
        # relative 1e-8; an SVD resolves values to eps * largest, so tiny ones compare in that
        np.testing.assert_allclose(spectrum.values, expected, rtol=1e-8, atol=1e-13 * expected[0])
        assert spectrum.layers == 11 and spectrum.subspace is None
        summary = spectrum.summary
        assert summary["largest"] == pytest.approx(expected[0], rel=1e-8)
        assert summary["mean_square"] == pytest.approx(np.mean(expected ** 2), rel=1e-8)
    if activation == "linear" and init == "orthogonal":  # a product of orthogonal matrices
        np.testing.assert_allclose(spectrum.values, 1.0, rtol=1e-8)


def test_gaussian_weights_spread_the_spectrum_orthogonal_ones_do_not(make_sim):
    """Linear nets (Saxe; Pennington): the variance of JJ^T's eigenvalues grows with depth for
    Gaussian weights and stays 0 for orthogonal ones."""
    def spread(init, depth):
        sim = make_sim(network__depth=depth, network__width=32, network__activation="linear",
                       network__init=init, data__input_dim=32, training__lr=0.0, run__seed=1)
        sim.step()
        return sim.jacobian_singular_values().summary["variance_of_squares"]

    assert spread("orthogonal", 40) < 1e-6
    assert spread("xavier_normal", 40) > 3 * spread("xavier_normal", 5) > 0.1


def hessian_by_finite_differences(sim) -> np.ndarray:
    """The full Hessian of the data loss on the last batch: central differences of the
    loss itself (second differences, not of gradients), in float64."""
    theta = [{k: np.asarray(v, dtype=np.float64).copy() for k, v in layer.items()} for layer in sim.params]
    flat, unflatten = probe._flatten(theta)
    x, y_reg, y_cls = sim._last_batch

    def loss(vector):
        return probe.layer_values(sim.config, unflatten(vector), x, y_reg, y_cls).loss

    n, h = flat.size, 1e-4
    hess = np.empty((n, n))
    base = loss(flat)
    for i in range(n):
        for j in range(i, n):
            e_i, e_j = np.eye(n)[i] * h, np.eye(n)[j] * h
            if i == j:
                value = (loss(flat + e_i) - 2 * base + loss(flat - e_i)) / h ** 2
            else:
                value = (loss(flat + e_i + e_j) - loss(flat + e_i - e_j)
                         - loss(flat - e_i + e_j) + loss(flat - e_i - e_j)) / (4 * h * h)
            hess[i, j] = hess[j, i] = value
    return hess


def test_sharpness_is_the_top_eigenvalue_of_the_hessian(make_sim):
    sim = make_sim(network__depth=2, network__width=3, network__activation="tanh",
                   network__dtype="float64", data__input_dim=2, data__n_samples=16,
                   training__batch_size=16, training__lr=0.0, run__seed=2)
    sim.step()
    eigenvalues = np.linalg.eigvalsh(hessian_by_finite_differences(sim))
    top = eigenvalues[np.argmax(np.abs(eigenvalues))]
    result = sim.sharpness(iterations=500, tolerance=1e-10)
    assert result.converged and result.relative_change <= 1e-10
    assert result.value == pytest.approx(top, rel=1e-5)


def test_sharpness_agrees_with_an_independent_power_iteration(make_sim):
    """The same power iteration written again with the engine's own float64 gradients
    (a step with lr 0 at theta +- eps v) gives the same eigenvalue."""
    sim = small(make_sim, network__activation="relu", network__depth=3)
    sim.step()
    x, y_reg, y_cls = sim._last_batch
    batch = (x, y_reg)
    theta = [{k: np.array(v, dtype=np.float64) for k, v in layer.items()} for layer in sim.params]
    flat, unflatten = probe._flatten(theta)

    def engine_gradient(vector):
        for layer, values in zip(sim.params, unflatten(vector), strict=True):
            for key, value in values.items():
                layer[key][...] = value
        sim.step(batch)
        return probe._flatten(sim.grads())[0]

    v = np.random.default_rng(7).standard_normal(flat.size)
    v /= np.linalg.norm(v)
    for _ in range(300):
        hv = (engine_gradient(flat + 1e-5 * v) - engine_gradient(flat - 1e-5 * v)) / 2e-5
        estimate, v = v @ hv, hv / np.linalg.norm(hv)
    engine_gradient(flat)  # back to theta, and its batch
    result = sim.sharpness(iterations=300, tolerance=1e-9)
    assert result.value == pytest.approx(estimate, rel=1e-5)


def test_histogram_counts_add_up_and_zeros_are_counted_apart(make_sim):
    sim = make_sim(network__depth=10, network__width=24, network__activation="relu",
                   network__bias_init=-0.5, training__batch_size=16, run__seed=4)
    sim.step()
    hists = sim.histograms(bins=20)
    assert {h.layer for h in hists} == {0, 2, 4, 7, 9}  # about five, first to last
    assert {h.quantity for h in hists} == set(probe.QUANTITIES)
    for h in hists:
        values = getattr(sim.layer_values(), h.quantity)[h.layer]
        assert h.total == values.size  # every value in a bin, among the zeros, or non-finite
        assert h.counts.size == 20 and h.edges.size == 21 and np.all(np.diff(h.edges) > 0)
        if h.log:
            assert h.zeros == np.count_nonzero(values == 0)
            inside = np.log10(np.abs(values[values != 0]))
            assert inside.size == 0 or h.edges[0] <= inside.min() and inside.max() <= h.edges[-1]
        else:
            assert h.zeros == 0
    # dead relus: exact zeros in the activations land in a bin at 0, in dW among the zeros
    grads = [h for h in hists if h.quantity == "weight_grad"]
    assert any(h.zeros > 0 for h in grads)
    with pytest.raises(ValueError, match="layer 10 is not a hidden layer"):
        sim.histograms(layers=[10])


def test_the_probes_say_what_they_need(make_sim):
    sim = small(make_sim)
    with pytest.raises(RuntimeError, match="call step"):
        sim.histograms()
    sim.step()
    with pytest.raises(ValueError, match="example 99 is not in the batch"):
        sim.jacobian_singular_values(99)


def recurrent(make_sim, model, **overrides):
    options = dict(keep_grads=True, network__model=model, network__width=6, network__dtype="float64",
                   data__task="adding", data__seq_len=7, training__batch_size=5, training__lr=0.0,
                   network__recurrent_gain=1.2, run__seed=3)
    return make_sim(**{**options, **overrides})


RECURRENT_CASES = [("rnn", "tanh", "adding"), ("rnn", "relu", "adding"), ("lstm", "tanh", "adding"),
                   ("lstm", "tanh", "copy_first")]


@pytest.mark.parametrize("model,activation,task", RECURRENT_CASES)
def test_recurrent_probes_give_the_engines_gradients_and_signal(make_sim, model, activation, task):
    """For an RNN/LSTM the probes' float64 BPTT is the kernels': every gradient, and per time
    step the signal ||dL/dh_t|| the charts show; layers are time steps."""
    loss = "cross_entropy" if task == "copy_first" else "mse"
    sim = recurrent(make_sim, model, network__activation=activation, data__task=task,
                    training__loss=loss)
    values = assert_probe_pass_is_the_engines(sim)
    assert sum(w.shape == (sim.layout.gates * 6, 6) for w in values.weight_grad) == 7
    np.testing.assert_allclose(sum(values.weight_grad), values.grads[0]["weight_hh"], rtol=1e-12)
    hists = sim.histograms()
    assert {h.layer for h in hists} == {0, 2, 3, 4, 6}  # about five time steps, first to last
    assert all(h.total == values.activation[h.layer].size for h in hists if h.quantity == "activation")


def recurrent_jacobian_by_differences(sim, example: int) -> np.ndarray:
    """d h_T / d h_1 by central differences of an independent float64 forward pass from
    (h_1, c_1), h_1 perturbed, c_1 held."""
    net = sim.config.network
    cell = {k: np.asarray(v, dtype=np.float64) for k, v in sim.params[0].items()}
    x = np.asarray(sim._last_batch[0][example], dtype=np.float64)  # (T, inputs)
    hidden = cell["weight_hh"].shape[1]
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731

    def step(h, c, x_t):
        z = cell["weight_ih"] @ x_t + cell["weight_hh"] @ h + cell["bias"]
        if net.model == "rnn":
            return np.tanh(z) if net.activation == "tanh" else np.maximum(z, 0.0), c
        i, f = sigmoid(z[:hidden]), sigmoid(z[hidden:2 * hidden])
        g, o = np.tanh(z[2 * hidden:3 * hidden]), sigmoid(z[3 * hidden:])
        c = f * c + i * g
        return o * np.tanh(c), c

    h1, c1 = step(np.zeros(hidden), np.zeros(hidden), x[0])

    def last(h):
        c = c1
        for t in range(1, x.shape[0]):
            h, c = step(h, c, x[t])
        return h

    eps = 1e-6
    return np.stack([(last(h1 + eps * e) - last(h1 - eps * e)) / (2 * eps)
                     for e in np.eye(hidden)], axis=1)


@pytest.mark.parametrize("model,activation", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh")])
def test_recurrent_jacobian_matches_finite_differences(make_sim, model, activation):
    sim = recurrent(make_sim, model, network__activation=activation)
    sim.step()
    for example in (0, 4):
        spectrum = sim.jacobian_singular_values(example)
        expected = np.linalg.svd(recurrent_jacobian_by_differences(sim, example), compute_uv=False)
        np.testing.assert_allclose(spectrum.values, expected, rtol=1e-6, atol=1e-9 * expected[0])
        assert spectrum.layers == 6


def test_recurrent_sharpness_is_the_top_eigenvalue_of_the_hessian(make_sim):
    sim = recurrent(make_sim, "lstm", network__width=2, data__seq_len=4, training__batch_size=8)
    sim.step()
    eigenvalues = np.linalg.eigvalsh(hessian_by_finite_differences(sim))
    top = eigenvalues[np.argmax(np.abs(eigenvalues))]
    result = sim.sharpness(iterations=500, tolerance=1e-10)
    assert result.value == pytest.approx(top, rel=1e-5)


def test_headless_writes_histograms_sharpness_and_the_jacobian(tmp_path, capsys):
    import csv
    import json

    from tui_grad.cli import main

    hist, metrics, summary = tmp_path / "h.csv", tmp_path / "m.csv", tmp_path / "s.json"
    code = main(["run", "default", "--headless", "--steps", "4", "--every", "2",
                 "--set", "network.depth=8", "--set", "network.width=16", "--set", "training.batch_size=8",
                 "--histograms", str(hist), "--sharpness-every", "3", "--jacobian",
                 "--csv", str(metrics), "--summary", str(summary)])
    assert code == 0
    rows = list(csv.DictReader(hist.open()))
    assert list(rows[0]) == ["step", "layer", "quantity", "bin_low", "bin_high", "count"]
    assert {r["step"] for r in rows} == {"0", "2"}
    assert {r["layer"] for r in rows} == {"1", "3", "5", "6", "8"}
    totals = {}
    for r in rows:
        key = (r["step"], r["layer"], r["quantity"])
        totals[key] = totals.get(key, 0) + int(r["count"])
    for (step, layer, quantity), total in totals.items():  # every value counted once
        size = 8 * 16  # batch x width
        if quantity == "weight_grad":
            size = 16 * (_input_dim() if layer == "1" else 16)
        assert total == size, (step, layer, quantity)
    zeros = [r for r in rows if r["bin_low"] == "0" and r["bin_high"] == "0"]
    assert {r["quantity"] for r in zeros} == {"weight_grad", "signal"}  # log bins only
    table = list(csv.DictReader(metrics.open()))
    assert "sharpness" in table[0]
    filled = {r["step"] for r in table if r["sharpness"]}
    assert filled == {"0"}  # step 3 is measured but --every 2 keeps steps 0 and 2
    info = json.loads(summary.read_text())["variants"][0]
    assert info["jacobian"]["layers"] == 7 and info["jacobian"]["largest"] > 0
    assert info["sharpness"] > 0


def _input_dim() -> int:
    from tui_grad.scenario import load_scenario
    return load_scenario("default").config.data.input_dim


@pytest.mark.parametrize("args,message", [
    (["--sharpness-every", "0"], "--sharpness-every must be 1 or more (got 0)"),
    (["--csv", "-", "--histograms", "-"], "cannot both write to stdout"),
    (["--histograms", "/nonexistent/dir/h.csv"], "/nonexistent/dir/h.csv: cannot write"),
    (["--set", "network.norm=layer_norm", "--jacobian"], "does not cover layer norm"),
])
def test_bad_probe_options_are_one_line_errors(capsys, args, message):
    from tui_grad.cli import main

    assert main(["run", "default", "--headless", "--steps", "1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("name,size", [("default", (80, 24)), ("default", (160, 48)),
                                       ("rnn-vs-lstm", (80, 24)), ("rnn-vs-lstm", (160, 48))])
async def test_the_probe_screen_draws_every_view(name, size):
    """D opens the probes; 1-3 and k draw each view at this size without error, for an MLP
    and for an LSTM (whose layers are time steps)."""
    from tui_helpers import endless_app, screen_text, wait_for

    from tui_grad.tui.probes import ProbeScreen

    app = endless_app(name, paused=True)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.session.history.latest is not None, timeout=30)
        if name == "rnn-vs-lstm":
            await pilot.press("v")  # the lstm variant
            await wait_for(pilot, lambda: "[lstm]" in screen_text(app), timeout=10)
        await pilot.press("D")
        assert isinstance(app.screen, ProbeScreen)
        expected = {"1": "pre-activation", "k": "activation (layer output)", "2": "largest",
                    "3": "x 2/lr"}
        for key, text in expected.items():
            await pilot.press(key)
            await wait_for(pilot, lambda: "measuring" not in screen_text(app), timeout=30)
            await pilot.pause(0.2)
            shown = screen_text(app)
            assert text in shown and "at step 0" in shown, key
            if name != "default" and key == "1":
                assert "time step 1" in shown and "time step 100" in shown
            if name != "default" and key == "2":
                assert "dh_T/dh_1 (99 time steps" in shown.replace("\n", "")
        await pilot.press("escape")
        assert not isinstance(app.screen, ProbeScreen)


def test_claims_read_the_probes_at_their_steps(tmp_path, capsys):
    """sharpness, jacobian_* and lr in [[expect]] are measured at the steps the claims read,
    on the network after that step: the same values the API gives after that many steps."""
    import json

    from tui_grad.cli import main
    from tui_grad.engine import Simulator
    from tui_grad.scenario import load_scenario

    path = tmp_path / "claims.toml"
    path.write_text("""
[network]
depth = 6
width = 12
[training]
batch_size = 16
lr = 0.02
[run]
steps = 5
[[expect]]
check = "sharpness[step=0] < 2 / lr"
[[expect]]
check = "jacobian_spread[step=2] >= 0"
[[expect]]
check = "jacobian_mean_square[step=last] > 0"
[[expect]]
check = "loss_rises[step=last] <= 4"
""")
    summary = tmp_path / "summary.json"
    assert main(["run", str(path), "--headless", "--check", "--summary", str(summary)]) == 0
    assert capsys.readouterr().out.count("PASS") == 4
    measured = [check["measured"] for check in json.loads(summary.read_text())["checks"]]
    sim = Simulator(load_scenario(str(path)).config)
    sim.step()
    assert measured[0] == pytest.approx(sim.sharpness().value, rel=1e-12)
    sim.step(), sim.step()
    assert measured[1] == pytest.approx(sim.jacobian_singular_values().summary["spread"], rel=1e-12)
    sim.step(), sim.step()
    assert measured[2] == pytest.approx(sim.jacobian_singular_values().summary["mean_square"], rel=1e-12)
    assert measured[3] in (0, 1, 2, 3, 4)


def test_loss_rises_counts_the_steps_whose_loss_went_up():
    from tui_grad import headless
    from tui_grad.scenario import load_scenario

    scenario = load_scenario("default").with_overrides({"run.steps": 30, "training.lr": 0.05})
    result = headless.run(scenario, 30)[0]
    sim_losses = [m.loss for m in _losses(scenario.config, 30)]
    rises = sum(b > a for a, b in itertools.pairwise(sim_losses))
    assert result.extra[-1]["loss_rises"] == rises > 0


def _losses(config, steps):
    from tui_grad.engine import Simulator
    sim = Simulator(config)
    return [sim.step() for _ in range(steps)]


def test_history_keeps_sharpness_until_rewound_past_it():
    from tui_grad.history import History

    history = History()
    for step, value in ((0, 1.0), (10, 2.0), (20, 3.0)):
        history.append_sharpness(step, value, 0.1)
    assert history.frame().sharpness.tolist() == [[0, 1.0, 0.1], [10, 2.0, 0.1], [20, 3.0, 0.1]]
    history.truncate(10)
    assert history.frame().sharpness.tolist() == [[0, 1.0, 0.1]]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_sharpness_every_k_draws_on_the_loss_chart(size):
    """run.sharpness_every (the lr panel) measures sharpness every K steps while the run
    trains, and the loss chart shows it beside 2/lr; 0 turns it off."""
    from tui_helpers import endless_app, wait_for

    from tui_grad.tui.charts import LossChart

    app = endless_app("edge-of-stability", paused=True)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.session.history.latest is not None, timeout=30)
        for _ in range(3):
            await pilot.press("n")
        await wait_for(pilot, lambda: app.session.history.frame().sharpness.shape[0] >= 1)
        chart = app.query_one(LossChart)
        if size == (80, 24):
            await pilot.press("2")  # one chart at a time on a narrow screen
        await wait_for(pilot, lambda: "sharpness" in str(chart.border_title))
        frame = app.session.history.frame()
        assert f"2/lr {2 / 0.15:.3g}" in str(chart.border_title)
        assert frame.sharpness[0, 0] == 0 and frame.sharpness[0, 1] > 0
        assert all(step % 10 == 0 for step in frame.sharpness[:, 0])
