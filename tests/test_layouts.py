"""Layout transposes (TensorFlow/Keras/TFLite converters), every blocking node at once, and a TF-origin
model end to end through the command line."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conftest import make_model, rand, run_ort, save
from neurocc.cli import main
from neurocc.errors import UnsupportedModelError
from neurocc.frontend.onnx import load_onnx
from neurocc.ir import ops
from neurocc.ir.executor import run_ann
from tf_layout import TO_NCHW, TO_NHWC, tflite_classifier

TOL = 1e-5


def ort_per_sample(path, x: np.ndarray) -> np.ndarray:
    """onnxruntime one sample at a time: TFLite-origin graphs fix the batch at 1 (Reshape(1, -1))."""
    return np.concatenate([run_ort(path, x[i:i + 1])[0] for i in range(len(x))])


def transpose(inp, out, perm):
    return helper.make_node("Transpose", [inp], [out], perm=list(perm))


def conv(inp, out, w="w", pads=(1, 1, 1, 1)):
    return helper.make_node("Conv", [inp, w, "b"], [out], pads=list(pads), kernel_shape=[3, 3], name=out)


CONV_W = [("w", rand(6, 4, 3, 3, seed=1)), ("b", rand(6, seed=2))]
NHWC_IN = ("x", ["N", 9, 9, 4])


def _case(nodes, out_shape, inits=(), inputs=(NHWC_IN,), opset=13):
    return make_model(nodes, list(inputs), [("y", out_shape)], CONV_W + list(inits), opset=opset)


CASES = {
    # tflite2onnx: NHWC input transposed once, Transpose(0, 2, 3, 1) before the classifier's Reshape
    "input_transpose_then_flatten_into_gemm": lambda: _case(
        [transpose("x", "t", TO_NCHW), conv("t", "c"), helper.make_node("Relu", ["c"], ["r"]),
         transpose("r", "rt", TO_NHWC), helper.make_node("Reshape", ["rt", "shape"], ["f"]),
         helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1)], ["N", 5],
        [("shape", np.array([1, -1], np.int64)), ("fc", rand(5, 6 * 9 * 9, seed=3)), ("fb", rand(5, seed=4))]),
    # onnx-tf: cancelling pairs around every op, NHWC elementwise ops and constants in between
    "cancelling_pairs_with_nhwc_elementwise": lambda: _case(
        [transpose("x", "t", TO_NCHW), conv("t", "c"), transpose("c", "ct", TO_NHWC),
         helper.make_node("Add", ["ct", "bias_nhwc"], ["a"]), helper.make_node("Mul", ["a", "gain"], ["m"]),
         helper.make_node("Clip", ["m", "lo", "hi"], ["r"]), transpose("r", "rt", TO_NCHW),
         conv("rt", "c2", w="w2"), transpose("c2", "c2t", TO_NHWC), transpose("c2t", "y", TO_NCHW)],
        ["N", 6, 9, 9], [("bias_nhwc", rand(6, seed=5)), ("gain", rand(1, 1, 1, 6, seed=6)),
                         ("lo", np.array(0, np.float32)), ("hi", np.array(6, np.float32)),
                         ("w2", rand(6, 6, 3, 3, seed=7))]),
    # Keras GlobalAveragePooling2D after tf2onnx: ReduceMean over the NHWC spatial axes, no keepdims
    "reduce_mean_over_nhwc_spatial_axes": lambda: _case(
        [transpose("x", "t", TO_NCHW), conv("t", "c"), helper.make_node("Relu", ["c"], ["r"]),
         transpose("r", "rt", TO_NHWC), helper.make_node("ReduceMean", ["rt"], ["g"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["g", "fc"], ["y"])], ["N", 3], [("fc", rand(6, 3, seed=8))]),
    # a 1 x 1 spatial tensor: the permutation is a reshape (the feature order is unchanged)
    "transpose_of_1x1_map_is_a_reshape": lambda: _case(
        [transpose("x", "t", TO_NCHW), conv("t", "c"), helper.make_node("GlobalAveragePool", ["c"], ["g"]),
         transpose("g", "gt", TO_NHWC), helper.make_node("Squeeze", ["gt", "sq"], ["s"]),
         helper.make_node("Gemm", ["s", "fc"], ["y"], transB=1)], ["N", 5],
        [("sq", np.array([1, 2], np.int64)), ("fc", rand(5, 6, seed=9))]),
    # NHWC Concat (axis 3), Pad and Slice act on the IR axes their ONNX axes name
    "nhwc_concat_pad_slice": lambda: _case(
        [transpose("x", "t", TO_NCHW), conv("t", "c"), helper.make_node("Relu", ["c"], ["r"]),
         transpose("r", "rt", TO_NHWC), helper.make_node("Concat", ["rt", "rt"], ["cat"], axis=3),
         helper.make_node("Pad", ["cat", "pads"], ["p"]), helper.make_node("Slice", ["p", "st", "en", "ax"], ["s"]),
         transpose("s", "y", TO_NCHW)], ["N", 12, 9, 10],
        [("pads", np.array([0, 1, 0, 0, 0, 1, 1, 0], np.int64)), ("st", np.array([1], np.int64)),
         ("en", np.array([10], np.int64)), ("ax", np.array([1], np.int64))]),
    # a BatchNormalization on an NHWC tensor (channel axis 1 of ONNX is W there): an affine map on that axis
    "batchnorm_of_a_permuted_tensor": lambda: _case(
        [transpose("x", "t", TO_NCHW), conv("t", "c"), transpose("c", "ct", (0, 3, 2, 1)),
         helper.make_node("BatchNormalization", ["ct", "g", "beta", "mu", "var"], ["bn"]),
         transpose("bn", "y", (0, 3, 2, 1))], ["N", 6, 9, 9],
        [("g", rand(9, seed=10)), ("beta", rand(9, seed=11)), ("mu", rand(9, seed=12)),
         ("var", np.abs(rand(9, seed=13)) + 0.5)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_transposes_are_folded_and_match_onnxruntime(case, tmp_path):
    path = save(CASES[case](), tmp_path / f"{case}.onnx")
    x = rand(3, 9, 9, 4, seed=42)
    expected = ort_per_sample(path, x)
    graph, _ = load_onnx(path)
    assert graph.meta["input_transpose"] == {"x": list(TO_NCHW)} and graph.shape("x") == (4, 9, 9)
    got = run_ann(graph, np.ascontiguousarray(x.transpose(TO_NCHW)))[graph.outputs[0]].numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOL * max(1.0, np.abs(expected).max())


def test_a_permutation_before_flatten_goes_into_the_gemm_columns(tmp_path):
    """No op stands for the transpose: the Gemm reads the IR's (NCHW) feature order with permuted weights."""
    graph, _ = load_onnx(save(CASES["input_transpose_then_flatten_into_gemm"](), tmp_path / "m.onnx"))
    kinds = [type(graph.payload(n)).__name__ for n in graph.topo_order()]
    assert kinds == ["Input", "Conv", "Relu", "Flatten", "Gemm"]
    fc = numpy_helper.to_array(next(i for i in onnx.load(str(tmp_path / "m.onnx")).graph.initializer if i.name == "fc"))
    order = np.arange(6 * 81).reshape(6, 9, 9).transpose(1, 2, 0).ravel()     # NHWC feature j is NCHW order[j]
    gemm = graph.payload(next(n for n in graph.nodes() if isinstance(graph.payload(n), ops.Gemm)))
    assert np.array_equal(gemm.weight[:, order], fc)


