"""`context-encoder`: Pathak et al., "Context Encoders: Feature Learning by Inpainting" (CVPR 2016),
the centre-hole model of the Yang thesis Tables 2.1 and 3.2.

Architecture (the 128×128 centre-region model of the official ``train.lua`` run with the README's command,
``nBottleneck=4000 overlapPred=4 wtl2=0.999``):

* encoder: five 4×4 stride-2 convolutions 3→64→64→128→256→512 (128² → 4²), LeakyReLU 0.2, batch norm
  after every one but the first;
* bottleneck (``bottleneck=fc``, default): a 4×4 convolution of the 512×4×4 code to 4000 values, batch norm
  + LeakyReLU, and a 4×4 full convolution back to 512×4×4 (71,130,531 parameters in all, as Torch counts
  them). ``bottleneck=channel-wise`` is the paper's §3.1 reading instead: each 4×4 map fully connected to
  itself, then a 1×1 convolution that mixes the channels (5,981,507 parameters);
* decoder: four 4×4 stride-2 up-convolutions 512→256→128→64→3 (4² → 64²), batch norm + ReLU, tanh out.

Initialisation is DCGAN's (``train.lua``'s ``weights_init``): convolution weights N(0, 0.02), batch-norm
weights N(1, 0.02); ``train.lua`` zeroes every convolution bias before each forward pass, so the biases
exist (they are in the official parameter count) but are held at zero and never trained.

Mask convention (option ``mask_convention``, recorded with every result): ``official`` is ``train.lua`` /
``test.lua`` with ``overlapPred=4``: only the inner 56×56 of the 64×64 centre is hidden (mean-filled in the
input) and only that is pasted back, so the 4-pixel band around it is context (224×224 of 256×256 at
512²); the dataset must then give that hole (``--dataset-option hole=0.4375``). ``full`` hides the whole
64×64 centre (``hole=0.5``), band included. In both the ℓ2 loss covers the 64×64 prediction with the band
weighted 10×.

Official weights (``harness weights import context-encoder paris_inpaintCenter.t7``, or the ``.t7`` file as
``--checkpoint``): the released ``inpaintCenter`` models are ``util.save`` of ``train.lua``'s whole ``netG``
(``nn.Sequential`` of the encoder ``nn.Sequential`` and the decoder's layers), which
`harness_plugins.shared.torch7` maps layer by layer onto this network; they were trained with
``overlapPred=4``, so they load under ``mask_convention=official`` only. ``test.lua``/``demo.lua`` feed them
exactly what `CentreHoleNetwork.fill` does: the image in [-1, 1], the inner 56×56 set to 2·(117, 104, 123)/255 − 1,
the prediction's inner 56×56 pasted back. Their convolution biases are used as stored, as ``test.lua`` does
(``train.lua`` zeroes them before each forward pass but saves them after the last Adam step, so they are small
and not exactly 0).

Holes other than the convention's centred square are refused (Table 3.2 reports N/A for CE on random
holes); larger images are scored as the thesis does for 512² inputs: the image is downsized to 128², and
the prediction bilinearly upsampled into the hole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import DataError, Method, OfficialWeights, Option, Sample, TrainContext, TrainingRecipe, UsageError, count_parameters, hookimpl
from harness.data import read_image, to_tensor
from harness.train.augment import random_crop, random_flip
from harness.train.samplers import step_rng, uniform_batch
from harness_plugins.shared.torch7 import CONVOLUTIONS, T7Layer, torch7_state_dict

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
BOTTLENECK = 4000
"""``nBottleneck`` of the README's centre-model command (``train.lua``'s own default is 100)."""
LOAD_SIZE = 350
"""``loadSize`` of the README's command: the shorter side of a training image before the random 128² crop."""
MASK_CONVENTIONS = ("official", "full")


def encoder(activation: Callable[[], nn.Module], widths: tuple[int, ...], biases: bool = False) -> nn.Sequential:
    """4×4 stride-2 convolutions 3→widths, batch norm after all but the first (bias on the first, or on all)."""
    layers: list[nn.Module] = []
    channels = 3
    for index, width in enumerate(widths):
        layers.append(nn.Conv2d(channels, width, 4, 2, 1, bias=biases or index == 0))
        if index:
            layers.append(nn.BatchNorm2d(width))
        layers.append(activation())
        channels = width
    return nn.Sequential(*layers)


