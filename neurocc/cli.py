"""The ``neurocc`` command line: compile | run | estimate | inspect | export.

Exit codes: 0 success, 1 internal error (a bug: please report it; one line, the traceback with -v),
2 bad input or usage (one line).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

from neurocc import __version__
from neurocc.errors import NeuroccError

log = logging.getLogger("neurocc")

COMPILE_EXAMPLE = """example:
  neurocc compile model.onnx --calib train.npz --input-scale 0.00392157 -o model.ncc
  neurocc compile model.onnx --calib train.npz --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225 \\
      --input-scale 0.00392157 -o resnet.ncc
  neurocc compile model.onnx --calib train.npz --target loihi -o model_loihi.ncc   # integer, bit-exact
  neurocc compile bntt.onnx -o bntt.ncc          # a directly trained SNN (neurocc.train's ONNX form)
  neurocc compile model.nir -o model.ncc        # a NIR graph (e.g. snnTorch's export_to_nir), Euler step --nir-dt

Data files are .npz archives with an array x (N x C x H x W, N x H x W or N x H x W x C, or N x F)
and optional integer labels y. Pre-processing (x * input-scale - mean) / std is stored in the
artifact and applied by `neurocc run` too."""

SETUP_EXAMPLE = """example:
  neurocc setup lava                      # Lava in <prefix>/lava, for `neurocc run m.ncc --backend lava`

lava-nc 0.10.0 pins Python < 3.11, numpy < 2 and networkx <= 2.8.7, which neurocc's own environment cannot take,
so it gets a virtual environment of its own (about 20 s and 310 MiB) that the lava backend runs as a subprocess.
With --prefix, set NEUROCC_LAVA_ENV to the same folder when you run."""

RUN_EXAMPLE = """example:
  neurocc run model.ncc --data test.npz --steps 200 --plot acc.png --json run.json
  neurocc run heads.ncc --data test.npz --decode bayes --prior-weight 10 --early-exit stable --json run.json

Prints accuracy over time beside the ANN's, spikes and synaptic events. Without labels (y) in the
data file, 'accuracy' is the agreement with the ANN's predictions."""

EXPORT_EXAMPLE = """example:
  neurocc export model.ncc --format nir -o model.nir     # then: neurocc compile model.nir -o again.ncc

Writes a float artifact's spiking network as a NIR graph (nir.write's HDF5) for forward Euler with dt = 1e-4 s:
IF/LIF neurons, their projections as Conv2d / Affine / Linear / pooling / Scale / Flatten nodes, an accumulating
read-out as an I node. What NIR's IF/LIF cannot say (reset by subtraction, V >= threshold, V(0)) goes into node
metadata that neurocc reads back; tools that ignore it run NIR's hard reset. Integer artifacts, delays, max-pool
gates, per-step schedules and spike-coded inputs are refused. The Input takes the pre-processed sample."""

INSPECT_EXAMPLE = """example:
  neurocc inspect model.onnx       # ops, shapes, whether neurocc can convert it
  neurocc inspect model.ncc        # manifest, populations, projections, calibration"""


ESTIMATE_EXAMPLE = """example:
  neurocc estimate model.onnx --calib train.npz --steps 100                 # every chip, predicted, seconds
  neurocc estimate model.onnx --calib train.npz --data test.npz --plot e.png --json e.json   # measured too
  neurocc estimate model_loihi.ncc --data test.npz                          # an artifact, its own target

Activity is predicted from the ANN's activations on --calib (or --data); with --data the network is also
simulated and the measured events give the energy (the prediction's error is shown)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line and exits with code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _progress(quiet: bool, desc: str):
    from tqdm import tqdm

    def wrap(it, desc=desc, unit="batch"):
        return tqdm(it, desc=desc, unit=unit, disable=True if quiet else None, leave=False, file=sys.stderr)
    return wrap


def _floats(values):
    return tuple(float(v) for v in values) if values else ()


# ----------------------------------------------------------------------------------------- compile
def _load_model(path, nir_dt: Optional[float] = None, nir_steps: Optional[int] = None):
    """The model's ANN graph and bytes: a .nir file through the NIR frontend, anything else as ONNX."""
    if Path(path).suffix.lower() == ".nir":
        from neurocc.frontend.nir import DEFAULT_DT, load_nir
        return load_nir(path, dt=DEFAULT_DT if nir_dt is None else nir_dt, time_steps=nir_steps)
    if nir_dt is not None or nir_steps is not None:
        raise NeuroccError("--nir-dt and --nir-steps apply to NIR models (.nir) only")
    from neurocc.frontend.onnx import load_onnx
    return load_onnx(path)


def cmd_compile(args) -> int:
    from neurocc.artifact import may_replace, write_artifact
    from neurocc.backends import BACKENDS, TARGETS
    from neurocc.data import load_data
    from neurocc.fileio import output_folder
    from neurocc.hwmodels import load_hwmodel, load_hwmodel_file
    from neurocc.options import CompileOptions, Preprocess
    from neurocc.pipeline import ALL_PASS_NAMES, CompileContext, compile_graph

    for name in args.print_ir_after:
        if name not in ALL_PASS_NAMES + ("all",):
            raise NeuroccError(f"--print-ir-after: unknown pass {name!r}; passes: {', '.join(ALL_PASS_NAMES)}, all")
    pre = Preprocess(input_scale=args.input_scale, mean=_floats(args.mean), std=_floats(args.std))
    normalization = args.normalization or ("percentile" if args.calib else "model")
    if normalization != "model" and not args.calib:
        raise NeuroccError(f"--normalization {normalization} needs calibration data: pass --calib DATA.npz")
    opts = CompileOptions(target=args.target, normalization=normalization, percentile=args.percentile,
                          granularity=args.granularity, optimize=args.optimize,
                          optimize_steps=args.optimize_steps, optimize_samples=args.optimize_samples,
                          snn_calibration=args.snn_calibration, calibration_steps=args.calibration_steps,
                          heads=tuple(args.heads), heads_steps=args.heads_steps, prior_weight=args.prior_weight,
                          optimize_weights=tuple(args.optimize_weights or ()), reset=args.reset, v0=args.v0,
                          readout=args.readout, coding=args.coding, coding_seed=args.seed, phases=args.phases,
                          skip_periods=args.skip_periods, max_pool=args.max_pool, gamma_exit=args.gamma_exit,
                          calib_samples=args.calib_samples, batch_size=args.batch_size, preprocess=pre)
    if not 0 <= args.warn_mass_lost <= 1:                # also refuses NaN
        raise NeuroccError(f"--warn-mass-lost must be a fraction in [0, 1], got {args.warn_mass_lost}")
    output_folder(args.output, may_replace)              # before any work: nothing is lost, nothing half-done
    target = TARGETS[opts.target]
    hw = None
    if args.hwmodel:
        if target.hwmodel is None:
            integer = ", ".join(name for name, t in TARGETS.items() if t.hwmodel)
            raise NeuroccError(f"--hwmodel needs an integer target ({integer})")
        hw = load_hwmodel_file(args.hwmodel)
        if hw.semantics != load_hwmodel(target.hwmodel).semantics:
            raise NeuroccError(f"{args.hwmodel}: semantics {hw.semantics!r} do not match target {opts.target!r}")
    t0 = time.perf_counter()
    ann, source = _load_model(args.model, args.nir_dt, args.nir_steps)
    if len(ann.inputs) != 1:
        raise NeuroccError(f"{args.model}: models with {len(ann.inputs)} inputs are not supported (need 1)")
    if ann.inputs[0] in ann.meta.get("input_transpose", {}):       # the model's own input Transpose, folded
        pre = dataclasses.replace(pre, transpose=tuple(ann.meta["input_transpose"][ann.inputs[0]]))
        opts = dataclasses.replace(opts, preprocess=pre)
    calib_x = calib_y = None
    if normalization != "model":
        calib_x, calib_y = load_data(args.calib, ann.shape(ann.inputs[0]), pre, limit=args.calib_samples,
                                     classes=math.prod(ann.shape(ann.outputs[0])))
    ctx = CompileContext(options=opts, calib_x=calib_x, calib_y=calib_y, hwmodel=hw,
                         progress=_progress(args.quiet, "calibrating"), print_ir_after=tuple(args.print_ir_after))
    result = compile_graph(ann, ctx)
    backend = BACKENDS[target.backend]
    out = write_artifact(args.output, source_name=Path(args.model).name, source_bytes=source, options=opts,
                         passes=result.passes, ann=result.ann, snn=result.snn,
                         emit=lambda folder: backend.emit(result.snn, folder))
    elapsed = time.perf_counter() - t0
    lossy = [r for r in result.snn.meta.get("quantization", []) if r["mass_lost"] > args.warn_mass_lost]
    for r in lossy:
        log.warning("%s <- %s loses %.2f %% of its weight mass to clipping and rounding to zero",
                    r["population"], r["source"], 100 * r["mass_lost"])
    if not args.quiet:
        print(_population_table(result.snn, backend.resources(result.snn, ctx.hwmodel, out / "backend")))
        if "quantization" in result.snn.meta:
            print(_quantization_table(result.snn.meta))
        if "core_mapping" in result.snn.meta:
            print(_mapping_table(result.snn.meta["core_mapping"]))
        if "trained_snn" in result.snn.meta:
            print(_trained_summary(result.snn.meta["trained_snn"]))
        if "optimization" in result.snn.meta:
            print(_optimization_summary(result.snn.meta["optimization"]))
        if "heads" in result.snn.meta:
            print(_heads_summary(result.snn.meta))
        for note in result.snn.meta.get("notes", []):
            print(f"note: {note}")
        print(f"compiled {args.model} for target {opts.target} in {elapsed:.2f} s -> {out}")
    return 0


