"""The reference simulator: a batched, time-blocked torch simulation of an SNN-level graph.

It implements exactly the update written in ``neurocc.ir.snn`` (float mode). For speed it simulates
population by population over a block of time steps: the projections of a block are one batched op
over (steps x samples) inputs, and only the membrane update loops over steps. Constant analog input
is projected once per block. Blocks carry all state (membrane potentials, max-pool gate counts,
delay lines), so the result does not depend on the block length. Blocks are kept small (a few steps
for a CIFAR ResNet at batch 32): larger ones measured slower, the convolutions falling out of cache.
On the CPU, NL-IAF populations (float, generic, TrueNorth) advance through a block in one fused numba
kernel (``kernels.py``) that also counts their spikes and events; it keeps them in channels-last
memory order, which PyTorch's CPU convolutions run about twice as fast on. Loihi and SpiNNaker
updates, spike-count read-outs and CUDA take the per-step PyTorch update (``neurons.py``).

Integer mode (graphs after ``quantize``): spikes and projections are computed in float64, which is
exact because every projection's largest possible sum, checked when the simulator is built, stays
below 2^53 (sum over the fan-in of |integer weight| x the largest source value); a projection that
could exceed it is split into high and low weight halves, each exact, recombined in int64. Sums are
then converted to int64, shifted by the projection's ``shift`` (a negative shift floors) and the
target's ``input_shift``; neuron state is int64 with the target's width and overflow rule. Analog input
is quantised to the input source's ``bits`` and saturates at the calibration range (|x| <= scale).

Counting conventions of the trace (all summed over the samples of the run):
  * spikes: spikes emitted by spiking populations per step (analog input current is not spikes;
    Poisson input spikes are counted under the input's name);
  * synaptic events: a spike times the number of synapses leaving its neuron (anytime-perception §4),
    counted from the projections' weights (non-zero entries; pooling windows count one synapse per
    covered input; a chain with two weighted ops counts paths).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from neurocc.errors import NeuroccError
from neurocc.ir import Graph, ops
from neurocc.ir.executor import apply_chain
from neurocc.ir.snn import InputSource, Population

from .neurons import BIAS_IN_DRIVE, UPDATES

try:
    from .kernels import as_arrays, nliaf_block
    FUSED = True
except ImportError:       # numba missing: the PyTorch update does the same work, more slowly
    FUSED = False
FUSED_SEMANTICS = ("float", "nliaf", "truenorth")

CODINGS = ("analog", "poisson")
_BLOCK_BYTES = 256 * 2 ** 20   # budget for one block's spike tensors


@dataclass
class Trace:
    """What a run recorded, per time step (index 0 is step 1)."""
    steps: int
    samples: int
    predictions: dict                     # output name -> (steps, samples) int64 predicted class
    spikes: dict                          # node name -> (steps,) float64 total spikes
    synaptic_events: np.ndarray           # (steps,) float64 total synaptic events
    final_readout: dict = field(default_factory=dict)   # output name -> (samples, classes) last potentials
    spike_trains: dict = field(default_factory=dict)    # population -> (steps, samples, *shape) uint8, if recorded

    @staticmethod
    def concat(parts: list["Trace"]) -> "Trace":
        first = parts[0]
        return Trace(
            steps=first.steps, samples=sum(p.samples for p in parts),
            predictions={k: np.concatenate([p.predictions[k] for p in parts], axis=1) for k in first.predictions},
            spikes={k: sum(p.spikes[k] for p in parts) for k in first.spikes},
            synaptic_events=sum(p.synaptic_events for p in parts),
            final_readout={k: np.concatenate([p.final_readout[k] for p in parts]) for k in first.final_readout},
            spike_trains={k: np.concatenate([p.spike_trains[k] for p in parts], axis=1) for k in first.spike_trains})


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

    The random number of (seed, sample, step, input element) comes from a counter-based hash, so a
    sample's spikes do not depend on the batch it is in, on the device, or on the time blocking.
    Returns (len(steps), B, ...) in x's dtype.
    """
    elem = torch.arange(x[0].numel(), device=x.device, dtype=torch.int64)
    key = _hash32(elem + _hash32(torch.tensor(seed, dtype=torch.int64, device=x.device)))
    key = _hash32(key[None, :] + _hash32(sample_ids.to(x.device)[:, None] * 0x9E3779B1))      # (B, E)
    u = _hash32(key[None] + _hash32(steps.to(x.device) * 0x85EBCA6B)[:, None, None])           # (T, B, E)
    u = u.to(torch.float64) / 2 ** 32
    p = x.abs().reshape(1, x.shape[0], -1).to(torch.float64)
    s = (u < p).to(x.dtype) * torch.sign(x).reshape(1, x.shape[0], -1)
    return s.reshape((len(steps),) + tuple(x.shape))


