"""`gh-bpt` and `gh`: the feed-forward inpainting network of the Yang thesis, chapter 3 (arXiv:1803.08943):
a generator head with dilated residual blocks, grown by Block-wise Procedural Training (BPT).

Generator head (GH, thesis §3.3.1): the masked image in [-1, 1] and the hole mask (4 channels) → three
stride-2 convolutions (8× down), 9 residual blocks whose convolutions are dilated by 2, three stride-2
transposed convolutions back to the image; batch norm + ReLU after every convolution but the last (tanh).
The full image is predicted and only its hole is kept. BPT adds up to three more residual blocks after the
trained ones, each entered through a blend ``x + t·f(x)`` whose ``t`` (a buffer, so checkpoints carry it)
goes from 0 (skip path only) to 1 (block fully in) while that block trains.

Chosen where the thesis is silent (recorded with the method options): channel widths 64/128/256 (pix2pixHD's
global generator, which the thesis says it resembles, ``ngf`` option), 3×3 kernels, zero padding, the mask
as a fourth input channel (chapter 7 says inpainting networks get it "as an additional input").

The training objective (Patch Perceptual Loss on the hole at two scales, multi-scale conditional PatchGAN
loss with hole-overlapping patches labelled fake, adversarial loss annealing 10^-i per added block) needs the
multi-network training protocol; `patch_labels` and `PatchDiscriminator` here are its building blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import Method, Option, Sample, UsageError, hookimpl
from harness.checkpoints import load_into

from .inpainting_common import composite, hole_of

PAPER = (
    "Chao Yang, Yuhang Song, Xiaofeng Liu, Qingming Tang, C.-C. Jay Kuo. Image Inpainting using Block-wise "
    "Procedural Training with Annealed Adversarial Counterpart. arXiv:1803.08943; Chao Yang, USC PhD thesis 2019, ch. 3"
)
HEAD_BLOCKS = 9
MAX_PROCEDURAL = 3


class DilatedResidualBlock(nn.Module):
    """x + BN(conv_d2(ReLU(BN(conv_d2(x))))), 3×3 convolutions dilated by 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ProceduralBlock(nn.Module):
    """A BPT block: ``x + t·f(x)``, the skip path alone at t = 0, the full residual block at t = 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = DilatedResidualBlock(channels)
        self.register_buffer("blend", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.blend * (self.block(x) - x)


class GeneratorHead(nn.Module):
    """(N, 4, H, W) [masked image in [-1, 1], mask] → (N, 3, H, W) image in [-1, 1]; H, W multiples of 8."""

    def __init__(self, ngf: int = 64, procedural_blocks: int = 0) -> None:
        super().__init__()
        widths = (ngf, 2 * ngf, 4 * ngf)
        front: list[nn.Module] = []
        channels = 4
        for width in widths:
            front += [nn.Conv2d(channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.front = nn.Sequential(*front)
        self.blocks = nn.Sequential(*(DilatedResidualBlock(channels) for _ in range(HEAD_BLOCKS)))
        self.procedural = nn.ModuleList(ProceduralBlock(channels) for _ in range(procedural_blocks))
        back: list[nn.Module] = []
        for width in (widths[1], widths[0]):
            back += [nn.ConvTranspose2d(channels, width, 3, 2, 1, output_padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        back += [nn.ConvTranspose2d(channels, 3, 3, 2, 1, output_padding=1), nn.Tanh()]
        self.back = nn.Sequential(*back)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.front(x))
        for block in self.procedural:
            h = block(h)
        return self.back(h)


class PatchDiscriminator(nn.Module):
    """pix2pix's 70×70 PatchGAN, conditional: (input s, image) → one logit per patch."""

    KERNELS = ((4, 2, 1), (4, 2, 1), (4, 2, 1), (4, 1, 1), (4, 1, 1))

    def __init__(self, in_channels: int = 7, ndf: int = 64) -> None:
        super().__init__()
        widths = (ndf, 2 * ndf, 4 * ndf, 8 * ndf, 1)
        layers: list[nn.Module] = []
        channels = in_channels
        for index, (width, (k, s, p)) in enumerate(zip(widths, self.KERNELS)):
            layers.append(nn.Conv2d(channels, width, k, s, p))
            if 0 < index < len(widths) - 1:
                layers.append(nn.BatchNorm2d(width))
            if index < len(widths) - 1:
                layers.append(nn.LeakyReLU(0.2))
            channels = width
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], dim=1))


def patch_labels(hole: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) hole → (N,1,h,w) PatchGAN targets: 0 (fake) where a patch's receptive field overlaps the
    hole, 1 elsewhere (thesis Eq. 3.3-3.4: only patches touching a hole are labelled fake).

    Max pooling with each layer's kernel, stride and padding marks exactly the outputs whose receptive
    field contains a hole pixel."""
    touched = hole.float()
    for kernel, stride, padding in PatchDiscriminator.KERNELS:
        touched = F.max_pool2d(F.pad(touched, (padding,) * 4), kernel, stride)
    return 1.0 - touched


class GHBPT(Method):
    name = "gh-bpt"
    aliases = ("yang-feedforward", "bpt")
    description = (
        "Feed-forward inpainting of the Yang thesis ch. 3: generator head (3 stride-2 convs, 9 dilated residual "
        "blocks, 3 up-convs) grown by block-wise procedural training to 12 blocks; predicts the full image."
    )
    paper = PAPER
    tasks = frozenset({"inpainting"})
    needs_checkpoint = True
    batch_size = 8
    options = (
        Option("ngf", 64, "channels after the first convolution (then x2, x4); the thesis does not state them"),
        Option("procedural_blocks", MAX_PROCEDURAL, "residual blocks added by BPT after the 9 of the head (0-3)"),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not 0 <= self.config["procedural_blocks"] <= MAX_PROCEDURAL:
            raise UsageError(f"{self.name}: option 'procedural_blocks' must be 0..{MAX_PROCEDURAL}")

    def build(self) -> nn.Module:
        return GeneratorHead(self.config["ngf"], self.config["procedural_blocks"])

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
                hole = hole_of(sample)
                height, width = hole.shape[-2:]
                if height % 8 or width % 8:
                    raise UsageError(f"{self.name}: image sides must be multiples of 8, got {height}x{width}")
                masked = sample["masked"].to(self._device, torch.float32)
                x = torch.cat([masked * 2.0 - 1.0, hole.to(self._device).float()])[None]
                fill = self.model(x)[0].add(1.0).div(2.0).cpu()
                outputs.append(composite(fill, sample["masked"].float(), hole.cpu()))
        return outputs


class GH(GHBPT):
    name = "gh"
    aliases = ("generator-head",)
    description = "The generator head of the Yang thesis ch. 3 alone (9 dilated residual blocks, no procedural blocks)."
    options = (
        Option("ngf", 64, "channels after the first convolution (then x2, x4); the thesis does not state them"),
        Option("procedural_blocks", 0, "residual blocks added by BPT after the 9 of the head (0 for the head)"),
    )


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(GHBPT)
    register(GH)
