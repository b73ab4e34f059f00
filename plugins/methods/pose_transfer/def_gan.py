"""`def-gan`: Siarohin et al., "Deformable GANs for Pose-based Human Image Generation" (CVPR 2018),
as the authors' code (``AliaksandrSiarohin/pose-gan``, ``conditional_gan.py``) builds the paper's
"full" model (``--warp_skip mask --nn_loss_area_size 3 --content_loss_layer block1_conv2``).

Generator: a U-Net with two encoders of the same shape, one for the source image + its 18 pose
heatmaps (21 channels), one for the target heatmaps (18 channels). Encoder widths 64, 128, 256, 512,
512, 512 (one more 512 level at 256×256): a 3×3 convolution, then LeakyReLU(0.2) → 4×4 stride-2
convolution (no bias) → normalisation, none on the deepest level. On the four finest levels the
source features pass through a deformable skip connection (`pose_maps.deform`: 10 per-part affine
warps, each masked by its target-pose part mask, combined by max; the warp samples the nearest
feature, as ``tf.contrib.image.transform``'s default ``interpolation='NEAREST'`` in the official
``AffineTransformLayer``, or bilinearly with ``warp=bilinear``) and are concatenated with the
target-pose features; deeper levels are concatenated unwarped. Decoder widths 512, 512, 512, 256, 128
(+512 at 256×256): ReLU → 4×4 stride-2 transposed convolution (no bias) → normalisation, dropout 0.5
on the first three; last a ReLU → 3×3 convolution → tanh. The normalisation is keras-contrib's
``InstanceNormalization()`` with its default ``axis=None``: mean and standard deviation over (C, H, W)
of each sample, ``(x − mean) / (std + 1e-3)``, one scalar scale and offset
(`pose_transfer_common.KerasSampleNorm`). Padding matches Keras exactly: the official stride-2
convolutions pad explicitly (``ZeroPadding2D(1)``, then 'valid'), its transposed convolutions crop one
pixel per side (``Cropping2D(1)``), its 3×3 'same' convolutions pad 1 per side, as the harness' layers.

Official weights (`DefGAN.convert_official`): the generator ``.h5`` files of the official training code
(``Trainer.make_checkpoint``: ``generator.save(epoch_NNN_generator.h5)``, a full Keras model; a
``save_weights`` file reads the same), for ``--warp_skip mask`` models (the paper's dsc and full variants,
the generators the README's checkpoint folder holds). The network is the official generator layer for
layer at width 64 (``size=128x64``: Market-1501, 6 levels; ``size=256x256``: DeepFashion, 7 levels); the
official layers carrying weights are matched to the harness modules in the order the official code
creates them (Keras' automatic ``conv2d_N``, ``conv2d_transpose_N``, ``instance_normalization_N``
counters: appearance encoder, pose encoder, decoder, output convolution), since the file's own
``layer_names`` order interleaves the two encoders, whose levels have equal shapes. Kernels go from
Keras' (h, w, in, out) / transposed (h, w, out, in) to torch's (out, in, h, w) / (in, out, h, w).
Not covered: ``warp_skip`` none/full/stn models (other layers), ``use_bg`` (a 21-channel pose stream).

Discriminator (``disc_type call``): source image, source heatmaps, image, target heatmaps
concatenated (42 channels) → 4×4 stride-2 convolution (valid padding) 64 → three blocks 128, 256, 512
(LeakyReLU, 4×4 stride 2, normalisation) → a block to 1 channel → a patch of sigmoid scores.

Losses: the non-saturating GAN loss + λ·L_NN, λ = 0.01, L_NN the nearest-neighbour loss on VGG-19
``conv1_2`` features: for every position of the generated features, the smallest L1 distance to the
target's features in a 3×3 (5×5 at 256×256) neighbourhood, averaged. Adam 2e-4, β = (0.5, 0.999) for
both networks, one D step per G step, batch 4, 90 epochs.

Differences, recorded in the training manifest: torchvision's VGG-19 weights (ImageNet-normalised
[0, 1] input) instead of Keras' caffe-style ones; their conv1_2 features are multiplied by
`VGG_SCALE` = 255·0.226 so that λ = 0.01 weighs them as in the Keras model (whose input is 0–255).
``nn_features=pixels`` computes L_NN on the image itself (no weights needed; for quick starts).
The nearest warp is ``grid_sample(mode='nearest')``, which rounds a sampling position exactly half-way
between two pixels to the even one; TensorFlow's kernel rounds it away from zero (same pixel otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import (
    DataError,
    Method,
    OfficialWeights,
    Option,
    Sample,
    TrainContext,
    TrainingRecipe,
    UsageError,
    count_parameters,
    hookimpl,
)

from harness_plugins.shared.pose_maps import NUM_KEYPOINTS, deform, keypoint_heatmaps, limb_masks, part_affines
from .keras_h5 import KerasLayer, read_keras_layers
from .pose_transfer_common import KerasSampleNorm, PairBatches, generate, parse_size

PAPER = (
    "Aliaksandr Siarohin, Enver Sangineto, Stéphane Lathuilière, Nicu Sebe. Deformable GANs for Pose-based "
    "Human Image Generation. CVPR 2018. Official code: github.com/AliaksandrSiarohin/pose-gan"
)
WARPED_LEVELS = 4  # deformable skips on the four finest levels (conditional_gan.concatenate_skips)
WARPS = ("nearest", "bilinear")  # nearest: tf.contrib.image.transform's default, what the official model used
DROPOUT_LEVELS = 3
VGG_SCALE = 255 * 0.226  # torchvision VGG sees (x - mean) / std, Keras' caffe VGG sees 255·x - mean
VGG_CONV1_2 = 3  # torchvision vgg19().features index of relu after conv1_2 (Keras block1_conv2 has the ReLU built in)
MARKET_TRAIN_PAIRS = 263_632
KERAS_EPS = 1e-3  # keras-contrib InstanceNormalization's default epsilon


def levels_for(size: tuple[int, int]) -> int:
    """Encoder levels: 6 up to 128 px on the long side (Market), 7 at 256 (DeepFashion), as the official code."""
    return 6 + max(0, math.ceil(math.log2(max(size) / 128)))


def down(in_ch: int, out_ch: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.LeakyReLU(0.2), nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False)]
    return nn.Sequential(*layers, KerasSampleNorm(KERAS_EPS)) if norm else nn.Sequential(*layers)


def up(in_ch: int, out_ch: int, dropout: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False), KerasSampleNorm(KERAS_EPS)]
    return nn.Sequential(*layers, nn.Dropout(0.5)) if dropout else nn.Sequential(*layers)


class Encoder(nn.Module):
    def __init__(self, in_ch: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_ch, widths[0], 3, padding=1)]
        for index in range(1, len(widths)):
            blocks.append(down(widths[index - 1], widths[index], norm=index < len(widths) - 1))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class DefGANGenerator(nn.Module):
    """(source image [-1,1], source heatmaps, target heatmaps, part affines, validity, target part masks) → image [-1,1]."""

    def __init__(self, size: tuple[int, int] = (128, 64), width: int = 64, warp: str = "nearest") -> None:
        super().__init__()
        if warp not in WARPS:
            raise UsageError(f"def-gan: option 'warp' must be one of {', '.join(WARPS)}; got {warp!r}")
        self.warp = warp
        levels = levels_for(size)
        factor = 2 ** (levels - 1)
        if size[0] % factor or size[1] % factor:
            raise UsageError(f"def-gan: size {size[0]}x{size[1]} must be divisible by {factor} ({levels} levels)")
        enc = tuple(m * width for m in (1, 2, 4) + (8,) * (levels - 3))
        dec = tuple(m * width for m in (8,) * (levels - 3) + (4, 2))
        self.size = size
        self.appearance = Encoder(3 + NUM_KEYPOINTS, enc)
        self.pose = Encoder(NUM_KEYPOINTS, enc)
        skips = [2 * c for c in reversed(enc)]  # each skip: source features ⊕ target-pose features
        ups, channels = [], skips[0]
        for index, out_ch in enumerate(dec):
            ups.append(up(channels, out_ch, dropout=index < DROPOUT_LEVELS))
            channels = out_ch + skips[index + 1]
        self.ups = nn.ModuleList(ups)
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, 3, 3, padding=1), nn.Tanh())

    def forward(self, source: torch.Tensor, source_maps: torch.Tensor, target_maps: torch.Tensor,
                theta: torch.Tensor, valid: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        app = self.appearance(torch.cat([source, source_maps], 1))
        pose = self.pose(target_maps)
        skips = []
        for level, (a, p) in enumerate(zip(app, pose)):
            skips.append(torch.cat([deform(a, theta, valid, masks, self.warp) if level < WARPED_LEVELS else a, p], 1))
        skips = skips[::-1]
        x = skips[0]
        for index, block in enumerate(self.ups):
            x = torch.cat([block(x), skips[index + 1]], 1)
        return self.out(x)


KERAS_KINDS = ("conv2d", "conv2d_transpose", "instance_normalization")
"""Keras layer classes (snake case, as their automatic names) that carry the official generator's weights."""


