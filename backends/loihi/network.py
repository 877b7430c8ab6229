"""The Lava-level description of a Loihi-quantised graph: populations, connections and input, as ``program.py`` reads
them (``network.json`` and ``network.npz``), and the core mapping that ``resources`` reports.

* A ``Population`` becomes one Lava neuron process over its neurons flattened channel-major (the order of
  ``ir.synapses.synapse_matrix``): ``LIF`` for reset "zero", neurocc's ``SRIF`` for reset "subtract", with
  vth = threshold >> 6, bias = bias_mant << bias_exp (the smallest exponent in 0..7 with a 13-bit mantissa) and
  v(0). An accumulating read-out is a sink whose synaptic input the host integrates (``program.py``).
* A projection becomes one ``Sparse`` connection: the synapse matrix of its chain (convolutions, integer sum
  pooling, padding, slicing and flattening multiplied out) with its integer weights, ``weight_exp`` = the
  projection's shift (minus the input's fractional bits for the input's graded spikes), and the sign mode of its
  weights. Lava's fixed-point ``Conv`` ignores ``weight_exp`` and is
  slow (../shared/DEPENDENCIES.md), so convolutions are synapse matrices too, with the same integers. Residual and
  concatenating networks need nothing more: several connections into one neuron process are summed at its input,
  as the reference sums projections. Every hidden projection must have Lava's one step of delay; the max-pool
  gate (a state no synapse holds) is refused, naming the projection.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from neurocc.errors import NeuroccError
from neurocc.ir import Graph
from neurocc.ir.neurons import LoihiLIF
from neurocc.ir.snn import InputSource, Population
from neurocc.ir.synapses import synapse_matrix

from ..base import refuse_max_pool_gate

ACT_SHIFT = 6               # lava: u += a << 6; effective vth = vth << 6
BIAS_MANTISSA = 2 ** 12 - 1  # 13-bit signed mantissa
BIAS_EXPONENTS = 8          # 3-bit exponent
SIGN_RANGES = {"excitatory": (0, 255), "inhibitory": (-255, 0), "mixed": (-256, 255)}   # lava clip_weights


@dataclasses.dataclass
class Connection:
    source: str
    target: str
    weights: object              # scipy CSR (targets x sources), int64
    weight_exp: int
    sign_mode: str


@dataclasses.dataclass
class Netlist:
    input: str
    input_shape: tuple
    populations: list            # (name, Population), topological order
    connections: list            # Connection

    def index(self) -> dict:
        return {name: i for i, (name, _) in enumerate(self.populations)}


def check_loihi(graph: Graph) -> None:
    """Refuse a graph not quantised for Loihi (float mode, another chip)."""
    cells = [graph.payload(n) for n in graph.nodes() if isinstance(graph.payload(n), Population)]
    if graph.meta.get("mode") != "integer" or graph.meta.get("hwmodel") != "loihi" or not all(
            isinstance(p.neuron, LoihiLIF) or p.readout == "accumulate" for p in cells):
        target = graph.meta.get("hwmodel", "reference (float)")
        raise NeuroccError(f"this network is compiled for {target}; the lava backend runs networks compiled with "
                           "--target loihi (Lava's fixed-point processes; a float network has no step of delay per "
                           "projection, which every Lava connection adds)")


def sign_mode(weights: np.ndarray) -> str:
    """Lava's determine_sign_mode."""
    if weights.size == 0 or weights.min() >= 0:
        return "excitatory"
    return "inhibitory" if weights.max() <= 0 else "mixed"


