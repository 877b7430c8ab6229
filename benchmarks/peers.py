"""neurocc against SpikingJelly and sinabs: accuracy over time steps and time per step, same nets and data.

    python benchmarks/peers.py [--models resnet20 mnist] [--steps 256] [--n-cifar 500] [--n-mnist 1000]
                               [--optimize 0] [--shared ../shared/data] [--workdir out/peers]

Reads the team's shared data folder: resnet20_cifar10.onnx with 500 images of the JPEG CIFAR-10 test set
(calibration on 1,000 others, seed 0: the split examples/cifar10 uses), and MNIST, on which a small CNN
(conv-BN-ReLU-avgpool x2, linear) is trained here once (cached in --workdir). Every converter gets the
same network (the graph neurocc imports, rebuilt as a torch module by neurocc/torch_module.py), the
same calibration images and the same test images, with analog input (the image every step) and an
accumulating output layer read by argmax.

* neurocc: default compile (99.9th percentile, channel-level lambdas, V0 = 0.5), reference simulator;
  with --optimize N also the Subplex-optimised network (N evaluations on the calibration images).
* SpikingJelly 2.0.0 (RateCodingRecipe): mode "99.9%" alone, and with channel_wise and half_threshold,
  run step by step (its converted model's own step mode).
* sinabs 3.1.3: from_model with IAFSqueeze, one spike per step at most (SingleSpike) and subtractive reset,
  weights normalised by sinabs.utils.normalize_weights at the 99.9th percentile. That function multiplies
  each layer's weights and bias by 1 / lambda_l, measured with the earlier layers already scaled, but never
  by lambda_{l-1}: the bias of every layer after the first, and of the output layer, which it leaves alone, is
  then too large by the product of the earlier lambdas (harmless without biases, not after BN folding), and
  shortcut paths of a ResNet are not rescaled at all. Its accuracy here is that of sinabs's own method.

Install the peers as ../shared/DEPENDENCIES.md says (they are not neurocc dependencies):
    pip install --no-deps spikingjelly==2.0.0 sinabs==3.1.3 pbr && pip install h5py loguru tensorboard nir requests

Time per step is measured on one batch (32 CIFAR or 64 MNIST images, as in issue 4) over 32 steps after a
warm-up, beside onnxruntime's forward pass of the ANN on the same batch (the physical reference: one step
does the work of one forward pass, minus sparsity). 2 CPU threads unless --threads.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "examples"))
from common import export_onnx, train  # noqa: E402
from speed import best_seconds  # noqa: E402

from neurocc.backends.reference.simulator import Simulator  # noqa: E402
from neurocc.torch_module import ann_module  # noqa: E402
from neurocc.decode import predictions as decoded_predictions  # noqa: E402
from neurocc.frontend.onnx import load_onnx  # noqa: E402
from neurocc.options import CompileOptions  # noqa: E402
from neurocc.pipeline import CompileContext, compile_graph  # noqa: E402
from neurocc.report import table  # noqa: E402

REPORT_STEPS = (16, 32, 64, 128, 256)
CIFAR_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
CIFAR_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def mnist_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def mnist_task(args):
    d = np.load(Path(args.shared) / "mnist.npz", allow_pickle=False)
    xtr = d["x_train"][:, None].astype(np.float32) / 255
    xte = d["x_test"][:, None].astype(np.float32) / 255
    path = Path(args.workdir) / "mnist_cnn.onnx"
    if not path.is_file():
        print("training the MNIST CNN (20,000 images, 3 epochs) ...", flush=True)
        model = train(mnist_cnn(), xtr[10000:30000], d["y_train"][10000:30000], epochs=3)
        export_onnx(model, xtr, path)
    return dict(name="MNIST CNN", path=path, calib=xtr[:1000], x=xte[:args.n_mnist], y=d["y_test"][:args.n_mnist],
                timing_batch=64)


def cifar_task(args):
    d = np.load(Path(args.shared) / "cifar10_test_jpeg_lossy.npz", allow_pickle=False)
    x = (d["x_test"].transpose(0, 3, 1, 2).astype(np.float32) / 255 - CIFAR_MEAN) / CIFAR_STD
    idx = np.random.default_rng(0).permutation(len(x))
    test = idx[1000:1000 + args.n_cifar]
    return dict(name="ResNet-20 CIFAR-10", path=Path(args.shared) / "models" / "resnet20_cifar10.onnx",
                calib=x[idx[:1000]], x=x[test], y=d["y_test"][test], timing_batch=32)


def stepwise(model_for, reset) -> tuple:
    """(predictions(x, steps), seconds_per_step(batch, steps)) for a peer's model, ``model_for(batch size)``,
    called once per step with the image, its output summed over steps and read by argmax;
    ``reset(batch size)`` clears its state."""
    @torch.no_grad()
    def run(batch, steps, keep):
        reset(len(batch))
        xb, total, preds = torch.from_numpy(batch), 0, []
        for _ in range(steps):
            total = total + model_for(len(batch))(xb)
            if keep:
                preds.append(total.argmax(1).numpy())
        return preds

    def predictions(x, steps):
        return np.concatenate([np.stack(run(x[i:i + 50], steps, True)) for i in range(0, len(x), 50)], axis=1)

    def step_seconds(batch, steps):
        return best_seconds(lambda: run(batch, steps, False), 3) / steps
    return predictions, step_seconds


# ------------------------------------------------------------------------------------------ neurocc

def neurocc_method(task, optimize: int):
    graph, _ = load_onnx(task["path"])
    t0 = time.perf_counter()
    result = compile_graph(graph, CompileContext(CompileOptions(optimize=optimize), calib_x=task["calib"]))
    compile_s = time.perf_counter() - t0
    sim = Simulator(result.snn)
    out = result.snn.outputs[0]

    def predictions(x, steps):
        return decoded_predictions(sim.run(x, steps, batch_size=50), out)

    def step_seconds(batch, steps):
        return best_seconds(lambda: sim.run(batch, steps, batch_size=len(batch)), 3) / steps
    label = "neurocc" + (f" --optimize {optimize}" if optimize else "")
    return label, predictions, step_seconds, f"compile + calibrate {compile_s:.1f} s", result.ann


# ------------------------------------------------------------------------------------- SpikingJelly

def spikingjelly_method(task, ann, **recipe):
    from spikingjelly.activation_based import ann2snn, functional
    loader = [(torch.from_numpy(task["calib"][i:i + 100]), torch.zeros(100)) for i in range(0, len(task["calib"]), 100)]
    t0 = time.perf_counter()
    snn = ann2snn.Converter(recipe=ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%", **recipe)).convert(
        ann_module(ann))
    convert_s = time.perf_counter() - t0

    predictions, step_seconds = stepwise(lambda batch_size: snn, lambda batch_size: functional.reset_net(snn))
    label = "SpikingJelly 99.9%" + (" + channel-wise + half threshold" if recipe else "")
    return label, predictions, step_seconds, f"convert {convert_s:.1f} s"


# -------------------------------------------------------------------------------------------- sinabs

def _relu_param_pairs(model) -> tuple[list, list]:
    """(ReLU module names, the weighted module feeding each) in graph order, for sinabs's normalisation."""
    modules = dict(model.named_modules())
    relus, params = [], []
    for node in model.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.ReLU):
            src = node.args[0]
            while not (src.op == "call_module" and isinstance(modules[src.target], (nn.Conv2d, nn.Linear))):
                src = next(a for a in src.args if isinstance(a, torch.fx.Node))
            relus.append(node.target)
            params.append(src.target)
    return relus, params


