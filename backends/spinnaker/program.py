"""A spiking network for SpiNNaker, written by neurocc as a plain PyNN program plus its data.

    python network.py inputs.npz -o spikes.npz --steps 100                      # a SpiNNaker board (sPyNNaker)
    python network.py inputs.npz -o spikes.npz --steps 100 --simulator nest     # emulated on NEST
    python network.py --map mapping.json                                        # sPyNNaker's mapping, no board

It reads ``network.json`` (populations, projections, cell parameters) and ``network.npz`` (biases, synapse
lists) from its own folder. ``inputs.npz`` (``neurocc run`` writes it) holds ``samples`` and, per sample,
``current/<i>``: the i_offset of population i in s16.15 bits (the input is analog: its synapses are computed on
the host into the first layer's constant current, bias included).

Every value in the data is an integer in s16.15 bits (one bit = 2^-15 mV or nA); the program divides by 2^15.
Cells are IF_curr_delta with V_rest = V_reset = 0. On SpiNNaker, tau_m = 2^k * 32769/32768 ms and cm = 32769/32768
nF make sPyNNaker 1!7.4.1's core compute R = 2^k MOhm and exp_TC = 1 - 2^-k exactly, so V <- V + I - floor(V/2^k)
in bits; NEST integrates exactly, so there tau_m = -1/ln(1 - 2^-k) ms and cm = tau_m 2^-k nF give the same decay
and gain per step, without the floor (the one difference; neurocc's README measures what it changes). Each
population's ring-buffer left shift is forced with ``max_expected_summed_weight`` to the shift its weights were
quantised for. Excitatory and inhibitory synapses are separate FromListConnector projections (sPyNNaker keeps
magnitudes; NEST reads the sign).

Output (``-o``): ``spikes/<i>``, rows (sample, step, neuron) of population i's spikes (steps count from 1), and
``v/<i>``, (samples, steps, neurons) potentials [s16.15 bits] of each output population. ``--map``: the cores per population,
chips and routing-table entries of sPyNNaker's own partitioning, placement and routing on a virtual machine.
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BITS = 2 ** 15                      # s16.15: bits per mV (or nA)
NEVER = (2 ** 31 - 1) / BITS        # the largest s16.15 value: a read-out's threshold
# sPyNNaker numbers its updates from 0, pyNN.nest from 1: update k (1, 2, ...) stamps its spikes with time k - TICK
TICK = {"nest": 0, "spinnaker": 1}

def load_network(folder=HERE):
    net = json.loads((Path(folder) / "network.json").read_text())
    with np.load(Path(folder) / "network.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return net, arrays


def cell_parameters(pop, simulator, dt):
    """IF_curr_delta parameters that make ``simulator`` integrate as SpiNNaker's fixed-point LIF (docstring)."""
    k = pop["leak_shift"]
    if simulator == "nest":
        tau_m = -dt / np.log1p(-2.0 ** -k)
        cm = tau_m * 2.0 ** -k
    else:
        tau_m = 2 ** k * 32769 / 32768 * dt
        cm = 32769 / 32768
    return dict(tau_m=tau_m, cm=cm, v_rest=0.0, v_reset=0.0, tau_refrac=pop["refractory"] * dt,
                v_thresh=NEVER if pop["readout"] else pop["threshold"] / BITS)


def ring_buffer_weight(exponent):
    """sPyNNaker's max_expected_summed_weight for a left shift: it takes s = floor(log2 w) + 1, or 0 below 1."""
    return 2.0 ** (exponent - 1) if exponent > 0 else 0.5


def build(sim, simulator, net, arrays):
    """The network: per population (by index) its parts, (first neuron, PyNN Population) each, and the projections.
    A population comes in parts where one source neuron would otherwise have more synapses into it than sPyNNaker's
    longest synaptic row (network.json's ``parts``: neuron index ranges)."""
    dt = net["dt_ms"]
    pops = []
    for i, pop in enumerate(net["populations"]):
        bias = arrays[f"bias/{i}"] / BITS
        extra = {}
        if simulator == "spinnaker":
            w = ring_buffer_weight(pop["exponent"])
            extra["additional_parameters"] = {"max_expected_summed_weight": [w, w]}
        parts = []
        for first, stop in pop["parts"]:
            cells = sim.IF_curr_delta(i_offset=bias[first:stop], **cell_parameters(pop, simulator, dt))
            label = pop["name"] if len(pop["parts"]) == 1 else f"{pop['name']} [{first}:{stop}]"
            population = sim.Population(stop - first, cells, label=label, **extra)
            population.initialize(v=pop["v0"] / BITS)
            population.record((["v"] if pop["output"] else []) + ([] if pop["readout"] else ["spikes"]))
            parts.append((first, population))
        pops.append(parts)
    for j, proj in enumerate(net["projections"]):
        pre, post, weight = (arrays[f"projection/{j}/{key}"] for key in ("pre", "post", "weight"))
        for first_pre, source in pops[proj["source"]]:
            for first_post, target in pops[proj["target"]]:
                keep = ((pre >= first_pre) & (pre < first_pre + source.size)
                        & (post >= first_post) & (post < first_post + target.size))
                connect(sim, source, target, pre[keep] - first_pre, post[keep] - first_post, weight[keep],
                        proj["delay"] * dt)
    return pops


