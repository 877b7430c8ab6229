"""Firing-rate scaling of populations that leaves the ANN function unchanged (anytime-perception §5.2).

To scale the activation of a population's channel j by eta_j, multiply its incoming weights and bias
by eta_j and its outgoing weights by 1 / eta_j (Fig. 3a). ``eta`` is a scalar (layer level) or one
value per channel (axis 0 of a population's shape; per neuron for 1-D populations). Data-based
normalisation is the special case eta = 1 / lambda.

A projection is a chain of linear ops, so the source's 1/eta travels forward through the ops that keep
channels apart (pooling, max-pool gates, padding, slicing, flatten, affine maps) into the first
weighted op's input channels, and the target's eta travels backward into the last weighted op's output
channels. A chain without a weighted op (an identity or option-A shortcut) gets one per-channel
``Affine`` at its end. Weight sharing is why eta is per channel, not per pixel, in convolutions.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch

from neurocc.ir import Graph, ops
from neurocc.ir.snn import InputSource, Projection

_CHANNEL_KEEPING = (ops.AvgPool, ops.SumPool, ops.MaxPool, ops.GlobalAvgPool, ops.Affine)


def _is_scalar(v: np.ndarray) -> bool:
    return v.size == 1


def _shapes(chain: tuple, src_shape: tuple) -> list[tuple]:
    """The per-sample shape entering each op of the chain, and the chain's output shape last."""
    x = torch.zeros((1,) + tuple(src_shape))
    shapes = [tuple(src_shape)]
    for op in chain:
        x = ops.apply(op, [x])
        shapes.append(tuple(x.shape[1:]))
    return shapes


def _forward(op: ops.Op, v: np.ndarray, shape: tuple) -> np.ndarray:
    """u such that op(v * x) = u * op(x), for a weightless op and a per-channel v (shape = op's input)."""
    if _is_scalar(v) or isinstance(op, _CHANNEL_KEEPING):
        return v
    if isinstance(op, ops.Pad):
        before, after = op.pads[0]
        return np.pad(v, (before, after), constant_values=1.0)
    if isinstance(op, ops.Slice):
        for axis, start, stop, step in op.slices:
            if axis == 0:
                v = v[slice(start, stop, step)]
        return v
    if isinstance(op, ops.Flatten):
        return np.repeat(v, int(np.prod(shape[1:])))
    raise ValueError(f"cannot carry a per-channel scale through {type(op).__name__}")


def _backward(op: ops.Op, v: np.ndarray, shape: tuple) -> Optional[np.ndarray]:
    """u such that v * op(x) = op(u * x), for a weightless op; None where no per-channel u exists."""
    if _is_scalar(v) or isinstance(op, _CHANNEL_KEEPING):
        return v
    if isinstance(op, ops.Pad):
        before, _ = op.pads[0]
        return v[before:before + shape[0]]
    if isinstance(op, ops.Slice):
        u = np.ones(shape[0], v.dtype)
        index = np.arange(shape[0])
        for axis, start, stop, step in op.slices:
            if axis == 0:
                index = index[slice(start, stop, step)]
        u[index] = v
        return u
    return None   # Flatten: a per-feature scale is not per channel of the flattened tensor


