"""Early exit: when to stop a sample's simulation, from its per-step decision scores; the same for every backend.

Scores are (steps, samples, classes) arrays, index 0 of the step axis is step t = 1, as ``neurocc.decode.decoded``
gives them; ``decisions`` (steps, samples) are that decode's predictions D(t) (default: the argmax of the
scores). A rule looks at steps T1..T2 (``start`` .. the last step) and returns, per sample, the step it stops
at (1-based) and the decision D there; a sample the rule never stops runs to the last step and keeps D(T2).

* ``stable``: weighted-spikes Algorithm 1 on the evidence V^L(t) (the read-out's potential in units of its
  threshold, or its spike count; the posterior's numerator alpha_j + M_j under Bayesian fusion):

      D(T1 - 1) = none, delta_EMA(T1 - 1) = 0, count = 0
      for t = T1 .. T2:   delta(t) = top-2 difference of V^L(t)
                          delta_EMA(t) = (delta(t) + delta_EMA(t - 1)) / 2
                          count = count + 1 if D(t) = D(t - 1) else 0
                          stop if count >= theta / delta_EMA(t)

  so a sample stops after its decision has stayed the same for theta / delta_EMA steps (never while
  delta_EMA = 0). The paper's theta: 0.9 (weighted-spikes Fig. 13, Net4 on CIFAR-10 at 1 pt loss).
* ``margin``: stop at the first step whose rates (evidence / t: firing probabilities, in [0, 1] where the
  network represents its activations; the posterior means under fusion) have a top-1 minus top-2 difference of
  at least M.

``gamma_exit_step`` is BNTT's temporal early exit (bntt §3.4), one step for every sample, fixed at compile time from
the trained gamma_t alone.

``spent`` gives what a sample cost up to its exit step: the sum over populations of its spikes (or synaptic
events) over steps 1..exit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from neurocc.errors import NeuroccError

RULES = ("none", "stable", "margin")
DEFAULT_THETA = 0.9


@dataclass(frozen=True)
class Exit:
    """Per sample: the step the rule stopped at (1-based) and the decision there."""
    step: np.ndarray        # (samples,) int64 in 1..steps
    decision: np.ndarray    # (samples,) int64


def top2_difference(scores: np.ndarray) -> np.ndarray:
    """(steps, samples): the largest score minus the second largest (0 where they tie)."""
    if scores.shape[-1] < 2:
        raise NeuroccError(f"an exit rule compares the top two classes, but the output has {scores.shape[-1]}")
    top = np.partition(scores, -2, axis=-1)
    return top[..., -1] - top[..., -2]


def check_start(start: int, steps: int) -> None:
    if not 1 <= start <= steps:
        raise NeuroccError(f"the exit start T1 (--exit-start) must be in 1..{steps} (the steps run), got {start}")


def _check_positive(what: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise NeuroccError(f"{what} must be a finite number > 0, got {value}")


def check_theta(theta: float) -> None:
    _check_positive("the stable decision threshold theta (--exit-theta)", theta)


def check_margin(margin: float) -> None:
    _check_positive("the margin M (--margin)", margin)


def _halving_average(delta: np.ndarray) -> np.ndarray:
    """delta_EMA(t) = (delta(t) + delta_EMA(t - 1)) / 2 from delta_EMA = 0 before the first row (Algorithm 1,
    line 5); a loop over steps, vectorised over samples."""
    ema, previous = np.empty(delta.shape, np.float64), np.zeros(delta.shape[1:], np.float64)
    for i, row in enumerate(delta):
        previous = (row + previous) / 2
        ema[i] = previous
    return ema


def _stable_counts(decisions: np.ndarray) -> np.ndarray:
    """(steps, samples): Algorithm 1's count, the steps since the decision last changed: 0 on the first row
    (D(T1 - 1) is none) and wherever D(t) != D(t - 1)."""
    rows = np.arange(len(decisions))[:, None]
    changed = np.ones(decisions.shape, bool)
    changed[1:] = decisions[1:] != decisions[:-1]
    return rows - np.maximum.accumulate(np.where(changed, rows, 0), axis=0)


def _first_stop(stop: np.ndarray, decisions: np.ndarray, start: int) -> Exit:
    """The first row where ``stop`` holds (else the last), as 1-based steps of a window that starts at ``start``."""
    row = np.where(stop.any(axis=0), stop.argmax(axis=0), len(stop) - 1)
    return Exit(step=(row + start).astype(np.int64), decision=decisions[row, np.arange(stop.shape[1])].astype(np.int64))


def _window(scores: np.ndarray, decisions: Optional[np.ndarray], start: int):
    check_start(start, len(scores))
    d = scores.argmax(axis=-1) if decisions is None else decisions
    return scores[start - 1:], d[start - 1:]


def stable_exit(evidence: np.ndarray, start: int, theta: float, decisions: Optional[np.ndarray] = None) -> Exit:
    """weighted-spikes Algorithm 1 from step ``start`` (T1) with stable decision threshold ``theta``."""
    check_theta(theta)
    v, d = _window(evidence, decisions, start)
    with np.errstate(divide="ignore"):
        needed = theta / _halving_average(top2_difference(v))        # inf where delta_EMA = 0: never stops
    return _first_stop(_stable_counts(d) >= needed, d, start)


def margin_exit(rates: np.ndarray, margin: float, start: int = 1, decisions: Optional[np.ndarray] = None) -> Exit:
    """Stop at the first step from ``start`` whose top-1 minus top-2 rate is at least ``margin``."""
    check_margin(margin)
    r, d = _window(rates, decisions, start)
    return _first_stop(top2_difference(r) >= margin, d, start)


def spent(per_population: dict, step: np.ndarray) -> np.ndarray:
    """(samples,) int64: per sample, the sum over populations of ``per_population[name]`` (steps, samples)
    (spikes or synaptic events per step) over steps 1..``step``."""
    if not per_population:
        return np.zeros(len(step), np.int64)
    cumulative = np.cumsum(sum(per_population.values()), axis=0, dtype=np.int64)
    return cumulative[step - 1, np.arange(len(step))]


def gamma_exit_step(gammas: dict, threshold: float, steps: int) -> int:
    """BNTT's early exit (bntt §3.4, Fig. 3): the first step t after which the layer-mean gamma_t of every BNTT
    layer stays below ``threshold`` up to the trained ``steps``, at least 1; ``steps`` itself if the last step's
    gammas do not all fall below it. ``gammas`` maps each layer to its [mean gamma_t for t = 1..S] (past S the
    last row holds, as ``ops.StepAffine`` says)."""
    rows = np.array(list(gammas.values()), dtype=np.float64)        # (layers, S)
    rows = np.concatenate([rows, np.repeat(rows[:, -1:], max(steps - rows.shape[1], 0), axis=1)], axis=1)[:, :steps]
    below = np.all(rows < threshold, axis=0)
    step = steps
    while step > 1 and below[step - 1]:
        step -= 1
    return step
