"""`gh-bpt` and `gh`: the feed-forward inpainting network of the Yang thesis, chapter 3 (arXiv:1803.08943):
a generator head with dilated residual blocks, grown by Block-wise Procedural Training (BPT).

Generator head (GH, thesis §3.3.1): the masked image in [-1, 1] and the hole mask (4 channels) → three
stride-2 convolutions (8× down), 9 residual blocks whose convolutions are dilated by 2, three stride-2
transposed convolutions back to the image; batch norm + ReLU after every convolution but the last (tanh).
The full image is predicted and only its hole is kept. BPT adds up to three more residual blocks after the
trained ones, each entered through a blend ``x + t·f(x)`` whose ``t`` (a buffer, so checkpoints carry it)
goes from 0 (skip path only) to 1 (block fully in) while that block trains.

Chosen where the thesis is silent (recorded with the method options): channel widths 64/128/256 after the
three downsamplings (``ngf`` option; the widths of CycleGAN's and Johnson et al.'s ResNet generators, not of
pix2pixHD's global generator, which the thesis says it resembles but which goes 64→1024 over four
downsamplings), 3×3 kernels, zero padding, the mask as a fourth input channel (chapter 7 says inpainting
networks get it "as an additional input").

Training (`BPTRecipe`): Patch Perceptual Loss (LPIPS v0.1 AlexNet, local weights) between the hole's
bounding box of G(s) and x at zoom 1 and 2 (the global zoom is not given), each crop bilinearly resized to
``ppl_size``² (64 by default: the thesis gives no size; one size lets a batch of differently sized holes go
through LPIPS together, and at 64² AlexNet's last three layers still see 3×3 maps, at 32² only 1×1), plus three conditional 70×70
PatchGANs at scales 1, 1/2, 1/4 (pix2pixHD's, a guess) whose patches are fake exactly where their receptive
field touches the hole (`patch_labels`); random 1/4-1/2 rectangle holes per sample; Adam (β1 0.5) for G
and the discriminators. ``gh-bpt`` trains the head for ``--steps`` − 3·``block_steps`` steps, then block i
for ``block_steps`` steps at lr0·10^-i and λ_adv·10^-i, its blend rising linearly to 1 over
``blend_fraction`` of the phase (the schedule is not given).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import DataError, Method, Option, Sample, TrainContext, TrainingRecipe, UsageError, count_parameters, hookimpl
from harness.checkpoints import find_weights
from harness.train.augment import random_flip
from harness.train.samplers import step_rng, uniform_batch

from harness_plugins.shared.inpainting_masks import random_mask
from harness_plugins.shared.lpips_net import ALEXNET_FILE, LPIPS_ENV, LPIPS_FILE, LPIPSAlex
from .inpainting_common import composite, hole_of

PAPER = (
    "Chao Yang, Yuhang Song, Xiaofeng Liu, Qingming Tang, C.-C. Jay Kuo. Image Inpainting using Block-wise "
    "Procedural Training with Annealed Adversarial Counterpart. arXiv:1803.08943; Chao Yang, USC PhD thesis 2019, ch. 3"
)
HEAD_BLOCKS = 9
MAX_PROCEDURAL = 3
MIN_PPL_SIZE = 32
"""The smallest crop LPIPS's AlexNet takes: smaller inputs leave its second max pooling nothing to pool."""


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


def hole_boxes(hole: torch.Tensor, zoom: float) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of each (1,H,W) hole's bounding box grown ``zoom``× about its centre, clipped."""
    boxes = []
    for mask in hole:
        rows, cols = torch.nonzero(mask[0], as_tuple=True)
        top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        cy, cx = (top + bottom) / 2, (left + right) / 2
        h, w = (bottom - top) * zoom / 2, (right - left) * zoom / 2
        height, width = mask.shape[-2:]
        boxes.append((max(0, int(cy - h)), max(0, int(cx - w)), min(height, int(round(cy + h))), min(width, int(round(cx + w)))))
    return boxes


def patch_perceptual_loss(perceptual: nn.Module, fake: torch.Tensor, real: torch.Tensor, hole: torch.Tensor,
                          zooms: tuple[float, ...], size: int) -> torch.Tensor:
    """PPL (thesis Eq. 3.2): LPIPS between the hole patches of G(s) and x, at each zoom of the hole's box."""
    total = fake.new_zeros(())
    for zoom in zooms:
        crops_fake, crops_real = [], []
        for index, (top, left, bottom, right) in enumerate(hole_boxes(hole, zoom)):
            for crops, image in ((crops_fake, fake), (crops_real, real)):
                crop = image[index : index + 1, :, top:bottom, left:right]
                crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
        total = total + perceptual(torch.cat(crops_fake), torch.cat(crops_real)).mean()
    return total


