"""place_heads (``--heads``): which intermediate-prediction heads stay, on a digits CNN with two candidate heads and
one output with another class count (bayesian-fusion §3.2, §4.4).

* all / none / names keep the right read-outs, record them in ``meta["heads"]``, and the ANN reference keeps the
  same outputs; the output with 3 classes is never touched.
* Dropping heads leaves what the final output reads unchanged, in float and integer mode.
* A bad name or a class-count mismatch: exit 2, one line listing the candidates, nothing written.
* auto keeps the variant with the least energy to reach ANN - 1 pt, recomputed here from simulating each variant
  (onnxruntime for the ANN, the reference simulator, 26 pJ per synaptic event); without labels it refuses.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurocc.backends import BACKENDS
from neurocc.cli import main
from neurocc.decode import bayes_predictions, predictions
from neurocc.errors import NeuroccError
from neurocc.frontend.onnx import load_onnx
from neurocc.ir.snn import Population
from neurocc.options import CompileOptions
from neurocc.pipeline import CompileContext, compile_graph

from conftest import run_ort

CALIB = 200          # calibration images (and auto's evaluation set)
STEPS = 40


class TwoHeads(nn.Module):
    """conv-ReLU x 2 -> avg-pool -> linear (final); head_a: global average pool of block 1 + linear (shallow, like the
    paper's head (a)); head_b: 4x4 average pool of block 2 + linear; other: a 3-class output, not a head."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)
        self.head_a, self.head_b, self.other = nn.Linear(8, 10), nn.Linear(16 * 2 * 2, 10), nn.Linear(16, 3)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        final = self.fc(torch.flatten(nn.functional.avg_pool2d(b, 2), 1))
        return (final, self.head_a(a.mean((2, 3))), self.head_b(torch.flatten(nn.functional.avg_pool2d(b, 4), 1)),
                self.other(b.mean((2, 3))))


@pytest.fixture(scope="module")
def model(digits, tmp_path_factory):
    """(onnx path, calibration npz with labels, the same without, x_calib, y_calib): trained 8 epochs on every
    output at once (the 3-class output learns the label mod 3)."""
    xtr, ytr, _, _ = digits
    torch.manual_seed(0)
    net = TwoHeads()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64))
    for _ in range(8):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            final, a, b, other = net(x[idx])
            ce = nn.functional.cross_entropy
            (ce(final, y[idx]) + ce(a, y[idx]) + ce(b, y[idx]) + ce(other, y[idx] % 3)).backward()
            opt.step()
    folder = tmp_path_factory.mktemp("heads")
    path = folder / "heads.onnx"
    torch.onnx.export(net.eval(), (x[:1],), str(path), input_names=["x"],
                      output_names=["final", "head_a", "head_b", "other"], dynamic_axes={"x": {0: "N"}}, dynamo=False)
    np.savez(folder / "calib.npz", x=xtr[:CALIB], y=ytr[:CALIB])
    np.savez(folder / "unlabelled.npz", x=xtr[:CALIB])
    return path, folder / "calib.npz", folder / "unlabelled.npz", xtr[:CALIB], ytr[:CALIB].astype(np.int64)


def _compile(model, heads, target="reference", labels=True):
    path, _, _, x, y = model
    opts = CompileOptions(target=target, heads=heads, heads_steps=STEPS)
    return compile_graph(load_onnx(path)[0], CompileContext(opts, calib_x=x, calib_y=y if labels else None))


@pytest.mark.parametrize("heads, kept", [(("all",), ["head_a", "head_b"]), (("none",), []),
                                         (("head_b",), ["head_b"]), (("head_b", "head_a"), ["head_a", "head_b"])])
def test_kept_heads(model, heads, kept):
    result = _compile(model, heads)
    snn = result.snn
    assert snn.meta["heads"] == kept
    assert snn.outputs == ("final", *kept, "other")
    assert result.ann.outputs == snn.outputs                    # the artifact pairs them one to one
    assert "place_heads" in result.passes
    for dropped in {"head_a", "head_b"} - set(kept):
        assert dropped not in snn and dropped not in result.ann
    feeding = {u for u, _, _ in snn.projections()}
    assert all(n in feeding for n in snn.nodes() if isinstance(snn.payload(n), Population)
               and n not in snn.outputs)                       # no population left without a consumer


