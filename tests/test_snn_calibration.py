"""calibrate_snn (``--snn-calibration bias``): its invariants on torch-exported networks, in float and integer mode.

* Only the biases of spiking populations change: projections, thresholds, V0 and read-outs stay as they were.
* The first population's correction is its measured mean rate error at T, per channel.
* On the calibration data the mean rate error at T, per channel, shrinks.
* The pass simulates one depth at a time, replaying the spike trains it recorded upstream; what it recorded is the
  final network's own full run, spike for spike, on every target.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocc.cli import main
from neurocc.frontend.onnx import load_onnx
from neurocc.ir.executor import run_rate
from neurocc.ir.snn import Population
from neurocc.options import CompileOptions
from neurocc.backends.reference.simulator import Simulator
from neurocc.passes import calibrate_snn
from neurocc.passes.calibrate_snn import _channel_mean
from neurocc.pipeline import CompileContext, compile_graph

from models import cnn_families, data_init

STEPS = 16


def _compiled(path, x, level, target="reference"):
    opts = CompileOptions(target=target, snn_calibration=level, calibration_steps=STEPS)
    return compile_graph(load_onnx(path)[0], CompileContext(opts, calib_x=x))


def _trains(snn, names, x) -> dict:
    """The spike trains of ``names`` in a full simulation of ``snn`` for STEPS steps."""
    full = snn.copy()
    full.outputs = tuple(names)
    full.remove_dead()
    return Simulator(full, record_trains=True).run(x, STEPS, batch_size=64).spike_trains


def _rates(snn, names, x, steps) -> dict:
    return {n: t.sum(axis=0, dtype=np.float64) / steps for n, t in _trains(snn, names, x).items()}


def _channel_errors(float_graph, snn, x) -> dict:
    """Per spiking population: the mean over channels of |mean rate error at T| on ``x``."""
    names = [n for n in snn.topo_order() if isinstance(snn.payload(n), Population)
             and snn.payload(n).readout == "spike"]
    with torch.no_grad():
        target = run_rate(float_graph, torch.from_numpy(x), saturate=True, keep=lambda n: n in names)
    rates = _rates(snn, names, x, STEPS)
    return {n: float(np.abs(_channel_mean(target[n].numpy() - rates[n], snn.shape(n))).mean()) for n in names}


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """The miniature ResNet (option-B shortcuts) with data-initialised weights, exported to ONNX."""
    torch.manual_seed(0)
    x = torch.rand(200, 3, 16, 16)
    model = data_init(cnn_families()["resnet_b"], x)
    path = tmp_path_factory.mktemp("resnet") / "resnet.onnx"
    torch.onnx.export(model, (x[:1],), str(path), input_names=["x"], dynamic_axes={"x": {0: "N"}}, dynamo=False)
    return path, x.numpy()


def test_only_spiking_biases_change(resnet):
    path, x = resnet
    before, after = _compiled(path, x, "none").snn, _compiled(path, x, "bias").snn
    assert after.meta["snn_calibration"]["level"] == "bias"
    changed = []
    for name in before.topo_order():
        a, b = before.payload(name), after.payload(name)
        if not isinstance(a, Population):
            continue
        assert a.neuron == b.neuron and a.shape == b.shape
        assert [p.ops for _, _, p in before.projections(name)] == [p.ops for _, _, p in after.projections(name)]
        if a.readout == "accumulate":
            assert np.array_equal(a.bias, b.bias)
        elif not np.array_equal(a.bias, b.bias):
            changed.append(name)
    assert changed


@pytest.mark.parametrize("target", ["reference", "loihi", "spinnaker"])
def test_the_error_at_T_shrinks(resnet, target):
    """Measured in each target's own semantics against the float graph's rates, on the calibration data."""
    path, x = resnet
    reference = _compiled(path, x, "none").snn
    err_before = _channel_errors(reference, _compiled(path, x, "none", target).snn, x[:128])
    err_after = _channel_errors(reference, _compiled(path, x, "bias", target).snn, x[:128])
    first = next(iter(err_before))
    assert err_after[first] < err_before[first]
    assert np.mean(list(err_after.values())) < np.mean(list(err_before.values()))


@pytest.mark.parametrize("target", ["reference", "loihi", "spinnaker", "truenorth"])
@pytest.mark.parametrize("level", ["bias", "weights"])
def test_the_replayed_trains_are_the_calibrated_networks_run(resnet, target, level, monkeypatch):
    """What the pass recorded for each population (the last recording wins: after its correction) is what a full
    simulation gives of the network it last simulated, in which every spiking layer is calibrated: the layers it
    changed later did not change the runs it replays (the chips' quantisation included)."""
    path, x = resnet
    recorded, last, simulate = {}, [], calibrate_snn._simulate

    def spy(snn, *args):
        out = simulate(snn, *args)
        recorded.update(out)
        last[:] = [snn]
        return out
    monkeypatch.setattr(calibrate_snn, "_simulate", spy)
    _compiled(path, x, level, target)
    full = _trains(last[0], list(recorded), x[:128])
    assert recorded and all(np.array_equal(recorded[n], full[n]) for n in recorded)


def test_first_population_moves_by_its_mean_error(resnet):
    path, x = resnet
    before = _compiled(path, x, "none").snn
    after = _compiled(path, x, "bias").snn
    first = next(n for n in before.topo_order() if isinstance(before.payload(n), Population))
    with torch.no_grad():
        target = run_rate(before, torch.from_numpy(x[:128]), saturate=True, keep=lambda n: n == first)[first]
    error = _channel_mean(target.numpy() - _rates(before, [first], x[:128], STEPS)[first], before.shape(first))
    moved = after.payload(first).bias.astype(np.float64) - before.payload(first).bias.astype(np.float64)
    assert np.allclose(moved, error, atol=1e-6)


def test_cli_refuses_without_calibration_data(tmp_path, digits_onnx, capsys):
    out = tmp_path / "m.ncc"
    assert main(["compile", str(digits_onnx), "--snn-calibration", "bias", "-o", str(out), "-q"]) == 2
    assert "--calib" in capsys.readouterr().err and not out.exists()
    assert main(["compile", str(digits_onnx), "--calibration-steps", "0", "-o", str(out), "-q"]) == 2
    assert "--calibration-steps" in capsys.readouterr().err and not out.exists()


def test_weight_calibration_fits_each_layer_to_the_rates_it_receives(resnet):
    """--snn-calibration weights: the first layer, fed the exact input, keeps its weights; every fit lowers (or
    keeps) its layer's squared current error; neurons, thresholds and V0 stay; and on SpiNNaker (reset to zero, a
    refractory step, delays) the rate error at T on the calibration data ends below the uncalibrated network's."""
    path, x = resnet
    before, after = _compiled(path, x, "none").snn, _compiled(path, x, "weights").snn
    report = after.meta["snn_calibration"]["populations"]
    fits = [r["weight_fit_mse"] for r in report if "weight_fit_mse" in r]
    assert fits and all(b2 <= b1 for b1, b2 in fits) and any(b2 < b1 for b1, b2 in fits)
    first = next(n for n in before.topo_order() if isinstance(before.payload(n), Population))
    assert [p.ops for _, _, p in before.projections(first)] == [p.ops for _, _, p in after.projections(first)]
    for name in before.topo_order():
        if isinstance(before.payload(name), Population):
            assert before.payload(name).neuron == after.payload(name).neuron
    err_before = _channel_errors(before, _compiled(path, x, "none", "spinnaker").snn, x[:128])
    err_after = _channel_errors(before, _compiled(path, x, "weights", "spinnaker").snn, x[:128])
    assert np.mean(list(err_after.values())) < np.mean(list(err_before.values()))


def test_weight_calibration_runs_on_mnist8():
    """mnist-8's 5 x 5 convolutions get gradients in a non-contiguous layout from oneDNN, which L-BFGS cannot
    flatten; the fit makes them contiguous (this failed before)."""
    from conftest import MNIST8
    x = np.random.default_rng(0).uniform(0, 255, (16, 1, 28, 28)).astype(np.float32)
    opts = CompileOptions(snn_calibration="weights", calibration_steps=4, max_pool="average")
    snn = compile_graph(load_onnx(MNIST8)[0], CompileContext(opts, calib_x=x)).snn
    assert snn.meta["snn_calibration"]["level"] == "weights"