class BPTRecipe(TrainingRecipe):
    """Generator head training with PPL + multi-scale patch adversarial loss, then Block-wise Procedural
    Training: block i (1..3) enters over `blend_fraction` of its phase, lr and λ_adv scaled by 10^-i."""

    def __init__(self, method: "GHBPT", dataset: Any, context: Any) -> None:
        cfg = method.config
        self.cfg, self.context, self.dataset = cfg, context, dataset
        self.rows = dataset.index("train")
        if not self.rows:
            raise DataError(f"{dataset.name}: the train split has no samples")
        blocks = cfg["procedural_blocks"]
        self.head_steps = context.steps - blocks * cfg["block_steps"]
        if self.head_steps < 1:
            raise UsageError(
                f"{method.name}: --steps {context.steps} leaves no generator-head training before the {blocks} procedural "
                f"blocks of {cfg['block_steps']} steps each (option block_steps)"
            )
        device = context.device
        generator = method.build().to(device)
        lins = find_weights(LPIPS_FILE, cfg["ppl_weights"] or None, env=LPIPS_ENV)
        self.perceptual = LPIPSAlex.from_files(find_weights(ALEXNET_FILE), lins).to(device)
        description = {
            "parameters": count_parameters(generator).params,
            "schedule": f"{self.head_steps} head steps, then {blocks} procedural blocks x {cfg['block_steps']} steps; "
            f"block i blends in linearly over the first {cfg['blend_fraction']:g} of its phase",
            "optimizer": f"Adam(lr {cfg['lr']:g} x 10^-i in phase i, betas (0.5, 0.999)) for G and the 3 discriminators "
            "(optimizer not stated in the thesis; pix2pixHD's)",
            "loss": f"lambda_adv 10^-i x sum_k BCE(D_k) + {cfg['lambda_ppl']:g} x PPL(zooms {cfg['ppl_zooms']}, crops "
            f"resized to {cfg['ppl_size']}x{cfg['ppl_size']}); "
            "patches whose receptive field touches the hole are the fake ones",
            "discriminators": "3 conditional 70x70 PatchGANs at scales 1, 1/2, 1/4 (avg-pool 3, stride 2)",
            "masks": "random 1/4-1/2 rectangles drawn per sample from the step's seed",
            "perceptual": "LPIPS v0.1 AlexNet (local weights) as the PPL feature distance",
            "batch_size": context.batch_size,
            "steps": context.steps,
            "paper_recipe": "batch 8, lr 2e-4, 150,000 head iterations + 3 x 1,500 per block, lambda_PPL 10, lambda_adv 1",
        }
        super().__init__(description, exported="generator")
        self.networks["generator"] = generator
        self.optimizers["generator"] = torch.optim.Adam(generator.parameters(), lr=cfg["lr"], betas=(0.5, 0.999))
        discriminators = nn.ModuleList(PatchDiscriminator(7, cfg["ngf"]) for _ in range(3)).to(device)
        self.networks["discriminators"] = discriminators
        self.optimizers["discriminators"] = torch.optim.Adam(discriminators.parameters(), lr=cfg["lr"], betas=(0.5, 0.999))
        self.batches = context.loader(self.batch)

    def phase(self, step: int) -> tuple[int, float]:
        """(i, t): procedural phase (0 = head) and the blend of block i at ``step``."""
        if step < self.head_steps:
            return 0, 0.0
        index, into = divmod(step - self.head_steps, self.cfg["block_steps"])
        ramp = max(1.0, self.cfg["blend_fraction"] * self.cfg["block_steps"])
        return index + 1, min(1.0, (into + 1) / ramp)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        seed, images, holes = self.context.seed, [], []
        for item, row in enumerate(uniform_batch(len(self.rows), self.context.batch_size, seed, step)):
            rng = step_rng(seed, step, 1 + item)
            image = random_flip(self.dataset.load(self.rows[row])["image"], rng)
            images.append(image)
            holes.append(torch.from_numpy(random_mask(image.shape[-2], image.shape[-1], rng))[None])
        return torch.stack(images), torch.stack(holes)

    def train_step(self, step: int) -> dict[str, float]:
        ctx, cfg = self.context, self.cfg
        g, ds = self.networks["generator"], self.networks["discriminators"]
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminators"]
        phase, blend = self.phase(step)
        for number, block in enumerate(g.procedural, start=1):
            block.blend.fill_(1.0 if number < phase else blend if number == phase else 0.0)
        scale = 10.0 ** -phase
        for optimizer in (opt_g, opt_d):
            for group in optimizer.param_groups:
                group["lr"] = cfg["lr"] * scale
        images, holes = (x.to(ctx.device) for x in ctx.shard(self.batches(step)))
        condition = torch.cat([images * (1 - holes.float()) * 2 - 1, holes.float()], dim=1)
        real = images * 2 - 1
        with ctx.autocast():
            fake = torch.where(holes, g(condition), real)
        d_loss, g_adv = real.new_zeros(()), real.new_zeros(())
        scaled_c, scaled_real, scaled_fake, scaled_hole = condition, real, fake, holes.float()
        with ctx.autocast():
            for k, d in enumerate(ds):
                if k:
                    scaled_c, scaled_real, scaled_fake = (F.avg_pool2d(t, 3, 2, 1, count_include_pad=False)
                                                          for t in (scaled_c, scaled_real, scaled_fake))
                    scaled_hole = F.max_pool2d(scaled_hole, 3, 2, 1)
                labels = patch_labels(scaled_hole)
                real_score, fake_score = d(scaled_c, scaled_real), d(scaled_c, scaled_fake.detach())
                d_loss = d_loss + F.binary_cross_entropy_with_logits(real_score, torch.ones_like(real_score)) \
                    + F.binary_cross_entropy_with_logits(fake_score, labels)
        opt_d.zero_grad(set_to_none=True)
        ctx.backward(d_loss)
        ctx.step(opt_d)
        scaled_c, scaled_fake = condition, fake
        with ctx.autocast():
            for k, d in enumerate(ds):
                if k:
                    scaled_c, scaled_fake = (F.avg_pool2d(t, 3, 2, 1, count_include_pad=False) for t in (scaled_c, scaled_fake))
                score = d(scaled_c, scaled_fake)
                g_adv = g_adv + F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
            zooms = tuple(float(zoom) for zoom in cfg["ppl_zooms"])
            ppl = patch_perceptual_loss(self.perceptual, (fake + 1) / 2, images, holes, zooms, cfg["ppl_size"])
            g_loss = cfg["lambda_adv"] * scale * g_adv + cfg["lambda_ppl"] * ppl
        opt_g.zero_grad(set_to_none=True)
        ctx.backward(g_loss)
        ctx.step(opt_g)
        return {"d": d_loss.item(), "g_adversarial": g_adv.item(), "ppl": ppl.item(), "phase": float(phase), "blend": blend}


