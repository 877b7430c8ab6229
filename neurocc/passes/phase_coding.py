"""phase_coding: weighted spikes (Kim et al. 2018, "Deep Neural Networks with Weighted Spikes", §4).

With ``--coding phase --phases K`` every step t belongs to phase p = mod(t - 1, K) of a period and a spike
sent in it weighs omega(t) = 2^-(1+p) (eq. 6). The input is fed as K-bit binary fractions, most significant
bit first (``ir.coding.Phase``); every population scales its input current, threshold and reset by omega(t)
(eq. 8-10, ``ir.neurons.WeightedIF``); and since one period's weights sum to 1 - 2^-K, each bias becomes
beta = b / (1 - 2^-K) (eq. 8), so that a period delivers b. The read-outs accumulate and ignore their input
for the first ``--skip-periods`` periods (§5.1). Normalisation is unchanged: a population's activation,
normalised into [0, 1), is what one period of its weighted spikes carries.

Only neurons whose threshold can follow the step (the NL-IAF of the reference and generic targets) express
it; ``CompileOptions`` refuses the other targets. ``recode`` also switches a float graph between codings at
run time.
"""
from __future__ import annotations

import dataclasses

from neurocc.errors import NeuroccError
from neurocc.ir import Graph
from neurocc.ir.coding import Phase
from neurocc.ir.neurons import IF, WeightedIF
from neurocc.ir.snn import InputSource, Population


def _plain(neuron: IF) -> IF:
    """The rate-coding NL-IAF neuron with the same threshold, V0, reset and state format."""
    return IF(threshold=neuron.threshold, v0=neuron.v0, input_shift=neuron.input_shift, reset=neuron.reset,
              compare=neuron.compare, state_bits=neuron.state_bits, overflow=neuron.overflow)


def recode(graph: Graph, coding, skip_periods: int = 0) -> Graph:
    """``graph`` with input ``coding``: with ``Phase``, weighted neurons with K phases, biases beta (eq. 8) and
    read-outs that skip ``skip_periods`` periods; with any other coding, rate-coding neurons and biases b."""
    g = graph.copy()
    phases = coding.phases if isinstance(coding, Phase) else 0
    for name in g.nodes():
        node = g.payload(name)
        if isinstance(node, InputSource):
            g.set_payload(name, dataclasses.replace(node, coding=coding))
            continue
        if not isinstance(node, Population):
            continue
        if type(node.neuron) not in (IF, WeightedIF):
            raise NeuroccError(f"population {name!r} has {type(node.neuron).__name__} neurons, whose threshold cannot "
                               "follow the phase weight of each step (weighted spikes need the NL-IAF of the "
                               "reference or generic target)")
        neuron = _plain(node.neuron)
        if phases:
            skip = skip_periods * phases if name in g.outputs else 0
            neuron = WeightedIF(**dataclasses.asdict(neuron), phases=phases, skip_steps=skip)
        bias = node.bias * (node.neuron.bias_weight() / neuron.bias_weight())      # beta = b / (1 - 2^-K)
        g.set_payload(name, dataclasses.replace(node, neuron=neuron, bias=bias))
    return g


def phase_coding(graph: Graph, ctx) -> Graph:
    """Weighted spikes with ``--phases`` K and ``--skip-periods`` (module docstring; eq. 6, 8-10)."""
    opts = ctx.options
    return recode(graph, Phase(phases=opts.phases), opts.skip_periods)
