"""Counting synapses: how many synapses leave each neuron of an SNN-level source.

A projection is a chain of linear ops; its synapses from input neuron i are the non-zero weights its
spike reaches. Counted as the vector-Jacobian product with ones of the chain with every weight replaced
by 1 where it is non-zero: pooling windows count one synapse per covered input, a chain with two
weighted ops counts paths, a max-pool gate counts its window. This is the fan-out that makes a spike
into synaptic events (anytime-perception §4) and the synapse count of a population's resources.
``synapse_matrix`` gives the synapses themselves, for a core mapping; ``weighted_layers`` counts a chain's
operations layer by layer, the way NeuroBench counts a torch module's (``neurocc.workload``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from . import ops
from .executor import apply_chain
from .graph import Graph


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


def projection_fan_out(proj, src_shape: tuple) -> np.ndarray:
    """Synapses of one projection leaving each neuron of its source, shape ``src_shape``."""
    chain = [c for op in proj.ops for c in _counting_op(op)]
    with torch.enable_grad():
        x = torch.ones((1,) + tuple(src_shape), dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(apply_chain(chain, x).sum(), x)
    return grad[0].numpy()


def fan_out(graph: Graph, src: str) -> np.ndarray:
    """Synapses leaving each neuron of ``src`` (summed over its projections), shape of ``src``."""
    total = np.zeros(graph.shape(src), np.float64)
    for _, _, d in graph.nx.out_edges(src, data=True):
        total += projection_fan_out(d["proj"], graph.shape(src))
    return total


def fan_in(graph: Graph, dst: str) -> np.ndarray:
    """Synapses reaching each neuron of ``dst`` (summed over its projections), shape of ``dst``."""
    total = np.zeros(graph.shape(dst), np.float64)
    with torch.no_grad():
        for src, _, proj in graph.projections(dst):
            chain = [c for op in proj.ops for c in _counting_op(op)]
            total += apply_chain(chain, torch.ones((1,) + graph.shape(src), dtype=torch.float64))[0].numpy()
    return total


# ops after which spikes are still spikes (0 or 1 per element and step): copies, zeros and the max-pool gate
_SPIKES_STAY_SPIKES = (ops.Pad, ops.Slice, ops.Flatten, ops.MaxPool)


@dataclasses.dataclass(frozen=True)
class WeightedLayer:
    """One Conv or Gemm of a projection chain, as NeuroBench's SynapticOperations sees it (a connection layer)."""
    index: int                 # its position in the chain: ops before it make its input
    fan: np.ndarray            # per element of its (flattened) input: the non-zero weights that element meets
    dense: int                 # its operations with every input and weight non-zero (NeuroBench's "Dense")
    spiking: bool              # its input is spikes (accumulates, ACs), not values (multiply-accumulates, MACs)


def weighted_layers(chain: tuple, src_shape: tuple, spiking_source: bool) -> list:
    """The Conv/Gemm layers of a chain from a source of shape ``src_shape``, in order.

    A layer's effective operations in one step are sum over input elements u_i != 0 of ``fan``_i, i.e. the
    layer applied with weights and inputs made 0/1 and its bias dropped, summed (NeuroBench 2.3.0's
    ``single_layer_MACs``); ``dense`` is the same with every weight and input 1. Its input is spikes when the
    source spikes and only copies, zero padding and the max-pool gate lie between them: NeuroBench decides
    the same per step from the values (all in {0, 1, -1}); here it follows from the chain, so that it does
    not depend on which samples share a batch."""
    layers, shape = [], tuple(src_shape)
    spiking = spiking_source
    with torch.no_grad():
        for i, op in enumerate(chain):
            x = torch.ones((1,) + shape, dtype=torch.float64)
            if isinstance(op, (ops.Conv, ops.Gemm)):
                binary = dataclasses.replace(op, weight=(op.weight != 0).astype(np.float64), bias=None)
                ones = dataclasses.replace(op, weight=np.ones_like(op.weight, np.float64), bias=None)
                with torch.enable_grad():
                    u = x.clone().requires_grad_(True)
                    (fan,) = torch.autograd.grad(ops.apply(binary, [u]).sum(), u)
                dense = int(round(float(ops.apply(ones, [x]).sum())))
                layers.append(WeightedLayer(i, fan.reshape(-1).numpy(), dense, spiking))
            spiking = spiking and isinstance(op, _SPIKES_STAY_SPIKES)
            shape = tuple(ops.apply(op, [x]).shape[1:])
    return layers


