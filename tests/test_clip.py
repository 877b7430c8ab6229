"""Clipped activations (ReLU6 = Clip(0, 6)): lambda is capped at the clip value, so the rate saturates exactly
where the ANN clips and the SNN equals the ANN on inputs beyond the clip."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from conftest import make_model, rand, save
from neurocc.backends.reference.simulator import Simulator
from neurocc.frontend.onnx import load_onnx
from neurocc.ir import VerificationError, verify
from neurocc.ir.executor import run_ann
from neurocc.options import CompileOptions
from neurocc.passes.rescale import rescale
from neurocc.pipeline import CompileContext, compile_graph

CAP = 6.0
W1, B1 = rand(16, 8, seed=1), rand(16, seed=2)
W2, B2 = rand(4, 16, seed=3), rand(4, seed=4)
X_CALIB, X_TEST = 3 * rand(512, 8, seed=5), 3 * rand(256, 8, seed=6)


def _model(tmp_path, clipped: bool):
    act = helper.make_node("Clip", ["h", "lo", "hi"], ["a"]) if clipped else helper.make_node("Relu", ["h"], ["a"])
    m = make_model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), act,
                    helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], transB=1)],
                   [("x", ["N", 8])], [("y", ["N", 4])],
                   [("w1", W1), ("b1", B1), ("w2", W2), ("b2", B2), ("lo", np.array(0, np.float32)),
                    ("hi", np.array(CAP, np.float32))])
    graph, _ = load_onnx(save(m, tmp_path / f"clip{clipped}.onnx"))
    return graph


def _hidden(snn):
    (name,) = [n for n in snn.nodes() if n not in snn.inputs + snn.outputs]
    return name


def test_relu6_lambda_is_the_clip_and_the_snn_equals_the_ann_beyond_it(tmp_path):
    graph = _model(tmp_path, clipped=True)
    result = compile_graph(graph, CompileContext(CompileOptions(normalization="max"), calib_x=X_CALIB))
    hidden = result.snn.payload(_hidden(result.snn))
    assert hidden.scale == CAP                            # lambda = min(max activation, clip) = the clip
    assert abs(hidden.cap - 1.0) <= 1e-6                  # the clip is one spike per step
    pre = X_TEST @ W1.T + B1
    assert (pre > CAP).mean() > 0.1                       # the test means something: many inputs pass the clip
    ann = run_ann(result.ann, X_TEST)[result.ann.outputs[0]].numpy()
    trace = Simulator(result.snn).run(X_TEST, 1000, batch_size=256)
    potential = trace.readouts[result.snn.outputs[0]].potential
    # an IF neuron with constant drive r in [0, 1] (saturating above) spikes floor(v0 + t r) times: at most one
    # spike from t r, so the read-out's rate is within sum_j |W2_oj| lambda / t of the ANN's output
    bound = np.abs(W2).sum(axis=1) * CAP
    for t in (50, 200, 1000):
        assert np.all(np.abs(potential[t - 1] / t - ann) <= bound / t + 1e-4)
    unclipped = run_ann(_model(tmp_path, clipped=False), X_TEST)["y"].numpy()
    assert np.abs(unclipped - ann).max() > 10 * bound.max() / 1000   # the clip matters on these inputs


def test_percentile_lambda_never_exceeds_the_clip(tmp_path):
    graph = _model(tmp_path, clipped=True)
    for p in (50.0, 99.9):
        result = compile_graph(graph, CompileContext(CompileOptions(percentile=p), calib_x=X_CALIB))
        hidden = result.snn.payload(_hidden(result.snn))
        assert hidden.scale <= CAP and hidden.cap >= 1 - 1e-6


def test_optimize_keeps_lambda_at_most_the_clip(tmp_path):
    graph = _model(tmp_path, clipped=True)
    opts = CompileOptions(normalization="max", optimize=12, optimize_steps=16, optimize_samples=64)
    result = compile_graph(graph, CompileContext(opts, calib_x=X_CALIB))
    assert result.snn.payload(_hidden(result.snn)).scale <= CAP * (1 + 1e-6)


def test_verify_refuses_lambda_above_the_clip(tmp_path):
    graph = _model(tmp_path, clipped=True)
    snn = compile_graph(graph, CompileContext(CompileOptions(normalization="max"), calib_x=X_CALIB)).snn
    too_large = rescale(snn, {_hidden(snn): 0.5})         # lambda 12 > clip 6
    with pytest.raises(VerificationError, match="lambda exceeds the clip"):
        verify(too_large)
