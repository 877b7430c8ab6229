"""Weighted spikes (phase coding, weighted-spikes §4): the coding, the neuron, the pass and the command line.

* The input coding sends |x|'s K-bit binary fraction, most significant bit first (§4.2).
* The neuron reproduces the paper's own noise-spike example (Fig. 3), in float and in integer mode.
* One period of weighted spikes delivers W x + b to an accumulating read-out (eq. 8 with beta = b / (1 - 2^-K)).
* The integer simulation is exactly eq. 8-10 scaled by 2^K, checked against a numpy transcription.
* On digits a phase-coded CNN converges to its ANN in the reference and generic targets; run can switch a
  float artifact's coding; bad options are one line and exit 2.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurocc.backends.reference.simulator import Simulator
from neurocc.cli import main
from neurocc.ir import Graph, ops
from neurocc.ir.coding import Phase
from neurocc.ir.neurons import WeightedIF
from neurocc.ir.snn import InputSource, Population, Projection


def test_phase_coding_sends_the_binary_fraction_msb_first():
    k = 5
    x = torch.tensor([[0.0, 0.3, -0.71, 0.5, 0.999, 1.7]])
    spikes = Phase(phases=k).encode(x, torch.tensor([0]), torch.arange(1, 2 * k + 1))
    for j, value in enumerate(x[0].tolist()):
        level = min(int(np.floor(abs(value) * 2 ** k + 0.5)), 2 ** k - 1)
        bits = [int(b) for b in format(level, f"0{k}b")]            # most significant first
        expected = np.sign(value) * np.array(bits * 2, dtype=np.float32)
        assert spikes[:, 0, j].tolist() == expected.tolist()


def _drive(weights, trains, k):
    return [float(np.dot(weights, [tr[t] for tr in trains])) for t in range(k)]


@pytest.mark.parametrize("integer", [False, True])
def test_the_papers_noise_spike_example(integer):
    """Fig. 3: with K = 8, N1 sends 10000000 (128/256) with weight +1 and N2 01111111 (127/256) with weight -1;
    the neuron fires in the first phase and ends the period at -127/256."""
    k = 8
    trains = ([1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1, 1])
    drive = _drive([1.0, -1.0], trains, k)
    neuron = WeightedIF(threshold=1.0, phases=k)
    dtype = torch.int64 if integer else torch.float32
    state = neuron.init_state(torch.zeros(1, dtype=dtype), 1, dtype)
    fired = [bool(neuron.step(state, torch.tensor([[d]], dtype=dtype), t + 1)) for t, d in enumerate(drive)]
    assert fired == [True] + [False] * 7
    v = float(state["v"])
    assert (v == -127 if integer else v == -127 / 256)          # integer units are 2^K x the float ones


def _dense_network(w1, b1, w2, b2, k: int, theta: float, skip: int, integer: bool) -> Graph:
    """input -> hidden (weighted spikes) -> accumulating read-out, dense, K phases."""
    g = Graph("snn", inputs=("x",), outputs=("out",), meta={"mode": "integer"} if integer else {})
    g.add_node("x", InputSource(shape=(w1.shape[1],), coding=Phase(phases=k)), (w1.shape[1],))
    g.add_node("h", Population(shape=(w1.shape[0],), bias=b1, neuron=WeightedIF(threshold=theta, phases=k,
                                                                               state_bits=32 if integer else 0)),
               (w1.shape[0],))
    g.add_node("out", Population(shape=(w2.shape[0],), bias=b2, readout="accumulate",
                                 neuron=WeightedIF(threshold=theta, phases=k, skip_steps=skip)), (w2.shape[0],))
    g.add_projection("x", "h", Projection(ops=(ops.Gemm(weight=w1),)))
    g.add_projection("h", "out", Projection(ops=(ops.Gemm(weight=w2),)))
    return g


def test_one_period_delivers_w_x_plus_b_to_a_read_out():
    """Eq. 8: a read-out fed by the input over n periods holds n (W x + b) when x has K bits; skipped periods
    add nothing."""
    k, rng = 6, np.random.default_rng(0)
    x = rng.integers(0, 2 ** k, size=(3, 5)) / 2 ** k
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4)
    g = Graph("snn", inputs=("x",), outputs=("out",))
    g.add_node("x", InputSource(shape=(5,), coding=Phase(phases=k)), (5,))
    g.add_node("out", Population(shape=(4,), bias=b / (1 - 2.0 ** -k), readout="accumulate",
                                 neuron=WeightedIF(phases=k, skip_steps=k)), (4,))
    g.add_projection("x", "out", Projection(ops=(ops.Gemm(weight=w),)))
    trace = Simulator(g, dtype=torch.float64).run(x, 3 * k)
    v = trace.readouts["out"].potential
    assert np.all(v[:k] == 0)
    w_held = next(iter(g.projections("out")))[2].ops[0].weight.astype(np.float64)       # as the IR holds them (float32)
    b_held = g.payload("out").bias.astype(np.float64) * (1 - 2.0 ** -k)
    np.testing.assert_allclose(v[3 * k - 1], 2 * (x @ w_held.T + b_held), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("integer", [False, True])
def test_max_pool_gate_passes_the_largest_weighted_sum(integer):
    """§4.5: the gate passes the spike train of the input with the largest accumulated weighted sum, so with
    MSB-first bits one period delivers each window's maximum."""
    k, rng = 5, np.random.default_rng(2)
    levels = rng.integers(0, 2 ** k, size=(6, 1, 4, 4))
    pool = ops.MaxPool(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0))
    g = Graph("snn", inputs=("x",), outputs=("out",), meta={"mode": "integer"} if integer else {})
    g.add_node("x", InputSource(shape=(1, 4, 4), coding=Phase(phases=k)), (1, 4, 4))
    g.add_node("out", Population(shape=(4,), bias=np.zeros(4), readout="accumulate", neuron=WeightedIF(phases=k)), (4,))
    g.add_projection("x", "out", Projection(ops=(pool, ops.Flatten(), ops.Gemm(weight=np.eye(4)))))
    trace = Simulator(g).run(levels / 2 ** k, 2 * k)
    window_max = levels.reshape(6, 2, 2, 2, 2).max(axis=(2, 4)).reshape(6, 4)
    units = 2 ** k if integer else 1.0          # integer read-outs count in units of 2^-K
    np.testing.assert_array_equal(trace.readouts["out"].potential[-1], 2 * window_max / 2 ** k * units)


