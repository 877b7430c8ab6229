"""quantize: map a normalised float SNN onto a hardware model's integer formats.

For every population p (threshold 1 after ``normalize``) it picks one integer threshold in state units,
theta_p = vth * 2^threshold_shift, and derives everything else from that one scale, so that
threshold / weight / bias ratios are kept:

    w_int = round(W * theta_p / 2^(e + input_shift))      per projection, exponent e (Loihi weight_exp)
    bias  = mant * 2^exp ~= b * theta_p                   per neuron, mant/exp in the bias format
    V(0)  = round(v0 * theta_p)

vth is the largest integer that lets (1) the threshold fit its bits and leave 8x headroom in the
state width, (2) every bias fit the bias format, (3) every projection's weights fit the weight bits
with an exponent no larger than the format's maximum. e is then the smallest exponent whose weights
fit, so each projection uses its full weight range. Weighted spikes (``ir.neurons.WeightedIF``) shift the
threshold and the input left by up to K - 1 bits in a step, so (1) keeps the headroom above theta << (K - 1). Where the chip sums each receptor's weights into a
bounded accumulator (``weights.sum_bits``: sPyNNaker's 16-bit ring-buffer slots, which saturate), the exponent
also keeps the largest possible sum of one sign's integer weights into a neuron in one step (every spiking
source firing at once) below 2^sum_bits, so no sum ever saturates. Loihi's mixed-sign weights lose their LSB (lava's
truncate_weights), so they are rounded to even values; TrueNorth's weights are 7 levels k * B_c per output
channel (4 axon types per input, see hwmodels/truenorth.toml). Pooling becomes integer sum pooling with the
1/k^2 folded into the weights. A model that cannot fit (weights too large for any vth >= 1) is a
``NeuroccError``, except for an accumulating read-out, which is only compared: its input is scaled down
to fit instead (graph meta ``readout_gains``).

A directly trained SNN (graph meta ``trained_snn``) keeps its own neurons: each population is first brought to
threshold 1 by dividing its input by its trained threshold (exact: the spikes of V / theta >= 1 are those of
V >= theta), and the chip must have the same reset, comparison and no refractory period; else ``quantize``
refuses, naming the population and what the chip lacks. A chip whose projections delay spikes is refused too:
the delays shift every layer against the layers before it and against its own bias, which a network trained
for a few steps with none does not survive (measured: an SRIF net, 85.2 % at its T = 4, fell to 11 % at T = 4 and
at best 64 % on TrueNorth's one-step delays and splitter ticks). A leak and a per-step schedule (BNTT) run only on the
ideal integer chip (``generic``, NL-IAF semantics, neurocc's own formats): the leak as L / 2^12 (Loihi's decay
form), the schedule's shift in state units (round(shift * theta)) and its gain as round(gain * 2^12), applied to
the summed input (``ir.snn``). The real chips have one fixed threshold and input scale per neuron, which only a
host rewriting them every step could change.

The report (graph meta ``quantization``) gives per projection the exponent, clipped weights, weights
rounded to zero, the relative weight error ||W_q - W|| / ||W|| and the weight mass lost; and the
agreement of the quantised network's ANN function (the rate view of the dequantised graph) with the
float one, and its accuracy when calibration labels exist.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from neurocc.errors import NeuroccError
from neurocc.ir import Graph, ops
from neurocc.ir.executor import apply_chain, run_rate
from neurocc.ir.neurons import IF, LEAK_BITS, LIF, MODELS, WeightedIF, from_hwmodel
from neurocc.ir.snn import GAIN_BITS, InputSource, Population, Projection

from .rescale import scale_chain

HEADROOM = 8          # the threshold uses at most 1/8 of the state range
STORED_MAX = 2 ** 24 - 1   # integers the IR's float32 arrays hold exactly (ir.verify checks it)
INPUT_BITS = 8        # fractional bits of an analog input in integer mode


def integer_chain(chain: tuple, src_shape: tuple, where: str) -> tuple[tuple, float]:
    """The chain with pooling as integer sums and its float gains gathered into one weighted op.

    Returns (ops, gain): ``ops`` contains at most one Conv/Gemm or, without one, nothing weighted;
    the caller multiplies the weights by ``gain``.
    """
    out, gain = [], 1.0
    x = torch.zeros((1,) + tuple(src_shape))
    for op in chain:
        if isinstance(op, ops.AvgPool):
            if any(op.pads) and not op.count_include_pad:
                raise NeuroccError(f"{where}: average pooling that excludes padding from its divisor has "
                                   "non-uniform weights; integer targets need count_include_pad=1 or no padding")
            new = ops.SumPool(kernel=op.kernel, strides=op.strides, pads=op.pads, ceil_mode=op.ceil_mode)
            gain /= float(np.prod(op.kernel))
        elif isinstance(op, ops.GlobalAvgPool):
            h, w = x.shape[2], x.shape[3]
            new = ops.SumPool(kernel=(h, w), strides=(h, w))
            gain /= float(h * w)
        elif isinstance(op, ops.Affine):
            if op.scale is None:
                x = ops.apply(op, [x])
                continue
            if np.size(op.scale) == 1:
                gain *= float(op.scale)
                x = ops.apply(op, [x])
                continue
            new = _as_weighted(op, tuple(x.shape[1:]), where)
        else:
            new = op
        out.append(new)
        x = ops.apply(new, [x])
    out = _merge_weighted(out)
    weighted = [op for op in out if isinstance(op, (ops.Conv, ops.Gemm))]
    if len(weighted) > 1:
        kinds = " then ".join(_describe(op) for op in weighted)
        raise NeuroccError(f"{where}: {kinds} with no activation between them is not one layer of synapses on a chip "
                           "(neurocc merges two such layers when one is a 1x1 convolution or both are dense)")
    return tuple(out), gain


def _merge_weighted(chain: list) -> list:
    """Adjacent weighted ops replaced by one where that is exact (``ops.compose_linear``)."""
    out: list = []
    for op in chain:
        merged = ops.compose_linear(out[-1], op) if out else None
        if merged is not None:
            out[-1] = merged
        else:
            out.append(op)
    return out


def _describe(op: ops.Op) -> str:
    if isinstance(op, ops.Conv):
        return f"a {op.weight.shape[2]}x{op.weight.shape[3]} convolution"
    return "a dense layer"


def _as_weighted(op: ops.Affine, shape: tuple, where: str) -> ops.Op:
    """A per-channel scale (channel-level normalisation of a shortcut) as synapses: a depthwise 1x1
    convolution for (C, H, W) tensors, a diagonal dense layer for 1-D ones."""
    scale = np.broadcast_to(op.scale, (shape[0],) + (1,) * (len(shape) - 1)).reshape(-1).astype(np.float32)
    if len(shape) == 3:
        return ops.Conv(weight=scale.reshape(-1, 1, 1, 1), groups=int(shape[0]))
    if len(shape) == 1:
        return ops.Gemm(weight=np.diag(scale))
    raise NeuroccError(f"{where}: a per-channel scale on a {len(shape)}-D tensor cannot be quantised")


def _weights(chain: tuple):
    """The float weights of a chain: the Conv/Gemm weight, or None for a weightless (identity-like) chain."""
    for op in chain:
        if isinstance(op, (ops.Conv, ops.Gemm)):
            return op.weight
    return None


def _with_weights(chain: tuple, w) -> tuple:
    for i, op in enumerate(chain):
        if isinstance(op, (ops.Conv, ops.Gemm)):
            return chain[:i] + (dataclasses.replace(op, weight=w),) + chain[i + 1:]
    return chain + (ops.Affine(scale=np.float32(w)),)


@dataclasses.dataclass
class _Incoming:
    src: str
    key: int
    proj: Projection
    chain: tuple
    weights: np.ndarray          # float weights (gain folded in), a scalar array for weightless chains


def _weight_limit(w: np.ndarray, fmt) -> tuple[int, int, bool]:
    """(lowest, highest) integer weight and whether values must be even, for weights ``w``."""
    top = 2 ** fmt.magnitude_bits - 1
    if w.min() >= 0:
        return 0, top, False
    if w.max() <= 0:
        return -top, 0, False
    if fmt.mixed_sign_drops_lsb:
        return -(top + 1), top - 1, True
    return -top, top, False


def _codebook(fmt) -> tuple[int, int]:
    """(k_max, b_max) of a per-channel level format: weights k * B_c, |k| <= k_max, 1 <= B_c <= b_max.

    TrueNorth's 4 axon types +A, -A, +B, -B with A = 2B give 7 levels, so k_max = 3 and A = 2 B must fit the
    weight bits: b_max = (2^bits - 1) // 2.
    """
    k_max = fmt.levels_per_channel // 2
    return k_max, (2 ** fmt.magnitude_bits - 1) // max(k_max - 1, 1)


def _weight_room(w: np.ndarray, fmt) -> int:
    """The largest integer magnitude the weights ``w`` may take in the format (given their signs)."""
    if fmt.levels_per_channel:
        k_max, b_max = _codebook(fmt)
        return k_max * b_max
    lo, hi, _ = _weight_limit(w, fmt)
    return min(hi if w.max() > 0 else hi - lo, -lo if w.min() < 0 else hi - lo)


def level_steps(x: np.ndarray, fmt) -> np.ndarray:
    """B_c per output channel (axis 0) of a per-channel level format, for weights ``x`` in state units."""
    k_max, b_max = _codebook(fmt)
    per_channel = np.abs(x).reshape(x.shape[0], -1).max(axis=1) if x.ndim else np.abs(x).reshape(1)
    return np.clip(np.ceil(per_channel / (k_max + 0.5)), 1, b_max)


def _levels(x: np.ndarray, fmt) -> tuple[np.ndarray, np.ndarray]:
    """x rounded to k * B_c per output channel (axis 0); returns (q, clipped mask)."""
    k_max, _ = _codebook(fmt)
    step = level_steps(x, fmt)
    step = step.reshape((-1,) + (1,) * (x.ndim - 1)) if x.ndim else step[0]
    k = np.rint(x / step)
    return np.clip(k, -k_max, k_max) * step, np.abs(k) > k_max


def _quantize_weights(w: np.ndarray, scale: float, fmt) -> tuple[np.ndarray, dict]:
    x = w.astype(np.float64) * scale
    if fmt.levels_per_channel:
        q, clipped = _levels(x, fmt)
    else:
        lo, hi, even = _weight_limit(w, fmt)
        q = 2 * np.rint(x / 2) if even else np.rint(x)
        clipped = (q < lo) | (q > hi)
        q = np.clip(q, lo, hi)
    zeroed = (w != 0) & (q == 0)
    total = max(float(np.abs(x).sum()), 1e-30)
    stats = {"clipped": int(clipped.sum()), "zeroed": int(zeroed.sum()),
             "rel_error": float(np.linalg.norm(q - x) / max(np.linalg.norm(x), 1e-30)),
             "mass_lost": float(np.abs(x - q)[clipped | zeroed].sum() / total)}
    if fmt.levels_per_channel:              # B_c per output channel: a core mapping reads the levels k back
        stats["level_steps"] = level_steps(x, fmt).tolist()
    return q, stats


def _max_bias(fmt) -> float:
    mant = 2 ** (fmt.bias_mantissa_bits - 1) - 1
    return mant * 2.0 ** (2 ** fmt.bias_exponent_bits - 1 if fmt.bias_exponent_bits else 0)


def _quantize_bias(b: np.ndarray, fmt) -> np.ndarray:
    """b (state units) as mantissa * 2^exponent per neuron, in the bias format."""
    mant_max = 2 ** (fmt.bias_mantissa_bits - 1) - 1
    exp_max = 2 ** fmt.bias_exponent_bits - 1 if fmt.bias_exponent_bits else 0
    mag = np.abs(b)
    with np.errstate(divide="ignore"):
        exp = np.where(mag > mant_max, np.ceil(np.log2(np.maximum(mag, 1) / mant_max)), 0)
    exp = np.clip(exp, 0, exp_max)
    mant = np.clip(np.rint(b / 2.0 ** exp), -mant_max, mant_max)
    return mant * 2.0 ** exp


def _summed(g: Graph, incoming: list, weights: list, analog: bool = False) -> float:
    """The largest sum of one sign's weights into one neuron in a step, over all of its spiking inputs: what
    one receptor's accumulator (sPyNNaker's 16-bit ring-buffer slot) must hold when every source spikes at once.
    A constant (analog) input is a current, not summed there; with ``analog`` it is counted too, at its largest
    magnitude (|x| <= 1 in either sign), for the largest input a neuron can receive. ``weights`` per projection."""
    totals = {}
    for inc, w in zip(incoming, weights):
        src = g.payload(inc.src)
        constant = isinstance(src, InputSource) and src.coding.constant
        if constant and not analog:
            continue
        gate = inc.chain[:1] if inc.chain and isinstance(inc.chain[0], ops.MaxPool) else ()
        ones = torch.ones((1,) + tuple(g.shape(inc.src)), dtype=torch.float64)
        if gate:                                    # a gate passes at most one spike per window
            ones = ops.apply(gate[0], [ones])
        w = np.asarray(w, np.float64)
        for sign in (1, -1):
            part = np.abs(w) if constant else np.maximum(sign * w, 0)
            totals[sign] = totals.get(sign, 0) + apply_chain(_with_weights(inc.chain[len(gate):], part), ones)
    return max((float(t.max()) for t in totals.values()), default=0.0)


def _phase_shift(neuron) -> int:
    """Bits by which weighted spikes scale the threshold in the first phase (``WeightedIF``: K - 1), else 0."""
    return neuron.phases - 1 if isinstance(neuron, WeightedIF) else 0


def _choose_vth(graph: Graph, name: str, node: Population, incoming: list, hw) -> tuple[int, float]:
    """(vth, gain): the largest integer vth the formats allow (module docstring), and 1.

    An accumulating read-out is only compared (argmax), never fired, so where its weights or bias would need
    vth < 1 it takes vth = 1 and its input scaled by gain = the (fractional) vth they allow instead."""
    n, w = hw.neuron, hw.weights
    tshift = 2.0 ** n.threshold_shift
    limits = {"threshold bits": min(2 ** (n.threshold_bits - 1) - 1, STORED_MAX / tshift),
              "state headroom": 2 ** (n.state_bits - 1) / HEADROOM / tshift / 2 ** n.leak_shift
              / 2 ** _phase_shift(node.neuron)}
    biases = [node.bias] if node.shift is None else [node.bias, node.shift, node.bias + node.shift]  # stored, summed
    max_bias = max(float(np.abs(b).max()) if b.size else 0.0 for b in biases)
    if max_bias > 0:
        limits["bias format"] = min(_max_bias(n), STORED_MAX) / (max_bias * tshift)
    for inc in incoming:
        biggest = float(np.abs(inc.weights).max())
        if biggest > 0:
            room = _weight_room(inc.weights, w)
            limits[f"weights from {inc.src}"] = room * 2.0 ** (w.exponent_max + n.input_shift) / (biggest * tshift)
    if n.leak_shift:        # sPyNNaker multiplies the step's input by R = 2^leak_shift within the 32-bit state
        peak = _summed(graph, incoming, [inc.weights for inc in incoming], analog=True) + max_bias
        if peak > 0:
            limits["input x R in the state"] = 2 ** (n.state_bits - 1 - n.leak_shift) / (peak * tshift)
    summed = _summed(graph, incoming, [inc.weights for inc in incoming]) if w.sum_bits else 0.0
    if summed > 0:
        limits["summed weights"] = (2 ** w.sum_bits - 1) * 2.0 ** (w.exponent_max + n.input_shift) / (summed * tshift)
    binding = min(limits, key=limits.get)
    vth = int(math.floor(limits[binding]))
    if vth >= 1:
        return vth, 1.0
    if node.readout == "accumulate" and binding.startswith(("weights", "bias", "summed", "input")):
        return 1, limits[binding]
    raise NeuroccError(f"population {name!r} cannot fit the {hw.name} formats: its {binding} would need a "
                       f"threshold below 1 (largest weight {max(float(np.abs(i.weights).max()) for i in incoming):.3g}, "
                       f"largest bias {max_bias:.3g} in threshold units)")


def _unit_thresholds(graph: Graph) -> Graph:
    """The graph with every population's input divided by its threshold, which becomes 1 (same spikes)."""
    g = graph.copy()
    for name in g.nodes():
        node = g.payload(name)
        theta = getattr(getattr(node, "neuron", None), "threshold", 1.0)
        if theta == 1.0:
            continue
        for u, _, k, d in g.nx.in_edges(name, keys=True, data=True):
            proj = d["proj"]
            g.nx.edges[u, name, k]["proj"] = dataclasses.replace(proj, ops=scale_chain(proj.ops, g.shape(u), 1.0,
                                                                                         1.0 / theta))
        shift = None if node.shift is None else node.shift / theta
        g.set_payload(name, dataclasses.replace(node, bias=node.bias / theta, shift=shift,
                                                neuron=node.neuron.replace(threshold=1.0)))
    return g


