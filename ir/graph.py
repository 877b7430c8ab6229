"""The ``Graph``: a thin, typed wrapper over a networkx multigraph.

Nodes are named; each carries ``payload`` (an op from ``ir.ops`` at the ANN level; an ``InputSource``,
``Population`` at the SNN level) and ``shape`` (without the batch axis). ANN edges carry ``port``, the
input slot of the consumer. SNN edges carry ``proj``, a ``Projection``; a multigraph because one source
may reach one population along several paths (a projection each).

``meta`` holds JSON-serialisable facts passes leave for later ones (calibration statistics, notes).
Passes never mutate a graph: they call ``copy()`` and change the copy. Payloads are frozen and their
arrays read-only, so a shallow copy is safe.
"""
from __future__ import annotations

import copy as _copy
from typing import Iterable, Iterator

import networkx as nx

LEVELS = ("ann", "snn")


class Graph:
    def __init__(self, level: str, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
                 meta: dict | None = None):
        if level not in LEVELS:
            raise ValueError(f"unknown graph level {level!r}")
        self.level = level
        self.nx = nx.MultiDiGraph()
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.meta = meta if meta is not None else {}

    # construction
    def add_node(self, name: str, payload, shape: tuple) -> str:
        if name in self.nx:
            raise ValueError(f"duplicate node name {name!r}")
        self.nx.add_node(name, payload=payload, shape=tuple(int(d) for d in shape))
        return name

    def add_edge(self, src: str, dst: str, port: int) -> None:
        self.nx.add_edge(src, dst, port=port)

    def add_projection(self, src: str, dst: str, proj) -> None:
        self.nx.add_edge(src, dst, proj=proj)

    def copy(self) -> "Graph":
        out = Graph(self.level, self.inputs, self.outputs, _copy.deepcopy(self.meta))
        out.nx = self.nx.copy()
        return out

    def __eq__(self, other) -> bool:
        """Equal by value: level, inputs, outputs, meta, node names, shapes and payloads, and every edge."""
        if not isinstance(other, Graph):
            return NotImplemented

        def edges(g):
            return sorted(((u, v, k, tuple(sorted(d.items()))) for u, v, k, d in g.nx.edges(keys=True, data=True)),
                          key=lambda e: e[:3])
        return (self.level == other.level and self.inputs == other.inputs and self.outputs == other.outputs
                and self.meta == other.meta and dict(self.nx.nodes(data=True)) == dict(other.nx.nodes(data=True))
                and edges(self) == edges(other))

    __hash__ = None

    # queries
    def __contains__(self, name: str) -> bool:
        return name in self.nx

    def payload(self, name: str):
        return self.nx.nodes[name]["payload"]

    def shape(self, name: str) -> tuple:
        return self.nx.nodes[name]["shape"]

    def set_payload(self, name: str, payload, shape: tuple | None = None) -> None:
        self.nx.nodes[name]["payload"] = payload
        if shape is not None:
            self.nx.nodes[name]["shape"] = tuple(shape)

    def nodes(self) -> list[str]:
        return list(self.nx.nodes)

    def topo_order(self) -> list[str]:
        return list(nx.lexicographical_topological_sort(self.nx))

    def inputs_of(self, name: str) -> list[str]:
        """ANN level: the producers of ``name``'s inputs, in port order."""
        edges = sorted(((d["port"], u) for u, _, d in self.nx.in_edges(name, data=True)))
        return [u for _, u in edges]

    def consumers(self, name: str) -> list[str]:
        return list(dict.fromkeys(self.nx.successors(name)))

    def projections(self, dst: str | None = None) -> Iterator[tuple[str, str, object]]:
        """SNN level: (src, dst, Projection) for every projection (into ``dst`` if given)."""
        edges = self.nx.in_edges(dst, data=True) if dst is not None else self.nx.edges(data=True)
        for u, v, d in edges:
            yield u, v, d["proj"]

    def replace_uses(self, old: str, new: str) -> None:
        """ANN level: make every consumer of ``old`` (and the graph outputs) read ``new`` instead."""
        for _, v, d in list(self.nx.out_edges(old, data=True)):
            self.nx.add_edge(new, v, port=d["port"])
        self.nx.remove_edges_from(list(self.nx.out_edges(old, keys=True)))
        self.outputs = tuple(new if o == old else o for o in self.outputs)

    def remove_dead(self) -> None:
        """Remove nodes from which no output is reachable (inputs are kept)."""
        live = set(self.outputs)
        for out in self.outputs:
            live |= nx.ancestors(self.nx, out)
        self.nx.remove_nodes_from([n for n in list(self.nx.nodes) if n not in live and n not in self.inputs])

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for n in self.nx.nodes:
            k = type(self.payload(n)).__name__
            kinds[k] = kinds.get(k, 0) + 1
        parts = ", ".join(f"{k}×{v}" for k, v in sorted(kinds.items()))
        return f"{self.level} graph: {self.nx.number_of_nodes()} nodes ({parts}), {self.nx.number_of_edges()} edges"
