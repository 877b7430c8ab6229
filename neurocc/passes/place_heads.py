"""place_heads: keep the chosen intermediate-prediction heads as read-out populations (bayesian-fusion §3.2, §4.4).

An intermediate-prediction (IP) head is a classifier attached at an intermediate block (global average pooling and a
fully-connected layer in the paper, Fig. 2); Bayesian fusion turns its firing probabilities mu^_j into a Beta prior on
the final output's, alpha_j = P mu^_j, beta_j = P (1 - mu^_j) (eq. 15-18), and predicts argmax_j of the posterior mean
(alpha_j + M_j) / (alpha_j + beta_j + N) (eq. 14; ``neurocc.decode.bayes_predictions``). Heads arrive as extra model
outputs, which ``lower_to_snn`` turns into read-out populations like the final one: a *candidate head* is every output
after the first (the final classifier) with the first's class count. Outputs with another class count are not heads
and stay as they are.

``--heads`` chooses which candidates stay:

* ``all`` (the default): every candidate; ``none``: no candidate; ``NAME...``: those (ONNX output names).
* ``auto``: the one that needs the least energy to reach the target accuracy, or none (the paper's Fig. 5: head (b)
  halves the energy of the final output alone, head (a), too shallow, needs more than no head at all).

A dropped candidate's read-out population goes, with its projections and any population only it needed; nothing the
kept outputs need changes, so the final output reads exactly what it read before. ``snn.meta["heads"]`` lists the kept
heads (SNN output names): what ``neurocc run`` fuses.

How ``auto`` measures (bayesian-fusion §4.3-4.4, in form): for no head and for each candidate alone, the network
holding only that head is passed through the passes after this one (``ctx.finish``: quantisation and the chip's
mapping for integer targets; not ``optimize``/``calibrate_snn``, as ``optimize`` judges its candidates without them) and
simulated on the reference simulator (bit-exact in every target's semantics) on the first ``HEAD_SAMPLES`` labelled
calibration images for ``--heads-steps`` steps. Each step's prediction is the fusion of the final output with the head
at prior weight ``--prior-weight`` (no head: the final output alone, ``neurocc.decode.predictions``). The energy after
each step is the target's hardware model's (``neurocc.energy.snn_energy``: synaptic events, neuron updates, static
power); a float target has none and is costed as the paper does, 26 pJ per synaptic event (TrueNorth, Merolla 2014,
the shipped ``truenorth`` model's figure). A head's own synapses count: the variant's graph holds the head's
projections, so the spikes of the populations feeding it cause the head's synaptic events too. The energy to reach
is the energy after the first step whose accuracy is at least the ANN's on the same images less one point
(``neurocc.estimate.ACCURACY_MARGIN``). The least wins; a head must need strictly less than no head; a variant that
never reaches the goal within the steps does not compete, and when none does, no head is kept and the report says so.

Why ``--heads-steps`` and not ``--calibration-steps``: the latter is the latency T at which ``calibrate_snn`` corrects
rates, chosen short; the heads search needs a horizon long enough for the variants to reach ANN - 1 pt, and tying
the two would let a short calibration latency cut the search off.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Optional

import numpy as np

from neurocc.decode import candidate_heads, classes
from neurocc.errors import NeuroccError
from neurocc.ir import Graph

log = logging.getLogger(__name__)
HEAD_SAMPLES = 512          # calibration images simulated per variant (fewer if --calib-samples is lower)


def model_name(graph: Graph, output: str) -> str:
    """The ONNX output a read-out population stands for (its name, unless lowering had to rename it)."""
    return getattr(graph.payload(output), "source_node", None) or output


def _named(graph: Graph, names: tuple) -> list[str]:
    """The candidate read-outs ``names`` (ONNX output or read-out names) stand for; else a ``NeuroccError``."""
    heads = candidate_heads(graph)
    listed = ", ".join(model_name(graph, h) for h in heads) or "none (the model has no other output with "\
        f"{classes(graph, graph.outputs[0])} classes)"
    by_name = {n: o for o in graph.outputs for n in (o, model_name(graph, o))}
    chosen = []
    for name in names:
        out = by_name.get(name)
        if out is None:
            raise NeuroccError(f"--heads: {name!r} is not an output of the model; candidate heads: {listed}")
        if out == graph.outputs[0]:
            raise NeuroccError(f"--heads: {name!r} is the final output, not a head; candidate heads: {listed}")
        if out not in heads:
            raise NeuroccError(f"--heads: {name!r} has {classes(graph, out)} classes, the final output "
                               f"{classes(graph, graph.outputs[0])}; candidate heads: {listed}")
        chosen.append(out)
    return chosen


def keep_heads(graph: Graph, heads: list) -> Graph:
    """A copy of ``graph`` with only the candidate heads ``heads``; other outputs and all they need stay."""
    drop = set(candidate_heads(graph)) - set(heads)
    g = graph.copy()
    g.outputs = tuple(o for o in graph.outputs if o not in drop)
    g.remove_dead()
    g.meta["heads"] = [o for o in g.outputs if o in heads]
    return g


def ann_outputs_like(ann: Graph, snn: Graph) -> Graph:
    """The ANN reference with the outputs the SNN kept, in its order (an artifact pairs them one to one)."""
    kept = {model_name(snn, o) for o in snn.outputs}
    if set(ann.outputs) <= kept:
        return ann
    out = ann.copy()
    out.outputs = tuple(o for o in ann.outputs if o in kept)
    out.remove_dead()
    return out


def place_heads(graph: Graph, ctx) -> Graph:
    """Keep the candidate heads ``--heads`` names, or (``auto``) the one that reaches ANN - 1 pt with the least
    energy under Bayesian fusion (bayesian-fusion eq. 14-18, §4.4); record them in ``meta["heads"]``."""
    choice = ctx.options.heads
    if choice == ("all",):
        heads = candidate_heads(graph)
    elif choice == ("none",):
        heads = []
    elif choice == ("auto",):
        heads, report = _auto(graph, ctx)
        out = keep_heads(graph, heads)
        out.meta["place_heads"] = report
        out.meta.setdefault("notes", []).append(_note(report))
        return out
    else:
        heads = _named(graph, choice)
    return keep_heads(graph, heads)


# ---------------------------------------------------------------------------------------------------- auto
def _auto(graph: Graph, ctx) -> tuple[list, dict]:
    """Measure no head and each candidate alone (module docstring); return the kept heads and the report."""
    from neurocc.decode import ann_predictions
    from neurocc.estimate import ACCURACY_MARGIN

    opts = ctx.options
    if ctx.calib_x is None or ctx.calib_y is None:
        raise NeuroccError("--heads auto needs labelled calibration data: --calib DATA.npz with labels y "
                           "(and a data-based --normalization)")
    t0 = time.perf_counter()
    x, y = ctx.calib_x[:HEAD_SAMPLES], np.asarray(ctx.calib_y[:HEAD_SAMPLES])
    final = graph.outputs[0]
    ann_accuracy = float(np.mean(ann_predictions(ctx.ann_graph, graph, x, opts.batch_size)[final] == y))
    goal = ann_accuracy - ACCURACY_MARGIN
    finish = ctx.finish or (lambda g: g)
    rows = []
    for head in ctx.progress([None] + candidate_heads(graph), desc="placing heads", unit="variant"):
        snn = finish(keep_heads(graph, [] if head is None else [head]))
        accuracy, energy, model = measure(snn, x, y, opts.heads_steps, head, opts.prior_weight, ctx.hwmodel,
                                          opts.target, opts.batch_size)
        rows.append(_row(head, model_name(graph, head) if head else None, accuracy, energy, goal))
    best = min(rows, key=lambda r: (math.inf if r["energy_to_goal_j"] is None else r["energy_to_goal_j"],
                                    r["head"] is not None))   # ties (and nothing reaching the goal) keep no head
    report = {"mode": "auto", "samples": len(x), "steps": opts.heads_steps, "prior_weight": opts.prior_weight,
              "ann_accuracy": ann_accuracy, "goal_accuracy": goal, "energy_model": model, "candidates": rows,
              "kept": [] if best["head"] is None else [best["head"]],
              "reached": best["energy_to_goal_j"] is not None, "seconds": round(time.perf_counter() - t0, 2)}
    log.info("place_heads: kept %s", report["kept"] or "no head")
    return report["kept"], report


def measure(snn: Graph, x: np.ndarray, y: np.ndarray, steps: int, head: Optional[str], prior_weight: float,
            hwmodel, target: str, batch_size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(accuracy after each step, cumulative energy per sample after each step in joules, the energy model) of
    ``snn`` on ``x``: the final output fused with ``head`` (None: alone), simulated on the reference simulator."""
    from neurocc.backends import BACKENDS
    from neurocc.decode import bayes_predictions, predictions
    from neurocc.evaluate import accuracy_over_time

    trace = BACKENDS["reference"].run(snn, x, steps, batch_size=batch_size)
    final = snn.outputs[0]
    pred = (predictions(trace, final) if head is None else
            bayes_predictions(trace, snn, final, head, prior_weight))
    energy, model = energy_per_step(snn, trace, hwmodel, target)
    return accuracy_over_time(pred, y), energy, model


