"""Anytime read-out: Bayesian fusion with an intermediate-prediction head (bayesian-fusion eq. 14-18), early exit
(weighted-spikes Algorithm 1 and a margin rule), and `neurocc run --decode bayes --early-exit ...` end to end.

Expectations are computed independently: the posterior from eq. 14 written out per class, the counts of an
accumulating read-out against an IF neuron simulated step by step, Algorithm 1 by hand and as a line-by-line
scalar transcription, spent spikes by plain loops.
"""
from __future__ import annotations

import dataclasses

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from neurocc.backends.trace import Readout, Trace
from neurocc.cli import main
from neurocc.decode import (bayes_predictions, check_head, decoded, firing_probabilities, heads, posterior_means,
                            predictions, spike_counts)
from neurocc.errors import NeuroccError
from neurocc.evaluate import DecodeOptions, accuracy_over_time, summarize
from neurocc.exit import margin_exit, spent, stable_exit
from neurocc.ir import Graph
from neurocc.ir.neurons import IF, WeightedIF
from neurocc.ir.snn import Population


# ------------------------------------------------------------------------------------------------ helpers
def readout_graph(outputs: dict, meta=None) -> Graph:
    """An SNN graph holding only read-out populations: name -> (classes, threshold, readout)."""
    g = Graph("snn", inputs=(), outputs=tuple(outputs), meta=meta or {})
    for name, (n, theta, readout) in outputs.items():
        g.add_node(name, Population(shape=(n,), bias=np.zeros(n), neuron=IF(threshold=theta), readout=readout), (n,))
    return g


def make_trace(readouts: dict, spikes=None, events=None) -> Trace:
    """A trace from name -> (potential, count or None) arrays of shape (steps, samples, classes)."""
    potential = next(iter(readouts.values()))[0]
    steps, samples = potential.shape[:2]
    return Trace(steps=steps, samples=samples, readouts={k: Readout(v, c) for k, (v, c) in readouts.items()},
                 spikes=spikes or {}, events=events or {})


def eq14_by_hand(m, mu_hat, p, n):
    """bayesian-fusion eq. 14 with alpha, beta from eq. 17-18, one class at a time."""
    alpha, beta = p * mu_hat, p * (1 - mu_hat)
    return (alpha + m) / (alpha + beta + n)


# ------------------------------------------------------------------------------------------------ fusion
def test_posterior_means_are_eq_14_written_out():
    rng = np.random.default_rng(0)
    steps, samples, classes, p = 6, 3, 4, 5.0
    t = np.arange(1, steps + 1)[:, None, None]
    counts = rng.integers(0, t + 1, size=(steps, samples, classes))
    mu_hat = rng.uniform(0, 1, size=(steps, samples, classes))
    got = posterior_means(counts, mu_hat, p)
    for s, i, j in np.ndindex(steps, samples, classes):
        assert got[s, i, j] == pytest.approx(eq14_by_hand(counts[s, i, j], mu_hat[s, i, j], p, s + 1), rel=1e-12)


def simulated_if_counts(drive: np.ndarray, theta: float) -> np.ndarray:
    """Spikes so far of an IF neuron, V(0) = 0, reset by subtraction, spike when V >= theta, one step at a time,
    plus its residual potential in thresholds."""
    v, fired, out = 0.0, 0, []
    for x in drive:
        v += x
        if v >= theta:
            v, fired = v - theta, fired + 1
        out.append(fired + v / theta)
    return np.array(out)


def test_an_accumulating_readout_counts_as_the_if_neuron_it_stands_for():
    rng = np.random.default_rng(1)
    theta, steps = 0.75, 40
    drive = rng.uniform(0, theta, size=(steps, 5, 3))         # per step in [0, theta]: the exact range
    potential = np.cumsum(drive, axis=0)
    g = readout_graph({"out": (3, theta, "accumulate")})
    trace = make_trace({"out": (potential, None)})
    counts = spike_counts(trace, g, "out")
    for i, j in np.ndindex(5, 3):
        np.testing.assert_allclose(counts[:, i, j], simulated_if_counts(drive[:, i, j], theta), rtol=1e-12)
    t = np.arange(1, steps + 1)[:, None, None]
    assert np.allclose(firing_probabilities(trace, g, "out"), potential / (theta * t))


