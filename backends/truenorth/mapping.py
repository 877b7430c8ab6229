"""TrueNorth core mapping: which neurons share a core, the axons their inputs need, and the splitters
that fan-out needs.

A TrueNorth core (Merolla et al. 2014, Fig. 1 and §S1) is a binary crossbar of 256 axons x 256 neurons
(hwmodels/truenorth.toml ``limits``); every axon has one of 4 types G and neuron j weighs a spike on an
axon of type G by its own S_j^G. neurocc's level format (``quantize``) gives the neurons of channel c
the weights k * B_c, |k| <= 3, over the types +A = 2 B_c, +B = B_c, -A, -B:

    k = +-1 uses +-B,   k = +-2 uses +-A,   k = +-3 uses +-A and +-B

so an input neuron needs, on a core, one axon per type its weights to that core's neurons use.

Packing, per population: neurons are taken in spatial-major order (all channels of one position, then the
next), so that outputs sharing inputs share a core, and a core takes neurons while it holds at most
``neurons_per_core`` of them whose inputs need at most ``fan_in_per_core`` axons. A neuron whose own
inputs need more axons than a core has is split into partial sums first (the ``split_fan_in`` pass,
``fan_in.py``); where that is impossible the graph does not map.

Fan-out: a neuron's spike goes to one axon of one core. A source population some of whose neurons must
reach more than one axon (several cores, or several types on one core) is routed through splitter cores:
one axon there feeds one splitter neuron per target axon, each relaying the spike one tick later. A neuron
that must reach more axons than a splitter core has neurons (256) goes through a tree of L levels, 256^L >=
its copies: each level's neurons feed up to 256 copies on the next level (the last level's neurons are the
copies). Every neuron of such a population is routed through the same number of levels, so each of its
projections is exactly L steps longer (the ``map_cores`` pass adds the steps to the graph, and the reference
simulator runs them). A splitter core holds at most 256 splitter neurons fed by at most 256 axons. Inputs
come from the host, which can address any number of axons: they need none.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numba
import numpy as np

from neurocc.errors import NeuroccError
from neurocc.ir import Graph, ops
from neurocc.ir.synapses import synapse_matrix
from neurocc.ir.snn import InputSource

POS_B, POS_A, NEG_B, NEG_A = 1, 2, 4, 8
LEVEL_TYPES = {1: POS_B, 2: POS_A, 3: POS_A | POS_B, -1: NEG_B, -2: NEG_A, -3: NEG_A | NEG_B}
POPCOUNT = np.array([bin(i).count("1") for i in range(16)], np.int64)
TYPES_OF_LEVEL = np.array([LEVEL_TYPES.get(k, 0) for k in range(-3, 4)], np.int64)     # indexed by k + 3


@dataclass(frozen=True)
class PopulationMapping:
    name: str
    neurons: int
    cores: int
    axons: int                  # axons used on its cores, summed
    splitter_neurons: int       # relaying this population's spikes (0: no splitters)
    splitter_cores: int
    splitter_levels: int        # ticks its spikes take through splitters (0: none)
    neuron_utilisation: float   # neurons / (cores x neurons_per_core)
    axon_utilisation: float     # axons / (cores x fan_in_per_core)


@dataclass(frozen=True)
class Mapping:
    populations: tuple
    cores: int
    chips: int
    splitter_neurons: int
    split_sources: tuple        # populations routed through splitters (their projections are longer by ...)
    split_levels: tuple = ()    # ... these many steps, one per source
    unmappable: tuple = ()      # why the graph does not map, one line per population (then nothing else is set)


def level_matrix(proj, src_shape: tuple, steps: np.ndarray, where: str):
    """The projection's synapses as a sparse (target neurons x source neurons) matrix of levels k: its integer
    weights (``ir.synapses.synapse_matrix``) divided by the target channel's B_c."""
    if proj.ops and isinstance(proj.ops[0], ops.MaxPool):
        raise NeuroccError(f"{where}: the spiking max-pool gate has no TrueNorth crossbar form; use average pooling")
    cache = proj.__dict__.setdefault("_synapse_matrix", {})   # proj is frozen: its synapses never change
    if tuple(src_shape) not in cache:
        cache[tuple(src_shape)] = synapse_matrix(proj.ops, src_shape)
    levels = cache[tuple(src_shape)].copy()
    rows = np.repeat(np.arange(levels.shape[0]), np.diff(levels.indptr))
    levels.data = levels.data / steps[rows]
    if not np.all(levels.data == np.rint(levels.data)) or np.abs(levels.data).max(initial=0) > 3:
        raise NeuroccError(f"{where}: an effective synapse weight is not one of the 7 TrueNorth levels "
                           "(pooling folded into a weighted layer sums several weights into one synapse)")
    return levels


