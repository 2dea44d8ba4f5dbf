"""Engine behaviour users rely on: theory-backed profiles, NaN handling, clipping, optimizers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tui_grad.config import Config
from tui_grad.engine import Simulator
from tui_grad.engine.activations import exp_f32, sigmoid_f32, tanh_f32


def test_linear_orthogonal_network_keeps_signal_norm_constant_over_200_layers(make_sim):
    """A linear net with orthogonal init is an isometry: ||dL/dh_l|| is the same at every layer."""
    m = make_sim(network__depth=200, network__width=64, network__activation="linear",
                 network__init="orthogonal", data__input_dim=64).step()
    hidden = m.signal_norm_log10[:-1]
    assert hidden.max() - hidden.min() < 1e-5


def test_relu_kaiming_keeps_backpropagated_norm_within_factor_two(make_sim):
    """He init makes ReLU nets neither vanish nor explode: every hidden layer's ||dL/dh||
    stays within a factor 2 of the last hidden layer's (width 512, depth 100)."""
    m = make_sim(network__depth=100, network__width=512, network__activation="relu",
                 network__init="kaiming_normal", data__input_dim=512).step()
    relative = m.signal_norm_log10[:-1] - m.signal_norm_log10[-2]
    assert np.all(np.abs(relative) < math.log10(2.0))
    assert m.status == "healthy"


def test_sigmoid_xavier_vanishes_at_depth_50(make_sim):
    """sigmoid' <= 1/4, so 50 layers shrink the first layer's gradient below 1e-6 of the last."""
    m = make_sim(network__depth=50, network__activation="sigmoid", network__init="xavier_normal").step()
    assert m.grad_norm_log10[0] - m.grad_norm_log10[-1] < -6
    assert m.status == "vanishing"


def test_large_normal_init_relu_diverges_without_raising(make_sim):
    """normal(std=1) ReLU at width 256, depth 50 overflows float32: reported as diverged at
    step 0, the run keeps finite parameters and can go on stepping."""
    sim = make_sim(network__depth=50, network__width=256, network__activation="relu",
                   network__init="normal", network__init_std=1.0)
    first = sim.step()
    assert first.status == "diverged" and first.diverged_at == 0
    assert not first.is_finite
    second = sim.step()
    assert second.diverged_at == 0
    assert all(np.isfinite(t["weight"]).all() for t in sim.params)


def test_tiny_gradients_are_reported_exactly_far_below_float32_range():
    """A 500-layer sigmoid net's first-layer gradient (~1e-313) is reported to float32's
    precision (checked against a float64 run of the same net) and flagged as float32 underflow."""
    overrides = {"network.depth": 500, "network.width": 32, "network.activation": "sigmoid"}
    m32 = Simulator(Config.from_overrides(overrides)).step()
    m64 = Simulator(Config.from_overrides({**overrides, "network.dtype": "float64"})).step()
    assert m32.grad_norm_log10[0] < -200
    assert np.all(np.abs(m32.grad_norm_log10 - m64.grad_norm_log10) < 1e-3)
    assert m32.underflow[0] and not m32.underflow[-1]


def test_exact_zero_gradient_is_distinct_from_tiny(make_sim):
    """A fully dead ReLU layer has exactly zero gradient below it: -inf in log10, not a tiny
    number, and the verdict is vanishing."""
    m = make_sim(network__depth=6, network__activation="relu", network__bias_init=-50.0).step()
    assert np.isneginf(m.grad_norm_log10[0])
    assert m.dead_fraction[0] == 1.0
    assert m.status == "vanishing"


def test_seeded_runs_are_bit_identical(make_sim):
    """Same config and seed => identical numbers, step after step."""
    runs = [make_sim(network__depth=8, training__optimizer="adam", run__seed=7) for _ in range(2)]
    for _ in range(4):
        a, b = (sim.step() for sim in runs)
        assert a.loss == b.loss
        assert np.array_equal(a.grad_norm_log10, b.grad_norm_log10)
    assert np.array_equal(runs[0].params[3]["weight"], runs[1].params[3]["weight"])