def official_slots(generator: DefGANGenerator) -> list[tuple[str, str]]:
    """(Keras class, harness module path) of every official layer with weights, in the order
    ``conditional_gan.make_generator`` creates them: the appearance encoder (3×3 convolution, then per
    level the stride-2 convolution and its normalisation, none on the deepest), the pose encoder, the
    decoder (transposed convolution, normalisation), the output convolution."""
    slots: list[tuple[str, str]] = []
    for stream in ("appearance", "pose"):
        blocks = getattr(generator, stream).blocks
        slots.append(("conv2d", f"{stream}.blocks.0"))
        for index in range(1, len(blocks)):
            slots.append(("conv2d", f"{stream}.blocks.{index}.1"))
            if len(blocks[index]) > 2:
                slots.append(("instance_normalization", f"{stream}.blocks.{index}.2"))
    for index in range(len(generator.ups)):
        slots.append(("conv2d_transpose", f"ups.{index}.1"))
        slots.append(("instance_normalization", f"ups.{index}.2"))
    slots.append(("conv2d", "out.1"))
    return slots


KERAS_TO_TORCH = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


def state_from_keras(layers: list[KerasLayer], generator: DefGANGenerator, path: Any, hint: str) -> dict[str, torch.Tensor]:
    """The generator's state dict from the official Keras layers (`keras_h5.read_keras_layers`), each
    class's layers in creation order; a `DataError` names the first layer that does not fit."""
    by_kind: dict[str, list[tuple[int, KerasLayer]]] = {kind: [] for kind in KERAS_KINDS}
    for layer in layers:
        found = layer.kind_and_uid(KERAS_KINDS)
        if found is None:
            raise DataError(f"{path}: layer {layer.name!r} (weights {', '.join(layer.weights)}) is not one of the "
                            f"official Def-GAN generator's ({', '.join(KERAS_KINDS)}): not a warp_skip=mask generator file")
        by_kind[found[0]].append((found[1], layer))
    slots = official_slots(generator)
    for kind in KERAS_KINDS:
        wanted = sum(1 for slot_kind, _ in slots if slot_kind == kind)
        if len(by_kind[kind]) != wanted:
            raise DataError(f"{path}: {len(by_kind[kind])} {kind} layers with weights, the def-gan generator has {wanted}; "
                            f"{hint}")
    queues = {kind: [layer for _, layer in sorted(entries, key=lambda entry: entry[0])] for kind, entries in by_kind.items()}
    expected = generator.state_dict()
    state: dict[str, torch.Tensor] = {}
    for kind, module in slots:
        layer = queues[kind].pop(0)
        for short, array in layer.weights.items():
            if short not in KERAS_TO_TORCH:
                raise DataError(f"{path}: layer {layer.name!r} has an unexpected weight {short!r}")
            tensor = torch.from_numpy(array.copy()).float()
            if short == "kernel":
                if tensor.dim() != 4:
                    raise DataError(f"{path}: layer {layer.name!r} kernel has shape {tuple(array.shape)}, expected 4 dimensions")
                tensor = tensor.permute(3, 2, 0, 1)  # (h, w, in, out) → (out, in, h, w); transposed: (h, w, out, in) → (in, out, h, w)
            key = f"{module}.{KERAS_TO_TORCH[short]}"
            if key not in expected:
                raise DataError(f"{path}: layer {layer.name!r} has a {short} the harness layer {module} lacks; {hint}")
            if tuple(tensor.shape) != tuple(expected[key].shape):
                raise DataError(f"{path}: layer {layer.name!r} {short} {tuple(array.shape)} does not fit {key} "
                                f"{tuple(expected[key].shape)} (Keras layout); {hint}")
            state[key] = tensor.contiguous()
    return state


