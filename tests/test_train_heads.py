"""neurocc.train.heads: IP heads, the τ(e) schedule and C of bayesian-fusion eq. 19-21, training, ONNX export."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import onnx
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from neurocc.errors import NeuroccError
from neurocc.frontend.onnx import load_onnx
from neurocc.options import CompileOptions
from neurocc.pipeline import CompileContext, compile_graph
from neurocc.train import (accuracies, add_heads, export_onnx, fit_linear_heads, head_cost_ratio, tau,
                           train_with_heads)
from conftest import run_ort


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def digits_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(block1=conv_bn_relu(1, 8), block2=conv_bn_relu(8, 16), pool=nn.AvgPool2d(2),
                                     flatten=nn.Flatten(), fc=nn.Linear(16 * 4 * 4, 10)))


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0
    return x[:1400], d.target[:1400], x[1400:], d.target[1400:]


@pytest.fixture(scope="module")
def trained(digits):
    x, y, _, _ = digits
    model = add_heads(digits_cnn(), ["block1", "block2"], x[:4])
    history = train_with_heads(model, x, y, epochs=6, batch_size=64, lr=3e-3, seed=0)
    return model, history


# τ(e), eq. 20
@pytest.mark.parametrize("c", [0.3, 0.005, 1.0])
def test_tau_rises_linearly_from_0_01_at_the_first_epoch_to_c_at_the_last(c):
    epochs = 120                                    # the paper's schedule length
    taus = np.array([tau(e, epochs, c) for e in range(epochs)])
    assert taus[0] == pytest.approx(0.01) and taus[-1] == pytest.approx(c)
    assert np.allclose(np.diff(taus), (c - 0.01) / (epochs - 1))
    # eq. 20 with its 120 replaced by the schedule's last epoch index
    assert np.allclose(taus, 0.01 + np.arange(epochs) / (epochs - 1) * (c - 0.01))


def test_tau_of_one_epoch_is_c_and_epochs_out_of_range_are_refused():
    assert tau(0, 1, 0.4) == 0.4
    with pytest.raises(NeuroccError, match="epoch 5 is outside 0..4"):
        tau(5, 5, 0.4)


# C, eq. 21
def known_net() -> nn.Sequential:
    """8×8 input. conv a: 1→4, 3×3, pad 1: 4·64 outputs × 9 = 2304 MACs; conv b: 4→6, 3×3, stride 2, pad 1:
    6·16 outputs × 36 = 3456 MACs; fc: 96 → 10: 960 MACs. Total 6720."""
    return nn.Sequential(OrderedDict(
        a=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
        b=nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU()),
        flatten=nn.Flatten(), fc=nn.Linear(96, 10)))


def test_cost_ratio_is_the_hand_counted_mac_ratio():
    net, x = known_net(), torch.rand(3, 1, 8, 8)
    assert head_cost_ratio(net, "a", x) == pytest.approx(2304 / 6720)
    assert head_cost_ratio(net, "b", x) == pytest.approx((2304 + 3456) / 6720)
    assert head_cost_ratio(net, "b.0", x) == pytest.approx((2304 + 3456) / 6720)
    assert head_cost_ratio(net, "flatten", x) == pytest.approx((2304 + 3456) / 6720)


def test_cost_ratio_of_a_headed_model_counts_its_head_but_no_head_in_the_whole_net():
    net, x = known_net(), torch.rand(3, 1, 8, 8)
    model = add_heads(net, ["a", "b", "flatten"], x)
    assert head_cost_ratio(model, "a", x) == pytest.approx((2304 + 4 * 10) / 6720)      # GAP + Linear(4, 10)
    assert head_cost_ratio(model, "b", x) == pytest.approx((2304 + 3456 + 6 * 10) / 6720)
    assert head_cost_ratio(model, "flatten", x) == pytest.approx((2304 + 3456 + 96 * 10) / 6720)  # N×F: Linear
    assert [tuple(o.shape) for o in model(x)] == [(3, 10)] * 4


# bad input
def test_bad_blocks_are_refused_in_one_line_naming_them():
    net, x = known_net(), torch.rand(2, 1, 8, 8)
    with pytest.raises(NeuroccError, match="no block named 'c'") as e:
        add_heads(net, ["a", "c"], x)
    assert "\n" not in str(e.value)
    with pytest.raises(NeuroccError, match="no block named 'bb'; did you mean 'b'"):
        head_cost_ratio(net, "bb", x)
    with pytest.raises(NeuroccError, match="block '' is the whole model"):
        add_heads(net, [""], x)
    with pytest.raises(NeuroccError, match="named twice"):
        add_heads(net, ["a", "a"], x)
    model = add_heads(net, ["a"], x)
    with pytest.raises(NeuroccError, match="no head on block 'b' \\(heads on: a\\)"):
        head_cost_ratio(model, "b", x)
    with pytest.raises(NeuroccError, match="no cost ratio C given for head 'head_a'"):
        train_with_heads(model, x, [0, 1], epochs=1, cost_ratios={"head_b": 0.5})


def test_a_block_without_4d_or_2d_features_or_run_twice_is_refused():
    seq = nn.Sequential(OrderedDict(conv=nn.Conv1d(1, 2, 3), relu=nn.ReLU(), flatten=nn.Flatten(),
                                    fc=nn.Linear(2 * 6, 3)))
    with pytest.raises(NeuroccError, match=r"block 'conv' outputs \(2, 2, 6\); a head needs N×C×H×W or N×F"):
        add_heads(seq, ["conv"], torch.rand(2, 1, 8))

    class Twice(nn.Module):                   # one ReLU module applied twice, as in torchvision's BasicBlock
        def __init__(self):
            super().__init__()
            self.conv, self.relu, self.fc = nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Linear(2, 3)

        def forward(self, x):
            return self.fc(self.relu(self.conv(self.relu(x))).mean((2, 3)))

    with pytest.raises(NeuroccError, match="block 'relu' runs more than once"):
        add_heads(Twice(), ["relu"], torch.rand(2, 1, 4, 4))


# training, eq. 19
def test_training_with_heads_lowers_the_final_and_head_losses(digits, trained):
    x, y, x_test, y_test = digits
    model, history = trained
    first, last = history[0], history[-1]
    assert last.loss_final < 0.5 * first.loss_final
    for h in ("head_block1", "head_block2"):
        assert last.loss_heads[h] < first.loss_heads[h]
    c = {h: head_cost_ratio(model, b, x[:1]) for h, b in zip(model.head_names, model.blocks)}
    assert [e.tau for e in history] == [{h: tau(e, 6, c[h]) for h in c} for e in range(6)]
    acc = accuracies(model, x_test, y_test)
    assert acc["final"] > 0.85 and acc["head_block2"] > 0.3, acc


def test_training_repeats_with_the_same_seed(digits):
    x, y = digits[0][:300], digits[1][:300]
    runs = [train_with_heads(add_heads(digits_cnn(), ["block1"], x[:4]), x, y, epochs=2, seed=3) for _ in range(2)]
    assert runs[0] == runs[1]


def test_fitted_head_is_the_ridge_least_squares_solution_on_pooled_features(digits, trained):
    x, y, x_test, y_test = digits
    backbone = trained[0].backbone
    fitted = fit_linear_heads(backbone, ["block2"], x, y, ridge=1e-2)
    assert not backbone.training and not fitted.training          # eval mode kept: BN on running statistics
    with torch.no_grad():
        pooled = backbone.block2(backbone.block1(torch.from_numpy(x))).mean((2, 3)).double().numpy()
    f = np.hstack([pooled, np.ones((len(x), 1))])
    penalty = 1e-2 * len(x) * np.diag([1.0] * pooled.shape[1] + [0.0])
    w = np.linalg.solve(f.T @ f + penalty, f.T @ np.eye(10)[y])
    linear = fitted.heads["head_block2"][-1]
    np.testing.assert_allclose(linear.weight.detach().numpy(), w[:-1].T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(linear.bias.detach().numpy(), w[-1], rtol=1e-4, atol=1e-5)
    assert accuracies(fitted, x_test, y_test)["head_block2"] > 0.5


# export and compile
def test_exported_onnx_matches_torch_on_every_output(digits, trained, tmp_path):
    x_test = digits[2][:64]
    model, _ = trained
    path = export_onnx(model, tmp_path / "heads.onnx", x_test)
    proto = onnx.load(str(path))
    assert [o.name for o in proto.graph.output] == ["logits", "head_block1", "head_block2"]
    assert any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    with torch.no_grad():
        expected = [o.numpy() for o in model(torch.from_numpy(x_test))]
    got = run_ort(path, x_test)
    assert len(got) == 3
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def test_export_names_heads_as_asked_and_refuses_a_wrong_count(digits, trained, tmp_path):
    model, _ = trained
    path = export_onnx(model, tmp_path / "named.onnx", digits[2][:1], head_names=["early", "middle"])
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["logits", "early", "middle"]
    with pytest.raises(NeuroccError, match="1 head names given for 2 heads"):
        export_onnx(model, tmp_path / "bad.onnx", digits[2][:1], head_names=["early"])


def test_compiled_snn_reads_out_the_final_output_first_then_the_heads(digits, trained, tmp_path):
    x, _, _, _ = digits
    model, _ = trained
    graph, _ = load_onnx(export_onnx(model, tmp_path / "heads.onnx", x[:1]))
    snn = compile_graph(graph, CompileContext(CompileOptions(target="reference"), calib_x=x[:256])).snn
    assert snn.outputs == ("logits", "head_block1", "head_block2")
