"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017) as in the official PyTorch code.

Networks follow ``models/networks.py`` of junyanz/pytorch-CycleGAN-and-pix2pix with its CycleGAN
defaults, submodule for submodule, so the released ``latest_net_G_A.pth`` files load strictly:

* `ResnetGenerator`: c7s1-64, d128, d256, 9 residual blocks of 256 (reflection padding), u128, u64,
  c7s1-3, tanh; instance norm without affine parameters, so every conv has a bias
  (11,378,179 parameters; the parameter count does not depend on the image size);
* `PatchDiscriminator`: the 70×70 PatchGAN, C64-C128-C256-C512 (4×4 convs, stride 2, 2, 2, 1) then a
  1-channel 4×4 conv, LeakyReLU 0.2, instance norm from the second layer (2,764,737 parameters).

Test-time preprocessing is the official ``test.py`` default: resize to 256×256 (PIL bicubic, aspect
not kept), scale to [-1, 1]; the output is mapped back to [0, 1]. The official code saves the 256×256
result; here ``output_size=input`` (default) resizes it back to the input's size (torch bicubic with
antialiasing) so that aligned pixel metrics compare like with like, and ``output_size=model`` keeps 256².
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from harness import DataError, ImagePool, Method, OfficialWeights, Option, Sample, TrainContext, TrainingRecipe, UsageError, hookimpl
from harness.checkpoints import load_state_dict
from harness.train.augment import random_crop, random_flip
from harness.train.samplers import step_rng, unpaired_batch

from harness_plugins.shared.unpaired import UnpairedDomains

