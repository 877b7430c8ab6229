"""The conversion matrix measured: how close each CNN family's SNN comes to its ANN, per target and T.

The families of tests/test_conversion_matrix.py (random weights, data-dependent initialisation,
3 x 16 x 16 Gaussian inputs; legacy torch export). For each family and target: the agreement of the
SNN's predictions with the ANN's at T = 100, 300 and --steps (the peer is the ANN itself), and for
integer targets the agreement of the quantised ANN function (``quantize``'s own check, rates without
spiking dynamics) and of a float SNN with the same reset rule as the chip, which separates what the
integer formats cost from what the chip's reset-to-zero costs.

    python benchmarks/matrix.py [--samples 128] [--steps 1000]     (about 40 minutes on 2 cores; --steps 300: 10)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from models import cnn_families, data_init  # noqa: E402

from neurocc.backends import TARGETS  # noqa: E402
from neurocc.backends.reference.simulator import Simulator  # noqa: E402
from neurocc.decode import predictions  # noqa: E402
from neurocc.errors import NeuroccError  # noqa: E402
from neurocc.frontend.onnx import load_onnx  # noqa: E402
from neurocc.hwmodels import load_hwmodel  # noqa: E402
from neurocc.ir.executor import run_ann  # noqa: E402
from neurocc.options import CompileOptions  # noqa: E402
from neurocc.pipeline import CompileContext, compile_graph  # noqa: E402
from neurocc.report import table  # noqa: E402



def agreement(graph, x, ann, marks) -> list:
    trace = Simulator(graph).run(x, marks[-1], batch_size=len(x))
    agree = (predictions(trace, graph.outputs[0]) == ann[None]).mean(axis=1)
    return [f"{100 * agree[t - 1]:.1f}" for t in marks]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=128, help="test inputs (default 128)")
    p.add_argument("--steps", type=int, default=1000, help="simulated steps, at least 1 (default 1000)")
    args = p.parse_args()
    marks = sorted({t for t in (100, 300) if t < args.steps} | {args.steps})
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((256, 3, 16, 16)).astype(np.float32)
    test = rng.standard_normal((args.samples, 3, 16, 16)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family, model in cnn_families().items():
            model = data_init(model, torch.from_numpy(calib))
            path = Path(tmp) / f"{family}.onnx"
            torch.onnx.export(model, (torch.from_numpy(test[:2]),), str(path), input_names=["x"],
                              dynamic_axes={"x": {0: "N"}}, dynamo=False)
            graph, _ = load_onnx(path)
            for target in TARGETS:
                for normalization in ("percentile", "max") if target == "reference" else ("percentile",):
                    opts = CompileOptions(target=target, normalization=normalization)
                    try:
                        result = compile_graph(graph, CompileContext(opts, calib_x=calib))
                    except NeuroccError as e:
                        rows.append([family, target, normalization, f"refused: {str(e)[:60]}"]
                                    + [""] * (len(marks) + 2))
                        continue
                    ann = run_ann(result.ann, test)[result.ann.outputs[0]].numpy().argmax(1)
                    check = result.snn.meta.get("quantized_function", {}).get("agreement")
                    same_reset = [""] * len(marks)
                    if TARGETS[target].hwmodel:
                        reset = load_hwmodel(TARGETS[target].hwmodel).neuron.reset
                        float_same = compile_graph(graph, CompileContext(CompileOptions(reset=reset), calib_x=calib))
                        same_reset = agreement(float_same.snn, test, ann, marks)
                    rows.append([family, target, normalization, len(set(ann))] + agreement(result.snn, test, ann, marks)
                                + ["" if check is None else f"{100 * check:.1f}", same_reset[-1]])
                    print(" ".join(map(str, rows[-1])), file=sys.stderr)
    print(table(["family", "target", "lambda", "ANN classes"] + [f"agree % T={t}" for t in marks]
                + ["quantised ANN %", f"float, chip's reset, T={marks[-1]} %"], rows,
                align="llll" + "r" * (len(marks) + 2)))


if __name__ == "__main__":
    main()