def energy_per_step(snn: Graph, trace, hwmodel, target: str) -> tuple[np.ndarray, str]:
    """Cumulative energy per sample after each step of ``trace`` (joules) and what it counts: the hardware
    model's E_SNN (``neurocc.energy``) for an integer target, 26 pJ per synaptic event for a float one
    (bayesian-fusion §4.3)."""
    from neurocc.backends import BACKENDS, TARGETS
    from neurocc.energy import PJ, snn_energy
    from neurocc.evaluate import per_step_means
    from neurocc.hwmodels import load_hwmodel

    if hwmodel is None:
        paper = load_hwmodel("truenorth").energy.synaptic_event_pj
        events = sum((e.sum(axis=1) for e in trace.events.values()), np.zeros(trace.steps, np.int64))
        joules = np.cumsum(events / trace.samples * paper * PJ)
        return joules, f"{paper:g} pJ per synaptic event (bayesian-fusion §4.3)"
    res = BACKENDS[TARGETS[target].backend].resources(snn, hwmodel)
    neurons = {p.name: p.neurons for p in res.populations}
    cores = {p.name: p.cores or 0 for p in res.populations}
    energy = snn_energy(hwmodel, per_step_means(trace.events, trace.samples), neurons, cores, trace.steps)
    return energy.per_step, f"{hwmodel.name} hardware model (synaptic events, neuron updates, static power)"


def _row(head: Optional[str], name: Optional[str], accuracy: np.ndarray, energy: np.ndarray, goal: float) -> dict:
    reached = np.flatnonzero(accuracy >= goal)
    return {"head": head, "model_output": name,
            "steps_to_goal": int(reached[0]) + 1 if reached.size else None,
            "energy_to_goal_j": float(energy[reached[0]]) if reached.size else None,
            "final_accuracy": float(accuracy[-1]), "energy_j": float(energy[-1])}


def _note(report: dict) -> str:
    kept = report["kept"][0] if report["kept"] else "no head"
    why = ("the least energy to reach" if report["reached"] else
           f"no variant reached ANN - 1 pt within {report['steps']} steps (raise --heads-steps); nothing gained from")
    return (f"--heads auto: kept {kept}: {why} {100 * report['goal_accuracy']:.1f} % (ANN - 1 pt) on "
            f"{report['samples']} calibration images with Bayesian fusion at P = {report['prior_weight']:g}; "
            f"energy: {report['energy_model']}")
