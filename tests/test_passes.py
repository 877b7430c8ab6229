"""Passes keep the ANN function: BN folding, canonicalisation, normalisation; the verifier catches breakage."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from onnx import helper
from torch import nn

from conftest import MNIST8, make_model, rand, save
from neurocc.frontend.onnx import load_onnx
from neurocc.ir import VerificationError, ops, verify
from neurocc.ir.executor import run_ann, run_rate
from neurocc.ir.snn import Population
from neurocc.options import CompileOptions
from neurocc.passes.calibrate import calibrate
from neurocc.passes.canonicalize import canonicalize
from neurocc.passes.fold_batchnorm import fold_batchnorm
from neurocc.pipeline import CompileContext, compile_graph
from models import torch_models

TOL = 1e-4


def _export(model, tmp_path, name="m", shape=(4, 3, 12, 12)):
    x = torch.from_numpy(rand(*shape, seed=1))
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamic_axes={"x": {0: "N"}},
                      dynamo=False, do_constant_folding=False)
    return path


def _kinds(g):
    return [type(g.payload(n)).__name__ for n in g.nodes()]


def test_bn_fold_matches_eq_3_4_on_hand_numbers():
    # gamma = 2, var + eps = 4 (sigma = 2), mu = 1, beta = 0.5: w' = w, b' = (b - 1) + 0.5
    from neurocc.ir import Graph
    g = Graph("ann", inputs=["x"], outputs=["bn"])
    g.add_node("x", ops.Input(shape=(3,)), (3,))
    g.add_node("fc", ops.Gemm(weight=np.array([[1.0, -2.0, 3.0]]), bias=np.array([4.0])), (1,))
    g.add_node("bn", ops.BatchNorm(scale=np.array([2.0]), bias=np.array([0.5]), mean=np.array([1.0]),
                                   var=np.array([4.0]), eps=0.0), (1,))
    g.add_edge("x", "fc", 0)
    g.add_edge("fc", "bn", 0)
    folded = fold_batchnorm(g)
    (fc,) = [folded.payload(n) for n in folded.nodes() if isinstance(folded.payload(n), ops.Gemm)]
    assert np.array_equal(fc.weight, [[1.0, -2.0, 3.0]]) and np.array_equal(fc.bias, [3.5])
    assert "bn" in g and isinstance(g.payload("bn"), ops.BatchNorm)   # the input graph is untouched


@pytest.mark.parametrize("name", ["resnet_block_bn", "vgg_maxpool_dropout"])
def test_bn_folding_keeps_function(name, tmp_path):
    graph, _ = load_onnx(_export(torch_models()[name], tmp_path))
    assert "BatchNorm" in _kinds(graph)
    folded = fold_batchnorm(canonicalize(graph))
    verify(folded)
    assert "BatchNorm" not in _kinds(folded)
    x = rand(6, 3, 12, 12, seed=5)
    a = run_ann(graph, x)[graph.outputs[0]]
    b = run_ann(folded, x)[folded.outputs[0]]
    assert (a - b).abs().max() <= TOL


def test_canonicalize_folds_bias_adds_and_moves_relu_before_maxpool(tmp_path):
    graph, _ = load_onnx(MNIST8)
    assert "Affine" in _kinds(graph)
    canon = canonicalize(graph)
    assert "Affine" not in _kinds(canon)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert (run_ann(graph, x)[graph.outputs[0]] - run_ann(canon, x)[canon.outputs[0]]).abs().max() <= TOL

    m = make_model([helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                    helper.make_node("Relu", ["p"], ["y"])], [("x", ["N", 2, 4, 4])], [("y", ["N", 2, 2, 2])])
    g = canonicalize(load_onnx(save(m, tmp_path / "m.onnx"))[0])
    (relu,) = [n for n in g.nodes() if isinstance(g.payload(n), ops.Relu)]
    assert isinstance(g.payload(g.consumers(relu)[0]), ops.MaxPool)


def _compile(graph, calib, **kw):
    return compile_graph(graph, CompileContext(CompileOptions(**kw), calib_x=calib))


@pytest.mark.parametrize("name", sorted(torch_models()))
@pytest.mark.parametrize("normalization, granularity", [("percentile", "channel"), ("percentile", "layer"),
                                                        ("max", "layer"), ("model", "layer")])
def test_normalisation_keeps_ann_function(name, normalization, granularity, tmp_path):
    """The rate view of the normalised SNN (activations a / lambda) reproduces the ANN output exactly."""
    graph, _ = load_onnx(_export(torch_models()[name], tmp_path))
    calib = rand(32, 3, 12, 12, seed=7)
    result = _compile(graph, None if normalization == "model" else calib, normalization=normalization,
                      granularity=granularity)
    x = rand(5, 3, 12, 12, seed=8)
    ann = run_ann(graph, x)[graph.outputs[0]]
    out = result.snn.outputs[0]
    rate = run_rate(result.snn, x)[out] * result.snn.payload(out).scale
    assert (ann - rate).abs().max() <= TOL
    assert all(result.snn.payload(n).scale > 0 for n in result.snn.nodes())


def test_percentile_lambda_is_the_percentile_of_positive_activations(tmp_path):
    graph, _ = load_onnx(_export(torch_models()["relu6_avgpool"], tmp_path))
    calib = rand(64, 3, 12, 12, seed=9)
    ctx = CompileContext(CompileOptions(percentile=90.0), calib_x=calib)
    stats = calibrate(graph, ctx).meta["calibration"]["nodes"]
    (relu,) = [n for n in graph.nodes() if isinstance(graph.payload(n), ops.Relu)]
    acts = run_ann(graph, calib, keep=lambda n: n == relu)[relu].numpy().ravel()
    assert stats[relu]["max"] == pytest.approx(acts.max())
    assert stats[relu]["percentile"] == pytest.approx(np.percentile(acts[acts > 0], 90.0), rel=1e-6)


def test_channel_lambdas_are_per_channel_percentiles_and_set_channel_rates(tmp_path):
    """Channel-level normalisation (anytime-perception 5.2): channel c of a population fires at a_c / lambda_c,
    lambda_c the percentile of that channel's positive activations, also behind residual shortcuts."""
    graph, _ = load_onnx(_export(torch_models()["resnet_block_bn"], tmp_path))
    calib = rand(24, 3, 12, 12, seed=9)      # 24 x 12 x 12 positions per channel: below the subsampling bound
    result = _compile(graph, calib, percentile=99.0)
    snn, ann = result.snn, result.ann
    acts = run_ann(ann, calib, keep=lambda n: True)
    rates = run_rate(snn, calib, keep=lambda n: True)
    checked = 0
    for name in snn.nodes():
        node = snn.payload(name)
        if not isinstance(node, Population) or node.readout != "spike":
            continue
        a = acts[node.source_node].numpy()
        lam = np.asarray(snn.meta["lambdas"][name])
        assert lam.shape == (node.shape[0],)
        for c in range(node.shape[0]):
            pos = a[:, c][a[:, c] > 0]
            expected = np.percentile(pos, 99.0) if pos.size else np.percentile(a[a > 0], 99.0)  # silent: layer's
            assert lam[c] == pytest.approx(expected, rel=1e-5)
        assert np.abs(rates[name].numpy() * lam.reshape(1, -1, 1, 1) - a).max() <= TOL
        checked += 1
    assert checked == 5     # the stem and both convolutions of both residual blocks