def decoder(channels: int, activation: Callable[[], nn.Module], widths: tuple[int, ...], biases: bool = False) -> nn.Sequential:
    """4×4 stride-2 up-convolutions channels→widths→3 with batch norm, tanh on the image."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.ConvTranspose2d(channels, width, 4, 2, 1, bias=biases), nn.BatchNorm2d(width), activation()]
        channels = width
    layers += [nn.ConvTranspose2d(channels, 3, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def dcgan_init(module: nn.Module) -> nn.Module:
    """``train.lua``'s ``weights_init``: conv weights N(0, 0.02), batch-norm weights N(1, 0.02) and biases 0;
    convolution biases are zeroed and frozen (``train.lua`` zeroes them before every forward pass)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
                layer.bias.requires_grad_(False)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
    return module


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


def fc_bottleneck(channels: int, size: int, code: int, activation: Callable[[], nn.Module],
                  out_activation: Callable[[], nn.Module], biases: bool) -> nn.Sequential:
    """The official "fc" layer: a size×size convolution to ``code`` values, batch norm + activation, a
    size×size full convolution back to channels×size×size, batch norm + the decoder's activation."""
    return nn.Sequential(
        nn.Conv2d(channels, code, size, bias=biases), nn.BatchNorm2d(code), activation(),
        nn.ConvTranspose2d(code, channels, size, bias=biases), nn.BatchNorm2d(channels), out_activation(),
    )


class ContextEncoderG(nn.Module):
    """128×128 mean-filled image in [-1, 1] → the 64×64 centre in [-1, 1]."""

    def __init__(self, width: int = 64, bottleneck: str = "fc", code: int = BOTTLENECK) -> None:
        super().__init__()
        deepest, size = ENCODER[-1] * width, INPUT // 2 ** len(ENCODER)
        official = bottleneck == "fc"
        self.encoder = encoder(lambda: nn.LeakyReLU(0.2), tuple(m * width for m in ENCODER), biases=official)
        if official:
            self.bottleneck = fc_bottleneck(deepest, size, code, lambda: nn.LeakyReLU(0.2), nn.ReLU, biases=True)
        elif bottleneck == "channel-wise":  # the attribute names of the earlier checkpoints of this reading
            self.channel_fc = ChannelwiseFC(deepest, size)
            self.mix = nn.Conv2d(deepest, deepest, 1)
        else:
            raise UsageError(f"context-encoder: option 'bottleneck' must be fc or channel-wise, got {bottleneck!r}")
        self.official = official
        self.decoder = decoder(deepest, nn.ReLU, tuple(m * width for m in DECODER), biases=official)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        return self.decoder(self.bottleneck(code) if self.official else self.mix(self.channel_fc(code)))


class ContextEncoderD(nn.Module):
    """The adversarial discriminator on 64×64 centres (DCGAN): 3→w→2w→4w→8w (w = the generator width), 4×4 → one logit."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 8 * width)
        self.net = dcgan_init(nn.Sequential(encoder(lambda: nn.LeakyReLU(0.2), widths, biases=True), nn.Conv2d(widths[-1], 1, 4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def overlap_weights(side: int, overlap: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(1,1,side,side) loss weights: 1 inside, `OVERLAP_WEIGHT` on the ``overlap``-pixel border band."""
    weights = torch.full((1, 1, side, side), OVERLAP_WEIGHT, device=device)
    if overlap * 2 < side:
        weights[..., overlap : side - overlap, overlap : side - overlap] = 1.0
    return weights


def centre_hole(size: int, device: str | torch.device = "cpu", inset: int = 0) -> torch.Tensor:
    """(1,1,size,size) bool: the centred size/2 square, shrunk by ``inset`` pixels on every side."""
    hole = torch.zeros(1, 1, size, size, dtype=torch.bool, device=device)
    start, end = size // 4 + inset, size // 4 + size // 2 - inset
    hole[..., start:end, start:end] = True
    return hole


def hidden_inset(convention: str, overlap: int) -> int:
    """Pixels (at 128²) of the 64² centre's border that stay visible: ``overlap`` for the official convention."""
    if convention not in MASK_CONVENTIONS:
        raise UsageError(f"option 'mask_convention' must be one of {', '.join(MASK_CONVENTIONS)}; got {convention!r}")
    if convention == "official" and not 0 <= 2 * overlap < INPUT // 2:
        raise UsageError(f"option 'overlap' must be in [0, {INPUT // 4 - 1}] for mask_convention=official, got {overlap}")
    return overlap if convention == "official" else 0


