"""Integer mode: hardware models, the quantize pass, and bit-exact simulation in each target's semantics."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from onnx import helper

from conftest import assert_same_trace, make_model, save
from neurocc.backends.reference.simulator import Simulator
from neurocc.cli import main
from neurocc.decode import predictions
from neurocc.evaluate import accuracy_over_time
from neurocc.frontend.onnx import load_onnx
from neurocc.hwmodels import HwModelError, available_hwmodels, load_hwmodel, load_hwmodel_file
from neurocc.ir import Graph, ops, verify
from neurocc.ir.coding import Poisson
from neurocc.ir.executor import run_rate
from neurocc.ir.neurons import IF, LoihiLIF, SpinnakerLIF, TrueNorth
from neurocc.ir.snn import InputSource, Population, Projection
from neurocc.options import CompileOptions
from neurocc.passes.quantize import dequantize, integer_chain
from neurocc.pipeline import CompileContext, compile_graph

# ----------------------------------------------------------------------------------- hardware models


def test_every_shipped_hwmodel_loads_with_a_source_for_every_number():
    assert set(available_hwmodels()) >= {"generic", "loihi", "spinnaker", "truenorth"}
    for name in available_hwmodels():
        hw = load_hwmodel(name)
        assert hw.name == name and len(hw.sources) >= 20
        assert all(src.strip() for src in hw.sources.values())
    loihi = load_hwmodel("loihi")
    assert (loihi.neuron.threshold_shift, loihi.neuron.input_shift, loihi.weights.magnitude_bits) == (6, 6, 8)
    assert loihi.neuron.spike_compare == ">" and loihi.timing.projection_delay_steps == 1


def _edited(tmp_path, old, new):
    """The shipped loihi.toml with one edit."""
    original = open(load_hwmodel("loihi").path).read()
    text = original.replace(old, new, 1)
    assert text != original
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("old, new, needle", [
    ("state_bits = { value = 24,", "#", "neuron.state_bits"),                           # missing key
    ("state_bits = { value = 24,", "state_bits = { value = \"24\",", "neuron.state_bits"),  # wrong type
    ('overflow = { value = "saturate"', 'overflow = { value = "explode"', "neuron.overflow"),
    ('source = "Davies et al. 2018 p.86" }', 'source = "" }', "limits.cores_per_chip"),
    ("[timing]", "[timing", "not valid TOML"),
    ("[energy]", "[energy]\nwatts = { value = 1, source = \"x\" }", "energy.watts"),
])
def test_malformed_hwmodel_names_the_key(tmp_path, old, new, needle):
    with pytest.raises(HwModelError, match=needle.replace(".", r"\.")):
        load_hwmodel_file(_edited(tmp_path, old, new))


def test_malformed_hwmodel_on_the_command_line_exits_2(tmp_path, capsys):
    bad = _edited(tmp_path, "state_bits = { value = 24,", "#")
    from conftest import MNIST8
    code = main(["compile", str(MNIST8), "--target", "loihi", "--hwmodel", str(bad), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "neuron.state_bits" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_read_out_too_heavy_for_the_formats_is_scaled_down_and_keeps_its_argmax(tmp_path):
    """Read-out weights of 1e12 thresholds fit no format at threshold >= 1; a read-out is only compared, so
    quantize scales its input down (meta readout_gains) rather than refusing the network."""
    model = make_model([helper.make_node("Gemm", ["x", "W1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                        helper.make_node("Gemm", ["r", "W2"], ["y"], transB=1)],
                       [("x", ["N", 4])], [("y", ["N", 2])],
                       [("W1", np.eye(4, dtype=np.float32)),
                        ("W2", np.array([[1e12, 0, 0, 0], [0, 1e12, 0, 0]], np.float32))])
    path = save(model, tmp_path / "huge.onnx")
    x = np.random.default_rng(0).random((32, 4)).astype(np.float32)
    ctx = CompileContext(CompileOptions(target="generic"), calib_x=x, hwmodel=load_hwmodel("generic"))
    snn = compile_graph(load_onnx(path)[0], ctx).snn
    assert 0 < snn.meta["readout_gains"][snn.outputs[0]] < 1
    trace = Simulator(snn).run(x, 200)
    assert np.array_equal(predictions(trace, snn.outputs[0])[-1], (x[:, 0] < x[:, 1]).astype(np.int64))


# ------------------------------------------------------------------------------------ quantisation


@pytest.fixture(scope="module")
def compiled(digits, digits_onnx):
    xtr, ytr, _, _ = digits
    graph, _ = load_onnx(digits_onnx)
    return {t: compile_graph(graph, CompileContext(CompileOptions(target=t), calib_x=xtr, calib_y=ytr))
            for t in ("reference", "generic", "loihi", "spinnaker", "truenorth")}


@pytest.mark.parametrize("target", ["generic", "loihi", "spinnaker", "truenorth"])
def test_quantize_keeps_the_ann_function_within_what_it_reports(compiled, digits, target):
    snn, ref = compiled[target].snn, compiled["reference"].snn
    hw = load_hwmodel(target)
    assert snn.meta["mode"] == "integer" and snn.meta["hwmodel"] == target
    deq = dequantize(snn)
    rows = {(r["population"], r["source"]): r for r in snn.meta["quantization"]}
    split = snn.meta.get("fan_in_split", {})       # TrueNorth's partial sums: tests/test_truenorth_mapping.py
    rewritten = set(split.get("relays", ())) | {p["population"] for p in split.get("populations", ())}
    for name in snn.nodes():
        node = snn.payload(name)
        if isinstance(node, InputSource) or name in rewritten:
            continue
        theta = node.neuron.threshold
        assert theta == int(theta) and theta < 2 ** (hw.neuron.state_bits - 1)
        for src, _, proj in snn.projections(name):
            (w_int,) = [op.weight for op in proj.ops if isinstance(op, (ops.Conv, ops.Gemm))]
            if hw.weights.levels_per_channel:    # k * B with |k| <= levels // 2, and axon type A = 2B in the weight bits
                largest = hw.weights.levels_per_channel // 2 * ((2 ** hw.weights.magnitude_bits - 1) // 2)
            else:                                # a sign and magnitude_bits (Loihi's mixed sign reaches -2^bits)
                largest = 2 ** hw.weights.magnitude_bits
            assert np.all(w_int == np.rint(w_int)) and np.abs(w_int).max() <= largest
            (w_deq,) = [op.weight for op in next(p for s, _, p in deq.projections(name) if s == src).ops
                        if isinstance(op, (ops.Conv, ops.Gemm))]
            ref_ops = next(p for s, _, p in ref.projections(name) if s == src).ops
            ref_chain, gain = integer_chain(ref_ops, snn.shape(src), "test")     # pooling as sums: 1/k^2 moves
            (w_ref,) = [op.weight * gain for op in ref_chain if isinstance(op, (ops.Conv, ops.Gemm))]
            if hw.weights.levels_per_channel:        # TrueNorth: 7 levels k * B_c per output channel
                for channel in w_int.reshape(w_int.shape[0], -1):
                    magnitudes = np.abs(channel[channel != 0])
                    top = magnitudes.max(initial=0)
                    bases = [top / k for k in (1, 2, 3) if top % k == 0 and top / k <= largest // 3]
                    assert top == 0 or any(np.all(magnitudes % b == 0) and top <= 3 * b for b in bases)
            else:
                lsb = 2.0 ** (proj.shift + node.neuron.input_shift) / theta
                step = 2 * lsb if hw.weights.mixed_sign_drops_lsb and w_ref.min() < 0 < w_ref.max() else lsb
                assert np.abs(w_deq - w_ref).max() <= step / 2 * (1 + 1e-5)    # rounding only, nothing clipped
            rel = np.linalg.norm(w_deq - w_ref) / np.linalg.norm(w_ref)
            assert rel == pytest.approx(rows[(name, src)]["rel_error"], rel=1e-3)
    x = digits[2]
    out = ref.outputs[0]
    f, q = run_rate(ref, x)[out], run_rate(deq, x)[out]
    # on held-out data the quantised function agrees with the float one about as well as reported on the
    # calibration data, and above a floor per weight format
    reported = snn.meta["quantized_function"]["agreement"]
    measured = float((f.argmax(1) == q.argmax(1)).float().mean())
    assert measured >= reported - 0.03
    assert min(measured, reported) >= AGREEMENT_FLOOR[target]


# Free integer weights (8 to 16 bits) round with ~1 % relative error and change no prediction measurably (the
# README's table: 100 %). TrueNorth's 7 levels per output channel cost 15-30 % relative weight error; the README
# measures 99.8 % (digits CNN) and 98.7 % (mnist-8) agreement, so 0.95 allows for another training seed while a
# broken codebook (a wrong base or sign, levels clipped) falls far below it.
AGREEMENT_FLOOR = {"generic": 0.99, "loihi": 0.99, "spinnaker": 0.99, "truenorth": 0.95}


@pytest.mark.parametrize("target", ["generic", "loihi", "spinnaker", "truenorth"])
@pytest.mark.parametrize("coding", ["analog", "poisson"])
def test_integer_simulation_is_identical_across_batches_blocks_and_runs(compiled, digits, target, coding):
    snn = compiled[target].snn
    x = digits[2][:64]
    steps = 24
    coding = Poisson(seed=5) if coding == "poisson" else None
    sim = Simulator(snn, coding=coding, record_trains=True)
    ref = sim.run(x, steps, batch_size=64, block=steps)
    runs = [sim.run(x, steps, batch_size=1, block=steps), sim.run(x, steps, batch_size=7, block=steps // 3),
            sim.run(x, steps, batch_size=64, block=math.ceil(steps / 3)), sim.run(x, steps, batch_size=64, block=1),
            Simulator(snn, coding=coding, record_trains=True).run(x, steps, batch_size=64)]
    for t in runs:
        assert_same_trace(t, ref)
    assert ref.readouts[snn.outputs[0]].potential.dtype == np.int64


# generic keeps the NL-IAF dynamics; loihi resets to zero and delays each layer by a step; spinnaker also
# has a refractory step, which halves the largest firing rate (its loss is the target's, not quantisation's)
# truenorth keeps NL-IAF dynamics but has 7 weight levels per channel. A Poisson input spike carries the full
# input scale in every target's units, so Poisson coding converges as in float mode.
# The spinnaker case is not a quantisation check: on a fresh install (2026-12-02) the digits model trains to a
# network whose spinnaker SNN loses 12.0 pt (analog) and 13.8 pt (Poisson) at T = 100 against 99.8 / 99.6 %, all of
# it reset to zero plus the refractory step (the quantised ANN function agrees at 98 %+); issue 16 addresses it.
_DYNAMICS_LOSS = pytest.mark.xfail(reason="spinnaker's reset-to-zero + refractory loss at T = 100 (issue 16)",
                                   strict=False)


@pytest.mark.parametrize("target, tolerance", [("generic", 0.01), ("loihi", 0.03),
                                               pytest.param("spinnaker", 0.12, marks=_DYNAMICS_LOSS),
                                               ("truenorth", 0.05)])
@pytest.mark.parametrize("coding", ["analog", "poisson"])
def test_integer_accuracy_follows_float(compiled, digits, target, tolerance, coding):
    _, _, xte, yte = digits
    acc = {}
    for t in ("reference", target):
        snn = compiled[t].snn
        trace = Simulator(snn, coding=Poisson(seed=2) if coding == "poisson" else None).run(xte, 100, batch_size=150)
        acc[t] = accuracy_over_time(predictions(trace, snn.outputs[0]), yte)[-1]
    assert acc[target] >= acc["reference"] - tolerance


# ----------------------------------------------------------- hand-worked examples per target semantics


def _three_neurons(neuron_a, neuron_b) -> Graph:
    """input (2 values) -> A (2 neurons, diagonal weights) -> B (1 neuron, mixed weights, shift -1)."""
    g = Graph("snn", inputs=["x"], outputs=["B"], meta={"mode": "integer"})
    g.add_node("x", InputSource(shape=(2,), scale=1.0, bits=0), (2,))
    g.add_node("A", Population(shape=(2,), bias=np.array([3.0, -2.0]), neuron=neuron_a), (2,))
    g.add_node("B", Population(shape=(1,), bias=np.array([-5.0]), neuron=neuron_b), (1,))
    g.add_projection("x", "A", Projection(ops=(ops.Gemm(weight=[[37.0, 0.0], [0.0, 23.0]]),)))
    g.add_projection("A", "B", Projection(ops=(ops.Gemm(weight=[[-90.0, 254.0]]),), delay=1, shift=-1))
    verify(g)
    return g


def _lava_reference(steps: int, x, w_in, w_ab, bias_a, bias_b, vth_a, vth_b, du_b, dv_b):
    """lava-nc 0.10.0 PyLifModelBitAcc + PyDenseModelBitAcc in plain Python integers (FACTS.md §5.1-5.2)."""
    def decay(val, keep):
        y = val * keep
        return (1 if y > 0 else -1 if y < 0 else 0) * (abs(y) >> 12)

    def wrap24(val):
        return val - 2 ** 24 if val > 2 ** 23 else val + 2 ** 24 if val <= -(2 ** 23) else val

    ua, va, ub, vb = [0, 0], [0, 0], 0, 0
    buffer_b = 0                                   # Dense a_buff: sent one step later
    trains = []
    for _ in range(steps):
        a_in = [sum(w_in[i][j] * x[j] for j in range(2)) for i in range(2)]   # injected input, no delay
        sa = []
        for i in range(2):
            ua[i] = wrap24(decay(ua[i], 4096 - 4095 - 1) + (a_in[i] << 6))
            va[i] = max(-(2 ** 23) + 1, min(2 ** 23 - 1, decay(va[i], 4096) + ua[i] + bias_a[i]))
            sa.append(int(va[i] > (vth_a << 6)))
            if sa[i]:
                va[i] = 0
        a_b = buffer_b                                                  # the previous step's sum
        acc = sum(w_ab[j] for j in range(2) if sa[j])
        buffer_b = acc >> 1                                             # weight_exp = -1: floor shift
        ub = wrap24(decay(ub, 4096 - du_b - 1) + (a_b << 6))
        vb = max(-(2 ** 23) + 1, min(2 ** 23 - 1, decay(vb, 4096 - dv_b) + ub + bias_b))
        sb = int(vb > (vth_b << 6))
        if sb:
            vb = 0
        trains.append(sa + [sb])
    return np.array(trains)


def test_loihi_three_neurons_match_lava_equations_step_by_step():
    vth_a, vth_b, du_b, dv_b = 20, 9, 1000, 300
    g = _three_neurons(LoihiLIF(threshold=vth_a * 64, input_shift=6),
                       LoihiLIF(threshold=vth_b * 64, input_shift=6, du=du_b, dv=dv_b))
    trace = Simulator(g, record_trains=True).run(np.array([[1.0, 1.0]], np.float32), 60, block=7)
    got = np.concatenate([trace.spike_trains["A"][:, 0], trace.spike_trains["B"][:, 0]], axis=1)
    expected = _lava_reference(60, [1, 1], [[37, 0], [0, 23]], [-90, 254], [3, -2], -5, vth_a, vth_b, du_b, dv_b)
    assert expected.sum(axis=0).min() > 0                # every neuron fires: the example exercises all paths
    assert np.array_equal(got, expected)


def _nliaf_reference(steps, x, w_in, w_ab, bias_a, bias_b, theta_a, theta_b, bits):
    """The ideal NL-IAF in integers: V += I; spike if V >= theta; V -= theta; saturate at ``bits``."""
    lim = 2 ** (bits - 1) - 1
    va, vb, prev_a = [0, 0], 0, [0, 0]
    trains = []
    for _ in range(steps):
        sa = []
        for i in range(2):
            va[i] = max(-lim, min(lim, va[i] + sum(w_in[i][j] * x[j] for j in range(2)) + bias_a[i]))
            sa.append(int(va[i] >= theta_a))
            va[i] -= theta_a * sa[i]
        vb = max(-lim, min(lim, vb + (sum(w_ab[j] for j in range(2) if prev_a[j]) >> 1) + bias_b))
        sb = int(vb >= theta_b)
        vb -= theta_b * sb
        prev_a = sa
        trains.append(sa + [sb])
    return np.array(trains)


@pytest.mark.parametrize("model, bits", [(IF, 12), (TrueNorth, 20)])
def test_nliaf_and_truenorth_three_neurons_match_the_equations_step_by_step(model, bits):
    """TrueNorth (NeMo tn_neuron.c, linear reset gamma = 1, leak as constant input) is the integer NL-IAF."""
    g = _three_neurons(model(threshold=100, state_bits=bits), model(threshold=60, state_bits=bits))
    trace = Simulator(g, record_trains=True).run(np.array([[1.0, 1.0]], np.float32), 60, block=11)
    got = np.concatenate([trace.spike_trains["A"][:, 0], trace.spike_trains["B"][:, 0]], axis=1)
    expected = _nliaf_reference(60, [1, 1], [[37, 0], [0, 23]], [-90, 254], [3, -2], -5, 100, 60, bits)
    assert expected.sum(axis=0).min() > 0
    assert np.array_equal(got, expected)


def test_sums_beyond_float64_precision_take_the_exact_split_path():
    """A fan-in of 2^16, weights near 2^23 and 24-bit inputs: sums up to 2^62 need the split."""
    n = 2 ** 16
    rng = np.random.default_rng(0)
    w = rng.integers(-(2 ** 23) + 1, 2 ** 23, (1, n)).astype(np.float64)
    g = Graph("snn", inputs=["x"], outputs=["y"], meta={"mode": "integer"})
    g.add_node("x", InputSource(shape=(n,), scale=1.0, bits=24), (n,))
    g.add_node("y", Population(shape=(1,), bias=np.zeros(1), readout="accumulate"), (1,))
    g.add_projection("x", "y", Projection(ops=(ops.Gemm(weight=w),), shift=0))
    sim = Simulator(g)
    assert len(sim.exact_parts[("x", "y", 0)]) > 1
    x = np.ones((1, n), np.float32)
    trace = sim.run(x, 1)
    exact = (int(torch.tensor(w, dtype=torch.int64).sum()) << 24) >> 24
    assert float(np.abs(w).sum()) * 2 ** 24 > 2 ** 53          # float64 alone could not have been exact
    assert trace.readouts["y"].potential[-1, 0, 0] == exact


def test_cli_compile_for_loihi_reports_and_runs(digits, digits_onnx, tmp_path, capsys):
    xtr, ytr, xte, yte = digits
    np.savez(tmp_path / "train.npz", x=xtr, y=ytr)
    np.savez(tmp_path / "test.npz", x=xte[:30], y=yte[:30])
    assert main(["compile", str(digits_onnx), "--calib", str(tmp_path / "train.npz"), "--target", "loihi",
                 "-o", str(tmp_path / "l.ncc")]) == 0
    out = capsys.readouterr().out
    assert "quantised for loihi" in out and "mass lost %" in out and "argmax agrees" in out
    assert main(["inspect", str(tmp_path / "l.ncc")]) == 0
    out = capsys.readouterr().out
    assert "neuron.threshold_shift" in out and "lava" in out
    assert main(["run", str(tmp_path / "l.ncc"), "--data", str(tmp_path / "test.npz"), "--steps", "20",
                 "--json", str(tmp_path / "r.json")]) == 0
    assert len(json.loads((tmp_path / "r.json").read_text())["accuracy"]) == 20


def test_a_reset_the_chip_cannot_do_is_refused(digits_onnx, tmp_path, capsys):
    code = main(["compile", str(digits_onnx), "--target", "spinnaker", "--reset", "subtract", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "reset" in err and not (tmp_path / "o").exists()


def test_mnist8_with_max_pool_gates_quantizes_and_runs_bit_exactly():
    from conftest import MNIST8
    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    result = compile_graph(load_onnx(MNIST8)[0], CompileContext(CompileOptions(target="loihi"), calib_x=x))
    sim = Simulator(result.snn)
    assert_same_trace(sim.run(x, 12, batch_size=8), sim.run(x, 12, batch_size=3, block=5))


def _spinnaker_reference(steps, x, w_in, w_ab, bias_a, bias_b, theta_a, theta_b, k, refractory):
    """sPyNNaker's LIF closed form with delta synapses, in plain Python integers (s16.15 bits)."""
    def wrap32(val):
        return (val + 2 ** 31) % 2 ** 32 - 2 ** 31

    def mul(a, b):                       # GCC's s16.15 multiply on the ARM968: smull, bits 15..46 (floor, wrap)
        return wrap32((a * b) >> 15)

    r_membrane, exp_tc = 2 ** (15 + k), 2 ** 15 - 2 ** (15 - k)

    def step(v, timer, current, theta):
        if timer <= 0:
            alpha = mul(wrap32(current), r_membrane)
            v = wrap32(alpha - mul(exp_tc, wrap32(alpha - v)))
        else:
            timer -= 1
        if v >= theta:
            return 0, refractory, 1
        return v, timer, 0

    va, ta, vb, tb, prev_a = [0, 0], [0, 0], 0, 0, [0, 0]
    trains = []
    for _ in range(steps):
        sa = []
        for i in range(2):
            va[i], ta[i], s = step(va[i], ta[i], sum(w_in[i][j] * x[j] for j in range(2)) + bias_a[i], theta_a)
            sa.append(s)
        vb, tb, sb = step(vb, tb, (sum(w_ab[j] for j in range(2) if prev_a[j]) >> 1) + bias_b, theta_b)
        prev_a = sa
        trains.append(sa + [sb])
    return np.array(trains)


