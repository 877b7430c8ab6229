"""Graph <-> (JSON-able dict, dict of numpy arrays). No pickle: arrays go to an npz, the rest to JSON.

Every payload (an op, an ``InputSource``, a ``Population``, a ``Projection``, a neuron model, an input
coding) is written as {"type": class name, field: value, ...}; an array field is written as
{"tensor": key} with the array stored under that key, a payload-valued field as a nested payload.
Reading is strict: only the known classes, and every field of the class present, nothing else; anything
else is a ``ValueError`` that names the payload and the field.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .coding import CODINGS
from .graph import Graph
from .neurons import MODELS
from .ops import OP_TYPES
from .snn import InputSource, Population, Projection

PAYLOAD_TYPES = {**OP_TYPES, **{cls.__name__: cls for cls in (*MODELS.values(), *CODINGS.values())},
                 "InputSource": InputSource, "Population": Population, "Projection": Projection}


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
        elif dataclasses.is_dataclass(v):
            out[f.name] = _encode(v, f"{key}/{f.name}", tensors)
        elif isinstance(v, tuple) and v and dataclasses.is_dataclass(v[0]):
            out[f.name] = [_encode(x, f"{key}/{f.name}/{i}", tensors) for i, x in enumerate(v)]
        else:
            out[f.name] = v
    return out


def _value(v, tensors, where: str):
    if isinstance(v, dict) and set(v) == {"tensor"}:
        if v["tensor"] not in tensors:
            raise ValueError(f"{where}: tensor {v['tensor']!r} is missing from the npz")
        return np.asarray(tensors[v["tensor"]])
    if isinstance(v, dict) and "type" in v:
        return _decode(v, tensors, where)
    if isinstance(v, list) and v and all(isinstance(x, dict) and "type" in x for x in v):
        return tuple(_decode(x, tensors, f"{where}[{i}]") for i, x in enumerate(v))
    return _tuples(v)


def _decode(d: dict, tensors, where: str) -> object:
    cls = PAYLOAD_TYPES.get(d.get("type")) if isinstance(d, dict) else None
    if cls is None:
        raise ValueError(f"{where}: unknown payload type {d.get('type') if isinstance(d, dict) else d!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    given = set(d) - {"type"}
    if given - names:
        raise ValueError(f"{where}: {cls.__name__} has no field {sorted(given - names)[0]!r}")
    if names - given:
        raise ValueError(f"{where}: {cls.__name__} field {sorted(names - given)[0]!r} is missing")
    try:
        return cls(**{name: _value(d[name], tensors, f"{where}.{name}") for name in names})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: invalid {cls.__name__}: {e}") from None


def to_dict(g: Graph) -> tuple[dict, dict]:
    tensors: dict = {}
    nodes = [{"name": n, "shape": list(g.shape(n)), "payload": _encode(g.payload(n), f"n/{n}", tensors)}
             for n in g.nodes()]
    edges = []
    for i, (u, v, d) in enumerate(g.nx.edges(data=True)):
        if g.level == "ann":
            edges.append({"src": u, "dst": v, "port": d["port"]})
        else:
            edges.append({"src": u, "dst": v, "proj": _encode(d["proj"], f"e/{i}", tensors)})
    doc = {"level": g.level, "inputs": list(g.inputs), "outputs": list(g.outputs), "meta": g.meta,
           "nodes": nodes, "edges": edges}
    return doc, tensors


def _expect(value, typ, where: str):
    if not isinstance(value, typ) or isinstance(value, bool):
        raise ValueError(f"{where} must be a {typ.__name__ if isinstance(typ, type) else typ[0].__name__}")
    return value


def _names(value, where: str) -> tuple:
    return tuple(_expect(v, str, f"{where}[{i}]") for i, v in enumerate(_expect(value, list, where)))


def from_dict(doc: dict, tensors) -> Graph:
    """The graph of ``to_dict``'s document; any structural fault is a ``ValueError`` naming where it is."""
    _expect(doc, dict, "the graph document")
    for key in ("level", "inputs", "outputs", "meta", "nodes", "edges"):
        if key not in doc:
            raise ValueError(f"the graph document has no {key!r}")
    if doc["level"] not in ("ann", "snn"):
        raise ValueError(f"level {doc['level']!r} is not ann or snn")
    g = Graph(doc["level"], _names(doc["inputs"], "inputs"), _names(doc["outputs"], "outputs"),
              _expect(doc["meta"], dict, "meta"))
    for i, n in enumerate(_expect(doc["nodes"], list, "nodes")):
        where = f"nodes[{i}]"
        _expect(n, dict, where)
        name = _expect(n.get("name"), str, f"{where}.name")
        shape = tuple(_expect(d, int, f"{where}.shape") for d in _expect(n.get("shape"), list, f"{where}.shape"))
        if name in g:
            raise ValueError(f"node {name!r} appears twice")
        g.add_node(name, _decode(n.get("payload"), tensors, f"node {name!r}"), shape)
    for i, e in enumerate(_expect(doc["edges"], list, "edges")):
        where = f"edges[{i}]"
        _expect(e, dict, where)
        src, dst = _expect(e.get("src"), str, f"{where}.src"), _expect(e.get("dst"), str, f"{where}.dst")
        if src not in g or dst not in g:
            raise ValueError(f"{where} joins {src!r} and {dst!r}, which are not both nodes")
        if g.level == "ann":
            g.add_edge(src, dst, _expect(e.get("port"), int, f"{where}.port"))
        else:
            g.add_projection(src, dst, _decode(e.get("proj"), tensors, f"projection {src!r} -> {dst!r}"))
    return g
