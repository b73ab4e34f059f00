"""SPT's face crops: a face placed, scaled and rotated in an image is cropped to the canonical view;
faces with too few keypoints are masked; gradients reach the image."""

from __future__ import annotations

import math

import pytest
import torch
from harness_plugins.methods.pose_transfer.face_crops import (
    CANONICAL,
    FACE_KEYPOINTS,
    crop_faces,
    crop_side,
    face_transforms,
    similarity_transforms,
)
from harness_plugins.methods.pose_transfer.spt_networks import discriminator

SIZE = (256, 256)


def placed_pose(scale: float, angle: float, centre: tuple[float, float], mirror: bool = False) -> torch.Tensor:
    """A COCO-18 pose (y, x) whose face keypoints are the canonical ones moved by a known similarity:
    (x, y) = scale · R(angle) · (u, v) + centre; all body keypoints missing."""
    pose = torch.full((18, 2), -1.0)
    template = CANONICAL * torch.tensor([-1.0, 1.0]) if mirror else CANONICAL
    x, y = similarity(template[:, 0], template[:, 1], scale, angle, centre)
    pose[list(FACE_KEYPOINTS)] = torch.stack([y, x], dim=1)
    return pose


def similarity(u: torch.Tensor, v: torch.Tensor, scale: float, angle: float, centre: tuple[float, float]):
    c, s = math.cos(angle), math.sin(angle)
    return scale * (c * u - s * v) + centre[0], scale * (s * u + c * v) + centre[1]


