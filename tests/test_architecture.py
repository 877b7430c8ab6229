"""The seams later backends build on: the pass contract, strict artifacts, neuron models from hardware models,
input coding in the compiled network, raw traces decoded once, and a backend added by one registry line."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import MNIST8, assert_same_trace, rand
from models import torch_models
from neurocc import backends, pipeline
from neurocc.artifact import read_artifact
from neurocc.backends.reference.backend import ReferenceBackend
from neurocc.backends.reference.simulator import Simulator
from neurocc.backends.trace import trace_bytes
from neurocc.cli import main
from neurocc.errors import NeuroccError
from neurocc.frontend.onnx import load_onnx
from neurocc.hwmodels import load_hwmodel, load_hwmodel_file
from neurocc.ir.coding import Analog, Poisson
from neurocc.ir.neurons import IF, MODELS, LoihiLIF, SpinnakerLIF, TrueNorth, from_hwmodel
from neurocc.ir.serialize import from_dict, to_dict
from neurocc.ir.snn import InputSource, Population
from neurocc.ir.synapses import fan_in, fan_out
from neurocc.options import CompileOptions
from neurocc.passes import Pass
from neurocc.pipeline import CompileContext, PassFailure, compile_graph, run_passes


def _state(g) -> tuple:
    """Everything a graph holds, deeply: its serialised JSON and every array's bytes."""
    doc, tensors = to_dict(g)
    return json.dumps(doc, sort_keys=True), {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in tensors.items()}


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("res") / "res.onnx"
    torch.onnx.export(torch_models()["resnet_block_bn"], (torch.from_numpy(rand(2, 3, 12, 12)),), str(path),
                      input_names=["x"], dynamic_axes={"x": {0: "N"}}, dynamo=False, do_constant_folding=False)
    return path


# ------------------------------------------------------------------------------------------- passes


@pytest.mark.parametrize("target", ["reference", "loihi", "truenorth"])
def test_every_pass_leaves_its_input_unchanged(resnet_onnx, target):
    """Run the target's whole pipeline (with --optimize) pass by pass; each input, compared deeply (JSON of
    every payload, every array's bytes, the meta), is what it was before the pass ran."""
    graph, _ = load_onnx(resnet_onnx)
    calib = rand(32, 3, 12, 12, seed=3)
    opts = CompileOptions(target=target, optimize=3, optimize_steps=4, optimize_samples=8)
    ctx = CompileContext(opts, calib_x=calib, hwmodel=None if target == "reference" else load_hwmodel(target))
    snn_passes = pipeline.target_passes(target)
    ctx = dataclasses.replace(ctx, ann_graph=graph, finish=lambda g: run_passes(g, snn_passes[1:], ctx, []))
    seen = []
    for p in pipeline.ANN_PASSES + (pipeline.LOWERING,) + snn_passes[:1] + (pipeline.SNN_PASSES["optimize"],) \
            + snn_passes[1:]:
        before = _state(graph)
        out = run_passes(graph, (p,), ctx, [])
        assert _state(graph) == before, f"pass {p.name} changed its input"
        assert out is not graph and out.level == p.level_out
        if p.name == "calibrate":
            ctx.ann_graph = out
        graph = out
        seen.append(p.name)
    assert "quantize" in seen or target == "reference"


def test_a_pass_returning_the_wrong_level_is_a_pass_failure(resnet_onnx):
    graph, _ = load_onnx(resnet_onnx)
    wrong = Pass("canonicalize", lambda g, ctx: g.copy(), "ann", "snn")
    with pytest.raises(PassFailure, match="returned a ann graph, not snn"):
        run_passes(graph, (wrong,), CompileContext(CompileOptions()), ["frontend"])


