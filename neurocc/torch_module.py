"""neurocc graphs as PyTorch modules: an ANN-level graph for the peer converters (``ann_module``), an SNN-level
graph stepped by snnTorch-style neuron layers for NeuroBench's harness (``snn_module``).

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

import dataclasses
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from neurocc.ir import Graph, ops
from neurocc.ir.snn import Population


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


def ann_module(ann: Graph) -> fx.GraphModule:
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


# ----------------------------------------------------------------------------------------------- SNN


class _IrOp(nn.Module):
    """One constant-free IR op of a projection chain, computed by ``ir.ops.apply`` (the simulator's own code);
    its arrays (an Affine's scale and shift) are buffers, so that a module footprint counts them."""

    def __init__(self, op: ops.Op):
        super().__init__()
        self.op = op
        if isinstance(op, ops.Affine):
            for field in ("scale", "shift"):
                if getattr(op, field) is not None:
                    self.register_buffer(field, torch.from_numpy(np.array(getattr(op, field), np.float32)))

    def forward(self, x):
        return ops.apply(self.op, [x])


class _Gate(nn.Module):
    """The max-pool gate (weighted-spikes §4.5): out(t) = maxpool(C(t)) - maxpool(C(t-1)), C the accumulated input."""

    def __init__(self, op: ops.MaxPool):
        super().__init__()
        self.op = op
        self.reset_state()

    def reset_state(self):
        self.acc, self.pooled = None, None

    def forward(self, x):
        self.acc = x if self.acc is None else self.acc + x
        pooled = ops.apply(self.op, [self.acc])
        out = pooled if self.pooled is None else pooled - self.pooled
        self.pooled = pooled
        return out


class _Delay(nn.Module):
    """A projection's delay: the source's values ``delay`` steps ago (zeros before the first step)."""

    def __init__(self, delay: int):
        super().__init__()
        self.delay = delay
        self.reset_state()

    def reset_state(self):
        self.line = []

    def forward(self, x):
        self.line.append(x)
        if len(self.line) <= self.delay:
            return torch.zeros_like(x)
        return self.line.pop(0)


def _op_module(op: ops.Op) -> nn.Module:
    """A projection op as a module: Conv and Gemm as torch connection layers (what NeuroBench counts; a
    convolution padded unevenly as ZeroPad2d then the layer, whose Dense count then includes the padding), the
    max-pool as the gate, anything else as the IR op itself."""
    if isinstance(op, ops.Conv):
        top, left, bottom, right = op.pads
        if (top, left) == (bottom, right):
            return _module(op, ())
        return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)),
                             _module(dataclasses.replace(op, pads=(0, 0, 0, 0)), ()))
    if isinstance(op, ops.Gemm):
        return _module(op, ())
    if isinstance(op, ops.MaxPool):
        return _Gate(op)
    return _IrOp(op)


def _neuron_layer(node, name: str) -> nn.Module:
    """A spiking population as an snnTorch neuron layer (a ``snntorch.SpikingNeuron``, which is what NeuroBench's
    hooks take for a neuron layer) whose step is the population's own neuron model (``ir.neurons``)."""
    import snntorch

    class PopulationNeurons(snntorch.SpikingNeuron):
        """``node.neuron.step`` each call; ``mem`` is the potential after the step, a new tensor per step."""

        def __init__(self):
            reset = node.neuron.reset if hasattr(node.neuron, "reset") else "zero"
            super().__init__(threshold=float(node.neuron.threshold), reset_mechanism=reset)
            self.model = node.neuron
            self.register_buffer("bias", torch.from_numpy(np.array(node.bias, np.float32)))
            self.register_buffer("v0", torch.tensor(float(node.neuron.v0), dtype=torch.float32))
            self.reset_state()

        def reset_state(self):
            self.state, self.t, self.mem = None, 0, torch.zeros(0)

        def forward(self, drive):
            if self.state is None:
                self.state = self.model.init_state(self.bias, drive.shape[0], drive.dtype)
            self.t += 1
            spikes = self.model.step(self.state, drive, self.t).to(drive.dtype)
            self.mem = self.state["v"].clone()
            return spikes, self.mem

    layer = PopulationNeurons()
    layer.population = name
    return layer


