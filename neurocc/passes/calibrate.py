"""calibrate: activation statistics of every ReLU (and every output) on calibration data.

Records, per node, the maximum and the p-th percentile of its positive activations (the zeros of a
ReLU carry no information about its range; SNN Toolbox's convention), the statistic the
normalisation pass turns into lambda (bayesian-fusion eq. 8: "the 99.9 % value of the activations on
training data"), and the same percentile per channel (axis 1; per feature for 1-D activations) for
channel-level normalisation (anytime-perception §5.2). Large layers are subsampled to a bounded
number of values per batch with a fixed seed; the maximum is always exact.

Without calibration data it bounds every activation from the weights alone (model-based
normalisation, Diehl et al. 2015), by interval arithmetic through the graph with inputs in [0, 1].
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from neurocc.ir import Graph, ops
from neurocc.ir.executor import run_ann

log = logging.getLogger(__name__)
MAX_VALUES_PER_BATCH = 100_000
MAX_POSITIONS_PER_BATCH = 4_096     # positions (sample x pixel) kept per channel and batch


def _targets(g: Graph) -> list[str]:
    return [n for n in g.nodes() if isinstance(g.payload(n), ops.Relu)] + list(g.outputs)


def _data_statistics(g: Graph, x: np.ndarray, p: float, batch_size: int, seed: int, progress) -> dict:
    rng = np.random.default_rng(seed)
    targets = _targets(g)
    maxima = {n: 0.0 for n in targets}
    samples: dict[str, list] = {n: [] for n in targets}
    per_channel: dict[str, list] = {n: [] for n in targets}
    input_max = 0.0
    for start in progress(range(0, len(x), batch_size)):
        batch = x[start:start + batch_size]
        input_max = max(input_max, float(np.abs(batch).max()))
        values = run_ann(g, torch.from_numpy(batch), keep=set(targets).__contains__)
        for n in targets:
            per_channel[n].append(_channel_sample(values[n].numpy(), rng))
            v = values[n].reshape(-1)
            v = v[v > 0].numpy()
            if v.size == 0:
                continue
            maxima[n] = max(maxima[n], float(v.max()))
            if v.size > MAX_VALUES_PER_BATCH:
                v = rng.choice(v, MAX_VALUES_PER_BATCH, replace=False)
            samples[n].append(v)
    stats = {}
    for n in targets:
        pos = np.concatenate(samples[n]) if samples[n] else np.zeros(1, np.float32)
        layer = float(np.percentile(pos, p))
        stats[n] = {"max": maxima[n], "percentile": layer,
                    "channel_percentile": _channel_percentiles(np.concatenate(per_channel[n], axis=1), p, layer)}
    return {"method": "data", "samples": int(len(x)), "input_max": input_max, "nodes": stats}


def _channel_sample(v: np.ndarray, rng) -> np.ndarray:
    """(channels, positions) values of one batch, non-positive ones as NaN, positions subsampled."""
    flat = np.moveaxis(v, 1, 0).reshape(v.shape[1], -1) if v.ndim > 1 else v.reshape(1, -1)
    if flat.shape[1] > MAX_POSITIONS_PER_BATCH:
        flat = flat[:, rng.choice(flat.shape[1], MAX_POSITIONS_PER_BATCH, replace=False)]
    return np.where(flat > 0, flat, np.nan).astype(np.float32)


def _channel_percentiles(values: np.ndarray, p: float, fallback: float) -> list:
    """The p-th percentile of each channel's positive values; ``fallback`` for a channel never positive."""
    out = np.full(values.shape[0], fallback)
    seen = ~np.all(np.isnan(values), axis=1)
    if seen.any():
        out[seen] = np.nanpercentile(values[seen], p, axis=1)
    return out.tolist()


def _interval(op, lo: torch.Tensor, hi: torch.Tensor):
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    out_mid, out_rad = ops.apply(op, [mid]), ops.apply_abs(op, rad)
    return out_mid - out_rad, out_mid + out_rad


def _model_statistics(g: Graph) -> dict:
    bounds: dict[str, tuple] = {}
    for name in g.topo_order():
        op = g.payload(name)
        if isinstance(op, ops.Input):
            bounds[name] = (torch.zeros((1,) + op.shape), torch.ones((1,) + op.shape))
            continue
        ins = [bounds[s] for s in g.inputs_of(name)]
        if isinstance(op, (ops.Relu, ops.MaxPool)):       # monotone: apply to both ends
            bounds[name] = (ops.apply(op, [ins[0][0]]), ops.apply(op, [ins[0][1]]))
        elif isinstance(op, (ops.Add, ops.Concat)):
            bounds[name] = (ops.apply(op, [b[0] for b in ins]), ops.apply(op, [b[1] for b in ins]))
        else:
            bounds[name] = _interval(op, *ins[0])
    stats = {}
    for n in _targets(g):
        upper = float(torch.clamp(bounds[n][1], min=0).max())
        channels = torch.clamp(bounds[n][1], min=0)[0]
        channels = channels.reshape(channels.shape[0], -1).amax(dim=1) if channels.dim() > 1 else channels
        stats[n] = {"max": upper, "percentile": upper, "channel_percentile": channels.tolist()}
    return {"method": "model", "samples": 0, "input_max": 1.0, "nodes": stats}


def calibrate(graph: Graph, ctx) -> Graph:
    """Record per-ReLU activation statistics (max, p-th percentile) for normalisation (eq. 8)."""
    g = graph.copy()
    opts = ctx.options
    if ctx.calib_x is None:
        log.warning("no calibration data: normalising from the weights alone (model-based, assuming "
                    "inputs in [0, 1]); accuracy and latency will suffer, pass --calib DATA.npz")
        g.meta["calibration"] = _model_statistics(g)
    else:
        x = ctx.calib_x[: opts.calib_samples]
        g.meta["calibration"] = _data_statistics(g, x, opts.percentile, opts.batch_size, opts.seed, ctx.progress)
    g.meta["calibration"]["percentile_p"] = opts.percentile
    return g