def _counting_op(op: ops.Op) -> list:
    """Ops whose vector-Jacobian product with ones counts the synapses leaving each input neuron."""
    if isinstance(op, (ops.Conv, ops.Gemm)):
        return [dataclasses.replace(op, weight=(op.weight != 0).astype(np.float32))]
    if isinstance(op, ops.Affine) and op.scale is not None:
        return [dataclasses.replace(op, scale=(op.scale != 0).astype(np.float32))]
    if isinstance(op, (ops.AvgPool, ops.MaxPool)):
        window = float(np.prod(op.kernel))
        pool = ops.AvgPool(kernel=op.kernel, strides=op.strides, pads=op.pads, count_include_pad=True,
                           ceil_mode=op.ceil_mode)
        return [pool, ops.Affine(scale=np.float32(window))]
    return [op]


def fan_out(graph: Graph, src: str) -> np.ndarray:
    """Synapses leaving each neuron of ``src`` (summed over its projections), shape of ``src``."""
    total = np.zeros(graph.shape(src), np.float64)
    for _, dst, k, d in graph.nx.out_edges(src, keys=True, data=True):
        chain = [c for op in d["proj"].ops for c in _counting_op(op)]
        x = torch.ones((1,) + graph.shape(src), dtype=torch.float64, requires_grad=True)
        y = apply_chain(chain, x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        total += grad[0].numpy()
    return total


def _shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """x * 2^k for k >= 0, floor(x / 2^-k) for k < 0 (arithmetic shift), on int64."""
    if k == 0:
        return x
    return x << k if k > 0 else x >> -k


class _Gate:
    """State of one gated max-pool (weighted-spikes §4.5): accumulated input C and pooled max M."""

    def __init__(self):
        self.acc = None
        self.pooled = None

    def __call__(self, op: ops.MaxPool, s: torch.Tensor) -> torch.Tensor:
        t, b = s.shape[:2]
        acc = torch.cumsum(s, dim=0) + (self.acc if self.acc is not None else 0)
        flat = ops.apply(op, [acc.reshape((t * b,) + tuple(acc.shape[2:]))])
        pooled = flat.reshape((t, b) + tuple(flat.shape[1:]))
        prev = self.pooled if self.pooled is not None else torch.zeros_like(pooled[:1])
        out = pooled - torch.cat([prev, pooled[:-1]])
        self.acc, self.pooled = acc[-1:], pooled[-1:]
        return out


class _BatchRun:
    """Simulates one batch of samples through all steps, block by block."""

    def __init__(self, sim: "Simulator", x: torch.Tensor, sample_ids: torch.Tensor):
        self.sim, self.x, self.ids = sim, x, sample_ids
        g = sim.graph
        self.b = x.shape[0]
        self.state: dict[str, dict] = {}
        for name in sim.order:
            node = g.payload(name)
            if isinstance(node, Population):
                self.state[name] = sim.initial_state(node, self.b)
        self.gates = {key: _Gate() for key in sim.gated}
        # the last (max delay) steps of every delayed source; zeros before the first step
        self.history = {src: torch.zeros((depth, self.b) + g.shape(src), dtype=sim.dtype, device=sim.device)
                        for src, depth in sim.max_delay.items()}
        self.counts = {n: torch.zeros((self.b,) + g.shape(n), dtype=sim.dtype, device=sim.device)
                       for n in g.outputs if g.payload(n).readout == "spike"}

    def _source(self, name: str, t0: int, t1: int) -> tuple[torch.Tensor, bool]:
        """(spikes of an input source for steps t0..t1-1, constant-over-time flag)."""
        node = self.sim.graph.payload(name)
        if self.sim.integer:           # quantised in float64, whatever the simulation dtype
            xs = (self.x.double() / node.scale).clamp(-1.0, 1.0)
        else:
            xs = self.x / node.scale
        if self.sim.coding == "analog":
            if self.sim.integer:
                xs = torch.round(xs * 2.0 ** node.bits).to(self.sim.dtype)
            return xs[None], True
        steps = torch.arange(t0 + 1, t1 + 1, dtype=torch.int64)
        return poisson_spikes(xs, self.ids, steps, self.sim.seed).to(self.sim.dtype), False

    def _delayed(self, src: str, s: torch.Tensor, delay: int, tb: int) -> torch.Tensor:
        if delay == 0:
            return s
        return torch.cat([self.history[src], s])[-delay - tb:-delay]

    def block(self, t0: int, t1: int, record) -> None:
        sim, g, tb = self.sim, self.sim.graph, t1 - t0
        spikes: dict[str, torch.Tensor] = {}
        constant: dict[str, bool] = {}
        for name in sim.order:
            node = g.payload(name)
            if isinstance(node, InputSource):
                spikes[name], constant[name] = self._source(name, t0, t1)
                if not constant[name]:
                    record.spikes(name, spikes[name])
                continue
            current = 0
            for src, _, k, proj in sim.incoming[name]:
                s = spikes[src]
                if proj.delay or (proj.ops and isinstance(proj.ops[0], ops.MaxPool)):
                    if constant[src]:
                        s = s.expand((tb,) + tuple(s.shape[1:]))
                    s = self._delayed(src, s, proj.delay, tb)
                chain = proj.ops
                if chain and isinstance(chain[0], ops.MaxPool):
                    s = self.gates[(src, name, k)](chain[0], s)
                    chain = chain[1:]
                t = s.shape[0]
                flat = sim.project((src, name, k), proj, chain, s.reshape((t * self.b,) + tuple(s.shape[2:])))
                current = current + flat.reshape((t, self.b) + tuple(flat.shape[1:]))
            spikes[name] = self._integrate(name, node, current, tb, record)
            constant[name] = False
        for src, depth in sim.max_delay.items():
            s = spikes[src]
            if constant[src]:
                s = s.expand((tb,) + tuple(s.shape[1:]))
            self.history[src] = torch.cat([self.history[src], s])[-depth:]

    def _integrate(self, name: str, node: Population, current: torch.Tensor, tb: int, record) -> torch.Tensor:
        """Advance population ``name`` by the block's ``tb`` steps; ``current`` excludes the bias and is
        (tb, B, ...) or, for a constant input, (1, B, ...)."""
        if self.sim.fused(node, name):
            return self._integrate_fused(name, node, current, tb, record)
        state = self.state[name]
        v = state["v"]
        if BIAS_IN_DRIVE[node.semantics]:
            current = current + state["bias"]
        if current.shape[0] == 1 and tb > 1:
            current = current.expand((tb,) + tuple(current.shape[1:]))
        if node.readout == "accumulate":
            potentials = v[None] + torch.cumsum(current, dim=0)
            state["v"] = potentials[-1].clone()
            record.readout(name, potentials)
            return potentials  # not consumed: outputs have no outgoing projections
        update = UPDATES[node.semantics]
        out = torch.empty(current.shape, dtype=self.sim.dtype, device=v.device)
        fired = torch.empty(v.shape, dtype=torch.bool, device=v.device)
        trail = torch.empty_like(current) if name in self.counts else None   # V per step, for read-out ties
        for t in range(current.shape[0]):
            update(state, current[t], node, fired)
            out[t].copy_(fired)
            if trail is not None:
                trail[t].copy_(v)
        record.spikes(name, out)
        if name in self.counts:
            counts = self.counts[name][None] + torch.cumsum(out, dim=0)
            self.counts[name] = counts[-1].clone()
            record.count_readout(name, counts, trail)
        return out

    def _integrate_fused(self, name: str, node: Population, current: torch.Tensor, tb: int, record) -> torch.Tensor:
        """The NL-IAF block update in one pass (``kernels.nliaf_block``): same arithmetic as ``neurons.nliaf``.

        The kernel works in channels-last memory order, (H, W, C) per sample: the spikes it returns are
        logically (tb, B, C, H, W) with channels-last strides, on which PyTorch's CPU convolutions run
        about twice as fast as on the default order."""
        state = self.state[name]
        if "v_mem" not in state:           # the potentials move to memory order once per batch
            state["v_mem"] = _memory_order(state.pop("v"), 1)
        bias, fan, threshold = self.sim.kernel_constants(name, node)
        cur = _memory_order(current, 2)
        out = torch.empty((tb, self.b) + _memory_shape(node.shape), dtype=self.sim.dtype)
        counts, events = nliaf_block(*as_arrays(cur), cur.shape[0] == 1 and tb > 1, bias,
                                     *as_arrays(state["v_mem"], out.reshape(tb, self.b, -1)), fan, threshold,
                                     node.reset == "subtract", node.compare == ">=", int(node.state_bits),
                                     node.overflow == "saturate")
        spikes = _logical_order(out, 2)
        record.totals(name, spikes, counts, events)
        return spikes


def _memory_shape(shape: tuple) -> tuple:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


def _memory_order(x: torch.Tensor, lead: int) -> torch.Tensor:
    """(*lead, C, H, W) -> contiguous (*lead, H*W*C) (a view when x is channels-last); other shapes flattened."""
    if x.dim() - lead == 3:
        x = x.permute(tuple(range(lead)) + (lead + 1, lead + 2, lead))
    return x.contiguous().reshape(tuple(x.shape[:lead]) + (-1,))


def _logical_order(x: torch.Tensor, lead: int) -> torch.Tensor:
    """(*lead, H, W, C) -> the (*lead, C, H, W) view; other shapes unchanged."""
    if x.dim() - lead == 3:
        return x.permute(tuple(range(lead)) + (lead + 2, lead, lead + 1))
    return x


class _Recorder:
    """Accumulates one batch's per-step statistics on the host."""

    def __init__(self, sim: "Simulator", steps: int, batch: int):
        self.sim = sim
        self.pred = {o: np.zeros((steps, batch), np.int64) for o in sim.graph.outputs}
        self.spike_totals = {n: np.zeros(steps) for n in sim.spiking}
        self.events = np.zeros(steps)
        self.final: dict = {}
        self.trains = {n: [] for n in sim.spiking} if sim.record_trains else None
        self.t0 = 0

    def _keep_train(self, name: str, s: torch.Tensor) -> None:
        if self.trains is not None:
            self.trains[name].append(s.to(torch.int8).cpu().numpy())

    def spikes(self, name: str, s: torch.Tensor) -> None:
        t = s.shape[0]
        self._keep_train(name, s)
        if name in self.sim.graph.inputs:     # Poisson input spikes are signed
            s = s.abs()
        per_neuron = s.sum(dim=1).reshape(t, -1).to(torch.float64)   # float32 sums of 0/1: exact
        self.spike_totals[name][self.t0:self.t0 + t] += per_neuron.sum(dim=1).cpu().numpy()
        fan = self.sim.fanout.get(name)
        if fan is not None:
            self.events[self.t0:self.t0 + t] += (per_neuron @ fan).cpu().numpy()

    def totals(self, name: str, s: torch.Tensor, spikes: np.ndarray, events: np.ndarray) -> None:
        """Per-step totals computed by the fused kernel."""
        t = s.shape[0]
        self._keep_train(name, s)
        self.spike_totals[name][self.t0:self.t0 + t] += spikes
        if name in self.sim.fanout:
            self.events[self.t0:self.t0 + t] += events

    def readout(self, name: str, potentials: torch.Tensor) -> None:
        t = potentials.shape[0]
        flat = potentials.reshape(t, potentials.shape[1], -1)
        self.pred[name][self.t0:self.t0 + t] = flat.argmax(dim=2).cpu().numpy()
        self.final[name] = flat[-1].cpu().numpy()

    def count_readout(self, name: str, counts: torch.Tensor, v: torch.Tensor) -> None:
        """Spike-count read-out: the class with most spikes; ties go to the higher membrane potential."""
        t = counts.shape[0]
        flat = counts.reshape(t, counts.shape[1], -1)
        best = flat.max(dim=2, keepdim=True).values
        vv = v.reshape(flat.shape).to(torch.float64)
        score = torch.where(flat == best, vv, torch.full_like(vv, -math.inf))
        self.pred[name][self.t0:self.t0 + t] = score.argmax(dim=2).cpu().numpy()
        self.final[name] = flat[-1].cpu().numpy()


class Simulator:
    """Reference simulation of an SNN-level graph in float mode."""

    def __init__(self, graph: Graph, device: str = "cpu", coding: str = "analog", seed: int = 0,
                 dtype=torch.float32, record_trains: bool = False, fused: bool = True):
        if graph.level != "snn":
            raise ValueError("the simulator needs an SNN-level graph")
        if coding not in CODINGS:
            raise NeuroccError(f"unknown input coding {coding!r}; use one of {', '.join(CODINGS)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise NeuroccError("--device cuda was asked for, but torch sees no CUDA device here")
        self.integer = graph.meta.get("mode") == "integer"
        self.record_trains = record_trains
        self.use_fused = fused and FUSED
        if self.integer:
            dtype = torch.float32      # spikes and analog input integers (< 2^9): exact in float32
        self.graph, self.device, self.coding, self.seed, self.dtype = graph, torch.device(device), coding, seed, dtype
        self.order = graph.topo_order()
        self.incoming = {n: [(u, v, k, d["proj"]) for u, v, k, d in graph.nx.in_edges(n, keys=True, data=True)]
                         for n in self.order}
        self.gated = [(u, v, k) for n in self.order for u, v, k, p in self.incoming[n]
                      if p.ops and isinstance(p.ops[0], ops.MaxPool)]
        self.max_delay: dict[str, int] = {}
        for n in self.order:
            for u, _, _, p in self.incoming[n]:
                if p.delay:
                    self.max_delay[u] = max(self.max_delay.get(u, 0), p.delay)
        self.spiking = [n for n in self.order if isinstance(graph.payload(n), Population)
                        and graph.payload(n).readout == "spike"]
        if coding == "poisson":
            self.spiking = list(graph.inputs) + self.spiking
        self.fanout = {n: torch.as_tensor(fan_out(graph, n).reshape(-1), device=self.device)
                       for n in self.spiking if graph.nx.out_degree(n)}
        self._kernel_constants: dict = {}
        self.neurons = sum(int(np.prod(graph.shape(n))) for n in self.order)
        self._checked: set = set()
        self.exact_parts = {key: self._exact_parts(key, gate, chain) for key, gate, chain in self._integer_chains()}

    def kernel_constants(self, name: str, node: Population) -> tuple:
        """(bias, fan-out, threshold) of a population for the fused kernel, in its memory order and dtype."""
        if name not in self._kernel_constants:
            bias = _memory_order(self._bias(node)[None], 1)[0].numpy()
            fan = self.fanout[name].cpu().numpy() if name in self.fanout else np.zeros(int(np.prod(node.shape)))
            fan = torch.as_tensor(np.rint(fan).astype(np.int64)).reshape((1,) + tuple(node.shape))
            threshold = np.int64(int(node.threshold)) if self.integer else bias.dtype.type(node.threshold)
            self._kernel_constants[name] = (bias, _memory_order(fan, 1)[0].numpy(), threshold)
        return self._kernel_constants[name]

    def fused(self, node: Population, name: str) -> bool:
        """Whether population ``name`` takes the fused CPU kernel (NL-IAF semantics, spiking, not read out)."""
        return (self.use_fused and self.device.type == "cpu" and node.semantics in FUSED_SEMANTICS
                and node.readout == "spike" and name not in self.graph.outputs)

    def _integer_chains(self):
        """(projection key, gate ops, chain after the gate) of every projection, in integer mode."""
        if not self.integer:
            return []
        out = []
        for n in self.order:
            for u, v, k, p in self.incoming[n]:
                gated = bool(p.ops) and isinstance(p.ops[0], ops.MaxPool)
                out.append(((u, v, k), p.ops[:1] if gated else (), p.ops[1:] if gated else p.ops))
        return out

    def _exact_parts(self, key, gate, chain) -> list:
        """[(chain, factor, dtype)] whose results, times the factors, add up to the exact integer input.

        A chain's largest possible |sum| is bound = max over targets of sum |w| * (largest source value),
        computed with the weights' magnitudes. float32 holds every integer below 2^24 and float64 every
        integer below 2^53, so a chain under a bound runs in that dtype as it is (float32 convolutions
        are oneDNN's, about 10x faster than PyTorch's float64 im2col path; ``project`` checks each float32
        chain once against float64, so a transform such as Winograd that would not be exact is caught). Otherwise its weights are written in base 2^m digits,
        w = sum_k w_k 2^(m k), with m small enough that each digit's chain stays below 2^53; the
        int64 total must stay below 2^63.
        """
        src = self.graph.payload(key[0])
        largest = 2.0 ** src.bits if isinstance(src, InputSource) else 1.0
        x = torch.full((1,) + self.graph.shape(key[0]), largest, dtype=torch.float64)
        if gate:                        # a gate passes at most its input's largest value
            x = ops.apply(gate[0], [x])
        for op in chain:
            x = ops.apply_abs(op, x)
        bound = float(x.max())
        if bound < 2.0 ** 24:
            return [(chain, 1, torch.float32)]
        if bound < 2.0 ** 53:
            return [(chain, 1, torch.float64)]
        weighted = [op for op in chain if isinstance(op, (ops.Conv, ops.Gemm))]
        top = float(np.abs(weighted[0].weight).max()) if weighted else 0.0
        m = int(math.floor(52 - math.log2(bound / top))) if top else 0
        if bound >= 2.0 ** 62 or m < 1:
            raise NeuroccError(f"projection {key[0]!r} -> {key[1]!r}: sums up to {bound:.3g} exceed 64-bit integers")
        w = weighted[0].weight.astype(np.float64)
        digits = int(math.ceil(math.log2(top + 1) / m)) + 1
        parts, rest = [], w
        for k in range(digits):
            digit = rest if k == digits - 1 else np.mod(rest, 2.0 ** m)
            rest = (rest - digit) / 2.0 ** m
            part = tuple(dataclasses.replace(op, weight=digit) if op is weighted[0] else op for op in chain)
            parts.append((part, 2 ** (m * k), torch.float64))
        return parts

    def project(self, key, proj, chain, s: torch.Tensor) -> torch.Tensor:
        """A projection's input to its target for the flattened (steps x samples) source values ``s``."""
        if not self.integer:
            return apply_chain(chain, s)
        total = None
        # On CUDA cuDNN is switched off so that no Winograd or FFT transform can touch the integer sums.
        with torch.backends.cudnn.flags(enabled=False):
            for i, (part, factor, dtype) in enumerate(self.exact_parts[key]):
                y = apply_chain(part, s.to(dtype)).round().to(torch.int64)
                if dtype == torch.float32 and key not in self._checked:
                    self._checked.add(key)
                    exact = apply_chain(part, s.to(torch.float64)).round().to(torch.int64)
                    if not torch.equal(y, exact):      # the library took an inexact algorithm: use float64
                        self.exact_parts[key][i] = (part, factor, torch.float64)
                        y = exact
                total = y * factor if total is None else total + y * factor
        src, dst = self.graph.payload(key[0]), self.graph.payload(key[1])
        if isinstance(src, InputSource):                    # injected input: one floor shift
            return _shift(total, proj.shift + dst.input_shift - src.bits)
        return _shift(_shift(total, proj.shift), dst.input_shift)

    def _bias(self, node: Population) -> torch.Tensor:
        if self.integer:
            return torch.as_tensor(np.rint(node.bias).astype(np.int64), device=self.device)
        return torch.as_tensor(np.array(node.bias), dtype=self.dtype, device=self.device)

    def initial_state(self, node: Population, batch: int) -> dict:
        shape = (batch,) + tuple(node.shape)
        kind = dict(dtype=torch.int64 if self.integer else self.dtype, device=self.device)
        v0 = int(round(node.v0 * node.threshold)) if self.integer else node.v0 * node.threshold
        state = {"v": torch.full(shape, v0, **kind), "bias": self._bias(node)}
        if node.semantics == "loihi":
            state["u"] = torch.zeros(shape, **kind)
        if node.semantics == "spinnaker":
            state["timer"] = torch.zeros(shape, **kind)
        return state

    def block_steps(self, batch: int, steps: int) -> int:
        per_step = batch * self.neurons * torch.tensor([], dtype=self.dtype).element_size() * 3
        return int(max(1, min(steps, _BLOCK_BYTES // max(per_step, 1))))

    @torch.no_grad()
    def run_batch(self, x: np.ndarray, steps: int, sample_ids: np.ndarray, block: Optional[int] = None) -> Trace:
        xt = torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)
        ids = torch.as_tensor(sample_ids, dtype=torch.int64, device=self.device)
        run = _BatchRun(self, xt, ids)
        rec = _Recorder(self, steps, xt.shape[0])
        block = block or self.block_steps(xt.shape[0], steps)
        for t0 in range(0, steps, block):
            rec.t0 = t0
            run.block(t0, min(steps, t0 + block), rec)
        trains = {k: np.concatenate(v) for k, v in rec.trains.items()} if rec.trains is not None else {}
        return Trace(steps=steps, samples=xt.shape[0], predictions=rec.pred, spikes=rec.spike_totals,
                     synaptic_events=rec.events, final_readout=rec.final, spike_trains=trains)

    def run(self, x: np.ndarray, steps: int, batch_size: int = 64, block: Optional[int] = None,
            progress: Callable = lambda it: it) -> Trace:
        """Simulate ``steps`` time steps for every sample of ``x`` (already pre-processed)."""
        if steps < 1:
            raise NeuroccError(f"--steps must be at least 1, got {steps}")
        parts = []
        for start in progress(range(0, len(x), batch_size)):
            ids = np.arange(start, min(len(x), start + batch_size))
            parts.append(self.run_batch(x[start:start + batch_size], steps, ids, block))
        return Trace.concat(parts)