def test_spinnaker_three_neurons_match_spynnaker_equations_step_by_step():
    g = _three_neurons(SpinnakerLIF(threshold=100, leak_shift=3, refractory=1),
                       SpinnakerLIF(threshold=30, leak_shift=3, refractory=1))
    trace = Simulator(g, record_trains=True).run(np.array([[1.0, 1.0]], np.float32), 60, block=13)
    got = np.concatenate([trace.spike_trains["A"][:, 0], trace.spike_trains["B"][:, 0]], axis=1)
    expected = _spinnaker_reference(60, [1, 1], [[37, 0], [0, 23]], [-90, 254], [3, -2], -5, 100, 30, 3, 1)
    assert expected.sum(axis=0).min() > 0
    assert np.array_equal(got, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("target", ["generic", "loihi", "spinnaker", "truenorth"])
def test_integer_simulation_is_identical_on_cuda(compiled, digits, target):
    snn = compiled[target].snn
    x = digits[2][:32]
    cpu = Simulator(snn, record_trains=True).run(x, 16)
    gpu = Simulator(snn, device="cuda", record_trains=True).run(x, 16)
    assert_same_trace(gpu, cpu)


@pytest.mark.parametrize("target", ["generic", "loihi", "spinnaker", "truenorth"])
def test_channel_scaled_shortcuts_become_integer_depthwise_synapses(target, tmp_path):
    """Channel-level normalisation turns an identity shortcut into one weight per channel; integer targets
    carry it as a depthwise 1x1 convolution and still simulate bit-exactly."""
    from models import torch_models
    model = torch_models()["resnet_block_bn"]
    rng = np.random.default_rng(0)
    calib = rng.random((64, 3, 12, 12), dtype=np.float32)
    path = tmp_path / "res.onnx"
    torch.onnx.export(model, (torch.from_numpy(calib[:1]),), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, dynamo=False)
    graph, _ = load_onnx(path)
    snn = compile_graph(graph, CompileContext(CompileOptions(target=target), calib_x=calib)).snn
    shortcuts = [p for n in snn.nodes() if snn.nx.in_degree(n) == 2 for _, _, p in snn.projections(n)
                 if any(isinstance(op, ops.Conv) and op.groups > 1 for op in p.ops)]
    assert len(shortcuts) == 2
    for p in shortcuts:
        (conv,) = p.ops
        assert conv.weight.shape == (8, 1, 1, 1) and np.all(conv.weight == np.rint(conv.weight))
    assert snn.meta["quantized_function"]["agreement"] >= 0.9
    x = rng.random((20, 3, 12, 12), dtype=np.float32)
    sim = Simulator(snn, record_trains=True)
    assert_same_trace(sim.run(x, 12, batch_size=3, block=5), sim.run(x, 12, batch_size=20, block=12))


@pytest.mark.parametrize("target", ["generic", "truenorth"])
def test_integer_fused_kernel_matches_the_step_by_step_update(compiled, digits, target):
    snn = compiled[target].snn
    x = digits[2][:24]
    fused = Simulator(snn, record_trains=True).run(x, 20, batch_size=8, block=6)
    assert_same_trace(fused, Simulator(snn, record_trains=True, fused=False).run(x, 20, batch_size=8, block=6))


@pytest.mark.parametrize("target", ["generic", "loihi", "spinnaker"])
def test_float32_projections_equal_float64_ones(compiled, digits, target):
    """Projections whose sums stay below 2^24 run in float32 (oneDNN), others in float64; forcing float64
    everywhere changes nothing."""
    snn = compiled[target].snn
    x = digits[2][:16]
    fast = Simulator(snn, record_trains=True)
    assert any(dtype == torch.float32 for parts in fast.exact_parts.values() for _, _, dtype in parts)
    slow = Simulator(snn, record_trains=True)
    slow.exact_parts = {k: [(c, f, torch.float64) for c, f, _ in parts] for k, parts in slow.exact_parts.items()}
    assert_same_trace(fast.run(x, 16, batch_size=16), slow.run(x, 16, batch_size=16))