def row_steps(steps: list, dst_shape: tuple) -> np.ndarray:
    """B_c for every target neuron (channel-major flattening), from the per-channel list of the report."""
    steps = np.asarray(steps, np.float64).reshape(-1)
    per_channel = math.prod(dst_shape[1:]) if len(dst_shape) > 1 else 1
    if steps.size == 1:
        return np.full(math.prod(dst_shape), steps[0])
    return np.repeat(steps, per_channel) if len(dst_shape) > 1 else steps


def _spatial_major(shape: tuple) -> np.ndarray:
    """Flat (channel-major) indices of a population's neurons, position by position, channels within."""
    index = np.arange(math.prod(shape)).reshape(shape)
    return index.transpose(tuple(range(1, len(shape))) + (0,)).reshape(-1) if len(shape) > 1 else index


def map_cores(graph: Graph, hw) -> Mapping:
    """The core mapping of a TrueNorth-quantised graph (see the module docstring); a graph that does not map
    gives ``unmappable`` reasons (a neuron's fan-in beyond a core, weights beyond the levels, a max-pool gate,
    fan-out beyond a splitter core) and no counts."""
    limits = hw.limits
    levels = level_report(graph)
    copies = {n: np.zeros(math.prod(graph.shape(n)), np.int64) for n in graph.nodes()}
    rows = {}
    unmappable = [why for name in graph.topo_order() if (why := _too_many_inputs(graph, name, limits))]
    if unmappable:                  # known from the synapse counts alone: no need to build the crossbars
        return Mapping(populations=(), cores=0, chips=0, splitter_neurons=0, split_sources=(),
                       unmappable=tuple(unmappable))
    for name in graph.topo_order():
        if isinstance(graph.payload(name), InputSource):
            continue
        try:
            rows[name] = _map_population(graph, name, levels, copies, limits)
        except NeuroccError as e:
            unmappable.append(str(e))
    if unmappable:
        return Mapping(populations=(), cores=0, chips=0, splitter_neurons=0, split_sources=(),
                       unmappable=tuple(unmappable))
    split = tuple(n for n in graph.topo_order() if not isinstance(graph.payload(n), InputSource)
                  and copies[n].max(initial=0) > 1)
    populations, total_splitters, total_cores, levels_of = [], 0, 0, {}
    for name, (neurons, cores, used) in rows.items():
        splitters, splitter_cores, levels = _splitter_tree(copies[name], limits) if name in split else (0, 0, 0)
        levels_of[name] = levels
        populations.append(PopulationMapping(
            name=name, neurons=neurons, cores=cores, axons=used, splitter_neurons=splitters,
            splitter_cores=splitter_cores, splitter_levels=levels,
            neuron_utilisation=neurons / (cores * limits.neurons_per_core),
            axon_utilisation=used / (cores * limits.fan_in_per_core)))
        total_splitters += splitters
        total_cores += cores + splitter_cores
    return Mapping(populations=tuple(populations), cores=total_cores,
                   chips=max(1, math.ceil(total_cores / limits.cores_per_chip)), splitter_neurons=total_splitters,
                   split_sources=split, split_levels=tuple(levels_of[n] for n in split))


def _too_many_inputs(graph: Graph, name: str, limits) -> str:
    """Why population ``name`` cannot map because one neuron reads more inputs than a core has axons (each input
    takes at least one), from ``ir.synapses.fan_in``; '' if it may map. Counted only where synapses are distinct
    inputs: chains without overlapping pooling windows."""
    from neurocc.ir.synapses import fan_in

    if isinstance(graph.payload(name), InputSource):
        return ""
    for _, _, proj in graph.projections(name):
        for op in proj.ops:
            if isinstance(op, (ops.AvgPool, ops.SumPool, ops.MaxPool)) and any(
                    s < k for s, k in zip(op.strides, op.kernel)):
                return ""
    inputs = fan_in(graph, name)
    worst = int(inputs.argmax())
    if inputs.flat[worst] <= limits.fan_in_per_core:
        return ""
    return (f"population {name!r}: neuron {worst} reads {int(inputs.flat[worst]):,} inputs, more than a core's "
            f"{limits.fan_in_per_core} axons{_why_not_split(graph, name)}")


