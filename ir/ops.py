"""Operator payloads of the IR and their meaning.

Each ANN-level node carries one of these frozen dataclasses. The same classes describe the linear
chains inside SNN projections (see ``ir.snn``), so the ANN executor and the spiking simulator share
one implementation of every op: ``apply(op, inputs)``.

Shapes exclude the batch axis; tensors passed to ``apply`` include it (``N x ...``).
Conventions (all from the ONNX operator spec, after canonicalisation):

* ``Conv``: y = conv2d(pad(x, pads), weight, stride, dilation, groups) + bias, weight ``(O, I/g, kh, kw)``,
  ``pads = (top, left, bottom, right)``.
* ``Gemm``: y = x @ weight.T + bias, weight ``(out, in)``.
* ``Affine``: y = x * scale + shift, both broadcast against ``x.shape[1:]`` (None means 1 / 0).
* ``BatchNorm``: y = (x - mean) / sqrt(var + eps) * scale + bias, per channel (axis 1).
* ``Relu``: y = min(max(x, 0), cap) (cap None: no upper bound). Clip(min=0, max=cap) maps here.
* ``AvgPool`` / ``MaxPool``: 2-D pooling with ONNX pads ``(top, left, bottom, right)``.
* ``Pad``: zero padding, ``pads`` = ((begin, end) for every non-batch axis).
* ``Slice``: ``slices`` = ((axis, start, stop, step), ...) with axis counted without the batch axis.

Two ops belong to directly trained SNNs (``neurocc.train``; the ONNX ops ``neurocc.Spike`` and ``neurocc.BNTT``) and
depend on the time step t = 1, 2, ... (``TIME_OPS``); a graph holding them is run over time by ``ir.executor``:

* ``StepAffine``: y = scale[t'] * (x + shift[t']) per channel (axis 1), t' = min(t, S) - 1 for S rows: batch norm
  through time (bntt eq. 9, no beta) is scale = gamma_t / sqrt(sigma_t^2 + eps), shift = -mu_t.
* ``Spike``: a layer of spiking neurons, V <- leak V + x, s = V >= threshold (or >), V <- V - threshold s
  ("subtract") or 0 where s ("zero"), V(0) = v0 threshold; its output is s. ``neuron()`` is its ``ir.neurons`` model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _frozen_array(a) -> Optional[np.ndarray]:
    """A read-only float32 copy, so that payloads cannot be changed behind a pass's back."""
    if a is None:
        return None
    arr = np.array(a, dtype=np.float32, copy=True)
    arr.setflags(write=False)
    return arr


def same_value(a, b) -> bool:
    """Equality by value for payload fields: arrays by dtype, shape and contents; tuples element-wise."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b)))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


class ValueEquality:
    """Payloads compare by value (``same_value`` over their dataclass fields); they hold arrays, so they are
    not hashable."""

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        return all(same_value(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    __hash__ = None


@dataclass(frozen=True, eq=False)
class Op(ValueEquality):
    """Base class. ``arity`` is the number of data inputs (None: any number >= 1)."""
    arity = 1

    def tensors(self) -> dict:
        """The array-valued fields (serialised to npz)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def without_constant(self) -> "Op":
        """The linear part of an affine op (biases and shifts removed); itself for linear ops."""
        return self

    def has_constant(self) -> bool:
        return False


@dataclass(frozen=True, eq=False)
class Input(Op):
    """A graph input; ``shape`` excludes the batch axis."""
    shape: tuple
    arity = 0


@dataclass(frozen=True, eq=False)
class _Layer(Op):
    """A weighted layer: ``weight`` and an optional ``bias`` per output channel."""
    weight: np.ndarray
    bias: Optional[np.ndarray] = None

    def __post_init__(self):
        object.__setattr__(self, "weight", _frozen_array(self.weight))
        object.__setattr__(self, "bias", _frozen_array(self.bias))

    def without_constant(self):
        return dataclasses.replace(self, bias=None)

    def has_constant(self):
        return self.bias is not None


@dataclass(frozen=True, eq=False)
class Conv(_Layer):
    strides: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    dilations: tuple = (1, 1)
    groups: int = 1


@dataclass(frozen=True, eq=False)
class Gemm(_Layer):
    pass


