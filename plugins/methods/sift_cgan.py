"""SIFT inversion with a coarse network and a fine cGAN (Wu, Zhou, Li) — re-implementation (unverified).

The paper's Fig. 3 (every width and kernel size) is missing from the available text, so the shapes
below follow the text and fill the gaps with stated assumptions, all recorded as options:

* input: the multi-scale descriptor maps F_{d=4} and F_{d=2} (`descriptor_maps.descriptor_map`);
* coarse network R: two branches averaged. The d=4 branch has 4 stride-2 convolutions then 6
  "deconvolutions" (×2 nearest upsampling + stride-1 convolution): 10 layers; the d=2 branch has 5 + 6:
  11 layers (the paper says 11 without the split). Every convolution but the last of a branch is
  followed by batch norm and LeakyReLU 0.2 (paper). Assumed: 4×4 kernels for stride 2, 3×3 otherwise;
  widths w, 2w, 4w, 8w(, 8w) down and 8w, 4w, 2w, w, w/2, 3 up with w = ``width`` (64); the branch
  outputs are averaged, then tanh (the final activation is not stated);
* fine generator G: DeblurGAN's — CycleGAN's ResNet-9 generator with dropout 0.5 in every block and a
  global skip, output = clamp(R(F) + G(R(F)), -1, 1);
* D (training only): pix2pix's 70×70 PatchGAN with batch norm on the concatenation (R(F), image).

Images are handled in [-1, 1]; predictions are returned in [0, 1]. Ablations (options): ``scales=4``
(single scale), ``stages=r`` (R only), ``loss=l2`` (ℓ2 only; also avoids needing VGG weights).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness import DataError, Method, Option, Sample, UsageError, hookimpl
from harness.checkpoints import load_into

from .cyclegan import ResnetGenerator, init_weights
from .descriptor_maps import descriptor_map

PAPER = (
    "Haiwei Wu, Jiantao Zhou, Yuanman Li. Image Reconstruction from Local Descriptors Using Conditional "
    "Adversarial Networks (probably APSIPA ASC 2019). No official code; re-implementation (unverified)."
)
DESCRIPTOR_DEPTH = 128
DOWNS = {4: 4, 2: 5}
"""Stride-2 convolutions of the branch reading F_d: both reach H/64 before six ×2 upsamplings."""


def _block(conv: nn.Module, out: int, last: bool) -> list[nn.Module]:
    return [conv] if last else [conv, nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]


class Branch(nn.Module):
    """One encoder-decoder branch of R over F_d."""

    def __init__(self, cell: int, width: int, depth: int = DESCRIPTOR_DEPTH) -> None:
        super().__init__()
        downs = [width, 2 * width, 4 * width, 8 * width, 8 * width][: DOWNS[cell]]
        ups = [8 * width, 4 * width, 2 * width, width, max(width // 2, 1), 3]
        layers: list[nn.Module] = []
        channels = depth
        for out in downs:
            layers += _block(nn.Conv2d(channels, out, 4, stride=2, padding=1), out, False)
            channels = out
        for index, out in enumerate(ups):
            last = index == len(ups) - 1
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers += _block(nn.Conv2d(channels, out, 3, padding=1), out, last)
            channels = out
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CoarseNet(nn.Module):
    """R: the average of one branch per scale, through tanh; [-1, 1] RGB at the image size."""

    def __init__(self, scales: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.scales = scales
        self.branches = nn.ModuleDict({f"d{cell}": Branch(cell, width) for cell in scales})

    def forward(self, maps: dict[int, torch.Tensor]) -> torch.Tensor:
        outputs = [self.branches[f"d{cell}"](maps[cell]) for cell in self.scales]
        return torch.tanh(torch.stack(outputs).mean(dim=0))


class FineNet(nn.Module):
    """G: DeblurGAN's generator with its global skip connection."""

    def __init__(self, ngf: int, blocks: int) -> None:
        super().__init__()
        self.generator = ResnetGenerator(ngf, blocks, dropout=True)

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        return (coarse + self.generator(coarse)).clamp(-1, 1)


class SiftInversionNet(nn.Module):
    """R, then G unless ``stages == "r"``; ``forward`` returns (coarse, final), both in [-1, 1]."""

    def __init__(self, scales: tuple[int, ...], width: int, stages: str, ngf: int, blocks: int) -> None:
        super().__init__()
        self.coarse = CoarseNet(scales, width)
        self.fine = FineNet(ngf, blocks) if stages == "rg" else None

    def forward(self, maps: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        coarse = self.coarse(maps)
        return coarse, (self.fine(coarse) if self.fine is not None else coarse)


def sample_maps(sample: Sample, scales: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """The descriptor maps of one sample, one (128, H/d, W/d) tensor per scale."""
    size = tuple(int(v) for v in sample["size"])
    if size[0] % 64 or size[1] % 64:
        raise DataError(f"sift-cgan: image size {size} of sample {sample['id']!r} must be a multiple of 64 on both sides")
    return {cell: descriptor_map(sample["keypoints"], sample["descriptors"], size, cell)[0] for cell in scales}


class SiftCGAN(Method):
    """Coarse-to-fine SIFT inversion (R + cGAN), re-implementation (unverified: the paper's Fig. 3 is missing)."""

    name = "sift-cgan"
    description = (
        "SIFT inversion, Wu et al.: multi-scale descriptor maps -> coarse net R -> DeblurGAN-style G "
        "(re-implementation (unverified): layer widths assumed, the paper's Fig. 3 is missing)."
    )
    paper = PAPER
    tasks = frozenset({"descriptor-inversion"})
    needs_checkpoint = True
    options = (
        Option("scales", "2,4", "descriptor map cell sizes: 2,4 (paper) or 4 (single-scale ablation)", str, ("2,4", "4")),
        Option("stages", "rg", "rg: R then G (paper); r: R only (ablation)", str, ("rg", "r")),
        Option("loss", "joint", "joint: l2 + perceptual + style (paper); l2: l2 only (ablation)", str, ("joint", "l2")),
        Option("width", 64, "base width w of R's branches (assumed; Fig. 3 missing)", int),
        Option("ngf", 64, "base width of G (DeblurGAN: 64)", int),
        Option("blocks", 9, "residual blocks of G (paper: 9)", int),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if min(self.config["width"], self.config["ngf"]) < 1 or self.config["blocks"] < 0:
            raise UsageError(f"{self.name}: options width and ngf must be at least 1, blocks not negative")
        self.scales = tuple(int(s) for s in self.config["scales"].split(","))

    def build(self) -> SiftInversionNet:
        cfg = self.config
        return init_weights(SiftInversionNet(self.scales, cfg["width"], cfg["stages"], cfg["ngf"], cfg["blocks"]))

    def load(self, checkpoint: Path | None, device: str) -> None:
        model = self.build()
        if checkpoint is not None:
            load_into(model, Path(checkpoint))
        self._model = model.to(device).eval()
        self._device = device

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        outputs = []
        with torch.inference_mode():
            for sample in samples:
                maps = {cell: m[None].to(self._device) for cell, m in sample_maps(sample, self.scales).items()}
                outputs.append(((self._model(maps)[1][0] + 1) / 2).clamp(0, 1).float().cpu())
        return outputs


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(SiftCGAN)
