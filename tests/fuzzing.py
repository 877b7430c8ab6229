"""Seeded fuzzing of the command line: mutated models, data files, options, hardware models and artifacts.

Each case is built from one integer seed by one of the ``CLASSES`` (so a failure is reproduced by its
class and seed), run in-process through ``neurocc.cli.main``, and judged by ``judge``: the exit code is 0
or 2; on 2, stderr is one line and no traceback; no numpy RuntimeWarning (overflow, invalid value) reaches it; the inputs are unchanged (sha256 before and after); on 2
the output does not exist and no temporary is left beside it; on 0 a compiled artifact reads back.

``tests/test_fuzz.py`` runs a few hundred cases per class in CI; ``benchmarks/fuzz.py`` runs thousands.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import shutil
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).parent
MNIST8 = HERE / "data" / "mnist-8.onnx"


@dataclass
class Case:
    argv: list
    inputs: list = field(default_factory=list)     # files and folders that must not change
    output: Path | None = None                     # what the command writes (must not exist after an error)


@dataclass
class Verdict:
    code: int
    failure: str = ""                              # empty: the case passed


# ------------------------------------------------------------------------------------------ seed inputs


class Seeds:
    """Valid inputs to mutate, made once per folder: models, data files, an artifact, the hardware models."""

    def __init__(self, folder: Path):
        from neurocc.cli import main
        from neurocc.hwmodels import available_hwmodels, load_hwmodel

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        self.tiny = folder / "tiny.onnx"
        onnx.save(tiny_model(), str(self.tiny))
        self.models = [MNIST8, self.tiny]
        np.savez(folder / "mnist_like.npz", x=rng.random((12, 1, 28, 28), dtype=np.float32), y=np.arange(12) % 10)
        np.savez(folder / "tiny.npz", x=rng.random((12, 1, 6, 6), dtype=np.float32), y=np.arange(12) % 3)
        self.data = {MNIST8: folder / "mnist_like.npz", self.tiny: folder / "tiny.npz"}
        self.artifact = folder / "tiny.ncc"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["compile", str(self.tiny), "--calib", str(self.data[self.tiny]), "-o", str(self.artifact),
                         "-q"]) == 0
        self.hwmodels = {name: Path(load_hwmodel(name).path).read_text() for name in available_hwmodels()}


def tiny_model() -> onnx.ModelProto:
    """conv 3x3 (4 channels) -> relu -> flatten -> gemm (3 classes) on 1 x 6 x 6 inputs."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "G"], ["y"], transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B"),
             numpy_helper.from_array(rng.standard_normal((3, 144)).astype(np.float32) * 0.1, "G")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


