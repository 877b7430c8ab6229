"""Energy to reach the ANN's accuracy less one point, per chip model: bayesian-fusion §4.3's figure in form.

The paper's model is 26 pJ per synaptic event (TrueNorth, Merolla 2014), nothing else; it reports the
energy a converted ResNet-18 needs to reach ANN - 1 pt. Here, for each network, the float SNN
(``reference``) is costed with that model and every chip target with its own hardware model (events,
neuron updates and static power, ``neurocc/energy.py``), all measured by simulating labelled test images
(``neurocc.estimate``), beside the ANN's MACs x 4.6 pJ (bntt Table 2).

    python benchmarks/energy.py [--steps 256] [--samples 200] [--shared ../shared/data] [--only NAME ...]

Reads ResNet-20 and the CIFAR-10 JPEG test set from ../shared/data when they are there; trains the digits
CNN here.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from estimate import networks  # noqa: E402

from neurocc.backends import BACKENDS, TARGETS  # noqa: E402
from neurocc.energy import ann_energy  # noqa: E402
from neurocc.errors import NeuroccError  # noqa: E402
from neurocc.estimate import estimate_target  # noqa: E402
from neurocc.frontend.onnx import load_onnx  # noqa: E402
from neurocc.hwmodels import load_hwmodel  # noqa: E402
from neurocc.options import CompileOptions  # noqa: E402
from neurocc.pipeline import CompileContext, compile_graph  # noqa: E402
from neurocc.report import table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--only", nargs="+", help="these networks only (e.g. ResNet-20)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    truenorth = load_hwmodel("truenorth")
    paper = dataclasses.replace(          # 26 pJ per synaptic event and nothing else, as bayesian-fusion §4.3
        truenorth, energy=dataclasses.replace(truenorth.energy, neuron_update_pj=0.0, static_mw_per_core=0.0),
        sources={**truenorth.sources, "energy.static_mw_per_core": "bayesian-fusion §4.3 counts synaptic events only",
                 "energy.neuron_update_pj": "bayesian-fusion §4.3 counts synaptic events only"})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net, (path, calib, test, test_labels) in networks(args.shared, Path(tmp)).items():
            if args.only and net not in args.only:
                continue
            graph, _ = load_onnx(path)
            x, y = test[:args.samples], test_labels[:args.samples]
            for target in ["reference"] + [n for n, t in TARGETS.items() if t.hwmodel]:
                try:
                    result = compile_graph(graph, CompileContext(CompileOptions(target=target), calib_x=calib))
                except NeuroccError as e:
                    rows.append([net, target, f"not compiled: {str(e)[:50]}", "", "", "", ""])
                    continue
                hw = paper if target == "reference" else load_hwmodel(TARGETS[target].hwmodel)
                est = estimate_target(target, result.snn, result.ann, hw, BACKENDS[TARGETS[target].backend],
                                      calib[:256], args.steps, data=(x, y), batch_size=50)
                d = est.json
                joules, to_goal = d["energy_per_inference_j"], d["energy_to_ann_minus_1pt_j"]
                label = "float SNN, 26 pJ/event" if target == "reference" else target
                rows.append([net, label, f"{100 * d['ann_accuracy']:.1f}", f"{100 * d['accuracy']:.1f}",
                             d["steps_to_ann_minus_1pt"] or f"> {args.steps}",
                             "" if to_goal is None else f"{1e3 * to_goal:.4g}", f"{1e3 * joules:.4g}"])
                print(" ".join(map(str, rows[-1])), file=sys.stderr)
            rows.append([net, "ANN, 4.6 pJ/MAC", "", "", "", "", f"{1e3 * ann_energy(graph)['energy_j']:.4g}"])
    print(table(["network", "model", "ANN %", f"SNN % at T={args.steps}", "steps to ANN-1pt",
                 "mJ to ANN-1pt", f"mJ over T={args.steps}"], rows, align="llrrrrr"))


if __name__ == "__main__":
    main()
