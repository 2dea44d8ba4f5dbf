"""Float32 steps never compute on subnormal numbers (issue #12), on any x86 CPU.

The tests check values, not speed, so they hold on cores that are fast on subnormals too: a
net whose forward signal shrinks below float32's smallest normal number 2**-126 within a
few layers leaves no subnormal in any float32 array a step writes, its activations agree
with a float64 reference that sets every value below 2**-126 to 0 after each operation,
and NumPy outside the step still computes with IEEE subnormals.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from tui_grad.config import Config
from tui_grad.csvout import CsvWriter
from tui_grad.engine import Simulator
from tui_grad.engine import simulator as simulator_module
from tui_grad.engine.fpenv import IS_X86, mxcsr

pytestmark = pytest.mark.skipif(not IS_X86, reason="the flush sets x86's MXCSR")

TINY = 2.0 ** -126  # float32's smallest normal number
WIDTH, DEPTH, BATCH = 16, 8, 16
# each layer shrinks the signal ~1e-9-fold: layer 4's pre-activations straddle 2**-126
# (largest ~3e-36), layer 5's lie wholly below it
VANISHING = {"network.depth": DEPTH, "network.width": WIDTH, "data.input_dim": WIDTH,
             "network.activation": "tanh", "network.init_gain": 1e-9,
             "training.batch_size": BATCH, "training.optimizer": "momentum"}


def _subnormals(array: np.ndarray) -> int:
    flat = np.asarray(array).ravel()
    return int(np.count_nonzero((flat != 0) & (np.abs(flat) < np.finfo(flat.dtype).tiny)))


def _written_arrays(sim: Simulator) -> dict[str, np.ndarray]:
    """Every float32 array an MLP step writes: activations, pre-activations, derivatives,
    logits, backward scratch, gradients, parameters and optimizer state."""
    buf = sim._buffers
    names = ("h", "u", "a", "deriv", "logits", "grad_out", "signal", "grad_z", "carry",
             "grad_scratch", "weight_t")
    return {**{name: getattr(buf, name) for name in names}, "params": sim._params,
            "grads": sim._grads, "momentum": sim._state1}


def _flushed(values: np.ndarray) -> np.ndarray:
    return np.where(np.abs(values) < TINY, 0.0, values)


def _reference_hidden(x: np.ndarray, params: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Hidden outputs h_1..h_depth of the tanh net in float64, flushing below 2**-126 after
    every multiply-add of the product (the engine's order: from the bias, k increasing) and
    after the activation."""
    h, hidden = x.astype(np.float64), []
    for layer in params[:-1]:
        weight = layer["weight"].astype(np.float64)
        u = np.broadcast_to(layer["bias"].astype(np.float64), (h.shape[0], weight.shape[0]))
        for k in range(weight.shape[1]):
            u = _flushed(u + np.outer(h[:, k], weight[:, k]))
        h = _flushed(np.tanh(u))
        hidden.append(h)
    return hidden


def _vanishing_step(flush: bool, monkeypatch) -> tuple[Simulator, object, np.ndarray, list]:
    if not flush:
        monkeypatch.setattr(simulator_module, "flush_subnormals",
                            lambda enabled: contextlib.nullcontext())
    sim = Simulator(Config.from_overrides(VANISHING), keep_grads=True)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(BATCH, WIDTH)).astype(np.float32)
    y = rng.normal(size=(BATCH, 1)).astype(np.float32)
    params = [{name: np.array(t) for name, t in layer.items()} for layer in sim.params]
    return sim, sim.step((x, y)), x, params


def test_unflushed_step_of_this_net_would_store_subnormals(monkeypatch):
    """The net below does reach the subnormal range: with the flush switched off, its
    activations, gradients and parameters hold subnormal numbers after one step."""
    sim, _, _, _ = _vanishing_step(False, monkeypatch)
    arrays = _written_arrays(sim)
    assert _subnormals(arrays["h"]) > 0 and _subnormals(arrays["params"]) > 0
    assert _subnormals(arrays["grads"]) > 0


