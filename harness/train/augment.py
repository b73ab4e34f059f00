"""Seeded augmentations on (C, H, W) tensors: each draws only from the generator it is given.

Give them `harness.train.samplers.step_rng(seed, step, 1 + item)` and an augmented batch is as
reproducible as the rows it came from.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, UsageError


def random_crop(image: torch.Tensor, size: tuple[int, int], rng: np.random.Generator, padding: int = 0) -> torch.Tensor:
    """A ``size`` (h, w) window at a random position, after zero-padding each side by ``padding``."""
    if padding:
        image = F.pad(image, (padding, padding, padding, padding))
    height, width = image.shape[-2:]
    h, w = size
    if h > height or w > width:
        raise DataError(f"cannot crop {h}x{w} from a {height}x{width} image")
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    return image[..., top : top + h, left : left + w]


def random_flip(image: torch.Tensor, rng: np.random.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror left-right with probability ``p``."""
    return image.flip(-1) if rng.random() < p else image


def random_erasing(
    image: torch.Tensor,
    rng: np.random.Generator,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
    value: float | torch.Tensor = 0.0,
    attempts: int = 100,
    aspect_sampling: str = "log-uniform",
) -> torch.Tensor:
    """Random erasing (Zhong et al., AAAI 2020): with probability ``p`` fill one random rectangle of
    ``area`` × image area and aspect ratio in ``ratio`` with ``value``. ``aspect_sampling``: how the ratio
    is drawn, ``log-uniform`` (torchvision's ``RandomErasing``, symmetric in h/w) or ``uniform`` (the
    authors' ``random_erasing.py``, ``random.uniform(r1, 1/r1)``: tall rectangles more often)."""
    if aspect_sampling not in ("log-uniform", "uniform"):
        raise UsageError(f"random_erasing: aspect_sampling must be 'log-uniform' or 'uniform'; got {aspect_sampling!r}")
    if rng.random() >= p:
        return image
    height, width = image.shape[-2:]
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        aspect = (rng.uniform(*ratio) if aspect_sampling == "uniform"
                  else math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]))))
        h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < h < height and 0 < w < width:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            erased = image.clone()
            erased[..., top : top + h, left : left + w] = value
            return erased
    return image