def sinabs_method(task, ann):
    import sinabs
    import sinabs.activation as sa
    from sinabs.utils import normalize_weights
    model = ann_module(ann)
    t0 = time.perf_counter()
    relus, params = _relu_param_pairs(model)
    normalize_weights(model, torch.from_numpy(task["calib"]), relus, params, percentile=99.9)
    convert_s = time.perf_counter() - t0
    nets = {}

    def net(batch_size):
        if batch_size not in nets:
            nets[batch_size] = sinabs.from_model(model, batch_size=batch_size, spike_fn=sa.SingleSpike,
                                                 reset_fn=sa.MembraneSubtract()).spiking_model
        return nets[batch_size]

    def reset(batch_size):
        for m in net(batch_size).modules():
            if hasattr(m, "reset_states"):
                m.reset_states()
    predictions, step_seconds = stepwise(net, reset)
    return "sinabs 99.9% (SingleSpike)", predictions, step_seconds, f"normalise {convert_s:.1f} s"


# ------------------------------------------------------------------------------------------- driver

def ort_session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess, sess.get_inputs()[0].name


def evaluate(task, args) -> str:
    steps = args.steps
    shown = [t for t in REPORT_STEPS if t <= steps]
    sess, name = ort_session(task["path"])
    ann_pred = np.concatenate([sess.run(None, {name: task["x"][i:i + 100]})[0].argmax(1)
                               for i in range(0, len(task["x"]), 100)])
    ann_acc = 100 * float(np.mean(ann_pred == task["y"]))
    label, pred, step_s, note, ann = neurocc_method(task, 0)
    methods = [(label, pred, step_s, note)]
    if args.optimize:
        methods.append(neurocc_method(task, args.optimize)[:4])
    for make in (lambda: spikingjelly_method(task, ann),
                 lambda: spikingjelly_method(task, ann, channel_wise=True, half_threshold=True),
                 lambda: sinabs_method(task, ann)):
        try:
            methods.append(make())
        except ImportError as e:
            print(f"note: peer skipped ({e}); install it as the docstring says", flush=True)
    timing = np.ascontiguousarray(task["x"][:task["timing_batch"]])
    rows, forwards = [], []
    for label, pred, step_s, note in methods:
        t0 = time.perf_counter()
        acc = 100 * np.mean(pred(task["x"], steps) == task["y"][None], axis=1)
        print(f"{label}: {len(task['x'])} images x {steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
        forwards.append(best_seconds(lambda: sess.run(None, {name: timing}), 20))   # again beside each method
        rows.append([label] + [f"{acc[t - 1]:.1f}" for t in shown] + [step_s(timing, 32), note])
    fwd = min(forwards)        # the fastest forward seen: the strictest reference
    for row in rows:
        row[-2:] = [f"{1e3 * row[-2]:.2f}", f"{row[-2] / fwd:.2f}", row[-1]]
    rows.insert(0, ["ANN (onnxruntime)"] + [f"{ann_acc:.1f}"] * len(shown) +
                [f"{1e3 * fwd:.2f}", "1.00", "forward pass, best of all measurements"])
    header = ["method"] + [f"T={t}" for t in shown] + [f"ms/step (batch {len(timing)})", "x ANN forward", "note"]
    return (f"{task['name']}: accuracy (%) on {len(task['x'])} test images, calibration on {len(task['calib'])} "
            f"others\n" + table(header, rows, align="l" + "r" * (len(shown) + 2) + "l"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=("resnet20", "mnist"), default=["resnet20", "mnist"])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--n-cifar", type=int, default=500)
    ap.add_argument("--n-mnist", type=int, default=1000)
    ap.add_argument("--optimize", type=int, default=0, help="also run neurocc --optimize with this budget")
    ap.add_argument("--shared", default=str(ROOT.parent.parent / "shared" / "data"))
    ap.add_argument("--workdir", default="out/peers")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    tasks = {"resnet20": cifar_task, "mnist": mnist_task}
    print(f"{args.threads} CPU threads, torch {torch.__version__}, onnxruntime {ort.__version__}")
    for key in args.models:
        print(evaluate(tasks[key](args), args), flush=True)


if __name__ == "__main__":
    main()
