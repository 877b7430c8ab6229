"""A spiking network compiled by neurocc for Intel Loihi, as a plain lava-nc 0.10.0 program.

Beside this file: ``network.json`` (populations, connections, read-outs) and ``network.npz`` (their integers).
``build()`` rebuilds the network from real lava-nc processes:

* every spiking population: ``lava.proc.lif.process.LIF`` (reset to zero, Loihi's own neuron) or ``SRIF`` below
  (the same neuron with a soft reset, v <- v - vth * 2^6), with du = 4095 (no current memory), dv = 0 (no leak),
  vth, bias_mant * 2^bias_exp and the initial v that neurocc chose;
* every projection: ``lava.proc.sparse.process.Sparse`` with the projection's integer weights (convolutions,
  pooling, padding and slicing already multiplied out into one synapse matrix), ``weight_exp``,
  ``num_weight_bits = 8`` and its sign mode; like Dense, it delivers a spike one step later;
* the input: a ``lava.proc.io.source.RingBuffer`` of graded spikes (the input quantised to integers, sent every
  step) into the input projections, which are ``Sparse`` with ``num_message_bits = 24``; Sparse delivers one step
  late, so the host writes the first step's synaptic input into their ``a_buff`` and the ring buffer sends each
  step's successor (on hardware: inject the input one step ahead);
* read-outs: ``lava.proc.io.sink.RingBuffer`` sinks. An accumulating read-out receives its projections' synaptic
  input and the host integrates it, V(t) = V(0) + sum of (a * 2^6 + bias) in int64: a compartment's 24-bit v would
  saturate within a few steps. Every spiking population's spikes go to a sink too (and a spiking read-out's v to a
  ``lava.proc.io.sink.Read``).

On hardware, swap ``Loihi2SimCfg`` in ``run_samples`` for the hardware's run configuration. Run here:

    python network.py inputs.npz -o spikes.npz --steps 100

``inputs.npz`` holds ``x``: the quantised input, (samples, neurons) for a constant input or (samples, steps + 1,
neurons) for spikes, in the input's integer units. The output holds per population ``spikes/<i>`` (samples,
steps, neurons) and per read-out ``v/<i>`` (samples, steps, neurons) int64. One line per sample goes to stdout.
lava-nc 0.10.0 on Python >= 3.11 needs one fix (``neurocc setup lava`` applies it; see neurocc's README).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import sparse

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.io.sink import Read
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat
from lava.proc.lif.process import LIF
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

HERE = Path(__file__).resolve().parent
ACT_SHIFT = 6          # Loihi: synaptic input and threshold are MSB-aligned by 6 bits (a << 6, vth << 6)


class SRIF(LIF):
    """Soft-reset integrate-and-fire (the NL-IAF, SRIF) neuron: Loihi's LIF whose reset subtracts the threshold
    instead of zeroing v, so that no charge above the threshold is lost. Realisable on Loihi 2's programmable
    neurons; its CPU models follow lava's own LIF models, with only the reset changed."""


@implements(proc=SRIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySrifModelFloat(AbstractPyLifModelFloat):
    """SRIF in floating point: v <- v (1 - dv) + u + bias; s = v > vth; v <- v - vth where s."""
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)

    def spiking_activation(self):
        return self.v > self.vth

    def reset_voltage(self, spike_vector):
        self.v[spike_vector] -= self.vth


@implements(proc=SRIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySrifModelBitAcc(AbstractPyLifModelFixed):
    """SRIF in Loihi's fixed point (lava's PyLifModelBitAcc arithmetic): s = v > vth << 6; v <- v - (vth << 6)."""
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.effective_vth = 0

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self):
        return self.v > self.effective_vth

    def reset_voltage(self, spike_vector):
        self.v[spike_vector] -= self.effective_vth