# ---------------------------------------------------------------------------------------------- mutators


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """1-4 edits: flip a bit, set a byte, delete or insert a run, truncate, or duplicate a run."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            b += bytes([rng.randrange(256)])
        i = rng.randrange(len(b))
        kind = rng.randrange(6)
        if kind == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b[i] = rng.randrange(256)
        elif kind == 2:
            del b[i:i + rng.randint(1, 64)]
        elif kind == 3:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == 4:
            del b[i:]
        else:
            b[i:i] = b[i:i + rng.randint(1, 64)]
    return bytes(b)


_WEIRD_INTS = [0, -1, 1, 2, 3, 7, -7, 100, 2 ** 31 - 1, -(2 ** 31), 2 ** 40, 10 ** 6]
_WEIRD_FLOATS = [0.0, -0.0, 1e-30, -1.0, 1e30, float("nan"), float("inf"), -float("inf"), 0.5]


def _weird_value(rng: random.Random, like):
    if isinstance(like, bool):
        return rng.choice([True, False, 0, 1, "yes", None])
    if isinstance(like, int):
        return rng.choice(_WEIRD_INTS + [like + 1, like - 1, like * 2, -like])
    if isinstance(like, float):
        return rng.choice(_WEIRD_FLOATS + [like * 2, -like, like + 1])
    if isinstance(like, str):
        return rng.choice(["", "x", like.upper(), like + "!", "\u00e9\u00e8", "0"])
    return rng.choice([0, "", None, [], {}])


def mutate_model(rng: random.Random, model: onnx.ModelProto) -> onnx.ModelProto:
    """One structural edit of an ONNX model, kept parseable but not necessarily valid."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    kind = rng.randrange(12)
    if kind == 0 and g.node:                                            # an attribute's value
        node = rng.choice(g.node)
        if node.attribute:
            a = rng.choice(node.attribute)
            if a.type == onnx.AttributeProto.INTS:
                a.ints[:] = [rng.choice(_WEIRD_INTS) for _ in range(rng.randint(0, 5))]
            elif a.type == onnx.AttributeProto.INT:
                a.i = rng.choice(_WEIRD_INTS)
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice(_WEIRD_FLOATS)
            elif a.type == onnx.AttributeProto.STRING:
                a.s = bytes(rng.randrange(256) for _ in range(rng.randint(0, 8)))
    elif kind == 1 and g.input:                                         # an input's dims
        inp = g.input[0]
        for d in inp.type.tensor_type.shape.dim[1:]:
            if rng.random() < 0.5:
                d.dim_value = rng.choice([0, 1, 2, 5, 27, 28, 2 ** 20, 2 ** 31 - 1])
        if rng.random() < 0.3:
            inp.type.tensor_type.shape.dim.add().dim_value = rng.choice([1, 3])
    elif kind == 2 and g.initializer:                                   # an initializer's dims or values
        init = rng.choice(g.initializer)
        try:
            arr = numpy_helper.to_array(init).copy()
        except Exception:                       # an earlier edit already broke it: edit its dims again
            arr = np.zeros(0)
        if rng.random() < 0.5 and arr.size and arr.dtype.kind == "f":
            arr.flat[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38, 0.0])
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
        else:
            init.dims[:] = [rng.choice([0, 1, 2, 3, 5, 16, -1]) for _ in range(rng.randint(0, 4))]
    elif kind == 3 and g.node:                                          # an op type
        rng.choice(g.node).op_type = rng.choice(["Relu", "Conv", "Gemm", "MaxPool", "Add", "Concat", "Softmax",
                                                 "LSTM", "Transpose", "Reshape", "Flatten", "Identity", "Foo"])
    elif kind == 4 and len(g.node) > 1:                                 # drop a node
        del g.node[rng.randrange(len(g.node))]
    elif kind == 5 and g.node:                                          # rewire an input
        node = rng.choice(g.node)
        names = [n for nd in g.node for n in nd.output] + [i.name for i in g.input] + ["", "nowhere"]
        if node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(names)
    elif kind == 6:                                                     # the opset
        m.opset_import[0].version = rng.choice([1, 7, 8, 13, 18, 21, 99, 10 ** 6])
    elif kind == 7 and g.input:                                         # the input's element type
        g.input[0].type.tensor_type.elem_type = rng.choice([TensorProto.STRING, TensorProto.BOOL, TensorProto.INT64,
                                                            TensorProto.DOUBLE, TensorProto.FLOAT16, 0, 99])
    elif kind == 8 and g.output and g.input:                            # the outputs
        if rng.random() < 0.5:
            del g.output[:]
        else:
            g.output[0].name = rng.choice([n for nd in g.node for n in nd.output] + [g.input[0].name, "nowhere"])
    elif kind == 9 and g.initializer:                                   # an initializer's type
        init = rng.choice(g.initializer)
        init.data_type = rng.choice([TensorProto.INT64, TensorProto.DOUBLE, TensorProto.STRING, TensorProto.BOOL, 99])
    elif kind == 10 and g.input:                                        # a node from nowhere
        g.node.insert(rng.randrange(len(g.node) + 1), helper.make_node(
            rng.choice(["Relu", "Add", "Conv", "MaxPool", "Concat"]), [g.input[0].name] * rng.randint(1, 2),
            ["extra"], name="extra"))
    elif g.node:                                                        # an attribute added or removed
        node = rng.choice(g.node)
        if node.attribute and rng.random() < 0.5:
            del node.attribute[rng.randrange(len(node.attribute))]
        else:
            node.attribute.append(helper.make_attribute(rng.choice(["kernel_shape", "strides", "pads", "axis", "group",
                                                                    "auto_pad", "transB", "alpha", "ceil_mode"]),
                                                        rng.choice([[0, 0], [1], 3, -2, 0.5, "SAME_UPPER", "bogus"])))
    return m


