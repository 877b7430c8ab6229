"""The Loihi backends: the emitted lava-nc program run by Lava itself (fixed_pt CPU models) against the reference
simulator's Loihi semantics, spike for spike, step by step, population by population.

These tests need Lava's own environment, which the README's test command builds (``neurocc setup lava``).
"""
from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np
import pytest
import torch

from neurocc.backends import BACKENDS
from neurocc.backends.loihi.backend import PROGRAM
from neurocc.backends.loihi.lava_env import lava_python
from neurocc.cli import main
from neurocc.frontend.onnx import load_onnx
from neurocc.hwmodels import load_hwmodel
from neurocc.ir import Graph, ops
from neurocc.ir.neurons import IF, LoihiLIF
from neurocc.ir.snn import InputSource, Population, Projection
from neurocc.ir.coding import Poisson
from neurocc.ir.verifier import verify
from neurocc.options import CompileOptions
from neurocc.pipeline import CompileContext, compile_graph

needs_lava = pytest.mark.skipif(lava_python() is None, reason="Lava is not installed (neurocc setup lava)")
MNIST8 = os.path.join(os.path.dirname(__file__), "data", "mnist-8.onnx")


def assert_same_spikes(graph, x, steps, coding=None):
    """Every population's spikes per step and sample, and every read-out, identical on Lava and the reference."""
    ref = BACKENDS["reference"].run(graph, x, steps, coding=coding, record_trains=True)
    lava = BACKENDS["lava"].run(graph, x, steps, coding=coding, record_trains=True)
    assert set(lava.spike_trains) == set(ref.spike_trains)
    for name, train in ref.spike_trains.items():
        assert np.array_equal(lava.spike_trains[name], train), name
        assert np.array_equal(lava.spikes[name], ref.spikes[name])
    assert set(lava.events) == set(ref.events)
    for name, events in ref.events.items():
        assert np.array_equal(lava.events[name], events), name
    for name, r in ref.readouts.items():
        assert np.array_equal(lava.readouts[name].potential, r.potential), name
        assert (lava.readouts[name].count is None) == (r.count is None)
        if r.count is not None:
            assert np.array_equal(lava.readouts[name].count, r.count)
    return ref


