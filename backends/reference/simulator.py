"""The reference simulator: a batched, time-blocked torch simulation of an SNN-level graph.

It implements exactly the semantics of ``neurocc.ir.snn``, each population's update being its neuron
model's ``step`` (``neurocc.ir.neurons``) and the input its coding (``neurocc.ir.coding``). For speed it
simulates population by population over a block of time steps: the projections of a block are one batched op
over (steps x samples) inputs, and only the membrane update loops over steps. Constant analog input
is projected once per block. Blocks carry all state (membrane potentials, max-pool gate counts,
delay lines), so the result does not depend on the block length. Blocks are kept small (a few steps
for a CIFAR ResNet at batch 32): larger ones measured slower, the convolutions falling out of cache.
On the CPU, populations whose model is the NL-IAF (``as_nliaf()``: float, generic, TrueNorth, weighted spikes) advance
through a block in one fused numba kernel (``kernels.py``) that also counts their spikes and events; it
keeps them in channels-last memory order, which PyTorch's CPU convolutions run about twice as fast on.
Loihi and SpiNNaker neurons, spike-count read-outs and CUDA take the model's per-step ``step``.

Integer mode (graphs after ``quantize``): spikes and projections are computed in float64, which is
exact because every projection's largest possible sum, checked when the simulator is built, stays
below 2^53 (sum over the fan-in of |integer weight| x the largest source value); a projection that
could exceed it is split into high and low weight halves, each exact, recombined in int64. Sums are
then converted to int64, shifted by the projection's ``shift`` (a negative shift floors; for an input,
``shift`` - its ``bits``) and then by the target's ``input_shift``, as Loihi floors after weight_exp and then
aligns by 6 bits; neuron state is int64 with the target's width and overflow rule. The input
is quantised as ``InputSource.encode`` says.

The run returns a ``Trace`` (``neurocc.backends.trace``): per sample and step, the read-outs' potentials
(and spike counts), every spiking population's spikes, synaptic events (spikes x fan-out,
``neurocc.ir.synapses``) and membrane updates (neurons whose potential changed), and the effective
operations that each source causes in the weighted layers of its projections (NeuroBench's counts,
``neurocc.workload``). Per-sample counts are sums of 0/1 spikes (times integer fan-outs) computed in
float32 where the largest possible sum is below 2^24, else in float64, so they are exact integers.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np
import torch

from neurocc.errors import NeuroccError
from neurocc.ir import Graph, ops
from neurocc.ir.executor import apply_chain
from neurocc.ir.neurons import IF
from neurocc.ir.snn import InputSource, Population
from neurocc.ir.synapses import fan_out, weighted_layers

from ..trace import Readout, Trace

try:
    from .kernels import as_arrays, nliaf_block
    FUSED = True
except ImportError:       # numba missing: the PyTorch update does the same work, more slowly
    FUSED = False

_BLOCK_BYTES = 256 * 2 ** 20   # budget for one block's spike tensors
_EXACT_FLOAT32 = 2 ** 24       # float32 holds every integer below this
_COPIES = (ops.Pad, ops.Slice, ops.Flatten)


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

    def __call__(self, op: ops.MaxPool, s: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        if weights is not None:
            return self._weighted(op, s, weights)
        t, b = s.shape[:2]
        acc = torch.cumsum(s, dim=0) + (self.acc if self.acc is not None else 0)
        flat = ops.apply(op, [acc.reshape((t * b,) + tuple(acc.shape[2:]))])
        pooled = flat.reshape((t, b) + tuple(flat.shape[1:]))
        prev = self.pooled if self.pooled is not None else torch.zeros_like(pooled[:1])
        out = pooled - torch.cat([prev, pooled[:-1]])
        self.acc, self.pooled = acc[-1:], pooled[-1:]
        return out

    def _weighted(self, op: ops.MaxPool, s: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted spikes (weighted-spikes §4.5 with phase coding): pass the spike of the input whose accumulated
        weighted sum C(t) = sum omega s is the largest (ties: a spike passes if any tied input spikes).

        C is kept in integer units of the finest weight (``weights``, 2^(K-1-p)); with the spikes' signs
        sigma in {-1, 0, 1}, max over a window of 4 C + sigma picks the largest C first and then its largest
        sigma, so maxpool(4 C + sigma) - 4 maxpool(C) is the winner's spike, exactly, in float64."""
        t, b = s.shape[:2]
        sign = torch.sign(s).to(torch.float64)
        acc = torch.cumsum(sign * weights.to(torch.float64).reshape((t,) + (1,) * (s.dim() - 1)), dim=0)
        acc = acc + (self.acc if self.acc is not None else 0)
        self.acc = acc[-1:]

        def pool(z):
            y = ops.apply(op, [z.reshape((t * b,) + tuple(z.shape[2:]))])
            return y.reshape((t, b) + tuple(y.shape[1:]))
        winner = pool(4 * acc + sign) - 4 * pool(acc)
        return winner.to(s.dtype) * s.abs().max()