def connect(sim, source, target, pre, post, weight, delay):
    """Synapses pre -> post as an excitatory and an inhibitory FromListConnector projection (weights in bits)."""
    for receptor, keep in (("excitatory", weight > 0), ("inhibitory", weight < 0)):
        if keep.any():
            rows = np.column_stack([pre[keep], post[keep], weight[keep] / BITS, np.full(int(keep.sum()), delay)])
            sim.Projection(source, target, sim.FromListConnector(rows), receptor_type=receptor)


def set_cells(parts, values=None, **params):
    """Set per-neuron ``values`` (name -> array over the whole population) and scalar ``params`` on every part."""
    for first, population in parts:
        per_neuron = {name: v[first:first + population.size] for name, v in (values or {}).items()}
        population.set(**params, **per_neuron)


def run(sim, simulator, net, arrays, inputs, steps, out):
    """Each sample in turn: its input, V(0), ``steps`` updates, its spikes and read-outs; then a reset."""
    pops = build(sim, simulator, net, arrays)
    currents = {int(key.split("/")[1]): inputs[key] for key in inputs.files if key.startswith("current/")}
    samples = int(inputs["samples"])
    spikes = {i: [] for i, p in enumerate(net["populations"]) if not p["readout"]}
    potentials = {i: np.zeros((samples, steps, p["size"])) for i, p in enumerate(net["populations"]) if p["output"]}
    extra = TICK[simulator]                  # sPyNNaker records V before each update: one update more
    for n in range(samples):
        if n:
            for parts in pops:               # silence first: pyNN.nest's reset keeps spikes in flight
                set_cells(parts, v_thresh=NEVER, i_offset=0.0)
            sim.reset()
            for i, parts in enumerate(pops):
                p = net["populations"][i]
                set_cells(parts, {"i_offset": arrays[f"bias/{i}"] / BITS},
                          v_thresh=NEVER if p["readout"] else p["threshold"] / BITS)
                for _, population in parts:
                    population.initialize(v=p["v0"] / BITS)
        for i, current in currents.items():
            set_cells(pops[i], {"i_offset": current[n] / BITS})
        sim.run(steps + extra)
        for i, parts in enumerate(pops):
            for first, population in parts:
                segment = population.get_data(clear=True).segments[0]
                if i in potentials:
                    v = np.asarray(segment.filter(name="v")[0].magnitude)     # (times, neurons): V after update t
                    potentials[i][n, :, first:first + population.size] = v[1:steps + 1]
                for neuron, train in enumerate(segment.spiketrains if i in spikes else ()):
                    step = np.rint(np.asarray(train.magnitude)).astype(np.int64) + extra
                    step = step[(step >= 1) & (step <= steps)]
                    spikes[i].append(np.column_stack([np.full(len(step), n), step, np.full(len(step), first + neuron)]))
        print(f"sample {n + 1}/{samples}", flush=True)
    result = {f"spikes/{i}": np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)
              for i, rows in spikes.items()}
    result.update({f"v/{i}": np.rint(v * BITS).astype(np.int64) for i, v in potentials.items()})
    tmp = Path(out).with_name(f".{Path(out).name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **result)
    os.replace(tmp, out)


def virtual_board_mapping(sim, net, arrays, boards=None):
    """Cores per population, chips and routing-table entries from sPyNNaker's own mapping on a virtual machine."""
    from spynnaker.pyNN.data import SpynnakerDataView as View

    sim.setup(timestep=net["dt_ms"], **({"n_boards_required": boards} if boards else {}))
    try:
        pops = build(sim, "spinnaker", net, arrays)
        owner = {population.label: net["populations"][i]["name"] for i, parts in enumerate(pops) for _, population in parts}
        sim.run(net["dt_ms"])               # partitioning, placement, routing; a virtual board loads nothing
        cores, chips = {}, set()
        for placement in View.iterate_placemements():
            vertex = placement.vertex.app_vertex
            if vertex is not None:          # system cores (monitors, gatherers) have none
                name = owner[vertex.label]
                cores[name] = cores.get(name, 0) + 1
                chips.add((placement.x, placement.y))
        tables = View.get_uncompressed()
        machine = View.get_machine()
        return {"cores": cores, "total_cores": sum(cores.values()), "chips": len(chips),
                "machine": {"width": machine.width, "height": machine.height, "chips": machine.n_chips},
                "routing_entries": tables.get_total_number_of_entries(),
                "routing_entries_max_per_chip": tables.get_max_number_of_entries()}
    finally:
        sim.end()


def map_network(net, arrays, out):
    """Run ``virtual_board_mapping`` with a private sPyNNaker config (a virtual SpiNN-5 machine, reports in a
    temporary folder, nothing in HOME or the current folder); a machine sized by sPyNNaker, then more boards
    while placement runs out of chips. Writes JSON: the mapping, or {"error": type, "message": ...}."""
    with tempfile.TemporaryDirectory(prefix="neurocc-spynnaker-") as tmp:
        (Path(tmp) / ".spynnaker.cfg").write_text(
            "[Machine]\nversion = 5\nvirtual_board = True\n"
            f"[Reports]\ndefault_report_file_path = {tmp}\n[Logging]\ndefault = warning\n"
            "[Database]\ncreate_database = False\n")
        os.environ["XDG_CONFIG_HOME"] = tmp
        os.environ.setdefault("MPLCONFIGDIR", tmp)
        os.chdir(tmp)                       # sPyNNaker also reads ./spynnaker.cfg
        import pyNN.spiNNaker as sim
        from pacman.exceptions import PacmanPlaceException

        boards, result = None, None
        for _ in range(8):
            try:
                result = virtual_board_mapping(sim, net, arrays, boards)
                break
            except PacmanPlaceException as e:       # sPyNNaker sized the machine too small: more boards
                result = {"error": type(e).__name__, "message": " ".join(str(e).split())}
                boards = 2 * (boards or 1)
            except Exception as e:                  # a limit of the chip: reported, not raised
                result = {"error": type(e).__name__, "message": " ".join(str(e).split())}
                break
        if boards and "error" not in result:
            result["boards_requested"] = boards
    Path(out).write_text(json.dumps(result, indent=1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="?", help="inputs.npz (samples, and per sample current/<i>)")
    parser.add_argument("-o", "--output", help="spikes.npz to write")
    parser.add_argument("--steps", type=int, default=100, help="time steps per sample (default 100)")
    parser.add_argument("--simulator", choices=("spinnaker", "nest"), default="spinnaker",
                        help="pyNN.spiNNaker (a board, the default) or pyNN.nest")
    parser.add_argument("--map", metavar="JSON", help="only map on a virtual SpiNNaker machine; write the result")
    args = parser.parse_args(argv)
    net, arrays = load_network()
    if args.map:
        map_network(net, arrays, args.map)
        return 0
    if not (args.inputs and args.output):
        parser.error("give INPUTS and -o OUTPUT (or --map JSON)")
    if args.simulator == "nest":
        import pyNN.nest as sim
        cell = sim.IF_curr_delta            # pyNN.nest 0.13 maps no "v" for this cell: initialise V_m directly
        cell.variable_map = {**(getattr(cell, "variable_map", None) or {}), "v": "V_m"}
        cell.scale_factors = {**(getattr(cell, "scale_factors", None) or {}), "v": 1}
        flush = 1 + max(p["refractory"] for p in net["populations"]) + max((p["delay"] for p in net["projections"]),
                                                                            default=0)
        sim.setup(timestep=net["dt_ms"], min_delay=net["dt_ms"], spike_precision="on_grid",
                  t_flush=flush * net["dt_ms"])         # reset() first runs the silenced network this long
    else:
        import pyNN.spiNNaker as sim
        sim.setup(timestep=net["dt_ms"])
    with np.load(args.inputs, allow_pickle=False) as inputs:
        run(sim, args.simulator, net, arrays, inputs, args.steps, args.output)
    sim.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