def load(folder: Path = HERE) -> tuple[dict, dict]:
    doc = json.loads((folder / "network.json").read_text())
    with np.load(folder / "network.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return doc, arrays


def synapses(arrays: dict, j: int) -> sparse.csr_matrix:
    """Connection j's integer weights, (targets x sources)."""
    key = f"connection/{j}"
    return sparse.csr_matrix((arrays[f"{key}/data"], arrays[f"{key}/indices"], arrays[f"{key}/indptr"]),
                             shape=tuple(arrays[f"{key}/shape"]))


def checked_weights(c: dict, weights: sparse.csr_matrix) -> sparse.csr_matrix:
    """The weights as Lava's Sparse will use them (lava's own clip_weights and truncate_weights), which must be
    the weights themselves: a weight Loihi's 8-bit synapses cannot hold would change the network."""
    mode = SignMode[c["sign_mode"].upper()]
    used = truncate_weights(clip_weights(weights.copy(), mode, num_bits=8), mode, 8)
    if (used != weights).nnz:
        raise SystemExit(f"connection {c['source']} -> {c['target']}: weights outside Loihi's 8-bit "
                         f"{c['sign_mode']} synapses")
    return weights


def _shift(a: np.ndarray, exp: int) -> np.ndarray:
    """Sparse's weight_exp: a << exp, or a >> -exp (flooring), as lava computes a_buff."""
    return np.left_shift(a, exp) if exp > 0 else np.right_shift(a, -exp)


class Network:
    """The Lava processes of the network, for ``steps`` steps per sample."""

    def __init__(self, doc: dict, arrays: dict, steps: int, spiking_input: bool):
        self.doc, self.arrays, self.steps = doc, arrays, steps
        n_in = int(np.prod(doc["input"]["shape"]))
        self.source = Source(data=np.zeros((n_in, steps if spiking_input else 1), np.int32))
        self.cells, self.sinks, self.reads = {}, {}, {}
        for i, p in enumerate(doc["populations"]):
            if p["kind"] == "readout":
                self.sinks[i] = Sink(shape=(p["size"],), buffer=steps)
                continue
            cls = SRIF if p["reset"] == "subtract" else LIF
            self.cells[i] = cls(shape=(p["size"],), du=4095, dv=0, vth=p["vth"],
                                bias_mant=arrays[f"bias_mant/{i}"], bias_exp=arrays[f"bias_exp/{i}"],
                                v=np.full(p["size"], p["v0"]), name=p["name"])
            self.sinks[i] = Sink(shape=(p["size"],), buffer=steps)
            self.cells[i].s_out.connect(self.sinks[i].a_in)
            if p["output"]:
                self.reads[i] = Read(buffer=steps)
                self.reads[i].connect_var(self.cells[i].v)
        self.connections = []
        for j, c in enumerate(doc["connections"]):
            weights = checked_weights(c, synapses(arrays, j))
            from_input = c["source"] is None
            conn = Sparse(weights=weights, weight_exp=c["weight_exp"], num_weight_bits=8,
                          sign_mode=SignMode[c["sign_mode"].upper()], num_message_bits=24 if from_input else 0)
            (self.source.s_out if from_input else self.cells[c["source"]].s_out).connect(conn.s_in)
            target = self.cells.get(c["target"])
            conn.a_out.connect(target.a_in if target is not None else self.sinks[c["target"]].a_in)
            self.connections.append((c, weights, conn))
        self.started = False

    def run_sample(self, x: np.ndarray) -> dict:
        """Reset every state, load one sample's input (see the module docstring), run ``steps`` steps."""
        first, later = (x, x[:, None]) if x.ndim == 1 else (x[0], x[1:].T)
        self._assign(self.source.data, np.ascontiguousarray(later, dtype=np.int32))
        for c, weights, conn in self.connections:
            preload = (_shift(weights @ first.astype(np.int64), c["weight_exp"]) if c["source"] is None
                       else np.zeros(weights.shape[0]))
            self._assign(conn.a_buff, preload.astype(np.int32))
        for i, cell in self.cells.items():
            p = self.doc["populations"][i]
            self._assign(cell.u, np.zeros(p["size"], np.int32))
            self._assign(cell.v, np.full(p["size"], p["v0"], np.int32))
        self.source.run(condition=RunSteps(num_steps=self.steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        self.started = True
        out = {}
        for i, p in enumerate(self.doc["populations"]):
            data = self.sinks[i].data.get().T.astype(np.int64)                       # (steps, neurons)
            if p["kind"] == "readout":          # the host integrates the synaptic input: V0 + sum(a 2^6 + bias)
                bias = self.arrays[f"bias_mant/{i}"].astype(np.int64) << self.arrays[f"bias_exp/{i}"]
                out[f"v/{i}"] = p["v0"] + np.cumsum((data << ACT_SHIFT) + bias, axis=0)
                continue
            out[f"spikes/{i}"] = data.astype(bool)
            if i in self.reads:
                out[f"v/{i}"] = self.reads[i].data.get().T.astype(np.int64)
        return out

    def _assign(self, var, value: np.ndarray) -> None:
        """A Var's value for the next run: set in the running network, or its initial value before the first."""
        if self.started:
            var.set(value)
        else:
            var.init = value

    def stop(self) -> None:
        if self.started:
            self.source.stop()


def run_samples(x: np.ndarray, steps: int, folder: Path = HERE) -> dict:
    """Run every sample of ``x`` (see the module docstring); returns the stacked outputs."""
    doc, arrays = load(folder)
    net = Network(doc, arrays, steps, spiking_input=x.ndim == 3)
    results = []
    try:
        for k in range(len(x)):
            results.append(net.run_sample(x[k]))
            print(f"sample {k + 1}/{len(x)}", flush=True)
    finally:
        net.stop()
    return {key: np.stack([r[key] for r in results]) for key in results[0]} if results else {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", help=".npz with x, the quantised input (see the module docstring)")
    parser.add_argument("-o", "--output", required=True, help=".npz to write the spikes and read-outs to")
    parser.add_argument("--steps", type=int, required=True)
    args = parser.parse_args(argv)
    with np.load(args.inputs, allow_pickle=False) as npz:
        x = npz["x"]
    out = run_samples(x, args.steps)
    tmp = Path(args.output).with_suffix(".partial.npz")
    np.savez(tmp, **out)
    tmp.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
