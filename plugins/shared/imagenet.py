"""ImageNet-initialised torchvision backbones from local weight files, for the re-id methods.

One place decides where ImageNet weights come from: torchvision's own file name in
``$TORCH_HOME/hub/checkpoints/`` (never a download). ``init="scratch"`` is the explicit way to train
without them; a missing file is an error that says where to put it, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from harness import DataError, UsageError
from harness.checkpoints import find_weights, load_state_dict

RESNET50_FILE = "resnet50-0676ba61.pth"
"""torchvision ``ResNet50_Weights.IMAGENET1K_V1`` (the weights the 2017-2021 re-id papers start from)."""
RESNET18_FILE = "resnet18-f37072fd.pth"
"""torchvision ``ResNet18_Weights.IMAGENET1K_V1``."""
INITS = ("imagenet", "scratch")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet50(init: str) -> nn.Module:
    """A torchvision ResNet-50, with the local ImageNet weights (``init="imagenet"``) or random ones."""
    from torchvision.models import resnet50 as build

    return _resnet(build, RESNET50_FILE, init)


def resnet18(init: str) -> nn.Module:
    """A torchvision ResNet-18, with the local ImageNet weights (``init="imagenet"``) or random ones."""
    from torchvision.models import resnet18 as build

    return _resnet(build, RESNET18_FILE, init)


def _resnet(build: Callable[..., nn.Module], filename: str, init: str) -> nn.Module:
    if init not in INITS:
        raise UsageError(f"backbone init must be one of {', '.join(INITS)}; got {init!r}")
    model = build(weights=None)
    if init == "imagenet":
        try:
            path = find_weights(filename)
        except DataError as exc:
            raise DataError(f"{exc} (ImageNet weights for training; or train from scratch with --option init=scratch)") from None
        model.load_state_dict(load_state_dict(path))
    return model
