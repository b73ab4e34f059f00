"""SPT's networks: H_S, H_A (foreground with deformable skips, background inpainter), the pose
detector P and the discriminators.

Every generator is the same U-Net family, built from the official demo's foreground generator
(``SijieSong/person_generation_spt``, itself the PyTorch port of Def-GAN's Keras generator):

* each input stream has an encoder of widths (w, 2w, 4w, 8w, 8w, 8w): a 3×3 stride-1 convolution,
  then blocks LeakyReLU(0.2) → 4×4 stride-2 convolution (no bias) → norm, the last block without
  norm (so with a bias, where the demo's has none: its demo weights fill it with zeros). The norm is the
  demo's ``InstanceNorm3d(1, eps=1e-3, affine)`` on an unsqueezed tensor: one mean and variance over
  (C, H, W) per sample and a scalar affine pair (`pose_transfer_common.SampleNorm`, eps `NORM_EPS`);
* one decoder of widths (8w, 8w, 8w, 4w, 2w): ReLU → 4×4 stride-2 transposed convolution → norm,
  dropout 0.5 in the first three blocks; then ReLU → 3×3 convolution to the output. Before every
  decoder block the features of every stream at that level are concatenated (U-Net skips); the
  foreground generator first warps its appearance stream with Def-GAN's deformable skip (the shared
  `pose_maps.deform`: 10 part affines, each warped copy multiplied by its target-pose part mask, max
  over parts) on its first 4 levels, as the demo's global generator and Def-GAN (the two deepest levels,
  4×4 and 2×2 at 128×64, are not warped).

The demo shows only the foreground generator (w = 64). The paper gives no layers for H_S ("U-Net
based", two encoders, softmax), the background U-Net or the pose detector; they reuse the same blocks
at the same widths (H_S: 29- and 19-channel streams, 10-way softmax; background: one 4-channel stream,
the person-free image plus the hole mask; P: one 3-channel stream regressing 18 heat maps, where the
demo trains a CycleGAN ResNet). Images enter and leave the generators in [-1, 1].

For DeepFashion's progressive growing the foreground generator is the demo's global + local pair
(`ProgressiveForeground`): the same U-Net at half resolution and a small full-resolution enhancer whose
features fade into it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness_plugins.methods.translation.cyclegan import PatchDiscriminator, init_weights
from harness_plugins.shared.pose_maps import deform
from .pose_transfer_common import SampleNorm
from .spt_parts import CLASSES, one_hot

HEATMAPS = 18
NORM_EPS = 1e-3
"""The demo's ``InstanceNorm3d(1, eps=1e-3)`` (``GlobalLocalPRDemo_models.Block``)."""
DOWNSAMPLINGS = 5
"""Encoder blocks after the first convolution: images must be multiples of 2**5 = 32 on each side."""


Warp = Callable[[torch.Tensor], torch.Tensor]
Fade = tuple[torch.Tensor, torch.Tensor]
"""Features replacing an encoder's first level, and the weight alpha they get."""


def encoder_widths(width: int) -> tuple[int, ...]:
    return (width, 2 * width, 4 * width, 8 * width, 8 * width, 8 * width)


def decoder_widths(width: int) -> tuple[int, ...]:
    return (8 * width, 8 * width, 8 * width, 4 * width, 2 * width)


class Encoder(nn.Module):
    """One input stream: returns the features of every level (full size, then halved per block).

    ``bottleneck``: the last block has a bias and no norm (the U-Nets' innermost level); the local
    enhancer's two-level encoders end on a normalised block instead (the demo's ``local_encoder``)."""

    def __init__(self, channels: int, widths: Sequence[int], bottleneck: bool = True) -> None:
        super().__init__()
        blocks = [nn.Conv2d(channels, widths[0], 3, padding=1)]
        for index in range(1, len(widths)):
            last = bottleneck and index == len(widths) - 1
            layers: list[nn.Module] = [
                nn.LeakyReLU(0.2),
                nn.Conv2d(widths[index - 1], widths[index], 4, stride=2, padding=1, bias=last),
            ]
            if not last:
                layers.append(SampleNorm(NORM_EPS))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, fade: Fade | None = None) -> list[torch.Tensor]:
        """``fade`` = (features, alpha): the first level becomes (1 − alpha)·conv(x) + alpha·features, the
        demo's fade-in of the local enhancer's features into the global generator (PGGAN)."""
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == 0 and fade is not None:
                x = (1 - fade[1]) * x + fade[1] * fade[0]
            features.append(x)
        return features


