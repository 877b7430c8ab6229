"""NIR: neurocc -> NIR -> neurocc round trips spike for spike, a foreign graph runs the discretisation the NIR
frontend states (checked against the equations written out here), snnTorch's own simulation agrees with neurocc's
on snnTorch's export, and every refusal is one line that names what it refuses and writes nothing."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import rand
from neurocc.artifact import read_artifact
from neurocc.backends.reference.simulator import Simulator
from neurocc.cli import main
from neurocc.errors import NeuroccError
from neurocc.frontend.nir import load_nir
from neurocc.ir import Graph, ops
from neurocc.ir.neurons import IF, LIF
from neurocc.ir.snn import InputSource, Population, Projection
from neurocc.nir_export import to_nir

nir = pytest.importorskip("nir")


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _traces(a: Graph, b: Graph, x: np.ndarray, steps: int):
    ta = Simulator(a, record_trains=True).run(x, steps, block=1)
    tb = Simulator(b, record_trains=True).run(x, steps, block=1)
    return ta, tb


# ------------------------------------------------------------------------------------- round trip


@pytest.fixture(scope="module")
def digits_cnn(digits, digits_onnx, tmp_path_factory):
    """The digits CNN of conftest (conv-BN-ReLU x2, avg-pool, linear) as ONNX; calibration data and test images."""
    xtr, _, xte, _ = digits
    d = tmp_path_factory.mktemp("nircnn")
    shutil.copy(digits_onnx, d / "cnn.onnx")
    np.savez(d / "calib.npz", x=xtr[:100])
    return d, xte[:8]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_round_trip_gives_identical_spikes(digits_cnn, tmp_path, capsys, reset):
    """compile -> export -> compile the .nir: every population's spikes at every step and the read-out's potential
    are identical (soft reset, compare >= and V(0) = 0.5 through neurocc's node metadata)."""
    d, x = digits_cnn
    first, exported, again = tmp_path / "a.ncc", tmp_path / "a.nir", tmp_path / "b.ncc"
    assert cli(capsys, "compile", d / "cnn.onnx", "--calib", d / "calib.npz", "--reset", reset, "-o", first, "-q")[0] == 0
    code, out, _ = cli(capsys, "export", first, "--format", "nir", "-o", exported)
    assert code == 0 and "as NIR" in out
    if reset == "subtract":
        assert "reset by subtraction" in out            # a foreign tool would not know
    code, _, err = cli(capsys, "compile", exported, "--nir-steps", 4, "-o", again, "-q")
    assert code == 0, err
    a, b = read_artifact(first).snn, read_artifact(again).snn
    spiking = [n for n in a.topo_order() if isinstance(a.payload(n), Population) and a.payload(n).readout == "spike"]
    assert len(spiking) == 2 and all(b.payload(n).neuron == a.payload(n).neuron for n in spiking)
    ta, tb = _traces(a, b, x, 20)
    assert ta.spike_trains.keys() == tb.spike_trains.keys() == set(spiking)
    for name in spiking:
        assert ta.spike_trains[name].sum() > 0
        assert np.array_equal(ta.spike_trains[name], tb.spike_trains[name]), name
    (ra,), (rb,) = ta.readouts.values(), tb.readouts.values()
    assert np.array_equal(ra.potential, rb.potential)
    assert read_artifact(again).manifest["source"]["name"] == "a.nir"


def _trained_snn_onnx(path):
    """A directly trained SNN in neurocc's ONNX form: Conv -> Spike(LIF 0.9, zero) -> AvgPool -> Flatten -> Gemm ->
    Spike(IF, subtract, >=, v0 0.25) -> Gemm, trained for 7 steps."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(3)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    p = dict(W1=f32(rng.normal(0, .6, (4, 1, 3, 3))), b1=f32(rng.normal(0, .1, 4)), W2=f32(rng.normal(0, .3, (6, 16))),
             b2=f32(rng.normal(0, .1, 6)), W3=f32(rng.normal(0, .5, (3, 6))), b3=f32(rng.normal(0, .1, 3)))
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Spike", ["c1"], ["s1"], domain="neurocc", threshold=1.0, leak=0.9, reset="zero"),
             helper.make_node("AveragePool", ["s1"], ["p1"], kernel_shape=[4, 4], strides=[4, 4]),
             helper.make_node("Flatten", ["p1"], ["f1"]),
             helper.make_node("Gemm", ["f1", "W2", "b2"], ["h2"], transB=1),
             helper.make_node("Spike", ["h2"], ["s2"], domain="neurocc", threshold=0.5, reset="subtract", v0=0.25),
             helper.make_node("Gemm", ["s2", "W3", "b3"], ["logits"], transB=1)]
    info = lambda n, s: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s)  # noqa: E731
    graph = helper.make_graph(nodes, "snn", [info("x", ["N", 1, 8, 8])], [info("logits", ["N", 3])],
                              [numpy_helper.from_array(a, k) for k, a in p.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("neurocc", 1)])
    helper.set_model_props(model, {"neurocc.time_steps": "7", "neurocc.method": "srif"})
    onnx.save(model, str(path))
    return path


def test_trained_snn_round_trips_with_its_leak_and_steps(tmp_path, capsys):
    """A directly trained SNN (a leaky layer, a soft-reset layer with V(0) != 0): LIF and IF nodes carry it to NIR and
    back, spike for spike, and the trained steps travel in the graph metadata."""
    first, exported, again = tmp_path / "t.ncc", tmp_path / "t.nir", tmp_path / "u.ncc"
    assert cli(capsys, "compile", _trained_snn_onnx(tmp_path / "t.onnx"), "-o", first, "-q")[0] == 0
    assert cli(capsys, "export", first, "-o", exported, "-q")[0] == 0
    written = nir.read(exported)
    assert isinstance(written.nodes["s1"], nir.LIF) and isinstance(written.nodes["s2"], nir.IF)
    assert cli(capsys, "compile", exported, "-o", again, "-q")[0] == 0
    a, b = read_artifact(first).snn, read_artifact(again).snn
    assert b.meta["trained_snn"]["time_steps"] == 7
    for name in ("s1", "s2"):
        assert b.payload(name).neuron == a.payload(name).neuron
    x = rand(8, 1, 8, 8, seed=4)
    ta, tb = _traces(a, b, x, 12)
    for name in ("s1", "s2"):
        assert ta.spike_trains[name].sum() > 0 and np.array_equal(ta.spike_trains[name], tb.spike_trains[name])
    (ra,), (rb,) = ta.readouts.values(), tb.readouts.values()
    assert np.array_equal(ra.potential, rb.potential)


# ---------------------------------------------------------------------------- a foreign NIR graph


def _foreign_graph(dt):
    """Input(4) -> Affine -> LIF (r per neuron, v_leak, v_reset != 0) -> Linear -> IF -> Output, every value dyadic
    so that float32 and float64 compute the same numbers."""
    rng = np.random.default_rng(1)
    w1 = rng.integers(-8, 9, (3, 4)) / 8.0
    w2 = rng.integers(-8, 9, (2, 3)) / 4.0
    lif = nir.LIF(tau=np.full(3, 4 * dt), r=np.array([8.0, 8.0, 16.0]), v_leak=np.full(3, 0.5),
                  v_threshold=np.full(3, 0.75), v_reset=np.full(3, -0.25))
    nodes = {"x": nir.Input(input_type={"input": np.array([4])}), "fc1": nir.Affine(weight=w1, bias=np.full(3, 0.125)),
             "lif": lif, "fc2": nir.Linear(weight=w2), "if": nir.IF(r=np.full(2, 1 / dt), v_threshold=np.full(2, 0.5)),
             "out": nir.Output(output_type={"output": np.array([2])})}
    edges = [("x", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "if"), ("if", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=True), (w1, w2)


def _euler(x, w1, w2, dt, steps):
    """NIR's equations as the frontend discretises them (forward Euler, dt), in float64, on the potential v."""
    s1, s2 = [], []
    v1, v2 = np.zeros((len(x), 3)), np.zeros((len(x), 2))
    tau, r1, v_leak, thr1, reset1 = 4 * dt, np.array([8.0, 8.0, 16.0]), 0.5, 0.75, -0.25
    for _ in range(steps):
        i1 = x @ w1.T + 0.125
        v1 = v1 + dt / tau * (v_leak - v1 + r1 * i1)
        z1 = v1 > thr1
        v1 = np.where(z1, reset1, v1)
        v2 = v2 + dt * (1 / dt) * (z1 @ w2.T)
        z2 = v2 > 0.5
        v2 = np.where(z2, 0.0, v2)
        s1.append(z1)
        s2.append(z2)
    return np.stack(s1), np.stack(s2)


def test_foreign_graph_runs_the_stated_euler_discretisation(tmp_path, capsys):
    dt = 0.125
    graph, (w1, w2) = _foreign_graph(dt)
    path = tmp_path / "foreign.nir"
    nir.write(path, graph)
    ann, data = load_nir(path, dt=dt)
    assert data == path.read_bytes() and ann.meta["trained_snn"]["method"] == "nir"
    spikes = {n: ann.payload(n) for n in ann.nodes() if isinstance(ann.payload(n), ops.Spike)}
    # leak 1 - dt/tau, threshold v_thr - v_reset, V(0) = -v_reset on the shifted state, NIR's > and hard reset
    assert spikes["lif"] == ops.Spike(threshold=1.0, leak=0.75, reset="zero", compare=">", v0=0.25)
    assert spikes["if"] == ops.Spike(threshold=0.5, leak=1.0, reset="zero", compare=">", v0=0.0)
    out = tmp_path / "f.ncc"
    assert cli(capsys, "compile", path, "--nir-dt", dt, "--nir-steps", 8, "-o", out, "-q")[0] == 0
    art = read_artifact(out)
    assert art.snn.meta["trained_snn"]["time_steps"] == 8
    x = (np.random.default_rng(2).integers(0, 9, (32, 4)) / 8.0).astype(np.float32)
    trace = Simulator(art.snn, record_trains=True).run(x, 8)
    s1, s2 = _euler(x.astype(np.float64), w1, w2, dt, 8)
    assert s1.sum() > 0 and s2.sum() > 0
    assert np.array_equal(trace.spike_trains["lif"], s1) and np.array_equal(trace.spike_trains["if"], s2)


# -------------------------------------------------------------------------------------- snnTorch


def test_snntorch_export_runs_spike_for_spike(tmp_path, capsys):
    """snnTorch's Leaky (reset to zero, no reset delay: NIR's hard reset) in a conv net, exported by snnTorch's own
    export_to_nir and run by neurocc, fires exactly as snnTorch's simulation, layer by layer, step by step."""
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir

    def leaky(shape, beta, threshold):
        # per-neuron tensors: snnTorch 1.0.0 writes a scalar beta as a 0-d tau, which NIR's type check refuses
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, threshold), init_hidden=True,
                         reset_mechanism="zero", reset_delay=False)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), leaky((6, 8, 8), 0.9, 1.0), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(6 * 4 * 4, 24), leaky((24,), 0.8, 0.5), nn.Linear(24, 10), leaky((10,), 0.95, 0.75))
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32))
    steps = 24
    spiking = {"1": net[1], "5": net[5], "7": net[7]}
    for m in spiking.values():
        m.reset_mem()
    expected = {k: [] for k in spiking}
    with torch.no_grad():
        for _ in range(steps):
            h = x
            for i, m in enumerate(net):
                h = m(h)
                if str(i) in spiking:
                    expected[str(i)].append(h.numpy().copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, x[:1], ignore_dims=[0])
    path = tmp_path / "snntorch.nir"
    nir.write(path, graph)
    out = tmp_path / "s.ncc"
    code, _, err = cli(capsys, "compile", path, "--target", "reference", "--nir-steps", 4, "-o", out, "-q")
    assert code == 0, err
    snn_graph = read_artifact(out).snn
    assert snn_graph.payload("1").neuron == LIF(threshold=1.0, leak=float(np.float32(0.9)), reset="zero", compare=">")
    trace = Simulator(snn_graph, record_trains=True).run(x.numpy(), steps, block=1)
    for name, frames in expected.items():
        want = np.stack(frames)
        assert want.sum() > 0
        assert np.array_equal(trace.spike_trains[name], want), name


