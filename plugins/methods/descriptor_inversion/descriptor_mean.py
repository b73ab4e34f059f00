"""`descriptor-mean`: the mean training image, whatever the descriptors say — the floor of descriptor inversion.

It is fitted with ``harness train`` (one pass over the training images; the mean is exact, not learned)
and returned, resized to each sample's size (bilinear) when the sizes differ, for every sample.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from harness import DataError, Method, Option, Sample, TrainContext, TrainingRecipe, UsageError, hookimpl
from harness.checkpoints import load_state_dict


class MeanImage(nn.Module):
    """Holds the mean image (3, H, W) in [0, 1] as a buffer, so it is saved like any weights."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((3, size, size), 0.5))


class MeanRecipe(TrainingRecipe):
    """Step 0 averages every training image (resized to the first one's square size); later steps change nothing."""

    def __init__(self, dataset: Any, context: TrainContext) -> None:
        super().__init__(description={"fit": "exact mean of the training images (bilinear resize to a common size)"}, exported="mean")
        self.dataset = dataset
        first = next(dataset.samples("train"), None)
        if first is None:
            raise DataError(f"{dataset.name}: the train split has no samples")
        self.networks["mean"] = MeanImage(int(first["image"].shape[-1]))

    def train_step(self, step: int) -> dict[str, float]:
        if step > 0:
            return {}
        total, count, size = None, 0, tuple(self.networks["mean"].mean.shape[-2:])
        for sample in self.dataset.samples("train"):
            image = sample["image"].double()
            if tuple(image.shape[-2:]) != size:
                image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
            total = image if total is None else total + image
            count += 1
        self.networks["mean"].mean = (total / count).float()
        return {"images": float(count)}


class DescriptorMean(Method):
    """The mean training image (the floor: what is known without looking at the descriptors)."""

    name = "descriptor-mean"
    description = "Returns the mean training image for every sample (the floor of descriptor inversion)."
    tasks = frozenset({"descriptor-inversion"})
    needs_checkpoint = True
    options = (Option("size", 256, "side of the mean image built before training (the trained file sets it)", int),)

    default_steps = 1
    default_batch_size = 1

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        return MeanRecipe(dataset, context)

    def build(self) -> MeanImage:
        return MeanImage(self.config["size"])

    def load(self, checkpoint: Path | None, device: str) -> None:
        model = self.build()
        if checkpoint is not None:
            state = load_state_dict(Path(checkpoint))
            if set(state) != {"mean"} or state["mean"].dim() != 3 or state["mean"].shape[0] != 3:
                raise DataError(f"checkpoint {checkpoint} is not a descriptor-mean file (one 'mean' tensor (3, H, W))")
            model.mean = state["mean"].float()
        self._model = model.to(device).eval()

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        mean = self._model.mean.float().cpu()
        outputs = []
        for sample in samples:
            size = tuple(int(v) for v in sample["size"])
            image = mean if tuple(mean.shape[-2:]) == size else F.interpolate(mean[None], size=size, mode="bilinear", align_corners=False)[0]
            outputs.append(image.clamp(0, 1))
        return outputs


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(DescriptorMean)
