"""`pg2`: Ma et al., "Pose Guided Person Image Generation" (NeurIPS 2017), the two-stage PG², as the
authors' code (``charliememory/Pose-Guided-Person-Image-Generation``) builds it: ``models.py`` /
``trainer.py`` for Market-1501 (128×64), ``models256.py`` / ``trainer256.py`` for DeepFashion (256×256).

* Pose: 18 keypoint maps, 1 within distance ≤ 4 px of the keypoint's integer pixel and 0 elsewhere
  (`pose_maps.keypoint_discs`, the official ``_getSparseKeypoint``), fed in [-1, 1] as the official loader does.
* G1 (``GeneratorCNN_Pose_UAEAfterResidual``): the condition image and the target pose maps (21
  channels) → 3×3 conv (n = 128) → N residual blocks (two 3×3 convs + identity) of n·(i+1) channels,
  a stride-2 3×3 conv between them (N = log2(H) − 2: 5 at 128×64, 6 at 256×256) → a fully connected
  bottleneck (z = 64) → fully connected back to an 8×4 (8×8 at 256×256) map of n channels → N residual
  blocks on the concatenation with the encoder block of the same size, nearest 2× upsampling + 1×1
  conv between them → 3×3 conv to the image. ReLU everywhere, no normalisation.
* G2: the condition image and G1's output (6 channels) → a U-Net without the fully connected layer,
  N − 2 levels, producing a difference map; the refined image is G1's output + the difference map.
  Market (``UAE_noFC_After2Noise``, no noise): the finest encoder level is not a skip and the last
  decoder level has none. DeepFashion (``UAE_noFC_AfterNoise``, no noise): every level is a skip,
  the finest included.
* D: the DCGAN discriminator on the paper's (condition image, image) pairs: 5×5 stride-2 convs 64,
  128, 256, 512, batch norm on the last three, LeakyReLU 0.2, a linear layer to one logit
  (``DCGANDiscriminator``); for DeepFashion one more 5×5 stride-2 conv of 512 with batch norm, so
  the linear layer sees 8×8 (``DCGANDiscriminator_256``).

``variant`` picks the two (``auto``: DeepFashion at 256×256, Market otherwise); the L1 weight follows
it (10 Market, 50 DeepFashion, as the two trainers).

Training (one recipe, two stages): stage 1 trains G1 alone with the pose-mask loss
mean(|G1 − I_B| ⊙ (1 + M_B)); stage 2 freezes G1 and trains G2 against D with
BCE + λ·(mean|Ĝ − I_B| + mean(|Ĝ − I_B| ⊙ M_B)), λ = 10 (Market) or 50 (DeepFashion). M_B is PG²'s
own body mask of the target pose (``pose_mask_r4``: `pose_maps.pg2_body_mask`, radius-4 discs along
the limbs and a closing). Adam(2e-5, β1 0.5) for G1, G2 and D (``MODE='dcgan'``), batch 16, G1 for
22,000 steps, 500,000 steps in all.

Differences, recorded: the paper's D sees (condition, image) pairs; the official code feeds it single
images (the target as real, the condition image, G1's and G2's outputs as fake). Here the pairs, as
the paper and issue #12 state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import (
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

from harness_plugins.shared.pose_maps import NUM_KEYPOINTS, keypoint_discs, pg2_body_mask
from .pose_transfer_common import PairBatches, generate, parse_size

PAPER = (
    "Liqian Ma, Xu Jia, Qianru Sun, Bernt Schiele, Tinne Tuytelaars, Luc Van Gool. Pose Guided Person Image "
    "Generation. NeurIPS 2017. Official code: github.com/charliememory/Pose-Guided-Person-Image-Generation"
)
Z_DIM = 64
VARIANTS = ("auto", "market", "deepfashion")
L1_WEIGHT = {"market": 10.0, "deepfashion": 50.0}  # trainer.py / trainer256.py: g_loss2 += L1Loss2 * weight
STAGE1_STEPS = 22_000
TOTAL_STEPS = 500_000


def repeats_for(size: tuple[int, int]) -> int:
    """PG²'s number of blocks: log2(H) − 2 (5 at 128×64, 6 at 256×256)."""
    return int(math.log2(size[0])) - 2


def conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """slim.conv2d with ReLU: 'SAME' padding, bias, activation."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2), nn.ReLU())


class Residual(nn.Module):
    """Two 3×3 conv + ReLU, plus the input (PG²'s blocks keep the channel count)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class G1(nn.Module):
    """(condition image, target pose maps) in [-1, 1] → coarse image."""

    def __init__(self, size: tuple[int, int] = (128, 64), hidden: int = 128, z_dim: int = Z_DIM) -> None:
        super().__init__()
        repeats = repeats_for(size)
        factor = 2 ** (repeats - 1)
        if size[0] % factor or size[1] % factor:
            raise UsageError(f"pg2: size {size[0]}x{size[1]} must be divisible by {factor}")
        self.bottom = (size[0] // factor, size[1] // factor)
        self.hidden = hidden
        self.stem = conv(3 + NUM_KEYPOINTS, hidden)
        self.encoder = nn.ModuleList(Residual(hidden * (i + 1)) for i in range(repeats))
        self.downs = nn.ModuleList(conv(hidden * (i + 1), hidden * (i + 2), stride=2) for i in range(repeats - 1))
        area = self.bottom[0] * self.bottom[1]
        self.to_z = nn.Linear(area * hidden * repeats, z_dim)
        self.from_z = nn.Linear(z_dim, area * hidden)
        decoder, ups = [], []
        channels = hidden
        for i in range(repeats):
            channels += hidden * (repeats - i)  # concatenated encoder block
            decoder.append(Residual(channels))
            if i < repeats - 1:
                ups.append(conv(channels, hidden * (repeats - i - 1), kernel=1))
                channels = hidden * (repeats - i - 1)
        self.decoder, self.ups = nn.ModuleList(decoder), nn.ModuleList(ups)
        self.out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([image, pose], 1))
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            skips.append(x)
            if i < len(self.downs):
                x = self.downs[i](x)
        z = self.to_z(x.flatten(1))  # TF flattens NHWC; the order of a dense layer's inputs does not change what it can express
        x = self.from_z(z).reshape(-1, self.hidden, *self.bottom)
        for i, block in enumerate(self.decoder):
            x = block(torch.cat([x, skips[-1 - i]], 1))
            if i < len(self.ups):
                x = self.ups[i](F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.out(x)


class G2(nn.Module):
    """(condition image, G1 output) → difference map; a U-Net without the fully connected layer.

    ``all_skips=False``: Market's ``UAE_noFC_After2Noise`` (no skip from the finest level); ``True``:
    DeepFashion's ``UAE_noFC_AfterNoise`` (a skip at every level)."""

    def __init__(self, size: tuple[int, int] = (128, 64), hidden: int = 128, all_skips: bool = False) -> None:
        super().__init__()
        repeats = repeats_for(size) - 2
        self.all_skips = all_skips
        self.stem = conv(6, hidden)
        self.encoder = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = hidden
        for i in range(repeats):
            self.encoder.append(nn.Sequential(conv(channels, hidden * (i + 1)), conv(hidden * (i + 1), hidden * (i + 1))))
            channels = hidden * (i + 1)
            if i < repeats - 1:
                self.downs.append(conv(channels, channels, stride=2))
        self.decoder = nn.ModuleList()
        for i in range(repeats):
            # The deepest encoder output is concatenated with itself (the official code's order).
            in_ch = channels + hidden * (repeats - i) if i < repeats - 1 or all_skips else channels
            self.decoder.append(nn.Sequential(conv(in_ch, hidden), conv(hidden, hidden)))
            channels = hidden
        self.out = nn.Conv2d(hidden, 3, 3, padding=1)
        self.repeats = repeats

    def forward(self, image: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([coarse, image], 1))
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i > 0 or self.all_skips:
                skips.append(x)
            if i < len(self.downs):
                x = self.downs[i](x)
        for i, block in enumerate(self.decoder):
            if i < self.repeats - 1 or self.all_skips:
                x = torch.cat([x, skips[-1 - i]], 1)
            x = block(x)
            if i < self.repeats - 1:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.out(x)


class PG2Generator(nn.Module):
    """G1 and G2 together: the exported network; the forward returns the refined image."""

    def __init__(self, size: tuple[int, int] = (128, 64), hidden: int = 128, variant: str = "market") -> None:
        super().__init__()
        self.g1, self.g2 = G1(size, hidden), G2(size, hidden, all_skips=variant == "deepfashion")

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        coarse = self.g1(image, pose)
        return coarse + self.g2(image, coarse)


class DCGANDiscriminator(nn.Module):
    """5×5 stride-2 convs dim, 2dim, 4dim, 8dim (batch norm on all but the first), LeakyReLU 0.2, linear → logit;
    ``deep=True`` adds a fifth 8dim conv with batch norm (``DCGANDiscriminator_256``, DeepFashion)."""

    def __init__(self, size: tuple[int, int] = (128, 64), in_ch: int = 6, dim: int = 64, deep: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_ch
        widths = (dim, 2 * dim, 4 * dim, 8 * dim) + ((8 * dim,) if deep else ())
        for i, out_ch in enumerate(widths):
            layers.append(nn.Conv2d(channels, out_ch, 5, 2, 2))
            if i:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2))
            channels = out_ch
        self.features = nn.Sequential(*layers)
        stride = 2 ** len(widths)
        self.linear = nn.Linear(8 * dim * (size[0] // stride) * (size[1] // stride), 1)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(torch.cat([condition, image], 1)).flatten(1))


def pose_input(keypoints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PG²'s pose maps in [-1, 1]."""
    return keypoint_discs(keypoints, size) * 2 - 1


def body_masks(keypoints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) float body masks M_B of a batch of target poses: PG²'s own ``pose_mask_r4``."""
    return torch.stack([pg2_body_mask(kp, size) for kp in keypoints]).float()[:, None]


class PG2(Method):
    name = "pg2"
    aliases = ("pg-squared",)
    description = (
        "PG² (Ma et al. 2017): U-Net G1 with a fully connected bottleneck and pose maps (pose-mask L1), then a U-Net G2 "
        "refining G1's image by a difference map against a DCGAN discriminator on (condition, image) pairs."
    )
    paper = PAPER
    tasks = frozenset({"pose-transfer"})
    needs_checkpoint = True
    batch_size = 8
    default_batch_size = 16
    default_steps = TOTAL_STEPS
    model_options = ("size", "width", "variant")
    official_weights = OfficialWeights(
        format="TensorFlow 1 checkpoints (model.ckpt-N .index/.data/.meta of G1, G2 and D)",
        source="github.com/charliememory/Pose-Guided-Person-Image-Generation README, 'Pretrained models': "
               "homes.esat.kuleuven.be/~liqianma/NIPS17_PG2/models/Market1501.zip and DF.zip",
        route="the harness cannot read TensorFlow checkpoints without TensorFlow. Route: in a TensorFlow 1 environment "
              "list and read every variable (tf.train.NewCheckpointReader(path).get_variable_to_shape_map() / "
              "get_tensor(name)) and save them to an .npz keyed by variable name; then map the scopes of the official "
              "models.py (G1 UAE, G2 UAE_noFC_After2Noise on Market-1501 / UAE_noFC_AfterNoise on DeepFashion) to the "
              "harness PG2Generator's g1/g2 modules in creation order, conv kernels (h, w, in, out) -> (out, in, h, w), "
              "fully connected (in, out) -> (out, in), and save the state dict (torch.save or safetensors) for "
              "`harness run --method pg2 --checkpoint FILE` (width=128, size 128x64 or 256x256). Not implemented here",
    )
    options = (
        Option("size", "128x64", "working resolution HEIGHTxWIDTH (paper: 128x64 Market-1501, 256x256 DeepFashion)"),
        Option("variant", "auto", "official architecture and L1 weight: market (G2 UAE_noFC_After2Noise, DCGAN D, L1 x10), "
               "deepfashion (G2 UAE_noFC_AfterNoise, DCGANDiscriminator_256, L1 x50); auto: deepfashion at 256x256",
               choices=VARIANTS),
        Option("width", 128, "n, the channels of the first level (paper 128; the others scale with it); 8 trains on a "
               "CPU in a minute (quick start)"),
        Option("d_width", 64, "channels of the discriminator's first layer (paper: 64)"),
        Option("stage1_steps", STAGE1_STEPS, "steps that train G1 alone before G2 and D (official code: 22000)"),
        Option("lr", 2e-5, "Adam learning rate of G1, G2 and D (beta1 0.5; official: 2e-5)"),
    )

    @property
    def size(self) -> tuple[int, int]:
        return parse_size(self.config["size"], self.name)

    @property
    def variant(self) -> str:
        """The official code's variant: the option, or by size (256×256 is DeepFashion's)."""
        if self.config["variant"] != "auto":
            return self.config["variant"]
        return "deepfashion" if self.size == (256, 256) else "market"

    def build(self) -> nn.Module:
        return PG2Generator(self.size, self.config["width"], self.variant)

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        size = self.size

        def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            pose = pose_input(batch["target_pose"], size).to(self._device)
            return (self.model(batch["source"] * 2 - 1, pose) + 1) / 2

        return generate(samples, size, self._device, forward)

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        return PG2Recipe(self, dataset, context)


class PG2Recipe(TrainingRecipe):
    """Stage 1 (steps < ``stage1_steps``): G1 with the pose-mask L1. Stage 2: G1 frozen, G2 and D adversarially."""

    def __init__(self, method: PG2, dataset: Any, context: TrainContext) -> None:
        cfg, size, variant = method.config, method.size, method.variant
        self.context, self.size, self.stage1 = context, size, cfg["stage1_steps"]
        self.l1_weight = L1_WEIGHT[variant]
        generator = method.build()
        discriminator = DCGANDiscriminator(size, 6, cfg["d_width"], deep=variant == "deepfashion")
        self.pairs = PairBatches(dataset, context, size)
        stage2 = max(0, context.steps - self.stage1)
        description = {
            "network": f"PG2 G1 ({repeats_for(size)} blocks, FC z={Z_DIM}) + G2 ({repeats_for(size) - 2} levels) at {size[0]}x{size[1]}",
            "variant": variant,
            "g2": "UAE_noFC_AfterNoise (skips at every level)" if variant == "deepfashion" else "UAE_noFC_After2Noise (no finest skip)",
            "discriminator": "DCGANDiscriminator_256 (5 convs)" if variant == "deepfashion" else "DCGANDiscriminator (4 convs)",
            "parameters": count_parameters(generator).params,
            "g1_parameters": count_parameters(generator.g1).params,
            "g2_parameters": count_parameters(generator.g2).params,
            "discriminator_parameters": count_parameters(discriminator).params,
            "width": cfg["width"],
            "stages": {"g1": min(self.stage1, context.steps), "g2+d": stage2},
            "optimizer": f"Adam(lr={cfg['lr']:g}, betas=(0.5, 0.999)) for G1, G2 and D",
            "loss": f"stage 1: mean(|G1 - I_B| * (1 + M_B)); stage 2: BCE(D(I_A, G)) + {self.l1_weight:g} * (mean|G - I_B| + "
            "mean(|G - I_B| * M_B)); D: BCE on (I_A, I_B) real and (I_A, G) fake pairs; M_B: PG2's own body mask "
            "(_getPoseMask radius 4) of the target pose",
            "pose": "18 keypoint maps, 1 within distance <= 4 px of the int-truncated keypoint, in [-1, 1]",
            "train_pairs": len(self.pairs.rows),
            "batch_size": context.batch_size,
            "steps": context.steps,
            "paper_recipe": "batch 16, Adam 2e-5 (beta1 0.5), G1 22k steps then G2 + D, L1 weight 10 (Market) / 50 (DeepFashion)",
            "difference": "D sees (condition, image) pairs as in the paper; the official code feeds it single images",
        }
        super().__init__(description, exported="generator")
        self.networks["generator"] = generator.to(context.device).train()
        self.networks["discriminator"] = discriminator.to(context.device).train()
        lr, betas = cfg["lr"], (0.5, 0.999)
        self.optimizers["g1"] = torch.optim.Adam(generator.g1.parameters(), lr=lr, betas=betas)
        self.optimizers["g2"] = torch.optim.Adam(generator.g2.parameters(), lr=lr, betas=betas)
        self.optimizers["discriminator"] = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
        self.batches = context.loader(self.batch)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.pairs(step)
        return {**batch, "pose": pose_input(batch["target_pose"], self.size), "mask": body_masks(batch["target_pose"], self.size)}

    def train_step(self, step: int) -> dict[str, float]:
        ctx = self.context
        batch = {k: v.to(ctx.device) for k, v in ctx.shard(self.batches(step)).items()}
        source, target = batch["source"] * 2 - 1, batch["target"] * 2 - 1
        pose, mask = batch["pose"], batch["mask"]
        generator = self.networks["generator"]
        if step < self.stage1:
            with ctx.autocast():
                coarse = generator.g1(source, pose)
                loss = ((coarse.float() - target).abs() * (1 + mask)).mean()
            self.optimizers["g1"].zero_grad(set_to_none=True)
            ctx.backward(loss)
            ctx.step(self.optimizers["g1"])
            return {"g1_pose_mask_l1": loss.item()}
        d = self.networks["discriminator"]
        with ctx.autocast():
            with torch.no_grad():
                coarse = generator.g1(source, pose)
            refined = coarse + generator.g2(source, coarse)
            real, fake = d(source, target), d(source, refined.detach())
            d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        ctx.backward(d_loss)
        ctx.step(self.optimizers["discriminator"])
        with ctx.autocast():
            score = d(source, refined)
            adversarial = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
            error = (refined.float() - target).abs()
            l1 = error.mean() + (error * mask).mean()
            g_loss = adversarial + self.l1_weight * l1
        self.optimizers["g2"].zero_grad(set_to_none=True)
        ctx.backward(g_loss)
        ctx.step(self.optimizers["g2"])
        return {"d": d_loss.item(), "g2_adversarial": adversarial.item(), "g2_l1": l1.item()}


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(PG2)
