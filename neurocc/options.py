"""``CompileOptions``: the one typed bag of options every pass reads."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Optional

import numpy as np

from neurocc.backends import TARGETS
from neurocc.errors import NeuroccError
from neurocc.hwmodels import load_hwmodel
from neurocc.ir.coding import CODINGS, MAX_PHASES

NORMALIZATIONS = ("percentile", "max", "model")
GRANULARITIES = ("channel", "layer")


@dataclass(frozen=True)
class Preprocess:
    """Applied to raw data before it reaches the model input: x' = (x * input_scale - mean) / std.

    ``mean`` and ``std`` are per channel (axis 1 of the network input) or a single value.
    ``transpose``: the permutation (batch axis first) the model applies to its input (a TensorFlow-origin
    model's NHWC -> NCHW ``Transpose``, folded by the frontend); data in the model's declared layout is
    transposed by it first, data already in the network's layout is taken as it is.
    """
    input_scale: float = 1.0
    mean: tuple = ()
    std: tuple = ()
    transpose: tuple = ()

    def __post_init__(self):
        if not (math.isfinite(self.input_scale) and self.input_scale != 0):
            raise NeuroccError(f"--input-scale must be a finite non-zero number, got {self.input_scale}")
        if not all(math.isfinite(v) for v in self.mean + self.std) or any(v == 0 for v in self.std):
            raise NeuroccError("--mean and --std must be finite numbers, --std non-zero")
        if self.transpose and (sorted(self.transpose) != list(range(len(self.transpose))) or self.transpose[0] != 0):
            raise NeuroccError(f"pre-processing transpose {list(self.transpose)} is not a permutation that keeps "
                               "the batch axis first")

    def declared_shape(self, shape: tuple) -> tuple:
        """The model's declared input shape (batch excluded) for the network input ``shape``."""
        declared = [0] * len(self.transpose)
        for i, axis in enumerate(self.transpose):
            declared[axis] = ((None,) + tuple(shape))[i]
        return tuple(declared[1:])

    def apply(self, x):
        x = np.asarray(x, dtype=np.float32) * np.float32(self.input_scale)
        if x.ndim >= 2 and (self.mean or self.std):
            shape = (1, -1) + (1,) * (x.ndim - 2)
            mean = np.asarray(self.mean or (0.0,), dtype=np.float32)
            std = np.asarray(self.std or (1.0,), dtype=np.float32)
            for name, v in (("--mean", mean), ("--std", std)):
                if v.size not in (1, x.shape[1]):
                    raise NeuroccError(f"{name} has {v.size} values but the data has {x.shape[1]} channels")
            x = (x - mean.reshape(shape)) / std.reshape(shape)
        return x


SNN_CALIBRATIONS = ("none", "bias", "weights")
HEAD_CHOICES = ("all", "auto", "none")     # --heads keywords; anything else names heads


@dataclass(frozen=True)
class CompileOptions:
    target: str = "reference"
    normalization: str = "percentile"   # percentile | max | model (no calibration data)
    percentile: float = 99.9
    granularity: str = "channel"        # channel | layer: one lambda per channel or per population
    reset: Optional[str] = None         # subtract | zero; None: the target's (subtract in float mode)
    v0: float = 0.5                     # initial membrane potential, fraction of the threshold
    readout: str = "accumulate"         # accumulate (membrane potential) | spike (spike count)
    coding: str = "analog"              # input coding compiled into the network (ir.coding); run may override
    coding_seed: int = 0                # seed of the Poisson coding
    phases: int = 8                     # K of phase coding (weighted-spikes eq. 6)
    skip_periods: int = 0               # phase coding: periods the read-outs ignore their input (weighted-spikes §5.1)
    max_pool: str = "gate"              # gate (the spiking max, weighted-spikes §4.5) | average (average pooling)
    calib_samples: int = 1000
    optimize: int = 0                   # evaluations of L_SNN for the rate/V0 search (0: no search)
    optimize_steps: int = 64            # steps simulated per evaluation
    optimize_samples: int = 256         # calibration samples simulated per evaluation
    optimize_weights: tuple = ()        # (lambda_e, lambda_l, lambda_p) of eq. 11; () = (1, 1/steps, 0)
    snn_calibration: str = "none"       # none | bias | weights (then bias): layer-wise calibration at calibration_steps
    calibration_steps: int = 32         # the latency T the calibration corrects the rates at
    heads: tuple = ("all",)             # intermediate-prediction heads kept (place_heads): all | auto | none | names
    heads_steps: int = 100              # --heads auto: steps simulated per variant
    prior_weight: float = 10.0          # --heads auto: P of Bayesian fusion (eq. 16), = decode.DEFAULT_PRIOR_WEIGHT
    gamma_exit: float = 0.1             # BNTT early exit: threshold on every layer's mean gamma_t (bntt §3.4)
    batch_size: int = 128
    seed: int = 0                       # calibration subsampling
    preprocess: Preprocess = field(default_factory=Preprocess)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise NeuroccError(f"unknown target {self.target!r}; available: {', '.join(TARGETS)}")
        if self.normalization not in NORMALIZATIONS:
            raise NeuroccError(f"unknown normalisation {self.normalization!r}; use one of {NORMALIZATIONS}")
        if self.granularity not in GRANULARITIES:
            raise NeuroccError(f"unknown granularity {self.granularity!r}; use one of {GRANULARITIES}")
        if not 0 < self.percentile <= 100:          # also refuses NaN
            raise NeuroccError(f"--percentile must be in (0, 100], got {self.percentile}")
        if self.reset not in (None, "subtract", "zero"):
            raise NeuroccError(f"--reset must be subtract or zero, got {self.reset!r}")
        if self.readout not in ("accumulate", "spike"):
            raise NeuroccError(f"--readout must be accumulate or spike, got {self.readout!r}")
        if self.max_pool not in ("gate", "average"):
            raise NeuroccError(f"--max-pool must be gate or average, got {self.max_pool!r}")
        if self.coding not in CODINGS:
            raise NeuroccError(f"--coding must be one of {', '.join(CODINGS)}, got {self.coding!r}")
        if self.optimize < 0 or self.optimize_steps < 1 or self.optimize_samples < 1:
            raise NeuroccError("--optimize, --optimize-steps and --optimize-samples must be positive")
        if self.snn_calibration not in SNN_CALIBRATIONS:
            raise NeuroccError(f"--snn-calibration must be one of {', '.join(SNN_CALIBRATIONS)}, got {self.snn_calibration!r}")
        if self.calibration_steps < 1:
            raise NeuroccError(f"--calibration-steps must be at least 1, got {self.calibration_steps}")
        if self.optimize_weights and (len(self.optimize_weights) != 3
                                      or not all(0 <= w < math.inf for w in self.optimize_weights)):
            raise NeuroccError("--optimize-weights takes three finite non-negative numbers: lambda_e lambda_l lambda_p")
        for name, value in (("--batch-size", self.batch_size), ("--calib-samples", self.calib_samples)):
            if value < 1:
                raise NeuroccError(f"{name} must be at least 1, got {value}")
        _check_phase_coding(self)
        _check_heads(self)
        if not 0 <= self.coding_seed < 2 ** 32:
            raise NeuroccError(f"--seed must be in 0..2^32-1, got {self.coding_seed}")
        if not self.gamma_exit >= 0:
            raise NeuroccError(f"--gamma-exit must be a threshold >= 0, got {self.gamma_exit}")
        if not 0.0 <= self.v0 < 1.0:
            raise NeuroccError(f"--v0 must be in [0, 1), got {self.v0}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CompileOptions":
        """The options an artifact stored (``to_dict``): every field present, nothing else."""
        d = dict(d)
        _exact_keys(d, cls, "options")
        pre = d.pop("preprocess")
        _exact_keys(pre, Preprocess, "options.preprocess")
        pre = Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()})
        d["optimize_weights"] = tuple(d["optimize_weights"])
        d["heads"] = tuple(d["heads"])
        return cls(preprocess=pre, **d)


