"""Data files: ``.npz`` with ``x`` (N x C x H x W, N x H x W for one channel, N x H x W x C, or
N x F) and optional integer labels ``y``. Loaded without pickle, checked before anything is allocated
(a zip archive of ``.npy`` members whose headers declare exactly the bytes they hold), pre-processed,
and checked against the model's input shape and number of classes."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from neurocc.errors import NeuroccError
from neurocc.options import Preprocess

log = logging.getLogger(__name__)
MAX_BYTES = 2 ** 34           # 16 GiB: refuse arrays larger than this before reading them


def _to_model_layout(x: np.ndarray, shape: tuple, path: str, preprocess: Preprocess) -> np.ndarray:
    if tuple(x.shape[1:]) == shape:
        return x
    perm = preprocess.transpose
    if perm and len(perm) == x.ndim and tuple(x.shape[1:]) == preprocess.declared_shape(shape):
        log.info("%s: x has the model's declared input layout; transposing it by %s", path, list(perm))
        return np.ascontiguousarray(x.transpose(perm))
    if len(shape) == 3 and shape[0] == 1 and tuple(x.shape[1:]) == shape[1:]:
        return x[:, None]
    if len(shape) == 3 and tuple(x.shape[1:]) == (shape[1], shape[2], shape[0]):
        log.info("%s: x is channels-last (N x H x W x C); transposing to N x C x H x W", path)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise NeuroccError(f"{path}: x has shape {tuple(x.shape)}, but the model input is N x {' x '.join(map(str, shape))}")


def _header(archive: zipfile.ZipFile, member: str, path: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) an ``.npy`` member declares, checked against the bytes the member holds."""
    info = archive.getinfo(member)
    with archive.open(member) as f:
        try:
            version = np.lib.format.read_magic(f)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in reader:
                raise ValueError(f".npy format version {version} is not supported")
            shape, _, dtype = reader[version](f)
        except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
            raise NeuroccError(f"{path}: member {member!r} is not a valid .npy array ({e})") from None
        header_bytes = f.tell()
    if dtype.hasobject:
        raise NeuroccError(f"{path}: {member!r} holds Python objects; save plain numbers (nothing is unpickled)")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared != info.file_size - header_bytes or declared > MAX_BYTES:
        raise NeuroccError(f"{path}: {member!r} declares shape {tuple(shape)} of {dtype} "
                           f"({declared:,} bytes), but holds {info.file_size - header_bytes:,} bytes")
    return tuple(shape), dtype


def read_npz(path: str) -> dict:
    """The arrays of an ``.npz`` file, after checking its structure and every member's declared size."""
    try:
        if not zipfile.is_zipfile(path):
            if not Path(path).exists():
                raise NeuroccError(f"data file {path!r} not found")
            raise NeuroccError(f"{path}: not an .npz archive (a zip of .npy files; write it with np.savez)")
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            bad = [m for m in members if not m.endswith(".npy")]
            if bad:
                raise NeuroccError(f"{path}: member {bad[0]!r} is not an .npy array; write the file with np.savez")
            for member in members:
                _header(archive, member, path)
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except NeuroccError:
        raise
    except IsADirectoryError:
        raise NeuroccError(f"{path}: is a folder, not an .npz data file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise NeuroccError(f"{path}: not a readable .npz file ({' '.join(str(e).split())})") from None


def load_data(path: str | Path, input_shape: tuple, preprocess: Preprocess, limit: Optional[int] = None,
              classes: Optional[int] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Return (pre-processed float32 x, int64 y or None); ``classes``, if given, bounds the labels."""
    path = str(path)
    arrays = read_npz(path)
    if "x" not in arrays:
        raise NeuroccError(f"{path}: no array 'x' (found {list(arrays) or 'nothing'}); save with np.savez(path, x=..., y=...)")
    x, y = arrays["x"], arrays.get("y")
    if x.dtype.kind not in "uif" or x.ndim < 2 or len(x) == 0:
        raise NeuroccError(f"{path}: x must be a non-empty numeric array with a sample axis, got {x.dtype} {x.shape}")
    if y is not None:
        y = np.asarray(y).reshape(-1) if y.ndim else y.reshape(-1)
        if len(y) != len(x) or y.dtype.kind not in "ui":
            raise NeuroccError(f"{path}: y must hold one integer label per sample ({len(x)}), got {y.dtype} {y.shape}")
        if len(y) and (y.min() < 0 or (classes is not None and y.max() >= classes)):
            raise NeuroccError(f"{path}: labels must lie in 0..{(classes or 2 ** 63) - 1}, found {y.min()}..{y.max()}")
        y = y.astype(np.int64)
    if limit is not None:
        x, y = x[:limit], None if y is None else y[:limit]
    x = _to_model_layout(x, tuple(input_shape), path, preprocess)
    x = preprocess.apply(x)
    if not np.all(np.isfinite(x)):
        raise NeuroccError(f"{path}: x has non-finite values after pre-processing")
    return x, y
