"""Spikes and synaptic events predicted before any simulation, from the network's rates on data.

A neuron i of a normalised population receives about z_i per step, in thresholds (for the first layer,
its ANN activation in units of its lambda; bayesian-fusion eq. 8), and fires at the rate of an
integrate-and-fire neuron under constant drive:

    subtract reset:        r = min(z, 1)
    reset to zero:         r = 1 / ceil(1 / z)        (compare >=;  1 / (floor(1 / z) + 1) for >)
    refractory R steps:    r = 1 / (1 / r0 + R)       (R steps of input ignored after each spike)

Layer by layer, a population's drive is computed from its sources' predicted rates (``run_rate`` with
these rules, on the dequantised graph of an integer target), so a chip's rate losses propagate: with
reset by subtraction the rates are the ANN's normalised activations. All of its input has arrived after
d_p steps (the sum of projection delays along the longest path from the input); per step t > d_p it emits
sum_i r_i spikes and causes sum_i r_i * fan_out_i synaptic events (``ir.synapses.fan_out``). Before d_p
(the onset: delays, TrueNorth's splitter ticks) it already fires on its bias and on what arrived along
shorter paths: there the rates follow the same rules step by step,

    z_p(t) = b_p + sum over projections q -> p of chain_q( r_q(t - d_q) ),   r(t) = 0 for t <= 0,

on the first ``TRANSIENT_SAMPLES`` samples. A Poisson-coded input fires at min(|x| / lambda_in, 1). Means over
the data's samples, like a trace's counts.

A directly trained SNN (graph meta ``trained_snn``) has no rate model: its leaks, schedules and trained thresholds
make its rates those of its own dynamics, not of an ANN. Its activity is then simulated (the reference simulator)
on the first ``TRANSIENT_SAMPLES`` samples of the data.

Weighted spikes (phase coding with K phases, ``ir.neurons.WeightedIF``) carry a population's normalised value
a in [0, 1 - 2^-K] as its K-bit binary fraction once per period, so it emits popcount(round(a 2^K)) / K spikes
per step (a phase-coded input likewise, with a = |x| / lambda_in); the noise spikes of the first period
(weighted-spikes §4.3) are not predicted.
"""
from __future__ import annotations

import numpy as np
import torch

from neurocc.ir import Graph
from neurocc.ir.executor import apply_chain, run_rate
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


def spikes_per_step(value: np.ndarray, neuron) -> np.ndarray:
    """The spikes per step that carry ``value`` (a rate, or under weighted spikes a K-bit fraction: its bits)."""
    phases = getattr(neuron, "phases", 0)
    return value if not phases else phase_bits(value, phases) / phases


def phase_bits(value: np.ndarray, phases: int) -> np.ndarray:
    """popcount(round(|value| 2^K)), the level clipped to K bits: the ones in a period of weighted spikes."""
    levels = np.minimum(np.rint(np.abs(np.asarray(value, np.float64)) * 2.0 ** phases), 2 ** phases - 1).astype(np.int64)
    return np.bitwise_count(levels)


def onset_steps(snn: Graph) -> dict:
    """d_p: the step after which population p's input has arrived (the longest delay path from an input)."""
    onset = {}
    for name in snn.topo_order():
        onset[name] = max((onset[src] + proj.delay for src, _, proj in snn.projections(name)), default=0)
    return onset


TRANSIENT_SAMPLES = 16