def bias_format(bias: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(bias_mant, bias_exp) per neuron with bias_mant << bias_exp == bias, the smallest exponent that fits."""
    b = np.rint(bias).astype(np.int64).reshape(-1)
    exp = np.full(b.shape, -1, np.int64)
    for e in range(BIAS_EXPONENTS):
        exp[(exp < 0) & ((b >> e) << e == b) & (np.abs(b >> e) <= BIAS_MANTISSA)] = e
    if np.any(exp < 0):
        raise NeuroccError(f"{where}: bias {int(b[exp < 0][0]):,} is not a 13-bit mantissa << 0..7 (Loihi's bias "
                           "format)")
    return (b >> exp).astype(np.int16), exp.astype(np.int16)


def build_netlist(graph: Graph) -> Netlist:
    """The neuron processes and connections of a graph compiled with ``--target loihi``."""
    check_loihi(graph)
    (source,) = graph.inputs
    populations, connections = [], []
    for name in graph.topo_order():
        node = graph.payload(name)
        if isinstance(node, InputSource):
            continue
        populations.append((name, node))
        for src, _, proj in graph.projections(name):
            where = f"projection {src!r} -> {name!r}"
            refuse_max_pool_gate(proj, where, "Lava synapse or LIF", "Lava")
            expected = 0 if src == source else 1
            if proj.delay != expected:
                raise NeuroccError(f"{where}: a delay of {proj.delay} steps; a Lava connection delivers after "
                                   f"{expected} (the input's first step is preloaded)")
            matrix = synapse_matrix(proj.ops, graph.shape(src))
            matrix.data = np.rint(matrix.data)
            matrix = matrix.astype(np.int64)
            mode = sign_mode(matrix.data)
            low, high = SIGN_RANGES[mode]
            if matrix.nnz and (matrix.data.min() < low or matrix.data.max() > high or
                               (mode == "mixed" and np.any(matrix.data % 2))):
                raise NeuroccError(f"{where}: synapse weights from {matrix.data.min()} to {matrix.data.max()} after "
                                   f"merging the chain's paths; Loihi's {mode} 8-bit synapses hold {low} to {high}"
                                   f"{' in even steps' if mode == 'mixed' else ''}")
            bits = graph.payload(src).bits if src == source else 0      # the input's integers carry 2^bits
            connections.append(Connection(src, name, matrix, proj.shift - bits, mode))
    return Netlist(input=source, input_shape=tuple(graph.shape(source)), populations=populations,
                   connections=connections)


def write_network(graph: Graph, folder: Path) -> Netlist:
    """``network.json`` and ``network.npz`` for ``graph`` in ``folder``; returns the netlist."""
    net = build_netlist(graph)
    index = net.index()
    node = graph.payload(net.input)
    doc = {"input": {"name": net.input, "shape": list(net.input_shape), "bits": node.bits},
           "populations": [], "connections": []}
    arrays = {}
    for i, (name, pop) in enumerate(net.populations):
        readout = pop.readout == "accumulate"
        theta = int(pop.neuron.threshold)
        doc["populations"].append({
            "name": name, "shape": list(pop.shape), "size": math.prod(pop.shape),
            "kind": "readout" if readout else "cell", "output": name in graph.outputs,
            "reset": None if readout else pop.neuron.reset, "vth": theta >> ACT_SHIFT,
            "v0": int(round(pop.neuron.v0 * theta))})
        if readout:         # integrated on the host: any integer bias
            arrays[f"bias_mant/{i}"] = np.rint(pop.bias).astype(np.int64).reshape(-1)
            arrays[f"bias_exp/{i}"] = np.zeros(arrays[f"bias_mant/{i}"].shape, np.int64)
        else:
            arrays[f"bias_mant/{i}"], arrays[f"bias_exp/{i}"] = bias_format(pop.bias, f"population {name!r}")
    for j, c in enumerate(net.connections):
        doc["connections"].append({"source": index.get(c.source), "target": index[c.target],
                                   "weight_exp": c.weight_exp, "sign_mode": c.sign_mode})
        w = c.weights.tocsr()
        arrays.update({f"connection/{j}/data": w.data.astype(np.int32), f"connection/{j}/indices": w.indices,
                       f"connection/{j}/indptr": w.indptr, f"connection/{j}/shape": np.array(w.shape)})
    folder = Path(folder)
    (folder / "network.json").write_text(json.dumps(doc, indent=1))
    np.savez(folder / "network.npz", **arrays)
    return net
