"""calibrate_snn: layer-wise bias calibration of the converted SNN on calibration data, at the user's latency T.

SNN Calibration's light pipeline (Li, Deng, Dong, Gong, Gu, "A Free Lunch From ANN: Towards Efficient, Accurate
Spiking Neural Networks Calibration", ICML 2021, bias calibration): each spiking layer's conversion error is
measured against the ANN on a few calibration images and removed from its bias, layer by layer from the input, so
that each layer is corrected for the (already corrected) spikes it actually receives. For population l:

    e_l(x) = clip(a_l(x), 0, 1) - s_l(x, T) / T      per neuron: the ANN's activation in rate units (the rate view
                                                     of the normalised graph, at most one spike a step) minus the
                                                     SNN's firing rate after T steps
    b_l,c <- b_l,c + mu_c(e_l)                       mu_c: mean over the calibration images and the positions of
                                                     channel c (a dense layer: each neuron is its own channel)

A constant bias change of mu raises the charge a neuron integrates by mu a step, so its count at T by about T mu,
the expected error; nothing but the biases of spiking populations changes, and the targets stay the original ANN's. Populations at the same depth (longest path from the input) are corrected together from one
simulation, which runs only the graph up to them. Accumulating read-outs are not corrected: they integrate their
input exactly, so their error is their inputs' (correcting their per-class bias too was measured: no gain).

A correction that assumes a rate proportional to the input is only first-order for neurons that reset to zero
or stay refractory, so the pass keeps the calibrated network only if its accuracy at T on the calibration
images (with labels; else its agreement with the ANN) is at least the uncalibrated one's, and says so in a compile
note either way.

The SNN is simulated in the target's own semantics: each candidate goes through the passes after this one
(``ctx.finish``: ``quantize`` for integer targets, so the correction is quantised like every bias, and the
chip's reset, refractory step and delays are what is measured). It runs after ``optimize``, whose rate scales and
V0 define the rate code it corrects; ``optimize`` judges its candidates without it (a calibration per evaluation
would multiply its cost).
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import torch

from neurocc.errors import NeuroccError
from neurocc.ir import Graph
from neurocc.ir.executor import run_rate
from neurocc.ir.snn import Population

log = logging.getLogger(__name__)
CALIBRATION_SAMPLES = 128       # images simulated per layer
BATCH = 32


def _depths(graph: Graph) -> dict:
    """Each node's longest path (in projections) from the input."""
    depth = {}
    for name in graph.topo_order():
        depth[name] = max((depth[u] + 1 for u, _, _ in graph.projections(name)), default=0)
    return depth


def _channel_mean(values: np.ndarray, shape: tuple) -> np.ndarray:
    """(samples, *shape) -> per-neuron array of each channel's mean over samples and positions."""
    if len(shape) == 3:
        return np.broadcast_to(values.mean(axis=(0, 2, 3))[:, None, None], shape)
    return values.mean(axis=0).reshape(shape)


def _rates(snn: Graph, names: list, x: np.ndarray, steps: int) -> dict:
    """Each population's firing rate after ``steps`` steps, (samples, *shape), simulating only the graph up to
    ``names`` (the reference simulator: every target's semantics)."""
    from neurocc.backends.reference.simulator import Simulator
    prefix = snn.copy()
    prefix.outputs = tuple(names)
    prefix.remove_dead()
    sim = Simulator(prefix)
    out = {name: [] for name in names}
    for start in range(0, len(x), BATCH):
        trace = sim.run_batch(x[start:start + BATCH], steps, np.arange(start, min(len(x), start + BATCH)))
        for name in names:
            count = trace.readouts[name].count[-1]
            out[name].append(count.reshape((len(count),) + snn.shape(name)) / steps)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def calibrate_snn(graph: Graph, ctx) -> Graph:
    """Correct every spiking population's bias by its mean conversion error at T (module docstring)."""
    opts = ctx.options
    if opts.snn_calibration == "none":
        return graph
    if ctx.calib_x is None:
        raise NeuroccError("--snn-calibration needs calibration data (--calib)")
    t0 = time.perf_counter()
    x = ctx.calib_x[:CALIBRATION_SAMPLES]
    steps = opts.calibration_steps
    finish = ctx.finish or (lambda g: g)
    with torch.no_grad():
        targets = run_rate(graph, torch.from_numpy(np.ascontiguousarray(x)), saturate=True,
                           keep=lambda n: isinstance(graph.payload(n), Population) or n in graph.outputs)
    g = graph.copy()
    depth = _depths(g)
    spiking = [n for n in g.topo_order() if isinstance(g.payload(n), Population) and g.payload(n).readout == "spike"]
    report = []
    for level in ctx.progress(sorted({depth[n] for n in spiking}), desc="calibrating the SNN", unit="layer"):
        stage = [n for n in spiking if depth[n] == level]
        snn = finish(g)
        stage = [n for n in stage if n in snn]
        if not stage:
            continue
        rates = _rates(snn, stage, x, steps)
        for name in stage:
            target = targets[name].numpy().astype(np.float64)
            error = target - rates[name]
            node = g.payload(name)
            g.set_payload(name, dataclasses.replace(node, bias=node.bias + _channel_mean(error, g.shape(name))))
            report.append({"population": name, "mean_abs_error": float(np.abs(error).mean()),
                           "mean_error": float(error.mean())})
    truth = (ctx.calib_y[:len(x)] if ctx.calib_y is not None else
             targets[graph.outputs[0]].numpy().reshape(len(x), -1).argmax(1))
    scores = {"uncalibrated": _accuracy_at(finish(graph), x, truth, steps),
              "calibrated": _accuracy_at(finish(g), x, truth, steps)}
    kept = scores["calibrated"] >= scores["uncalibrated"]
    what = "accuracy" if ctx.calib_y is not None else "agreement with the ANN"
    out = g if kept else graph.copy()
    out.meta["snn_calibration"] = {"level": opts.snn_calibration, "steps": steps, "samples": len(x), "kept": kept,
                                   "measure": what, **scores, "seconds": round(time.perf_counter() - t0, 2),
                                   "populations": report}
    out.meta.setdefault("notes", []).append(
        f"--snn-calibration {opts.snn_calibration}: {what} at T = {steps} on {len(x)} calibration images "
        f"{100 * scores['uncalibrated']:.1f} % -> {100 * scores['calibrated']:.1f} %"
        + ("" if kept else "; not better, so the network is kept uncalibrated"))
    log.info("calibrate_snn: %d populations in %.1f s", len(report), time.perf_counter() - t0)
    return out


def _accuracy_at(snn: Graph, x: np.ndarray, truth: np.ndarray, steps: int) -> float:
    """The fraction of ``x`` whose prediction after ``steps`` steps is ``truth``."""
    from neurocc.backends import BACKENDS
    from neurocc.decode import predictions
    trace = BACKENDS["reference"].run(snn, x, steps, batch_size=BATCH)
    return float((predictions(trace, snn.outputs[0])[-1] == truth).mean())
