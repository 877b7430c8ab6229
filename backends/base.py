"""The backend protocol: what a target's toolchain provides to the compiler and to ``neurocc run``.

A ``Target`` is what ``neurocc compile --target NAME`` compiles for: a hardware model (none for float),
the SNN passes after ``lower_to_snn`` and the backend that emits the artifact's ``backend/`` folder.
A ``Backend`` emits what its real tool needs, runs a compiled SNN graph on the simulator or emulator
installed here and returns a raw ``Trace``, and counts the resources a graph takes on its chip.
The registry of both is ``neurocc.backends``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol

if TYPE_CHECKING:
    import numpy as np

    from neurocc.ir import Graph

    from .trace import Trace


def refuse_max_pool_gate(proj, where: str, holds: str, tool: str) -> None:
    """A max-pool gate (weighted-spikes §4.5) keeps each window's accumulated input, which no synapse list holds: a
    toolchain that only has synapses and its neuron (``holds``) cannot express it. A NeuroccError naming the
    projection and the way out."""
    from neurocc.errors import NeuroccError
    from neurocc.ir import ops
    if any(isinstance(op, ops.MaxPool) for op in proj.ops):
        raise NeuroccError(f"{where}: a max-pool gate (weighted-spikes §4.5) passes the spikes of the input with the "
                           f"largest count so far, a state no {holds} holds; {tool} cannot express it (compile with "
                           "--max-pool average)")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    hwmodel: Optional[str]          # the shipped hardware model (hwmodels/NAME.toml); None: float mode
    passes: tuple                   # SNN-level pass names after lower_to_snn, in order (neurocc.pipeline)
    backend: str                    # emits the artifact's backend/ folder; ``neurocc run``'s default


@dataclass(frozen=True)
class PopulationResources:
    name: str
    kind: str                       # input | readout | the neuron model (IF, LIF, ...)
    shape: tuple
    neurons: int                    # neurons on the chip (0 for an input fed from the host)
    synapses_in: int
    synapses_out: int
    fan_in: int                     # the most synapses reaching one neuron
    cores: Optional[int]            # None without a hardware model


@dataclass(frozen=True)
class Resources:
    """What a compiled graph takes on its chip, and what computed it (``method``)."""
    populations: tuple
    neurons: int
    synapses: int
    cores: Optional[int]
    chips: Optional[int]
    limits: dict                    # the hardware model's limits the counts were checked against
    over_limits: tuple              # one readable line per population that breaks a limit
    method: str


class Backend(Protocol):
    name: str
    description: str

    def emit(self, graph: "Graph", outdir: Path) -> None:
        """Write what the real tool needs to run ``graph`` into ``outdir`` (the artifact's backend/ folder)."""

    def run(self, graph: "Graph", x: "np.ndarray", steps: int, *, batch_size: int = 64, device: str = "cpu",
            coding=None, record_trains: bool = False, progress: Callable = lambda it: it) -> "Trace":
        """Simulate ``steps`` steps for every sample of ``x`` (pre-processed); ``coding`` overrides the compiled
        input coding (an ``ir.coding`` instance)."""

    def resources(self, graph: "Graph", hwmodel=None, emitted: Optional[Path] = None) -> Resources:
        """Neurons, synapses, cores and chips of ``graph`` against ``hwmodel``'s limits (None: float mode);
        ``emitted`` is the folder ``emit`` wrote for it (an artifact's backend/), where a chip toolchain's own
        mapping may be."""
