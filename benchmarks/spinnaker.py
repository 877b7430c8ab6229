"""SpiNNaker: sPyNNaker's virtual-board mapping per network, and NEST against the reference simulator.

Networks: the digits CNN (trained here on scikit-learn's digits), mnist-8 (tests/data), a dense MNIST net
784-256-128-10 (trained here on ../shared/data/mnist.npz) and ResNet-20 (../shared/data/models). Each is compiled
with `neurocc compile --target spinnaker --max-pool average` (mnist-8's max pooling becomes average pooling; the
others have none), which runs sPyNNaker 1!7.4.1's mapping on a virtual machine; the ones
that compile are simulated on the same test images and steps by the reference simulator (SpiNNaker semantics)
and by the emitted PyNN program on NEST (`run --backend nest`'s code path): per-neuron, per-step spike equality,
total spikes, accuracy, and the wall time of both (NEST's includes building the network).

    python benchmarks/spinnaker.py [--shared ../shared/data] [--samples 100] [--steps 100] [--nest-limit 2000000]
                                   [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from cores import add_dense_nets  # noqa: E402
from estimate import networks  # noqa: E402

from neurocc.artifact import read_artifact  # noqa: E402
from neurocc.backends import BACKENDS  # noqa: E402
from neurocc.report import table  # noqa: E402


def compile_spinnaker(path: Path, calib: np.ndarray, folder: Path) -> tuple:
    """(artifact or None, seconds, the one-line refusal)."""
    np.savez(folder / "calib.npz", x=calib[:256])
    out = folder / (path.stem + ".ncc")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "neurocc", "compile", str(path), "--calib", str(folder / "calib.npz"),
                           "--target", "spinnaker", "--max-pool", "average", "-o", str(out), "-q"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    return (out if done.returncode == 0 else None), seconds, done.stderr.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--nest-limit", type=int, default=2_000_000, help="largest network (synapses) run on NEST")
    p.add_argument("--only", nargs="+", help="only these networks (e.g. mnist-8)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    maps, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        nets = networks(args.shared, Path(tmp))
        add_dense_nets(nets, args.shared, Path(tmp))
        nets.pop("dense digits 64-40-10", None)
        nets = {k: v for k, v in nets.items() if not args.only or k in args.only}
        for name, (path, xc, xt, yt) in nets.items():
            art, seconds, why = compile_spinnaker(path, xc, Path(tmp))
            if art is None:
                maps.append([name, "does not compile", "", "", "", f"{seconds:.1f}", why.replace("neurocc: error: ", "")])
                print(maps[-1], file=sys.stderr)
                continue
            mapping = json.loads((art / "backend" / "mapping.json").read_text())
            snn = read_artifact(art).snn
            synapses = sum(len(np.load(art / "backend" / "network.npz")[k])
                           for k in np.load(art / "backend" / "network.npz").files if k.endswith("/pre"))
            maps.append([name, f"{mapping['total_cores']:,}", f"{mapping['chips']:,}",
                         f"{mapping['machine']['chips']:,}", f"{mapping['routing_entries']:,}", f"{seconds:.1f}",
                         f"{synapses:,} synapses in lists"])
            print(maps[-1], file=sys.stderr)
            if synapses > args.nest_limit:
                continue
            x, y = xt[:args.samples], yt[:args.samples]
            t0 = time.perf_counter()
            ref = BACKENDS["reference"].run(snn, x, args.steps, record_trains=True)
            t1 = time.perf_counter()
            nest = BACKENDS["nest"].run(snn, x, args.steps, record_trains=True)
            t2 = time.perf_counter()
            equal = np.mean([(ref.spike_trains[k] == nest.spike_trains[k]).mean() for k in ref.spike_trains])
            same = np.mean([(ref.spike_trains[k] == nest.spike_trains[k]).all(axis=tuple(range(2, ref.spike_trains[k].ndim)))
                            .all(axis=0).mean() for k in ref.spike_trains])
            total_ref = sum(int(v.sum()) for v in ref.spikes.values())
            total_nest = sum(int(v.sum()) for v in nest.spikes.values())
            out = snn.outputs[0]
            acc = [float((t.readouts[out].potential[-1].argmax(1) == y).mean()) for t in (ref, nest)]
            runs.append([name, f"{100 * equal:.4f}", f"{100 * same:.1f}", f"{total_ref:,}",
                         f"{100 * (total_nest / total_ref - 1):+.3f}", f"{100 * acc[0]:.1f}", f"{100 * acc[1]:.1f}",
                         f"{t1 - t0:.2f}", f"{t2 - t1:.1f}", f"{(t2 - t1) / (t1 - t0):.0f}"])
            print(runs[-1], file=sys.stderr)
    print(table(["network", "cores", "chips", "machine chips", "routing entries", "compile s", "note"], maps,
                align="lrrrrrl"))
    print(f"\nNEST against the reference simulator, {args.samples} test images x {args.steps} steps:")
    print(table(["network", "spikes equal (neuron x step) %", "samples identical %", "spikes (reference)",
                 "NEST spikes vs reference %", "reference acc %", "NEST acc %", "reference s", "NEST s", "NEST / ref"],
                runs, align="lrrrrrrrrr"))


if __name__ == "__main__":
    main()
