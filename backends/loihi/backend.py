"""The Loihi backends: the Lava program an artifact carries, its core mapping, and its runs on Lava.

* ``emit`` (both) writes ``network.py`` (``program.py``: plain lava-nc 0.10.0 with neurocc's SRIF process),
  ``network.json`` and ``network.npz`` (``network.py``). Writing needs no Lava.
* ``run``: the ``loihi`` backend simulates Lava's fixed-point semantics on the reference simulator; the ``lava``
  backend writes the program and the samples' quantised input to a temporary folder and runs it with Lava's own
  processes on ``Loihi2SimCfg(select_tag="fixed_pt")``, in Lava's environment (``lava_env.py``), then turns its
  spikes and read-outs into the standard ``Trace``.
* ``resources``: neurocc's core mapping of the Lava network against the Loihi hardware model (``mapping.py``).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from neurocc.errors import NeuroccError

from ..base import PopulationResources, Resources
from ..reference.backend import RunsOnReference
from ..trace import trace_from_trains
from .lava_env import require_lava
from .mapping import map_cores
from .network import build_netlist, check_loihi, write_network

log = logging.getLogger("neurocc")
PROGRAM = Path(__file__).with_name("program.py")
METHOD = ("neurocc's Loihi core mapping of the emitted Lava network (backends/loihi/mapping.py): ranges of neurons in "
          "channels-last order, one per core, within the compartment, fan-in, synapse-memory (a lower bound) and "
          "fan-out limits of the hardware model; Intel's own placement for hardware is not public")


def write_program(graph, folder: Path):
    """``network.py``, ``network.json`` and ``network.npz`` for ``graph`` in ``folder``; returns the netlist."""
    net = write_network(graph, folder)
    shutil.copyfile(PROGRAM, Path(folder) / "network.py")
    return net


class LoihiBackend(RunsOnReference):
    name = "loihi"
    description = ("a lava-nc 0.10.0 program (Sparse, LIF and neurocc's SRIF processes); simulated bit-exactly by "
                   "the reference simulator")

    def emit(self, graph, outdir: Path) -> None:
        """The Lava program; for a network Lava cannot express (a max-pool gate), ``NOT_EMITTED.txt`` says why and
        the compile warns: the reference still simulates the network's Loihi semantics."""
        try:
            write_program(graph, outdir)
        except NeuroccError as e:
            for name in ("network.json", "network.npz"):
                (Path(outdir) / name).unlink(missing_ok=True)
            (Path(outdir) / "NOT_EMITTED.txt").write_text(f"No Lava program: {e}\n")
            log.warning("no Lava program was written: %s", e)

    def resources(self, graph, hwmodel=None, emitted: Optional[Path] = None) -> Resources:
        counted = self._count.resources(graph, hwmodel)
        if hwmodel is None or graph.meta.get("hwmodel") != "loihi":
            return counted
        try:
            cores = map_cores(build_netlist(graph), hwmodel)
        except NeuroccError as e:
            return dataclasses.replace(counted, method=f"{counted.method} (no Lava program to map: {e})")
        rows = tuple(PopulationResources(**{**r.__dict__, "cores": len(cores.ranges.get(r.name, ()))})
                     for r in counted.populations)
        total = sum(r.cores for r in rows)
        return Resources(populations=rows, neurons=counted.neurons, synapses=counted.synapses, cores=total,
                         chips=max(1, math.ceil(total / hwmodel.limits.cores_per_chip)),
                         limits=dict(vars(hwmodel.limits)), over_limits=tuple(cores.over), method=METHOD)


