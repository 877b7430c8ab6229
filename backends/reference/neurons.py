"""Neuron updates, one function per semantics. Each advances one step in place and returns the spikes.

``state`` holds the population's tensors (``v``; ``u`` for Loihi), ``drive`` is the step's input
(for ``nliaf`` already including the bias; for ``loihi`` the synaptic input a << 6 only), shape
(batch, *population shape). Float mode uses ``nliaf`` on float tensors; integer mode uses int64.

nliaf (ideal non-leaky IF, bayesian-fusion §2): V <- fit(V + I); spike if V >= theta (or > theta);
    then V <- V - theta (subtract) or 0 (zero). fit wraps or saturates to the state width.
loihi (lava-nc 0.10.0 PyLifModelBitAcc, FACTS.md §5.1):
    u <- wrap24( sign(u (4096 - du - 1)) (|u (4096 - du - 1)| >> 12) + (a << 6) )
    v <- clip( sign(v (4096 - dv)) (|v (4096 - dv)| >> 12) + u + bias, -2^23 + 1, 2^23 - 1 )
    spike if v > vth << 6; v <- 0 on a spike; u is not reset.
spinnaker (sPyNNaker neuron_model_lif_impl.h, delta synapses, s16.15 bits; R = 2^k, exp_TC = 1 - 2^-k
    with k = leak_shift, V_rest = V_reset = 0):
    if refract_timer <= 0:  alpha = I * R;  V <- alpha - exp_TC * (alpha - V)   (each * rounds to nearest)
    else:                   refract_timer -= 1   (the step's input is dropped)
    spike if V >= threshold; then V <- 0, refract_timer <- refractory.
    "*" is __stdfix_smul_k_round_nearest: (a b + 2^14) >> 15, saturated to 32 bits (spinn_common);
    the additions are plain (wrapping) accum arithmetic.
"""
from __future__ import annotations

import torch

BIAS_IN_DRIVE = {"float": True, "nliaf": True, "loihi": False, "spinnaker": True, "truenorth": True}


def fit(x: torch.Tensor, bits: int, overflow: str) -> torch.Tensor:
    """``x`` (int64) brought into a signed ``bits``-wide state by wrapping or saturating (in place)."""
    if not bits:
        return x
    if overflow == "saturate":
        limit = 2 ** (bits - 1) - 1
        return x.clamp_(-limit, limit)
    half = 2 ** (bits - 1)
    return x.add_(half).remainder_(2 * half).sub_(half)


def _spikes(v: torch.Tensor, threshold, compare: str, out: torch.Tensor) -> torch.Tensor:
    return torch.ge(v, threshold, out=out) if compare == ">=" else torch.gt(v, threshold, out=out)


def nliaf(state: dict, drive: torch.Tensor, node, fired: torch.Tensor) -> torch.Tensor:
    v = state["v"]
    v.add_(drive)
    threshold = node.threshold
    if v.dtype == torch.int64:
        fit(v, node.state_bits, node.overflow)
        threshold = int(threshold)
    _spikes(v, threshold, node.compare, fired)
    if node.reset == "subtract":
        v.sub_(fired.to(v.dtype), alpha=threshold)
    else:
        v.masked_fill_(fired, 0)
    return fired


def _decay(x: torch.Tensor, keep: int) -> torch.Tensor:
    """sign(x * keep) * (|x * keep| >> 12): Loihi's decay, rounding toward zero."""
    y = x * keep
    return torch.sign(y) * (y.abs() >> 12)


def loihi(state: dict, drive: torch.Tensor, node, fired: torch.Tensor) -> torch.Tensor:
    u, v = state["u"], state["v"]
    u.copy_(fit(_decay(u, 4096 - node.du - 1) + drive, 24, "wrap"))
    v.copy_(_decay(v, 4096 - node.dv) + u + state["bias"])
    v.clamp_(-(2 ** 23) + 1, 2 ** 23 - 1)
    torch.gt(v, int(node.threshold), out=fired)
    v.masked_fill_(fired, 0)
    return fired


def _mul_round(a: torch.Tensor, b) -> torch.Tensor:
    """s16.15 multiply rounded to nearest (half up) and saturated: spinn_common's __stdfix_smul_k_round_nearest."""
    return ((a * b + (1 << 14)) >> 15).clamp_(-(2 ** 31), 2 ** 31 - 1)


def spinnaker(state: dict, drive: torch.Tensor, node, fired: torch.Tensor) -> torch.Tensor:
    v, timer = state["v"], state["timer"]
    r_membrane = 2 ** (15 + node.leak_shift)
    exp_tc = 2 ** 15 - 2 ** (15 - node.leak_shift)
    alpha = _mul_round(drive, r_membrane)
    closed_form = fit(alpha - _mul_round(alpha - v, exp_tc), 32, "wrap")
    active = timer <= 0
    v.copy_(torch.where(active, closed_form, v))
    timer.sub_((~active).to(timer.dtype))
    torch.ge(v, int(node.threshold), out=fired)
    v.masked_fill_(fired, 0)
    timer.masked_fill_(fired, node.refractory)
    return fired


# TrueNorth's neuron with linear reset (gamma = 1), leak as a constant input and a 20-bit saturating V is
# the NL-IAF update (NeMo tn_neuron.c: integrate, leak, V >= alpha fires, V <- V - alpha).
UPDATES = {"float": nliaf, "nliaf": nliaf, "loihi": loihi, "spinnaker": spinnaker, "truenorth": nliaf}
