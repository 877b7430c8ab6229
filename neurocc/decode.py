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