class _BatchRun:
    """Simulates one batch of samples through all steps, block by block."""

    def __init__(self, sim: "Simulator", x: torch.Tensor, sample_ids: torch.Tensor, replay: dict):
        self.sim, self.x, self.ids, self.replay = sim, x, sample_ids, replay
        g = sim.graph
        self.b = x.shape[0]
        state_dtype = torch.int64 if sim.integer else sim.dtype
        self.state: dict[str, dict] = {}
        for name in sim.order:
            node = g.payload(name)
            if isinstance(node, Population):
                bias = sim.bias(node)       # a scheduled population's bias goes into its scheduled input
                self.state[name] = node.neuron.init_state(torch.zeros_like(bias) if node.scheduled else bias,
                                                          self.b, state_dtype)
        self.gates = {key: _Gate() for key in sim.gated}
        # the last (max delay) steps of every delayed source; zeros before the first step
        self.history = {src: torch.zeros((depth, self.b) + g.shape(src), dtype=sim.dtype, device=sim.device)
                        for src, depth in sim.max_delay.items()}
        self.counts = {n: torch.zeros((self.b,) + g.shape(n), dtype=sim.dtype, device=sim.device)
                       for n in g.outputs if g.payload(n).readout == "spike"}

    def _source(self, name: str, t0: int, t1: int) -> torch.Tensor:
        """The values of an input source for steps t0+1..t1 ((1, B, ...) for a constant coding)."""
        steps = torch.arange(t0 + 1, t1 + 1, dtype=torch.int64)
        return self.sim.graph.payload(name).encode(self.x, self.ids, steps, self.sim.integer, self.sim.coding)

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
                spikes[name], constant[name] = self._source(name, t0, t1), sim.constant_input(name)
                if not constant[name]:
                    record.spikes(name, spikes[name])
                continue
            if name in self.replay:
                spikes[name], constant[name] = self.replay[name][t0:t1].to(sim.dtype), False
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
                    weights = node.neuron.step_weights(t0, s.shape[0], True, s.device, skip=False)
                    s = self.gates[(src, name, k)](chain[0], s, weights)
                    chain = chain[1:]
                t = s.shape[0]
                flat_s = s.reshape((t * self.b,) + tuple(s.shape[2:]))
                if src not in sim.operations_are_events:
                    record.operations(src, sim.layers[(src, name, k)], len(proj.ops) - len(chain), chain, flat_s, t, tb)
                flat = sim.project((src, name, k), proj, chain, flat_s)
                current = current + flat.reshape((t, self.b) + tuple(flat.shape[1:]))
            spikes[name] = self._integrate(name, node, current, t0, tb, record)
            constant[name] = False
        for src, depth in sim.max_delay.items():
            s = spikes[src]
            if constant[src]:
                s = s.expand((tb,) + tuple(s.shape[1:]))
            self.history[src] = torch.cat([self.history[src], s])[-depth:]

    def _integrate(self, name: str, node: Population, current: torch.Tensor, t0: int, tb: int,
                   record) -> torch.Tensor:
        """Advance population ``name`` through steps t0+1..t0+tb; ``current`` excludes the bias and is
        (tb, B, ...) or, for a constant input, (1, B, ...)."""
        if self.sim.fused(node, name):
            return self._integrate_fused(name, node, current, t0, tb, record)
        state = self.state[name]
        v = state["v"]
        if node.scheduled:                  # gain[t'] (I + b + shift[t']); its state's bias is zero
            current = node.scheduled_input(current.expand((tb,) + tuple(current.shape[1:])) + self.sim.bias(node), t0)
        if node.readout == "accumulate" and isinstance(node.neuron, IF):       # V + I + b, unbounded
            current = current + state["bias"]
            if current.shape[0] == 1 and tb > 1:
                current = current.expand((tb,) + tuple(current.shape[1:]))
            weights = node.neuron.step_weights(t0, tb, self.sim.integer, v.device)
            if weights is not None:                 # weighted spikes: omega(t) (I + b), eq. 8
                current = current * weights.to(current.dtype).reshape((tb,) + (1,) * (current.dim() - 1))
            potentials = v[None] + torch.cumsum(current, dim=0)
            state["v"] = potentials[-1].clone()
            record.readout(name, potentials)
            return potentials  # not consumed: outputs have no outgoing projections
        if current.shape[0] == 1 and tb > 1:
            current = current.expand((tb,) + tuple(current.shape[1:]))
        out = torch.empty(current.shape, dtype=self.sim.dtype, device=v.device)
        trail = torch.empty((tb + 1,) + tuple(current.shape[1:]), dtype=v.dtype, device=v.device)
        trail[0].copy_(v)                  # V before the block, then after each step (updates, read-out ties)
        for t in range(tb):
            out[t].copy_(node.neuron.step(state, current[t], t0 + t + 1))
            trail[t + 1].copy_(state["v"])
        if node.readout == "accumulate":        # a chip's read-out cell: its potential is the read-out
            record.readout(name, trail[1:])
            return out
        record.spikes(name, out)
        changed = (trail[1:] != trail[:-1]).reshape(tb, self.b, -1).sum(dim=2)
        record.updates[name][record.rows(tb)] = changed.cpu().numpy()
        trail = trail[1:]
        if name in self.counts:
            counts = self.counts[name][None] + torch.cumsum(out, dim=0)
            self.counts[name] = counts[-1].clone()
            record.readout(name, trail, counts)
        return out

    def _integrate_fused(self, name: str, node: Population, current: torch.Tensor, t0: int, tb: int,
                         record) -> torch.Tensor:
        """The NL-IAF block update in one pass (``kernels.nliaf_block``): the same arithmetic as ``IF.step``.

        The kernel works in channels-last memory order, (H, W, C) per sample: the spikes it returns are
        logically (tb, B, C, H, W) with channels-last strides, on which PyTorch's CPU convolutions run
        about twice as fast as on the default order."""
        state = self.state[name]
        if "v_mem" not in state:           # the potentials move to memory order once per batch
            state["v_mem"] = _memory_order(state.pop("v"), 1)
        bias, fan, threshold = self.sim.kernel_constants(name, node)
        model = node.neuron.as_nliaf()
        cur = _memory_order(current, 2)
        out = torch.empty((tb, self.b) + _memory_shape(node.shape), dtype=self.sim.dtype)
        weights = model.step_weights(t0, tb, self.sim.integer)
        weights = np.ones(tb, threshold.dtype) if weights is None else weights.numpy().astype(threshold.dtype)
        counts, events, changed = nliaf_block(*as_arrays(cur), cur.shape[0] == 1 and tb > 1, bias,
                                              *as_arrays(state["v_mem"], out.reshape(tb, self.b, -1)), fan, threshold,
                                              weights, model.reset == "subtract", model.compare == ">=",
                                              int(model.state_bits), model.overflow == "saturate")
        spikes = _logical_order(out, 2)
        record.totals(name, spikes, counts, events)
        record.updates[name][record.rows(tb)] = changed
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
    """Collects one batch's observables per sample and step on the host (see ``neurocc.backends.trace``)."""

    def __init__(self, sim: "Simulator", steps: int, batch: int):
        self.sim, self.steps, self.batch = sim, steps, batch
        self.spike_counts = {n: np.zeros((steps, batch), np.int64) for n in sim.spiking}
        self.events = {n: np.zeros((steps, batch), np.int64) for n in sim.fanout}
        self.updates = {n: np.zeros((steps, batch), np.int64) for n in sim.spiking if n not in sim.graph.inputs}
        sources = [n for n in sim.order if sim.graph.nx.out_degree(n)]
        self.acs = {n: np.zeros((steps, batch), np.int64) for n in sources}
        self.macs = {n: np.zeros((steps, batch), np.int64) for n in sources}
        self.readouts: dict = {}
        self.trains = {n: [] for n in sim.spiking} if sim.record_trains else None
        self.t0 = 0

    def rows(self, t: int) -> slice:
        return slice(self.t0, self.t0 + t)

    def operations(self, name: str, layers: list, offset: int, chain: tuple, s: torch.Tensor, t: int, tb: int) -> None:
        """The effective operations of the weighted layers of a projection from ``name``
        (``ir.synapses.weighted_layers``) for its values ``s`` (t x B, ...) as the chain receives them (after
        the gate, if any, which takes ``offset`` ops); a constant input (t = 1) does the same in each of the
        ``tb`` steps."""
        for layer in layers:
            x = apply_chain(chain[:layer.index - offset], s)
            fan = self.sim.layer_fans[id(layer)]
            ops_per_row = ((x != 0).reshape(t, self.batch, -1).to(fan.dtype) @ fan).round().to(torch.int64)
            target = self.acs if layer.spiking else self.macs
            target[name][self.rows(tb)] += ops_per_row.expand(tb, self.batch).cpu().numpy()

    def spikes(self, name: str, s: torch.Tensor) -> None:
        """Spikes (t, B, ...) of a population, or of a spike-coded input (signed)."""
        t = s.shape[0]
        if name in self.sim.graph.inputs:       # a spike of an integer-coded input carries 2^bits: count its sign
            s = torch.sign(s)
        if self.trains is not None:
            self.trains[name].append(s.to(torch.int8).cpu().numpy())
        flat = s.reshape(t, self.batch, -1)
        if name in self.sim.graph.inputs:
            flat = flat.abs()
        dtype = self.sim.count_dtype[name]
        self.spike_counts[name][self.rows(t)] = flat.sum(dim=2, dtype=dtype).cpu().numpy()
        fan = self.sim.fanout.get(name)
        if fan is not None:
            self.events[name][self.rows(t)] = (flat.to(fan.dtype) @ fan).cpu().numpy()

    def totals(self, name: str, s: torch.Tensor, spikes: np.ndarray, events: np.ndarray) -> None:
        """Per-sample totals (t, B) computed by the fused kernel."""
        t = s.shape[0]
        if self.trains is not None:
            self.trains[name].append(s.to(torch.int8).cpu().numpy())
        self.spike_counts[name][self.rows(t)] = spikes
        if name in self.events:
            self.events[name][self.rows(t)] = events

    def readout(self, name: str, potentials: torch.Tensor, counts: Optional[torch.Tensor] = None) -> None:
        """A read-out's potentials (t, B, ...) after each step, and its spike counts so far if it spikes."""
        t = potentials.shape[0]
        if name not in self.readouts:
            classes = int(np.prod(potentials.shape[2:]))
            dtype = torch.empty((), dtype=potentials.dtype).numpy().dtype
            self.readouts[name] = Readout(potential=np.zeros((self.steps, self.batch, classes), dtype),
                                          count=None if counts is None else
                                          np.zeros((self.steps, self.batch, classes), np.int64))
        r = self.readouts[name]
        r.potential[self.rows(t)] = potentials.reshape(t, self.batch, -1).cpu().numpy()
        if counts is not None:
            r.count[self.rows(t)] = counts.reshape(t, self.batch, -1).cpu().numpy()

    def trace(self) -> Trace:
        for name in self.sim.operations_are_events:
            self.acs[name] = self.events[name].copy()
        trains = {k: np.concatenate(v) for k, v in self.trains.items()} if self.trains is not None else {}
        return Trace(steps=self.steps, samples=self.batch, readouts=self.readouts, spikes=self.spike_counts,
                     events=self.events, spike_trains=trains, updates=self.updates, acs=self.acs, macs=self.macs)


