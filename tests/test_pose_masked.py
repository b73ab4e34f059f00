"""`mask-ssim`/`mask-is`: the body mask against an independent geometric construction, mask-SSIM against
scikit-image called as Def-GAN calls it, mask-IS against the Inception Score of independently masked images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

import harness
from harness import DataError, UsageError
from harness.data import to_tensor, to_uint8
from harness_plugins.metrics import inception
from harness_plugins.metrics.pose_masked import mask_ssim
from harness_plugins.shared.body_mask import body_mask, draw_with_skimage
from harness_plugins.shared.inception_net import PROTOCOLS
from harness_plugins.shared.pose_maps import pg2_body_mask

H, W = 128, 64  # Market-1501

# An upright person in a 128×64 Market crop: 18 COCO-order (y, x) keypoints, one ear missing.
STANDING = np.array([
    [14, 33], [26, 32], [26, 22], [44, 20], [60, 19], [26, 42], [44, 44], [60, 45],
    [64, 25], [88, 25], [112, 25], [64, 39], [88, 39], [112, 40], [12, 30], [12, 36], [14, 27], [-1, -1],
], dtype=np.float64)

# Def-GAN's 23 limbs, 1-based as the annotation's joint numbers; written independently of the plugin.
LIMBS_1_BASED = [(2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
                 (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (2, 17), (2, 18), (9, 12), (12, 6),
                 (9, 3), (17, 18)]


def reference_mask(points: np.ndarray, height: int = H, width: int = W, edges: bool = True) -> np.ndarray:
    """The same mask from geometry alone: a pixel centre is in a limb's rectangle when its distance along
    the limb is within the segment and across it within 4 px, in a joint's disc when strictly closer than
    4 px; then a 5×5 closing with out-of-image pixels ignored. Pixel centres exactly on a rectangle's edge
    are all in (``edges=True``) or all out: a point-in-polygon test in floating point may go either way
    on them, so the plugin's mask must lie between the two."""
    radius, tol = 4.0, (1e-6 if edges else -1e-6)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    mask = np.zeros((height, width), dtype=bool)
    present = [not (p == -1).any() for p in points]
    for a, b in LIMBS_1_BASED:
        a, b = a - 1, b - 1
        if not (present[a] and present[b]) or (points[a] == points[b]).all():
            continue
        d = points[b] - points[a]
        length = np.hypot(*d)
        u = d / length
        rel_r, rel_c = rows - points[a][0], cols - points[a][1]
        along = rel_r * u[0] + rel_c * u[1]
        across = rel_r * -u[1] + rel_c * u[0]
        mask |= (along >= -tol) & (along <= length + tol) & (np.abs(across) <= radius + tol)
    for p, ok in zip(points, present):
        if ok:
            mask |= (rows - p[0]) ** 2 + (cols - p[1]) ** 2 < radius**2
    square = np.ones((5, 5), dtype=bool)
    closed = ndimage.binary_dilation(mask, square, border_value=0)
    return ndimage.binary_erosion(closed, square, border_value=1)


def random_pose(rng: np.random.Generator, missing: float = 0.2) -> np.ndarray:
    points = np.stack([rng.integers(0, H, 18), rng.integers(0, W, 18)], axis=1).astype(np.float64)
    points[rng.random(18) < missing] = -1
    return points


def poses() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    edge_cases = STANDING.copy()
    edge_cases[15] = edge_cases[14]  # a zero-length limb (eyes on one pixel)
    edge_cases[10] = [127, 25]  # an ankle on the bottom row: the closing meets the border
    edge_cases[4] = [60, 0]  # a wrist on the left edge
    return [STANDING, edge_cases, np.full((18, 2), -1.0)] + [random_pose(rng) for _ in range(40)]


