"""A tiny in-memory pose-transfer dataset in the contract's single-image API, for SPT's unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness_plugins.datasets.pose_common import PoseDataset

SIZE = (64, 32)
TEMPLATE = np.array([  # (y, x) at 64x32: nose, neck, R sho/elb/wri, L sho/elb/wri, R hip/knee/ank, L ..., eyes, ears
    [8, 16], [14, 16], [14, 11], [22, 9], [30, 8], [14, 21], [22, 23], [30, 24],
    [33, 13], [44, 13], [56, 13], [33, 19], [44, 19], [56, 19], [7, 15], [7, 17], [8, 13], [8, 19],
], dtype=np.float32)
LIMBS = ((2, 3, 7), (3, 4, 7), (5, 6, 6), (6, 7, 6), (8, 9, 4), (9, 10, 4), (11, 12, 4), (12, 13, 4))
"""(joint, joint, SPT label): right arm 7, left arm 6, legs in pants 4 (or a skirt 5)."""


def pose_of(seed: int) -> np.ndarray:
    """The template with a random shift and random elbow, wrist and knee offsets."""
    rng = np.random.default_rng(seed)
    pose = TEMPLATE + rng.integers(-2, 3, size=2)
    for joint in (3, 4, 6, 7, 9, 10, 12, 13):
        pose[joint, 1] += rng.integers(-3, 4)
    return np.clip(pose, 0, np.array(SIZE) - 1)


def parsing_of(pose: np.ndarray, skirt: bool) -> np.ndarray:
    """SPT labels drawn from the pose: face disc, upper-clothes torso, left and right arms, pants or skirt."""
    ys, xs = np.mgrid[: SIZE[0], : SIZE[1]]
    labels = np.zeros(SIZE, dtype=np.int64)
    def segment(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
        d = b - a
        t = np.clip(((ys - a[0]) * d[0] + (xs - a[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
        return (ys - a[0] - t * d[0]) ** 2 + (xs - a[1] - t * d[1]) ** 2 <= radius**2
    for start, end, label in LIMBS:
        labels[segment(pose[start], pose[end], 1.5)] = 5 if skirt and label == 4 else label
    top, bottom = int(pose[1, 0]), int(pose[8, 0])
    labels[top:bottom, int(pose[2, 1]):int(pose[5, 1]) + 1] = 3
    labels[(ys - pose[0, 0]) ** 2 + (xs - pose[0, 1]) ** 2 <= 9] = 1
    return labels


COLOURS = np.array([[0.2, 0.5, 0.3], [0.9, 0.7, 0.6], [0.1, 0.1, 0.1], [0.8, 0.1, 0.1], [0.1, 0.2, 0.8],
                    [0.7, 0.2, 0.7], [0.9, 0.7, 0.6], [0.9, 0.7, 0.6], [0.9, 0.7, 0.6], [0.9, 0.7, 0.6]], np.float32)


class TinyPoses(PoseDataset):
    """``count`` images of 2 persons (one in a skirt), 64x32, with parsing maps; nothing on disk."""

    name = "tiny-poses"
    image_size = SIZE

    def __init__(self, root: Path = Path("."), count: int = 8, parsing: bool = True, **options: Any) -> None:
        super().__init__(root, **options)
        self.count, self.with_parsing = count, parsing

    def images(self, split: str) -> list[dict[str, Any]]:
        return [{"id": f"{i % 2}_{i}", "pid": str(i % 2), "split": split, "paths": {}} for i in range(self.count)]

    def load_image(self, row: dict[str, Any]) -> dict[str, Any]:
        index = int(row["id"].split("_")[1])
        pose = pose_of(index)
        labels = parsing_of(pose, skirt=index % 2 == 1)
        image = torch.from_numpy(COLOURS[labels]).permute(2, 0, 1).contiguous()
        sample = {"id": row["id"], "pid": row["pid"], "image": image, "pose": torch.from_numpy(pose)}
        if self.with_parsing:
            sample["parsing"] = torch.from_numpy(labels)
        return sample