def _check_expressible(name: str, node: Population, hw, model) -> None:
    """Refuse a trained population whose dynamics the chip cannot run as they were trained."""
    neuron, chip = node.neuron, hw.neuron
    lacks = []
    ideal = hw.semantics == "nliaf"         # the generic chip takes the leak and the schedule in its own formats
    if node.scheduled and not ideal:
        lacks.append("a per-step input schedule (batch norm through time): its neurons have one fixed threshold and "
                     "input scale, which only a host rewriting them every step could change")
    if getattr(neuron, "leak", 1.0) != 1.0 and not ideal:
        lacks.append(f"a leak factor of {neuron.leak:g} ({f'its neurons leak by 2^-{chip.leak_shift}' if chip.leak_shift else 'its neurons do not leak'})")
    elif chip.leak_shift:
        lacks.append(f"a neuron without leak (its neurons always leak by 2^-{chip.leak_shift} per step)")
    if node.readout == "spike":
        if model.fixed_reset and neuron.reset not in (chip.reset,) + model.extra_resets:
            lacks.append(f"reset {neuron.reset!r} (it resets {chip.reset!r})")
        if neuron.compare != chip.spike_compare:
            lacks.append(f"spikes at V {neuron.compare} threshold (it spikes at V {chip.spike_compare} threshold)")
        if chip.refractory_steps:
            lacks.append(f"no refractory period (it has {chip.refractory_steps} steps)")
    if hw.timing.projection_delay_steps:
        lacks.append(f"projections without delay (each of its projections delays spikes by "
                     f"{hw.timing.projection_delay_steps} step(s), which shifts every layer against the layers before "
                     "it and against its own bias, and a network trained for a few steps does not survive that)")
    if lacks:
        raise NeuroccError(f"population {name!r} of this directly trained SNN cannot run on {hw.name}: it needs "
                           f"{'; '.join(lacks)}. Compile it for a target that has them, or --target reference (float)")


