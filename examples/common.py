"""Helpers the examples share: training a small CNN in PyTorch and exporting it to ONNX with BN kept."""
from __future__ import annotations

import subprocess
import sys

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