@pytest.mark.parametrize("clipping", ["none", "clip_grad_norm"])
def test_keeping_the_gradient_changes_no_number(make_sim, clipping):
    """keep_grads only decides whether grads() can be read: metrics and parameters are the
    same bits either way (BN, prelu slopes and residual blocks all in play), and asking
    for the gradient of a run that does not keep it is a clear error."""
    options = dict(network__depth=6, network__width=9, network__batch_norm=True,
                   network__activation="prelu", network__residual=True, network__residual_block=2,
                   training__optimizer="momentum", training__clipping=clipping,
                   training__max_norm=0.5, training__batch_size=7)
    runs = [make_sim(keep_grads=keep, **options) for keep in (False, True)]
    for _ in range(3):
        a, b = (sim.step() for sim in runs)
        for name in ("grad_norm_log10", "signal_norm_log10", "update_ratio", "weight_norm",
                     "prelu_slope"):
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
        assert a.global_grad_norm_log10 == b.global_grad_norm_log10
    assert np.array_equal(params_copy(runs[0]), params_copy(runs[1]))
    with pytest.raises(RuntimeError, match="keep_grads=True"):
        runs[0].grads()
    assert len(runs[1].grads()) == 7


def test_other_seed_gives_other_numbers(make_sim):
    """The seed reaches init and data: a different seed gives a different first loss."""
    assert make_sim(run__seed=1).step().loss != make_sim(run__seed=2).step().loss


def params_copy(sim):
    return np.concatenate([a.ravel().astype(np.float64) for t in sim.params for a in t.values()])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_grad_norm_bounds_the_applied_gradient(make_sim, dtype):
    """With clip_grad_norm the gradient applied (||delta params|| / lr with plain SGD) never
    exceeds max_norm, even while the raw gradient explodes."""
    sim = make_sim(network__depth=30, network__activation="relu", network__init="normal",
                   network__init_std=0.3, network__dtype=dtype, training__clipping="clip_grad_norm",
                   training__max_norm=0.5, training__lr=0.01)
    for _ in range(5):
        before = params_copy(sim)
        m = sim.step()
        applied = np.linalg.norm(params_copy(sim) - before) / 0.01
        assert m.global_grad_norm_log10 > math.log10(0.5) + 1  # really clipping
        assert 10 ** m.clipped_grad_norm_log10 <= 0.5 * (1 + 1e-6)
        assert applied <= 0.5 * (1 + 1e-3)
        assert m.clipped


def test_clip_grad_value_bounds_every_element(make_sim):
    """clip_grad_value clamps every gradient element to [-clip_value, clip_value]."""
    sim = make_sim(network__depth=10, network__activation="relu", network__init="normal",
                   network__init_std=0.3, network__dtype="float64",
                   training__clipping="clip_grad_value", training__clip_value=0.01, training__lr=1.0)
    before = params_copy(sim)
    m = sim.step()
    step = np.abs(params_copy(sim) - before)
    assert step.max() <= 0.01 * (1 + 1e-9)
    assert m.clipped and m.clipped_grad_norm_log10 < m.global_grad_norm_log10


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_optimizer_updates_match_torch_formulas(make_sim, optimizer):
    """Two steps of SGD / momentum / Adam with coupled weight decay give the parameters that
    torch.optim's update rules give from the same gradients."""
    sim = make_sim(keep_grads=True, network__depth=3, network__width=6, network__dtype="float64",
                   training__optimizer=optimizer, training__lr=0.05, training__weight_decay=0.1,
                   training__momentum=0.8)
    p = params_copy(sim)
    m1 = v1 = np.zeros_like(p)
    for t in (1, 2):
        sim.step()
        g = np.concatenate([a.ravel() for layer in sim.grads() for a in layer.values()]) + 0.1 * p
        if optimizer == "sgd":
            p = p - 0.05 * g
        elif optimizer == "momentum":
            m1 = g if t == 1 else 0.8 * m1 + g
            p = p - 0.05 * m1
        else:
            m1 = 0.9 * m1 + 0.1 * g
            v1 = 0.999 * v1 + 0.001 * g * g
            p = p - 0.05 * (m1 / (1 - 0.9 ** t)) / (np.sqrt(v1 / (1 - 0.999 ** t)) + 1e-8)
        assert np.allclose(params_copy(sim), p, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("width", "dtype", "tolerance"), [
    (37, "float64", 1e-12), (37, "float32", 1e-5), (400, "float64", 1e-12),
    (1100, "float64", 1e-12)])
