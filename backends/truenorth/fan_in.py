"""split_fan_in: partial-sum neurons for TrueNorth neurons whose inputs need more axons than a core has.

A TrueNorth neuron sums only the axons of its own core (Merolla et al. 2014 §S1), and an input takes one axon
per axon type its weights use there (``mapping``). A population with a neuron that needs more than
``fan_in_per_core`` axons is rewritten as two stages, the partial-sum scheme of NEUTRAMS (Ji et al. 2016)
applied without retraining:

* **groups**: its inputs are cut into groups along the input channels of each projection's weighted layer (a
  convolution's input channels, a dense layer's input features; a projection without one is one unit), in
  order, so that every position of the population (all its channels at one pixel; the whole of a 1-D
  population) reads one group through at most ``fan_in_per_core`` axons: a core can hold them;
* **relays**: group g gets a relay population ``<name>.partial<g>`` of twice the channels: the first half (R+)
  takes the group's synapses, the second half (R-) their negation. Relays are TrueNorth neurons with the
  population's threshold alpha, V0 and linear reset; the first group's relays carry the bias (+b, -b). A
  negative relay sits on its twin's core and uses the same axons with its four weights S^G negated (S_j^G is
  per neuron), so a pair costs its inputs' axons once;
* **merge**: the population itself reads R+ with weight +1 and R- with weight -1, one axon each, one tick
  later; threshold 1, bias 0, V0 0. One merge spike is one net relay spike, alpha of charge, which is what
  a spike of the unsplit neuron meant, so its consumers keep their weights (an accumulating read-out
  accumulates net relay spikes: its value in units of alpha).

Dynamics. A relay whose partial sum S_g only grows fires n = floor(V0 + S_g / alpha) times (V is not floored,
so charge is never lost, only delayed by the one-spike-per-tick limit). The merge then counts
sum_g (n_g+ - n_g-) = S / alpha - sum_g (f_g+ - f_g-), with f the relays' fractional remainders, against the
unsplit neuron's floor(V0 + S / alpha) = V0 + S / alpha - f: the same expected count when V0 = 1/2 (neurocc's
default; 1/2 - V0 spikes per run more otherwise) and at most one spike per group apart. A partial sum that
changes sign mid-run is counted by R+ on the way up and not taken back on the way down (and R- likewise),
and every split population fires one tick later. Both effects are simulated, since the pass rewrites the
graph that runs; README "TrueNorth core counts" gives the accuracy they cost.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import sparse

from neurocc.errors import NeuroccError
from neurocc.ir import Graph, ops
from neurocc.ir.synapses import synapse_matrix
from neurocc.ir.neurons import from_hwmodel
from neurocc.ir.snn import InputSource, Population, Projection

from .mapping import axon_types, level_report, neuron_axons

_CHANNEL_OPS = (ops.SumPool, ops.AvgPool, ops.Pad)        # may follow a weighted op whose channels double


@dataclasses.dataclass(frozen=True)
class _Cut:
    """Where a projection's inputs can be grouped: before its weighted op ``index`` (None: one unit)."""
    index: object
    units: int                  # channels of the weighted op's input (1 for an uncut projection)
    reach: object               # sparse (source neurons x units) 0/1: which units a source neuron feeds


