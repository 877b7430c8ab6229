"""Invariants of each IR level, checked after every pass.

ANN level: a DAG; graph inputs are ``Input`` ops; every other node has inputs on ports 0..k-1 and as
many as its op takes; outputs exist; parameters are finite; stored shapes equal the shapes the
executor produces on a zero batch.
SNN level: a DAG whose sources are ``InputSource`` nodes listed as graph inputs; every population has
a finite bias of its own shape, a known neuron model with a positive threshold, a known read-out, at
least one incoming projection and, once normalised, a clip (ReLU6's cap, in units of its lambda) of at
least one spike per step: lambda <= the clip value, so the rate saturates no later than the ANN clips;
every input source a known coding; every projection's chain maps its source shape to its target shape
and has an integer delay in 0..MAX_DELAY.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import torch

from . import ops
from .executor import apply_chain, run_ann
from .graph import Graph
from .coding import CODINGS
from .neurons import MODELS
from .snn import READOUTS, InputSource, Population


MAX_DELAY = 64     # steps; a simulator keeps this many steps of its source's spikes (chips delay by 1 to 16)
CAP_ROUNDING = 1e-6   # relative float error of cap / lambda when lambda equals the clip value


class VerificationError(ValueError):
    """The graph breaks an invariant of its level."""


def _check_finite(where: str, arrays: dict) -> None:
    for field, arr in arrays.items():
        if arr is not None and not np.all(np.isfinite(arr)):
            raise VerificationError(f"{where}: parameter {field!r} has non-finite values")


def _verify_ann(g: Graph) -> None:
    timed = [n for n in g.nodes() if isinstance(g.payload(n), ops.TIME_OPS)]
    if timed and "trained_snn" not in g.meta:
        raise VerificationError(f"node {timed[0]!r} ({type(g.payload(timed[0])).__name__}) depends on the time step, "
                                "but the graph has no trained_snn meta (its time_steps)")
    for name in g.nodes():
        op = g.payload(name)
        if not isinstance(op, ops.Op):
            raise VerificationError(f"node {name!r}: payload {type(op).__name__} is not an ANN op")
        ports = sorted(d["port"] for _, _, d in g.nx.in_edges(name, data=True))
        if isinstance(op, ops.Input):
            if name not in g.inputs or ports:
                raise VerificationError(f"node {name!r}: Input nodes must be graph inputs with no inputs")
            continue
        if ports != list(range(len(ports))) or not ports:
            raise VerificationError(f"node {name!r} ({type(op).__name__}): inputs on ports {ports}")
        if op.arity is not None and len(ports) != op.arity:
            raise VerificationError(f"node {name!r} ({type(op).__name__}): takes {op.arity} input(s), has {len(ports)}")
        _check_finite(f"node {name!r}", op.tensors())
    zeros = {i: torch.zeros((1,) + g.shape(i)) for i in g.inputs}
    try:
        values = run_ann(g, zeros, keep=lambda n: True, steps=1)        # shapes: one step of a trained SNN
    except RuntimeError as e:
        raise VerificationError(f"the graph cannot be evaluated (inconsistent shapes): {e}") from None
    for name, v in values.items():
        if tuple(v.shape[1:]) != g.shape(name):
            raise VerificationError(f"node {name!r}: stored shape {g.shape(name)} but computes {tuple(v.shape[1:])}")


def _verify_snn(g: Graph) -> None:
    for name in g.nodes():
        node = g.payload(name)
        shape = g.shape(name)
        if isinstance(node, InputSource):
            if name not in g.inputs or g.nx.in_degree(name):
                raise VerificationError(f"node {name!r}: input sources must be graph inputs with no projections")
            if type(node.coding) not in CODINGS.values():
                raise VerificationError(f"input {name!r}: coding {node.coding!r} is not one of {', '.join(CODINGS)}")
            continue
        if not isinstance(node, Population):
            raise VerificationError(f"node {name!r}: payload {type(node).__name__} is not an SNN node")
        if tuple(node.shape) != shape or node.bias.shape != shape:
            raise VerificationError(f"population {name!r}: bias {node.bias.shape} / shape {node.shape} != {shape}")
        _check_finite(f"population {name!r}", node.tensors())
        for field in ("gain", "shift"):
            table = getattr(node, field)
            if table is not None and (table.ndim != len(shape) + 1 or len(table) == 0 or
                                      np.broadcast_shapes(table.shape[1:], shape) != shape):
                raise VerificationError(f"population {name!r}: its {field} schedule {table.shape} is not (steps, ...) "
                                        f"broadcasting to {shape}")
        if type(node.neuron) not in MODELS.values():
            raise VerificationError(f"population {name!r}: neuron model {node.neuron!r} is not one of "
                                    f"{', '.join(cls.__name__ for cls in MODELS.values())}")
        if not np.isfinite(node.neuron.threshold) or not node.neuron.threshold > 0 or node.readout not in READOUTS:
            raise VerificationError(f"population {name!r}: threshold {node.neuron.threshold}, "
                                    f"readout {node.readout!r} invalid")
        if g.nx.in_degree(name) == 0:
            raise VerificationError(f"population {name!r} has no incoming projection")
        if "lambdas" in g.meta and node.cap is not None and node.cap < 1 - CAP_ROUNDING:
            raise VerificationError(f"population {name!r}: its clip is {node.cap:.6g} spikes per step, below the rate's "
                                    "saturation at 1: lambda exceeds the clip value, so the SNN would pass values the "
                                    "ANN clips")
        for src, _, proj in g.projections(name):
            if not isinstance(proj.delay, int) or not 0 <= proj.delay <= MAX_DELAY:
                raise VerificationError(f"projection {src!r} -> {name!r}: delay {proj.delay!r} is not an integer in "
                                        f"0..{MAX_DELAY}")
            for op in proj.ops:
                _check_finite(f"projection {src!r} -> {name!r}", op.tensors())
            try:
                out = apply_chain(proj.ops, torch.zeros((1,) + g.shape(src)))
            except RuntimeError as e:
                raise VerificationError(f"projection {src!r} -> {name!r} cannot be evaluated (shapes): {e}") from None
            if tuple(out.shape[1:]) != shape:
                raise VerificationError(f"projection {src!r} -> {name!r} yields {tuple(out.shape[1:])}, target is {shape}")


def _verify_integers(g: Graph) -> None:
    """Integer mode: parameters are integers, stored exactly (float32 holds integers below 2^24)."""
    def check(where, arr):
        a = np.asarray(arr, dtype=np.float64)
        if not np.all(a == np.rint(a)) or np.abs(a).max(initial=0) >= 2 ** 24:
            raise VerificationError(f"{where}: integer mode needs integers below 2^24")
    for name in g.nodes():
        node = g.payload(name)
        if isinstance(node, Population):
            check(f"population {name!r} bias", node.bias)
            for field in ("gain", "shift"):
                if getattr(node, field) is not None:
                    check(f"population {name!r} {field} schedule", getattr(node, field))
            check(f"population {name!r} threshold", [node.neuron.threshold])
            for src, _, proj in g.projections(name):
                if not isinstance(proj.shift, int):
                    raise VerificationError(f"projection {src!r} -> {name!r}: shift {proj.shift!r} is not an integer")
                for op in proj.ops:
                    for field, arr in op.tensors().items():
                        check(f"projection {src!r} -> {name!r} {field}", arr)


def verify(g: Graph) -> None:
    """Raise ``VerificationError`` if ``g`` breaks an invariant of its level."""
    if not nx.is_directed_acyclic_graph(g.nx):
        raise VerificationError("graph has a cycle")
    if not g.inputs or not g.outputs:
        raise VerificationError(f"graph has {len(g.inputs)} inputs and {len(g.outputs)} outputs; it needs both")
    for name in g.inputs + g.outputs:
        if name not in g:
            raise VerificationError(f"graph input/output {name!r} is not a node")
    (_verify_ann if g.level == "ann" else _verify_snn)(g)
    if g.meta.get("mode") == "integer":
        _verify_integers(g)
