"""Counting synapses: how many synapses leave each neuron of an SNN-level source.

A projection is a chain of linear ops; its synapses from input neuron i are the non-zero weights its
spike reaches. Counted as the vector-Jacobian product with ones of the chain with every weight replaced
by 1 where it is non-zero: pooling windows count one synapse per covered input, a chain with two
weighted ops counts paths, a max-pool gate counts its window. This is the fan-out that makes a spike
into synaptic events (anytime-perception §4) and the synapse count of a population's resources.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from . import ops
from .executor import apply_chain
from .graph import Graph


def _counting_op(op: ops.Op) -> list:
    """Ops whose vector-Jacobian product with ones counts the synapses leaving each input neuron."""
    if isinstance(op, (ops.Conv, ops.Gemm)):
        return [dataclasses.replace(op, weight=(op.weight != 0).astype(np.float32))]
    if isinstance(op, ops.Affine) and op.scale is not None:
        return [dataclasses.replace(op, scale=(op.scale != 0).astype(np.float32))]
    if isinstance(op, (ops.AvgPool, ops.MaxPool)):
        window = float(np.prod(op.kernel))
        pool = ops.AvgPool(kernel=op.kernel, strides=op.strides, pads=op.pads, count_include_pad=True,
                           ceil_mode=op.ceil_mode)
        return [pool, ops.Affine(scale=np.float32(window))]
    return [op]


def projection_fan_out(proj, src_shape: tuple) -> np.ndarray:
    """Synapses of one projection leaving each neuron of its source, shape ``src_shape``."""
    chain = [c for op in proj.ops for c in _counting_op(op)]
    with torch.enable_grad():
        x = torch.ones((1,) + tuple(src_shape), dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(apply_chain(chain, x).sum(), x)
    return grad[0].numpy()


def fan_out(graph: Graph, src: str) -> np.ndarray:
    """Synapses leaving each neuron of ``src`` (summed over its projections), shape of ``src``."""
    total = np.zeros(graph.shape(src), np.float64)
    for _, _, d in graph.nx.out_edges(src, data=True):
        total += projection_fan_out(d["proj"], graph.shape(src))
    return total


def fan_in(graph: Graph, dst: str) -> np.ndarray:
    """Synapses reaching each neuron of ``dst`` (summed over its projections), shape of ``dst``."""
    total = np.zeros(graph.shape(dst), np.float64)
    with torch.no_grad():
        for src, _, proj in graph.projections(dst):
            chain = [c for op in proj.ops for c in _counting_op(op)]
            total += apply_chain(chain, torch.ones((1,) + graph.shape(src), dtype=torch.float64))[0].numpy()
    return total
