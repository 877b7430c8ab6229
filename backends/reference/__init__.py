"""The reference backend: the bit-exact (float mode for now) torch simulator of SNN-level graphs."""
from .simulator import CODINGS, Simulator, Trace, fan_out

__all__ = ["CODINGS", "Simulator", "Trace", "fan_out"]
