"""`target-accuracy`: how often a target-domain classifier still reads the source digit's label after
translation (the harness's scoring of thesis Table 4.3's MNIST→USPS and MNIST→MNIST-M).

The thesis trains a classifier *on translated MNIST* and tests it on the target test set, with an
unstated architecture. The harness scores the other way round, which needs no per-method training:
a fixed classifier trained by the harness on the target domain's training set labels the translated
MNIST test digits, and the accuracy against their MNIST labels is reported (%). The numbers measure
the same thing (label-preserving translation into the target domain) but are not the thesis's
protocol; leaderboard rows must say so.

Classifier (fixed, recorded): inputs resized to 28×28 (bilinear), RGB; conv 5×5 32 → ReLU → max-pool
2 → conv 5×5 64 → ReLU → max-pool 2 → fc 128 → ReLU → fc 10; Adam 1e-3, batch 128, ``epochs`` passes
over the target training set in a seeded order, seed 0, on the CPU. It is trained once per training
data digest and configuration and kept in memory for the process; its target-test accuracy is
recorded with every result (the "target-only" reference of the table).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import DataError, Metric, Option, Sample, UsageError, create_dataset, hookimpl
from harness.data import digest_files
from harness_plugins.shared.unpaired import UnpairedDomains

SIZE = 28
TARGETS = ("usps", "mnistm")
DIGIT_PAIRS = {"usps": "mnist2usps", "mnistm": "mnist2mnistm"}
"""The registered dataset whose target domain trains the classifier, per target."""


class DigitClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.classifier = nn.Sequential(nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def prepare(images: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB digits of any size → (N, 3, 28, 28), normalised to [-1, 1]."""
    batch = torch.stack([F.interpolate(i[None].float(), size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0]
                         for i in images])
    return batch * 2 - 1


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int = 0) -> DigitClassifier:
    """The fixed recipe on prepared images (N, 3, 28, 28); deterministic for a seed on one machine."""
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = DigitClassifier()
    torch.random.set_rng_state(torch_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), 128):
            index = order[start : start + 128]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        predicted = torch.cat([model(images[i : i + 512]).argmax(1) for i in range(0, len(images), 512)])
    return float((predicted == labels).double().mean())


_CLASSIFIERS: dict[str, tuple[DigitClassifier, float]] = {}


class TargetAccuracy(Metric):
    """Accuracy (%) of a target-domain digit classifier on translated source digits, against their labels."""

    name = "target-accuracy"
    description = "Accuracy (%) of a harness-trained target-domain classifier on translated digits (thesis Table 4.3 task)."
    paper = "Yang, Deep Generative Models for Image Translation (USC PhD thesis, 2019), Table 4.3 (scored differently)"
    needs_target = False
    options = (
        Option("target", "usps", "target domain whose training set trains the classifier", str, TARGETS),
        Option("data_root", "", "root of the digit dataset (the dataset fills it in)", str),
        Option("epochs", 5, "classifier training passes over the target training set", int),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config["epochs"] < 1:
            raise UsageError(f"{self.name}: option epochs must be at least 1")
        self.reset()
        self._model: DigitClassifier | None = None
        self._target_only: float | None = None
        self._digest: str | None = None

    def classifier(self) -> DigitClassifier:
        """Train (once per data digest and configuration) or reuse the target-domain classifier."""
        if self._model is not None:
            return self._model
        if not self.config["data_root"]:
            raise UsageError(f"{self.name}: needs the digit dataset's root (run it on mnist2usps or mnist2mnistm)")
        dataset = create_dataset(DIGIT_PAIRS[self.config["target"]], Path(self.config["data_root"]))
        if not isinstance(dataset, UnpairedDomains):
            raise UsageError(f"{self.name}: dataset {dataset.name!r} does not list its two domains separately")
        files = dataset.files("train") + dataset.files("test")
        digest = hashlib.sha256(
            json.dumps([digest_files(files, dataset.root), self.config["target"], self.config["epochs"], self.version]).encode()
        ).hexdigest()
        if digest not in _CLASSIFIERS:
            data = {}
            for split in ("train", "test"):
                rows = dataset.domain_index(split, "target")  # direction AtoB: the target is domain B
                loaded = [dataset.load(row) for row in rows]
                data[split] = (prepare([s["image"] for s in loaded]), torch.tensor([s["label"] for s in loaded]))
            model = train_classifier(*data["train"], epochs=self.config["epochs"])
            _CLASSIFIERS[digest] = (model, accuracy(model, *data["test"]))
        self._model, self._target_only = _CLASSIFIERS[digest]
        self._digest = digest
        return self._model

    def reset(self) -> None:
        self._right: list[float] = []

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float]:
        for sample in samples:
            if "label" not in sample:
                raise DataError(f"{self.name}: sample {sample.get('id')!r} has no digit 'label' (use mnist2usps or mnist2mnistm)")
        model = self.classifier()
        with torch.no_grad():
            predicted = model(prepare(predictions)).argmax(1).tolist()
        values = [100.0 * float(p == int(s["label"])) for p, s in zip(predicted, samples, strict=True)]
        self._right.extend(values)
        return values

    def compute(self) -> dict[str, float]:
        if not self._right:
            raise UsageError(f"{self.name}: no samples were scored")
        return {self.name: float(np.mean(self._right))}

    def details(self) -> dict[str, Any]:
        return {"n": len(self._right), "target_only_accuracy": None if self._target_only is None else 100.0 * self._target_only}

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": "harness_plugins.metrics.target_accuracy/1",
            "classifier": "conv5x5-32, pool, conv5x5-64, pool, fc128, fc10; 28x28 RGB in [-1, 1]; Adam 1e-3, batch 128, seed 0",
            "classifier_digest": self._digest,
            "protocol": "target-trained classifier labels translated source test digits (not the thesis's protocol)",
        }


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(TargetAccuracy)