def hole_fraction(inset: int) -> float:
    """The dataset's ``hole`` option (side / image side) of the hidden square: 0.5, or 56/128 = 0.4375."""
    return (INPUT // 2 - 2 * inset) / INPUT


def official_crop(path: Any, load_size: int, rng: np.random.Generator) -> torch.Tensor:
    """``donkey_folder.lua``'s training crop: the shorter side bilinearly scaled to ``load_size`` (0: kept), a
    uniformly placed 128² crop and a horizontal flip with probability 0.5; (3, 128, 128) in [0, 1]."""
    image = to_tensor(read_image(path))
    height, width = image.shape[-2:]
    if load_size:
        scale = load_size / min(height, width)
        size = (max(load_size, round(height * scale)), max(load_size, round(width * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    if min(image.shape[-2:]) < INPUT:
        raise DataError(f"{path}: {tuple(image.shape[-2:])} after load_size={load_size} is smaller than the "
                        f"{INPUT}x{INPUT} training crop (use a larger load_size, or train_crop=protocol)")
    return random_flip(random_crop(image, (INPUT, INPUT), rng), rng)


class CentreHoleNetwork(Method):
    """Prediction for the Context-Encoder family: a network mapping the mean-filled 128² image to its 64² centre."""

    tasks = frozenset({"inpainting"})
    needs_checkpoint = True
    batch_size = 16

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """(N,3,128,128) in [0,1] with (1,1,128,128) hole → the (N,3,64,64) centre in [0,1]."""
        return self.model(mean_fill_input(image, hole)).add(1.0).div(2.0)

    @property
    def inset(self) -> int:
        """Visible border of the 64² centre at 128² (the mask convention's), in pixels."""
        return hidden_inset(self.config["mask_convention"], self.config["overlap"])

    def hidden_square(self, sample: Sample, hole: torch.Tensor) -> tuple[int, int, int]:
        """(top, left, side) of the sample's hole, checked against the mask convention's centred square."""
        convention, fraction = self.config["mask_convention"], hole_fraction(self.inset)
        why = (f"; mask_convention={convention} hides the inner {INPUT // 2 - 2 * self.inset}x{INPUT // 2 - 2 * self.inset} "
               f"of the {INPUT // 2}x{INPUT // 2} centre at {INPUT}x{INPUT}" + (", or use --option mask_convention=full "
               "for the whole centre (hole=0.5)" if convention == "official" else ""))
        return require_centred_square(self.name, sample, hole, fraction, why)

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        outputs = []
        inset = self.inset
        hole128 = centre_hole(INPUT, self._device, inset)
        with torch.inference_mode():
            for sample in samples:
                hole = hole_of(sample)
                top, left, side = self.hidden_square(sample, hole)
                image = sample["masked"].to(self._device, torch.float32)[None]
                if image.shape[-2:] != (INPUT, INPUT):
                    image = F.interpolate(image, size=(INPUT, INPUT), mode="area")
                centre = self.fill(image, hole128)
                centre = centre[..., inset : INPUT // 2 - inset, inset : INPUT // 2 - inset]
                if centre.shape[-1] != side:
                    centre = F.interpolate(centre, size=(side, side), mode="bilinear", align_corners=False)
                canvas = sample["masked"].clone().float()
                canvas[:, top : top + side, left : left + side] = centre[0].cpu()
                outputs.append(composite(canvas, sample["masked"].float(), hole))
        return outputs


def centre_hole_options(network: str) -> tuple[Option, ...]:
    """The options of the Context-Encoder training and mask convention (shared with NPS's content network)."""
    return (
        Option("mask_convention", "official", "official: train.lua/test.lua with overlapPred=4, the inner 56x56 of the "
               "64x64 centre hidden and pasted, the 4-px band context (dataset option hole=0.4375); full: the whole "
               "64x64 hidden (hole=0.5)", choices=MASK_CONVENTIONS),
        Option("variant", "l2" if network == "ce" else "l2+adv", "training loss: l2 (reconstruction only) or l2+adv "
               "(lambda_rec 0.999, lambda_adv 0.001)", choices=("l2", "l2+adv")),
        Option("lr", 2e-4, "training: Adam rate of train.lua (lr): the discriminator's, and the generator's for "
               "variant l2"),
        Option("g_lr_scale", 10.0, "training, l2+adv: the generator's rate is g_lr_scale x lr (train.lua: 10 when "
               "0 < wtl2 < 1)"),
        Option("overlap", 4, "width in pixels (at 128x128) of the centre's border band: l2 weight 10x, and visible "
               "context under mask_convention=official (overlapPred)"),
        Option("lambda_rec", 0.999, "training: reconstruction weight of l2+adv (wtl2; the adversarial weight is 1 - "
               "lambda_rec)"),
        Option("train_crop", "official", "training images: official (donkey_folder.lua: each file's shorter side "
               "scaled to load_size, a random 128x128 crop, flips) or protocol (the dataset's protocol-size sample "
               "area-resized to 128x128, flips)", choices=("official", "protocol")),
        Option("load_size", LOAD_SIZE, "training, train_crop=official: shorter side before the random 128x128 crop "
               "(README command: 350; 0 keeps the file's size)"),
    )


class ContextEncoder(CentreHoleNetwork):
    name = "context-encoder"
    model_options = ("width", "bottleneck", "bottleneck_size", "mask_convention")
    default_batch_size = 64
    default_steps = 5825
    """train.lua's niter = 25 epochs of Paris StreetView's 14,900 training images at batchSize 64 (233 steps each)."""
    aliases = ("ce",)
    description = (
        "Context Encoder (Pathak et al. 2016): conv encoder, 4000-d fully connected bottleneck (official train.lua), "
        "up-conv decoder; 128x128 mean-filled input, 64x64 centre out; variants l2 and l2+adv."
    )
    paper = PAPER
    options = (
        *centre_hole_options("ce"),
        Option("bottleneck", "fc", "fc: official train.lua (4x4 conv to bottleneck_size, BN, LeakyReLU, 4x4 full "
               "conv back); channel-wise: the paper's 3.1 reading (channel-wise FC + 1x1 conv)",
               choices=("fc", "channel-wise")),
        Option("bottleneck_size", BOTTLENECK, "bottleneck=fc: code length (README command nBottleneck=4000)"),
        Option("width", 64, "channels of the first layer (paper: 64; the others scale with it); 16 trains on a CPU "
               "in a minute (quick start)"),
    )

    official_weights = OfficialWeights(
        format="Torch7 .t7: train.lua's whole netG, saved by util.save (read with torchfile)",
        source="github.com/pathak22/context-encoder (models/scripts/download_inpaintCenter_models.sh: "
               "inpaintCenterModels.tar.gz with models/inpaintCenter/paris_inpaintCenter.t7 and "
               "imagenet_inpaintCenter.t7; nBottleneck=4000, overlapPred=4)",
        suffixes=(".t7",),
    )

    def build(self) -> nn.Module:
        cfg = self.config
        return ContextEncoderG(cfg["width"], cfg["bottleneck"], cfg["bottleneck_size"])

    def convert_official(self, path: Any) -> dict[str, torch.Tensor]:
        """The released ``netG`` (``.t7``) as this network's state dict: its 20 parameterised layers (6
        convolutions, 9 batch norms, 5 full convolutions) and activations in order onto ``encoder``,
        ``bottleneck`` and ``decoder`` (`harness_plugins.shared.torch7`)."""
        cfg = self.config
        if cfg["bottleneck"] != "fc":
            raise UsageError("context-encoder: the released networks have train.lua's fc bottleneck; drop "
                             "--option bottleneck=channel-wise to load them")
        if cfg["mask_convention"] != "official":
            raise UsageError("context-encoder: the released networks were trained with overlapPred=4 (the 4-px band "
                             "is context), i.e. mask_convention=official; drop --option mask_convention=full")
        with torch.device("meta"):  # only the layers' kinds and shapes are needed: no memory, no initialisation
            network = self.build()
        return torch7_state_dict(path, network, hint=self.release_shape)

    def release_shape(self, layers: list[T7Layer]) -> str:
        """The width and bottleneck_size options of a train.lua netG's layers, when they are not this method's."""
        convolutions = [layer for layer in layers if layer.kind in CONVOLUTIONS]
        if len(convolutions) != len(ENCODER) + 1:
            return ""
        width, code = (int(layer.number("nOutputPlane") or 0) for layer in (convolutions[0], convolutions[-1]))
        if (width, code) == (self.config["width"], self.config["bottleneck_size"]):
            return ""
        return (f"the file's netG has nef={width}, nBottleneck={code}: pass --option width={width} "
                f"--option bottleneck_size={code}")

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        network = ("Context Encoder (official fc bottleneck, "
                   f"{self.config['bottleneck_size']})" if self.config["bottleneck"] == "fc"
                   else "Context Encoder (channel-wise FC bottleneck)")
        return CentreHoleRecipe(self.build(), dataset, context, self.config, network=network)


class CentreHoleRecipe(TrainingRecipe):
    """Context Encoder's training of a centre-hole network (``train.lua``): ℓ2 on the 64×64 centre with its
    border band weighted 10×, plus (variant ``l2+adv``) a DCGAN discriminator on the centre,
    λ_rec·ℓ2 + (1 − λ_rec)·adv, the generator at ``g_lr_scale``× the discriminator's rate."""

    def __init__(self, generator: nn.Module, dataset: Any, context: Any, cfg: dict[str, Any], *, network: str) -> None:
        adversarial = cfg["variant"] == "l2+adv"
        self.context, self.dataset, self.adversarial, self.lambda_rec = context, dataset, adversarial, cfg["lambda_rec"]
        self.crop, self.load_size = cfg["train_crop"], cfg["load_size"]
        self.rows = dataset.index("train")
        if not self.rows:
            raise DataError(f"{dataset.name}: the train split has no samples")
        if self.crop == "official" and not all("image" in row.get("paths", {}) for row in self.rows):
            raise UsageError(f"{dataset.name} does not list its training image files (row paths); train with "
                             "--option train_crop=protocol")
        if self.load_size < 0:
            raise UsageError(f"option 'load_size' must be 0 (keep) or a positive side, got {self.load_size}")
        device, overlap = context.device, cfg["overlap"]
        inset = hidden_inset(cfg["mask_convention"], overlap)
        lr = cfg["lr"]
        g_lr = lr * cfg["g_lr_scale"] if adversarial else lr
        self.hole = centre_hole(INPUT, device, inset)
        self.weights = overlap_weights(INPUT // 2, overlap, device)
        hidden = INPUT // 2 - 2 * inset
        crop = (f"official: shorter side scaled to {self.load_size} (bilinear), random {INPUT}x{INPUT} crop"
                if self.crop == "official" and self.load_size else
                f"official: random {INPUT}x{INPUT} crop of each file at its own size" if self.crop == "official" else
                f"protocol: the dataset's sample area-resized to {INPUT}x{INPUT}")
        description = {
            "network": network,
            "variant": "l2+adv" if adversarial else "l2",
            "parameters": count_parameters(generator).params,
            "initialisation": "DCGAN (train.lua weights_init): conv N(0, 0.02), BN weight N(1, 0.02); conv biases held at 0",
            "optimizer": f"Adam(betas=(0.5, 0.999)), generator lr {g_lr:g}"
            + (f" (= {cfg['g_lr_scale']:g} x lr, train.lua for 0 < wtl2 < 1); discriminator lr {lr:g}" if adversarial else ""),
            "lr": g_lr,
            "mask_convention": f"{cfg['mask_convention']}: the inner {hidden}x{hidden} of the {INPUT // 2}x{INPUT // 2} "
            f"centre hidden (filled with (117, 104, 123)/255)",
            "loss": f"mean of w * (G(x) - x_centre)^2 in [-1, 1], w = {OVERLAP_WEIGHT:g} on the {overlap}-px border band "
            "of the 64x64 centre, 1 inside" + (f"; x {self.lambda_rec:g} + {1 - self.lambda_rec:g} x BCE adversarial" if adversarial else ""),
            "input": f"{INPUT}x{INPUT}; {crop}",
            "augmentation": "random horizontal flips",
            "train_images": len(self.rows),
            "batch_size": context.batch_size,
            "steps": context.steps,
            "paper_recipe": "train.lua + README: batch 64, loadSize 350, fineSize 128, nBottleneck 4000, overlapPred 4, "
            "wtl2 0.999, Adam lr 2e-4 (beta1 0.5) for D and 10x for G",
        }
        super().__init__(description, exported="generator")
        self.networks["generator"] = generator.to(device).train()
        trainable = [p for p in generator.parameters() if p.requires_grad]
        self.optimizers["generator"] = torch.optim.Adam(trainable, lr=g_lr, betas=(0.5, 0.999))
        if adversarial:
            discriminator = ContextEncoderD(generator.encoder[0].out_channels).to(device)
            self.networks["discriminator"] = discriminator
            self.optimizers["discriminator"] = torch.optim.Adam(
                [p for p in discriminator.parameters() if p.requires_grad], lr=lr, betas=(0.5, 0.999))
        self.batches = context.loader(self.batch)

    def batch(self, step: int) -> torch.Tensor:
        """Float (B, 3, 128, 128) in [0, 1]: uniformly drawn train images, seeded crops and flips; pure in (seed, step)."""
        seed, images = self.context.seed, []
        for item, row in enumerate(uniform_batch(len(self.rows), self.context.batch_size, seed, step)):
            rng = step_rng(seed, step, 1 + item)
            if self.crop == "official":
                images.append(official_crop(self.rows[row]["paths"]["image"], self.load_size, rng))
                continue
            image = self.dataset.load(self.rows[row])["image"]
            if image.shape[-2:] != (INPUT, INPUT):
                image = F.interpolate(image[None], size=(INPUT, INPUT), mode="area")[0]
            images.append(random_flip(image, rng))
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