# ----------------------------------------------------------------------------------------- case classes


def model_case(rng: random.Random, seeds: Seeds, tmp: Path) -> Case:
    source = rng.choice(seeds.models)
    path = tmp / "m.onnx"
    if rng.random() < 0.4:
        path.write_bytes(mutate_bytes(rng, source.read_bytes()))
    else:
        model = onnx.load(str(source))
        for _ in range(rng.randint(1, 3)):
            model = mutate_model(rng, model)
        path.write_bytes(model.SerializeToString())
    out = tmp / "out.ncc"
    command = rng.choice(["compile", "compile_calib", "inspect"])
    if command == "inspect":
        return Case(["inspect", path], inputs=[path])
    argv = ["compile", path, "-o", out, "-q"]
    if command == "compile_calib":
        argv += ["--calib", seeds.data[source], "--target", rng.choice(["reference", "generic", "loihi", "truenorth"])]
    return Case(argv, inputs=[path, seeds.data[source]], output=out)


def _random_array(rng: random.Random):
    shape = tuple(rng.choice([0, 1, 2, 3, 6, 28]) for _ in range(rng.randint(0, 4)))
    dtype = rng.choice([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64, np.float16])
    arr = np.asarray(np.random.default_rng(rng.randrange(2 ** 32)).random(shape) * 10).astype(dtype)
    if arr.size and arr.dtype.kind == "f" and rng.random() < 0.2:
        arr.flat[0] = rng.choice([np.nan, np.inf])
    return arr


def data_case(rng: random.Random, seeds: Seeds, tmp: Path) -> Case:
    source = rng.choice(seeds.models)
    path = tmp / "d.npz"
    kind = rng.randrange(3)
    if kind == 0:
        path.write_bytes(mutate_bytes(rng, seeds.data[source].read_bytes()))
    elif kind == 1:
        with np.load(seeds.data[source]) as f:
            arrays = {k: f[k] for k in f.files}
        key = rng.choice(["x", "y", "z"])
        arrays[key] = _random_array(rng) if rng.random() < 0.7 else arrays["x"][: rng.randint(0, 12)]
        if rng.random() < 0.2:
            arrays.pop(rng.choice(list(arrays)))
        np.savez(path, **arrays)
    else:
        with zipfile.ZipFile(path, "w") as z:                        # hand-made archives and headers
            header = io.BytesIO()
            shape = tuple(rng.choice([0, 1, 6, 28, 10 ** 6, 10 ** 12]) for _ in range(rng.randint(0, 4)))
            np.lib.format.write_array_header_1_0(header, {"descr": rng.choice(["<f4", "|O", "<i8", "|b1", "<c8"]),
                                                          "fortran_order": rng.random() < 0.2, "shape": shape})
            z.writestr(rng.choice(["x.npy", "x", "y.npy", "x.txt"]), header.getvalue() + bytes(rng.randint(0, 512)))
    if rng.random() < 0.5:
        return Case(["run", seeds.artifact if source == seeds.tiny else _mnist_artifact(seeds), "--data", path,
                     "--steps", "3", "-q"] + (["--limit", str(rng.randint(1, 20))] if rng.random() < 0.5 else []),
                    inputs=[path])
    out = tmp / "out.ncc"
    return Case(["compile", source, "--calib", path, "-o", out, "-q"], inputs=[path], output=out)


def _mnist_artifact(seeds: Seeds) -> Path:
    path = seeds.folder / "mnist8.ncc"
    if not path.exists():
        from neurocc.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["compile", str(MNIST8), "--calib", str(seeds.data[MNIST8]), "-o", str(path), "-q"]) == 0
    return path


