"""Decoding a trace's read-outs into class predictions, the same for every backend.

Arrays are indexed like a ``Trace``'s: (steps, samples, classes), index 0 of the step axis is step t = 1.

Argmax (the default)
* An accumulating read-out predicts argmax_j V_j(t), the membrane potential after step t.
* A spiking read-out predicts the class with the most spikes so far, M_j(t); ties go to the higher
  membrane potential, then to the lower class index.

Bayesian fusion with an intermediate-prediction head (bayesian-fusion §3, eq. 9-18)
The final output's spikes over N steps are Binomial(N, mu_j) (eq. 9-10); the head's firing probability
mu^_j sets a Beta(alpha_j, beta_j) prior with alpha_j = P mu^_j, beta_j = P (1 - mu^_j) (eq. 15-18), P the
prior weight; the decision is the argmax of the posterior mean (eq. 14)

    mu_j = (alpha_j + M_j) / (alpha_j + beta_j + N) = (P mu^_j + M_j) / (P + N)      (alpha_j + beta_j = P, eq. 16)

at every step, with N = t. How M and mu^ are formed from neurocc's read-outs at step t:
* a spiking read-out (``--readout spike``): M_j(t) its spikes so far, mu^_j(t) = M_j(t) / t.
* an accumulating read-out (the default) never spikes. Its potential V_j(t) sums the ANN's output (logits,
  lambda = 1 in ``normalize``), so it is first put in the units the paper's spiking output layer has after
  data-based normalisation (eq. 8): divided by lambda_out, the percentile of the output's positive
  activations on the calibration data (``calibrate``; 1 without calibration data), and by its threshold
  theta (float mode 1, integer mode the chip's integer in state units, times a read-out's quantisation gain):

      M_j(t)   = clip(V_j(t) / u, 0, t)                 u = theta lambda_out  (``rate_units``)
      mu^_j(t) = M_j(t) / t

  M_j(t) is the count of an IF neuron with threshold u, reset by subtraction and V(0) = 0 (what
  ``lower_to_snn`` gives every accumulating read-out, and the paper's V0) under the same drive, plus its
  residual potential in thresholds: exactly so while the drive of each step (input plus bias) lies in [0, u],
  the range a normalised network represents (by induction the residual V - count u stays in [0, u), so at
  most one spike per step is due). A negative drive cannot take spikes back, hence the clip at 0; one spike
  per step at most, hence t. The residual keeps what flooring to the count would throw away: with whole
  counts most early decisions are ties, which the prior then breaks, and on the Fashion-MNIST network of the
  README fusion fell below the final output alone (P = 1: 73-78 % at step 8 with whole counts, 81-82 % with the
  residual, 85.8 % for argmax). Eq. 14's posterior mean is the same expression for a fractional count.
  Without the division by lambda_out the winning classes' logits (lambda_out 3 to 20 there) saturate M at t.
* The head's mu^ is taken at the same step t as the final output's M: the head runs in the same network.
* theta is in the units of V: a phase-coded read-out in integer mode holds V in units of 2^-K of the float
  one (``ir.neurons.WeightedIF``), so its theta counts 2^K times (``threshold_units``); both modes then read
  the same. Under phase coding V / theta grows by about (1 - 2^-K) / K of the activation per step (eq. 8), not
  by the activation as under rate coding: the rates, counts and P are on that scale, and eq. 9's Bernoulli
  spikes are an approximation of weighted ones.

Ties of the posterior mean go to the higher potential V_j(t) of the final read-out, then to the lower class
index: the argmax rule's, so that P = 0 decides exactly as argmax does (the clip keeps the order of V).

``decoded`` also gives the scores the exit rules (``neurocc.exit``) read: the evidence in spikes (argmax:
V_j / u or M_j; fusion: alpha_j + M_j, the posterior's numerator) and the rates (evidence / t; fusion:
the posterior mean, evidence / (P + t)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from neurocc.backends.trace import Trace
from neurocc.errors import NeuroccError
from neurocc.ir.neurons import WeightedIF

DECODES = ("argmax", "bayes")

# The paper does not state its P. The prior counts as P steps of the final output's spikes (the numerator of
# eq. 14 is P mu^_j + M_j): the head decides the first steps, the final output from about step P on. neurocc's
# converted networks have their final output within 1 pt of the ANN after 2-32 steps (README, energy to reach
# ANN - 1 pt), so P should hand the decision over within that range; 10 is also compile's --prior-weight
# default, the P that ``place_heads --heads auto`` chooses a head for.
DEFAULT_PRIOR_WEIGHT = 10.0


def _argmax_ties_by(score: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """argmax over the last axis of ``score``; ties go to the higher ``tiebreak``, then to the lower index."""
    best = score.max(axis=-1, keepdims=True)
    return np.where(score == best, tiebreak.astype(np.float64), -np.inf).argmax(axis=-1)


def predictions(trace: Trace, output: str) -> np.ndarray:
    """(steps, samples) int64: the predicted class of ``output`` after every step (argmax)."""
    r = trace.readouts[output]
    if r.count is None:
        return r.potential.argmax(axis=2)
    return _argmax_ties_by(r.count, r.potential)


def final_readout(trace: Trace, output: str) -> np.ndarray:
    """(samples, classes): what ``output`` reads after the last step (spike counts for a spiking read-out)."""
    r = trace.readouts[output]
    return (r.potential if r.count is None else r.count)[-1]


def _steps(trace: Trace) -> np.ndarray:
    """(steps, 1, 1): t = 1..steps, to broadcast against read-outs."""
    return np.arange(1, trace.steps + 1, dtype=np.int64)[:, None, None]


def threshold_units(graph, output: str):
    """theta of ``output``'s read-out in the units of its recorded potential: its threshold, times 2^K for a
    phase-coded read-out in integer mode (V in units of 2^-K, ``WeightedIF``); an int in integer mode."""
    neuron = graph.payload(output).neuron
    if graph.meta.get("mode") != "integer":
        return float(neuron.threshold)
    return int(neuron.threshold) << (neuron.phases if isinstance(neuron, WeightedIF) else 0)


def rate_units(graph, output: str) -> float:
    """u: the potential of ``output`` that stands for one spike of a normalised spiking output layer (module
    docstring): theta (``threshold_units``) x the read-out's quantisation gain x lambda_out for an accumulating
    read-out; theta for a spiking one."""
    node = graph.payload(output)
    theta = float(threshold_units(graph, output))
    if node.readout != "accumulate":
        return theta
    gain = graph.meta.get("readout_gains", {}).get(output, 1.0)
    stats = graph.meta.get("calibration", {}).get("nodes", {}).get(node.source_node, {})
    return theta * gain * max(float(stats.get("percentile", 1.0)), 1e-12)


def spike_counts(trace: Trace, graph, output: str) -> np.ndarray:
    """(steps, samples, classes) M_j(t): a spiking read-out's spikes so far (int64); for an accumulating one
    clip(V_j(t) / u, 0, t) (float64), the spikes of an IF neuron with V(0) = 0 and reset by subtraction under
    the same drive plus its residual in thresholds (module docstring)."""
    r = trace.readouts[output]
    if r.count is not None:
        return r.count
    return np.clip(r.potential / rate_units(graph, output), 0, _steps(trace))


def firing_probabilities(trace: Trace, graph, output: str) -> np.ndarray:
    """(steps, samples, classes) float64 mu^_j(t) = M_j(t) / t (module docstring)."""
    return spike_counts(trace, graph, output) / _steps(trace)


def check_prior_weight(prior_weight: float) -> None:
    if not (math.isfinite(prior_weight) and prior_weight >= 0):
        raise NeuroccError(f"the prior weight P (--prior-weight) must be a finite number >= 0, got {prior_weight}")


def _fusion_terms(counts: np.ndarray, prior_mean: np.ndarray, prior_weight: float):
    """(alpha_j + M_j, alpha_j + beta_j + N) of eq. 14, with alpha_j = P mu^_j (eq. 17), alpha_j + beta_j = P
    (eq. 16, so that the denominator is the same for every class) and N = t."""
    check_prior_weight(prior_weight)
    alpha = prior_weight * prior_mean
    n = np.arange(1, counts.shape[0] + 1, dtype=np.float64)[:, None, None]
    return alpha + counts, prior_weight + n


def posterior_means(counts: np.ndarray, prior_mean: np.ndarray, prior_weight: float) -> np.ndarray:
    """(steps, samples, classes) float64: the posterior mean mu_j^EAP = (alpha_j + M_j) / (alpha_j + beta_j + N)
    (eq. 14) after every step N = t, from the final output's spike counts ``counts`` M_j(t) and the head's
    firing probabilities ``prior_mean`` mu^_j(t), both (steps, samples, classes), and the prior weight P."""
    numerator, denominator = _fusion_terms(counts, prior_mean, prior_weight)
    return numerator / denominator


def bayes_predictions(trace: Trace, graph, final: str, head: str, prior_weight: float) -> np.ndarray:
    """(steps, samples) int64: the class of the largest posterior mean (eq. 14) of ``final`` fused with the
    prior of ``head`` (eq. 15-18) after every step; ties as the module docstring says."""
    return decoded(trace, graph, final, "bayes", head, prior_weight).predictions


@dataclass(frozen=True)
class Decoded:
    """One decode of a read-out over a run: its predictions and the scores the exit rules read."""
    predictions: np.ndarray     # (steps, samples) int64
    evidence: np.ndarray        # (steps, samples, classes) float64, in spikes (module docstring)
    normaliser: np.ndarray      # (steps, 1, 1) float64: t (argmax) or P + t (fusion)

    @property
    def rates(self) -> np.ndarray:
        """(steps, samples, classes) float64: firing rates (argmax) or posterior means (fusion)."""
        return self.evidence / self.normaliser


def decoded(trace: Trace, graph, final: str, decode: str = "argmax", head: Optional[str] = None,
            prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> Decoded:
    """``final``'s read-out decoded by ``decode``: "argmax", or "bayes" fused with ``head``'s prior."""
    r = trace.readouts[final]
    t = _steps(trace).astype(np.float64)
    if decode == "argmax":
        evidence = r.potential / rate_units(graph, final) if r.count is None else r.count
        return Decoded(predictions(trace, final), np.asarray(evidence, np.float64), t)
    if decode != "bayes":
        raise NeuroccError(f"unknown decode {decode!r}; choose from {', '.join(DECODES)}")
    numerator, denominator = _fusion_terms(spike_counts(trace, graph, final),
                                           firing_probabilities(trace, graph, head), prior_weight)
    return Decoded(_argmax_ties_by(numerator / denominator, r.potential), numerator, denominator)


def classes(graph, output: str) -> int:
    return math.prod(graph.shape(output))


def candidate_heads(graph) -> list:
    """The outputs after the first (the final classifier) with its number of classes: the candidate heads."""
    n = classes(graph, graph.outputs[0])
    return [o for o in graph.outputs[1:] if classes(graph, o) == n]


def heads(graph) -> tuple:
    """The intermediate-prediction heads among ``graph``'s outputs: those ``place_heads`` kept (meta "heads"),
    or, where no pass chose, every candidate (``candidate_heads``)."""
    if "heads" in graph.meta:
        return tuple(graph.meta["heads"] or ())
    return tuple(candidate_heads(graph))


def check_head(graph, name: str) -> str:
    """``name`` if it is a head of ``graph`` that can be fused with its final output; else a readable error."""
    final, kept = graph.outputs[0], heads(graph)
    listed = ", ".join(kept) or "none"
    if name == final:
        raise NeuroccError(f"{name!r} is the final output, not a head (heads: {listed})")
    if name not in graph.outputs:
        raise NeuroccError(f"no output named {name!r} (outputs: {', '.join(graph.outputs)}; heads: {listed})")
    if classes(graph, name) != classes(graph, final):
        raise NeuroccError(f"output {name!r} has {classes(graph, name)} classes and the final output {final!r} "
                           f"{classes(graph, final)}: it cannot be fused with it")
    if name not in kept:
        raise NeuroccError(f"output {name!r} is not one of the heads kept (heads: {listed})")
    return name


def ann_predictions(ann, snn, x: np.ndarray, batch_size: int, device: str = "cpu") -> dict:
    """SNN output name -> the argmax predictions of the matching ANN output on ``x``: the reference a run's
    accuracy is compared with (and the truth when the data has no labels)."""
    import torch

    from neurocc.ir.executor import run_ann
    found = {o: [] for o in ann.outputs}
    for start in range(0, len(x), batch_size):
        out = run_ann(ann, torch.from_numpy(x[start:start + batch_size]), device=device)
        for o in ann.outputs:
            found[o].append(out[o].reshape(out[o].shape[0], -1).argmax(dim=1).cpu().numpy())
    return {snn_out: np.concatenate(found[ann_out]) for snn_out, ann_out in zip(snn.outputs, ann.outputs)}