class DefGANDiscriminator(nn.Module):
    """PatchGAN on (source image, source heatmaps, image, target heatmaps): logits (B, patches)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        in_ch = 2 * (3 + NUM_KEYPOINTS)
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, width, 4, 2), down(width, 2 * width), down(2 * width, 4 * width),
            down(4 * width, 8 * width), down(8 * width, 1, norm=False),
        )

    def forward(self, source: torch.Tensor, source_maps: torch.Tensor, image: torch.Tensor, target_maps: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([source, source_maps, image, target_maps], 1)).flatten(1)


def nn_loss(reference: torch.Tensor, generated: torch.Tensor, area: int) -> torch.Tensor:
    """Def-GAN's nearest-neighbour loss: mean over positions of the smallest channel-summed L1 distance between
    ``generated`` and ``reference`` shifted within an ``area``×``area`` neighbourhood (outside counts as far)."""
    batch, channels, height, width = reference.shape
    pad = area // 2
    padded = F.pad(reference, (pad, pad, pad, pad), value=-10000.0)
    neighbours = F.unfold(padded, area).reshape(batch, channels, area * area, height, width)
    distances = (neighbours - generated[:, :, None]).abs().sum(1)
    return distances.min(1).values.mean()


class PoseInputs:
    """Def-GAN's pose inputs of a batch at the working size: heatmaps, per-part affines and target part masks."""

    def __init__(self, size: tuple[int, int], sigma: float) -> None:
        self.size, self.sigma = size, sigma

    def __call__(self, source_pose: torch.Tensor, target_pose: torch.Tensor) -> dict[str, torch.Tensor]:
        theta, valid = part_affines(source_pose, target_pose, self.size)
        return {
            "source_maps": keypoint_heatmaps(source_pose, self.size, self.sigma),
            "target_maps": keypoint_heatmaps(target_pose, self.size, self.sigma),
            "theta": theta, "valid": valid, "masks": limb_masks(target_pose, self.size),
        }