def test_body_mask_matches_independent_construction():
    exact = 0
    for i, points in enumerate(poses()):
        ours = body_mask(torch.from_numpy(points).float(), (H, W))
        assert ours.dtype == torch.bool and ours.shape == (H, W)
        ours = ours.numpy()
        inner, outer = reference_mask(points, edges=False), reference_mask(points, edges=True)
        assert not (inner & ~ours).any(), f"pose {i}: missing {np.argwhere(inner & ~ours)[:5].tolist()}"
        assert not (ours & ~outer).any(), f"pose {i}: extra {np.argwhere(ours & ~outer)[:5].tolist()}"
        exact += np.array_equal(inner, outer)
    assert exact >= 20  # most random poses have no pixel centre on an edge: there the mask is pinned
    # Vertical and horizontal limbs put whole pixel columns exactly on an edge, in exact arithmetic:
    # scikit-image's polygon counts edge points as inside, so these come out with their edges.
    assert np.array_equal(body_mask(STANDING, (H, W)).numpy(), reference_mask(STANDING, edges=True))


def test_compiled_drawing_equals_the_skimage_calls():
    """`body_mask` (one compiled function) is bit-identical to Def-GAN's scikit-image calls on 300 random
    skeletons: fractional, integer (limbs along rows/columns put pixel centres exactly on rectangle
    edges), half-integer and coarse-grid coordinates, joints off the image, missing joints, other sizes."""
    rng = np.random.default_rng(7)
    for trial in range(300):
        height, width = ((H, W), (200, 120), (40, 90))[trial % 3]
        points = rng.uniform(-12, [height + 12, width + 12], (18, 2))
        grid = (None, 1.0, 0.5, 4.0, 8.0)[trial % 5]
        if grid:
            points = np.round(points / grid) * grid
        points[rng.random(18) < 0.15] = -1
        ours = body_mask(points, (height, width))
        reference = draw_with_skimage(points, (height, width))
        assert torch.equal(ours, reference), f"trial {trial}: {int((ours != reference).sum())} pixels differ"


def test_body_mask_basic_shape():
    standing = body_mask(STANDING, (H, W)).numpy()
    assert 0.15 < standing.mean() < 0.5  # the person, not the background
    assert standing[int(STANDING[1, 0]), int(STANDING[1, 1])]  # the neck
    assert not standing[0:3].any() and not standing[:, :10].any()  # the head's top and the far left
    assert not body_mask(np.full((18, 2), -1.0), (H, W)).any()
    with pytest.raises(DataError, match="18"):
        body_mask(np.zeros((17, 2)), (H, W))


