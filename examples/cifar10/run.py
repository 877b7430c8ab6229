"""ResNet-20 on CIFAR-10: compile the pretrained ONNX model as it is and simulate it.

    python examples/cifar10/run.py [--model ../shared/data/models/resnet20_cifar10.onnx]
                                   [--data ../shared/data/cifar10_test_jpeg_lossy.npz] [--n 500] [--steps 256]
                                   [--optimize BUDGET]

Reads the team's shared data folder (../shared/data). The only CIFAR-10 images there are the JPEG-degraded
test set (the ANN scores ~81 % on it instead of ~92 %), so this compares the SNN with the ANN on the same
images. Calibration and evaluation use disjoint random subsets of it (seed 0).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
from common import neurocc  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(SHARED / "models" / "resnet20_cifar10.onnx"))
    ap.add_argument("--data", default=str(SHARED / "cifar10_test_jpeg_lossy.npz"))
    ap.add_argument("--out", default="out/cifar10")
    ap.add_argument("--n", type=int, default=500, help="images to simulate")
    ap.add_argument("--calib", type=int, default=1000, help="calibration images (disjoint from the simulated ones)")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--optimize", type=int, default=0, help="also compile with --optimize BUDGET and run that too")
    args = ap.parse_args()
    for p in (args.model, args.data):
        if not Path(p).is_file():
            sys.exit(f"{p} not found; pass --model / --data")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = np.load(args.data, allow_pickle=False)
    idx = np.random.default_rng(0).permutation(len(d["x_test"]))
    np.savez(out / "calib.npz", x=d["x_test"][idx[:args.calib]], y=d["y_test"][idx[:args.calib]])
    sel = idx[args.calib:args.calib + args.n]
    np.savez(out / "test.npz", x=d["x_test"][sel], y=d["y_test"][sel])
    variants = [(Path(args.model).stem, [])]
    if args.optimize:
        variants.append((Path(args.model).stem + "_optimized", ["--optimize", args.optimize]))
    for name, extra in variants:
        neurocc("compile", args.model, "--calib", out / "calib.npz", "--input-scale", 1 / 255,
                "--mean", 0.485, 0.456, 0.406, "--std", 0.229, 0.224, 0.225, *extra, "-o", out / f"{name}.ncc")
        neurocc("run", out / f"{name}.ncc", "--data", out / "test.npz", "--steps", args.steps, "--batch-size", 50,
                "--report-steps", 16, 32, 64, 128, 256, "--plot", out / f"{name}.png", "--json", out / f"{name}.json")


if __name__ == "__main__":
    main()