def _mapping_table(mapping: dict) -> str:
    """The TrueNorth core mapping per population: cores, crossbar use, splitters; a population split into partial
    sums is one row with its relays' cores, axons and splitters included."""
    from neurocc.report import table

    if mapping["unmappable"]:
        return "TrueNorth core mapping: does not map:\n" + "\n".join(f"  {why}" for why in mapping["unmappable"])
    partial = mapping.get("partial_sums", {})
    relay_of = {r: name for name, relays in partial.items() for r in relays}
    folded: dict = {}
    for p in mapping["populations"]:
        row = folded.setdefault(relay_of.get(p["name"], p["name"]), dict.fromkeys(
            ("neurons", "cores", "axons", "splitter_neurons", "splitter_cores", "splitter_levels", "axon_slots"), 0))
        if p["name"] not in relay_of:
            row["neurons"] = p["neurons"]
        for key in ("cores", "axons", "splitter_neurons", "splitter_cores"):
            row[key] += p[key]
        row["axon_slots"] += p["axons"] / p["axon_utilisation"] if p["axon_utilisation"] else 0
        row["splitter_levels"] = max(row["splitter_levels"], p["splitter_levels"])
    rows = [[name, f"{r['neurons']:,}", f"{len(partial.get(name, ())) or '-'}", f"{r['cores']:,}", f"{r['axons']:,}",
             f"{100 * r['axons'] / max(r['axon_slots'], 1):.1f}", f"{r['splitter_neurons']:,}",
             f"{r['splitter_cores']:,}", f"{r['splitter_levels']}"]
            for name, r in folded.items()]
    return (f"TrueNorth core mapping: {mapping['cores']:,} cores on {mapping['chips']:,} chip(s), "
            f"{mapping['splitter_neurons']:,} splitter neurons (a tick per level, simulated)"
            + (f", {len(partial)} population(s) split into partial sums (one tick, simulated)" if partial else "")
            + "\n" + table(["population", "neurons", "partial sums", "cores", "axons", "axons %", "splitters",
                            "splitter cores", "levels"], rows, align="lrrrrrrrr"))


def _optimization_summary(report: dict) -> str:
    from neurocc.report import table

    rows = [[p["phase"], p["dimensions"], p["evaluations"], f"{p['objective_before']:.4f}",
             f"{p['objective_after']:.4f}", f"{p['seconds']:.1f}"] for p in report["phases"]]
    before, after = report["terms_before"], report["terms_after"]
    return (f"optimize: L_SNN {report['objective_before']:.4f} -> {report['objective_after']:.4f} in "
            f"{report['evaluations']} evaluations ({report['samples']} calibration samples x {report['steps']} "
            f"steps, weights e/l/p = {'/'.join(f'{w:.4g}' for w in report['weights'])}; accuracy at the last "
            f"step {100 * before['final_accuracy']:.2f} % -> {100 * after['final_accuracy']:.2f} %, "
            f"P_l {before['P_l']:.2f} -> {after['P_l']:.2f})\n"
            + table(["phase", "dims", "evals", "L before", "L after", "s"], rows, align="lrrrrr"))


def _heads_summary(meta: dict) -> str:
    """The kept intermediate-prediction heads and, for ``--heads auto``, what each variant measured."""
    from neurocc.report import table

    line = "heads kept (for Bayesian fusion): " + (", ".join(meta["heads"]) or "none")
    report = meta.get("place_heads")
    if report is None:
        return line

    def uj(j):
        return "-" if j is None else f"{1e6 * j:.4g}"
    rows = [[r["model_output"] or "(no head)", r["steps_to_goal"] or f"> {report['steps']}", uj(r["energy_to_goal_j"]),
             f"{100 * r['final_accuracy']:.2f}", uj(r["energy_j"])] for r in report["candidates"]]
    return (f"{line}\n--heads auto: {report['samples']} calibration images x {report['steps']} steps, Bayesian fusion "
            f"at P = {report['prior_weight']:g}, goal ANN - 1 pt = {100 * report['goal_accuracy']:.2f} %, energy: "
            f"{report['energy_model']}\n"
            + table(["variant", "steps to goal", "µJ to goal", f"accuracy % at {report['steps']}",
                     f"µJ over {report['steps']}"], rows, align="lrrrr"))


def _quantization_table(meta: dict) -> str:
    from neurocc.report import table

    rows = [[r["population"], r["source"], f"{r['threshold']:,.0f}", r["exponent"], f"{r['weights']:,}",
             r["clipped"], r["zeroed"], f"{100 * r['rel_error']:.2f}", f"{100 * r['mass_lost']:.3f}"]
            for r in meta["quantization"]]
    text = f"quantised for {meta['hwmodel']}:\n" + table(
        ["population", "from", "threshold", "exp", "weights", "clipped", "zeroed", "rel. err %", "mass lost %"], rows,
        align="llrrrrrrr")
    check = meta.get("quantized_function")
    if check:
        text += f"\nquantised ANN function on {check['samples']} calibration samples: argmax agrees with float on " \
                f"{100 * check['agreement']:.2f} %"
        if "quantized_accuracy" in check:
            text += f"; accuracy {100 * check['quantized_accuracy']:.2f} % (float {100 * check['float_accuracy']:.2f} %)"
    return text


