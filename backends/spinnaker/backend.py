"""The SpiNNaker backends: the PyNN program an artifact carries, sPyNNaker's own mapping of it, and its runs.

* ``emit`` writes ``network.py`` (``program.py``, a plain PyNN program), ``network.json`` and ``network.npz``
  (``netlist.py``), then runs the program's ``--map`` on a virtual SpiNNaker machine (sPyNNaker 1!7.4.1's
  partitioning, placement and routing) and keeps the result as ``mapping.json``. A network that sPyNNaker
  cannot place is a ``NeuroccError`` naming the limit; without the SpiNNaker extra the program is written
  unmapped, with a note.
* ``run``: the ``spinnaker`` backend simulates sPyNNaker's fixed-point semantics on the reference simulator (no
  board here); the ``nest`` backend writes the program to a temporary folder with the samples' inputs, runs it
  with pyNN.nest in a subprocess and turns its spikes and read-out potentials into the standard ``Trace``.
* ``resources`` reports sPyNNaker's mapping where it ran, else neurocc's count (``ReferenceBackend``).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from neurocc.errors import NeuroccError
from neurocc.ir.synapses import fan_out

from ..base import Resources
from ..reference.backend import RunsOnReference
from ..trace import Trace, trace_from_trains
from .netlist import analog_currents, build_netlist, check_spinnaker

PROGRAM = Path(__file__).with_name("program.py")
INSTALL = 'pip install "neurocc[spinnaker]"  (PyNN 0.13, nest-simulator 3.10, sPyNNaker 1!7.4.1)'
# What each of sPyNNaker's mapping failures means, as the chip limit it names
LIMITS = {"PacmanPlaceException": "cores: more cores than the virtual machine's chips hold",
          "PacmanTooBigToPlace": "memory per core: one core's SDRAM cannot hold its synaptic matrix",
          "SynapseRowTooBigException": "synapses per row: a neuron reaches more synapses on one core than a row holds",
          "PacmanRoutingException": "routing entries: a router table cannot hold the routes"}
SPIKE_INPUT = ("neurocc's PyNN program feeds analog input, as the first layer's current; spike-coded input is not "
               "supported on SpiNNaker yet (PyNN's smallest delay is one step and NEST's first spike time 2 ms, so the "
               "reference's same-step input cannot be delivered): use --coding analog")
METHOD = ("sPyNNaker 1!7.4.1's own partitioning, placement and routing of the emitted PyNN program on a virtual "
          "SpiNN-5 machine (cores per population, chips, routing-table entries before compression)")


def missing_extra() -> Optional[str]:
    """The SpiNNaker extra's module that is not installed, or None."""
    for module in ("pyNN", "nest", "spynnaker"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def _python_env(tmp: Path) -> dict:
    """The subprocess's environment: NEST and matplotlib keep their caches out of HOME."""
    return {**os.environ, "MPLCONFIGDIR": str(tmp), "PYNEST_QUIET": "1", "OMP_NUM_THREADS": "1"}


def write_program(graph, folder: Path):
    """``network.py``, ``network.json`` and ``network.npz`` for ``graph`` in ``folder``; returns the netlist."""
    if not graph.payload(graph.inputs[0]).coding.constant:
        raise NeuroccError(SPIKE_INPUT)
    net = build_netlist(graph)
    index = {p.name: i for i, p in enumerate(net.populations)}
    doc = {"dt_ms": 1.0, "input": {"name": net.input, "shape": list(net.input_shape)},
           "populations": [{"name": p.name, "size": p.size, "shape": list(p.shape), "readout": p.readout,
                            "output": p.name in graph.outputs, "threshold": p.threshold, "v0": p.v0,
                            "leak_shift": p.leak_shift, "refractory": p.refractory, "parts": p.parts,
                            "exponent": max((q.exponent for q in net.projections if q.target == p.name), default=0)}
                           for p in net.populations],
           "projections": []}
    arrays = {f"bias/{i}": p.bias for i, p in enumerate(net.populations)}
    for q in net.projections:
        if q.source == net.input:
            continue                        # analog input: each sample's drive goes into the targets' i_offset
        j = len(doc["projections"])
        doc["projections"].append({"source": index.get(q.source), "target": index[q.target], "delay": q.delay})
        arrays.update({f"projection/{j}/{key}": getattr(q, key).astype(np.int32)     # |weight| < 2^16 << 15
                       for key in ("pre", "post", "weight")})
    folder = Path(folder)
    (folder / "network.json").write_text(json.dumps(doc, indent=1))
    np.savez(folder / "network.npz", **arrays)
    shutil.copyfile(PROGRAM, folder / "network.py")
    return net


def map_program(folder: Path) -> dict:
    """sPyNNaker's mapping of the program in ``folder`` (its ``--map``), or a NeuroccError naming the limit."""
    folder = Path(folder).resolve()
    out = folder / "mapping.json"
    with tempfile.TemporaryDirectory(prefix="neurocc-map-") as tmp:
        done = subprocess.run([sys.executable, str(folder / "network.py"), "--map", str(out)], cwd=tmp,
                              env=_python_env(Path(tmp)), capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"sPyNNaker's mapping failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    mapping = json.loads(out.read_text())
    if "error" in mapping:
        out.unlink()
        limit = LIMITS.get(mapping["error"], mapping["error"])
        raise NeuroccError(f"the network does not map onto SpiNNaker ({limit}): sPyNNaker says: {mapping['message']}")
    return mapping


class SpinnakerBackend(RunsOnReference):
    name = "spinnaker"
    description = ("a PyNN program for sPyNNaker 1!7.4.1, mapped by sPyNNaker on a virtual machine; simulated "
                   "bit-exactly by the reference simulator")

    def emit(self, graph, outdir: Path) -> None:
        """The PyNN program and its data; sPyNNaker's mapping (``mapping.json``) where the extra is installed."""
        write_program(graph, outdir)
        if missing_extra() is None:
            map_program(outdir)

    def resources(self, graph, hwmodel=None, emitted: Optional[Path] = None) -> Resources:
        counted = self._count.resources(graph, hwmodel)
        path = Path(emitted) / "mapping.json" if emitted is not None else None
        if path is None or not path.is_file():
            why = (f"the SpiNNaker extra is not installed: {INSTALL}" if missing_extra() else
                   "compile an artifact to map it" if path is None else "the artifact was compiled unmapped")
            return dataclasses.replace(counted, method=f"{counted.method} (sPyNNaker's mapping not run: {why})")
        mapping = json.loads(path.read_text())
        rows = tuple(dataclasses.replace(r, cores=mapping["cores"].get(r.name, 0)) for r in counted.populations)
        limits = dict(counted.limits, routing_entries=mapping["routing_entries"],
                      routing_entries_max_per_chip=mapping["routing_entries_max_per_chip"],
                      virtual_machine_chips=mapping["machine"]["chips"])
        return Resources(populations=rows, neurons=counted.neurons, synapses=counted.synapses,
                         cores=mapping["total_cores"], chips=mapping["chips"], limits=limits, over_limits=(),
                         method=METHOD)


class NestBackend(SpinnakerBackend):
    name = "nest"
    description = "the SpiNNaker PyNN program run on NEST 3.10 (pyNN.nest), one sample after another"
    simulator = "nest"
    max_synapses = 20_000_000       # PyNN's connection lists and NEST's synapses: about 100 bytes each, ~2 GB

    def expected_seconds(self, graph, samples: int, steps: int) -> float:
        """A rough time for a run, from rates measured here (2 cores): PyNN builds about 100,000 synapses a second;
        each sample costs about 0.2 s to reset and read back, and each step about 4e-8 s per synapse. A network
        beyond ``max_synapses`` is refused, naming its size and that time."""
        synapses = int(sum(fan_out(graph, n).sum() for n in graph.nodes() if graph.nx.out_degree(n)
                           and n not in graph.inputs))
        seconds = synapses / 1e5 + samples * (0.2 + steps * 4e-8 * synapses)
        if synapses > self.max_synapses:
            neurons = sum(int(np.prod(graph.shape(n))) for n in graph.nodes() if n not in graph.inputs)
            raise NeuroccError(f"the network is too large for NEST here: {neurons:,} neurons and {synapses:,} synapses, "
                               f"more than {self.max_synapses:,} (PyNN's lists and NEST's synapses take about 100 bytes "
                               f"each); it would take about {seconds / 3600:,.1f} h")
        return seconds

    def run(self, graph, x, steps, *, batch_size=64, device="cpu", coding=None, record_trains=False,
            progress=lambda it, **_: it):
        """Run the program on NEST in a subprocess, one sample after another (``batch_size`` and ``device`` do not
        apply); the trace has the spikes, synaptic events and read-outs, not the operation counts."""
        check_spinnaker(graph)
        missing = missing_extra()
        if missing:
            raise NeuroccError(f"the {self.name} backend needs the SpiNNaker extra ({missing} is not installed): {INSTALL}")
        if not (coding or graph.payload(graph.inputs[0]).coding).constant:
            raise NeuroccError(SPIKE_INPUT)
        with tempfile.TemporaryDirectory(prefix=f"neurocc-{self.name}-") as tmp:
            tmp = Path(tmp)
            net = write_program(graph, tmp)
            index = {p.name: i for i, p in enumerate(net.populations)}
            currents = analog_currents(graph, net, x)
            np.savez(tmp / "inputs.npz", samples=np.int64(len(x)),
                     **{f"current/{index[name]}": c for name, c in currents.items()})
            out = tmp / "spikes.npz"
            command = [sys.executable, str(tmp / "network.py"), str(tmp / "inputs.npz"), "-o", str(out),
                       "--steps", str(steps), "--simulator", self.simulator]
            with subprocess.Popen(command, cwd=tmp, env=_python_env(tmp), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) as proc:
                for _ in progress(range(len(x)), desc=f"simulating ({self.simulator})", unit="sample"):
                    if not proc.stdout.readline():
                        break
                stderr = proc.stderr.read()
            if proc.returncode != 0 or not out.is_file():
                lines = [line for line in stderr.strip().splitlines() if line.strip()]
                raise RuntimeError(f"the PyNN program failed on {self.simulator}: {lines[-1] if lines else proc.returncode}")
            with np.load(out, allow_pickle=False) as result:
                return _trace(graph, net, {k: result[k] for k in result.files}, len(x), steps, record_trains)


def _trace(graph, net, result: dict, samples: int, steps: int, record_trains: bool) -> Trace:
    """The program's spike rows and read-out potentials as a ``Trace``."""
    trains, potentials = {}, {}
    for i, pop in enumerate(net.populations):
        if pop.readout or pop.name in graph.outputs:
            potentials[pop.name] = result[f"v/{i}"].transpose(1, 0, 2)              # (steps, samples, classes)
        if pop.readout:
            continue
        rows = result[f"spikes/{i}"]
        trains[pop.name] = train = np.zeros((steps, samples, pop.size), np.int8)
        train[rows[:, 1] - 1, rows[:, 0], rows[:, 2]] = 1
    return trace_from_trains(graph, trains, potentials, samples, steps, record_trains)
