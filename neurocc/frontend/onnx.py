"""ONNX -> ANN-level IR.

Loads with ``onnx``, runs the checker and shape inference, folds every node whose inputs are all
constant (``onnx.reference``; ``Shape`` of a tensor with a known shape counts as constant, the batch
axis taken as 1), then imports the rest with one handler per op type. Layout ``Transpose`` nodes (models from
TensorFlow, Keras and TFLite converters) are folded as ``frontend.layout`` describes; a transpose
applied to the model input is recorded in ``meta["input_transpose"]`` (the artifact's pre-processing
applies it to the user's data).

Directly trained SNNs (``neurocc.train``) add two ops in the operator domain ``neurocc``: ``Spike`` (a layer of
spiking neurons: attributes threshold, leak, reset, compare, v0) and ``BNTT`` (batch norm through time: inputs x,
gamma, mean, var of shape (steps, channels), attribute epsilon), imported as ``ops.Spike`` and ``ops.StepAffine``;
the model's metadata ``neurocc.time_steps`` (and ``neurocc.method``) becomes the graph's ``trained_snn`` meta, with
the layer-mean gamma_t of every BNTT node (bntt §3.4's early exit reads them). The README gives the exact form.

A node the import cannot take raises ``UnsupportedModelError`` naming it, its op type and why (the
supported ops for an unknown op type). The import goes on past a blocking node (its outputs stand in
with the shapes ONNX shape inference gives them) so that the error lists every blocking node at once.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import onnx.reference
import torch
from onnx import numpy_helper

from neurocc.fileio import interrupts_held
from neurocc.ir import Graph, ops
from ..errors import NeuroccError, UnsupportedModelError
from . import first_line, handler_registry, read_model_bytes
from .layout import Layout, absorb_into_columns, flattened, same_arrangement, transposed

log = logging.getLogger(__name__)
MIN_OPSET = 8
SNN_DOMAIN = "neurocc"


@dataclass
class _Value:
    """An ONNX value during import: a constant array, or the IR node that computes it and the layout of
    the ONNX tensor relative to the node's (None: the same); ``blocked``: downstream of a blocking node
    whose output shape is unknown."""
    const: Optional[np.ndarray] = None
    node: Optional[str] = None
    layout: Optional[Layout] = None
    blocked: bool = False


# what a handler raises on a model whose attributes or shapes make no sense (the file's fault, named by node)
_MALFORMED = (ValueError, TypeError, IndexError, KeyError, RuntimeError, OverflowError, UnicodeDecodeError,
              MemoryError, AttributeError)


class _Blocked(Exception):
    """The current node cannot be imported; ``why`` says what it needs."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


_HANDLERS, onnx_handler = handler_registry()


def supported_ops() -> list[str]:
    return sorted(_HANDLERS)


