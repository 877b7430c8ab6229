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
the expected error; nothing but the biases of spiking populations changes, and the targets stay the original ANN's.
Populations at the same depth (longest path from the input) are corrected together. Their layer is all that is
simulated: the populations that feed it replay the spike trains recorded when they were calibrated (the reference
simulator's ``replay``; a layer's run depends only on the spikes it receives, and calibrating it changes nothing
upstream), so the pass costs about two simulations of the network, not one per depth. Accumulating read-outs are
not corrected: they integrate their input exactly, so their error is their inputs' (correcting their per-class bias
too was measured: no gain).

A correction that assumes a rate proportional to the input is only first-order for neurons that reset to zero
or stay refractory, so the pass keeps the calibrated network only if its accuracy at T on the calibration
images (with labels; else its agreement with the ANN) is at least the uncalibrated one's, and says so in a compile
note either way.

``--snn-calibration weights`` first fits each population's incoming weights, then corrects its bias as above (SNN
Calibration's weight calibration, in the form of a layer-wise reconstruction): with r_q the firing rates at T that
the (already calibrated) SNN's sources q actually deliver on the calibration images, a_q the ANN's normalised
activations of the same sources, and W_q the one weighted op (Conv or Gemm) of each projection chain C_q,

    W <- argmin_W  mean over images and neurons of  ( sum_q C_q(W_q; r_q) - sum_q C_q(W_q^ANN; a_q) )^2

so that the layer's input current from the spikes it really receives matches the ANN's pre-activation (L-BFGS from
W^ANN, a convex least-squares problem; chains with no or several weighted ops keep their weights). The ANN
function changes by design at this level; the read-outs' weights are fitted too, since their input rates carry
the same errors.

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
from neurocc.ir import Graph, ops
from neurocc.ir.executor import apply_chain, run_rate
from neurocc.ir.snn import Population

log = logging.getLogger(__name__)
CALIBRATION_SAMPLES = 128       # images simulated per layer
BATCH = 32
FIT_ITERATIONS = 50             # L-BFGS iterations of a layer's weight fit


def _depths(graph: Graph) -> dict:
    """Each node's longest path (in projections) from the input."""
    depth = {}
    for name in graph.topo_order():
        depth[name] = max((depth[u] + 1 for u, _, _ in graph.projections(name)), default=0)
    return depth


def _sources_of(g: Graph, names: list) -> list:
    """The populations that feed ``names`` (input sources excluded: their rates are exact)."""
    found = {u for n in names for u, _, _ in g.projections(n)}
    return [u for u in g.topo_order() if u in found and isinstance(g.payload(u), Population)]


def _weighted_index(chain: tuple):
    """The index of a chain's only Conv/Gemm, or None where it has none or several."""
    found = [i for i, op in enumerate(chain) if isinstance(op, (ops.Conv, ops.Gemm))]
    return found[0] if len(found) == 1 else None