@torch.no_grad()
def transient_rates(view: Graph, x: np.ndarray, steps: int, rate_of) -> dict:
    """name -> (steps, *shape): each spiking population's rate per step t = 1..steps from the inputs that have
    reached it by then (the recursion in the module docstring), mean over the samples of ``x``. A population's
    rates per sample are kept only until its last target has read them."""
    readers = {n: view.nx.out_degree(n) for n in view.nodes()}
    rates, means = {}, {}
    for name in view.topo_order():
        node = view.payload(name)
        if isinstance(node, InputSource):
            value = torch.as_tensor(np.asarray(x), dtype=torch.float32) / node.scale
            if not node.coding.constant:
                value = value.abs().clamp(max=1.0)
            rates[name] = value[None].expand((steps,) + tuple(value.shape))
            continue
        drive = torch.as_tensor(np.array(node.bias), dtype=torch.float32).expand((steps, len(x)) + tuple(node.shape))
        for src, _, proj in view.projections(name):
            r = rates[src]
            if proj.delay:
                r = torch.cat([torch.zeros_like(r[:proj.delay]), r[:steps - proj.delay]])[:steps]
            flat = apply_chain(proj.ops, r.reshape((-1,) + tuple(r.shape[2:])))
            drive = drive + flat.reshape((steps, len(x)) + tuple(flat.shape[1:]))
            readers[src] -= 1
            if not readers[src]:
                del rates[src]
        if node.readout == "spike":
            rates[name] = rate_of(name, drive)
            means[name] = rates[name].mean(dim=1).double().numpy()
    return means


def predicted_activity(snn: Graph, x: np.ndarray, steps: int, batch_size: int = 128) -> tuple[dict, dict]:
    """(spikes, events): name -> (steps,) mean per sample per step, predicted from the rates on ``x``."""
    from neurocc.passes.quantize import dequantize

    if "trained_snn" in snn.meta:
        return _simulated_activity(snn, x[:TRANSIENT_SAMPLES], steps)
    view = dequantize(snn) if snn.meta.get("mode") == "integer" else snn
    spiking = [n for n in snn.nodes() if isinstance(snn.payload(n), Population) and snn.payload(n).readout == "spike"]

    def rate(name, drive):
        neuron = snn.payload(name).neuron
        value = firing_rate(drive.double().numpy(), neuron)
        if getattr(neuron, "phases", 0):                 # the largest K-bit fraction
            value = np.minimum(value, 1.0 - 2.0 ** -neuron.phases)
        return torch.from_numpy(value).to(drive.dtype)
    rates = {}
    for start in range(0, len(x), batch_size):
        values = run_rate(view, x[start:start + batch_size], keep=lambda n: n in spiking, rate_of=rate)
        for name in spiking:
            spikes = spikes_per_step(values[name].double().numpy(), snn.payload(name).neuron)
            rates[name] = rates.get(name, 0.0) + spikes.sum(axis=0)
    for name in snn.inputs:
        node = snn.payload(name)
        if isinstance(node, InputSource) and not node.coding.constant:
            value = np.minimum(np.abs(x) / node.scale, 1.0)
            phases = getattr(node.coding, "phases", 0)
            rates[name] = (phase_bits(value, phases) / phases if phases else value).sum(axis=0)
    onset = onset_steps(snn)
    longest = min(steps, max((onset[n] for n in spiking), default=0))
    early = transient_rates(view, x[:TRANSIENT_SAMPLES], longest, rate) if longest else {}
    spikes, events = {}, {}
    for name, total in rates.items():
        mean = total / len(x)
        fan = fan_out(snn, name) if snn.nx.out_degree(name) else np.zeros_like(mean)
        spikes[name] = np.full(steps, float(mean.sum()))
        events[name] = np.full(steps, float((mean * fan).sum()))
        start = min(onset[name], steps)
        if start:                       # before all its input has arrived: the step-by-step rates
            flat = early[name][:start].reshape(start, -1)
            spikes[name][:start] = flat.sum(axis=1)
            events[name][:start] = flat @ fan.reshape(-1)
    return spikes, events


def _simulated_activity(snn: Graph, x: np.ndarray, steps: int) -> tuple[dict, dict]:
    """(spikes, events) per population and step, means over ``x``, from the reference simulator."""
    from neurocc.backends.reference.simulator import Simulator

    trace = Simulator(snn).run(x, steps)
    return ({n: s.mean(axis=1) for n, s in trace.spikes.items()},
            {n: e.mean(axis=1) for n, e in trace.events.items()})