def test_gradients_match_closed_form_on_both_product_paths(make_sim, width, dtype, tolerance):
    """A linear network's gradients equal the closed form, at widths whose products run in
    the engine's register tiles (37 wide, batch 11: whole and lane-masked vectors, 8-row
    and single-row tiles, in both dtypes; 400: the shared dimension in two blocks) and one
    whose 9.7 MB weight goes to BLAS (1100)."""
    sim = make_sim(keep_grads=True, network__depth=2, network__width=width,
                   network__activation="linear", network__dtype=dtype,
                   network__bias_init=0.1, data__input_dim=5, training__lr=0.0)
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(11, 5)).astype(dtype), rng.normal(size=(11, 1)).astype(dtype)
    sim.step(batch=(x, y))
    x, y = x.astype(np.float64), y.astype(np.float64)
    (w0, b0), (w1, b1), (w2, b2) = ((t["weight"].astype(np.float64), t["bias"].astype(np.float64))
                                    for t in sim.params)
    h1 = x @ w0.T + b0
    h2 = h1 @ w1.T + b1
    d_out = 2 * (h2 @ w2.T + b2 - y) / y.size
    g2 = d_out @ w2
    g1 = g2 @ w1
    expected = [(g1.T @ x, g1.sum(0)), (g2.T @ h1, g2.sum(0)), (d_out.T @ h2, d_out.sum(0))]
    for got, (d_weight, d_bias) in zip(sim.grads(), expected, strict=True):
        for name, want in (("weight", d_weight), ("bias", d_bias)):
            error = np.linalg.norm(got[name] - want) / np.linalg.norm(want)
            assert error < tolerance, (name, error)


def test_float32_sgd_update_is_float32_arithmetic(make_sim):
    """A float32 run updates as float32 training does: p - lr * (g + wd * p), each operation
    rounded to float32, from the true gradient."""
    sim = make_sim(keep_grads=True, network__depth=5, network__width=12, training__lr=0.03,
                   training__weight_decay=0.01)
    before = [{k: v.copy() for k, v in t.items()} for t in sim.params]
    sim.step()
    lr, wd = np.float32(0.03), np.float32(0.01)
    for old, new, grad in zip(before, sim.params, sim.grads(), strict=True):
        for name, p in old.items():
            g = grad[name].astype(np.float32)
            assert np.array_equal(new[name], p - lr * (g + wd * p)), name


def test_float32_tanh_approximation_stays_within_a_few_ulps():
    """The fast float32 tanh is within 8 float32 ulps of the exact value over the whole range."""
    xs = np.concatenate([np.linspace(-12, 12, 200001), np.geomspace(1e-8, 1, 1000)]).astype(np.float32)
    exact = np.tanh(xs.astype(np.float64))
    got = np.array([tanh_f32(x) for x in xs[::7]], dtype=np.float32)
    ulp = np.spacing(np.abs(exact[::7]).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - exact[::7]) / ulp) <= 8


def test_float32_exp_and_sigmoid_approximations_stay_within_a_few_ulps():
    """exp_f32 is within 1 ulp of e**x over float32's whole range (subnormal results within
    one subnormal step, overflow inf, NaN NaN); the sigmoid built on it within 3 ulps."""
    xs = np.concatenate([np.linspace(-110, 95, 20001), np.geomspace(1e-8, 1, 300),
                         -np.geomspace(1e-8, 1, 300)]).astype(np.float32)
    with np.errstate(all="ignore"):
        exact = np.exp(xs.astype(np.float64))
        exact_sigmoid = 1.0 / (1.0 + np.exp(-xs.astype(np.float64)))
        rounded = exact.astype(np.float32)  # inf beyond float32's range
    got = np.array([exp_f32(x) for x in xs], dtype=np.float32)
    tiny = np.finfo(np.float32).tiny
    normal = np.isfinite(rounded) & (rounded >= tiny)
    assert np.max(np.abs(got[normal] - exact[normal]) / np.spacing(rounded[normal])) <= 1
    below = rounded < tiny
    assert np.max(np.abs(got[below] - exact[below])) <= 2.0 ** -149
    assert np.array_equal(np.isinf(got), np.isinf(rounded))
    assert exp_f32(np.float32(-np.inf)) == 0 and np.isnan(exp_f32(np.float32(np.nan)))
    sig = np.array([sigmoid_f32(x) for x in xs], dtype=np.float32)
    rounded = exact_sigmoid.astype(np.float32)
    normal = rounded >= tiny
    assert np.max(np.abs(sig[normal] - exact_sigmoid[normal]) / np.spacing(rounded[normal])) <= 3


def test_float32_tanh_saturates_exactly_where_float32_tanh_does():
    """Where float32's rounded tanh is +-1, so is the fast one: a saturated unit's
    derivative 1 - y^2 is then exactly 0, as in float32 frameworks; NaN stays NaN."""
    xs = np.float32([9.010971, 9.5, 12.0, 1e30, np.inf])
    for x in xs:
        assert np.float32(np.tanh(np.float64(x))) == 1.0
        assert tanh_f32(x) == 1.0 and tanh_f32(-x) == -1.0
    assert tanh_f32(np.float32(9.0)) < 1.0
    assert np.isnan(tanh_f32(np.float32(np.nan)))


