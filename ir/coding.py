"""Input codings: how an ``InputSource`` turns a (pre-processed, normalised) sample into per-step input.

A coding is part of the compiled network (``InputSource.coding``, stored in the artifact) and can be
overridden at run time. ``encode(x, sample_ids, steps)`` takes x / scale, shape (B, ...), the samples'
global indices and the step indices (1-based, a block of them) and returns the input of those steps,
(T, B, ...), or (1, B, ...) for a coding that is ``constant`` over time (and is then a current, not
spikes). It sees the step indices, so a coding whose value depends on the step (phase coding's per-step
weights) fits the same call; every backend encodes through it, so all see the same input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Analog:
    """A constant current: x / scale at every step (not counted as spikes)."""
    name: ClassVar[str] = "analog"
    constant: ClassVar[bool] = True

    def encode(self, x: torch.Tensor, sample_ids: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return x[None]


@dataclass(frozen=True)
class Poisson:
    """Rate-coded spikes: sign(x) with probability min(|x|, 1) at each step, independently.

    The random number of (seed, sample, step, input element) comes from a counter-based hash
    (``poisson_spikes``), so a sample's spikes do not depend on its batch, the device or the time blocking.
    """
    name: ClassVar[str] = "poisson"
    constant: ClassVar[bool] = False
    seed: int = 0

    def encode(self, x, sample_ids, steps):
        return poisson_spikes(x, sample_ids, steps, self.seed)


@dataclass(frozen=True)
class Phase:
    """Weighted spikes (phase coding, weighted-spikes §4.1-4.2): x as a K-bit binary fraction, one bit per step.

    |x| is rounded to K bits, |x| ~ sum_p bit_p 2^-(1+p) with |x| <= 1 - 2^-K (weighted-spikes §4.2: inputs
    in [0, 1 - 2^-K]); phase p = mod(t - 1, K) of step t sends sign(x) * bit_p, most significant bit first,
    and the period repeats. The spike of phase p weighs omega(t) = 2^-(1+p) (eq. 6): the receiving
    population scales its input current by omega(t) (``ir.neurons.WeightedIF``), so one period delivers x.
    """
    name: ClassVar[str] = "phase"
    constant: ClassVar[bool] = False
    phases: int = 8

    def __post_init__(self):
        if not 1 <= self.phases <= MAX_PHASES:
            raise ValueError(f"phase coding needs 1 to {MAX_PHASES} phases, got {self.phases}")

    def encode(self, x, sample_ids, steps):
        import torch
        k = self.phases
        levels = torch.round(x.abs().to(torch.float64) * 2.0 ** k).clamp(max=2.0 ** k - 1).to(torch.int64)
        bit = (k - 1 - torch.remainder(steps.to(x.device) - 1, k)).reshape((-1,) + (1,) * x.dim())
        return ((levels[None] >> bit) & 1).to(x.dtype) * torch.sign(x)[None]


MAX_PHASES = 24         # 2^(K-1) scales an integer state (``WeightedIF``): beyond 24 bits nothing is left
CODINGS: dict[str, type] = {cls.name: cls for cls in (Analog, Poisson, Phase)}


def coding_named(name: str, seed: int = 0, phases: int = 8):
    """The coding ``name`` (``CODINGS``), seeded where it draws random numbers, with ``phases`` for phase coding."""
    if name == "poisson":
        return Poisson(seed=seed)
    return Phase(phases=phases) if name == "phase" else CODINGS[name]()


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing function (lowbias32), on int64 tensors; identical on CPU and CUDA."""
    m = 0xFFFFFFFF
    x = x & m
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & m
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def poisson_spikes(x: torch.Tensor, sample_ids: torch.Tensor, steps: torch.Tensor, seed: int) -> torch.Tensor:
    """Signed Bernoulli spikes: sign(x) with probability min(|x|, 1), for each step in ``steps``.

    Returns (len(steps), B, ...) in x's dtype.
    """
    import torch      # here, not at the top: the command line lists the codings without loading torch
    elem = torch.arange(x[0].numel(), device=x.device, dtype=torch.int64)
    key = _hash32(elem + _hash32(torch.tensor(seed, dtype=torch.int64, device=x.device)))
    key = _hash32(key[None, :] + _hash32(sample_ids.to(x.device)[:, None] * 0x9E3779B1))      # (B, E)
    u = _hash32(key[None] + _hash32(steps.to(x.device) * 0x85EBCA6B)[:, None, None])           # (T, B, E)
    u = u.to(torch.float64) / 2 ** 32
    p = x.abs().reshape(1, x.shape[0], -1).to(torch.float64)
    s = (u < p).to(x.dtype) * torch.sign(x).reshape(1, x.shape[0], -1)
    return s.reshape((len(steps),) + tuple(x.shape))