class Decoder(nn.Module):
    """Upsampling blocks fed with the concatenated stream features of each level (deepest first)."""

    def __init__(self, level_channels: Sequence[int], widths: Sequence[int], out: int, dropout: int = 3) -> None:
        super().__init__()
        levels = list(level_channels)[::-1]  # deepest first
        blocks, channels = [], 0
        for index, nf in enumerate(widths):
            layers: list[nn.Module] = [
                nn.ReLU(),
                nn.ConvTranspose2d(channels + levels[index], nf, 4, stride=2, padding=1, bias=False),
                SampleNorm(NORM_EPS),
            ]
            if index < dropout:
                layers.append(nn.Dropout(0.5))
            blocks.append(nn.Sequential(*layers))
            channels = nf
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels + levels[-1], out, 3, padding=1))

    def trunk(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """The last upsampling block's features (at the first level's size), before the head."""
        levels = levels[::-1]
        x = self.blocks[0](levels[0])
        for block, skip in zip(self.blocks[1:], levels[1:-1]):
            x = block(torch.cat([x, skip], dim=1))
        return x

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.trunk(levels), levels[0]], dim=1))


class UNet(nn.Module):
    """Encoders for each input stream, one decoder; the first stream's features can be warped on the
    first ``warp_levels`` levels (all by default; the demo's global generator: 4)."""

    def __init__(self, streams: Sequence[int], out: int, width: int, warp_levels: int | None = None) -> None:
        super().__init__()
        self.warp_levels = len(encoder_widths(width)) if warp_levels is None else warp_levels
        self.encoders = nn.ModuleList(Encoder(channels, encoder_widths(width)) for channels in streams)
        self.decoder = Decoder([len(streams) * c for c in encoder_widths(width)], decoder_widths(width), out)

    def skips(self, *inputs: torch.Tensor, warp: Warp | None = None,
              fades: Sequence[Fade | None] | None = None) -> list[torch.Tensor]:
        """Every level's stream features concatenated (``fades``: one per stream, see `Encoder.forward`)."""
        fades = fades if fades is not None else [None] * len(inputs)
        streams = [encoder(x, fade) for encoder, x, fade in zip(self.encoders, inputs, fades, strict=True)]
        if warp is not None:
            streams[0] = [warp(f) if level < self.warp_levels else f for level, f in enumerate(streams[0])]
        return [torch.cat(level, dim=1) for level in zip(*streams)]

    def forward(self, *inputs: torch.Tensor, warp: Warp | None = None) -> torch.Tensor:
        return self.decoder(self.skips(*inputs, warp=warp))


GLOBAL_WARP_LEVELS = 4
"""Levels of the global generator whose appearance features are warped (the demo's ``i < 4``)."""


