"""The LPIPS v0.1 AlexNet network (Zhang et al., CVPR 2018): the `lpips` metric scores with it and GH-BPT's
patch perceptual loss trains with it, so it lives in the shared layer. See `metrics/lpips.py` for the maths.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from harness import DataError
from harness.checkpoints import load_state_dict

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_FILE = "lpips_v0.1_alex.pth"
LPIPS_ENV = "HARNESS_LPIPS_WEIGHTS"
SHIFT, SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)
CHANNELS = (64, 192, 384, 256, 256)
TAPS = (1, 4, 7, 9, 11)
"""Indices of torchvision's ``alexnet().features`` whose outputs (relu1-relu5) LPIPS compares."""


class LPIPSAlex(nn.Module):
    """AlexNet ``features`` up to relu5 plus the five lin layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    @classmethod
    def from_files(cls, alexnet: Path, lins: Path) -> "LPIPSAlex":
        net = cls()
        backbone, linear = load_state_dict(alexnet), load_state_dict(lins)
        state = {}
        for key in net.features.state_dict():
            if f"features.{key}" not in backbone:
                raise DataError(f"{alexnet} is not a torchvision AlexNet state dict (no features.{key})")
            state[f"features.{key}"] = backbone[f"features.{key}"]
        for index in range(len(CHANNELS)):
            key = f"lin{index}.model.1.weight"
            if key not in linear:
                raise DataError(f"{lins} is not the lpips package's v0.1 alex.pth (no {key})")
            state[f"lins.{index}.weight"] = linear[key]
        state["shift"], state["scale"] = net.shift, net.scale
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise DataError(f"LPIPS weights do not fit AlexNet: {str(exc).splitlines()[0]}") from None
        return net.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distance of (N,3,H,W) images in [0, 1]."""
        h0, h1 = ((image * 2.0 - 1.0 - self.shift) / self.scale for image in (x, y))
        total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        taps = iter(range(len(CHANNELS)))
        for index, layer in enumerate(self.features):
            h0, h1 = layer(h0), layer(h1)
            if index in TAPS:
                lin = self.lins[next(taps)]
                diff = (_unit(h0) - _unit(h1)).square()
                total += lin(diff).mean(dim=(1, 2, 3)).double()
        return total


def _unit(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + eps)