class DefGAN(Method):
    name = "def-gan"
    aliases = ("deformable-gan",)
    description = (
        "Deformable GAN (Siarohin et al. 2018): two-encoder U-Net with deformable skip connections (10 part-wise "
        "affine warps, max-combined), PatchGAN conditioned on the source, GAN + nearest-neighbour loss."
    )
    paper = PAPER
    tasks = frozenset({"pose-transfer"})
    needs_checkpoint = True
    batch_size = 8
    default_batch_size = 4
    default_steps = 90 * MARKET_TRAIN_PAIRS // 4
    model_options = ("size", "width")
    options = (
        Option("size", "128x64", "working resolution HEIGHTxWIDTH (paper: 128x64 Market-1501, 256x256 DeepFashion); "
               "other images are resized to it and back"),
        Option("width", 64, "channels of the first encoder level (paper 64; the others scale with it); 8 trains on "
               "a CPU in a minute (quick start)"),
        Option("sigma", 6.0, "standard deviation in pixels of the keypoint heatmaps (Def-GAN: 6)"),
        Option("warp", "nearest", "sampling of the deformable skips' affine warps: nearest (the official "
               "tf.contrib.image.transform default) or bilinear (smoother gradients; the harness before issue 20)",
               choices=WARPS),
        Option("lr", 2e-4, "Adam learning rate of both networks (beta1 0.5)"),
        Option("lambda_nn", 0.01, "weight of the nearest-neighbour loss (paper: 0.01)"),
        Option("nn_area", 0, "neighbourhood side of the nearest-neighbour loss (0: 3 up to 128 px, 5 at 256 px, as the paper)"),
        Option("nn_features", "vgg19", "what L_NN compares: vgg19 (conv1_2, the paper; needs vgg19-dcbb9e9d.pth in the "
               "torch hub cache) or pixels (the images; no weights)", choices=("vgg19", "pixels")),
        Option("vgg_weights", "", "path of vgg19-dcbb9e9d.pth (default: the torch hub cache)"),
    )

    official_weights = OfficialWeights(
        format="Keras 2 / TensorFlow 1 .h5 generator (model.save, HDF5; read with h5py)",
        source="github.com/AliaksandrSiarohin/pose-gan README, 'Download checkpoints' (Yandex disk folder "
               "yadi.sk/d/dxVvYxBw3QuUT9): the training code's epoch_NNN_generator.h5 per dataset and variant; "
               "use a warp_skip=mask one (dsc or full) with --option size=128x64 (Market-1501) or 256x256 (DeepFashion)",
        suffixes=(".h5", ".hdf5"),
    )

    @property
    def size(self) -> tuple[int, int]:
        return parse_size(self.config["size"], self.name)

    def build(self) -> nn.Module:
        return DefGANGenerator(self.size, self.config["width"], self.config["warp"])

    def convert_official(self, path: Any) -> dict[str, torch.Tensor]:
        """The official Keras generator's weights as this generator's state dict (see the module notes)."""
        generator = self.build()
        hint = (f"check the options size and width (here {self.config['size']}, {self.config['width']}; the official "
                "generators: width 64, size 128x64 for Market-1501, 256x256 for DeepFashion)")
        return state_from_keras(read_keras_layers(path, self.name), generator, path, hint)

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        inputs = PoseInputs(self.size, self.config["sigma"])

        def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            pose = {k: v.to(self._device) for k, v in inputs(batch["source_pose"], batch["target_pose"]).items()}
            image = self.model(batch["source"] * 2 - 1, pose["source_maps"], pose["target_maps"], pose["theta"],
                               pose["valid"], pose["masks"])
            return (image + 1) / 2

        return generate(samples, self.size, self._device, forward)

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        return DefGANRecipe(self, dataset, context)


