"""--optimize: Subplex over rate scales and V0 minimising L_SNN (anytime-perception eq. 11)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neurocc.cli import main
from neurocc.frontend.onnx import load_onnx
from neurocc.ir.executor import run_ann, run_rate
from neurocc.options import CompileOptions
from neurocc.passes.optimize import Objective
from neurocc.pipeline import CompileContext, compile_graph


def _compile(digits_onnx, digits, **kw):
    xtr, ytr, _, _ = digits
    graph, _ = load_onnx(digits_onnx)
    opts = CompileOptions(optimize_steps=8, optimize_samples=64, **kw)
    return graph, compile_graph(graph, CompileContext(opts, calib_x=xtr, calib_y=ytr))


def test_optimize_never_worsens_the_objective_and_keeps_the_ann_function(digits, digits_onnx):
    xtr, ytr, xte, _ = digits
    graph, result = _compile(digits_onnx, digits, optimize=14, granularity="layer", v0=0.0)
    report = result.snn.meta["optimization"]
    assert "optimize" in result.passes
    assert report["objective_after"] <= report["objective_before"]
    assert report["evaluations"] <= 14 and [p["phase"] for p in report["phases"]] == ["global", "layer", "channel"]
    # the reported objective is what the returned network measures, evaluated again from scratch
    ann = run_ann(graph, xtr[:64])[graph.outputs[0]].argmax(1).numpy()
    objective = Objective(xtr[:64], ytr[:64], float(np.mean(ann == ytr[:64])), 8, tuple(report["weights"]),
                          finish=lambda g: g)
    assert objective.loss(objective.terms(result.snn)) == pytest.approx(report["objective_after"], abs=1e-12)
    # rescaling never changes what the network computes, and meta["lambdas"] still says what a spike stands for
    out = graph.outputs[0]
    assert (run_rate(result.snn, xte)[out] - run_ann(graph, xte)[out]).abs().max() <= 1e-4
    snn = result.snn
    rates = run_rate(snn, xte, keep=lambda n: True)
    acts = run_ann(result.ann, xte, keep=lambda n: True)
    for name in snn.nodes():
        node = snn.payload(name)
        if getattr(node, "readout", None) == "spike":
            lam = np.asarray(snn.meta["lambdas"][name]).reshape((-1,) + (1,) * (len(node.shape) - 1))
            assert np.abs(rates[name].numpy() * lam - acts[node.source_node].numpy()).max() <= 1e-4
            assert node.scale == pytest.approx(lam.max())


def test_optimize_judges_integer_targets_after_quantisation(digits, digits_onnx):
    """On SpiNNaker (reset to zero, a refractory step) the objective the search reports is the one the
    quantised network measures, not the float one: before the search from the normalised start, after it
    from the returned integer network (already quantised: simulated as it is)."""
    from neurocc.hwmodels import load_hwmodel
    from neurocc.passes.quantize import quantize
    xtr, ytr, _, _ = digits
    graph, result = _compile(digits_onnx, digits, optimize=5, target="spinnaker")
    assert result.passes[-2:] == ["optimize", "quantize"]
    assert result.snn.meta["mode"] == "integer"
    report = result.snn.meta["optimization"]
    start = compile_graph(graph, CompileContext(CompileOptions(), calib_x=xtr, calib_y=ytr)).snn   # normalised
    ctx = CompileContext(CompileOptions(target="spinnaker"), hwmodel=load_hwmodel("spinnaker"))
    ann = run_ann(graph, xtr[:64])[graph.outputs[0]].argmax(1).numpy()

    def objective(finish):
        return Objective(xtr[:64], ytr[:64], float(np.mean(ann == ytr[:64])), 8, tuple(report["weights"]), finish)
    integer, floating = objective(lambda g: quantize(g, ctx)), objective(lambda g: g)
    assert integer.loss(integer.terms(start)) == pytest.approx(report["objective_before"], abs=1e-12)
    assert floating.loss(floating.terms(start)) != pytest.approx(report["objective_before"], abs=1e-3)
    assert floating.loss(floating.terms(result.snn)) == pytest.approx(report["objective_after"], abs=1e-12)
    assert report["objective_after"] <= report["objective_before"]


def test_cli_optimize_reports_before_and_after(digits, digits_onnx, tmp_path, capsys):
    xtr, ytr, _, _ = digits
    np.savez(tmp_path / "calib.npz", x=xtr, y=ytr)
    out = tmp_path / "o.ncc"
    code = main(["compile", str(digits_onnx), "--calib", str(tmp_path / "calib.npz"), "--optimize", "6",
                 "--optimize-steps", "8", "--optimize-samples", "32", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "optimize: L_SNN" in text and "phase" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["optimize"] == 6
    assert main(["inspect", str(out)]) == 0 and "optimize: L_SNN" in capsys.readouterr().out
    code = main(["compile", str(digits_onnx), "--calib", str(tmp_path / "calib.npz"), "--optimize", "-3",
                 "-o", str(tmp_path / "bad.ncc")])
    assert code == 2 and not (tmp_path / "bad.ncc").exists()
    assert "--optimize" in capsys.readouterr().err
