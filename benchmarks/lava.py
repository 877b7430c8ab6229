"""Loihi through Lava: accuracy of both neuron choices, the core mapping, and Lava against the reference simulator.

Networks: the digits CNN (trained here on scikit-learn's digits) and mnist-8 (tests/data, test images from
../shared/data/mnist_test.npz), each compiled with `neurocc compile --target loihi --max-pool average` and
`--reset zero` (Loihi's own LIF) or `--reset subtract` (neurocc's SRIF Lava process). For each: the accuracy on
`--samples` test images after `--steps` steps (reference simulator, Loihi semantics), the cores of neurocc's Loihi
mapping, and on the first `--lava-samples` images the emitted program run by lava-nc 0.10.0 (fixed_pt, Lava's own
environment; `run --backend lava`'s code path): whether every population's spikes equal the reference's at every
step, and the wall time of both on the same samples and steps (Lava's includes building its processes).

    python benchmarks/lava.py [--shared ../shared/data] [--samples 500] [--lava-samples 10] [--steps 100]
"""
from __future__ import annotations

import argparse
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
from estimate import networks  # noqa: E402

from neurocc.artifact import read_artifact  # noqa: E402
from neurocc.backends import BACKENDS  # noqa: E402
from neurocc.hwmodels import load_hwmodel  # noqa: E402
from neurocc.report import table  # noqa: E402


def compile_loihi(path: Path, calib: np.ndarray, folder: Path, reset: str) -> Path:
    np.savez(folder / "calib.npz", x=calib[:256])
    out = folder / f"{path.stem}-{reset}.ncc"
    subprocess.run([sys.executable, "-m", "neurocc", "compile", str(path), "--calib", str(folder / "calib.npz"),
                    "--target", "loihi", "--reset", reset, "--max-pool", "average", "-o", str(out), "-q"],
                   check=True, capture_output=True, text=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--samples", type=int, default=500, help="test images for the accuracy (reference simulator)")
    p.add_argument("--lava-samples", type=int, default=10, help="test images run on Lava too")
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    hw = load_hwmodel("loihi")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        nets = networks(args.shared, Path(tmp))
        nets.pop("ResNet-20", None)
        for name, (path, xc, xt, yt) in nets.items():
            for reset in ("zero", "subtract"):
                art = read_artifact(compile_loihi(path, xc, Path(tmp), reset))
                snn, out = art.snn, art.snn.outputs[0]
                x, y = xt[:args.samples], yt[:args.samples]
                acc = (BACKENDS["reference"].run(snn, x, args.steps).readouts[out].potential[-1].argmax(1) == y).mean()
                cores = BACKENDS["loihi"].resources(snn, hw)
                xl = x[:args.lava_samples]
                t0 = time.perf_counter()
                ref = BACKENDS["reference"].run(snn, xl, args.steps, record_trains=True)
                t1 = time.perf_counter()
                lava = BACKENDS["lava"].run(snn, xl, args.steps, record_trains=True)
                t2 = time.perf_counter()
                same = all(np.array_equal(ref.spike_trains[k], lava.spike_trains[k]) for k in ref.spike_trains)
                same = same and np.array_equal(ref.readouts[out].potential, lava.readouts[out].potential)
                rows.append([name, reset, f"{100 * acc:.1f}", f"{cores.cores:,}", f"{cores.chips:,}",
                             "yes" if same else "NO", f"{sum(int(v.sum()) for v in ref.spikes.values()):,}",
                             f"{t1 - t0:.2f}", f"{t2 - t1:.1f}", f"{(t2 - t1) / (t1 - t0):,.0f}"])
                print(rows[-1], file=sys.stderr)
    print(f"Loihi (--target loihi --max-pool average), {args.steps} steps; accuracy on {args.samples} test images; "
          f"Lava against the reference on {args.lava_samples}:")
    print(table(["network", "reset", "accuracy %", "cores", "chips", "Lava spikes = reference", "spikes",
                 "reference s", "Lava s", "Lava / ref"], rows, align="llrrrlrrrr"))


if __name__ == "__main__":
    main()
