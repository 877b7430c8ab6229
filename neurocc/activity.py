"""Spikes and synaptic events predicted before any simulation, from the ANN's activations on data.

A neuron i of a normalised population receives about z_i = a_i / lambda_i per step (its ANN activation
in units of its lambda; bayesian-fusion eq. 8) and fires at the rate of an integrate-and-fire neuron
under constant drive:

    subtract reset:        r = min(z, 1)
    reset to zero:         r = 1 / ceil(1 / z)        (compare >=;  1 / (floor(1 / z) + 1) for >)
    refractory R steps:    r = 1 / (1 / r0 + R)       (R steps of input ignored after each spike)

It starts firing once its input reaches it: after d_p steps, the sum of the projection delays along
the longest path from the input. Per step t > d_p, population p emits sum_i r_i spikes and causes
sum_i r_i * fan_out_i synaptic events (``ir.synapses.fan_out``); a Poisson-coded input fires at
min(|x| / lambda_in, 1). Means over the data's samples, like a trace's counts.
"""
from __future__ import annotations

import numpy as np

from neurocc.ir import Graph
from neurocc.ir.executor import run_ann
from neurocc.ir.snn import InputSource, Population
from neurocc.ir.synapses import fan_out


def firing_rate(z: np.ndarray, neuron) -> np.ndarray:
    """Spikes per step of neurons with constant drive ``z`` (in thresholds per step) under ``neuron``'s rules."""
    z = np.clip(np.asarray(z, np.float64), 0.0, None)
    reset, compare, refractory = neuron.firing_rule()
    if reset == "zero":
        with np.errstate(divide="ignore"):
            inverse = 1.0 / z
        steps = np.floor(inverse) + 1 if compare == ">" else np.ceil(inverse)
        rate = np.where(z > 0, 1.0 / np.maximum(steps, 1.0), 0.0)
    else:
        rate = np.minimum(z, 1.0)
    if refractory:
        with np.errstate(divide="ignore"):
            rate = np.where(rate > 0, 1.0 / (1.0 / rate + refractory), 0.0)
    return rate


def onset_steps(snn: Graph) -> dict:
    """d_p: the step after which population p's input has arrived (the longest delay path from an input)."""
    onset = {}
    for name in snn.topo_order():
        onset[name] = max((onset[src] + proj.delay for src, _, proj in snn.projections(name)), default=0)
    return onset


def predicted_activity(snn: Graph, ann: Graph, x: np.ndarray, steps: int, batch_size: int = 128) -> tuple[dict, dict]:
    """(spikes, events): name -> (steps,) mean per sample per step, predicted from the ANN on ``x``."""
    rates = {}
    sources = {snn.payload(n).source_node: n for n in snn.nodes()
               if isinstance(snn.payload(n), Population) and snn.payload(n).readout == "spike"}
    lambdas = snn.meta.get("lambdas", {})
    for start in range(0, len(x), batch_size):
        values = run_ann(ann, x[start:start + batch_size], keep=lambda n: n in sources)
        for node, name in sources.items():
            shape = (1, -1) + (1,) * (len(snn.shape(name)) - 1)
            lam = np.asarray(lambdas.get(name, snn.payload(name).scale), np.float64).reshape(shape)
            r = firing_rate(values[node].numpy() / lam, snn.payload(name).neuron).sum(axis=0)
            rates[name] = rates.get(name, 0.0) + r
    for name in snn.inputs:
        node = snn.payload(name)
        if isinstance(node, InputSource) and not node.coding.constant:
            rates[name] = np.minimum(np.abs(x) / node.scale, 1.0).sum(axis=0)
    onset = onset_steps(snn)
    t = np.arange(1, steps + 1)
    spikes, events = {}, {}
    for name, total in rates.items():
        mean = total / len(x)
        active = (t > onset[name]).astype(np.float64)
        spikes[name] = active * float(mean.sum())
        events[name] = active * float((mean * fan_out(snn, name)).sum()) if snn.nx.out_degree(name) else 0 * active
    return spikes, events