def level_report(graph: Graph) -> dict:
    """B_c per channel of every projection's target, keyed (population, source, key): the ``quantize`` report's,
    overridden by the projections ``split_fan_in`` made."""
    levels = {(r["population"], r["source"], r.get("key", 0)): r["level_steps"]
              for r in graph.meta.get("quantization", []) if "level_steps" in r}
    levels.update({(r["population"], r["source"], r["key"]): r["level_steps"]
                   for r in graph.meta.get("fan_in_split", {}).get("levels", [])})
    return levels


def axon_types(graph: Graph, name: str, levels: dict):
    """Population ``name``'s inputs: ([(source, key)], [level matrix per projection], types), ``types`` the
    stacked (target neurons x source neurons) CSR matrix of the axon types (a bit mask) each synapse uses.

    A negative relay of ``split_fan_in`` (the second half of a relay population) has its weights S^G negated,
    so its synapses use its positive twin's types."""
    from scipy import sparse

    dst_shape = graph.shape(name)
    edges, blocks = [], []
    for src, _, key, d in graph.nx.in_edges(name, keys=True, data=True):
        where = f"projection {src!r} -> {name!r}"
        steps = levels.get((name, src, key))
        if steps is None:
            raise NeuroccError(f"{where}: no TrueNorth weight levels recorded; compile with --target truenorth")
        blocks.append(level_matrix(d["proj"], graph.shape(src), row_steps(steps, dst_shape), where))
        edges.append((src, key))
    types = (sparse.hstack(blocks).tocsr() if len(blocks) > 1 else blocks[0]).copy()
    k = np.rint(types.data).astype(np.int64)
    if name in graph.meta.get("fan_in_split", {}).get("relays", ()):
        half = types.shape[0] // 2
        rows = np.repeat(np.arange(types.shape[0]), np.diff(types.indptr))
        k = np.where(rows >= half, -k, k)
    types.data = TYPES_OF_LEVEL[k + 3]
    return edges, blocks, types


def neuron_axons(types) -> np.ndarray:
    """Axons each target neuron's own inputs need (one per input and type), from ``axon_types``."""
    from scipy import sparse

    return np.asarray(sparse.csr_matrix((POPCOUNT[types.data], types.indices, types.indptr),
                                        shape=types.shape).sum(axis=1)).ravel()


def _map_population(graph: Graph, name: str, levels: dict, copies: dict, limits) -> tuple:
    """Pack one population onto cores; add the axons each source neuron must reach to ``copies``;
    return (neurons, cores, axons used)."""
    dst_shape = graph.shape(name)
    edges, blocks, types = axon_types(graph, name, levels)
    need = neuron_axons(types)
    worst = int(need.argmax())
    if need[worst] > limits.fan_in_per_core:
        raise NeuroccError(f"population {name!r}: neuron {worst} needs {int(need[worst]):,} axons (its inputs "
                           f"times the axon types its weights use), more than a core's {limits.fan_in_per_core}"
                           f"{_why_not_split(graph, name)}")
    cores, reached = _pack(types, _spatial_major(dst_shape), limits)
    offset = 0
    for (src, _), block in zip(edges, blocks):
        width = block.shape[1]
        copies[src] += reached[offset:offset + width]
        offset += width
    return math.prod(dst_shape), cores, int(reached.sum())


def _why_not_split(graph: Graph, name: str) -> str:
    """Why ``split_fan_in`` left a too-wide population as it is."""
    if "fan_in_split" not in graph.meta:
        return " (the split_fan_in pass, which splits such neurons into partial sums, did not run)"
    why = graph.meta["fan_in_split"]["refused"].get(name)
    return f"; partial sums cannot split it: {why}" if why else ""


def _pack(masks, order: np.ndarray, limits) -> tuple[int, np.ndarray]:
    """Greedy packing of the rows of ``masks`` (CSR: axon types per input) in ``order``: (cores, axons each input
    takes summed over the cores)."""
    return _pack_rows(masks.indptr.astype(np.int64), masks.indices.astype(np.int64), masks.data.astype(np.int64),
                      order.astype(np.int64), masks.shape[1], limits.neurons_per_core, limits.fan_in_per_core)


