"""SNN-level payloads: input sources, neuron populations and projections.

Semantics (one time step t = 1, 2, ...; every projection has a delay d >= 0 in steps):

    I_p(t) = bias_p + sum over projections q -> p of  chain_q( s_q(t - d_q) )
    V_p(t) = V_p(t-1) + I_p(t)                        (no leak)
    s_p(t) = 1 if V_p(t) >= threshold_p else 0        (spiking populations)
    V_p(t) <- V_p(t) - threshold_p * s_p(t)           (reset "subtract")
    V_p(t) <- 0 where s_p(t) = 1                      (reset "zero")
    V_p(0) = v0 * threshold_p

A population may follow a per-step schedule (directly trained SNNs, batch norm through time: bntt eq. 9):
its input is then gain_p[t'] * (I_p(t) + shift_p[t']), t' = min(t, S) - 1 for S rows (past the last row,
the last holds), and its neuron may leak (``ir.neurons.LIF``: V_p(t) = leak * V_p(t-1) + input). In integer mode
``shift`` is in state units and ``gain`` holds round(gain * 2^GAIN_BITS): the input is
floor((I_p(t) + shift_p[t']) * gain_p[t'] / 2^GAIN_BITS).

An accumulating population (``readout="accumulate"``) never spikes: V_p(t) is its read-out and the
prediction at step t is argmax V_p(t). A source's "spikes" s_q(t) are 0/1 for populations and, for an
``InputSource``, the coded input (the analog value x / scale each step, or signed Bernoulli spikes with
probability |x| / scale). A ``MaxPool`` op in a chain is the gated max of the weighted-spikes paper
(§4.5): it passes the spikes of the input neuron with the largest accumulated input, implemented as
out(t) = maxpool(C(t)) - maxpool(C(t-1)), C(t) the accumulated input, so the accumulated output equals
the maximum accumulated input at every step.

``scale`` is the activation value one spike per step stands for (the lambda of the normalisation);
the ANN-equivalent activation of a population is rate * scale.

Each population's neuron model (``ir.neurons``) states its own update; the one above is ``IF``, the
float-mode model. After the ``quantize`` pass (graph meta ``mode == "integer"``) every weight, bias,
threshold and initial potential is an integer in the target's units and each population holds its
chip's neuron model (``LoihiLIF``, ``SpinnakerLIF``, ``TrueNorth``, or ``IF`` in integer arithmetic).
The input's coding (``ir.coding``) is part of the ``InputSource``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .coding import Analog
from .neurons import IF, NeuronModel
from .ops import Op, ValueEquality, _frozen_array, schedule_row, tensor_of

READOUTS = ("spike", "accumulate")
GAIN_BITS = 12          # fractional bits of an integer-mode schedule gain


@dataclass(frozen=True, eq=False)
class InputSource(ValueEquality):
    """Feeds the (pre-processed) model input; ``scale`` is the input magnitude one unit of current means.

    In integer mode the input saturates at the calibration range (|x| <= scale) and is quantised to
    ``bits`` fractional bits: an analog value is round(x / scale * 2^bits), a spike is +-2^bits.
    """
    shape: tuple
    scale: float = 1.0
    bits: int = 0
    coding: object = Analog()           # ir.coding: Analog, Poisson

    def encode(self, x: torch.Tensor, sample_ids: torch.Tensor, steps: torch.Tensor, integer: bool,
               coding=None) -> torch.Tensor:
        """The input of the step indices ``steps``, (T, B, ...) or (1, B, ...) for a constant coding (see
        ``ir.coding``); ``coding`` overrides the compiled one. Integer mode computes in float64 and returns
        integers."""
        xs = (x.double() / self.scale).clamp(-1.0, 1.0) if integer else x / self.scale
        values = (coding or self.coding).encode(xs, sample_ids, steps)
        if integer:
            values = torch.round(values * 2.0 ** self.bits)
        return values.to(x.dtype)


@dataclass(frozen=True, eq=False)
class Population(ValueEquality):
    """A population of neurons that all follow one neuron model (``ir.neurons``).

    An accumulating read-out (``readout="accumulate"``) never spikes: V(t) = V(t-1) + I(t) + bias is its
    read-out, with its model's threshold, v0 and input_shift.
    """
    shape: tuple
    bias: np.ndarray                    # shape == self.shape, added every step [state units]
    neuron: NeuronModel = IF()
    readout: str = "spike"
    scale: float = 1.0                  # activation value of one spike per step (lambda)
    cap: Optional[float] = None         # ANN clip of the activation, in units of scale (Clip max)
    source_node: Optional[str] = None   # the ANN node this population stands for
    gain: Optional[np.ndarray] = None   # (S, ...) per-step factor on the input, broadcast to (S,) + shape
    shift: Optional[np.ndarray] = None  # (S, ...) per-step addition to the bias, broadcast likewise

    def __post_init__(self):
        for name in ("bias", "gain", "shift"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name)))

    @property
    def scheduled(self) -> bool:
        """Whether the input follows a per-step schedule (``gain`` or ``shift``)."""
        return self.gain is not None or self.shift is not None

    def scheduled_input(self, current: torch.Tensor, t0: int) -> torch.Tensor:
        """gain[t'] (current + shift[t']) for ``current`` = I + bias of steps t0+1..t0+tb, shape (tb, B, ...)."""
        for name in ("shift", "gain"):
            table = getattr(self, name)
            if table is None:
                continue
            rows = [schedule_row(t, len(table)) for t in range(t0 + 1, t0 + current.shape[0] + 1)]
            values = tensor_of(self, name, current)[rows].unsqueeze(1)
            if name == "shift":
                current = current + values
            elif current.dtype == torch.int64:
                current = (current * values) >> GAIN_BITS          # an arithmetic shift: floor
            else:
                current = current * values
        return current

    def with_neuron(self, **changes) -> "Population":
        """The population with its neuron model's fields changed (e.g. ``v0``)."""
        return dataclasses.replace(self, neuron=self.neuron.replace(**changes))

    def tensors(self) -> dict:
        return {name: a for name, a in (("bias", self.bias), ("gain", self.gain), ("shift", self.shift))
                if a is not None}


@dataclass(frozen=True, eq=False)
class Projection(ValueEquality):
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
