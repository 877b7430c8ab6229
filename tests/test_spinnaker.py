"""The SpiNNaker backends: the emitted PyNN program against sPyNNaker's own code and mapping, and against NEST.

These tests need the SpiNNaker extra (PyNN, nest-simulator, sPyNNaker), which the README's test command installs;
each subprocess gets its own sPyNNaker config and caches in a temporary folder.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from neurocc.backends import BACKENDS
from neurocc.backends.spinnaker.backend import missing_extra, write_program
from neurocc.cli import main
from neurocc.frontend.onnx import load_onnx
from neurocc.options import CompileOptions
from neurocc.pipeline import CompileContext, compile_graph

pytestmark = pytest.mark.skipif(missing_extra() is not None,
                                reason=f"the SpiNNaker extra is not installed ({missing_extra()} missing)")


@pytest.fixture(scope="module")
def digits_spinnaker(digits, digits_onnx):
    xtr = digits[0]
    return compile_graph(load_onnx(digits_onnx)[0], CompileContext(CompileOptions(target="spinnaker"),
                                                                   calib_x=xtr[:300])).snn


def _dense_onnx(path, sizes, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).eval()
    torch.onnx.export(model, (torch.rand(1, sizes[0]),), str(path), input_names=["x"], dynamic_axes={"x": {0: "N"}},
                      dynamo=False)
    return path


# sPyNNaker's core derives R, exp_TC and T_refract from the words the host writes (neuron_model_lif_impl.h
# neuron_model_initialise); kdivk and expk below transcribe spinn_common 1!7.4.1's stdfix code (utils.h, stdfix-exp.c)
_ON_THE_CORE = '''
M32 = (1 << 32) - 1
def s32(x):
    x &= M32
    return x - (1 << 32) if x >> 31 else x
def kdivk(a, b):
    return s32(((a & M32) << 15) // b)
EXP_HI = [9708, 26389, 71733, 194991, 530041, 1440801, 3916503, 10646160, 28939262, 78665070, 213833830,
          581260615, 1580030169, 4294967296]
EXPM1_MID = [0, 260218914, 504671961, 734314346, 950043403, 1152702096, 1343082321, 1521927990, 1689937949,
             1847768698, 1996036966, 2135322113, 2266168400, 2389087112, 2504558555, 2613033936]
EXP_SER = [5294, 4293434720, 2081624032]
def round64(x):
    return (x >> 32) + (1 if (x & M32) >= 0x7FFFFFFF else 0)
def scale64(x, y):
    return round64((x & M32) * y) + (x >> 32) * y
def coef_mult(c, x):
    return ((c * x) >> 32) & M32
def exp_series(x):
    t = (EXP_SER[1] - coef_mult(EXP_SER[2], x)) & M32
    return (coef_mult(t, x) + EXP_SER[0]) & M32
def expk(n):                     # n <= 0 only, as the LIF uses it
    z = n >> 15
    f = n - (z << 15)
    if f > 0:
        z += 1
        f = 32768 - f
        t = EXP_HI[13 + z]
        t -= scale64(t, EXPM1_MID[f >> 11])
        t -= scale64(t, exp_series((f & 0x7FF) << 17))
    else:
        t = EXP_HI[13 + z]
    return s32(t >> 17)
'''


def _spynnaker_script(folder, body: str) -> dict:
    """Run ``body`` beside the emitted program in ``folder`` with pyNN.spiNNaker on a virtual board (a private
    config); it prints one JSON document, returned."""
    script = textwrap.dedent('''
        import json, os, sys, tempfile
        tmp = tempfile.mkdtemp()
        open(os.path.join(tmp, ".spynnaker.cfg"), "w").write(
            "[Machine]\\nversion = 5\\nvirtual_board = True\\n[Reports]\\ndefault_report_file_path = " + tmp + "\\n")
        os.environ["XDG_CONFIG_HOME"] = tmp
        os.chdir(tmp)
        sys.path.insert(0, FOLDER)
        import network
        import pyNN.spiNNaker as sim
        net, arrays = network.load_network()
        sim.setup(timestep=1.0)
        pops = network.build(sim, "spinnaker", net, arrays)
    ''').replace("FOLDER", repr(str(folder))) + _ON_THE_CORE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=folder,
                          env={**__import__("os").environ, "MPLCONFIGDIR": str(folder)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_spynnaker_computes_the_integers_neurocc_quantised_with(digits_spinnaker, tmp_path):
    """sPyNNaker's own encoding of the emitted parameters (the words its host code writes for each neuron), the
    values its core derives from them, and its ring-buffer shifts, equal the graph's integers."""
    net = write_program(digits_spinnaker, tmp_path)
    got = _spynnaker_script(tmp_path, '''
        from pacman.model.graphs.common import Slice
        from spynnaker.pyNN.models.neuron.neuron_data import _MergedDict
        out = []
        for i, (first, pop) in ((i, part) for i, parts in enumerate(pops) for part in parts):
            v = pop._vertex
            values = _MergedDict(v.parameters, v.state_variables)
            words = {}
            for struct in v.neuron_impl.structs:
                per_neuron = struct.repeat_type.name != "GLOBAL"
                data = struct.get_data(values, Slice(0, pop.size - 1)) if per_neuron else struct.get_data(values)
                names = [name for _, name in struct.fields]
                rows = [[int(x) - (1 << 32) if x >= 1 << 31 else int(x) for x in data[i::len(names)]]
                        for i in range(len(names))]
                words.update(dict(zip(names, rows)))
            tau_m, cm, refrac = words["tau_m"][0], words["cm"][0], words["tau_refrac"][0]
            x = kdivk(32768, tau_m)
            shifts = [int(s) for s in v.get_ring_buffer_shifts()]
            out.append({"population": i, "first": first, "words": words, "R": kdivk(tau_m, cm), "exp_TC": expk(-x),
                        "T_refract": (kdivk(refrac, 32768) + 32767) >> 15, "shifts": shifts,
                        "scales": [float(s) for s in v.get_weight_scales(shifts)]})
        print(json.dumps(out))
    ''')
    assert len(got) > len(net.populations)          # the second convolution comes in parts (rows of 288)
    assert sorted({core["population"] for core in got}) == list(range(len(net.populations)))
    for core in got:
        spec, w, first = net.populations[core["population"]], core["words"], core["first"]
        size = len(w["v"])
        assert w["v_thresh"] == [spec.threshold if not spec.readout else 2 ** 31 - 1] * size
        assert w["i_offset"] == spec.bias[first:first + size].tolist() and w["v"] == [spec.v0] * size
        assert w["v_rest"] == w["v_reset"] == [0] * size
        assert core["R"] == 2 ** (15 + spec.leak_shift) and core["exp_TC"] == 2 ** 15 - 2 ** (15 - spec.leak_shift)
        assert core["T_refract"] == spec.refractory
        incoming = [q for q in net.projections if q.target == spec.name and q.source != net.input]
        for q in incoming:
            assert core["shifts"] == [q.exponent, q.exponent]
            # the 16-bit weight sPyNNaker stores is |w| x its scale: exactly the quantised integer
            stored = np.abs(q.weight) / 2.0 ** 15 * core["scales"][0]
            assert np.array_equal(stored, np.abs(q.weight) >> q.exponent) and stored.max() < 2 ** 16