def test_float32_step_stores_no_subnormal_and_matches_a_flushing_reference(monkeypatch):
    """After a step of a net whose activations fall below 2**-126, no float32 array the
    kernels wrote holds a subnormal; the activations equal, to float32 rounding, a float64
    reference that sets values below 2**-126 to 0 after each operation; the layers where
    the forward signal left float32's normal range are flagged, in the CSV too."""
    sim, metrics, x, params = _vanishing_step(True, monkeypatch)
    found = {name: _subnormals(array) for name, array in _written_arrays(sim).items()}
    assert found == dict.fromkeys(found, 0)
    h_off = sim._buffers.lay[6]
    for layer, expected in enumerate(_reference_hidden(x, params), start=1):
        got = sim._buffers.h[h_off[layer]:h_off[layer] + BATCH * WIDTH].reshape(BATCH, WIDTH)
        # float32 rounding of sums that cancel: relative to the layer's scale, and a value
        # within rounding of 2**-126 may be flushed in one and kept in the other
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=0, atol=max(2e-6 * scale, TINY),
                                   err_msg=f"layer {layer}")
        assert np.array_equal(got == 0, expected == 0) or layer == 4  # 4 straddles 2**-126
    assert metrics.forward_underflow.tolist() == [False] * 4 + [True] * (DEPTH - 3)
    rows = _csv_rows(metrics)
    assert [row["forward_underflow"] for row in rows] == ["0"] * 4 + ["1"] * (DEPTH - 3)


def _csv_rows(metrics) -> list[dict[str, str]]:
    import csv
    import io

    stream = io.StringIO()
    CsvWriter(stream, with_variant=False).write_step(metrics)
    return list(csv.DictReader(io.StringIO(stream.getvalue())))


def test_mxcsr_is_restored_and_numpy_outside_keeps_subnormals():
    """The flush lasts for the step only: afterwards the thread's MXCSR is what it was and
    NumPy's float32 arithmetic still yields subnormal numbers."""
    before = mxcsr()
    sim = Simulator(Config.from_overrides(VANISHING))
    sim.step()
    assert mxcsr() & 0xFFC0 == before & 0xFFC0  # control bits; the low 6 are status flags
    half_tiny = np.float32(TINY) * np.float32(0.5)
    assert half_tiny == np.float32(2.0 ** -127) and _subnormals(np.array([half_tiny])) == 1


def test_float64_runs_keep_subnormals_and_flag_the_same_layers():
    """float64 runs are never flushed: values below 2**-126 (subnormal only in float32)
    stay exact, and the same layers are flagged as having left float32's normal range."""
    sim = Simulator(Config.from_overrides({**VANISHING, "network.dtype": "float64"}))
    metrics = sim.step()
    h_off, buf = sim._buffers.lay[6], sim._buffers
    layer5 = buf.h[h_off[5]:h_off[5] + BATCH * WIDTH]
    assert np.all(layer5 != 0) and np.all(np.abs(layer5) < TINY)
    assert metrics.forward_underflow.tolist() == [False] * 4 + [True] * (DEPTH - 3)


@pytest.mark.parametrize("model", ["rnn", "lstm"])
def test_recurrent_float32_step_stores_no_subnormal(model, monkeypatch):
    """RNN and LSTM with input weights just above 2**-126 (pre-activations x W_ih straddle
    it): the hidden and cell states, the forward caches, gradients and parameters hold no
    subnormal after a step, where the same step unflushed leaves many."""
    config = Config.from_overrides({
        "network.model": model, "data.task": "adding", "data.seq_len": 6, "network.width": 8,
        "training.batch_size": 4, "network.init_gain": 1e-37})

    def stepped_arrays() -> list[np.ndarray]:
        sim = Simulator(config)
        metrics = sim.step()
        assert metrics.forward_underflow[-1]  # logits ~1e-75: 0 in float32
        return [sim._work[1], *sim._work[2], sim._params, sim._grads]

    assert [_subnormals(array) for array in stepped_arrays()] == [0] * (6 if model == "lstm" else 4)
    monkeypatch.setattr(simulator_module, "flush_subnormals",
                        lambda enabled: contextlib.nullcontext())
    assert sum(_subnormals(array) for array in stepped_arrays()) > 0
