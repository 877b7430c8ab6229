"""Bad input, hostile paths and tampering, through the real command line: exit 2 with one line and no
traceback, nothing lost and nothing half-written."""
from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MNIST8, rand, save
from neurocc.artifact import read_artifact
from neurocc.cli import main
from neurocc.errors import NeuroccError
from neurocc.hwmodels import load_hwmodel, load_hwmodel_file

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip() and "WARNING" not in line]


def assert_refused(code, err, needle=""):
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0] and needle in err[0], err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.random((16, 1, 28, 28), dtype=np.float32), y=np.arange(16) % 10)
    return d


@pytest.fixture(scope="module")
def artifact(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "m.ncc"
    assert main(["compile", str(MNIST8), "--calib", str(data / "calib.npz"), "-o", str(out), "-q"]) == 0
    return out


# --------------------------------------------------------------------------------------- data loss


def test_a_folder_with_a_manifest_is_not_replaced_unless_it_is_an_artifact(tmp_path, capsys):
    """The issue's case: `mkdir p; echo '{}' > p/manifest.json; echo x > p/notes.txt; compile -o p`."""
    p = tmp_path / "p"
    p.mkdir()
    (p / "manifest.json").write_text("{}")
    (p / "notes.txt").write_text("x")
    code, _, err = cli(capsys, "compile", MNIST8, "-o", p)
    assert_refused(code, err, "refusing")
    assert sorted(f.name for f in p.iterdir()) == ["manifest.json", "notes.txt"]
    assert (p / "notes.txt").read_text() == "x" and (p / "manifest.json").read_text() == "{}"


def test_an_artifact_with_a_file_of_the_users_is_not_replaced(artifact, tmp_path, capsys):
    mine = tmp_path / "mine.ncc"
    shutil.copytree(artifact, mine)
    (mine / "backend" / "notes.txt").write_text("precious")
    code, _, err = cli(capsys, "compile", MNIST8, "-o", mine)
    assert_refused(code, err, "refusing")
    assert (mine / "backend" / "notes.txt").read_text() == "precious"
    pure = tmp_path / "pure.ncc"
    shutil.copytree(artifact, pure)
    assert read_artifact(pure).manifest["options"]["normalization"] == "percentile"      # compiled with --calib
    assert cli(capsys, "compile", MNIST8, "-o", pure, "-q")[0] == 0       # an artifact and nothing else: replaced
    assert read_artifact(pure).manifest["options"]["normalization"] == "model"           # by the new one
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]


def test_json_through_a_symlink_writes_the_file_it_names_and_keeps_the_link(artifact, data, tmp_path, capsys):
    real = tmp_path / "results" / "run.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    code, _, err = cli(capsys, "run", artifact, "--data", data / "calib.npz", "--steps", 3, "--json", link, "-q")
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["steps"] == 3


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "dangling_link_folder", "under_a_file", "long_name"])
def test_outputs_that_are_not_regular_files_are_refused_before_any_work(kind, artifact, data, tmp_path, capsys):
    target = tmp_path / "out.json"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target = "/dev/null"
    elif kind == "dangling_link_folder":
        target.symlink_to(tmp_path / "no" / "such" / "file.json")
    elif kind == "under_a_file":
        (tmp_path / "f").write_text("a file")
        target = tmp_path / "f" / "out.json"
    else:
        target = tmp_path / ("x" * 250 + ".json")
    before = sorted(os.listdir(tmp_path))
    for flag in ("--json", "--plot"):
        code, out, err = cli(capsys, "run", artifact, "--data", data / "calib.npz", "--steps", 3, flag, target, "-q")
        assert_refused(code, err, "cannot write")
        assert out == ""                               # refused before the simulation: no table printed
    assert sorted(os.listdir(tmp_path)) == before
    if kind == "fifo":
        assert stat.S_ISFIFO(os.stat(target).st_mode)
    if kind == "device":
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("kind", ["under_a_file", "symlink", "long_name", "file"])
def test_compile_output_paths_are_checked_before_any_work(kind, tmp_path, capsys):
    (tmp_path / "f").write_text("a file")
    out = {"under_a_file": tmp_path / "f" / "o.ncc", "symlink": tmp_path / "link.ncc",
           "long_name": tmp_path / ("y" * 250), "file": tmp_path / "f"}[kind]
    if kind == "symlink":
        out.symlink_to(tmp_path / "elsewhere.ncc")
    code, out_text, err = cli(capsys, "compile", MNIST8, "-o", out)
    assert_refused(code, err)
    assert (tmp_path / "f").read_text() == "a file" and not (tmp_path / "elsewhere.ncc").exists()