class Simulator:
    """Reference simulation of an SNN-level graph (float or integer mode).

    ``coding`` (an ``ir.coding`` instance) overrides the input coding compiled into the graph.
    """

    def __init__(self, graph: Graph, device: str = "cpu", coding=None, dtype=torch.float32,
                 record_trains: bool = False, fused: bool = True):
        if graph.level != "snn":
            raise ValueError("the simulator needs an SNN-level graph")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise NeuroccError("--device cuda was asked for, but torch sees no CUDA device here")
        self.integer = graph.meta.get("mode") == "integer"
        self.record_trains = record_trains
        self.use_fused = fused and FUSED
        if self.integer:
            dtype = torch.float32      # spikes and analog input integers (< 2^9): exact in float32
        self.graph, self.device, self.coding, self.dtype = graph, torch.device(device), coding, dtype
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
        self.spiking = [n for n in graph.inputs if not self.constant_input(n)] + self.spiking
        self.fanout, self.count_dtype = {}, {}
        for n in self.spiking:
            size = int(np.prod(graph.shape(n)))
            self.count_dtype[n] = torch.float32 if size < _EXACT_FLOAT32 else torch.float64
            if graph.nx.out_degree(n):
                fan = fan_out(graph, n).reshape(-1)
                dtype = torch.float32 if fan.sum() < _EXACT_FLOAT32 else torch.float64
                self.fanout[n] = torch.as_tensor(fan, dtype=dtype, device=self.device)
        self.layers, self.layer_fans = {}, {}
        for n in self.order:
            for u, v, k, p in self.incoming[n]:
                self.layers[(u, v, k)] = weighted_layers(p.ops, graph.shape(u), u in self.spiking)
                for layer in self.layers[(u, v, k)]:
                    dtype = torch.float32 if layer.fan.sum() < _EXACT_FLOAT32 else torch.float64
                    self.layer_fans[id(layer)] = torch.as_tensor(layer.fan, dtype=dtype, device=self.device)
        # sources whose every projection is copies then one weighted layer: their accumulates are their
        # synaptic events (the same non-zero weights per spike), which are counted anyway
        self.operations_are_events = set(self.fanout)
        for n in self.order:
            for u, v, k, p in self.incoming[n]:
                layers = self.layers[(u, v, k)]
                if not (len(layers) == 1 and layers[0].index == len(p.ops) - 1
                        and all(isinstance(op, _COPIES) for op in p.ops[:-1])):
                    self.operations_are_events.discard(u)
        self._kernel_constants: dict = {}
        self.neurons = sum(int(np.prod(graph.shape(n))) for n in self.order)
        self._checked: set = set()
        self.exact_parts = {key: self._exact_parts(key, gate, chain) for key, gate, chain in self._integer_chains()}

    def constant_input(self, name: str) -> bool:
        """Whether the input ``name`` is a constant current (no spikes to count) under the run's coding."""
        return (self.coding or self.graph.payload(name).coding).constant

    def kernel_constants(self, name: str, node: Population) -> tuple:
        """(bias, fan-out, threshold) of a population for the fused kernel, in its memory order and dtype."""
        if name not in self._kernel_constants:
            bias = _memory_order(self.bias(node)[None], 1)[0].numpy()
            fan = self.fanout[name].cpu().numpy() if name in self.fanout else np.zeros(int(np.prod(node.shape)))
            fan = torch.as_tensor(np.rint(fan).astype(np.int64)).reshape((1,) + tuple(node.shape))
            theta = node.neuron.threshold
            threshold = np.int64(int(theta)) if self.integer else bias.dtype.type(theta)
            self._kernel_constants[name] = (bias, _memory_order(fan, 1)[0].numpy(), threshold)
        return self._kernel_constants[name]

    def fused(self, node: Population, name: str) -> bool:
        """Whether population ``name`` takes the fused CPU kernel (an NL-IAF model, spiking, not read out)."""
        return (self.use_fused and self.device.type == "cpu" and node.neuron.as_nliaf() is not None
                and not node.scheduled and node.readout == "spike" and name not in self.graph.outputs)

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
        bits = src.bits if isinstance(src, InputSource) else 0     # an input's integers carry 2^bits
        return _shift(_shift(total, proj.shift - bits), dst.neuron.input_shift)

    def bias(self, node: Population) -> torch.Tensor:
        """The population's bias on the simulation device: int64 in integer mode."""
        if self.integer:
            return torch.as_tensor(np.rint(node.bias).astype(np.int64), device=self.device)
        return torch.as_tensor(np.array(node.bias), dtype=self.dtype, device=self.device)

    def block_steps(self, batch: int, steps: int) -> int:
        per_step = batch * self.neurons * torch.tensor([], dtype=self.dtype).element_size() * 3
        return int(max(1, min(steps, _BLOCK_BYTES // max(per_step, 1))))

    @torch.no_grad()
    def run_batch(self, x: np.ndarray, steps: int, sample_ids: np.ndarray, block: Optional[int] = None,
                  replay: Optional[dict] = None) -> Trace:
        """One batch through ``steps`` steps. ``replay`` maps populations to spike trains (steps, B, *shape) that
        they emit instead of integrating their input: a population without incoming projections then stands for
        a recorded run of the network upstream of it (``calibrate_snn`` simulates one depth at a time so)."""
        xt = torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)
        ids = torch.as_tensor(sample_ids, dtype=torch.int64, device=self.device)
        replay = {n: torch.as_tensor(v, device=self.device) for n, v in (replay or {}).items()}
        run = _BatchRun(self, xt, ids, replay)
        rec = _Recorder(self, steps, xt.shape[0])
        block = block or self.block_steps(xt.shape[0], steps)
        for t0 in range(0, steps, block):
            rec.t0 = t0
            run.block(t0, min(steps, t0 + block), rec)
        return rec.trace()

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
