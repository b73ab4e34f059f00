"""`mask-ssim`, `mask-is`: SSIM and Inception Score on the person only, as Def-GAN and PG² report them.

Pose-transfer papers (PG², Def-GAN and those copying their tables, e.g. SPT on Market-1501) score
the generated and the ground-truth image after multiplying both by a binary body mask drawn from the
*target* keypoints, so the background does not count. The two papers do this differently, so each is
a named ``convention`` of both metrics (``mask-ssim@defgan``, ``mask-ssim@pg2``; default ``defgan``).

``defgan``: the mask is Def-GAN's ``produce_ma_mask`` (``AliaksandrSiarohin/pose-gan``, ``pose_utils.py``,
called from ``test.py: create_masked_image``), SSIM the ``defgan`` convention of `psnr_ssim`:

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

``pg2``: the mask is PG²'s own ``_getPoseMask`` (``charliememory/Pose-Guided-Person-Image-Generation``,
``datasets/convert_market.py``, ``radius=4``), saved with the test images and read back by
``score_mask.py``; SSIM the ``pg2`` convention (``compare_ssim(multichannel=True)`` defaults):

* for each of the same 23 limbs whose two ends are present, solid discs (pixels at distance ≤ 4 from
  the keypoint truncated to an integer pixel, ``_getSparseKeypoint``) at both ends and at
  ``int(distance / 4) − 1`` evenly spaced points between them (none when that count is below 2);
  joints outside every drawn limb get no disc;
* the same closing (``dilation`` then ``erosion``, 5×5 square).

The in-between points are the Python 3 reading (``int(r0 + (r1 − r0)·i/n)``); the Python 2 original
floors ``(r1 − r0)·i/n`` on its integer keypoints, which gives the same pixels for integer keypoints
inside the image.

Functional twins::

    shared.body_mask.body_mask(keypoints, size) -> bool tensor (H, W)        # Def-GAN
    shared.pose_maps.pg2_body_mask(keypoints, size) -> bool tensor (H, W)    # PG²
    mask_ssim(pred, target, keypoints, convention="defgan", **ssim_params) -> float64 tensor (per image)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import skimage
import torch

from harness import DataError, Metric, Option, Sample, UsageError, hookimpl
from harness_plugins.shared.body_mask import CLOSING, RADIUS, body_mask
from harness_plugins.shared.pose_maps import COCO18_LIMBS, pg2_body_mask

from .inception import InceptionScore
from .psnr_ssim import CONVENTIONS, ssim

POSE_FIELD = "target_pose"


MASKS: dict[str, Callable[[Any, tuple[int, int]], torch.Tensor]] = {"defgan": body_mask, "pg2": pg2_body_mask}
"""Body mask of each convention (the SSIM convention of `psnr_ssim` has the same name)."""


def masked(image: torch.Tensor, keypoints: torch.Tensor | np.ndarray, convention: str = "defgan") -> torch.Tensor:
    """``image`` (3,H,W) with everything outside the body mask of ``convention`` set to 0."""
    return image * _mask_of(convention)(keypoints, tuple(image.shape[-2:])).to(image.device, image.dtype)


def _mask_of(convention: str) -> Callable[[Any, tuple[int, int]], torch.Tensor]:
    if convention not in MASKS:
        raise UsageError(f"mask convention must be one of {', '.join(MASKS)}; got {convention!r}")
    return MASKS[convention]


def mask_ssim(pred: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor | np.ndarray,
              convention: str = "defgan", **params: Any) -> torch.Tensor:
    """Mask-SSIM of one (3,H,W) pair: SSIM of the masked images, mask and SSIM of ``convention``.

    Both images are quantised to 8 bits by `psnr_ssim.ssim` (masking commutes with rounding). Under
    ``defgan`` the data range is max − min of the masked prediction, as Def-GAN's call on its masked
    uint8 arrays; under ``pg2`` it is 255, as PG²'s call on its masked uint8 arrays. ``params`` override
    the convention's SSIM parameters (e.g. ``truncate=3.5`` for scikit-image ≥ 0.15 under ``defgan``).
    """
    if pred.dim() != 3:
        raise DataError(f"mask_ssim: expected one (3, H, W) image, got shape {tuple(pred.shape)}")
    mask = _mask_of(convention)(keypoints, tuple(pred.shape[-2:])).to(pred.device)  # drawn once for both images
    return ssim(pred * mask, target.to(pred.device) * mask, convention=convention, **params)


def target_pose(sample: Sample, metric: str) -> torch.Tensor:
    if POSE_FIELD not in sample:
        raise UsageError(
            f"{metric}: sample {sample.get('id')!r} has no {POSE_FIELD!r}; the body mask needs a pose-transfer "
            "sample's target keypoints"
        )
    return sample[POSE_FIELD]


MASK_CONVENTIONS: dict[str, dict[str, Any]] = {
    "defgan": {
        "mask": "Def-GAN pose_utils.produce_ma_mask of the target keypoints: 23 limb rectangles of half-width "
        f"{RADIUS} px (skimage.draw.polygon), discs of radius {RADIUS} at joints (skimage.draw.disk), "
        f"dilation then erosion with a {CLOSING}x{CLOSING} square",
        "keypoints": f"sample field {POSE_FIELD!r}: 18 COCO-order (y, x), -1 missing",
        "limbs": [list(limb) for limb in COCO18_LIMBS],
        "drawing": "compiled replica of scikit-image 0.26 draw.polygon, draw.disk, dilation, erosion (bit-identical, tested)",
    },
    "pg2": {
        "mask": f"PG2 convert_market._getPoseMask(radius={RADIUS}) of the target keypoints: for each of 23 limbs with both "
        f"ends, solid discs (distance <= {RADIUS} from the int-truncated point) at the ends and int(length/{RADIUS})-1 "
        f"points between, then dilation and erosion with a {CLOSING}x{CLOSING} square (skimage.morphology)",
        "keypoints": f"sample field {POSE_FIELD!r}: 18 COCO-order (y, x), -1 missing",
        "limbs": [list(limb) for limb in COCO18_LIMBS],
    },
}
CONVENTION_OPTION = Option("convention", "defgan", "body mask and SSIM of: defgan (Def-GAN test.py, the default) or "
                           "pg2 (PG2 score_mask.py: its own _getPoseMask, compare_ssim defaults)", choices=tuple(MASKS))


class MaskSSIM(Metric):
    """SSIM on the body region only (Def-GAN's or PG²'s protocol), per image, then the mean."""

    name = "mask-ssim"
    description = ("mask-SSIM: SSIM of generated and target images masked by the target-pose body mask; convention defgan "
                   "(Def-GAN test.py, default) or pg2 (PG2 score_mask.py).")
    paper = "Ma et al., Pose Guided Person Image Generation (PG2), NeurIPS 2017; Siarohin et al., Deformable GANs, CVPR 2018"
    version = "1"
    outputs = frozenset({"image"})
    needs_paired_target = True
    preset_option = "convention"
    options = (
        CONVENTION_OPTION,
        Option("truncate", None, "Gaussian truncation in sigmas: default the defgan convention's 4.0 "
               "(scikit-image < 0.15, Def-GAN's era); 3.5 = scikit-image >= 0.15 (no effect under pg2's uniform window)",
               type=float),
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
            value = mask_ssim(prediction, self.target(sample), target_pose(sample, self.name), self.config["convention"],
                              **self._ssim_params())
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
        name = self.config["convention"]
        return {
            "implementation": f"harness_plugins.metrics.pose_masked/{self.version}",
            "convention": name,
            "overrides": sorted(self._ssim_params()),
            "ssim": CONVENTIONS[name]["ssim"],
            "ssim_params": {**CONVENTIONS[name]["params"], **self._ssim_params()},
            **MASK_CONVENTIONS[name],
            "scikit-image": skimage.__version__,
            "aggregation": "mean over images",
        }


class MaskIS(InceptionScore):
    """Inception Score of the generated images masked by the target-pose body mask (Def-GAN's or PG²'s)."""

    name = "mask-is"
    description = "mask-IS: Inception Score of generated images multiplied by the target-pose body mask (Def-GAN's or PG2's)."
    paper = MaskSSIM.paper
    preset_option = "convention"
    options = InceptionScore.options + (CONVENTION_OPTION,)

    def images_to_score(self, predictions: list[Any], samples: list[Sample]) -> list[torch.Tensor]:
        convention = self.config["convention"]
        return [masked(p, target_pose(s, self.name), convention) for p, s in zip(predictions, samples, strict=True)]

    def compute(self) -> dict[str, float]:
        values = super().compute()
        return {"mask-is": values["is"], "mask-is-std": values["is-std"]}

    def convention(self) -> dict[str, Any]:
        name = self.config["convention"]
        return {**super().convention(), "mask_convention": name, **MASK_CONVENTIONS[name], "scikit-image": skimage.__version__}


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(MaskSSIM)
    register(MaskIS)
