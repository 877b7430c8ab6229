"""What every backend returns: the raw observables of a run, per sample and per step, not yet decoded.

Decoding (``neurocc.decode``), accuracy over time and Pareto metrics (``neurocc.evaluate``) are pure
functions over a ``Trace``, written once for every backend.

Arrays (index 0 of the step axis is step 1):

* ``readouts[output]``: ``potential`` (steps, samples, classes), the read-out population's membrane
  potential after each step (float32 in float mode, int64 in integer mode); ``count`` (steps, samples,
  classes) int64, its spikes so far, for a spiking read-out (``readout="spike"``), else None.
* ``spikes[name]``: (steps, samples) int64, spikes emitted per step by each spiking population, and by a
  spike-coded input (analog input current is not spikes).
* ``events[name]``: (steps, samples) int64, synaptic events caused by that population's spikes: each spike
  times the synapses leaving its neuron (anytime-perception §4; ``neurocc.ir.synapses.fan_out``).
* ``spike_trains[name]``: (steps, samples, *shape) int8 per neuron, only when asked for.
* ``updates[name]``: (steps, samples) int64, neurons of a spiking population whose membrane potential
  changed in that step (for NeuroBench's MembraneUpdates, ``neurocc.workload``).
* ``acs[name]``, ``macs[name]``: (steps, samples) int64, the effective operations that the spikes or values of
  ``name`` cause in the weighted layers of its projections (``ir.synapses.weighted_layers``): accumulates
  where a layer's input is spikes, multiply-accumulates where it is values (NeuroBench's SynapticOperations).
  A backend that cannot observe them leaves these three empty.

Memory: 24 bytes per step, sample and spiking population, 16 per source with projections, plus 4 or 8
bytes per step, sample and class (ResNet-20, 19 spiking populations, 20 sources and 10 classes:
816 bytes per sample and step, 209 kB per sample over 256 steps). Recording it all, against the spikes,
events and read-outs alone: ResNet-20, 32 images x 32 steps, 0.45 -> 0.49 s on the fused kernel's path
(float) and 2.77 -> 3.31 s on the per-step path (Loihi, whose membrane updates copy and compare every
potential per step); the accumulates of a population whose projections are copies
then one weighted layer are its synaptic events and cost nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class Readout:
    potential: np.ndarray                 # (steps, samples, classes)
    count: Optional[np.ndarray] = None    # (steps, samples, classes) int64, spiking read-outs only


@dataclass
class Trace:
    steps: int
    samples: int
    readouts: dict                        # output name -> Readout
    spikes: dict                          # name -> (steps, samples) int64
    events: dict                          # name -> (steps, samples) int64
    spike_trains: dict = field(default_factory=dict)   # name -> (steps, samples, *shape) int8, if recorded
    updates: dict = field(default_factory=dict)        # name -> (steps, samples) int64
    acs: dict = field(default_factory=dict)            # name -> (steps, samples) int64
    macs: dict = field(default_factory=dict)           # name -> (steps, samples) int64

    @staticmethod
    def concat(parts: list["Trace"]) -> "Trace":
        """One trace of all samples of ``parts`` (runs of consecutive batches), in order."""
        first = parts[0]

        def join(key):
            return {k: np.concatenate([getattr(p, key)[k] for p in parts], axis=1) for k in getattr(first, key)}
        readouts = {k: Readout(potential=np.concatenate([p.readouts[k].potential for p in parts], axis=1),
                               count=None if r.count is None else
                               np.concatenate([p.readouts[k].count for p in parts], axis=1))
                    for k, r in first.readouts.items()}
        return Trace(steps=first.steps, samples=sum(p.samples for p in parts), readouts=readouts,
                     spikes=join("spikes"), events=join("events"), spike_trains=join("spike_trains"),
                     updates=join("updates"), acs=join("acs"), macs=join("macs"))

    def nbytes(self) -> int:
        arrays = [*self.spikes.values(), *self.events.values(), *self.spike_trains.values(), *self.updates.values(),
                  *self.acs.values(), *self.macs.values()]
        arrays += [a for r in self.readouts.values() for a in (r.potential, r.count) if a is not None]
        return int(sum(a.nbytes for a in arrays))


def trace_bytes(graph, steps: int, samples: int, coding_spikes: bool) -> int:
    """The memory a ``Trace`` of ``graph`` takes for ``steps`` x ``samples`` (no spike trains): checked before a
    run starts, so that a run that cannot hold its trace is refused at once. ``coding_spikes``: the input
    is spike-coded (counted like a population)."""
    from neurocc.ir.snn import Population

    populations = [graph.payload(n) for n in graph.nodes() if isinstance(graph.payload(n), Population)]
    spiking = sum(1 for p in populations if p.readout == "spike")
    sources = sum(1 for n in graph.nodes() if graph.nx.out_degree(n))
    per_step = 16 * (spiking + (len(graph.inputs) if coding_spikes else 0)) + 8 * spiking + 16 * sources
    for out in graph.outputs:
        classes = int(np.prod(graph.shape(out)))
        per_step += classes * (8 if graph.meta.get("mode") == "integer" else 4)
        per_step += classes * 8 if graph.payload(out).readout == "spike" else 0
    return steps * samples * per_step


def trace_from_trains(graph, trains: dict, potentials: dict, samples: int, steps: int,
                      record_trains: bool) -> Trace:
    """The ``Trace`` of a run that another simulator recorded: ``trains`` maps each spiking source to its spikes
    (steps, samples, neurons), 0/1 (a spike-coded input's signed, +-1, counted by magnitude), ``potentials`` each read-out to (steps, samples, classes). Synaptic events are
    spikes x synapses leaving (``ir.synapses.fan_out``); a spiking read-out's counts are its spikes so far. Membrane
    updates and operation counts are not part of such a run."""
    from neurocc.ir.synapses import fan_out

    spikes, events, kept, readouts = {}, {}, {}, {}
    for name, train in trains.items():
        magnitude = np.abs(train).astype(np.int64)
        spikes[name] = magnitude.sum(axis=2)
        if graph.nx.out_degree(name):
            fan = np.rint(fan_out(graph, name).reshape(-1)).astype(np.int64)
            events[name] = magnitude @ fan
        if record_trains:
            kept[name] = train.astype(np.int8).reshape((steps, samples) + tuple(graph.shape(name)))
    for name, potential in potentials.items():
        count = np.cumsum(trains[name], axis=0, dtype=np.int64) if name in trains else None
        readouts[name] = Readout(potential=np.ascontiguousarray(potential), count=count)
    return Trace(steps=steps, samples=samples, readouts=readouts, spikes=spikes, events=events, spike_trains=kept)