def _eq_8_to_10_in_integers(x_levels, w1, b1, w2, b2, k, theta, steps, skip):
    """weighted-spikes eq. 8-10 scaled by 2^K (integer shifts), by hand: the hidden spikes and read-out per step."""
    v = np.zeros((len(x_levels), w1.shape[0]), np.int64)
    out = np.zeros((len(x_levels), w2.shape[0]), np.int64)
    spikes, readout = [], []
    for t in range(1, steps + 1):
        p = (t - 1) % k
        s_in = (x_levels >> (k - 1 - p)) & 1
        shift = k - 1 - p
        v += (s_in @ w1.T + b1) << shift
        s = v >= theta << shift
        v -= s * (theta << shift)
        if t > skip:
            out += (s.astype(np.int64) @ w2.T + b2) << shift
        spikes.append(s.sum(axis=1))
        readout.append(out.copy())
    return np.array(spikes), np.array(readout)


def test_integer_simulation_is_eq_8_to_10_exactly():
    k, theta, rng = 4, 37, np.random.default_rng(1)
    w1 = rng.integers(-20, 21, size=(12, 6))
    w2 = rng.integers(-20, 21, size=(3, 12))
    b1, b2 = rng.integers(-5, 6, size=12), rng.integers(-5, 6, size=3)
    levels = rng.integers(0, 2 ** k, size=(7, 6))
    g = _dense_network(w1.astype(np.float32), b1.astype(np.float64), w2.astype(np.float32), b2.astype(np.float64),
                       k, float(theta), k, integer=True)
    trace = Simulator(g).run(levels / 2 ** k, 5 * k, batch_size=4)
    spikes, readout = _eq_8_to_10_in_integers(levels, w1, b1, w2, b2, k, theta, 5 * k, k)
    assert np.array_equal(trace.spikes["h"], spikes)
    assert np.array_equal(trace.readouts["out"].potential, readout)


