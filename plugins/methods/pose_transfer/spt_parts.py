"""SPT's person representation and the pseudo-label search of H_S's unpaired pretraining (paper §3.2,
Eqs. 1–2).

Keypoints follow the pose-transfer contract: (18, 2) float tensors of (y, x) pixel coordinates in
COCO-18 order, −1 where missing; semantic maps are int64 (H, W) labels in the contract's 10 classes, SPT's (`CLASSES`).

The search's 10 rigid parts are Def-GAN's ("following [5]"), taken from the shared helper
`pose_maps.limb_masks` (the whole image for the torso, a head box, eight limb quadrilaterals), and
its f_j are `pose_maps.part_affines`: least-squares affines between the parts' corner points (the
limb quadrilaterals' four corners, the torso's four joints), which is Eq. 2's fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from harness import DataError

from harness_plugins.shared.body_mask import body_mask
from harness_plugins.shared.pose_maps import keypoint_heatmaps, limb_masks, part_affines

CLASSES = 10
"""SPT's classes in the demo's order (`pose_common.SPT_CLASSES`): 0 background, 1 face, 2 hair, 3 upper clothes,
4 pants, 5 skirt, 6 left arm, 7 right arm, 8 left leg, 9 right leg."""
CLOTHING = (3, 4, 5)
"""Labels whose presence defines a map's clothing type (upper clothes, pants, skirt)."""
MISSING = -1
CHUNK = 32
"""Candidates scored at once (bounds the memory of the search: CHUNK × 10 parts × 10 classes × H × W)."""

# -- the inputs of H_S and H_A ------------------------------------------------------------------------
def one_hot(parsing: torch.Tensor) -> torch.Tensor:
    """(..., H, W) int labels → (..., 10, H, W) float one-hot map."""
    if parsing.dtype.is_floating_point or parsing.min() < 0 or parsing.max() >= CLASSES:
        raise DataError(f"SPT: semantic maps must hold int labels 0..{CLASSES - 1} (contract order)")
    return F.one_hot(parsing.long(), CLASSES).movedim(-1, -3).float()


def pose_inputs(pose: torch.Tensor, size: tuple[int, int], sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Heat maps (18, H, W) (Gaussian, σ px) and the binary pose mask M_p (1, H, W) of PG²'s joint
    connections (the official ``getPoseMask``: the Def-GAN body mask, the same drawing as mask-SSIM's)."""
    heatmaps = keypoint_heatmaps(pose, size, sigma=sigma)
    return heatmaps, body_mask(pose, size).float()[None]


# -- pseudo-label search (Eqs. 1–2) -----------------------------------------------------------------
def clothing_type(parsing: torch.Tensor, min_fraction: float = 0.005) -> frozenset[int]:
    """Which clothing labels a map shows (at least ``min_fraction`` of its pixels): the "same clothing
    type" criterion of the search (the paper does not define it further)."""
    counts = torch.bincount(parsing.flatten().long(), minlength=CLASSES).float() / parsing.numel()
    return frozenset(int(c) for c in CLOTHING if counts[c] >= min_fraction)


def pose_distance(a: torch.Tensor, b: torch.Tensor, height: int) -> float:
    """Mean displacement of the joints visible in both poses, as a fraction of the image height."""
    both = ((a != MISSING).all(dim=1) & (b != MISSING).all(dim=1))
    if not both.any():
        return float("inf")
    return float((a[both] - b[both]).norm(dim=1).mean()) / height


def search_scores(
    source_parsing: torch.Tensor, source_pose: torch.Tensor,
    candidates: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """Eq. 1 for every candidate (parsing S_c, pose p_c): the mean over the parts present in both of
    ‖B_s^j ⊗ S_s − f_j(B_c^j ⊗ S_c)‖² / |B_s^j|, on one-hot maps; +inf where no part is shared.

    f_j (Eq. 2) brings the candidate's part j into the source's pose: the part affine fitted from the
    source's part corners to the candidate's resamples (nearest) the candidate's masked map."""
    size = tuple(int(v) for v in source_parsing.shape[-2:])
    reference = one_hot(source_parsing)[None] * limb_masks(source_pose.float(), size)[:, None]  # (parts, 10, H, W)
    chunks = [_part_errors(reference, source_pose, candidates[i : i + CHUNK], size) for i in range(0, len(candidates), CHUNK)]
    if not chunks:
        return torch.zeros(0)
    errors, valid = (torch.cat(parts) for parts in zip(*chunks))
    count = valid.sum(dim=1)
    scores = torch.full((len(candidates),), float("inf"))
    shared = count > 0
    scores[shared] = (errors * valid).sum(dim=1)[shared] / count[shared]
    return scores


def _part_errors(
    reference: torch.Tensor, source_pose: torch.Tensor, candidates: Sequence[tuple[torch.Tensor, torch.Tensor]],
    size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per candidate and part: the normalised squared error of Eq. 1 and whether the part counts."""
    poses = torch.stack([pose for _, pose in candidates]).float()
    maps = one_hot(torch.stack([parsing for parsing, _ in candidates]))  # (N, 10, H, W)
    theta, valid = part_affines(poses, source_pose.float().expand_as(poses), size)  # source pixel -> candidate pixel
    own = reference.sum(dim=1)  # B_s (parts, H, W): the one-hot map sums to 1 inside the part
    theirs = limb_masks(poses, size)  # B_c (N, parts, H, W)
    valid = valid & (own.flatten(1).amax(1) > 0)[None] & (theirs.flatten(2).amax(2) > 0)
    n, parts = valid.shape
    masked = (maps[:, None] * theirs[:, :, None]).reshape(n * parts, CLASSES, *size)
    grid = F.affine_grid(theta.reshape(n * parts, 2, 3), [n * parts, CLASSES, *size], align_corners=False)
    warped = F.grid_sample(masked, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    errors = (reference[None] - warped.view(n, parts, CLASSES, *size)).square().sum(dim=(2, 3, 4))
    return errors / own.sum(dim=(1, 2)).clamp_min(1.0)[None], valid


def search_pseudo_label(
    source_parsing: torch.Tensor, source_pose: torch.Tensor,
    candidates: Sequence[tuple[torch.Tensor, torch.Tensor]], min_pose_distance: float,
) -> int | None:
    """Index of the candidate (parsing, pose) SPT takes as pseudo ground truth for the source: same
    clothing type, a pose differing by at least ``min_pose_distance`` (pairs with very similar poses
    are excluded), and the smallest Eq. 1 score; None when no candidate qualifies."""
    height = source_parsing.shape[-2]
    wanted = clothing_type(source_parsing)
    eligible = [
        i for i, (parsing, pose) in enumerate(candidates)
        if clothing_type(parsing) == wanted and pose_distance(source_pose, pose, height) >= min_pose_distance
    ]
    if not eligible:
        return None
    scores = search_scores(source_parsing, source_pose, [candidates[i] for i in eligible])
    best = int(torch.argmin(scores))
    return eligible[best] if torch.isfinite(scores[best]) else None