def test_a_failing_pass_is_exit_1_with_one_line_and_the_passes_that_ran(tmp_path, capsys, monkeypatch):
    def broken(graph, ctx):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setitem(pipeline.SNN_PASSES, "normalize", Pass("normalize", broken, "snn", "snn"))
    code = main(["compile", str(MNIST8), "-o", str(tmp_path / "o")])
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if "WARNING" not in line)
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "internal error" in err and "pass normalize failed" in err and "lower_to_snn" in err and "-v" in err
    assert not (tmp_path / "o").exists()
    assert main(["-v", "compile", str(MNIST8), "-o", str(tmp_path / "o")]) == 1
    assert "Traceback" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- artifacts


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("a") / "m.ncc"
    calib = tmp_path_factory.mktemp("d") / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32))
    assert main(["compile", str(MNIST8), "--calib", str(calib), "--target", "loihi", "--coding", "poisson",
                 "--seed", "7", "-o", str(out), "-q"]) == 0
    return out


def _tamper(artifact, tmp_path, edit):
    """A copy of the artifact with snn.json edited and the manifest's sha256s updated to match (as a deliberate
    edit would), so that the schema check, not the checksum, has to find the fault."""
    import hashlib
    import shutil
    copy = tmp_path / "t.ncc"
    shutil.copytree(artifact, copy)
    doc = json.loads((copy / "snn.json").read_text())
    edit(doc)
    (copy / "snn.json").write_text(json.dumps(doc))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["snn.json"] = hashlib.sha256((copy / "snn.json").read_bytes()).hexdigest()
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    manifest["checksum"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["nodes"][1]["payload"]["neuron"].pop("du"), "field 'du' is missing"),
    (lambda d: d["nodes"][1]["payload"].update(leak=3), "has no field 'leak'"),
    (lambda d: d["nodes"][1]["payload"]["neuron"].update(type="Izhikevich"), "unknown payload type 'Izhikevich'"),
    (lambda d: d["nodes"][0]["payload"]["coding"].pop("seed"), "field 'seed' is missing"),
    (lambda d: d["edges"][0]["proj"].pop("delay"), "field 'delay' is missing"),
])
def test_artifact_reading_is_strict_and_names_the_field(artifact, tmp_path, capsys, edit, needle):
    bad = _tamper(artifact, tmp_path, edit)
    with pytest.raises(NeuroccError, match=needle):
        read_artifact(bad)
    code = main(["inspect", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err


def test_payloads_compare_by_value(artifact):
    art = read_artifact(artifact)
    doc, tensors = to_dict(art.snn)
    again = from_dict(doc, tensors)
    assert again == art.snn
    name = next(n for n in again.nodes() if isinstance(again.payload(n), Population))
    node = again.payload(name)
    bias = np.array(node.bias)
    bias.flat[0] += 1
    again.set_payload(name, dataclasses.replace(node, bias=bias))
    assert again != art.snn and again.payload(name) != node
    assert dataclasses.replace(node, bias=np.array(node.bias)) == node


# ------------------------------------------------------------------------------------ neuron models


@pytest.mark.parametrize("name, model", [("generic", IF), ("loihi", LoihiLIF), ("spinnaker", SpinnakerLIF),
                                         ("truenorth", TrueNorth)])
def test_each_hwmodel_maps_onto_its_neuron_model(name, model):
    hw = load_hwmodel(name)
    neuron = from_hwmodel(hw, threshold=640.0, v0=0.5, reset=hw.neuron.reset)
    assert type(neuron) is model and MODELS[hw.semantics] is model
    assert neuron.threshold == 640.0 and neuron.v0 == 0.5 and neuron.input_shift == hw.neuron.input_shift
    assert (neuron.as_nliaf() is not None) == (model in (IF, TrueNorth))
    if isinstance(neuron, IF):
        assert (neuron.state_bits, neuron.compare, neuron.overflow) == (
            hw.neuron.state_bits, hw.neuron.spike_compare, hw.neuron.overflow)


@pytest.mark.parametrize("name, old, new, key", [
    ("loihi", "state_bits = { value = 24,", "state_bits = { value = 32,", "neuron.state_bits"),
    ("spinnaker", 'spike_compare = { value = ">="', 'spike_compare = { value = ">"', "neuron.spike_compare"),
    ("generic", "refractory_steps = { value = 0,", "refractory_steps = { value = 2,", "refractory"),
])
def test_a_hwmodel_variant_its_neuron_model_cannot_express_is_refused(tmp_path, name, old, new, key):
    text = open(load_hwmodel(name).path).read()
    assert old in text
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new, 1))
    hw = load_hwmodel_file(path)
    with pytest.raises(NeuroccError, match=key):
        from_hwmodel(hw, threshold=64.0, v0=0.0, reset=hw.neuron.reset)


