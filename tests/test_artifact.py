"""The artifact: graphs survive a round trip exactly; writes are atomic; unknown versions are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MNIST8
from neurocc.artifact import FORMAT_VERSION, read_artifact, write_artifact
from neurocc.errors import NeuroccError
from neurocc.frontend.onnx import load_onnx
from neurocc.ir.executor import run_ann, run_rate
from neurocc.ir.printer import dump
from neurocc.options import CompileOptions
from neurocc.pipeline import CompileContext, compile_graph


@pytest.fixture(scope="module")
def compiled():
    graph, source = load_onnx(MNIST8)
    calib = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    opts = CompileOptions(percentile=99.0, reset="zero")
    return compile_graph(graph, CompileContext(opts, calib_x=calib)), source, opts


def _write(path, compiled):
    result, source, opts = compiled
    return write_artifact(path, source_name="mnist-8.onnx", source_bytes=source, options=opts,
                          passes=result.passes, ann=result.ann, snn=result.snn)


def test_round_trip_is_exact(tmp_path, compiled):
    result = compiled[0]
    art = read_artifact(_write(tmp_path / "a.ncc", compiled))
    assert art.snn == result.snn and art.ann == result.ann          # every payload, array and edge by value
    assert dump(art.snn) == dump(result.snn) and dump(art.ann) == dump(result.ann)
    assert art.options == compiled[2]
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    o = result.snn.outputs[0]
    assert np.array_equal(run_rate(art.snn, x)[o].numpy(), run_rate(result.snn, x)[o].numpy())
    a = result.ann.outputs[0]
    assert np.array_equal(run_ann(art.ann, x)[a].numpy(), run_ann(result.ann, x)[a].numpy())


def test_failed_write_leaves_nothing(tmp_path, compiled):
    result, source, opts = compiled
    def broken_backend(folder):
        raise RuntimeError("backend crashed")
    with pytest.raises(RuntimeError):
        write_artifact(tmp_path / "b.ncc", source_name="m", source_bytes=source, options=opts,
                       passes=result.passes, ann=result.ann, snn=result.snn, emit=broken_backend)
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_version_is_refused(tmp_path, compiled):
    path = _write(tmp_path / "c.ncc", compiled)
    m = json.loads((path / "manifest.json").read_text())
    m["format_version"] = FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(NeuroccError, match=f"format version {FORMAT_VERSION + 1}"):
        read_artifact(path)