def test_counts_and_probabilities_clip_and_stay_exact_in_integer_mode():
    theta = 64
    v = np.array([[[-1, 63, 64, 300]], [[-130, 127, 128, 700]]], np.int64)      # 2 steps, 1 sample, 4 classes
    g = readout_graph({"out": (4, float(theta), "accumulate")}, meta={"mode": "integer"})
    trace = make_trace({"out": (v, None)})
    for step, row in enumerate(v[:, 0], start=1):
        want_m = [min(step, max(0, x / theta)) for x in row.tolist()]
        want_mu = [min(1.0, max(0.0, x / (theta * step))) for x in row.tolist()]
        assert spike_counts(trace, g, "out")[step - 1, 0].tolist() == want_m
        assert firing_probabilities(trace, g, "out")[step - 1, 0].tolist() == pytest.approx(want_mu)


def test_a_readout_counts_in_units_of_its_calibrated_lambda_and_quantisation_gain():
    """The logits a read-out sums are put in a normalised output layer's units: V / (theta gain lambda_out)."""
    g = readout_graph({"out": (2, 8.0, "accumulate")}, meta={
        "mode": "integer", "readout_gains": {"out": 0.5},
        "calibration": {"nodes": {"logits": {"percentile": 4.0}}}})
    g.set_payload("out", dataclasses.replace(g.payload("out"), source_node="logits"))
    v = np.array([[[8, 40]], [[24, 33]]], np.int64)                 # 2 steps, 1 sample, 2 classes
    trace = make_trace({"out": (v, None)})
    assert spike_counts(trace, g, "out").tolist() == [[[0.5, 1.0]], [[1.5, 2.0]]]        # u = 16, clipped at t


def test_a_phase_coded_integer_readout_reads_as_its_float_one():
    """Integer phase coding holds V in units of 2^-K (WeightedIF): theta 64 there is 64 * 2^K of V."""
    k, theta, rng = 4, 64, np.random.default_rng(2)
    v_float = np.cumsum(rng.uniform(-0.3, 1.0, size=(8, 3, 5)), axis=0)
    v_int = np.round(v_float * theta * 2 ** k).astype(np.int64)
    graphs = {}
    for mode, t in (("float", 1.0), ("integer", float(theta))):
        g = Graph("snn", inputs=(), outputs=("out",), meta={"mode": mode})
        g.add_node("out", Population(shape=(5,), bias=np.zeros(5), neuron=WeightedIF(threshold=t, phases=k),
                                     readout="accumulate"), (5,))
        graphs[mode] = g
    f, i = make_trace({"out": (v_float, None)}), make_trace({"out": (v_int, None)})
    want = v_int / (theta * 2 ** k)                       # the float potential up to rounding
    assert np.allclose(decoded(f, graphs["float"], "out").evidence, want, atol=1e-2)
    assert np.array_equal(decoded(i, graphs["integer"], "out").evidence, want)
    assert np.array_equal(spike_counts(i, graphs["integer"], "out"),
                          np.clip(want, 0, np.arange(1, 9)[:, None, None]))
    assert np.allclose(firing_probabilities(i, graphs["integer"], "out"),
                       firing_probabilities(f, graphs["float"], "out"), atol=1e-2)


def test_a_spiking_readout_gives_its_counts_and_rates():
    count = np.array([[[0, 1]], [[1, 1]], [[3, 1]]], np.int64)
    g = readout_graph({"out": (2, 1.0, "spike")})
    trace = make_trace({"out": (np.zeros(count.shape, np.float32), count)})
    assert spike_counts(trace, g, "out") is count
    assert firing_probabilities(trace, g, "out")[:, 0].tolist() == [[0, 1], [0.5, 0.5], [1, 1 / 3]]


def random_trace_with_head(final_readout: str, seed=0, steps=12, samples=30, classes=5):
    """A final output (spiking or accumulating) with many ties, and an accumulating head, over random drives."""
    rng = np.random.default_rng(seed)
    final_v = np.cumsum(rng.uniform(-0.2, 1.0, size=(steps, samples, classes)), axis=0).astype(np.float32)
    count = np.cumsum(rng.integers(0, 2, size=(steps, samples, classes)), axis=0) if final_readout == "spike" else None
    head_v = np.cumsum(rng.uniform(0, 1.0, size=(steps, samples, classes)), axis=0).astype(np.float32)
    g = readout_graph({"final": (classes, 1.0, final_readout), "ip": (classes, 1.0, "accumulate")})
    return make_trace({"final": (final_v, count), "ip": (head_v, None)}), g


