"""Cores and chips per network and chip target, and what TrueNorth's partial sums cost in accuracy.

Networks: the digits CNN and a dense digits net 64-40-10 (trained here on scikit-learn's digits), mnist-8
(tests/data), a dense MNIST net 784-256-128-10 (trained here on ../shared/data/mnist.npz) and ResNet-20
(../shared/data/models). Counts come from `neurocc estimate MODEL --target all --json` with 256 calibration
images. For TrueNorth it also simulates the test images at T = 100 with and without the ``split_fan_in``
and ``map_cores`` passes (the unsplit network does not map, but it runs), so the accuracy the partial sums
and the splitters' ticks cost is measured on the same integer network.

    python benchmarks/cores.py [--shared ../shared/data] [--samples 300] [--steps 100]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import export_onnx, train  # noqa: E402
from estimate import networks  # noqa: E402

import neurocc.backends as backends  # noqa: E402
from neurocc.frontend.onnx import load_onnx  # noqa: E402
from neurocc.hwmodels import load_hwmodel  # noqa: E402
from neurocc.options import CompileOptions  # noqa: E402
from neurocc.pipeline import CompileContext, compile_graph  # noqa: E402
from neurocc.report import table  # noqa: E402

TARGETS = ("generic", "loihi", "spinnaker", "truenorth")


def dense(sizes: tuple) -> nn.Module:
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *layers[:-1])


def add_dense_nets(nets: dict, shared: Path, folder: Path) -> None:
    """The dense digits and (where ../shared/data has MNIST) dense MNIST nets, trained here."""
    from sklearn.datasets import load_digits
    rng = np.random.default_rng(0)
    d = load_digits()
    order = rng.permutation(len(d.target))
    x = d.images.astype(np.float32).reshape(-1, 64)[order] / 16.0
    y = d.target[order].astype(np.int64)
    path = folder / "dense_digits.onnx"
    export_onnx(train(dense((64, 40, 10)), x[:1200], y[:1200], epochs=30), x[:1200], path)
    nets["dense digits 64-40-10"] = (path, x[:1200], x[1200:], y[1200:])
    mnist = shared / "mnist.npz"
    if mnist.exists():
        m = np.load(mnist)
        xtr = m["x_train"].astype(np.float32).reshape(-1, 784) / 255.0
        xte = m["x_test"].astype(np.float32).reshape(-1, 784) / 255.0
        order = rng.permutation(len(xte))
        path = folder / "dense_mnist.onnx"
        export_onnx(train(dense((784, 256, 128, 10)), xtr[:20000], m["y_train"][:20000], epochs=4), xtr[:1], path)
        nets["dense MNIST 784-256-128-10"] = (path, xtr[:1000], xte[order], m["y_test"][order].astype(np.int64))


def counts(path: Path, calib: Path) -> dict:
    out = calib.with_suffix(".json")
    subprocess.run([sys.executable, "-m", "neurocc", "estimate", str(path), "--calib", str(calib), "--target", "all",
                    "--steps", "100", "--json", str(out), "-q"], check=True, capture_output=True)
    return json.loads(out.read_text())["targets"]


def truenorth_accuracy(path: Path, xc, xt, yt, steps: int) -> tuple:
    """(accuracy unsplit, accuracy split and mapped) at ``steps`` on TrueNorth's integer network."""
    g, _ = load_onnx(path)
    hw = load_hwmodel("truenorth")
    full = backends.TARGETS["truenorth"]
    result = []
    for passes in (("normalize", "quantize"), full.passes):
        backends.TARGETS["truenorth"] = dataclasses.replace(full, passes=passes)
        try:
            snn = compile_graph(g, CompileContext(CompileOptions(target="truenorth"), calib_x=xc,
                                                  hwmodel=hw)).snn
        finally:
            backends.TARGETS["truenorth"] = full
        if snn.meta.get("core_mapping", {}).get("unmappable"):
            return result[0], None
        trace = backends.BACKENDS["truenorth"].run(snn, xt, steps)
        result.append(float((trace.readouts[snn.outputs[0]].potential[steps - 1].argmax(1) == yt).mean()))
    return tuple(result)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--samples", type=int, default=300, help="test images simulated on TrueNorth (default 300)")
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        nets = networks(args.shared, Path(tmp))
        add_dense_nets(nets, args.shared, Path(tmp))
        rows, acc_rows = [], []
        for name, (path, xc, xt, yt) in nets.items():
            calib = Path(tmp) / "calib.npz"
            np.savez(calib, x=xc[:256])
            found = counts(path, calib)
            cells = []
            for t in TARGETS:
                r = found.get(t, {})
                cells.append(f"{r['cores']:,} / {r['chips']:,}" if r.get("maps") else
                             "not compiled" if "refused" in r else "does not map")
            rows.append([name] + cells)
            print(" | ".join(rows[-1]), file=sys.stderr)
            if found.get("truenorth", {}).get("maps"):
                unsplit, split = truenorth_accuracy(path, xc[:256], xt[:args.samples], yt[:args.samples], args.steps)
                acc_rows.append([name, f"{100 * unsplit:.1f}", f"{100 * split:.1f}"])
        print(table(["network"] + [f"{t} cores / chips" for t in TARGETS], rows, align="lrrrr"))
        print(f"\nTrueNorth accuracy at T = {args.steps} on {args.samples} test images, the same integer network:")
        print(table(["network", "unsplit (does not map) %", "partial sums + splitters %"], acc_rows, align="lrr"))


if __name__ == "__main__":
    main()