# --------------------------------------------------------------------------------------- refusals


def _write(graph, path):
    nir.write(path, graph)
    return path


def test_unsupported_node_is_one_line_and_writes_nothing(tmp_path, capsys):
    nodes = {"x": nir.Input(input_type={"input": np.array([4])}), "fc": nir.Linear(weight=np.ones((3, 4))),
             "syn": nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3),
                                v_threshold=np.ones(3)),
             "y": nir.Output(output_type={"output": np.array([3])})}
    path = _write(nir.NIRGraph(nodes=nodes, edges=[("x", "fc"), ("fc", "syn"), ("syn", "y")]), tmp_path / "c.nir")
    out = tmp_path / "c.ncc"
    code, _, err = cli(capsys, "compile", path, "-o", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'syn'" in err and "CubaLIF" in err and "supported:" in err and "LIF" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def _small(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.mark.parametrize("case,words", [
    ("cycle", ["cycle", "'a'"]),
    ("threshold", ["'n'", "v_threshold", "differs"]),
    ("flatten", ["'f'", "Flatten", "every axis"]),
    ("leaky_readout", ["'li'", "leaks"]),
    ("metadata", ["'n'", "neurocc.reset"]),
])
def test_import_refusals_name_the_node(tmp_path, case, words):
    inp = nir.Input(input_type={"input": np.array([2])})
    out = nir.Output(output_type={"output": np.array([2])})
    eye = nir.Linear(weight=np.eye(2))
    if case == "cycle":
        g = _small({"x": inp, "a": eye, "b": nir.Linear(weight=np.eye(2)), "y": out},
                   [("x", "a"), ("a", "b"), ("b", "a"), ("b", "y")])
    elif case == "threshold":
        g = _small({"x": inp, "n": nir.IF(r=np.full(2, 1e4), v_threshold=np.array([1.0, 2.0])), "y": out},
                   [("x", "n"), ("n", "y")])
    elif case == "flatten":
        g = _small({"x": nir.Input(input_type={"input": np.array([2, 3, 4])}),
                    "f": nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=1, end_dim=-1),
                    "y": nir.Output(output_type={"output": np.array([2, 12])})}, [("x", "f"), ("f", "y")])
    elif case == "leaky_readout":
        g = _small({"x": inp, "a": eye, "li": nir.LI(tau=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2)),
                    "y": out}, [("x", "a"), ("a", "li"), ("li", "y")])
    else:
        g = _small({"x": inp, "n": nir.IF(r=np.full(2, 1e4), v_threshold=np.ones(2), metadata={"neurocc.reset": "soft"}),
                    "y": out}, [("x", "n"), ("n", "y")])
    path = _write(g, tmp_path / f"{case}.nir")
    with pytest.raises(NeuroccError) as e:
        load_nir(path)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_bad_files_and_options_exit_2(tmp_path, capsys, digits_cnn):
    garbage = tmp_path / "garbage.nir"
    garbage.write_bytes(b"not hdf5 at all")
    for args in (["compile", garbage, "-o", tmp_path / "g.ncc"],
                 ["compile", tmp_path / "missing.nir", "-o", tmp_path / "g.ncc"],
                 ["compile", digits_cnn[0] / "cnn.onnx", "--nir-dt", "1e-3", "-o", tmp_path / "g.ncc"]):
        code, _, err = cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    graph, _ = _foreign_graph(0.125)
    path = _write(graph, tmp_path / "ok.nir")
    code, _, err = cli(capsys, "compile", path, "--nir-dt", "0", "-o", tmp_path / "g.ncc")
    assert code == 2 and "--nir-dt" in err
    assert not (tmp_path / "g.ncc").exists()