class _Accumulator(nn.Module):
    """An accumulating read-out: V(t) = V(t-1) + I(t) + bias, returned each step (not a neuron layer)."""

    def __init__(self, node):
        super().__init__()
        self.register_buffer("bias", torch.from_numpy(np.array(node.bias, np.float32)))
        self.register_buffer("threshold", torch.tensor(float(node.neuron.threshold), dtype=torch.float32))
        self.register_buffer("v0", torch.tensor(float(node.neuron.v0), dtype=torch.float32))
        self.reset_state()

    def reset_state(self):
        self.v = None

    def forward(self, drive):
        if self.v is None:
            self.v = torch.full_like(drive, float(self.v0 * self.threshold))
        self.v = self.v + drive + self.bias
        return self.v


class SnnModule(nn.Module):
    """A float SNN-level graph (one input, one output) stepped one time step per call, as snnTorch networks are:
    ``forward(x)`` takes the step's model input (pre-processed, as ``neurocc run`` feeds it) and returns
    (output, output): the read-out's potential, or its spikes for a spiking read-out. ``reset()`` starts a run.
    Child modules in graph order: per projection its ops (``proj_<src>__<dst>_<k>``), per population its
    neuron layer (``pop_<name>``)."""

    def __init__(self, snn: Graph):
        super().__init__()
        if snn.meta.get("mode") == "integer":
            raise NotImplementedError("snn_module rebuilds float graphs; an integer graph's shifts and input "
                                      "quantisation are the simulator's")
        self.graph = snn
        self.order = snn.topo_order()
        self.names = {}
        for name in self.order:
            node = snn.payload(name)
            if not isinstance(node, Population):
                continue
            for src, _, k, data in snn.nx.in_edges(name, keys=True, data=True):
                proj = data["proj"]
                chain = [_op_module(op) for op in proj.ops]
                if proj.delay:
                    chain.insert(0, _Delay(proj.delay))
                key = f"proj_{_safe(src)}__{_safe(name)}_{k}"
                self.add_module(key, nn.Sequential(*chain))
                self.names[(src, name, k)] = key
            key = f"pop_{_safe(name)}"
            self.add_module(key, _neuron_layer(node, name) if node.readout == "spike" else _Accumulator(node))
            self.names[name] = key
        self.reset()

    def reset(self):
        """Zero every state (potentials, delay lines, gates) and the step counter."""
        self.t = 0
        for module in self.modules():
            if hasattr(module, "reset_state"):
                module.reset_state()

    def forward(self, x):
        self.t += 1
        g = self.graph
        values = {}
        for name in self.order:
            node = g.payload(name)
            if not isinstance(node, Population):
                ids = torch.arange(x.shape[0])
                values[name] = node.encode(x, ids, torch.tensor([self.t]), False)[0]
                continue
            drive = 0
            for src, _, k, _ in g.nx.in_edges(name, keys=True, data=True):
                drive = drive + getattr(self, self.names[(src, name, k)])(values[src])
            if isinstance(drive, int):
                drive = torch.zeros((x.shape[0],) + tuple(node.shape), dtype=x.dtype)
            out = getattr(self, self.names[name])(drive)
            values[name] = out[0] if isinstance(out, tuple) else out
        y = values[g.outputs[0]]
        return y, y


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def snn_module(snn: Graph) -> SnnModule:
    """The float SNN-level graph as a torch module that steps it (see ``SnnModule``), for harnesses that drive
    snnTorch networks, such as NeuroBench's ``SNNTorchModel``."""
    module = SnnModule(snn).eval()
    module.requires_grad_(False)
    return module
