"""Digits demo: train a small CNN on scikit-learn's digits, export ONNX, compile to an SNN, simulate.

    python examples/digits/run.py [--out out/digits] [--steps 200]

Needs no data beyond scikit-learn. Prints the ANN's test accuracy and the SNN's accuracy over time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import accuracy, export_onnx, neurocc, small_cnn, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/digits", help="folder for the model, data and results")
    ap.add_argument("--steps", type=int, default=200, help="simulation time steps")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)          # the weights' initialisation, so runs repeat

    digits = load_digits()
    x = digits.images.astype(np.float32)[:, None] / 16.0          # 1797 x 1 x 8 x 8 in [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=0,
                                                        stratify=digits.target)
    model = train(small_cnn(1, 8), x_train, y_train, epochs=args.epochs)
    print(f"ANN (PyTorch) test accuracy: {100 * accuracy(model, x_test, y_test):.2f} % on {len(x_test)} images")

    export_onnx(model, x_test, out / "digits_cnn.onnx")
    np.savez(out / "train.npz", x=x_train, y=y_train)
    np.savez(out / "test.npz", x=x_test, y=y_test)
    neurocc("compile", out / "digits_cnn.onnx", "--calib", out / "train.npz", "-o", out / "digits_cnn.ncc")
    neurocc("run", out / "digits_cnn.ncc", "--data", out / "test.npz", "--steps", args.steps,
            "--plot", out / "accuracy.png", "--json", out / "run.json")
    print(f"plot: {out / 'accuracy.png'}   results: {out / 'run.json'}")


if __name__ == "__main__":
    main()