def _population_table(snn, res) -> str:
    """Populations with their lambda, projections and resources (``Backend.resources``)."""
    from neurocc.report import table

    cores = res.cores is not None
    rows = [[p.name, p.kind, "x".join(map(str, p.shape)), f"{p.neurons:,}", f"{snn.payload(p.name).scale:.4g}",
             snn.nx.in_degree(p.name), f"{p.fan_in:,}", f"{p.synapses_out:,}"] + ([f"{p.cores:,}"] if cores else [])
            for p in res.populations]
    rows.append(["total", "", "", f"{res.neurons:,}", "", "", "", f"{res.synapses:,}"]
                + ([f"{res.cores:,}"] if cores else []))
    text = table(["population", "kind", "shape", "neurons", "lambda (max)", "in-proj", "fan-in", "synapses out"]
                 + (["cores"] if cores else []), rows, align="lllrrrrr" + ("r" if cores else ""))
    if cores:
        text += f"\n{res.cores:,} cores on {res.chips:,} chip(s) (" + ", ".join(
            f"{k} {v:,}" for k, v in res.limits.items()) + ")"
    if cores:
        text += f"\ncounted by: {res.method}"
    for line in res.over_limits:
        text += f"\nover a limit: {line}"
    return text


def _artifact_resources(art, path: Path):
    from neurocc.backends import BACKENDS, TARGETS
    from neurocc.hwmodels import load_hwmodel

    target = TARGETS[art.manifest["target"]]
    hw = load_hwmodel(art.snn.meta["hwmodel"]) if "hwmodel" in art.snn.meta else None
    return BACKENDS[target.backend].resources(art.snn, hw, Path(path) / "backend")


