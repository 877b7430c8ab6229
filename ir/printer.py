"""A readable text dump of a graph (for ``--print-ir-after`` and ``neurocc inspect``)."""
from __future__ import annotations

import dataclasses

import numpy as np

from .graph import Graph


def _describe(payload) -> str:
    parts = []
    for f in dataclasses.fields(payload):
        v = getattr(payload, f.name)
        if f.name in ("shape",) or v is None:
            continue
        if isinstance(v, np.ndarray):
            parts.append(f"{f.name}={list(v.shape)}" if v.size > 4 else f"{f.name}={np.round(v, 4).tolist()}")
        elif isinstance(v, tuple) and v and hasattr(v[0], "__dataclass_fields__"):
            parts.append(f"{f.name}=[" + ", ".join(type(o).__name__ for o in v) + "]")
        elif isinstance(v, float):
            parts.append(f"{f.name}={v:.6g}")
        else:
            parts.append(f"{f.name}={v}")
    return f"{type(payload).__name__}(" + ", ".join(parts) + ")"


def dump(g: Graph) -> str:
    lines = [f"graph level={g.level} inputs={list(g.inputs)} outputs={list(g.outputs)}"]
    for name in g.topo_order():
        if g.level == "ann":
            srcs = ", ".join(g.inputs_of(name))
            lines.append(f"  %{name} = {_describe(g.payload(name))} ({srcs}) : {list(g.shape(name))}")
        else:
            lines.append(f"  %{name} = {_describe(g.payload(name))} : {list(g.shape(name))}")
            for src, _, proj in g.projections(name):
                chain = " -> ".join(_describe(op) for op in proj.ops) or "identity"
                lines.append(f"      <- %{src} [delay {proj.delay}] {chain}")
    return "\n".join(lines)
