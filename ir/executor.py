"""Executors that define what a graph computes, one batch at a time (torch, float32 by default).

* ``run_ann``: the ANN-level graph, op by op; tested against onnxruntime. A directly trained SNN's graph (one
  with ``ops.TIME_OPS``, meta ``trained_snn``) is run over its ``time_steps``: every step evaluates every op with
  the input fed unchanged, the ``Spike`` layers keep their potentials between steps, and each returned value is
  the sum over the steps (the output layer accumulating without leak, bntt §3; spike counts for a spiking node).
* ``run_rate``: the rate (ANN-equivalent) view of an SNN-level graph: every population outputs
  relu(I) (capped at its ``cap``, and at one spike per step when ``saturate``), accumulators output I.
  Multiplying an output by its population's ``scale`` recovers the ANN's value, which is how the
  normalisation pass is tested, and what spiking rates converge to.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import numpy as np
import torch

from . import ops
from .graph import Graph
from .snn import InputSource


def _as_tensor(x, dtype=torch.float32, device="cpu") -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _bind_inputs(graph: Graph, x) -> dict:
    if isinstance(x, Mapping):
        return dict(x)
    if len(graph.inputs) != 1:
        raise ValueError(f"graph has {len(graph.inputs)} inputs; pass a dict name -> array")
    return {graph.inputs[0]: x}


@torch.no_grad()
def run_ann(graph: Graph, x, keep: Optional[Callable[[str], bool]] = None,
            dtype=torch.float32, device="cpu", steps: Optional[int] = None) -> dict[str, torch.Tensor]:
    """Evaluate an ANN-level graph on one batch (a trained SNN's over ``steps``, default its trained steps).

    Returns the outputs, plus every node for which ``keep(name)`` is true. Intermediate values are
    freed as soon as their last consumer has run.
    """
    assert graph.level == "ann", "run_ann needs an ANN-level graph"
    if "trained_snn" in graph.meta:
        return _run_over_time(graph, x, keep, dtype, device, steps or graph.meta["trained_snn"]["time_steps"])
    bound = _bind_inputs(graph, x)
    values: dict[str, torch.Tensor] = {}
    remaining = {n: len(graph.consumers(n)) for n in graph.nodes()}
    wanted = set(graph.outputs)
    result: dict[str, torch.Tensor] = {}
    for name in graph.topo_order():
        op = graph.payload(name)
        if isinstance(op, ops.Input):
            values[name] = _as_tensor(bound[name], dtype, device)
        else:
            srcs = graph.inputs_of(name)
            values[name] = ops.apply(op, [values[s] for s in srcs])
            for s in srcs:
                remaining[s] -= 1
                if remaining[s] == 0 and s not in wanted and not (keep and keep(s)):
                    values.pop(s, None)
        if name in wanted or (keep and keep(name)):
            result[name] = values[name]
    return result


def _run_over_time(graph: Graph, x, keep, dtype, device, steps: int) -> dict[str, torch.Tensor]:
    """``run_ann`` of a directly trained SNN's graph: ``steps`` steps, values summed over them."""
    bound = _bind_inputs(graph, x)
    wanted = [n for n in graph.topo_order() if n in graph.outputs or (keep and keep(n))]
    totals = {n: 0 for n in wanted}
    neurons = {n: graph.payload(n).neuron() for n in graph.nodes() if isinstance(graph.payload(n), ops.Spike)}
    states: dict[str, dict] = {}
    for t in range(1, steps + 1):
        values: dict[str, torch.Tensor] = {}
        for name in graph.topo_order():
            op = graph.payload(name)
            if isinstance(op, ops.Input):
                values[name] = _as_tensor(bound[name], dtype, device)
                continue
            ins = [values[s] for s in graph.inputs_of(name)]
            if isinstance(op, ops.StepAffine):
                values[name] = op.at(t, ins[0])
            elif isinstance(op, ops.Spike):
                if name not in states:
                    states[name] = neurons[name].init_state(torch.zeros_like(ins[0][0]), ins[0].shape[0], dtype)
                values[name] = neurons[name].step(states[name], ins[0], t).to(dtype)
            else:
                values[name] = ops.apply(op, ins)
        for n in wanted:
            totals[n] = totals[n] + values[n]
    return totals


def apply_chain(chain, x: torch.Tensor) -> torch.Tensor:
    """Apply a projection's ops in order (MaxPool acts as a plain max here: the rate limit of the gate)."""
    for op in chain:
        x = ops.apply(op, [x])
    return x


@torch.no_grad()
def run_rate(graph: Graph, x, saturate: bool = False, keep: Optional[Callable[[str], bool]] = None,
             dtype=torch.float32, device="cpu", rate_of: Optional[Callable] = None) -> dict[str, torch.Tensor]:
    """Evaluate the rate view of an SNN-level graph on one batch (see the module docstring). ``rate_of(name, I)``,
    if given, is each spiking population's rate for its drive I instead (a chip's reset and refractory rules)."""
    assert graph.level == "snn", "run_rate needs an SNN-level graph"
    bound = _bind_inputs(graph, x)
    values: dict[str, torch.Tensor] = {}
    for name in graph.topo_order():
        node = graph.payload(name)
        if isinstance(node, InputSource):
            values[name] = _as_tensor(bound[name], dtype, device) / node.scale
            continue
        batch = next(iter(values.values())).shape[0]
        current = ops.tensor_of(node, "bias", values[graph.inputs[0]]).expand(batch, *node.shape)
        current = current * node.neuron.bias_weight()
        for src, _, proj in graph.projections(name):
            current = current + apply_chain(proj.ops, values[src])
        if node.readout == "accumulate":
            values[name] = current
        elif rate_of is not None:
            values[name] = rate_of(name, current)
        else:
            rate = torch.clamp(current, min=0.0, max=node.cap)
            values[name] = torch.clamp(rate, max=1.0) if saturate else rate
    return {n: v for n, v in values.items() if n in graph.outputs or (keep and keep(n))}
