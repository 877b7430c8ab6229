"""Atomic writes: every output appears whole under its final name, or not at all."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from neurocc.errors import NeuroccError


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    if not path.parent.exists():
        raise NeuroccError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path, may_replace: callable):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in one rename.

    An existing ``path`` is replaced only if ``may_replace(path)`` says it is ours (an earlier
    artifact); otherwise nothing is touched and a ``NeuroccError`` explains why.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise NeuroccError(f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist")
    if path.exists() and not may_replace(path):
        raise NeuroccError(f"{str(path)!r} exists and is not a neurocc artifact; refusing to overwrite it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / "artifact")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
