"""The PyNN-level description of a SpiNNaker-quantised graph: populations, explicit synapse lists and input.

Everything is in s16.15 raw units (one unit = 2^-15 mV or nA), the integers ``quantize`` chose for the
hardware model ``spinnaker``; the emitted program (``program.py``) divides by 2^15 when it hands them to
PyNN, which sPyNNaker encodes back to the same integers (``tests/test_spinnaker.py`` checks that with
sPyNNaker's own code).

* A ``Population`` of the graph becomes PyNN populations of ``IF_curr_delta`` cells (flattened channel-major,
  the order of ``ir.synapses.synapse_matrix``): one, or as many equal parts as it takes for no source neuron to
  have more than ``MAX_ROW`` synapses into one of them (sPyNNaker's longest synaptic row; a 3x3 convolution
  with 64 output channels gives a neuron 576). An accumulating read-out is a population whose threshold it
  never reaches (its potential is recorded).
* A projection becomes the synapse list of its chain (``synapse_matrix``): weight raw = w * 2^e, e its
  population's exponent (sPyNNaker's ring-buffer left shift), split by sign into an excitatory and an
  inhibitory list of magnitudes. A max-pool gate has no synapse list: it is refused, naming the projection.
* The input: analog input is a constant current, so each population the input feeds takes it in its
  ``i_offset`` (bias + the input projection's drive, computed per sample by ``analog_currents``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from neurocc.errors import NeuroccError
from neurocc.ir import Graph
from neurocc.ir.neurons import SpinnakerLIF
from neurocc.ir.snn import InputSource, Population
from neurocc.ir.synapses import synapse_matrix

from ..base import refuse_max_pool_gate

WEIGHT_BITS = 16            # sPyNNaker synapse_row.h: an unsigned 16-bit weight; the sign is the receptor type
MAX_ROW = 256               # sPyNNaker 1!7.4.1: the most static synapses one source neuron may have into one
                            # Population (synapse_io.py _get_allowed_row_length, SynapseRowTooBigException)
RAW = 2 ** 15               # s16.15: raw units per mV (or nA)
STATE_MAX = 2 ** 31 - 1     # the largest s16.15 value, in raw units


@dataclasses.dataclass
class PopulationSpec:
    name: str
    shape: tuple
    readout: bool                # an accumulating read-out: never fires, its potential is recorded
    threshold: int               # [raw]
    v0: int                      # [raw] initial potential
    bias: np.ndarray             # [raw] int64 per neuron, flattened (its i_offset without input)
    leak_shift: int              # exp_TC = 1 - 2^-k, R = 2^k MOhm at dt = 1 ms
    refractory: int              # [steps]
    parts: list = dataclasses.field(default_factory=list)     # [first, stop) neuron ranges, one PyNN Population each

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass
class ProjectionSpec:
    source: str
    target: str
    pre: np.ndarray              # int64 source neuron index per synapse
    post: np.ndarray             # int64 target neuron index per synapse
    weight: np.ndarray           # [raw] int64, signed: the input one spike adds to the target
    delay: int                   # [steps]
    exponent: int                # the target population's ring-buffer left shift


@dataclasses.dataclass
class Netlist:
    input: str
    input_shape: tuple
    populations: list            # PopulationSpec, in topological order
    projections: list            # ProjectionSpec, the input's included
    input_projections: list      # (target, CSR matrix of integer weights, shift): analog input's drive

    def population(self, name: str) -> PopulationSpec:
        return next(p for p in self.populations if p.name == name)


def check_spinnaker(graph: Graph) -> None:
    """Refuse a graph not quantised for sPyNNaker's LIF (float mode, another chip)."""
    cells = [graph.payload(n) for n in graph.nodes() if isinstance(graph.payload(n), Population)]
    if graph.meta.get("mode") != "integer" or not all(isinstance(p.neuron, SpinnakerLIF) for p in cells):
        target = graph.meta.get("hwmodel", "reference (float)")
        raise NeuroccError(f"this network is compiled for {target}; the SpiNNaker and NEST backends run networks "
                           "compiled with --target spinnaker")