@dataclass(frozen=True, eq=False)
class BatchNorm(Op):
    scale: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = 1e-5

    def __post_init__(self):
        for name in ("scale", "bias", "mean", "var"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name)))

    def as_affine(self, channel_dims: int) -> "Affine":
        """The same per-channel map as an ``Affine`` for an input with ``channel_dims`` non-batch axes."""
        gain = self.scale / np.sqrt(self.var + np.float32(self.eps))
        shape = (-1,) + (1,) * (channel_dims - 1)
        return Affine(scale=gain.reshape(shape), shift=(self.bias - self.mean * gain).reshape(shape))


@dataclass(frozen=True, eq=False)
class Affine(Op):
    scale: Optional[np.ndarray] = None
    shift: Optional[np.ndarray] = None

    def __post_init__(self):
        object.__setattr__(self, "scale", _frozen_array(self.scale))
        object.__setattr__(self, "shift", _frozen_array(self.shift))

    def without_constant(self):
        return dataclasses.replace(self, shift=None)

    def has_constant(self):
        return self.shift is not None


@dataclass(frozen=True, eq=False)
class Relu(Op):
    cap: Optional[float] = None


@dataclass(frozen=True, eq=False)
class Spike(Op):
    """Spiking neurons of a directly trained SNN (see the module docstring); a source of spikes, like ``Relu``."""
    threshold: float = 1.0
    leak: float = 1.0
    reset: str = "subtract"
    compare: str = ">="
    v0: float = 0.0

    def __post_init__(self):
        self.neuron()           # checks the fields

    def neuron(self):
        """The ``ir.neurons`` model of these neurons: ``IF`` without leak, else ``LIF``."""
        from .neurons import IF, LIF

        if not self.threshold > 0:
            raise ValueError(f"a spiking layer's threshold must be positive, got {self.threshold}")
        fields = dict(threshold=float(self.threshold), reset=self.reset, compare=self.compare, v0=float(self.v0))
        return IF(**fields) if self.leak == 1.0 else LIF(leak=float(self.leak), **fields)


