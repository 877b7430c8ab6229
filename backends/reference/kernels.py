"""A fused CPU kernel for the NL-IAF update over a block of steps (numba).

The per-step PyTorch update (``neurocc.ir.neurons.IF.step``) makes four to six passes over the
population's memory per step plus the recorder's sums. This kernel does the same arithmetic, in the same
order and dtype, for all steps of a block in one pass over memory, and it counts the spikes, synaptic
events (spikes x fan-out) and membrane updates (neurons whose V changed) of every step and sample as it goes. It is used on the CPU for the NL-IAF neuron
models (``IF``, ``WeightedIF`` and ``TrueNorth``, float and integer); the test suite checks it against ``IF.step`` spike
for spike. Loihi and SpiNNaker neurons, spike read-outs and CUDA keep the PyTorch path.

Per neuron and step, w[t] the step's weight (1; weighted spikes: ``WeightedIF.step_weights``):
    d = (I[t] + bias) w[t];  V <- fit(V + d);  s = V >= theta w[t] (or >);  V <- V - theta w[t] s  (or 0 if s)
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

_TILE = 2048      # neurons per work item: potentials, bias and fan-out of a tile fit in L1

@numba.njit(parallel=True, cache=True, nogil=True, fastmath=False)
def nliaf_block(current, constant, bias, v, spikes, fan, threshold, weights, subtract, ge, bits, saturate):
    """Advance ``v`` (B, n) through the block; write ``spikes`` (T, B, n); return the spikes, synaptic events and
    membrane updates (neurons whose V changed) of every step per sample, (T, B) int64 each. ``current`` is (T, B, n), or (1, B, n) with ``constant`` set; ``bias`` and ``fan``
    (synapses per neuron, int64) are (n,); ``weights`` (T,) in V's dtype; ``bits`` = 0 means an unbounded state,
    otherwise it wraps or saturates to ``bits``.

    Parallel over tiles of a sample's neurons, each carried through all steps while its state stays in
    cache; the inner loop over a tile is branch-free so that it vectorises."""
    steps = spikes.shape[0]
    batch, n = v.shape
    counts = np.zeros((batch * ((n + _TILE - 1) // _TILE), steps), np.int64)
    events = np.zeros_like(counts)
    changes = np.zeros_like(counts)
    half = np.int64(1) << max(bits - 1, 0)
    limit = half - 1
    zero_v = v.dtype.type(0)
    zero_s, one_s = spikes.dtype.type(0), spikes.dtype.type(1)
    tiles = (n + _TILE - 1) // _TILE
    plain = subtract and ge and bits == 0
    for job in prange(batch * tiles):
        b, lo = job // tiles, (job % tiles) * _TILE
        hi = min(n, lo + _TILE)
        vb = v[b, lo:hi].copy()          # potentials, bias and fan-out of the tile stay in L1 over the steps
        bias_t, fan_t = bias[lo:hi], fan[lo:hi]
        for t in range(steps):
            w = weights[t]
            theta = threshold * w
            cb = current[0 if constant else t, b, lo:hi]
            sb = spikes[t, b, lo:hi]
            spiked = 0
            weighted = 0
            changed = 0
            if plain:                    # the common case, without branches that block vectorisation
                for i in range(hi - lo):
                    x = vb[i] + (cb[i] + bias_t[i]) * w
                    on = x >= theta
                    new = x - (theta if on else zero_v)
                    changed += new != vb[i]
                    vb[i] = new
                    sb[i] = one_s if on else zero_s
                    spiked += on
                    weighted += fan_t[i] if on else 0
                counts[job, t] = spiked
                events[job, t] = weighted
                changes[job, t] = changed
                continue
            for i in range(hi - lo):
                x = vb[i] + (cb[i] + bias_t[i]) * w
                if bits:
                    if saturate:
                        x = min(max(x, -limit), limit)
                    else:
                        x = ((x + half) % (2 * half)) - half
                on = (x >= theta) if ge else (x > theta)
                if subtract:
                    new = x - (theta if on else zero_v)
                else:
                    new = zero_v if on else x
                changed += new != vb[i]
                vb[i] = new
                sb[i] = one_s if on else zero_s
                spiked += on
                weighted += fan_t[i] if on else 0
            counts[job, t] = spiked
            events[job, t] = weighted
            changes[job, t] = changed
        v[b, lo:hi] = vb
    return per_sample(counts, batch), per_sample(events, batch), per_sample(changes, batch)


@numba.njit(cache=True, nogil=True)
def per_sample(per_job, batch):
    """(B * tiles, T) totals per work item -> (T, B) totals per sample (a job is sample * tiles + tile)."""
    jobs, steps = per_job.shape
    tiles = jobs // batch
    out = np.zeros((steps, batch), np.int64)
    for job in range(jobs):
        b = job // tiles
        for t in range(steps):
            out[t, b] += per_job[job, t]
    return out


def as_arrays(*tensors) -> list:
    """Zero-copy NumPy views of contiguous CPU tensors."""
    return [np.asarray(t.numpy()) for t in tensors]
