"""ImageNet VGG activations for perceptual, style and self-regularisation losses.

One loader for every method that needs them (SIFT cGAN: VGG-16; SAT: VGG-19). Weights are
torchvision's files, looked up in ``$TORCH_HOME/hub/checkpoints/`` (never downloaded at run time);
inputs are [0, 1] RGB, normalised with the ImageNet mean and standard deviation as torchvision's
weights expect.
"""

from __future__ import annotations

import torch
from torch import nn

from harness import DataError
from harness.checkpoints import find_weights, load_state_dict

WEIGHTS = {"vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth"}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """Frozen ``torchvision.models.<arch>().features`` returning the activations after the given indices."""

    def __init__(self, arch: str, taps: tuple[int, ...], weights: str | None = None) -> None:
        super().__init__()
        import torchvision

        wrapper = nn.Module()
        # Only the layers up to the last tap are built and loaded (the file's keys are "features.N.weight").
        wrapper.features = getattr(torchvision.models, arch)(weights=None).features[: max(taps) + 1]
        path = find_weights(WEIGHTS[arch], weights)
        state = load_state_dict(path)
        needed = set(wrapper.state_dict())
        missing = sorted(needed - set(state))
        if missing:
            raise DataError(f"{path} lacks {len(missing)} VGG weight(s) such as {missing[0]} (expected torchvision's {WEIGHTS[arch]})")
        wrapper.load_state_dict({key: state[key] for key in needed}, strict=True)
        self.layers = wrapper.features.eval().requires_grad_(False)
        self.taps = taps
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.arch, self.path = arch, path

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image - self.mean) / self.std
        out = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.taps:
                out.append(x)
        return out

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # always frozen


def gram(features: torch.Tensor) -> torch.Tensor:
    """C×C Gram matrix per image, normalised by C·H·W (Johnson et al.'s style loss)."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)
