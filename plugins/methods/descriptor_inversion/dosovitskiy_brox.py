"""Dosovitskiy & Brox's up-convolutional inversion of SIFT (CVPR 2016, "Inverting Visual Representations
with Convolutional Networks"), the baseline Wu et al. compare with.

Input: the sparse SIFT map W/d × H/d × (128 + 5) of `descriptor_maps.sparse_sift_map` (d = 4: one
keypoint per cell with its descriptor, in-cell position, log-scale and orientation). The network
is an encoder of convolutions followed by up-convolutions (4×4, stride 2) back to the image size,
LeakyReLU 0.2 after every layer but the last, trained on the squared pixel error, as the paper
describes; its exact SIFT-network widths are not in the sources available here, so these are
assumed and recorded: conv 5×5 256, conv 5×5/2 512, conv 3×3 512, conv 3×3/2 512 (→ 1/16 of the
image when d = 4), then up-convolutions to 256, 128, 64, 32 and a 3×3 conv to RGB.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from harness import DataError, Method, Option, Sample, SingleModelRecipe, TrainContext, TrainingRecipe, UsageError, hookimpl
from harness.train.samplers import uniform_batch

from .descriptor_maps import sparse_sift_map

PAPER = (
    "Alexey Dosovitskiy, Thomas Brox. Inverting Visual Representations with Convolutional Networks. CVPR 2016, "
    "arXiv:1506.02753 (SIFT network widths assumed)."
)
DEPTH = 128 + 5


class UpConvInversion(nn.Module):
    """Sparse SIFT map (B, 133, H/d, W/d) → image in [-1, 1] (B, 3, H, W); ``width`` scales every layer."""

    def __init__(self, cell: int = 4, width: int = 32) -> None:
        super().__init__()
        if cell not in (2, 4, 8):
            raise ValueError("cell must be 2, 4 or 8")
        act = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(DEPTH, 8 * w, 5, padding=2), act(),
            nn.Conv2d(8 * w, 16 * w, 5, stride=2, padding=2), act(),
            nn.Conv2d(16 * w, 16 * w, 3, padding=1), act(),
            nn.Conv2d(16 * w, 16 * w, 3, stride=2, padding=1), act(),
        )
        ups = {2: 3, 4: 4, 8: 5}[cell]  # back from 1/(4·cell) of the image
        widths = [16 * w, 8 * w, 4 * w, 2 * w, w, w][: ups + 1]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), act()]
        layers += [nn.Conv2d(widths[-1], 3, 3, padding=1), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DosovitskiyBrox(Method):
    """Up-convolutional SIFT inversion over a sparse (128+5)-channel map (Dosovitskiy & Brox 2016)."""

    name = "dosovitskiy-brox"
    description = "Dosovitskiy & Brox (CVPR 2016) up-convolutional SIFT inversion over a W/4 x H/4 x 133 sparse map."
    paper = PAPER
    tasks = frozenset({"descriptor-inversion"})
    needs_checkpoint = True
    options = (
        Option("cell", 4, "cell size d of the sparse SIFT map (paper: 4)", int, (2, 4, 8)),
        Option("width", 32, "base width (assumed; see the module docstring)", int),
        Option("lr", 1e-4, "training: Adam learning rate", float),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config["width"] < 1:
            raise UsageError(f"{self.name}: option width must be at least 1")

    default_batch_size = 64
    default_steps = 100_000

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        """Squared pixel error (the paper's loss), Adam; batches drawn uniformly, maps built per batch."""
        samples = list(dataset.samples("train"))
        if not samples:
            raise DataError(f"{dataset.name}: the train split has no samples")
        model = self.build().to(context.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.config["lr"])

        def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            chosen = [samples[i] for i in uniform_batch(len(samples), context.batch_size, context.seed, step)]
            maps = torch.stack([self.sparse_map(s) for s in chosen])
            return maps, torch.stack([s["image"] for s in chosen]) * 2 - 1

        def loss(pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            maps, images = (t.to(context.device) for t in pair)
            return F.mse_loss(model(maps), images)

        description = {"loss": "mean squared pixel error on [-1, 1] images", "optimizer": f"Adam lr {self.config['lr']}",
                       "input": f"sparse SIFT map, cell {self.config['cell']}, 133 channels"}
        return SingleModelRecipe(model, optimizer, None, batch, loss, description, context)

    def build(self) -> UpConvInversion:
        return UpConvInversion(self.config["cell"], self.config["width"])

    def sparse_map(self, sample: Sample) -> torch.Tensor:
        size = tuple(int(v) for v in sample["size"])
        if size[0] % (4 * self.config["cell"]) or size[1] % (4 * self.config["cell"]):
            raise DataError(f"{self.name}: image size {size} must be a multiple of {4 * self.config['cell']}")
        return sparse_sift_map(sample["keypoints"], sample["descriptors"], size, self.config["cell"])

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        with torch.inference_mode():
            return [
                ((self._model(self.sparse_map(s)[None].to(self._device))[0] + 1) / 2).clamp(0, 1).float().cpu()
                for s in samples
            ]


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(DosovitskiyBrox)
