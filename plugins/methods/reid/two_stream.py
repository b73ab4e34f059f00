"""`two-stream`: the AGW-style two-stream visible-infrared baseline (Ye et al., TPAMI 2021).

Each modality has its own stem (ResNet conv1 + BN + ReLU + max-pool); layer1…layer4 are shared, with
the last stride 1. Features are globally pooled (average, or GeM with p = 3 as an option), pass a
BNNeck (BatchNorm1d with a frozen bias) whose output is the test feature (L2-normalised) and feeds
a bias-free identity classifier. Non-local attention blocks after blocks 2, 3 of layer2 and 3, 4, 5 of
layer3 (AGW's placement) are an option. Training: identity cross-entropy + weighted regularised
triplet on cross-modality PK batches (`reid_training`).

``backbone=small`` (a 4-stage plain CNN, from scratch) is the documented CPU setting for the
synthetic sets; ``resnet50`` with ImageNet weights from ``$TORCH_HOME/hub/checkpoints`` is the
paper's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness import Option, UsageError, hookimpl

from .reid_training import EmbeddingMethod, trunk

PAPER = "Ye, Shen, Lin, Xiang, Shao, Hoi. Deep Learning for Person Re-identification: A Survey and Outlook (AGW). TPAMI 2021"


class NonLocal(nn.Module):
    """Embedded dot-product non-local block with a zero-initialised BN on its output (AGW)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = channels // 2
        self.g, self.theta, self.phi = (nn.Conv2d(channels, inner, 1) for _ in range(3))
        self.W = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)
        theta = self.theta(x).flatten(2).transpose(1, 2)
        phi = self.phi(x).flatten(2)
        attention = theta @ phi / phi.shape[-1]
        y = (attention @ g).transpose(1, 2).reshape(b, -1, h, w)
        return self.W(y) + x


def gem(x: torch.Tensor, p: float = 3.0, eps: float = 1e-12) -> torch.Tensor:
    """Generalised-mean pooling over H, W."""
    return x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class TwoStreamNet(nn.Module):
    def __init__(self, classes: int, backbone: str = "resnet50", init: str = "scratch", pooling: str = "avg", non_local: bool = False) -> None:
        super().__init__()
        stem, body, channels = trunk(backbone, init)
        self.visible = stem
        self.infrared = trunk(backbone, init)[0]
        if init == "imagenet":  # both stems start from the same ImageNet weights
            self.infrared.load_state_dict(self.visible.state_dict())
        if non_local:
            if backbone == "small":
                raise UsageError("non_local needs a ResNet backbone")
            body = _with_non_local(body)
        self.body = body
        self.pooling = pooling
        self.bottleneck = nn.BatchNorm1d(channels)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(channels, classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, images: torch.Tensor, infrared: torch.Tensor) -> Any:
        parts = []
        for flag, module in ((False, self.visible), (True, self.infrared)):
            chosen = infrared == flag
            if bool(chosen.any()):
                parts.append((chosen, module(images[chosen])))
        stem = parts[0][1].new_empty(images.shape[0], *parts[0][1].shape[1:])
        for chosen, out in parts:
            stem[chosen] = out
        maps = self.body(stem)
        pooled = gem(maps) if self.pooling == "gem" else maps.mean(dim=(2, 3))
        feature = self.bottleneck(pooled)
        if self.training:
            return pooled, self.classifier(feature)
        return feature


def _with_non_local(body: nn.Sequential) -> nn.Sequential:
    """Insert non-local blocks after blocks 2, 3 of layer2 and 3, 4, 5 of layer3 (AGW ``non_layers=[0,2,3,0]``)."""
    layers = list(body)
    for position, count in ((1, 2), (2, 3)):
        blocks = list(layers[position])
        after = {len(blocks) - 1 - i for i in range(count)}
        channels = blocks[-1].conv3.out_channels if hasattr(blocks[-1], "conv3") else blocks[-1].conv2.out_channels
        new = []
        for index, block in enumerate(blocks):
            new.append(block)
            if index in after:
                new.append(NonLocal(channels))
        layers[position] = nn.Sequential(*new)
    return nn.Sequential(*layers)


class TwoStream(EmbeddingMethod):
    """AGW-style two-stream network: modality-specific stems, shared ResNet body, BNNeck."""

    name = "two-stream"
    description = "Two-stream VI-ReID baseline (AGW style): modality-specific stems, shared ResNet-50, BNNeck; CE + WRT on cross-modality PK batches."
    paper = PAPER
    model_options = ("backbone", "pooling", "non_local")
    options = EmbeddingMethod.options + (
        Option("pooling", "avg", "global pooling: avg or gem (AGW)", choices=("avg", "gem")),
        Option("non_local", False, "AGW non-local blocks in layer2/layer3"),
    )

    def network(self, classes: int, init: str) -> nn.Module:
        return TwoStreamNet(classes, self.config["backbone"], init, self.config["pooling"], self.config["non_local"])


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(TwoStream)