def split_fan_in(graph: Graph, ctx) -> Graph:
    """The ``split_fan_in`` pass (see the module docstring); what it split and what it could not split are in
    ``meta["fan_in_split"]``."""
    limits = ctx.hwmodel.limits
    levels = level_report(graph)
    g = graph.copy()
    split, refused, new_levels, relays = [], {}, [], []
    for name in graph.topo_order():
        node = graph.payload(name)
        if isinstance(node, InputSource):
            continue
        try:
            edges, blocks, types = axon_types(graph, name, levels)
        except NeuroccError as e:   # no crossbar form at all
            refused[name] = str(e)
            continue
        if neuron_axons(types).max(initial=0) <= limits.fan_in_per_core:
            continue
        cuts = [_cut(graph.nx.edges[src, name, key]["proj"], graph.shape(src)) for src, key in edges]
        try:
            groups = _groups(graph, name, edges, blocks, cuts, types, limits.fan_in_per_core)
        except NeuroccError as e:
            refused[name] = str(e)
            continue
        if 2 * len(groups) > limits.fan_in_per_core:
            refused[name] = (f"its inputs need {len(groups)} groups, and a merge neuron reads at most "
                             f"{limits.fan_in_per_core // 2} relay pairs")
            continue
        try:            # refuses (before changing g) a population that is neither (C,) nor (C, H, W)
            made = _rewrite(g, name, node, edges, cuts, groups, levels, ctx.hwmodel)
        except NeuroccError as e:
            refused[name] = str(e)
            continue
        relays += [r for r, _ in made]
        new_levels += [entry for _, entries in made for entry in entries]
        split.append({"population": name, "groups": len(groups), "relays": [r for r, _ in made],
                      "relay_neurons": 2 * len(groups) * math.prod(graph.shape(name))})
    g.meta["fan_in_split"] = {"populations": split, "relays": relays, "levels": new_levels, "refused": refused}
    return g


def _cut(proj, src_shape: tuple):
    """The ``_Cut`` of one projection: its weighted op (a Conv without groups, or a Gemm) with only pooling or
    padding after it, the units its input channels; otherwise the whole projection is one unit."""
    chain = proj.ops
    n_src = math.prod(src_shape)
    for i, op in enumerate(chain):
        if isinstance(op, (ops.Conv, ops.Gemm)):
            cuttable = (isinstance(op, ops.Gemm) or op.groups == 1) and all(
                isinstance(o, _CHANNEL_OPS) and (not isinstance(o, ops.Pad) or tuple(o.pads[0]) == (0, 0))
                for o in chain[i + 1:])
            if not cuttable:
                break
            units = op.weight.shape[1]
            if i == 0:          # the op reads the source directly: a source neuron's unit is its channel
                unit = np.arange(n_src) // (n_src // src_shape[0])
                return _Cut(i, units, sparse.csr_matrix((np.ones(n_src), (np.arange(n_src), unit)),
                                                        shape=(n_src, units)))
            return _Cut(i, units, _reach(chain[:i], src_shape, units))
    return _Cut(None, 1, sparse.csr_matrix(np.ones((n_src, 1))))


