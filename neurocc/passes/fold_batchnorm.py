"""fold_batchnorm: merge BatchNormalization into the preceding Conv or Gemm (bayesian-fusion eq. 3-4).

    w' = (gamma / sigma) * w,    b' = (gamma / sigma) * (b - mu) + beta,    sigma = sqrt(var + eps)

A BN that does not follow a Conv/Gemm with no other consumer (e.g. BN on the input, or after a
pooling layer) becomes the equivalent per-channel ``Affine``, which later passes carry as a linear op.
"""
from __future__ import annotations

import numpy as np

from neurocc.ir import Graph, ops

from .canonicalize import fold_into_layer


def fold_batchnorm(graph: Graph, ctx=None) -> Graph:
    """Fold BatchNorm into the preceding Conv/Gemm (eq. 3-4); other BNs become per-channel Affine ops."""
    g = graph.copy()
    for name in g.topo_order():
        bn = g.payload(name)
        if not isinstance(bn, ops.BatchNorm):
            continue
        (src,) = g.inputs_of(name)
        layer = g.payload(src)
        if isinstance(layer, (ops.Conv, ops.Gemm)) and len(g.consumers(src)) == 1 and src not in g.outputs:
            gain = bn.scale / np.sqrt(bn.var + np.float32(bn.eps))     # gamma / sigma
            g.set_payload(src, fold_into_layer(layer, gain, bn.bias - gain * bn.mean))
            g.replace_uses(name, src)
            g.nx.remove_node(name)
        else:
            g.set_payload(name, bn.as_affine(len(g.shape(name))))
    return g