def test_rescaling_a_channel_changes_only_its_rate(tmp_path):
    """eta_j on incoming weights and bias, 1 / eta_j on outgoing ones (Fig. 3a): the output is unchanged and
    only channel j's rate moves, through convolutions, identity shortcuts and global pooling."""
    from neurocc.passes.rescale import rescale
    graph, _ = load_onnx(_export(torch_models()["resnet_block_bn"], tmp_path))
    snn = _compile(graph, rand(16, 3, 12, 12)).snn
    x = rand(6, 3, 12, 12, seed=4)
    before = run_rate(snn, x, keep=lambda n: True)
    for name in [n for n in snn.nodes() if snn.nx.in_degree(n) == 2][:1] + [snn.topo_order()[1]]:
        eta = np.ones(snn.shape(name)[0])
        eta[3] = 2.5
        after = run_rate(rescale(snn, {name: eta}), x, keep=lambda n: True)
        out = snn.outputs[0]
        assert (after[out] - before[out]).abs().max() <= TOL
        expected = before[name].clone()
        expected[:, 3] *= 2.5
        assert (after[name] - expected).abs().max() <= TOL


def test_residual_add_relu_is_one_population_fed_by_both_paths(tmp_path):
    """Each block's Add + ReLU is one population with two projections: the block's second convolution from
    the block's inner population, and the weightless shortcut from the block's input population."""
    graph, _ = load_onnx(_export(torch_models()["resnet_block_bn"], tmp_path))
    result = _compile(graph, rand(16, 3, 12, 12))
    snn, ann = result.snn, result.ann
    adds = [n for n in ann.nodes() if isinstance(ann.payload(n), ops.Add)]
    assert len(adds) == 2
    for add in adds:
        (relu,) = ann.consumers(add)
        conv_in, shortcut_in = ann.inputs_of(add)               # conv2 (after BN folding) and the block input
        inner = ann.inputs_of(conv_in)[0]                       # the block's first ReLU
        (pop,) = [n for n in snn.nodes() if getattr(snn.payload(n), "source_node", None) == relu]
        incoming = {src: proj for src, _, proj in snn.projections(pop)}
        assert set(incoming) == {inner, shortcut_in} and snn.nx.in_degree(pop) == 2
        (conv,) = [op for op in incoming[inner].ops if isinstance(op, ops.Conv)]
        assert conv.weight.shape == (8, 8, 3, 3)
        assert not any(isinstance(op, (ops.Conv, ops.Gemm)) for op in incoming[shortcut_in].ops)


