"""Passes: functions ``Graph -> Graph`` that never mutate their input, one module per pass.

Each pass is registered as a ``Pass`` with the IR level it takes and returns; the pipeline (see
``neurocc.pipeline``) runs them in order and verifies the graph after each.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable          # (graph, context) -> graph
    level_in: str
    level_out: str

    @property
    def doc(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]
