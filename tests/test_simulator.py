"""The reference simulator: hand-worked neuron dynamics, max-pool gate, delays, Poisson coding, events,
independence of blocking and batching, and conversion accuracy on real data (scikit-learn digits)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_same_trace
from neurocc.backends.reference.simulator import Simulator
from neurocc.decode import predictions
from neurocc.ir import Graph, ops, verify
from neurocc.ir.coding import Poisson, poisson_spikes
from neurocc.ir.neurons import IF
from neurocc.ir.snn import InputSource, Population, Projection
from neurocc.ir.synapses import fan_out


def one_neuron(current: float, reset="subtract", v0=0.0, delay=0) -> Graph:
    """input (1 value) --w=1--> one IF neuron --w=1--> accumulator."""
    g = Graph("snn", inputs=["x"], outputs=["out"])
    g.add_node("x", InputSource(shape=(1,)), (1,))
    g.add_node("n", Population(shape=(1,), bias=np.zeros(1), neuron=IF(reset=reset, v0=v0)), (1,))
    g.add_node("out", Population(shape=(1,), bias=np.zeros(1), readout="accumulate"), (1,))
    g.add_projection("x", "n", Projection(ops=(ops.Gemm(weight=[[1.0]]),)))
    g.add_projection("n", "out", Projection(ops=(ops.Gemm(weight=[[1.0]]),), delay=delay))
    verify(g)
    return g


def spike_steps(g: Graph, x: float, steps: int, name="n", **kw) -> list[int]:
    """1-based steps at which population ``name`` spiked, recovered from the trace's per-step counts."""
    trace = Simulator(g, **kw).run(np.array([[x]], np.float32), steps)
    return [t + 1 for t, c in enumerate(trace.spikes[name][:, 0]) if c]


@pytest.mark.parametrize("current, reset, v0, expected", [
    # V: .25 .5 .75 1.0(spike, -> 0) ...: every 4th step
    (0.25, "subtract", 0.0, [4, 8, 12]),
    # V0 = 0.5: .75 1.0(spike) .25 .5 .75 1.0(spike) ...
    (0.25, "subtract", 0.5, [2, 6, 10]),
    # subtract keeps the residue: .375 .75 1.125(s) .125 .5 .875 1.25(s) .25 .625 1.0(s) 0 .375 .75 1.125(s)
    (0.375, "subtract", 0.0, [3, 6, 8, 11]),
    # reset to zero loses it: .375 .75 1.125(s) 0 -> .375 .75 1.125(s) ...
    (0.375, "zero", 0.0, [3, 6, 9, 12]),
])
def test_if_neuron_hand_worked(current, reset, v0, expected):
    assert spike_steps(one_neuron(current, reset, v0), current, 12) == expected


@pytest.mark.parametrize("delay", [0, 1, 2, 3, 4])
def test_accumulator_readout_and_delay(delay):
    """Spikes at steps 4, 8, 12 reach the accumulator ``delay`` steps later: its potential after step t counts
    the spikes sent at or before t - delay, at every step and for any blocking of time."""
    g = one_neuron(0.25, delay=delay)
    sim = Simulator(g)
    expected = [sum(1 for s in (4, 8, 12) if s + delay <= t) for t in range(1, 13)]
    for block in (None, 1, 3, 5):
        trace = sim.run(np.array([[0.25]], np.float32), 12, block=block)
        assert trace.readouts["out"].potential[:, 0, 0].tolist() == expected


def gate_graph() -> Graph:
    """input 1x2x2 --> IF population (identity weights) --gated max-pool 2x2--> accumulator."""
    g = Graph("snn", inputs=["x"], outputs=["out"])
    g.add_node("x", InputSource(shape=(1, 2, 2)), (1, 2, 2))
    g.add_node("n", Population(shape=(1, 2, 2), bias=np.zeros((1, 2, 2))), (1, 2, 2))
    g.add_node("out", Population(shape=(1, 1, 1), bias=np.zeros((1, 1, 1)), readout="accumulate"), (1, 1, 1))
    g.add_projection("x", "n", Projection(ops=()))
    g.add_projection("n", "out", Projection(ops=(ops.MaxPool(kernel=(2, 2), strides=(2, 2)),)))
    verify(g)
    return g


