"""SPT's networks: H_S, H_A (foreground with deformable skips, background inpainter), the pose
detector P and the discriminators.

Every generator is the same U-Net family, built from the official demo's foreground generator
(``SijieSong/person_generation_spt``, itself the PyTorch port of Def-GAN's Keras generator):

* each input stream has an encoder of widths (w, 2w, 4w, 8w, 8w, 8w): a 3×3 stride-1 convolution,
  then blocks LeakyReLU(0.2) → 4×4 stride-2 convolution (no bias) → norm, the last block without
  norm (so with a bias). The norm is the demo's ``InstanceNorm3d(1, affine)`` on an unsqueezed
  tensor: one mean and variance over (C, H, W) per sample and a scalar affine pair
  (`pose_transfer_common.SampleNorm`);
* one decoder of widths (8w, 8w, 8w, 4w, 2w): ReLU → 4×4 stride-2 transposed convolution → norm,
  dropout 0.5 in the first three blocks; then ReLU → 3×3 convolution to the output. Before every
  decoder block the features of every stream at that level are concatenated (U-Net skips); the
  foreground generator first warps its appearance stream with Def-GAN's deformable skip (the shared
  `pose_maps.deform`: 10 part affines, each warped copy multiplied by its target-pose part mask, max
  over parts).

The demo shows only the foreground generator (w = 64). The paper gives no layers for H_S ("U-Net
based", two encoders, softmax), the background U-Net or the pose detector; they reuse the same blocks
at the same widths (H_S: 29- and 19-channel streams, 10-way softmax; background: one 4-channel stream,
the person-free image plus the hole mask; P: one 3-channel stream regressing 18 heat maps, where the
demo trains a CycleGAN ResNet). Images enter and leave the generators in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .cyclegan import PatchDiscriminator, init_weights
from .pose_maps import deform
from .pose_transfer_common import SampleNorm
from .spt_parts import CLASSES

HEATMAPS = 18
DOWNSAMPLINGS = 5
"""Encoder blocks after the first convolution: images must be multiples of 2**5 = 32 on each side."""


def encoder_widths(width: int) -> tuple[int, ...]:
    return (width, 2 * width, 4 * width, 8 * width, 8 * width, 8 * width)


class Encoder(nn.Module):
    """One input stream: returns the features of all six levels (full size down to 1/32)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        widths = encoder_widths(width)
        blocks = [nn.Conv2d(channels, widths[0], 3, padding=1)]
        for index in range(1, len(widths)):
            last = index == len(widths) - 1
            layers: list[nn.Module] = [
                nn.LeakyReLU(0.2),
                nn.Conv2d(widths[index - 1], widths[index], 4, stride=2, padding=1, bias=last),
            ]
            if not last:
                layers.append(SampleNorm())
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """Upsampling blocks fed with the concatenated stream features of each level (deepest first)."""

    def __init__(self, level_channels: Sequence[int], width: int, out: int) -> None:
        super().__init__()
        widths = (8 * width, 8 * width, 8 * width, 4 * width, 2 * width)
        levels = list(level_channels)[::-1]  # deepest first
        blocks, channels = [], 0
        for index, nf in enumerate(widths):
            layers: list[nn.Module] = [
                nn.ReLU(),
                nn.ConvTranspose2d(channels + levels[index], nf, 4, stride=2, padding=1, bias=False),
                SampleNorm(),
            ]
            if index < 3:
                layers.append(nn.Dropout(0.5))
            blocks.append(nn.Sequential(*layers))
            channels = nf
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels + levels[-1], out, 3, padding=1))

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        levels = levels[::-1]
        x = self.blocks[0](levels[0])
        for block, skip in zip(self.blocks[1:], levels[1:]):
            x = block(torch.cat([x, skip], dim=1))
        return self.head(torch.cat([x, levels[-1]], dim=1))


Warp = Callable[[torch.Tensor], torch.Tensor]