@pytest.mark.skipif(ROOT_USER, reason="root may write into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_refused(*cli(capsys, "compile", MNIST8, "-o", ro / "o.ncc")[::2], "not writable")
    finally:
        ro.chmod(0o755)


def test_outputs_follow_the_umask_and_stale_temporaries_are_removed(artifact, data, tmp_path, capsys):
    stale = tmp_path / ".o.ncc.999999999.abc.tmp"                      # left by a process killed with SIGKILL
    stale.mkdir()
    (stale / "snn.json").write_text("half")
    old = os.umask(0o027)
    try:
        assert cli(capsys, "compile", MNIST8, "-o", tmp_path / "o.ncc", "-q")[0] == 0
        assert cli(capsys, "run", tmp_path / "o.ncc", "--data", data / "calib.npz", "--steps", 2, "--json",
                   tmp_path / "r.json", "-q")[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "o.ncc").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o640
    assert not stale.exists() and not [f for f in tmp_path.iterdir() if f.name.startswith(".")]


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6, 1.0])
def test_a_real_sigint_is_one_line_and_leaves_nothing_half_written(delay, data, tmp_path):
    """SIGINT to a real `neurocc -v compile` process, ``delay`` seconds after its first log line (past the
    interpreter's start-up, during the imports and passes): exit 130 (or 0 if it finished first), one line,
    no traceback, and the output either absent or a complete artifact; no temporaries."""
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, "-m", "neurocc", "-v", "compile", str(MNIST8), "--calib",
                             str(data / "calib.npz"), "-o", str(tmp_path / "o.ncc"), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()                     # "neurocc: INFO: canonicalize: ...": main is running
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    err = first + proc.stderr.read()
    proc.wait(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and ": INFO: " not in line and "WARNING" not in line]
    assert "Traceback" not in err and "terminate" not in err, err
    assert proc.returncode in (0, 130) and len(lines) == (proc.returncode == 130), err
    if (tmp_path / "o.ncc").exists():
        read_artifact(tmp_path / "o.ncc")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_interrupt_says_whether_the_output_was_written(data, tmp_path, capsys, monkeypatch):
    import neurocc.artifact as artifact_module
    import neurocc.cli as cli_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(artifact_module, "_write_graph", interrupted)                 # during the write
    code, _, err = cli(capsys, "compile", MNIST8, "-o", tmp_path / "a.ncc")
    assert code == 130 and err == ["neurocc: interrupted; nothing was written"]
    assert not (tmp_path / "a.ncc").exists() and not list(tmp_path.iterdir())
    monkeypatch.undo()
    monkeypatch.setattr(cli_module, "_population_table", interrupted)                 # after it
    code, _, err = cli(capsys, "compile", MNIST8, "-o", tmp_path / "b.ncc")
    assert code == 130 and "after writing" in err[0] and "b.ncc" in err[0]
    read_artifact(tmp_path / "b.ncc")


# ------------------------------------------------------------------------------------------ tampering


def test_flipping_one_byte_of_any_file_of_an_artifact_is_refused_naming_it(artifact, data, tmp_path, capsys):
    files = sorted(p.relative_to(artifact) for p in artifact.rglob("*") if p.is_file())
    assert {"manifest.json", "snn.json", "snn.npz", "ann.json", "ann.npz"} <= {str(f) for f in files}
    for rel in files:
        for position in (0.1, 0.5, 0.9):
            copy = tmp_path / "t.ncc"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(artifact, copy)
            raw = bytearray((copy / rel).read_bytes())
            raw[int(position * (len(raw) - 1))] ^= 0x01
            (copy / rel).write_bytes(bytes(raw))
            with pytest.raises(NeuroccError) as e:
                read_artifact(copy)
            assert rel.name in str(e.value) or "manifest" in str(e.value)
            code, out, err = cli(capsys, "run", copy, "--data", data / "calib.npz", "--steps", 2)
            assert_refused(code, err)
            assert out == ""


@pytest.mark.parametrize("edit", ["empty_manifest", "list_manifest", "missing_key", "truncated_npz", "no_snn"])
def test_damaged_artifacts_are_one_line(edit, artifact, data, tmp_path, capsys):
    copy = tmp_path / "d.ncc"
    shutil.copytree(artifact, copy)
    manifest = copy / "manifest.json"
    if edit == "empty_manifest":
        manifest.write_text("")
    elif edit == "list_manifest":
        manifest.write_text("[]")
    elif edit == "missing_key":
        m = json.loads(manifest.read_text())
        del m["target"]
        manifest.write_text(json.dumps(m))
    elif edit == "truncated_npz":
        (copy / "snn.npz").write_bytes((copy / "snn.npz").read_bytes()[:100])
    else:
        (copy / "snn.json").unlink()
    for command in (["run", copy, "--data", data / "calib.npz", "--steps", 2], ["inspect", copy]):
        assert_refused(*cli(capsys, *command)[::2])


