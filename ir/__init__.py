"""neurocc's graph IR: typed payloads over networkx, the verifier, serialisation and executors.

``verify`` and ``VerificationError`` load on first use (they need torch), so that modules which only
name IR types, such as the command line's option lists, stay light.
"""
from .graph import Graph

__all__ = ["Graph", "VerificationError", "verify"]


def __getattr__(name: str):
    if name in ("VerificationError", "verify"):
        from . import verifier
        return getattr(verifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