@pytest.mark.parametrize("readout", ["accumulate", "spike"])
def test_prior_weight_zero_decides_as_argmax_does(readout):
    trace, g = random_trace_with_head(readout)
    if readout == "spike":                           # the tie rule matters: many equal counts
        best = trace.readouts["final"].count.max(axis=2, keepdims=True)
        assert ((trace.readouts["final"].count == best).sum(axis=2) > 1).any()
    assert np.array_equal(bayes_predictions(trace, g, "final", "ip", 0.0), predictions(trace, "final"))


def test_a_large_prior_weight_follows_the_head():
    trace, g = random_trace_with_head("accumulate", seed=3)
    mu_head = firing_probabilities(trace, g, "ip")
    top = np.sort(mu_head, axis=2)
    distinct = top[..., -1] > top[..., -2]           # where the head's own argmax is unambiguous
    assert distinct.mean() > 0.5
    fused = bayes_predictions(trace, g, "final", "ip", 1e9)
    assert np.array_equal(fused[distinct], mu_head.argmax(axis=2)[distinct])


def test_fusion_decides_by_the_posterior_by_hand():
    # 1 sample, 3 classes, 2 steps; final counts favour class 0 at step 2, the head class 1
    count = np.array([[[1, 0, 0]], [[2, 1, 0]]], np.int64)
    head_v = np.array([[[0.1, 0.8, 0.2]], [[0.2, 1.6, 0.4]]], np.float32)
    g = readout_graph({"final": (3, 1.0, "spike"), "ip": (3, 1.0, "accumulate")})
    trace = make_trace({"final": (np.zeros(count.shape, np.float32), count), "ip": (head_v, None)})
    for p in (0.5, 2.0, 8.0):
        got = bayes_predictions(trace, g, "final", "ip", p)
        for step in (1, 2):
            mu_hat = head_v[step - 1, 0] / step
            post = [eq14_by_hand(count[step - 1, 0, j], mu_hat[j], p, step) for j in range(3)]
            assert got[step - 1, 0] == int(np.argmax(post))
    assert bayes_predictions(trace, g, "final", "ip", 8.0)[1, 0] == 1 != bayes_predictions(trace, g, "final", "ip",
                                                                                          0.5)[1, 0]


def test_heads_from_meta_or_from_class_counts_and_bad_heads():
    outs = {"final": (10, 1.0, "accumulate"), "ip": (10, 1.0, "accumulate"), "aux": (5, 1.0, "accumulate"),
            "ip2": (10, 1.0, "accumulate")}
    assert heads(readout_graph(outs)) == ("ip", "ip2")
    kept = readout_graph(outs, meta={"heads": ["ip2"]})
    assert heads(kept) == ("ip2",) and check_head(kept, "ip2") == "ip2"
    assert heads(readout_graph(outs, meta={"heads": []})) == ()
    for name, words in (("nope", "no output named"), ("aux", "5 classes"), ("final", "final output"),
                        ("ip", "not one of the heads")):
        with pytest.raises(NeuroccError, match=words):
            check_head(kept, name)
    with pytest.raises(NeuroccError, match=">= 0"):
        posterior_means(np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), -1.0)


# ------------------------------------------------------------------------------------------------ exit
def algorithm_1(v: np.ndarray, t1: int, theta: float) -> tuple[int, int]:
    """weighted-spikes Algorithm 1 for one sample, line by line: v is (steps, classes), steps 1-based."""
    d_prev, ema, count = None, 0.0, 0
    for t in range(t1, len(v) + 1):
        row = list(v[t - 1])
        d = row.index(max(row))
        ordered = sorted(row)
        ema = (ordered[-1] - ordered[-2] + ema) / 2
        if d == d_prev:
            count += 1
            if ema > 0 and count >= theta / ema:
                return t, d
        else:
            count = 0
        d_prev = d
    return len(v), d