def test_float64_runs_use_exact_elementary_functions(make_sim):
    """In float64 the loss equals a plain NumPy forward pass with exact tanh (to 1e-13)."""
    sim = make_sim(network__depth=3, network__width=8, network__activation="tanh",
                   network__dtype="float64")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 16)), rng.normal(size=(5, 1))
    h = x
    for layer in sim.params[:-1]:
        h = np.tanh(h @ layer["weight"].T + layer["bias"])
    out = h @ sim.params[-1]["weight"].T + sim.params[-1]["bias"]
    expected = np.mean((out - y) ** 2)
    assert sim.step(batch=(x, y)).loss == pytest.approx(expected, rel=1e-13)


def test_nan_in_data_is_reported_not_raised(make_sim):
    """A NaN in the inputs gives a diverged step, and parameters stay as they were."""
    sim = make_sim(network__depth=4)
    before = params_copy(sim)
    x = np.full((4, 16), np.nan)
    m = sim.step(batch=(x, np.zeros((4, 1))))
    assert m.status == "diverged" and math.isnan(m.loss)
    assert np.array_equal(params_copy(sim), before)


def test_live_options_apply_without_restart_and_structural_ones_restart(make_sim):
    """lr/clipping/weight decay change mid-run; depth or activation rebuild from step 0."""
    sim = make_sim(network__depth=4)
    sim.step()
    sim.step()
    assert sim.apply(sim.config.replace(training__lr=0.5, training__clipping="clip_grad_norm")) is False
    assert sim.step_index == 2 and sim.config.training.lr == 0.5
    assert sim.apply(sim.config.replace(network__depth=6)) is True
    assert sim.step_index == 0 and len(sim.params) == 7


def test_snapshot_restore_replays_identically(make_sim):
    """Rewinding to a snapshot and stepping again reproduces the same numbers."""
    sim = make_sim(network__depth=5, training__optimizer="momentum")
    sim.step()
    snap = sim.snapshot()
    first = [sim.step().loss for _ in range(3)]
    sim.restore(snap)
    assert [sim.step().loss for _ in range(3)] == first


def test_prelu_slope_is_learned_and_reported(make_sim):
    """prelu's per-layer slope starts at prelu_init, is reported and changes with training."""
    sim = make_sim(network__depth=3, network__activation="prelu", network__prelu_init=0.25,
                   training__lr=0.1)
    m = sim.step()
    assert np.allclose(m.prelu_slope[:-1], 0.25) and np.isnan(m.prelu_slope[-1])
    sim.step()
    assert not np.allclose(sim.step().prelu_slope[:-1], 0.25)


def test_user_batch_with_wrong_shape_is_a_clear_error(make_sim):
    """step(batch=...) with the wrong input width says what shape it needs."""
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        make_sim().step(batch=(np.zeros((3, 5)), np.zeros((3, 1))))


@pytest.mark.parametrize("batch,message", [
    ((np.zeros((0, 16)), np.zeros((0, 1))), r"batch is empty: x must be shaped \(B, 16\) with B >= 1"),
    (np.zeros((4, 16)), r"batch must be a pair \(x, y\) with x shaped \(B, 16\) and y \(B, 1\) "
                        r"\(got a ndarray\)"),
    ((np.zeros((4, 16)), np.zeros((4, 1)), None), r"a pair \(x, y\).*\(got a tuple of 3 items\)"),
    ((np.zeros((4, 16)), np.zeros((4, 3))), r"batch targets must be shaped \(4, 1\) \(got \(4, 3\)\)"),
], ids=["empty", "array", "triple", "targets"])
def test_a_batch_that_is_not_an_x_y_pair_says_what_is_expected(make_sim, batch, message):
    """An empty batch, or something other than an (x, y) pair, is a ValueError naming the
    shapes step(batch=...) expects, not numpy's reshape or unpacking error."""
    with pytest.raises(ValueError, match=message):
        make_sim(network__depth=2).step(batch=batch)