def test_a_transpose_without_an_input_transpose_keeps_the_declared_layout(tmp_path):
    m = make_model([helper.make_node("Relu", ["x"], ["r"]), transpose("r", "t", (0, 1, 3, 2)),
                    transpose("t", "y", (0, 1, 3, 2))], [("x", ["N", 3, 4, 5])], [("y", ["N", 3, 4, 5])])
    graph, _ = load_onnx(save(m, tmp_path / "m.onnx"))
    assert "input_transpose" not in graph.meta and graph.shape("x") == (3, 4, 5)


@pytest.mark.parametrize("nodes,out_shape,needle", [
    ([conv("x", "c"), transpose("c", "t", (0, 1, 3, 2)), conv("t", "y", w="w2")], ["N", 6, 9, 9], "Transpose node 't'"),
    ([conv("x", "c"), transpose("c", "y", TO_NHWC)], ["N", 9, 9, 6], "graph output"),
    ([transpose("x", "y", (1, 0, 2, 3))], [9, "N", 9, 9], "moves the batch axis"),
])
def test_transposes_that_cannot_be_folded_are_named(nodes, out_shape, needle, tmp_path):
    m = make_model(nodes, [("x", ["N", 4, 9, 9])], [("y", out_shape)], CONV_W + [("w2", rand(6, 6, 3, 3, seed=7))])
    with pytest.raises(UnsupportedModelError, match=needle):
        load_onnx(save(m, tmp_path / "m.onnx"))


