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

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import ImagePool, Method, Option, Sample, TrainContext, TrainingRecipe, UsageError, hookimpl

from .cyclegan import PatchDiscriminator, init_weights, linear_decay, translate, unpaired_rows, unpaired_training_batch
from harness_plugins.shared.vgg_features import VGGFeatures

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


# -- training ---------------------------------------------------------------------------------------
REG_TAPS = (1, 6, 11)
"""VGG-19 relu1_1, relu2_1, relu3_1: one reading of "the first three layers" (the thesis names none)."""
REG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8)


class SelfRegularisation(nn.Module):
    """ℓ_reg(x, G(x)) = Σ_l w_l / (H_l W_l) Σ_hw ‖F_l(x) − F_l(G(x))‖² over VGG-19 relu1_1/2_1/3_1."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = VGGFeatures("vgg19", REG_TAPS)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.vgg((x + 1) / 2), self.vgg((y + 1) / 2)
        return sum(w * (a - b).pow(2).sum(1).mean() for w, a, b in zip(REG_WEIGHTS, fx, fy))


class AdaptiveWeight:
    """λ of the thesis's "adaptive weight induction" (ch. 4): 0 at first, then raised by ``increment`` per step
    while the discriminator's loss L_D (eq. 4.2; an EMA with factor 0.9) stays at or above ``threshold``, and held
    once it sinks below.

    The watched loss is D's: raising λ pulls G(x) back towards x, away from Y, "which makes it easier for D to
    classify", so it is D's loss that falls as λ rises (G's own adversarial loss would rise). The rule starts
    after ``warmup`` steps of adversarial training only (the EMA is tracked meanwhile), so that it judges a
    discriminator that has begun to learn rather than its random start. With ``relative`` the threshold is a
    fraction of the EMA when the rule starts (λ rises until L_D has fallen by that much: the level a trained D
    reaches depends on the data, so a fixed value can lie below it from the start and never let λ rise);
    otherwise it is a value of L_D. Increment, threshold and warm-up are not given by the thesis (chosen,
    recorded as options)."""

    def __init__(self, increment: float, threshold: float, warmup: int = 0, relative: bool = False) -> None:
        self.increment, self.threshold, self.relative = increment, threshold, relative
        self.reset(warmup)

    def reset(self, warmup: int = 0) -> None:
        """A new stage: λ back to 0, the rule idle for ``warmup`` steps."""
        self.value, self.average, self.held, self.seen, self.warmup = 0.0, None, False, 0, int(warmup)
        self.level: float | None = None

    def update(self, discriminator_loss: float) -> float:
        """Record one step's L_D; return λ for the next step."""
        self.average = discriminator_loss if self.average is None else 0.9 * self.average + 0.1 * discriminator_loss
        self.seen += 1
        if not self.held and self.seen > self.warmup:
            if self.level is None:
                self.level = self.average * self.threshold if self.relative else self.threshold
            if self.average < self.level:
                self.held = True
            else:
                self.value += self.increment
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "average": self.average, "held": self.held, "seen": self.seen, "warmup": self.warmup,
                "level": self.level}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.average, self.held = float(state["value"]), state["average"], bool(state["held"])
        self.seen, self.warmup, self.level = int(state["seen"]), int(state["warmup"]), state["level"]