def _tiny_onnx(path, maxpool=False):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2) if maxpool else nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    torch.onnx.export(model, (torch.from_numpy(rand(1, 1, 8, 8)),), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, dynamo=False)
    return path


@pytest.mark.parametrize("flags,maxpool,words", [
    (["--target", "generic"], False, ["quantised", "--target reference"]),
    (["--coding", "poisson"], False, ["input 'x'", "poisson", "--coding analog"]),
    ([], True, ["projection", "max-pool gate", "--max-pool average"]),
])
def test_export_refusals_exit_2_and_write_nothing(tmp_path, capsys, flags, maxpool, words):
    torch.manual_seed(0)
    onnx_path = _tiny_onnx(tmp_path / "m.onnx", maxpool=maxpool)
    art = tmp_path / "m.ncc"
    assert cli(capsys, "compile", onnx_path, *flags, "-o", art, "-q")[0] == 0
    target = tmp_path / "m.nir"
    code, out, err = cli(capsys, "export", art, "-o", target)
    assert code == 2 and len(err.strip().splitlines()) == 1 and out == ""
    assert all(w in err for w in words), err
    assert not target.exists() and not list(tmp_path.glob(".m.nir*"))


def _graph_with(population: Population, delay: int = 0) -> Graph:
    g = Graph("snn", inputs=("x",), outputs=("p",))
    g.add_node("x", InputSource(shape=(3,)), (3,))
    g.add_node("p", population, (2,))
    g.add_projection("x", "p", Projection(ops=(ops.Gemm(weight=np.ones((2, 3), np.float32)),), delay=delay))
    return g


def test_export_refuses_schedules_and_delays():
    plain = Population(shape=(2,), bias=np.zeros(2), neuron=IF(), readout="spike")
    scheduled = Population(shape=(2,), bias=np.zeros(2), neuron=LIF(leak=0.5), readout="spike",
                           gain=np.ones((3, 2), np.float32))
    with pytest.raises(NeuroccError, match="population 'p' follows a per-step schedule"):
        to_nir(_graph_with(scheduled))
    with pytest.raises(NeuroccError, match=r"projection 'x' -> 'p' has a delay of 2"):
        to_nir(_graph_with(plain, delay=2))
    graph = to_nir(_graph_with(plain))
    assert isinstance(graph.nodes["p"], nir.IF) and graph.nodes["p"].metadata["neurocc.reset"] == "subtract"


def test_export_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "example:" in out and "--format nir" in out
