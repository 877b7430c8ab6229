"""SNN-level payloads: input sources, neuron populations and projections.

Semantics (one time step t = 1, 2, ...; every projection has a delay d >= 0 in steps):

    I_p(t) = bias_p + sum over projections q -> p of  chain_q( s_q(t - d_q) )
    V_p(t) = V_p(t-1) + I_p(t)                        (no leak)
    s_p(t) = 1 if V_p(t) >= threshold_p else 0        (spiking populations)
    V_p(t) <- V_p(t) - threshold_p * s_p(t)           (reset "subtract")
    V_p(t) <- 0 where s_p(t) = 1                      (reset "zero")
    V_p(0) = v0 * threshold_p

An accumulating population (``readout="accumulate"``) never spikes: V_p(t) is its read-out and the
prediction at step t is argmax V_p(t). A source's "spikes" s_q(t) are 0/1 for populations and, for an
``InputSource``, the coded input (the analog value x / scale each step, or signed Bernoulli spikes with
probability |x| / scale). A ``MaxPool`` op in a chain is the gated max of the weighted-spikes paper
(§4.5): it passes the spikes of the input neuron with the largest accumulated input, implemented as
out(t) = maxpool(C(t)) - maxpool(C(t-1)), C(t) the accumulated input, so the accumulated output equals
the maximum accumulated input at every step.

``scale`` is the activation value one spike per step stands for (the lambda of the normalisation);
the ANN-equivalent activation of a population is rate * scale.

That is float mode. After the ``quantize`` pass (graph meta ``mode == "integer"``) every weight, bias,
threshold and initial potential is an integer in the target's units and each population follows its
target's ``semantics`` (``backends/reference/neurons.py`` states each update exactly).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .ops import Op, _frozen_array

RESET_MODES = ("subtract", "zero")
READOUTS = ("spike", "accumulate")


@dataclass(frozen=True, eq=False)
class InputSource:
    """Feeds the (pre-processed) model input; ``scale`` is the input magnitude one unit of current means.

    In integer mode an analog input is quantised to ``bits`` fractional bits: x_q = round(x / scale * 2^bits).
    """
    shape: tuple
    scale: float = 1.0
    bits: int = 0


@dataclass(frozen=True, eq=False)
class Population:
    """A population of integrate-and-fire neurons (see the module docstring for the update)."""
    shape: tuple
    bias: np.ndarray                    # shape == self.shape, added every step
    threshold: float = 1.0
    reset: str = "subtract"
    v0: float = 0.0                     # initial potential as a fraction of the threshold
    readout: str = "spike"
    scale: float = 1.0                  # activation value of one spike per step (lambda)
    cap: Optional[float] = None         # ANN clip of the activation, in units of scale (Clip max)
    source_node: Optional[str] = None   # the ANN node this population stands for
    # integer mode (set by the quantize pass; see backends/reference/neurons.py for each semantics)
    semantics: str = "float"            # float | nliaf | loihi | spinnaker
    compare: str = ">="                 # spike when V >= threshold, or V > threshold
    state_bits: int = 0                 # width of V (0: unbounded float)
    overflow: str = "saturate"          # wrap | saturate at state_bits
    input_shift: int = 0                # synaptic input is scaled by 2^input_shift (Loihi: 6)
    du: int = 4095                      # Loihi current decay (4095: no memory)
    dv: int = 0                         # Loihi voltage decay (0: no leak)
    leak_shift: int = 0                 # SpiNNaker: exp_TC = 1 - 2^-leak_shift, R = 2^leak_shift
    refractory: int = 0                 # steps a neuron ignores its input after a spike

    def __post_init__(self):
        object.__setattr__(self, "bias", _frozen_array(self.bias))

    def tensors(self) -> dict:
        return {"bias": self.bias}


@dataclass(frozen=True, eq=False)
class Projection:
    """Synapses from one source to one population: a chain of IR ops without constants, then a delay.

    In integer mode the chain's weights are integers and the summed input is scaled by 2^shift
    (Loihi's weight_exp; a negative shift floors), then by 2^input_shift of the target population.
    """
    ops: tuple  # tuple[Op, ...], applied first to last
    delay: int = 0
    shift: int = 0

    def __post_init__(self):
        for op in self.ops:
            if not isinstance(op, Op) or op.has_constant():
                raise ValueError(f"projection ops must be constant-free IR ops, got {op!r}")
