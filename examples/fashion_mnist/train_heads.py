"""Fashion-MNIST with intermediate-prediction heads (bayesian-fusion §3.2, eq. 19-21), for anytime inference.

    python examples/fashion_mnist/train_heads.py [--data ../shared/data/fashion_mnist.npz] [--out out/fashion]
                                                 [--epochs 10] [--heads block1 block2 block3]

Trains a four-block CNN (conv-BN-ReLU blocks of 16, 32, 64, 64 channels at 28, 14, 7, 7 pixels, average-pool
downsampling, flatten + linear classifier) with a GAP + linear head after each of ``--heads``, on
loss_final + Σ τ_h(e)·loss_h with τ_h rising from 0.01 to the head's cost ratio C_h (neurocc.train). Writes

    fashion_heads.onnx   output 0 "logits" (the final classifier), then one output per head ("head_block1", ...)
    calib.npz            x: --calib-size training images, float32 N×1×28×28 in [0, 1]; y: their labels
    test.npz             x, y: the 10,000 test images, the same scaling

so no --input-scale/--mean/--std is needed at compile time. Prints C per head, the ANN's test accuracy of the
final output and of each head, and the training time. Then, for example:

    neurocc compile OUT/fashion_heads.onnx -o OUT/art --target reference --calib OUT/calib.npz
    neurocc run OUT/art --data OUT/test.npz --limit 500 --steps 64 --json OUT/run.json
"""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
from common import parse_training_args, train_heads_and_export  # noqa: E402
WIDTHS = (16, 32, 64, 64)


def block(cin: int, cout: int, downsample: bool) -> nn.Sequential:
    """[2×2 average pool], 3×3 conv, BN, ReLU: a head reads the ReLU's spikes after conversion."""
    pool = [nn.AvgPool2d(2)] if downsample else []
    return nn.Sequential(*pool, nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def fashion_cnn(classes: int = 10) -> nn.Sequential:
    ins = (1,) + WIDTHS[:-1]
    blocks = [(f"block{i + 1}", block(cin, cout, downsample=i in (1, 2)))
              for i, (cin, cout) in enumerate(zip(ins, WIDTHS))]
    return nn.Sequential(OrderedDict(blocks + [("flatten", nn.Flatten()),
                                               ("fc", nn.Linear(WIDTHS[-1] * 7 * 7, classes))]))


def images(x: np.ndarray) -> np.ndarray:
    """uint8 N×28×28 → float32 N×1×28×28 in [0, 1], the scaling the data files keep."""
    return (x.astype(np.float32) / 255.0)[:, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion_mnist.npz"),
                    help="npz with x_train, y_train, x_test, y_test (uint8 28×28 images)")
    ap.add_argument("--out", default="out/fashion", help="folder for the ONNX model and the data files")
    ap.add_argument("--heads", nargs="+", default=["block1", "block2", "block3"], help="blocks to attach heads to")
    args, out = parse_training_args(ap, epochs=10, batch_size=128, lr=2e-3, calib_size=5000)

    with np.load(args.data, allow_pickle=False) as d:
        x_train, y_train = images(d["x_train"]), d["y_train"].astype(np.int64)
        x_test, y_test = images(d["x_test"]), d["y_test"].astype(np.int64)
    train_heads_and_export(fashion_cnn(), args.heads, (x_train, y_train, x_test, y_test), out, "fashion_heads",
                           args.calib_size, args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)

if __name__ == "__main__":
    main()
