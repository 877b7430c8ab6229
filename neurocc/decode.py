"""Decoding a trace's read-outs into class predictions, the same for every backend.

* An accumulating read-out predicts argmax_j V_j(t), the membrane potential after step t.
* A spiking read-out predicts the class with the most spikes so far, M_j(t); ties go to the higher
  membrane potential, then to the lower class index.
"""
from __future__ import annotations

import numpy as np

from neurocc.backends.trace import Trace


def predictions(trace: Trace, output: str) -> np.ndarray:
    """(steps, samples) int64: the predicted class of ``output`` after every step."""
    r = trace.readouts[output]
    if r.count is None:
        return r.potential.argmax(axis=2)
    best = r.count.max(axis=2, keepdims=True)
    score = np.where(r.count == best, r.potential.astype(np.float64), -np.inf)
    return score.argmax(axis=2)


def final_readout(trace: Trace, output: str) -> np.ndarray:
    """(samples, classes): what ``output`` reads after the last step (spike counts for a spiking read-out)."""
    r = trace.readouts[output]
    return (r.potential if r.count is None else r.count)[-1]