class _Importer:
    def __init__(self, model: onnx.ModelProto, source: str, input_perm: Optional[tuple] = None):
        self.model = model
        self.source = source
        self.input_perm = input_perm
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.graph = Graph("ann", meta={"notes": []})
        self.values: dict[str, _Value] = {}
        self.output_only: dict[str, str] = {}  # value -> the Softmax-like node that made it
        self.node: Optional[onnx.NodeProto] = None
        self.problems: list[tuple[str, str, str]] = []     # (node or value, op type, why), in graph order
        self.inferred = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}

    # helpers used by the handlers
    def fail(self, why: str) -> None:
        raise _Blocked(why)

    def attr(self, name: str, default=None):
        for a in self.node.attribute:
            if a.name == name:
                v = onnx.helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def const_input(self, i: int, what: str, optional: bool = False) -> Optional[np.ndarray]:
        if i >= len(self.node.input) or not self.node.input[i]:
            if optional:
                return None
            self.fail(f"missing {what}")
        v = self.values[self.node.input[i]]
        if v.const is None:
            self.fail(f"{what} must be a constant (an initializer), not computed at run time")
        return v.const

    def layout_input(self, i: int = 0, folds: tuple = ("axes", "features")) -> tuple[str, Optional[Layout]]:
        """Input ``i``'s IR node and layout, for handlers that fold layouts (see ``frontend.layout``): ``folds``
        names the layouts the handler folds, "axes" (elementwise and axis-naming ops) and/or "features"
        (dense layers after a flatten); any other is refused, naming its Transpose."""
        name = self.node.input[i]
        v = self.values[name]
        if v.node is None:
            self.fail(f"input {i} must be computed from the model input, not a constant")
        if name in self.output_only:
            self.fail(f"it consumes the output of {self.output_only[name]}, which is only supported at a graph output")
        layout = v.layout
        if layout is not None and ("features" if layout.features is not None else "axes") not in folds:
            self.fail(f"its input is permuted by Transpose node {layout.made_by!r}, which cannot be folded "
                      "here (neurocc folds transposes that cancel, precede a flatten into Gemm/MatMul, act on "
                      "a 1 x 1 spatial tensor, or apply to the model input)")
        return v.node, layout

    def data_input(self, i: int = 0) -> str:
        """Input ``i``'s IR node, for handlers that need the ONNX tensor to be the node's tensor."""
        return self.layout_input(i, folds=())[0]

    def shape(self, node: str) -> tuple:
        return self.graph.shape(node)

    def onnx_shape(self, node: str, layout: Optional[Layout]) -> tuple:
        return layout.onnx_shape(self.shape(node)) if layout is not None else self.shape(node)

    def emit(self, op: ops.Op, inputs: list[str]) -> str:
        """Add an IR node for the current ONNX node's first output; its shape comes from the executor."""
        name = self.node.output[0]
        probe = [torch.zeros((1,) + self.shape(i)) for i in inputs]
        try:
            shape = tuple((op.at(1, *probe) if isinstance(op, ops.StepAffine) else probe[0] if
                           isinstance(op, ops.Spike) else ops.apply(op, probe)).shape[1:])
        except RuntimeError as e:
            self.fail(f"cannot be evaluated on inputs of shape {[self.shape(i) for i in inputs]}: {first_line(e)}")
        self.graph.add_node(name, op, shape)
        for port, src in enumerate(inputs):
            self.graph.add_edge(src, name, port)
        return name

    # the import
    def run(self) -> Graph:
        g = self.model.graph
        for init in g.initializer:
            self.values[init.name] = _Value(const=numpy_helper.to_array(init))
        for inp in g.input:
            if inp.name not in self.values:
                self._add_input(inp)
        for node in g.node:
            self.node = node
            try:
                self._import_node(node)
            except _MALFORMED as e:
                raise NeuroccError(f"{self.source}: the model cannot be imported at node {node.name or node.output[0]!r} "
                                   f"(op {node.op_type}): {first_line(e)}") from None
        self.node = None
        outputs = []
        for out in g.output:
            v = self.values.get(out.name)
            if v is None or v.blocked:
                continue
            if v.node is None:
                self.problems.append((out.name, "graph output", "it is a constant"))
            elif v.layout is not None:
                self.problems.append((out.name, "graph output", f"it is permuted by Transpose node "
                                      f"{v.layout.made_by!r}, which nothing after it folds"))
            outputs.append(v.node)
        self._trained_snn_meta()
        if self.problems:
            raise _unconvertible(self.source, self.problems)
        self.graph.outputs = tuple(dict.fromkeys(outputs))
        self.graph.remove_dead()
        return self.graph

    def _trained_snn_meta(self) -> None:
        """A model with ``neurocc`` ops is a directly trained SNN: its trained steps into ``meta["trained_snn"]``."""
        if not any(n.domain == SNN_DOMAIN for n in self.model.graph.node):
            return
        props = {p.key: p.value for p in self.model.metadata_props}
        try:
            steps = int(props["neurocc.time_steps"])
            if steps < 1:
                raise ValueError
        except (KeyError, ValueError):
            self.problems.append(("model", "metadata", "a model with neurocc.Spike/BNTT ops needs metadata_props "
                                  "neurocc.time_steps, the positive number of steps it was trained for, got "
                                  f"{props.get('neurocc.time_steps')!r}"))
            return
        meta = self.graph.meta.setdefault("trained_snn", {"gamma": {}})
        meta.update(time_steps=steps, method=props.get("neurocc.method", "unknown"))

    def _add_input(self, inp: onnx.ValueInfoProto) -> None:
        """A graph input; with ``input_perm`` the IR input is the ONNX input transposed by it, and the
        permutation is recorded for the pre-processing."""
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) < 2 or any(d is None for d in dims[1:]):
            raise UnsupportedModelError(
                f"{self.source}: input {inp.name!r} has shape {dims}; need a batch axis and fixed other axes")
        shape, layout, perm = tuple(dims[1:]), None, self.input_perm
        if perm is not None and len(perm) == len(dims):
            shape = tuple(dims[p] for p in perm[1:])
            layout = Layout(made_by=inp.name, axes=tuple(int(a) for a in np.argsort([p - 1 for p in perm[1:]])))
            self.graph.meta.setdefault("input_transpose", {})[inp.name] = list(perm)
        self.graph.add_node(inp.name, ops.Input(shape=shape), shape)
        self.graph.inputs += (inp.name,)
        self.values[inp.name] = _Value(node=inp.name, layout=layout)

    def _import_node(self, node: onnx.NodeProto) -> None:
        ins = [self.values.get(i) if i else None for i in node.input]
        try:
            if node.domain not in ("", "ai.onnx", SNN_DOMAIN):
                self._unsupported()
            if any(v is not None and v.blocked for v in ins):
                if _handler_key(node) not in _HANDLERS and node.op_type != "Shape":
                    self._unsupported()
                self._stand_in(node)
                return
            if node.op_type == "Shape" and ins[0] is not None and ins[0].node is not None:
                v = ins[0]
                shape = self.onnx_shape(v.node, v.layout)
                self.values[node.output[0]] = _Value(const=np.array((1,) + shape, dtype=np.int64))
                return
            if all(v is None or v.const is not None for v in ins) and node.op_type not in ("Dropout",):
                self._fold(node, ins)
                return
            handler = _HANDLERS.get(_handler_key(node))
            if handler is None:
                self._unsupported()
            result = handler(self)
        except _Blocked as e:
            self.problems.append((node.name or node.output[0], node.op_type, e.why))
            self._stand_in(node)
            return
        self.values[node.output[0]] = result if isinstance(result, _Value) else _Value(node=result)

    def _stand_in(self, node: onnx.NodeProto) -> None:
        """Outputs of a node that could not be imported: placeholder inputs of the shapes ONNX inferred
        (so that the nodes after it are still checked), or blocked values when the shape is unknown."""
        for out in (o for o in node.output if o):
            info = self.inferred.get(out)
            dims = [d.dim_value if d.HasField("dim_value") else None
                    for d in info.type.tensor_type.shape.dim] if info is not None and \
                info.type.tensor_type.HasField("shape") else []
            if len(dims) >= 2 and all(d for d in dims[1:]):
                shape = tuple(dims[1:])
                self.graph.add_node(out, ops.Input(shape=shape), shape)
                self.values[out] = _Value(node=out)
            else:
                self.values[out] = _Value(blocked=True)

    def _unsupported(self) -> None:
        n = self.node
        dom = f" (domain {n.domain})" if n.domain not in ("", "ai.onnx") else ""
        self.fail(f"unsupported op type {n.op_type}{dom}")

    def _fold(self, node: onnx.NodeProto, ins: list) -> None:
        feeds = {name: v.const for name, v in zip(node.input, ins) if v is not None}
        graph = onnx.helper.make_graph(
            [node], "fold",
            [onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
             for k, a in feeds.items()],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
        model = onnx.helper.make_model(graph, opset_imports=list(self.model.opset_import))
        try:
            results = onnx.reference.ReferenceEvaluator(model).run(None, feeds)
        except Exception as e:  # any failure of the reference evaluator is a property of the model
            self.fail(f"constant folding failed: {first_line(e)}")
        for name, arr in zip([o for o in node.output if o], results):
            self.values[name] = _Value(const=np.asarray(arr))


def _handler_key(node: onnx.NodeProto) -> str:
    """The registry key of a node: its op type, prefixed with its domain outside the default one."""
    return f"{node.domain}.{node.op_type}" if node.domain == SNN_DOMAIN else node.op_type


def _unconvertible(source: str, problems: list) -> UnsupportedModelError:
    """One error for every blocking node: the first in the message, all of them in ``problems``."""
    name, op, why = problems[0]
    text = f"{source}: node {name!r} (op {op}): {why}"
    if why.startswith("unsupported op type"):
        text += f"; supported: {', '.join(supported_ops())}"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more blocking node(s); `neurocc inspect {source}` lists them all)"
    return UnsupportedModelError(text, problems=problems)


