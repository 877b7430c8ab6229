"""The TrueNorth backend: emits the core mapping, runs on the reference simulator (TrueNorth semantics, the
mapping's splitter delays included), and reports the mapping's cores, chips and splitters as resources."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..base import Resources
from ..reference.backend import ReferenceBackend

METHOD = ("neurocc's TrueNorth core mapping (backends/truenorth/mapping.py): 256 axons x 256 neurons per core, "
          "one axon per input and weight type used on a core, greedy spatial-major packing, splitter cores for "
          "fan-out beyond one axon (one tick each, simulated); no TrueNorth toolchain (CPE, corelets) is available "
          "here to check it against")


class TrueNorthBackend:
    name = "truenorth"
    description = "neurocc's TrueNorth core mapping, simulated by the reference simulator"

    def __init__(self):
        self._simulator = ReferenceBackend()

    def emit(self, graph, outdir: Path) -> None:
        """``cores.json``: the mapping per population (cores, axons, splitters, utilisation) and its totals."""
        (Path(outdir) / "cores.json").write_text(json.dumps(graph.meta["core_mapping"], indent=1))

    def run(self, graph, x, steps, **kwargs):
        return self._simulator.run(graph, x, steps, **kwargs)

    def resources(self, graph, hwmodel=None, emitted=None) -> Resources:
        counted = self._simulator.resources(graph, hwmodel)
        mapping = graph.meta["core_mapping"]
        if mapping["unmappable"]:             # the reference count, with why the mapping failed
            return dataclasses.replace(counted, over_limits=tuple(mapping["unmappable"]),
                                       method="the TrueNorth mapping failed (over_limits says why); " + counted.method)
        by_name = {p["name"]: p for p in mapping["populations"]}
        rows = tuple(dataclasses.replace(r, cores=by_name[r.name]["cores"] + by_name[r.name]["splitter_cores"]
                                         if r.name in by_name else 0) for r in counted.populations)
        return Resources(populations=rows, neurons=counted.neurons + mapping["splitter_neurons"],
                         synapses=counted.synapses, cores=mapping["cores"], chips=mapping["chips"],
                         limits=counted.limits, over_limits=(), method=METHOD)