def test_nest_agrees_with_the_reference_spike_for_spike(digits, digits_spinnaker):
    """Per neuron and step, NEST's spikes equal the reference simulator's SpiNNaker semantics but where the
    one difference lands: sPyNNaker leaks floor(V / 2^12) bits per step, NEST V 2^-12 exactly (below one bit
    a step), so a spike can move when a potential ends a step less than a few bits from the threshold. Measured
    on this network: 2 of 20,058 spikes over 3 images x 30 steps. 99.9 % is what that mechanism allows over 30
    steps; read-outs differ by the same few bits and so agree on the class."""
    x = digits[2][:4]
    ref = BACKENDS["reference"].run(digits_spinnaker, x, 30, record_trains=True)
    nest = BACKENDS["nest"].run(digits_spinnaker, x, 30, record_trains=True)
    assert ref.spike_trains.keys() == nest.spike_trains.keys()
    for name, train in ref.spike_trains.items():
        assert train.sum() > 100
        assert (train == nest.spike_trains[name]).mean() >= 0.999, name
        assert abs(int(nest.spikes[name].sum()) - int(ref.spikes[name].sum())) <= 0.01 * ref.spikes[name].sum()
    for name, r in ref.readouts.items():
        assert np.abs(nest.readouts[name].potential - r.potential).max() < 2 ** 12
        assert np.array_equal(nest.readouts[name].potential[-1].argmax(1), r.potential[-1].argmax(1))


