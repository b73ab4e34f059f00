"""`pixel-accuracy`: the map-prediction score of Yang's thesis, Table 4.2.

The thesis counts a predicted map pixel as wrong when the "total RGB difference" to the ground-truth
map colour exceeds 12. It does not say how the difference is totalled; the default reads it as the sum
of the absolute channel differences on the 0–255 scale (both images rounded to 8 bits first, as saved
PNGs are), and the other readings are options (``difference=max``: the largest channel difference,
``euclidean``: the RGB distance). Pixels exactly at the threshold count as right ("> 12" is wrong).
Accuracy is the fraction of right pixels over all pixels of all images (``pooled``; the same as the
mean of the per-image values when all maps share a size, as Maps' do), in percent.

Resolution: the thesis resizes all images to 256×256, so its maps are scored at 256², not at Maps' native
600². ``resolution=N`` resizes the ground truth (and a prediction not already N×N) to N×N with PIL bicubic
from 8 bits, as the CycleGAN loader resizes; ``resolution=0`` scores at the ground truth's native size. The
Maps datasets fix 256 as their protocol; the value is part of the metric's convention, so rows scored at
the two resolutions are never compared.

The prediction is compared with the sample's own target-domain image, so the dataset must be aligned
(`maps`, `maps-pix2pix`, `translate-synth`); on an unpaired set the sample has no such image and the
metric says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from harness import DataError, Metric, Option, Sample, UsageError, hookimpl

DIFFERENCES = ("sum", "max", "euclidean")


def _to_255(image: torch.Tensor) -> torch.Tensor:
    return image.detach().double().clamp(0, 1).mul(255.0).round()


def resized(image: torch.Tensor, size: int) -> torch.Tensor:
    """[0, 1] (3, H, W) → uint8 → PIL bicubic to size×size → [0, 1] (unchanged when already that size)."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    array = image.detach().cpu().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    out = np.asarray(Image.fromarray(array).resize((size, size), Image.BICUBIC))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).float().div(255.0)


def pixel_accuracy(
    pred: torch.Tensor, target: torch.Tensor, *, threshold: float = 12.0, difference: str = "sum"
) -> torch.Tensor:
    """Per-image fraction of pixels whose colour difference to the target is at most ``threshold``.

    ``pred`` and ``target`` are RGB in [0, 1], (3, H, W) or (N, 3, H, W); differences are taken on the
    rounded 0–255 scale. Returns float64, one value per image (0-d for a single image).
    """
    if difference not in DIFFERENCES:
        raise UsageError(f"pixel_accuracy: difference must be one of {', '.join(DIFFERENCES)}; got {difference!r}")
    single = pred.dim() == 3
    pred = pred[None] if single else pred
    target = (target[None] if target.dim() == 3 else target).to(pred.device)
    if pred.shape != target.shape or pred.shape[1] != 3:
        raise DataError(
            f"pixel_accuracy: prediction {tuple(pred.shape)} and target {tuple(target.shape)} must be RGB of one size"
        )
    delta = (_to_255(pred) - _to_255(target)).abs()
    if difference == "sum":
        total = delta.sum(dim=1)
    elif difference == "max":
        total = delta.amax(dim=1)
    else:
        total = delta.pow(2).sum(dim=1).sqrt()
    right = (total <= threshold).flatten(1).double().mean(dim=1)
    return right[0] if single else right


class PixelAccuracy(Metric):
    """Percent of pixels whose RGB difference to the aligned target is at most 12 (Yang thesis Table 4.2)."""

    name = "pixel-accuracy"
    description = "Percent of pixels within a total RGB difference of 12 of the aligned target (map prediction)."
    paper = "Yang, Deep Generative Models for Image Translation (USC PhD thesis, 2019), Table 4.2"
    higher_is_better = True
    outputs = frozenset({"image"})
    options = (
        Option("threshold", 12.0, "a pixel is wrong when its colour difference exceeds this (0-255 scale)", float),
        Option(
            "difference",
            "sum",
            "how the RGB difference is totalled: sum of absolute channel differences (the likely reading), "
            "max channel difference, or Euclidean distance",
            str,
            DIFFERENCES,
        ),
        Option("resolution", 0, "score at this square size: the target (and a prediction of another size) resized "
               "to it, PIL bicubic; 0: the target's native size (Maps' protocol: 256, as the thesis resizes all "
               "images to 256x256)", int),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config["resolution"] < 0:
            raise UsageError(f"{self.name}: option resolution must be 0 (native) or a size in pixels, got {self.config['resolution']}")
        self.reset()

    def reset(self) -> None:
        self._right = 0.0
        self._pixels = 0
        self._values: list[float] = []

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float]:
        values = []
        for prediction, sample in zip(predictions, samples, strict=True):
            try:
                target = self.target(sample)
            except DataError:
                raise DataError(
                    f"{self.name}: sample {sample.get('id')!r} has no aligned target image; pixel accuracy needs a "
                    "dataset whose test images come with their own target-domain counterpart (e.g. maps)"
                ) from None
            size = self.config["resolution"]
            if size:
                prediction, target = resized(prediction, size), resized(target, size)
            if tuple(prediction.shape) != tuple(target.shape):
                raise DataError(
                    f"{self.name}: sample {sample.get('id')!r}: prediction {tuple(prediction.shape)} and target "
                    f"{tuple(target.shape)} differ in size; the method must return the input's size"
                )
            value = float(pixel_accuracy(prediction, target, threshold=self.config["threshold"],
                                         difference=self.config["difference"]))
            pixels = prediction.shape[-1] * prediction.shape[-2]
            self._right += value * pixels
            self._pixels += pixels
            values.append(100.0 * value)
        self._values.extend(values)
        return values

    def compute(self) -> dict[str, float]:
        if not self._pixels:
            raise UsageError(f"{self.name}: no samples were scored")
        return {self.name: 100.0 * self._right / self._pixels}

    def details(self) -> dict[str, Any]:
        return {"n": len(self._values), "pixels": self._pixels}

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": "harness_plugins.metrics.pixel_accuracy/1",
            "scale": "both images rounded to 8 bits, differences on 0-255",
            "right": f"{self.config['difference']} difference <= threshold",
            "aggregation": "right pixels / all pixels over the split, in percent",
            "resolution": (f"{self.config['resolution']}x{self.config['resolution']} (target and other-size predictions "
                           "resized, PIL bicubic)" if self.config["resolution"] else "native (the target's own size)"),
            "target_field": self.target_field,
        }


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(PixelAccuracy)