class LavaBackend(LoihiBackend):
    name = "lava"
    description = "the Loihi Lava program run on lava-nc 0.10.0's fixed-point CPU models, one sample after another"
    max_weights = 50_000_000         # Sparse keeps every connection's CSR matrix in its own process
    seconds_per_step = 0.05          # measured here (2 cores, benchmarks/lava.py): Lava's per-step synchronisation
    seconds_per_synapse_step = 5e-8  # ... and its Sparse processes gathering the synapses of the step's spikes

    def expected_seconds(self, graph, samples: int, steps: int) -> float:
        """A rough time for a run, from the rates measured here (digits CNN 0.058 s a step with 73 k synapses,
        mnist-8 0.16 s with 2.2 M) plus 3 s to build the network; a network beyond ``max_weights`` synapses is
        refused, naming its size and that time."""
        synapses = sum(_synapses(graph, n) for n in graph.nodes() if graph.nx.out_degree(n))
        seconds = 3 + samples * steps * (self.seconds_per_step + self.seconds_per_synapse_step * synapses)
        if synapses > self.max_weights:
            raise NeuroccError(f"the network is too large for Lava's CPU simulation here: {synapses:,} synapses, more "
                               f"than {self.max_weights:,} (each connection's matrix lives in its own process); it "
                               f"would take about {seconds / 3600:,.1f} h")
        return seconds

    def run(self, graph, x, steps, *, batch_size=64, device="cpu", coding=None, record_trains=False,
            progress=lambda it, **_: it):
        """Run the program on Lava in its environment, one sample after another (``batch_size`` and ``device`` do
        not apply); the trace has the spikes, synaptic events and read-outs, not the operation counts."""
        check_loihi(graph)
        if steps < 1:
            raise NeuroccError(f"--steps must be at least 1, got {steps}")
        self.expected_seconds(graph, len(x), steps)
        source = graph.payload(graph.inputs[0])
        coding = coding or source.coding
        with tempfile.TemporaryDirectory(prefix="neurocc-lava-") as tmp:
            tmp = Path(tmp)
            net = write_program(graph, tmp)         # refuses what Lava cannot express, before asking for Lava
            python = require_lava()
            xq = _quantised_input(source, coding, x, steps)
            np.savez(tmp / "inputs.npz", x=xq)
            out = tmp / "spikes.npz"
            command = [str(python), str(tmp / "network.py"), str(tmp / "inputs.npz"), "-o", str(out),
                       "--steps", str(steps)]
            with subprocess.Popen(command, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
                for _ in progress(range(len(x)), desc="simulating (lava)", unit="sample"):
                    if not proc.stdout.readline():
                        break
                stderr = proc.stderr.read()
            if proc.returncode != 0 or not out.is_file():
                lines = [line for line in stderr.strip().splitlines() if line.strip()]
                raise RuntimeError(f"the Lava program failed: {lines[-1] if lines else proc.returncode}")
            with np.load(out, allow_pickle=False) as result:
                result = {k: result[k] for k in result.files}
        trains, potentials = {}, {}
        if not coding.constant:              # the input's spikes, signed, as the reference records them
            trains[net.input] = np.sign(xq[:, :steps]).transpose(1, 0, 2).astype(np.int8)
        for i, (name, pop) in enumerate(net.populations):
            if f"spikes/{i}" in result:
                trains[name] = result[f"spikes/{i}"].transpose(1, 0, 2).astype(np.int8)
            if f"v/{i}" in result:
                potentials[name] = result[f"v/{i}"].transpose(1, 0, 2)
        return trace_from_trains(graph, trains, potentials, len(x), steps, record_trains)


def _synapses(graph, name: str) -> int:
    from neurocc.ir.synapses import fan_out
    return int(fan_out(graph, name).sum())


def _quantised_input(source, coding, x: np.ndarray, steps: int) -> np.ndarray:
    """The input in integers as the reference feeds it (``InputSource.encode``): (samples, neurons) for a constant
    coding, else (samples, steps + 1, neurons) (the program sends each step's successor, see ``program.py``)."""
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float64)
    ids = torch.arange(len(x))
    values = source.encode(xt, ids, torch.arange(1, (1 if coding.constant else steps + 1) + 1), integer=True,
                           coding=coding)
    flat = values.reshape(values.shape[0], len(x), -1).numpy().astype(np.int64)
    return flat[0] if coding.constant else flat.transpose(1, 0, 2)
