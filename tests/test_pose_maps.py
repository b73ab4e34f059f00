"""The shared pose-map helper: heatmaps, Def-GAN part masks, part affines and the deformable skip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.measure import grid_points_in_poly

from harness_plugins.shared import pose_maps
from harness_plugins.shared.pose_maps import deform, keypoint_heatmaps, limb_masks, part_affines, scale_keypoints


def skeleton() -> torch.Tensor:
    """A hand-built standing figure on a 64×32 grid (y, x), every keypoint present."""
    return torch.tensor([
        [8, 16], [14, 16],  # nose, neck
        [14, 11], [22, 10], [30, 10],  # right shoulder, elbow, wrist
        [14, 21], [22, 22], [30, 22],  # left
        [32, 12], [44, 12], [56, 12],  # right hip, knee, ankle
        [32, 20], [44, 20], [56, 20],  # left
        [7, 18], [7, 14], [8, 20], [8, 12],  # eyes, ears
    ], dtype=torch.float32)


def test_heatmap_values_at_known_points() -> None:
    keypoints = torch.full((18, 2), -1.0)
    keypoints[3] = torch.tensor([10.0, 5.0])
    maps = keypoint_heatmaps(keypoints, (20, 12), sigma=2.0)
    assert maps.shape == (18, 20, 12)
    assert maps[3, 10, 5] == pytest.approx(1.0)
    assert maps[3, 12, 5] == pytest.approx(math.exp(-4 / 8))  # 2 px down: exp(-d²/(2σ²))
    assert maps[3, 11, 6] == pytest.approx(math.exp(-2 / 8))
    assert maps[3, 0, 0] == pytest.approx(math.exp(-(100 + 25) / 8))
    assert torch.count_nonzero(maps[torch.arange(18) != 3]) == 0  # missing keypoints: zero maps


def test_heatmaps_match_defgan_formula_batched() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 30, size=(2, 18, 2)).astype(np.float32)
    points[0, [4, 9]] = -1
    maps = keypoint_heatmaps(torch.from_numpy(points), (32, 24))
    assert maps.shape == (2, 18, 32, 24)
    xx, yy = np.meshgrid(np.arange(24), np.arange(32))
    for b in range(2):
        for k in range(18):
            y, x = points[b, k]
            expected = np.zeros((32, 24)) if y == -1 else np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 6.0**2))
            np.testing.assert_allclose(maps[b, k].numpy(), expected, atol=1e-6)


def test_scale_keypoints_keeps_missing() -> None:
    points = torch.tensor([[10.0, 4.0], [-1.0, -1.0]] + [[0.0, 0.0]] * 16)
    scaled = scale_keypoints(points, (128, 64), (256, 256))
    assert scaled[0].tolist() == [20.0, 16.0]
    assert scaled[1].tolist() == [-1.0, -1.0]


def test_limb_mask_of_a_vertical_limb_by_hand() -> None:
    keypoints = torch.full((18, 2), -1.0)
    keypoints[8] = torch.tensor([10.0, 10.0])  # right hip
    keypoints[9] = torch.tensor([20.0, 10.0])  # right knee
    masks = limb_masks(keypoints, (32, 24), half_width=2.0)
    assert masks.shape == (10, 32, 24)
    assert masks[0].all()  # the whole-image part
    assert not masks[1].any()  # no head keypoints
    # Hip–knee: the hip end extended by 10 % (row 9), the knee end by 10 % of the new length (row 21.1),
    # ±2 px across: rows 9..21, columns 8..12, edges included.
    expected = torch.zeros(32, 24)
    expected[9:22, 8:13] = 1
    assert torch.equal(masks[2], expected)
    assert not masks[3:].any()


def test_limb_masks_match_skimage_polygons_and_head_box() -> None:
    keypoints = skeleton()
    masks = limb_masks(keypoints, (64, 32))
    st = math.sqrt(((18**2 + 1) + (18**2 + 1)) / 2)  # shoulder–hip distances
    assert pose_maps.torso_length(keypoints.double().numpy(), (64, 32)) == pytest.approx(st)
    for part, ((a, b), extend) in enumerate(zip(pose_maps.LIMB_PARTS, pose_maps.MASK_EXTEND), start=2):
        start, end = keypoints[a].double().numpy(), keypoints[b].double().numpy()
        start = start + (start - end) * 0.1
        end = end + (end - start) * extend
        direction = (end - start) / np.linalg.norm(end - start)
        normal = np.array([direction[1], -direction[0]]) * 0.2 * st
        quad = np.stack([start + normal, start - normal, end - normal, end + normal])
        expected = grid_points_in_poly((64, 32), quad)
        assert (masks[part].numpy().astype(bool) == expected).mean() > 0.995, pose_maps.PART_NAMES[part]
    # Head: centre = int(mean of nose, eyes, ears) = (7, 16), half size int(0.4·st) = 7.
    expected = torch.zeros(64, 32)
    expected[0:14, 9:23] = 1
    assert torch.equal(masks[1], expected)


def test_missing_limb_gives_zero_mask_and_invalid_transform() -> None:
    source, target = skeleton(), skeleton()
    target[10] = -1  # right ankle missing in the target: no right lower-leg part
    source[[3, 4, 6, 7]] = -1  # both elbows and wrists missing in the source: no arm transforms
    masks = limb_masks(target, (64, 32))
    assert not masks[4].any()
    theta, valid = part_affines(source, target, (64, 32))
    assert theta.shape == (10, 2, 3)
    assert valid.tolist() == [True, True, True, True, False, True, False, False, False, False]


def test_part_affines_of_a_translated_pose_and_deform() -> None:
    source = skeleton()
    target = source.clone()
    target[:, 1] -= 3  # the target figure stands 3 px to the left
    theta, valid = part_affines(source, target, (64, 32))
    assert valid.all()
    # A pure translation by +3 px in x is +6/W in normalised coordinates.
    expected = torch.tensor([[1.0, 0.0, 6 / 32], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(theta, expected.expand(10, 2, 3), atol=1e-5, rtol=0)
    image = torch.rand(1, 3, 64, 32) + 0.1
    masks = limb_masks(target, (64, 32))
    out = deform(image, theta[None], valid[None], masks[None])
    # The whole-image part carries the torso transform: every pixel but the last 3 columns is the source
    # pixel 3 columns to its right (max with the other parts, which show the same shifted pixels).
    torch.testing.assert_close(out[..., :29], image[..., 3:], atol=1e-5, rtol=0)
    assert torch.all(out[..., 29:] == 0)


def test_nearest_deform_copies_pixels_where_bilinear_blends() -> None:
    """A 2.4 px shift: nearest sampling (Def-GAN's tf.contrib.image.transform default) reads whole source
    pixels 2 columns over; bilinear mixes columns 2 and 3."""
    source = skeleton()
    target = source.clone()
    target[:, 1] -= 2.4
    theta, valid = part_affines(source, target, (64, 32))
    image = torch.rand(1, 3, 64, 32) + 0.1
    masks = limb_masks(target, (64, 32))
    nearest = deform(image, theta[None], valid[None], masks[None], "nearest")
    torch.testing.assert_close(nearest[..., :28], image[..., 2:30], atol=0, rtol=0)
    bilinear = deform(image, theta[None], valid[None], masks[None])
    torch.testing.assert_close(bilinear[..., :28], 0.6 * image[..., 2:30] + 0.4 * image[..., 3:31], atol=1e-4, rtol=0)


def test_def_gan_warps_nearest_by_default() -> None:
    from harness_plugins.methods.pose_transfer.def_gan import DefGAN

    assert DefGAN(width=4).build().warp == "nearest"
    assert DefGAN(width=4, warp="bilinear").build().warp == "bilinear"


def test_part_affine_maps_target_points_to_source_points() -> None:
    source = skeleton()
    target = source.clone()
    target[:, 0] = target[:, 0] * 0.5 + 4  # squashed vertically and moved down
    theta, _valid = part_affines(source, target, (64, 32))
    to_norm = lambda p: torch.stack([(2 * p[:, 1] + 1) / 32 - 1, (2 * p[:, 0] + 1) / 64 - 1], 1)
    torso = list(pose_maps.TORSO)
    mapped = to_norm(target[torso]) @ theta[0, :, :2].T + theta[0, :, 2]
    torch.testing.assert_close(mapped, to_norm(source[torso]), atol=1e-5, rtol=0)


def test_keypoint_discs_are_pg2s_sparse_keypoints() -> None:
    """PG²'s ``_getSparseKeypoint(mode='Solid')`` as its loops: int-truncated centre, i² + j² ≤ r² (inclusive)."""
    def official(r: float, c: float, height: int, width: int, radius: int = 4) -> np.ndarray:
        out = np.zeros((height, width), dtype=bool)
        r, c = int(r), int(c)
        for i in range(-radius, radius + 1):
            for j in range(-radius, radius + 1):
                if 0 <= r + i < height and 0 <= c + j < width and np.sqrt(float(i**2 + j**2)) <= radius:
                    out[r + i, c + j] = True
        return out

    keypoints = torch.full((18, 2), -1.0)
    keypoints[0] = torch.tensor([5.0, 6.0])
    keypoints[7] = torch.tensor([0.0, 11.0])  # at the border: clipped
    keypoints[9] = torch.tensor([7.8, 3.6])  # truncated to (7, 3), not rounded
    maps = pose_maps.keypoint_discs(keypoints, (16, 12))
    for k in (0, 7, 9):
        assert np.array_equal(maps[k].numpy().astype(bool), official(*keypoints[k].tolist(), 16, 12))
    assert maps[0].sum() == 49  # distance exactly 4 counts (skimage's open disc has 37 pixels)
    assert maps[[i for i in range(18) if i not in (0, 7, 9)]].sum() == 0