def _fit_weights(g: Graph, name: str, snn_rates: dict, ann_values: dict) -> tuple[Graph, float, float]:
    """Population ``name`` with the weights of its incoming projections fitted so that their summed current from
    the SNN's rates matches the ANN's from its activations (module docstring); (graph, error before, after)."""
    edges = list(g.nx.in_edges(name, keys=True, data=True))
    with torch.no_grad():
        target = sum(apply_chain(d["proj"].ops, ann_values[u]) for u, _, _, d in edges)
    fixed, fitted = 0, []
    for u, _, k, d in edges:
        chain, i = d["proj"].ops, _weighted_index(d["proj"].ops)
        source = snn_rates.get(u, ann_values[u])
        if i is None:
            with torch.no_grad():
                fixed = fixed + apply_chain(chain, source)
            continue
        with torch.no_grad():
            before = apply_chain(chain[:i], source)
        weight = torch.tensor(np.array(chain[i].weight), dtype=torch.float32, requires_grad=True)
        fitted.append((u, k, chain, i, before, weight))
    if not fitted:
        return g, 0.0, 0.0

    def loss():
        current = fixed
        for _, _, chain, i, before, weight in fitted:
            current = current + apply_chain(chain[i + 1:], ops.apply_weighted(chain[i], before, weight))
        return torch.mean((current - target) ** 2)

    with torch.no_grad():
        start = float(loss())
    opt = torch.optim.LBFGS([w for *_, w in fitted], max_iter=FIT_ITERATIONS, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss()
        value.backward()
        for *_, weight in fitted:          # L-BFGS flattens the gradients with view(), which needs them contiguous
            weight.grad = weight.grad.contiguous()
        return value
    opt.step(closure)
    with torch.no_grad():
        end = float(loss())
    if not end < start:                     # no better fit (or a failed search): keep the weights
        return g, start, start
    out = g.copy()
    for u, k, chain, i, _, weight in fitted:
        new = chain[:i] + (dataclasses.replace(chain[i], weight=weight.detach().numpy()),) + chain[i + 1:]
        out.nx.edges[u, name, k]["proj"] = dataclasses.replace(out.nx.edges[u, name, k]["proj"], ops=new)
    return out, start, end


def _channel_mean(values: np.ndarray, shape: tuple) -> np.ndarray:
    """(samples, *shape) -> per-neuron array of each channel's mean over samples and positions."""
    if len(shape) == 3:
        return np.broadcast_to(values.mean(axis=(0, 2, 3))[:, None, None], shape)
    return values.mean(axis=0).reshape(shape)


def _simulate(snn: Graph, names: list, x: np.ndarray, steps: int, trains: dict) -> dict:
    """The spike trains (steps, samples, *shape) int8 of populations ``names`` of the finished candidate ``snn``,
    simulating only them: each population that feeds them replays its train from ``trains``, recorded from the same
    network when it was calibrated (the reference simulator: every target's semantics)."""
    from neurocc.backends.reference.simulator import Simulator
    sources = {u for n in names for u, _, _ in snn.projections(n)} - set(snn.inputs)
    sub = snn.copy()
    sub.nx.remove_nodes_from([n for n in snn.nodes() if n not in sources | set(names) | set(snn.inputs)])
    sub.nx.remove_edges_from([(u, v, k) for v in sources for u, _, k in list(sub.nx.in_edges(v, keys=True))])
    sub.outputs = ()                # no read-outs: the populations then take the fused kernel, and only trains are kept
    sim = Simulator(sub, record_trains=True)
    out = {name: [] for name in names}
    for start in range(0, len(x), BATCH):
        part = slice(start, min(len(x), start + BATCH))
        trace = sim.run_batch(x[part], steps, np.arange(part.start, part.stop),
                              replay={u: torch.from_numpy(trains[u][:, part]) for u in sources})
        for name in names:
            out[name].append(trace.spike_trains[name])
    # the fused kernel's trains are channels-last: stored in the default order, as the weight fits expect them
    return {name: np.ascontiguousarray(np.concatenate(parts, axis=1)) for name, parts in out.items()}


def _rate(train: np.ndarray) -> np.ndarray:
    """A spike train's firing rate per sample and neuron, (samples, *shape)."""
    return train.sum(axis=0, dtype=np.float64) / len(train)


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
        targets = run_rate(graph, torch.from_numpy(np.ascontiguousarray(x)), saturate=True, keep=lambda n: True)
    g = graph.copy()
    depth = _depths(g)
    spiking = [n for n in g.topo_order() if isinstance(g.payload(n), Population) and g.payload(n).readout == "spike"]
    fit = opts.snn_calibration == "weights"
    calibrated = spiking + ([n for n in g.outputs if g.payload(n).readout == "accumulate"] if fit else [])
    report, trains = [], {}
    for level in ctx.progress(sorted({depth[n] for n in calibrated}), desc="calibrating the SNN", unit="layer"):
        stage = [n for n in calibrated if depth[n] == level]
        if fit:
            snn_rates = {u: torch.from_numpy(_rate(trains[u]).astype(np.float32))
                         for u in _sources_of(g, stage) if u in trains}
            for name in stage:
                g, before, after = _fit_weights(g, name, snn_rates, targets)
                report.append({"population": name, "weight_fit_mse": [before, after]})
        snn = finish(g)
        stage = [n for n in stage if n in spiking and n in snn]
        if not stage:
            continue
        measured = _simulate(snn, stage, x, steps, trains)
        for name in stage:
            target = targets[name].numpy().astype(np.float64)
            error = target - _rate(measured[name])
            node = g.payload(name)
            g.set_payload(name, dataclasses.replace(node, bias=node.bias + _channel_mean(error, g.shape(name))))
            report.append({"population": name, "mean_abs_error": float(np.abs(error).mean()),
                           "mean_error": float(error.mean())})
        trains.update(_simulate(finish(g), stage, x, steps, trains))    # the corrected layer, for those it feeds
        for u in [u for u in trains if all(depth[v] <= level for v in g.nx.successors(u))]:
            del trains[u]
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
