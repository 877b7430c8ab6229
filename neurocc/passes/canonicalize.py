"""canonicalize: put an imported ANN graph in the form the later passes expect.

* An ``Affine`` whose scale and shift are per output channel, following a Conv or Gemm that feeds
  nothing else, is folded into that layer: w' = w * s, b' = b * s + t (the Add(bias) of mnist-8).
* ``MaxPool -> Relu`` becomes ``Relu -> MaxPool``: max and ReLU commute (both monotone), and the
  spiking max-pool gate needs spikes at its input.
* Flattening an already flat tensor is removed.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from neurocc.ir import Graph, ops


def _per_channel(arr, shape: tuple, default: float):
    """``arr`` (broadcast to ``shape``) as a vector over the channel axis, or None if it varies elsewhere."""
    if arr is None:
        return np.full(shape[0], default, np.float32)
    try:
        flat = np.broadcast_to(arr, shape).reshape(shape[0], -1)
    except ValueError:
        return None
    return flat[:, 0].copy() if np.all(flat == flat[:, :1]) else None


def fold_into_layer(layer: ops.Op, scale: np.ndarray, shift: np.ndarray) -> ops.Op:
    """A Conv/Gemm followed by the per-output-channel map y * scale + shift, as one layer."""
    shape = (-1,) + (1,) * (layer.weight.ndim - 1)
    bias = layer.bias if layer.bias is not None else np.zeros(layer.weight.shape[0], np.float32)
    return dataclasses.replace(layer, weight=layer.weight * scale.reshape(shape), bias=bias * scale + shift)


def _try_fold_affine(g: Graph, name: str) -> bool:
    op = g.payload(name)
    (src,) = g.inputs_of(name)
    layer = g.payload(src)
    if not isinstance(layer, (ops.Conv, ops.Gemm)) or len(g.consumers(src)) != 1 or src in g.outputs:
        return False
    scale = _per_channel(op.scale, g.shape(src), 1.0)
    shift = _per_channel(op.shift, g.shape(src), 0.0)
    if scale is None or shift is None:
        return False
    g.set_payload(src, fold_into_layer(layer, scale, shift))
    g.replace_uses(name, src)
    g.nx.remove_node(name)
    return True


def _swap_maxpool_relu(g: Graph, relu: str) -> bool:
    (pool,) = g.inputs_of(relu)
    if not isinstance(g.payload(pool), ops.MaxPool) or len(g.consumers(pool)) != 1 or pool in g.outputs:
        return False
    (src,) = g.inputs_of(pool)
    pool_op, relu_op = g.payload(pool), g.payload(relu)
    # Rewire src -> relu' -> pool' keeping the node names' roles: the relu node now holds the pool.
    g.set_payload(pool, relu_op, g.shape(src))
    g.set_payload(relu, pool_op)
    return True


def canonicalize(graph: Graph, ctx=None) -> Graph:
    """Fold per-channel affine maps into the preceding Conv/Gemm, move ReLU before MaxPool, drop no-op flattens."""
    g = graph.copy()
    changed = True
    while changed:
        changed = False
        for name in g.topo_order():
            if name not in g:
                continue
            op = g.payload(name)
            if isinstance(op, ops.Affine) and _try_fold_affine(g, name):
                changed = True
            elif isinstance(op, ops.Relu) and _swap_maxpool_relu(g, name):
                changed = True
            elif isinstance(op, ops.Flatten) and len(g.shape(g.inputs_of(name)[0])) == 1:
                g.replace_uses(name, g.inputs_of(name)[0])
                g.nx.remove_node(name)
                changed = True
    return g