def _options(blocks: int) -> tuple[Option, ...]:
    return (
        Option("ngf", 64, "channels after the first convolution (then x2, x4: CycleGAN/Johnson-sized); the thesis does "
               "not state them"),
        Option("procedural_blocks", blocks, "residual blocks added by BPT after the 9 of the head (0-3)"),
        Option("lr", 2e-4, "training: base learning rate lr0 (phase i trains at 10^-i lr0)"),
        Option("block_steps", 1500, "training: steps per procedural block (thesis: 1,500); the rest of --steps trains the head"),
        Option("blend_fraction", 0.5, "training: share of a block's phase over which it blends in from 0 to 1 (not stated)"),
        Option("lambda_ppl", 10.0, "training: weight of the Patch Perceptual Loss"),
        Option("lambda_adv", 1.0, "training: initial adversarial weight (phase i uses 10^-i of it)"),
        Option("ppl_zooms", (1.0, 2.0), "training: PPL scales, each a zoom of the hole's bounding box (global: 2, a guess)",
               type=tuple),
        Option("ppl_size", 64, "training: side to which each PPL crop is bilinearly resized before LPIPS (not stated; "
               f"at 64 AlexNet's last layers see 3x3 maps; at least {MIN_PPL_SIZE})"),
        Option("ppl_weights", "", f"training: the lpips package's v0.1 alex.pth (default ${LPIPS_ENV} or {LPIPS_FILE} in the hub cache)"),
    )


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
    model_options = ("ngf", "procedural_blocks")
    default_batch_size = 8
    default_steps = 150_000 + MAX_PROCEDURAL * 1_500
    options = _options(MAX_PROCEDURAL)

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        return BPTRecipe(self, dataset, context)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not 0 <= self.config["procedural_blocks"] <= MAX_PROCEDURAL:
            raise UsageError(f"{self.name}: option 'procedural_blocks' must be 0..{MAX_PROCEDURAL}")
        if self.config["ppl_size"] < MIN_PPL_SIZE:
            raise UsageError(f"{self.name}: option 'ppl_size' must be at least {MIN_PPL_SIZE} (LPIPS's AlexNet), "
                             f"got {self.config['ppl_size']}")

    def build(self) -> nn.Module:
        return GeneratorHead(self.config["ngf"], self.config["procedural_blocks"])

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
    default_steps = 150_000
    options = _options(0)


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(GHBPT)
    register(GH)
