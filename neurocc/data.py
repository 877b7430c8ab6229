"""Data files: ``.npz`` with ``x`` (N x C x H x W, N x H x W for one channel, N x H x W x C, or
N x F) and optional integer labels ``y``. Loaded without pickle, pre-processed, checked against
the model's input shape."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from neurocc.errors import NeuroccError
from neurocc.options import Preprocess

log = logging.getLogger(__name__)


def _to_model_layout(x: np.ndarray, shape: tuple, path: str) -> np.ndarray:
    if tuple(x.shape[1:]) == shape:
        return x
    if len(shape) == 3 and shape[0] == 1 and tuple(x.shape[1:]) == shape[1:]:
        return x[:, None]
    if len(shape) == 3 and tuple(x.shape[1:]) == (shape[1], shape[2], shape[0]):
        log.info("%s: x is channels-last (N x H x W x C); transposing to N x C x H x W", path)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise NeuroccError(f"{path}: x has shape {tuple(x.shape)}, but the model input is N x {' x '.join(map(str, shape))}")


def load_data(path: str | Path, input_shape: tuple, preprocess: Preprocess,
              limit: Optional[int] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Return (pre-processed float32 x, int64 y or None)."""
    path = str(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            if "x" not in keys:
                raise NeuroccError(f"{path}: no array 'x' (found {keys or 'nothing'}); save with np.savez(path, x=..., y=...)")
            x = f["x"] if limit is None else f["x"][:limit]
            y = None if "y" not in keys else (f["y"] if limit is None else f["y"][:limit])
    except FileNotFoundError:
        raise NeuroccError(f"data file {path!r} not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise NeuroccError(f"{path}: not a readable .npz file ({e})") from None
    if x.dtype.kind not in "uif" or x.ndim < 2 or len(x) == 0:
        raise NeuroccError(f"{path}: x must be a non-empty numeric array with a sample axis, got {x.dtype} {x.shape}")
    x = _to_model_layout(x, tuple(input_shape), path)
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x) or y.dtype.kind not in "ui":
            raise NeuroccError(f"{path}: y must hold one integer label per sample ({len(x)}), got {y.dtype} {y.shape}")
        y = y.astype(np.int64)
    x = preprocess.apply(x)
    if not np.all(np.isfinite(x)):
        raise NeuroccError(f"{path}: x has non-finite values after pre-processing")
    return x, y
