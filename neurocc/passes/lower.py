"""lower_to_snn: ANN-level graph -> SNN-level graph of populations and projections.

* Every ReLU (and Clip(0, max)) becomes a population of IF neurons; every graph input an
  ``InputSource`` with the compile options' input coding; every graph output a non-spiking accumulator (or a spiking population with
  ``readout="spike"``).
* A population's input is the ANN pre-activation, an affine function of its source populations:
      pre = sum over paths p from a source s_p of  chain_p(s_p)  +  f(0)
  where chain_p is the linear part of the ops along the path and f(0) (the pre-activation with all
  sources at zero) is the population's bias. So conv/linear layers, average and global-average
  pooling, flatten, zero padding, slicing and per-channel affine maps become projections;
  ``Concat`` becomes a channel placement (``Pad`` on the channel axis) in each branch; a residual
  ``Add`` followed by ReLU becomes one population fed by both paths (weighted-spikes Fig. 6).
* ``MaxPool`` on a population (or the input, or a channel concatenation of them) becomes the gated
  max of weighted-spikes §4.5, as the first op of the projection chains through it.

The populations come out un-normalised (threshold 1, scale 1): ``normalize`` sets the scales.

A directly trained SNN's ``Spike`` layer becomes a population of its own neurons (threshold, leak, reset as
trained; ``normalize`` does not run on such graphs), and a ``StepAffine`` (batch norm through time) right before
it becomes the population's per-step ``gain`` and ``shift`` (``ir.snn``). A ``Spike`` graph output is read out
as its spike counts.
"""
from __future__ import annotations

import copy
from functools import lru_cache

import torch

from neurocc.errors import UnsupportedModelError
from neurocc.ir import Graph, ops
from neurocc.ir.coding import coding_named
from neurocc.ir.neurons import IF
from neurocc.ir.snn import InputSource, Population, Projection


def _is_channel_placement(op: ops.Op) -> bool:
    return isinstance(op, ops.Pad) and all(p == (0, 0) for p in op.pads[1:])


def _is_source(g: Graph, name: str) -> bool:
    return isinstance(g.payload(name), (ops.Input, ops.Relu, ops.Spike))


def _schedule(g: Graph, spike: str) -> tuple:
    """(pre-activation node, gain, shift) of ``Spike`` node ``spike``: a ``StepAffine`` before it is its schedule,
    each table (S, C) shaped (S, C, 1, ...) to broadcast over the population."""
    (pre,) = g.inputs_of(spike)
    op = g.payload(pre)
    if not isinstance(op, ops.StepAffine):
        return pre, None, None
    shape = op.scale.shape + (1,) * (len(g.shape(pre)) - 1)
    return g.inputs_of(pre)[0], op.scale.reshape(shape), op.shift.reshape(shape)


def lower_to_snn(ann: Graph, ctx) -> Graph:
    """Lower an ANN graph to populations (ReLUs, outputs) and projections (linear chains + max gates)."""
    opts = ctx.options
    snn = Graph("snn", inputs=ann.inputs, outputs=(), meta=copy.deepcopy(ann.meta))

    @lru_cache(maxsize=None)
    def paths(name: str) -> tuple:
        """((source, ops tuple), ...): the linear paths from sources into ``name``."""
        op = ann.payload(name)
        if _is_source(ann, name):
            return ((name, ()),)
        srcs = ann.inputs_of(name)
        if isinstance(op, ops.MaxPool):
            # max commutes with placing channels (Concat), so the gate can act on each source
            inner = paths(srcs[0])
            if not all(_is_channel_placement(c) for _, chain in inner for c in chain):
                raise UnsupportedModelError(
                    f"MaxPool node {name!r} takes its input from {type(ann.payload(srcs[0])).__name__} node "
                    f"{srcs[0]!r}; a spiking max-pool needs ReLU outputs (or the model input) at its input")
            return tuple((src, (op,) + chain) for src, chain in inner)
        if isinstance(op, ops.Add):
            return tuple(p for s in srcs for p in paths(s))
        if isinstance(op, ops.TIME_OPS):
            raise UnsupportedModelError(f"{type(op).__name__} node {name!r} feeds {ann.consumers(name)}; batch norm "
                                        "through time must come right before a spiking layer (neurocc.Spike)")
        if isinstance(op, ops.Concat):
            total = ann.shape(name)[0]
            out, offset = [], 0
            for s in srcs:
                width = ann.shape(s)[0]
                place = ops.Pad(pads=((offset, total - offset - width),) + ((0, 0),) * (len(ann.shape(s)) - 1))
                out += [(src, chain + (place,)) for src, chain in paths(s)]
                offset += width
            return tuple(out)
        linear = op.without_constant()
        return tuple((src, chain + (linear,)) for src, chain in paths(srcs[0]))

    @torch.no_grad()
    def constant(name: str) -> torch.Tensor:
        """The value of ``name`` when every source outputs zero: the bias of a population."""
        memo: dict[str, torch.Tensor] = {}

        def value(n: str) -> torch.Tensor:
            if n not in memo:
                if _is_source(ann, n) or isinstance(ann.payload(n), ops.MaxPool):
                    memo[n] = torch.zeros((1,) + ann.shape(n))
                else:
                    memo[n] = ops.apply(ann.payload(n), [value(s) for s in ann.inputs_of(n)])
            return memo[n]
        return value(name)[0]

    def add_population(name: str, pre: str, readout: str, source_node: str, cap=None, neuron=None,
                       gain=None, shift=None) -> None:
        bias = constant(pre).numpy()
        spiking = readout == "spike"
        neuron = neuron or IF(reset=opts.reset or "subtract", v0=opts.v0 if spiking else 0.0)
        snn.add_node(name, Population(shape=ann.shape(pre), bias=bias, neuron=neuron, readout=readout, cap=cap,
                                      source_node=source_node, gain=gain, shift=shift), ann.shape(pre))
        for src, chain in paths(pre):
            snn.add_projection(src, name, Projection(ops=chain))

    for name in ann.topo_order():
        op = ann.payload(name)
        if isinstance(op, ops.Input):
            snn.add_node(name, InputSource(shape=op.shape, coding=coding_named(opts.coding, opts.coding_seed, opts.phases)), op.shape)
        elif isinstance(op, ops.Relu):
            add_population(name, ann.inputs_of(name)[0], "spike", name, cap=op.cap)
        elif isinstance(op, ops.Spike):
            pre, gain, shift = _schedule(ann, name)
            add_population(name, pre, "spike", name, neuron=op.neuron(), gain=gain, shift=shift)

    outputs = []
    for out in ann.outputs:
        if isinstance(ann.payload(out), ops.Spike):       # a spiking output layer: read out its spike counts
            outputs.append(out)
            continue
        pre = out
        if isinstance(ann.payload(out), ops.Relu):
            pre = ann.inputs_of(out)[0]
            snn.meta.setdefault("notes", []).append(f"output {out!r} is a ReLU: read out its input instead")
        elif _is_source(ann, out) or isinstance(ann.payload(out), ops.MaxPool):
            raise UnsupportedModelError(f"graph output {out!r} ({type(ann.payload(out)).__name__}) must be "
                                        "computed by a linear layer")
        readout_name = f"{out}:readout" if out in snn else out
        add_population(readout_name, pre, opts.readout, out)
        outputs.append(readout_name)
    snn.outputs = tuple(outputs)
    return snn
