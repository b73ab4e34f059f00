"""UNIT's networks (Liu, Breuel, Kautz, NIPS 2017) as in the current official PyTorch code.

Module names and nesting follow ``networks.py`` of mingyuliutw/UNIT so that its ``gen_*.pt`` (a dict of
``a``/``b`` generator state dicts) loads strictly. Defaults are its ``unit_*`` configs for 256² sets
(e.g. ``unit_summer2winter_yosemite256_folder.yaml``):

* `VAEGenerator` (one per domain; ``gen.dim`` 64, 2 downsamplings, 4 residual blocks, ReLU, reflection
  padding): encoder c7s1-64, 4×4/2 convs to 128 and 256, 4 residual blocks (instance norm without affine
  parameters); decoder 4 residual blocks (instance norm), 2 × [nearest ×2 upsample, 5×5 conv halving the
  width, layer norm], c7s1-3 + tanh. 11,140,483 parameters (encoder 5,385,856, decoder 5,754,627).
  The latent code is the encoder output (the Gaussian mean); training adds unit-variance noise to it.
  The official code shares no weights between the two generators: the shared latent space is enforced
  by the losses (cross-domain cycle and the KL terms).
* `MultiScaleDiscriminator` (``dis``: dim 64, 4 layers, no normalisation, LeakyReLU 0.2, reflection
  padding, 3 scales): per scale 4 × [4×4/2 conv] (64-128-256-512) then a 1×1 conv to one channel; the
  input is average-pooled (3×3/2, padding 1, padding excluded) between scales. 2,757,057 parameters per
  scale, 8,271,171 for three.
"""

from __future__ import annotations

import torch
from torch import nn

from harness_plugins.shared.munit_blocks import LayerNorm, MultiScalePatches


class Conv2dBlock(nn.Module):
    """Padding, convolution (with bias), optional norm, optional activation: the official building block.

    ``norm``: ``in`` (instance norm, no affine parameters), ``ln`` (`LayerNorm`) or ``none``;
    ``activation``: ``relu``, ``lrelu`` (slope 0.2), ``tanh`` or ``none``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int,
                 norm: str = "none", activation: str = "relu", pad_type: str = "reflect") -> None:
        super().__init__()
        pads = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "zero": nn.ZeroPad2d}
        norms = {"in": lambda: nn.InstanceNorm2d(out_channels), "ln": lambda: LayerNorm(out_channels), "none": lambda: None}
        activations = {"relu": lambda: nn.ReLU(inplace=True), "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
                       "tanh": nn.Tanh, "none": lambda: None}
        for name, value, table in (("pad_type", pad_type, pads), ("norm", norm, norms), ("activation", activation, activations)):
            if value not in table:
                raise ValueError(f"{name} must be one of {', '.join(table)}, got {value!r}")
        self.pad = pads[pad_type](padding)
        self.norm = norms[norm]()
        self.activation = activations[activation]()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x) if self.activation is not None else x


class ResBlock(nn.Module):
    """Two 3×3 blocks (the second without activation) plus the identity."""

    def __init__(self, channels: int, norm: str = "in", activation: str = "relu", pad_type: str = "reflect") -> None:
        super().__init__()
        self.model = nn.Sequential(
            Conv2dBlock(channels, channels, 3, 1, 1, norm, activation, pad_type),
            Conv2dBlock(channels, channels, 3, 1, 1, norm, "none", pad_type),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class ResBlocks(nn.Module):
    def __init__(self, blocks: int, channels: int, norm: str = "in", activation: str = "relu", pad_type: str = "reflect") -> None:
        super().__init__()
        self.model = nn.Sequential(*(ResBlock(channels, norm, activation, pad_type) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Encoder(nn.Module):
    """The official ``ContentEncoder`` with instance norm: image → latent mean (dim·2^downsample channels)."""

    def __init__(self, downsample: int, blocks: int, channels: int, dim: int, activation: str, pad_type: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(channels, dim, 7, 1, 3, "in", activation, pad_type)]
        for _ in range(downsample):
            layers.append(Conv2dBlock(dim, dim * 2, 4, 2, 1, "in", activation, pad_type))
            dim *= 2
        layers.append(ResBlocks(blocks, dim, "in", activation, pad_type))
        self.model = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """The official ``Decoder`` (``res_norm='in'``): latent → residual blocks → upsampling → tanh image."""

    def __init__(self, upsample: int, blocks: int, dim: int, channels: int, activation: str, pad_type: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [ResBlocks(blocks, dim, "in", activation, pad_type)]
        for _ in range(upsample):
            layers += [nn.Upsample(scale_factor=2), Conv2dBlock(dim, dim // 2, 5, 1, 2, "ln", activation, pad_type)]
            dim //= 2
        layers.append(Conv2dBlock(dim, channels, 7, 1, 3, "none", "tanh", pad_type))
        self.model = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.model(h)


class VAEGenerator(nn.Module):
    """One domain's VAE: ``enc`` gives the latent mean, ``dec`` maps a latent to a [-1, 1] image.

    Translation a→b is ``gen_b.dec(gen_a.enc(x))``; noise is added by the training losses, not here."""

    def __init__(self, dim: int = 64, downsample: int = 2, blocks: int = 4, channels: int = 3,
                 activation: str = "relu", pad_type: str = "reflect") -> None:
        super().__init__()
        self.enc = Encoder(downsample, blocks, channels, dim, activation, pad_type)
        self.dec = Decoder(downsample, blocks, self.enc.output_dim, channels, activation, pad_type)
        self.downsample = downsample

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.dec(h)


class GeneratorPair(nn.Module):
    """Both domains' generators; its state dict is the official ``gen_*.pt`` with ``a.``/``b.`` prefixes."""

    def __init__(self, **kwargs: int | str) -> None:
        super().__init__()
        self.a = VAEGenerator(**kwargs)  # type: ignore[arg-type]
        self.b = VAEGenerator(**kwargs)  # type: ignore[arg-type]


