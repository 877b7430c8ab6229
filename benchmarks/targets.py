"""Accuracy over time of one model on every target: float (reference) beside the integer targets.

    python benchmarks/targets.py [--mnist ../shared/data/mnist.npz] [--limit 2000] [--steps 200]

Models: the digits CNN (trained here on scikit-learn's digits) and mnist-8.onnx (tests/data) on MNIST
from the shared data folder (skipped if absent). Prints accuracy at chosen steps per target, the ANN's
accuracy, and the quantised ANN function's agreement with the float one.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from speed import digits_model  # noqa: E402

from neurocc.backends.reference.simulator import Simulator  # noqa: E402
from neurocc.evaluate import accuracy_over_time  # noqa: E402
from neurocc.frontend.onnx import load_onnx  # noqa: E402
from neurocc.ir.executor import run_ann  # noqa: E402
from neurocc.backends import TARGETS  # noqa: E402
from neurocc.decode import predictions  # noqa: E402
from neurocc.options import CompileOptions  # noqa: E402
from neurocc.pipeline import CompileContext, compile_graph  # noqa: E402
from neurocc.report import table  # noqa: E402

STEPS = (1, 5, 10, 20, 50, 100, 200)


def rows_for(name, path, calib, x, y, steps):
    graph, _ = load_onnx(path)
    rows = []
    for target in TARGETS:
        result = compile_graph(graph, CompileContext(CompileOptions(target=target), calib_x=calib))
        ann = run_ann(result.ann, x)[result.ann.outputs[0]].argmax(1).numpy()
        trace = Simulator(result.snn).run(x, steps, batch_size=250)
        acc = accuracy_over_time(predictions(trace, result.snn.outputs[0]), y)
        check = result.snn.meta.get("quantized_function", {}).get("agreement")
        rows.append([name, target, f"{100 * np.mean(ann == y):.2f}"] +
                    [f"{100 * acc[t - 1]:.2f}" for t in STEPS if t <= steps] +
                    ["-" if check is None else f"{100 * check:.2f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    ap.add_argument("--limit", type=int, default=2000, help="MNIST test images")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from sklearn.datasets import load_digits
        path, calib, _ = digits_model(Path(tmp))
        d = load_digits()
        x = d.images.astype(np.float32)[:, None] / 16
        rows += rows_for("digits CNN", path, calib, x[1400:], d.target[1400:], args.steps)
    if Path(args.mnist).is_file():
        m = np.load(args.mnist, allow_pickle=False)
        calib = m["x_train"][:1000, None].astype(np.float32) / 255
        x = m["x_test"][:args.limit, None].astype(np.float32) / 255
        rows += rows_for("mnist-8.onnx", ROOT / "tests" / "data" / "mnist-8.onnx", calib, x,
                         m["y_test"][:args.limit].astype(np.int64), args.steps)
    else:
        print(f"note: {args.mnist} not found; mnist-8 skipped")
    print(table(["model", "target", "ANN %"] + [f"T={t}" for t in STEPS if t <= args.steps] + ["quantised ANN agrees %"],
                rows))


if __name__ == "__main__":
    main()
