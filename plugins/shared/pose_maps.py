"""Pose geometry shared by the pose-transfer methods (PG², Def-GAN, SPT) and the pose-masked metrics.

One place for what every pose-guided generator needs from 18 OpenPose COCO-order keypoints (y, x),
``-1`` in both coordinates where missing:

* `keypoint_heatmaps`: Def-GAN's ``pose_utils.cords_to_map`` (also PG²'s input): one Gaussian
  exp(-((y-yk)² + (x-xk)²) / (2σ²)) per keypoint on the pixel grid, a zero map for a missing keypoint.
* `keypoint_discs`: PG²'s pose maps, 1 within 4 px (distance ≤ 4) of each keypoint's integer pixel.
* `limb_masks`: the 10 body-part masks of Def-GAN's deformable skip connections
  (``AliaksandrSiarohin/pose-gan``, ``pose_transform.pose_masks``, final version): the whole image
  (the part the torso transform moves), a head box, and eight limb quadrilaterals.
* `part_affines`: the per-part affine transforms (``pose_transform.affine_transforms``), least squares
  from target-pose points to source-pose points, as `affine_grid` matrices in normalised coordinates,
  so one matrix serves every feature resolution.
* `deform`: a deformable skip connection: warp features by each part's transform, mask, take the max.
* `COCO18_LIMBS`: the 23 limbs of Def-GAN's body mask (``pose_utils.produce_ma_mask``, ported from
  PG²'s ``limbSeq``), used by the mask-SSIM metric and PG²'s pose-mask loss.
* `pg2_body_mask`: PG²'s own body mask (``_getPoseMask``, radius 4): `keypoint_discs`' discs along those
  limbs, then a closing; PG²'s loss mask and the ``pg2`` convention of mask-SSIM / mask-IS.

Def-GAN's first part is a torso rectangle in the paper; the official code's final version replaced its
mask with the whole image (``body_mask = np.ones(img_size)``), which is what is done here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.morphology import dilation, erosion

from harness import DataError

MISSING = -1
NUM_KEYPOINTS = 18
COCO18_NAMES: tuple[str, ...] = (
    "nose", "neck", "Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri",
    "Rhip", "Rkne", "Rank", "Lhip", "Lkne", "Lank", "Leye", "Reye", "Lear", "Rear",
)
COCO18_LIMBS: tuple[tuple[int, int], ...] = (
    # 0 nose, 1 neck, 2-4 right shoulder/elbow/wrist, 5-7 left, 8-10 right hip/knee/ankle, 11-13 left,
    # 14/15 eyes, 16/17 ears (OpenPose COCO order, as in the PATN/Def-GAN annotation files).
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7),  # shoulders and arms
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),  # trunk sides and legs
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (1, 16), (1, 17),  # head
    (8, 11), (11, 5), (8, 2), (16, 17),  # hips, torso diagonals, ears: close the body outline
)

RSHO, LSHO, RHIP, LHIP = 2, 5, 8, 11
TORSO = (RHIP, LHIP, LSHO, RSHO)
HEAD = (0, 14, 15, 16, 17)  # nose, eyes, ears
# Def-GAN's eight limbs (from, to), in its order, with the extension of the far end (fraction of the
# limb length) used for the mask and for the transform (the official code uses different ones).
LIMB_PARTS: tuple[tuple[int, int], ...] = ((8, 9), (11, 12), (9, 10), (12, 13), (2, 3), (5, 6), (3, 4), (6, 7))
MASK_EXTEND = (0.1, 0.1, 0.5, 0.5, 0.1, 0.1, 0.5, 0.5)
AFFINE_EXTEND = (0.1, 0.1, 0.3, 0.3, 0.1, 0.1, 0.3, 0.3)
MIRROR = {2: 5, 3: 6, 4: 7, 5: 2, 6: 3, 7: 4, 8: 11, 9: 12, 10: 13, 11: 8, 12: 9, 13: 10}
PART_NAMES: tuple[str, ...] = ("image", "head") + tuple(f"{COCO18_NAMES[a]}-{COCO18_NAMES[b]}" for a, b in LIMB_PARTS)
NUM_PARTS = len(PART_NAMES)
BASE_EXTEND = 0.1  # the near end's extension (inc_from)
HALF_WIDTH = 0.2  # a limb quadrilateral's half width, in torso lengths (p_from = p_to)
HEAD_HALF = 0.4  # the head box's half size, in torso lengths


def present(keypoints: torch.Tensor) -> torch.Tensor:
    """Bool (..., 18): the keypoint is annotated (neither coordinate is -1)."""
    return (keypoints != MISSING).all(dim=-1)


def keypoint_heatmaps(keypoints: torch.Tensor, size: tuple[int, int], sigma: float = 6.0) -> torch.Tensor:
    """Gaussian maps (..., 18, H, W) of (..., 18, 2) (y, x) keypoints; zero maps where a keypoint is missing.

    Def-GAN's ``cords_to_map`` (σ = 6 at 128×64 and 256×256); the grid is the pixel indices.
    """
    keypoints = torch.as_tensor(keypoints, dtype=torch.float32)
    height, width = int(size[0]), int(size[1])
    ys = torch.arange(height, dtype=torch.float32, device=keypoints.device)
    xs = torch.arange(width, dtype=torch.float32, device=keypoints.device)
    dy = (ys - keypoints[..., 0:1]) ** 2  # (..., 18, H)
    dx = (xs - keypoints[..., 1:2]) ** 2  # (..., 18, W)
    maps = torch.exp(-(dy[..., :, None] + dx[..., None, :]) / (2 * sigma**2))
    return maps * present(keypoints)[..., None, None].to(maps.dtype)


def keypoint_discs(keypoints: torch.Tensor, size: tuple[int, int], radius: float = 4.0) -> torch.Tensor:
    """Binary maps (..., 18, H, W): PG²'s pose maps (``_getSparsePose`` / ``_getSparseKeypoint``, 'Solid').

    As the official code: the keypoint is truncated to an integer pixel (``int(r)``, ``int(c)``) and every
    pixel at distance ≤ ``radius`` from it is 1 (inclusive, so the disc of radius 4 has 49 pixels, not
    ``skimage.draw.disk``'s 37 open disc around the real-valued point); missing keypoints give zero maps.
    """
    keypoints = torch.as_tensor(keypoints, dtype=torch.float32)
    centres = torch.trunc(keypoints)  # Python int(): toward zero
    ys = torch.arange(int(size[0]), dtype=torch.float32, device=keypoints.device)
    xs = torch.arange(int(size[1]), dtype=torch.float32, device=keypoints.device)
    dy = (ys - centres[..., 0:1]) ** 2
    dx = (xs - centres[..., 1:2]) ** 2
    maps = ((dy[..., :, None] + dx[..., None, :]) <= radius**2).float()
    return maps * present(keypoints)[..., None, None].float()


def _disc_offsets(radius: int) -> np.ndarray:
    """(K, 2) pixel offsets (di, dj) with sqrt(di² + dj²) ≤ radius: PG²'s ``_getSparseKeypoint`` 'Solid' disc."""
    steps = np.arange(-radius, radius + 1)
    di, dj = np.meshgrid(steps, steps, indexing="ij")
    inside = di**2 + dj**2 <= radius**2
    return np.stack([di[inside], dj[inside]], axis=1)


def pg2_body_mask(keypoints: torch.Tensor | np.ndarray, size: tuple[int, int], radius: int = 4, closing: int = 5) -> torch.Tensor:
    """PG²'s body mask (bool, H×W) from 18 COCO-order (y, x) keypoints, −1 where missing
    (``datasets/convert_market.py: _getPoseMask``, stored as ``pose_mask_r4``).

    For each of the `COCO18_LIMBS` whose two ends are present: a solid disc (distance ≤ ``radius`` from
    the int-truncated point) at both ends and at ``int(length / radius) − 1`` evenly spaced points between
    them (none when that count is below 2); joints outside every drawn limb get nothing. Then grey
    dilation and erosion with a ``closing``×``closing`` square (scikit-image, as the official code). The
    in-between points are the Python 3 reading ``int(r0 + (r1 − r0)·i/n)``; the Python 2 original floors
    ``(r1 − r0)·i/n`` on integer keypoints, the same pixels for integer keypoints inside the image."""
    points = np.asarray(keypoints.detach().cpu() if isinstance(keypoints, torch.Tensor) else keypoints, np.float64)
    if points.shape != (NUM_KEYPOINTS, 2):
        raise DataError(f"PG2 body mask: expected 18 COCO-order (y, x) keypoints, shape (18, 2); got {points.shape}")
    height, width = int(size[0]), int(size[1])
    present = ~(points == MISSING).any(axis=1)
    offsets = _disc_offsets(radius)
    dense = np.zeros((height, width), dtype=np.float64)

    def stamp(row: float, col: float) -> None:
        rows, cols = int(row) + offsets[:, 0], int(col) + offsets[:, 1]  # int(): the official truncation
        keep = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        dense[rows[keep], cols[keep]] = 1.0

    for start, end in COCO18_LIMBS:
        if not (present[start] and present[end]):
            continue
        (r0, c0), (r1, c1) = points[start], points[end]
        stamp(r0, c0)
        stamp(r1, c1)
        samples = int(np.sqrt((r0 - r1) ** 2 + (c0 - c1) ** 2) / radius)
        for i in range(1, samples if samples > 1 else 0):
            stamp(r0 + (r1 - r0) * i / samples, c0 + (c1 - c0) * i / samples)
    square = np.ones((closing, closing), dtype=bool)
    return torch.from_numpy(erosion(dilation(dense, square), square) > 0)


def scale_keypoints(keypoints: torch.Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> torch.Tensor:
    """Keypoints of an image of ``from_size`` expressed in an image of ``to_size``; missing stay -1."""
    factor = torch.tensor([to_size[0] / from_size[0], to_size[1] / from_size[1]], dtype=torch.float32)
    keypoints = torch.as_tensor(keypoints, dtype=torch.float32)
    return torch.where(present(keypoints)[..., None], keypoints * factor.to(keypoints.device), keypoints)


def torso_length(keypoints: np.ndarray, size: tuple[int, int]) -> float:
    """Def-GAN's scale ``st``: RMS of the two shoulder–hip distances.

    Def-GAN only sees poses with both shoulders and hips; a pose without them falls back to the sides
    that are there, and without any side to a quarter of the image height.
    """
    sides = [np.sum((keypoints[hip] - keypoints[sho]) ** 2) for hip, sho in ((RHIP, RSHO), (LHIP, LSHO))
             if (keypoints[[hip, sho]] != MISSING).all()]
    return float(np.sqrt(np.mean(sides))) if sides else size[0] / 4.0


def _quad(start: np.ndarray, end: np.ndarray, st: float, extend: float, half: float) -> np.ndarray:
    """Def-GAN's ``estimate_polygon``: the limb extended at both ends, ± ``half`` along the normal (4×2 (y, x))."""
    start = start + (start - end) * BASE_EXTEND
    end = end + (end - start) * extend  # from the already-extended near end, as Def-GAN
    along = start - end  # (y, x)
    normal = np.array([along[1], -along[0]])  # Def-GAN's (-v_y, v_x) in (x, y), written in (y, x)
    norm = np.linalg.norm(normal)
    if norm == 0:
        return np.stack([start + 1, start - 1, end - 1, end + 1])
    normal = normal / norm * st * half
    return np.stack([start + normal, start - normal, end - normal, end + normal])


def _inside(points: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Bool grid: pixel (row, col) inside the convex quadrilateral (edges count as inside)."""
    signs = []
    for k in range(4):
        a, b = quad[k], quad[(k + 1) % 4]
        signs.append((b[0] - a[0]) * (points[..., 1] - a[1]) - (b[1] - a[1]) * (points[..., 0] - a[0]))
    signs = np.stack(signs)
    return (signs >= 0).all(axis=0) | (signs <= 0).all(axis=0)


def _part_masks(keypoints: np.ndarray, size: tuple[int, int], half_width: float | None) -> np.ndarray:
    height, width = size
    ok = (keypoints != MISSING).all(axis=1)
    st = torso_length(keypoints, size)
    half = HALF_WIDTH * st if half_width is None else float(half_width)
    masks = np.zeros((NUM_PARTS, height, width), dtype=np.float32)
    masks[0] = 1.0
    head = [k for k in HEAD if ok[k]]
    if head:
        centre = np.mean(keypoints[head], axis=0).astype(int)  # (y, x), truncated as Def-GAN
        border = int(HEAD_HALF * st if half_width is None else 2 * float(half_width))
        low = np.maximum(centre - border, 0)
        high = np.minimum(centre + border, (height, width))
        masks[1, low[0]:high[0], low[1]:high[1]] = 1.0
    grid = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"), axis=-1).astype(np.float64)
    for part, ((start, end), extend) in enumerate(zip(LIMB_PARTS, MASK_EXTEND), start=2):
        if ok[start] and ok[end]:
            quad = _quad(keypoints[start], keypoints[end], 1.0, extend, half)
            masks[part] = _inside(grid, quad)
    return masks


def limb_masks(keypoints: torch.Tensor, size: tuple[int, int], half_width: float | None = None) -> torch.Tensor:
    """Def-GAN's 10 body-part masks (..., 10, H, W) (float 0/1) of (..., 18, 2) (y, x) keypoints.

    Parts (`PART_NAMES`): the whole image, the head box (centre = mean of the present nose/eyes/ears,
    half size 2·``half_width``), and eight limb quadrilaterals (near end extended by 10 % of the limb,
    far end by 10 % (upper limbs) or 50 % (lower limbs), half width ``half_width``). ``half_width``
    None is Def-GAN's 0.2·st (st: `torso_length`); a part whose keypoints are missing is all zero.
    """
    points = torch.as_tensor(keypoints, dtype=torch.float32)
    flat = points.detach().cpu().reshape(-1, NUM_KEYPOINTS, 2).double().numpy()
    size = (int(size[0]), int(size[1]))
    masks = np.stack([_part_masks(kp, size, half_width) for kp in flat]) if len(flat) else np.zeros((0, NUM_PARTS) + size)
    return torch.from_numpy(masks).float().reshape(*points.shape[:-2], NUM_PARTS, *size).to(points.device)


def _fit(target: np.ndarray, source: np.ndarray) -> np.ndarray | None:
    """Least-squares affine (3×3, (x, y) homogeneous) taking ``target`` points to ``source`` points; None if degenerate."""
    design = np.concatenate([target[:, ::-1], np.ones((len(target), 1))], axis=1)  # (x, y, 1)
    if np.linalg.matrix_rank(design) < 3:
        return None
    solution, *_ = np.linalg.lstsq(design, source[:, ::-1], rcond=None)
    matrix = np.eye(3)
    matrix[:2] = solution.T
    return matrix if abs(np.linalg.det(matrix)) > 1e-8 else None


def _affines(source: np.ndarray, target: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ok_s, ok_t = (source != MISSING).all(axis=1), (target != MISSING).all(axis=1)
    st_s, st_t = torso_length(source, size), torso_length(target, size)
    fits: list[np.ndarray | None] = []
    torso = list(TORSO)
    fits.append(_fit(target[torso], source[torso]) if ok_s[torso].all() and ok_t[torso].all() else None)
    head = [k for k in HEAD if ok_s[k] and ok_t[k]]
    shoulders_ok = ok_s[[LSHO, RSHO]].all() and ok_t[[LSHO, RSHO]].all()
    fits.append(_fit(target[head + [LSHO, RSHO]], source[head + [LSHO, RSHO]]) if head and shoulders_ok else None)
    for (start, end), extend in zip(LIMB_PARTS, AFFINE_EXTEND):
        fit = None
        if ok_t[start] and ok_t[end]:
            # A limb missing in the source borrows the other side's (Def-GAN's mirror rule).
            for a, b in ((start, end), (MIRROR[start], MIRROR[end])):
                if ok_s[a] and ok_s[b]:
                    fit = _fit(_quad(target[start], target[end], st_t, extend, HALF_WIDTH),
                               _quad(source[a], source[b], st_s, extend, HALF_WIDTH))
                    break
        fits.append(fit)
    height, width = size
    to_norm = np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]])
    thetas = np.zeros((NUM_PARTS, 2, 3))
    valid = np.zeros(NUM_PARTS, dtype=bool)
    for part, fit in enumerate(fits):
        if fit is not None:
            thetas[part] = (to_norm @ fit @ np.linalg.inv(to_norm))[:2]
            valid[part] = True
        else:
            thetas[part] = np.eye(3)[:2]
    return thetas, valid


def part_affines(source: torch.Tensor, target: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-part affine transforms from target-pose pixels to source-pose pixels, for `deform`.

    Returns ``theta`` (..., 10, 2, 3) for ``F.affine_grid(..., align_corners=False)`` (normalised
    coordinates, so valid at any feature resolution) and ``valid`` (..., 10) bool: False where Def-GAN
    uses its "no point" transform (part missing in either pose, or a degenerate fit), whose warp is zero.
    """
    src = torch.as_tensor(source, dtype=torch.float32)
    tgt = torch.as_tensor(target, dtype=torch.float32)
    lead = src.shape[:-2]
    s = src.detach().cpu().reshape(-1, NUM_KEYPOINTS, 2).double().numpy()
    t = tgt.detach().cpu().reshape(-1, NUM_KEYPOINTS, 2).double().numpy()
    size = (int(size[0]), int(size[1]))
    pairs = [_affines(a, b, size) for a, b in zip(s, t)]
    thetas = torch.from_numpy(np.stack([p[0] for p in pairs])).float().reshape(*lead, NUM_PARTS, 2, 3)
    valid = torch.from_numpy(np.stack([p[1] for p in pairs])).reshape(*lead, NUM_PARTS)
    return thetas.to(src.device), valid.to(src.device)


def deform(features: torch.Tensor, theta: torch.Tensor, valid: torch.Tensor, masks: torch.Tensor,
           mode: str = "bilinear") -> torch.Tensor:
    """Def-GAN's deformable skip connection on (B, C, h, w) source features.

    Each part's transform warps the features (``mode``: bilinear, or nearest as Def-GAN's
    ``tf.contrib.image.transform`` default; zero outside), the part mask (resized nearest to h×w)
    multiplies them, and the parts are combined by the element-wise max (Def-GAN's ``'max'``).
    """
    batch, channels, height, width = features.shape
    parts = theta.shape[1]
    grid = F.affine_grid(theta.reshape(batch * parts, 2, 3).to(features.dtype),
                         [batch * parts, channels, height, width], align_corners=False)
    repeated = features.unsqueeze(1).expand(batch, parts, channels, height, width).reshape(batch * parts, channels, height, width)
    warped = F.grid_sample(repeated, grid, mode=mode, padding_mode="zeros", align_corners=False)
    gate = F.interpolate(masks.to(features.dtype), size=(height, width), mode="nearest")
    gate = gate * valid.to(features.dtype)[..., None, None]
    warped = warped.reshape(batch, parts, channels, height, width) * gate[:, :, None]
    return warped.max(dim=1).values
