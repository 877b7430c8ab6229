"""neurocc.train.snn: BNTT (bntt eq. 9, Algorithm 1), the spiking neuron and MPR (srif §3), BPTT training on
real data, and the one-step ONNX export of the trained-SNN spec, run step by step from the spec's text."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from sklearn.datasets import load_digits
from torch import nn

from neurocc.errors import NeuroccError
from neurocc.train import (BNTT, SpikingNet, SpikingNeuron, ann_cnn, bntt_cnn, export_snn_onnx, mpr,
                           snn_predictions, srif_cnn, train_snn)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0          # 1797 × 1 × 8 × 8 in [0, 1]
    return x[:1400], d.target[:1400], x[1400:], d.target[1400:]


def run_neuron(neuron: SpikingNeuron, inputs) -> tuple:
    """Spikes and the potential after each step, for one neuron fed ``inputs``."""
    neuron.reset_state()
    spikes, potentials = [], []
    for x in inputs:
        spikes.append(float(neuron(torch.tensor([x], dtype=torch.float32))))
        potentials.append(float(neuron.v))
    return spikes, potentials


# the neuron: V ← λV + x; s = V ≥ θ; V ← V − θs or 0
def test_subtract_and_zero_reset_with_leak_follow_the_hand_worked_trace():
    inputs = [0.75, 0.75, 0.75, 2.5, 0.125]                  # θ = 1, λ = ½: every value exact in float32
    # subtract: 0.75 | 0.375+0.75=1.125 fire → 0.125 | 0.0625+0.75=0.8125 | 0.40625+2.5=2.90625 fire → 1.90625
    #           | 0.953125+0.125=1.078125 fire → 0.078125
    assert run_neuron(SpikingNeuron(1.0, 0.5, "subtract"), inputs) == (
        [0, 1, 0, 1, 1], [0.75, 0.125, 0.8125, 1.90625, 0.078125])
    # zero: 0.75 | 1.125 fire → 0 | 0.75 | 0.375+2.5=2.875 fire → 0 | 0.125
    assert run_neuron(SpikingNeuron(1.0, 0.5, "zero"), inputs) == ([0, 1, 0, 1, 0], [0.75, 0, 0.75, 0, 0.125])


def test_compare_v0_and_threshold():
    assert run_neuron(SpikingNeuron(1.0, compare=">="), [1.0])[0] == [1]      # V = θ fires with ≥ only
    assert run_neuron(SpikingNeuron(1.0, compare=">"), [1.0])[0] == [0]
    assert run_neuron(SpikingNeuron(2.0, v0=0.5), [1.0, 0.0]) == ([1, 0], [0.0, 0.0])   # V(0) = v0·θ = 1
    assert run_neuron(SpikingNeuron(2.0, leak=0.5, v0=0.5), [1.0]) == ([0], [1.5])      # the leak acts on V(0)
    for bad, match in [(dict(threshold=0), "threshold"), (dict(leak=1.5), "leak"), (dict(reset="hard"), "reset"),
                       (dict(compare="<"), "compare")]:
        with pytest.raises(NeuroccError, match=match):
            SpikingNeuron(**bad)


def test_srif_neuron_reproduces_the_papers_figure_2():
    """srif §3.1: inputs 1.5, 1.2, 1.5, 0.9, 1.4 × V_th; SRIF fires 3 times, the hard-reset IF 4 times.
    With V_th = ½ (spike value 1), SRIF is θ = 1 with V(0) = ½; the hard-reset IF is θ = ½, reset to 0."""
    inputs = [0.5 * k for k in (1.5, 1.2, 1.5, 0.9, 1.4)]
    assert run_neuron(SpikingNeuron(1.0, v0=0.5, mpr=True), inputs)[0] == [1, 0, 1, 1, 0]
    assert sum(run_neuron(SpikingNeuron(0.5, reset="zero"), inputs)[0]) == 4


# MPR, srif §3.2
def test_mpr_is_continuous_increasing_spike_approaching_and_fixes_the_threshold():
    x = torch.tensor([-3.0, -0.5, -0.25, 0.0, 0.25, 0.5, 2.0])       # x = u − ½
    u = x + 0.5
    phi = mpr(x) + 0.5
    m = u[1:6].numpy() - 0.5
    expected_middle = 2 ** (-2 / 3) * np.sign(m) * np.abs(m) ** (1 / 3) + 0.5
    np.testing.assert_allclose(phi[1:6], expected_middle, atol=1e-6)
    np.testing.assert_allclose(phi[[1, 3, 5]], [0.0, 0.5, 1.0], atol=1e-6)       # φ(0) = 0, φ(½) = ½, φ(1) = 1
    assert float(phi[0]) == pytest.approx(1 - 3.5 ** (1 / 3)) and float(phi[6]) == 2.5
    assert (torch.diff(mpr(torch.linspace(-4, 4, 10001))) > 0).all()
    spike = (u >= 0.5).float()
    inside = (u >= 0) & (u <= 1)
    assert ((phi - spike).abs() <= (u - spike).abs() + 1e-7)[inside].all()


def test_mpr_changes_the_gradient_but_never_a_spike():
    torch.manual_seed(0)
    currents = torch.randn(30, 4000) * 0.7 + 0.3
    currents[0, :50], currents[1:, :50] = 0.5, 1.0        # from V(0) = ½, potentials landing exactly on θ = 1
    runs = []
    for rectify in (False, True):
        neuron = SpikingNeuron(1.0, v0=0.5, mpr=rectify, alpha=1.0)
        x = currents.clone().requires_grad_()
        spikes = torch.stack([neuron(c) for c in x])
        spikes.sum().backward()
        runs.append((spikes.detach(), neuron.v.detach(), x.grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0].sum() > 0 and not torch.allclose(runs[0][2], runs[1][2])
    assert torch.isfinite(runs[1][2]).all()


# BNTT, eq. 9 and Algorithm 1
def test_bntt_normalises_each_step_by_its_own_batch_and_updates_only_that_steps_statistics():
    torch.manual_seed(0)
    bn = BNTT(3, steps=2, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.gamma.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.25, 4.0]]))
    for shape, dims in [((16, 3, 4, 5), (0, 2, 3)), ((16, 3), (0,))]:
        bn.running_mean.zero_(), bn.running_var.fill_(1.0)
        x = torch.randn(*shape) * 3 + 2
        y = bn.train()(x, 2)
        view = (1, 3) + (1,) * (len(shape) - 2)
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        expected = bn.gamma[1].view(view) * (x - mean.view(view)) / torch.sqrt(var.view(view) + 1e-5)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_mean, torch.stack([torch.zeros(3), 0.1 * mean]))
        torch.testing.assert_close(bn.running_var, torch.stack([torch.ones(3), 0.9 + 0.1 * x.var(dims)]))


def test_bntt_uses_row_min_t_s_and_the_last_row_holds_past_the_trained_steps():
    torch.manual_seed(1)
    bn = BNTT(2, steps=3, eps=1e-4).eval()
    with torch.no_grad():
        bn.gamma.copy_(torch.rand(3, 2) + 0.5)
        bn.running_mean.copy_(torch.randn(3, 2))
        bn.running_var.copy_(torch.rand(3, 2) + 0.1)
    x = torch.randn(5, 2, 3, 3)
    for t in range(1, 7):
        i = min(t, 3) - 1
        g, m, v = (p[i].view(1, 2, 1, 1) for p in (bn.gamma, bn.running_mean, bn.running_var))
        torch.testing.assert_close(bn(x, t), g * (x - m) / torch.sqrt(v + 1e-4))
    with pytest.raises(NeuroccError, match="cannot train at step 4"):
        bn.train()(x, 4)
    with pytest.raises(NeuroccError, match="count from 1"):
        bn(x, 0)


# the network and training
def test_the_net_runs_step_by_step_as_a_loop_over_its_layers_would():
    torch.manual_seed(2)
    net = bntt_cnn(1, 8, widths=(4, 6), steps=3).eval()
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        got = net.step_logits(x, 5)
        for m in net.layers:
            if isinstance(m, SpikingNeuron):
                m.reset_state()
        for t in range(1, 6):
            h = x
            for m in net.layers:
                h = m(h, t) if isinstance(m, BNTT) else m(h)
            torch.testing.assert_close(got[t - 1], h)
    torch.testing.assert_close(net(x, 5), got.sum(0))
    preds = snn_predictions(net, x, 5, batch_size=2)
    assert preds.shape == (5, 5)
    np.testing.assert_array_equal(preds, got.cumsum(0).argmax(-1).T.numpy())


def test_nets_refuse_what_they_cannot_run():
    with pytest.raises(NeuroccError, match="cannot hold ReLU"):
        SpikingNet([nn.ReLU(), nn.Linear(2, 2)], 2)
    with pytest.raises(NeuroccError, match="ends in the output layer"):
        SpikingNet([nn.Linear(2, 2), SpikingNeuron()], 2)
    with pytest.raises(NeuroccError, match="3 steps of statistics, the net 2"):
        SpikingNet([BNTT(2, 3), nn.Linear(2, 2)], 2)
    neuron = SpikingNeuron()
    with pytest.raises(NeuroccError, match="appears twice"):
        SpikingNet([neuron, nn.Linear(2, 2), neuron, nn.Linear(2, 2)], 2)


@pytest.mark.parametrize("method", ["bntt", "srif"])
def test_bptt_training_on_digits_beats_chance_clearly(digits, method):
    x, y, x_test, y_test = digits
    torch.manual_seed(0)
    net = (bntt_cnn(1, 8, widths=(8,), steps=4) if method == "bntt" else srif_cnn(1, 8, widths=(8,), steps=4))
    train_snn(net, x, y, epochs=4, lr=1e-2, batch_size=64, seed=0)
    accuracy = (snn_predictions(net, x_test, 8) == y_test[:, None]).mean(0)
    assert accuracy[3] > 0.8 and accuracy[7] > 0.8, accuracy          # chance is 0.1


def test_ann_twin_has_the_same_layers_with_bn_and_relu():
    ann, snn = ann_cnn(1, 8, widths=(4, 6)), srif_cnn(1, 8, widths=(4, 6))
    assert [type(m).__name__ for m in ann] == [type(m).__name__.replace("SpikingNeuron", "ReLU")
                                               for m in snn.layers]


# ONNX export, checked against the spec by running the one-step graph T times
class Spike(OpRun):
    """neurocc.Spike as the spec words it, holding V between runs of the evaluator."""
    op_domain = "neurocc"

    def _run(self, x, threshold=None, leak=None, reset=None, compare=None, v0=None):
        if not hasattr(self, "v"):
            self.v = np.full_like(x, v0 * threshold)
        self.v = leak * self.v + x
        s = self.v >= threshold if compare == ">=" else self.v > threshold
        self.v = self.v - threshold * s if reset == "subtract" else np.where(s, 0, self.v)
        return (s.astype(np.float32),)


class SpecBNTT(OpRun):
    """neurocc.BNTT as the spec words it: row min(t, S) − 1 at step t, counting its own runs."""
    op_domain = "neurocc"

    def _run(self, x, gamma, mean, var, epsilon=None):
        self.t = getattr(self, "t", 0) + 1
        i = min(self.t, len(gamma)) - 1
        view = (1, -1) + (1,) * (x.ndim - 2)
        return ((gamma[i].reshape(view) * (x - mean[i].reshape(view)) / np.sqrt(var[i].reshape(view) + epsilon))
                .astype(np.float32),)


SpecBNTT.__name__ = "BNTT"          # the evaluator finds an op's class by (op_domain, class name)


def run_spec(path, x: np.ndarray, steps: int) -> np.ndarray:
    evaluator = ReferenceEvaluator(str(path), new_ops=[Spike, SpecBNTT])
    return np.stack([evaluator.run(None, {"x": x})[0] for _ in range(steps)])


def trained_a_little(net: SpikingNet, x: np.ndarray) -> SpikingNet:
    """A few training passes so that γ and the running statistics are not their initial values."""
    return train_snn(net, x[:200], np.arange(200) % 10, epochs=1, lr=0.05, batch_size=50)


@pytest.mark.parametrize("method", ["bntt", "srif"])
def test_export_writes_the_spec_graph_and_running_it_gives_the_models_logits(digits, tmp_path, method):
    x = digits[0]
    torch.manual_seed(3)
    build = bntt_cnn if method == "bntt" else srif_cnn
    net = trained_a_little(build(1, 8, widths=(4, 6), steps=3), x)
    path = export_snn_onnx(net, tmp_path / f"{method}.onnx", (1, 8, 8), method)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {o.domain: o.version for o in proto.opset_import} == {"": 17, "neurocc": 1}
    assert {p.key: p.value for p in proto.metadata_props} == {"neurocc.time_steps": "3", "neurocc.method": method}
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["N", 1, 8, 8]
    assert [o.name for o in proto.graph.output] == ["logits"]
    norm = "BNTT" if method == "bntt" else "BatchNormalization"
    assert [n.op_type for n in proto.graph.node] == ["Conv", norm, "Spike", "AveragePool"] * 2 + ["Flatten", "Gemm"]
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert inits.keys() <= state.keys()
    for name, value in inits.items():
        np.testing.assert_array_equal(value, state[name])
    for node, layer in zip(proto.graph.node, net.layers):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Spike":
            assert node.domain == "neurocc"
            assert attrs == {"threshold": layer.threshold, "leak": pytest.approx(layer.leak), "reset":
                             layer.reset.encode(), "compare": layer.compare.encode(), "v0": layer.v0}
        if node.op_type == "BNTT":
            assert node.domain == "neurocc" and attrs == {"epsilon": pytest.approx(1e-4)}
            assert [inits[i].shape for i in node.input[1:]] == [(3, layer.channels)] * 3
    x_test = digits[2][:40]
    with torch.no_grad():
        expected = net.step_logits(torch.from_numpy(x_test), 5).numpy()      # past S = 3: the last row holds
    got = run_spec(path, x_test, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_export_refuses_layers_without_an_onnx_form(tmp_path):
    net = SpikingNet([nn.Conv2d(1, 2, 3, padding="same"), SpikingNeuron(), nn.Flatten(), nn.Linear(128, 2)], 2)
    with pytest.raises(NeuroccError, match="only numeric zero padding exports"):
        export_snn_onnx(net, tmp_path / "bad.onnx", (1, 8, 8), "other")
    assert not (tmp_path / "bad.onnx").exists()
