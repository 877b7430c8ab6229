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


def _counting_chain(chain: tuple, src_shape: tuple) -> list:
    """The chain with each op replaced by its counting ops (``_counting_op``); a global average pool counts
    one synapse per covered input, like a pooling window (it needs the shape it sees)."""
    out, shape = [], tuple(src_shape)
    for op in chain:
        if isinstance(op, ops.GlobalAvgPool):
            out += [op, ops.Affine(scale=np.float32(np.prod(shape[1:])))]
        else:
            out += _counting_op(op)
        with torch.no_grad():
            shape = tuple(ops.apply(op, [torch.zeros((1,) + shape)]).shape[1:])
    return out


def chain_fan_out(chain: tuple, src_shape: tuple) -> np.ndarray:
    """Synapses of a chain leaving each neuron of its source, shape ``src_shape``."""
    counting = _counting_chain(chain, src_shape)
    with torch.enable_grad():
        x = torch.ones((1,) + tuple(src_shape), dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(apply_chain(counting, x).sum(), x)
    return grad[0].numpy()


def projection_fan_out(proj, src_shape: tuple) -> np.ndarray:
    """Synapses of one projection leaving each neuron of its source, shape ``src_shape``."""
    return chain_fan_out(proj.ops, src_shape)


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
            chain = _counting_chain(proj.ops, graph.shape(src))
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
                ones = dataclasses.replace(op, weight=np.ones_like(op.weight, np.float64), bias=None)
                dense = int(round(float(ops.apply(ones, [x]).sum())))
                layers.append(WeightedLayer(i, chain_fan_out((op,), shape).reshape(-1), dense, spiking))
            spiking = spiking and isinstance(op, _SPIKES_STAY_SPIKES)
            shape = tuple(ops.apply(op, [x]).shape[1:])
    return layers


def synapse_matrix(chain: tuple, src_shape: tuple):
    """A linear chain's synapses as a sparse (target neurons x source neurons) CSR matrix of their weights
    (float64; a weight reached along several paths is their sum, and one that sums to 0 is no synapse), both
    sides flattened channel-major.

    The product of the ops' own matrices, last first: a convolution's from its weights by index arithmetic
    (each non-zero tap at every output position whose input lies inside the map), a Gemm's is its weight, an
    Affine's the diagonal of its scale, a copy (Slice, Pad, Flatten) maps each output to the source it holds
    (the op applied to the sources' indices), and a pooling acts on every channel alike, so its matrix is one
    channel's, found by one-hot inputs, repeated on the diagonal. Any other linear op is probed one source at
    a time.
    """
    from scipy import sparse

    if any(isinstance(op, ops.MaxPool) for op in chain):
        raise ValueError("a max-pool gate is not linear: it has no synapse matrix")
    shape = tuple(src_shape)
    total = sparse.identity(int(np.prod(shape)), dtype=np.float64, format="csr")
    for op in chain:
        matrix, shape = _op_matrix(op, shape)
        total = matrix @ total
    total = total.tocsr()
    total.sum_duplicates()
    total.eliminate_zeros()
    return total


_CHUNK = 1 << 22                 # (tap, position) pairs per step of a convolution's index arithmetic


def _op_matrix(op: ops.Op, shape: tuple):
    """(CSR matrix of one op from ``shape`` inputs, its output shape)."""
    from scipy import sparse

    n = int(np.prod(shape))
    if isinstance(op, ops.Conv):
        return _conv_matrix(op, shape)
    if isinstance(op, ops.Gemm):
        return sparse.csr_matrix(np.asarray(op.weight, np.float64)), (op.weight.shape[0],)
    if isinstance(op, ops.Affine):
        scale = np.broadcast_to(np.asarray(op.scale, np.float64), shape).reshape(-1)
        return sparse.diags(scale, format="csr"), shape
    with torch.no_grad():
        if isinstance(op, (ops.Slice, ops.Pad, ops.Flatten)):
            held = ops.apply(op, [torch.arange(1, n + 1, dtype=torch.float64).reshape((1,) + shape)])[0]
            out_shape, held = tuple(held.shape), held.reshape(-1).numpy()
            rows = np.flatnonzero(held)
            return sparse.csr_matrix((np.ones(len(rows)), (rows, held[rows].astype(np.int64) - 1)),
                                     shape=(len(held), n)), out_shape
        if isinstance(op, (ops.AvgPool, ops.SumPool, ops.GlobalAvgPool)) and len(shape) == 3:
            c, h, w = shape
            one = ops.apply(op, [torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)])
            out_shape = (c,) + tuple(one.shape[2:])
            channel = sparse.csr_matrix(one.reshape(h * w, -1).numpy().T)
            return sparse.block_diag([channel] * c, format="csr"), out_shape
        probes = ops.apply(op, [torch.eye(n, dtype=torch.float64).reshape((n,) + shape)])
        return sparse.csr_matrix(probes.reshape(n, -1).numpy().T), tuple(probes.shape[1:])


def _conv_matrix(op: ops.Conv, shape: tuple):
    """A convolution's synapses: output (o, y, x) reads input (c, y s - top + ky d, x s - left + kx d) through
    the tap w[o, i, ky, kx] (c = o's group's first input channel + i) where that input lies inside the map."""
    from scipy import sparse

    c, h, w = shape
    out_ch, per_group, kh, kw = op.weight.shape
    top, left, bottom, right = op.pads
    (sy, sx), (dy, dx) = op.strides, op.dilations
    ho = (h + top + bottom - dy * (kh - 1) - 1) // sy + 1
    wo = (w + left + right - dx * (kw - 1) - 1) // sx + 1
    o, i, ky, kx = np.nonzero(op.weight)
    weight = np.asarray(op.weight, np.float64)[o, i, ky, kx]
    channel = (o // (out_ch // op.groups)) * per_group + i
    y, x = (a.reshape(-1) for a in np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij"))
    rows, cols, data = [], [], []
    step = max(1, _CHUNK // max(len(y), 1))
    for lo in range(0, len(o), step):
        part = slice(lo, lo + step)
        iy = y[None, :] * sy - top + (ky[part] * dy)[:, None]
        ix = x[None, :] * sx - left + (kx[part] * dx)[:, None]
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        tap, pos = np.nonzero(inside)
        rows.append(o[part][tap] * ho * wo + y[pos] * wo + x[pos])
        cols.append(channel[part][tap] * h * w + iy[tap, pos] * w + ix[tap, pos])
        data.append(weight[part][tap])
    matrix = sparse.csr_matrix((np.concatenate(data) if data else np.zeros(0),
                                (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                                 np.concatenate(cols) if cols else np.zeros(0, np.int64))),
                               shape=(out_ch * ho * wo, c * h * w))
    return matrix, (out_ch, ho, wo)
