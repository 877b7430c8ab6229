"""The TrueNorth core mapping against counts worked by hand: axons per input and weight type, packing into
256 x 256 cores, splitters for fan-out, their tick of delay in the simulated graph, and the limits named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import rand

from neurocc.backends import BACKENDS
from neurocc.backends.truenorth.mapping import map_cores, map_truenorth
from neurocc.hwmodels import load_hwmodel
from neurocc.ir import Graph, ops, verify
from neurocc.ir.neurons import TrueNorth
from neurocc.ir.executor import apply_chain
from neurocc.ir.snn import InputSource, Population, Projection
from neurocc.ir.synapses import synapse_matrix
from neurocc.pipeline import CompileContext
from neurocc.options import CompileOptions

HW = load_hwmodel("truenorth")
B = 5                                     # B_c of every channel: levels k * 5


def _dense(levels_1: np.ndarray, levels_2: np.ndarray = None) -> Graph:
    """x -> h (weights levels_1 * B) [-> out (levels_2 * B)], quantised for TrueNorth by hand."""
    g = Graph("snn", inputs=("x",), meta={"mode": "integer", "quantization": []})
    n_in, n_h = levels_1.shape[1], levels_1.shape[0]
    g.add_node("x", InputSource(shape=(n_in,), bits=8), (n_in,))
    neuron = TrueNorth(threshold=100.0)
    g.add_node("h", Population(shape=(n_h,), bias=np.zeros(n_h), neuron=neuron), (n_h,))
    g.add_projection("x", "h", Projection(ops=(ops.Gemm(weight=levels_1 * B),)))
    g.meta["quantization"].append({"population": "h", "source": "x", "key": 0, "level_steps": [B] * n_h})
    last = "h"
    if levels_2 is not None:
        n_out = levels_2.shape[0]
        g.add_node("out", Population(shape=(n_out,), bias=np.zeros(n_out), neuron=neuron), (n_out,))
        g.add_projection("h", "out", Projection(ops=(ops.Gemm(weight=levels_2 * B),), delay=1))
        g.meta["quantization"].append({"population": "out", "source": "h", "key": 0, "level_steps": [B] * n_out})
        last = "out"
    g.outputs = (last,)
    verify(g)
    return g


def test_an_input_takes_one_axon_per_weight_type_it_uses_on_a_core():
    # 8 neurons on one core; input i's weights to them use: i < 10: only +1 (one axon, +B); 10 <= i < 20: +3
    # (two, +A and +B); 20 <= i < 30: +1 and -2 on different neurons (two, +B and -A); 30 <= i < 40: all four
    levels = np.zeros((8, 40), np.int64)
    levels[:, :10] = 1
    levels[:, 10:20] = 3
    levels[:4, 20:30], levels[4:, 20:30] = 1, -2
    levels[:4, 30:40], levels[4:, 30:40] = 3, -3
    m = map_cores(_dense(levels), HW)
    (h,) = m.populations
    assert (h.cores, h.axons) == (1, 10 * 1 + 10 * 2 + 10 * 2 + 10 * 4)
    assert h.axon_utilisation == pytest.approx(90 / 256) and h.neuron_utilisation == pytest.approx(8 / 256)
    assert m.splitter_neurons == 0 and m.split_sources == ()      # inputs come from the host


def test_a_neuron_whose_inputs_need_more_axons_than_a_core_has_is_refused():
    def both_signs(inputs):          # neurons 0, 1 weigh every input +3 (+A, +B), neurons 2, 3 weigh it -3 (-A, -B)
        return np.repeat(np.array([[3], [3], [-3], [-3]]), inputs, axis=1)
    assert map_cores(_dense(both_signs(64)), HW).populations[0].axons == 256     # 64 inputs x 4 axons: exactly
    split = map_cores(_dense(both_signs(66)), HW).populations[0]    # 264 axons: the +3 pair and the -3 pair
    assert (split.cores, split.axons) == (2, 264)                    # each take a core of 132 axons
    one_neuron_too_wide = np.full((1, 129), 3)                                   # 129 inputs x 2 axons = 258
    (why,) = map_cores(_dense(one_neuron_too_wide), HW).unmappable
    assert "population 'h': neuron 0 needs 258 axons" in why


def test_300_neurons_take_two_cores_and_their_sources_need_splitters():
    # h: 300 neurons reading 10 inputs at +1: cores of 256 and 44 neurons, 10 axons each;
    # out: 2 neurons reading all 300 h neurons at +1 and -1 (two axon types): 600 axons > 256 would not fit,
    # so read 100 of them: 200 axons on one core; each of those 100 h neurons must reach 2 axons: splitters.
    levels_2 = np.zeros((2, 300), np.int64)
    levels_2[0, :100], levels_2[1, :100] = 1, -1
    g = _dense(np.ones((300, 10), np.int64), levels_2)
    m = map_cores(g, HW)
    h, out = m.populations
    assert (h.cores, h.axons) == (2, 20) and (out.cores, out.axons) == (1, 200)
    assert m.split_sources == ("h",)
    assert h.splitter_neurons == 200 and h.splitter_cores == 1     # 100 sources x 2 copies, 100 axons: one core
    assert m.cores == 2 + 1 + 1
    mapped = map_truenorth(g, CompileContext(CompileOptions(target="truenorth"), hwmodel=HW))
    assert [p.delay for _, _, p in mapped.projections("out")] == [2]          # the splitter's tick, simulated
    trace = BACKENDS["truenorth"].run(mapped, np.ones((2, 10), np.float32), 5)
    assert trace.steps == 5


def test_a_fan_out_beyond_one_splitter_core_goes_through_a_splitter_tree():
    # one h neuron read by 300 out neurons on two cores with all four types on each: 8 copies, one level
    wide = np.tile(np.array([[1], [2], [-1], [-2]]), (75, 1))       # out: 300 neurons, types cycle per neuron
    m = map_cores(_dense(np.ones((1, 1), np.int64), wide), HW)
    assert m.populations[0].splitter_neurons == 8 and m.split_levels == (1,)     # 2 cores x 4 types
    # read by 257 x 256 out neurons at +1: 257 cores, 257 copies, more than a splitter core's 256 neurons.
    # Level 2 (last): 257 copies in groups of 256 and 1, on 2 cores; level 1: the 2 neurons feeding them, 1 core.
    g = _dense(np.ones((1, 1), np.int64), np.ones((257 * 256, 1), np.int64))
    m = map_cores(g, HW)
    h, out = m.populations
    assert out.cores == 257 and (h.splitter_neurons, h.splitter_cores, h.splitter_levels) == (257 + 2, 2 + 1, 2)
    mapped = map_truenorth(g, CompileContext(CompileOptions(target="truenorth"), hwmodel=HW))
    assert [p.delay for _, _, p in mapped.projections("out")] == [1 + 2]     # a tick per splitter level


def test_a_small_dense_net_compiles_maps_and_runs_through_the_cli(digits, tmp_path, capsys):
    """64-30-10 on the digits: the compile prints the mapping, the artifact's backend/ holds it, run simulates it."""
    from conftest import make_model, rand, save
    from neurocc.cli import main
    from onnx import helper

    m = make_model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                    helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)], [("x", ["N", 64])], [("y", ["N", 10])],
                   [("w1", rand(30, 64, seed=1) * 0.3), ("b1", rand(30, seed=2) * 0.1), ("w2", rand(10, 30, seed=3)),
                    ("b2", rand(10, seed=4) * 0.1)])
    xtr, _, xte, yte = digits
    np.savez(tmp_path / "train.npz", x=xtr.reshape(len(xtr), 64))
    np.savez(tmp_path / "test.npz", x=xte[:20].reshape(20, 64), y=yte[:20])
    art = tmp_path / "tn.ncc"
    assert main(["compile", str(save(m, tmp_path / "m.onnx")), "--calib", str(tmp_path / "train.npz"), "--target",
                 "truenorth", "-o", str(art)]) == 0
    out = capsys.readouterr().out
    assert "TrueNorth core mapping:" in out and "splitter" in out
    import json
    mapping = json.loads((art / "backend" / "cores.json").read_text())
    assert not mapping["unmappable"] and mapping["cores"] >= 2
    assert main(["run", str(art), "--data", str(tmp_path / "test.npz"), "--steps", "20", "-q"]) == 0


