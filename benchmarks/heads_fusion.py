"""Intermediate-prediction heads with Bayesian fusion against the final output alone: the energy to reach the
ANN's accuracy less 1 pt, per head position and prior weight P (bayesian-fusion §4.4, Fig. 5 form; the paper:
-51.5 % for its best head on a CIFAR-100 ResNet-18, head (a) worse than no head).

Each network comes as a folder written by `examples/fashion_mnist/train_heads.py` or
`examples/cifar10/train_heads.py` (an ONNX model whose extra outputs are heads trained by `neurocc.train`,
`calib.npz`, `test.npz`). For each, the final output alone is compiled with `--heads none` (no head synapses)
and each head alone with `--heads NAME` (its synapses count); each artifact is simulated once on the reference
simulator and decoded by argmax (no head) or by `neurocc.decode.bayes_predictions` at each P (what
`neurocc run --decode bayes --prior-weight P` computes). Energy is 26 pJ per synaptic event (TrueNorth, the
paper's figure, §4.3), the head's own events included. "Reach" is the first step after which the accuracy
stays at or above ANN - 1 pt.

    python benchmarks/heads_fusion.py DIR [DIR ...] [--samples 1000] [--steps 128] [--v0 0.5 0]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from phase_coding import settled  # noqa: E402

from neurocc.artifact import read_artifact  # noqa: E402
from neurocc.backends import BACKENDS  # noqa: E402
from neurocc.cli import main as neurocc  # noqa: E402
from neurocc.decode import ann_predictions, bayes_predictions, heads, predictions  # noqa: E402
from neurocc.energy import PJ  # noqa: E402
from neurocc.estimate import ACCURACY_MARGIN  # noqa: E402
from neurocc.hwmodels import load_hwmodel  # noqa: E402
from neurocc.report import table  # noqa: E402

PRIOR_WEIGHTS = (1.0, 3.0, 10.0, 30.0)


def compiled(model: Path, calib: Path, folder: Path, keep: str, v0: float):
    out = folder / f"{keep}-{v0}.ncc"
    assert neurocc(["compile", str(model), "--calib", str(calib), "--heads", keep, "--v0", str(v0), "-o", str(out),
                    "-q"]) == 0
    return read_artifact(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", type=Path, nargs="+")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--v0", type=float, nargs="+", default=[0.5, 0.0])
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    joules_per_event = load_hwmodel("truenorth").energy.synaptic_event_pj * PJ
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in args.folders:
            model = next(folder.glob("*.onnx"))
            test = np.load(folder / "test.npz")
            x, y = test["x"][:args.samples].astype(np.float32), test["y"][:args.samples].astype(np.int64)
            for v0 in args.v0:
                base = None
                for keep in ["none"] + list(heads(compiled(model, folder / "calib.npz", Path(tmp), "all", v0).snn)):
                    art = compiled(model, folder / "calib.npz", Path(tmp), keep, v0)
                    snn = art.snn
                    ann = float(np.mean(ann_predictions(art.ann, snn, x, 256)[snn.outputs[0]] == y))
                    trace = BACKENDS["reference"].run(snn, x, args.steps, batch_size=100)
                    events = sum(e.sum(axis=1) for e in trace.events.values()) / len(x)
                    energy = np.cumsum(events) * joules_per_event
                    decodes = ({"argmax": predictions(trace, snn.outputs[0])} if keep == "none" else
                               {f"P={w:g}": bayes_predictions(trace, snn, snn.outputs[0], keep, w)
                                for w in PRIOR_WEIGHTS})
                    for how, pred in decodes.items():
                        accuracy = (pred == y[None]).mean(axis=1)
                        step = settled(accuracy, ann - ACCURACY_MARGIN)
                        joules = energy[step - 1] if step else None
                        if keep == "none":
                            base = joules
                        saving = ("-" if joules is None or base is None or keep == "none"
                                  else f"{100 * (joules / base - 1):+.1f} %")
                        rows.append([model.stem, f"{v0:g}", "final alone" if keep == "none" else keep, how,
                                     f"{100 * ann:.2f}", f"{100 * accuracy[-1]:.2f}", step or "-",
                                     "-" if joules is None else f"{joules * 1e6:.1f}", saving])
                        print(" ".join(map(str, rows[-1])), file=sys.stderr)
    print(f"energy to reach ANN - 1 pt (26 pJ per synaptic event), {args.samples} test images, {args.steps} steps")
    print(table(["network", "V0", "read-out", "decode", "ANN %", f"SNN % @{args.steps}", "steps", "energy uJ",
                 "vs final alone"], rows, align="lllllrrrr"))


if __name__ == "__main__":
    main()