_COMPILE_FLAGS = {
    "--target": ["reference", "generic", "loihi", "spinnaker", "truenorth", "nosuch", ""],
    "--calib-samples": ["1", "0", "-1", "-63", "5", "1e3", "x", str(2 ** 63)],
    "--batch-size": ["1", "0", "-1", "3", str(2 ** 63), "nan"],
    "--normalization": ["percentile", "max", "model", "bogus"],
    "--percentile": ["99.9", "0", "100", "101", "-5", "nan", "inf", "50"],
    "--granularity": ["channel", "layer", "pixel"],
    "--reset": ["subtract", "zero", "none"],
    "--v0": ["0", "0.5", "0.99", "1", "-0.1", "nan"],
    "--readout": ["accumulate", "spike", "both"],
    "--coding": ["analog", "poisson", "phase"],
    "--max-pool": ["gate", "average", "max"],
    "--phases": ["1", "4", "8", "0", "-1", "25", "x"],
    "--skip-periods": ["0", "1", "-1", str(2 ** 63)],
    "--heads": ["all", "auto", "none", "nosuch", "all none"],
    "--heads-steps": ["4", "0", "-1"],
    "--prior-weight": ["10", "0", "-1", "nan", "inf"],
    "--seed": ["0", "7", "-1", str(2 ** 32), str(2 ** 70), "x"],
    "--input-scale": ["1", "0.0039", "0", "-1", "nan", "inf", "1e-30"],
    "--mean": ["0", "0.5", "nan", "1 2", "0 0 0"],
    "--std": ["1", "0", "0.5", "-1", "inf", "1 2"],
    "--warn-mass-lost": ["0.01", "-1", "nan", "2", "0"],
    "--optimize": ["0", "2", "-3", "x"],
    "--optimize-steps": ["2", "0", "-1"],
    "--optimize-samples": ["2", "0", "-5"],
    "--optimize-weights": ["1 1 0", "nan 1 0", "-1 0 0", "1 1", "inf 0 0"],
    "--snn-calibration": ["none", "bias", "full"],
    "--calibration-steps": ["2", "0", "-1", "x"],
    "--gamma-exit": ["0.1", "0", "-1", "nan", "x"],
    "--print-ir-after": ["normalize", "nosuchpass", "all"],
}
_RUN_FLAGS = {
    "--steps": ["1", "3", "0", "-1", str(2 ** 31), "100000000", "x"],
    "--batch-size": ["1", "4", "0", "-2", str(2 ** 63)],
    "--limit": ["1", "5", "0", "-1", "100000"],
    "--coding": ["analog", "poisson", "phase"],
    "--phases": ["2", "4", "0", "99"],
    "--skip-periods": ["0", "2", "-1"],
    "--decode": ["argmax", "bayes", "vote"],
    "--prior-weight": ["10", "-1", "nan"],
    "--head": ["nosuch", ""],
    "--early-exit": ["none", "stable", "margin", "soon"],
    "--exit-start": ["1", "0", "3", str(2 ** 40)],
    "--exit-theta": ["0.9", "0", "-1", "inf"],
    "--margin": ["0.1", "0", "-0.5", "nan"],
    "--seed": ["0", "3", "-1", str(2 ** 70)],
    "--backend": ["reference", "nest", ""],
    "--device": ["cpu", "cuda", "tpu"],
    "--report-steps": ["1 2", "0", "-1 5", "999"],
}


_ESTIMATE_FLAGS = {
    "--target": ["all", "loihi", "truenorth", "reference", "nosuch"],
    "--steps": ["1", "5", "0", "-1", str(2 ** 31), str(2 ** 62), "x"],
    "--calib-samples": ["1", "8", "0", "-3"],
    "--limit": ["1", "4", "0", "-1"],
    "--batch-size": ["1", "4", "0", str(2 ** 63)],
    "--input-scale": ["1", "0", "nan", "-1"],
    "--mean": ["0", "nan", "1 2"],
}


def _flags(rng: random.Random, table: dict) -> list:
    argv = []
    for flag in rng.sample(sorted(table), rng.randint(1, 4)):
        value = rng.choice(table[flag])
        argv += [flag] + (value.split() if " " in value else [value])
    return argv


