"""The conversion matrix: the CNN families users deploy, as each exporter and converter writes them.

Families (tests/models.py, random weights with data-dependent initialisation so their signal survives
depth): VGG (max-pool), ResNet with shortcut option A (subsample + zero channel padding) and option B
(1 x 1 projection), MobileNetV2 (depthwise, ReLU6, linear bottleneck + residual), SqueezeNet (Concat fire
modules, ceil-mode max-pool). Each is exported by torch's legacy (TorchScript) and dynamo exporters, and
rewritten into the two layouts TensorFlow converters write (tests/tf_layout.py: tflite2onnx's boundary
transposes, onnx-tf's transposes around every op). For each: the IR executor matches onnxruntime; the
float SNN's predictions agree with the ANN's at large T; every integer target compiles (and runs) or
refuses with a clear, named limit.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from conftest import rand, run_ort, save
from models import cnn_families, data_init
from neurocc.backends import TARGETS
from neurocc.backends.reference.simulator import Simulator
from neurocc.decode import predictions
from neurocc.errors import NeuroccError
from neurocc.frontend.onnx import load_onnx
from neurocc.ir.executor import run_ann
from neurocc.options import CompileOptions
from neurocc.pipeline import CompileContext, compile_graph
from tf_layout import TO_NHWC, to_tf_layout

FAMILIES = sorted(cnn_families())
VARIANTS = ("legacy", "dynamo", "tf_boundary", "tf_per_op")
INTEGER_TARGETS = sorted(name for name, t in TARGETS.items() if t.hwmodel)
CALIB = rand(256, 3, 16, 16, seed=11)
TEST = rand(128, 3, 16, 16, seed=12)
TOL = 1e-4          # relative to the output's magnitude: float32 summation order differs between runtimes


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """family -> variant -> ONNX path (exported once per module)."""
    folder = tmp_path_factory.mktemp("matrix")
    models = {name: data_init(m, torch.from_numpy(CALIB)) for name, m in cnn_families().items()}
    paths: dict = {}
    for name, model in models.items():
        x = torch.from_numpy(TEST[:2])
        legacy, dynamo = folder / f"{name}_legacy.onnx", folder / f"{name}_dynamo.onnx"
        torch.onnx.export(model, (x,), str(legacy), input_names=["x"], dynamic_axes={"x": {0: "N"}}, dynamo=False)
        torch.onnx.export(model, (x,), str(dynamo), input_names=["x"], dynamo=True,
                          dynamic_shapes=({0: torch.export.Dim("N")},))
        paths[name] = {"legacy": legacy, "dynamo": dynamo}
        for style in ("boundary", "per_op"):
            paths[name][f"tf_{style}"] = save(to_tf_layout(onnx.load(str(legacy)), style),
                                              folder / f"{name}_tf_{style}.onnx")
    return paths


def _input_for(variant: str, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(TO_NHWC)) if variant.startswith("tf_") else x


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_ir_executor_matches_onnxruntime(exported, family, variant):
    path = exported[family][variant]
    expected = run_ort(path, _input_for(variant, TEST))[0]
    graph, _ = load_onnx(path)
    if variant.startswith("tf_"):        # the NHWC input's transpose is folded into the pre-processing
        (name,) = graph.inputs
        assert graph.meta["input_transpose"] == {name: [0, 3, 1, 2]} and graph.shape(name) == (3, 16, 16)
    got = run_ann(graph, TEST)[graph.outputs[0]].numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOL * np.abs(expected).max()
    if variant == "tf_per_op":     # every transpose folded: as many IR nodes as the NCHW model's import
        assert len(graph.nodes()) == len(load_onnx(exported[family]["legacy"])[0].nodes())


@pytest.mark.parametrize("variant", ["legacy", "tf_boundary"])
@pytest.mark.parametrize("family", FAMILIES)
def test_float_snn_agrees_with_the_ann_at_large_t(exported, family, variant):
    """With max normalisation (no calibration activation clipped) the float SNN's rates converge to the ANN's
    activations, so its predictions converge to the ANN's."""
    graph, _ = load_onnx(exported[family][variant])
    result = compile_graph(graph, CompileContext(CompileOptions(normalization="max"), calib_x=CALIB))
    ann = run_ann(result.ann, TEST)[result.ann.outputs[0]].numpy().argmax(1)
    assert len(set(ann)) > 1, "the random network predicts one class: agreement would mean nothing"
    trace = Simulator(result.snn).run(TEST, 1000, batch_size=128)
    agreement = (predictions(trace, result.snn.outputs[0]) == ann[None]).mean(axis=1)
    assert agreement[-1] >= 0.95
    assert agreement[-1] >= agreement[99]


@pytest.mark.parametrize("target", INTEGER_TARGETS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_integer_target_compiles_or_names_its_limit(exported, family, target):
    graph, _ = load_onnx(exported[family]["legacy"])
    try:
        result = compile_graph(graph, CompileContext(CompileOptions(target=target), calib_x=CALIB[:128]))
    except NeuroccError as e:       # a limit of the chip's formats, named: the population or projection
        assert "population" in str(e) or "projection" in str(e), str(e)
        return
    assert result.snn.meta["mode"] == "integer"
    trace = Simulator(result.snn).run(TEST[:8], 16, batch_size=8)
    assert sum(int(s.sum()) for s in trace.spikes.values()) > 0