def _blocked_model():
    """Three blocking nodes: an unknown op, an unsupported Clip, and an unknown op after both."""
    return make_model([conv("x", "c"), helper.make_node("Sigmoid", ["c"], ["s"], name="gate"),
                       helper.make_node("Clip", ["s", "lo", "hi"], ["k"], name="hardtanh"),
                       helper.make_node("Relu", ["k"], ["r"]),
                       helper.make_node("LRN", ["r"], ["y"], size=3, name="lrn")],
                      [("x", ["N", 4, 9, 9])], [("y", ["N", 6, 9, 9])],
                      CONV_W + [("lo", np.array(-1, np.float32)), ("hi", np.array(1, np.float32))])


def test_every_blocking_node_is_reported_at_once(tmp_path):
    with pytest.raises(UnsupportedModelError) as e:
        load_onnx(save(_blocked_model(), tmp_path / "m.onnx"))
    assert [(node, op) for node, op, _ in e.value.problems] == [("gate", "Sigmoid"), ("hardtanh", "Clip"),
                                                                ("lrn", "LRN")]
    assert "'gate'" in str(e.value) and "2 more blocking node(s)" in str(e.value)


def test_inspect_lists_every_blocking_node(tmp_path, capsys):
    path = save(_blocked_model(), tmp_path / "m.onnx")
    assert main(["inspect", str(path)]) == 2
    out, err = capsys.readouterr()
    for node, op in (("gate", "Sigmoid"), ("hardtanh", "Clip"), ("lrn", "LRN")):
        assert any(node in line and op in line for line in out.splitlines())
    assert "only Clip with min 0" in out and "supported op types:" in out
    assert err.count("\n") == 1 and "3 blocking node(s)" in err


@pytest.fixture(scope="module")
def tflite_digits(digits, digits_onnx, tmp_path_factory):
    """The trained digits CNN rebuilt as tflite2onnx writes a TFLite model: NHWC input of batch 1, Transpose,
    Conv + Add(bias) + Relu (batch norm folded, as TFLite does), AveragePool, Transpose(0, 2, 3, 1),
    Reshape(1, -1), Gemm with NHWC-ordered weights, Softmax; and the digits in NHWC as .npz files."""
    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(digits_onnx)).graph.initializer}

    def folded(conv_name, bn_name):
        gain = init[f"{bn_name}.weight"] / np.sqrt(init[f"{bn_name}.running_var"] + 1e-5)
        return (init[f"{conv_name}.weight"] * gain[:, None, None, None],
                (init[f"{conv_name}.bias"] - init[f"{bn_name}.running_mean"]) * gain + init[f"{bn_name}.bias"])
    model = tflite_classifier([folded("0", "1"), folded("3", "4")], (init["8.weight"], init["8.bias"]), (8, 8))
    folder = tmp_path_factory.mktemp("tflite")
    xtr, ytr, xte, yte = digits
    np.savez(folder / "train.npz", x=xtr.transpose(TO_NHWC), y=ytr)
    np.savez(folder / "test.npz", x=xte.transpose(TO_NHWC), y=yte)
    return save(model, folder / "digits_tflite.onnx"), folder


def test_tflite_layout_model_matches_the_nchw_original(tflite_digits, digits, digits_onnx):
    path, _ = tflite_digits
    x = digits[2][:16]
    expected = run_ort(digits_onnx, x)[0]
    probabilities = ort_per_sample(path, np.ascontiguousarray(x.transpose(TO_NHWC)))
    assert np.array_equal(probabilities.argmax(1), expected.argmax(1))
    graph, _ = load_onnx(path)
    assert np.abs(run_ann(graph, x)[graph.outputs[0]].numpy() - expected).max() <= 1e-4


def test_tflite_layout_model_compiles_and_its_snn_matches_the_ann(tflite_digits, tmp_path, capsys):
    """The issue's bar: a TF-origin model compiles and its SNN is within 1 point of the ANN (data in NHWC)."""
    path, data = tflite_digits
    out = tmp_path / "digits.ncc"
    assert main(["compile", str(path), "--calib", str(data / "train.npz"), "-o", str(out), "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["preprocess"]["transpose"] == list(TO_NCHW)
    assert main(["run", str(out), "--data", str(data / "test.npz"), "--steps", "100", "--json",
                 str(tmp_path / "run.json"), "-q"]) == 0
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["ann_accuracy"] > 0.9
    assert result["accuracy"][-1] >= result["ann_accuracy"] - 0.01
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    assert "folded into the pre-processing" in capsys.readouterr().out
