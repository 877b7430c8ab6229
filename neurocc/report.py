"""Tables and plots for the command line."""
from __future__ import annotations

import io

import numpy as np

from neurocc.evaluate import RunSummary


def table(headers: list, rows: list, align: str | None = None) -> str:
    """A plain-text table; ``align`` has one 'l' or 'r' per column (numbers right by default)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)
    def fmt(r):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)).rstrip()
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def report_steps(total: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to ``total``, always ending with ``total``."""
    steps, base = [], 1
    while base <= total:
        steps += [s for s in (base, 2 * base, 5 * base) if s <= total]
        base *= 10
    return sorted(set(steps + [total]))


def run_table(s: RunSummary, steps: list[int], reference: str = "ANN") -> str:
    """Accuracy (or agreement), its difference from ``reference``'s and the cumulative spikes and events at ``steps``."""
    ref = "accuracy" if s.reference == "labels" else f"agreement with {reference}"
    cum_events = np.cumsum(s.events_per_step)
    cum_spikes = np.cumsum(s.spikes_per_step)
    rows = [[t, f"{100 * s.accuracy[t - 1]:.2f}", f"{100 * (s.accuracy[t - 1] - s.ann_accuracy):+.2f}",
             f"{cum_spikes[t - 1]:,.0f}", f"{cum_events[t - 1]:,.0f}"] for t in steps]
    return table(["step", f"SNN {ref} %", f"vs {reference} (pt)", "spikes/sample", "syn. events/sample"], rows)


def plot_run(s: RunSummary, title: str) -> bytes:
    """PNG: accuracy over time beside the ANN's, and synaptic events per step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(1, s.steps + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(t, 100 * s.accuracy, label="SNN")
    ax1.axhline(100 * s.ann_accuracy, color="k", ls="--", lw=1, label=f"ANN {100 * s.ann_accuracy:.2f} %")
    ax1.set_xlabel("time step")
    ax1.set_ylabel("accuracy %" if s.reference == "labels" else "agreement with ANN %")
    ax1.set_xscale("log")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower right")
    ax1.set_title(title)
    ax2.plot(t, s.events_per_step, color="tab:orange")
    ax2.set_xlabel("time step")
    ax2.set_ylabel("synaptic events per step per sample")
    ax2.grid(alpha=0.3)
    ax2.set_title(f"Pareto latency {s.pareto_latency:.2f}, power {s.pareto_power:.3g}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def plot_energy(estimates: list, title: str) -> bytes:
    """PNG: accuracy against cumulative energy per inference (log scale), one curve per target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for est in estimates:
        ax.plot(1e3 * est.energy_per_step, 100 * est.accuracy, label=est.name)
    ann = estimates[0].json["ann_accuracy"]
    ax.axhline(100 * ann, color="k", ls="--", lw=1, label=f"ANN {100 * ann:.2f} %")
    ax.axhline(100 * (ann - 0.01), color="k", ls=":", lw=1, label="ANN - 1 pt")
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference so far (mJ)")
    ax.set_ylabel("accuracy %" if estimates[0].json["accuracy_reference"] == "labels" else "agreement with ANN %")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
