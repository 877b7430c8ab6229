"""NeuroBench's metrics (``neurocc.workload``) checked against the neurobench package itself, run on the same
network rebuilt as a torch module (``neurocc.torch_module.snn_module``) and stepped by its SNNTorchModel."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocc.backends import BACKENDS
from neurocc.frontend.onnx import load_onnx
from neurocc.ir.synapses import weighted_layers
from neurocc.ir import ops
from neurocc.options import CompileOptions
from neurocc.pipeline import CompileContext, compile_graph
from neurocc.torch_module import snn_module
from neurocc.workload import metrics

from pathlib import Path

neurobench = pytest.importorskip("neurobench", reason="neurobench is a test extra (pip install --no-deps)")

STEPS = 24


def _snn(path, calib, target="reference"):
    ann, _ = load_onnx(path)
    return compile_graph(ann, CompileContext(CompileOptions(target=target), calib_x=calib)).snn


def _neurobench(snn, x: np.ndarray, steps: int) -> tuple[dict, dict]:
    """NeuroBench's static and workload metrics of ``snn`` rebuilt as a torch module, on ``x`` repeated each
    step, in one batch; and each population's spikes per step and sample in that module."""
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
    from neurobench.models import SNNTorchModel

    module = snn_module(snn)
    spikes = {}
    for layer in module.modules():
        if hasattr(layer, "population"):
            spikes[layer.population] = []
            layer.register_forward_hook(lambda m, i, out: spikes[m.population].append(
                out[0].reshape(len(x), -1).sum(dim=1).numpy()))
    model = SNNTorchModel(module)
    data = torch.from_numpy(x)[:, None].expand(len(x), steps, *x.shape[1:]).contiguous()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data, torch.zeros(len(x))),
                                         batch_size=len(x))
    bench = Benchmark(model, loader, [], [], [[Footprint, ConnectionSparsity],
                                              [ActivationSparsity, SynapticOperations, MembraneUpdates]])
    results = bench.run(quiet=True)
    bookkeeping = sum(b.numel() * b.element_size() for name, b in module.named_buffers()
                      if name.rsplit(".", 1)[-1] in ("graded_spikes_factor", "reset_mechanism_val"))
    return results | {"snntorch_bookkeeping_bytes": bookkeeping}, {k: np.stack(v) for k, v in spikes.items()}


def _check_against_neurobench(snn, x):
    trace = BACKENDS["reference"].run(snn, x, STEPS)
    ours = metrics(snn, trace)
    theirs, spikes = _neurobench(snn, x, STEPS)
    # the torch module computes the same network: every population spikes as in the simulator, step by step
    assert spikes.keys() == {n for n in trace.spikes if n not in snn.inputs}
    for name, per_step in spikes.items():
        assert np.array_equal(per_step, trace.spikes[name]), name
    assert ours["Footprint"] == theirs["Footprint"] - theirs["snntorch_bookkeeping_bytes"]
    assert round(ours["ConnectionSparsity"], 4) == theirs["ConnectionSparsity"]
    assert ours["ActivationSparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=1e-12)
    assert ours["SynapticOperations"] == theirs["SynapticOperations"]
    assert ours["MembraneUpdates"] == theirs["MembraneUpdates"]
    assert ours["SynapticOperations"]["Effective_ACs"] > 0 and ours["SynapticOperations"]["Effective_MACs"] > 0
    assert 0 < ours["ActivationSparsity"] < 1
    return ours


def test_digits_cnn_metrics_equal_neurobench_on_the_same_network(digits, digits_onnx):
    xtr, _, xte, _ = digits
    _check_against_neurobench(_snn(digits_onnx, xtr), xte[:16])


def test_mnist8_metrics_equal_neurobench_with_max_pool_gates(digits):
    """mnist-8 (ONNX zoo): biases in every layer, two max-pool gates, a 256-input read-out."""
    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    snn = _snn(Path(__file__).parent / "data" / "mnist-8.onnx", x)
    _check_against_neurobench(snn, np.random.default_rng(1).random((6, 1, 28, 28), dtype=np.float32))


def test_effective_operations_by_hand():
    """A 3x3 convolution (one weight zero) on a 4x4 input: an element meets the non-zero taps whose output
    lies inside the map; Dense counts every tap of every output with its input inside the map."""
    w = np.ones((1, 1, 3, 3), np.float32)
    w[0, 0, 1, 1] = 0                     # the centre tap is zero
    conv = ops.Conv(weight=w, strides=(1, 1), pads=(1, 1, 1, 1))
    (layer,) = weighted_layers((conv,), (1, 4, 4), spiking_source=True)
    fan = layer.fan.reshape(4, 4)
    assert fan[0, 0] == 3 and fan[0, 1] == 5 and fan[1, 1] == 8      # corner, edge, inner: neighbours in the map
    assert layer.dense == 4 * 4 + 8 * 6 + 4 * 9      # 4 corners read by 4 outputs, 8 edges by 6, 4 inner by 9
    assert layer.spiking
    pooled = weighted_layers((ops.AvgPool(kernel=(2, 2), strides=(2, 2)), ops.Flatten(),
                              ops.Gemm(weight=np.ones((3, 4), np.float32))), (1, 4, 4), spiking_source=True)
    assert len(pooled) == 1 and not pooled[0].spiking and pooled[0].index == 2 and pooled[0].dense == 12


def test_a_trace_without_operation_counts_reports_them_as_not_measured(digits, digits_onnx):
    """A backend that does not observe membrane updates and operations (empty Trace fields): those are None,
    the activation sparsity still comes from its spikes."""
    import dataclasses
    xtr, _, xte, _ = digits
    snn = _snn(digits_onnx, xtr)
    trace = BACKENDS["reference"].run(snn, xte[:4], 10)
    full = metrics(snn, trace)
    bare = metrics(snn, dataclasses.replace(trace, updates={}, acs={}, macs={}))
    assert bare["SynapticOperations"] is None and bare["MembraneUpdates"] is None and bare["predicted"] is False
    assert bare["ActivationSparsity"] == full["ActivationSparsity"] and bare["Footprint"] == full["Footprint"]