class SATRecipe(TrainingRecipe):
    """The thesis's stages: G0 alone, then the attention branch with G0 frozen, then both at lr × 0.1.

    Log-loss GAN against a 5-layer PatchGAN on a history of 50 generated images; each stage restarts the
    adaptive weight λ at 0 (`AdaptiveWeight`, watching D's loss after a warm-up). Every optimizer's learning rate
    is constant until ``decay_from`` of the steps, then decays linearly to 0 (the thesis: "starting from 5k
    iteration, we linearly decay the learning rate over the remaining 5k iterations"). sat-g0 trains stage 1
    only. The generator (G0 and A) is exported."""

    def __init__(self, method: "SAT", dataset: Any, context: TrainContext) -> None:
        cfg = method.config
        self.context, self.dataset, self.cfg = context, dataset, cfg
        self.rows = unpaired_rows(dataset)
        stages = (1.0,) if not method.attention else tuple(float(f) for f in cfg["stages"])
        bounds = np.cumsum(stages) / sum(stages) * context.steps
        self.bounds = [int(round(b)) for b in bounds]
        starts = [0, *self.bounds[:-1]]
        self.warmups = [int(round(cfg["lambda_warmup"] * (end - start))) for start, end in zip(starts, self.bounds)]
        decay_from = int(round(cfg["decay_from"] * context.steps))
        super().__init__(
            description={
                "stages": dict(zip(("g0", "attention", "joint"), self.bounds)),
                "loss": "log-loss GAN + lambda * VGG-19 self-regularisation (relu1_1/2_1/3_1, weights 1/32, 1/16, 1/8)",
                "adaptive_lambda": {"watches": "discriminator loss L_D (eq. 4.2), EMA 0.9",
                                    "increment": cfg["lambda_increment"], "threshold": cfg["adv_threshold"],
                                    "threshold_kind": cfg["threshold_kind"],
                                    "warmup_steps": dict(zip(("g0", "attention", "joint"), self.warmups))},
                "optimizer": f"Adam lr {cfg['lr']} betas (0.5, 0.999); joint stage lr x {cfg['joint_lr_factor']}",
                "schedule": f"constant for {decay_from} steps, then linear to 0 (thesis: decay over the second half)",
                "pool": cfg["pool"], "data": f"resize {cfg['load_size']}, random crop {cfg['crop_size']}, flip",
            },
            exported="G",
        )
        device = context.device
        g = method.build().to(device)
        if g.attention is not None:
            g.attention.vgg.load_state_dict(VGGFeatures("vgg19", (VGG19_CONV3_3 - 1,)).layers.state_dict())
        self.networks["G"] = g
        self.networks["D"] = init_weights(PatchDiscriminator(norm="batch")).to(device)
        betas = (0.5, 0.999)
        self.optimizers["G0"] = torch.optim.Adam(g.g0.parameters(), lr=cfg["lr"], betas=betas)
        if g.attention is not None:
            self.optimizers["A"] = torch.optim.Adam(g.attention.parameters(), lr=cfg["lr"], betas=betas)
            self.optimizers["joint"] = torch.optim.Adam(g.parameters(), lr=cfg["lr"] * cfg["joint_lr_factor"], betas=betas)
        self.optimizers["D"] = torch.optim.Adam(self.networks["D"].parameters(), lr=cfg["lr"], betas=betas)
        self.stateful["pool"] = ImagePool(cfg["pool"])
        rule = linear_decay(context.steps, decay_from)
        for name, optimizer in self.optimizers.items():
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
        self.stateful["lambda"] = AdaptiveWeight(cfg["lambda_increment"], cfg["adv_threshold"], self.warmups[0],
                                                 relative=cfg["threshold_kind"] == "relative")
        self.reg = SelfRegularisation().to(device)
        self.loader = context.loader(self.batch)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        return unpaired_training_batch(self.dataset, self.rows, self.context, step, cfg["load_size"], cfg["crop_size"], True)

    def stage(self, step: int) -> str:
        names = ("G0", "A", "joint")
        return next(names[i] for i, bound in enumerate(self.bounds) if step < bound)

    def train_step(self, step: int) -> dict[str, float]:
        ctx, g, d = self.context, self.networks["G"], self.networks["D"]
        stage = self.stage(step)
        weight = self.stateful["lambda"]
        if step in self.bounds[:-1]:  # a new stage starts adversarial-only again
            weight.reset(self.warmups[self.bounds.index(step) + 1])
        x, y = (t.to(ctx.device) for t in ctx.shard(self.loader(step)))
        bce = F.binary_cross_entropy_with_logits
        d.requires_grad_(False)
        with ctx.autocast():
            fake = g.g0(x) if stage == "G0" else g(x)  # stage 1 trains G0 alone
            score = d(fake)
            adversarial = bce(score, torch.ones_like(score))
            regularisation = self.reg(x, fake)
        lam = weight.value
        optimizer = self.optimizers[stage]
        optimizer.zero_grad(set_to_none=True)
        for other in self.optimizers.values():
            if other is not optimizer:
                other.zero_grad(set_to_none=True)
        ctx.backward(adversarial + lam * regularisation)
        ctx.step(optimizer)
        d.requires_grad_(True)
        pooled = self.stateful["pool"].query(fake.detach())
        with ctx.autocast():
            real_score, fake_score = d(y), d(pooled)
            loss_d = bce(real_score, torch.ones_like(real_score)) + bce(fake_score, torch.zeros_like(fake_score))
        self.optimizers["D"].zero_grad(set_to_none=True)
        ctx.backward(loss_d)
        ctx.step(self.optimizers["D"])
        weight.update(float(loss_d.detach()))
        with warnings.catch_warnings():  # the other stages' optimizers follow the schedule before they first step
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
            for scheduler in self.schedulers.values():
                scheduler.step()
        return {"adversarial": float(adversarial.detach()), "regularisation": float(regularisation.detach()),
                "lambda": lam, "D": float(loss_d.detach())}


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
        Option("test_norm", "batch", "batch norm at test time: batch (each image's own statistics, as the CycleGAN/"
               "pix2pix test.py runs batch-norm models without --eval; training is at batch 1) or running (eval mode, "
               "the running averages); chosen, the thesis does not say", str, ("batch", "running")),
        Option("stages", (0.5, 0.3, 0.2), "training: step fractions of the three stages (G0 alone, attention with G0 "
               "frozen, joint fine-tuning); chosen, the thesis gives none (sat-g0 trains stage 1 only)", tuple),
        Option("lr", 2e-4, "training: Adam learning rate (thesis 0.0002), betas (0.5, 0.999) as CycleGAN", float),
        Option("joint_lr_factor", 0.1, "training: learning-rate factor of the joint stage ('smaller'; chosen)", float),
        Option("lambda_increment", 1e-3, "training: adaptive weight increase per step (chosen)", float),
        Option("adv_threshold", 0.8, "training: lambda is held once the discriminator loss L_D (eq. 4.2, EMA 0.9) sinks "
               "below this: a fraction of its EMA when the rule starts (threshold_kind=relative) or a value of L_D "
               "(absolute; chance level is 2 ln 2 = 1.386); chosen", float),
        Option("threshold_kind", "relative", "training: how adv_threshold is read: relative (to L_D when the rule "
               "starts) or absolute; chosen", str, ("relative", "absolute")),
        Option("lambda_warmup", 0.1, "training: fraction of each stage trained adversarially only before the lambda "
               "rule applies (chosen)", float),
        Option("decay_from", 0.5, "training: fraction of the steps after which every learning rate decays linearly "
               "to 0 (thesis: from 5k of 10k iterations)", float),
        Option("pool", 50, "training: history of generated images for D (thesis: 50)", int),
        Option("load_size", 286, "training: resize before the random crop (0: none)", int),
        Option("crop_size", 256, "training: random crop size (thesis: 256x256 images)", int),
    )
    default_batch_size = 1
    default_steps = 10_000  # the thesis: decay after 5k of ~10k iterations (possibly epochs; unverified)

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        try:
            stages = tuple(float(f) for f in self.config["stages"])
        except ValueError:
            raise UsageError(f"{self.name}: option stages expects three comma-separated fractions") from None
        if len(stages) != 3 or min(stages) < 0 or not sum(stages):
            raise UsageError(f"{self.name}: option stages expects three non-negative fractions, got {stages}")
        for option in ("lambda_warmup", "decay_from"):
            if not 0.0 <= self.config[option] <= 1.0:
                raise UsageError(f"{self.name}: option {option} is a fraction of the steps in [0, 1], got {self.config[option]}")
        return SATRecipe(self, dataset, context)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config["ngf"] < 1 or self.config["blocks"] < 0 or self.config["resize"] % 4:
            raise UsageError(f"{self.name}: ngf ≥ 1, blocks ≥ 0 and resize a multiple of 4 are required")

    def build(self) -> SATGenerator:
        return init_weights(SATGenerator(self.config["ngf"], self.config["blocks"], self.attention))

    def load(self, checkpoint: Path | None, device: str) -> None:
        """Load as any network method; with ``test_norm=batch`` the batch-norm layers then use each image's own
        statistics (train mode; their running averages, which this copy never saves, are left unused)."""
        super().load(checkpoint, device)
        if self.config["test_norm"] == "batch":
            for module in self._model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.train()

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
