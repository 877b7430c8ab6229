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

A clipped activation (Clip(0, c): ReLU6 and friends) takes lambda = min(lambda, c). The spiking rate
saturates at one spike per step, i.e. at lambda; with lambda <= c it never passes a value the ANN
clips, and with lambda = c (whenever the calibration activations reach the clip, e.g. with
``normalization="max"``) it saturates exactly where the ANN clips, so the SNN equals the ANN on
inputs beyond the clip (tested). ``optimize`` keeps lambda <= c and ``verify`` checks it.
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


def _require_finite(g: Graph) -> None:
    """Normalised parameters overflow float32 only when the model's own values are near its limit: the model's fault."""
    for src, dst, proj in g.projections():
        for op in proj.ops:
            if not all(np.all(np.isfinite(a)) for a in op.tensors().values() if a is not None):
                raise NeuroccError(f"projection {src!r} -> {dst!r}: normalising its weights overflows float32 "
                                   "(the model's weights are too large)")
    for name in g.nodes():
        node = g.payload(name)
        if not isinstance(node, InputSource) and not np.all(np.isfinite(node.bias)):
            raise NeuroccError(f"population {name!r}: normalising its bias overflows float32 (the model's biases are "
                               "too large)")


def normalize(graph: Graph, ctx) -> Graph:
    """Scale projections by lambda_src / lambda_dst and biases by 1 / lambda (eq. 8) so thresholds are 1."""
    opts = ctx.options
    lam = lambdas(graph, "max" if opts.normalization == "max" else "percentile", opts.granularity)
    for name, v in lam.items():
        if not np.all(np.isfinite(v)):
            raise NeuroccError(f"node {name!r}: its activations overflow float32 on the calibration data "
                               "(the model's weights or inputs are too large to normalise)")
    with np.errstate(over="ignore", invalid="ignore"):      # an overflow is checked for and reported below
        g = rescale(graph, {n: 1.0 / v for n, v in lam.items() if not np.all(v == 1.0)})
    _require_finite(g)
    for name in g.nodes():
        node = g.payload(name)
        if not isinstance(node, InputSource):
            g.set_payload(name, dataclasses.replace(node, scale=float(np.max(lam[name]))))
    g.meta["lambdas"] = {n: v.tolist() for n, v in lam.items()}
    return g
