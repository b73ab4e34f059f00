"""What the pose-transfer networks (PG², Def-GAN) share around their generators: the working
resolution, pair batches for training, and prediction at the sample's own resolution.

The networks run at a fixed size (their papers' 128×64 for Market-1501, 256×256 for DeepFashion);
images of another size are resized to it and the keypoints scaled with them (`scale_keypoints`), and
the generated image is resized back, so a method scores at the dataset's resolution.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import DataError, Sample, UsageError
from harness.train.samplers import uniform_batch

from harness_plugins.shared.pose_maps import scale_keypoints

PAIR_FIELDS = ("source", "source_pose", "target", "target_pose")


class SampleNorm(nn.Module):
    """Normalise each sample over all of (C, H, W) with one learnt scalar scale and shift,
    ``(x − mean) / sqrt(var + eps)``: SPT's demo ``InstanceNorm3d(1, eps=1e-3)`` on an unsqueezed tensor.
    Def-GAN's keras-contrib ``InstanceNormalization(axis=None)`` puts the epsilon elsewhere: `KerasSampleNorm`."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, 1, eps=self.eps) * self.weight + self.bias  # one group: statistics over (C, H, W)


class KerasSampleNorm(SampleNorm):
    """`SampleNorm` as keras-contrib's ``InstanceNormalization`` computes it: ``(x − mean) / (std + eps)``
    (the epsilon added to the standard deviation, not to the variance; eps 1e-3), Def-GAN's layer. The
    variance gets 1e-12 under the square root so that a constant feature map has a finite gradient
    (Keras' would be infinite); its output is 0 either way."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = ((x - mean).square().mean(dim=(1, 2, 3), keepdim=True) + 1e-12).sqrt()
        return (x - mean) / (std + self.eps) * self.weight + self.bias


def parse_size(value: str, owner: str) -> tuple[int, int]:
    """``"128x64"`` → (128, 64): the working resolution option, height × width."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(value))
    if not match:
        raise UsageError(f"{owner}: option 'size' expects HEIGHTxWIDTH such as 128x64, got {value!r}")
    return int(match.group(1)), int(match.group(2))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(…, 3, h, w) → (…, 3, H, W); 'area' when shrinking (no aliasing), bilinear when growing."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    batch = image if image.dim() == 4 else image[None]
    shrink = image.shape[-2] >= size[0] and image.shape[-1] >= size[1]
    out = F.interpolate(batch, size=size, mode="area") if shrink else \
        F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
    return out if image.dim() == 4 else out[0]


def to_working_size(sample: Sample, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A pose-transfer sample's images and keypoints at ``size`` (only the fields it has)."""
    own = tuple(sample["source"].shape[-2:])
    out: dict[str, torch.Tensor] = {}
    for field in PAIR_FIELDS:
        if field not in sample:
            continue
        value = torch.as_tensor(sample[field]).float()
        if field.endswith("_pose"):
            if value.shape != (18, 2):
                raise DataError(f"sample {sample.get('id')!r}: {field} must be 18 COCO (y, x) keypoints, got shape {tuple(value.shape)}")
            out[field] = scale_keypoints(value, own, size)
        else:
            out[field] = resize_image(value, size)
    return out


class PairBatches:
    """Training batches of same-person pairs: a pure function of (seed, step), as the engine requires."""

    def __init__(self, dataset: Any, context: Any, size: tuple[int, int]) -> None:
        self.rows = dataset.index("train")
        if not self.rows:
            raise DataError(f"{dataset.name}: the train split has no pairs")
        self.dataset, self.context, self.size = dataset, context, size

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        picks = uniform_batch(len(self.rows), self.context.batch_size, self.context.seed, step)
        items = [to_working_size(self.dataset.load(self.rows[i]), self.size) for i in picks]
        return {field: torch.stack([item[field] for item in items]) for field in PAIR_FIELDS}


def generate(samples: list[Sample], size: tuple[int, int], device: str,
             forward: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> list[torch.Tensor]:
    """Run ``forward`` (batch at ``size`` on ``device`` → images in [0, 1]) one sample at a time and return
    each image at its sample's own resolution (samples of a split may differ in size)."""
    outputs = []
    with torch.inference_mode():
        for sample in samples:
            batch = {k: v[None].to(device) for k, v in to_working_size(sample, size).items()}
            image = forward(batch)[0].clamp(0, 1).float().cpu()
            outputs.append(resize_image(image, tuple(sample["source"].shape[-2:])))
    return outputs
