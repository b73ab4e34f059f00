"""Show, Attend and Translate (SAT; Yang's thesis, chapter 4): one-way unpaired translation with an
attention branch and VGG self-regularisation.

Output G(x) = A(x) ⊙ G0(x) + (1 − A(x)) ⊙ x. From the thesis: G0 has 2 stride-2 conv blocks, 9
residual blocks with dilation 2, 2 stride-2 deconv blocks, batch norm + ReLU everywhere but the image
layer; the attention branch A is VGG-19 up to conv3_3 (ImageNet warm start), 2 deconv blocks and a
conv + sigmoid to one channel; D is a 5-layer conv net (3 stride-2, 2 stride-1) giving patch scores.
Unstated, chosen here and recorded as options: G0's widths and kernels are CycleGAN's (c7s1-64, d128,
d256, R256×9, u128, u64, c7s1-3); A's deconvs are 3×3 stride 2 with 128 and 64 channels, batch norm
and ReLU; the output conv is 3×3; D's widths are the PatchGAN's (64, 128, 256, 512, 1; 4×4 kernels)
with batch norm. ``sat-g0`` is the initial model without attention (the thesis's "ours initial",
used for maps and digits).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness import Method, Option, Sample, UsageError, hookimpl
from harness.checkpoints import load_into

from .cyclegan import init_weights, translate

PAPER = (
    "Chao Yang. Deep Generative Models for Image Translation. PhD thesis, University of Southern California, 2019, "
    "chapter 4 (Show, Attend and Translate; arXiv:1806.06195)."
)
VGG19_CONV3_3 = 15
"""``torchvision.models.vgg19().features[:15]`` ends with conv3_3 (index 14), before its ReLU."""


class DilatedBlock(nn.Module):
    """Residual block: two 3×3 convs with dilation 2 (reflection padding 2), batch norm, ReLU between."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(2),
            nn.Conv2d(channels, channels, 3, dilation=2, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(2),
            nn.Conv2d(channels, channels, 3, dilation=2, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class G0(nn.Module):
    """The translation network: [-1, 1] in, [-1, 1] out."""

    def __init__(self, ngf: int = 64, blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True)]
        for power in range(2):
            width = ngf * 2**power
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(True)]
        layers += [DilatedBlock(4 * ngf) for _ in range(blocks)]
        for power in (2, 1):
            width = ngf * 2**power
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Attention(nn.Module):
    """A(x) in [0, 1], one channel: VGG-19 to conv3_3, two deconv blocks, conv + sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.vgg = torchvision.models.vgg19(weights=None).features[:VGG19_CONV3_3]
        self.head = nn.Sequential(
            nn.ReLU(True),
            nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(True),
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(True),
            nn.Conv2d(64, 1, 3, padding=1),
            nn.Sigmoid(),
        )
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in [-1, 1]; VGG sees it ImageNet-normalised."""
        return self.head(self.vgg(((x + 1) / 2 - self.mean) / self.std))


class SATGenerator(nn.Module):
    """G(x) = A(x) ⊙ G0(x) + (1 − A(x)) ⊙ x, or G0(x) alone without attention."""

    def __init__(self, ngf: int, blocks: int, attention: bool) -> None:
        super().__init__()
        self.g0 = G0(ngf, blocks)
        self.attention = Attention() if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        translated = self.g0(x)
        if self.attention is None:
            return translated
        a = self.attention(x)
        return a * translated + (1 - a) * x


class SAT(Method):
    """SAT with attention (the thesis's "ours final")."""

    name = "sat"
    description = "Show, Attend and Translate (Yang thesis ch. 4): G0 + VGG-19 attention branch, composite A*G0(x)+(1-A)*x."
    paper = PAPER
    tasks = frozenset({"unpaired-translation"})
    needs_checkpoint = True
    attention = True
    options = (
        Option("ngf", 64, "G0 base width (assumed: CycleGAN's 64)", int),
        Option("blocks", 9, "dilated residual blocks of G0 (thesis: 9)", int),
        Option("resize", 256, "test-time resize to this square size (thesis: all images 256x256; 0: native)", int),
        Option("output_size", "input", "input: resize the result back to the input's size; model: keep it", str, ("input", "model")),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config["ngf"] < 1 or self.config["blocks"] < 0 or self.config["resize"] % 4:
            raise UsageError(f"{self.name}: ngf ≥ 1, blocks ≥ 0 and resize a multiple of 4 are required")

    def build(self) -> SATGenerator:
        return init_weights(SATGenerator(self.config["ngf"], self.config["blocks"], self.attention))

    def load(self, checkpoint: Path | None, device: str) -> None:
        model = self.build()
        if checkpoint is not None:
            load_into(model, Path(checkpoint))
        self._model = model.to(device).eval()
        self._device = device

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        cfg = self.config
        with torch.inference_mode():
            return [translate(self._model, s["image"], cfg["resize"], cfg["output_size"], self._device) for s in samples]


class SATG0(SAT):
    """SAT without the attention branch (the thesis's "ours initial"; its maps and digits model)."""

    name = "sat-g0"
    description = "SAT's G0 alone (no attention): the thesis's initial model, used for maps and MNIST->USPS/MNIST-M."
    attention = False


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(SAT)
    register(SATG0)