def test_stable_exit_is_algorithm_1_by_hand():
    v = np.zeros((6, 3, 2))
    v[:, 0] = [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [5, 0]]
    v[:, 1] = [[0, 0], [0, .5], [1, .5], [1.5, .5], [2, .5], [2.5, .5]]
    v[:, 2] = 0.0                                              # never separates: runs to the end
    e = stable_exit(v, start=2, theta=1.0)
    # sample 0: t=2 D=0 (D(1) = none) count 0, ema .5; t=3 count 1, ema 1.25, 1 >= 1/1.25 -> exit at 3
    # sample 1: t=2 D=1 ema .25; t=3 D=0 count 0 ema .375; t=4 count 1 ema .6875 (1 < 1.45);
    #           t=5 count 2 ema 1.09375, 2 >= .914 -> exit at 5
    assert e.step.tolist() == [3, 5, 6] and e.decision.tolist() == [0, 0, 0]


def test_stable_exit_matches_a_scalar_transcription_of_algorithm_1():
    rng = np.random.default_rng(4)
    v = np.cumsum(rng.normal(0.2, 1.0, size=(40, 50, 4)), axis=0)
    for t1, theta in ((1, 0.9), (5, 3.0), (40, 0.5)):
        e = stable_exit(v, start=t1, theta=theta)
        want = [algorithm_1(v[:, i], t1, theta) for i in range(50)]
        assert list(zip(e.step.tolist(), e.decision.tolist())) == want


def test_margin_exit_and_given_decisions():
    rates = np.zeros((4, 3, 3))
    rates[:, 0] = [[.5, .25, 0], [.75, .25, 0], [1, .25, 0], [1, 0, 0]]      # differences .25 .5 .75 1
    rates[:, 1] = [[.5, .5, 0]] * 4                                            # never
    rates[:, 2] = [[0, 1, 0], [0, .5, .5], [0, .5, .25], [0, .5, 0]]          # differences 1 0 .25 .5
    e = margin_exit(rates, margin=0.5)
    assert e.step.tolist() == [2, 4, 1] and e.decision.tolist() == [0, 0, 1]
    late = margin_exit(rates, margin=0.5, start=3, decisions=np.full((4, 3), 2))
    assert late.step.tolist() == [3, 4, 4] and late.decision.tolist() == [2, 2, 2]


def test_spent_sums_populations_up_to_each_exit_step():
    rng = np.random.default_rng(5)
    per_pop = {"a": rng.integers(0, 9, size=(7, 4)), "b": rng.integers(0, 9, size=(7, 4))}
    step = np.array([1, 7, 3, 5])
    want = [sum(int(per_pop[k][t, i]) for k in per_pop for t in range(step[i])) for i in range(4)]
    assert spent(per_pop, step).tolist() == want


@pytest.mark.parametrize("options, words", [
    (dict(decode="bayes", prior_weight=-1.0), ">= 0"),
    (dict(decode="bayes", prior_weight=math.nan), ">= 0"),
    (dict(exit_rule="margin", margin=0.0), "> 0"),
    (dict(exit_rule="margin"), "needs --margin"),
    (dict(exit_rule="stable", exit_theta=-0.5), "> 0"),
    (dict(exit_rule="stable", exit_start=0), "1..12"),
    (dict(exit_rule="stable", exit_start=13), "1..12"),
    (dict(exit_rule="stable", margin=0.1), "--margin does not apply"),
    (dict(exit_start=3), "--exit-start does not apply"),
    (dict(head="ip"), "add --decode bayes"),
    (dict(decode="bayes", head="nope"), "no output named"),
])
def test_bad_decode_options_are_readable_errors(options, words):
    _, g = random_trace_with_head("accumulate")
    with pytest.raises(NeuroccError, match=words):
        DecodeOptions(**options).resolved(g, 12)


