"""Def-GAN's body mask: the person region that mask-SSIM and mask-IS score (shared by the pose-masked
metrics and the pose-transfer methods that weight their losses by it, PG² and SPT).

The mask is Def-GAN's ``produce_ma_mask`` (``AliaksandrSiarohin/pose-gan``, ``pose_utils.py``): rectangles of
half-width `RADIUS` px around the limbs whose two ends are present, discs of radius `RADIUS` at the joints,
then a closing with a `CLOSING`×`CLOSING` square. `draw_with_skimage` makes Def-GAN's own scikit-image calls
and is the reference the compiled `body_mask` is tested against bit for bit (see `metrics/pose_masked.py`
for why the pixels are drawn by one compiled function).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.draw import disk, polygon
from skimage.morphology import dilation, erosion

from harness import DataError

from .pose_maps import COCO18_LIMBS, MISSING

RADIUS = 4
CLOSING = 5


def body_mask(keypoints: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Def-GAN's body mask (bool, H×W) from 18 COCO-order (y, x) keypoints, −1 where missing.

    The rectangle corners are computed here with numpy in Def-GAN's order of operations (the norm per
    limb by ``np.linalg.norm``, as Def-GAN calls it); the pixels are decided by the compiled
    `body_mask_kernels.draw_body_mask`, which repeats scikit-image's drawing and morphology arithmetic
    (`draw_with_skimage` is the reference it is tested against)."""
    from .body_mask_kernels import draw_body_mask

    points, height, width = _checked(keypoints, size)
    present = ~(points == MISSING).any(axis=1)
    return torch.from_numpy(draw_body_mask(_rectangles(points, present), np.ascontiguousarray(points[present]),
                                           height, width, float(RADIUS), CLOSING))


def draw_with_skimage(keypoints: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """`body_mask` drawn by the scikit-image calls Def-GAN makes (``draw.polygon``, ``draw.disk``,
    ``dilation``, ``erosion``): the reference the compiled drawing is tested against, ≈ 100× slower."""
    points, height, width = _checked(keypoints, size)
    present = ~(points == MISSING).any(axis=1)
    mask = np.zeros((height, width), dtype=bool)
    for corners in _rectangles(points, present):
        rows, cols = polygon(corners[:, 0], corners[:, 1], shape=(height, width))
        mask[rows, cols] = True
    for y, x in points[present]:
        rows, cols = disk((y, x), RADIUS, shape=(height, width))
        mask[rows, cols] = True
    square = np.ones((CLOSING, CLOSING), dtype=bool)
    return torch.from_numpy(erosion(dilation(mask, square), square))


def _checked(keypoints: torch.Tensor | np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    points = np.asarray(keypoints.detach().cpu() if isinstance(keypoints, torch.Tensor) else keypoints, np.float64)
    if points.shape != (18, 2):
        raise DataError(f"body mask: expected 18 COCO-order (y, x) keypoints, shape (18, 2); got {points.shape}")
    return points, int(size[0]), int(size[1])


def _rectangles(points: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(K, 4, 2) corners of the limb rectangles whose two ends are present (zero-length limbs skipped).

    Element-wise steps run on all limbs at once (the same operations per element as Def-GAN's per-limb
    code); the norm stays one ``np.linalg.norm`` call per limb, whose summation is the BLAS dot's."""
    starts, ends = (np.array(ends, dtype=np.intp) for ends in zip(*COCO18_LIMBS))
    along = points[starts] - points[ends]
    drawn = present[starts] & present[ends] & along.any(axis=1)
    starts, ends, along = starts[drawn], ends[drawn], along[drawn]
    normal = np.stack([-along[:, 1], along[:, 0]], axis=1)
    norms = np.array([np.linalg.norm(row) for row in normal], dtype=np.float64).reshape(-1, 1)
    normal = RADIUS * normal / norms  # Def-GAN's order of operations
    start, end = points[starts], points[ends]
    return np.ascontiguousarray(np.stack([start + normal, start - normal, end - normal, end + normal], axis=1))