def pattern(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A smooth picture in canonical face coordinates, different along u and v (so a rotation shows)."""
    return torch.sin(2.5 * u + 0.5) * torch.cos(1.5 * v) + 0.3 * v


def test_crop_side_scales_with_the_image_and_d_f_scores_it():
    assert crop_side(256) == 32 and crop_side(512) == 64 and crop_side(128) == 32
    assert discriminator(3, 8)(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 2, 2)


@pytest.mark.parametrize("angle", [0.0, 0.6, -1.2])
def test_a_rotated_face_is_cropped_to_the_canonical_view(angle):
    scale, centre = 40.0, (131.0, 97.0)  # face 80 px across the crop window (a 32 px crop: 2.5 px per crop pixel)
    pose = placed_pose(scale, angle, centre)
    # the image shows the pattern of the face's own coordinates: invert the similarity at every pixel
    rows, cols = torch.arange(SIZE[0], dtype=torch.float32), torch.arange(SIZE[1], dtype=torch.float32)
    ys, xs = torch.meshgrid(rows, cols, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = (xs - centre[0]) / scale, (ys - centre[1]) / scale
    image = pattern(c * dx + s * dy, -s * dx + c * dy)[None, None]
    theta, valid = similarity_transforms(pose[None], SIZE)
    assert valid.tolist() == [True]
    crop = crop_faces(image, theta, 32)[0, 0]
    grid = (torch.arange(32, dtype=torch.float32) * 2 + 1) / 32 - 1  # crop pixel centres, normalised
    expected = pattern(grid[None, :], grid[:, None])
    assert (crop - expected).abs().max() < 0.03  # bilinear sampling of a smooth picture


def test_a_marker_lands_on_its_canonical_crop_pixel():
    angle, scale, centre = 0.9, 24.0, (60.5, 170.0)
    pose = placed_pose(scale, angle, centre)
    row, col = 9, 22  # a crop pixel and its canonical coordinates
    u, v = (2 * col + 1) / 32 - 1, (2 * row + 1) / 32 - 1
    x, y = similarity(torch.tensor(u), torch.tensor(v), scale, angle, centre)
    image = torch.zeros(1, 3, *SIZE)
    image[0, :, round(float(y)) - 1 : round(float(y)) + 2, round(float(x)) - 1 : round(float(x)) + 2] = 1.0
    theta, _ = similarity_transforms(pose[None], SIZE)
    crop = crop_faces(image, theta, 32)[0, 0]
    assert divmod(int(crop.argmax()), 32) == (row, col)


def test_the_keypoint_handedness_does_not_flip_the_face():
    """Eyes/ears labelled the other way round: the mirrored template fits, the crop stays upright."""
    angle, scale, centre = 0.3, 30.0, (128.0, 128.0)
    theta_mirror, valid = similarity_transforms(placed_pose(scale, angle, centre, mirror=True)[None], SIZE)
    assert valid.tolist() == [True]
    # the crop's "down" (v) still points to the image's rotated down: the second column of the matrix
    down = theta_mirror[0, :, 1] * torch.tensor([SIZE[1] / 2, SIZE[0] / 2])
    torch.testing.assert_close(down, scale * torch.tensor([-math.sin(angle), math.cos(angle)]), rtol=1e-4, atol=1e-3)


def test_non_square_images_keep_the_face_square():
    size = (128, 64)
    pose = placed_pose(10.0, 0.0, (32.0, 20.0))
    theta, valid = similarity_transforms(pose[None], size)
    assert valid.tolist() == [True]
    # one crop unit is 10 px both ways: 2·10/64 in x, 2·10/128 in y (normalised per side)
    torch.testing.assert_close(theta[0, :, :2], torch.tensor([[20 / 64, 0.0], [0.0, 20 / 128]]))
    torch.testing.assert_close(theta[0, :, 2], torch.tensor([(2 * 32 + 1) / 64 - 1, (2 * 20 + 1) / 128 - 1]))


def test_faces_with_too_few_keypoints_are_masked_without_nan():
    full = placed_pose(30.0, 0.2, (100.0, 90.0))
    two = full.clone()
    two[[0, 14, 16]] = -1  # one eye and one ear left: a similarity fits exactly but nothing checks it
    three = full.clone()
    three[[14, 16]] = -1  # profile: nose, one eye, one ear
    none = torch.full((18, 2), -1.0)
    tiny = placed_pose(0.4, 0.0, (50.0, 50.0))  # a face under a pixel: keypoints on top of each other
    theta, valid = similarity_transforms(torch.stack([full, two, three, none, tiny]), SIZE)
    assert valid.tolist() == [True, False, True, False, False]
    assert torch.isfinite(theta).all()
    torch.testing.assert_close(theta[1], torch.eye(2, 3))
    torch.testing.assert_close(theta[2], theta[0], rtol=1e-4, atol=1e-4)  # the visible points fit the same face


def test_gradients_flow_into_the_face_region_only():
    pose = placed_pose(20.0, 0.4, (128.0, 128.0))
    image = torch.rand(1, 3, *SIZE, requires_grad=True)
    theta, _ = similarity_transforms(pose[None], SIZE)
    crop_faces(image, theta, 32).sum().backward()
    grad = image.grad[0, 0]
    assert grad.sum() == pytest.approx(32 * 32)  # bilinear weights of each crop pixel sum to 1
    window = grad[128 - 30 : 128 + 31, 128 - 30 : 128 + 31]  # the rotated crop window reaches 20·√2 px out
    assert window.sum() == pytest.approx(float(grad.sum()))
    assert float(grad[:90].sum()) == 0.0 and float(grad[170:].sum()) == 0.0


# -- the demo's box (the default crop) ----------------------------------------------------------------------------
def torso_pose(head: dict[int, tuple[float, float]], torso: float = 80.0, top: float = 60.0) -> torch.Tensor:
    """Shoulders at ``top``, hips ``torso`` px below (so st = torso), and the given head keypoints (y, x)."""
    pose = torch.full((18, 2), -1.0)
    pose[[2, 5, 8, 11]] = torch.tensor([[top, 100.0], [top, 140.0], [top + torso, 100.0], [top + torso, 140.0]])
    for index, point in head.items():
        pose[index] = torch.tensor(point)
    return pose


def test_the_box_crop_is_the_demos_estimate_face_transform():
    """Half side int(0.40 · st) around the head keypoints' mean, rounded down to whole pixels, clipped."""
    pose = torso_pose({0: (40.0, 121.0), 14: (35.0, 115.0), 15: (35.0, 126.0)})  # mean (36.67, 120.67) -> (36, 120)
    theta, valid = face_transforms(pose[None], SIZE)
    assert valid.tolist() == [True]
    # box x in [120 - 32, 120 + 32] = [88, 152], y in [max(36 - 32, 0), 68] = [4, 68] (pixel edges)
    expected = torch.tensor([[64 / 256, 0.0, (88 + 152) / 256 - 1], [0.0, 64 / 256, (4 + 68) / 256 - 1]])
    torch.testing.assert_close(theta[0], expected)
    # the crop shows exactly that box: a picture of its pixel indices, averaged back over the crop's 2x2 cells
    ys, xs = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    crop = crop_faces(torch.stack([ys, xs])[None], theta, 32)[0]
    assert float(crop[1, 0, 0]) == pytest.approx(88 + 0.5, abs=0.01) and float(crop[0, 0, 0]) == pytest.approx(4 + 0.5, abs=0.01)
    assert float(crop[1, 0, -1]) == pytest.approx(152 - 1.5, abs=0.01)
    near_top = torso_pose({0: (10.0, 120.0)})  # box clipped at the top edge: y in [0, 42], still 64 wide
    theta, valid = face_transforms(near_top[None], SIZE)
    torch.testing.assert_close(theta[0, 1], torch.tensor([0.0, 42 / 256, 42 / 256 - 1]))
    assert valid.tolist() == [True]


def test_the_box_crop_needs_one_head_keypoint():
    one = torso_pose({17: (50.0, 130.0)})  # one ear is enough for the box (the similarity needs 3)
    none = torso_pose({})
    theta, valid = face_transforms(torch.stack([one, none]), SIZE)
    assert valid.tolist() == [True, False] and torch.equal(theta[1], torch.eye(2, 3))
    assert similarity_transforms(one[None], SIZE)[1].tolist() == [False]
    with pytest.raises(ValueError, match="box"):
        face_transforms(one[None], SIZE, "stn")