def _run_json(art, data, tmp_path, *extra):
    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}.json"
    assert main(["run", str(art), "--data", str(data), "--steps", "32", "-q", "--json", str(out), *map(str, extra)]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def digits_data(digits, tmp_path_factory):
    xtr, ytr, xte, yte = digits
    d = tmp_path_factory.mktemp("phase")
    np.savez(d / "calib.npz", x=xtr, y=ytr)
    np.savez(d / "test.npz", x=xte[:150], y=yte[:150])
    return d


@pytest.mark.parametrize("target", ["reference", "generic"])
def test_digits_cnn_converges_with_weighted_spikes(target, digits_onnx, digits_data, tmp_path):
    art = tmp_path / "a.ncc"
    assert main(["compile", str(digits_onnx), "--calib", str(digits_data / "calib.npz"), "--target", target,
                 "--coding", "phase", "--phases", "4", "-o", str(art), "-q"]) == 0
    doc = _run_json(art, digits_data / "test.npz", tmp_path)
    assert doc["coding"] == "phase"
    assert doc["accuracy"][-1] >= doc["ann_accuracy"] - 0.01          # 8 periods of 4 phases
    assert doc["spikes_per_population"]["x"] > 0                       # the input's bits are spikes


def test_run_switches_a_float_artifact_to_phase_coding(digits_onnx, digits_data, tmp_path):
    rate, phase = tmp_path / "rate.ncc", tmp_path / "phase.ncc"
    common = [str(digits_onnx), "--calib", str(digits_data / "calib.npz"), "-q"]
    assert main(["compile", *common, "-o", str(rate)]) == 0
    assert main(["compile", *common, "--coding", "phase", "--phases", "5", "--skip-periods", "1", "-o", str(phase)]) == 0
    switched = _run_json(rate, digits_data / "test.npz", tmp_path, "--coding", "phase", "--phases", "5",
                         "--skip-periods", "1")
    compiled = _run_json(phase, digits_data / "test.npz", tmp_path)
    for key in ("accuracy", "spikes_per_step", "synaptic_events_per_step"):
        assert switched[key] == compiled[key]
    back = _run_json(phase, digits_data / "test.npz", tmp_path, "--coding", "analog")
    assert back["accuracy"] == _run_json(rate, digits_data / "test.npz", tmp_path)["accuracy"]


BAD = {
    "zero_phases": (["--coding", "phase", "--phases", "0"], [], "--phases"),
    "negative_skip": (["--coding", "phase", "--skip-periods", "-1"], [], "--skip-periods"),
    "loihi": (["--coding", "phase", "--target", "loihi"], [], "loihi"),
    "spike_readout": (["--coding", "phase", "--readout", "spike"], [], "--readout"),
    "integer_recode": (["--target", "generic"], ["--coding", "phase"], "recompile"),
    "phases_without_phase": ([], ["--phases", "4"], "phase coding"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_phase_options_exit_2_with_one_line(case, digits_onnx, digits_data, tmp_path, capsys):
    compile_args, run_args, needle = BAD[case]
    art = tmp_path / "a.ncc"
    code = main(["compile", str(digits_onnx), "--calib", str(digits_data / "calib.npz"), "-o", str(art), "-q",
                 *compile_args])
    if run_args and code == 0:
        out = tmp_path / "r.json"
        code = main(["run", str(art), "--data", str(digits_data / "test.npz"), "--steps", "4", "-q",
                     "--json", str(out), *run_args])
        assert not out.exists()
    else:
        assert not art.exists()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_predicted_input_spikes_are_the_bits_of_each_period(digits, digits_onnx):
    """``estimate``'s prediction of a phase-coded input: popcount of each value's K bits per period, which is
    what the simulation sends (the hidden populations' noise spikes, §4.3, are not predicted)."""
    from neurocc.activity import predicted_activity
    from neurocc.frontend.onnx import load_onnx
    from neurocc.options import CompileOptions
    from neurocc.pipeline import CompileContext, compile_graph

    xtr, _, xte, _ = digits
    opts = CompileOptions(coding="phase", phases=4)
    snn = compile_graph(load_onnx(digits_onnx)[0], CompileContext(opts, calib_x=xtr)).snn
    spikes, _ = predicted_activity(snn, xte[:50], 8)
    measured = Simulator(snn).run(xte[:50], 8).spikes["x"]
    per_period = measured.reshape(2, 4, 50).sum(axis=1).mean(axis=1)         # mean per sample, each period
    np.testing.assert_allclose(spikes["x"][:2] * 4, per_period, rtol=1e-12)


@pytest.mark.parametrize("integer", [False, True])
def test_fused_kernel_matches_the_weighted_step_by_step_update(integer):
    """The fused CPU kernel does WeightedIF.step's arithmetic: identical spikes, events and read-outs, across
    blocks that start mid-period."""
    from conftest import assert_same_trace

    k, rng = 5, np.random.default_rng(3)
    if integer:
        w1, w2 = rng.integers(-30, 31, size=(16, 8)), rng.integers(-30, 31, size=(4, 16))
        b1, b2 = rng.integers(-9, 10, size=16), rng.integers(-9, 10, size=4)
    else:
        w1, w2, b1, b2 = rng.normal(0, 0.5, (16, 8)), rng.normal(0, 0.5, (4, 16)), rng.normal(0, 0.1, 16), np.zeros(4)
    g = _dense_network(w1.astype(np.float32), b1.astype(np.float64), w2.astype(np.float32), b2.astype(np.float64),
                       k, 41.0 if integer else 1.0, k, integer)
    x = rng.random((11, 8)).astype(np.float32)
    fused = Simulator(g, record_trains=True).run(x, 23, batch_size=4, block=7)
    plain = Simulator(g, record_trains=True, fused=False).run(x, 23, batch_size=4, block=7)
    assert_same_trace(fused, plain)
    assert fused.spikes["h"].sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_with_weighted_spikes():
    from conftest import assert_same_trace

    k, rng = 4, np.random.default_rng(5)
    w1, w2 = rng.integers(-30, 31, size=(16, 8)), rng.integers(-30, 31, size=(4, 16))
    g = _dense_network(w1.astype(np.float32), rng.integers(-9, 10, 16).astype(np.float64), w2.astype(np.float32),
                       np.zeros(4), k, 41.0, k, integer=True)
    x = rng.random((9, 8)).astype(np.float32)
    assert_same_trace(Simulator(g).run(x, 20, batch_size=4), Simulator(g, device="cuda").run(x, 20, batch_size=4))
