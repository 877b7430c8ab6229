"""Helpers the examples share: training a small CNN in PyTorch and exporting it to ONNX with BN kept."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


def small_cnn(in_channels: int, side: int, classes: int = 10, width: int = 16) -> nn.Module:
    """conv-BN-ReLU x2, average pooling, linear: the shape of network the examples convert."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * width * (side // 2) ** 2, classes))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch: int = 64, lr: float = 2e-3,
          seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export_onnx(model: nn.Module, sample: np.ndarray, path) -> None:
    """Legacy exporter (dynamo=False): keeps BatchNormalization nodes for neurocc's own folding pass."""
    torch.onnx.export(model.eval(), torch.from_numpy(sample[:1]), str(path), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                      dynamo=False, do_constant_folding=False)


def neurocc(*args: str) -> None:
    """Run the neurocc command line as a user would; stop the example if it fails."""
    cmd = [sys.executable, "-m", "neurocc", *map(str, args)]
    print("$ neurocc " + " ".join(map(str, args)), flush=True)
    subprocess.run(cmd, check=True)


def train_heads_and_export(network: nn.Module, blocks: list, data: tuple, out, name: str, calib_size: int,
                           seed: int, **training) -> None:
    """The examples' anytime recipe (neurocc.train): add a GAP + linear head at each of ``blocks``, train with
    the eq. 19-21 schedule, print each head's C and every output's test accuracy, and write ``name``.onnx,
    calib.npz (``calib_size`` training images with labels) and test.npz into ``out``.
    ``data`` = (x_train, y_train, x_test, y_test), already scaled; ``training`` goes to ``train_with_heads``."""
    import time

    from neurocc.train import accuracies, add_heads, export_onnx as export_with_heads, head_cost_ratio, head_name
    from neurocc.train import train_with_heads

    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)                             # the initial weights, heads included
    model = add_heads(network, blocks, x_train[:2])
    ratios = {head_name(b): head_cost_ratio(model, b, x_train[:1]) for b in blocks}
    for h, c in ratios.items():
        print(f"C({h}) = {c:.4f}  (MACs up to the head's output / MACs of the network, eq. 21)")
    start = time.perf_counter()
    train_with_heads(model, x_train, y_train, cost_ratios=ratios, seed=seed, progress=True, **training)
    print(f"training: {training['epochs']} epochs in {time.perf_counter() - start:.0f} s on "
          f"{torch.get_num_threads()} thread(s)")
    for output, acc in accuracies(model, x_test, y_test).items():
        print(f"ANN test accuracy, {output}: {100 * acc:.2f} %")
    export_with_heads(model, out / f"{name}.onnx", x_test[:1])
    calib = np.random.default_rng(seed).choice(len(x_train), calib_size, replace=False)
    np.savez(out / "calib.npz", x=x_train[calib], y=y_train[calib])
    np.savez(out / "test.npz", x=x_test, y=y_test)
    print(f"wrote {out / f'{name}.onnx'}, {out / 'calib.npz'}, {out / 'test.npz'}")


def parse_training_args(ap: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float,
                        calib_size: int) -> tuple[argparse.Namespace, Path]:
    """Add the options every training example shares, parse, set torch's threads and make --out: (args, out)."""
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--calib-size", type=int, default=calib_size, help="training images saved for calibration")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args, out