# ---------------------------------------------------------------------------------------------------
# Handlers, one per op type


def _pads_2d(imp: _Importer, in_shape: tuple, kernel, strides, dilations) -> tuple:
    auto_pad = imp.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = tuple(imp.attr("pads", [0, 0, 0, 0]))
        return pads
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        imp.fail(f"auto_pad {auto_pad!r} is not supported")
    begins, ends = [], []
    for size, k, s, d in zip(in_shape[1:], kernel, strides, dilations):
        out = math.ceil(size / s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return tuple(begins + ends)


def _require_4d(imp: _Importer, src: str) -> None:
    if len(imp.shape(src)) != 3:
        imp.fail(f"only 2-D spatial inputs (N x C x H x W) are supported, got shape {imp.shape(src)}")


@onnx_handler("Conv")
def _conv(imp: _Importer):
    x = imp.data_input(0)
    _require_4d(imp, x)
    w = imp.const_input(1, "weight")
    b = imp.const_input(2, "bias", optional=True)
    kernel = tuple(imp.attr("kernel_shape", w.shape[2:]))
    if w.ndim != 4 or kernel != tuple(w.shape[2:]):
        imp.fail(f"kernel_shape {list(kernel)} does not match the weight's shape {list(w.shape)}")
    strides = tuple(imp.attr("strides", [1, 1]))
    dilations = tuple(imp.attr("dilations", [1, 1]))
    pads = _pads_2d(imp, imp.shape(x), kernel, strides, dilations)
    return imp.emit(ops.Conv(weight=w, bias=b, strides=strides, pads=pads, dilations=dilations,
                             groups=int(imp.attr("group", 1))), [x])


@onnx_handler("Gemm")
def _gemm(imp: _Importer):
    """y = alpha * x @ B (transposed with transB) + beta * C; a feature order on x goes into B's rows."""
    x, layout = imp.layout_input(0, folds=("features",))
    if imp.attr("transA", 0):
        imp.fail("transA=1 is not supported")
    w = imp.const_input(1, "B")
    w = absorb_into_columns((w if imp.attr("transB", 0) else w.T) * imp.attr("alpha", 1.0), layout)
    c = imp.const_input(2, "C", optional=True)
    if c is not None:
        c = np.asarray(c, np.float32) * imp.attr("beta", 1.0)
        if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
            imp.fail(f"bias C of shape {c.shape} is not a per-output vector")
    bias = None if c is None else np.broadcast_to(c.reshape(-1), (w.shape[0],))
    return imp.emit(ops.Gemm(weight=w, bias=bias), [x])


@onnx_handler("MatMul")
def _matmul(imp: _Importer):
    x, layout = imp.layout_input(0, folds=("features",))
    w = imp.const_input(1, "B")
    if len(imp.shape(x)) != 1 or w.ndim != 2:
        imp.fail(f"only (N x K) @ (K x M) with a constant right side is supported (input shape {imp.shape(x)})")
    return imp.emit(ops.Gemm(weight=absorb_into_columns(w.T, layout)), [x])


@onnx_handler("BatchNormalization")
def _batchnorm(imp: _Importer):
    if imp.attr("training_mode", 0) or len([o for o in imp.node.output if o]) > 1:
        imp.fail("training-mode batch normalisation is not supported")
    x, layout = imp.layout_input(0)
    bn = ops.BatchNorm(scale=imp.const_input(1, "scale"), bias=imp.const_input(2, "B"),
                       mean=imp.const_input(3, "mean"), var=imp.const_input(4, "var"),
                       eps=float(imp.attr("epsilon", 1e-5)))
    if layout is None:
        return imp.emit(bn, [x])
    affine = bn.as_affine(len(imp.shape(x)))      # per ONNX channel: moved to the IR axis it names
    op = ops.Affine(scale=layout.to_ir(affine.scale, imp.shape(x)), shift=layout.to_ir(affine.shift, imp.shape(x)))
    return _Value(node=imp.emit(op, [x]), layout=layout)


@onnx_handler("Relu")
def _relu(imp: _Importer):
    x, layout = imp.layout_input(0)
    return _Value(node=imp.emit(ops.Relu(), [x]), layout=layout)


@onnx_handler(f"{SNN_DOMAIN}.Spike")
def _spike(imp: _Importer):
    """A layer of spiking neurons of a directly trained SNN (``ops.Spike``)."""
    x = imp.data_input(0)
    try:
        op = ops.Spike(threshold=float(imp.attr("threshold", 1.0)), leak=float(imp.attr("leak", 1.0)),
                       reset=imp.attr("reset", "subtract"), compare=imp.attr("compare", ">="),
                       v0=float(imp.attr("v0", 0.0)))
    except ValueError as e:
        imp.fail(str(e))
    return imp.emit(op, [x])


@onnx_handler(f"{SNN_DOMAIN}.BNTT")
def _bntt(imp: _Importer):
    """Batch norm through time (bntt eq. 9, no beta): y = gamma_t (x - mu_t) / sqrt(sigma_t^2 + eps), one row per
    step, as ``ops.StepAffine(scale = gamma_t / sqrt(sigma_t^2 + eps), shift = -mu_t)``."""
    x = imp.data_input(0)
    gamma, mean, var = (np.asarray(imp.const_input(i, what), np.float64)
                        for i, what in ((1, "gamma"), (2, "mean"), (3, "var")))
    channels = imp.shape(x)[0]
    if not gamma.shape == mean.shape == var.shape or gamma.ndim != 2 or gamma.shape[1] != channels:
        imp.fail(f"gamma, mean and var must all be (steps, {channels}), got {gamma.shape}, {mean.shape}, {var.shape}")
    eps = float(imp.attr("epsilon", 1e-5))
    if np.any(var + eps <= 0):
        imp.fail("var + epsilon must be positive")
    name = imp.emit(ops.StepAffine(scale=gamma / np.sqrt(var + eps), shift=-mean), [x])
    imp.graph.meta.setdefault("trained_snn", {"gamma": {}})["gamma"][name] = gamma.mean(axis=1).tolist()
    return name


@onnx_handler("Clip")
def _clip(imp: _Importer):
    x, layout = imp.layout_input(0)
    if imp.opset < 11:
        lo, hi = imp.attr("min", None), imp.attr("max", None)
    else:
        lo = imp.const_input(1, "min", optional=True)
        hi = imp.const_input(2, "max", optional=True)
    if lo is None or float(lo) != 0.0:
        imp.fail(f"only Clip with min 0 (a capped ReLU) is supported, got min {lo}")
    cap = None if hi is None or not np.isfinite(float(hi)) else float(hi)
    if cap is not None and cap <= 0:
        imp.fail(f"Clip(0, {cap}) is constant zero")
    return _Value(node=imp.emit(ops.Relu(cap=cap), [x]), layout=layout)


def _const_operand(imp: _Importer, const: np.ndarray, x: str, layout: Optional[Layout]) -> np.ndarray:
    """A constant operand of an elementwise op, broadcast against the non-batch axes of ``x``'s ONNX tensor,
    as a constant that broadcasts against ``x``'s IR tensor."""
    shape = imp.onnx_shape(x, layout)
    rank = len(shape) + 1
    c = np.asarray(const, dtype=np.float32)
    if c.ndim == rank:
        if c.shape[0] != 1:
            imp.fail(f"a constant operand of shape {c.shape} would broadcast over the batch axis")
        c = c[0]
    elif c.ndim > rank:
        imp.fail(f"a constant operand of shape {c.shape} does not broadcast against {shape}")
    try:
        np.broadcast_shapes(c.shape, shape)
    except ValueError:
        imp.fail(f"a constant of shape {c.shape} does not broadcast against {shape}")
    return c if layout is None else layout.to_ir(c, imp.shape(x))


@onnx_handler("Add", "Sub", "Mul", "Div", "Sum")
def _elementwise(imp: _Importer):
    t = imp.node.op_type
    names = list(imp.node.input)
    consts = [imp.values[n].const is not None for n in names]
    if not any(consts):
        if t not in ("Add", "Sum"):
            imp.fail(f"{t} of two computed tensors is not linear; only Add is supported")
        srcs, layout = _same_layout_inputs(imp)
        if len({imp.shape(s) for s in srcs}) != 1:
            imp.fail(f"Add of tensors with shapes {[imp.shape(s) for s in srcs]} (broadcasting) is not supported")
        return _Value(node=imp.emit(ops.Add(), srcs), layout=layout)
    if len(names) != 2:
        imp.fail(f"{t} with {len(names)} inputs including constants is not supported")
    xi = 0 if not consts[0] else 1
    x, layout = imp.layout_input(xi)
    c = _const_operand(imp, imp.values[names[1 - xi]].const, x, layout)
    if t == "Add" or t == "Sum":
        op = ops.Affine(shift=c)
    elif t == "Mul":
        op = ops.Affine(scale=c)
    elif t == "Sub":
        op = ops.Affine(shift=-c) if xi == 0 else ops.Affine(scale=-np.ones_like(c), shift=c)
    else:  # Div
        if xi == 1:
            imp.fail("division of a constant by a computed tensor is not linear")
        op = ops.Affine(scale=1.0 / c)
    return _Value(node=imp.emit(op, [x]), layout=layout)


def _same_layout_inputs(imp: _Importer) -> tuple[list, Optional[Layout]]:
    """The IR nodes of every input of a multi-input op and their common layout (refused if they differ)."""
    inputs = [imp.layout_input(i) for i in range(len(imp.node.input))]
    layouts = [layout for _, layout in inputs]
    first = layouts[0]
    for layout in layouts[1:]:
        if not same_arrangement(layout, first):
            named = ", ".join(repr(lay.made_by) for lay in layouts if lay is not None)
            imp.fail(f"its inputs are laid out differently (transposes {named} do not agree)")
    return [node for node, _ in inputs], first


@onnx_handler("Concat")
def _concat(imp: _Importer):
    srcs, layout = _same_layout_inputs(imp)
    axis = _ir_axis(imp, int(imp.attr("axis")), srcs[0], layout)
    if axis != 0 or (layout is not None and layout.features is not None):
        imp.fail(f"only concatenation along the channel axis is supported, got axis {imp.attr('axis')}")
    return _Value(node=imp.emit(ops.Concat(axis=0), srcs), layout=layout)


def _ir_axis(imp: _Importer, onnx_axis: int, x: str, layout: Optional[Layout]) -> int:
    """The IR axis (batch excluded; -1 for the batch axis) that an ONNX axis of ``x`` names."""
    rank = len(imp.shape(x)) + 1
    if not -rank <= onnx_axis < rank:
        imp.fail(f"axis {onnx_axis} is out of range for a tensor of rank {rank}")
    onnx_axis %= rank
    if onnx_axis == 0:
        return -1
    return layout.ir_axis(onnx_axis - 1) if layout is not None and layout.axes is not None else onnx_axis - 1


def _pool_attrs(imp: _Importer, x: str):
    kernel = tuple(imp.attr("kernel_shape"))
    if len(kernel) != 2:
        imp.fail(f"only 2-D pooling is supported, got kernel {kernel}")
    strides = tuple(imp.attr("strides", [1, 1]))
    dilations = tuple(imp.attr("dilations", [1, 1]))
    return kernel, strides, dilations, _pads_2d(imp, imp.shape(x), kernel, strides, dilations)


@onnx_handler("AveragePool")
def _avgpool(imp: _Importer):
    x = imp.data_input(0)
    _require_4d(imp, x)
    kernel, strides, dilations, pads = _pool_attrs(imp, x)
    if dilations != (1, 1):
        imp.fail("dilated average pooling is not supported")
    return imp.emit(ops.AvgPool(kernel=kernel, strides=strides, pads=pads,
                                count_include_pad=bool(imp.attr("count_include_pad", 0)),
                                ceil_mode=bool(imp.attr("ceil_mode", 0))), [x])


@onnx_handler("MaxPool")
def _maxpool(imp: _Importer):
    if len([o for o in imp.node.output if o]) > 1:
        imp.fail("the Indices output of MaxPool is not supported")
    x = imp.data_input(0)
    _require_4d(imp, x)
    kernel, strides, dilations, pads = _pool_attrs(imp, x)
    return imp.emit(ops.MaxPool(kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                                ceil_mode=bool(imp.attr("ceil_mode", 0))), [x])


@onnx_handler("GlobalAveragePool")
def _gap(imp: _Importer):
    x = imp.data_input(0)
    _require_4d(imp, x)
    return imp.emit(ops.GlobalAvgPool(), [x])


@onnx_handler("ReduceMean")
def _reduce_mean(imp: _Importer):
    """The mean over H and W (how torch's dynamo exporter writes AdaptiveAvgPool2d(1)) is a global pooling."""
    x, layout = imp.layout_input(0)
    _require_4d(imp, x)
    axes = imp.attr("axes") if imp.opset < 18 else imp.const_input(1, "axes", optional=True)
    if axes is None or layout is not None and layout.features is not None or \
            sorted(_ir_axis(imp, int(a), x, layout) for a in axes) != [1, 2]:
        imp.fail(f"only a mean over the spatial axes is supported, got axes {None if axes is None else list(axes)}")
    pooled = imp.emit(ops.GlobalAvgPool(), [x])
    if imp.attr("keepdims", 1):
        return _Value(node=pooled, layout=layout)
    flat = imp.graph.add_node(pooled + ":flatten", ops.Flatten(), (imp.shape(pooled)[0],))
    imp.graph.add_edge(pooled, flat, 0)
    return flat    # the channels are the only axis left: in order whatever the layout


def _to_features(imp: _Importer, x: str, layout: Optional[Layout]) -> _Value:
    """Flatten ``x`` to N x F in the ONNX tensor's element order (a feature order over the IR's)."""
    if len(imp.shape(x)) == 1:
        return _Value(node=x, layout=layout)
    return _Value(node=imp.emit(ops.Flatten(), [x]), layout=flattened(layout, imp.shape(x)))


@onnx_handler("Flatten")
def _flatten(imp: _Importer):
    if int(imp.attr("axis", 1)) != 1:
        imp.fail("only Flatten with axis=1 is supported")
    return _to_features(imp, *imp.layout_input(0))


@onnx_handler("Reshape")
def _reshape(imp: _Importer):
    x, layout = imp.layout_input(0)
    target = [int(d) for d in imp.const_input(1, "shape")]
    size = int(np.prod(imp.shape(x)))
    if len(target) != 2 or target.count(-1) > 1 or target[1] not in (size, -1) or \
            (target[1] == -1 and target[0] not in (0, 1)):
        imp.fail(f"only a reshape to 2-D (N x {size}) is supported, got target {target} for input "
                 f"{imp.onnx_shape(x, layout)}")
    return _to_features(imp, x, layout)


@onnx_handler("Squeeze")
def _squeeze(imp: _Importer):
    """Removing axes of size 1 down to N x F (Keras' GlobalAveragePooling2D after tf2onnx) is a flatten."""
    x, layout = imp.layout_input(0)
    shape = imp.onnx_shape(x, layout)
    axes = imp.attr("axes") if imp.opset < 13 else imp.const_input(1, "axes", optional=True)
    if axes is None:
        axes = [i + 1 for i, d in enumerate(shape) if d == 1]
    kept = [d for i, d in enumerate(shape) if i + 1 not in {int(a) % (len(shape) + 1) for a in axes}]
    if len(kept) != 1 or 0 in {int(a) % (len(shape) + 1) for a in axes}:
        imp.fail(f"only a squeeze to 2-D (N x F) is supported, got axes {list(axes)} of input {shape}")
    return _to_features(imp, x, layout)


@onnx_handler("Pad")
def _pad(imp: _Importer):
    x, layout = imp.layout_input(0, folds=("axes",))
    if imp.attr("mode", "constant") != "constant":
        imp.fail(f"only constant (zero) padding is supported, got mode {imp.attr('mode')!r}")
    rank = len(imp.shape(x)) + 1
    if imp.opset < 11:
        pads, value = list(imp.attr("pads")), float(imp.attr("value", 0.0))
        axes = list(range(rank))
    else:
        pads = [int(p) for p in imp.const_input(1, "pads")]
        v = imp.const_input(2, "constant_value", optional=True)
        value = 0.0 if v is None or v.size == 0 else float(v.reshape(-1)[0])
        ax = imp.const_input(3, "axes", optional=True)
        axes = list(range(rank)) if ax is None else [int(a) % rank for a in ax]
    if value != 0.0:
        imp.fail(f"only zero padding is supported, got value {value}")
    n = len(axes)
    per_axis = {_ir_axis(imp, a, x, layout): (int(pads[i]), int(pads[i + n])) for i, a in enumerate(axes)}
    if per_axis.get(-1, (0, 0)) != (0, 0) or any(b < 0 or e < 0 for b, e in per_axis.values()):
        imp.fail("padding the batch axis or negative pads are not supported")
    return _Value(node=imp.emit(ops.Pad(pads=tuple(per_axis.get(a, (0, 0)) for a in range(rank - 1))), [x]),
                  layout=layout)


@onnx_handler("Slice")
def _slice(imp: _Importer):
    x, layout = imp.layout_input(0, folds=("axes",))
    if imp.opset < 10:
        starts, ends = imp.attr("starts"), imp.attr("ends")
        axes = imp.attr("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = imp.const_input(1, "starts")
        ends = imp.const_input(2, "ends")
        a = imp.const_input(3, "axes", optional=True)
        s = imp.const_input(4, "steps", optional=True)
        axes = list(range(len(starts))) if a is None else a
        steps = [1] * len(starts) if s is None else s
    slices = []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        axis, start, end, step = _ir_axis(imp, int(axis), x, layout), int(start), int(end), int(step)
        if step <= 0:
            imp.fail(f"only positive slice steps are supported, got {step}")
        if axis == -1:
            if (start, step) != (0, 1) or end < 2 ** 31 - 1:
                imp.fail("slicing the batch axis is not supported")
            continue
        size = imp.shape(x)[axis]
        start, end, _ = slice(start, min(end, size), step).indices(size)
        slices.append((axis, start, end, step))
    return _Value(node=imp.emit(ops.Slice(slices=tuple(slices)), [x]), layout=layout)


def _transpose_perm(node: onnx.NodeProto, rank: int) -> tuple:
    """A Transpose node's ``perm`` (default: the axes reversed)."""
    for a in node.attribute:
        if a.name == "perm":
            return tuple(int(p) for p in a.ints)
    return tuple(reversed(range(rank)))


@onnx_handler("Transpose")
def _transpose(imp: _Importer):
    """A layout permutation: no IR node, the value's layout changes (``frontend.layout``)."""
    x, layout = imp.layout_input(0)
    rank = len(imp.shape(x)) + 1
    perm = _transpose_perm(imp.node, rank)
    if sorted(perm) != list(range(rank)):
        imp.fail(f"perm {list(perm)} is not a permutation of the {rank} axes")
    if perm[0] != 0:
        imp.fail(f"perm {list(perm)} moves the batch axis")
    if layout is not None and layout.features is not None:       # N x F: the only permutation is the identity
        return _Value(node=x, layout=layout)
    return _Value(node=x, layout=transposed(layout, perm, imp.node.name or imp.node.output[0], rank - 1))


@onnx_handler("Dropout", "Identity")
def _passthrough(imp: _Importer):
    if imp.node.op_type == "Dropout" and len([o for o in imp.node.output if o]) > 1:
        if any(o for o in imp.node.output[1:] if _used(imp, o)):
            imp.fail("the mask output of Dropout is not supported")
    return imp.values[imp.node.input[0]]


def _used(imp: _Importer, value: str) -> bool:
    g = imp.model.graph
    return any(value in n.input for n in g.node) or any(value == o.name for o in g.output)


@onnx_handler("Softmax", "LogSoftmax")
def _softmax(imp: _Importer):
    src = imp.data_input(0)
    out = imp.node.output[0]
    if not any(o.name == out for o in imp.model.graph.output):
        imp.fail("Softmax/LogSoftmax is only supported at a graph output (it is dropped there)")
    imp.output_only[out] = imp.node.name or out
    note = f"dropped {imp.node.op_type} node {imp.node.name or out!r} at an output (argmax is unchanged)"
    imp.graph.meta["notes"].append(note)
    log.info(note)
    return _Value(node=src)


# ---------------------------------------------------------------------------------------------------


_INPUT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
MAX_INPUT_ELEMENTS = 2 ** 28          # per sample


def _check_structure(model: onnx.ModelProto, path: Path) -> None:
    """What the checker does not refuse but the import cannot mean: the opset's range, the inputs'
    types and shapes, outputs, and non-finite weights (named, with the nodes that read them)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise NeuroccError(f"{path}: opset {opset} is not supported (need {MIN_OPSET}..{onnx.defs.onnx_opset_version()}); "
                           "convert it with onnx.version_converter")
    if not model.graph.output:
        raise NeuroccError(f"{path}: the model has no outputs")
    initializers = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        t = inp.type.tensor_type
        if t.elem_type not in _INPUT_TYPES:
            name = onnx.TensorProto.DataType.Name(t.elem_type) if t.elem_type in onnx.TensorProto.DataType.values() \
                else t.elem_type
            raise UnsupportedModelError(f"{path}: input {inp.name!r} has element type {name}; need a float tensor")
        dims = [d.dim_value for d in t.shape.dim[1:] if d.HasField("dim_value")]
        if any(d < 1 for d in dims) or math.prod(dims) > MAX_INPUT_ELEMENTS:
            raise UnsupportedModelError(f"{path}: input {inp.name!r} has dims {[d.dim_value for d in t.shape.dim]}; "
                                        f"each must be at least 1 and a sample at most {MAX_INPUT_ELEMENTS:,} values")
    for init in model.graph.initializer:
        try:
            arr = numpy_helper.to_array(init)
        except Exception as e:               # its declared dims, type and data disagree
            raise NeuroccError(f"{path}: initializer {init.name!r} cannot be read: {first_line(e)}") from None
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            users = [n.name or n.output[0] for n in model.graph.node if init.name in n.input]
            raise UnsupportedModelError(f"{path}: initializer {init.name!r} (read by {', '.join(users) or 'no node'}) "
                                        "has non-finite values (NaN or Inf)")


def load_onnx(path: str | Path) -> tuple[Graph, bytes]:
    """Load, check and import an ONNX file; return the ANN-level graph and the file's bytes.

    SIGINT is held while onnx's C++ code runs (``interrupts_held``): an interrupt raised inside its Python
    callbacks would abort the process.

    Every failure that comes from the file (unreadable, not ONNX, invalid, external data that is missing
    or outside the model's folder, shapes the checker or the import cannot agree with) is a
    ``NeuroccError``: the model is the input being validated here.
    """
    path = Path(path)
    data = read_model_bytes(path)
    with interrupts_held():
        return _load(path, data)


def _load(path: Path, data: bytes) -> tuple[Graph, bytes]:
    from neurocc.ir import VerificationError, verify

    try:
        model = onnx.load(str(path))     # also loads external tensor data stored beside the file
    except Exception as e:               # any failure to parse the file, or its external data, is the file's
        raise NeuroccError(f"{path}: not a readable ONNX file (truncated, corrupt, or bad external data?): "
                           f"{first_line(e)}") from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise NeuroccError(f"{path}: not a valid ONNX model: {first_line(e)}") from None
    _check_structure(model, path)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # shape inference failures are properties of the model file
        raise NeuroccError(f"{path}: ONNX shape inference failed: {first_line(e)}") from None
    graph = _import(model, path.name)
    try:
        verify(graph)
    except VerificationError as e:
        raise NeuroccError(f"{path}: the model cannot be imported: {first_line(e)}") from None
    return graph, data


def _import(model: onnx.ModelProto, source: str) -> Graph:
    """Import with the input as declared; if that fails, with the input transposed as one of the model's
    own Transposes would (a TensorFlow-origin model's NHWC -> NCHW, possibly after elementwise
    pre-processing ops): the first layout that imports wins, else the as-declared import's errors stand."""
    try:
        return _Importer(model, source).run()
    except UnsupportedModelError as first:
        for perm in dict.fromkeys(_transpose_perm(n, 0) for n in model.graph.node if n.op_type == "Transpose"):
            if len(perm) < 3 or perm[0] != 0 or sorted(perm) != list(range(len(perm))):
                continue
            try:
                return _Importer(model, source, input_perm=perm).run()
            except UnsupportedModelError:
                continue
        raise first