def _reach(prefix: tuple, src_shape: tuple, units: int):
    """Which channels of ``prefix``'s output each source neuron reaches, (source neurons x units) 0/1."""
    reach = synapse_matrix(prefix, src_shape).T.tocoo()
    per_unit = reach.shape[1] // units
    reach = sparse.csr_matrix((np.ones(reach.nnz), (reach.row, reach.col // per_unit)), shape=(reach.shape[0], units))
    reach.data[:] = 1.0
    return reach


def _groups(graph: Graph, name: str, edges: list, blocks: list, cuts: list, types, budget: int) -> list:
    """Input groups [[(projection index, first unit, end unit), ...], ...] of population ``name``: consecutive
    units, each group needing at most ``budget`` axons at every position (the sum over its units of the
    worst position's need, an upper bound)."""
    shape = graph.shape(name)
    positions = math.prod(shape[1:]) if len(shape) > 1 else 1
    coo = types.tocoo()
    pos = coo.row % positions if len(shape) > 1 else np.zeros_like(coo.row)
    need = None         # (positions x source neurons): axons a position's neurons need from each input
    for bit in (1, 2, 4, 8):
        has = (coo.data & bit) != 0
        used = sparse.csr_matrix((np.ones(int(has.sum())), (pos[has], coo.col[has])), shape=(positions,
                                                                                              types.shape[1]))
        used.data[:] = 1.0
        need = used if need is None else need + used
    groups, current, load, offset = [], [], 0, 0
    for p, ((src, _), block, cut) in enumerate(zip(edges, blocks, cuts)):
        width = block.shape[1]
        per_unit = np.asarray((need[:, offset:offset + width] @ cut.reach).max(axis=0).todense()).ravel()
        offset += width
        for u, cost in enumerate(per_unit):
            if cost > budget:
                what = f"input channel {u} of" if cut.index is not None else "the whole of (no weighted op to cut)"
                raise NeuroccError(f"{what} projection {src!r} -> {name!r} alone needs {int(cost):,} axons at one "
                                   f"position, more than a core's {budget}")
            if load + cost > budget and current:
                groups.append(current)
                current, load = [], 0
            if current and current[-1][0] == p:
                current[-1] = (p, current[-1][1], u + 1)
            else:
                current.append((p, u, u + 1))
            load += cost
    if current:
        groups.append(current)
    return groups


def _doubled_weights(w: np.ndarray, axis_in: slice) -> np.ndarray:
    """[W; -W] along the output axis, W restricted to the input channels ``axis_in``."""
    part = w[:, axis_in]
    return np.concatenate([part, -part], axis=0)


def _relay_chain(proj, cut: _Cut, start: int, stop: int, shape: tuple) -> tuple:
    """The chain of the relay's synapses from units [start, stop) of ``proj``: the original synapses to R+,
    their negation to R-."""
    chain = proj.ops
    if cut.index is None:           # the projection is one unit: append +I / -I
        eye = np.eye(shape[0], dtype=np.float32)
        pm = np.concatenate([eye, -eye], axis=0)
        tail = ops.Conv(weight=pm.reshape(pm.shape + (1, 1))) if len(shape) == 3 else ops.Gemm(weight=pm)
        return chain + (tail,)
    op = chain[cut.index]
    weight = _doubled_weights(op.weight, slice(start, stop))
    cut_op = ops.Slice(slices=((0, start, stop, 1),))
    return chain[:cut.index] + (cut_op, dataclasses.replace(op, weight=weight)) + chain[cut.index + 1:]


def _merge_chain(shape: tuple) -> tuple:
    """The merge's synapses from one relay population: +1 from R+, -1 from R-, neuron by neuron."""
    eye = np.eye(shape[0], dtype=np.float32)
    pm = np.concatenate([eye, -eye], axis=1)
    return (ops.Conv(weight=pm.reshape(pm.shape + (1, 1))),) if len(shape) == 3 else (ops.Gemm(weight=pm),)


def _rewrite(g: Graph, name: str, node: Population, edges: list, cuts: list, groups: list, levels: dict,
             hw) -> list:
    """Replace population ``name``'s inputs by relays and make it the merge; [(relay, level entries)]."""
    shape = g.shape(name)
    if len(shape) not in (1, 3):
        raise NeuroccError(f"population {name!r}: partial sums need a (C,) or (C, H, W) population, not {shape}")
    incoming = {(src, key): g.nx.edges[src, name, key]["proj"] for src, key in edges}
    relay_neuron = from_hwmodel(hw, threshold=node.neuron.threshold, v0=node.neuron.v0, reset=hw.neuron.reset)
    relay_shape = (2 * shape[0],) + tuple(shape[1:])
    made = []
    for i, group in enumerate(groups):
        relay = f"{name}.partial{i}"
        bias = np.concatenate([node.bias, -node.bias]) if i == 0 else np.zeros(relay_shape, np.float32)
        g.add_node(relay, Population(shape=relay_shape, bias=bias, neuron=relay_neuron, scale=node.scale,
                                     source_node=node.source_node), relay_shape)
        entries = []
        for p, start, stop in group:
            src, key = edges[p]
            proj = incoming[(src, key)]
            chain = _relay_chain(proj, cuts[p], start, stop, shape)
            g.nx.add_edge(src, relay, key=key, proj=dataclasses.replace(proj, ops=chain))
            steps = list(levels[(name, src, key)])
            entries.append({"population": relay, "source": src, "key": key, "level_steps": steps + steps
                            if len(steps) > 1 else steps})
        g.nx.add_edge(relay, name, key=0, proj=Projection(ops=_merge_chain(shape),
                                                          delay=hw.timing.projection_delay_steps))
        entries.append({"population": name, "source": relay, "key": 0, "level_steps": [1.0]})
        made.append((relay, entries))
    g.nx.remove_edges_from([(src, name, key) for src, key in edges])
    g.set_payload(name, dataclasses.replace(node, bias=np.zeros_like(node.bias),
                                            neuron=node.neuron.replace(threshold=1.0, v0=0.0)))
    return made

