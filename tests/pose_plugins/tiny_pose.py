"""`tiny-pose`: a few synthetic pose-transfer pairs built in memory, following the pose contract
(index rows are same-person pairs with a ``pid``; samples hold source/target images in [0, 1] and
18 COCO (y, x) keypoints, -1 where missing). Each person is its body mask filled with its own colour
on a grey background, so the target is predictable from the source colour and the target pose."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from harness_plugins.metrics.pose_masked import body_mask

from harness import Dataset, Sample, hookimpl

SIZE = (128, 64)
BASE = torch.tensor([
    [16, 32], [28, 32], [28, 22], [44, 20], [60, 20], [28, 42], [44, 44], [60, 44],
    [64, 25], [88, 25], [112, 25], [64, 39], [88, 39], [112, 39], [14, 35], [14, 29], [16, 38], [16, 26],
], dtype=torch.float32)
COLOURS = {"1": (0.9, 0.2, 0.1), "2": (0.1, 0.3, 0.9), "3": (0.2, 0.8, 0.3)}


def picture(pid: str, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    pose = BASE.clone()
    pose[:, 1] += shift
    if shift > 0:
        pose[14] = -1  # one missing eye
    image = torch.full((3, *SIZE), 0.5)
    mask = body_mask(pose, SIZE)
    for channel, value in enumerate(COLOURS[pid]):
        image[channel][mask] = value
    return image, pose


class TinyPose(Dataset):
    name = "tiny-pose"
    task = "pose-transfer"
    splits = ("train", "test")
    description = "In-memory synthetic pose pairs for tests."

    def index(self, split: str) -> list[Sample]:
        pids = ("1", "2") if split == "train" else ("3",)
        shifts = (-8, 0, 8)
        return [{"id": f"{pid}_{a}___{pid}_{b}", "pid": pid, "shifts": (a, b), "paths": {}}
                for pid in pids for a in shifts for b in shifts if a != b][: 8 if split == "train" else 3]

    def load(self, row: Sample) -> Sample:
        source, source_pose = picture(row["pid"], row["shifts"][0])
        target, target_pose = picture(row["pid"], row["shifts"][1])
        return {"id": row["id"], "source": source, "source_pose": source_pose, "target": target, "target_pose": target_pose}

    def count(self, split: str) -> int:
        return len(self.index(split))

    def describe(self) -> dict[str, Any]:
        return {"pairs": {split: self.count(split) for split in self.splits}}


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(TinyPose)
