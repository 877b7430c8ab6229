"""Shared test helpers: building ONNX models with onnx.helper, running onnxruntime, small real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

DATA = Path(__file__).parent / "data"
MNIST8 = DATA / "mnist-8.onnx"


def make_model(nodes, inputs, outputs, initializers=(), opset=13, ir_version=8) -> onnx.ModelProto:
    """An ONNX model from nodes; ``inputs``/``outputs`` are (name, shape) pairs, shapes with 'N' for batch."""
    def info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    graph = helper.make_graph(nodes, "test", [info(*i) for i in inputs], [info(*o) for o in outputs],
                              [numpy_helper.from_array(np.asarray(a), n) for n, a in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def run_ort(path, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def assert_same_trace(a, b) -> None:
    """Two traces record identical read-outs (potentials and counts, same dtype), and identical spikes,
    synaptic events, spike trains, membrane updates and operations per population, sample and step."""
    assert (a.steps, a.samples) == (b.steps, b.samples)
    assert a.readouts.keys() == b.readouts.keys() and a.spikes.keys() == b.spikes.keys()
    assert a.events.keys() == b.events.keys() and a.spike_trains.keys() == b.spike_trains.keys()
    for k, r in a.readouts.items():
        assert r.potential.dtype == b.readouts[k].potential.dtype
        assert np.array_equal(r.potential, b.readouts[k].potential)
        assert (r.count is None) == (b.readouts[k].count is None)
        assert r.count is None or np.array_equal(r.count, b.readouts[k].count)
    for key in ("spikes", "events", "spike_trains", "updates", "acs", "macs"):
        assert getattr(a, key).keys() == getattr(b, key).keys(), key
        for k, v in getattr(a, key).items():
            assert np.array_equal(v, getattr(b, key)[k]), f"{key}[{k!r}] differs"


def rand(*shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as (x_train, y_train, x_test, y_test), x in [0, 1], N x 1 x 8 x 8."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
    return xtr, ytr, xte, yte


@pytest.fixture(scope="session")
def digits_onnx(digits, tmp_path_factory):
    """A small CNN (conv-BN-ReLU x2, avg-pool, linear) trained on digits for 15 epochs, as ONNX with BN."""
    xtr, ytr, _, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64))
    for _ in range(15):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("digits") / "cnn.onnx"
    torch.onnx.export(model.eval(), (x[:1],), str(path), input_names=["x"], dynamic_axes={"x": {0: "N"}},
                      dynamo=False, do_constant_folding=False)
    return path


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
