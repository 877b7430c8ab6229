"""neurocc's core mapping for Loihi: how many neuro-cores the emitted Lava network takes, against the hardware
model's per-core limits (Davies et al. 2018, IEEE Micro 38(1), p.89: 1024 compartments, 4096 fan-in and 4096
fan-out axon slots, 128 KB of synaptic memory per core; hwmodels/loihi.toml).

Each neuron process (a population, or a read-out's compartments) is cut into contiguous ranges of its neurons, one
core each, taken in channels-last order (a feature map's channels at one position side by side: they read the same
inputs, so a core of whole positions needs the fewest input axons; channel-major ranges took 82 cores for mnist-8
against 27), greedily: a range grows while its compartments, its input axons (distinct source neurons with a synapse
into it; the host's graded input counts like any source) and its synapses (at ``limits.synapse_bits`` each, a lower
bound) fit. Then every core's output axons are counted (for each of its neurons, the distinct cores its synapses
reach); a population with a core over the fan-out limit is cut again with proportionally fewer neurons per core,
until none is over. Populations never share a core. Lava's own compiler for Loihi hardware is not public, so this
is neurocc's model of the constraints, not Intel's placement.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import sparse

from .network import Netlist


@dataclasses.dataclass
class CoreMap:
    order: dict                  # population -> its neurons (channel-major indices) in the order they are cut
    ranges: dict                 # population -> [(first, stop)] ranges of ``order``, one core each
    fan_in: dict                 # population -> the most input axons of one of its cores
    fan_out: dict                # population -> the most output axons of one of its cores
    synapses: dict               # population -> the most synapses on one of its cores
    over: list                   # readable lines: single neurons that no core can hold


def _incoming(net: Netlist, name: str, size: int):
    """All synapses into ``name`` as one CSR (targets x every source neuron of the network, offset per source)."""
    offsets, total = {}, 0
    for src, pop in [(net.input, None)] + net.populations:
        offsets[src] = total
        total += math.prod(net.input_shape if pop is None else pop.shape)
    blocks = []
    for c in net.connections:
        if c.target == name:
            w = c.weights.tocoo()
            blocks.append(sparse.csr_matrix((np.ones(w.nnz, np.int8), (w.row, w.col + offsets[c.source])),
                                            shape=(size, total)))
    return sum(blocks[1:], blocks[0]) if blocks else sparse.csr_matrix((size, total), dtype=np.int8)


def _cut(rows, size: int, cap: int, hw) -> list:
    """Greedy contiguous ranges of at most ``cap`` neurons, fan_in_per_core axons and the synapse memory."""
    limits = hw.limits
    max_synapses = limits.synapse_memory_bits_per_core // limits.synapse_bits or math.inf
    ranges, first, seen, axons, synapses = [], 0, np.zeros(rows.shape[1], bool), 0, 0
    for r in range(size):
        cols = rows.indices[rows.indptr[r]:rows.indptr[r + 1]]
        new = int((~seen[cols]).sum())
        if r > first and (r - first >= cap or axons + new > limits.fan_in_per_core
                          or synapses + len(cols) > max_synapses):
            ranges.append((first, r))
            first, axons, synapses = r, 0, 0
            seen[:] = False
            new = len(cols)
        seen[cols] = True
        axons += new
        synapses += len(cols)
    ranges.append((first, size))
    return ranges


def _core_of(ranges: list, order: np.ndarray) -> np.ndarray:
    """The core of each neuron (channel-major index)."""
    core = np.zeros(len(order), np.int64)
    for k, (a, b) in enumerate(ranges):
        core[order[a:b]] = k
    return core


def _channels_last(shape: tuple) -> np.ndarray:
    """Channel-major neuron indices in channels-last order (other shapes as they are)."""
    index = np.arange(math.prod(shape)).reshape(shape)
    return (index.transpose(1, 2, 0) if len(shape) == 3 else index).reshape(-1)


def map_cores(net: Netlist, hw) -> CoreMap:
    """Cut every population into cores (module docstring)."""
    sizes = {name: math.prod(pop.shape) for name, pop in net.populations}
    order = {name: _channels_last(tuple(pop.shape)) for name, pop in net.populations}
    rows = {name: _incoming(net, name, sizes[name])[order[name]] for name in sizes}
    caps = {name: hw.limits.neurons_per_core for name in sizes}
    while True:
        ranges = {name: _cut(rows[name], sizes[name], caps[name], hw) for name in sizes}
        cores = {name: _core_of(ranges[name], order[name]) for name in sizes}
        axons_out = {name: np.zeros(sizes[name], np.int64) for name in sizes}
        for c in net.connections:
            if c.source in sizes:           # distinct target cores each source neuron reaches
                w = c.weights.tocoo()
                pairs = np.unique(np.stack([w.col, cores[c.target][w.row]]), axis=1)
                axons_out[c.source] += np.bincount(pairs[0], minlength=sizes[c.source])
        fan_out = {name: max(int(axons_out[name][order[name][a:b]].sum()) for a, b in ranges[name]) for name in sizes}
        over = {name: f for name, f in fan_out.items() if f > hw.limits.fan_out_per_core and caps[name] > 1}
        if not over:
            break
        for name, f in over.items():
            caps[name] = max(1, min(caps[name] - 1, caps[name] * hw.limits.fan_out_per_core // f))
    fan_in, synapses, lines = {}, {}, []
    for name in sizes:
        r = rows[name]
        per_core = [(len(np.unique(r.indices[r.indptr[a]:r.indptr[b]])), int(r.indptr[b] - r.indptr[a]))
                    for a, b in ranges[name]]
        fan_in[name] = max(p[0] for p in per_core)
        synapses[name] = max(p[1] for p in per_core)
        if fan_in[name] > hw.limits.fan_in_per_core:
            lines.append(f"{name}: a neuron has {fan_in[name]:,} input axons, more than limits.fan_in_per_core = "
                         f"{hw.limits.fan_in_per_core:,}")
        if fan_out[name] > hw.limits.fan_out_per_core:
            lines.append(f"{name}: a neuron reaches {fan_out[name]:,} cores, more than limits.fan_out_per_core = "
                         f"{hw.limits.fan_out_per_core:,}")
    return CoreMap(order=order, ranges=ranges, fan_in=fan_in, fan_out=fan_out, synapses=synapses, over=lines)