def options_case(rng: random.Random, seeds: Seeds, tmp: Path) -> Case:
    out = tmp / "out.ncc"
    if rng.random() < 0.2:
        argv = ["estimate", rng.choice([seeds.tiny, seeds.artifact]), "-q"] + _flags(rng, _ESTIMATE_FLAGS)
        argv += ["--calib", seeds.data[seeds.tiny]] if rng.random() < 0.7 else []
        argv += ["--data", seeds.data[seeds.tiny], "--steps", "3"] if rng.random() < 0.3 else []
        for flag in ("--json", "--plot"):
            if rng.random() < 0.3:
                argv += [flag, rng.choice([tmp / "e.out", tmp, tmp / "no" / "e.out"])]
        return Case(argv, inputs=[seeds.tiny, seeds.artifact, seeds.data[seeds.tiny]])
    if rng.random() < 0.5:
        argv = ["compile", seeds.tiny, "-o", out, "-q"] + (["--calib", seeds.data[seeds.tiny]] if rng.random() < 0.8
                                                          else []) + _flags(rng, _COMPILE_FLAGS)
        if "--optimize" in argv:                          # keep searches short
            argv += ["--optimize-steps", "2", "--optimize-samples", "4"]
        return Case(argv, inputs=[seeds.tiny, seeds.data[seeds.tiny]], output=out)
    outputs = []
    argv = ["run", seeds.artifact, "--data", seeds.data[seeds.tiny], "--steps", "3", "-q"] + _flags(rng, _RUN_FLAGS)
    for flag in ("--json", "--plot"):
        if rng.random() < 0.3:
            target = rng.choice([tmp / "r.out", tmp, tmp / "no" / "r.out", Path("/dev/null")])
            argv += [flag, target]
            outputs.append(target)
    return Case(argv, inputs=[seeds.artifact, seeds.data[seeds.tiny]])


def hwmodel_case(rng: random.Random, seeds: Seeds, tmp: Path) -> Case:
    name = rng.choice([n for n in seeds.hwmodels if n != "generic"] + ["generic"])
    lines = seeds.hwmodels[name].splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        kind = rng.randrange(5)
        if kind == 0 and "value =" in lines[i]:
            head, rest = lines[i].split("value =", 1)
            value = rest.split(",", 1)
            new = rng.choice(["0", "-1", "1", "2", "100", "1000", "1e20", "nan", "inf", "-inf", "0.0", '"x"', "true",
                              "[1, 2]", "2147483648", "-2147483649", "32", "63", "64", "1.5"])
            lines[i] = head + "value = " + new + ("," + value[1] if len(value) > 1 else "")
        elif kind == 1:
            del lines[i]
        elif kind == 2:
            lines.insert(i, lines[i])
        elif kind == 3:
            lines[i] = mutate_bytes(rng, lines[i].encode()).decode("utf-8", "replace")
        else:
            lines.insert(i, rng.choice(["[extra]", "bogus = { value = 1, source = \"x\" }", "name = 3", "="]))
    path = tmp / "hw.toml"
    path.write_text("\n".join(lines))
    out = tmp / "out.ncc"
    target = {"generic": "generic", "loihi": "loihi", "spinnaker": "spinnaker", "truenorth": "truenorth"}[name]
    return Case(["compile", seeds.tiny, "--calib", seeds.data[seeds.tiny], "--target", target, "--hwmodel", path,
                 "-o", out, "-q"], inputs=[path], output=out)


def artifact_case(rng: random.Random, seeds: Seeds, tmp: Path) -> Case:
    art = tmp / "a.ncc"
    shutil.copytree(seeds.artifact, art)
    files = sorted(p for p in art.rglob("*") if p.is_file())
    kind = rng.randrange(5)
    victim = rng.choice(files)
    if kind == 0:
        victim.write_bytes(mutate_bytes(rng, victim.read_bytes()))
    elif kind == 1:
        victim.unlink()
    elif kind == 2:
        (art / rng.choice(["extra.bin", "backend/x.txt"])).write_bytes(b"x")
    else:                                               # a JSON value changed, the checksums updated to match
        name = rng.choice(["snn.json", "ann.json", "manifest.json"])
        doc = json.loads((art / name).read_text())
        _mutate_json(rng, doc)
        (art / name).write_text(json.dumps(doc))
        if kind == 3:
            reseal(art)
    command = rng.choice([["inspect", art], ["run", art, "--data", seeds.data[seeds.tiny], "--steps", "3", "-q"]])
    return Case(command, inputs=[art])