PAPER = (
    "Jun-Yan Zhu, Taesung Park, Phillip Isola, Alexei A. Efros. Unpaired Image-to-Image Translation using "
    "Cycle-Consistent Adversarial Networks. ICCV 2017, arXiv:1703.10593. Official code: "
    "github.com/junyanz/pytorch-CycleGAN-and-pix2pix"
)


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """The official ``norm='instance'``: no affine parameters, no running statistics."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """pad, conv3×3, norm, ReLU, [dropout], pad, conv3×3, norm, plus the identity (``conv_block`` as official)."""

    def __init__(self, channels: int, dropout: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=True),
            instance_norm(channels),
            nn.ReLU(True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=True), instance_norm(channels)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The official ResNet generator; ``forward`` maps [-1, 1] images to [-1, 1] images."""

    def __init__(self, ngf: int = 64, blocks: int = 9, dropout: bool = False, channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, ngf, 7, bias=True),
            instance_norm(ngf),
            nn.ReLU(True),
        ]
        for power in range(2):  # two stride-2 downsamplings
            width = ngf * 2**power
            layers += [nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=True), instance_norm(width * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, dropout) for _ in range(blocks)]
        for power in (2, 1):  # two stride-2 transposed convolutions
            width = ngf * 2**power
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                instance_norm(width // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """The official ``NLayerDiscriminator`` (n_layers=3: the 70×70 PatchGAN); one score per patch.

    ``norm="instance"`` is CycleGAN's discriminator, ``norm="batch"`` pix2pix's (used conditionally,
    on the channel concatenation of condition and image, by the SIFT-inversion cGAN)."""

    def __init__(self, ndf: int = 64, layers: int = 3, channels: int = 3, norm: str = "instance") -> None:
        super().__init__()
        sequence: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        # As official: convs followed by batch norm carry no bias (pix2pix's default D); with instance norm they do.
        batch = norm == "batch"
        for n in range(1, layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < layers else 1
            sequence += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=not batch),
                nn.BatchNorm2d(out) if batch else instance_norm(out),
                nn.LeakyReLU(0.2, True),
            ]
            width = out
        sequence.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*sequence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(network: nn.Module, gain: float = 0.02) -> nn.Module:
    """The official ``init_type='normal'``: conv weights N(0, 0.02), biases 0; batch-norm scales N(1, 0.02)."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return network


def official_state(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the InstanceNorm running-statistics entries that checkpoints saved by PyTorch < 0.4 carry
    (the official loader's ``__patch_instance_norm_state_dict`` does the same); strip ``module.``."""
    stale = ("running_mean", "running_var", "num_batches_tracked")
    return {key.removeprefix("module."): value for key, value in state.items() if key.rsplit(".", 1)[-1] not in stale}


def load_generator(model: nn.Module, path: Path, state: dict[str, Any] | None = None) -> None:
    """Load an official or harness-written generator state dict (``state``, else read from ``path``) strictly,
    explaining a mismatch."""
    try:
        model.load_state_dict(official_state(load_state_dict(path) if state is None else state), strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise DataError(
            f"checkpoint {path} does not fit the ResNet generator (check options ngf/blocks): {first}"
        ) from None


def resize_pil(image: torch.Tensor, width: int, height: int, resample: int) -> torch.Tensor:
    """[0, 1] (3, H, W) → uint8 → PIL resize to width×height → [0, 1]: what the official loaders' torchvision
    transforms do to the PIL images they read."""
    array = image.detach().cpu().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    resized = np.asarray(Image.fromarray(array).resize((width, height), resample))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div(255.0)


def resize_bicubic_pil(image: torch.Tensor, size: int) -> torch.Tensor:
    """PIL bicubic to size×size: the official CycleGAN loader's transforms.Resize."""
    return resize_pil(image, size, size, Image.BICUBIC)


def translate(generator: nn.Module, image: torch.Tensor, resize: int, output_size: str, device: str,
              multiple: int = 4) -> torch.Tensor:
    """One [0, 1] image through a [-1, 1] generator with the official test preprocessing; at native size the
    input is reflection-padded to a multiple of ``multiple`` (2^stride-2 stages) and the output cropped back."""
    height, width = image.shape[-2:]
    if resize:
        x = resize_bicubic_pil(image, resize)
        pad = (0, 0)
    else:  # native size, reflection-padded to a multiple of the generator's total stride
        x = image.float()
        pad = (-height % multiple, -width % multiple)
    x = x.to(device)[None] * 2.0 - 1.0
    if any(pad):
        x = F.pad(x, (0, pad[1], 0, pad[0]), mode="reflect")
    y = (generator(x) + 1.0) / 2.0
    y = y[..., : y.shape[-2] - pad[0], : y.shape[-1] - pad[1]]
    if resize and output_size == "input" and (height, width) != tuple(y.shape[-2:]):
        y = F.interpolate(y, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return y[0].clamp(0, 1).float().cpu()


# -- training ---------------------------------------------------------------------------------------
def linear_decay(steps: int, decay_from: int) -> Callable[[int], float]:
    """The official ``lambda_rule``: constant, then linearly to zero over the remaining steps."""
    span = max(1, steps - decay_from + 1)
    return lambda step: 1.0 - max(0, step - decay_from) / span


def unpaired_rows(dataset: Any) -> tuple[list[Sample], list[Sample]]:
    """Source and target training rows of an unpaired dataset (the CycleGAN-layout family)."""
    if not isinstance(dataset, UnpairedDomains):
        raise UsageError(
            f"dataset {dataset.name!r} does not list its two training domains; CycleGAN-style training needs a "
            "dataset in the CycleGAN layout (e.g. horse2zebra, maps, cyclegan-folder, translate-synth)"
        )
    return dataset.domain_index("train", "source"), dataset.domain_index("train", "target")


def augmented(dataset: Any, rows: list[Sample], load: int, crop: int, flip: bool, seed: int, step: int, stream: int,
              resize: Callable[[torch.Tensor, int], torch.Tensor] = resize_bicubic_pil) -> torch.Tensor:
    """The official training transform: ``resize`` to ``load`` (CycleGAN's: bicubic load×load), random crop×crop,
    random flip; [-1, 1]."""
    images = []
    for item, row in enumerate(rows):
        rng = step_rng(seed, step, stream, item)
        image = dataset.load(row)["image"]
        image = resize(image, load) if load else image
        image = random_crop(image, (crop, crop), rng)
        images.append(random_flip(image, rng) if flip else image)
    return torch.stack(images) * 2.0 - 1.0


def unpaired_training_batch(dataset: Any, rows: tuple[list[Sample], list[Sample]], context: TrainContext, step: int,
                            load: int, crop: int, flip: bool,
                            resize: Callable[[torch.Tensor, int], torch.Tensor] = resize_bicubic_pil,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's (source, target) batch of the official unaligned loader, shared by the unpaired recipes:
    independent draws from each domain (`unpaired_batch`), each image `augmented` on its own random stream."""
    source, target = rows
    a, b = unpaired_batch(len(source), len(target), context.batch_size, context.seed, step)
    common = (load, crop, flip, context.seed, step)
    return (augmented(dataset, [source[i] for i in a], *common, 0, resize),
            augmented(dataset, [target[i] for i in b], *common, 1, resize))


class CycleGANRecipe(TrainingRecipe):
    """Both generators and discriminators, LSGAN, cycle and identity losses, image pools, linear decay.

    One step is one iteration of the official ``optimize_parameters``: G_A and G_B together, then D_A
    and D_B on pooled fakes (their losses halved). G_A (source → target) is exported."""

    def __init__(self, method: "CycleGAN", dataset: Any, context: TrainContext) -> None:
        cfg = method.config
        self.context, self.dataset, self.cfg = context, dataset, cfg
        self.rows = unpaired_rows(dataset)
        decay_from = int(round(cfg["decay_from"] * context.steps))
        super().__init__(
            description={
                "loss": "LSGAN (MSE to 1/0) + cycle L1 x lambda_cycle + identity L1 x lambda_identity x lambda_cycle",
                "lambda_cycle": cfg["lambda_cycle"], "lambda_identity": cfg["lambda_identity"], "pool": cfg["pool"],
                "optimizer": f"Adam lr {cfg['lr']} betas ({cfg['beta1']}, 0.999), G and D each",
                "schedule": f"constant for {decay_from} steps, then linear to 0 (official lambda_rule)",
                "data": f"resize {cfg['load_size']} (bicubic), random crop {cfg['crop_size']}, flip; [-1, 1]",
                "domains": [len(self.rows[0]), len(self.rows[1])],
            },
            exported="G_A",
        )
        device = context.device
        build_g = lambda: init_weights(ResnetGenerator(cfg["ngf"], cfg["blocks"], cfg["dropout"])).to(device)  # noqa: E731
        build_d = lambda: init_weights(PatchDiscriminator(cfg["ndf"])).to(device)  # noqa: E731
        self.networks.update(G_A=build_g(), G_B=build_g(), D_A=build_d(), D_B=build_d())
        n = self.networks
        betas = (cfg["beta1"], 0.999)
        self.optimizers["G"] = torch.optim.Adam([*n["G_A"].parameters(), *n["G_B"].parameters()], lr=cfg["lr"], betas=betas)
        self.optimizers["D"] = torch.optim.Adam([*n["D_A"].parameters(), *n["D_B"].parameters()], lr=cfg["lr"], betas=betas)
        rule = linear_decay(context.steps, decay_from)
        for name, optimizer in self.optimizers.items():
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
        self.stateful.update(fake_A_pool=ImagePool(cfg["pool"]), fake_B_pool=ImagePool(cfg["pool"]))
        self.loader = context.loader(self.batch)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        return unpaired_training_batch(self.dataset, self.rows, self.context, step, cfg["load_size"], cfg["crop_size"], cfg["flip"])

    def train_step(self, step: int) -> dict[str, float]:
        ctx, n, cfg = self.context, self.networks, self.cfg
        real_a, real_b = (x.to(ctx.device) for x in ctx.shard(self.loader(step)))
        lam, lam_idt = cfg["lambda_cycle"], cfg["lambda_identity"] * cfg["lambda_cycle"]
        mse, l1 = F.mse_loss, F.l1_loss
        for d in (n["D_A"], n["D_B"]):
            d.requires_grad_(False)
        with ctx.autocast():
            fake_b, fake_a = n["G_A"](real_a), n["G_B"](real_b)
            rec_a, rec_b = n["G_B"](fake_b), n["G_A"](fake_a)
            score_b, score_a = n["D_A"](fake_b), n["D_B"](fake_a)
            losses = {
                "G_A": mse(score_b, torch.ones_like(score_b)),
                "G_B": mse(score_a, torch.ones_like(score_a)),
                "cycle_A": l1(rec_a, real_a) * lam,
                "cycle_B": l1(rec_b, real_b) * lam,
            }
            if lam_idt > 0:
                losses["idt_A"] = l1(n["G_A"](real_b), real_b) * lam_idt
                losses["idt_B"] = l1(n["G_B"](real_a), real_a) * lam_idt
            loss_g = sum(losses.values())
        self.optimizers["G"].zero_grad(set_to_none=True)
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        for d in (n["D_A"], n["D_B"]):
            d.requires_grad_(True)
        pooled_b = self.stateful["fake_B_pool"].query(fake_b.detach())
        pooled_a = self.stateful["fake_A_pool"].query(fake_a.detach())
        with ctx.autocast():
            losses["D_A"] = self.d_loss(n["D_A"], real_b, pooled_b)
            losses["D_B"] = self.d_loss(n["D_B"], real_a, pooled_a)
        self.optimizers["D"].zero_grad(set_to_none=True)
        ctx.backward(losses["D_A"] + losses["D_B"])
        ctx.step(self.optimizers["D"])
        for scheduler in self.schedulers.values():
            scheduler.step()
        return {name: float(value.detach()) for name, value in losses.items()}

    @staticmethod
    def d_loss(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real_score, fake_score = d(real), d(fake)
        return 0.5 * (F.mse_loss(real_score, torch.ones_like(real_score)) + F.mse_loss(fake_score, torch.zeros_like(fake_score)))


TRAINING_OPTIONS = (
    Option("ndf", 64, "training: discriminator base width (official 64)", int),
    Option("lambda_cycle", 10.0, "training: cycle-consistency weight λ (official 10 for both directions)", float),
    Option("lambda_identity", 0.5, "training: identity weight as a fraction of λ (official 0.5)", float),
    Option("pool", 50, "training: image pool size (official 50)", int),
    Option("lr", 2e-4, "training: Adam learning rate (official 0.0002)", float),
    Option("beta1", 0.5, "training: Adam β1 (official 0.5)", float),
    Option("decay_from", 0.5, "training: fraction of the steps after which the learning rate decays linearly to 0 "
           "(official: 100 of 200 epochs)", float),
    Option("load_size", 286, "training: resize (bicubic) before the random crop (official 286; 0: no resize)", int),
    Option("crop_size", 256, "training: random crop size (official 256)", int),
    Option("flip", True, "training: random horizontal flips (official)", bool),
)


class CycleGAN(Method):
    """CycleGAN's ResNet-9 generator for one direction (A→B with ``latest_net_G_A.pth``)."""

    name = "cyclegan"
    description = "CycleGAN (Zhu et al. 2017): ResNet-9 generator, official weights (latest_net_G_A.pth) load."
    paper = PAPER
    tasks = frozenset({"unpaired-translation"})
    needs_checkpoint = True
    options = (
        Option("ngf", 64, "generator base width (official 64)", int),
        Option("blocks", 9, "residual blocks (official: 9 for 256² images, 6 for 128²)", int),
        Option("dropout", False, "dropout 0.5 in the residual blocks (official --no_dropout unset: CycleGAN uses none)", bool),
        Option("resize", 256, "test-time resize to this square size as the official test.py (0: native size)", int),
        Option(
            "output_size",
            "input",
            "input: resize the result back to the input's size; model: keep the size the model ran at",
            str,
            ("input", "model"),
        ),
        *TRAINING_OPTIONS,
    )
    default_batch_size = 1  # official
    default_steps = 200 * 1334  # official 200 epochs (100 + 100 decay) of horse2zebra's larger domain at batch 1
    official_weights = OfficialWeights(
        format="PyTorch state dict of one ResNet generator (pytorch-CycleGAN-and-pix2pix; InstanceNorm running "
               "statistics of PyTorch < 0.4 files dropped)",
        source="github.com/junyanz/pytorch-CycleGAN-and-pix2pix: scripts/download_cyclegan_model.sh NAME writes "
               "checkpoints/NAME_pretrained/latest_net_G.pth (e.g. horse2zebra, one direction); a training run's "
               "latest_net_G_A.pth / latest_net_G_B.pth",
        suffixes=(".pth",),
    )

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        return CycleGANRecipe(self, dataset, context)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cfg = self.config
        if cfg["ngf"] < 1 or cfg["blocks"] < 0 or cfg["resize"] < 0:
            raise UsageError(f"{self.name}: options ngf, blocks and resize must not be negative (ngf ≥ 1)")
        if cfg["resize"] % 4:
            raise UsageError(f"{self.name}: option resize must be a multiple of 4 (two stride-2 stages), got {cfg['resize']}")

    def build(self) -> ResnetGenerator:
        cfg = self.config
        return init_weights(ResnetGenerator(cfg["ngf"], cfg["blocks"], cfg["dropout"]))

    def convert_official(self, path: Path) -> dict[str, Any]:
        """The official generator file as this generator's state: stale InstanceNorm statistics dropped."""
        return official_state(load_state_dict(Path(path)))

    def load(self, checkpoint: Path | None, device: str) -> None:
        model = self.build()
        if checkpoint is not None:
            load_generator(model, Path(checkpoint), self.convert_official(Path(checkpoint)))
        self._model = model.to(device).eval()
        self._device = device

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        with torch.inference_mode():
            return [
                translate(self._model, s["image"], self.config["resize"], self.config["output_size"], self._device)
                for s in samples
            ]


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(CycleGAN)
