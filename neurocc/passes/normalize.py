"""normalize: layer-wise data-based weight normalisation (bayesian-fusion eq. 8; Diehl et al. 2015).

    w'_l = (lambda_{l-1} / lambda_l) * w_l,        b'_l = b_l / lambda_l

generalised to a DAG: every projection from source q into population p is scaled by
lambda_q / lambda_p, and p's bias by 1 / lambda_p. lambda_p is the p-th percentile (default 99.9) of
p's positive ANN activations, or their maximum (``normalization="max"``), from ``calibrate``. A spike
of p then stands for activation lambda_p (recorded as ``Population.scale``), and p fires at rate
a_p / lambda_p, saturating at one spike per step. The input's lambda is the largest input magnitude
seen in calibration; accumulating outputs keep lambda = 1, so the read-out equals the ANN output
and normalisation leaves the network function unchanged (tested).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from neurocc.errors import NeuroccError
from neurocc.ir import Graph, ops
from neurocc.ir.snn import InputSource, Projection

_MIN_LAMBDA = 1e-6


def scale_chain(chain: tuple, factor: float) -> tuple:
    """The chain times a positive scalar: folded into its last weighted op, or appended as an Affine."""
    for i in range(len(chain) - 1, -1, -1):
        op = chain[i]
        if isinstance(op, (ops.Conv, ops.Gemm)):
            return chain[:i] + (dataclasses.replace(op, weight=op.weight * np.float32(factor)),) + chain[i + 1:]
    return chain + (ops.Affine(scale=np.float32(factor)),)


def layer_lambdas(g: Graph, method: str) -> dict[str, float]:
    """lambda per node of the SNN graph, from the calibration statistics left by ``calibrate``."""
    calib = g.meta.get("calibration")
    if calib is None:
        raise NeuroccError("normalize needs calibration statistics; run the calibrate pass first")
    key = "max" if method == "max" else "percentile"
    lambdas = {}
    for name in g.nodes():
        node = g.payload(name)
        if isinstance(node, InputSource):
            lambdas[name] = max(float(calib["input_max"]), _MIN_LAMBDA)
        elif node.readout == "accumulate":
            lambdas[name] = 1.0
        else:
            stats = calib["nodes"][node.source_node]
            value = stats[key]
            if node.cap is not None:
                value = min(value, node.cap)   # a clipped activation saturates where the chip's rate does
            lambdas[name] = max(float(value), _MIN_LAMBDA)
    return lambdas


def normalize(graph: Graph, ctx) -> Graph:
    """Scale projections by lambda_src / lambda_dst and biases by 1 / lambda (eq. 8) so thresholds are 1."""
    g = graph.copy()
    lam = layer_lambdas(g, "max" if ctx.options.normalization == "max" else "percentile")
    for name in g.nodes():
        node = g.payload(name)
        if isinstance(node, InputSource):
            g.set_payload(name, dataclasses.replace(node, scale=lam[name]))
        else:
            cap = None if node.cap is None else node.cap / lam[name]
            g.set_payload(name, dataclasses.replace(node, bias=node.bias / np.float32(lam[name]),
                                                    scale=lam[name], cap=cap))
    for u, v, k, d in list(g.nx.edges(keys=True, data=True)):
        proj: Projection = d["proj"]
        g.nx.edges[u, v, k]["proj"] = dataclasses.replace(proj, ops=scale_chain(proj.ops, lam[u] / lam[v]))
    g.meta["lambdas"] = lam
    return g
