"""`hog` and `lomo`: the hand-crafted re-identification features of the VI-ReID tables.

**LOMO** (Liao, Hu, Zhu, Li, CVPR 2015) as published and as its authors' MATLAB code computes it:

1. the image is resized to 128×48;
2. colour: multi-scale Retinex with colour restoration (Jobson et al. 1997) with Gaussian surrounds
   σ = 5 and 20, then HSV quantised to 8×8×8 joint bins;
3. texture: SILTP (scale-invariant local ternary patterns, τ = 0.3, 4 neighbours) at radii 3 and 5 on
   the grey image (81 codes each);
4. 10×10 sub-windows with stride 5; per horizontal row of windows, the per-bin *maximum* over the
   windows of the row (the "local maximal occurrence");
5. a three-level pyramid by 2×2 average pooling (the quantised HSV image is pooled and floored as in
   the official ``ColorPooling``), so 24 + 11 + 5 rows;
6. ``log(1 + h)`` and L2 normalisation of each of the three parts (HSV, SILTP R=3, SILTP R=5).

The result has (512 + 2·81)·40 = 26,960 dimensions. Sliding-window histograms are box sums of one-hot
code maps, computed with ``avg_pool2d`` (the same windows the MATLAB loop visits).

**HOG** (Dalal and Triggs, CVPR 2005): ``skimage.feature.hog`` on the image resized to 128×64 with the
original detector's settings (9 orientations, 8×8-pixel cells, 2×2-cell blocks, L2-Hys; on colour
images the channel with the largest gradient at each pixel), 3,780 dimensions.

Both are retrieval features used with the Euclidean distance, as in Hi-CMD's Table 1. They need no
training and ignore the modality: that is exactly why they fail across modalities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from harness import Method, Option, Sample, hookimpl

LOMO_SIZE = (128, 48)
HOG_SIZE = (128, 64)
HSV_BINS = 8
SILTP_TAU = 0.3
SILTP_RADII = (3, 5)
SILTP_CODES = 3**4
BLOCK, STEP, SCALES = 10, 5, 3
RETINEX_SIGMAS = (5.0, 20.0)
MSRCR_ALPHA, MSRCR_BETA, MSRCR_GAIN, MSRCR_OFFSET = 125.0, 46.0, 192.0, -30.0
"""Jobson, Rahman, Woodell (1997) colour-restoration constants."""
RETINEX_CLIP = 0.01
"""Share of darkest and brightest values clipped per channel before stretching the Retinex output."""


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float (3, H, W) in [0, 1] → uint8-valued float (3, h, w) in [0, 255] (antialiased bilinear)."""
    if tuple(image.shape[-2:]) != size:
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return (image.clamp(0, 1) * 255.0).round()


