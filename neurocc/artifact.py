"""The compiled bundle: a versioned folder written atomically and verified when read.

    OUT/manifest.json   format name and version, neurocc version, source file and sha256, target,
                        options, passes applied, creation time, the sha256 of every other file, and the
                        sha256 of the manifest itself (``checksum``, over its other keys)
    OUT/ann.json, ann.npz    the ANN-level graph after the ANN passes (the accuracy reference)
    OUT/snn.json, snn.npz    the SNN-level graph the backend runs
    OUT/backend/        whatever the target's backend emits (nothing for ``reference``)

Graphs are JSON plus npz (``allow_pickle=False``); nothing is pickled. Reading checks, in order: the
manifest's keys and checksum, every listed file's sha256, the strict schema of every payload
(``ir.serialize``), the options, and the graphs' invariants (``ir.verify``); any failure is one
``NeuroccError`` naming the file. A folder is replaced by ``compile -o`` only if it is an artifact in this
sense and holds nothing but its listed files.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurocc import __version__
from neurocc.backends import TARGETS
from neurocc.errors import NeuroccError
from neurocc.fileio import atomic_directory
from neurocc.ir import Graph, VerificationError, verify
from neurocc.ir.serialize import from_dict, to_dict
from neurocc.options import CompileOptions

FORMAT = "neurocc-artifact"
FORMAT_VERSION = 8         # 4: options.preprocess.transpose; 5: options.max_pool; 6: options.snn_calibration,
                           # calibration_steps; 7: options.phases, skip_periods, heads, heads_steps, prior_weight,
                           # the WeightedIF neuron and Phase coding; 8: directly trained SNNs (Population gain and
                           # shift, the LIF neuron, meta trained_snn, options.gamma_exit)
MANIFEST = "manifest.json"
_KEYS = {"format": str, "format_version": int, "neurocc_version": str, "created": str, "source": dict,
         "target": str, "options": dict, "passes": list, "files": dict, "checksum": str}
_FORMAT_1_FILES = ("ann.json", "ann.npz", "snn.json", "snn.npz")     # formats 1 and 2 listed no files


@dataclass
class Artifact:
    manifest: dict
    ann: Graph
    snn: Graph

    @property
    def options(self) -> CompileOptions:
        return CompileOptions.from_dict(self.manifest["options"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checksum(manifest: dict) -> str:
    return _sha256(json.dumps({k: v for k, v in manifest.items() if k != "checksum"}, sort_keys=True).encode())


def _write_graph(folder: Path, stem: str, g: Graph) -> None:
    doc, tensors = to_dict(g)
    (folder / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    buf = io.BytesIO()
    np.savez(buf, **tensors)
    (folder / f"{stem}.npz").write_bytes(buf.getvalue())


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def _files(folder: Path) -> dict:
    """Relative path -> sha256 of every file below ``folder`` but the manifest."""
    return {p.relative_to(folder).as_posix(): _sha256(p.read_bytes()) for p in _entries(folder)
            if p.is_file() and p.name != MANIFEST}


def _manifest(path: Path):
    """The parsed manifest of ``path``, or None if there is none that parses as a JSON object."""
    try:
        doc = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def is_artifact(path: Path) -> bool:
    """Whether ``path`` looks like an artifact: a folder with a manifest naming this format."""
    doc = _manifest(Path(path)) if Path(path).is_dir() else None
    return doc is not None and doc.get("format") == FORMAT


def may_replace(path: Path) -> bool:
    """Whether ``compile -o`` may replace ``path``: a neurocc artifact of a known format version whose folder
    holds its own files and nothing else."""
    doc = _manifest(path)
    if doc is None or doc.get("format") != FORMAT or doc.get("format_version") not in range(1, FORMAT_VERSION + 1):
        return False
    listed = set(doc["files"]) if doc["format_version"] >= 3 and isinstance(doc.get("files"), dict) \
        else set(_FORMAT_1_FILES)
    allowed_dirs = {"backend"} | {p.rsplit("/", 1)[0] for p in listed if "/" in p}
    for entry in _entries(path):
        rel = entry.relative_to(path).as_posix()
        if entry.is_symlink():
            return False
        if entry.is_dir() and rel not in allowed_dirs and not any(d.startswith(rel + "/") for d in allowed_dirs):
            return False
        if entry.is_file() and rel not in listed | {MANIFEST}:
            return False
    return True


def write_artifact(out: str | Path, *, source_name: str, source_bytes: bytes, options: CompileOptions,
                   passes: list, ann: Graph, snn: Graph, emit=None) -> Path:
    """Write the bundle to a temporary folder and rename it to ``out``; ``emit(folder)`` adds backend files."""
    with atomic_directory(out, may_replace) as tmp:
        _write_graph(tmp, "ann", ann)
        _write_graph(tmp, "snn", snn)
        backend = tmp / "backend"
        backend.mkdir()
        if emit is not None:
            emit(backend)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "neurocc_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": {"name": source_name, "sha256": _sha256(source_bytes)},
            "target": options.target, "options": options.to_dict(), "passes": list(passes), "files": _files(tmp),
        }
        manifest["checksum"] = _checksum(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return Path(out)


def _check_manifest(path: Path, manifest) -> dict:
    where = f"{path}/{MANIFEST}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NeuroccError(f"{where}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise NeuroccError(f"{path}: artifact format version {manifest.get('format_version')!r} is not supported "
                           f"by neurocc {__version__} (it reads version {FORMAT_VERSION}); recompile the model")
    for key, typ in _KEYS.items():
        if not isinstance(manifest.get(key), typ) or isinstance(manifest.get(key), bool):
            raise NeuroccError(f"{where}: {key!r} is missing or not a {typ.__name__}; the artifact is damaged")
    if not all(isinstance(manifest["source"].get(k), str) for k in ("name", "sha256")):
        raise NeuroccError(f"{where}: 'source' needs a name and a sha256; the artifact is damaged")
    if set(manifest) - set(_KEYS):
        raise NeuroccError(f"{where}: unknown key {sorted(set(manifest) - set(_KEYS))[0]!r}; the artifact is damaged")
    if manifest["checksum"] != _checksum(manifest):
        raise NeuroccError(f"{where}: its checksum does not match its contents; the artifact is damaged")
    if manifest["target"] not in TARGETS:
        raise NeuroccError(f"{where}: target {manifest['target']!r} is not one of neurocc {__version__}'s "
                           f"({', '.join(TARGETS)})")
    return manifest


def _check_files(path: Path, files: dict) -> None:
    for name in ("ann.json", "ann.npz", "snn.json", "snn.npz"):
        if name not in files:
            raise NeuroccError(f"{path}/{MANIFEST}: lists no {name}; the artifact is damaged")
    for name, digest in files.items():
        f = path / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise NeuroccError(f"{path}/{MANIFEST}: lists a file outside the artifact ({name!r})")
        if f.is_symlink() or not f.is_file():
            raise NeuroccError(f"{path}: {name} is missing; the artifact is damaged, recompile the model")
        if _sha256(f.read_bytes()) != digest:
            raise NeuroccError(f"{path}: {name} does not match its sha256 in the manifest; the artifact is damaged, "
                               "recompile the model")


def _read_graph(path: Path, stem: str, level: str) -> Graph:
    try:
        doc = json.loads((path / f"{stem}.json").read_text())
        with np.load(path / f"{stem}.npz", allow_pickle=False) as tensors:
            graph = from_dict(doc, {k: tensors[k] for k in tensors.files})
        if graph.level != level:
            raise ValueError(f"a {graph.level}-level graph where the {level} level belongs")
        verify(graph)
    except (OSError, ValueError, KeyError, TypeError, VerificationError, EOFError) as e:
        raise NeuroccError(f"{path}: {stem}.json/{stem}.npz: {' '.join(str(e).split())}; recompile the model") from None
    return graph


def read_artifact(path: str | Path) -> Artifact:
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise NeuroccError(f"{str(path)!r} is not a neurocc artifact (no {MANIFEST}); create one with neurocc compile")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise NeuroccError(f"{path}/{MANIFEST} is unreadable: {e}") from None
    manifest = _check_manifest(path, manifest)
    _check_files(path, manifest["files"])
    art = Artifact(manifest=manifest, ann=_read_graph(path, "ann", "ann"), snn=_read_graph(path, "snn", "snn"))
    ann, snn = art.ann, art.snn
    if len(snn.inputs) != 1 or ann.inputs != snn.inputs or ann.shape(ann.inputs[0]) != snn.shape(snn.inputs[0]) \
            or len(ann.outputs) != len(snn.outputs) or any(
                math.prod(ann.shape(a)) != math.prod(snn.shape(s)) for a, s in zip(ann.outputs, snn.outputs)):
        raise NeuroccError(f"{path}: ann.json and snn.json do not describe the same network (inputs, outputs); "
                           "the artifact is damaged, recompile the model")
    try:
        art.options
    except (TypeError, ValueError, NeuroccError) as e:
        raise NeuroccError(f"{path}/{MANIFEST}: invalid options ({e}); the artifact is damaged") from None
    return art
