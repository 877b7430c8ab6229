"""Metrics from a run's trace, the same for every backend: accuracy over time and the Pareto metrics.

Pareto latency and power (anytime-perception eq. 4-5), with a_ANN in place of a_max for converted SNNs:

    P_l = sum_t (a_ANN - a_t)            P_p = sum_t e_t (a_ANN - a_t)

a_t is the accuracy (a fraction) after step t and e_t the synaptic events at step t per sample.

With a graph, ``summarize`` also decodes as ``DecodeOptions`` say (``neurocc.decode``: argmax, or Bayesian
fusion with a head, bayesian-fusion eq. 14-18; ``accuracy`` is then the fused decode's), reports every
intermediate-prediction head (its own argmax accuracy and its fusion with the final output), and applies an
early-exit rule (``neurocc.exit``): accuracy at the exit, mean exit step, spikes and synaptic events spent.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from neurocc import exit as exits
from neurocc.backends.trace import Trace
from neurocc.decode import (DECODES, DEFAULT_PRIOR_WEIGHT, Decoded, bayes_predictions, check_head,
                            check_prior_weight, decoded, heads, predictions)
from neurocc.errors import NeuroccError


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
    decode: str = "argmax"
    fusion: Optional[dict] = None            # {"head", "prior_weight"} with decode "bayes"
    heads: dict = field(default_factory=dict)    # head -> {"accuracy", "fused_accuracy"}: (steps,) each
    early_exit: Optional["ExitSummary"] = None

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
            "decode": self.decode, "fusion": self.fusion,
            "heads": {h: {k: v.tolist() for k, v in acc.items()} for h, acc in self.heads.items()},
            "early_exit": None if self.early_exit is None else self.early_exit.to_json(),
        }


@dataclass
class ExitSummary:
    """An early-exit rule applied to every sample: where each stopped, what it decided, what it spent."""
    rule: str
    parameters: dict                     # the rule's options, e.g. {"start": 1, "theta": 0.9}
    step: np.ndarray                     # (samples,) 1-based exit step
    correct: np.ndarray                  # (samples,) bool: the decision at the exit equals the reference
    spikes: np.ndarray                   # (samples,) spikes up to the exit step, all populations
    events: np.ndarray                   # (samples,) synaptic events up to the exit step

    def to_json(self) -> dict:
        return {"rule": self.rule, **self.parameters, "accuracy": float(self.correct.mean()),
                "mean_steps": float(self.step.mean()), "spikes_per_sample": float(self.spikes.mean()),
                "synaptic_events_per_sample": float(self.events.mean()), "exit_step_per_sample": self.step.tolist()}


@dataclass(frozen=True)
class DecodeOptions:
    """How ``run`` decodes and when it stops a sample (None: the default); ``resolved`` checks them."""
    decode: str = "argmax"
    head: Optional[str] = None
    prior_weight: Optional[float] = None
    exit_rule: str = "none"
    exit_start: Optional[int] = None
    exit_theta: Optional[float] = None
    margin: Optional[float] = None

    def resolved(self, graph, steps: int) -> "DecodeOptions":
        """These options with their defaults filled in; a readable ``NeuroccError`` for any that cannot apply."""
        if self.decode not in DECODES:
            raise NeuroccError(f"unknown decode {self.decode!r}; choose from {', '.join(DECODES)}")
        prior_weight = DEFAULT_PRIOR_WEIGHT if self.prior_weight is None else self.prior_weight
        check_prior_weight(prior_weight)
        return dataclasses.replace(self, head=self._head(graph), prior_weight=prior_weight,
                                   **self._exit_options(steps))

    def _head(self, graph) -> Optional[str]:
        head = None if self.head is None else check_head(graph, self.head)
        if self.decode != "bayes":
            if head is not None:
                raise NeuroccError("--head chooses the head that --decode bayes fuses with; add --decode bayes")
            return None
        if not heads(graph):
            raise NeuroccError("--decode bayes fuses the final output with an intermediate-prediction head, but this "
                               f"network has none (outputs: {', '.join(graph.outputs)})")
        return head or heads(graph)[0]

    def _exit_options(self, steps: int) -> dict:
        given = {"--exit-start": self.exit_start, "--exit-theta": self.exit_theta, "--margin": self.margin}
        used_by = {"none": (), "stable": ("--exit-start", "--exit-theta"), "margin": ("--exit-start", "--margin")}
        if self.exit_rule not in used_by:
            raise NeuroccError(f"unknown exit rule {self.exit_rule!r}; choose from {', '.join(used_by)}")
        for option, value in given.items():
            if value is not None and option not in used_by[self.exit_rule]:
                raise NeuroccError(f"{option} does not apply to --early-exit {self.exit_rule}")
        if self.exit_rule == "none":
            return {}
        start = 1 if self.exit_start is None else self.exit_start
        exits.check_start(start, steps)
        if self.exit_rule == "stable":
            theta = exits.DEFAULT_THETA if self.exit_theta is None else self.exit_theta
            exits.check_theta(theta)
            return {"exit_start": start, "exit_theta": theta}
        if self.margin is None:
            raise NeuroccError("--early-exit margin needs --margin M (a difference of firing rates, or of posterior "
                               "means with --decode bayes)")
        exits.check_margin(self.margin)
        return {"exit_start": start}

    def exit_parameters(self) -> dict:
        if self.exit_rule == "stable":
            return {"start": self.exit_start, "theta": self.exit_theta}
        return {"start": self.exit_start, "margin": self.margin}


def apply_exit(d: Decoded, options: DecodeOptions) -> exits.Exit:
    """The exit rule of (resolved) ``options`` on a decode: Algorithm 1 reads the evidence, margin the rates."""
    if options.exit_rule == "stable":
        return exits.stable_exit(d.evidence, options.exit_start, options.exit_theta, d.predictions)
    return exits.margin_exit(d.rates, options.margin, options.exit_start, d.predictions)


def exit_summary(trace: Trace, d: Decoded, options: DecodeOptions, truth: np.ndarray) -> ExitSummary:
    e = apply_exit(d, options)
    return ExitSummary(rule=options.exit_rule, parameters=options.exit_parameters(), step=e.step,
                       correct=e.decision == truth, spikes=exits.spent(trace.spikes, e.step),
                       events=exits.spent(trace.events, e.step))


def head_accuracies(trace: Trace, graph, per_output: dict, truth: np.ndarray, prior_weight: float) -> dict:
    """head -> {"accuracy": its own argmax's (against its own reference), "fused_accuracy": the final output
    fused with it (eq. 14, against the final output's reference)}, (steps,) each."""
    final = graph.outputs[0]
    return {h: {"accuracy": per_output[h],
                "fused_accuracy": accuracy_over_time(bayes_predictions(trace, graph, final, h, prior_weight), truth)}
            for h in heads(graph)}


def per_step_means(counts: dict, samples: int) -> dict:
    """name -> (steps,) mean per sample of (steps, samples) integer counts."""
    return {k: v.sum(axis=1) / samples for k, v in counts.items()}


def summarize(trace: Trace, outputs: tuple, ann_predictions: dict, labels, graph=None,
              options: Optional[DecodeOptions] = None) -> RunSummary:
    """Compare the trace with labels (or, without labels, with the ANN's own predictions). With ``graph`` (the
    SNN run), decode as ``options`` say (default: argmax, no exit) and report the heads."""
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
    anytime = {} if graph is None else _anytime(trace, graph, per_output, truth, options or DecodeOptions())
    return RunSummary(steps=trace.steps, samples=n, accuracy=anytime.pop("accuracy", per_output[first]),
                      accuracy_per_output=per_output,
                      ann_accuracy=ann_acc, reference=reference, spikes_per_step=total_per_step(trace.spikes),
                      events_per_step=total_per_step(trace.events),
                      spikes_per_population={k: float(v.sum() / n) for k, v in trace.spikes.items()},
                      spikes_per_population_per_step=per_step_means(trace.spikes, n),
                      events_per_population_per_step=per_step_means(trace.events, n), **anytime)


def _anytime(trace: Trace, graph, per_output: dict, truth: np.ndarray, options: DecodeOptions) -> dict:
    """RunSummary's fields from the decode options: accuracy, decode, fusion, heads, early_exit."""
    o = options.resolved(graph, trace.steps)
    found = {"decode": o.decode, "heads": head_accuracies(trace, graph, per_output, truth, o.prior_weight)}
    if o.decode == "argmax" and o.exit_rule == "none":
        return found
    d = decoded(trace, graph, graph.outputs[0], o.decode, o.head, o.prior_weight)
    found["accuracy"] = accuracy_over_time(d.predictions, truth)
    if o.decode == "bayes":
        found["fusion"] = {"head": o.head, "prior_weight": o.prior_weight}
    if o.exit_rule != "none":
        found["early_exit"] = exit_summary(trace, d, o, truth)
    return found
