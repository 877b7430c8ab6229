"""An ANN-level neurocc graph as a plain PyTorch ``fx.GraphModule``, for the peer converters.

SpikingJelly's and sinabs's converters take a ``torch.nn.Module`` whose ReLUs are ``nn.ReLU`` modules and
whose weights live in ``nn.Conv2d`` / ``nn.Linear`` modules. The shared models are ONNX files, so the
benchmark builds that module from the graph neurocc imported (after canonicalisation and BN folding):
every peer then converts exactly the network neurocc converts. Weighted layers, ReLUs and pooling become
modules, registered in graph order (sinabs's normalisation walks them by name); additions, concatenation,
padding, slicing and per-channel affine maps become function nodes, except zero channels padded onto a
feature map (ResNet's option-A shortcut), which become a fixed 1x1 convolution: SpikingJelly's
multi-step adapter refuses ``F.pad`` ("step-mode backend does not support function node pad").
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from neurocc.ir import Graph, ops


def _symmetric(pads: tuple) -> tuple:
    top, left, bottom, right = pads
    if (top, left) != (bottom, right):
        raise NotImplementedError(f"asymmetric padding {pads} has no torch module")
    return top, left


def _channel_placement(op: ops.Pad, channels: int) -> nn.Module:
    """Zero channels before and after a (C, H, W) map, as a 1x1 convolution with a 0/1 weight."""
    before, after = op.pads[0]
    m = nn.Conv2d(channels, before + channels + after, 1, bias=False)
    with torch.no_grad():
        m.weight.zero_()
        m.weight[before:before + channels, :, 0, 0] = torch.eye(channels)
    return m


def _module(op: ops.Op, in_shape: tuple) -> nn.Module:
    """The torch module for an op that has one, else None."""
    if isinstance(op, ops.Pad) and len(in_shape) == 3 and all(p == (0, 0) for p in op.pads[1:]):
        return _channel_placement(op, in_shape[0])
    if isinstance(op, ops.Conv):
        out_ch, in_per_group, kh, kw = op.weight.shape
        m = nn.Conv2d(in_per_group * op.groups, out_ch, (kh, kw), op.strides, _symmetric(op.pads), op.dilations,
                      op.groups, bias=op.bias is not None)
    elif isinstance(op, ops.Gemm):
        m = nn.Linear(op.weight.shape[1], op.weight.shape[0], bias=op.bias is not None)
    elif isinstance(op, ops.Relu):
        return nn.ReLU() if op.cap is None else nn.Hardtanh(0.0, op.cap)
    elif isinstance(op, ops.AvgPool):
        return nn.AvgPool2d(op.kernel, op.strides, _symmetric(op.pads), op.ceil_mode, op.count_include_pad)
    elif isinstance(op, ops.MaxPool):
        return nn.MaxPool2d(op.kernel, op.strides, _symmetric(op.pads), op.dilations, ceil_mode=op.ceil_mode)
    elif isinstance(op, ops.GlobalAvgPool):
        return nn.AdaptiveAvgPool2d(1)
    elif isinstance(op, ops.Flatten):
        return nn.Flatten()
    else:
        return None
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(op.weight.copy()))
        if op.bias is not None:
            m.bias.copy_(torch.from_numpy(op.bias.copy()))
    return m


def to_torch(ann: Graph) -> fx.GraphModule:
    """The ANN graph (one input, one output) as an fx.GraphModule computing the same function."""
    root = nn.Module()
    graph = fx.Graph()
    values = {}
    for i, name in enumerate(ann.topo_order()):
        op = ann.payload(name)
        args = [values[s] for s in ann.inputs_of(name)]
        if isinstance(op, ops.Input):
            values[name] = graph.placeholder("x")
            continue
        module = _module(op, ann.shape(ann.inputs_of(name)[0]) if ann.inputs_of(name) else ())
        if module is not None:
            target = f"m{i:03d}_{type(op).__name__.lower()}"
            root.add_module(target, module)
            values[name] = graph.call_module(target, tuple(args))
        elif isinstance(op, ops.Add):
            out = args[0]
            for a in args[1:]:
                out = graph.call_function(operator.add, (out, a))
            values[name] = out
        elif isinstance(op, ops.Concat):
            values[name] = graph.call_function(torch.cat, (tuple(args), 1))
        elif isinstance(op, ops.Pad):
            flat = tuple(v for begin_end in reversed(op.pads) for v in begin_end)
            values[name] = graph.call_function(F.pad, (args[0], flat))
        elif isinstance(op, ops.Slice):
            index = [slice(None)] * (len(ann.shape(ann.inputs_of(name)[0])) + 1)
            for axis, start, stop, step in op.slices:
                index[axis + 1] = slice(start, stop, step)
            values[name] = graph.call_function(operator.getitem, (args[0], tuple(index)))
        elif isinstance(op, ops.Affine):
            out = args[0]
            for field, fn in (("scale", operator.mul), ("shift", operator.add)):
                if getattr(op, field) is not None:
                    buffer = f"b{i:03d}_{field}"
                    root.register_buffer(buffer, torch.from_numpy(getattr(op, field).copy()))
                    out = graph.call_function(fn, (out, graph.get_attr(buffer)))
            values[name] = out
        else:
            raise NotImplementedError(f"{type(op).__name__} node {name!r} has no torch equivalent here")
    graph.output(values[ann.outputs[0]])
    return fx.GraphModule(root, graph).eval()
