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
* fine generator G: DeblurGAN's layout (2 stride-2 conv blocks, 9 residual blocks with dropout 0.5, 2
  deconv blocks, a global skip: output = clamp(R(F) + G(R(F)), -1, 1)). The paper's §III-C makes each
  residual block "a normalization layer, ReLU and a convolution layer", citing He et al.'s identity
  mappings [26] (pre-activation), and its Fig. 3 caption names batch norm as the only normalisation: the
  default ``resblock=preact`` is that — BN → ReLU → conv3×3, BN → ReLU → dropout → conv3×3, plus the
  identity, a final BN + ReLU after the last block as [26], and batch norm in G's other blocks too.
  ``resblock=cyclegan`` is DeblurGAN's own code: CycleGAN's conv → norm → ReLU blocks with instance norm;
* D (training only): pix2pix's 70×70 PatchGAN with batch norm on the concatenation (R(F), image).

Images are handled in [-1, 1]; predictions are returned in [0, 1]. Ablations (options): ``scales=4``
(single scale), ``stages=r`` (R only), ``loss=l2`` (ℓ2 only; also avoids needing VGG weights).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from harness import DataError, Method, Option, Sample, TrainContext, TrainingRecipe, UsageError, hookimpl
from harness.train.samplers import uniform_batch

from harness_plugins.methods.translation.cyclegan import PatchDiscriminator, ResnetGenerator, init_weights
from .descriptor_maps import descriptor_map
from harness_plugins.shared.vgg_features import VGGFeatures, gram

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


class PreActBlock(nn.Module):
    """He et al.'s pre-activation residual block [26] with batch norm and dropout 0.5 between the two convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(True), nn.Dropout(0.5), nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class PreActGenerator(nn.Module):
    """G as the paper describes it: c7s1-ngf, two stride-2 conv blocks, pre-activation residual blocks, two
    deconv blocks, c7s1-3 + tanh; batch norm throughout (convs before a norm carry no bias, as pix2pix's)."""

    def __init__(self, ngf: int, blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True)]
        for power in range(2):
            width = ngf * 2**power
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(True)]
        layers += [PreActBlock(4 * ngf) for _ in range(blocks)]
        if blocks:  # [26]: the last block's sum goes through one more BN + ReLU
            layers += [nn.BatchNorm2d(4 * ngf), nn.ReLU(True)]
        for power in (2, 1):
            width = ngf * 2**power
            layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


RESBLOCKS = ("preact", "cyclegan")


class FineNet(nn.Module):
    """G with DeblurGAN's global skip connection; pre-activation batch-norm blocks (paper) or CycleGAN's."""

    def __init__(self, ngf: int, blocks: int, resblock: str = "preact") -> None:
        super().__init__()
        if resblock == "preact":
            self.generator: nn.Module = PreActGenerator(ngf, blocks)
        else:
            self.generator = ResnetGenerator(ngf, blocks, dropout=True)

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        return (coarse + self.generator(coarse)).clamp(-1, 1)


