"""Frontends: model formats -> ANN-level IR (``onnx``: ONNX files; ``nir``: NIR graphs)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from neurocc.errors import NeuroccError


def handler_registry() -> tuple[dict[str, Callable], Callable]:
    """A frontend's table of import functions, one per op or node type, and the decorator that fills it:
    ``@register("TypeA", "TypeB")`` above a function makes it the handler of both types."""
    handlers: dict[str, Callable] = {}

    def register(*types: str):
        def add(fn):
            for t in types:
                handlers[t] = fn
            return fn
        return add
    return handlers, register


def first_line(e: BaseException) -> str:
    """An exception's message on one line (at most 300 characters), for one-line errors."""
    text = " ".join(str(e).split())
    return text[:300] if text else type(e).__name__


def read_model_bytes(path: Path) -> bytes:
    """A model file's bytes; a folder or an unreadable file is a one-line ``NeuroccError``."""
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise NeuroccError(f"cannot read model {str(path)!r}: it is a folder") from None
    except OSError as e:
        raise NeuroccError(f"cannot read model {str(path)!r}: {e.strerror}") from None
