"""Neuron models: one frozen type per semantics, its parameters with units and its update.

A ``Population`` holds one of these. Each model states its update in its docstring and implements it
in ``step(state, drive, t)``, which advances one time step in place on torch tensors of shape
(batch, *population shape) and returns the spikes (bool). ``drive`` is the step's synaptic input
(the projections' sum, already scaled by 2^input_shift); the model adds the population's bias where
its chip adds it. ``t`` is the step index (1, 2, ...): ``WeightedIF`` (weighted spikes) scales its input and
threshold by the step's phase weight; the other models are time-invariant. Float mode runs a model on float
tensors; integer mode (graphs after ``quantize``) on int64 tensors in the target's units.

Units: ``threshold`` is in state units (float mode: 1 after normalisation; integer mode: the chip's
integer, e.g. Loihi's vth << 6); ``v0`` is the initial potential as a fraction of the threshold;
``input_shift`` scales the synaptic input by 2^input_shift (Loihi: a << 6). Fast kernels are chosen
by ``as_nliaf()``: a model whose update is the ideal NL-IAF returns it, the others None.

``MODELS`` maps each semantics name to its type; ``from_hwmodel`` builds a spiking neuron from a hardware
model (hwmodels/), one function per semantics.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from neurocc.errors import NeuroccError

RESET_MODES = ("subtract", "zero")
LEAK_BITS = 12          # an integer-mode leak is L / 2^12, as Loihi's 12-bit decays
COMPARES = (">=", ">")
OVERFLOWS = ("saturate", "wrap")


def fit(x: torch.Tensor, bits: int, overflow: str) -> torch.Tensor:
    """``x`` (int64) brought into a signed ``bits``-wide state by wrapping or saturating (in place)."""
    if not bits:
        return x
    if overflow == "saturate":
        limit = 2 ** (bits - 1) - 1
        return x.clamp_(-limit, limit)
    half = 2 ** (bits - 1)
    return x.add_(half).remainder_(2 * half).sub_(half)


def _check(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _require(hw, model: str, **expected) -> None:
    """A chip model with fixed rules: the hardware model must state the same ones."""
    for key, value in expected.items():
        got = getattr(hw.neuron, key)
        if got != value:
            raise NeuroccError(f"{hw.path}: neuron.{key} = {got!r}, but the {model} neuron model has {value!r}")


@dataclass(frozen=True)
class NeuronModel:
    """Base of the neuron models: the fields every model has."""
    semantics: ClassVar[str]
    fixed_reset: ClassVar[bool] = True     # the chip resets as its hardware model's neuron.reset says ...
    extra_resets: ClassVar[tuple] = ()     # ... or one of these, neurocc-defined neurons its toolchain runs
    extra_state: ClassVar[tuple] = ()      # state variables besides V, zero at t = 0
    threshold: float = 1.0       # [state units]
    v0: float = 0.0              # [fraction of threshold] V(0) = v0 * threshold (rounded in integer mode)
    input_shift: int = 0         # [bits] synaptic input x 2^input_shift

    def replace(self, **changes) -> "NeuronModel":
        return dataclasses.replace(self, **changes)

    def init_state(self, bias: torch.Tensor, batch: int, dtype: torch.dtype) -> dict:
        """The state at t = 0 for ``batch`` samples; ``bias`` has the population's shape."""
        integer = dtype == torch.int64
        v0 = int(round(self.v0 * self.threshold)) if integer else self.v0 * self.threshold
        shape = (batch,) + tuple(bias.shape)
        state = {"v": torch.full(shape, v0, dtype=dtype, device=bias.device), "bias": bias,
                 "fired": torch.empty(shape, dtype=torch.bool, device=bias.device)}
        state.update({name: torch.zeros(shape, dtype=dtype, device=bias.device) for name in self.extra_state})
        return state

    def step(self, state: dict, drive: torch.Tensor, t: int) -> torch.Tensor:
        raise NotImplementedError

    def as_nliaf(self) -> Optional["IF"]:
        """The ideal NL-IAF neuron this model is (for the fused kernel), or None."""
        return None

    def step_weights(self, t0: int, steps: int, integer: bool, device=None, skip: bool = True) -> Optional[torch.Tensor]:
        """The factor on each step's input current (t0+1..t0+steps), or None where every step's is 1."""
        return None

    def bias_weight(self) -> float:
        """The bias's weight in the rate view (``ir.executor.run_rate``): what one period of steps adds per step's
        worth of bias (1; weighted spikes: the period's weights, 1 - 2^-K)."""
        return 1.0

    def as_readout(self) -> Optional["NeuronModel"]:
        """This chip's cell as an accumulating read-out (integrating as it does, never firing), or None where a
        read-out is the unbounded accumulator V <- V + I + b (``ir.snn``)."""
        return None

    def firing_rule(self) -> tuple[str, str, int]:
        """(reset, compare, refractory steps): what sets the rate under a constant drive (``neurocc.activity``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class IF(NeuronModel):
    """The ideal non-leaky integrate-and-fire neuron (NL-IAF; bayesian-fusion §2, anytime-perception §3).

        V <- fit(V + (I + b))               I the drive, b the bias; fit wraps or saturates to state_bits
        s = V >= theta   (or V > theta)
        V <- V - theta * s   (reset "subtract")   or   V <- 0 where s   (reset "zero")

    ``state_bits`` = 0 is an unbounded state (float mode, and the integer read-outs).
    """
    semantics: ClassVar[str] = "nliaf"
    fixed_reset: ClassVar[bool] = False
    reset: str = "subtract"
    compare: str = ">="
    state_bits: int = 0          # [bits] width of the signed V; 0: unbounded
    overflow: str = "saturate"

    def __post_init__(self):
        _check("reset", self.reset, RESET_MODES)
        _check("compare", self.compare, COMPARES)
        _check("overflow", self.overflow, OVERFLOWS)

    @classmethod
    def from_hwmodel(cls, hw, threshold: float, v0: float, reset: str) -> "IF":
        if hw.neuron.refractory_steps or hw.neuron.leak_shift:
            raise NeuroccError(f"{hw.path}: the {cls.semantics} neuron model has no refractory period and no leak")
        return cls(threshold=threshold, v0=v0, input_shift=hw.neuron.input_shift, reset=reset,
                   compare=hw.neuron.spike_compare, state_bits=hw.neuron.state_bits, overflow=hw.neuron.overflow)

    def firing_rule(self):
        return self.reset, self.compare, 0

    def as_nliaf(self) -> "IF":
        return self

    def step(self, state: dict, drive: torch.Tensor, t: int) -> torch.Tensor:
        v, fired = state["v"], state["fired"]
        v.add_(drive + state["bias"])
        threshold = self.threshold
        if v.dtype == torch.int64:
            fit(v, self.state_bits, self.overflow)
            threshold = int(threshold)
        return self._fire(v, fired, threshold)

    def _fire(self, v: torch.Tensor, fired: torch.Tensor, threshold) -> torch.Tensor:
        """Compare V with ``threshold``, reset where it fired, return the spikes."""
        if self.compare == ">=":
            torch.ge(v, threshold, out=fired)
        else:
            torch.gt(v, threshold, out=fired)
        if self.reset == "subtract":
            v.sub_(fired.to(v.dtype), alpha=threshold)
        else:
            v.masked_fill_(fired, 0)
        return fired


@dataclass(frozen=True)
class LIF(IF):
    """The leaky integrate-and-fire neuron of directly trained SNNs (BNTT: bntt eq. 9 without its batch norm,
    which is the population's per-step ``gain`` and ``shift``, ``ir.snn``):

        V <- leak V + (I + b)               0 < leak < 1 (leak = 1 is ``IF``)
        s = V >= theta   (or V > theta);   V <- V - theta s  ("subtract")  or  V <- 0 where s  ("zero")

    The leak acts on the potential left after the previous step's reset, as in the BNTT code and snnTorch's
    ``Leaky`` with a reset to zero. Integer mode decays as Loihi does (``LoihiLIF``, FACTS.md §5.1), with
    leak = L / 2^12: V <- sign(V L) (|V L| >> 12), rounding toward zero; ``quantize`` rounds the leak to such an L.
    """
    semantics: ClassVar[str] = "lif"
    leak: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.leak <= 1.0:
            raise ValueError(f"leak must be in (0, 1], got {self.leak}")

    def as_nliaf(self) -> None:
        return None

    def firing_rule(self):
        raise NotImplementedError("a leaky neuron's rate under a constant drive is not the NL-IAF one")

    def step(self, state: dict, drive: torch.Tensor, t: int) -> torch.Tensor:
        v = state["v"]
        if v.dtype == torch.int64:
            v.copy_(_decay(v, round(self.leak * 2 ** LEAK_BITS))).add_(drive + state["bias"])
            fit(v, self.state_bits, self.overflow)
            return self._fire(v, state["fired"], int(self.threshold))
        v.mul_(self.leak).add_(drive + state["bias"])
        return self._fire(v, state["fired"], self.threshold)


@dataclass(frozen=True)
class WeightedIF(IF):
    """The NL-IAF neuron of weighted spikes (phase coding, weighted-spikes §4.2, eq. 8-10) with K phases.

    Step t has phase p = mod(t - 1, K) and spike weight omega(t) = 2^-(1+p) (eq. 6). Float mode, eq. 8-10:

        z = omega(t) (I + beta)             I the drive, beta the bias (b / (1 - 2^-K), set by ``phase_coding``)
        s = V + z >= omega(t) theta;   V <- V + z - omega(t) theta s        (reset "zero": V <- 0 where s)

    Integer mode scales the whole equation by 2^K, so every weight is an exact left shift: z = (I + beta) <<
    (K - 1 - p), threshold theta << (K - 1 - p). That is eq. 18's hardware form (compare with an unscaled
    theta) with V held in units of 2^-K instead of being shifted right each step, which would drop its low
    bits at every period's end; the spikes are those of eq. 8-10. ``quantize`` keeps theta << (K - 1) within
    the state's headroom. A read-out ignores its input for the first ``skip_steps`` steps (weighted-spikes §5.1:
    the output layer skips the first periods' noise spikes).
    """
    semantics: ClassVar[str] = "nliaf-weighted"
    phases: int = 8              # K
    skip_steps: int = 0          # [steps] whose input current is dropped (read-outs)

    def init_state(self, bias: torch.Tensor, batch: int, dtype: torch.dtype) -> dict:
        """V(0) = v0 theta 2^-K: a fraction of the finest spike weight's threshold, so that v0 = 0.5 rounds
        each period's K-bit value to the nearest (as it rounds a rate code's count); in integer units (x 2^K)
        that is round(v0 theta), as for ``IF``."""
        state = super().init_state(bias, batch, dtype)
        if dtype != torch.int64:
            state["v"].mul_(2.0 ** -self.phases)
        return state

    def bias_weight(self) -> float:
        return 1.0 - 2.0 ** -self.phases

    def step_weights(self, t0: int, steps: int, integer: bool, device=None, skip: bool = True) -> torch.Tensor:
        """(steps,) the factor on the input current of steps t0+1..t0+steps: omega(t) (float), 2^(K-1-p) (integer),
        and, with ``skip``, 0 for a skipped step."""
        t = torch.arange(t0 + 1, t0 + steps + 1, device=device)
        p = torch.remainder(t - 1, self.phases)
        w = torch.ones_like(t) << (self.phases - 1 - p) if integer else torch.pow(0.5, 1 + p.double())
        return torch.where(t > self.skip_steps, w, torch.zeros_like(w)) if skip else w

    def step(self, state: dict, drive: torch.Tensor, t: int) -> torch.Tensor:
        v, fired = state["v"], state["fired"]
        integer = v.dtype == torch.int64
        w = self.step_weights(t - 1, 1, integer, skip=False)[0].item()
        threshold = (int(self.threshold) if integer else self.threshold) * w
        v.add_((drive + state["bias"]) * (w if t > self.skip_steps else 0))
        if integer:
            fit(v, self.state_bits, self.overflow)
        return self._fire(v, fired, threshold)


@dataclass(frozen=True)
class TrueNorth(IF):
    """A TrueNorth neuron with linear reset (NeMo ``tn_neuron.c``, gamma = 1) and the leak as a constant input.

        V <- sat(V + I + lambda)            lambda the leak, carried as the bias; 20-bit saturating V
        s = V >= alpha;  V <- V - alpha * s

    That is the integer NL-IAF update (``IF``), which is what it runs; the type keeps the chip's identity
    for its core mapping and cost model. Weights reach it through 4 axon types (see hwmodels/truenorth.toml).
    """
    semantics: ClassVar[str] = "truenorth"
    fixed_reset: ClassVar[bool] = True


@dataclass(frozen=True)
class LoihiLIF(NeuronModel):
    """Loihi's LIF as lava-nc 0.10.0's bit-accurate ``PyLifModelBitAcc`` computes it (FACTS.md §5.1), integer for
    integer, including its int32 arithmetic and its one-step 24-bit wrap of u:

        c = wrap32( sign(u (4096 - du - 1)) (|u (4096 - du - 1)| >> 12) + a )       a = the projections' sum << 6
        u <- c - 2^24 if c > 2^23;  c + 2^24 if c <= -2^23;  else c                  (one wrap, as lava does it)
        v <- clip( wrap32( sign(v (4096 - dv)) (|v (4096 - dv)| >> 12) + u + bias ), -2^23 + 1, 2^23 - 1 )
        s = v > vth << 6;  v <- 0 where s   (reset "zero", Loihi's own)   or   v <- v - vth << 6 (reset "subtract")

    ``threshold`` is vth << 6 [state units]; ``du``, ``dv`` are the 12-bit current and voltage decays
    (4095: no current memory; 0: no voltage leak). The bias is added to v, not to the drive; the synaptic sums are
    congruent modulo 2^32 to lava's int32 ones, so wrapping their total once is the same. Reset "subtract" is the
    soft-reset IF (SRIF) that ``backends/loihi`` defines as a Lava process of its own (Loihi 2 programmable neurons).
    """
    semantics: ClassVar[str] = "loihi"
    extra_resets: ClassVar[tuple] = ("subtract",)
    extra_state: ClassVar[tuple] = ("u",)
    du: int = 4095
    dv: int = 0
    reset: str = "zero"

    def __post_init__(self):
        _check("reset", self.reset, RESET_MODES)

    @classmethod
    def from_hwmodel(cls, hw, threshold: float, v0: float, reset: str) -> "LoihiLIF":
        _require(hw, "loihi", state_bits=24, spike_compare=">", reset="zero", refractory_steps=0, leak_shift=0)
        return cls(threshold=threshold, v0=v0, input_shift=hw.neuron.input_shift, reset=reset)

    def firing_rule(self):
        return self.reset, ">", 0

    def step(self, state, drive, t):
        u, v, fired = state["u"], state["v"], state["fired"]
        c = fit(_decay(u, 4096 - self.du - 1) + drive, 32, "wrap")
        half = 2 ** 23
        u.copy_(torch.where(c > half, c - 2 * half, torch.where(c <= -half, c + 2 * half, c)))
        v.copy_(fit(_decay(v, 4096 - self.dv) + u + state["bias"], 32, "wrap"))
        v.clamp_(-half + 1, half - 1)
        threshold = int(self.threshold)
        torch.gt(v, threshold, out=fired)
        if self.reset == "subtract":
            v.sub_(fired.to(v.dtype), alpha=threshold)
        else:
            v.masked_fill_(fired, 0)
        return fired


def _decay(x: torch.Tensor, keep: int) -> torch.Tensor:
    """sign(x * keep) * (|x * keep| >> 12): Loihi's decay, rounding toward zero."""
    y = x * keep
    return torch.sign(y) * (y.abs() >> LEAK_BITS)


@dataclass(frozen=True)
class SpinnakerLIF(NeuronModel):
    """sPyNNaker 1!7.4.1's LIF with delta synapses (``IF_curr_delta``: ``neuron_model_lif_impl.h``), s16.15 bits.

    One step, as the core computes it (V_rest = V_reset = 0, one step per time step, I_offset the bias):

        if refract_timer <= 0:  I = I_syn + I_offset;  alpha = I * R;  V <- alpha - exp_TC * (alpha - V)
        else:                   refract_timer -= 1          (the step's input is dropped)
        s = V >= V_thresh;  then V <- 0, refract_timer <- T_refract   where s

    "*" is GCC's s16.15 multiply on the ARM968 (``smull``, then bits 15..46): floor((a b) / 2^15), wrapped to 32
    bits (read off the ``IF_curr_delta.aplx`` of sPyNNaker 1!7.4.1); the additions wrap too. The core derives
    R = kdivk(tau_m, cm) and exp_TC = expk(-kdivk(dt, tau_m)) itself (``neuron_model_initialise``); with
    k = ``leak_shift``, tau_m = 2^k * 32769 / 32768 ms and cm = 32769 / 32768 nF make it compute R = 2^k MOhm and
    exp_TC = 1 - 2^-k exactly (kdivk(dt, tau_m) = 2^(15-k) - 1 bits, whose expk truncates to 2^15 - 2^(15-k)),
    so that the update is V <- V + I - floor(V / 2^k) in bits (``backends/spinnaker`` emits those values; its
    tests check them with sPyNNaker's own code). I_syn is the ring buffers' weight sums shifted left by the
    population's ring-buffer shift; ``quantize`` keeps every sum within their 16 bits, so none saturates.

    A read-out (``fires=False``) is the same cell with a threshold it never reaches.
    """
    semantics: ClassVar[str] = "spinnaker"
    extra_state: ClassVar[tuple] = ("timer",)
    leak_shift: int = 0          # k: exp_TC = 1 - 2^-k, R = 2^k [MOhm at dt = 1 ms]
    refractory: int = 0          # [steps] after a spike
    fires: bool = True           # False: a read-out, which integrates the same way and never fires

    @classmethod
    def from_hwmodel(cls, hw, threshold: float, v0: float, reset: str) -> "SpinnakerLIF":
        _require(hw, "spinnaker", state_bits=32, overflow="wrap", spike_compare=">=", reset="zero")
        if not 0 < hw.neuron.leak_shift < 15:
            raise NeuroccError(f"{hw.path}: neuron.leak_shift must be 1 to 14 for sPyNNaker's LIF (exp_TC = 1 - "
                               f"2^-leak_shift in s16.15 with a non-zero step), got {hw.neuron.leak_shift}")
        return cls(threshold=threshold, v0=v0, input_shift=hw.neuron.input_shift, leak_shift=hw.neuron.leak_shift,
                   refractory=hw.neuron.refractory_steps)

    def as_readout(self) -> "SpinnakerLIF":
        return self.replace(fires=False)

    def firing_rule(self):
        return "zero", ">=", self.refractory

    def step(self, state, drive, t):
        v, timer, fired = state["v"], state["timer"], state["fired"]
        r_membrane = 2 ** (15 + self.leak_shift)
        exp_tc = 2 ** 15 - 2 ** (15 - self.leak_shift)
        alpha = _smul(fit(drive + state["bias"], 32, "wrap"), r_membrane)
        closed_form = fit(alpha - _smul(fit(alpha - v, 32, "wrap"), exp_tc), 32, "wrap")
        active = timer <= 0
        v.copy_(torch.where(active, closed_form, v))
        timer.sub_((~active).to(timer.dtype))
        if not self.fires:
            fired.zero_()
            return fired
        torch.ge(v, int(self.threshold), out=fired)
        v.masked_fill_(fired, 0)
        timer.masked_fill_(fired, self.refractory)
        return fired


def _smul(a: torch.Tensor, b: int) -> torch.Tensor:
    """The ARM968's s16.15 multiply as GCC compiles it for sPyNNaker: floor(a b / 2^15), wrapped to 32 bits."""
    return fit((a * b) >> 15, 32, "wrap")


MODELS: dict[str, type] = {cls.semantics: cls for cls in (IF, LIF, WeightedIF, TrueNorth, LoihiLIF, SpinnakerLIF)}


def from_hwmodel(hw, threshold: float, v0: float, reset: str) -> NeuronModel:
    """The spiking neuron of hardware model ``hw`` with an integer ``threshold`` [state units]."""
    return MODELS[hw.semantics].from_hwmodel(hw, threshold=threshold, v0=v0, reset=reset)
