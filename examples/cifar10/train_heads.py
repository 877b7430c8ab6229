"""A CIFAR-10 ResNet with intermediate-prediction heads (bayesian-fusion §3.2, eq. 19-21), for anytime inference.

    python examples/cifar10/train_heads.py [--data ../shared/data/cifar10_test_jpeg_lossy.npz] [--out out/cifar]
                                           [--depth 14] [--epochs 60] [--heads layer1 layer2]

The only CIFAR-10 images in the shared data folder are the 10,000 JPEG-degraded test images (see
../shared/data/SOURCES.md), so this trains on 8,000 of them and tests on the other 2,000. That file is sorted by
class (airplane 0-999, automobile 1000-1999, ...): its first 8,000 images are classes 0-7 only and its last
2,000 are ship and truck. So the split is the first 8,000 / last 2,000 of a seeded permutation (numpy
``default_rng(--seed)``), which leaves every class in both parts (about 800 / 200 each).

The network is the CIFAR ResNet of He et al. (2016) §4.2: a 3×3 conv of 16 channels, three stages of
(depth − 2)/6 basic residual blocks (conv-BN-ReLU-conv-BN, + shortcut, then ReLU) of 16, 32 and 64 channels at
32, 16 and 8 pixels, stride-2 convolutions between stages with a 1×1 stride-2 conv + BN on the shortcut
(option B), global average pooling and a linear classifier. A GAP + linear head sits after each of ``--heads``
(default: after stage 1 and after stage 2; "layer2.0" etc. name a single block), trained with the network on
loss_final + Σ τ_h(e)·loss_h, τ_h rising from 0.01 to the head's cost ratio C_h (neurocc.train). SGD with
Nesterov momentum and a cosine learning rate; random crop (4 pixels of zero padding in normalised space, i.e.
the mean colour) and horizontal flip augment the training batches, done by a first module of the network that
acts only in training mode, so the exported ONNX has no trace of it. Writes

    cifar_heads.onnx   output 0 "logits" (the final classifier), then one output per head ("head_layer1", ...)
    calib.npz          x: --calib-size of the 8,000 training images; y: their labels
    test.npz           x, y: the 2,000 held-out images

with x float32 N×3×32×32, scaled to [0, 1] and normalised by the CIFAR-10 mean (0.4914, 0.4822, 0.4465) and
std (0.247, 0.243, 0.261) per channel, so no --input-scale/--mean/--std is needed at compile time. Prints C per
head, the ANN's test accuracy of the final output and of each head, and the training time. Then, for example:

    neurocc compile OUT/cifar_heads.onnx -o OUT/art --calib OUT/calib.npz
    neurocc run OUT/art --data OUT/test.npz --limit 1000 --steps 128 --decode bayes --json OUT/run.json
"""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
from common import parse_training_args, train_heads_and_export  # noqa: E402
WIDTHS = (16, 32, 64)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.247, 0.243, 0.261)
TRAIN_SIZE = 8000


class Augment(nn.Module):
    """Random crop with ``pad`` pixels of zero padding and random horizontal flip, per sample, in training mode
    only: in eval mode (accuracies, cost ratios, the ONNX export) it hands its input through untouched."""

    def __init__(self, pad: int = 4):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n, c, h, w = x.shape
        padded = nn.functional.pad(x, (self.pad,) * 4)
        dy = torch.randint(0, 2 * self.pad + 1, (n, 1))
        dx = torch.randint(0, 2 * self.pad + 1, (n, 1))
        rows = dy + torch.arange(h)                                       # n × h
        cols = dx + torch.arange(w)                                       # n × w
        flip = torch.rand(n, 1) < 0.5
        cols = torch.where(flip, cols.flip(1), cols)
        return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + shortcut, then ReLU (its own module, so the block's output is the post-add ReLU
    and a head on the block reads the spikes of that layer after conversion)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


def cifar_resnet(depth: int = 8, classes: int = 10) -> nn.Sequential:
    """ResNet-``depth`` (depth = 6n + 2): stem, layer1..layer3 of n blocks each, pool, fc."""
    if depth < 8 or (depth - 2) % 6:
        raise SystemExit(f"--depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
    n = (depth - 2) // 6
    stages, cin = [], WIDTHS[0]
    for i, cout in enumerate(WIDTHS):
        blocks = [BasicBlock(cin if j == 0 else cout, cout, 2 if i > 0 and j == 0 else 1) for j in range(n)]
        stages.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        cin = cout
    stem = [("augment", Augment()), ("conv", nn.Conv2d(3, WIDTHS[0], 3, padding=1, bias=False)),
            ("bn", nn.BatchNorm2d(WIDTHS[0])), ("relu", nn.ReLU())]
    tail = [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(WIDTHS[-1], classes))]
    model = nn.Sequential(OrderedDict(stem + stages + tail))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def images(x: np.ndarray) -> np.ndarray:
    """uint8 N×32×32×3 RGB → float32 N×3×32×32, scaled to [0, 1] and normalised by the CIFAR-10 mean/std."""
    x = x.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return ((x - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10_test_jpeg_lossy.npz"),
                    help="npz with x_test (uint8 N×32×32×3 RGB) and y_test")
    ap.add_argument("--out", default="out/cifar", help="folder for the ONNX model and the data files")
    ap.add_argument("--depth", type=int, default=14, help="ResNet depth 6n + 2 (14: two blocks per stage)")
    ap.add_argument("--heads", nargs="+", default=["layer1", "layer2"], help="blocks to attach heads to")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    args, out = parse_training_args(ap, epochs=60, batch_size=128, lr=0.1, calib_size=2000)

    with np.load(args.data, allow_pickle=False) as d:
        x_all, y_all = images(d["x_test"]), d["y_test"].astype(np.int64)
    order = np.random.default_rng(args.seed).permutation(len(x_all))    # the file is sorted by class
    train, test = order[:TRAIN_SIZE], order[TRAIN_SIZE:]
    x_train, y_train, x_test, y_test = x_all[train], y_all[train], x_all[test], y_all[test]
    print(f"{len(x_train)} training and {len(x_test)} test images; per class "
          f"{np.bincount(y_train, minlength=10).tolist()} / {np.bincount(y_test, minlength=10).tolist()}")

    train_heads_and_export(cifar_resnet(args.depth), args.heads, (x_train, y_train, x_test, y_test), out, "cifar_heads",
                           args.calib_size, args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           optimizer="sgd", weight_decay=args.weight_decay)

if __name__ == "__main__":
    main()
