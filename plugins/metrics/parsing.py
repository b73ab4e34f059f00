"""`parsing-accuracy`, `parsing-miou`: how well a predicted semantic map matches the target's map.

SPT (Song et al., TPAMI 2020, Table 4 and Fig. 11) scores its semantic generator by pixel accuracy and
mIoU against the parser's map of the target image; it gives no implementation. The standard
segmentation definitions are used, accumulated over the whole split in one confusion matrix C
(rows: ground truth, columns: prediction, ``num_classes`` x ``num_classes``):

* pixel accuracy = trace(C) / sum(C), in percent (Table 4 prints "Accuracy (%)");
* IoU of class c = C[c,c] / (row_c + col_c - C[c,c]), and mIoU = the mean of IoU_c over the classes
  *present*, i.e. with a non-zero union (appearing in the ground truth or the prediction anywhere in
  the split); a class absent from both is left out rather than counted as 0 or 1. Background
  (label 0) is a class like the others. Reported as a fraction (Table 4 prints 0.476).

Pooling over the split (not a mean of per-image values) is the usual semantic-segmentation
convention (e.g. the LIP benchmark's evaluation) and makes the score independent of batch sizes.

Functional twins::

    confusion_matrix(pred, target, num_classes) -> int64 (num_classes, num_classes)
    parsing_accuracy(pred, target) -> float (percent)
    parsing_miou(pred, target, num_classes) -> float
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from harness import DataError, Metric, Option, Sample, UsageError, hookimpl

DEFAULT_CLASSES = 10


def _labels(tensor: Any, what: str, num_classes: int) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor) or tensor.is_floating_point() or tensor.is_complex() or tensor.dim() not in (2, 3):
        shape = tuple(tensor.shape) if hasattr(tensor, "shape") else type(tensor).__name__
        raise DataError(f"{what}: expected an integer label map (H, W) or a batch (N, H, W); got {getattr(tensor, 'dtype', '')} {shape}")
    if tensor.numel() and (tensor.min() < 0 or tensor.max() >= num_classes):
        raise DataError(f"{what}: labels must lie in 0..{num_classes - 1}; found {int(tensor.min())}..{int(tensor.max())}")
    return tensor.long()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int = DEFAULT_CLASSES) -> torch.Tensor:
    """C[t, p] = number of pixels with ground truth t predicted as p (int64)."""
    pred, target = _labels(pred, "prediction", num_classes), _labels(target, "target", num_classes)
    if pred.shape != target.shape:
        raise DataError(f"parsing: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in size")
    index = target.flatten().cpu() * num_classes + pred.flatten().cpu()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy_from_confusion(matrix: torch.Tensor) -> float:
    total = int(matrix.sum())
    if total == 0:
        raise UsageError("parsing-accuracy: no pixels were scored")
    return 100.0 * float(matrix.diagonal().sum()) / total


def iou_per_class(matrix: torch.Tensor) -> torch.Tensor:
    """IoU of every class (float64), NaN where the class is in neither the target nor the prediction."""
    matrix = matrix.double()
    intersection = matrix.diagonal()
    union = matrix.sum(dim=0) + matrix.sum(dim=1) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))


def miou_from_confusion(matrix: torch.Tensor) -> float:
    ious = iou_per_class(matrix)
    present = ~torch.isnan(ious)
    if not present.any():
        raise UsageError("parsing-miou: no pixels were scored")
    return float(ious[present].mean())


def parsing_accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: int = DEFAULT_CLASSES) -> float:
    """Pixel accuracy in percent of label maps (H, W) or batches (N, H, W), pooled over all pixels."""
    return accuracy_from_confusion(confusion_matrix(pred, target, num_classes))


def parsing_miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int = DEFAULT_CLASSES) -> float:
    """Mean IoU over the classes present (non-zero union), pooled over all pixels given."""
    return miou_from_confusion(confusion_matrix(pred, target, num_classes))


class _ParsingMetric(Metric):
    """Shared accumulation: one confusion matrix over the split."""

    outputs = frozenset({"label-map"})
    needs_paired_target = True
    options = (Option("num_classes", DEFAULT_CLASSES, "number of labels (the pose datasets' parsing maps have SPT's 10)"),)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config["num_classes"] < 2:
            raise UsageError(f"{self.name}: option num_classes must be at least 2, got {self.config['num_classes']}")
        self.reset()

    def reset(self) -> None:
        classes = self.config["num_classes"]
        self.matrix = torch.zeros(classes, classes, dtype=torch.int64)
        self._n = 0

    def per_sample(self, matrix: torch.Tensor) -> float:
        raise NotImplementedError

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float]:
        values = []
        for prediction, sample in zip(predictions, samples, strict=True):
            try:
                matrix = confusion_matrix(prediction, self.target(sample), self.config["num_classes"])
            except DataError as error:
                raise DataError(f"{self.name}: sample {sample.get('id')!r}: {error}") from None
            self.matrix += matrix
            self._n += 1
            values.append(self.per_sample(matrix))
        return values

    def details(self) -> dict[str, Any]:
        ious = iou_per_class(self.matrix)
        return {"n": self._n, "iou_per_class": [None if torch.isnan(v) else float(v) for v in ious],
                "pixels_per_class": self.matrix.sum(dim=1).tolist()}

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": f"harness_plugins.metrics.parsing/{self.version}",
            "aggregation": "one confusion matrix over all pixels of the split",
            "accuracy": "trace / total, percent",
            "miou": "mean over classes with non-zero union (in target or prediction) of TP / (TP + FP + FN); "
                    "background counted as a class; fraction",
            "target_field": self.target_field,
        }


class ParsingAccuracy(_ParsingMetric):
    """Pixel accuracy (%) of predicted semantic maps, pooled over the split (SPT Table 4)."""

    name = "parsing-accuracy"
    description = "Pixel accuracy (%) of predicted semantic label maps against the target's map, pooled over the split."
    paper = "Song et al., Unpaired Person Image Generation with Semantic Parsing Transformation, TPAMI 2020 (Table 4)"

    def per_sample(self, matrix: torch.Tensor) -> float:
        return accuracy_from_confusion(matrix)

    def compute(self) -> dict[str, float]:
        return {"accuracy": accuracy_from_confusion(self.matrix)}


class ParsingMIoU(_ParsingMetric):
    """Mean IoU over the classes present, from the split's confusion matrix (SPT Table 4)."""

    name = "parsing-miou"
    description = "Class-mean IoU (classes present in target or prediction) of predicted semantic label maps, pooled over the split."
    paper = ParsingAccuracy.paper

    def per_sample(self, matrix: torch.Tensor) -> float:
        return miou_from_confusion(matrix)

    def compute(self) -> dict[str, float]:
        return {"miou": miou_from_confusion(self.matrix)}


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(ParsingAccuracy)
    register(ParsingMIoU)
