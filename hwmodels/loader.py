"""Load a hardware model TOML into frozen dataclasses; every number carries its source.

A file has ``name``, ``description``, ``semantics`` (a neuron model of ``neurocc.ir.neurons.MODELS``) and the tables ``limits``, ``weights``, ``neuron``,
``timing`` and ``energy``; every entry of a table is ``{ value = ..., source = "..." }``. A missing,
extra or wrongly typed key is a ``HwModelError`` that names it.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from neurocc.errors import NeuroccError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HERE = Path(__file__).parent


class HwModelError(NeuroccError):
    """A hardware model file is malformed or incomplete."""


@dataclass(frozen=True)
class Limits:
    neurons_per_core: int
    fan_in_per_core: int
    fan_out_per_core: int
    cores_per_chip: int
    synapse_memory_bits_per_core: int     # 0: not modelled
    synapse_bits: int                     # bits one synapse takes there


@dataclass(frozen=True)
class WeightFormat:
    magnitude_bits: int          # |w| <= 2**magnitude_bits - 1; the sign is separate
    mixed_sign_drops_lsb: bool
    exponent_min: int
    exponent_max: int
    exponent_scope: str          # projection | population (one shift for all inputs of a population)
    levels_per_channel: int      # 0: free integers; n: each output channel uses n uniform levels k * B_c
    sum_bits: int                # per step, one receptor's summed weights into a neuron fit this many bits (0: any)


@dataclass(frozen=True)
class NeuronFormat:
    state_bits: int
    overflow: str                # wrap | saturate
    threshold_bits: int
    threshold_shift: int
    bias_mantissa_bits: int
    bias_exponent_bits: int
    input_shift: int
    reset: str                   # zero | subtract
    spike_compare: str           # > | >=
    refractory_steps: int
    leak_shift: int              # SpiNNaker closed form: exp_TC = 1 - 2^-leak_shift (0: no leak)


@dataclass(frozen=True)
class Timing:
    dt_ms: float
    projection_delay_steps: int


@dataclass(frozen=True)
class Energy:
    synaptic_event_pj: float
    neuron_update_pj: float
    static_mw_per_core: float


@dataclass(frozen=True)
class HwModel:
    name: str
    description: str
    semantics: str
    limits: Limits
    weights: WeightFormat
    neuron: NeuronFormat
    timing: Timing
    energy: Energy
    sources: dict                # "table.key" -> source text
    path: str

    def source(self, key: str) -> str:
        return self.sources[key]


_TABLES = {"limits": Limits, "weights": WeightFormat, "neuron": NeuronFormat, "timing": Timing, "energy": Energy}
# The range of every number (inclusive): what the formats can mean and neurocc's int64 arithmetic can hold.
_RANGES = {
    ("limits", "neurons_per_core"): (1, 2 ** 30), ("limits", "fan_in_per_core"): (1, 2 ** 40),
    ("limits", "fan_out_per_core"): (1, 2 ** 40), ("limits", "cores_per_chip"): (1, 2 ** 30),
    ("limits", "synapse_memory_bits_per_core"): (0, 2 ** 40), ("limits", "synapse_bits"): (1, 64),
    ("weights", "magnitude_bits"): (1, 24), ("weights", "exponent_min"): (-32, 32),
    ("weights", "exponent_max"): (-32, 32), ("weights", "levels_per_channel"): (0, 2 ** 10),
    ("weights", "sum_bits"): (0, 48),
    ("neuron", "state_bits"): (2, 48), ("neuron", "threshold_bits"): (2, 32), ("neuron", "threshold_shift"): (0, 16),
    ("neuron", "bias_mantissa_bits"): (2, 32), ("neuron", "bias_exponent_bits"): (0, 5),
    ("neuron", "input_shift"): (0, 16), ("neuron", "refractory_steps"): (0, 2 ** 10), ("neuron", "leak_shift"): (0, 15),
    ("timing", "dt_ms"): (1e-6, 1e6), ("timing", "projection_delay_steps"): (0, 64),
    ("energy", "synaptic_event_pj"): (0.0, 1e9), ("energy", "neuron_update_pj"): (0.0, 1e9),
    ("energy", "static_mw_per_core"): (0.0, 1e9),
}
_CHOICES = {("neuron", "overflow"): ("wrap", "saturate"), ("neuron", "reset"): ("zero", "subtract"),
            ("neuron", "spike_compare"): (">", ">="), ("weights", "exponent_scope"): ("projection", "population")}


def _typed(where: str, value, typ: type):
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, typ)
    if not ok:
        raise HwModelError(f"{where}: expected {typ.__name__}, got {value!r}")
    return value


def _table(path: str, doc: dict, name: str, cls) -> tuple:
    raw = doc.get(name)
    if not isinstance(raw, dict):
        raise HwModelError(f"{path}: missing table [{name}]")
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    extra = set(raw) - set(fields)
    if extra:
        raise HwModelError(f"{path}: unknown key {name}.{sorted(extra)[0]}")
    values, sources = {}, {}
    for key, typ in fields.items():
        where = f"{path}: {name}.{key}"
        entry = raw.get(key)
        if entry is None:
            raise HwModelError(f"{where} is missing")
        if not isinstance(entry, dict) or set(entry) != {"value", "source"}:
            raise HwModelError(f"{where} must be {{ value = ..., source = \"...\" }}")
        if not isinstance(entry["source"], str) or not entry["source"].strip():
            raise HwModelError(f"{where}: source must be a non-empty string")
        value = _typed(where, entry["value"], {"int": int, "float": float, "bool": bool, "str": str}[typ])
        choices = _CHOICES.get((name, key))
        if choices and value not in choices:
            raise HwModelError(f"{where}: {value!r} is not one of {choices}")
        bounds = _RANGES.get((name, key))
        if bounds and not bounds[0] <= value <= bounds[1]:        # NaN fails both comparisons
            raise HwModelError(f"{where}: {value!r} is outside {bounds[0]}..{bounds[1]}")
        values[key] = value
        sources[f"{name}.{key}"] = entry["source"]
    return cls(**values), sources


def load_hwmodel_file(path: str | Path) -> HwModel:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as e:
        raise HwModelError(f"cannot read hardware model {str(path)!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise HwModelError(f"{path}: not valid TOML: {e}") from None
    for key in ("name", "description", "semantics"):
        if not isinstance(doc.get(key), str):
            raise HwModelError(f"{path}: missing string key {key!r}")
    from neurocc.ir.neurons import MODELS         # the neuron models define the semantics there are
    if doc["semantics"] not in MODELS:
        raise HwModelError(f"{path}: semantics {doc['semantics']!r} is not one of {tuple(MODELS)}")
    extra = set(doc) - {"name", "description", "semantics"} - set(_TABLES)
    if extra:
        raise HwModelError(f"{path}: unknown key {sorted(extra)[0]!r}")
    parts, sources = {}, {}
    for name, cls in _TABLES.items():
        parts[name], src = _table(str(path), doc, name, cls)
        sources.update(src)
    if parts["weights"].exponent_min > parts["weights"].exponent_max:
        raise HwModelError(f"{path}: weights.exponent_min {parts['weights'].exponent_min} is above "
                           f"weights.exponent_max {parts['weights'].exponent_max}")
    return HwModel(name=doc["name"], description=doc["description"], semantics=doc["semantics"],
                   sources=sources, path=str(path), **parts)


def available_hwmodels() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def load_hwmodel(name: str) -> HwModel:
    """The shipped model ``name`` (see ``available_hwmodels()``)."""
    path = HERE / f"{name}.toml"
    if not path.is_file():
        raise HwModelError(f"unknown hardware model {name!r}; available: {', '.join(available_hwmodels())}")
    return load_hwmodel_file(path)
