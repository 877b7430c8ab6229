"""Graph <-> (JSON-able dict, dict of numpy arrays). No pickle: arrays go to an npz, the rest to JSON.

Every payload is written as {"type": class name, field: value, ...}; an array field is written as
{"tensor": key} with the array stored under that key. Readers accept only the known classes.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .graph import Graph
from .ops import OP_TYPES
from .snn import InputSource, Population, Projection

PAYLOAD_TYPES = {**OP_TYPES, "InputSource": InputSource, "Population": Population}


def _tuples(v):
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    return v


def _encode(obj, key: str, tensors: dict) -> dict:
    out = {"type": type(obj).__name__}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray):
            tensors[f"{key}/{f.name}"] = v
            out[f.name] = {"tensor": f"{key}/{f.name}"}
        elif isinstance(v, (np.floating, np.integer)):
            out[f.name] = v.item()
        else:
            out[f.name] = v
    return out


def _decode(d: dict, tensors) -> object:
    cls = PAYLOAD_TYPES.get(d.get("type"))
    if cls is None:
        raise ValueError(f"unknown payload type {d.get('type')!r}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        if isinstance(v, dict) and "tensor" in v:
            kwargs[f.name] = np.asarray(tensors[v["tensor"]])
        else:
            kwargs[f.name] = _tuples(v)
    return cls(**kwargs)


def to_dict(g: Graph) -> tuple[dict, dict]:
    tensors: dict = {}
    nodes = [{"name": n, "shape": list(g.shape(n)), "payload": _encode(g.payload(n), f"n/{n}", tensors)}
             for n in g.nodes()]
    edges = []
    for i, (u, v, d) in enumerate(g.nx.edges(data=True)):
        if g.level == "ann":
            edges.append({"src": u, "dst": v, "port": d["port"]})
        else:
            proj = d["proj"]
            edges.append({"src": u, "dst": v, "delay": proj.delay, "shift": proj.shift,
                          "ops": [_encode(op, f"e/{i}/{j}", tensors) for j, op in enumerate(proj.ops)]})
    doc = {"level": g.level, "inputs": list(g.inputs), "outputs": list(g.outputs), "meta": g.meta,
           "nodes": nodes, "edges": edges}
    return doc, tensors


def from_dict(doc: dict, tensors) -> Graph:
    g = Graph(doc["level"], doc["inputs"], doc["outputs"], doc.get("meta", {}))
    for n in doc["nodes"]:
        g.add_node(n["name"], _decode(n["payload"], tensors), tuple(n["shape"]))
    for e in doc["edges"]:
        if g.level == "ann":
            g.add_edge(e["src"], e["dst"], e["port"])
        else:
            ops = tuple(_decode(o, tensors) for o in e["ops"])
            g.add_projection(e["src"], e["dst"], Projection(ops=ops, delay=int(e["delay"]), shift=int(e.get("shift", 0))))
    return g