def _mutate_json(rng: random.Random, doc) -> None:
    """Change one value somewhere inside a JSON document (in place)."""
    node = doc
    for _ in range(rng.randint(1, 8)):
        if isinstance(node, dict) and node:
            key = rng.choice(sorted(node))
            child = node[key]
            if not isinstance(child, (dict, list)) or not child or rng.random() < 0.3:
                if rng.random() < 0.2:
                    del node[key]
                else:
                    node[key] = _weird_value(rng, child)
                return
            node = child
        elif isinstance(node, list) and node:
            i = rng.randrange(len(node))
            if not isinstance(node[i], (dict, list)) or not node[i] or rng.random() < 0.3:
                node[i] = _weird_value(rng, node[i])
                return
            node = node[i]
        else:
            return


def reseal(art: Path) -> None:
    """Update an edited artifact's sha256s and manifest checksum, as a deliberate edit would."""
    manifest = json.loads((art / "manifest.json").read_text())
    if not isinstance(manifest, dict):
        return
    manifest["files"] = {p.relative_to(art).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in sorted(art.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    manifest["checksum"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (art / "manifest.json").write_text(json.dumps(manifest))


CLASSES = {"model": model_case, "data": data_case, "options": options_case, "hwmodel": hwmodel_case,
           "artifact": artifact_case}


# ------------------------------------------------------------------------------------------------ judge


def _digest(path: Path) -> str:
    path = Path(path)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        return hashlib.sha256("".join(f"{p.relative_to(path)}:{_digest(p)}" for p in sorted(path.rglob("*"))
                                      if p.is_file()).encode()).hexdigest()
    return "absent"


def judge(case: Case) -> Verdict:
    """Run one case through ``neurocc.cli.main`` and check the command line's contract (module docstring)."""
    from neurocc.artifact import read_artifact
    from neurocc.cli import main

    before = {str(p): _digest(p) for p in case.inputs}
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)            # numpy's overflow and invalid-value warnings
        try:
            code = main([str(a) for a in case.argv])
        except SystemExit as e:                     # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 2
    lines = [line for line in err.getvalue().splitlines() if line.strip() and ": WARNING: " not in line]
    problems = []
    if code not in (0, 2):
        problems.append(f"exit code {code}")
    if "Traceback" in err.getvalue():
        problems.append("a traceback")
    if code == 2 and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    numeric = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if numeric:
        problems.append(f"a RuntimeWarning would reach the user: {numeric[0]}")
    for p, digest in before.items():
        if _digest(Path(p)) != digest:
            problems.append(f"input {Path(p).name} changed")
    if case.output is not None:
        leftovers = [p.name for p in case.output.parent.iterdir() if p.name.startswith(f".{case.output.name}.")]
        if leftovers:
            problems.append(f"temporaries left: {leftovers}")
        if code != 0 and case.output.exists():
            problems.append("an output was written although the command failed")
        if code == 0 and case.argv[0] == "compile":
            try:
                read_artifact(case.output)
            except Exception as e:                  # the artifact the command just wrote must read back
                problems.append(f"its artifact does not read back: {e}")
    failure = "; ".join(problems)
    if failure:
        failure += f" | stderr: {' / '.join(lines)[:300]}"
    return Verdict(code=code, failure=failure)


def run_case(cls: str, seed: int, seeds: Seeds, tmp: Path) -> Verdict:
    """Build case ``seed`` of class ``cls`` in a fresh folder ``tmp`` and judge it."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    case = CLASSES[cls](random.Random(f"{cls}:{seed}"), seeds, tmp)
    return judge(case)
