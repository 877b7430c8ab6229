"""NIR -> ANN-level IR of a directly trained SNN (``ops.Spike`` layers); ``neurocc.nir_export`` writes the inverse.

NIR (the Neuromorphic Intermediate Representation, nir 1.0.8) states its neurons in continuous time. neurocc runs
steps of one tick, so the import discretises every neuron by forward Euler with one step of ``dt`` seconds
(``--nir-dt``; default ``DEFAULT_DT`` = 1e-4, the dt that snnTorch 1.0.0's ``export_to_nir`` and ``import_from_nir``
fix in their source). With I[t] the sum of the node's inputs at step t = 1, 2, ...:

    LIF  tau dv/dt = (v_leak - v) + r I   ->  v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak + (dt r/tau) I[t]
    IF       dv/dt = r I                  ->  v[t] = v[t-1] + dt r I[t]
         then z[t] = 1 if v[t] > v_threshold;  v[t] <- v_reset where z[t] = 1;  v[0] = 0
    I        dv/dt = r I                  ->  v[t] = v[t-1] + dt r I[t]         (a read-out: its v is read)
    LI   as LIF without firing: a read-out, taken only when its leak 1 - dt/tau is 1 in float32

An IF/LIF node becomes ``ops.Spike`` on the state U = v - v_reset, which resets to zero:

    U[t] = leak U[t-1] + (g I[t] + c),   leak = 1 - dt/tau (IF: 1),  g = dt r/tau (IF: dt r),
    c = (dt/tau) (v_leak - v_reset) (IF: 0);  spike where U[t] > threshold = v_threshold - v_reset;  U[0] = -v_reset,
    i.e. Spike(threshold, leak, reset="zero", compare=">", v0 = -v_reset / threshold)

``leak`` is computed in float64 and rounded to float32, the precision the simulator multiplies in (snnTorch's float32
tau = dt / (1 - beta) then gives back beta exactly for the usual beta). leak, v_threshold and v_reset must be the
same for every neuron of a node (they are scalars of ``Spike``); a node whose values differ is refused, named. The
input gain g and the constant c may differ per neuron: where g is not 1 or c not 0 they become an ``ops.Affine``
(scale g, shift c) before the ``Spike``, which ``canonicalize`` folds into the preceding Conv/Gemm where the values
are per output channel (exact in real arithmetic; float32 rounds the scaled weights). g counts as 1 when it is
within ``GAIN_TOLERANCE`` (4 float32 ulps) of 1: an exporter that writes r = tau/dt in float32, as snnTorch does,
means g = 1. A read-out's g is folded likewise; its value summed over the steps is then the read-out.

Nodes: Input -> ``ops.Input``; Affine / Linear -> ``ops.Gemm`` (a flat input); Conv2d -> ``ops.Conv`` (padding an
int, a pair, "valid" or "same" as torch pads it); AvgPool2d -> ``ops.AvgPool`` (padding counted in the divisor, as
torch's default); SumPool2d -> ``ops.SumPool``; Scale -> ``ops.Affine``; Flatten of every axis -> ``ops.Flatten``;
IF / LIF -> ``ops.Spike``; I / LI -> the read-out of an Output; Output -> a graph output (a spiking node's output is
read out as spike counts; a non-spiking node's as its values summed over the steps, an I node with dt r = 1).
A node with several incoming edges gets their sum (NIR's fan-in), added in the order of the file's edge list.
Everything else (CubaLIF, CubaLI, Delay, Threshold, Conv1d, nested NIRGraph, recurrent edges) is refused.

neurocc's exporter writes what NIR cannot say into node metadata, honoured here: ``neurocc.reset`` ("subtract" |
"zero"), ``neurocc.compare`` (">=" | ">") and ``neurocc.v0`` (V(0) as a fraction of the threshold) on IF/LIF
nodes, ``neurocc.op`` = "GlobalAvgPool" on an AvgPool2d, and ``neurocc.time_steps`` on the graph. A foreign graph
gets NIR's own semantics above (hard reset to v_reset, compare >, v[0] = 0).
"""
from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from neurocc.ir import Graph, ops

