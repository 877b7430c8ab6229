"""average_max_pools (``--max-pool average``): every max pooling becomes average pooling over the same windows.

For targets that cannot express the spiking max-pool gate (weighted-spikes §4.5), which passes the spikes of
the window's input with the largest count so far: a PyNN program for SpiNNaker has no cell or synapse that holds
that state. Average pooling (padding counted as zeros) is a linear map that any target carries as synapses. This
changes the network, so the pass runs before calibration (the lambda are the new network's) and notes what it
did with the argmax agreement of the new ANN with the original on the calibration data. The pipeline runs it
only with the option.
"""
from __future__ import annotations

import torch

from neurocc.ir import Graph, ops
from neurocc.ir.executor import run_ann


def average_max_pools(graph: Graph, ctx) -> Graph:
    """Replace MaxPool by AvgPool (count_include_pad); note the new ANN's agreement with the original."""
    g = graph.copy()
    pools = [n for n in g.nodes() if isinstance(g.payload(n), ops.MaxPool)]
    for name in pools:
        op = g.payload(name)
        g.set_payload(name, ops.AvgPool(kernel=op.kernel, strides=op.strides, pads=op.pads, ceil_mode=op.ceil_mode,
                                        count_include_pad=True))
    if not pools:
        return g
    note = f"--max-pool average: {len(pools)} max pooling(s) replaced by average pooling"
    if ctx.calib_x is not None:
        x = ctx.calib_x[: ctx.options.calib_samples]
        agree = 0
        for start in range(0, len(x), ctx.options.batch_size):
            xb = torch.from_numpy(x[start:start + ctx.options.batch_size])
            before, after = (run_ann(h, xb)[h.outputs[0]].reshape(len(xb), -1).argmax(1) for h in (graph, g))
            agree += int((before == after).sum())
        note += f"; the new ANN's argmax agrees with the original's on {100 * agree / len(x):.2f} % of {len(x)} " \
                "calibration samples"
    g.meta.setdefault("notes", []).append(note)
    return g
