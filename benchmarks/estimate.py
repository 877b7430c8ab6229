"""Predicted against measured synaptic events, per network and chip, and how long `estimate` takes.

For the digits CNN (trained here on scikit-learn's digits), mnist-8 (tests/data) and ResNet-20
(../shared/data/models, CIFAR-10 JPEG test images): compile for every chip target, predict the events of
T steps from the ANN's activations on calibration images (``neurocc.activity``), simulate other images
for T steps (the reference backend, bit-exact in each chip's semantics) and compare. Also times
`neurocc estimate MODEL --target all` (prediction only) against the simulation it replaces.

    python benchmarks/estimate.py [--steps 100] [--samples 100] [--shared ../shared/data]

Calibration and test images are a seeded random split (the CIFAR-10 JPEG set is sorted by class).
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
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from common import export_onnx, small_cnn, train  # noqa: E402

from neurocc.activity import predicted_activity  # noqa: E402
from neurocc.backends import BACKENDS, TARGETS  # noqa: E402
from neurocc.errors import NeuroccError  # noqa: E402
from neurocc.evaluate import per_step_means  # noqa: E402
from neurocc.frontend.onnx import load_onnx  # noqa: E402
from neurocc.options import CompileOptions, Preprocess  # noqa: E402
from neurocc.pipeline import CompileContext, compile_graph  # noqa: E402
from neurocc.report import table  # noqa: E402

CIFAR_PRE = Preprocess(input_scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def networks(shared: Path, folder: Path) -> dict:
    """name -> (onnx path, calibration x, test x, test labels), inputs pre-processed in the model's layout.

    Calibration and test images are drawn by a seeded permutation: the CIFAR-10 JPEG set is sorted by class."""
    from sklearn.datasets import load_digits
    rng = np.random.default_rng(0)

    def split(x, y, calib: int):
        """(calibration x, calibration y, test x, test y) of a seeded permutation."""
        order = rng.permutation(len(x))
        return x[order[:calib]], y[order[:calib]].astype(np.int64), x[order[calib:]], y[order[calib:]].astype(np.int64)
    d = load_digits()
    xc, yc, xt, yt = split(d.images.astype(np.float32)[:, None] / 16.0, d.target, 1200)
    digits = folder / "digits.onnx"
    torch.manual_seed(0)                 # the CNN's initial weights too: the same network on every run
    export_onnx(train(small_cnn(1, 8), xc, yc, epochs=15), xc, digits)
    nets = {"digits CNN": (digits, xc, xt, yt)}
    m = np.load(shared / "mnist_test.npz")
    xc, _, xt, yt = split(m["x_test"].astype(np.float32)[:, None], m["y_test"], 1000)
    nets["mnist-8"] = (ROOT / "tests" / "data" / "mnist-8.onnx", xc, xt, yt)
    resnet = shared / "models" / "resnet20_cifar10.onnx"
    if resnet.exists():
        c = np.load(shared / "cifar10_test_jpeg_lossy.npz")
        xc, _, xt, yt = split(CIFAR_PRE.apply(c["x_test"].transpose(0, 3, 1, 2)), c["y_test"], 1000)
        nets["ResNet-20"] = (resnet, xc, xt, yt)
    return nets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--samples", type=int, default=100, help="test images simulated per network (default 100)")
    p.add_argument("--calib-samples", type=int, default=256, help="images the prediction uses (default 256)")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    chips = [n for n, t in TARGETS.items() if t.hwmodel]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net, (path, calib, test, _) in networks(args.shared, Path(tmp)).items():
            graph, _ = load_onnx(path)
            for target in chips:
                try:
                    result = compile_graph(graph, CompileContext(CompileOptions(target=target), calib_x=calib))
                except NeuroccError as e:
                    rows.append([net, target, f"refused: {str(e)[:70]}", "", "", "", ""])
                    continue
                t0 = time.perf_counter()
                _, events = predicted_activity(result.snn, calib[:args.calib_samples], args.steps)
                predict_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                trace = BACKENDS["reference"].run(result.snn, test[:args.samples], args.steps, batch_size=50)
                simulate_s = time.perf_counter() - t0
                measured = sum(e.sum() for e in per_step_means(trace.events, trace.samples).values())
                predicted = sum(e.sum() for e in events.values())
                rows.append([net, target, f"{predicted:,.0f}", f"{measured:,.0f}", f"{100 * (predicted / measured - 1):+.1f}",
                             f"{predict_s:.2f}", f"{simulate_s:.1f}"])
                print(" ".join(map(str, rows[-1])), file=sys.stderr)
        print(table(["network", "target", "predicted events", "measured events", "error %", "predict s",
                     f"simulate {args.samples} s"], rows, align="llrrrrr"))
        resnet = args.shared / "models" / "resnet20_cifar10.onnx"
        if resnet.exists():
            c = np.load(args.shared / "cifar10_test_jpeg_lossy.npz")["x_test"]
            c = c[np.random.default_rng(0).permutation(len(c))[:args.calib_samples]]
            np.savez(Path(tmp) / "calib.npz", x=c)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "neurocc", "estimate", str(resnet), "--calib", str(Path(tmp) / "calib.npz"),
                            "--input-scale", str(1 / 255), "--mean", "0.485", "0.456", "0.406", "--std", "0.229",
                            "0.224", "0.225", "--steps", str(args.steps)], check=True, capture_output=True)
            print(f"\nneurocc estimate resnet20_cifar10.onnx --target all --steps {args.steps}: "
                  f"{time.perf_counter() - t0:.1f} s (process start, import, 4 compiles and predictions)")


if __name__ == "__main__":
    main()
