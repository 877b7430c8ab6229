"""Directly trained SNNs (BNTT, SRIF) against the same architecture trained as an ANN and converted, on
Fashion-MNIST: accuracy, spikes and energy per inference at T = 2/4/8/16/25/64, neurocc's agreement with the
PyTorch model's own predictions, the integer targets that run them, and BNTT's early exit.

Reads the models and PyTorch reference predictions that `examples/fashion_mnist/train_snn.py` writes (its --out
folder: bntt.onnx, srif.onnx, ann.onnx, bntt.reference.npz, srif.reference.npz; those present are measured) and the test images from
../shared/data (`--shared`). Every network is compiled with `neurocc compile` and simulated by the reference
backend. Energy per inference is E_SNN of the estimate issue (`neurocc.energy.snn_energy`) with the coefficients
of `generic`, the integer target that runs all three (45 nm: 0.9 pJ per synaptic event and per neuron update), from
the synaptic events and neurons counted in the same runs; the ANN's own 45 nm figure (MACs x 4.6 pJ) is printed
beside. The chips (loihi, spinnaker, truenorth) refuse directly trained networks (README).

    python benchmarks/trained_snn.py --models /path/to/train_snn_out [--shared ../shared/data] [--samples 10000]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from neurocc.artifact import read_artifact  # noqa: E402
from neurocc.backends import BACKENDS  # noqa: E402
from neurocc.cli import main as neurocc  # noqa: E402
from neurocc.decode import ann_predictions  # noqa: E402
from neurocc.energy import ann_energy, snn_energy  # noqa: E402
from neurocc.hwmodels import load_hwmodel  # noqa: E402
from neurocc.ir.snn import Population  # noqa: E402
from neurocc.report import table  # noqa: E402

REPORT_STEPS = (2, 4, 8, 16, 25, 64)


def compile_model(model: Path, out: Path, target: str, extra=()) -> Path:
    assert neurocc(["compile", str(model), "--target", target, "-o", str(out), "-q", *extra]) == 0, model
    return out


def simulate(artifact: Path, x: np.ndarray, steps: int) -> dict:
    """Per-step predictions (steps, N), mean spikes and energy per inference after each step (E_SNN, generic)."""
    snn = read_artifact(artifact).snn
    trace = BACKENDS["reference"].run(snn, x, steps, batch_size=256)
    out = trace.readouts[snn.outputs[0]]
    scores = out.count if snn.payload(snn.outputs[0]).readout == "spike" else out.potential
    chip = load_hwmodel("generic")
    neurons = {n: math.prod(snn.shape(n)) for n in snn.nodes() if isinstance(snn.payload(n), Population)}
    cores = {n: math.ceil(k / chip.limits.neurons_per_core) for n, k in neurons.items()}
    events = {n: e.mean(axis=1) for n, e in trace.events.items()}
    spikes = np.cumsum(sum(s.mean(axis=1) for s in trace.spikes.values()))
    energy = snn_energy(chip, events, neurons, cores, steps).per_step
    return {"pred": scores.reshape(steps, len(x), -1).argmax(axis=2), "spikes": spikes, "energy": energy,
            "meta": snn.meta}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, required=True, help="examples/fashion_mnist/train_snn.py's --out folder")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--samples", type=int, default=10000, help="test images (default all 10,000)")
    p.add_argument("--calib", type=int, default=1000, help="training images that calibrate the ANN's conversion")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    steps = max(REPORT_STEPS)
    test = np.load(args.shared / "fashion_mnist_test.npz")
    x = (test["x_test"][:args.samples, None] / np.float32(255)).astype(np.float32)
    y = test["y_test"][:args.samples].astype(np.int64)
    train = np.load(args.shared / "fashion_mnist.npz")
    rows, agreement, integer, exits = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "calib.npz", x=train["x_train"][:args.calib, None] / np.float32(255), y=train["y_train"][:args.calib])
        runs = {}
        for name in [n for n in ("bntt", "srif") if (args.models / f"{n}.onnx").exists()]:
            art = compile_model(args.models / f"{name}.onnx", tmp / f"{name}.ncc", "reference")
            runs[name] = simulate(art, x, steps)
            ref = np.load(args.models / f"{name}.reference.npz")
            trained = int(ref["time_steps"])
            torch_pred = ref["pred"][:args.samples]
            for t in sorted({trained, *REPORT_STEPS}):
                same = runs[name]["pred"][t - 1] == torch_pred[:, t - 1]
                agreement.append([name, t, f"{100 * same.mean():.3f}", int((~same).sum()),
                                  f"{100 * np.mean(torch_pred[:, t - 1] == y):.2f}",
                                  f"{100 * np.mean(runs[name]['pred'][t - 1] == y):.2f}"])
            for target in ("generic",):
                compile_model(args.models / f"{name}.onnx", tmp / f"{name}-{target}.ncc", target)
                run = simulate(tmp / f"{name}-{target}.ncc", x, trained)
                float_acc = np.mean(runs[name]["pred"][trained - 1] == y)
                int_acc = np.mean(run["pred"][-1] == y)
                integer.append([name, target, trained, f"{100 * float_acc:.2f}", f"{100 * int_acc:.2f}",
                                f"{100 * (int_acc - float_acc):+.2f}"])
            meta = runs[name]["meta"]["trained_snn"]
            if "early_exit" in meta:
                e, total = meta["early_exit"]["step"], meta["time_steps"]
                acc = [np.mean(runs[name]["pred"][t - 1] == y) for t in (e, total)]
                sp = [runs[name]["spikes"][t - 1] for t in (e, total)]
                exits.append([name, f"{e} of {total}", f"{100 * (1 - e / total):.0f} %", f"{100 * acc[0]:.2f}",
                              f"{100 * acc[1]:.2f}", f"{sp[0]:,.0f}", f"{sp[1]:,.0f}", f"{100 * (1 - sp[0] / sp[1]):.1f} %"])
        ann_line = ""
        if (args.models / "ann.onnx").exists():
            ann_art = read_artifact(compile_model(args.models / "ann.onnx", tmp / "ann.ncc", "reference",
                                                  ["--calib", str(tmp / "calib.npz")]))
            runs["ann (converted)"] = simulate(tmp / "ann.ncc", x, steps)
            ann_acc = np.mean(ann_predictions(ann_art.ann, ann_art.snn, x, 256)[ann_art.snn.outputs[0]] == y)
            e = ann_energy(ann_art.ann)
            ann_line = (f"ANN: {100 * ann_acc:.2f} %, {e['macs']:,} MACs, {1e6 * e['energy_j']:.2f} uJ at {e['e_mac_pj']} "
                        f"pJ/MAC ({e['source']})")
    for name, run in runs.items():
        for t in REPORT_STEPS:
            rows.append([name, t, f"{100 * np.mean(run['pred'][t - 1] == y):.2f}", f"{run['spikes'][t - 1]:,.0f}",
                         f"{1e6 * run['energy'][t - 1]:.2f}"])
    print(f"Fashion-MNIST, {len(x):,} test images; energy: E_SNN with generic's coefficients (hwmodels/generic.toml)")
    print(table(["network", "T", "accuracy %", "spikes/inference", "energy uJ"], rows, align="lrrrr"))
    print(ann_line)
    print("\nneurocc (reference, float32) against the PyTorch model's own predictions at the same T")
    print(table(["network", "T", "same prediction %", "differ", "PyTorch %", "neurocc %"], agreement, align="lrrrrr"))
    print("\ninteger targets at the trained T (quantisation loss against float)")
    print(table(["network", "target", "T", "float %", "integer %", "loss pt"], integer, align="llrrrr"))
    if exits:
        print("\nBNTT early exit (bntt 3.4; gamma threshold 0.1)")
        print(table(["network", "exit step", "steps saved", "acc. at exit %", "acc. at T %", "spikes at exit",
                     "spikes at T", "spikes saved"], exits, align="lrrrrrrr"))


if __name__ == "__main__":
    sys.exit(main())
