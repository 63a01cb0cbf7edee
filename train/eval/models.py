"""The attacker and utility models of the protocol, trained from scratch (torch).

- :class:`SmallResNet` -- a small ResNet-style CNN (three residual stages) for
  classification (attackers, fixed classifiers) or regression (head pose).
- :class:`LinearPixels` -- a linear model on the pixels (logistic regression).

Both take uint8-derived float input x01 (NCHW in [0, 1]) and standardize it
inside with fixed constants, so any filter's output can be fed unchanged.

Example::

    import torch
    from privsdk.train.eval.models import build_model
    net = build_model("cnn", outputs=2, image_size=(64, 64))
    logits = net(torch.rand(8, 3, 64, 64))            # 8×2
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from privsdk.errors import InputError

# "logistic" is the same linear model as "linear", fit to convergence instead of by SGD (training.fit_logistic)
ARCHITECTURES = ("cnn", "linear", "logistic")


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class SmallResNet(nn.Module):
    """Stem + three residual stages (stride 2 each) + global average pool + linear head."""

    def __init__(self, outputs: int, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stages = nn.Sequential(_Block(w, w, 2), _Block(w, 2 * w, 2), _Block(2 * w, 4 * w, 2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w, outputs))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        x = (x01 - 0.5) / 0.25
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3), keepdim=True))


class LinearPixels(nn.Module):
    """A linear map from the (centred) pixels to the outputs: logistic regression for classes."""

    def __init__(self, outputs: int, image_size: Tuple[int, int]) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * image_size[0] * image_size[1], outputs)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.linear(((x01 - 0.5) / 0.25).flatten(1))


def build_model(arch: str, outputs: int, image_size: Tuple[int, int] = (64, 64), width: int = 16) -> nn.Module:
    """An attacker / utility model: ``arch`` in :data:`ARCHITECTURES`."""
    if arch == "cnn":
        return SmallResNet(outputs, width=width)
    if arch in ("linear", "logistic"):
        return LinearPixels(outputs, image_size)
    raise InputError(f"model architecture {arch!r}: expected one of {ARCHITECTURES}")
