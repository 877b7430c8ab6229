"""Frontend: every supported op imports and the ANN executor matches onnxruntime (max abs error <= 1e-4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from conftest import MNIST8, make_model, rand, run_ort, save
from models import torch_models
from neurocc.errors import NeuroccError, UnsupportedModelError
from neurocc.frontend.onnx import load_onnx, supported_ops
from neurocc.ir.executor import run_ann

TOL = 1e-4
X4 = ("x", ["N", 4, 9, 9])
W = rand(6, 4, 3, 3, seed=1) * 0.3
B = rand(6, seed=2)


def conv(inp="x", out="c", pads=(1, 1, 1, 1), **kw):
    return helper.make_node("Conv", [inp, "W", "B"], [out], kernel_shape=[3, 3], pads=list(pads), **kw)


def _single(nodes, out_shape, inits=(), opset=13, inputs=(X4,)):
    return make_model(nodes, list(inputs), [("y", out_shape)], [("W", W), ("B", B), *inits], opset=opset)


# (id, model factory). Every model reads x: N x 4 x 9 x 9 unless it says otherwise.
CASES = {
    "conv_pads_stride": lambda: _single([conv(out="y", pads=(0, 1, 2, 1), strides=[2, 2])], ["N", 6, 5, 4]),
    "conv_dilation": lambda: _single([conv(out="y", dilations=[2, 2], pads=(2, 2, 2, 2))], ["N", 6, 9, 9]),
    "conv_groups": lambda: make_model(
        [helper.make_node("Conv", ["x", "Wg"], ["y"], kernel_shape=[3, 3], group=2)],
        [X4], [("y", ["N", 6, 7, 7])], [("Wg", rand(6, 2, 3, 3, seed=3))]),
    "conv_same_upper": lambda: _single([helper.make_node("Conv", ["x", "W", "B"], ["y"], kernel_shape=[3, 3],
                                                         auto_pad="SAME_UPPER", strides=[2, 2])], ["N", 6, 5, 5]),
    "conv_same_lower": lambda: make_model(
        [helper.make_node("Conv", ["x", "W2"], ["y"], kernel_shape=[2, 2], auto_pad="SAME_LOWER")],
        [X4], [("y", ["N", 6, 9, 9])], [("W2", rand(6, 4, 2, 2, seed=4))]),
    "gemm_transB_alpha_beta": lambda: make_model(
        [helper.make_node("Flatten", ["x"], ["f"]),
         helper.make_node("Gemm", ["f", "G", "C"], ["y"], transB=1, alpha=0.5, beta=2.0)],
        [X4], [("y", ["N", 5])], [("G", rand(5, 324, seed=5) * 0.1), ("C", rand(5, seed=6))]),
    "gemm_plain": lambda: make_model(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "G", "C"], ["y"])],
        [X4], [("y", ["N", 5])], [("G", rand(324, 5, seed=5) * 0.1), ("C", rand(1, 5, seed=6))]),
    "matmul_add": lambda: make_model(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["m"]),
         helper.make_node("Add", ["m", "C"], ["y"])],
        [X4], [("y", ["N", 5])], [("M", rand(324, 5, seed=7) * 0.1), ("C", rand(5, seed=8))]),
    "batchnorm_after_conv": lambda: _single(
        [conv(), helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=1e-3)],
        ["N", 6, 9, 9], [("g", rand(6, seed=9)), ("b", rand(6, seed=10)), ("m", rand(6, seed=11)),
                         ("v", np.abs(rand(6, seed=12)) + 0.5)]),
    "batchnorm_on_input": lambda: make_model(
        [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])], [X4], [("y", ["N", 4, 9, 9])],
        [("g", rand(4, seed=9)), ("b", rand(4, seed=10)), ("m", rand(4, seed=11)), ("v", np.abs(rand(4, seed=12)) + .5)]),
    "relu": lambda: _single([conv(), helper.make_node("Relu", ["c"], ["y"])], ["N", 6, 9, 9]),
    "clip_inputs": lambda: _single([conv(), helper.make_node("Clip", ["c", "lo", "hi"], ["y"])], ["N", 6, 9, 9],
                                   [("lo", np.array(0, np.float32)), ("hi", np.array(0.5, np.float32))]),
    "clip_attrs_opset8": lambda: _single([conv(), helper.make_node("Clip", ["c"], ["y"], min=0.0, max=0.7)],
                                         ["N", 6, 9, 9], opset=8),
    "residual_add": lambda: make_model(
        [helper.make_node("Conv", ["x", "Ws", "Bs"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Conv", ["r", "Ws", "Bs"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["c2", "r"], ["a"]), helper.make_node("Relu", ["a"], ["y"])],
        [X4], [("y", ["N", 4, 9, 9])], [("Ws", rand(4, 4, 3, 3, seed=13) * 0.3), ("Bs", rand(4, seed=14))]),
    "concat": lambda: _single([conv(), helper.make_node("Relu", ["c"], ["r"]),
                               helper.make_node("Concat", ["r", "x"], ["y"], axis=1)], ["N", 10, 9, 9]),
    "avgpool_pads": lambda: _single([conv(), helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[3, 3],
                                                              strides=[2, 2], pads=[1, 1, 1, 1])], ["N", 6, 5, 5]),
    "avgpool_count_pad_ceil": lambda: _single(
        [conv(), helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 0, 1, 0],
                                  count_include_pad=1, ceil_mode=1)], ["N", 6, 6, 5]),
    "global_avgpool": lambda: _single([conv(), helper.make_node("GlobalAveragePool", ["c"], ["y"])], ["N", 6, 1, 1]),
    "maxpool": lambda: _single([conv(), helper.make_node("Relu", ["c"], ["r"]),
                                helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                                 pads=[1, 1, 1, 1])], ["N", 6, 5, 5]),
    "maxpool_before_relu": lambda: _single([conv(), helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2],
                                                                     strides=[2, 2]),
                                            helper.make_node("Relu", ["p"], ["y"])], ["N", 6, 4, 4]),
    "reducemean_spatial": lambda: _single([conv(), helper.make_node("ReduceMean", ["c"], ["y"], axes=[2, 3],
                                                                     keepdims=0)], ["N", 6]),
    "flatten": lambda: _single([conv(), helper.make_node("Flatten", ["c"], ["y"], axis=1)], ["N", 486]),
    "reshape_2d": lambda: _single([conv(), helper.make_node("Reshape", ["c", "s"], ["y"])], ["N", 486],
                                  [("s", np.array([-1, 486], np.int64))]),
    "reshape_via_shape_ops": lambda: _single(
        [conv(), helper.make_node("Shape", ["c"], ["sh"]), helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n", "ax"], ["nu"]),
         helper.make_node("Concat", ["nu", "minus1"], ["target"], axis=0),
         helper.make_node("Reshape", ["c", "target"], ["y"])], ["N", 486],
        [("zero", np.array(0, np.int64)), ("ax", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64))]),
    "pad_channels_inputs": lambda: _single([conv(), helper.make_node("Pad", ["c", "p"], ["y"])], ["N", 10, 10, 11],
                                           [("p", np.array([0, 2, 0, 1, 0, 2, 1, 1], np.int64))]),
    "pad_attrs_opset8": lambda: _single([conv(), helper.make_node("Pad", ["c"], ["y"], pads=[0, 1, 1, 0, 0, 0, 1, 2])],
                                        ["N", 7, 11, 11], opset=8),
    "slice_steps": lambda: _single([conv(), helper.make_node("Slice", ["c", "st", "en", "ax", "sp"], ["y"])],
                                   ["N", 6, 5, 5], [("st", np.array([0, 0], np.int64)),
                                                    ("en", np.array([2 ** 62, 2 ** 62], np.int64)),
                                                    ("ax", np.array([2, 3], np.int64)), ("sp", np.array([2, 2], np.int64))]),
    "slice_attrs_opset8": lambda: _single([conv(), helper.make_node("Slice", ["c"], ["y"], starts=[1, 2], ends=[5, -1],
                                                                    axes=[1, 3])], ["N", 4, 9, 6], opset=8),
    "dropout_identity": lambda: _single([conv(), helper.make_node("Dropout", ["c"], ["d"]),
                                         helper.make_node("Identity", ["d"], ["y"])], ["N", 6, 9, 9]),
    "softmax_output": lambda: _single([conv(), helper.make_node("GlobalAveragePool", ["c"], ["g"]),
                                       helper.make_node("Flatten", ["g"], ["f"]),
                                       helper.make_node("Softmax", ["f"], ["y"], axis=1)], ["N", 6]),
    "sub_mul_div_const": lambda: _single(
        [helper.make_node("Sub", ["x", "mu"], ["s"]), helper.make_node("Div", ["s", "sd"], ["d"]),
         helper.make_node("Mul", ["d", "k"], ["m"]), conv("m", "y")], ["N", 6, 9, 9],
        [("mu", rand(1, 4, 1, 1, seed=15)), ("sd", np.abs(rand(4, 1, 1, seed=16)) + 0.5),
         ("k", np.array(1.5, np.float32))]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case, tmp_path):
    path = save(CASES[case](), tmp_path / f"{case}.onnx")
    x = rand(3, 4, 9, 9, seed=42)
    expected = run_ort(path, x)[0]
    graph, _ = load_onnx(path)
    got = run_ann(graph, x)[graph.outputs[0]].numpy()
    if case == "softmax_output":    # dropped at the output: compare with the logits' argmax
        assert "Softmax" in graph.meta["notes"][0]
        assert np.array_equal(got.argmax(1), expected.argmax(1))
        return
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOL


def test_mnist8_external_model_matches_onnxruntime():
    graph, _ = load_onnx(MNIST8)
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    expected = run_ort(MNIST8, x)[0]
    got = run_ann(graph, np.repeat(x, 5, axis=0))[graph.outputs[0]].numpy()   # batch-agnostic IR
    assert np.abs(got - expected).max() <= TOL


@pytest.mark.parametrize("name", sorted(torch_models()))
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_torch_exported_models_match(name, dynamo, tmp_path):
    model = torch_models()[name]
    x = rand(4, 3, 12, 12, seed=3)
    path = tmp_path / f"{name}.onnx"
    kwargs = {"dynamic_axes": {"x": {0: "N"}}} if not dynamo else {"dynamic_shapes": ({0: torch.export.Dim("N")},)}
    torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["x"], dynamo=dynamo, **kwargs)
    graph, _ = load_onnx(path)
    got = run_ann(graph, x)[graph.outputs[0]].numpy()
    assert np.abs(got - run_ort(path, x)[0]).max() <= TOL
    with torch.no_grad():
        assert np.abs(got - model(torch.from_numpy(x)).numpy()).max() <= TOL


def test_unsupported_op_names_node_type_and_supported_ops(tmp_path):
    lstm = make_model([helper.make_node("LSTM", ["x", "Wl", "Rl"], ["y"], name="my_lstm", hidden_size=3)],
                      [("x", [5, 2, 4])], [("y", [5, 1, 2, 3])],
                      [("Wl", rand(1, 12, 4)), ("Rl", rand(1, 12, 3))])
    with pytest.raises(UnsupportedModelError) as e:
        load_onnx(save(lstm, tmp_path / "lstm.onnx"))
    msg = str(e.value)
    assert "'my_lstm'" in msg and "LSTM" in msg and all(op in msg for op in supported_ops())


def test_softmax_inside_the_network_is_refused(tmp_path):
    m = _single([conv(), helper.make_node("Softmax", ["c"], ["s"], axis=1), helper.make_node("Relu", ["s"], ["y"])],
                ["N", 6, 9, 9])
    with pytest.raises(UnsupportedModelError, match="Softmax"):
        load_onnx(save(m, tmp_path / "m.onnx"))


def test_truncated_and_missing_files_are_user_errors(tmp_path):
    data = MNIST8.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(NeuroccError, match="ONNX"):
        load_onnx(tmp_path / "cut.onnx")
    with pytest.raises(NeuroccError, match="cannot read"):
        load_onnx(tmp_path / "absent.onnx")