def test_an_artifact_with_fewer_heads_reads_runs_and_lists_them(model, tmp_path, capsys):
    path, calib, _, _, _ = model
    out = tmp_path / "b.ncc"
    assert main(["compile", str(path), "--calib", str(calib), "--heads", "head_b", "-o", str(out)]) == 0
    assert "heads kept (for Bayesian fusion): head_b" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    assert "heads kept (for Bayesian fusion): head_b" in capsys.readouterr().out
    assert main(["run", str(out), "--data", str(calib), "--steps", "4", "--limit", "16", "-q"]) == 0


def test_the_pass_leaves_its_input_unchanged(model):
    from neurocc.passes.place_heads import place_heads
    result = _compile(model, ("all",))
    before = result.snn.copy()
    _, _, _, x, y = model
    ctx = CompileContext(CompileOptions(heads=("auto",), heads_steps=4), calib_x=x[:16], calib_y=y[:16],
                         ann_graph=result.ann, finish=lambda g: g)
    out = place_heads(result.snn, ctx)
    assert result.snn == before and out is not result.snn


@pytest.mark.parametrize("target", ["reference", "loihi"])
def test_final_output_reads_the_same_without_heads(model, target):
    x = model[3][:48]
    runs = {}
    for heads in (("all",), ("none",)):
        snn = _compile(model, heads, target).snn
        runs[heads] = BACKENDS["reference"].run(snn, x, 24, batch_size=48)
    full, bare = runs[("all",)], runs[("none",)]
    for out in ("final", "other"):
        for a, b in ((full.readouts[out].potential, bare.readouts[out].potential),):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert bare.spikes.keys() <= full.spikes.keys()
    for name, spikes in bare.spikes.items():
        assert np.array_equal(spikes, full.spikes[name])


@pytest.mark.parametrize("heads, why", [("nope", "is not an output of the model"), ("other", "has 3 classes"),
                                        ("final", "is the final output")])
def test_bad_heads_exit_2_one_line_nothing_written(model, tmp_path, capsys, heads, why):
    path, calib, _, _, _ = model
    out = tmp_path / "a.ncc"
    assert main(["compile", str(path), "--calib", str(calib), "--heads", heads, "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert why in err and "candidate heads: head_a, head_b" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_auto_refuses_without_labels(model, tmp_path, capsys):
    with pytest.raises(NeuroccError, match="labelled calibration data"):
        _compile(model, ("auto",), labels=False)
    path, _, unlabelled, _, _ = model
    out = tmp_path / "a.ncc"
    assert main(["compile", str(path), "--calib", str(unlabelled), "--heads", "auto", "-o", str(out), "-q"]) == 2
    assert "labelled calibration data" in capsys.readouterr().err and not out.exists()


def _energy_to_goal(model, head, goal):
    """(steps, joules) to reach ``goal`` for the network compiled with ``head`` alone, decoded by fusion with it
    (none: the final output alone), at 26 pJ per synaptic event; (None, None) if it never does."""
    _, _, _, x, y = model
    snn = _compile(model, (head,) if head else ("none",)).snn
    trace = BACKENDS["reference"].run(snn, x, STEPS, batch_size=64)
    pred = predictions(trace, "final") if head is None else bayes_predictions(
        trace, snn, "final", head, CompileOptions.prior_weight)
    accuracy = (pred == y).mean(axis=1)
    joules = np.cumsum(sum(e.sum(axis=1) for e in trace.events.values()) / len(x)) * 26e-12
    reached = np.flatnonzero(accuracy >= goal)
    return (int(reached[0]) + 1, float(joules[reached[0]])) if reached.size else (None, None)


def test_auto_keeps_the_least_energy(model):
    path, _, _, x, y = model
    result = _compile(model, ("auto",))
    report = result.snn.meta["place_heads"]
    goal = float(np.mean(run_ort(path, x)[0].argmax(1) == y)) - 0.01
    assert report["goal_accuracy"] == pytest.approx(goal)
    measured = {None: _energy_to_goal(model, None, goal), "head_a": _energy_to_goal(model, "head_a", goal),
                "head_b": _energy_to_goal(model, "head_b", goal)}
    assert [r["head"] for r in report["candidates"]] == list(measured)
    for row in report["candidates"]:
        steps, joules = measured[row["head"]]
        assert row["steps_to_goal"] == steps
        assert row["energy_to_goal_j"] == (None if joules is None else pytest.approx(joules, rel=1e-9))
    reaching = {h: j for h, (_, j) in measured.items() if j is not None}
    best = min(reaching, key=lambda h: (reaching[h], h is not None)) if reaching else None
    assert result.snn.meta["heads"] == report["kept"] == ([] if best is None else [best])
    assert result.snn.outputs == ("final", *report["kept"], "other")
    assert any(n.startswith("--heads auto: kept") for n in result.snn.meta["notes"])