class SiftInversionNet(nn.Module):
    """R, then G unless ``stages == "r"``; ``forward`` returns (coarse, final), both in [-1, 1]."""

    def __init__(self, scales: tuple[int, ...], width: int, stages: str, ngf: int, blocks: int,
                 resblock: str = "preact") -> None:
        super().__init__()
        self.coarse = CoarseNet(scales, width)
        self.fine = FineNet(ngf, blocks, resblock) if stages == "rg" else None

    def forward(self, maps: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        coarse = self.coarse(maps)
        return coarse, (self.fine(coarse) if self.fine is not None else coarse)


def sample_maps(sample: Sample, scales: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """The descriptor maps of one sample, one (128, H/d, W/d) tensor per scale."""
    size = tuple(int(v) for v in sample["size"])
    if size[0] % 64 or size[1] % 64:
        raise DataError(f"sift-cgan: image size {size} of sample {sample['id']!r} must be a multiple of 64 on both sides")
    return {cell: descriptor_map(sample["keypoints"], sample["descriptors"], size, cell)[0] for cell in scales}


# -- training ---------------------------------------------------------------------------------------
class PerceptualStyle(nn.Module):
    """φ = VGG-16 relu1_2 (``features[3]``; one reading of the paper's "3-th layer"): ‖φ(a) − φ(b)‖² (mean)
    and the ℓ1 distance of their Gram matrices.

    Scale: torchvision's VGG sees [0, 1] RGB normalised by the ImageNet mean and std (≈ 0.226), a Keras/Caffe
    VGG-16 0–255 BGR with the mean removed, so its inputs (and, the first layers being nearly linear, its
    relu1_2 features) are ≈ 255 × 0.226 ≈ 57.7 times larger, squared errors ≈ 3,300 times and Gram ℓ1 ≈ 3,300
    times. The paper's weights (λ_p = 100, style 0.01) are kept as given; they do not carry over exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = VGGFeatures("vgg16", (3,))

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fp, ft = self.vgg((prediction + 1) / 2)[0], self.vgg((target + 1) / 2)[0]
        return F.mse_loss(fp, ft), F.l1_loss(gram(fp), gram(ft))


class SiftCGANRecipe(TrainingRecipe):
    """R pretraining with L_R, then R + G + D jointly: per step 5 D updates, then one on R and G.

    Losses (paper §2.4–2.6): L_R = ℓ2 + 1·perceptual + 1e-4·style; L_GD = cGAN log-loss + 100·ℓ2 +
    100·perceptual + 0.01·style on G's output; Adam 1e-4, β (0.9, 0.999). ``loss=l2`` drops the VGG
    terms (ablation); ``stages=r`` trains R only. The whole network (R and G) is exported."""

    def __init__(self, method: "SiftCGAN", dataset: Any, context: TrainContext) -> None:
        cfg = method.config
        self.context, self.method, self.cfg = context, method, cfg
        self.samples = list(dataset.samples("train"))
        if not self.samples:
            raise DataError(f"{dataset.name}: the train split has no samples")
        self.pretrain = context.steps if cfg["stages"] == "r" else int(round(cfg["pretrain"] * context.steps))
        super().__init__(
            description={
                "pretrain_steps": self.pretrain, "joint_steps": context.steps - self.pretrain,
                "L_R": "l2 + 1*perceptual + 1e-4*style" if cfg["loss"] == "joint" else "l2",
                "L_GD": "cGAN log-loss + 100*l2 + 100*perceptual + 0.01*style" if cfg["loss"] == "joint" else "cGAN + 100*l2",
                "d_updates": cfg["d_updates"], "optimizer": f"Adam lr {cfg['lr']} betas (0.9, 0.999)",
                "perceptual": "VGG-16 features[3] (relu1_2) on torchvision's ImageNet-normalised [0, 1] input, Gram "
                              "style, l1 (the paper's Keras/Caffe VGG sees 0-255 mean-subtracted BGR, features about "
                              "57.7x larger, so its weights 100 and 0.01 are not in these units)" if cfg["loss"] == "joint" else None,
                "G": f"{cfg['blocks']} {cfg['resblock']} residual blocks, ngf {cfg['ngf']}, dropout 0.5, global skip",
                "label": "re-implementation (unverified)",
            },
            exported="net",
        )
        device = context.device
        self.networks["net"] = method.build().to(device)
        self.optimizers["R"] = torch.optim.Adam(self.networks["net"].coarse.parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
        if cfg["stages"] == "rg":
            self.networks["D"] = init_weights(PatchDiscriminator(cfg["ndf"], channels=6, norm="batch")).to(device)
            self.optimizers["G"] = torch.optim.Adam(self.networks["net"].parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
            self.optimizers["D"] = torch.optim.Adam(self.networks["D"].parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
        self.vgg = PerceptualStyle().to(device) if cfg["loss"] == "joint" else None

    def batch(self, step: int, stream: int = 0) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        rows = uniform_batch(len(self.samples), self.context.batch_size, self.context.seed, self.context.steps * stream + step)
        chosen = [self.samples[i] for i in rows]
        maps = {cell: torch.stack([sample_maps(s, self.method.scales)[cell] for s in chosen]) for cell in self.method.scales}
        images = torch.stack([s["image"] for s in chosen]) * 2 - 1
        device = self.context.device
        return {cell: m.to(device) for cell, m in maps.items()}, images.to(device)

    def content(self, output: torch.Tensor, target: torch.Tensor, weights: tuple[float, float, float]) -> dict[str, torch.Tensor]:
        losses = {"l2": F.mse_loss(output, target) * weights[0]}
        if self.vgg is not None:
            perceptual, style = self.vgg(output, target)
            losses["perceptual"], losses["style"] = perceptual * weights[1], style * weights[2]
        return losses

    def train_step(self, step: int) -> dict[str, float]:
        ctx, net = self.context, self.networks["net"]
        if step < self.pretrain:
            maps, target = self.batch(step)
            with ctx.autocast():
                losses = self.content(net.coarse(maps), target, (1.0, 1.0, 1e-4))
            self.optimizers["R"].zero_grad(set_to_none=True)
            ctx.backward(sum(losses.values()))
            ctx.step(self.optimizers["R"])
            return {f"R/{k}": float(v.detach()) for k, v in losses.items()}
        d, bce = self.networks["D"], F.binary_cross_entropy_with_logits
        logs: dict[str, float] = {}
        for update in range(self.cfg["d_updates"]):
            maps, target = self.batch(step, 1 + update)
            with torch.no_grad():
                coarse, fake = net(maps)
            with ctx.autocast():
                real_score, fake_score = d(torch.cat([coarse, target], 1)), d(torch.cat([coarse, fake], 1))
                loss_d = 0.5 * (bce(real_score, torch.ones_like(real_score)) + bce(fake_score, torch.zeros_like(fake_score)))
            self.optimizers["D"].zero_grad(set_to_none=True)
            ctx.backward(loss_d)
            ctx.step(self.optimizers["D"])
            logs["D"] = float(loss_d.detach())
        maps, target = self.batch(step)
        d.requires_grad_(False)
        with ctx.autocast():
            coarse, fake = net(maps)
            score = d(torch.cat([coarse, fake], 1))
            losses = {"gan": bce(score, torch.ones_like(score)), **self.content(fake, target, (100.0, 100.0, 0.01))}
        d.requires_grad_(True)
        self.optimizers["G"].zero_grad(set_to_none=True)
        ctx.backward(sum(losses.values()))
        ctx.step(self.optimizers["G"])
        return {**logs, **{f"G/{k}": float(v.detach()) for k, v in losses.items()}}


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
        Option("resblock", "preact", "G's residual blocks: preact (paper §III-C: BN -> ReLU -> conv, citing He et al. "
               "[26]; batch norm throughout G) or cyclegan (DeblurGAN's code: conv -> instance norm -> ReLU)", str, RESBLOCKS),
        Option("ndf", 64, "training: PatchGAN discriminator base width (pix2pix: 64)", int),
        Option("lr", 1e-4, "training: Adam learning rate (paper: 1e-4, betas 0.9, 0.999)", float),
        Option("pretrain", 0.5, "training: fraction of the steps that pretrain R alone before joint training "
               "(paper: R 'until convergence', then ~200 epochs jointly)", float),
        Option("d_updates", 5, "training: discriminator updates per R+G update (paper: 5)", int),
    )
    default_batch_size = 8  # paper
    default_steps = 200 * 1000  # about 200 epochs of 8,000 images at batch 8 (paper)

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        if not 0.0 <= self.config["pretrain"] <= 1.0 or self.config["d_updates"] < 1:
            raise UsageError(f"{self.name}: option pretrain must be in [0, 1] and d_updates at least 1")
        return SiftCGANRecipe(self, dataset, context)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if min(self.config["width"], self.config["ngf"]) < 1 or self.config["blocks"] < 0:
            raise UsageError(f"{self.name}: options width and ngf must be at least 1, blocks not negative")
        self.scales = tuple(int(s) for s in self.config["scales"].split(","))

    def build(self) -> SiftInversionNet:
        cfg = self.config
        return init_weights(SiftInversionNet(self.scales, cfg["width"], cfg["stages"], cfg["ngf"], cfg["blocks"], cfg["resblock"]))

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
