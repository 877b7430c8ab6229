"""Layout permutations of ONNX tensors relative to the IR nodes that compute them.

Models converted from TensorFlow, Keras or TFLite (tf2onnx, tflite2onnx, onnx-tf) move tensors
between NHWC and NCHW with ``Transpose`` nodes. The IR has no transpose: the importer keeps each
ONNX value as an IR node plus a ``Layout`` saying how the ONNX tensor's elements are arranged
relative to the node's, and folds the layout where it can be folded:

* a pair of transposes that cancel composes to no layout at all;
* an elementwise op (ReLU, Clip, Add, Mul, ...) acts on the IR tensor with its constants permuted;
* an axis-wise op (Concat, ReduceMean, Pad, Slice, BatchNormalization) acts on the IR axis its ONNX
  axis names;
* a flatten (Flatten, Reshape to N x F, Squeeze) of a permuted tensor yields a feature order, which
  the next Gemm/MatMul absorbs into its weight columns; when the permutation only moves axes of size
  1 (a 1 x 1 spatial tensor) the order is the identity and the transpose was a reshape.

Everything else (a convolution or pooling of a permuted tensor, a permuted graph output) is refused
by the importer, naming the transpose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True, eq=False)
class Layout:
    """How an ONNX tensor is arranged relative to its IR node's tensor (batch axis excluded).

    ``axes``: ONNX axis i is IR axis ``axes[i]`` (ONNX tensor = IR tensor transposed by ``axes``).
    ``features``: for a flat tensor, ONNX feature j is IR feature ``features[j]``.
    Exactly one of them is set. ``made_by`` names the Transpose node it comes from.
    """
    made_by: str
    axes: Optional[tuple] = None
    features: Optional[np.ndarray] = None

    def onnx_shape(self, ir_shape: tuple) -> tuple:
        return tuple(ir_shape[a] for a in self.axes) if self.axes is not None else ir_shape

    def ir_axis(self, onnx_axis: int) -> int:
        """The IR axis (without batch) of a non-batch ONNX axis (without batch)."""
        return self.axes[onnx_axis]

    def flat_order(self, ir_shape: tuple) -> np.ndarray:
        """For each element of the flattened ONNX tensor, its index in the flattened IR tensor."""
        if self.features is not None:
            return self.features
        return np.arange(int(np.prod(ir_shape))).reshape(ir_shape).transpose(self.axes).ravel()

    def to_ir(self, const: np.ndarray, ir_shape: tuple) -> np.ndarray:
        """A constant that broadcasts against the ONNX tensor (batch axis removed), as one that broadcasts
        against the IR tensor: transposed with the tensor, or scattered into the IR feature order."""
        if self.features is not None:
            flat = np.broadcast_to(const, (len(self.features),))
            if np.all(flat == flat[:1]):
                return np.asarray(flat[:1])
            out = np.empty(len(self.features), const.dtype)
            out[self.features] = flat
            return out
        full = const.reshape((1,) * (len(self.axes) - const.ndim) + const.shape)
        return np.transpose(full, np.argsort(self.axes))


def same_arrangement(a: Optional[Layout], b: Optional[Layout]) -> bool:
    """Whether two layouts arrange their tensors' elements alike (whichever transposes made them)."""
    if a is None or b is None:
        return a is b
    if a.axes is not None or b.axes is not None:
        return a.axes == b.axes
    return np.array_equal(a.features, b.features)


def transposed(layout: Optional[Layout], perm: tuple, made_by: str, rank: int) -> Optional[Layout]:
    """The layout after an ONNX Transpose with ``perm`` (batch axis included, perm[0] == 0)."""
    before = layout.axes if layout is not None else tuple(range(rank))
    axes = tuple(before[p - 1] for p in perm[1:])
    return None if axes == tuple(range(rank)) else Layout(made_by=made_by, axes=axes)


def flattened(layout: Optional[Layout], ir_shape: tuple) -> Optional[Layout]:
    """The layout of the flattened tensor: a feature order, or None when the order is the identity."""
    if layout is None:
        return None
    order = layout.flat_order(ir_shape)
    if np.array_equal(order, np.arange(len(order))):
        return None
    return Layout(made_by=layout.made_by, features=order)


def absorb_into_columns(weight: np.ndarray, layout: Optional[Layout]) -> np.ndarray:
    """Weights (out x in) that read ONNX features, rearranged to read the IR features: W'[:, order[j]] = W[:, j]."""
    if layout is None:
        return weight
    out = np.empty_like(weight)
    out[:, layout.features] = weight
    return out
