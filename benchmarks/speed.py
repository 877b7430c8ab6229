"""Compile time and simulation speed, with onnxruntime's ANN forward on the same batch beside it.

    python benchmarks/speed.py [--resnet ../shared/data/models/resnet20_cifar10.onnx]
                               [--cifar ../shared/data/cifar10_test_jpeg_lossy.npz] [--steps 64] [--batch 32]

Models: the digits CNN (trained here in seconds on scikit-learn's digits) and ResNet-20 for CIFAR-10
(from the shared data folder; skipped if absent), each in float mode (target reference) and integer
mode (target generic). Prints, per model and mode: compile time (import + passes + calibration, plus
quantisation in integer mode), simulation throughput in sample-steps per second, the simulator's time
per step and onnxruntime's time per forward pass for the same batch, and their ratio (the physical
reference: one time step of an SNN does at most the work of one ANN forward pass, plus the neuron update).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from common import export_onnx, small_cnn, train  # noqa: E402

from neurocc.backends.reference.simulator import Simulator  # noqa: E402
from neurocc.frontend.onnx import load_onnx  # noqa: E402
from neurocc.options import CompileOptions  # noqa: E402
from neurocc.pipeline import CompileContext, compile_graph  # noqa: E402
from neurocc.report import table  # noqa: E402

CIFAR_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
CIFAR_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def digits_model(folder: Path):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16
    torch.manual_seed(0)
    model = train(small_cnn(1, 8), x[:1400], d.target[:1400], epochs=10)
    path = folder / "digits.onnx"
    export_onnx(model, x, path)
    return path, x[:1400], x[1400:]


def cifar_model(args):
    if not Path(args.resnet).is_file() or not Path(args.cifar).is_file():
        return None
    d = np.load(args.cifar, allow_pickle=False)
    x = (d["x_test"].transpose(0, 3, 1, 2).astype(np.float32) / 255 - CIFAR_MEAN) / CIFAR_STD
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    return Path(args.resnet), x[idx[:500]], x[idx[500:1000]]


def ort_forward_seconds(path: Path, x: np.ndarray, repeats: int) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return best_seconds(lambda: sess.run(None, {name: x}), repeats)


def best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after a warm-up (the least disturbed by other load)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(name, path, calib, data, args) -> list:
    """One row per target: float (reference) and integer (generic)."""
    batch = data[: args.batch]
    fwd = ort_forward_seconds(path, batch, repeats=20)
    rows = []
    for target in ("reference", "generic"):
        t0 = time.perf_counter()
        graph, _ = load_onnx(path)
        result = compile_graph(graph, CompileContext(CompileOptions(target=target), calib_x=calib))
        compile_s = time.perf_counter() - t0
        sim = Simulator(result.snn)
        sim_s = best_seconds(lambda: sim.run(batch, args.steps, batch_size=args.batch), 3)
        per_step = sim_s / args.steps
        mode = "float" if target == "reference" else "integer"
        rows.append([name, mode, f"{compile_s:.2f}", f"{len(batch) * args.steps / sim_s:,.0f}", f"{1e3 * per_step:.2f}",
                     f"{1e3 * fwd:.2f}", f"{per_step / fwd:.2f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resnet", default=str(ROOT.parent / "shared" / "data" / "models" / "resnet20_cifar10.onnx"))
    ap.add_argument("--cifar", default=str(ROOT.parent / "shared" / "data" / "cifar10_test_jpeg_lossy.npz"))
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path, calib, data = digits_model(Path(tmp))
        rows += bench("digits CNN", path, calib, data, args)
    cifar = cifar_model(args)
    if cifar is None:
        print(f"note: {args.resnet} or {args.cifar} not found; ResNet-20 skipped")
    else:
        rows += bench("ResNet-20 CIFAR-10", *cifar, args)
    print(f"batch {args.batch}, {args.steps} steps, CPU, {torch.get_num_threads()} threads; best of 3 runs")
    print(table(["model", "mode", "compile s", "sample-steps/s", "sim ms/step", "ORT ms/forward", "step/forward"], rows))


if __name__ == "__main__":
    main()
