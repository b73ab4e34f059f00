"""Building blocks that Hi-CMD and UNIT both take from MUNIT's ``networks.py`` (same maths, same
checkpoint keys), kept once here; each method keeps its own convolution blocks, which differ (Hi-CMD:
LeakyReLU 0.3 and AdaIN; UNIT: configurable padding and activation)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class LayerNorm(nn.Module):
    """MUNIT's layer norm: per sample over (C, H, W), divided by (unbiased std + eps), then a per-channel
    affine (``gamma`` initialised uniform in [0, 1), ``beta`` zero)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.empty(channels).uniform_())
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        x = (x - flat.mean(1).view(shape)) / (flat.std(1).view(shape) + self.eps)
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class MultiScalePatches(nn.Module):
    """MUNIT's multi-scale discriminator frame (``MsImageDis``): one patch network per scale, the input
    average-pooled (3×3/2, padding 1, padding excluded) between scales; returns every scale's map."""

    def __init__(self, cnns: Iterable[nn.Module]) -> None:
        super().__init__()
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.cnns = nn.ModuleList(cnns)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for cnn in self.cnns:
            outputs.append(cnn(x))
            x = self.downsample(x)
        return outputs
