"""What the learned re-id baselines share: decoding a training split once, cross-modality identity
batches, the re-id losses and the embedding-network training recipe.

Batches are a pure function of (seed, step): P identities seen in both modalities, K visible and K
infrared images each (AGW's cross-modality PK sampling), with a seeded horizontal flip. The loss is
identity cross-entropy on the BNNeck logits plus AGW's weighted regularised triplet (WRT) on the
pooled features, both over the 2·P·K images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from harness import DataError, Dataset, Method, Option, Sample, SingleModelRecipe, TrainContext, UsageError
from harness.checkpoints import load_into, load_state_dict
from harness.train.augment import random_flip
from harness.train.samplers import cross_modality_pk_batch, step_rng

from harness_plugins.shared.imagenet import IMAGENET_MEAN, IMAGENET_STD, INITS, resnet18, resnet50

INFRARED = frozenset({"infrared", "thermal", "ir", "nir"})


def normalise(batch: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


def resize(images: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Stack (3, H, W) [0, 1] images at ``size`` (bilinear, antialiased)."""
    return torch.stack([
        image.float() if tuple(image.shape[-2:]) == size
        else F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        for image in images
    ])


class TrainingSet:
    """A training split decoded once (via `Dataset.index`/`load`) at the network's input size, with
    labels re-indexed 0..N−1; batches are drawn with the core's samplers, so they depend only on (seed, step).

    ``resizer`` ((3, H, W) [0, 1] image, size) → (3, *size) replaces the default antialiased bilinear
    resize. With ``uint8=True`` the resized images are kept as 8-bit levels (rounded; exact for a resizer
    that works on 8-bit images, as PIL does) and converted back to [0, 1] floats per batch: a quarter of
    the memory (SYSU-MM01's 34,167 training images at 256×128: 3.4 GB instead of 13.4 GB). Images are
    decoded one at a time into the preallocated store, so the full-size originals never accumulate."""

    def __init__(self, dataset: Dataset, split: str, size: tuple[int, int],
                 resizer: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor] | None = None, uint8: bool = False) -> None:
        dataset.verify(split)
        rows = dataset.index(split)
        if not rows:
            raise DataError(f"{dataset.name}: split {split!r} has no samples to train on")
        self.images = torch.empty((len(rows), 3, *size), dtype=torch.uint8 if uint8 else torch.float32)
        for index, row in enumerate(rows):
            image = dataset.load(row)["image"]
            resized = resizer(image, size) if resizer is not None else resize([image], size)[0]
            self.images[index] = resized.clamp(0, 1).mul(255).round() if uint8 else resized
        pids = sorted({int(row["pid"]) for row in rows})
        self.label_of = {pid: index for index, pid in enumerate(pids)}
        self.labels = torch.tensor([self.label_of[int(row["pid"])] for row in rows])
        self.modalities = ["infrared" if str(row["modality"]).lower() in INFRARED else "visible" for row in rows]
        self.infrared = torch.tensor([m == "infrared" for m in self.modalities])
        self.classes = len(pids)
        by_identity: dict[int, tuple[list[int], list[int]]] = {}
        for index, (label, infrared) in enumerate(zip(self.labels.tolist(), self.infrared.tolist())):
            by_identity.setdefault(label, ([], []))[int(infrared)].append(index)
        self.both = {label: rows for label, rows in by_identity.items() if rows[0] and rows[1]}

    def image(self, row: int) -> torch.Tensor:
        """Row ``row``'s image as [0, 1] floats (8-bit levels / 255 when stored as uint8)."""
        image = self.images[row]
        return image.float().div(255.0) if image.dtype == torch.uint8 else image

    def rows(self, rows: list[int], seed: int, step: int, stream: int = 1) -> torch.Tensor:
        """The images of ``rows``, each flipped at random with its own generator (streams ``stream``, ``stream`` + 1, ...)."""
        return torch.stack([random_flip(self.image(row), step_rng(seed, step, stream + item)) for item, row in enumerate(rows)])

    def cross_modality_batch(self, p: int, k: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P identities × (K visible + K infrared) images (`cross_modality_pk_batch`), randomly flipped."""
        visible, infrared = cross_modality_pk_batch(self.labels.tolist(), self.modalities, p, k, seed, step)
        rows = visible + infrared
        index = torch.tensor(rows)
        return self.rows(rows, seed, step), self.labels[index], self.infrared[index]


BACKBONES = ("resnet50", "resnet18", "small")


def trunk(backbone: str, init: str) -> tuple[nn.Sequential, nn.Sequential, int]:
    """(stem, body, feature channels) of a backbone: the stem is what two-stream networks duplicate
    per modality (ResNet conv1 + bn1 + relu + maxpool), the body is shared (layer1…layer4, last stride
    1 as in AGW/BoT). ``small`` is a 4-stage plain CNN (about 1.2 M parameters) for CPU runs on the
    synthetic sets; it always starts from scratch."""
    if backbone == "small":
        if init != "scratch":
            raise UsageError("backbone=small has no ImageNet weights; pass --option init=scratch")

        def stage(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                      nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        return nn.Sequential(*stage(3, 32, True)), nn.Sequential(*stage(32, 64, True), *stage(64, 128, True), *stage(128, 256, False)), 256
    if backbone not in BACKBONES:
        raise UsageError(f"backbone must be one of {', '.join(BACKBONES)}; got {backbone!r}")
    net = resnet50(init) if backbone == "resnet50" else resnet18(init)
    first = net.layer4[0]  # last stride 1: the stride sits on conv2 (Bottleneck) or conv1 (BasicBlock)
    (first.conv2 if backbone == "resnet50" else first.conv1).stride = (1, 1)
    first.downsample[0].stride = (1, 1)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4), net.fc.in_features


def weighted_regularized_triplet(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AGW's WRT: softmax-weighted positive and negative distances per anchor, soft-margin loss, no margin."""
    dist = torch.cdist(features, features)
    same = labels[:, None] == labels[None, :]
    pos, neg = dist * same, dist * ~same
    weight_pos = _masked_softmax(pos, same)
    weight_neg = _masked_softmax(-neg, ~same)
    furthest_positive = (pos * weight_pos).sum(1)
    closest_negative = (neg * weight_neg).sum(1)
    return F.soft_margin_loss(closest_negative - furthest_positive, torch.ones_like(furthest_positive))


def _masked_softmax(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    shifted = values - (values * mask).max(dim=1, keepdim=True).values
    exp = torch.exp(shifted) * mask
    return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)


def embedding_recipe(
    model: nn.Module,
    data: TrainingSet,
    context: TrainContext,
    *,
    p: int,
    k: int,
    lr: float,
    triplet: bool,
    description: dict[str, Any],
) -> SingleModelRecipe:
    """Adam with AGW's schedule shape (linear warm-up over the first 10 % of steps, ×0.1 at 40 % and 70 %)."""
    steps, seed, device = context.steps, context.seed, context.device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * (0.1 if step >= 0.4 * steps else 1.0) * (0.1 if step >= 0.7 * steps else 1.0)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels, infrared = data.cross_modality_batch(p, k, seed, step)
        return normalise(images), labels, infrared

    def loss(parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels, infrared = (part.to(device) for part in parts)
        features, logits = model(images, infrared)
        value = F.cross_entropy(logits, labels)
        if triplet:
            value = value + weighted_regularized_triplet(features, labels)
        return value

    described = {
        **description, "optimizer": f"Adam lr {lr}, weight decay 5e-4", "schedule": "linear warm-up 10 %, ×0.1 at 40 % and 70 % of the steps",
        "batch": f"cross-modality PK: {p} identities × ({k} visible + {k} infrared), random horizontal flip",
        "loss": "identity cross-entropy" + (" + weighted regularised triplet (AGW)" if triplet else ""),
        "classes": data.classes, "train_images": len(data.labels),
    }
    return SingleModelRecipe(model, optimizer, scheduler, batch, loss, described, context)


def classes_in(checkpoint: Path, key: str) -> int | None:
    """The classifier size stored in a weights file (so ``harness run`` builds a matching head)."""
    path = Path(checkpoint)
    if not path.is_file():
        return None
    weight = load_state_dict(path).get(key)
    return int(weight.shape[0]) if weight is not None else None


class EmbeddingMethod(Method):
    """A modality-aware embedding network trained with cross-modality PK batches (shared by the baselines)."""

    tasks = frozenset({"reidentification"})
    needs_checkpoint = True
    batch_size = 64
    default_steps = 3000
    default_batch_size = 32
    triplet = True
    options = (
        Option("backbone", "resnet50", "resnet50 (paper), resnet18, or small (CPU setting for the synthetic sets)", choices=BACKBONES),
        Option("init", "imagenet", "training start: ImageNet weights from $TORCH_HOME/hub/checkpoints, or scratch", choices=INITS),
        Option("height", 256, "input height"),
        Option("width", 128, "input width"),
        Option("classes", 0, "training identities (0: from the checkpoint or the training split)"),
        Option("lr", 3.5e-4, "Adam learning rate"),
    )

    def network(self, classes: int, init: str) -> nn.Module:
        raise NotImplementedError

    def build(self) -> nn.Module:
        return self.network(self.config["classes"] or 2, "scratch")

    def size(self) -> tuple[int, int]:
        return self.config["height"], self.config["width"]

    def load(self, checkpoint: Path | None, device: str) -> None:
        classes = self.config["classes"] or (classes_in(checkpoint, "classifier.weight") if checkpoint else None) or 2
        model = self.network(classes, "scratch")
        if checkpoint is not None:
            load_into(model, Path(checkpoint))
        self._model = model.to(device).eval()
        self._device = device

    @torch.no_grad()
    def predict(self, samples: list[Sample]) -> list[Any]:
        images = normalise(resize([s["image"] for s in samples], self.size())).to(self._device)
        infrared = torch.tensor([str(s["modality"]).lower() in INFRARED for s in samples], device=self._device)
        return list(F.normalize(self._model(images, infrared), dim=1).float().cpu())

    def training_recipe(self, dataset: Dataset, context: TrainContext) -> SingleModelRecipe:
        """``--batch-size`` images per step: P identities × (K visible + K infrared), K = 4 (2 below 16)."""
        data = TrainingSet(dataset, "train", self.size())
        k = 2 if context.batch_size < 16 else 4
        p = max(1, context.batch_size // (2 * k))
        model = self.network(data.classes, self.config["init"])
        return embedding_recipe(
            model, data, context, p=p, k=k, lr=self.config["lr"], triplet=self.triplet,
            description={"method": self.name, "options": dict(self.config), "input": f"{self.size()[0]}x{self.size()[1]}"},
        )
