"""Early decision (weighted-spikes Algorithm 1, `run --early-exit stable`) and the confidence-margin exit
(`--early-exit margin`): the spikes saved against running every sample for all steps, at no accuracy loss and at
1 pt loss (weighted-spikes §5.3; the paper: 50-58 % of spikes saved at no loss, 59-77 % at 1 pt).

Networks: the digits CNN (trained here) and mnist-8 (tests/data, MNIST from ../shared/data), compiled through
the command line for phase coding (K = 4, the paper's MNIST setting, T1 = one period + 1) and rate coding
(analog current, T1 = 1), simulated once for `--steps` steps on the reference simulator and decided by
`neurocc.exit` as `neurocc run` does, over a grid of theta (stable) and M (margin). Baseline: every sample
runs all steps, accuracy a_T and its spikes. "No loss" keeps the largest saving whose accuracy is at least
a_T, "1 pt" at least a_T - 1 pt. The parameter is chosen on the first half of the test images and reported on
the second half (choosing it on the images it is reported on would flatter it). Spikes include the input's
where it is spike-coded.

    python benchmarks/early_exit.py [--shared ../shared/data] [--samples 1000] [--steps 64]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from estimate import networks  # noqa: E402

from neurocc.artifact import read_artifact  # noqa: E402
from neurocc.backends import BACKENDS  # noqa: E402
from neurocc.cli import main as neurocc  # noqa: E402
from neurocc.decode import decoded  # noqa: E402
from neurocc.exit import margin_exit, spent, stable_exit  # noqa: E402
from neurocc.report import table  # noqa: E402

CODINGS = {"phase K=4": (["--coding", "phase", "--phases", "4"], 5), "rate, analog": (["--coding", "analog"], 1)}
THETAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
MARGINS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def chosen(candidates: list, margin: float):
    """The parameter with the largest saving on the selection half whose accuracy there is at least its full
    run's less ``margin``, with its (saving, accuracy, mean exit step) on the report half; None if none."""
    kept = [c for c in candidates if c["select"][1] >= c["select_full"] - margin - 1e-12]
    if not kept:
        return None
    pick = max(kept, key=lambda c: c["select"][0])
    return pick["parameter"], pick["report"]


def cell(choice, name: str) -> list:
    if choice is None:
        return ["-", "-", "-", "-"]
    parameter, (saving, accuracy, steps) = choice
    return [f"{name} {parameter:g}", f"{100 * accuracy:.2f}", f"{steps:.1f}", f"{100 * saving:.1f} %"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=64)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for net, (model, xc, xt, yt) in networks(args.shared, tmp).items():
            if net not in ("digits CNN", "mnist-8"):
                continue
            scale = 1 / 255 if net == "mnist-8" else 1.0
            np.savez(tmp / "calib.npz", x=xc)
            x, y = xt[:args.samples] * np.float32(scale), yt[:args.samples]
            for label, (options, start) in CODINGS.items():
                art = tmp / "a.ncc"
                assert neurocc(["compile", str(model), "--calib", str(tmp / "calib.npz"), "--input-scale", str(scale),
                                "-o", str(art), "-q", *options]) == 0
                snn = read_artifact(art).snn
                trace = BACKENDS["reference"].run(snn, x, args.steps, batch_size=100)
                scores = decoded(trace, snn, snn.outputs[0])
                half = {"select": np.arange(len(x)) < len(x) // 2}
                half["report"] = ~half["select"]
                full_spikes = spent(trace.spikes, np.full(len(x), args.steps))
                full = {k: float((scores.predictions[-1][m] == y[m]).mean()) for k, m in half.items()}

                def outcome(rule_exit, parameter):
                    used = spent(trace.spikes, rule_exit.step)
                    found = {"parameter": parameter, "select_full": full["select"]}
                    for k, m in half.items():
                        found[k] = (1 - used[m].sum() / full_spikes[m].sum(),
                                    float((rule_exit.decision[m] == y[m]).mean()), float(rule_exit.step[m].mean()))
                    return found
                stable = [outcome(stable_exit(scores.evidence, start, th, scores.predictions), th) for th in THETAS]
                margin = [outcome(margin_exit(scores.rates, m, start, scores.predictions), m) for m in MARGINS]
                for rule, found in (("theta", stable), ("M", margin)):
                    rows.append([net, f"{half['select'].sum()}/{half['report'].sum()}", label,
                                 "stable" if rule == "theta" else "margin", f"{100 * full['report']:.2f}",
                                 f"{full_spikes[half['report']].mean():,.0f}", *cell(chosen(found, 0.0), rule),
                                 *cell(chosen(found, 0.01), rule)])
                    print(" ".join(map(str, rows[-1])), file=sys.stderr)
    print(f"early exit against all {args.steps} steps: the parameter with the largest spike saving at no accuracy loss "
          "and at 1 pt loss on one half of the test images (select), reported on the other (report)")
    print(table(["network", "images select/report", "coding", "rule", f"acc @{args.steps} %", "spikes/sample", "no loss: param", "acc %",
                 "mean steps", "saved", "1 pt: param", "acc %", "mean steps", "saved"], rows, align="llll" + "r" * 10))


if __name__ == "__main__":
    main()