@dataclass(frozen=True, eq=False)
class StepAffine(Op):
    """A per-step, per-channel affine map (batch norm through time; see the module docstring)."""
    scale: np.ndarray       # (S, C)
    shift: np.ndarray       # (S, C)

    def __post_init__(self):
        for name in ("scale", "shift"):
            arr = _frozen_array(getattr(self, name))
            if arr.ndim != 2:
                raise ValueError(f"StepAffine.{name} must be (steps, channels), got shape {arr.shape}")
            object.__setattr__(self, name, arr)
        if self.scale.shape != self.shift.shape:
            raise ValueError(f"StepAffine scale {self.scale.shape} and shift {self.shift.shape} differ in shape")

    def at(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """y = scale[t'] (x + shift[t']) at step t."""
        row = schedule_row(t, self.scale.shape[0])
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = tensor_of(self, "scale", x)[row].reshape(shape)
        return scale * (x + tensor_of(self, "shift", x)[row].reshape(shape))


def schedule_row(t: int, rows: int) -> int:
    """The row of a per-step schedule with ``rows`` rows that step t (1, 2, ...) uses: past the last, the last."""
    return min(t, rows) - 1


TIME_OPS = (Spike, StepAffine)


@dataclass(frozen=True, eq=False)
class Add(Op):
    arity = None


@dataclass(frozen=True, eq=False)
class Concat(Op):
    """Concatenation along ``axis`` (counted without the batch axis; 0 is channels)."""
    axis: int = 0
    arity = None


@dataclass(frozen=True, eq=False)
class _Pool(Op):
    """2-D pooling windows: kernel, strides, ONNX pads (top, left, bottom, right), ceil mode."""
    kernel: tuple
    strides: tuple
    pads: tuple = (0, 0, 0, 0)
    ceil_mode: bool = False


@dataclass(frozen=True, eq=False)
class AvgPool(_Pool):
    count_include_pad: bool = False


@dataclass(frozen=True, eq=False)
class SumPool(_Pool):
    """Sum over each window (integer-exact pooling; integer mode writes AvgPool as SumPool x 1/k^2)."""


@dataclass(frozen=True, eq=False)
class MaxPool(_Pool):
    dilations: tuple = (1, 1)


@dataclass(frozen=True, eq=False)
class GlobalAvgPool(Op):
    pass


@dataclass(frozen=True, eq=False)
class Flatten(Op):
    pass


@dataclass(frozen=True, eq=False)
class Pad(Op):
    pads: tuple  # ((begin, end), ...) per non-batch axis


@dataclass(frozen=True, eq=False)
class Slice(Op):
    slices: tuple  # ((axis, start, stop, step), ...), axis without the batch axis


OP_TYPES = {cls.__name__: cls for cls in (Input, Conv, Gemm, BatchNorm, Affine, Relu, Spike, StepAffine, Add, Concat,
                                          AvgPool, SumPool, MaxPool, GlobalAvgPool, Flatten, Pad, Slice)}


def tensor_of(payload, field: str, like: torch.Tensor) -> torch.Tensor:
    """``payload.field`` as a torch tensor on ``like``'s device and dtype, converted once and cached.

    Payload arrays are read-only and never change, so the cache (kept on the payload object, outside
    its dataclass fields) stays valid for the payload's lifetime.
    """
    cache = payload.__dict__.setdefault("_torch_cache", {})
    key = (field, like.device, like.dtype)
    if key not in cache:
        cache[key] = torch.tensor(np.array(getattr(payload, field)), device=like.device, dtype=like.dtype)
    return cache[key]


def _onnx_pad_2d(pads) -> tuple:
    """ONNX (top, left, bottom, right) to torch's F.pad order (left, right, top, bottom)."""
    top, left, bottom, right = pads
    return (left, right, top, bottom)


def _conv(op: Conv, x, weight=None):
    top, left, bottom, right = op.pads
    padding = (top, left)
    if (top, left) != (bottom, right):
        x = F.pad(x, _onnx_pad_2d(op.pads))
        padding = (0, 0)
    bias = None if op.bias is None else tensor_of(op, "bias", x)
    return F.conv2d(x, tensor_of(op, "weight", x) if weight is None else weight, bias, stride=op.strides,
                    padding=padding, dilation=op.dilations, groups=op.groups)


def _gemm(op: Gemm, x, weight=None):
    return F.linear(x, tensor_of(op, "weight", x) if weight is None else weight,
                    None if op.bias is None else tensor_of(op, "bias", x))


def apply_weighted(op: Op, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A Conv or Gemm without its bias, applied with ``weight`` in place of its own: the layer as a function of its
    weights, which autograd can fit (``passes.calibrate_snn``)."""
    return (_conv if isinstance(op, Conv) else _gemm)(op.without_constant(), x, weight)


def _affine(op: Affine, x):
    if op.scale is not None:
        x = x * tensor_of(op, "scale", x)
    if op.shift is not None:
        x = x + tensor_of(op, "shift", x)
    return x


def _batchnorm(op: BatchNorm, x):
    return _affine(op.as_affine(x.dim() - 1), x)


def _relu(op: Relu, x):
    return torch.clamp(x, min=0.0, max=op.cap)


def _pool_padding(op, x, value):
    if any(op.pads):
        x = F.pad(x, _onnx_pad_2d(op.pads), value=value)
    return x


def _ceil_crop(op, x, y):
    """With ceil_mode, ONNX drops a last window that would start in the end padding; so do we."""
    if not op.ceil_mode:
        return y
    dil = getattr(op, "dilations", (1, 1))
    sizes = []
    for axis in range(2):
        size, begin, end = x.shape[2 + axis], op.pads[axis], op.pads[2 + axis]
        span = (op.kernel[axis] - 1) * dil[axis] + 1
        out = -(-(size + begin + end - span) // op.strides[axis]) + 1
        if (out - 1) * op.strides[axis] >= size + begin:
            out -= 1
        sizes.append(out)
    return y[:, :, :sizes[0], :sizes[1]]


def _avgpool(op: AvgPool, x):
    padded = _pool_padding(op, x, 0.0)
    sums = F.avg_pool2d(padded, op.kernel, op.strides, ceil_mode=op.ceil_mode)
    if any(op.pads) and not op.count_include_pad:
        # Exclude padded cells from the divisor: sum over the window / number of real cells.
        ones = _pool_padding(op, torch.ones_like(x[:1, :1]), 0.0)
        sums = sums / F.avg_pool2d(ones, op.kernel, op.strides, ceil_mode=op.ceil_mode)
    return _ceil_crop(op, x, sums)


def _sumpool(op: SumPool, x):
    y = F.avg_pool2d(_pool_padding(op, x, 0.0), op.kernel, op.strides, ceil_mode=op.ceil_mode, divisor_override=1)
    return _ceil_crop(op, x, y)


def _maxpool(op: MaxPool, x):
    y = F.max_pool2d(_pool_padding(op, x, float("-inf")), op.kernel, op.strides,
                     dilation=op.dilations, ceil_mode=op.ceil_mode)
    return _ceil_crop(op, x, y)


def _pad(op: Pad, x):
    flat = []
    for begin, end in reversed(op.pads):
        flat += [begin, end]
    return F.pad(x, tuple(flat))


def _slice(op: Slice, x):
    index = [slice(None)] * x.dim()
    for axis, start, stop, step in op.slices:
        index[axis + 1] = slice(start, stop, step)
    return x[tuple(index)]


_UNARY: dict[type, Callable] = {
    Conv: _conv, Gemm: _gemm, Affine: _affine, BatchNorm: _batchnorm, Relu: _relu, AvgPool: _avgpool, SumPool: _sumpool,
    MaxPool: _maxpool, Pad: _pad, Slice: _slice,
    GlobalAvgPool: lambda op, x: x.mean(dim=(2, 3), keepdim=True),
    Flatten: lambda op, x: x.reshape(x.shape[0], -1),
}


def apply(op: Op, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Evaluate ``op`` on batched torch tensors: the meaning of every IR op but the ``TIME_OPS``, which
    ``ir.executor`` runs over time."""
    if isinstance(op, TIME_OPS):
        raise TypeError(f"{type(op).__name__} depends on the time step: run its graph with ir.executor.run_ann")
    if isinstance(op, Add):
        out = inputs[0]
        for other in inputs[1:]:
            out = out + other
        return out
    if isinstance(op, Concat):
        return torch.cat(list(inputs), dim=op.axis + 1)
    return _UNARY[type(op)](op, inputs[0])


def _pointwise(op: Op) -> bool:
    return isinstance(op, Conv) and op.weight.shape[2:] == (1, 1) and op.strides == (1, 1) and \
        not any(op.pads) and op.dilations == (1, 1)


def _dense_weight(conv: Conv) -> np.ndarray:
    """A grouped convolution's weight (O, I/g, kh, kw) as the equivalent dense one (O, I, kh, kw)."""
    w, g = conv.weight, conv.groups
    if g == 1:
        return w
    o, per_in = w.shape[:2]
    per_out = o // g
    dense = np.zeros((o, per_in * g) + w.shape[2:], w.dtype)
    for k in range(g):
        dense[k * per_out:(k + 1) * per_out, k * per_in:(k + 1) * per_in] = w[k * per_out:(k + 1) * per_out]
    return dense


def compose_linear(first: Op, then: Op) -> Optional[Op]:
    """One weighted op equal to ``then(first(x))`` for two linear (bias-free) weighted ops, or None.

    Exact where one of them is a 1 x 1 convolution with unit stride and no padding (it mixes channels
    at each position, so it commutes with the other's window and zero padding), or both are dense:
        W[o, i, :, :] = sum_h W_then[o, h] W_first[h, i, :, :]    (``then`` pointwise; ``first``'s geometry)
        W[o, i, :, :] = sum_h W_then[o, h, :, :] W_first[h, i]    (``first`` pointwise; ``then``'s geometry)
        W = W_then @ W_first                                       (Gemm after Gemm)
    A linear bottleneck (MobileNetV2's projection, then the next block's expansion) becomes one layer.
    """
    if first.has_constant() or then.has_constant():
        return None
    if isinstance(first, Gemm) and isinstance(then, Gemm):
        return Gemm(weight=then.weight.astype(np.float64) @ first.weight.astype(np.float64))
    if not (isinstance(first, Conv) and isinstance(then, Conv)):
        return None
    a, b = _dense_weight(first).astype(np.float64), _dense_weight(then).astype(np.float64)
    if _pointwise(then):
        return dataclasses.replace(first, weight=np.einsum("oh,hikl->oikl", b[:, :, 0, 0], a), groups=1)
    if _pointwise(first):
        return dataclasses.replace(then, weight=np.einsum("ohkl,hi->oikl", b, a[:, :, 0, 0]), groups=1)
    return None


def apply_abs(op: Op, x: torch.Tensor) -> torch.Tensor:
    """The op with every weight replaced by its magnitude and constants dropped (interval radius)."""
    linear = op.without_constant()
    if isinstance(linear, (Conv, Gemm)):
        linear = dataclasses.replace(linear, weight=np.abs(linear.weight))
    elif isinstance(linear, Affine) and linear.scale is not None:
        linear = dataclasses.replace(linear, scale=np.abs(linear.scale))
    elif isinstance(linear, BatchNorm):
        linear = Affine(scale=np.abs(linear.as_affine(x.dim() - 1).scale))
    return apply(linear, [x])
