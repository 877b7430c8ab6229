"""Metrics from a run's trace, the same for every backend: accuracy over time and the Pareto metrics.

Pareto latency and power (anytime-perception eq. 4-5), with a_ANN in place of a_max for converted SNNs:

    P_l = sum_t (a_ANN - a_t)            P_p = sum_t e_t (a_ANN - a_t)

a_t is the accuracy (a fraction) after step t and e_t the synaptic events at step t per sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurocc.backends.trace import Trace
from neurocc.decode import predictions


def accuracy_over_time(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(steps,) fraction of samples whose prediction at step t equals the label."""
    return (predictions == labels[None, :]).mean(axis=1)


def pareto_latency(accuracy: np.ndarray, a_ann: float) -> float:
    return float(np.sum(a_ann - accuracy))


def pareto_power(accuracy: np.ndarray, events_per_sample: np.ndarray, a_ann: float) -> float:
    return float(np.sum(events_per_sample * (a_ann - accuracy)))


@dataclass
class RunSummary:
    """Everything ``neurocc run`` reports; ``to_json`` gives the stable JSON keys."""
    steps: int
    samples: int
    accuracy: np.ndarray                 # (steps,) of the first output
    accuracy_per_output: dict
    ann_accuracy: float
    reference: str                       # "labels" or "ann_predictions"
    spikes_per_step: np.ndarray          # per sample, summed over populations
    events_per_step: np.ndarray          # per sample
    spikes_per_population: dict          # name -> total per sample over all steps
    spikes_per_population_per_step: dict     # name -> (steps,) per sample
    events_per_population_per_step: dict     # name -> (steps,) per sample

    @property
    def pareto_latency(self) -> float:
        return pareto_latency(self.accuracy, self.ann_accuracy)

    @property
    def pareto_power(self) -> float:
        return pareto_power(self.accuracy, self.events_per_step, self.ann_accuracy)

    def to_json(self) -> dict:
        return {
            "steps": self.steps, "samples": self.samples,
            "accuracy": self.accuracy.tolist(), "ann_accuracy": self.ann_accuracy,
            "accuracy_reference": self.reference,
            "accuracy_per_output": {k: v.tolist() for k, v in self.accuracy_per_output.items()},
            "spikes_per_step": self.spikes_per_step.tolist(),
            "synaptic_events_per_step": self.events_per_step.tolist(),
            "spikes_per_population": self.spikes_per_population,
            "spikes_per_population_per_step": {k: v.tolist() for k, v in self.spikes_per_population_per_step.items()},
            "synaptic_events_per_population_per_step": {k: v.tolist()
                                                        for k, v in self.events_per_population_per_step.items()},
            "pareto_latency": self.pareto_latency, "pareto_power": self.pareto_power,
            "counts": "mean per sample",
        }


def per_step_means(counts: dict, samples: int) -> dict:
    """name -> (steps,) mean per sample of (steps, samples) integer counts."""
    return {k: v.sum(axis=1) / samples for k, v in counts.items()}


def summarize(trace: Trace, outputs: tuple, ann_predictions: dict, labels) -> RunSummary:
    """Compare the trace with labels (or, without labels, with the ANN's own predictions)."""
    reference = "labels" if labels is not None else "ann_predictions"
    per_output = {}
    for out in outputs:
        truth = labels if labels is not None else ann_predictions[out]
        per_output[out] = accuracy_over_time(predictions(trace, out), truth)
    first = outputs[0]
    truth = labels if labels is not None else ann_predictions[first]
    ann_acc = float(np.mean(ann_predictions[first] == truth))
    n = trace.samples

    def total_per_step(counts: dict) -> np.ndarray:        # integer sums first: exact, then one division
        return sum((v.sum(axis=1) for v in counts.values()), np.zeros(trace.steps, np.int64)) / n
    return RunSummary(steps=trace.steps, samples=n, accuracy=per_output[first], accuracy_per_output=per_output,
                      ann_accuracy=ann_acc, reference=reference, spikes_per_step=total_per_step(trace.spikes),
                      events_per_step=total_per_step(trace.events),
                      spikes_per_population={k: float(v.sum() / n) for k, v in trace.spikes.items()},
                      spikes_per_population_per_step=per_step_means(trace.spikes, n),
                      events_per_population_per_step=per_step_means(trace.events, n))