def test_summarize_reports_fusion_heads_and_the_exit():
    trace, g = random_trace_with_head("spike", seed=6)
    rng = np.random.default_rng(6)
    trace.spikes = {"h": rng.integers(0, 5, size=(12, 30)), "final": trace.readouts["final"].count[:, :, 0]}
    trace.events = {"h": trace.spikes["h"] * 3}
    labels = rng.integers(0, 5, size=30)
    ann = {"final": labels, "ip": labels}
    opts = DecodeOptions(decode="bayes", prior_weight=4.0, exit_rule="stable", exit_theta=2.0)
    s = summarize(trace, g.outputs, ann, labels, graph=g, options=opts)
    fused = bayes_predictions(trace, g, "final", "ip", 4.0)
    assert np.array_equal(s.accuracy, (fused == labels).mean(axis=1))
    assert np.array_equal(s.heads["ip"]["fused_accuracy"], s.accuracy)
    assert np.array_equal(s.heads["ip"]["accuracy"], accuracy_over_time(predictions(trace, "ip"), labels))
    d = decoded(trace, g, "final", "bayes", "ip", 4.0)
    e = stable_exit(d.evidence, 1, 2.0, fused)
    doc = s.to_json()
    assert doc["decode"] == "bayes" and doc["fusion"] == {"head": "ip", "prior_weight": 4.0}
    x = doc["early_exit"]
    assert x["rule"] == "stable" and x["theta"] == 2.0 and x["start"] == 1
    assert x["exit_step_per_sample"] == e.step.tolist()
    assert x["accuracy"] == pytest.approx(np.mean([fused[t - 1, i] == labels[i] for i, t in enumerate(e.step)]))
    assert x["mean_steps"] == pytest.approx(e.step.mean())
    assert x["spikes_per_sample"] == pytest.approx(np.mean([sum(v[:t, i].sum() for v in trace.spikes.values())
                                                            for i, t in enumerate(e.step)]))
    assert x["synaptic_events_per_sample"] == pytest.approx(np.mean([3 * trace.spikes["h"][:t, i].sum()
                                                                     for i, t in enumerate(e.step)]))
    plain = summarize(trace, g.outputs, ann, labels, graph=g).to_json()
    assert plain["decode"] == "argmax" and plain["early_exit"] is None and plain["fusion"] is None
    assert plain["accuracy"] == accuracy_over_time(predictions(trace, "final"), labels).tolist()