# ---------------------------------------------------------------------------------------------- models


def _model_with(tmp_path, name, **change):
    """A tiny conv -> relu -> gemm model, with one thing changed."""
    w = change.get("w", rand(4, 1, 3, 3))
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=change.get("kernel", [3, 3])),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Reshape", ["f", "s"], ["g"]),
             helper.make_node("Gemm", ["g", "G"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", change.get("dtype", TensorProto.FLOAT),
                                                                         ["N", 1, 6, 6])],
                              [] if change.get("no_outputs") else [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                                 ["N", 3])],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(rand(3, 64), "G"),
                               numpy_helper.from_array(np.array(change.get("reshape", [-1, 64]), np.int64), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", change.get("opset", 13))])
    model.ir_version = 8
    return save(model, tmp_path / f"{name}.onnx")


def _nan_weights():
    w = rand(4, 1, 3, 3)
    w[0, 0, 1, 1] = np.nan
    return w


MODELS = {
    "nan_weight": (dict(w=_nan_weights()), "non-finite"),
    "opset_99": (dict(opset=99), ""),
    "string_input": (dict(dtype=TensorProto.STRING), ""),
    "bool_input": (dict(dtype=TensorProto.BOOL), ""),
    "kernel_0": (dict(kernel=[0, 0]), ""),
    "reshape_two_minus_ones": (dict(reshape=[-1, -1]), ""),
    "no_outputs": (dict(no_outputs=True), ""),
}


@pytest.mark.parametrize("case", sorted(MODELS))
def test_malformed_models_are_one_line_in_compile_and_inspect(case, tmp_path, capsys):
    change, needle = MODELS[case]
    path = _model_with(tmp_path, case, **change)
    assert_refused(*cli(capsys, "compile", path, "-o", tmp_path / "o.ncc")[::2], needle)
    assert_refused(*cli(capsys, "inspect", path)[::2], needle)               # inspect does not call it convertible
    assert not (tmp_path / "o.ncc").exists()


def test_the_tiny_model_itself_compiles(tmp_path, capsys):
    assert cli(capsys, "compile", _model_with(tmp_path, "ok"), "-o", tmp_path / "o.ncc", "-q")[0] == 0


@pytest.mark.parametrize("case", ["outside", "missing", "empty", "symlink"])
def test_bad_external_data_references_are_one_line(case, tmp_path, capsys):
    model = onnx.load(str(MNIST8))
    for i, init in enumerate(model.graph.initializer):        # raw data, which external storage needs
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init), init.name))
    folder = tmp_path / "m"
    folder.mkdir()
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert main(["inspect", str(folder / "m.onnx")]) == 0                   # the external data itself loads
    m = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    changed = 0
    for init in m.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = {"outside": "../../etc/passwd", "missing": "absent.bin", "empty": "empty.bin",
                               "symlink": "link.bin"}[case]
                changed += 1
    assert changed
    (folder / "empty.bin").write_bytes(b"")
    (folder / "link.bin").symlink_to(folder / "weights.bin")
    onnx.save_model(m, str(folder / "m.onnx"))
    assert_refused(*cli(capsys, "compile", folder / "m.onnx", "-o", tmp_path / "o.ncc")[::2])


# ------------------------------------------------------------------------------------------------ data