def _scale_axis(w: np.ndarray, v: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * w.ndim
    shape[axis] = -1
    return w * v.reshape(shape).astype(w.dtype)


def _absorb_input(op: ops.Op, v: np.ndarray) -> ops.Op:
    """The weighted op with its input channels multiplied by v (op(v * x))."""
    if _is_scalar(v):
        return dataclasses.replace(op, weight=op.weight * np.float32(v.item()))
    if isinstance(op, ops.Gemm):
        return dataclasses.replace(op, weight=_scale_axis(op.weight, v, 1))
    per_group_in = op.weight.shape[1]
    per_group_out = op.weight.shape[0] // op.groups
    group = np.arange(op.weight.shape[0]) // per_group_out
    factors = v[group[:, None] * per_group_in + np.arange(per_group_in)[None, :]]     # (out, in per group)
    return dataclasses.replace(op, weight=op.weight * factors[:, :, None, None].astype(op.weight.dtype))


def _absorb_output(op: ops.Op, v: np.ndarray) -> ops.Op:
    if _is_scalar(v):
        return dataclasses.replace(op, weight=op.weight * np.float32(v.item()))
    return dataclasses.replace(op, weight=_scale_axis(op.weight, v, 0))


def _weighted(chain: tuple) -> list[int]:
    return [i for i, op in enumerate(chain) if isinstance(op, (ops.Conv, ops.Gemm))]


def absorbs_target_scale(chain: tuple) -> bool:
    """Whether a per-channel scale of the chain's target can be folded into the chain: not when a Flatten
    follows its last weighted op (a per-feature scale is not per channel of the convolution's output)."""
    idx = _weighted(chain)
    return not idx or not any(isinstance(op, ops.Flatten) for op in chain[idx[-1] + 1:])


def scale_chain(chain: tuple, src_shape: tuple, src_scale, dst_scale) -> tuple:
    """``dst_scale * chain(src_scale * x)`` as a chain; scales are scalars or per-channel vectors."""
    chain = tuple(chain)
    s = np.atleast_1d(np.asarray(src_scale, np.float64))
    d = np.atleast_1d(np.asarray(dst_scale, np.float64))
    shapes = _shapes(chain, src_shape)
    idx = _weighted(chain)
    if idx:
        first, last = idx[0], idx[-1]
        for i in range(first):
            s = _forward(chain[i], s, shapes[i])
        for i in range(len(chain) - 1, last, -1):
            d = _backward(chain[i], d, shapes[i])
            if d is None:
                raise ValueError("a per-channel target scale cannot pass a Flatten after the weighted op")
        out = list(chain)
        out[first] = _absorb_input(out[first], s)
        out[last] = _absorb_output(out[last], d)
        return tuple(out)
    for i, op in enumerate(chain):
        s = _forward(op, s, shapes[i])
    factor = s * d
    out_shape = shapes[-1]
    last = chain[-1] if chain else None
    if isinstance(last, ops.Affine) and last.shift is None and last.scale is not None:
        # the chain's own per-channel scale (an earlier rescale) takes the new factor: one scale, not two in a row
        chain, factor = chain[:-1], np.asarray(last.scale, np.float64).reshape(-1) * factor
    if np.all(factor == factor.flat[0]):
        return chain + (ops.Affine(scale=np.float32(factor.flat[0])),)
    return chain + (ops.Affine(scale=factor.astype(np.float32).reshape((-1,) + (1,) * (len(out_shape) - 1))),)


def rescale(graph: Graph, eta: dict) -> Graph:
    """Scale each population p in ``eta`` by eta_p: incoming weights and bias x eta, outgoing x 1/eta.

    An ``InputSource`` in ``eta`` takes a scalar: its coded value becomes x * eta (its ``scale`` is
    divided by eta). The ANN function of the graph is unchanged.
    """
    g = graph.copy()
    vec = {n: np.atleast_1d(np.asarray(e, np.float64)) for n, e in eta.items()}
    lambdas = g.meta.get("lambdas", {})
    for name, e in vec.items():
        node = g.payload(name)
        if isinstance(node, InputSource):
            g.set_payload(name, dataclasses.replace(node, scale=float(node.scale / e.item())))
            continue
        shape = (-1,) + (1,) * (len(node.shape) - 1)
        scale = node.scale
        if name in lambdas:            # a spike of channel c now stands for lambda_c / eta_c
            new = np.asarray(lambdas[name], np.float64) / (e if e.size > 1 else e.item())
            lambdas[name] = new.tolist()
            scale = float(np.max(new))
        g.set_payload(name, dataclasses.replace(
            node, bias=(node.bias * e.reshape(shape)).astype(np.float32), scale=scale,
            cap=None if node.cap is None else float(node.cap * e.item())))
    one = np.ones(1)
    for u, v, k, d in list(g.nx.edges(keys=True, data=True)):
        if u not in vec and v not in vec:
            continue
        proj: Projection = d["proj"]
        chain = scale_chain(proj.ops, g.shape(u), 1.0 / vec.get(u, one), vec.get(v, one))
        g.nx.edges[u, v, k]["proj"] = dataclasses.replace(proj, ops=chain)
    return g
