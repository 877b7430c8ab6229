"""optimize: derivative-free search for firing-rate scales and V0 (anytime-perception §5.2-5.3, eq. 11).

    L_SNN(H, V0) = lambda_e * M_e + lambda_l * P_l + lambda_p * P_p                               (eq. 11)

M_e is the lowest error 1 - a_t over the simulated steps, P_l = sum_t (a_ref - a_t) and
P_p = sum_t e_t (a_ref - a_t) the Pareto latency and power (eq. 4-5; e_t = synaptic events per sample
at step t), measured by simulating the candidate network on calibration samples. a_t is the accuracy
against the labels when the calibration set has them, else the agreement with the ANN's predictions;
a_ref is the ANN's own. Default weights: lambda_e = 1, lambda_l = 1 / steps (so P_l counts as the mean
accuracy gap per step), lambda_p = 0.

H = {eta} are the rescaling factors of ``rescale`` (incoming weights and bias x eta, outgoing x 1/eta:
the ANN function never changes). Subplex (NLopt's LN_SBPLX, the paper's choice) searches log2(eta)
in three phases, each starting from the best point so far: one global eta and V0; one eta and V0 per
population; one eta per channel. The candidate is first passed through the rest of the target's
pipeline (``finish``: quantisation for integer targets), so the search sees the target's own
semantics. The result is the best point evaluated, the starting point included: never worse than it.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

import numpy as np
import torch

from neurocc.errors import NeuroccError
from neurocc.ir import Graph
from neurocc.ir.executor import run_ann
from neurocc.ir.snn import Population

from .normalize import channel_scalable
from .rescale import rescale

log = logging.getLogger(__name__)
LOG2_ETA_BOUND = 3.0          # eta in [1/8, 8] per phase
V0_BOUNDS = (0.0, 0.99)
PHASE_SHARES = (("global", 0.2), ("layer", 0.4), ("channel", 0.4))


class Objective:
    """L_SNN of a float SNN graph on fixed calibration samples (see the module docstring)."""

    def __init__(self, x: np.ndarray, truth: np.ndarray, a_ref: float, steps: int, weights: tuple,
                 finish: Callable[[Graph], Graph], batch_size: int = 64):
        self.x, self.truth, self.a_ref, self.steps = x, truth, a_ref, steps
        self.weights, self.finish, self.batch_size = weights, finish, batch_size
        self.evaluations = 0

    def terms(self, graph: Graph) -> dict:
        from neurocc.backends import BACKENDS
        from neurocc.decode import predictions
        from neurocc.evaluate import accuracy_over_time, pareto_latency, pareto_power
        snn = self.finish(graph)
        # the reference simulator: bit-exact in every target's semantics, and the fastest backend here
        trace = BACKENDS["reference"].run(snn, self.x, self.steps, batch_size=self.batch_size)
        acc = accuracy_over_time(predictions(trace, snn.outputs[0]), self.truth)
        events = sum(e.sum(axis=1) for e in trace.events.values()) / len(self.x)
        self.evaluations += 1
        return {"M_e": float(1 - acc.max()), "P_l": pareto_latency(acc, self.a_ref),
                "P_p": pareto_power(acc, events, self.a_ref), "final_accuracy": float(acc[-1])}

    def loss(self, terms: dict) -> float:
        le, ll, lp = self.weights
        return le * terms["M_e"] + ll * terms["P_l"] + lp * terms["P_p"]


@dataclasses.dataclass
class _Point:
    """A candidate: rate factors (log2 eta per population: scalar or per channel) and V0 per population."""
    log_eta: dict
    v0: dict

    def graph(self, base: Graph) -> Graph:
        g = rescale(base, {n: 2.0 ** np.maximum(e, _lowest_log_eta(base, n)) for n, e in self.log_eta.items()})
        for n, v in self.v0.items():
            g.set_payload(n, g.payload(n).with_neuron(v0=float(v)))
        return g


def _lowest_log_eta(base: Graph, name: str) -> float:
    """A clipped population (ReLU6) keeps lambda <= its clip, so that its rate saturates no later than the ANN
    clips: cap * eta >= 1 in the normalised graph's units."""
    cap = base.payload(name).cap
    return -np.inf if cap is None else -float(np.log2(cap))


def _phase_layout(phase: str, pops: list, base: Graph, point: _Point):
    """(x0, lower, upper, decode): the phase's search vector around ``point`` and how to read it back."""
    if phase == "global":
        x0 = [0.0, float(np.mean(list(point.v0.values())))]
        lo, hi = [-LOG2_ETA_BOUND, V0_BOUNDS[0]], [LOG2_ETA_BOUND, V0_BOUNDS[1]]

        def decode(x):
            return _Point({n: point.log_eta[n] + x[0] for n in pops}, {n: x[1] for n in pops})
    elif phase == "layer":
        x0 = [0.0] * len(pops) + [point.v0[n] for n in pops]
        lo = [-LOG2_ETA_BOUND] * len(pops) + [V0_BOUNDS[0]] * len(pops)
        hi = [LOG2_ETA_BOUND] * len(pops) + [V0_BOUNDS[1]] * len(pops)

        def decode(x):
            return _Point({n: point.log_eta[n] + x[i] for i, n in enumerate(pops)},
                          {n: x[len(pops) + i] for i, n in enumerate(pops)})
    else:
        sizes = [base.shape(n)[0] if channel_scalable(base, n) else 1 for n in pops]
        offsets = np.cumsum([0] + sizes)
        x0 = [0.0] * int(offsets[-1])
        lo, hi = [-LOG2_ETA_BOUND] * len(x0), [LOG2_ETA_BOUND] * len(x0)

        def decode(x):
            x = np.asarray(x)
            eta = {n: point.log_eta[n] + (x[offsets[i]:offsets[i + 1]] if sizes[i] > 1 else x[offsets[i]])
                   for i, n in enumerate(pops)}
            return _Point(eta, dict(point.v0))
    return np.asarray(x0, float), np.asarray(lo, float), np.asarray(hi, float), decode


