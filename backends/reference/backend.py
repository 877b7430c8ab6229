"""The reference backend: runs any target's SNN graph on neurocc's own simulator (the oracle the chip
backends are tested against), and counts resources with neurocc's own packing model."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..base import PopulationResources, Resources

METHOD = ("neurocc's count: synapses are the non-zero weights a spike reaches (neurocc.ir.synapses); "
          "cores pack each population alone at limits.neurons_per_core neurons per core; an input fed from the "
          "host takes none; fan-in is checked against limits.fan_in_per_core, fan-out and routing are not "
          "modelled (a chip toolchain's own mapping may need more cores)")


class ReferenceBackend:
    name = "reference"
    description = "neurocc's bit-exact torch simulator (CPU, CUDA), every target's semantics"

    def emit(self, graph, outdir: Path) -> None:
        """Nothing beyond the artifact itself: this backend runs snn.json and snn.npz as they are."""

    def run(self, graph, x, steps, *, batch_size=64, device="cpu", coding=None, record_trains=False,
            progress=lambda it: it):
        from .simulator import Simulator
        return Simulator(graph, device=device, coding=coding, record_trains=record_trains).run(
            x, steps, batch_size=batch_size, progress=progress)

    def resources(self, graph, hwmodel=None, emitted=None) -> Resources:
        from neurocc.ir.snn import Population
        from neurocc.ir.synapses import fan_in, fan_out

        limits = {} if hwmodel is None else dict(vars(hwmodel.limits))
        rows, over = [], []
        for name in graph.topo_order():
            node = graph.payload(name)
            spiking = isinstance(node, Population)
            neurons = int(np.prod(graph.shape(name))) if spiking else 0
            incoming = fan_in(graph, name) if spiking else np.zeros(1)
            out = int(fan_out(graph, name).sum()) if graph.nx.out_degree(name) else 0
            cores = None
            if hwmodel is not None:
                cores = math.ceil(neurons / hwmodel.limits.neurons_per_core)
                if incoming.max() > hwmodel.limits.fan_in_per_core:
                    over.append(f"{name}: a neuron has {int(incoming.max()):,} synapses in, more than "
                                f"limits.fan_in_per_core = {hwmodel.limits.fan_in_per_core:,}")
            kind = "input" if not spiking else ("readout" if node.readout == "accumulate" else
                                                 type(node.neuron).__name__ + (" (per-step schedule)" if node.scheduled else ""))
            rows.append(PopulationResources(name=name, kind=kind, shape=tuple(graph.shape(name)), neurons=neurons,
                                            synapses_in=int(incoming.sum()), synapses_out=out,
                                            fan_in=int(incoming.max()), cores=cores))
        cores = None if hwmodel is None else sum(r.cores for r in rows)
        chips = None if hwmodel is None else max(1, math.ceil(cores / hwmodel.limits.cores_per_chip))
        return Resources(populations=tuple(rows), neurons=sum(r.neurons for r in rows),
                         synapses=sum(r.synapses_out for r in rows), cores=cores, chips=chips, limits=limits,
                         over_limits=tuple(over), method=METHOD)


class RunsOnReference:
    """Base of a chip backend that emits its toolchain's program but, with no chip here, runs the chip's semantics on
    the reference simulator (``run``); ``self._count`` also gives neurocc's own resource count."""

    def __init__(self):
        self._count = ReferenceBackend()

    def run(self, graph, x, steps, **kwargs):
        return self._count.run(graph, x, steps, **kwargs)