def test_verifier_rejects_inconsistent_graphs():
    graph, _ = load_onnx(MNIST8)
    broken = graph.copy()
    conv = next(n for n in broken.nodes() if isinstance(broken.payload(n), ops.Conv))
    op = broken.payload(conv)
    broken.set_payload(conv, dataclasses.replace(op, weight=op.weight[:, :, :3, :3]))
    with pytest.raises(VerificationError, match="shape"):
        verify(broken)
    cyclic = graph.copy()
    cyclic.nx.add_edge(graph.outputs[0], graph.topo_order()[1], port=5)
    with pytest.raises(VerificationError, match="cycle"):
        verify(cyclic)


class TwoHeads(nn.Module):
    """An intermediate-prediction head (GAP + FC after block 1) beside the final head."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.head1, self.head2 = nn.Linear(8, 10), nn.Linear(8, 10)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        return self.head2(b.mean((2, 3))), self.head1(a.mean((2, 3)))


def test_several_outputs_become_several_readouts(tmp_path):
    x = torch.from_numpy(rand(2, 3, 12, 12, seed=1))
    path = tmp_path / "heads.onnx"
    torch.onnx.export(TwoHeads().eval(), (x,), str(path), input_names=["x"], output_names=["final", "ip"],
                      dynamic_axes={"x": {0: "N"}}, dynamo=False)
    graph, _ = load_onnx(path)
    assert graph.outputs == ("final", "ip")
    snn = _compile(graph, rand(16, 3, 12, 12)).snn
    assert snn.outputs == ("final", "ip")
    xs = rand(3, 3, 12, 12, seed=2)
    ann, rate = run_ann(graph, xs), run_rate(snn, xs)
    for o in ("final", "ip"):
        assert snn.payload(o).readout == "accumulate"
        assert (ann[o] - rate[o]).abs().max() <= TOL