# --------------------------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    import torch

    from neurocc.artifact import read_artifact
    from neurocc.backends import BACKENDS, TARGETS
    from neurocc.data import load_data
    from neurocc.decode import ann_predictions
    from neurocc.evaluate import DecodeOptions, summarize
    from neurocc.fileio import atomic_write, output_file
    from neurocc.report import plot_run, report_steps, run_table, table
    from neurocc.workload import metrics as neurobench_metrics

    if args.limit is not None and args.limit < 1:
        raise NeuroccError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise NeuroccError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.steps is not None and args.steps < 1:
        raise NeuroccError(f"--steps must be at least 1, got {args.steps}")
    if not args.max_hours > 0:
        raise NeuroccError(f"--max-hours must be positive, got {args.max_hours}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise NeuroccError("--device cuda was asked for, but torch sees no CUDA device here")
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        raise NeuroccError(f"--seed must be in 0..2^32-1, got {args.seed}")
    for path in (args.plot, args.json):
        if path:
            output_file(path)                            # before the simulation, not after it
    art = read_artifact(args.artifact)
    args.steps = args.steps or default_steps(art.snn)
    opts = art.options
    backend = BACKENDS[args.backend or TARGETS[art.manifest["target"]].backend]
    x, y = load_data(args.data, art.snn.shape(art.snn.inputs[0]), opts.preprocess, limit=args.limit,
                     classes=math.prod(art.snn.shape(art.snn.outputs[0])))
    snn, coding = _run_coding(art.snn, args)
    used_coding = coding or snn.payload(snn.inputs[0]).coding
    _refuse_a_trace_too_large(snn, args.steps, len(x), not used_coding.constant)
    decoding = DecodeOptions(args.decode, args.head, args.prior_weight, args.early_exit, args.exit_start,
                             args.exit_theta, args.margin).resolved(art.snn, args.steps)   # before simulating

    ann_pred = ann_predictions(art.ann, art.snn, x, args.batch_size, args.device)

    _refuse_what_cannot_finish(backend, snn, x, args, coding)
    t0 = time.perf_counter()
    trace = backend.run(snn, x, args.steps, batch_size=args.batch_size, device=args.device, coding=coding,
                        progress=_progress(args.quiet, "simulating"))
    elapsed = time.perf_counter() - t0
    log.info("trace: %.1f MB (%d samples x %d steps)", trace.nbytes() / 2 ** 20, trace.samples, trace.steps)
    summary = summarize(trace, art.snn.outputs, ann_pred, y, graph=snn, options=decoding)
    workload = neurobench_metrics(snn, trace)

    steps = report_steps(args.steps) if not args.report_steps else sorted(
        {s for s in args.report_steps if 1 <= s <= args.steps} | {args.steps})
    print(run_table(summary, steps, "ANN" if "trained_snn" not in art.snn.meta else "trained SNN"))
    ref = "accuracy" if y is not None else "agreement with its own predictions (no labels in the data)"
    print(table(["metric", "value"], [
        ["samples", summary.samples],
        [_reference_name(art.snn) + (" accuracy %" if y is not None else " agreement %"),
         f"{100 * summary.ann_accuracy:.2f}"],
        *_bntt_exit_rows(art.snn),
        [f"SNN at step {args.steps} %", f"{100 * summary.accuracy[-1]:.2f}"],
        ["best SNN % (step)", f"{100 * summary.accuracy.max():.2f} ({int(summary.accuracy.argmax()) + 1})"],
        ["spikes/sample", f"{summary.spikes_per_step.sum():,.0f}"],
        ["synaptic events/sample", f"{summary.events_per_step.sum():,.0f}"],
        ["Pareto latency (eq. 4)", f"{summary.pareto_latency:.3f}"],
        ["Pareto power (eq. 5)", f"{summary.pareto_power:.4g}"],
        *_anytime_rows(summary),
        *_neurobench_rows(workload),
        ["input coding", used_coding.name],
        ["simulation", f"{elapsed:.2f} s, {summary.samples * args.steps / elapsed:,.0f} sample-steps/s "
                       f"({backend.name}, {args.device})"],
    ]))
    if y is None:
        print(f"note: ANN {ref}")
    if args.json:
        doc = summary.to_json() | {"artifact": str(args.artifact), "data": str(args.data), "backend": backend.name,
                                   "coding": used_coding.name, "neurobench": workload,
                                   "device": args.device, "simulation_seconds": elapsed}
        atomic_write(args.json, json.dumps(doc, indent=1))
    if args.plot:
        atomic_write(args.plot, plot_run(summary, Path(args.artifact).name))
    return 0


def _trained_summary(trained: dict) -> str:
    """One line on a directly trained SNN: its method, trained steps and BNTT early exit."""
    text = f"a directly trained SNN ({trained['method']}), trained for {trained['time_steps']} steps"
    if trained.get("gamma"):
        text += f"; {len(trained['gamma'])} BNTT layer(s)"
    if "early_exit" in trained:
        text += f"; BNTT early exit at step {trained['early_exit']['step']} (gamma < {trained['early_exit']['threshold']:g})"
    return text


def _reference_name(snn) -> str:
    """What a run is compared with: the ANN, or a directly trained SNN run as trained (``ir.executor``)."""
    trained = snn.meta.get("trained_snn")
    return "ANN" if trained is None else f"trained SNN at its T = {trained['time_steps']}"


def _bntt_exit_rows(snn) -> list:
    """The BNTT early exit's step against the trained steps (a row of the run table), if the network has one."""
    trained = snn.meta.get("trained_snn", {})
    if "early_exit" not in trained:
        return []
    step, total = trained["early_exit"]["step"], trained["time_steps"]
    return [["BNTT early exit (bntt 3.4)", f"step {step} of {total} (mean gamma_t < {trained['early_exit']['threshold']:g} "
                                           f"in every layer after it)"]]


def default_steps(snn) -> int:
    """The steps a run simulates unless told: a directly trained SNN's BNTT early-exit step (bntt 3.4), else its
    trained steps; 100 for a converted network."""
    trained = snn.meta.get("trained_snn")
    if trained is None:
        return 100
    return trained.get("early_exit", {}).get("step", trained["time_steps"])


def _anytime_rows(s) -> list:
    """The decode, each head (alone and fused) and the early exit as rows of the run table."""
    rows = [["decode", "argmax" if s.fusion is None else
             f"bayes: fused with {s.fusion['head']}, P = {s.fusion['prior_weight']:g} (eq. 14)"]]
    for h, found in s.heads.items():
        for label, acc in ((f"head {h}", found["accuracy"]), (f"fused with {h}", found["fused_accuracy"])):
            rows.append([f"{label} % at step {s.steps} / best (step)",
                         f"{100 * acc[-1]:.2f} / {100 * acc.max():.2f} ({int(acc.argmax()) + 1})"])
    e = s.early_exit
    if e is not None:
        def spent(per_sample, per_step):
            whole = per_step.sum()
            return f"{per_sample.mean():,.0f}" + (f" ({100 * per_sample.mean() / whole:.1f} % of all)" if whole else "")
        rows += [[f"early exit ({e.rule}: " + ", ".join(f"{k} {v:g}" for k, v in e.parameters.items()) + ") %",
                  f"{100 * e.correct.mean():.2f}"],
                 ["mean exit step", f"{e.step.mean():.2f} of {s.steps}"],
                 ["spikes/sample to exit", spent(e.spikes, s.spikes_per_step)],
                 ["synaptic events/sample to exit", spent(e.events, s.events_per_step)]]
    return rows


def _neurobench_rows(m: dict) -> list:
    """NeuroBench's metrics as rows of the run table (the workload ones only where they were measured)."""
    rows = [["NeuroBench footprint (bytes)", f"{m['Footprint']:,}"],
            ["NeuroBench connection sparsity", f"{m['ConnectionSparsity']:.4f}"]]
    if m["SynapticOperations"] is not None:
        ops = m["SynapticOperations"]
        rows += [["NeuroBench activation sparsity", f"{m['ActivationSparsity']:.4f}"],
                 ["NeuroBench effective ACs / MACs / dense", f"{ops['Effective_ACs']:,.0f} / "
                  f"{ops['Effective_MACs']:,.0f} / {ops['Dense']:,.0f}"],
                 ["NeuroBench membrane updates", f"{m['MembraneUpdates']:,.0f}"]]
    return rows


def _refuse_a_trace_too_large(snn, steps: int, samples: int, spiking_input: bool) -> None:
    from neurocc.backends.trace import trace_bytes

    need = trace_bytes(snn, steps, samples, spiking_input)
    if need > _available_memory() // 2:
        raise NeuroccError(f"{steps:,} steps x {samples:,} samples need {need / 2 ** 30:,.1f} GiB for the trace, "
                           f"more than half of the {_available_memory() / 2 ** 30:,.1f} GiB available; "
                           "use fewer --steps or --limit")


def _refuse_what_cannot_finish(backend, snn, x, args, coding) -> None:
    """Estimate the run's time from a 2-step probe on one batch (which also warms the simulator up), or from the
    backend's own estimate where it has one (a probe would build a NEST network), and refuse a run that would take
    longer than --max-hours."""
    if hasattr(backend, "expected_seconds"):
        hours = backend.expected_seconds(snn, len(x), args.steps) / 3600
        how = f"{backend.name}'s estimate"
    else:
        batch = x[: args.batch_size]
        t0 = time.perf_counter()
        backend.run(snn, batch, 2, batch_size=args.batch_size, device=args.device, coding=coding)
        per_step = (time.perf_counter() - t0) / 2
        hours = per_step * args.steps * math.ceil(len(x) / args.batch_size) / 3600
        how = f"a probe took {per_step:.3f} s per step for a batch of {len(batch)}"
    if hours > args.max_hours:
        raise NeuroccError(f"{args.steps:,} steps x {len(x):,} samples would take about {hours:,.1f} h ({how}), more "
                           f"than --max-hours {args.max_hours:g}; use fewer --steps or --limit, or raise --max-hours")


def _available_memory() -> int:
    """Bytes of memory available to this process now (MemAvailable; the physical memory where it is unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _run_coding(snn, args):
    """(graph, coding override or None) for ``--coding``, ``--seed``, ``--phases``, ``--skip-periods``.

    Rate codings switch at the input alone; a switch to, from or within phase coding re-times every neuron
    (``passes.phase_coding.recode``), which only a float graph can do: an integer one was quantised for its
    coding's threshold shifts."""
    from neurocc.ir.coding import MAX_PHASES, Phase, coding_named
    from neurocc.options import CompileOptions
    from neurocc.passes.phase_coding import recode

    compiled = snn.payload(snn.inputs[0]).coding
    if all(v is None for v in (args.coding, args.seed, args.phases, args.skip_periods)):
        return snn, None
    name = args.coding or compiled.name
    if name != "phase" and (args.phases is not None or args.skip_periods is not None):
        raise NeuroccError("--phases and --skip-periods apply to phase coding; this run's coding is " + name)
    if args.phases is not None and not 1 <= args.phases <= MAX_PHASES:
        raise NeuroccError(f"--phases must be 1 to {MAX_PHASES}, got {args.phases}")
    if args.skip_periods is not None and args.skip_periods < 0:
        raise NeuroccError(f"--skip-periods must be at least 0, got {args.skip_periods}")
    readout = snn.payload(snn.outputs[0]).neuron
    phases = args.phases or getattr(compiled, "phases", None) or CompileOptions.phases
    skip = args.skip_periods if args.skip_periods is not None else (
        getattr(readout, "skip_steps", 0) // getattr(readout, "phases", 1))
    coding = coding_named(name, getattr(compiled, "seed", 0) if args.seed is None else args.seed, phases)
    retimed = isinstance(coding, Phase) or isinstance(compiled, Phase)
    if not retimed:
        return snn, coding
    if coding == compiled and skip * phases == getattr(readout, "skip_steps", 0):
        return snn, None
    if snn.meta.get("mode") == "integer":
        raise NeuroccError(f"this artifact is quantised for {compiled.name} coding"
                           f"{f' with {compiled.phases} phases' if isinstance(compiled, Phase) else ''}; "
                           f"recompile it with --coding {name}" + (f" --phases {phases}" if name == "phase" else ""))
    if any(snn.payload(o).readout == "spike" for o in snn.outputs) and isinstance(coding, Phase):
        raise NeuroccError("phase coding reads out membrane potentials; this artifact reads out spike counts")
    return recode(snn, coding, skip), None


# ---------------------------------------------------------------------------------------- estimate
def cmd_estimate(args) -> int:
    import numpy as np

    from neurocc.artifact import is_artifact, read_artifact
    from neurocc.backends import BACKENDS, TARGETS
    from neurocc.data import load_data
    from neurocc.energy import ann_energy
    from neurocc.estimate import estimate_target
    from neurocc.fileio import atomic_write, output_file
    from neurocc.hwmodels import load_hwmodel
    from neurocc.options import CompileOptions, Preprocess
    from neurocc.pipeline import CompileContext, compile_graph
    from neurocc.report import plot_energy

    for option, value in (("--steps", args.steps), ("--calib-samples", args.calib_samples),
                          ("--batch-size", args.batch_size), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise NeuroccError(f"{option} must be at least 1, got {value}")
    if args.plot and not args.data:
        raise NeuroccError("--plot draws energy against accuracy: it needs --data LABELLED.npz")
    for path in (args.plot, args.json):
        if path:
            output_file(path)
    chips = [name for name, t in TARGETS.items() if t.hwmodel]
    path = Path(args.model)
    if path.is_dir() or is_artifact(path):
        art = read_artifact(path)
        own = art.manifest["target"]
        if args.target not in (own, "all") or TARGETS[own].hwmodel is None:
            raise NeuroccError(f"{path}: the artifact is compiled for {own}; estimate it for that target (an integer "
                               "target), or pass the ONNX model to compare targets")
        ann, pre, compiled, refused = art.ann, art.options.preprocess, {own: art.snn}, {}
        emitted = path / "backend"
        args.steps = args.steps or default_steps(art.snn)
    else:
        if args.target != "all" and args.target not in chips:
            raise NeuroccError(f"--target {args.target!r}: estimate needs a chip target: {', '.join(chips)} or all")
        ann, _ = _load_model(path)
        args.steps = args.steps or default_steps(ann)
        pre = Preprocess(input_scale=args.input_scale, mean=_floats(args.mean), std=_floats(args.std),
                         transpose=tuple(ann.meta.get("input_transpose", {}).get(ann.inputs[0], ())))
        calib = None
        if args.calib:
            calib = load_data(args.calib, ann.shape(ann.inputs[0]), pre, limit=args.calib_samples)[0]
        compiled, imported, refused, emitted = {}, ann, {}, None
        for name in chips if args.target == "all" else [args.target]:
            opts = CompileOptions(target=name, normalization="percentile" if calib is not None else "model",
                                  preprocess=pre)
            try:
                result = compile_graph(imported, CompileContext(opts, calib_x=calib))
            except NeuroccError as e:
                if args.target != "all":
                    raise
                refused[name] = str(e)          # this chip's formats cannot hold the network: the others go on
                continue
            compiled[name], ann = result.snn, result.ann        # the ANN after its passes: the populations' sources
        if not compiled:
            raise NeuroccError(f"{path.name}: no target can hold the network: "
                               + "; ".join(f"{t}: {why}" for t, why in refused.items()))
    shape = ann.shape(ann.inputs[0])
    data = None
    if args.data:
        data = load_data(args.data, shape, pre, limit=args.limit, classes=math.prod(ann.shape(ann.outputs[0])))
    if args.calib:
        x_predict = load_data(args.calib, shape, pre, limit=args.calib_samples)[0]
    elif data is not None:
        x_predict = data[0]
    else:
        log.warning("no --calib or --data: predicting activity from uniform random inputs in [0, 1)")
        x_predict = np.random.default_rng(0).random((64,) + tuple(shape), dtype=np.float32)
    for snn in compiled.values():
        per_step = 8 * (3 * len(snn.nodes()) + 4)          # the per-step predicted spikes, events and energies
        if args.steps * per_step > _available_memory() // 2:
            raise NeuroccError(f"--steps {args.steps:,} needs {args.steps * per_step / 2 ** 30:,.1f} GiB for the "
                               f"per-step counts, more than half of the {_available_memory() / 2 ** 30:,.1f} GiB "
                               "available")
        if data is not None:
            _refuse_a_trace_too_large(snn, args.steps, len(data[0]), not snn.payload(snn.inputs[0]).coding.constant)
    estimates = []
    for name, snn in compiled.items():
        hw = load_hwmodel(TARGETS[name].hwmodel)
        estimates.append(estimate_target(name, snn, ann, hw, BACKENDS[TARGETS[name].backend], x_predict, args.steps,
                                         data=data, batch_size=args.batch_size, must_map=len(compiled) == 1,
                                         emitted=emitted,
                                         progress=_progress(args.quiet, f"simulating {name}")))
    baseline = ann_energy(ann)
    print(_estimate_table(estimates, baseline, args.steps, data is not None))
    for name, why in refused.items():
        print(f"{name}: not compiled: {why}")
    doc = {"steps": args.steps, "targets": {e.name: e.json for e in estimates}
           | {name: {"maps": False, "refused": why} for name, why in refused.items()},
           "ann": {"macs": baseline["macs"], "energy_j": baseline["energy_j"], "e_mac_pj": baseline["e_mac_pj"],
                   "source": baseline["source"]}}
    if args.json:
        atomic_write(args.json, json.dumps(doc, indent=1))
    if args.plot:
        atomic_write(args.plot, plot_energy(estimates, path.name))
    return 0


def _estimate_table(estimates: list, baseline: dict, steps: int, measured: bool) -> str:
    from neurocc.report import table

    def mj(j):
        return "" if j is None else f"{1e3 * j:.4g}"
    rows = []
    for e in estimates:
        d = e.json
        rows.append([e.name, "yes" if d["maps"] else "no", f"{d['cores']:,}", f"{d['chips']:,}",
                     f"{d['spikes_per_inference']:,.0f}",
                     f"{d['synaptic_events_per_inference']:,.0f}",
                     f"{100 * d['prediction_error']:+.1f}" if d.get("prediction_error") is not None else "",
                     mj(d["energy_parts_j"]["synaptic"]), mj(d["energy_parts_j"]["neuron_updates"]),
                     mj(d["energy_parts_j"]["static"]), mj(d["energy_per_inference_j"]),
                     f"{baseline['energy_j'] / d['energy_per_inference_j']:.3g}" if d["energy_per_inference_j"] else "",
                     mj(d.get("energy_to_ann_minus_1pt_j")) if measured else ""])
    how = "measured by simulation" if measured else ("predicted from the ANN's activations (no simulation; a "
                                                       "directly trained SNN's: simulated on 16 samples)")
    text = (f"per inference over {steps} steps, {how}; ANN: {baseline['macs']:,} MACs x {baseline['e_mac_pj']} pJ = "
            f"{mj(baseline['energy_j'])} mJ ({baseline['source']})\n")
    text += table(["target", "maps", "cores", "chips", "spikes", "syn. events", "pred. err %", "E syn mJ",
                   "E neur mJ", "E static mJ", "E total mJ", "E_ANN/E_SNN", "E to ANN-1pt mJ"], rows,
                  align="ll" + "r" * 11)
    text += "\nNeuroBench " + estimates[0].json["neurobench"]["definitions"].split()[-1] + " metrics per inference " \
        + ("(measured)" if measured else "(activation sparsity predicted; operations need --data)") + "\n"
    text += table(["target", "footprint B", "conn. sparsity", "act. sparsity", "eff. ACs", "eff. MACs", "dense ops",
                   "membrane upd."], [_neurobench_row(e) for e in estimates], align="l" + "r" * 7)
    for e in estimates:
        c = e.json["coefficients"]
        text += (f"\n{e.name}: {c['synaptic_event_pj']['value']} pJ/event ({c['synaptic_event_pj']['source']}); "
                 f"{c['neuron_update_pj']['value']} pJ/update ({c['neuron_update_pj']['source']}); "
                 f"{c['static_mw_per_core']['value']} mW/core static ({c['static_mw_per_core']['source']})")
        for line in e.json["over_limits"]:
            text += f"\n{e.name}: does not map: {line}"
    return text


def _neurobench_row(e) -> list:
    m = e.json["neurobench"]
    ops = m["SynapticOperations"] or {}

    def count(v):
        return "" if v is None else f"{v:,.0f}"
    return [e.name, f"{m['Footprint']:,}", f"{m['ConnectionSparsity']:.4f}",
            "" if m["ActivationSparsity"] is None else f"{m['ActivationSparsity']:.4f}",
            count(ops.get("Effective_ACs")), count(ops.get("Effective_MACs")), count(ops.get("Dense")),
            count(m["MembraneUpdates"])]


# ----------------------------------------------------------------------------------------- inspect
# ------------------------------------------------------------------------------------------ export
def cmd_export(args) -> int:
    from neurocc.artifact import read_artifact
    from neurocc.fileio import output_file
    from neurocc.frontend.nir import DEFAULT_DT
    from neurocc.nir_export import export_notes, write_nir

    output_file(args.output)                             # before any work: a bad path fails at once
    art = read_artifact(args.artifact)
    pre = art.manifest["options"].get("preprocess", {})
    write_nir(art.snn, args.output, metadata={"neurocc.source": art.manifest["source"]["name"],
                                              "neurocc.preprocess": json.dumps(pre, sort_keys=True)})
    if not args.quiet:
        for note in export_notes(art.snn):
            print(f"note: {note}")
        print(f"exported {args.artifact} ({art.snn.summary()}) as NIR for dt = {DEFAULT_DT:g} s -> {args.output}")
    return 0


def cmd_setup(args) -> int:
    """Build Lava's own environment (``neurocc.backends.loihi.lava_env``)."""
    from neurocc.backends.loihi.lava_env import install
    if args.prefix:
        os.environ["NEUROCC_LAVA_ENV"] = str(Path(args.prefix).resolve())
    install(say=lambda line: print(line, file=sys.stderr))
    return 0


def cmd_inspect(args) -> int:
    from neurocc.artifact import is_artifact, read_artifact
    from neurocc.ir.printer import dump
    from neurocc.options import Preprocess
    from neurocc.report import table

    path = Path(args.path)
    if path.is_dir() or is_artifact(path):
        art = read_artifact(path)
        m = art.manifest
        print(table(["field", "value"], [
            ["format", f"{m['format']} v{m['format_version']} (neurocc {m['neurocc_version']})"],
            ["source", f"{m['source']['name']} sha256 {m['source']['sha256'][:16]}…"],
            ["target", m["target"]], ["passes", ", ".join(m["passes"])], ["created", m["created"]],
        ] + [[f"option {k}", json.dumps(v)] for k, v in m["options"].items()], align="ll"))
        print(_population_table(art.snn, _artifact_resources(art, path)))
        if "quantization" in art.snn.meta:
            print(_formats_table(art.snn.meta["hwmodel"]))
            print(_quantization_table(art.snn.meta))
        if "core_mapping" in art.snn.meta:
            print(_mapping_table(art.snn.meta["core_mapping"]))
        if "optimization" in art.snn.meta:
            print(_optimization_summary(art.snn.meta["optimization"]))
        if "heads" in art.snn.meta:
            print(_heads_summary(art.snn.meta))
        if "trained_snn" in art.snn.meta:
            print(_trained_summary(art.snn.meta["trained_snn"]))
        if args.ir:
            print(dump(art.snn))
        return 0
    ann = _import_or_list_blockers(path)
    kinds: dict = {}
    for n in ann.nodes():
        kinds[type(ann.payload(n)).__name__] = kinds.get(type(ann.payload(n)).__name__, 0) + 1
    print(f"{path.name}: convertible; {ann.summary()}")
    if "trained_snn" in ann.meta:
        print(_trained_summary(ann.meta["trained_snn"]))
    for name, perm in ann.meta.get("input_transpose", {}).items():
        declared = " x ".join(map(str, Preprocess(transpose=tuple(perm)).declared_shape(ann.shape(name))))
        print(f"input {name!r}: the model transposes it by {perm}; the transpose is folded into the pre-processing "
              f"(data as N x {declared}, the model's layout, or already transposed)")
    print(table(["input", "shape"], [[i, "N x " + " x ".join(map(str, ann.shape(i)))] for i in ann.inputs]))
    print(table(["output", "shape"], [[o, "N x " + " x ".join(map(str, ann.shape(o)))] for o in ann.outputs]))
    print(table(["IR op", "count"], sorted(kinds.items())))
    for note in ann.meta.get("notes", []):
        print(f"note: {note}")
    if args.ir:
        print(dump(ann))
    return 0


def _import_or_list_blockers(path: Path):
    """The model's ANN graph, lowered once to check that it converts; else fail, listing every blocking node
    the import found."""
    from neurocc.errors import UnsupportedModelError
    from neurocc.frontend.onnx import supported_ops
    from neurocc.options import CompileOptions
    from neurocc.pipeline import CompileContext, compile_graph
    from neurocc.report import table

    try:
        ann, _ = _load_model(path)
    except UnsupportedModelError as e:
        if not e.problems:              # not about nodes (an input, a weight): one line
            raise
        problems = e.problems
        print(f"{path.name}: not convertible; {len(problems)} blocking node(s):")
        print(table(["node", "op", "why"], [list(row) for row in problems], align="lll"))
        if any(why.startswith("unsupported op type") for _, _, why in problems):
            print(f"supported op types: {', '.join(supported_ops())}")
        raise NeuroccError(f"{path.name}: {len(problems)} blocking node(s), listed above") from None
    try:
        compile_graph(ann, CompileContext(CompileOptions(normalization="model")))
    except UnsupportedModelError as e:
        raise NeuroccError(f"{path.name}: not convertible: {e}") from None
    return ann


def _formats_table(name: str) -> str:
    from neurocc.hwmodels import load_hwmodel
    from neurocc.report import table

    hw = load_hwmodel(name)
    rows = []
    for section in ("weights", "neuron", "timing"):
        for key, value in vars(getattr(hw, section)).items():
            rows.append([f"{section}.{key}", value, hw.source(f"{section}.{key}")[:90]])
    return f"{hw.name}: {hw.description}\n" + table(["format", "value", "source"], rows, align="lrl")


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from neurocc.backends import BACKENDS, TARGETS
    from neurocc.ir.coding import CODINGS
    from neurocc.options import CompileOptions

    p = _Parser(prog="neurocc", description="Compile trained neural networks (ONNX) into spiking networks.")
    p.add_argument("--version", action="version", version=f"neurocc {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what each pass does")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    c = sub.add_parser("compile", help="convert an ONNX model into a spiking network artifact",
                       epilog=COMPILE_EXAMPLE, formatter_class=fmt)
    c.add_argument("model", help="the ONNX file, or a NIR graph (.nir)")
    c.add_argument("--nir-dt", type=float, metavar="SECONDS",
                   help="a .nir model: the forward-Euler step its continuous-time neurons run with (default 1e-4, "
                        "snnTorch's export_to_nir dt, which makes its LIF leak beta again)")
    c.add_argument("--nir-steps", type=int, metavar="T",
                   help="a .nir model: the steps it was trained for, which its reference (the trained SNN run as "
                        "trained) and neurocc run's default --steps take (default: the file's neurocc.time_steps, "
                        "else 100)")
    c.add_argument("-o", "--output", required=True, help="artifact folder to write (replaced if it is an artifact)")
    c.add_argument("--target", default="reference", choices=TARGETS, metavar="TARGET",
                   help="; ".join(f"{t.name}: {t.description}" for t in TARGETS.values()) + " (default: reference)")
    c.add_argument("--hwmodel", metavar="FILE.toml", help="a custom hardware model for the target (default: the shipped one)")
    c.add_argument("--warn-mass-lost", type=float, default=0.01,
                   help="warn when quantisation loses more than this fraction of a projection's weight mass (0.01)")
    c.add_argument("--calib", help="calibration data (.npz with x): training images for normalisation")
    c.add_argument("--calib-samples", type=int, default=1000, help="use the first N calibration samples (default 1000)")
    c.add_argument("--normalization", choices=("percentile", "max", "model"),
                   help="lambda per layer: a percentile of the activations (default with --calib), their max, "
                        "or weight-based bounds (default without --calib)")
    c.add_argument("--percentile", type=float, default=99.9, help="percentile p for normalisation (default 99.9)")
    c.add_argument("--granularity", choices=("channel", "layer"), default="channel",
                   help="one lambda per channel (default; anytime-perception 5.2) or per layer")
    c.add_argument("--optimize", type=int, nargs="?", const=60, default=0, metavar="BUDGET",
                   help="search rate scales (global, layer, channel) and V0 with Subplex, minimising L_SNN "
                        "(anytime-perception eq. 11) by simulation on calibration data; BUDGET = evaluations "
                        "(default 60 when given without a number)")
    c.add_argument("--optimize-steps", type=int, default=64, metavar="N", help="steps simulated per --optimize evaluation (64)")
    c.add_argument("--optimize-samples", type=int, default=256, metavar="N",
                   help="calibration samples simulated per --optimize evaluation (256)")
    c.add_argument("--optimize-weights", type=float, nargs=3, metavar=("E", "L", "P"),
                   help="lambda_e, lambda_l, lambda_p of L_SNN (default 1, 1/steps, 0)")
    c.add_argument("--snn-calibration", choices=("none", "bias", "weights"), default="none",
                   help="layer-wise calibration of the SNN on calibration data (needs --calib): bias corrects each "
                        "layer's mean rate error at --calibration-steps (SNN Calibration's light pipeline, Li et al. "
                        "2021); weights first fits each layer's weights to the spike rates it receives, then its "
                        "bias; default none")
    c.add_argument("--gamma-exit", type=float, default=0.1, metavar="THRESHOLD",
                   help="a BNTT network's early exit (bntt 3.4): run stops after the last step at which some layer's "
                        "mean gamma_t is at least THRESHOLD (default 0.1)")
    c.add_argument("--calibration-steps", type=int, default=32, metavar="T",
                   help="the latency T --snn-calibration corrects the rates at: set it to the steps you will "
                        "run (a network calibrated at 32 is less accurate at 16 than one calibrated at 16; default 32)")
    c.add_argument("--heads", nargs="+", default=["all"], metavar="NAME|auto|all|none",
                   help="intermediate-prediction heads (model outputs with the final output's class count) kept as "
                        "read-outs for Bayesian fusion (bayesian-fusion 3): the named ones, all (default), none, or "
                        "auto: the one reaching ANN - 1 pt with the least energy on --calib (needs labels), or none")
    c.add_argument("--heads-steps", type=int, default=100, metavar="N",
                   help="--heads auto: steps simulated per variant (default 100)")
    c.add_argument("--prior-weight", type=float, default=CompileOptions.prior_weight, metavar="P",
                   help=f"--heads auto: prior weight P of Bayesian fusion, eq. 16 "
                        f"(default {CompileOptions.prior_weight:g})")
    c.add_argument("--reset", choices=("subtract", "zero"),
                   help="reset after a spike (default: subtract; chips reset as their hardware does: loihi to zero, or "
                        "subtract with neurocc's soft-reset SRIF Lava process)")
    c.add_argument("--v0", type=float, default=0.5, help="initial membrane potential, fraction of threshold (default 0.5)")
    c.add_argument("--readout", choices=("accumulate", "spike"), default="accumulate",
                   help="output layer: accumulated membrane potential (default) or spike count")
    c.add_argument("--coding", choices=CODINGS, default="analog",
                   help="input coding compiled into the network: constant current (analog, default), Poisson "
                        "rate spikes, or phase (weighted spikes, K bits MSB first; reference and generic targets); "
                        "run can override it")
    c.add_argument("--seed", type=int, default=0, help="seed of the Poisson input coding (default 0)")
    c.add_argument("--phases", type=int, default=8, metavar="K",
                   help="--coding phase: phases per period; a spike in phase p weighs 2^-(1+p) (default 8)")
    c.add_argument("--skip-periods", type=int, default=0, metavar="N",
                   help="--coding phase: the read-outs ignore their input for the first N periods (default 0)")
    c.add_argument("--max-pool", choices=("gate", "average"), default="gate",
                   help="max pooling as the spiking max-pool gate (default; weighted-spikes 4.5) or as average "
                        "pooling, for targets that cannot express the gate (spinnaker's PyNN program); average "
                        "changes the network: compile notes the new ANN's agreement with the original")
    c.add_argument("--input-scale", type=float, default=1.0, help="multiply raw data by this first (e.g. 1/255)")
    c.add_argument("--mean", type=float, nargs="+", help="per-channel mean subtracted after --input-scale")
    c.add_argument("--std", type=float, nargs="+", help="per-channel std divided by after --mean")
    c.add_argument("--batch-size", type=int, default=128, help="calibration batch size (default 128)")
    c.add_argument("--print-ir-after", action="append", default=[], metavar="PASS",
                   help="print the IR after this pass (repeatable; 'all' for every pass)")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    c.set_defaults(func=cmd_compile)

    from neurocc.decode import DECODES, DEFAULT_PRIOR_WEIGHT
    from neurocc.exit import DEFAULT_THETA, RULES
    r = sub.add_parser("run", help="simulate a compiled artifact on data and report accuracy over time",
                       epilog=RUN_EXAMPLE, formatter_class=fmt)
    r.add_argument("artifact", help="artifact folder written by neurocc compile")
    r.add_argument("--data", required=True, help="data (.npz with x and optional y)")
    r.add_argument("--steps", type=int, help="time steps to simulate (default 100; a directly trained SNN: its BNTT "
                                             "early-exit step, else the steps it was trained for)")
    r.add_argument("--batch-size", type=int, default=64, help="samples simulated together (default 64)")
    r.add_argument("--backend", choices=BACKENDS, metavar="BACKEND",
                   help="; ".join(f"{b.name}: {b.description}" for b in BACKENDS.values())
                        + " (default: the one the artifact's target names)")
    r.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device (default cpu)")
    r.add_argument("--limit", type=int, help="use only the first N samples")
    r.add_argument("--coding", choices=CODINGS,
                   help="override the compiled input coding: analog (constant current), poisson (rate spikes) or "
                        "phase (weighted spikes; to or from phase only for float artifacts)")
    r.add_argument("--seed", type=int, help="override the seed of the Poisson input coding")
    r.add_argument("--phases", type=int, metavar="K", help="override the phases of phase coding (float artifacts)")
    r.add_argument("--skip-periods", type=int, metavar="N",
                   help="override the periods the read-outs skip under phase coding (float artifacts)")
    r.add_argument("--max-hours", type=float, default=24.0, metavar="H",
                   help="refuse a run estimated (from a 2-step probe) to take longer than this (default 24)")
    r.add_argument("--report-steps", type=int, nargs="+", help="steps to show in the table (default 1,2,5,10,...)")
    r.add_argument("--decode", choices=DECODES, default="argmax",
                   help="argmax of the final read-out (default), or bayes: its spike counts fused with an "
                        "intermediate-prediction head's firing probabilities as a Beta prior, argmax of the "
                        "posterior mean (bayesian-fusion eq. 14-18)")
    r.add_argument("--prior-weight", type=float, metavar="P",
                   help=f"prior weight P >= 0 of Bayesian fusion (eq. 16), for --decode bayes and each head's fused "
                        f"accuracy (default {DEFAULT_PRIOR_WEIGHT:g})")
    r.add_argument("--head", metavar="NAME", help="the head --decode bayes fuses with (default: the first head)")
    r.add_argument("--early-exit", choices=RULES, default="none",
                   help="stop each sample early: stable (weighted-spikes Algorithm 1: once its decision has stayed "
                        "the same for theta / delta_EMA steps, delta the top-2 difference) or margin (once the top-1 "
                        "minus top-2 firing rate, or posterior mean, reaches M); default none")
    r.add_argument("--exit-start", type=int, metavar="T1", help="the first step an exit rule looks at (default 1)")
    r.add_argument("--exit-theta", type=float, metavar="THETA",
                   help=f"--early-exit stable: the stable decision threshold (default {DEFAULT_THETA:g}, "
                        "weighted-spikes Fig. 13)")
    r.add_argument("--margin", type=float, metavar="M",
                   help="--early-exit margin: the top-1 minus top-2 firing rate (posterior mean) to stop at")
    r.add_argument("--plot", help="write a PNG of accuracy and synaptic events over time")
    r.add_argument("--json", help="write the results as JSON")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("estimate", help="cores, events, energy and NeuroBench metrics per inference on each chip, "
                                        "before deploying",
                       epilog=ESTIMATE_EXAMPLE, formatter_class=fmt)
    e.add_argument("model", help="an .onnx or .nir file (compiled for each target here) or an artifact folder")
    e.add_argument("--target", default="all", metavar="TARGET",
                   help="a chip target (" + ", ".join(n for n, t in TARGETS.items() if t.hwmodel) + ") or all (default)")
    e.add_argument("--steps", type=int, help="time steps per inference (default 100; a directly trained SNN: its BNTT "
                                             "early-exit step, else the steps it was trained for)")
    e.add_argument("--calib", help="calibration data (.npz): normalisation and the predicted activity")
    e.add_argument("--calib-samples", type=int, default=256, help="calibration samples to use (default 256)")
    e.add_argument("--data", help="labelled data (.npz): simulate to measure events, accuracy and the energy to "
                                  "reach the ANN's accuracy less 1 pt")
    e.add_argument("--limit", type=int, help="simulate only the first N samples of --data")
    e.add_argument("--batch-size", type=int, default=64, help="samples simulated together (default 64)")
    e.add_argument("--input-scale", type=float, default=1.0, help="as for compile")
    e.add_argument("--mean", type=float, nargs="+", help="as for compile")
    e.add_argument("--std", type=float, nargs="+", help="as for compile")
    e.add_argument("--plot", help="write a PNG of accuracy against energy (needs --data)")
    e.add_argument("--json", help="write the estimate as JSON")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_estimate)

    i = sub.add_parser("inspect", help="describe an ONNX model or a compiled artifact",
                       epilog=INSPECT_EXAMPLE, formatter_class=fmt)
    i.add_argument("path", help="an .onnx or .nir file, or an artifact folder")
    i.add_argument("--ir", action="store_true", help="also print the whole IR")
    i.set_defaults(func=cmd_inspect)

    x = sub.add_parser("export", help="write a compiled float network in an interchange format (NIR)",
                       epilog=EXPORT_EXAMPLE, formatter_class=fmt)
    x.add_argument("artifact", help="artifact folder written by neurocc compile (a float target: reference)")
    x.add_argument("--format", choices=("nir",), default="nir", help="nir: the Neuromorphic Intermediate "
                                                                     "Representation, nir 1.0.8's HDF5 (default)")
    x.add_argument("-o", "--output", required=True, help="the file to write (replaced whole, or left as it was)")
    x.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    x.set_defaults(func=cmd_export)

    s = sub.add_parser("setup", help="install a backend's toolchain in an environment of its own",
                       epilog=SETUP_EXAMPLE, formatter_class=fmt)
    s.add_argument("toolchain", choices=("lava",), help="lava: lava-nc 0.10.0 for the lava backend")
    s.add_argument("--prefix", help="where to create its environment (default: $NEUROCC_LAVA_ENV, else <this "
                                    "Python's prefix>/lava)")
    s.set_defaults(func=cmd_setup)
    return p


def _import_extensions() -> None:
    """Import torch, onnx and the simulator's kernels with SIGINT held: an interrupt that lands while their C++
    code runs Python (pybind11) would abort the process instead of raising KeyboardInterrupt."""
    from neurocc.fileio import interrupts_held
    with interrupts_held():
        import onnx  # noqa: F401
        import torch  # noqa: F401

        import neurocc.backends.reference.simulator  # noqa: F401  (numba kernels)


def entry() -> None:
    """The ``neurocc`` command (and ``python -m neurocc``): ``main``, then exit with its code."""
    sys.exit(main(final=True))


def main(argv=None, final: bool = False) -> int:
    """Run one command; return its exit code. ``final``: the process exits right after, so an interrupt
    that arrives once the command is done (its signal still pending) is dropped instead of turning a
    finished command into a Python traceback."""
    verbose = False
    try:
        from neurocc.fileio import COMMITTED
        COMMITTED.clear()
        args = build_parser().parse_args(argv)
        verbose = args.verbose
        if final and args.command in ("compile", "run", "estimate", "inspect", "export"):
            _import_extensions()
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="neurocc: %(levelname)s: %(message)s", stream=sys.stderr, force=True)
        return args.func(args)
    except NeuroccError as e:
        print(f"neurocc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from neurocc.fileio import COMMITTED
        done = f" after writing {', '.join(COMMITTED)} completely" if COMMITTED else "; nothing was written"
        print(f"neurocc: interrupted{done}", file=sys.stderr)
        return 130
    except BrokenPipeError:             # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:              # a bug in neurocc (a failed pass says which passes ran before it)
        if verbose:
            traceback.print_exc()
        what = " ".join(str(e).split()) or type(e).__name__
        hint = "" if verbose else "; run with -v for the traceback"
        print(f"neurocc: internal error (a bug in neurocc, please report it): {what}{hint}", file=sys.stderr)
        return 1
    finally:
        if final:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    entry()
