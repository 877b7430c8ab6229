"""Layer-wise SNN calibration (`--snn-calibration bias|weights`) against none: accuracy over time beside the ANN.

Networks: ResNet-20 and ResNet-32 (../shared/data/models, 500 JPEG CIFAR-10 test images and 1,000 calibration
images disjoint from them, two seeded splits), mnist-8 (tests/data; MNIST test images from ../shared/data) and the
digits CNN (trained here). Each is compiled with `--snn-calibration none`, `bias` and `weights` (`--levels`) for the
reference target and, for mnist-8 (`--max-pool average`) and the digits CNN, for loihi, spinnaker and truenorth.
A calibration is for the latency a user deploys at, so each calibrated network is compiled once per reported T with
`--calibration-steps T` and its accuracy taken at that T (`--fixed-steps N`: compile once at N and read every T from
one run). `--optimize N` adds `--optimize N --optimize-steps T --optimize-samples 128` to every compile. The
accuracy comes from the reference simulator (every target's semantics), the ANN's from onnxruntime. Compile time
includes the calibration.

    python benchmarks/snn_calibration.py [--shared ../shared/data] [--only NAME ...] [--levels ...] [--optimize N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from estimate import CIFAR_PRE, networks  # noqa: E402

from neurocc.backends import BACKENDS  # noqa: E402
from neurocc.frontend.onnx import load_onnx  # noqa: E402
from neurocc.options import CompileOptions  # noqa: E402
from neurocc.pipeline import CompileContext, compile_graph  # noqa: E402
from neurocc.report import table  # noqa: E402


def ann_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(str(path))
    name = session.get_inputs()[0].name
    out = np.concatenate([session.run(None, {name: x[i:i + 100]})[0] for i in range(0, len(x), 100)])
    return float((out.reshape(len(x), -1).argmax(1) == y).mean())


def measure(path, xc, xt, yt, target: str, level: str, steps: tuple, fixed: int, optimize: int,
            **options) -> tuple:
    """Accuracy at each of ``steps`` (%, as text) and the compile seconds: one compile calibrated at ``fixed`` steps,
    or, with ``fixed`` 0 and a calibration level, one compile calibrated at each T."""
    per_t = (level != "none" or optimize) and not fixed
    accs, seconds = [], []
    for horizon in (steps if per_t else (fixed or max(steps),)):
        extra = dict(optimize=optimize, optimize_steps=horizon, optimize_samples=128) if optimize else {}
        opts = CompileOptions(target=target, snn_calibration=level, calibration_steps=horizon, **extra, **options)
        t0 = time.perf_counter()
        snn = compile_graph(load_onnx(path)[0], CompileContext(opts, calib_x=xc)).snn
        seconds.append(time.perf_counter() - t0)
        run = max(steps) if not per_t else horizon
        trace = BACKENDS["reference"].run(snn, xt, run, batch_size=32)
        acc = (trace.readouts[snn.outputs[0]].potential.argmax(2) == yt[None]).mean(1)
        accs += [acc[t - 1] for t in steps] if not per_t else [acc[horizon - 1]]
    return [f"{100 * a:.1f}" for a in accs], "/".join(f"{s:.0f}" for s in seconds)


def cifar_splits(shared: Path, seed: int):
    c = np.load(shared / "cifar10_test_jpeg_lossy.npz")
    x = CIFAR_PRE.apply(c["x_test"].transpose(0, 3, 1, 2)).astype(np.float32)
    y = c["y_test"].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order[:1000]], x[order[1000:1500]], y[order[1000:1500]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--only", nargs="+", help="only these networks (ResNet-20, ResNet-32, mnist-8, digits CNN)")
    p.add_argument("--levels", nargs="+", default=["none", "bias", "weights"], help="calibration levels to measure")
    p.add_argument("--targets", nargs="+", default=["reference", "loihi", "spinnaker", "truenorth"],
                   help="targets for mnist-8 and the digits CNN")
    p.add_argument("--fixed-steps", type=int, default=0, metavar="N",
                   help="calibrate once at N steps instead of at each reported T")
    p.add_argument("--optimize", type=int, default=0, metavar="N", help="also run --optimize N (evaluations)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    rows, chips = [], []
    wanted = (lambda name: not args.only or name in args.only)
    for net in ("ResNet-20", "ResNet-32"):
        path = args.shared / "models" / f"{net.lower().replace('-', '')}_cifar10.onnx"
        if not wanted(net) or not path.exists():
            continue
        for seed in (0, 1):
            xc, xt, yt = cifar_splits(args.shared, seed)
            ann = ann_accuracy(path, xt, yt)
            for level in args.levels:
                acc, seconds = measure(path, xc, xt, yt, "reference", level, (8, 16, 32, 64), args.fixed_steps,
                                       args.optimize)
                rows.append([net, f"split {seed}", f"{100 * ann:.1f}", level, *acc, seconds])
                print(rows[-1], file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        small = {k: v for k, v in networks(args.shared, Path(tmp)).items() if k in ("digits CNN", "mnist-8")}
        for net, (path, xc, xt, yt) in small.items():
            if not wanted(net):
                continue
            xt, yt = xt[:500], yt[:500]
            extra = {"max_pool": "average"} if net == "mnist-8" else {}
            for target in args.targets:
                for level in args.levels:
                    acc, seconds = measure(path, xc[:1000], xt, yt, target, level, (4, 8, 16, 32, 64),
                                           args.fixed_steps, args.optimize, **extra)
                    chips.append([net, target, level, *acc, seconds])
                    print(chips[-1], file=sys.stderr)
    how = (f"--calibration-steps {args.fixed_steps}" if args.fixed_steps else "calibrated at each T")
    how += f", --optimize {args.optimize}" if args.optimize else ""
    print(f"CIFAR-10, 500 test images, 1,000 calibration images (reference target), {how}:")
    print(table(["network", "split", "ANN %", "calibration", "T=8", "T=16", "T=32", "T=64", "compile s"], rows,
                align="lllrrrrrr"))
    print(f"\n500 test images, 1,000 calibration images, {how}:")
    print(table(["network", "target", "calibration", "T=4", "T=8", "T=16", "T=32", "T=64", "compile s"], chips,
                align="lllrrrrrr"))


if __name__ == "__main__":
    main()
