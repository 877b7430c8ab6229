"""MNIST: (A) train a small CNN in PyTorch, export, compile, simulate; (B) compile the ONNX model zoo's
mnist-8.onnx as it is and simulate it.

    python examples/mnist/run.py [--mnist ../shared/data/mnist.npz] [--steps 200] [--limit N]

Reads MNIST from ../shared/data/mnist.npz (the team's shared data folder; pass --mnist for another
copy with x_train, y_train, x_test, y_test as uint8 28 x 28 images). mnist-8.onnx ships in tests/data.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
from common import accuracy, export_onnx, neurocc, train  # noqa: E402


def mnist_cnn() -> nn.Module:
    """conv-BN-ReLU-avgpool x2, linear."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    ap.add_argument("--out", default="out/mnist")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--limit", type=int, default=10000, help="test images to simulate")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    if not Path(args.mnist).is_file():
        sys.exit(f"MNIST not found at {args.mnist}; pass --mnist PATH (an npz with x_train, y_train, x_test, y_test)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)          # the weights' initialisation, so runs repeat
    d = np.load(args.mnist, allow_pickle=False)
    np.savez(out / "calib.npz", x=d["x_train"][:5000], y=d["y_train"][:5000])
    np.savez(out / "test.npz", x=d["x_test"], y=d["y_test"])

    print("== A: a small CNN trained here ==")
    xtr = d["x_train"][:, None].astype(np.float32) / 255
    xte = d["x_test"][:, None].astype(np.float32) / 255
    model = train(mnist_cnn(), xtr, d["y_train"], epochs=args.epochs, batch=128)
    print(f"ANN (PyTorch) test accuracy: {100 * accuracy(model, xte, d['y_test']):.2f} %")
    export_onnx(model, xte, out / "mnist_cnn.onnx")
    neurocc("compile", out / "mnist_cnn.onnx", "--calib", out / "calib.npz", "--input-scale", 1 / 255,
            "-o", out / "mnist_cnn.ncc")
    neurocc("run", out / "mnist_cnn.ncc", "--data", out / "test.npz", "--steps", args.steps, "--limit", args.limit,
            "--batch-size", 250, "--plot", out / "mnist_cnn.png", "--json", out / "mnist_cnn.json")

    print("== B: mnist-8.onnx from the ONNX model zoo, unmodified ==")
    neurocc("compile", ROOT / "tests" / "data" / "mnist-8.onnx", "--calib", out / "calib.npz",
            "--input-scale", 1 / 255, "-o", out / "mnist8.ncc")
    neurocc("run", out / "mnist8.ncc", "--data", out / "test.npz", "--steps", args.steps, "--limit", args.limit,
            "--batch-size", 250, "--plot", out / "mnist8.png", "--json", out / "mnist8.json")


if __name__ == "__main__":
    main()