from ..errors import NeuroccError, UnsupportedModelError
from . import first_line, handler_registry, read_model_bytes

log = logging.getLogger(__name__)

DEFAULT_DT = 1e-4                  # seconds per step: snnTorch 1.0.0's export_nir.py / import_nir.py (dt = 1e-4)
DEFAULT_TIME_STEPS = 100           # the trained steps of a graph that does not say (neurocc run's default --steps)
GAIN_TOLERANCE = 2.0 ** -22        # |g - 1| below this is g = 1 (4 float32 ulps: float32 tau and r each round)
RESETS = ("subtract", "zero")
COMPARES = (">=", ">")


class _Blocked(Exception):
    """The current node cannot be imported; the message says why."""


_HANDLERS, nir_handler = handler_registry()


def supported_nodes() -> list[str]:
    return sorted(_HANDLERS)


def _array(node, field: str) -> np.ndarray:
    """A numeric field of a NIR node as a finite float64 array."""
    value = getattr(node, field, None)
    if value is None:
        raise _Blocked(f"it has no {field}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Blocked(f"its {field} is not numeric") from None
    if not np.all(np.isfinite(arr)):
        raise _Blocked(f"its {field} has non-finite values (NaN or Inf)")
    return arr


def _pair(value, what: str) -> tuple:
    """An int or a pair of ints (stride, padding, kernel) as a pair."""
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or arr.dtype.kind not in "iuf" or np.any(arr != np.round(arr)) or np.any(arr < 0):
        raise _Blocked(f"its {what} {np.asarray(value).tolist()} is not a pair of non-negative integers")
    return tuple(int(v) for v in arr)


def _full(node, field: str, shape: tuple) -> np.ndarray:
    """A per-neuron field broadcast to the population's shape (float64)."""
    arr = _array(node, field)
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise _Blocked(f"its {field} has shape {arr.shape}, which does not fit its input {shape}") from None


def _uniform(arr: np.ndarray, shape: tuple, what: str) -> float:
    """The one value of a parameter that must be the same for every neuron (a scalar of ``Spike``)."""
    try:
        full = np.broadcast_to(arr, shape)
    except ValueError:
        raise _Blocked(f"its {what} has shape {arr.shape}, which does not fit its input {shape}") from None
    if full.size and not np.all(full == full.flat[0]):
        raise _Blocked(f"its {what} differs between neurons ({float(full.min()):g} .. {float(full.max()):g}); neurocc's "
                       "spiking layers take one value per layer")
    return float(full.flat[0]) if full.size else 0.0


def _per_neuron(arr: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    """A per-neuron parameter as a scalar when it is the same everywhere, else as an array of the population's shape."""
    try:
        full = np.broadcast_to(arr, shape)
    except ValueError:
        raise _Blocked(f"its {what} has shape {arr.shape}, which does not fit its input {shape}") from None
    return np.asarray(full.flat[0]) if full.size and np.all(full == full.flat[0]) else np.array(full)


class _Importer:
    def __init__(self, g, source: str, dt: float):
        self.nir_graph, self.source, self.dt = g, source, dt
        self.graph = Graph("ann", meta={"notes": []})
        self.out: dict[str, str] = {}            # NIR node -> the IR node that holds its output
        self.name = ""                           # the NIR node being imported
        self.ir_name = ""                        # its IR name: neurocc.name from neurocc's exporter, else its NIR name
        self.node = None

    # helpers for the handlers
    def unique(self, name: str) -> str:
        out, i = name, 1
        while out in self.graph:
            out, i = f"{name}#{i}", i + 1
        return out

    def shape(self, node: str) -> tuple:
        return self.graph.shape(node)

    def emit(self, op: ops.Op, src: str, name: Optional[str] = None) -> str:
        """Add an IR node fed by ``src``; its shape comes from the executor (a time op keeps its input's)."""
        name = self.unique(name or self.ir_name)
        if isinstance(op, ops.TIME_OPS):
            shape = self.shape(src)
        else:
            try:
                with torch.no_grad():
                    shape = tuple(ops.apply(op, [torch.zeros((1,) + self.shape(src))]).shape[1:])
            except (RuntimeError, ValueError, IndexError) as e:
                raise _Blocked(f"it cannot take an input of shape {self.shape(src)}: {first_line(e)}") from None
            if 0 in shape:
                raise _Blocked(f"its output from an input of shape {self.shape(src)} is empty ({shape})")
        self.graph.add_node(name, op, shape)
        self.graph.add_edge(src, name, 0)
        return name

    def metadata(self, key: str, default=None):
        meta = getattr(self.node, "metadata", None) or {}
        value = meta.get(key, default)
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        return value

    # the import
    def run(self, time_steps: Optional[int]) -> Graph:
        g = self.nir_graph
        nodes, edges = dict(g.nodes), [(str(a), str(b)) for a, b in g.edges]
        problems = [(name, type(n).__name__) for name, n in nodes.items() if type(n).__name__ not in _HANDLERS]
        if problems:
            name, kind = problems[0]
            more = f" (and {len(problems) - 1} more unsupported node(s))" if len(problems) > 1 else ""
            raise UnsupportedModelError(
                f"{self.source}: node {name!r} (NIR {kind}): unsupported node type; supported: "
                f"{', '.join(supported_nodes())}{more}",
                problems=[(n, f"NIR {k}", "unsupported node type") for n, k in problems])
        seen = set()
        for a, b in edges:
            for end in (a, b):
                if end not in nodes:
                    raise NeuroccError(f"{self.source}: edge ({a!r}, {b!r}) names node {end!r}, which the graph does not have")
            if (a, b) in seen:
                raise NeuroccError(f"{self.source}: edge ({a!r}, {b!r}) appears twice")
            seen.add((a, b))
        preds = {n: [a for a, b in edges if b == n] for n in nodes}
        succs = {n: [b for a, b in edges if a == n] for n in nodes}
        inputs = [n for n, node in nodes.items() if type(node).__name__ == "Input"]
        outputs = [n for n, node in nodes.items() if type(node).__name__ == "Output"]
        if not inputs or not outputs:
            raise NeuroccError(f"{self.source}: the graph needs an Input and an Output node, has "
                               f"{len(inputs)} Input and {len(outputs)} Output")
        order = _topological(nodes, preds, succs, self.source)
        for name in order:
            node = nodes[name]
            kind = type(node).__name__
            self.name, self.node = name, node
            ir_name = self.metadata("neurocc.name")
            self.ir_name = ir_name if isinstance(ir_name, str) and ir_name else name
            try:
                if kind == "Input":
                    if preds[name]:
                        raise _Blocked("an Input node takes no edges in")
                    src = None
                else:
                    if not preds[name]:
                        raise _Blocked("nothing feeds it (no edge in)")
                    src = self._summed(name, [self.out[p] for p in preds[name]])
                if kind in ("I", "LI") and any(type(nodes[s]).__name__ != "Output" for s in succs[name]):
                    raise _Blocked("an integrator is a read-out: neurocc takes it only right before Output nodes")
                self.out[name] = _HANDLERS[kind](self, node, src)
            except _Blocked as e:
                raise UnsupportedModelError(f"{self.source}: node {name!r} (NIR {kind}): {e}",
                                            problems=[(name, f"NIR {kind}", str(e))]) from None
            except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as e:
                raise NeuroccError(f"{self.source}: node {name!r} (NIR {kind}) cannot be imported: {first_line(e)}") \
                    from None
        self.graph.inputs = tuple(self.out[n] for n in inputs)
        self.graph.outputs = tuple(dict.fromkeys(self.out[n] for n in outputs))
        self.graph.remove_dead()
        steps = time_steps if time_steps is not None else self._graph_steps()
        self.graph.meta["trained_snn"] = {"time_steps": steps, "method": "nir", "gamma": {}, "dt": self.dt}
        return self.graph

    def _graph_steps(self) -> int:
        meta = getattr(self.nir_graph, "metadata", None) or {}
        value = meta.get("neurocc.time_steps")
        if value is None:
            return DEFAULT_TIME_STEPS
        try:
            steps = int(np.asarray(value).item())
        except (TypeError, ValueError):
            steps = 0
        if steps < 1:
            raise NeuroccError(f"{self.source}: graph metadata neurocc.time_steps = {value!r} is not a positive integer")
        return steps

    def _summed(self, name: str, srcs: list) -> str:
        """The sum of a node's inputs (NIR adds what its edges bring), in edge order."""
        if len(srcs) == 1:
            return srcs[0]
        shapes = {self.shape(s) for s in srcs}
        if len(shapes) > 1:
            raise _Blocked(f"its inputs have different shapes {sorted(shapes)}; NIR adds them")
        total = self.unique(f"{self.ir_name}:sum")
        self.graph.add_node(total, ops.Add(), self.shape(srcs[0]))
        for port, s in enumerate(srcs):
            self.graph.add_edge(s, total, port)
        return total


def _topological(nodes: dict, preds: dict, succs: dict, source: str) -> list:
    """The nodes in an order where each comes after its inputs (ties: file order); a cycle is refused."""
    pending = {n: len(set(preds[n])) for n in nodes}
    ready = [n for n in nodes if not pending[n]]
    order = []
    rank = {n: i for i, n in enumerate(nodes)}
    while ready:
        ready.sort(key=rank.get)
        n = ready.pop(0)
        order.append(n)
        for s in dict.fromkeys(succs[n]):
            pending[s] -= 1
            if not pending[s]:
                ready.append(s)
    if len(order) < len(nodes):
        stuck = [n for n in nodes if n not in set(order)]
        raise UnsupportedModelError(f"{source}: nodes {', '.join(map(repr, stuck[:6]))} lie on a cycle (a recurrent "
                                    "connection); neurocc takes feed-forward graphs")
    return order


# ---------------------------------------------------------------------------------------------------
# Handlers, one per NIR node type: (importer, node, summed input or None) -> the IR node of its output


@nir_handler("Input")
def _input(imp: _Importer, node, src):
    dims = np.asarray(node.input_type.get("input") if isinstance(node.input_type, dict) else None).reshape(-1)
    if dims.size == 0 or dims.dtype.kind not in "iuf" or np.any(dims < 1) or np.any(dims != np.round(dims)):
        raise _Blocked(f"its shape {dims.tolist()} is not a list of positive integers (without the batch axis)")
    shape = tuple(int(d) for d in dims)
    if math.prod(shape) > 2 ** 28:
        raise _Blocked(f"its shape {shape} has more than 2^28 values per sample")
    name = imp.unique(imp.ir_name)
    imp.graph.add_node(name, ops.Input(shape=shape), shape)
    return name


@nir_handler("Output")
def _output(imp: _Importer, node, src):
    declared = node.output_type.get("output") if isinstance(node.output_type, dict) else None
    if declared is not None and np.asarray(declared).size and \
            tuple(int(d) for d in np.asarray(declared).reshape(-1)) != imp.shape(src):
        raise _Blocked(f"it declares shape {np.asarray(declared).tolist()} but receives {list(imp.shape(src))}")
    return src


def _flat_input(imp: _Importer, src: str, weight: np.ndarray) -> None:
    if weight.ndim != 2:
        raise _Blocked(f"its weight has shape {weight.shape}; neurocc takes a 2-D (out, in) weight")
    if imp.shape(src) != (weight.shape[1],):
        hint = "; put a Flatten before it" if math.prod(imp.shape(src)) == weight.shape[1] else ""
        raise _Blocked(f"its weight takes {weight.shape[1]} inputs but it receives shape {imp.shape(src)}{hint}")


@nir_handler("Affine", "Linear")
def _affine(imp: _Importer, node, src):
    weight = _array(node, "weight")
    _flat_input(imp, src, weight)
    bias = None
    if type(node).__name__ == "Affine":
        bias = _array(node, "bias")
        try:
            bias = np.broadcast_to(bias, (weight.shape[0],))
        except ValueError:
            raise _Blocked(f"its bias has shape {bias.shape}, its weight {weight.shape[0]} outputs") from None
    return imp.emit(ops.Gemm(weight=weight, bias=bias), src)


@nir_handler("Scale")
def _scale(imp: _Importer, node, src):
    scale = _array(node, "scale")
    try:
        scale = np.broadcast_to(scale, imp.shape(src))
    except ValueError:
        raise _Blocked(f"its scale has shape {scale.shape}, its input {imp.shape(src)}") from None
    return imp.emit(ops.Affine(scale=_per_neuron(scale, imp.shape(src), "scale")), src)


def _conv_pads(imp: _Importer, padding, kernel: tuple, strides: tuple, dilations: tuple) -> tuple:
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise _Blocked(f"its padding {padding!r} is not an int, a pair, 'valid' or 'same'")
        if strides != (1, 1):
            raise _Blocked("padding 'same' with a stride other than 1 is not defined (torch refuses it too)")
        total = [d * (k - 1) for k, d in zip(kernel, dilations)]
        return (total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2)
    ph, pw = _pair(padding, "padding")
    return (ph, pw, ph, pw)


@nir_handler("Conv2d")
def _conv2d(imp: _Importer, node, src):
    weight = _array(node, "weight")
    if weight.ndim != 4:
        raise _Blocked(f"its weight has shape {weight.shape}; a 2-D convolution's is (out, in / groups, kh, kw)")
    if len(imp.shape(src)) != 3:
        raise _Blocked(f"it receives shape {imp.shape(src)}; a 2-D convolution takes (C, H, W)")
    strides, dilations = _pair(node.stride, "stride"), _pair(node.dilation, "dilation")
    groups = int(np.asarray(node.groups).item())
    if groups < 1 or min(strides + dilations) < 1:
        raise _Blocked(f"groups {groups}, stride {strides} and dilation {dilations} must be positive")
    pads = _conv_pads(imp, node.padding, tuple(weight.shape[2:]), strides, dilations)
    if node.input_shape is not None and np.asarray(node.input_shape).size and \
            tuple(int(v) for v in np.asarray(node.input_shape).reshape(-1)) != imp.shape(src)[1:]:
        raise _Blocked(f"it declares input_shape {np.asarray(node.input_shape).tolist()} but receives "
                       f"{list(imp.shape(src)[1:])}")
    bias = _array(node, "bias")
    try:
        bias = np.broadcast_to(bias, (weight.shape[0],))
    except ValueError:
        raise _Blocked(f"its bias has shape {bias.shape}, its weight {weight.shape[0]} output channels") from None
    if imp.shape(src)[0] != weight.shape[1] * groups:
        raise _Blocked(f"its weight takes {weight.shape[1] * groups} input channels but it receives {imp.shape(src)[0]}")
    return imp.emit(ops.Conv(weight=weight, bias=bias, strides=strides, pads=pads, dilations=dilations,
                             groups=groups), src)


@nir_handler("AvgPool2d", "SumPool2d")
def _pool(imp: _Importer, node, src):
    if len(imp.shape(src)) != 3:
        raise _Blocked(f"it receives shape {imp.shape(src)}; 2-D pooling takes (C, H, W)")
    kernel, strides = _pair(node.kernel_size, "kernel_size"), _pair(node.stride, "stride")
    ph, pw = _pair(node.padding, "padding")
    if min(kernel + strides) < 1:
        raise _Blocked(f"its kernel {kernel} and stride {strides} must be positive")
    if type(node).__name__ == "SumPool2d":
        return imp.emit(ops.SumPool(kernel=kernel, strides=strides, pads=(ph, pw, ph, pw)), src)
    if imp.metadata("neurocc.op") == "GlobalAvgPool" and kernel == imp.shape(src)[1:] and (ph, pw) == (0, 0):
        return imp.emit(ops.GlobalAvgPool(), src)
    return imp.emit(ops.AvgPool(kernel=kernel, strides=strides, pads=(ph, pw, ph, pw), count_include_pad=True), src)


@nir_handler("Flatten")
def _flatten(imp: _Importer, node, src):
    rank = len(imp.shape(src))
    start, end = int(np.asarray(node.start_dim).item()), int(np.asarray(node.end_dim).item())
    if rank > 1 and not (start in (0, -rank) and end in (-1, rank - 1)):
        raise _Blocked(f"it flattens axes {start}..{end} of an input of shape {imp.shape(src)}; neurocc flattens "
                       "every axis (start_dim 0, end_dim -1; axes counted without the batch axis)")
    return imp.emit(ops.Flatten(), src)


def _gain_and_constant(imp: _Importer, src: str, gain: np.ndarray, constant: np.ndarray, what: str) -> str:
    """``src`` times the per-neuron input gain g plus the constant c, as an ``ops.Affine`` where they are not 1 and 0."""
    shape = imp.shape(src)
    gain = np.broadcast_to(gain, shape)
    if np.all(np.abs(gain - 1.0) <= GAIN_TOLERANCE):
        gain = np.ones(shape)
    constant = np.broadcast_to(constant, shape)
    if np.all(gain == 1.0) and np.all(constant == 0.0):
        return src
    g = _per_neuron(gain, shape, "gain")
    c = _per_neuron(constant, shape, "constant")
    note = f"node {imp.name!r}: its {what} (g = {float(gain.flat[0]):g}{'' if g.ndim == 0 else ' ...'}, " \
           f"c = {float(constant.flat[0]):g}{'' if c.ndim == 0 else ' ...'}) is an affine map on its input"
    imp.graph.meta["notes"].append(note)
    log.info(note)
    return imp.emit(ops.Affine(scale=None if np.all(gain == 1.0) else g,
                               shift=None if np.all(constant == 0.0) else c), src, f"{imp.ir_name}:input")


def _leak(imp: _Importer, node, shape: tuple) -> tuple:
    """(leak rounded to float32, dt/tau per neuron) of an LIF/LI node."""
    tau = _array(node, "tau")
    if np.any(tau <= 0):
        raise _Blocked("its tau must be positive")
    ratio = imp.dt / _full(node, "tau", shape)
    if np.any(ratio >= 1):
        raise _Blocked(f"dt / tau = {float(ratio.max()):g} >= 1 with dt = {imp.dt:g}: forward Euler would not decay; "
                       "pass a smaller --nir-dt")
    leak = float(np.float32(_uniform(1.0 - ratio, shape, "leak 1 - dt/tau")))
    return leak, ratio


@nir_handler("IF", "LIF")
def _spiking(imp: _Importer, node, src):
    shape = imp.shape(src)
    r = _full(node, "r", shape)
    threshold = _uniform(_array(node, "v_threshold"), shape, "v_threshold")
    v_reset = _uniform(_array(node, "v_reset"), shape, "v_reset") if node.v_reset is not None else 0.0
    if type(node).__name__ == "LIF":
        leak, ratio = _leak(imp, node, shape)
        gain = ratio * r
        constant = ratio * (_full(node, "v_leak", shape) - v_reset)
    else:
        leak, gain, constant = 1.0, imp.dt * r, np.zeros(shape)
    reset = imp.metadata("neurocc.reset", "zero")
    compare = imp.metadata("neurocc.compare", ">")
    v0 = imp.metadata("neurocc.v0")
    if reset not in RESETS or compare not in COMPARES:
        raise _Blocked(f"its metadata neurocc.reset = {reset!r} / neurocc.compare = {compare!r} is not one of "
                       f"{RESETS} / {COMPARES}")
    if v0 is not None and (v_reset != 0.0 or not isinstance(v0, (int, float)) or not math.isfinite(v0)):
        raise _Blocked(f"its metadata neurocc.v0 = {v0!r} needs a finite number and v_reset 0, got v_reset {v_reset:g}")
    if reset == "subtract" and v_reset != 0.0:
        raise _Blocked(f"its metadata neurocc.reset = 'subtract' (soft reset) needs v_reset 0, got {v_reset:g}")
    theta = threshold - v_reset
    if not theta > 0:
        raise _Blocked(f"v_threshold {threshold:g} must lie above v_reset {v_reset:g}")
    if v0 is None:
        v0 = -v_reset / theta if v_reset else 0.0
    pre = _gain_and_constant(imp, src, gain, constant, "input gain and leak to v_leak")
    spike = ops.Spike(threshold=theta, leak=leak, reset=reset, compare=compare, v0=float(v0))
    return imp.emit(spike, pre)


@nir_handler("I", "LI")
def _integrator(imp: _Importer, node, src):
    shape = imp.shape(src)
    r = _full(node, "r", shape)
    if type(node).__name__ == "LI":
        leak, ratio = _leak(imp, node, shape)
        if leak != 1.0:
            raise _Blocked(f"it leaks (1 - dt/tau = {leak:g} with dt = {imp.dt:g}); neurocc's read-outs accumulate "
                           "without leak: use an I node (or an LI whose tau makes dt/tau round away)")
        gain, constant = ratio * r, ratio * _full(node, "v_leak", shape)
    else:
        gain, constant = imp.dt * r, np.zeros(shape)
    if np.any(gain <= 0):
        raise _Blocked("its input gain (dt r, or dt r / tau) must be positive")
    return _gain_and_constant(imp, src, gain, constant, "input gain")


# ---------------------------------------------------------------------------------------------------


def load_nir(path: str | Path, dt: float = DEFAULT_DT, time_steps: Optional[int] = None) -> tuple[Graph, bytes]:
    """Load and import a NIR file (HDF5, ``nir.write``); return the ANN-level graph and the file's bytes.

    ``dt`` is the Euler step in seconds (module docstring); ``time_steps`` the steps the graph's reference runs
    (``meta["trained_snn"]``; default: the graph's ``neurocc.time_steps`` metadata, else ``DEFAULT_TIME_STEPS``).
    Every failure that comes from the file (unreadable, not NIR, an unsupported node or parameter) is a
    ``NeuroccError`` of one line naming the node.
    """
    from neurocc.fileio import interrupts_held

    path = Path(path)
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise NeuroccError(f"--nir-dt must be a positive number of seconds, got {dt!r}")
    if time_steps is not None and time_steps < 1:
        raise NeuroccError(f"--nir-steps must be at least 1, got {time_steps}")
    data = read_model_bytes(path)
    with interrupts_held():               # h5py's C code runs Python callbacks on the file object
        graph = _read(data, path)
    imported = _Importer(graph, path.name, float(dt)).run(time_steps)
    from neurocc.ir import VerificationError, verify
    try:
        verify(imported)
    except VerificationError as e:
        raise NeuroccError(f"{path}: the graph cannot be imported: {first_line(e)}") from None
    return imported, data


def _read(data: bytes, path: Path):
    """The ``nir.NIRGraph`` in ``data``, read as ``nir.read`` does, with node types checked before construction so
    that an unknown one is named."""
    import h5py
    import nir
    from nir.serialization import hdf2dict

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            doc = hdf2dict(f["node"])
    except Exception as e:               # any failure to parse the HDF5 file is the file's
        raise NeuroccError(f"{path}: not a readable NIR file (HDF5 with a 'node' group, written by nir.write): "
                           f"{first_line(e)}") from None
    if not isinstance(doc, dict) or doc.get("type") != "NIRGraph" or not isinstance(doc.get("nodes"), dict):
        raise NeuroccError(f"{path}: not a NIR graph (its root node is {doc.get('type') if isinstance(doc, dict) else doc!r})")
    known = set(nir.ir.__all__)
    for name, node in doc["nodes"].items():
        kind = node.get("type") if isinstance(node, dict) else None
        if kind not in known or kind in ("NIRNode", "str2NIRNode", "dict2NIRNode"):
            raise UnsupportedModelError(f"{path.name}: node {name!r} (NIR {kind}): unsupported node type; supported: "
                                        f"{', '.join(supported_nodes())}", problems=[(name, f"NIR {kind}", "unknown")])
        if kind == "NIRGraph":
            raise UnsupportedModelError(f"{path.name}: node {name!r} (NIR NIRGraph): a nested graph (a recurrent layer, "
                                        f"as snnTorch writes RLeaky) is not supported; supported: "
                                        f"{', '.join(supported_nodes())}", problems=[(name, "NIR NIRGraph", "nested")])
    doc["type_check"] = False
    try:
        return nir.dict2NIRNode(doc)
    except Exception as e:               # a node whose fields nir cannot build from: the file's
        raise NeuroccError(f"{path}: the NIR graph cannot be read: {first_line(e)}") from None
