"""`zero-padding`: the one-stream zero-padding network of Wu et al. (ICCV 2017), the SYSU-MM01 paper.

Every image becomes one grey channel placed in a 2-channel input: channel 0 for visible images,
channel 1 for infrared ones, the other channel zero. One shared network then learns
modality-specific filters in its first layer by itself (the paper's analysis). The first convolution
takes 2 channels; with ImageNet weights each input channel starts from the RGB filters summed (what
the RGB network computes on a grey image). Training is identity cross-entropy only, as in the paper,
on the same cross-modality batches as `two-stream`; the test feature is the L2-normalised BN
feature of the pooled map.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from harness import hookimpl

from .reid_training import EmbeddingMethod, trunk

PAPER = "Wu, Zheng, Yu, Gong, Lai. RGB-Infrared Cross-Modality Person Re-Identification. ICCV 2017"


class ZeroPaddingNet(nn.Module):
    def __init__(self, classes: int, backbone: str = "resnet50", init: str = "scratch") -> None:
        super().__init__()
        stem, body, channels = trunk(backbone, init)
        rgb = stem[0]
        first = nn.Conv2d(2, rgb.out_channels, rgb.kernel_size, rgb.stride, rgb.padding, bias=rgb.bias is not None)
        with torch.no_grad():
            first.weight.copy_(rgb.weight.sum(dim=1, keepdim=True).repeat(1, 2, 1, 1))
        stem[0] = first
        self.stem, self.body = stem, body
        self.bottleneck = nn.BatchNorm1d(channels)
        self.classifier = nn.Linear(channels, classes)

    @staticmethod
    def pad(images: torch.Tensor, infrared: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB → (B, 2, H, W): the grey image in its modality's channel, zeros in the other."""
        grey = images.mean(dim=1)
        padded = images.new_zeros(images.shape[0], 2, *images.shape[2:])
        padded[:, 0] = grey * (~infrared).view(-1, 1, 1)
        padded[:, 1] = grey * infrared.view(-1, 1, 1)
        return padded

    def forward(self, images: torch.Tensor, infrared: torch.Tensor):
        pooled = self.body(self.stem(self.pad(images, infrared))).mean(dim=(2, 3))
        feature = self.bottleneck(pooled)
        return (pooled, self.classifier(feature)) if self.training else feature


class ZeroPadding(EmbeddingMethod):
    """One-stream network on zero-padded 2-channel (visible | infrared) grey inputs."""

    name = "zero-padding"
    description = "Zero-padding one-stream VI-ReID baseline (Wu et al. 2017): grey image in its modality's channel of a 2-channel input; CE loss."
    paper = PAPER
    triplet = False
    model_options = ("backbone",)

    def network(self, classes: int, init: str) -> nn.Module:
        return ZeroPaddingNet(classes, self.config["backbone"], init)


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(ZeroPadding)