@numba.njit(cache=True)
def _pack_rows(indptr, indices, data, order, inputs, neurons_per_core, fan_in_per_core):
    """``_pack`` over CSR arrays: a core takes rows while it holds at most ``neurons_per_core`` of them whose
    inputs' types need at most ``fan_in_per_core`` axons; when it closes, each input it read adds the types
    it used there to ``reached``."""
    reached = np.zeros(inputs, np.int64)
    used = np.zeros(inputs, np.int64)           # the open core's types per input
    touched = np.empty(indices.shape[0], np.int64)
    n_touched, members, count, cores = 0, 0, 0, 0
    for row in order:
        lo, hi = indptr[row], indptr[row + 1]
        delta = 0
        for j in range(lo, hi):
            before = used[indices[j]]
            delta += POPCOUNT[before | data[j]] - POPCOUNT[before]
        if members > 0 and (members == neurons_per_core or count + delta > fan_in_per_core):
            _close_core(used, touched[:n_touched], reached)
            cores += 1
            n_touched, members, count = 0, 0, 0
            delta = 0
            for j in range(lo, hi):
                delta += POPCOUNT[data[j]]
        for j in range(lo, hi):
            used[indices[j]] |= data[j]
            touched[n_touched] = indices[j]
            n_touched += 1
        count += delta
        members += 1
    if members > 0:
        _close_core(used, touched[:n_touched], reached)
        cores += 1
    return cores, reached


@numba.njit(cache=True)
def _close_core(used, touched, reached):
    """Close a core: each input it read adds the axons of the types it used there, once; its types clear."""
    for idx in touched:
        if used[idx]:
            reached[idx] += POPCOUNT[used[idx]]
            used[idx] = 0


def _splitter_tree(copies: np.ndarray, limits) -> tuple[int, int, int]:
    """(splitter neurons, splitter cores, levels) for neurons that must reach ``copies`` axons each: L levels
    with 256^L >= the most copies; on the last level each neuron's copies come in groups of at most 256, each
    group fed by one neuron of the level before, and so on up to one axon per neuron on the first level."""
    fan = limits.neurons_per_core
    levels = 1
    while fan ** levels < copies.max():
        levels += 1
    needs = copies[copies > 0].astype(np.int64)
    neurons = cores = 0
    for _ in range(levels):                       # from the last level up
        groups = -(-needs // fan)                 # axons (feeding neurons of the level before) per source
        sizes = np.repeat(np.full(len(needs), fan), groups)
        ends = np.cumsum(groups) - 1
        sizes[ends] = needs - (groups - 1) * fan  # each source's last group holds the rest
        neurons += int(needs.sum())
        cores += _splitter_cores(sizes, limits)
        needs = groups
    return neurons, cores, levels


def _splitter_cores(copies: np.ndarray, limits) -> int:
    """Splitter cores for axons that feed ``copies`` splitter neurons each (<= 256), packed in order."""
    cores, neurons, axon_count = 0, 0, 0
    for c in copies[copies > 0]:
        if neurons + c > limits.neurons_per_core or axon_count + 1 > limits.fan_in_per_core or not cores:
            cores, neurons, axon_count = cores + 1, 0, 0
        neurons += int(c)
        axon_count += 1
    return cores


def map_truenorth(graph: Graph, ctx) -> Graph:
    """The ``map_cores`` pass: map the quantised graph onto cores, make every projection from a population routed
    through splitters longer by its splitter levels (a tick each), and keep the mapping in ``meta["core_mapping"]``."""
    mapping = map_cores(graph, ctx.hwmodel)
    g = graph.copy()
    for src, levels in zip(mapping.split_sources, mapping.split_levels):   # none when the graph does not map
        for u, v, k, d in list(g.nx.out_edges(src, keys=True, data=True)):
            g.nx.edges[u, v, k]["proj"] = dataclasses.replace(d["proj"], delay=d["proj"].delay + levels)
    g.meta["core_mapping"] = dataclasses.asdict(mapping)
    g.meta["core_mapping"]["partial_sums"] = {   # population -> its relay populations (split_fan_in)
        entry["population"]: entry["relays"] for entry in g.meta.get("fan_in_split", {}).get("populations", [])}
    return g