class Translator(nn.Module):
    """The inference path one direction uses: the source domain's encoder, the target domain's decoder
    (the latent mean, no noise, as the official ``test.py``). Maps [-1, 1] images to [-1, 1] images."""

    def __init__(self, source: VAEGenerator, target: VAEGenerator) -> None:
        super().__init__()
        self.enc, self.dec = source.enc, target.dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


class MultiScaleDiscriminator(MultiScalePatches):
    """The official ``MsImageDis``: one patch discriminator per scale; ``forward`` returns every scale's map."""

    def __init__(self, dim: int = 64, layers: int = 4, scales: int = 3, channels: int = 3,
                 norm: str = "none", activation: str = "lrelu", pad_type: str = "reflect") -> None:
        super().__init__(self._scale(dim, layers, channels, norm, activation, pad_type) for _ in range(scales))

    @staticmethod
    def _scale(dim: int, layers: int, channels: int, norm: str, activation: str, pad_type: str) -> nn.Sequential:
        blocks: list[nn.Module] = [Conv2dBlock(channels, dim, 4, 2, 1, "none", activation, pad_type)]
        for _ in range(layers - 1):
            blocks.append(Conv2dBlock(dim, dim * 2, 4, 2, 1, norm, activation, pad_type))
            dim *= 2
        blocks.append(nn.Conv2d(dim, 1, 1, 1, 0))
        return nn.Sequential(*blocks)


class DiscriminatorPair(nn.Module):
    """Both domains' discriminators (the official ``dis_*.pt`` with ``a.``/``b.`` prefixes); ``a`` judges
    images of domain a (real a against b→a translations), ``b`` those of domain b."""

    def __init__(self, **kwargs: int | str) -> None:
        super().__init__()
        self.a = MultiScaleDiscriminator(**kwargs)  # type: ignore[arg-type]
        self.b = MultiScaleDiscriminator(**kwargs)  # type: ignore[arg-type]


def init_generator(network: nn.Module) -> nn.Module:
    """The official ``init: kaiming``: conv weights Kaiming-normal (fan-in, gain √2), biases zero."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            nn.init.zeros_(module.bias)
    return network