def images(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A generated and a target uint8 image: a shared smooth scene plus independent noise."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, 8, 4), dtype=np.float32))
    scene = torch.nn.functional.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    make = lambda: (np.clip(scene + rng.normal(0, 0.1, scene.shape), 0, 1) * 255).round().astype(np.uint8)
    return make(), make()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_ssim_matches_skimage_called_as_defgan(seed):
    generated, target = images(seed)
    points = poses()[3 + seed] if seed else STANDING
    mask = body_mask(points, (H, W)).numpy()[..., None]  # the mask itself is tested above
    gen_masked, ref_masked = generated * mask, target * mask  # uint8, as Def-GAN's `image * mask[..., np.newaxis]`
    expected = structural_similarity(
        ref_masked, gen_masked, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1,
        data_range=gen_masked.max() - gen_masked.min(),
    )
    ours = mask_ssim(to_tensor(generated), to_tensor(target), torch.from_numpy(points), truncate=3.5)
    assert float(ours) == pytest.approx(expected, abs=1e-10)


def test_mask_ssim_metric():
    (g1, t1), (g2, t2) = images(3), images(4)
    samples = [
        {"id": "a", "target": to_tensor(t1), "target_pose": torch.from_numpy(STANDING).float()},
        {"id": "b", "target": to_tensor(t2), "target_pose": torch.from_numpy(poses()[1]).float()},
    ]
    predictions = [to_tensor(g1), to_tensor(g2)]
    metric = harness.create_metric("mask-ssim", target_field="target")
    values = metric.update(predictions, samples)
    expected = [float(mask_ssim(p, s["target"], s["target_pose"])) for p, s in zip(predictions, samples)]
    assert values == pytest.approx(expected)
    assert metric.compute() == {"mask-ssim": pytest.approx(np.mean(expected))}
    unmasked = float(harness.create_metric("ssim", convention="defgan", target_field="target").update(predictions[:1], samples[:1])[0])
    assert values[0] > unmasked  # the zeroed background agrees perfectly
    convention = metric.convention()
    assert convention["ssim_params"]["truncate"] == 4.0 and len(convention["limbs"]) == 23
    assert harness.create_metric("mask-ssim", truncate=3.5).convention()["ssim_params"]["truncate"] == 3.5
    with pytest.raises(UsageError, match="target_pose"):
        metric.update(predictions[:1], [{"id": "c", "target": samples[0]["target"]}])


def pg2_reference_mask(points: np.ndarray, height: int = H, width: int = W) -> np.ndarray:
    """PG²'s ``_getPoseMask(radius=4)`` written out as its loops: for each limb with both ends, 'Solid'
    discs (i² + j² ≤ 16 around the int-truncated point) at the ends and at int(length/4) − 1 points
    between, then grey dilation and erosion with a 5×5 square (scipy, edges reflected as skimage's)."""
    dense = np.zeros((height, width))

    def disc(r: float, c: float) -> None:
        r, c = int(r), int(c)
        for i in range(-4, 5):
            for j in range(-4, 5):
                if 0 <= r + i < height and 0 <= c + j < width and np.sqrt(float(i**2 + j**2)) <= 4:
                    dense[r + i, c + j] = 1

    for a, b in LIMBS_1_BASED:
        p0, p1 = points[a - 1], points[b - 1]
        if (p0 == -1).any() or (p1 == -1).any():
            continue
        disc(*p0)
        disc(*p1)
        n = int(np.sqrt((p0[0] - p1[0]) ** 2 + (p0[1] - p1[1]) ** 2) / 4)
        if n > 1:
            for i in range(1, n):
                disc(p0[0] + (p1[0] - p0[0]) * i / n, p0[1] + (p1[1] - p0[1]) * i / n)
    closed = ndimage.grey_erosion(ndimage.grey_dilation(dense, size=(5, 5), mode="reflect"), size=(5, 5), mode="reflect")
    return closed > 0


@pytest.mark.parametrize("index", [None, 0, 3, 6])
def test_pg2_body_mask_is_pg2s_own_get_pose_mask(index):
    points = STANDING if index is None else poses()[index]
    ours = pg2_body_mask(points, (H, W)).numpy()
    assert np.array_equal(ours, pg2_reference_mask(points))
    assert not np.array_equal(ours, body_mask(points, (H, W)).numpy())  # not Def-GAN's rectangles
    # a lone joint (no limb with both ends present) draws nothing, unlike Def-GAN's discs at every joint
    lone = np.full((18, 2), -1.0)
    lone[4] = (60, 19)
    assert not pg2_body_mask(lone, (H, W)).any() and body_mask(lone, (H, W)).any()


def test_mask_ssim_pg2_matches_score_mask_py():
    generated, target = images(5)
    mask = pg2_reference_mask(STANDING)[..., None].astype(np.float64) * 255  # the saved mask image
    gen_masked = np.uint8(mask / 255.0 * generated)  # score_mask.py's masking
    ref_masked = np.uint8(mask / 255.0 * target)
    expected = structural_similarity(gen_masked, ref_masked, channel_axis=-1, win_size=7, use_sample_covariance=True,
                                     gaussian_weights=False, data_range=255)
    ours = mask_ssim(to_tensor(generated), to_tensor(target), torch.from_numpy(STANDING), convention="pg2")
    assert float(ours) == pytest.approx(expected, abs=1e-10)
    sample = {"id": "a", "target": to_tensor(target), "target_pose": torch.from_numpy(STANDING).float()}
    metric = harness.create_metric("mask-ssim", convention="pg2", target_field="target")
    assert metric.update([to_tensor(generated)], [sample]) == [pytest.approx(expected, abs=1e-10)]
    record = metric.convention()
    assert record["convention"] == "pg2" and record["ssim_params"]["kernel"] == "uniform" and "_getPoseMask" in record["mask"]
    assert harness.create_metric("mask-ssim").convention()["convention"] == "defgan"
    with pytest.raises(UsageError, match="convention"):
        mask_ssim(to_tensor(generated), to_tensor(target), torch.from_numpy(STANDING), convention="pg3")


@pytest.fixture
def inception_stub(monkeypatch):
    """An Inception weights file where the metric looks (never loaded), and an extractor whose features are
    a fixed function of the image, so the score is computed without the 95 MB network."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    (folder / PROTOCOLS["pytorch-fid"].weights_file).write_bytes(b"stub")
    projection = np.random.default_rng(7).standard_normal((3 * 4 * 2, 2048)).astype(np.float32) / 40
    fc = np.random.default_rng(8).standard_normal((1008, 2048)) / 10
    seen: list[np.ndarray] = []

    def features(image: np.ndarray) -> np.ndarray:
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(image).permute(2, 0, 1)[None].float(), (4, 2))
        return pooled.flatten().numpy() @ projection

    def extract(self, batch):
        seen.extend(batch)
        return np.stack([features(image) for image in batch]), [str(len(seen) + i) for i in range(len(batch))], len(batch)

    monkeypatch.setattr(inception.InceptionExtractor, "__call__", extract)
    monkeypatch.setattr(inception.InceptionExtractor, "fc_weight", lambda self: fc)
    return seen, features, fc


def test_mask_is_scores_the_masked_generated_images(inception_stub):
    seen, features, fc = inception_stub
    pairs = [images(10 + i) for i in range(4)]
    pose_list = poses()[:2] + poses()[5:7]
    predictions = [to_tensor(g) for g, _ in pairs]
    samples = [{"id": str(i), "target": to_tensor(t), "target_pose": torch.from_numpy(p).float()}
               for i, ((_, t), p) in enumerate(zip(pairs, pose_list))]
    metric = harness.create_metric("mask-is", splits=2, batch_size=3, cache=False)
    metric.update(predictions[:3], samples[:3])
    metric.update(predictions[3:], samples[3:])
    values = metric.compute()

    expected_images = [g * body_mask(p, (H, W)).numpy()[..., None] for (g, _), p in zip(pairs, pose_list)]
    assert len(seen) == 4 and all(np.array_equal(a, b) for a, b in zip(seen, expected_images))
    logits = np.stack([features(image) for image in expected_images]).astype(np.float64) @ fc.T
    mean, std, _ = inception.inception_score(logits, splits=2)
    assert values == {"mask-is": pytest.approx(mean), "mask-is-std": pytest.approx(std)}
    assert metric.convention()["keypoints"].startswith("sample field 'target_pose'")
    assert np.array_equal(to_uint8(predictions[0]), pairs[0][0])
    with pytest.raises(UsageError, match="target_pose"):
        metric.update(predictions[:1], [{"id": "x", "target": samples[0]["target"]}])


def test_spt_leaderboard_files_pg2s_numbers_under_pg2s_convention():
    """PG²'s own Market mask-SSIM (0.792) sits, comparable, in the pg2 column; Def-GAN's (0.805) in the defgan one."""
    from harness.publish.definitions import load, packaged_dir
    from harness.publish.tables import build

    board = build(load(packaged_dir() / "spt-person-generation.yaml"), [])
    table = next(t for t in board.tables if t.dataset == "market1501-pose")
    rows = {row.method: row for row in table.rows}
    pg2, defgan = rows["PG²"].cells, rows["Def-GAN"].cells
    assert pg2["mask-ssim[pg2]"].value == 0.792 and pg2["mask-ssim[pg2]"].comparable and "mask-ssim[defgan]" not in pg2
    assert pg2["ssim[pg2]"].value == 0.253 and "ssim[defgan]" not in pg2
    assert defgan["mask-ssim[defgan]"].value == 0.805 and defgan["mask-ssim[defgan]"].comparable