def test_maxpool_gate_passes_the_running_maximum():
    """Accumulated gate output == max over the window of accumulated input spikes, at every step."""
    rates = np.array([[[[0.25, 0.5], [0.125, 0.375]]]], np.float32)
    g = gate_graph()
    steps = 16
    trace = Simulator(g).run(rates, steps, block=5)
    counts = np.floor(np.arange(1, steps + 1)[:, None] * rates.reshape(1, -1) + 1e-9)   # exact IF counts, V0 = 0
    # the accumulator holds the number of gated spikes: the window's largest spike count, after every step
    assert np.array_equal(trace.readouts["out"].potential[:, 0, 0], counts.max(axis=1))
    assert np.array_equal(np.cumsum(trace.spikes["n"][:, 0]), counts.sum(axis=1))


def test_results_do_not_depend_on_blocking_or_batching():
    """Dyadic weights and inputs make float sums exact, so any difference would be a simulator bug."""
    rng = np.random.default_rng(0)
    g = Graph("snn", inputs=["x"], outputs=["out"])
    g.add_node("x", InputSource(shape=(2, 4, 4)), (2, 4, 4))
    w = rng.integers(-8, 9, (3, 2, 3, 3)) / 16
    g.add_node("a", Population(shape=(3, 4, 4), bias=rng.integers(-2, 3, (3, 4, 4)) / 32, neuron=IF(v0=0.5)), (3, 4, 4))
    g.add_node("b", Population(shape=(3, 2, 2), bias=np.zeros((3, 2, 2)), neuron=IF(reset="zero")), (3, 2, 2))
    g.add_node("out", Population(shape=(4,), bias=np.zeros(4), readout="accumulate"), (4,))
    g.add_projection("x", "a", Projection(ops=(ops.Conv(weight=w, pads=(1, 1, 1, 1)),)))
    g.add_projection("a", "b", Projection(ops=(ops.MaxPool(kernel=(2, 2), strides=(2, 2)),), delay=1))
    g.add_projection("a", "b", Projection(ops=(ops.AvgPool(kernel=(2, 2), strides=(2, 2)),), delay=3))
    g.add_projection("b", "out", Projection(ops=(ops.Flatten(), ops.Gemm(weight=rng.integers(-4, 5, (4, 12)) / 8))))
    verify(g)
    x = (rng.integers(0, 17, (9, 2, 4, 4)) / 16).astype(np.float32)
    sim = Simulator(g)
    ref = sim.run(x, 20, batch_size=9, block=20)
    for batch, block in [(1, 1), (4, 7), (9, 3)]:
        assert_same_trace(sim.run(x, 20, batch_size=batch, block=block), ref)