def _split(g: Graph) -> Graph:
    from neurocc.backends.truenorth.fan_in import split_fan_in

    ctx = CompileContext(CompileOptions(target="truenorth"), hwmodel=HW)
    out = map_truenorth(split_fan_in(g, ctx), ctx)
    verify(out)
    return out


def test_a_300_input_neuron_is_split_into_two_cores_of_partial_sums_and_a_merge():
    # one neuron reading 300 inputs at +1 (one +B axon each): 300 axons > 256, so two groups (256 + 44 inputs);
    # each group's relay pair (R+, R-) shares one core, R- with its weights negated on the same axons; the merge
    # reads the 4 relays on one core: 3 cores, no splitters (a relay reaches one axon, inputs come from the host)
    g = _dense(np.ones((1, 300), np.int64))
    assert map_cores(g, HW).unmappable                       # unsplit it does not map
    split = _split(g)
    mapping = split.meta["core_mapping"]
    assert not mapping["unmappable"] and mapping["partial_sums"] == {"h": ["h.partial0", "h.partial1"]}
    cores = {p["name"]: (p["cores"], p["axons"]) for p in mapping["populations"]}
    assert cores == {"h.partial0": (1, 256), "h.partial1": (1, 44), "h": (1, 4)}
    assert mapping["cores"] == 3 and mapping["splitter_neurons"] == 0
    assert [p.delay for _, _, p in split.projections("h")] == [1, 1]          # the relays' tick, simulated


