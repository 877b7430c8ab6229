"""normalize: data-based weight normalisation (bayesian-fusion eq. 8; Diehl et al. 2015), layer or channel.

    w'_l = (lambda_{l-1} / lambda_l) * w_l,        b'_l = b_l / lambda_l

generalised to a DAG: every projection from source q into population p is scaled by
lambda_q / lambda_p, and p's bias by 1 / lambda_p. lambda_p is the p-th percentile (default 99.9) of
p's positive ANN activations, or their maximum (``normalization="max"``), from ``calibrate``. A spike
of p then stands for activation lambda_p, and p fires at rate a_p / lambda_p, saturating at one spike
per step. The input's lambda is the largest input magnitude seen in calibration; accumulating outputs
keep lambda = 1, so the read-out equals the ANN output and normalisation leaves the network function
unchanged (tested).

With ``granularity="channel"`` (the default) lambda is taken per channel (per neuron of a 1-D layer):
channel-level firing-rate scaling (anytime-perception §5.2) with the percentile heuristic as its
starting point, so a channel whose activations are small still fires at a useful rate. Populations
where a per-channel scale cannot be folded into every incoming projection (a Flatten after the weighted
op) or whose activation is clipped keep one lambda. ``Population.scale`` records the largest lambda;
``meta["lambdas"]`` all of them.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from neurocc.errors import NeuroccError
from neurocc.ir import Graph
from neurocc.ir.snn import InputSource

from .rescale import absorbs_target_scale, rescale

_MIN_LAMBDA = 1e-6


def channel_scalable(g: Graph, name: str) -> bool:
    """Whether population ``name`` can take one scale per channel (see the module docstring)."""
    node = g.payload(name)
    if isinstance(node, InputSource) or node.readout == "accumulate" or node.cap is not None:
        return False
    return all(absorbs_target_scale(proj.ops) for _, _, proj in g.projections(name))


def lambdas(g: Graph, method: str, granularity: str) -> dict[str, np.ndarray]:
    """lambda per node of the SNN graph (a scalar or one per channel), from ``calibrate``'s statistics."""
    calib = g.meta.get("calibration")
    if calib is None:
        raise NeuroccError("normalize needs calibration statistics; run the calibrate pass first")
    key = "max" if method == "max" else "percentile"
    out = {}
    for name in g.nodes():
        node = g.payload(name)
        if isinstance(node, InputSource):
            value = np.float64(calib["input_max"])
        elif node.readout == "accumulate":
            value = np.float64(1.0)
        else:
            stats = calib["nodes"][node.source_node]
            if granularity == "channel" and key == "percentile" and channel_scalable(g, name):
                value = np.asarray(stats["channel_percentile"], np.float64)
            else:
                value = np.float64(stats[key])
            if node.cap is not None:
                value = min(value, node.cap)   # a clipped activation saturates where the chip's rate does
        out[name] = np.maximum(value, _MIN_LAMBDA)
    return out


def normalize(graph: Graph, ctx) -> Graph:
    """Scale projections by lambda_src / lambda_dst and biases by 1 / lambda (eq. 8) so thresholds are 1."""
    opts = ctx.options
    lam = lambdas(graph, "max" if opts.normalization == "max" else "percentile", opts.granularity)
    g = rescale(graph, {n: 1.0 / v for n, v in lam.items() if not np.all(v == 1.0)})
    for name in g.nodes():
        node = g.payload(name)
        if not isinstance(node, InputSource):
            g.set_payload(name, dataclasses.replace(node, scale=float(np.max(lam[name]))))
    g.meta["lambdas"] = {n: v.tolist() for n, v in lam.items()}
    return g