def test_quantize_gives_every_spiking_population_its_chips_neuron_model(artifact):
    snn = read_artifact(artifact).snn
    for name in snn.nodes():
        node = snn.payload(name)
        if isinstance(node, Population):
            expected = LoihiLIF if node.readout == "spike" else IF
            assert type(node.neuron) is expected and node.neuron.input_shift == 6


# -------------------------------------------------------------------------------------- input coding


def test_the_input_coding_is_compiled_into_the_artifact_and_run_can_override_it(artifact, tmp_path, capsys):
    snn = read_artifact(artifact).snn
    assert snn.payload(snn.inputs[0]).coding == Poisson(seed=7)
    np.savez(tmp_path / "t.npz", x=np.random.default_rng(1).random((6, 1, 28, 28), dtype=np.float32))
    docs = {}
    for extra in ([], ["--coding", "analog"], ["--seed", "8"]):
        js = tmp_path / f"{len(docs)}.json"
        assert main(["run", str(artifact), "--data", str(tmp_path / "t.npz"), "--steps", "6", "--json", str(js),
                     "-q", *extra]) == 0
        docs[" ".join(extra)] = json.loads(js.read_text())
    capsys.readouterr()
    assert docs[""]["coding"] == "poisson" and docs["--coding analog"]["coding"] == "analog"
    assert "Input3" in docs[""]["spikes_per_population"]
    assert "Input3" not in docs["--coding analog"]["spikes_per_population"]
    assert docs["--seed 8"]["spikes_per_population"]["Input3"] != docs[""]["spikes_per_population"]["Input3"]
    x = np.load(tmp_path / "t.npz")["x"]
    compiled = Simulator(snn).run(x, 6)
    assert_same_trace(compiled, Simulator(snn, coding=Poisson(seed=7)).run(x, 6))
    assert compiled.spikes["Input3"].sum() == pytest.approx(6 * docs[""]["spikes_per_population"]["Input3"])


def test_integer_coded_inputs_carry_the_full_input_scale():
    x = torch.tensor([[0.5, -1.0, 2.0]])
    src = InputSource(shape=(3,), scale=2.0, bits=8)
    values = src.encode(x, torch.tensor([0]), torch.arange(1, 5), integer=True)
    assert Analog.constant and values.tolist() == [[[64.0, -128.0, 256.0]]]          # x / scale * 2^8, saturated
    spikes = src.encode(x, torch.tensor([0]), torch.arange(1, 5), integer=True, coding=Poisson(seed=1))
    assert not Poisson.constant and spikes.shape == (4, 1, 3)
    assert set(spikes.unique().tolist()) == {-256.0, 0.0, 256.0}                      # a spike carries 2^8


# ------------------------------------------------------------------------------------ raw traces


def test_run_json_has_per_population_per_step_spikes_and_events(tmp_path, capsys):
    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32),
             y=np.arange(16) % 10)
    assert main(["compile", str(MNIST8), "--calib", str(calib), "-o", str(tmp_path / "m.ncc"), "-q"]) == 0
    js = tmp_path / "r.json"
    assert main(["run", str(tmp_path / "m.ncc"), "--data", str(calib), "--steps", "9", "--json", str(js), "-q"]) == 0
    capsys.readouterr()
    doc = json.loads(js.read_text())
    spikes, events = doc["spikes_per_population_per_step"], doc["synaptic_events_per_population_per_step"]
    assert all(len(v) == 9 for v in (*spikes.values(), *events.values()))
    assert np.allclose(np.sum(list(spikes.values()), axis=0), doc["spikes_per_step"])
    assert np.allclose(np.sum(list(events.values()), axis=0), doc["synaptic_events_per_step"])
    assert {k: sum(v) for k, v in spikes.items()} == pytest.approx(doc["spikes_per_population"])
    assert doc["backend"] == "reference"


