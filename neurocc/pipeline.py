"""The ordered pass lists, in one place, and the pass manager that runs them.

    ANN: canonicalize -> fold_batchnorm [-> average_max_pools] -> calibrate -> lower_to_snn -> SNN: normalize
         [-> phase_coding] [-> place_heads] [-> optimize] [-> calibrate_snn] [-> quantize]
         [-> split_fan_in -> map_cores (truenorth: partial sums for wide neurons, the core mapping and its
              splitter delays)]

``average_max_pools`` runs with ``--max-pool average``; ``phase_coding`` with ``--coding phase``; ``calibrate_snn`` with ``--snn-calibration``, after
``optimize`` (it corrects the rate code optimize chose; optimize judges its candidates without it), and like
``optimize`` it simulates each candidate after the passes that follow (``finish``). The SNN passes of each target are named by its entry
in ``neurocc.backends.TARGETS``: ``reference``
stays in float; the integer targets quantise for their hardware model (hwmodels/). ``optimize`` runs
with ``--optimize``, right after ``normalize``; it judges each candidate after the passes that follow it.
``place_heads`` runs when the model has candidate heads (outputs after the first with its class count) or
``--heads`` is not ``all``, before ``optimize``: it keeps the chosen heads (``auto`` simulates each after the passes
that follow, ``finish``, like ``optimize``); the ANN reference then keeps the outputs the SNN kept.

A directly trained SNN (an ANN-level graph with ``Spike`` layers, meta ``trained_snn``: ``neurocc.train``'s ONNX
form or a NIR graph) keeps its trained neurons: canonicalize -> fold_batchnorm -> lower_to_snn -> the target's
passes after ``normalize`` (``quantize`` refuses what the chip cannot run). The conversion options (calibration,
normalisation, input codings other than analog, heads, optimize, SNN calibration, --reset, --v0) do not apply
and are refused.

Every pass is followed by ``verify``. A pass that fails with a user error (``NeuroccError``) passes it
on; any other failure is reported with the passes that already ran.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from neurocc.backends import TARGETS
from neurocc.backends.truenorth.fan_in import split_fan_in
from neurocc.backends.truenorth.mapping import map_truenorth
from neurocc.errors import NeuroccError
from neurocc.exit import gamma_exit_step
from neurocc.hwmodels import load_hwmodel
from neurocc.ir import Graph, VerificationError, verify
from neurocc.ir.printer import dump
from neurocc.options import CompileOptions
from neurocc.passes import Pass
from neurocc.passes.average_pools import average_max_pools
from neurocc.passes.calibrate import calibrate
from neurocc.passes.calibrate_snn import calibrate_snn
from neurocc.passes.canonicalize import canonicalize
from neurocc.passes.fold_batchnorm import fold_batchnorm
from neurocc.passes.lower import lower_to_snn
from neurocc.passes.normalize import normalize
from neurocc.passes.optimize import optimize
from neurocc.passes.phase_coding import phase_coding
from neurocc.decode import candidate_heads
from neurocc.passes.place_heads import ann_outputs_like, place_heads
from neurocc.passes.quantize import quantize

log = logging.getLogger(__name__)

ANN_PASSES = (
    Pass("canonicalize", canonicalize, "ann", "ann"),
    Pass("fold_batchnorm", fold_batchnorm, "ann", "ann"),
    Pass("calibrate", calibrate, "ann", "ann"),
)
_AVERAGE_POOLS = Pass("average_max_pools", average_max_pools, "ann", "ann")
LOWERING = Pass("lower_to_snn", lower_to_snn, "ann", "snn")
_OPTIMIZE = Pass("optimize", optimize, "snn", "snn")
_CALIBRATE_SNN = Pass("calibrate_snn", calibrate_snn, "snn", "snn")
_PHASE_CODING = Pass("phase_coding", phase_coding, "snn", "snn")
_PLACE_HEADS = Pass("place_heads", place_heads, "snn", "snn")
SNN_PASSES = {p.name: p for p in (
    Pass("normalize", normalize, "snn", "snn"),
    _OPTIMIZE,
    _CALIBRATE_SNN,
    _PHASE_CODING,
    _PLACE_HEADS,
    Pass("quantize", quantize, "snn", "snn"),
    Pass("split_fan_in", split_fan_in, "snn", "snn"),
    Pass("map_cores", map_truenorth, "snn", "snn"),
)}
ALL_PASS_NAMES = tuple(p.name for p in ANN_PASSES) + (_AVERAGE_POOLS.name, LOWERING.name) + tuple(SNN_PASSES)


def target_passes(target: str) -> tuple:
    """The SNN-level passes of ``target`` in order (``TARGETS[target].passes``)."""
    return tuple(SNN_PASSES[name] for name in TARGETS[target].passes)


def _identity(it, **_):
    return it


@dataclass
class CompileContext:
    options: CompileOptions
    calib_x: Optional[np.ndarray] = None
    calib_y: Optional[np.ndarray] = None
    hwmodel: Optional[object] = None        # the target's HwModel (integer targets)
    progress: Callable = _identity          # wraps long iterations (a progress bar in the CLI; desc=, unit=)
    print_ir_after: tuple = ()
    printer: Callable[[str], None] = print
    ann_graph: Optional[Graph] = None       # set by compile_graph: the ANN after the ANN passes
    finish: Optional[Callable[[Graph], Graph]] = None   # set for optimize: the passes after it, quietly


class PassFailure(RuntimeError):
    """A pass crashed or produced a graph that fails verification (a bug in neurocc, not in the input)."""


@dataclass
class CompileResult:
    ann: Graph              # the ANN graph after the ANN passes (the accuracy reference)
    snn: Graph
    passes: list = field(default_factory=list)


def run_passes(graph: Graph, passes, ctx: CompileContext, done: list) -> Graph:
    for p in passes:
        if graph.level != p.level_in:
            raise PassFailure(f"pass {p.name} expects a {p.level_in} graph, got {graph.level}")
        try:
            out = p.run(graph, ctx)
            verify(out)
        except NeuroccError:
            raise
        except VerificationError as e:
            raise PassFailure(f"the graph after pass {p.name} is invalid: {e} (passes run: {done})") from e
        except Exception as e:
            raise PassFailure(f"pass {p.name} failed: {e} (passes run before it: {done})") from e
        if out.level != p.level_out:
            raise PassFailure(f"pass {p.name} returned a {out.level} graph, not {p.level_out} "
                              f"(passes run before it: {done})")
        done.append(p.name)
        log.info("%s: %s", p.name, out.summary())
        if p.name in ctx.print_ir_after or "all" in ctx.print_ir_after:
            ctx.printer(f"; IR after {p.name}\n{dump(out)}")
        graph = out
    return graph


def _refuse_conversion_options(ctx: CompileContext) -> None:
    """The options that only mean something for a converted ANN, set on a directly trained SNN: one line."""
    opts = ctx.options
    default = CompileOptions(target=opts.target)
    set_here = ["--calib"] if ctx.calib_x is not None else []
    set_here += [flag for flag, field in (("--optimize", "optimize"),
                                         ("--snn-calibration", "snn_calibration"), ("--reset", "reset"), ("--v0", "v0"),
                                         ("--readout", "readout"), ("--coding", "coding"), ("--max-pool", "max_pool"),
                                         ("--heads", "heads"))
                if getattr(opts, field) != getattr(default, field)]
    if set_here:
        raise NeuroccError(f"{', '.join(set_here)}: conversion options, which a directly trained SNN does not take "
                           "(its neurons, reset and read-out are as trained; its input is analog)")


def _compile_trained_snn(ann: Graph, ctx: CompileContext, done: list) -> CompileResult:
    _refuse_conversion_options(ctx)
    ann = run_passes(ann, ANN_PASSES[:2], ctx, done)              # canonicalize, fold_batchnorm
    snn = run_passes(ann, (LOWERING,), ctx, done)
    snn = run_passes(snn, target_passes(ctx.options.target)[1:], ctx, done)     # no normalize
    trained = snn.meta["trained_snn"]
    if trained.get("gamma"):
        step = gamma_exit_step(trained["gamma"], ctx.options.gamma_exit, trained["time_steps"])
        trained["early_exit"] = {"threshold": ctx.options.gamma_exit, "step": step}
        log.info("BNTT early exit at step %d of %d (every layer's mean gamma_t < %g after it)", step,
                 trained["time_steps"], ctx.options.gamma_exit)
    return CompileResult(ann=ann, snn=snn, passes=done)


def compile_graph(ann: Graph, ctx: CompileContext) -> CompileResult:
    """Run the target's pipeline on an imported ANN graph."""
    verify(ann)
    hwmodel = TARGETS[ctx.options.target].hwmodel
    if hwmodel is not None and ctx.hwmodel is None:
        ctx.hwmodel = load_hwmodel(hwmodel)
    done: list = []
    if "trained_snn" in ann.meta:
        return _compile_trained_snn(ann, ctx, done)
    ann_passes = ANN_PASSES
    if ctx.options.max_pool == "average":       # before calibration: the lambda are the new network's
        ann_passes = ANN_PASSES[:2] + (_AVERAGE_POOLS,) + ANN_PASSES[2:]
    ann = run_passes(ann, ann_passes, ctx, done)
    snn = run_passes(ann, (LOWERING,), ctx, done)
    passes = target_passes(ctx.options.target)
    normalize_pass, rest = passes[:1], passes[1:]
    quiet = dataclasses.replace(ctx, calib_x=None, calib_y=None, progress=_identity, print_ir_after=())
    finish = dataclasses.replace(ctx, ann_graph=ann, finish=lambda g: run_passes(g, rest, quiet, []))
    snn = run_passes(snn, normalize_pass, ctx, done)
    if ctx.options.coding == "phase":
        snn = run_passes(snn, (_PHASE_CODING,), ctx, done)
    if candidate_heads(snn) or ctx.options.heads != ("all",):
        snn = run_passes(snn, (_PLACE_HEADS,), finish, done)
    if ctx.options.optimize:
        snn = run_passes(snn, (_OPTIMIZE,), finish, done)
    if ctx.options.snn_calibration != "none":
        snn = run_passes(snn, (_CALIBRATE_SNN,), finish, done)
    snn = run_passes(snn, rest, ctx, done)
    ann = ann_outputs_like(ann, snn)
    verify(ann)
    return CompileResult(ann=ann, snn=snn, passes=done)
