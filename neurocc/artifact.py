"""The compiled bundle: a versioned folder written atomically.

    OUT/manifest.json   format name and version, neurocc version, source file and sha256, target,
                        options, passes applied, creation time, calibration summary
    OUT/ann.json, ann.npz    the ANN-level graph after the ANN passes (the accuracy reference)
    OUT/snn.json, snn.npz    the SNN-level graph the backend runs
    OUT/backend/        whatever the target's backend emits (nothing for ``reference``)

Graphs are JSON plus npz (``allow_pickle=False``); nothing is pickled.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurocc import __version__
from neurocc.backends import TARGETS
from neurocc.errors import NeuroccError
from neurocc.fileio import atomic_directory
from neurocc.ir import Graph
from neurocc.ir.serialize import from_dict, to_dict
from neurocc.options import CompileOptions

FORMAT = "neurocc-artifact"
FORMAT_VERSION = 2


@dataclass
class Artifact:
    manifest: dict
    ann: Graph
    snn: Graph

    @property
    def options(self) -> CompileOptions:
        return CompileOptions.from_dict(self.manifest["options"])


def _write_graph(folder: Path, stem: str, g: Graph) -> None:
    doc, tensors = to_dict(g)
    (folder / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    buf = io.BytesIO()
    np.savez(buf, **tensors)
    (folder / f"{stem}.npz").write_bytes(buf.getvalue())


def _read_graph(folder: Path, stem: str) -> Graph:
    doc = json.loads((folder / f"{stem}.json").read_text())
    with np.load(folder / f"{stem}.npz", allow_pickle=False) as tensors:
        return from_dict(doc, {k: tensors[k] for k in tensors.files})


def is_artifact(path: Path) -> bool:
    return (Path(path) / "manifest.json").is_file()


def write_artifact(out: str | Path, *, source_name: str, source_bytes: bytes, options: CompileOptions,
                   passes: list, ann: Graph, snn: Graph, emit=None) -> Path:
    """Write the bundle to a temporary folder and rename it to ``out``; ``emit(folder)`` adds backend files."""
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "neurocc_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"name": source_name, "sha256": hashlib.sha256(source_bytes).hexdigest()},
        "target": options.target, "options": options.to_dict(), "passes": list(passes),
    }
    with atomic_directory(out, is_artifact) as tmp:
        _write_graph(tmp, "ann", ann)
        _write_graph(tmp, "snn", snn)
        backend = tmp / "backend"
        backend.mkdir()
        if emit is not None:
            emit(backend)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return Path(out)


def read_artifact(path: str | Path) -> Artifact:
    path = Path(path)
    if not is_artifact(path):
        raise NeuroccError(f"{str(path)!r} is not a neurocc artifact (no manifest.json); create one with neurocc compile")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise NeuroccError(f"{path}/manifest.json is unreadable: {e}") from None
    if manifest.get("format") != FORMAT:
        raise NeuroccError(f"{path}: manifest format {manifest.get('format')!r} is not {FORMAT!r}")
    if manifest.get("target") not in TARGETS:
        raise NeuroccError(f"{path}: the artifact's target {manifest.get('target')!r} is not one of neurocc "
                           f"{__version__}'s ({', '.join(TARGETS)})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise NeuroccError(f"{path}: artifact format version {manifest.get('format_version')!r} is not supported "
                           f"by neurocc {__version__} (it reads version {FORMAT_VERSION}); recompile the model")
    try:
        return Artifact(manifest=manifest, ann=_read_graph(path, "ann"), snn=_read_graph(path, "snn"))
    except (OSError, ValueError, KeyError) as e:
        raise NeuroccError(f"{path}: the artifact is damaged ({e}); recompile the model") from None