# -- LOMO -----------------------------------------------------------------------------------------
def _gaussian_blur(channel: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(channel, sigma, mode="nearest", truncate=3.0)


def retinex(image: np.ndarray) -> np.ndarray:
    """MSRCR of an (H, W, 3) image with values in [0, 255]; returns values in [0, 1].

    MSR_c = mean_σ [log I_c − log(G_σ * I_c)], colour restoration C_c = β [log(α I_c) − log Σ_k I_k],
    output G·(C_c·MSR_c + b), then the darkest and brightest 1 % clipped per channel and the rest
    stretched to [0, 1]. ``I + 1`` avoids log 0. A uniform illumination gain leaves MSR unchanged,
    which is why LOMO uses it before colour histograms.
    """
    values = image.astype(np.float64) + 1.0
    msr = np.zeros_like(values)
    for sigma in RETINEX_SIGMAS:
        for c in range(3):
            msr[..., c] += np.log(values[..., c]) - np.log(_gaussian_blur(values[..., c], sigma))
    msr /= len(RETINEX_SIGMAS)
    restoration = MSRCR_BETA * (np.log(MSRCR_ALPHA * values) - np.log(values.sum(axis=2, keepdims=True)))
    out = MSRCR_GAIN * (restoration * msr + MSRCR_OFFSET)
    result = np.empty_like(out)
    for c in range(3):
        low, high = np.quantile(out[..., c], [RETINEX_CLIP, 1.0 - RETINEX_CLIP])
        result[..., c] = np.clip((out[..., c] - low) / max(high - low, 1e-12), 0.0, 1.0)
    return result


def quantized_hsv(rgb01: np.ndarray, bins: int = HSV_BINS) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] → (H, W, 3) integer H, S, V bins, ``min(floor(x·bins), bins − 1)``."""
    from skimage.color import rgb2hsv

    hsv = rgb2hsv(rgb01)
    return np.minimum(np.floor(hsv * bins), bins - 1).astype(np.int64)


def siltp(gray: np.ndarray, radius: int, tau: float = SILTP_TAU) -> np.ndarray:
    """SILTP codes with 4 neighbours at ``radius`` (replicated borders): base-3 digits for the
    right, up, left and down neighbours, 0 if within [(1−τ)I, (1+τ)I], 1 if below, 2 if above."""
    padded = np.pad(gray, radius, mode="edge")
    h, w = gray.shape
    r = radius
    neighbours = (
        padded[r : r + h, 2 * r : 2 * r + w],  # right
        padded[0:h, r : r + w],  # up
        padded[r : r + h, 0:w],  # left
        padded[2 * r : 2 * r + h, r : r + w],  # down
    )
    low, high = (1.0 - tau) * gray, (1.0 + tau) * gray
    codes = np.zeros(gray.shape, dtype=np.int64)
    for digit, neighbour in enumerate(neighbours):
        codes += ((neighbour < low).astype(np.int64) + 2 * (neighbour > high)) * 3**digit
    return codes


def max_occurrence(codes: np.ndarray, bins: int) -> np.ndarray:
    """Histograms of ``codes`` over 10×10 windows at stride 5 (top-left corners 0, 5, ... as far as a
    whole window fits), maximised over each row of windows: (rows, bins) counts."""
    windows = np.lib.stride_tricks.sliding_window_view(codes, (BLOCK, BLOCK))[::STEP, ::STEP]
    rows, cols = windows.shape[:2]
    window = np.arange(rows * cols).reshape(rows, cols, 1, 1)
    counts = np.bincount((window * bins + windows).ravel(), minlength=rows * cols * bins)
    return counts.reshape(rows, cols, bins).max(axis=1)


def _pool_average(image: np.ndarray, floor: bool) -> np.ndarray:
    """2×2 average pooling (odd last row/column dropped), floored for quantised images (``ColorPooling``)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    image = image[:h, :w]
    pooled = image.reshape(h // 2, 2, w // 2, 2, *image.shape[2:]).mean(axis=(1, 3))
    return np.floor(pooled).astype(np.int64) if floor else pooled


def _normalise(histograms: list[np.ndarray]) -> np.ndarray:
    vector = np.log1p(np.concatenate([h.ravel() for h in histograms]))
    return vector / max(float(np.sqrt((vector * vector).sum())), 1e-12)


def lomo(image: np.ndarray) -> np.ndarray:
    """LOMO of one (128, 48, 3) image with values in [0, 255]: 26,960 dims, HSV part then SILTP R=3, R=5."""
    hsv = quantized_hsv(retinex(image))
    colour = []
    for scale in range(SCALES):
        pattern = hsv[..., 2] * HSV_BINS * HSV_BINS + hsv[..., 1] * HSV_BINS + hsv[..., 0]
        colour.append(max_occurrence(pattern, HSV_BINS**3))
        if scale < SCALES - 1:
            hsv = _pool_average(hsv, floor=True)
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])  # MATLAB rgb2gray
    gray = np.round(image @ weights) / 255.0
    parts = [_normalise(colour)]
    for radius in SILTP_RADII:
        level, texture = gray, []
        for scale in range(SCALES):
            if level.shape[1] >= 2 * radius + 1:
                texture.append(max_occurrence(siltp(level, radius), SILTP_CODES))
            if scale < SCALES - 1:
                level = _pool_average(level, floor=False)
        parts.append(_normalise(texture))
    return np.concatenate(parts)


class LOMO(Method):
    """Local Maximal Occurrence features (Liao et al. 2015), Euclidean retrieval."""

    name = "lomo"
    description = "LOMO hand-crafted re-id feature: Retinex + joint HSV and SILTP max-occurrence histograms, 3 scales (26,960-d)."
    paper = "Liao, Hu, Zhu, Li. Person Re-identification by Local Maximal Occurrence Representation and Metric Learning. CVPR 2015"
    tasks = frozenset({"reidentification"})
    batch_size = 32

    def predict(self, samples: list[Sample]) -> list[Any]:
        outputs = []
        for sample in samples:
            image = _resize(sample["image"], LOMO_SIZE).permute(1, 2, 0).numpy()
            outputs.append(torch.from_numpy(lomo(image)).float())
        return outputs


class HOG(Method):
    """Histogram of oriented gradients (Dalal and Triggs 2005), Euclidean retrieval."""

    name = "hog"
    description = "HOG hand-crafted feature (skimage; 9 orientations, 8×8 cells, 2×2 blocks, L2-Hys) on 128×64 images (3,780-d)."
    paper = "Dalal, Triggs. Histograms of Oriented Gradients for Human Detection. CVPR 2005"
    tasks = frozenset({"reidentification"})
    batch_size = 32
    options = (
        Option("orientations", 9, "orientation bins"),
        Option("cell", 8, "cell size in pixels"),
        Option("block", 2, "cells per block side"),
    )

    def predict(self, samples: list[Sample]) -> list[Any]:
        from skimage.feature import hog

        outputs = []
        for sample in samples:
            image = _resize(sample["image"], HOG_SIZE).permute(1, 2, 0).numpy() / 255.0
            feature = hog(
                image, orientations=self.config["orientations"], pixels_per_cell=(self.config["cell"],) * 2,
                cells_per_block=(self.config["block"],) * 2, block_norm="L2-Hys", channel_axis=-1,
            )
            outputs.append(torch.from_numpy(feature).float())
        return outputs


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(HOG)
    register(LOMO)
