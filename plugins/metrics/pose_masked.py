"""`mask-ssim`, `mask-is`: SSIM and Inception Score on the person only, as Def-GAN/PG² report them.

Pose-transfer papers (PG², Def-GAN and those copying their tables, e.g. SPT on Market-1501) score
the generated and the ground-truth image after multiplying both by a binary body mask drawn from the
*target* keypoints, so the background does not count. The mask is Def-GAN's ``produce_ma_mask``
(``AliaksandrSiarohin/pose-gan``, ``pose_utils.py``, called from ``test.py: create_masked_image``):

* 18 COCO-order keypoints (y, x), a keypoint with a coordinate equal to −1 is missing;
* for each of 23 limbs whose two ends are present, the rectangle of half-width 4 px around the
  segment (corners ``end ± 4·n``, n the unit normal), filled with ``skimage.draw.polygon``;
* a disc of radius 4 around every present joint (``skimage.draw.disk``, the old ``circle``);
* a morphological closing: ``dilation`` then ``erosion`` with a 5×5 square.

A pixel centre lying exactly on a rectangle's edge is decided by scikit-image's floating-point
point-in-polygon test (edges count as inside, but rounding can put such a point out), and that test
has changed across scikit-image versions. The pixels are drawn by one compiled function
(`body_mask_kernels`) that repeats scikit-image 0.26's arithmetic: the 41 scikit-image calls per image
took more than half of mask-SSIM's time (issue 6), and `draw_with_skimage`, which makes Def-GAN's
calls, is kept as the reference it is tested against bit for bit. Both versions are recorded. One difference: a zero-length limb (both ends on one pixel) divides 0 by 0 in Def-GAN and
its NaN corners draw nothing; here it is skipped (same pixels, no warning).

Functional twins (the mask itself is `harness_plugins.shared.body_mask.body_mask`)::

    mask_ssim(pred, target, keypoints, **ssim_params) -> float64 tensor (per image)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import skimage
import torch

from harness import DataError, Metric, Option, Sample, UsageError, hookimpl
from harness_plugins.shared.body_mask import CLOSING, RADIUS, body_mask
from harness_plugins.shared.pose_maps import COCO18_LIMBS

from .inception import InceptionScore
from .psnr_ssim import CONVENTIONS, ssim

POSE_FIELD = "target_pose"


def masked(image: torch.Tensor, keypoints: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``image`` (3,H,W) with everything outside the body mask set to 0."""
    return image * body_mask(keypoints, tuple(image.shape[-2:])).to(image.device, image.dtype)


def mask_ssim(pred: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor | np.ndarray, **params: Any) -> torch.Tensor:
    """Def-GAN mask-SSIM of one (3,H,W) pair: SSIM (``defgan`` convention) of the masked images.

    Both images are quantised to 8 bits by `psnr_ssim.ssim` (masking commutes with rounding), and the
    data range is max − min of the masked prediction, as Def-GAN's call on its masked uint8 arrays.
    ``params`` override the ``defgan`` SSIM parameters (e.g. ``truncate=3.5`` for scikit-image ≥ 0.15).
    """
    if pred.dim() != 3:
        raise DataError(f"mask_ssim: expected one (3, H, W) image, got shape {tuple(pred.shape)}")
    mask = body_mask(keypoints, tuple(pred.shape[-2:])).to(pred.device)  # drawn once for both images
    return ssim(pred * mask, target.to(pred.device) * mask, convention="defgan", **params)


def target_pose(sample: Sample, metric: str) -> torch.Tensor:
    if POSE_FIELD not in sample:
        raise UsageError(
            f"{metric}: sample {sample.get('id')!r} has no {POSE_FIELD!r}; the body mask needs a pose-transfer "
            "sample's target keypoints"
        )
    return sample[POSE_FIELD]


MASK_CONVENTION = {
    "mask": "Def-GAN pose_utils.produce_ma_mask of the target keypoints: 23 limb rectangles of half-width "
    f"{RADIUS} px (skimage.draw.polygon), discs of radius {RADIUS} at joints (skimage.draw.disk), "
    f"dilation then erosion with a {CLOSING}x{CLOSING} square",
    "keypoints": f"sample field {POSE_FIELD!r}: 18 COCO-order (y, x), -1 missing",
    "limbs": [list(limb) for limb in COCO18_LIMBS],
    "drawing": "compiled replica of scikit-image 0.26 draw.polygon, draw.disk, dilation, erosion (bit-identical, tested)",
}


class MaskSSIM(Metric):
    """SSIM on the body region only (Def-GAN protocol), per image, then the mean."""

    name = "mask-ssim"
    description = "Def-GAN mask-SSIM: skimage-style SSIM of generated and target images masked by the target-pose body mask."
    paper = "Ma et al., Pose Guided Person Image Generation (PG2), NeurIPS 2017; Siarohin et al., Deformable GANs, CVPR 2018"
    version = "1"
    outputs = frozenset({"image"})
    needs_paired_target = True
    options = (
        Option("truncate", None, "Gaussian truncation in sigmas: default the defgan convention's 4.0 "
               "(scikit-image < 0.15, Def-GAN's era); 3.5 = scikit-image >= 0.15", type=float),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reset()

    def reset(self) -> None:
        self._values: list[float] = []

    def _ssim_params(self) -> dict[str, Any]:
        return {} if self.config["truncate"] is None else {"truncate": self.config["truncate"]}

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float]:
        values = []
        for prediction, sample in zip(predictions, samples, strict=True):
            value = mask_ssim(prediction, self.target(sample), target_pose(sample, self.name), **self._ssim_params())
            values.append(float(value))
        self._values.extend(values)
        return values

    def compute(self) -> dict[str, float]:
        if not self._values:
            raise UsageError(f"{self.name}: no samples were scored")
        return {self.name: float(np.mean(self._values))}

    def details(self) -> dict[str, Any]:
        return {"n": len(self._values)}

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": f"harness_plugins.metrics.pose_masked/{self.version}",
            "ssim": CONVENTIONS["defgan"]["ssim"],
            "ssim_params": {**CONVENTIONS["defgan"]["params"], **self._ssim_params()},
            **MASK_CONVENTION,
            "scikit-image": skimage.__version__,
            "aggregation": "mean over images",
        }


class MaskIS(InceptionScore):
    """Inception Score of the generated images masked by the target-pose body mask (Def-GAN protocol)."""

    name = "mask-is"
    description = "Def-GAN mask-IS: Inception Score of generated images multiplied by the target-pose body mask."
    paper = MaskSSIM.paper

    def images_to_score(self, predictions: list[Any], samples: list[Sample]) -> list[torch.Tensor]:
        return [masked(p, target_pose(s, self.name)) for p, s in zip(predictions, samples, strict=True)]

    def compute(self) -> dict[str, float]:
        values = super().compute()
        return {"mask-is": values["is"], "mask-is-std": values["is-std"]}

    def convention(self) -> dict[str, Any]:
        return {**super().convention(), **MASK_CONVENTION, "scikit-image": skimage.__version__}


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(MaskSSIM)
    register(MaskIS)
