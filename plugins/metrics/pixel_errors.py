"""`l1` and `l2`: pixel errors of [0, 1] images as the Yang thesis tables report them.

The thesis uses three normalisations that differ by orders of magnitude: Table 2.1 gives the *mean*
error over the pixels as a percent of the [0, 1] range, Tables 3.2 and 6.1 give the error *summed*
over all pixels of the image. Which pixels count (the whole image or only the inpainting hole) is not
stated for Table 2.1, so the region is a parameter too. Every choice is an option and so recorded.
``l2`` is the squared error (the summed form is the SSE, the mean form the MSE), which is the only
reading under which the thesis magnitudes are possible for [0, 1] images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from harness import DataError, Metric, Option, Sample, UsageError, hookimpl

REDUCTIONS = ("mean", "sum", "sum-channel-mean")
REGIONS = ("full", "hole", "outside")
"""The whole image, where the sample's ``mask`` is 1 (inpainting hole, dropped box), or where it is 0."""


def pixel_error(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    power: int,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    region: str = "full",
    percent: bool = False,
    quantize: bool = True,
) -> torch.Tensor:
    """Per-image ℓ1 (``power=1``) or squared ℓ2 (``power=2``) error of (C,H,W) or (N,C,H,W) images.

    ``reduction``: ``mean`` over every value (pixels × channels) of the region; ``sum`` of every
    value; ``sum-channel-mean`` sums the per-pixel channel mean (the sum of a grey-level error).
    ``region="hole"`` keeps the pixels where ``mask`` (1 inside the hole) is set, ``region="outside"``
    those where it is not. ``quantize``
    rounds both images to 8-bit levels first, as saving a PNG does. Returns a float64 tensor with
    one value per image (a 0-d tensor for a single image).
    """
    if reduction not in REDUCTIONS:
        raise UsageError(f"pixel_error: reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    if region not in REGIONS:
        raise UsageError(f"pixel_error: region must be one of {', '.join(REGIONS)}; got {region!r}")
    single = pred.dim() == 3
    pred, target = _batched(pred), _batched(target).to(pred.device)
    if pred.shape != target.shape:
        raise DataError(f"pixel_error: prediction shape {tuple(pred.shape)} differs from target {tuple(target.shape)}")
    if quantize:
        pred, target = _to_8bit(pred), _to_8bit(target)
    error = (pred.double() - target.double()).abs().pow(power)
    if region != "full":
        if mask is None:
            raise UsageError(f"pixel_error: region={region!r} needs the inpainting mask (1 inside the hole)")
        keep = _batched(mask).to(error.device) > 0.5
        if keep.shape[-2:] != error.shape[-2:] or keep.shape[1] != 1:
            raise DataError(f"pixel_error: mask shape {tuple(mask.shape)} does not fit images {tuple(pred.shape)}")
        keep = (keep if region == "hole" else ~keep).expand_as(error)
    else:
        keep = torch.ones_like(error, dtype=torch.bool)
    total = (error * keep).flatten(1).sum(dim=1)
    if reduction == "mean":
        total = total / keep.flatten(1).sum(dim=1)
    elif reduction == "sum-channel-mean":
        total = total / error.shape[1]
    if percent:
        total = total * 100.0
    return total[0] if single else total


def l1_error(pred: torch.Tensor, target: torch.Tensor, **params: Any) -> torch.Tensor:
    """Functional twin of `L1`: per-image absolute error (see `pixel_error` for the parameters)."""
    return pixel_error(pred, target, power=1, **params)


def l2_error(pred: torch.Tensor, target: torch.Tensor, **params: Any) -> torch.Tensor:
    """Functional twin of `L2`: per-image squared error (see `pixel_error` for the parameters)."""
    return pixel_error(pred, target, power=2, **params)


def _batched(image: torch.Tensor) -> torch.Tensor:
    if image.dim() == 3:
        return image.unsqueeze(0)
    if image.dim() != 4:
        raise DataError(f"pixel_error: expected a (C,H,W) or (N,C,H,W) tensor, got shape {tuple(image.shape)}")
    return image


def _to_8bit(image: torch.Tensor) -> torch.Tensor:
    """The steps of `harness.data.to_uint8` (float32, clip, ×255, round half to even), back on [0, 1]."""
    return image.detach().float().clamp(0, 1).mul(255.0).round().double().div(255.0)


class _PixelError(Metric):
    """Mean over images of a per-image pixel error; lower is better."""

    power: ClassVar[int]
    higher_is_better = False
    outputs = frozenset({"image"})
    needs_paired_target = True
    preset_option = "region"
    """``l1@hole`` / ``l1@outside`` / ``l1@full``: the same error inside the mask, outside it, and over the whole image."""
    paper = "Yang, Deep Generative Models for Image Translation (USC PhD thesis, 2019), Tables 2.1, 3.2, 6.1"
    version = "1"
    options = (
        Option(
            "reduction",
            "mean",
            "mean: over every pixel value of the region; sum: summed over every value (thesis Tables "
            "3.2/6.1); sum-channel-mean: summed over pixels of the per-pixel channel mean",
            choices=REDUCTIONS,
        ),
        Option("region", "full", "full: the whole image; hole: only where the sample's 'mask' is 1 (inpainting "
               "hole, dropped box); outside: only where it is 0", choices=REGIONS),
        Option("percent", False, "report as percent of the [0, 1] range (thesis Table 2.1)"),
        Option("quantize", True, "round both images to 8-bit levels first, as a saved PNG is"),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reset()

    def reset(self) -> None:
        self._values: list[float] = []

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float]:
        values = []
        for prediction, sample in zip(predictions, samples, strict=True):
            region = self.config["region"]
            mask = sample.get("mask") if region != "full" else None
            if region != "full" and mask is None:
                raise UsageError(
                    f"{self.name}: region={region!r} needs samples with a 'mask' (inpainting hole or dropped box); "
                    f"sample {sample.get('id')!r} has none"
                )
            if region == "hole" and not bool((mask > 0.5).any()):
                raise DataError(f"{self.name}: sample {sample.get('id')!r} has an empty hole mask")
            if region == "outside" and bool((mask > 0.5).all()):
                raise DataError(f"{self.name}: sample {sample.get('id')!r} has a mask covering the whole image: "
                                "nothing outside it")
            value = pixel_error(prediction, self.target(sample), power=self.power, mask=mask, **self._params())
            values.append(float(value))
        self._values.extend(values)
        return values

    def _params(self) -> dict[str, Any]:
        return {key: self.config[key] for key in ("reduction", "region", "percent", "quantize")}

    def compute(self) -> dict[str, float]:
        if not self._values:
            raise UsageError(f"{self.name}: no samples were scored")
        return {self.name: sum(self._values) / len(self._values)}

    def details(self) -> dict[str, Any]:
        return {"n": len(self._values)}

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": f"harness_plugins.metrics.pixel_errors/{self.version}",
            "error": "absolute" if self.power == 1 else "squared",
            "range": "[0, 1]",
            "target_field": self.target_field,
            "aggregation": "mean over images of the per-image value",
        }


class L1(_PixelError):
    """ℓ1 error: absolute differences of [0, 1] images, mean or summed, whole image or hole."""

    name = "l1"
    description = "ℓ1 pixel error of [0, 1] images (mean or summed; whole image or inpainting hole; optional percent)."
    power = 1


class L2(_PixelError):
    """ℓ2 error: squared differences of [0, 1] images (MSE when averaged, SSE when summed)."""

    name = "l2"
    description = "ℓ2 (squared) pixel error of [0, 1] images (mean or summed; whole image or hole; optional percent)."
    power = 2


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(L1)
    register(L2)
