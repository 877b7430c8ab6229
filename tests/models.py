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


def torch_models():
    def randomize_bn(m):
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                with torch.no_grad():
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.3, 0.3)
        return m.eval()
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