def test_trace_is_per_sample_and_batching_only_concatenates(resnet_onnx):
    graph, _ = load_onnx(resnet_onnx)
    snn = compile_graph(graph, CompileContext(CompileOptions(), calib_x=rand(16, 3, 12, 12))).snn
    x = rand(7, 3, 12, 12, seed=5)
    whole = Simulator(snn).run(x, 10, batch_size=7)
    assert_same_trace(whole, Simulator(snn).run(x, 10, batch_size=2))
    for i in (0, 4):
        alone = Simulator(snn).run(x[i:i + 1], 10)
        for name, counts in whole.spikes.items():
            assert np.array_equal(counts[:, i], alone.spikes[name][:, 0])
        for name, r in whole.readouts.items():
            assert np.array_equal(r.potential[:, i], alone.readouts[name].potential[:, 0])
    assert whole.nbytes() == trace_bytes(snn, 10, 7, coding_spikes=False)      # what a run is refused by


# ----------------------------------------------------------------------------------------- backends


def test_reference_resources_count_neurons_synapses_and_cores(artifact):
    snn = read_artifact(artifact).snn
    hw = load_hwmodel("loihi")
    res = ReferenceBackend().resources(snn, hw)
    pops = {p.name: p for p in res.populations}
    for name in snn.nodes():
        size = int(np.prod(snn.shape(name)))
        spiking = isinstance(snn.payload(name), Population)
        assert pops[name].neurons == (size if spiking else 0)
        assert pops[name].cores == -(-pops[name].neurons // hw.limits.neurons_per_core)
        if snn.nx.out_degree(name):
            assert pops[name].synapses_out == int(fan_out(snn, name).sum())
        if spiking:
            assert pops[name].synapses_in == int(fan_in(snn, name).sum())
    assert sum(p.synapses_in for p in res.populations) == res.synapses        # every synapse counted once
    assert res.cores == sum(p.cores for p in res.populations) and res.chips == 1
    assert "neurons_per_core" in res.method and res.limits["neurons_per_core"] == 1024
    assert ReferenceBackend().resources(snn).cores is None


class _RecordingBackend(ReferenceBackend):
    """A second backend, as a new target's sub-package would add one: it emits a file and runs the graph."""
    name = "recording"
    description = "writes the network's population names, runs on the reference simulator"

    def emit(self, graph, outdir):
        (outdir / "populations.txt").write_text("\n".join(graph.topo_order()))


def test_a_new_backend_and_target_need_only_their_registry_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "recording", _RecordingBackend())
    monkeypatch.setitem(backends.TARGETS, "chip", backends.Target("chip", "a chip with generic formats", "generic",
                                                                  ("normalize", "quantize"), "recording"))
    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32))
    out = tmp_path / "chip.ncc"
    assert main(["compile", str(MNIST8), "--calib", str(calib), "--target", "chip", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cores" in text and (out / "backend" / "populations.txt").read_text().splitlines()[0] == "Input3"
    assert json.loads((out / "manifest.json").read_text())["passes"][-1] == "quantize"
    js = tmp_path / "r.json"
    assert main(["run", str(out), "--data", str(calib), "--steps", "3", "--json", str(js), "-q"]) == 0
    assert json.loads(js.read_text())["backend"] == "recording"
    assert main(["run", str(out), "--data", str(calib), "--steps", "3", "--backend", "reference", "-q"]) == 0
    assert "(reference, cpu)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", str(out), "--data", str(calib), "--backend", "nosuch"])
    assert "nosuch" in capsys.readouterr().err


def test_target_names_come_from_the_registry():
    from neurocc.hwmodels import available_hwmodels
    for name, target in backends.TARGETS.items():
        CompileOptions(target=name)
        assert target.backend in backends.BACKENDS
        assert target.hwmodel is None or target.hwmodel in available_hwmodels()
        assert all(p in pipeline.SNN_PASSES for p in target.passes)
    with pytest.raises(NeuroccError, match="unknown target"):
        CompileOptions(target="nosuch")
