"""`context-encoder`: Pathak et al., "Context Encoders: Feature Learning by Inpainting" (CVPR 2016),
the centre-hole model of the Yang thesis Tables 2.1 and 3.2.

Architecture (the 128×128 centre-region model; paper §3.1/§5 and the official ``train.lua``):

* encoder: five 4×4 stride-2 convolutions 3→64→64→128→256→512 (128² → 4²), LeakyReLU 0.2, batch norm
  after every one but the first;
* bottleneck: the paper's channel-wise fully connected layer (each of the 512 4×4 maps fully connected
  to itself: 512·16·16 weights + 512·16 biases, no parameters across maps) followed by a stride-1
  1×1 convolution 512→512 that mixes the channels;
* decoder: four 4×4 stride-2 up-convolutions 512→256→128→64→3 (4² → 64²), batch norm + ReLU, tanh out.
  The output is the 64×64 centre region, pasted into the hole.

Documented guesses (recorded in the training manifest): convolutions followed by batch norm have no
bias (DCGAN practice); the 1×1 size of the cross-channel convolution; the input hole is filled with the
official mean colour (117, 104, 123)/255. The official code hides only the inner 56×56 of the centre
and weights the 4-pixel overlap band 10× in the ℓ2 loss; here the whole hole is hidden (the harness
protocol does not reveal the band) and the band of the hole next to the context keeps the 10× weight.

Holes other than a centred square of half the side are refused (Table 3.2 reports N/A for CE on random
holes); larger images are scored as the thesis does for 512² inputs: the image is downsized to 128²,
and the 64² prediction bilinearly upsampled into the hole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import DataError, Method, Option, Sample, TrainContext, TrainingRecipe, UsageError, count_parameters, hookimpl
from harness.train.augment import random_flip
from harness.train.samplers import step_rng, uniform_batch

from .inpainting_common import composite, hole_of, mean_fill_input, require_centred_square

PAPER = (
    "Deepak Pathak, Philipp Krähenbühl, Jeff Donahue, Trevor Darrell, Alexei A. Efros. Context Encoders: "
    "Feature Learning by Inpainting. CVPR 2016. Official code: github.com/pathak22/context-encoder"
)
INPUT = 128
ENCODER = (1, 1, 2, 4, 8)
DECODER = (4, 2, 1)
"""Channel widths as multiples of ``width`` (64 in the paper: 64, 64, 128, 256, 512 and back)."""
OVERLAP_WEIGHT = 10.0


def encoder(activation: Callable[[], nn.Module], widths: tuple[int, ...]) -> nn.Sequential:
    """4×4 stride-2 convolutions 3→widths, batch norm after all but the first."""
    layers: list[nn.Module] = []
    channels = 3
    for index, width in enumerate(widths):
        layers.append(nn.Conv2d(channels, width, 4, 2, 1, bias=index == 0))
        if index:
            layers.append(nn.BatchNorm2d(width))
        layers.append(activation())
        channels = width
    return nn.Sequential(*layers)


def decoder(channels: int, activation: Callable[[], nn.Module], widths: tuple[int, ...]) -> nn.Sequential:
    """4×4 stride-2 up-convolutions channels→widths→3 with batch norm, tanh on the image."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.ConvTranspose2d(channels, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), activation()]
        channels = width
    layers += [nn.ConvTranspose2d(channels, 3, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


class ChannelwiseFC(nn.Module):
    """Each feature map fully connected to itself (Pathak et al. §3.1): (C, H·W, H·W) weights, no mixing."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        area = size * size
        self.weight = nn.Parameter(torch.empty(channels, area, area))
        self.bias = nn.Parameter(torch.zeros(channels, area))
        nn.init.uniform_(self.weight, -1 / math.sqrt(area), 1 / math.sqrt(area))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        flat = x.reshape(batch, channels, height * width)
        out = torch.einsum("bci,cij->bcj", flat, self.weight) + self.bias
        return out.reshape(batch, channels, height, width)


class ContextEncoderG(nn.Module):
    """128×128 mean-filled image in [-1, 1] → the 64×64 centre in [-1, 1]."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        deepest = ENCODER[-1] * width
        self.encoder = encoder(lambda: nn.LeakyReLU(0.2), tuple(m * width for m in ENCODER))
        self.channel_fc = ChannelwiseFC(deepest, INPUT // 2 ** len(ENCODER))
        self.mix = nn.Conv2d(deepest, deepest, 1)
        self.decoder = decoder(deepest, nn.ReLU, tuple(m * width for m in DECODER))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.mix(self.channel_fc(self.encoder(x))))


class ContextEncoderD(nn.Module):
    """The adversarial discriminator on 64×64 centres (DCGAN): 3→w→2w→4w→8w (w = the generator width), 4×4 → one logit."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 8 * width)
        self.net = nn.Sequential(encoder(lambda: nn.LeakyReLU(0.2), widths), nn.Conv2d(widths[-1], 1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def overlap_weights(side: int, overlap: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(1,1,side,side) loss weights: 1 inside, `OVERLAP_WEIGHT` on the ``overlap``-pixel border band."""
    weights = torch.full((1, 1, side, side), OVERLAP_WEIGHT, device=device)
    if overlap * 2 < side:
        weights[..., overlap : side - overlap, overlap : side - overlap] = 1.0
    return weights


def centre_hole(size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    hole = torch.zeros(1, 1, size, size, dtype=torch.bool, device=device)
    quarter = size // 4
    hole[..., quarter : quarter + size // 2, quarter : quarter + size // 2] = True
    return hole


class CentreHoleNetwork(Method):
    """Prediction for the Context-Encoder family: a network mapping the mean-filled 128² image to its 64² centre."""

    tasks = frozenset({"inpainting"})
    needs_checkpoint = True
    batch_size = 16

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """(N,3,128,128) in [0,1] with (1,1,128,128) hole → the (N,3,64,64) centre in [0,1]."""
        return self.model(mean_fill_input(image, hole)).add(1.0).div(2.0)

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        outputs = []
        hole128 = centre_hole(INPUT, self._device)
        with torch.inference_mode():
            for sample in samples:
                hole = hole_of(sample)
                top, left, side = require_centred_square(self.name, sample, hole)
                image = sample["masked"].to(self._device, torch.float32)[None]
                if image.shape[-2:] != (INPUT, INPUT):
                    image = F.interpolate(image, size=(INPUT, INPUT), mode="area")
                centre = self.fill(image, hole128)
                if centre.shape[-1] != side:
                    centre = F.interpolate(centre, size=(side, side), mode="bilinear", align_corners=False)
                canvas = sample["masked"].clone().float()
                canvas[:, top : top + side, left : left + side] = centre[0].cpu()
                outputs.append(composite(canvas, sample["masked"].float(), hole))
        return outputs


class ContextEncoder(CentreHoleNetwork):
    name = "context-encoder"
    model_options = ("width",)
    default_batch_size = 64
    aliases = ("ce",)
    description = (
        "Context Encoder (Pathak et al. 2016): conv encoder, channel-wise fully connected bottleneck, up-conv "
        "decoder; 128x128 mean-filled input, 64x64 centre out; variants l2 and l2+adv."
    )
    paper = PAPER
    options = (
        Option("variant", "l2", "training loss: l2 (reconstruction only) or l2+adv (lambda_rec 0.999, lambda_adv 0.001)",
               choices=("l2", "l2+adv")),
        Option("lr", 2e-4, "Adam learning rate of the generator (the discriminator uses 1/10 of it)"),
        Option("overlap", 4, "width in pixels of the hole's border band whose l2 weight is 10x"),
        Option("lambda_rec", 0.999, "reconstruction weight of l2+adv (the adversarial weight is 1 - lambda_rec)"),
        Option("width", 64, "channels of the first layer (paper: 64; the others scale with it); 16 trains on a CPU "
               "in a minute (quick start)"),
    )

    def build(self) -> nn.Module:
        return ContextEncoderG(self.config["width"])

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        cfg = self.config
        return CentreHoleRecipe(self.build(), dataset, context, lr=cfg["lr"], overlap=cfg["overlap"],
                                adversarial=cfg["variant"] == "l2+adv", lambda_rec=cfg["lambda_rec"],
                                network="Context Encoder (channel-wise FC bottleneck)")


class CentreHoleRecipe(TrainingRecipe):
    """Context Encoder's training of a centre-hole network: ℓ2 with the hole's border band weighted 10×,
    plus (variant ``l2+adv``) a DCGAN discriminator on the 64×64 centre, λ_rec·ℓ2 + (1 − λ_rec)·adv."""

    def __init__(
        self, generator: nn.Module, dataset: Any, context: Any, *, lr: float, overlap: int, adversarial: bool,
        lambda_rec: float, network: str,
    ) -> None:
        self.context, self.dataset, self.adversarial, self.lambda_rec = context, dataset, adversarial, lambda_rec
        self.rows = dataset.index("train")
        if not self.rows:
            raise DataError(f"{dataset.name}: the train split has no samples")
        device = context.device
        self.hole = centre_hole(INPUT, device)
        self.weights = overlap_weights(INPUT // 2, overlap, device)
        description = {
            "network": network,
            "variant": "l2+adv" if adversarial else "l2",
            "parameters": count_parameters(generator).params,
            "optimizer": "Adam(betas=(0.5, 0.999))" + (f"; discriminator Adam at lr/10 = {lr / 10:g}" if adversarial else ""),
            "lr": lr,
            "loss": f"mean of w * (G(x) - x_centre)^2 in [-1, 1], w = {OVERLAP_WEIGHT:g} on the {overlap}-px border band "
            "of the hole, 1 inside" + (f"; x {lambda_rec:g} + {1 - lambda_rec:g} x BCE adversarial" if adversarial else ""),
            "input": "128x128 (train images area-resized), centred 64x64 hole filled with (117, 104, 123)/255",
            "augmentation": "random horizontal flips",
            "train_images": len(self.rows),
            "batch_size": context.batch_size,
            "steps": context.steps,
            "paper_recipe": "batch 64, Adam 2e-4 (beta1 0.5), D at 1/10 of the G rate for l2+adv",
        }
        super().__init__(description, exported="generator")
        self.networks["generator"] = generator.to(device).train()
        self.optimizers["generator"] = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
        if adversarial:
            discriminator = ContextEncoderD(generator.encoder[0].out_channels).to(device)
            self.networks["discriminator"] = discriminator
            self.optimizers["discriminator"] = torch.optim.Adam(discriminator.parameters(), lr=lr / 10, betas=(0.5, 0.999))
        self.batches = context.loader(self.batch)

    def batch(self, step: int) -> torch.Tensor:
        """Float (B, 3, 128, 128) in [0, 1]: uniformly drawn train images, seeded flips; pure in (seed, step)."""
        seed, images = self.context.seed, []
        for item, row in enumerate(uniform_batch(len(self.rows), self.context.batch_size, seed, step)):
            image = self.dataset.load(self.rows[row])["image"]
            if image.shape[-2:] != (INPUT, INPUT):
                image = F.interpolate(image[None], size=(INPUT, INPUT), mode="area")[0]
            images.append(random_flip(image, step_rng(seed, step, 1 + item)))
        return torch.stack(images)

    def train_step(self, step: int) -> dict[str, float]:
        ctx, g = self.context, self.networks["generator"]
        images = ctx.shard(self.batches(step)).to(ctx.device)
        quarter, half = INPUT // 4, INPUT // 2
        target = images[..., quarter : quarter + half, quarter : quarter + half] * 2.0 - 1.0
        with ctx.autocast():
            prediction = g(mean_fill_input(images, self.hole))
            reconstruction = (self.weights * (prediction.float() - target).square()).mean()
        losses = {"l2": reconstruction.item()}
        loss = reconstruction
        if self.adversarial:
            d, opt_d = self.networks["discriminator"], self.optimizers["discriminator"]
            with ctx.autocast():
                real, fake = d(target), d(prediction.detach())
                d_loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
                    F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            opt_d.zero_grad(set_to_none=True)
            ctx.backward(d_loss)
            ctx.step(opt_d)
            with ctx.autocast():
                score = d(prediction)
                adversarial = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
            loss = self.lambda_rec * reconstruction + (1.0 - self.lambda_rec) * adversarial
            losses.update(d=d_loss.item(), g_adversarial=adversarial.item())
        opt_g = self.optimizers["generator"]
        opt_g.zero_grad(set_to_none=True)
        ctx.backward(loss)
        ctx.step(opt_g)
        return losses


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(ContextEncoder)
