"""Compile time and simulation speed, with onnxruntime's ANN forward on the same batch beside it.

    python benchmarks/speed.py [--resnet ../shared/data/models/resnet20_cifar10.onnx]
                               [--cifar ../shared/data/cifar10_test_jpeg_lossy.npz] [--steps 64] [--batch 32]

Models: the digits CNN (trained here in seconds on scikit-learn's digits) and ResNet-20 for CIFAR-10
(from the shared data folder; skipped if absent), each in float mode (target reference) and integer
mode (targets generic, which takes the fused NL-IAF kernel, and loihi, which takes the per-step update).
Prints, per model and mode: compile time (import + passes + calibration, plus quantisation in integer
mode), simulation throughput in sample-steps per second, the simulator's time per step (its run loop in
this process) and onnxruntime's time per forward pass for the same batch (the fastest of 20), and their
ratio (the physical reference: one time step of an SNN does at most the work of one ANN forward pass,
plus the neuron update). Beside it, the time per step of ``neurocc run`` on the same artifact and batch,
each run in its own process as a user starts it (the ``simulation_seconds`` its ``--json`` reports), and
its ratio to the loop. Both per-step times are measured the same way, in turn: the fastest of 3 values
of (seconds for 5 + n steps - seconds for 5 steps) / n, n >= --steps and about 2 s of simulation.
"""
from __future__ import annotations

import argparse
import json
import subprocess
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

from neurocc.artifact import write_artifact  # noqa: E402
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


def run_seconds_cli(artifact: Path, data: Path, batch: int):
    """``run(n)``: the simulation seconds ``neurocc run`` reports (``--json``) for n steps, in a process of its own."""
    def run(n: int) -> float:
        out = artifact.parent / "run.json"
        subprocess.run([sys.executable, "-m", "neurocc", "run", str(artifact), "--data", str(data), "--steps", str(n),
                        "--batch-size", str(batch), "--json", str(out), "-q"], check=True, capture_output=True)
        return json.loads(out.read_text())["simulation_seconds"]
    return run


def step_seconds(runs: dict, steps: int, pairs: int = 3) -> dict:
    """Seconds per step of each ``run(n)`` in ``runs``: the fastest of ``pairs`` values of
    (run(5 + steps) - run(5)) / steps, so that start-up work (JIT, first allocations) cancels out; the
    ways are measured in turn, pair by pair, so that both see the same load on a shared machine."""
    best = {name: float("inf") for name in runs}
    for _ in range(pairs):
        for name, run in runs.items():
            best[name] = min(best[name], (run(5 + steps) - run(5)) / steps)
    return best


def bench(name, path, calib, data, args, folder: Path) -> list:
    """One row per target: float (reference) and integer (generic, loihi)."""
    batch = data[: args.batch]
    np.savez(folder / "batch.npz", x=batch)
    fwd = ort_forward_seconds(path, batch, repeats=20)
    rows = []
    for target in ("reference", "generic", "loihi"):
        t0 = time.perf_counter()
        graph, source = load_onnx(path)
        opts = CompileOptions(target=target)
        result = compile_graph(graph, CompileContext(opts, calib_x=calib))
        compile_s = time.perf_counter() - t0
        artifact = write_artifact(folder / f"{target}.ncc", source_name=path.name, source_bytes=source, options=opts,
                                  passes=result.passes, ann=result.ann, snn=result.snn)
        sim = Simulator(result.snn)

        def loop(n: int) -> float:
            t = time.perf_counter()
            sim.run(batch, n, batch_size=args.batch)
            return time.perf_counter() - t
        loop(5)                                                               # JIT and first allocations
        steps = max(args.steps, int(np.ceil(2.0 / (loop(args.steps) / args.steps))))     # about 2 s of simulation
        per = step_seconds({"loop": loop, "cli": run_seconds_cli(artifact, folder / "batch.npz", args.batch)}, steps)
        mode = "float" if target == "reference" else f"integer ({target})"
        rows.append([name, mode, f"{compile_s:.2f}", f"{len(batch) / per['loop']:,.0f}", f"{1e3 * per['loop']:.2f}",
                     f"{1e3 * fwd:.2f}", f"{per['loop'] / fwd:.2f}", f"{1e3 * per['cli']:.2f}",
                     f"{per['cli'] / per['loop']:.2f}"])
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
        rows += bench("digits CNN", path, calib, data, args, Path(tmp))
        cifar = cifar_model(args)
        if cifar is None:
            print(f"note: {args.resnet} or {args.cifar} not found; ResNet-20 skipped")
        else:
            rows += bench("ResNet-20 CIFAR-10", *cifar, args, Path(tmp))
    print(f"batch {args.batch}, CPU, {torch.get_num_threads()} threads; per step: fastest of 3 (5 + n) - 5 step "
          f"differences, n >= {args.steps}")
    print(table(["model", "mode", "compile s", "sample-steps/s", "sim ms/step", "ORT ms/forward", "step/forward",
                 "neurocc run ms/step", "run/loop"], rows))


if __name__ == "__main__":
    main()