def test_recurrent_batch_errors_name_the_sequence_shape():
    """For rnn/lstm the expected inputs are (B, seq_len, features) and labels for cross_entropy."""
    sim = Simulator(Config.from_overrides({"network.model": "rnn", "data.task": "copy_first",
                                           "training.loss": "cross_entropy", "data.seq_len": 5}))
    with pytest.raises(ValueError, match=r"x shaped \(B, 5, 3\) and y \(B,\) class indices in 0..2"):
        sim.step(batch=[np.zeros((2, 5, 3))])
    with pytest.raises(ValueError, match=r"batch is empty: x must be shaped \(B, 5, 3\)"):
        sim.step(batch=(np.zeros((0, 5, 3)), np.zeros(0, dtype=int)))


def test_assigning_a_parameter_tensor_changes_the_model(make_sim):
    """``sim.params[i]["weight"] = array`` writes into the model (cast to its dtype): zero
    first-layer weights make layer 1's activations constant on the next step."""
    sim = make_sim(network__depth=3, network__width=8)
    sim.params[0]["weight"] = np.zeros((8, 16))  # float64 in, float32 model
    sim.params[0]["bias"] = np.full(8, 0.5)
    assert sim.params[0]["weight"].dtype == np.float32 and not sim.params[0]["weight"].any()
    metrics = sim.step()
    assert metrics.act_std[0] == 0.0 and metrics.act_mean[0] == pytest.approx(np.tanh(0.5))


def test_assigning_a_wrong_tensor_is_refused(make_sim):
    """A wrong shape, a complex array or an unknown name is an error that says what fits;
    NaN weights are data: the next step reports the run as diverged instead of raising."""
    sim = make_sim(network__depth=3, network__width=8)
    with pytest.raises(ValueError, match=r"params\[0\]\['weight'\] must be shaped \(8, 16\) "
                                         r"\(got \(16, 8\)\)"):
        sim.params[0]["weight"] = np.zeros((16, 8))
    with pytest.raises(ValueError, match="real numbers"):
        sim.params[1]["bias"] = np.zeros(8, dtype=complex)
    with pytest.raises(KeyError, match="has no tensor 'gamma'"):
        sim.params[1]["gamma"] = np.ones(8)
    sim.params[1]["weight"] = np.full((8, 8), np.nan)
    assert sim.step().status == "diverged"


def test_grads_before_the_first_step_says_to_step_first(make_sim):
    """grads() has nothing to give before a step (or after a reset): a RuntimeError says so
    instead of returning zeros."""
    sim = make_sim(keep_grads=True, network__depth=2)
    with pytest.raises(RuntimeError, match=r"call step\(\) first"):
        sim.grads()
    sim.step()
    assert any(t["weight"].any() for t in sim.grads())
    sim.reset()
    with pytest.raises(RuntimeError, match=r"call step\(\) first"):
        sim.grads()


def test_snapshot_into_recycled_memory_replays_identically(make_sim):
    """A snapshot written over an older one's arrays restores exactly like a fresh one."""
    sim = make_sim(network__depth=5, training__optimizer="adam")
    old = sim.snapshot()
    sim.step()
    snap = sim.snapshot(reuse=old)
    assert snap.params is old.params  # memory recycled
    first = [sim.step().loss for _ in range(3)]
    sim.restore(snap)
    assert [sim.step().loss for _ in range(3)] == first


def test_rezero_alphas_start_at_zero_and_are_learned(make_sim):
    """learn_alpha: one alpha per block, at residual_alpha (0: every block is
    the identity, the net is as deep as its first and last layers); a step moves them."""
    sim = make_sim(network__depth=9, network__width=8, network__activation="relu",
                   network__residual=True, network__residual_block=2, network__residual_alpha=0.0,
                   network__learn_alpha=True, training__optimizer="adam",
                   training__lr=0.01)
    alphas = [i for i, layer in enumerate(sim.params) if "alpha" in layer]
    assert alphas == [2, 4, 6, 8]  # each block's last layer
    first = sim.step()
    # alpha = 0 cuts the blocks' weights off from the loss: their gradients are exactly 0
    assert np.isneginf(first.grad_norm_log10[1:-1]).all() and np.isfinite(first.global_grad_norm_log10)
    assert np.all(np.isfinite(sim.step().grad_norm_log10))  # once the alphas moved, no longer
    moved = [float(sim.params[i]["alpha"][0]) for i in alphas]
    assert all(abs(a) > 1e-3 for a in moved)  # Adam: about lr per step
    fixed = make_sim(network__depth=9, network__width=8, network__activation="relu",
                     network__residual=True, network__residual_alpha=0.0)
    assert not any("alpha" in layer for layer in fixed.params)
    assert fixed.step().loss == pytest.approx(first.loss, rel=1e-6)  # same net at step 0
