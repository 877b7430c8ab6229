"""neurocc's graph IR: typed payloads over networkx, the verifier, serialisation and executors."""
from .graph import Graph
from .verify import VerificationError, verify

__all__ = ["Graph", "VerificationError", "verify"]