def synapse_matrix(chain: tuple, src_shape: tuple):
    """A linear chain's synapses as a sparse (target neurons x source neurons) CSR matrix of their weights
    (float64; a weight reached along several paths is their sum), both sides flattened channel-major.

    Computed with probes rather than one one-hot input per source: source neurons of one channel spaced s
    apart in both spatial axes share a probe when no target reads two of them, so a 3x3 convolution of a
    (C, H, W) source takes 9 C probes instead of C H W. Each probe runs the chain twice, on 1 and on
    (index + 1) at its sources, so the weight is the first result and the source index the second over the
    first. That no target reads two sources of a probe is checked exactly: with the chain's path counts P
    (every weight set to 1), sum P sum P i^2 = (sum P i)^2 holds only when all i are equal (Cauchy-Schwarz).
    s starts at the reach of a central source (``_reach_extent``) and doubles until the check holds for every
    probe, up to one source per probe (a dense layer).
    """
    from scipy import sparse

    if any(isinstance(op, ops.MaxPool) for op in chain):
        raise ValueError("a max-pool gate is not linear: it has no synapse matrix")
    shape = tuple(src_shape)
    n_src = int(np.prod(shape))
    index = torch.arange(1, n_src + 1, dtype=torch.float64).reshape(shape)
    counting = [c for op in chain for c in _counting_op(op)]
    spacing = _reach_extent(counting, shape)
    while True:
        probes = _probes(shape, spacing)
        if probes is None or _disjoint(counting, probes, index):
            break
        spacing *= 2
    if probes is None:                                   # one source per probe
        probes = torch.eye(n_src, dtype=torch.float64).reshape((n_src,) + shape)
    rows, cols, weights = [], [], []
    with torch.no_grad():
        for start in range(0, len(probes), _PROBE_BATCH):
            batch = probes[start:start + _PROBE_BATCH]
            w = apply_chain(chain, batch).reshape(len(batch), -1)
            tagged = apply_chain(chain, batch * index).reshape(len(batch), -1)
            p, dst = torch.nonzero(w, as_tuple=True)
            src = torch.round(tagged[p, dst] / w[p, dst]).to(torch.int64) - 1
            rows.append(dst.numpy())
            cols.append(src.numpy())
            weights.append(w[p, dst].numpy())
        n_dst = int(np.prod(apply_chain(chain, probes[:1]).shape[1:]))
    return sparse.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n_dst, n_src))


_PROBE_BATCH = 64


def _reach_extent(counting: list, shape: tuple) -> int:
    """The spacing that keeps a probe's sources apart: 1 + the largest spatial distance from a source at the
    centre of each channel to any source sharing a target with it (a forward and a backward pass of the path
    counts); ``synapse_matrix`` checks it."""
    if len(shape) != 3:
        return 1
    c, h, w = shape
    centre = torch.zeros((c,) + shape, dtype=torch.float64)
    centre[torch.arange(c), torch.arange(c), h // 2, w // 2] = 1.0
    with torch.enable_grad():
        x = torch.zeros((c,) + shape, dtype=torch.float64, requires_grad=True)
        reached = (apply_chain(counting, centre) > 0).to(torch.float64)
        (shared,) = torch.autograd.grad((apply_chain(counting, x) * reached).sum(), x)
    _, _, ys, xs = torch.nonzero(shared.detach(), as_tuple=True)
    if len(ys) == 0:
        return 1
    return 1 + int(max((ys - h // 2).abs().max(), (xs - w // 2).abs().max()))


def _probes(shape: tuple, spacing: int):
    """0/1 probes (P, *shape): per channel and offset (dy, dx), the sources at that offset modulo ``spacing``;
    None when ``spacing`` covers the whole map (then only one source per probe is left)."""
    if len(shape) != 3 or spacing > max(shape[1:]):
        return None
    c, h, w = shape
    probes = torch.zeros((c, spacing, spacing) + shape, dtype=torch.float64)
    for ch in range(c):
        for dy in range(spacing):
            for dx in range(spacing):
                probes[ch, dy, dx, ch, dy::spacing, dx::spacing] = 1.0
    return probes.reshape((-1,) + shape)


def _disjoint(counting: list, probes: torch.Tensor, index: torch.Tensor) -> bool:
    """Whether no target of ``counting`` (the chain's path counts) reads two sources of one probe. The sums are
    exact in float64 (paths x index^2 stays below 2^53 for sources up to ~10^6 neurons)."""
    with torch.no_grad():
        for start in range(0, len(probes), _PROBE_BATCH):
            batch = probes[start:start + _PROBE_BATCH]
            paths = apply_chain(counting, batch)
            first = apply_chain(counting, batch * index)
            second = apply_chain(counting, batch * index * index)
            paths, first, second = (torch.round(a).to(torch.int64) for a in (paths, first, second))
            if not torch.equal(paths * second, first * first):      # exact: int64 products of exact sums
                return False
    return True