class DefGANRecipe(TrainingRecipe):
    """One D step then one G step per batch (Def-GAN's training ratio 1), both Adam(2e-4, β1 0.5)."""

    def __init__(self, method: DefGAN, dataset: Any, context: TrainContext) -> None:
        cfg, size = method.config, method.size
        self.context = context
        self.inputs = PoseInputs(size, cfg["sigma"])
        self.area = cfg["nn_area"] or (3 if max(size) <= 128 else 5)
        self.lambda_nn = cfg["lambda_nn"]
        generator = method.build()
        discriminator = DefGANDiscriminator(cfg["width"])
        self.features: nn.Module | None = None
        if cfg["nn_features"] == "vgg19":
            from harness_plugins.shared.vgg_features import VGGFeatures

            self.features = VGGFeatures("vgg19", (VGG_CONV1_2,), cfg["vgg_weights"] or None).to(context.device)
        batches = PairBatches(dataset, context, size)
        description = {
            "network": f"Def-GAN generator ({levels_for(size)} levels, deformable skips on {WARPED_LEVELS}) at {size[0]}x{size[1]}",
            "warp": f"{cfg['warp']} sampling of the part-wise affine warps"
            + (" (tf.contrib.image.transform default, as the official code)" if cfg["warp"] == "nearest" else " (official: nearest)"),
            "parameters": count_parameters(generator).params,
            "discriminator_parameters": count_parameters(discriminator).params,
            "width": cfg["width"],
            "optimizer": f"Adam(lr={cfg['lr']:g}, betas=(0.5, 0.999)) for G and D, one D step per G step",
            "loss": f"non-saturating GAN + {self.lambda_nn:g} x nearest-neighbour L1 ({self.area}x{self.area}) on "
            + ("VGG-19 conv1_2 features x 255*0.226 (torchvision weights)" if self.features is not None else "pixels in [-1, 1]"),
            "pose": f"Gaussian heatmaps sigma {cfg['sigma']:g}; 10 Def-GAN part masks and least-squares part affines",
            "train_pairs": len(batches.rows),
            "batch_size": context.batch_size,
            "steps": context.steps,
            "paper_recipe": "batch 4, 90 epochs, Adam 2e-4 (0.5, 0.999), lambda 0.01, NN area 3 (Market) / 5 (DeepFashion)",
        }
        super().__init__(description, exported="generator")
        self.networks["generator"] = generator.to(context.device).train()
        self.networks["discriminator"] = discriminator.to(context.device).train()
        for name, net in self.networks.items():
            self.optimizers[name] = torch.optim.Adam(net.parameters(), lr=cfg["lr"], betas=(0.5, 0.999))
        self.pairs = batches
        self.batches = context.loader(self.batch)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """A pair batch with its pose inputs (built in the loader workers, off the training step)."""
        batch = self.pairs(step)
        return {**batch, **self.inputs(batch["source_pose"], batch["target_pose"])}

    def features_of(self, image: torch.Tensor) -> torch.Tensor:
        """What L_NN compares: VGG-19 conv1_2 of the [0, 1] image (rescaled to Keras' magnitudes) or the image."""
        if self.features is None:
            return image
        return self.features((image + 1) / 2)[0] * VGG_SCALE

    def train_step(self, step: int) -> dict[str, float]:
        ctx = self.context
        batch = pose = ctx.shard(self.batches(step))
        to = lambda t: t.to(ctx.device)
        source, target = to(batch["source"]) * 2 - 1, to(batch["target"]) * 2 - 1
        smaps, tmaps = to(pose["source_maps"]), to(pose["target_maps"])
        g, d = self.networks["generator"], self.networks["discriminator"]
        with ctx.autocast():
            fake = g(source, smaps, tmaps, to(pose["theta"]), to(pose["valid"]), to(pose["masks"]))
            real_score = d(source, smaps, target, tmaps)
            fake_score = d(source, smaps, fake.detach(), tmaps)
            d_loss = F.binary_cross_entropy_with_logits(real_score, torch.ones_like(real_score)) + \
                F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score))
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        ctx.backward(d_loss)
        ctx.step(self.optimizers["discriminator"])
        with ctx.autocast():
            score = d(source, smaps, fake, tmaps)
            adversarial = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
            with torch.no_grad():
                reference = self.features_of(target)
            nearest = nn_loss(reference.float(), self.features_of(fake).float(), self.area)
            g_loss = adversarial + self.lambda_nn * nearest
        self.optimizers["generator"].zero_grad(set_to_none=True)
        ctx.backward(g_loss)
        ctx.step(self.optimizers["generator"])
        return {"d": d_loss.item(), "g_adversarial": adversarial.item(), "nn": nearest.item()}


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(DefGAN)
