"""Energy per inference: an SNN's from its event counts and a chip's coefficients, an ANN's from its MACs.

The SNN model (per inference, over T steps of dt each, every count a mean per sample):

    E_SNN = E_syn * N_events + E_upd * N_neurons * T + P_static * cores * T * dt

N_events are synaptic events (each spike times the synapses leaving its neuron, anytime-perception §4);
every on-chip neuron is updated once per step; static power is drawn by every core the network
occupies for as long as it runs. The coefficients come from the hardware model (hwmodels/NAME.toml,
``[energy]``), each with its source, and are reported with the result. TrueNorth's 26 pJ per synaptic
event (Merolla 2014) is the figure bayesian-fusion §4.3 uses for its energy comparison.

The ANN baseline is the conventional one (bntt §4.3, Table 2; Horowitz 2014, 45 nm CMOS):

    E_ANN = MACs * 4.6 pJ        (a 32-bit float multiply, 3.7 pJ, and add, 0.9 pJ)

with MACs counted densely over the weighted layers (every weight of every output, zeros included).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurocc.ir import Graph, ops

E_MAC_PJ = 4.6
E_MAC_SOURCE = "bntt Table 2 (Horowitz 2014, 45 nm): 32-bit float MAC 4.6 pJ (MULT 3.7 + ADD 0.9)"
PJ = 1e-12


@dataclass
class SnnEnergy:
    """Energy of one inference in joules: ``parts`` (synaptic, neuron_updates, static) and their sum,
    ``per_population`` (synaptic energy of the events a population's spikes cause plus its neurons'
    updates and cores' static energy), ``per_step`` (the cumulative total after each step) and the
    coefficients used with their sources."""
    parts: dict
    total: float
    per_population: dict
    per_step: np.ndarray
    coefficients: dict


def snn_energy(hwmodel, events_per_step: dict, neurons: dict, cores: dict, steps: int) -> SnnEnergy:
    """E_SNN for mean per-sample synaptic events per step (name -> (steps,)), on-chip neurons and cores per
    population (name -> int), over ``steps`` steps of the hardware model's dt."""
    e = hwmodel.energy
    dt_s = hwmodel.timing.dt_ms * 1e-3
    per_population, per_step = {}, np.zeros(steps)
    parts = {"synaptic": 0.0, "neuron_updates": 0.0, "static": 0.0}
    for name in neurons:
        events = np.asarray(events_per_step.get(name, np.zeros(steps)), np.float64)[:steps]
        syn = events * e.synaptic_event_pj * PJ
        upd = np.full(steps, neurons[name] * e.neuron_update_pj * PJ)
        static = np.full(steps, cores[name] * e.static_mw_per_core * 1e-3 * dt_s)
        parts["synaptic"] += float(syn.sum())
        parts["neuron_updates"] += float(upd.sum())
        parts["static"] += float(static.sum())
        per_population[name] = float(syn.sum() + upd.sum() + static.sum())
        per_step += syn + upd + static
    coefficients = {key: {"value": getattr(e, key), "source": hwmodel.source(f"energy.{key}")}
                    for key in ("synaptic_event_pj", "neuron_update_pj", "static_mw_per_core")}
    coefficients["dt_ms"] = {"value": hwmodel.timing.dt_ms, "source": hwmodel.source("timing.dt_ms")}
    return SnnEnergy(parts=parts, total=float(sum(parts.values())), per_population=per_population,
                     per_step=np.cumsum(per_step), coefficients=coefficients)


def ann_macs(graph: Graph) -> int:
    """Multiply-accumulates of one ANN inference: each Conv/Gemm output element costs its fan-in."""
    total = 0
    for name in graph.nodes():
        op = graph.payload(name)
        if isinstance(op, (ops.Conv, ops.Gemm)):
            per_output = int(np.prod(op.weight.shape[1:]))       # (I / groups) x kh x kw, or the inputs
            total += int(np.prod(graph.shape(name))) * per_output
    return total


def ann_energy(graph: Graph) -> dict:
    macs = ann_macs(graph)
    return {"macs": macs, "energy_j": macs * E_MAC_PJ * PJ, "e_mac_pj": E_MAC_PJ, "source": E_MAC_SOURCE}
