"""The single-image side of a pose-transfer dataset: what unpaired pose-transfer methods (SPT) train on.

A pose-transfer dataset's ``index`` rows are source→target *pairs*; a method that samples images and
target poses freely needs the split's single images instead. Dataset plugins implement this contract
(`datasets/pose_common.PoseDataset`), methods check for it, and neither imports the other.
"""

from __future__ import annotations

from typing import ClassVar

from harness import Dataset, Sample


class PoseImages(Dataset):
    """A pose-transfer dataset whose single images can be listed and decoded one by one."""

    training_preset: ClassVar[str | None] = None
    """Which published training setting methods with per-dataset presets (SPT's ``preset``) use here:
    ``deepfashion`` (256x256 shop photos) or ``market`` (128x64 surveillance crops); None: the method's default."""

    def images(self, split: str) -> list[Sample]:
        """Single-image rows ``{"id", "pid", "split", "paths"}`` of the images that may enter pairs."""
        raise NotImplementedError

    def load_image(self, row: Sample) -> Sample:
        """One `images` row → ``{"id", "pid", "image", "pose", "parsing"?}``."""
        raise NotImplementedError
