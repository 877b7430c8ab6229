"""The command line end to end on the external mnist-8 model, and every bad-input path:
exit code 2, one readable line, no traceback, nothing written."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

from conftest import MNIST8, make_model, rand, save
from neurocc.artifact import FORMAT_VERSION
from neurocc.cli import main


@pytest.fixture(scope="module")
def mnist_like(digits, tmp_path_factory):
    """scikit-learn digits enlarged to MNIST's 28 x 28 (white on black, [0, 255]) as .npz files."""
    xtr, ytr, xte, yte = digits
    def enlarge(x):
        big = np.kron(x[:, 0], np.ones((3, 3), np.float32))          # 24 x 24
        return np.round(np.pad(big, ((0, 0), (2, 2), (2, 2))) * 255).astype(np.uint8)
    d = tmp_path_factory.mktemp("data")
    np.savez(d / "train.npz", x=enlarge(xtr[:200]), y=ytr[:200])
    np.savez(d / "test.npz", x=enlarge(xte[:40]), y=yte[:40])
    np.savez(d / "unlabelled.npz", x=enlarge(xte[:10]))
    np.savez(d / "wrong_shape.npz", x=np.zeros((5, 3, 9, 9), np.float32))
    return d


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def artifact(mnist_like, tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "mnist8.ncc"
    assert main(["compile", str(MNIST8), "--calib", str(mnist_like / "train.npz"), "--input-scale",
                 str(1 / 255), "-o", str(out), "-q"]) == 0
    return out


def test_help_shows_an_example():
    for cmd in ("compile", "run", "inspect"):
        res = subprocess.run([sys.executable, "-m", "neurocc", cmd, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "example:" in res.stdout


def test_compile_writes_a_versioned_artifact(artifact):
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["target"] == "reference"
    assert manifest["passes"] == ["canonicalize", "fold_batchnorm", "calibrate", "lower_to_snn", "normalize"]
    import hashlib
    assert manifest["source"]["sha256"] == hashlib.sha256(MNIST8.read_bytes()).hexdigest()
    assert manifest["options"]["preprocess"]["input_scale"] == pytest.approx(1 / 255)
    for f in ("ann.json", "ann.npz", "snn.json", "snn.npz"):
        assert (artifact / f).is_file()
    with np.load(artifact / "snn.npz", allow_pickle=False) as z:
        assert len(z.files) > 0


def test_run_reports_table_json_and_plot(artifact, mnist_like, tmp_path, capsys):
    js, png = tmp_path / "run.json", tmp_path / "acc.png"
    code, out, err = cli(capsys, "run", artifact, "--data", mnist_like / "test.npz", "--steps", 30,
                         "--batch-size", 16, "--json", js, "--plot", png)
    assert code == 0, err
    assert "SNN accuracy %" in out and "Pareto latency" in out
    doc = json.loads(js.read_text())
    for key in ("steps", "accuracy", "ann_accuracy", "spikes_per_step", "synaptic_events_per_step",
                "spikes_per_population", "pareto_latency", "pareto_power", "samples"):
        assert key in doc
    assert doc["steps"] == 30 and doc["samples"] == 40 and len(doc["accuracy"]) == 30
    assert len(doc["spikes_per_step"]) == len(doc["synaptic_events_per_step"]) == 30
    assert sum(doc["spikes_per_population"].values()) == pytest.approx(sum(doc["spikes_per_step"]))
    a = np.array(doc["accuracy"])
    assert doc["pareto_latency"] == pytest.approx(np.sum(doc["ann_accuracy"] - a))
    assert doc["pareto_power"] == pytest.approx(np.sum(np.array(doc["synaptic_events_per_step"]) * (doc["ann_accuracy"] - a)))
    nb = doc["neurobench"]                     # measured, under NeuroBench 2.3.0's names
    assert "NeuroBench activation sparsity" in out and nb["definitions"] == "neurobench 2.3.0"
    assert 0 < nb["ActivationSparsity"] < 1 and nb["MembraneUpdates"] > 0 and nb["Footprint"] > 0
    assert nb["SynapticOperations"]["Dense"] >= nb["SynapticOperations"]["Effective_ACs"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_without_labels_reports_agreement(artifact, mnist_like, capsys):
    code, out, _ = cli(capsys, "run", artifact, "--data", mnist_like / "unlabelled.npz", "--steps", 5)
    assert code == 0 and "agreement" in out


def test_inspect_model_and_artifact(artifact, capsys):
    code, out, _ = cli(capsys, "inspect", MNIST8)
    assert code == 0 and "convertible" in out and "MaxPool" in out
    code, out, _ = cli(capsys, "inspect", artifact, "--ir")
    assert code == 0 and "lower_to_snn" in out and "Population" in out


def test_print_ir_after_and_recompile_in_place(artifact, mnist_like, capsys):
    code, out, _ = cli(capsys, "compile", MNIST8, "--calib", mnist_like / "train.npz", "-o", artifact,
                       "--print-ir-after", "normalize")
    assert code == 0 and "; IR after normalize" in out and "Population(" in out
    assert (artifact / "manifest.json").is_file()
    assert not [p for p in artifact.parent.iterdir() if p.name.startswith(".")]   # no temporary leftovers


def test_compile_without_calibration_warns_and_uses_weights(tmp_path, capsys):
    code, out, err = cli(capsys, "compile", MNIST8, "-o", tmp_path / "m.ncc")
    assert code == 0 and "model-based" in err
    assert json.loads((tmp_path / "m.ncc" / "manifest.json").read_text())["options"]["normalization"] == "model"


def _lstm(tmp_path):
    return save(make_model([helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="rnn", hidden_size=3)],
                           [("x", [5, 2, 4])], [("y", [5, 1, 2, 3])], [("W", rand(1, 12, 4)), ("R", rand(1, 12, 3))]),
                tmp_path / "lstm.onnx")


def _truncated(tmp_path):
    data = MNIST8.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) * 2 // 3])
    return tmp_path / "cut.onnx"


BAD_COMPILES = {
    "unsupported_op": (lambda t, d: [_lstm(t)], "LSTM"),
    "truncated_file": (lambda t, d: [_truncated(t)], "ONNX"),
    "missing_model": (lambda t, d: [t / "nope.onnx"], "cannot read"),
    "wrong_shaped_calib": (lambda t, d: [MNIST8, "--calib", d / "wrong_shape.npz"], "shape"),
    "missing_calib": (lambda t, d: [MNIST8, "--calib", t / "absent.npz"], "not found"),
    "bad_v0": (lambda t, d: [MNIST8, "--v0", "1.5"], "--v0"),
    "bad_percentile": (lambda t, d: [MNIST8, "--calib", d / "train.npz", "--percentile", "0"], "percentile"),
    "unknown_pass": (lambda t, d: [MNIST8, "--print-ir-after", "nosuchpass"], "unknown pass"),
    "mean_channels": (lambda t, d: [MNIST8, "--calib", d / "train.npz", "--mean", "1", "2"], "--mean"),
}


@pytest.mark.parametrize("case", sorted(BAD_COMPILES))
def test_bad_compile_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, mnist_like, capsys):
    make_args, needle = BAD_COMPILES[case]
    out_dir = tmp_path / "out.ncc"
    code, out, err = cli(capsys, "compile", *make_args(tmp_path, mnist_like), "-o", out_dir)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not out_dir.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_target_is_a_usage_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "neurocc", "compile", str(MNIST8), "--target", "nosuchchip",
                          "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "nosuchchip" in res.stderr
    assert not (tmp_path / "o").exists()


def test_refuses_to_overwrite_a_folder_that_is_not_an_artifact(tmp_path, mnist_like, capsys):
    victim = tmp_path / "mine"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    code, _, err = cli(capsys, "compile", MNIST8, "--calib", mnist_like / "train.npz", "-o", victim)
    assert code == 2 and "refusing" in err
    assert (victim / "keep.txt").read_text() == "precious" and len(list(victim.iterdir())) == 1


@pytest.mark.parametrize("case", ["wrong_shape", "missing_data", "zero_steps", "unknown_version", "not_artifact",
                                  "plot_folder_missing"])
def test_bad_run_input_exits_2_and_writes_nothing(case, artifact, mnist_like, tmp_path, capsys):
    art, data, extra = artifact, mnist_like / "test.npz", []
    if case == "wrong_shape":
        data = mnist_like / "wrong_shape.npz"
    elif case == "missing_data":
        data = tmp_path / "absent.npz"
    elif case == "zero_steps":
        extra = ["--steps", "0"]
    elif case == "unknown_version":
        import shutil
        art = tmp_path / "future.ncc"
        shutil.copytree(artifact, art)
        m = json.loads((art / "manifest.json").read_text())
        m["format_version"] = 99
        (art / "manifest.json").write_text(json.dumps(m))
    elif case == "not_artifact":
        art = tmp_path
    elif case == "plot_folder_missing":
        extra = ["--plot", str(tmp_path / "no" / "such" / "p.png")]
    js = tmp_path / "r.json"
    code, _, err = cli(capsys, "run", art, "--data", data, "--json", js, "--steps", "3", *extra)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not js.exists()
