"""Backends and targets: the registry, in one place.

``TARGETS`` lists what ``neurocc compile --target`` accepts, ``BACKENDS`` what ``neurocc run --backend``
accepts; the protocol they follow is in ``base.py``, the ``Trace`` a run returns in ``trace.py``.

Adding a backend: write ``backends/<name>/`` with a class that follows ``base.Backend`` (emit, run,
resources), add it to ``BACKENDS`` below, and point its target(s) at it (a new target also needs its
hardware model in ``hwmodels/``). Nothing in the command line, the pipeline or the options changes.
"""
from __future__ import annotations

from .base import Backend, PopulationResources, Resources, Target
from .loihi.backend import LavaBackend, LoihiBackend
from .reference.backend import ReferenceBackend
from .spinnaker.backend import NestBackend, SpinnakerBackend
from .truenorth.backend import TrueNorthBackend

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    ReferenceBackend(),
    SpinnakerBackend(),
    NestBackend(),
    LoihiBackend(),
    LavaBackend(),
    TrueNorthBackend(),
)}

_FLOAT = ("normalize",)
_INTEGER = ("normalize", "quantize")
TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("reference", "float NL-IAF neurons (the accuracy reference)", None, _FLOAT, "reference"),
    Target("generic", "ideal NL-IAF in 8-bit weights and 32-bit saturating state", "generic", _INTEGER, "reference"),
    Target("loihi", "Intel Loihi (lava-nc 0.10.0 fixed-point LIF and Sparse): a Lava program", "loihi", _INTEGER,
           "loihi"),
    Target("spinnaker", "SpiNNaker (sPyNNaker's LIF, s16.15, delta synapses): a PyNN program", "spinnaker", _INTEGER,
           "spinnaker"),
    Target("truenorth", "IBM TrueNorth (4 axon types, 20-bit V, linear reset)", "truenorth", _INTEGER + ("split_fan_in", "map_cores"),
           "truenorth"),
)}

__all__ = ["BACKENDS", "TARGETS", "Backend", "PopulationResources", "Resources", "Target"]