def test_cli_compiles_maps_and_runs_on_nest(digits, tmp_path, capsys):
    """A dense 64-300-10 net: sPyNNaker places 300 neurons at 256 per core on 2 cores and 10 on 1 (by hand:
    ceil(300 / 256) + ceil(10 / 256) = 3 cores on one chip); run --backend nest reports what the reference does."""
    xtr, ytr, xte, yte = digits
    np.savez(tmp_path / "train.npz", x=xtr.reshape(len(xtr), -1), y=ytr)
    np.savez(tmp_path / "test.npz", x=xte[:6].reshape(6, -1), y=yte[:6])
    model = _dense_onnx(tmp_path / "dense.onnx", [64, 300, 10])
    art = tmp_path / "d.ncc"
    assert main(["compile", str(model), "--calib", str(tmp_path / "train.npz"), "--target", "spinnaker",
                 "-o", str(art)]) == 0
    assert {"network.py", "network.json", "network.npz", "mapping.json"} <= {p.name for p in (art / "backend").iterdir()}
    mapping = json.loads((art / "backend" / "mapping.json").read_text())
    hidden, out = json.loads((art / "backend" / "network.json").read_text())["populations"]
    assert mapping["cores"] == {hidden["name"]: 2, out["name"]: 1} and mapping["chips"] == 1
    assert mapping["routing_entries"] >= 1
    capsys.readouterr()
    assert main(["inspect", str(art)]) == 0
    assert "sPyNNaker 1!7.4.1's own partitioning" in capsys.readouterr().out
    docs = {}
    for backend in ("reference", "nest"):
        assert main(["run", str(art), "--data", str(tmp_path / "test.npz"), "--steps", "12", "--backend", backend,
                     "--json", str(tmp_path / f"{backend}.json"), "-q"]) == 0
        docs[backend] = json.loads((tmp_path / f"{backend}.json").read_text())
    assert docs["nest"].keys() == docs["reference"].keys()
    assert docs["nest"]["backend"] == "nest"
    spikes = [sum(d["spikes_per_step"]) for d in docs.values()]
    assert abs(spikes[0] - spikes[1]) <= 0.01 * spikes[0]


def test_what_pynn_cannot_express_is_refused_by_name(tmp_path, capsys):
    """A max-pool gate has no synapse list: compile fails naming the projection, and writes nothing."""
    from conftest import MNIST8
    x = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    np.savez(tmp_path / "c.npz", x=x)
    code = main(["compile", str(MNIST8), "--calib", str(tmp_path / "c.npz"), "--target", "spinnaker",
                 "-o", str(tmp_path / "m.ncc")])
    err = capsys.readouterr().err
    assert code == 2 and "max-pool gate" in err and "projection" in err and len(err.strip().splitlines()) == 1
    assert "--max-pool average" in err and not (tmp_path / "m.ncc").exists()


def test_max_pool_average_replaces_the_gate_and_notes_the_agreement():
    """--max-pool average: no gate is left, and the compile notes how often the new ANN agrees with the original."""
    from conftest import MNIST8
    from neurocc.ir import ops

    x = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32) * 255
    result = compile_graph(load_onnx(MNIST8)[0], CompileContext(CompileOptions(target="spinnaker", max_pool="average"),
                                                                calib_x=x))
    assert not any(isinstance(result.ann.payload(n), ops.MaxPool) for n in result.ann.nodes())
    assert any(isinstance(result.ann.payload(n), ops.AvgPool) for n in result.ann.nodes())
    (note,) = [n for n in result.snn.meta["notes"] if n.startswith("--max-pool average")]
    assert "2 max pooling(s)" in note and "of 16 calibration samples" in note


def test_nest_refuses_other_targets_and_networks_too_large(digits_spinnaker, digits, tmp_path, capsys, digits_onnx):
    from neurocc.backends.spinnaker.backend import NestBackend
    from neurocc.errors import NeuroccError

    np.savez(tmp_path / "t.npz", x=digits[2][:2], y=digits[3][:2])
    assert main(["compile", str(digits_onnx), "--target", "loihi", "-o", str(tmp_path / "l.ncc"), "-q"]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "l.ncc"), "--data", str(tmp_path / "t.npz"), "--backend", "nest"]) == 2
    assert "--target spinnaker" in capsys.readouterr().err
    small = NestBackend()
    small.max_synapses = 1000
    with pytest.raises(NeuroccError, match="too large for NEST here: 3,082 neurons"):
        small.expected_seconds(digits_spinnaker, 10, 100)


def test_populations_come_in_parts_that_keep_rows_within_spynnakers_limit():
    """A 3x3 convolution 64 -> 64 channels on 8 x 8 gives a source neuron 576 synapses; sPyNNaker takes at most
    256 from one source neuron into one Population, so the target comes in 3 parts (192 each; 2 would be 288)."""
    from neurocc.backends.spinnaker.netlist import MAX_ROW, ProjectionSpec, row_parts
    from neurocc.ir import ops
    from neurocc.ir.synapses import synapse_matrix

    conv = ops.Conv(weight=np.ones((64, 64, 3, 3), np.float32), pads=(1, 1, 1, 1))
    m = synapse_matrix((conv,), (64, 8, 8)).tocoo()
    q = ProjectionSpec(source="a", target="b", pre=m.col, post=m.row, weight=np.ones(m.nnz, np.int64), delay=1,
                       exponent=0)
    assert np.bincount(m.col).max() == 576 and MAX_ROW == 256
    assert row_parts(4096, [q]) == [[0, 1365], [1365, 2731], [2731, 4096]]