class UNet(nn.Module):
    """Encoders for each input stream, one decoder; the first stream's features can be warped."""

    def __init__(self, streams: Sequence[int], out: int, width: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(Encoder(channels, width) for channels in streams)
        self.decoder = Decoder([len(streams) * c for c in encoder_widths(width)], width, out)

    def forward(self, *inputs: torch.Tensor, warp: Warp | None = None) -> torch.Tensor:
        streams = [encoder(x) for encoder, x in zip(self.encoders, inputs, strict=True)]
        if warp is not None:
            streams[0] = [warp(feature) for feature in streams[0]]
        return self.decoder([torch.cat(level, dim=1) for level in zip(*streams)])


def foreground_mask(parsing: torch.Tensor) -> torch.Tensor:
    """Ω(S): 1 where the most likely label is not background, (B, 1, H, W)."""
    return (parsing.argmax(dim=1, keepdim=True) != 0).to(parsing.dtype)


class SPTGenerator(nn.Module):
    """What `harness run` needs: H_S, the foreground generator G_A^F and (optionally) the background
    inpainter G_A^B, composed as Eq. 6: Ĩ = Ĩ^F ⊗ Ω(S̃_t) + Ĩ^B ⊗ (1 − Ω(S̃_t))."""

    def __init__(self, width: int = 64, background: bool = True) -> None:
        super().__init__()
        # E_S(S_s, p_s, M_s): 10 + 18 + 1; E_P(p_t, M_t): 18 + 1
        self.hs = UNet((CLASSES + HEATMAPS + 1, HEATMAPS + 1), CLASSES, width)
        # E_A^F(I_s, S_s without background, p_s): 3 + 9 + 18; E'_S(p_t, S̃_t without background): 18 + 9
        self.fg = UNet((3 + CLASSES - 1 + HEATMAPS, HEATMAPS + CLASSES - 1), 3, width)
        self.bg = UNet((4,), 3, width) if background else None

    def parse(self, parsing: torch.Tensor, heat_s: torch.Tensor, mask_s: torch.Tensor,
              heat_t: torch.Tensor, mask_t: torch.Tensor) -> torch.Tensor:
        """S̃_t = softmax(G_S(E_S(S_s, p_s, M_s), E_P(p_t, M_t))), (B, 10, H, W)."""
        return torch.softmax(self.hs(torch.cat([parsing, heat_s, mask_s], 1), torch.cat([heat_t, mask_t], 1)), dim=1)

    def foreground(self, image: torch.Tensor, parsing_s: torch.Tensor, heat_s: torch.Tensor,
                   parsing_t: torch.Tensor, heat_t: torch.Tensor, theta: torch.Tensor, valid: torch.Tensor,
                   parts: torch.Tensor) -> torch.Tensor:
        """Ĩ^F_t = G_A^F(E_A^F(I_s, S_s, p_s), E'_S(S̃_t, p_t)), the appearance features warped part by part
        (``theta``/``valid`` from `pose_maps.part_affines`, ``parts`` the target's `pose_maps.limb_masks`)."""
        appearance = torch.cat([image, parsing_s[:, 1:], heat_s], 1)
        target = torch.cat([heat_t, parsing_t[:, 1:]], 1)
        return torch.tanh(self.fg(appearance, target, warp=lambda feature: deform(feature, theta, valid, parts)))

    def background(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """G_A^B(E_A^B(I ⊗ (1 − hole))): the image with the hole removed, plus the hole as a 4th channel."""
        assert self.bg is not None
        return torch.tanh(self.bg(torch.cat([image * (1 - hole), hole], 1)))

    def compose(self, foreground: torch.Tensor, background: torch.Tensor | None, parsing_t: torch.Tensor) -> torch.Tensor:
        if background is None:
            return foreground
        omega = foreground_mask(parsing_t)
        return foreground * omega + background * (1 - omega)


def pose_detector(width: int) -> UNet:
    """P: image (3) → 18 heat maps, pretrained on real images and then frozen (as UPIS / the demo)."""
    return UNet((3,), HEATMAPS, width)


def discriminator(channels: int, ndf: int) -> PatchDiscriminator:
    """The demo's PatchGAN ``NLayerDiscriminator`` (n_layers 3, instance norm) on ``channels`` inputs."""
    return PatchDiscriminator(ndf, 3, channels=channels, norm="instance")


def initialised(module: nn.Module) -> nn.Module:
    """The demo's initialisation: normal(0, 0.02) convolutions, zero biases."""
    return init_weights(module)