def test_partial_sums_fire_as_often_as_the_unsplit_neuron():
    # binary inputs (no rounding of the host's analog input), positive weights: each relay's partial sum only
    # grows, so the merge's count is within one spike of the unsplit neuron's, plus the relays' tick in flight
    rng = np.random.default_rng(0)
    g = _dense(rng.integers(1, 4, (6, 700)))
    x = (rng.random((10, 700)) < 0.3).astype(np.float32)
    steps = 300
    unsplit = BACKENDS["truenorth"].run(g, x, steps, record_trains=True)
    split = BACKENDS["truenorth"].run(_split(g), x, steps, record_trains=True)
    a = unsplit.spike_trains["h"].sum(axis=0)
    b = split.spike_trains["h"].sum(axis=0)
    assert a.min() > 50 and np.abs(a.astype(int) - b).max() <= 2


def test_a_neuron_beyond_what_partial_sums_can_split_is_refused():
    # 129 groups of 128 inputs at +3 (two axons each): a merge neuron reads at most 128 relay pairs
    (why,) = _split(_dense(np.full((1, 129 * 128), 3))).meta["core_mapping"]["unmappable"]
    assert "129 groups" in why and "128 relay pairs" in why


def test_a_read_out_whose_weights_need_a_threshold_below_1_is_scaled_down_instead(digits):
    """mnist-8's read-out weighs its inputs up to ~2,000 thresholds (a small lambda), beyond TrueNorth's 3 x 127 at
    threshold 1; a read-out is only compared, so quantize scales its input down and the argmax is kept."""
    from pathlib import Path

    import torch
    from neurocc.frontend.onnx import load_onnx
    from neurocc.ir.executor import run_rate
    from neurocc.passes.quantize import dequantize
    from neurocc.pipeline import compile_graph

    g, _ = load_onnx(Path(__file__).parent / "data" / "mnist-8.onnx")
    x = np.kron(digits[0][:64], np.ones((1, 1, 3, 3), np.float32))
    x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2))) * 255
    opts = CompileOptions(target="truenorth")
    snn = compile_graph(g, CompileContext(opts, calib_x=x, hwmodel=HW)).snn
    (readout, gain), = snn.meta["readout_gains"].items()
    assert readout == snn.outputs[0] and 0 < gain < 1
    float_snn = compile_graph(g, CompileContext(CompileOptions(target="reference"), calib_x=x,
                                                hwmodel=load_hwmodel("generic"))).snn
    with torch.no_grad():
        q = run_rate(dequantize(snn), torch.from_numpy(x))[readout].argmax(1)
        f = run_rate(float_snn, torch.from_numpy(x))[readout].argmax(1)
    assert (q == f).float().mean() > 0.8          # the rest is the 7 weight levels, not the scaling


def _one_hot_matrix(chain, shape):
    """The chain's synapses the slow way: the chain applied to one one-hot input per source."""
    n = int(np.prod(shape))
    with torch.no_grad():
        out = apply_chain(chain, torch.eye(n, dtype=torch.float64).reshape((n,) + shape))
    return out.reshape(n, -1).numpy().T


@pytest.mark.parametrize("chain, shape", [
    ((ops.Conv(weight=rand(4, 3, 3, 3), strides=(1, 1), pads=(1, 1, 1, 1)),), (3, 6, 5)),
    ((ops.Conv(weight=rand(4, 3, 3, 2), strides=(2, 1), pads=(0, 1, 2, 0), dilations=(1, 2)),), (3, 7, 6)),
    ((ops.Conv(weight=rand(6, 2, 3, 3), strides=(1, 2), pads=(1, 1, 1, 1), groups=2),), (4, 5, 6)),
    ((ops.AvgPool(kernel=(2, 2), strides=(2, 2)), ops.Flatten(), ops.Gemm(weight=rand(5, 3 * 3 * 3))), (3, 6, 7)),
    ((ops.AvgPool(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), ceil_mode=True),
      ops.Conv(weight=rand(2, 3, 1, 1), strides=(1, 1))), (3, 7, 7)),
    ((ops.Conv(weight=rand(3, 3, 3, 3), strides=(1, 1), pads=(1, 1, 1, 1)), ops.SumPool(kernel=(2, 2), strides=(2, 2)),
      ops.Affine(scale=np.float32(0.25))), (3, 6, 6)),
    ((ops.Slice(slices=((0, 1, 4, 2),)), ops.Pad(pads=((1, 2), (0, 0), (0, 0))),
      ops.Conv(weight=rand(2, 5, 3, 3), strides=(1, 1), pads=(1, 1, 1, 1))), (4, 5, 5)),
    ((ops.Conv(weight=rand(3, 2, 3, 3), strides=(1, 1), pads=(1, 1, 1, 1)),
      ops.Conv(weight=rand(2, 3, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1))), (2, 6, 6)),
    ((ops.GlobalAvgPool(), ops.Flatten(), ops.Affine(scale=rand(3)), ops.Gemm(weight=rand(4, 3))), (3, 4, 4)),
])
def test_synapse_matrix_is_the_one_hot_jacobian(chain, shape):
    """Every weight exactly (float64), including taps cut by padding, strides, dilation, groups, pooling borders
    and weights that several paths sum."""
    assert np.array_equal(synapse_matrix(chain, shape).toarray(), _one_hot_matrix(chain, shape))
