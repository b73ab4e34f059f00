"""What every inpainting method shares: reading the hole, pasting a fill into it, and the centred-hole
geometry and input of the Context-Encoder family."""

from __future__ import annotations

from typing import Any

import torch

from harness import DataError, UsageError

CE_MEAN_RGB = (117.0 / 255.0, 104.0 / 255.0, 123.0 / 255.0)
"""The fill colour of Context Encoder's input hole (official ``train.lua``: 2*117/255-1, 104, 123 in [-1, 1])."""


def hole_of(sample: dict[str, Any]) -> torch.Tensor:
    """The (1, H, W) bool hole of a sample, checked against its masked image."""
    mask, masked = sample["mask"], sample["masked"]
    if mask.dim() != 3 or mask.shape[0] != 1 or mask.shape[-2:] != masked.shape[-2:]:
        raise DataError(f"sample {sample['id']!r}: mask {tuple(mask.shape)} does not fit image {tuple(masked.shape)}")
    hole = mask > 0.5
    if not bool(hole.any()):
        raise DataError(f"sample {sample['id']!r}: the mask has no hole pixels")
    return hole


def composite(fill: torch.Tensor, masked: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """The known pixels from ``masked``, the hole from ``fill`` (both (3, H, W)), clipped to [0, 1]."""
    return torch.where(hole, fill.clamp(0, 1), masked)


def centred_square(hole: torch.Tensor, fraction: float = 0.5) -> tuple[int, int, int] | None:
    """(top, left, side) if the hole is exactly a centred square of ``fraction`` × the shorter side, else None."""
    height, width = hole.shape[-2:]
    side = int(round(min(height, width) * fraction))
    top, left = (height - side) // 2, (width - side) // 2
    expected = torch.zeros_like(hole)
    expected[..., top : top + side, left : left + side] = True
    return (top, left, side) if bool(torch.equal(hole, expected)) else None


def require_centred_square(method: str, sample: dict[str, Any], hole: torch.Tensor, fraction: float = 0.5,
                           why: str = "") -> tuple[int, int, int]:
    found = centred_square(hole, fraction)
    if found is None:
        raise UsageError(
            f"{method} fills a centred square hole of {fraction:g} x the image side (its network predicts that region "
            f"only{why}); sample {sample['id']!r} has another mask. Use the dataset options mask=center hole={fraction:g}."
        )
    return found


def mean_fill_input(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [0, 1] → the network input in [-1, 1] with the hole set to Context Encoder's mean colour."""
    mean = torch.tensor(CE_MEAN_RGB, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return torch.where(hole, mean, image) * 2.0 - 1.0