def quantize(graph: Graph, ctx) -> Graph:
    """Map weights, thresholds, biases and V0 onto the target's integer formats from one scale per population."""
    hw = ctx.hwmodel
    model = MODELS[hw.semantics]
    fixed_reset = model.fixed_reset           # chips reset as their hardware does, or as a neuron neurocc defines
    if fixed_reset and ctx.options.reset not in (None, hw.neuron.reset) + model.extra_resets:
        raise NeuroccError(f"{hw.name} neurons reset {hw.neuron.reset!r} ({hw.source('neuron.reset')}); "
                           f"--reset {ctx.options.reset} is not available on this target")
    trained = "trained_snn" in graph.meta
    g = _unit_thresholds(graph) if trained else graph.copy()
    report = []
    for name in g.topo_order():
        node = g.payload(name)
        if isinstance(node, InputSource):
            g.set_payload(name, dataclasses.replace(node, bits=INPUT_BITS))
            continue
        if trained:
            _check_expressible(name, node, hw, model)
        incoming = []
        for u, _, k, d in g.nx.in_edges(name, keys=True, data=True):
            proj = d["proj"]
            gate = proj.ops[:1] if proj.ops and isinstance(proj.ops[0], ops.MaxPool) else ()
            shape = g.shape(u)
            if gate:        # the chain after a max-pool gate sees the pooled shape
                shape = tuple(ops.apply(gate[0], [torch.zeros((1,) + shape)]).shape[1:])
            chain, gain = integer_chain(proj.ops[len(gate):], shape, f"projection {u!r} -> {name!r}")
            w = _weights(chain)
            w = np.float64(gain) if w is None else w.astype(np.float64) * gain
            incoming.append(_Incoming(u, k, proj, gate + chain, np.asarray(w)))
        vth, gain = _choose_vth(g, name, node, incoming, hw)
        if gain != 1.0:         # an accumulating read-out scaled down to fit (argmax unchanged)
            for inc in incoming:
                inc.weights = inc.weights * gain
            node = dataclasses.replace(node, bias=node.bias * gain)
            g.meta.setdefault("readout_gains", {})[name] = gain
        theta = vth * 2 ** hw.neuron.threshold_shift
        exponents = []
        for inc in incoming:
            biggest = float(np.abs(inc.weights).max())
            room = _weight_room(inc.weights, hw.weights)
            ideal = math.ceil(math.log2(biggest * theta / (room * 2 ** hw.neuron.input_shift))) if biggest > 0 else 0
            exponents.append(int(min(max(ideal, hw.weights.exponent_min), hw.weights.exponent_max)))
        if hw.weights.exponent_scope == "population":       # one shift for every input of the population
            exponents = [max(exponents)] * len(exponents)
        quantized = [_quantize_weights(inc.weights, theta / 2.0 ** (e + hw.neuron.input_shift), hw.weights)
                     for inc, e in zip(incoming, exponents)]
        while hw.weights.sum_bits and _summed(g, incoming, [q for q, _ in quantized]) >= 2 ** hw.weights.sum_bits:
            if max(exponents) >= hw.weights.exponent_max:
                raise NeuroccError(f"population {name!r}: its summed input weights exceed the {hw.weights.sum_bits}-bit "
                                   f"sum of {hw.name} even at exponent {hw.weights.exponent_max}")
            exponents = [e + 1 for e in exponents]          # one bit coarser until every sum fits
            quantized = [_quantize_weights(inc.weights, theta / 2.0 ** (e + hw.neuron.input_shift), hw.weights)
                         for inc, e in zip(incoming, exponents)]
        for inc, e, (q, stats) in zip(incoming, exponents, quantized):
            from_input = isinstance(g.payload(inc.src), InputSource)
            delay = 0 if from_input else hw.timing.projection_delay_steps
            new = Projection(ops=_with_weights(inc.chain, q), delay=delay, shift=e)
            g.nx.edges[inc.src, name, inc.key]["proj"] = new
            report.append({"population": name, "source": inc.src, "key": inc.key, "threshold": theta, "exponent": e,
                           "weights": int(np.size(q)), **stats})
        neuron = node.neuron
        reset = (ctx.options.reset or hw.neuron.reset) if fixed_reset and not trained else neuron.reset
        chip = from_hwmodel(hw, threshold=float(theta), v0=neuron.v0, reset=reset)
        if node.readout == "spike":
            chip_neuron = chip
        else:           # the chip's read-out cell, or an unbounded accumulator taking its input in the chip's units
            chip_neuron = chip.as_readout() or IF(threshold=float(theta), v0=neuron.v0,
                                                   input_shift=hw.neuron.input_shift, reset=reset)
        if isinstance(neuron, WeightedIF):      # weighted spikes: the same neuron, its step weights kept
            chip_neuron = WeightedIF(**dataclasses.asdict(chip_neuron), phases=neuron.phases,
                                     skip_steps=neuron.skip_steps)
        if isinstance(neuron, LIF):             # a trained leak, as L / 2^12
            chip_neuron = LIF(**dataclasses.asdict(chip_neuron), leak=round(neuron.leak * 2 ** LEAK_BITS) / 2 ** LEAK_BITS)
        neuron = chip_neuron
        schedule = {}
        if node.gain is not None:
            schedule["gain"] = np.rint(node.gain.astype(np.float64) * 2 ** GAIN_BITS)
        if node.shift is not None:
            schedule["shift"] = np.rint(node.shift.astype(np.float64) * theta)
        g.set_payload(name, dataclasses.replace(
            node, neuron=neuron, bias=_quantize_bias(node.bias.astype(np.float64) * theta, hw.neuron), **schedule))
    g.meta.update(mode="integer", hwmodel=hw.name, quantization=report)
    if ctx.calib_x is not None:
        g.meta["quantized_function"] = _function_check(graph, g, ctx)
    return g


