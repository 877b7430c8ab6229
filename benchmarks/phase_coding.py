"""Weighted spikes (`--coding phase`) against rate coding (analog current and Poisson spikes), measured with
`neurocc run` on real data, in the form of weighted-spikes Table 2: the steps and the spikes per sample after
which the accuracy stays within 1 pt and 0.1 pt of the ANN's, and their ratios to rate coding; and the
V0 = 0.5 against V0 = 0 Pareto latency ratio of each coding (anytime-perception Fig. 4 form, eq. 4).

Networks: the digits CNN (trained here, scikit-learn digits) and mnist-8 (tests/data; 1,000 MNIST test images
from ../shared/data calibrate, others are the test set). Spikes include the input's where it is spike-coded
(Poisson, phase); an analog input is a current and sends none. Every configuration is compiled and run through
the command line (`neurocc compile`, `neurocc run --json`) for the reference target (float) and, for phase coding,
the generic target (integer, exact shifts).

    python benchmarks/phase_coding.py [--shared ../shared/data] [--samples 1000] [--steps 128]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from estimate import networks  # noqa: E402

from neurocc.cli import main as neurocc  # noqa: E402
from neurocc.report import table  # noqa: E402

CODINGS = {                      # label -> (target, compile options)
    "rate, analog": ("reference", ["--coding", "analog"]),
    "rate, Poisson": ("reference", ["--coding", "poisson"]),
    "phase K=4": ("reference", ["--coding", "phase", "--phases", "4"]),
    "phase K=4, skip 1": ("reference", ["--coding", "phase", "--phases", "4", "--skip-periods", "1"]),
    "phase K=8": ("reference", ["--coding", "phase", "--phases", "8"]),
    "phase K=4 (generic, integer)": ("generic", ["--coding", "phase", "--phases", "4"]),
}
BASELINE = "rate, Poisson"


def settled(accuracy: np.ndarray, goal: float):
    """The first step after which the accuracy stays at or above ``goal`` (None if it never does)."""
    below = np.flatnonzero(accuracy < goal)
    step = int(below[-1]) + 2 if below.size else 1
    return step if step <= len(accuracy) else None


def measure(model: Path, calib: Path, test: Path, folder: Path, target: str, options: list, v0: float,
            steps: int, extra: list) -> dict:
    art, out = folder / "art.ncc", folder / "run.json"
    assert neurocc(["compile", str(model), "--calib", str(calib), "--target", target, "--v0", str(v0), "-o", str(art),
                    "-q", *extra, *options]) == 0
    assert neurocc(["run", str(art), "--data", str(test), "--steps", str(steps), "-q", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def reach(doc: dict, margin: float) -> tuple:
    """(steps, spikes per sample) until the accuracy stays within ``margin`` of the ANN's."""
    accuracy = np.array(doc["accuracy"])
    step = settled(accuracy, doc["ann_accuracy"] - margin)
    spikes = np.cumsum(doc["spikes_per_step"])
    return (step, float(spikes[step - 1])) if step else (None, None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--samples", type=int, default=1000, help="test images per network (default 1000)")
    p.add_argument("--steps", type=int, default=128)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    rows, v0_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for net, (model, xc, xt, yt) in networks(args.shared, tmp).items():
            if net not in ("digits CNN", "mnist-8"):
                continue
            extra = ["--input-scale", str(1 / 255)] if net == "mnist-8" else []
            np.savez(tmp / "calib.npz", x=xc)
            np.savez(tmp / "test.npz", x=xt[:args.samples], y=yt[:args.samples])
            results = {}
            for label, (target, options) in CODINGS.items():
                for v0 in (0.5, 0.0):
                    results[label, v0] = measure(model, tmp / "calib.npz", tmp / "test.npz", tmp, target, options, v0,
                                                 args.steps, extra)
                    print(f"{net:10s} {label:30s} V0={v0}: {100 * results[label, v0]['accuracy'][-1]:.2f} % at "
                          f"step {args.steps}", file=sys.stderr)
            base = {m: reach(results[BASELINE, 0.5], m) for m in (0.01, 0.001)}
            for label in CODINGS:
                doc = results[label, 0.5]
                row = [net, label, f"{100 * doc['ann_accuracy']:.2f}", f"{100 * doc['accuracy'][-1]:.2f}"]
                for margin in (0.01, 0.001):
                    step, spikes = reach(doc, margin)
                    b_step, b_spikes = base[margin]
                    row += ["-" if step is None else step, "-" if spikes is None else f"{spikes:,.0f}",
                            "-" if step is None or b_step is None else f"{b_step / step:.2f}x",
                            "-" if step is None or b_spikes is None else f"{b_spikes / max(spikes, 1):.2f}x"]
                rows.append(row)
                lat = [results[label, v0]["pareto_latency"] for v0 in (0.5, 0.0)]
                v0_rows.append([net, label, f"{lat[0]:.2f}", f"{lat[1]:.2f}",
                                f"{lat[1] / lat[0]:.2f}" if lat[0] > 0 else "-"])
    print(f"steps and spikes/sample until the accuracy stays within 1 pt / 0.1 pt of the ANN ({args.steps} steps; "
          f"ratios: {BASELINE} / this, V0 = 0.5)")
    print(table(["network", "coding", "ANN %", f"SNN % @{args.steps}", "steps -1pt", "spikes -1pt", "latency x",
                 "spikes x", "steps -0.1pt", "spikes -0.1pt", "latency x", "spikes x"], rows, align="ll" + "r" * 10))
    print("\nPareto latency P_l = sum_t (a_ANN - a_t) (eq. 4), V0 = 0.5 against V0 = 0")
    print(table(["network", "coding", "P_l V0=0.5", "P_l V0=0", "ratio 0 / 0.5"], v0_rows, align="llrrr"))


if __name__ == "__main__":
    main()
