"""Small random-weight torch models the tests share (exported to ONNX by each test as it needs)."""
from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(10 * 6 * 6, 5)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        return self.fc(torch.flatten(nn.functional.max_pool2d(y, 2), 1))


def randomize_bn(m: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics and affine parameters (a fresh BatchNorm is the identity); eval mode."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
    return m.eval()


def torch_models():
    torch.manual_seed(0)
    return {
        "resnet_block_bn": randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                                      ResidualBlock(8), ResidualBlock(8), nn.AdaptiveAvgPool2d(1),
                                                      nn.Flatten(), nn.Linear(8, 10))),
        "vgg_maxpool_dropout": randomize_bn(nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, stride=2),
            nn.ReLU(), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 2 * 2, 10))),
        "inception_concat": Inception().eval(),
        "relu6_avgpool": nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU6(), nn.AvgPool2d(2), nn.Flatten(),
                                       nn.Linear(8 * 5 * 5, 4)).eval(),
    }


# ------------------------------------------------------------------------------------------------
# The CNN families users deploy, small (16 x 16 x 3 inputs, random weights), for the conversion matrix


def _conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block; ``shortcut``: "A" (CIFAR ResNets: subsample and zero-pad the channels) or "B"
    (a 1 x 1 convolution and batch norm) when the shape changes."""

    def __init__(self, cin, cout, stride, shortcut):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, stride=stride), _conv_bn(cout, cout, act=None))
        self.shortcut_kind = shortcut if (stride != 1 or cin != cout) else None
        self.pad = (cout - cin) // 2
        self.project = _conv_bn(cin, cout, k=1, stride=stride, act=None) if self.shortcut_kind == "B" else None

    def forward(self, x):
        if self.shortcut_kind == "A":
            skip = nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        elif self.shortcut_kind == "B":
            skip = self.project(x)
        else:
            skip = x
        return torch.relu(self.body(x) + skip)


class InvertedResidual(nn.Module):
    """MobileNetV2: 1 x 1 expansion + ReLU6, 3 x 3 depthwise + ReLU6, linear 1 x 1 projection; residual when
    the shape is kept (no activation after the Add: the linear bottleneck)."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(_conv_bn(cin, hidden, k=1, act=nn.ReLU6),
                                  _conv_bn(hidden, hidden, stride=stride, groups=hidden, act=nn.ReLU6),
                                  _conv_bn(hidden, cout, k=1, act=None))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class Fire(nn.Module):
    """SqueezeNet's fire module: a 1 x 1 squeeze, then 1 x 1 and 3 x 3 expansions concatenated."""

    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


def cnn_families() -> dict:
    """VGG, ResNet (shortcut options A and B), MobileNetV2 and SqueezeNet in miniature, for 3 x 16 x 16 input."""
    torch.manual_seed(1)
    return {
        "vgg": randomize_bn(nn.Sequential(
            _conv_bn(3, 8), _conv_bn(8, 8), nn.MaxPool2d(2), _conv_bn(8, 16), _conv_bn(16, 16), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))),
        "resnet_a": randomize_bn(nn.Sequential(
            _conv_bn(3, 8), BasicBlock(8, 8, 1, "A"), BasicBlock(8, 16, 2, "A"), BasicBlock(16, 16, 1, "A"),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))),
        "resnet_b": randomize_bn(nn.Sequential(
            _conv_bn(3, 8), BasicBlock(8, 8, 1, "B"), BasicBlock(8, 16, 2, "B"), BasicBlock(16, 16, 1, "B"),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))),
        "mobilenet_v2": randomize_bn(nn.Sequential(
            _conv_bn(3, 8, stride=2, act=nn.ReLU6), InvertedResidual(8, 8, 1, 1), InvertedResidual(8, 12, 2, 4),
            InvertedResidual(12, 12, 1, 4), _conv_bn(12, 32, k=1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(32, 10))),
        "squeezenet": nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(16, 4, 8),
            Fire(16, 4, 8), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(16, 8, 16), nn.Dropout(0.5),
            nn.Conv2d(32, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval(),
    }



@torch.no_grad()
def data_init(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Data-dependent initialisation (LSUV, Mishkin & Matas 2016): each Conv2d/Linear in turn is scaled (and
    its bias shifted) so its outputs have mean 0 and variance 1 per channel on ``x``; then the batch norms'
    statistics are those of ``x``. A random network's signal then survives its depth (features vary with the
    input rather than collapsing to a constant), as a trained network's do."""
    model.eval()
    for layer in [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]:
        seen = []
        hook = layer.register_forward_hook(lambda mod, inp, out: seen.append(out))
        model(x)
        hook.remove()
        axes = (0, 2, 3) if seen[0].dim() == 4 else (0,)
        mean, std = seen[0].mean(dim=axes), seen[0].std(dim=axes).clamp_min(1e-6)
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        layer.weight /= std.reshape(shape)
        if layer.bias is not None:
            layer.bias.copy_((layer.bias - mean) / std)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None                      # a cumulative average over the one batch
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    model(x)
    return model.eval()
