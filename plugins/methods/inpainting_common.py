"""What every inpainting method shares: reading the hole, pasting a fill into it, the centred-hole
geometry of the Context-Encoder family, and seeded training batches of the train split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness import DataError, UsageError

from .sdsen import batch_indices

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


def centred_square(hole: torch.Tensor) -> tuple[int, int, int] | None:
    """(top, left, side) if the hole is exactly a centred square of half the shorter side, else None."""
    height, width = hole.shape[-2:]
    side = int(round(min(height, width) * 0.5))
    top, left = (height - side) // 2, (width - side) // 2
    expected = torch.zeros_like(hole)
    expected[..., top : top + side, left : left + side] = True
    return (top, left, side) if bool(torch.equal(hole, expected)) else None


def require_centred_square(method: str, sample: dict[str, Any], hole: torch.Tensor) -> tuple[int, int, int]:
    found = centred_square(hole)
    if found is None:
        raise UsageError(
            f"{method} fills a centred square hole of half the image side (its network predicts that region only); "
            f"sample {sample['id']!r} has another mask. Use the dataset option mask=center (hole=0.5)."
        )
    return found


def mean_fill_input(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [0, 1] → the network input in [-1, 1] with the hole set to Context Encoder's mean colour."""
    mean = torch.tensor(CE_MEAN_RGB, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return torch.where(hole, mean, image) * 2.0 - 1.0


def train_images(dataset: Any, size: int | None = None) -> torch.Tensor:
    """Every image of the train split as uint8 (N, 3, H, W), resized to ``size``² when given."""
    images = []
    for sample in dataset.samples("train"):
        image = sample["image"]
        if size is not None and image.shape[-2:] != (size, size):
            image = F.interpolate(image[None], size=(size, size), mode="area")[0]
        images.append(image.clamp(0, 1).mul(255).round().to(torch.uint8))
    if not images:
        raise DataError(f"{dataset.name}: the train split has no samples")
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) != 1:
        raise DataError(f"{dataset.name}: train images differ in size ({sorted(shapes)[:3]}); give the dataset a size")
    return torch.stack(images)


def image_batches(
    images: torch.Tensor, batch_size: int, seed: int, device: str, flip: bool = True
) -> Callable[[int], torch.Tensor]:
    """``batch(step)`` → float (B,3,H,W) in [0, 1]: per-epoch shuffles and seeded horizontal flips,
    a pure function of (seed, step) so a resumed run sees the same batches."""

    def batch(step: int) -> torch.Tensor:
        indices = batch_indices(seed, step, batch_size, len(images))
        chosen = images[torch.from_numpy(indices)].float().div_(255.0)
        if flip:
            flips = np.random.default_rng([seed % (1 << 64), step, 7]).random(batch_size) < 0.5
            chosen[torch.from_numpy(flips)] = chosen[torch.from_numpy(flips)].flip(-1)
        return chosen.to(device)

    return batch
