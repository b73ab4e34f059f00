"""Face crops F(·) for SPT's face discriminator D_F (paper Eq. 11): a non-parametric spatial transformer
driven by the facial keypoints of a COCO-18 pose (nose 0, eyes 14/15, ears 16/17; (y, x) pixels, -1 missing).

Two crops (SPT option ``face_crop``):

* ``box`` (default; the official demo's ``estimate_face_transform``): an axis-aligned box centred on the mean
  of the visible head keypoints (rounded down to whole pixels), half side 0.40 x the torso length (the
  Def-GAN/demo ``st``: RMS of the two shoulder-hip distances; rounded down), clipped to the image; the crop
  stretches that box over the crop window, so a face at the border keeps its clipped, non-square box, as in
  the demo. It needs one visible head keypoint (the demo's ``no_point_tr`` otherwise sends the crop off the
  image, a black crop; here such faces are masked out of the loss). The box is the same as Def-GAN's head
  part (`pose_maps.HEAD_HALF`), whose torso-length fallback it shares for poses without a full torso.
* ``similarity``: a similarity (scale, rotation, translation; no shear) fitted by least squares from the
  visible face keypoints to a canonical template (`CANONICAL`: eyes 0.6 apart and 0.15 above the centre, the
  nose 0.33 below the eyes, the ears 1.28 apart, in the crop's normalised coordinates, u right, v down), so a
  tilted face comes out upright. It needs `MIN_KEYPOINTS` = 3 (2 fix a similarity exactly; the third makes
  the fit over-determined) and a face at least `MIN_SCALE` pixels across per crop unit. Annotation files
  disagree on which of 14/15 (16/17) is the left one, so the template is also fitted mirrored and the better
  fit wins.

Either crop is ``F.affine_grid`` + bilinear ``F.grid_sample`` of the transform (zeros outside the image), so
the generator gets gradients through the crop; the crop side is `crop_side` (32 at 256x256 and at smaller
images, where D_F's PatchGAN still scores 2x2 patches; the demo crops at the image size, 256).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from harness_plugins.shared.pose_maps import HEAD_HALF, present, torso_length

FACE_KEYPOINTS = (0, 14, 15, 16, 17)
"""COCO-18 indices of the nose, the eyes and the ears."""
CANONICAL = torch.tensor([  # (u, v) in the crop's normalised coordinates, in FACE_KEYPOINTS order
    [0.0, 0.18], [-0.3, -0.15], [0.3, -0.15], [-0.64, -0.12], [0.64, -0.12],
])
FACE_CROPS = ("box", "similarity")
"""The crops `face_transforms` offers (module docstring); ``box`` is the demo's."""
MIN_KEYPOINTS = 3
"""Visible face keypoints the ``similarity`` crop needs (the ``box`` crop needs one)."""
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


def face_transforms(poses: torch.Tensor, size: tuple[int, int], crop: str = "box") -> tuple[torch.Tensor, torch.Tensor]:
    """``affine_grid`` matrices (B, 2, 3) of the face crops of poses (B, 18, 2) and which faces can be cropped
    (B,) bool, by the ``crop`` of `FACE_CROPS`; faces that cannot be cropped get the identity (masked out)."""
    if crop == "box":
        return box_transforms(poses, size)
    if crop == "similarity":
        return similarity_transforms(poses, size)
    raise ValueError(f"face crop must be one of {FACE_CROPS}, got {crop!r}")


def box_transforms(poses: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The demo's ``estimate_face_transform``: the crop window covers the box of half side int(0.40 · st)
    around the visible head keypoints' mean (whole pixels), clipped to the image (pixel-edge coordinates:
    pixel x spans [x, x + 1])."""
    height, width = int(size[0]), int(size[1])
    thetas, valid = [], []
    for pose in poses.detach().cpu().float().numpy():
        head = pose[list(FACE_KEYPOINTS)]
        seen = (head != -1).all(axis=1)
        box = None
        if seen.any():
            centre = np.floor(head[seen].mean(axis=0)).astype(np.int64)  # (y, x)
            half = int(HEAD_HALF * torso_length(pose, size))
            top, left = max(int(centre[0]) - half, 0), max(int(centre[1]) - half, 0)
            bottom, right = min(int(centre[0]) + half, height), min(int(centre[1]) + half, width)
            box = (top, left, bottom, right) if bottom > top and right > left else None
        if box is None:
            thetas.append(np.eye(2, 3))
            valid.append(False)
            continue
        top, left, bottom, right = box
        # crop u in [-1, 1] -> image x = left + (u + 1) / 2 * (right - left), normalised 2x / W - 1
        thetas.append(np.array([[(right - left) / width, 0.0, (left + right) / width - 1.0],
                                [0.0, (bottom - top) / height, (top + bottom) / height - 1.0]]))
        valid.append(True)
    theta = torch.tensor(np.stack(thetas), dtype=torch.float32, device=poses.device).reshape(-1, 2, 3)
    return theta, torch.tensor(valid, dtype=torch.bool, device=poses.device)


def similarity_transforms(poses: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
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