class ProgressiveForeground(nn.Module):
    """G_A^F grown from half to full resolution (the demo's ``Local_Generator``, PGGAN's fade-in).

    * ``global_net``: the foreground U-Net (width w, deformable skips on its first 4 levels) on the
      2×-downsampled inputs; alone it is the generator of the first training stages.
    * ``local``: the local enhancer at full resolution: one two-level encoder per stream (w/2 at full size,
      w at half size, the demo's half-width 32-64 at w = 64), the appearance features warped; one
      upsampling block from the global generator's last decoder features and its first-level skips
      (2w + 2w) to w channels, a 3×3 head on them and the local first-level skips (w + w).
    * Fade-in by ``alpha`` (a buffer, 0 until the growing stage, 1 after it): the global generator's
      first-level features become (1 − alpha)·its own + alpha·the local encoder's second level, and the
      image alpha·local + (1 − alpha)·upsample(global) (nearest, as the demo's upsampling).

    At alpha = 0 the output is exactly the upsampled global image; at alpha = 1 the global generator's
    first convolutions and its head no longer count (the demo's test setting). The demo applies the global
    head to nearest-upsampled features at full size; here it runs at half size, where it was trained.
    """

    def __init__(self, streams: Sequence[int], width: int) -> None:
        super().__init__()
        if width % 2:
            raise ValueError(f"the local enhancer halves the width, which must be even (got {width})")
        self.global_net = UNet(streams, 3, width, warp_levels=GLOBAL_WARP_LEVELS)
        self.local = nn.Module()
        self.local.encoders = nn.ModuleList(Encoder(channels, (width // 2, width), bottleneck=False)
                                            for channels in streams)
        level0 = len(streams) * (width // 2)
        self.local.decoder = Decoder([level0, 2 * width + len(streams) * width], (width,), 3, dropout=0)
        self.register_buffer("alpha", torch.zeros(()))

    def coarse(self, appearance: torch.Tensor, target: torch.Tensor, warp: Warp) -> torch.Tensor:
        """The global generator alone, at the resolution of its inputs."""
        return torch.tanh(self.global_net(appearance, target, warp=warp))

    def forward(self, appearance: torch.Tensor, target: torch.Tensor, warp: Warp,
                half: tuple[torch.Tensor, torch.Tensor, Warp]) -> torch.Tensor:
        """Full-resolution streams and warp, and ``half``: the same at half resolution (the global's)."""
        local = [encoder(x) for encoder, x in zip(self.local.encoders, (appearance, target), strict=True)]
        skips = self.global_net.skips(half[0], half[1], warp=half[2],
                                      fades=[(features[1], self.alpha) for features in local])
        trunk = self.global_net.decoder.trunk(skips)
        coarse = torch.tanh(self.global_net.decoder.head(torch.cat([trunk, skips[0]], dim=1)))
        first = torch.cat([warp(local[0][0]), local[1][0]], dim=1)
        fine = torch.tanh(self.local.decoder([first, torch.cat([trunk, skips[0]], dim=1)]))
        return self.alpha * fine + (1 - self.alpha) * F.interpolate(coarse, scale_factor=2, mode="nearest")


def halve(x: torch.Tensor) -> torch.Tensor:
    """Images and (soft) maps at half resolution: 2×2 means (the demo's ``AvgPool2d(2)``)."""
    return F.avg_pool2d(x, 2)


def halve_labels(labels: torch.Tensor) -> torch.Tensor:
    """(…, H, W) int labels at half resolution: each 2×2 block's most frequent label (ties: the lower)."""
    return halve(one_hot(labels.long())).argmax(dim=-3)


def double(x: torch.Tensor) -> torch.Tensor:
    """Half-resolution predictions (H_S's maps, the background) at full resolution: bilinear."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def foreground_mask(parsing: torch.Tensor) -> torch.Tensor:
    """Ω(S): 1 where the most likely label is not background, (B, 1, H, W)."""
    return (parsing.argmax(dim=1, keepdim=True) != 0).to(parsing.dtype)


Level = tuple[torch.Tensor, ...]
"""G_A^F's inputs at one resolution: image, S_s, p_s, S̃_t, p_t, part affines, their validity, target part masks."""


class SPTGenerator(nn.Module):
    """What `harness run` needs: H_S, the foreground generator G_A^F and (optionally) the background
    inpainter G_A^B, composed as Eq. 6: Ĩ = Ĩ^F ⊗ Ω(S̃_t) + Ĩ^B ⊗ (1 − Ω(S̃_t)).

    ``progressive`` (DeepFashion's 128 → 256 growing): G_A^F is a `ProgressiveForeground`; H_S and the
    background network stay at half resolution, their outputs upsampled (`double`). ``parsing=False``:
    no H_S, the target map is given (the TS-GT setting, the official demo's)."""

    def __init__(self, width: int = 64, background: bool = True, progressive: bool = False, parsing: bool = True) -> None:
        super().__init__()
        # E_S(S_s, p_s, M_s): 10 + 18 + 1; E_P(p_t, M_t): 18 + 1
        self.hs = UNet((CLASSES + HEATMAPS + 1, HEATMAPS + 1), CLASSES, width) if parsing else None
        # E_A^F(I_s, S_s without background, p_s): 3 + 9 + 18; E'_S(p_t, S̃_t without background): 18 + 9
        streams = (3 + CLASSES - 1 + HEATMAPS, HEATMAPS + CLASSES - 1)
        self.fg: UNet | ProgressiveForeground = ProgressiveForeground(streams, width) if progressive else \
            UNet(streams, 3, width, warp_levels=GLOBAL_WARP_LEVELS)
        self.bg = UNet((4,), 3, width) if background else None

    @property
    def progressive(self) -> bool:
        return isinstance(self.fg, ProgressiveForeground)

    def parse(self, parsing: torch.Tensor, heat_s: torch.Tensor, mask_s: torch.Tensor,
              heat_t: torch.Tensor, mask_t: torch.Tensor) -> torch.Tensor:
        """S̃_t = softmax(G_S(E_S(S_s, p_s, M_s), E_P(p_t, M_t))), (B, 10, H, W)."""
        assert self.hs is not None, "built without H_S (target maps given)"
        return torch.softmax(self.hs(torch.cat([parsing, heat_s, mask_s], 1), torch.cat([heat_t, mask_t], 1)), dim=1)

    def foreground(self, image: torch.Tensor, parsing_s: torch.Tensor, heat_s: torch.Tensor,
                   parsing_t: torch.Tensor, heat_t: torch.Tensor, theta: torch.Tensor, valid: torch.Tensor,
                   parts: torch.Tensor, half: Level | None = None) -> torch.Tensor:
        """Ĩ^F_t = G_A^F(E_A^F(I_s, S_s, p_s), E'_S(S̃_t, p_t)), the appearance features warped part by part
        (``theta``/``valid`` from `pose_maps.part_affines`, ``parts`` the target's `pose_maps.limb_masks`).

        Progressive: with ``half`` (the same eight inputs at half resolution) the grown generator; without
        it the global generator alone, at the resolution given (the first training stages)."""
        appearance, target, warp = self._streams(image, parsing_s, heat_s, parsing_t, heat_t, theta, valid, parts)
        if not isinstance(self.fg, ProgressiveForeground):
            return torch.tanh(self.fg(appearance, target, warp=warp))
        if half is None:
            return self.fg.coarse(appearance, target, warp)
        return self.fg(appearance, target, warp, self._streams(*half))

    @staticmethod
    def _streams(image: torch.Tensor, parsing_s: torch.Tensor, heat_s: torch.Tensor, parsing_t: torch.Tensor,
                 heat_t: torch.Tensor, theta: torch.Tensor, valid: torch.Tensor,
                 parts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Warp]:
        appearance = torch.cat([image, parsing_s[:, 1:], heat_s], 1)
        target = torch.cat([heat_t, parsing_t[:, 1:]], 1)
        return appearance, target, lambda feature: deform(feature, theta, valid, parts)

    def background(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """G_A^B(E_A^B(I ⊗ (1 − hole))): the image with the hole removed, plus the hole as a 4th channel."""
        assert self.bg is not None
        return torch.tanh(self.bg(torch.cat([image * (1 - hole), hole], 1)))

    def render(self, image: torch.Tensor, parsing_s: torch.Tensor, heat_s: torch.Tensor, parsing_t: torch.Tensor,
               heat_t: torch.Tensor, theta: torch.Tensor, valid: torch.Tensor, parts: torch.Tensor,
               half: Level | None = None) -> torch.Tensor:
        """Ĩ_t (Eq. 6). The background stream is part of H_A: L_A reaches it through the composition (Algorithm 1,
        step 4), besides its own losses; with ``half`` (progressive) it inpaints at half resolution and is upsampled."""
        foreground = self.foreground(image, parsing_s, heat_s, parsing_t, heat_t, theta, valid, parts, half)
        background = None
        if self.bg is not None:
            if half is None:
                background = self.background(image, foreground_mask(parsing_s))
            else:
                background = double(self.background(half[0], foreground_mask(half[1])))
        return self.compose(foreground, background, parsing_t)

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