def test_poisson_coding_is_reproducible_and_batch_independent():
    x = torch.linspace(-1, 1, 50).reshape(2, 25)
    ids = torch.tensor([10, 11])
    steps = torch.arange(1, 201)
    a = poisson_spikes(x, ids, steps, seed=3)
    b = poisson_spikes(x[1:], ids[1:], steps, seed=3)
    assert torch.equal(a[:, 1:], b)                      # same sample, other batch: same spikes
    assert torch.equal(a[50:], poisson_spikes(x, ids, steps[50:], seed=3))   # other time block: same
    assert not torch.equal(a, poisson_spikes(x, ids, steps, seed=4))
    assert set(a.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.all(torch.sign(a.sum(0)) * torch.sign(x) >= 0)


def test_poisson_rate_matches_probability():
    p = torch.full((1, 4000), 0.3)
    s = poisson_spikes(p, torch.tensor([0]), torch.arange(1, 51), seed=0)
    rate = s.mean().item()
    assert abs(rate - 0.3) < 4 * np.sqrt(0.3 * 0.7 / s.numel())


def test_synaptic_events_are_spikes_times_fan_out():
    g = Graph("snn", inputs=["x"], outputs=["out"])
    g.add_node("x", InputSource(shape=(3,)), (3,))
    g.add_node("n", Population(shape=(3,), bias=np.zeros(3)), (3,))
    g.add_node("out", Population(shape=(2,), bias=np.zeros(2), readout="accumulate"), (2,))
    g.add_projection("x", "n", Projection(ops=()))
    g.add_projection("n", "out", Projection(ops=(ops.Gemm(weight=[[1.0, 0.0, 2.0], [0.5, 0.0, 0.0]]),)))
    assert fan_out(g, "n").tolist() == [2.0, 0.0, 1.0]
    trace = Simulator(g).run(np.array([[1.0, 1.0, 0.5], [0.0, 1.0, 1.0]], np.float32), 4)
    # sample 0: neuron 0 spikes every step (2 synapses), neuron 1 every step (0), neuron 2 every other step (1)
    # sample 1: neuron 1 and 2 every step (0 + 1); per sample and step, the spikes' fan-outs
    assert trace.events["n"].tolist() == [[2, 1], [3, 1], [2, 1], [3, 1]]
    assert trace.spikes["n"].tolist() == [[2, 2], [3, 2], [2, 2], [3, 2]]
    assert trace.events.keys() == {"n"} and trace.spikes.keys() == {"n"}     # analog input current is not spikes


def test_a_global_average_pool_counts_one_synapse_per_covered_input():
    """GAP + Gemm (an intermediate head's read-out): each neuron of the map reaches every class once."""
    g = Graph("snn", inputs=["x"], outputs=["out"])
    g.add_node("x", InputSource(shape=(2, 4, 4)), (2, 4, 4))
    g.add_node("n", Population(shape=(2, 4, 4), bias=np.zeros((2, 4, 4))), (2, 4, 4))
    g.add_node("out", Population(shape=(3,), bias=np.zeros(3), readout="accumulate"), (3,))
    g.add_projection("x", "n", Projection(ops=()))
    g.add_projection("n", "out", Projection(ops=(ops.GlobalAvgPool(), ops.Flatten(),
                                                 ops.Gemm(weight=[[1.0, 0.0], [0.5, 2.0], [0.0, 1.0]]))))
    fan = fan_out(g, "n")
    assert fan[0].tolist() == np.full((4, 4), 2.0).tolist() and fan[1].tolist() == np.full((4, 4), 2.0).tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_on_exact_arithmetic():
    g = gate_graph()
    x = np.array([[[[0.25, 0.5], [0.125, 0.375]]]], np.float32)
    assert_same_trace(Simulator(g).run(x, 30), Simulator(g, device="cuda").run(x, 30))


def test_spike_count_readout_breaks_ties_by_potential():
    g = Graph("snn", inputs=["x"], outputs=["out"])
    g.add_node("x", InputSource(shape=(2,)), (2,))
    g.add_node("out", Population(shape=(2,), bias=np.zeros(2), readout="spike"), (2,))
    g.add_projection("x", "out", Projection(ops=()))
    trace = Simulator(g).run(np.array([[0.25, 0.375]], np.float32), 4, block=3)
    # counts stay 0:0 for two steps (class 1 has more potential), 0:1 at step 3, 1:1 at step 4 (V .0 vs .5)
    assert predictions(trace, "out")[:, 0].tolist() == [1, 1, 1, 1]
    trace = Simulator(g).run(np.array([[0.5, 0.375]], np.float32), 4, block=3)
    # V .5/.375 -> class 0; step 2 counts 1:0 -> 0; step 3 1:1, V .5 vs .125 -> 0; step 4 2:1 -> 0
    assert predictions(trace, "out")[:, 0].tolist() == [0, 0, 0, 0]


def _dense_net(reset: str) -> Graph:
    """input (20) -> 50 IF -> 30 IF -> accumulator (10), random weights and biases."""
    rng = np.random.default_rng(3)
    g = Graph("snn", inputs=["x"], outputs=["out"])
    g.add_node("x", InputSource(shape=(20,)), (20,))
    sizes = [("a", 50), ("b", 30)]
    prev, width = "x", 20
    for name, n in sizes:
        g.add_node(name, Population(shape=(n,), bias=rng.normal(0, 0.05, n), neuron=IF(reset=reset, v0=0.5)), (n,))
        g.add_projection(prev, name, Projection(ops=(ops.Gemm(weight=rng.normal(0, 0.3, (n, width))),)))
        prev, width = name, n
    g.add_node("out", Population(shape=(10,), bias=np.zeros(10), readout="accumulate"), (10,))
    g.add_projection(prev, "out", Projection(ops=(ops.Gemm(weight=rng.normal(0, 0.3, (10, width))),)))
    verify(g)
    return g


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("coding", ["analog", "poisson"])
def test_fused_kernel_matches_the_step_by_step_update(reset, coding):
    """The fused NL-IAF block kernel does IF.step's arithmetic: identical spikes, events and read-outs."""
    g = _dense_net(reset)
    x = np.random.default_rng(4).random((13, 20)).astype(np.float32)
    coding = Poisson(seed=0) if coding == "poisson" else None
    fused = Simulator(g, coding=coding, record_trains=True).run(x, 40, batch_size=5, block=7)
    plain = Simulator(g, coding=coding, record_trains=True, fused=False).run(x, 40, batch_size=5, block=7)
    assert_same_trace(fused, plain)
    assert fused.spikes["a"].sum() > 0 and fused.spikes["b"].sum() > 0