def dequantize(g: Graph) -> Graph:
    """The float graph (threshold 1) whose rate view is the ANN function of an integer graph."""
    out = g.copy()
    for name in g.nodes():
        node = g.payload(name)
        if isinstance(node, InputSource):
            continue
        theta = node.neuron.threshold
        out.set_payload(name, dataclasses.replace(node, neuron=IF(v0=node.neuron.v0),
                                                  bias=node.bias / theta * node.neuron.bias_weight()))
        for u, _, k, d in g.nx.in_edges(name, keys=True, data=True):
            proj = d["proj"]
            factor = 2.0 ** (proj.shift + node.neuron.input_shift) / theta
            out.nx.edges[u, name, k]["proj"] = Projection(ops=scale_chain(proj.ops, g.shape(u), 1.0, factor),
                                                               delay=proj.delay)
    out.meta["mode"] = "float"
    return out


def _function_check(float_graph: Graph, int_graph: Graph, ctx) -> dict:
    """Argmax agreement (and accuracy with labels) of the quantised ANN function on calibration data."""
    x = ctx.calib_x[: ctx.options.calib_samples]
    deq = dequantize(int_graph)
    out = float_graph.outputs[0]
    agree, correct_f, correct_q = 0, 0, 0
    y = ctx.calib_y
    for start in range(0, len(x), ctx.options.batch_size):
        xb = torch.from_numpy(x[start:start + ctx.options.batch_size])
        pf = run_rate(float_graph, xb)[out].reshape(len(xb), -1).argmax(1).numpy()
        pq = run_rate(deq, xb)[out].reshape(len(xb), -1).argmax(1).numpy()
        agree += int((pf == pq).sum())
        if y is not None:
            yb = y[start:start + len(xb)]
            correct_f += int((pf == yb).sum())
            correct_q += int((pq == yb).sum())
    n = len(x)
    result = {"samples": n, "agreement": agree / n}
    if y is not None:
        result.update(float_accuracy=correct_f / n, quantized_accuracy=correct_q / n)
    return result
