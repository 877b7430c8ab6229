"""A compiled float SNN (SNN-level graph) -> NIR (nir 1.0.8); ``neurocc.frontend.nir`` reads it back.

NIR's neurons are continuous-time; the file is written for forward Euler with ``dt`` = ``DEFAULT_DT`` (1e-4 s,
snnTorch's fixed dt, also ``neurocc compile --nir-dt``'s default), recorded in the graph metadata ``neurocc.dt``, so
that each Euler step is exactly one neurocc step (``neurocc.frontend.nir`` states the discretisation):

    InputSource (analog, scale s)  -> Input (the pre-processed sample, fed unchanged every step), then Scale(1/s)
                                      when s != 1 (float32 x * (1/s) may differ from x / s by one rounding)
    projection chain q -> p        -> one node per op, in order: Conv -> Conv2d, Gemm -> Linear (Affine where it
                                      carries p's bias), AvgPool -> AvgPool2d, SumPool -> SumPool2d,
                                      GlobalAvgPool -> AvgPool2d over the whole map (metadata neurocc.op), Affine
                                      (a scale) -> Scale, Flatten -> Flatten; an empty chain is an edge q -> p
    several projections into p     -> several edges into p's node: NIR adds what arrives, in edge order
    p's bias b                      -> the bias of the Affine / Conv2d ending p's first projection that ends in one
                                      (a Conv2d takes it per channel)
    spiking p, IF(theta)            -> IF(r = 1/dt, v_threshold = theta, v_reset = 0): v[t] = v[t-1] + I[t]
    spiking p, LIF(theta, leak)     -> LIF(tau = dt/(1 - leak), r = tau/dt, v_leak = 0, v_threshold = theta,
                                       v_reset = 0): v[t] = leak v[t-1] + I[t]
    accumulating read-out p         -> I(r = 1/dt): v[t] = v[t-1] + I[t], the read-out; then Output
    spiking read-out p              -> its IF/LIF node, then Output (spike counts)

Neuron parameters are float64 arrays of the population's shape, so that the reader recovers leak and a gain of
exactly 1. NIR's IF/LIF fire where v > v_threshold and reset to v_reset, starting at v = 0: that is neurocc's
reset "zero", compare ">" and v0 = 0. What else neurocc runs is written into node metadata, ``neurocc.reset``
("subtract" | "zero"), ``neurocc.compare`` (">=" | ">") and ``neurocc.v0``, always; neurocc's reader honours it,
so neurocc -> NIR -> neurocc gives the same spikes, but a tool that ignores it runs a hard reset, > and v[0] = 0
(``export_notes`` names the populations concerned). ``neurocc.name`` keeps neurocc's node names (NIR's HDF5 names
cannot hold '/').

Refused, each naming the population or projection: integer (quantised) graphs, delays, max-pool gates, zero
padding and slicing in a chain (Concat, option-A shortcuts), per-step schedules (batch norm through time), input
codings other than analog, neuron models other than IF and LIF, a bias NIR has no node for, a read-out with an
initial potential.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from neurocc import __version__
from neurocc.errors import NeuroccError
from neurocc.frontend.nir import DEFAULT_DT
from neurocc.ir import Graph, ops
from neurocc.ir.coding import Analog
from neurocc.ir.neurons import IF, LIF
from neurocc.ir.snn import InputSource, Population


def _nir_name(name: str, taken: set) -> str:
    """A NIR (HDF5) node name for ``name``: '/' would nest groups, so it becomes '.'; unique."""
    base = name.strip("/").replace("/", ".") or "node"
    if base in (".", ".."):
        base = "node"
    out, i = base, 1
    while out in taken:
        out, i = f"{base}#{i}", i + 1
    taken.add(out)
    return out


def _refuse(snn: Graph) -> None:
    """One NeuroccError for the first thing NIR cannot hold (see the module docstring)."""
    if snn.level != "snn":
        raise NeuroccError("NIR export needs an SNN-level graph")
    if snn.meta.get("mode") == "integer":
        raise NeuroccError(f"the network is quantised to integers (for {snn.meta.get('hwmodel', 'a chip')}); NIR holds "
                           "float networks: export an artifact compiled with --target reference")
    for name in snn.topo_order():
        node = snn.payload(name)
        if isinstance(node, InputSource):
            if not isinstance(node.coding, Analog):
                raise NeuroccError(f"input {name!r} is {node.coding.name}-coded; NIR's Input is the analog value fed "
                                   "every step: compile with --coding analog")
            if node.bits:
                raise NeuroccError(f"input {name!r} is quantised to {node.bits} bits; NIR holds float networks")
            continue
        if not isinstance(node, Population):
            raise NeuroccError(f"node {name!r} ({type(node).__name__}) is neither an input nor a population")
        neuron = node.neuron
        if type(neuron) not in (IF, LIF):
            raise NeuroccError(f"population {name!r} runs the {neuron.semantics} neuron model; NIR has IF and LIF, "
                               "which neurocc's nliaf and lif models are")
        if neuron.state_bits or neuron.input_shift:
            raise NeuroccError(f"population {name!r} has an integer state (state_bits {neuron.state_bits}, input_shift "
                               f"{neuron.input_shift}); NIR holds float networks")
        if node.scheduled:
            raise NeuroccError(f"population {name!r} follows a per-step schedule (gain/shift: batch norm through time); "
                               "NIR's parameters do not change over time")
        if node.readout == "accumulate" and neuron.v0:
            raise NeuroccError(f"read-out {name!r} starts at V(0) = {neuron.v0:g} x threshold; NIR's integrator starts at 0")
        for src, _, proj in snn.projections(name):
            where = f"projection {src!r} -> {name!r}"
            if proj.delay:
                raise NeuroccError(f"{where} has a delay of {proj.delay} step(s), which neurocc does not export to NIR")
            if proj.shift:
                raise NeuroccError(f"{where} scales by 2^{proj.shift}: an integer graph's; NIR holds float networks")
            for op in proj.ops:
                if isinstance(op, ops.MaxPool):
                    raise NeuroccError(f"{where} starts with a max-pool gate (weighted-spikes 4.5), which NIR has no node "
                                       "for: compile with --max-pool average")
                if not isinstance(op, (ops.Conv, ops.Gemm, ops.AvgPool, ops.SumPool, ops.GlobalAvgPool, ops.Affine,
                                       ops.Flatten)):
                    raise NeuroccError(f"{where} holds a {type(op).__name__} (zero padding or slicing: a Concat or a "
                                       "padded shortcut), which NIR has no node for")


def _bias_slot(snn: Graph, name: str, node: Population, projections: list) -> Optional[int]:
    """Which projection's last op carries the population's bias (None: the bias is zero)."""
    bias = np.asarray(node.bias)
    if not np.any(bias):
        return None
    for k, (_, _, proj) in enumerate(projections):
        last = proj.ops[-1] if proj.ops else None
        if isinstance(last, ops.Gemm):
            return k
        if isinstance(last, ops.Conv) and bias.ndim == 3 and np.all(bias == bias[:, :1, :1]):
            return k
    raise NeuroccError(f"population {name!r} has a bias that NIR cannot carry: NIR adds a bias only in Affine and "
                       "Conv2d nodes (per output channel), and none of its projections ends in one that fits")


def _pool_geometry(op, shape: tuple, where: str) -> tuple:
    """(kernel, stride, padding) of a pooling op for NIR, which pads symmetrically and rounds the size down."""
    top, left, bottom, right = op.pads
    if (top, left) != (bottom, right):
        raise NeuroccError(f"{where}: {type(op).__name__} pads asymmetrically {op.pads}; NIR pads (h, w) on both sides")
    floor = tuple((shape[1 + a] + 2 * op.pads[a] - op.kernel[a]) // op.strides[a] + 1 for a in range(2))
    with torch.no_grad():
        actual = tuple(ops.apply(op, [torch.zeros((1,) + shape)]).shape[2:])
    if actual != floor:
        raise NeuroccError(f"{where}: {type(op).__name__} rounds its output size up (ceil_mode); NIR rounds down")
    if isinstance(op, ops.AvgPool) and any(op.pads) and not op.count_include_pad:
        raise NeuroccError(f"{where}: AvgPool leaves padding out of the divisor; NIR's AvgPool2d counts it (as torch)")
    return np.array(op.kernel), np.array(op.strides), np.array((top, left))


def _op_node(op: ops.Op, shape: tuple, bias: Optional[np.ndarray], where: str):
    """(NIR node or None for an identity, output shape) of one chain op on an input of ``shape``."""
    import nir

    with torch.no_grad():
        out = tuple(ops.apply(op, [torch.zeros((1,) + shape)]).shape[1:])
    f32 = lambda a: np.asarray(a, np.float32)        # noqa: E731
    if isinstance(op, ops.Conv):
        top, left, bottom, right = op.pads
        if (top, left) != (bottom, right):
            raise NeuroccError(f"{where}: Conv pads asymmetrically {op.pads}; NIR's Conv2d pads (h, w) on both sides")
        b = f32(np.zeros(op.weight.shape[0]) if bias is None else bias.reshape(bias.shape[0], -1)[:, 0])
        return nir.Conv2d(input_shape=tuple(shape[1:]), weight=f32(op.weight), stride=tuple(op.strides),
                          padding=(top, left), dilation=tuple(op.dilations), groups=int(op.groups), bias=b), out
    if isinstance(op, ops.Gemm):
        if bias is None:
            return nir.Linear(weight=f32(op.weight)), out
        return nir.Affine(weight=f32(op.weight), bias=f32(bias.reshape(-1))), out
    if isinstance(op, (ops.AvgPool, ops.SumPool)):
        kernel, stride, padding = _pool_geometry(op, shape, where)
        kind = nir.AvgPool2d if isinstance(op, ops.AvgPool) else nir.SumPool2d
        return kind(kernel_size=kernel, stride=stride, padding=padding), out
    if isinstance(op, ops.GlobalAvgPool):
        return nir.AvgPool2d(kernel_size=np.array(shape[1:]), stride=np.array(shape[1:]), padding=np.array((0, 0)),
                             metadata={"neurocc.op": "GlobalAvgPool"}), out
    if isinstance(op, ops.Affine):
        if op.scale is None:
            return None, out
        return nir.Scale(scale=f32(np.broadcast_to(op.scale, shape))), out
    if isinstance(op, ops.Flatten):
        return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1), out
    raise NeuroccError(f"{where}: {type(op).__name__} has no NIR node")          # _refuse ran first


def _neuron_node(node: Population, shape: tuple, dt: float, name: str):
    import nir

    neuron = node.neuron
    full = lambda v: np.full(shape, v, np.float64)       # noqa: E731
    meta = {"neurocc.name": name}
    if node.readout == "accumulate":
        return nir.I(r=full(1.0 / dt), metadata=meta)
    meta.update({"neurocc.reset": neuron.reset, "neurocc.compare": neuron.compare, "neurocc.v0": float(neuron.v0)})
    leak = getattr(neuron, "leak", 1.0)
    if leak == 1.0:
        return nir.IF(r=full(1.0 / dt), v_threshold=full(neuron.threshold), v_reset=full(0.0), metadata=meta)
    tau = dt / (1.0 - leak)
    return nir.LIF(tau=full(tau), r=full(tau / dt), v_leak=full(0.0), v_threshold=full(neuron.threshold),
                   v_reset=full(0.0), metadata=meta)


def to_nir(snn: Graph, dt: float = DEFAULT_DT, metadata: Optional[dict] = None):
    """The ``nir.NIRGraph`` of a float SNN-level graph (module docstring); refusals are ``NeuroccError``s."""
    import nir

    _refuse(snn)
    nodes: dict = {}
    edges: list = []
    taken: set = set()
    out_of: dict = {}           # neurocc node -> the NIR node that carries its spikes or values
    for name in snn.topo_order():
        node = snn.payload(name)
        shape = snn.shape(name)
        if isinstance(node, InputSource):
            nir_name = _nir_name(name, taken)
            nodes[nir_name] = nir.Input(input_type={"input": np.array(shape)}, metadata={"neurocc.name": name})
            out_of[name] = nir_name
            if node.scale != 1.0:
                scaled = _nir_name(f"{name}.scale", taken)
                nodes[scaled] = nir.Scale(scale=np.full(shape, 1.0 / node.scale, np.float32))
                edges.append((nir_name, scaled))
                out_of[name] = scaled
            continue
        projections = list(snn.projections(name))
        slot = _bias_slot(snn, name, node, projections)
        target = _nir_name(name, taken)
        ends = []
        for k, (src, _, proj) in enumerate(projections):
            prev, src_shape = out_of[src], snn.shape(src)
            for i, op in enumerate(proj.ops):
                bias = np.asarray(node.bias) if k == slot and i == len(proj.ops) - 1 else None
                made, src_shape = _op_node(op, src_shape, bias, f"projection {src!r} -> {name!r}")
                if made is None:
                    continue
                step = _nir_name(f"{name}.in{k}.{i}.{type(op).__name__}", taken)
                if node.readout == "accumulate" and len(projections) == 1 and i == len(proj.ops) - 1:
                    made.metadata["neurocc.name"] = name           # the reader's read-out node keeps the name
                nodes[step] = made
                edges.append((prev, step))
                prev = step
            if (prev, target) in edges:
                raise NeuroccError(f"population {name!r} takes two identity projections from {src!r}; NIR has one edge "
                                   "per pair of nodes")
            ends.append(prev)
        nodes[target] = _neuron_node(node, shape, dt, name)
        edges += [(e, target) for e in ends]
        out_of[name] = target
        if name in snn.outputs:
            out = _nir_name(f"{name}.output", taken)
            nodes[out] = nir.Output(output_type={"output": np.array(shape)})
            edges.append((target, out))
    meta = {"neurocc.dt": float(dt), "neurocc.version": __version__}
    if "trained_snn" in snn.meta:
        meta["neurocc.time_steps"] = int(snn.meta["trained_snn"]["time_steps"])
    meta.update(metadata or {})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)


def export_notes(snn: Graph) -> list[str]:
    """What only neurocc's metadata carries (a tool that ignores it runs NIR's own IF/LIF), one line each kind."""
    notes = []
    spiking = [(n, snn.payload(n).neuron) for n in snn.topo_order()
               if isinstance(snn.payload(n), Population) and snn.payload(n).readout == "spike"]
    for what, test in (("reset by subtraction (neurocc.reset)", lambda m: m.reset == "subtract"),
                       ("fire at V >= threshold (neurocc.compare)", lambda m: m.compare == ">="),
                       ("start at V(0) = v0 x threshold != 0 (neurocc.v0)", lambda m: m.v0 != 0)):
        names = [n for n, m in spiking if test(m)]
        if names:
            notes.append(f"{len(names)} population(s) {what}, which NIR's IF/LIF do not: tools that ignore neurocc's "
                         f"metadata run them with a hard reset to 0, V > threshold and V(0) = 0 ({names[0]!r}"
                         f"{', ...' if len(names) > 1 else ''})")
    inputs = [n for n in snn.inputs if snn.payload(n).scale != 1.0]
    if inputs:
        notes.append(f"input {inputs[0]!r} is scaled by 1/{snn.payload(inputs[0]).scale:g} in a Scale node")
    return notes


def write_nir(snn: Graph, path: str | Path, dt: float = DEFAULT_DT, metadata: Optional[dict] = None) -> Path:
    """Write ``snn`` as a NIR file (``nir.write``'s HDF5) to ``path``, whole or not at all (temporary name, rename)."""
    import nir

    from neurocc.fileio import atomic_write, output_file

    output_file(path)
    if not (math.isfinite(dt) and dt > 0):
        raise NeuroccError(f"dt must be a positive number of seconds, got {dt!r}")
    graph = to_nir(snn, dt, metadata)
    buf = io.BytesIO()
    nir.write(buf, graph)
    return atomic_write(path, buf.getvalue())