def build_netlist(graph: Graph) -> Netlist:
    """The populations and synapse lists of a graph compiled with ``--target spinnaker``."""
    check_spinnaker(graph)
    (source,) = graph.inputs
    populations, projections, from_input = [], [], []
    for name in graph.topo_order():
        node = graph.payload(name)
        if isinstance(node, InputSource):
            continue
        populations.append(PopulationSpec(
            name=name, shape=tuple(graph.shape(name)), readout=node.readout == "accumulate",
            threshold=int(node.neuron.threshold), v0=int(round(node.neuron.v0 * node.neuron.threshold)),
            bias=np.rint(node.bias).astype(np.int64).reshape(-1), leak_shift=node.neuron.leak_shift,
            refractory=node.neuron.refractory))
        for src, _, proj in graph.projections(name):
            where = f"projection {src!r} -> {name!r}"
            refuse_max_pool_gate(proj, where, "PyNN synapse or IF_curr_delta cell", "sPyNNaker")
            matrix = synapse_matrix(proj.ops, graph.shape(src)).tocoo()
            weights = np.rint(matrix.data).astype(np.int64)
            magnitude = int(np.abs(weights).max()) if len(weights) else 0
            if magnitude >= 2 ** WEIGHT_BITS:
                raise NeuroccError(f"{where}: a synapse of weight {magnitude:,} after merging the chain's paths; "
                                   f"sPyNNaker's weights have {WEIGHT_BITS} bits")
            shift = proj.shift + node.neuron.input_shift
            if isinstance(graph.payload(src), InputSource):
                from_input.append((name, matrix.tocsr(), shift))
            elif proj.delay < 1:
                raise NeuroccError(f"{where}: a delay of {proj.delay} steps; sPyNNaker's smallest is 1")
            weights = weights << shift
            projections.append(ProjectionSpec(source=src, target=name, pre=matrix.col.astype(np.int64),
                                              post=matrix.row.astype(np.int64), weight=weights,
                                              delay=proj.delay, exponent=proj.shift))
    for pop in populations:
        pop.parts = row_parts(pop.size, [q for q in projections if q.target == pop.name and q.source != source])
    return Netlist(input=source, input_shape=tuple(graph.shape(source)), populations=populations,
                   projections=projections, input_projections=from_input)


def row_parts(size: int, incoming: list) -> list:
    """The fewest equal contiguous ranges [first, stop) of a population's neurons such that no source neuron of
    ``incoming`` has more than ``MAX_ROW`` synapses into one range."""
    for n in range(1, size + 1):
        bounds = np.linspace(0, size, n + 1).round().astype(np.int64)
        if all(_longest_row(q.pre, np.searchsorted(bounds, q.post, side="right") - 1, n) <= MAX_ROW
               for q in incoming):
            return [[int(a), int(b)] for a, b in zip(bounds[:-1], bounds[1:])]
    raise AssertionError("one neuron per part always fits")


def _longest_row(pre: np.ndarray, part: np.ndarray, parts: int) -> int:
    return int(np.bincount(pre * parts + part).max()) if len(pre) else 0


def analog_currents(graph: Graph, netlist: Netlist, x: np.ndarray) -> dict:
    """Per population fed by an analog input: its i_offset [raw] per sample, (samples, neurons) int64:
    the bias plus the input projection's drive, exactly as the reference simulator computes it
    (``InputSource.encode``, then floor((W x_q) * 2^(shift - bits)))."""
    node = graph.payload(netlist.input)
    xq = node.encode(torch.as_tensor(x, dtype=torch.float64), torch.arange(len(x)), torch.arange(1, 2),
                     integer=True)[0].reshape(len(x), -1).numpy().astype(np.int64)
    out = {}
    for target, matrix, shift in netlist.input_projections:
        drive = np.asarray(matrix.astype(np.int64) @ xq.T).T               # exact: int64 sums
        k = shift - node.bits
        drive = drive << k if k >= 0 else drive >> -k
        out[target] = out.get(target, netlist.population(target).bias[None, :]) + drive
    return out