def _subplex(f: Callable, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, evaluations: int) -> None:
    """Minimise f with NLopt's Subplex within the bounds; f keeps its own record of the best point."""
    import nlopt
    opt = nlopt.opt(nlopt.LN_SBPLX, len(x0))
    opt.set_lower_bounds(lo)
    opt.set_upper_bounds(hi)
    opt.set_initial_step(0.25)
    opt.set_maxeval(evaluations)
    opt.set_min_objective(lambda x, grad: f(x))
    try:
        opt.optimize(np.clip(x0, lo, hi))
    except (nlopt.RoundoffLimited, ValueError, RuntimeError) as e:    # stops early; the best point is kept
        log.info("subplex stopped: %s", e)


def search(base: Graph, objective: Objective, budget: int, progress: Callable) -> tuple[Graph, dict]:
    """Run the three phases within ``budget`` evaluations; return the best graph and a report."""
    pops = [n for n in base.topo_order()
            if isinstance(base.payload(n), Population) and base.payload(n).readout == "spike"]
    if not pops:
        raise NeuroccError("--optimize: the network has no spiking population to scale")
    ticks = iter(progress(range(budget), desc="optimizing", unit="simulation"))
    start = _Point({n: np.float64(0.0) for n in pops}, {n: base.payload(n).neuron.v0 for n in pops})
    first = objective.terms(start.graph(base))
    next(ticks, None)
    best = {"loss": objective.loss(first), "terms": first, "point": start}
    report = {"objective_before": best["loss"], "terms_before": first, "phases": []}
    left = budget - 1
    for phase, share in PHASE_SHARES:
        n_eval = left if phase == PHASE_SHARES[-1][0] else int(round(share * (budget - 1)))
        n_eval = min(n_eval, left)
        if n_eval < 2:
            continue
        x0, lo, hi, decode = _phase_layout(phase, pops, base, best["point"])

        def f(x):
            point = decode(x)
            terms = objective.terms(point.graph(base))
            next(ticks, None)
            loss = objective.loss(terms)
            if loss < best["loss"]:
                best.update(loss=loss, terms=terms, point=point)
            return loss

        t0, before = time.perf_counter(), best["loss"]
        used = objective.evaluations
        _subplex(f, x0, lo, hi, n_eval)
        used = objective.evaluations - used
        left -= used
        report["phases"].append({"phase": phase, "dimensions": len(x0), "evaluations": used,
                                 "objective_before": before, "objective_after": best["loss"],
                                 "seconds": round(time.perf_counter() - t0, 2)})
    report.update(objective_after=best["loss"], terms_after=best["terms"], evaluations=objective.evaluations,
                  v0={n: float(v) for n, v in best["point"].v0.items()})
    return best["point"].graph(base), report


def _predict(ann: Graph, x: np.ndarray) -> np.ndarray:
    out = run_ann(ann, torch.from_numpy(x))[ann.outputs[0]]
    return out.reshape(len(x), -1).argmax(1).numpy()


def optimize(graph: Graph, ctx) -> Graph:
    """Minimise L_SNN (eq. 11) over global, layer and channel rate scales and V0 with Subplex."""
    opts = ctx.options
    if ctx.calib_x is None:
        raise NeuroccError("--optimize needs calibration data: pass --calib DATA.npz")
    x = ctx.calib_x[: opts.optimize_samples]
    ann = ctx.ann_graph
    ann_pred = np.concatenate([_predict(ann, x[i:i + opts.batch_size]) for i in range(0, len(x), opts.batch_size)])
    if ctx.calib_y is not None:
        truth = np.asarray(ctx.calib_y[: len(x)])
        a_ref = float(np.mean(ann_pred == truth))
    else:
        truth, a_ref = ann_pred, 1.0
    weights = opts.optimize_weights or (1.0, 1.0 / opts.optimize_steps, 0.0)
    objective = Objective(x, truth, a_ref, opts.optimize_steps, tuple(weights), ctx.finish)
    best, report = search(graph, objective, opts.optimize, ctx.progress)
    report.update(steps=opts.optimize_steps, samples=len(x), weights=list(weights), reference_accuracy=a_ref,
                  reference="labels" if ctx.calib_y is not None else "ann_predictions")
    best.meta["optimization"] = report
    log.info("optimize: L_SNN %.4f -> %.4f in %d evaluations", report["objective_before"],
             report["objective_after"], report["evaluations"])
    return best
