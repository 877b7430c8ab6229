"""``neurocc estimate``: what a compiled network costs on its chip, before deploying it.

For one target: resources from the target's backend (cores, chips, neurons, synapses), spikes and
synaptic events predicted from the ANN's activations (``neurocc.activity``, seconds) and, when data is
given, measured by simulating it (the target's backend, the same trace ``neurocc run`` decodes), and
the energy of both (``neurocc.energy``) with every coefficient's source. With labelled data it also
gives the energy to reach the ANN's accuracy less one point, the form of bayesian-fusion §4.3's figure,
and NeuroBench's metrics (``neurocc.workload``: static ones always, the workload ones measured or, for the
activation sparsity, predicted).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from neurocc.activity import predicted_activity
from neurocc.decode import ann_predictions
from neurocc.energy import snn_energy
from neurocc.errors import NeuroccError
from neurocc.ir import Graph
from neurocc.workload import metrics as neurobench_metrics

ACCURACY_MARGIN = 0.01          # energy to reach the ANN's accuracy less one point


@dataclass
class TargetEstimate:
    name: str
    json: dict                                      # the stable per-target keys of ``estimate --json``
    energy_per_step: np.ndarray                     # cumulative joules after each step (measured if simulated)
    accuracy: Optional[np.ndarray] = None           # (steps,) with data


def estimate_target(name: str, snn: Graph, ann: Graph, hwmodel, backend, x_predict: np.ndarray, steps: int,
                    data: Optional[tuple] = None, batch_size: int = 64, must_map: bool = False,
                    progress: Callable = lambda it, **_: it, emitted=None) -> TargetEstimate:
    """The estimate of one compiled network (see the module docstring); ``data`` = (x, labels or None).
    A network over one of the chip's limits is a ``NeuroccError`` with ``must_map``, else flagged (``maps``).
    ``emitted``: an artifact's backend folder, where the chip toolchain's own mapping may be."""
    from neurocc.evaluate import summarize, per_step_means

    res = backend.resources(snn, hwmodel, emitted)
    if must_map and res.over_limits:
        raise NeuroccError(f"the network does not map onto {name}: {res.over_limits[0]}")
    neurons = {p.name: p.neurons for p in res.populations}
    cores = {p.name: p.cores or 0 for p in res.populations}
    spikes_pred, events_pred = predicted_activity(snn, x_predict, steps)
    predicted = snn_energy(hwmodel, events_pred, neurons, cores, steps)
    doc = {"cores": res.cores, "chips": res.chips, "neurons": res.neurons, "synapses": res.synapses,
           "mapped_by": res.method, "maps": not res.over_limits, "over_limits": list(res.over_limits),
           "predicted_spikes_per_inference": float(sum(s.sum() for s in spikes_pred.values())),
           "predicted_synaptic_events_per_inference": float(sum(e.sum() for e in events_pred.values())),
           "predicted_energy_per_inference_j": predicted.total, "coefficients": predicted.coefficients}
    energy, accuracy, spikes, events = predicted, None, doc["predicted_spikes_per_inference"], \
        doc["predicted_synaptic_events_per_inference"]
    population_spikes = float(sum(s.sum() for n, s in spikes_pred.items() if n not in snn.inputs))
    doc["neurobench"] = neurobench_metrics(snn, predicted_spikes=population_spikes, steps=steps)
    if data is not None:
        x, y = data
        trace = backend.run(snn, x, steps, batch_size=batch_size, progress=progress)
        summary = summarize(trace, snn.outputs, ann_predictions(ann, snn, x, batch_size), y)
        energy = snn_energy(hwmodel, per_step_means(trace.events, trace.samples), neurons, cores, steps)
        accuracy = summary.accuracy
        spikes, events = float(summary.spikes_per_step.sum()), float(summary.events_per_step.sum())
        doc["prediction_error"] = doc["predicted_synaptic_events_per_inference"] / events - 1 if events else None
        doc["accuracy"] = float(accuracy[-1])
        doc["ann_accuracy"] = summary.ann_accuracy
        doc["accuracy_reference"] = summary.reference
        goal = summary.ann_accuracy - ACCURACY_MARGIN
        reached = np.flatnonzero(accuracy >= goal)
        doc["steps_to_ann_minus_1pt"] = int(reached[0]) + 1 if reached.size else None
        doc["energy_to_ann_minus_1pt_j"] = float(energy.per_step[reached[0]]) if reached.size else None
        doc["neurobench"] = neurobench_metrics(snn, trace)
    doc.update({"predicted": data is None, "spikes_per_inference": spikes, "synaptic_events_per_inference": events,
                "energy_per_inference_j": energy.total, "energy_parts_j": energy.parts,
                "energy_per_population_j": energy.per_population})
    return TargetEstimate(name=name, json=doc, energy_per_step=energy.per_step, accuracy=accuracy)