def _npz_cases(d):
    rng = np.random.default_rng(0)
    np.save(d / "plain.npy", rng.random((4, 1, 28, 28)))
    os.replace(d / "plain.npy", d / "npy_renamed.npz")
    np.savez(d / "scalar_x.npz", x=np.float32(3))
    import zipfile
    with zipfile.ZipFile(d / "not_npy_member.npz", "w") as z:
        z.writestr("x.txt", "hello")
    import io
    buf = io.BytesIO()                                # an .npy header declaring petabytes, with 64 bytes of data
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12, 1, 28, 28)})
    with zipfile.ZipFile(d / "huge_header.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue() + bytes(64))
    np.savez(d / "short_labels.npz", x=rng.random((8, 1, 28, 28), dtype=np.float32), y=np.arange(5))
    np.savez(d / "label_out_of_range.npz", x=rng.random((4, 1, 28, 28), dtype=np.float32), y=np.array([0, 1, 2, 10]))
    np.savez(d / "negative_label.npz", x=rng.random((4, 1, 28, 28), dtype=np.float32), y=np.array([0, -1, 2, 3]))
    (d / "random_bytes.npz").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return ["npy_renamed", "scalar_x", "not_npy_member", "huge_header", "short_labels", "label_out_of_range",
                    "negative_label", "random_bytes", "huge_header"]


def test_bad_data_files_are_one_line(artifact, tmp_path, capsys):
    cases = _npz_cases(tmp_path)
    code, _, err = cli(capsys, "run", artifact, "--data", tmp_path / "huge_header.npz")
    assert_refused(code, err, "declares shape (1000000000000, 1, 28, 28)")
    for case in cases:
        for args in (["run", artifact, "--data", tmp_path / f"{case}.npz", "--steps", 2, "--limit", 3],
                     ["compile", MNIST8, "--calib", tmp_path / f"{case}.npz", "-o", tmp_path / "o.ncc"]):
            code, out, err = cli(capsys, *args)
            assert_refused(code, err, "")
            assert "allow_pickle" not in err[0], err
            assert not (tmp_path / "o.ncc").exists()


# --------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-1"], "--batch-size"),
    (["--calib-samples", "-63"], "--calib-samples"), (["--calib-samples", "-1"], "--calib-samples"),
    (["--seed", str(2 ** 70)], "--seed"), (["--optimize-weights", "nan", "1", "0"], "--optimize-weights"),
    (["--warn-mass-lost", "nan"], "--warn-mass-lost"), (["--percentile", "nan"], "--percentile"),
    (["--input-scale", "inf"], "--input-scale"), (["--std", "0"], "--std"),
])
def test_bad_compile_options_are_one_line(args, needle, data, tmp_path, capsys):
    code, _, err = cli(capsys, "compile", MNIST8, "--calib", data / "calib.npz", *args, "-o", tmp_path / "o.ncc")
    assert_refused(code, err, needle)
    assert not (tmp_path / "o.ncc").exists()


@pytest.mark.parametrize("args, needle", [
    (["--steps", str(2 ** 31)], "GiB"), (["--steps", "100000000"], "GiB"), (["--seed", str(2 ** 70)], "--seed"),
    (["--batch-size", "0"], "--batch-size"), (["--limit", "0"], "--limit"),
])
def test_bad_run_options_are_one_line(args, needle, artifact, data, tmp_path, capsys):
    assert_refused(*cli(capsys, "run", artifact, "--data", data / "calib.npz", *args)[::2], needle)


# -------------------------------------------------------------------------------------------- hwmodels


def test_every_number_of_a_hwmodel_has_a_range():
    import dataclasses

    from neurocc.hwmodels import loader
    numeric = {(table, f.name) for table, cls in loader._TABLES.items() for f in dataclasses.fields(cls)
               if f.type in ("int", "float")}
    assert numeric == set(loader._RANGES)


@pytest.mark.parametrize("old, new, key", [
    ("threshold_bits = { value = 17,", "threshold_bits = { value = 100,", "neuron.threshold_bits"),
    ("magnitude_bits = { value = 8,", "magnitude_bits = { value = 1000,", "weights.magnitude_bits"),
    ("state_bits = { value = 24,", "state_bits = { value = 1e20,", "neuron.state_bits"),
    ("dt_ms = { value = 1.0,", "dt_ms = { value = nan,", "timing.dt_ms"),
    ("dt_ms = { value = 1.0,", "dt_ms = { value = 0.0,", "timing.dt_ms"),
    ("neurons_per_core = { value = 1024,", "neurons_per_core = { value = 0,", "limits.neurons_per_core"),
    ("exponent_min = { value = -8,", "exponent_min = { value = 9,", "exponent_min"),
])
def test_absurd_hwmodel_numbers_are_refused_naming_the_key(old, new, key, tmp_path, capsys):
    text = open(load_hwmodel("loihi").path).read()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(NeuroccError, match=key.replace(".", r"\.")):
        load_hwmodel_file(path)
    assert_refused(*cli(capsys, "compile", MNIST8, "--target", "loihi", "--hwmodel", path,
                        "-o", tmp_path / "o.ncc")[::2], key)


def test_a_full_disk_is_one_line_and_leaves_nothing(data, tmp_path, capsys, monkeypatch):
    """ENOSPC while the artifact's files are written (the disk's fault, not neurocc's): exit 2, nothing left."""
    import errno
    from pathlib import Path as P
    real = P.write_bytes

    def full(self, data_bytes):
        if self.suffix == ".npz":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data_bytes)
    monkeypatch.setattr(P, "write_bytes", full)
    code, _, err = cli(capsys, "compile", MNIST8, "--calib", data / "calib.npz", "-o", tmp_path / "o.ncc")
    assert_refused(code, err, "No space left on device")
    assert not list(tmp_path.iterdir())
