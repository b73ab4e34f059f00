"""Face crops F(·) for SPT's face discriminator D_F (paper Eq. 11): a non-parametric spatial transformer
driven by the facial keypoints of a COCO-18 pose.

The paper crops faces "by a non-parametric STN from the facial joints"; the official demo estimates an
affine face transform from the keypoints (``estimate_face_transform``) and gives no numbers. Here:

* The face keypoints are the nose (0), the eyes (14, 15) and the ears (16, 17), (y, x) pixels, -1 missing.
* `CANONICAL` places them in the crop's normalised coordinates (u right, v down, [-1, 1]): eyes 0.6 apart
  and 0.15 above the centre, the nose 0.33 below the eyes, the ears 1.28 apart (face proportions as in
  the usual 5-point alignment templates), so the crop holds the whole head with a margin of hair and chin.
* A similarity (scale, rotation, translation; no shear, so the face keeps its shape) is fitted by least
  squares from the canonical positions of the visible keypoints to their image positions, in pixels. It
  needs at least `MIN_KEYPOINTS` = 3 visible keypoints (2 fix a similarity exactly; the third makes the fit
  over-determined, so one misplaced keypoint cannot swing the crop) and a face at least `MIN_SCALE` pixels
  across per crop unit; other faces are masked out of the loss.
* Annotation files disagree on which of 14/15 (16/17) is the left one (OpenPose: 14 right eye; Def-GAN's
  label list: 14 left eye), so the fit is also done with the template mirrored and the better fit wins.
  A similarity cannot mirror, so a wrong handedness would tilt the crop; the better fit always gives
  an upright face, mirrored or not.
* The crop is ``F.affine_grid`` + bilinear ``F.grid_sample`` of that transform (zeros outside the image),
  so the generator gets gradients through the crop; the crop side is `crop_side` (32 at 256x256 and
  at smaller images, where D_F's PatchGAN still scores 2x2 patches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness_plugins.shared.pose_maps import present

FACE_KEYPOINTS = (0, 14, 15, 16, 17)
"""COCO-18 indices of the nose, the eyes and the ears."""
CANONICAL = torch.tensor([  # (u, v) in the crop's normalised coordinates, in FACE_KEYPOINTS order
    [0.0, 0.18], [-0.3, -0.15], [0.3, -0.15], [-0.64, -0.12], [0.64, -0.12],
])
MIN_KEYPOINTS = 3
MIN_SCALE = 1.0
"""Smallest accepted face: pixels per crop unit (half the crop side), i.e. a 2-pixel crop window."""
MIN_SIDE = 32
"""At 32 the demo's 3-layer PatchGAN (three halvings, two 4x4 stride-1 convolutions) still scores 2x2 patches."""


def crop_side(height: int) -> int:
    """Side of the square face crop: an eighth of the image height (32 at DeepFashion's 256), at least 32."""
    return max(MIN_SIDE, int(height) // 8)


def _fit(template: torch.Tensor, points: torch.Tensor,
         weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted least-squares similarity ζ = c·z + t (complex form, z = u + iv, ζ = x + iy) per sample.

    Returns the matrix (B, 2, 3) in pixels, mapping (u, v, 1) to (x, y), the residual (B,) and the scale |c| (B,)."""
    total = weights.sum(dim=1, keepdim=True).clamp_min(1.0)
    mean_t = (template * weights[..., None]).sum(dim=1) / total  # (B, 2)
    mean_p = (points * weights[..., None]).sum(dim=1) / total
    zt = template - mean_t[:, None]
    zp = points - mean_p[:, None]
    u, v, x, y = zt[..., 0], zt[..., 1], zp[..., 0], zp[..., 1]
    norm = ((u * u + v * v) * weights).sum(dim=1).clamp_min(1e-12)
    a = ((u * x + v * y) * weights).sum(dim=1) / norm
    b = ((u * y - v * x) * weights).sum(dim=1) / norm
    tx = mean_p[:, 0] - (a * mean_t[:, 0] - b * mean_t[:, 1])
    ty = mean_p[:, 1] - (b * mean_t[:, 0] + a * mean_t[:, 1])
    matrix = torch.stack([torch.stack([a, -b, tx], dim=1), torch.stack([b, a, ty], dim=1)], dim=1)
    fitted_x = a[:, None] * u - b[:, None] * v
    fitted_y = b[:, None] * u + a[:, None] * v
    residual = (((fitted_x - x) ** 2 + (fitted_y - y) ** 2) * weights).sum(dim=1)
    return matrix, residual, torch.sqrt(a * a + b * b)


def face_transforms(poses: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``affine_grid`` matrices (B, 2, 3) taking the crop's normalised coordinates to the image's
    (``align_corners=False``), and which faces can be cropped (B,) bool; poses (B, 18, 2) (y, x) pixels.

    Faces that cannot be cropped get the identity matrix (a harmless, finite crop to be masked out)."""
    points = poses[:, FACE_KEYPOINTS].float()
    seen = present(points)
    weights = seen.float()
    xy = points.flip(-1)  # (x, y) pixels
    template = CANONICAL.to(xy.device).expand(len(xy), -1, -1)
    matrix, residual, scale = _fit(template, xy, weights)
    mirrored, residual_m, scale_m = _fit(template * torch.tensor([-1.0, 1.0], device=xy.device), xy, weights)
    use_mirror = residual_m < residual
    matrix = torch.where(use_mirror[:, None, None], mirrored, matrix)
    scale = torch.where(use_mirror, scale_m, scale)
    valid = (seen.sum(dim=1) >= MIN_KEYPOINTS) & (scale >= MIN_SCALE)
    height, width = float(size[0]), float(size[1])
    # pixel index x lies at normalised (2x + 1) / W - 1 (align_corners=False), likewise y with H
    theta = torch.stack([
        torch.cat([2 * matrix[:, 0, :2] / width, (2 * matrix[:, 0, 2:] + 1) / width - 1], dim=1),
        torch.cat([2 * matrix[:, 1, :2] / height, (2 * matrix[:, 1, 2:] + 1) / height - 1], dim=1),
    ], dim=1)
    identity = torch.eye(2, 3, device=theta.device).expand_as(theta)
    return torch.where(valid[:, None, None], theta, identity), valid


def crop_faces(images: torch.Tensor, theta: torch.Tensor, side: int) -> torch.Tensor:
    """F(I): (B, C, side, side) face crops of (B, C, H, W) images by `face_transforms`' matrices;
    differentiable in the images."""
    grid = F.affine_grid(theta.to(images.dtype), [images.shape[0], images.shape[1], side, side], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