def _weights(rng, shape, signs: str, scale: int = 256) -> np.ndarray:
    """Integer weights Loihi's synapses hold: 0..255 (positive) or even -256..254 (mixed, lava drops the LSB)."""
    if signs == "positive":
        w = rng.integers(0, min(scale, 256), shape)
    else:
        w = 2 * rng.integers(-scale // 2, scale // 2, shape)
    return (w * (rng.random(shape) < 0.6)).astype(np.float64)


def _bias(rng, shape) -> np.ndarray:
    return (rng.integers(-4095, 4096, shape) << rng.integers(0, 8, shape)).astype(np.float64)


def _cell(rng, reset: str, saturate: bool) -> LoihiLIF:
    vth = int(rng.integers(2 ** 14, 2 ** 17)) if saturate else int(rng.integers(50, 4000))
    return LoihiLIF(threshold=float(vth << 6), v0=float(rng.random() * 0.9), input_shift=6, reset=reset)


def random_network(seed: int, kind: str, signs: str, reset: str, saturate: bool, readout: str = "accumulate") -> Graph:
    """input -> A -> B -> out, with a skip A -> out (two connections summed at one input): dense (Gemm) or conv
    (3x3 convolution with padding, then 2x2 sum pooling into B). ``saturate`` takes large weight exponents, so
    that u may wrap and v clip, and thresholds near the top of their 17 bits."""
    rng = np.random.default_rng(seed)
    shapes = {"dense": [(12,), (16,), (10,), (5,)], "conv": [(2, 6, 6), (3, 6, 6), (4, 3, 3), (5,)]}[kind]
    g = Graph("snn", inputs=["x"], outputs=["out"], meta={"mode": "integer", "hwmodel": "loihi"})
    g.add_node("x", InputSource(shape=shapes[0], scale=1.0, bits=8), shapes[0])
    for name, shape in zip(("A", "B"), shapes[1:3]):
        g.add_node(name, Population(shape=shape, bias=_bias(rng, shape), neuron=_cell(rng, reset, saturate)), shape)
    out_neuron = (_cell(rng, reset, saturate) if readout == "spike" else
                  IF(threshold=float(1000 << 6), v0=0.5, input_shift=6))        # quantize's read-out for Loihi
    g.add_node("out", Population(shape=shapes[3], bias=_bias(rng, shapes[3]), neuron=out_neuron, readout=readout),
               shapes[3])
    exp = (lambda: int(rng.integers(3, 7))) if saturate else (lambda: int(rng.integers(-3, 3)))
    if kind == "dense":
        chains = {("x", "A"): (ops.Gemm(weight=_weights(rng, (16, 12), "mixed")),),
                  ("A", "B"): (ops.Gemm(weight=_weights(rng, (10, 16), signs)),)}
    else:
        conv = dict(pads=(1, 1, 1, 1))
        chains = {("x", "A"): (ops.Conv(weight=_weights(rng, (3, 2, 3, 3), "mixed"), **conv),),
                  ("A", "B"): (ops.SumPool(kernel=(2, 2), strides=(2, 2)),
                               ops.Conv(weight=_weights(rng, (4, 3, 3, 3), signs, 64), **conv))}
    chains[("B", "out")] = (ops.Flatten(), ops.Gemm(weight=_weights(rng, (5, int(np.prod(shapes[2]))), signs)))
    chains[("A", "out")] = (ops.Flatten(), ops.Gemm(weight=_weights(rng, (5, int(np.prod(shapes[1]))), "mixed")))
    for (src, dst), chain in chains.items():
        g.add_projection(src, dst, Projection(ops=chain, delay=0 if src == "x" else 1, shift=exp()))
    verify(g)
    return g


@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("seed, signs, reset, saturate", [(0, "positive", "zero", False), (1, "mixed", "zero", False),
                                                          (2, "mixed", "subtract", False), (3, "mixed", "zero", True),
                                                          (4, "positive", "subtract", True)])
@needs_lava
def test_random_networks_spike_for_spike(kind, seed, signs, reset, saturate):
    g = random_network(seed, kind, signs, reset, saturate, readout="spike" if seed % 2 else "accumulate")
    x = np.random.default_rng(seed).uniform(-1, 1, (3,) + g.shape("x")).astype(np.float32)
    ref = assert_same_spikes(g, x, 12)
    assert any(t.any() for t in ref.spike_trains.values())


@needs_lava
def test_spike_coded_input(tmp_path):
    g = random_network(5, "conv", "mixed", "zero", False)
    x = np.random.default_rng(5).uniform(-1, 1, (2,) + g.shape("x")).astype(np.float32)
    ref = assert_same_spikes(g, x, 10, coding=Poisson(seed=3))
    assert ref.spikes["x"].sum() > 0


@pytest.fixture(scope="module")
def digits_loihi(digits, digits_onnx):
    def compiled(reset):
        opts = CompileOptions(target="loihi", reset=reset)
        return compile_graph(load_onnx(digits_onnx)[0], CompileContext(opts, calib_x=digits[0][:300])).snn
    return compiled


@needs_lava
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_digits_cnn_spike_for_spike(digits, digits_loihi, reset):
    g = digits_loihi(reset)
    assert {type(g.payload(n).neuron).__name__ for n in g.nodes() if n not in g.inputs} >= {"LoihiLIF"}
    assert_same_spikes(g, digits[2][:4], 25)


@needs_lava
def test_mnist8_spike_for_spike(digits):
    x = torch.nn.functional.interpolate(torch.from_numpy(digits[0][:200]), size=(28, 28), mode="bilinear").numpy()
    opts = CompileOptions(target="loihi", max_pool="average")
    g = compile_graph(load_onnx(MNIST8)[0], CompileContext(opts, calib_x=x)).snn
    assert_same_spikes(g, x[:2], 12)


@needs_lava
def test_cli_run_backend_lava_reports_the_reference_keys(tmp_path, digits, digits_onnx):
    np.savez(tmp_path / "train.npz", x=digits[0][:200])
    np.savez(tmp_path / "test.npz", x=digits[2][:5], y=digits[3][:5])
    art = tmp_path / "m.ncc"
    assert main(["compile", str(digits_onnx), "--calib", str(tmp_path / "train.npz"), "--target", "loihi",
                 "-o", str(art), "-q"]) == 0
    program = art / "backend" / "network.py"
    assert program.is_file() and "class SRIF(LIF)" in program.read_text()
    runs = {}
    for backend in ("reference", "lava"):
        out = tmp_path / f"{backend}.json"
        assert main(["run", str(art), "--data", str(tmp_path / "test.npz"), "--steps", "15", "--backend", backend,
                     "--json", str(out), "-q"]) == 0
        runs[backend] = json.loads(out.read_text())
    assert runs["lava"].keys() == runs["reference"].keys()
    for key in ("accuracy", "spikes_per_step", "spikes_per_population"):
        if key in runs["reference"]:
            assert runs["lava"][key] == runs["reference"][key], key


@needs_lava
def test_emitted_program_runs_with_plain_lava(tmp_path, digits_loihi, digits):
    """The artifact's program is self-contained: Lava's interpreter runs it from its own folder."""
    g = digits_loihi("subtract")
    BACKENDS["loihi"].emit(g, tmp_path)
    source = g.payload(g.inputs[0])
    xq = np.rint(np.clip(digits[2][:2] / source.scale, -1, 1) * 2 ** source.bits).reshape(2, -1).astype(np.int64)
    np.savez(tmp_path / "inputs.npz", x=xq)
    done = subprocess.run([str(lava_python()), "network.py", "inputs.npz", "-o", "out.npz", "--steps", "8"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ref = BACKENDS["reference"].run(g, digits[2][:2], 8, record_trains=True)
    with np.load(tmp_path / "out.npz") as out:
        first = next(n for n in g.topo_order() if n not in g.inputs)
        assert np.array_equal(out["spikes/0"].transpose(1, 0, 2), ref.spike_trains[first].reshape(8, 2, -1))


@needs_lava
def test_srif_floating_point_model(tmp_path):
    """neurocc's SRIF process in floating point, run by Lava: v <- v + u + bias, then v <- v - vth where v > vth."""
    (tmp_path / "network.py").write_bytes(PROGRAM.read_bytes())
    script = ("import numpy as np\n"
              "from network import SRIF\n"
              "from lava.magma.core.run_conditions import RunSteps\n"
              "from lava.magma.core.run_configs import Loihi2SimCfg\n"
              "from lava.proc.monitor.process import Monitor\n"
              "n = SRIF(shape=(1,), du=1.0, dv=0.0, bias_mant=np.array([0.3]), vth=1.0)\n"
              "m = Monitor(); m.probe(n.v, 10)\n"
              "n.run(condition=RunSteps(num_steps=10), run_cfg=Loihi2SimCfg(select_tag='floating_pt'))\n"
              "print(repr(list(map(float, m.get_data()[n.name]['v'][:, 0])))); n.stop()\n")
    done = subprocess.run([str(lava_python()), "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected, v = [], 0.0
    for _ in range(10):
        v = v * (1 - 0.0) + 0.0 + 0.3
        if v > 1.0:
            v -= 1.0
        expected.append(v)
    assert eval(done.stdout.strip().splitlines()[-1]) == expected


@needs_lava
def test_u_wraps_and_v_clips_as_lava_does():
    """A drive beyond 2^23 wraps u once (lava's rule, not a modulo) and drives v to its clip at -2^23 + 1."""
    g = Graph("snn", inputs=["x"], outputs=["out"], meta={"mode": "integer", "hwmodel": "loihi"})
    g.add_node("x", InputSource(shape=(12,), scale=1.0, bits=8), (12,))
    g.add_node("out", Population(shape=(2,), bias=np.zeros(2), readout="spike",
                                 neuron=LoihiLIF(threshold=float((2 ** 17 - 1) << 6), input_shift=6)), (2,))
    g.add_projection("x", "out", Projection(ops=(ops.Gemm(weight=np.full((2, 12), 254.0) * [[1], [0.5]]),), shift=6))
    verify(g)
    ref = assert_same_spikes(g, np.ones((1, 12), np.float32), 6)
    v = ref.readouts["out"].potential[:, 0]
    assert v[-1, 0] == -(2 ** 23) + 1 and v[0, 1] > 0           # neuron 0 wrapped and clipped, neuron 1 did not


def test_refusals_are_one_line_exit_2(tmp_path, digits, digits_onnx, capsys, monkeypatch):
    """A float network, another chip's network, a network too large, a max-pool gate, and no Lava installed."""
    np.savez(tmp_path / "train.npz", x=digits[0][:100])
    np.savez(tmp_path / "test.npz", x=digits[2][:3], y=digits[3][:3])

    def run(art, *extra):
        capsys.readouterr()
        code = main(["run", str(art), "--data", str(tmp_path / "test.npz"), "--steps", "5", "--backend", "lava",
                     "--json", str(tmp_path / "r.json"), "-q", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err

    for target in ("reference", "spinnaker"):
        art = tmp_path / f"{target}.ncc"
        assert main(["compile", str(digits_onnx), "--calib", str(tmp_path / "train.npz"), "--target", target,
                     "-o", str(art), "-q"]) == 0
        assert "--target loihi" in run(art)
    art = tmp_path / "loihi.ncc"
    assert main(["compile", str(digits_onnx), "--calib", str(tmp_path / "train.npz"), "--target", "loihi",
                 "-o", str(art), "-q"]) == 0
    monkeypatch.setattr(BACKENDS["lava"], "max_weights", 1000)
    assert "too large for Lava" in run(art) and "h" in run(art)
    monkeypatch.undo()
    monkeypatch.setenv("NEUROCC_LAVA_ENV", str(tmp_path / "nowhere"))
    assert "neurocc setup lava" in run(art)
    assert not (tmp_path / "r.json").exists()


def test_a_max_pool_gate_compiles_without_a_lava_program(tmp_path, digits, capsys):
    x = torch.nn.functional.interpolate(torch.from_numpy(digits[0][:50]), size=(28, 28), mode="bilinear").numpy()
    np.savez(tmp_path / "train.npz", x=x)
    np.savez(tmp_path / "test.npz", x=x[:2])
    art = tmp_path / "gate.ncc"
    assert main(["compile", MNIST8, "--calib", str(tmp_path / "train.npz"), "--target", "loihi", "-o", str(art),
                 "-q"]) == 0
    assert "max-pool gate" in (art / "backend" / "NOT_EMITTED.txt").read_text()
    assert not (art / "backend" / "network.py").exists()
    capsys.readouterr()
    assert main(["run", str(art), "--data", str(tmp_path / "test.npz"), "--steps", "3", "--backend", "lava",
                 "-q"]) == 2
    assert "--max-pool average" in capsys.readouterr().err


def _chain_graph(sizes: list, weights: list) -> Graph:
    """input -> P1 -> ... -> out (accumulating read-out) with the given Gemm weights, Loihi-quantised form."""
    names = ["x"] + [f"P{i}" for i in range(1, len(sizes) - 1)] + ["out"]
    g = Graph("snn", inputs=["x"], outputs=["out"], meta={"mode": "integer", "hwmodel": "loihi"})
    g.add_node("x", InputSource(shape=(sizes[0],), scale=1.0, bits=8), (sizes[0],))
    for name, n in zip(names[1:], sizes[1:]):
        neuron = IF(threshold=64000.0, input_shift=6) if name == "out" else LoihiLIF(threshold=64000.0, input_shift=6)
        g.add_node(name, Population(shape=(n,), bias=np.zeros(n), neuron=neuron,
                                    readout="accumulate" if name == "out" else "spike"), (n,))
    for src, dst, w in zip(names[:-1], names[1:], weights):
        g.add_projection(src, dst, Projection(ops=(ops.Gemm(weight=w),), delay=0 if src == "x" else 1))
    verify(g)
    return g


def test_loihi_core_mapping_limits():
    """Compartments, synapse memory, fan-in and fan-out each cut cores as the hardware model's limits say."""
    hw = load_hwmodel("loihi")
    # 600 inputs fully into 2,000 neurons: 131,072 synapse slots per core hold 218 neurons' 600 synapses each
    g = _chain_graph([600, 2000, 10], [np.ones((2000, 600)), np.ones((10, 2000))])
    res = BACKENDS["loihi"].resources(g, hw)
    cores = {r.name: r.cores for r in res.populations}
    assert cores == {"x": 0, "P1": math.ceil(2000 / (131072 // 600)), "out": 1} and not res.over_limits
    # each of 1,024 neurons reaches one neuron in each of 5 cores of 1,024: 5,120 output axons on one core
    reach = np.zeros((5120, 1024))
    for k in range(5):
        reach[np.arange(1024) + 1024 * k, np.arange(1024)] = 2
    g = _chain_graph([4, 1024, 5120, 3], [np.ones((1024, 4)), reach, np.ones((3, 5120))])
    cores = {r.name: r.cores for r in BACKENDS["loihi"].resources(g, hw).populations}
    assert cores["P2"] == 5 and cores["P1"] == 2            # 1,024 x 4,096 / 5,120 = 819 neurons per core
    # one neuron with 5,000 inputs cannot fit any core's 4,096 input axons
    res = BACKENDS["loihi"].resources(_chain_graph([5000, 3], [np.ones((3, 5000))]), hw)
    assert any("fan_in_per_core" in line for line in res.over_limits)