# ------------------------------------------------------------------------------------------------ command line
class WithHead(nn.Module):
    """An MLP on digits with an intermediate-prediction head after its first layer, and a 5-class side output."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.final = nn.Linear(64, 32), nn.Linear(32, 32), nn.Linear(32, 10)
        self.ip, self.aux = nn.Linear(32, 10), nn.Linear(32, 5)

    def forward(self, x):
        a = torch.relu(self.l1(x.flatten(1)))
        return self.final(torch.relu(self.l2(a))), self.ip(a), self.aux(a)


class Outputs(nn.Module):
    """The first ``n`` outputs of ``model`` (one: a plain tensor)."""

    def __init__(self, model, n):
        super().__init__()
        self.model, self.n = model, n

    def forward(self, x):
        out = self.model(x)
        return out[:self.n] if self.n > 1 else out[0]


@pytest.fixture(scope="module")
def artifacts(digits, tmp_path_factory):
    """(with heads, without heads, data folder): the MLP trained on digits for both heads, compiled twice."""
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = WithHead()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64))
    for _ in range(10):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            final, ip, _ = model(x[idx])
            (nn.functional.cross_entropy(final, y[idx]) + 0.5 * nn.functional.cross_entropy(ip, y[idx])).backward()
            opt.step()
    d = tmp_path_factory.mktemp("anytime")
    np.savez(d / "train.npz", x=xtr[:300], y=ytr[:300])
    np.savez(d / "test.npz", x=xte[:60], y=yte[:60])
    found = []
    for name, outputs in (("heads", ["final", "ip", "aux"]), ("plain", ["final"])):
        torch.onnx.export(Outputs(model, len(outputs)).eval(), (x[:1],), str(d / f"{name}.onnx"),
                          input_names=["x"], output_names=outputs, dynamic_axes={"x": {0: "N"}}, dynamo=False)
        assert main(["compile", str(d / f"{name}.onnx"), "--calib", str(d / "train.npz"), "-o",
                     str(d / f"{name}.ncc"), "-q"]) == 0
        found.append(d / f"{name}.ncc")
    return found[0], found[1], d


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_with_bayes_and_stable_exit_reports_them(artifacts, tmp_path, capsys):
    art, _, d = artifacts
    js = tmp_path / "run.json"
    code, out, err = cli(capsys, "run", art, "--data", d / "test.npz", "--steps", 20, "--decode", "bayes",
                         "--early-exit", "stable", "--json", js, "-q")
    assert code == 0, err
    doc = json.loads(js.read_text())
    for key in ("steps", "accuracy", "ann_accuracy", "accuracy_per_output", "spikes_per_step",
                "synaptic_events_per_step", "pareto_latency", "pareto_power", "neurobench"):
        assert key in doc                                   # the existing keys stay
    assert doc["decode"] == "bayes" and doc["fusion"] == {"head": "ip", "prior_weight": 10.0}
    assert list(doc["heads"]) == ["ip"]                     # aux has 5 classes: not a head
    assert doc["heads"]["ip"]["fused_accuracy"] == doc["accuracy"]
    assert doc["heads"]["ip"]["accuracy"] == doc["accuracy_per_output"]["ip"]
    x = doc["early_exit"]
    assert x["rule"] == "stable" and x["theta"] == 0.9 and x["start"] == 1
    assert 1 <= x["mean_steps"] <= 20 and 0 <= x["accuracy"] <= 1
    assert x["mean_steps"] == pytest.approx(np.mean(x["exit_step_per_sample"]))
    assert 0 < x["spikes_per_sample"] <= sum(doc["spikes_per_step"]) + 1e-9
    assert 0 < x["synaptic_events_per_sample"] <= sum(doc["synaptic_events_per_step"]) + 1e-9
    for row in ("bayes: fused with ip, P = 10", "head ip %", "fused with ip %", "early exit (stable", "mean exit step",
                "spikes/sample to exit"):
        assert row in out


def test_run_defaults_to_argmax_and_reports_heads(artifacts, tmp_path, capsys):
    art, _, d = artifacts
    js = tmp_path / "run.json"
    code, out, err = cli(capsys, "run", art, "--data", d / "test.npz", "--steps", 10, "--early-exit", "margin",
                         "--margin", "0.2", "--exit-start", "2", "--json", js, "-q")
    assert code == 0, err
    doc = json.loads(js.read_text())
    assert doc["decode"] == "argmax" and doc["fusion"] is None
    assert doc["accuracy"] == doc["accuracy_per_output"]["final"]
    assert doc["early_exit"]["rule"] == "margin" and doc["early_exit"]["margin"] == 0.2
    assert min(doc["early_exit"]["exit_step_per_sample"]) >= 2 and "fused with ip %" in out


@pytest.mark.parametrize("extra, words", [
    (["--decode", "bayes", "--prior-weight", "-1"], "prior weight"),
    (["--early-exit", "margin", "--margin", "0"], "margin M"),
    (["--early-exit", "stable", "--exit-theta", "0"], "theta"),
    (["--early-exit", "stable", "--exit-start", "0"], "exit start"),
    (["--early-exit", "stable", "--exit-start", "4"], "exit start"),
    (["--decode", "bayes", "--head", "nope"], "no output named"),
    (["--decode", "bayes", "--head", "aux"], "5 classes"),
    (["--decode", "bayes"], "has none"),
])
def test_bad_anytime_options_exit_2_with_one_line(extra, words, artifacts, tmp_path, capsys):
    with_heads, plain, d = artifacts
    art = plain if words == "has none" else with_heads
    js = tmp_path / "r.json"
    code, _, err = cli(capsys, "run", art, "--data", d / "test.npz", "--steps", 3, "--json", js, *extra)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and words in err
    assert not js.exists()


@pytest.mark.parametrize("coding", [[], ["--coding", "phase", "--phases", "4"]])
def test_fusion_and_exit_in_integer_mode(artifacts, tmp_path, capsys, coding):
    """Generic target (integer), rate and phase coding: fusion at P = 0 is the argmax decision, exactly, and the
    exit rule runs on the integer read-outs."""
    _, _, d = artifacts
    art = tmp_path / "int.ncc"
    assert main(["compile", str(d / "heads.onnx"), "--calib", str(d / "train.npz"), "--target", "generic", "-o", str(art),
                 "-q", *coding]) == 0
    js = tmp_path / "run.json"
    code, _, err = cli(capsys, "run", art, "--data", d / "test.npz", "--steps", 12, "--decode", "bayes",
                       "--prior-weight", "0", "--early-exit", "stable", "--json", js, "-q")
    assert code == 0, err
    doc = json.loads(js.read_text())
    assert doc["accuracy"] == doc["accuracy_per_output"]["final"]
    assert doc["early_exit"]["accuracy"] > 0.5