def _check_phase_coding(opts: CompileOptions) -> None:
    """--phases and --skip-periods in range; phase coding only where the neurons can express it."""
    if not 1 <= opts.phases <= MAX_PHASES:
        raise NeuroccError(f"--phases must be 1 to {MAX_PHASES}, got {opts.phases}")
    if opts.skip_periods < 0:
        raise NeuroccError(f"--skip-periods must be at least 0, got {opts.skip_periods}")
    if opts.coding != "phase":
        return
    hwmodel = TARGETS[opts.target].hwmodel
    semantics = load_hwmodel(hwmodel).semantics if hwmodel else "nliaf"
    if semantics != "nliaf":
        capable = [t.name for t in TARGETS.values() if t.hwmodel is None or load_hwmodel(t.hwmodel).semantics == "nliaf"]
        raise NeuroccError(f"--coding phase needs neurons that scale their threshold and input by each step's spike "
                           f"weight (weighted-spikes eq. 8-10); {opts.target} neurons ({semantics}) cannot. Targets "
                           f"that can: {', '.join(capable)}")
    if opts.readout == "spike":
        raise NeuroccError("--coding phase reads out membrane potentials (weighted-spikes eq. 16-17); "
                           "use --readout accumulate")
    if opts.snn_calibration != "none":
        raise NeuroccError("--snn-calibration corrects firing rates, which phase coding does not use; "
                           "use --snn-calibration none with --coding phase")


def _check_heads(opts: CompileOptions) -> None:
    """--heads: names, or one of all, auto, none alone; --heads-steps, --prior-weight in range."""
    if not opts.heads or not all(isinstance(h, str) and h for h in opts.heads):
        raise NeuroccError("--heads takes output names, or one of all, auto, none")
    if len(opts.heads) > 1 and set(opts.heads) & set(HEAD_CHOICES):
        raise NeuroccError(f"--heads {' '.join(opts.heads)}: all, auto and none stand alone, without names")
    if len(set(opts.heads)) != len(opts.heads):
        raise NeuroccError(f"--heads {' '.join(opts.heads)}: a head is named twice")
    if opts.heads_steps < 1:
        raise NeuroccError(f"--heads-steps must be at least 1, got {opts.heads_steps}")
    if not 0 <= opts.prior_weight < math.inf:           # also refuses NaN
        raise NeuroccError(f"--prior-weight must be a finite number >= 0, got {opts.prior_weight}")


def _exact_keys(d, cls, where: str) -> None:
    if not isinstance(d, dict):
        raise NeuroccError(f"{where} must be an object")
    names = {f.name for f in fields(cls)}
    for extra in sorted(set(d) - names):
        raise NeuroccError(f"{where}: unknown option {extra!r}")
    for missing in sorted(names - set(d)):
        raise NeuroccError(f"{where}: option {missing!r} is missing")
