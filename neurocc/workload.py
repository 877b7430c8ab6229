"""The field's common metrics of a compiled network, as NeuroBench 2.3.0 defines them, from neurocc's own graph
and trace (Yik et al., "The neurobench framework for benchmarking neuromorphic computing algorithms and
systems", Nature Communications 2025; the ``neurobench`` package's metrics, names and result keys).

Static, from the graph:

* ``Footprint``: bytes that hold the network's parameters: the weights of the projections' layers (and any
  per-channel scale or shift in them), and each population's bias, threshold and initial potential. Float
  mode: 4 bytes each (NeuroBench counts a torch module's float32 parameters and buffers). Integer mode: the
  target's widths, ceil((weight magnitude bits + 1) / 8) bytes per weight and ceil(state bits / 8) per other
  value (the values the chip stores, not its memory layout: ``resources`` has its cores and synapses).
* ``ConnectionSparsity``: zero weights over all weights of the connection layers (every Conv and Gemm).

Workload, from a run's ``Trace`` (means per sample over the run's T steps):

* ``ActivationSparsity``: 1 - spikes / (neurons x T) over the spiking populations (NeuroBench: zero outputs
  over all outputs of the neuron layers, over steps and samples).
* ``SynapticOperations``: ``Effective_ACs`` and ``Effective_MACs``: for every weighted layer and step, its
  non-zero input elements times the non-zero weights each meets (``ir.synapses.weighted_layers``), as
  accumulates where the layer's input is spikes and as multiply-accumulates where it is values (the analog
  input; spikes after pooling or scaling); ``Dense``: the same with every input and weight non-zero, T
  times.
* ``MembraneUpdates``: every neuron of a spiking population at the first step, then the neurons whose
  potential changed in each later step (NeuroBench's count of pre- against post-step potentials, whose
  first step counts the whole layer).

Where it differs from NeuroBench run on a torch module: an accumulating read-out is not a neuron layer here
(its potential is the network's output, as a snnTorch network's final Linear summed by the caller), so its
weights count and its potentials do not; whether a layer's input is spikes follows from the graph rather
than from each batch's values (the same unless every input value in a step happens to be 0 or 1). The
test suite runs the ``neurobench`` package itself on the network rebuilt as a torch module
(``neurocc.torch_module.snn_module``) and checks these numbers against it.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from neurocc.ir import Graph, ops
from neurocc.ir.snn import Population

NEUROBENCH_VERSION = "2.3.0"


def _value_bytes(snn: Graph) -> tuple[int, int]:
    """(bytes per weight, bytes per other value) of the graph's number format."""
    if snn.meta.get("mode") != "integer":
        return 4, 4
    from neurocc.hwmodels import load_hwmodel

    hw = load_hwmodel(snn.meta["hwmodel"])
    return math.ceil((hw.weights.magnitude_bits + 1) / 8), math.ceil(hw.neuron.state_bits / 8)


def _layer_ops(snn: Graph):
    for _, _, data in snn.nx.edges(data=True):
        yield from data["proj"].ops


def static_metrics(snn: Graph) -> dict:
    """NeuroBench's Footprint (bytes) and ConnectionSparsity of an SNN-level graph."""
    weight_bytes, value_bytes = _value_bytes(snn)
    weights = zeros = other = 0
    for op in _layer_ops(snn):
        if isinstance(op, (ops.Conv, ops.Gemm)):
            weights += op.weight.size
            zeros += int(np.count_nonzero(op.weight == 0))
        elif isinstance(op, ops.Affine):
            other += sum(np.size(a) for a in (op.scale, op.shift) if a is not None)
    for name in snn.nodes():
        node = snn.payload(name)
        if isinstance(node, Population):
            other += node.bias.size + 2                      # bias per neuron, threshold and initial potential
    return {"Footprint": weights * weight_bytes + other * value_bytes,
            "ConnectionSparsity": zeros / weights if weights else 0.0}


def _spiking(snn: Graph) -> list:
    return [n for n in snn.nodes() if isinstance(snn.payload(n), Population) and snn.payload(n).readout == "spike"]


def activation_sparsity(snn: Graph, spikes_per_sample: float, steps: int) -> float:
    """1 - spikes / (neurons x steps) over the spiking populations, for ``spikes_per_sample`` of theirs."""
    neurons = sum(math.prod(snn.shape(n)) for n in _spiking(snn))
    return 1.0 - spikes_per_sample / (neurons * steps) if neurons else 0.0


def dense_operations(snn: Graph) -> int:
    """NeuroBench's Dense synaptic operations of one step (every input and weight non-zero)."""
    from neurocc.ir.synapses import weighted_layers

    return sum(layer.dense for u, _, data in snn.nx.edges(data=True)
               for layer in weighted_layers(data["proj"].ops, snn.shape(u), False))


def workload_metrics(snn: Graph, trace) -> Optional[dict]:
    """NeuroBench's ActivationSparsity, SynapticOperations and MembraneUpdates of a run (means per sample), or
    None when the backend did not observe the counts they need."""
    spiking = _spiking(snn)
    if not trace.acs or any(n not in trace.updates for n in spiking):
        return None
    samples, steps = trace.samples, trace.steps
    spikes = sum(float(trace.spikes[n].sum()) for n in spiking) / samples
    first = sum(math.prod(snn.shape(n)) for n in spiking)
    later = sum(float(trace.updates[n][1:].sum()) for n in spiking) / samples
    return {"ActivationSparsity": activation_sparsity(snn, spikes, steps),
            "SynapticOperations": {
                "Effective_MACs": sum(float(a.sum()) for a in trace.macs.values()) / samples,
                "Effective_ACs": sum(float(a.sum()) for a in trace.acs.values()) / samples,
                "Dense": float(dense_operations(snn) * steps)},
            "MembraneUpdates": first + later}


def metrics(snn: Graph, trace=None, predicted_spikes: Optional[float] = None, steps: Optional[int] = None) -> dict:
    """The NeuroBench block of ``run --json`` and ``estimate --json``: the static metrics, and the workload
    metrics measured from ``trace`` (the operation counts None where its backend did not observe them); without
    a trace, ActivationSparsity from ``predicted_spikes`` per sample over ``steps`` and the operation counts None
    (they need a simulation)."""
    doc = {"definitions": f"neurobench {NEUROBENCH_VERSION}", **static_metrics(snn)}
    if trace is not None:
        measured = workload_metrics(snn, trace)
        if measured is not None:
            return doc | measured | {"predicted": False}
        spikes = sum(float(trace.spikes[n].sum()) for n in _spiking(snn)) / trace.samples
        predicted_spikes, steps = spikes, trace.steps
    return doc | {"ActivationSparsity": activation_sparsity(snn, predicted_spikes, steps)
                  if predicted_spikes is not None else None,
                  "SynapticOperations": None, "MembraneUpdates": None, "predicted": trace is None}
