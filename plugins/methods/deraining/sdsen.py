"""S-DSEN, DSEN and their regular-CNN counterpart (Liu, Ye et al., ICIP 2019) for rain removal.

One code path covers the paper's networks and all its ablations:

* p4 group convolutions (``P4ConvZ2``, ``P4ConvP4``) built in plain PyTorch by rotating and
  cyclically shifting filters, numerically equal to GrouPy's index tables (which the official code uses);
* a body of one P4ConvZ2 and four residual P4ConvP4 layers (10 regular channels × 4 orientations,
  5×5 kernels, LeakyReLU 0.2), a symmetry-aggregation 5×5 conv over all orientation channels with a
  squeeze-and-excitation block, and a 1×1 decoder that predicts the rain layer R̂; the output is O − R̂;
* the self-refining mechanism: weight-shared stages, stage s sees O − R̂_{s−1} and predicts the full
  rain layer of the original O; consecutive stages are linked layer by layer ("skip concatenation",
  or addition for the MDSEN+SC ablation, or nothing for the plain recurrent MCNN/MDSEN).

Submodule names follow the official ``config/model.py`` (``pre_layer.conv0``, ``re_layer.i``,
``connect_layers.i.conv0``, ``dec.0`` … ``dec.3``), so a state dict saved by the official code loads
with ``strict=True`` (also in its ``{'net': ..., 'opt': ..., 'clock': ...}`` checkpoint wrapper).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import DataError, Method, OfficialWeights, Option, Sample, SingleModelRecipe, TrainContext, UsageError, count_parameters, hookimpl

PAPER = (
    "Hong Liu, Hanrong Ye, Xia Li, Wei Shi, Mengyuan Liu, Qianru Sun. Self-refining deep symmetry "
    "enhanced network for rain removal. ICIP 2019, pp. 2786-2790. doi:10.1109/ICIP.2019.8803265, "
    "arXiv:1811.04761. Official code: github.com/prismformore/SDSEN"
)

ORIENTATIONS = 4
KERNEL = 5
DEPTH = 4  # P4ConvP4 layers after the P4ConvZ2 (official settings.depth = 7, depth − 3 = 4)
SLOPE = 0.2
P4_CHANNELS = 10
CNN_CHANNELS = 20  # "double the number of channels" of the regular-CNN counterpart (52,113 parameters)


# -- p4 group convolutions -------------------------------------------------------------------------
class _P4Conv(nn.Module):
    """Split p4 G-convolution: one weight per regular channel pair, expanded to 4 rotated copies.

    Weight shape (Cout, Cin, S, k, k) with S = input orientations (1 on Z², 4 on p4) and one bias per
    regular output channel shared over the 4 output orientations, exactly as GrouPy's
    ``SplitGConv2D``. For output orientation r the filter is the weight with its input-orientation
    axis rolled by r, rotated spatially by r·90° (``torch.rot90``, counter-clockwise from H to W).
    """

    in_orientations: ClassVar[int]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = KERNEL) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        shape = (out_channels, in_channels, self.in_orientations, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # GrouPy init: U(±1/sqrt(n)) with n = regular input channels × k × k (orientations not counted).
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size**2)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def expanded_weight(self) -> torch.Tensor:
        """The ordinary conv weight (Cout·4, Cin·S, k, k); channel index = regular·4 + orientation."""
        rotated = [torch.rot90(torch.roll(self.weight, shifts=r, dims=2), r, dims=(3, 4)) for r in range(ORIENTATIONS)]
        stacked = torch.stack(rotated, dim=1)  # (Cout, 4, Cin, S, k, k)
        return stacked.reshape(
            self.out_channels * ORIENTATIONS,
            self.in_channels * self.in_orientations,
            self.kernel_size,
            self.kernel_size,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
        flat = x.reshape(batch, self.in_channels * self.in_orientations, height, width)
        y = F.conv2d(flat, self.expanded_weight(), padding=self.kernel_size // 2)
        y = y.view(batch, self.out_channels, ORIENTATIONS, y.shape[-2], y.shape[-1])
        return y + self.bias.view(1, -1, 1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


class P4ConvZ2(_P4Conv):
    """Plane (B, Cin, H, W) → p4 (B, Cout, 4, H, W): one filter seen at four rotations."""

    in_orientations = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(2))


class P4ConvP4(_P4Conv):
    """p4 (B, Cin, 4, H, W) → p4 (B, Cout, 4, H, W): four filters (one per input orientation), four rotations."""

    in_orientations = ORIENTATIONS


# -- network ----------------------------------------------------------------------------------------
class ConvAct(nn.Module):
    """Convolution followed by LeakyReLU(0.2); the attribute name ``conv0`` is the official one."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv0 = conv
        self.relu = nn.LeakyReLU(SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv0(x))


class SEBlock(nn.Module):
    """Squeeze-and-excitation; the official code passes ``channel // 2`` as the hidden width."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class OrientationPool(nn.Module):
    """Max or average over the 4 orientation channels of each regular channel (DSEN_maxpool/avgpool)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.view(x.shape[0], -1, ORIENTATIONS, x.shape[-2], x.shape[-1])
        return grouped.amax(dim=2) if self.mode == "maxpool" else grouped.mean(dim=2)

    def extra_repr(self) -> str:
        return self.mode


def _regular_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, KERNEL, padding=KERNEL // 2)


class SDSENNet(nn.Module):
    """DSEN body unrolled over weight-shared stages; ``forward`` returns every stage's rain layer.

    ``link``: ``concat`` (S-DSEN skip concatenation: the previous stage's output of layer i passes an
    intermediate conv + LeakyReLU and is concatenated with layer i's input on the regular-channel
    axis), ``add`` (MDSEN+SC: the same intermediate map is added instead), ``none`` (plain recurrence).
    ``backbone``: ``p4`` (G-convolutions, 10 regular channels) or ``cnn`` (ordinary convs, 20 channels).
    """

    def __init__(
        self,
        stages: int = 8,
        link: str = "concat",
        aggregation: str = "conv",
        se: bool = True,
        backbone: str = "p4",
    ) -> None:
        super().__init__()
        if backbone == "cnn" and aggregation != "conv":
            raise ValueError("orientation pooling needs the p4 backbone")
        self.stages, self.link = stages, link
        p4 = backbone == "p4"
        channels = P4_CHANNELS if p4 else CNN_CHANNELS
        inner = P4ConvP4 if p4 else _regular_conv
        body_in = 2 * channels if link == "concat" else channels
        self.pre_layer = ConvAct(P4ConvZ2(3, channels) if p4 else _regular_conv(3, channels))
        # In the official code the residual layers are bare P4ConvP4 modules (no wrapper).
        self.re_layer = nn.ModuleList(inner(body_in, channels) for _ in range(DEPTH))
        if link != "none":
            self.connect_layers = nn.ModuleList(ConvAct(inner(channels, channels)) for _ in range(DEPTH))
        flat = channels * (ORIENTATIONS if p4 else 1)
        aggregate = _regular_conv(flat, channels) if aggregation == "conv" else OrientationPool(aggregation)
        # Indices 0..3 as in the official nn.Sequential; its NoSEBlock had no parameters, like Identity.
        self.dec = nn.Sequential(
            aggregate,
            SEBlock(channels, channels // 2) if se else nn.Identity(),
            nn.LeakyReLU(SLOPE),
            nn.Conv2d(channels, 3, 1),
        )
        self.relu = nn.LeakyReLU(SLOPE)

    def stage(self, x: torch.Tensor, previous: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One stage on a BGR batch: its rain layer and the features of each residual layer (the link input)."""
        x = self.pre_layer(x)
        status = []
        for i, layer in enumerate(self.re_layer):
            identity = x
            if self.link != "none":
                # Official code: at stage 1 the link sees all-zero features (so it yields LeakyReLU(bias)).
                old = previous[i] if previous is not None else torch.zeros_like(x)
                linked = self.connect_layers[i](old)
                # The official model.py only has concat (its settings.py names an unused 'Add' frame); for
                # MDSEN+SC the paper's "simply adds on it" is read as adding before the layer, residual kept.
                x = torch.cat([x, linked], dim=1) if self.link == "concat" else x + linked
            x = self.relu(identity + layer(x))
            status.append(x)
        return self.dec(x.flatten(1, 2) if x.dim() == 5 else x), status

    def forward(self, rainy: torch.Tensor) -> list[torch.Tensor]:
        """Rain layers R̂_1 … R̂_S (B, 3, H, W) of an RGB batch; the restored image is ``rainy − R̂_S``."""
        # The official code reads images with cv2 (BGR); the network runs in BGR so official weights fit.
        original = rainy.flip(1)
        x, status, rains = original, None, []
        for _ in range(self.stages):
            rain, status = self.stage(x, status)
            rains.append(rain)
            # Every stage predicts the whole rain layer of the original O (not a residual of its input).
            x = original - rain
        return [rain.flip(1) for rain in rains]


# -- training data ----------------------------------------------------------------------------------
def _as_uint8(image: torch.Tensor) -> torch.Tensor:
    return image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _load_pairs(dataset: Any, patch: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The train split's (rainy, clean) images as uint8 (3, H, W), checked to fit a patch."""
    rainy, clean = [], []
    for sample in dataset.samples("train"):
        o, b = sample["rainy"], sample["clean"]
        if o.shape != b.shape:
            raise DataError(
                f"{dataset.name} train sample {sample['id']}: rainy {tuple(o.shape)} and clean {tuple(b.shape)} differ in size"
            )
        if min(o.shape[-2:]) < patch:
            raise DataError(
                f"{dataset.name} train sample {sample['id']}: image {tuple(o.shape[-2:])} is smaller than the "
                f"{patch}×{patch} training patch (option patch)"
            )
        rainy.append(_as_uint8(o))
        clean.append(_as_uint8(b))
    if not rainy:
        raise DataError(f"{dataset.name}: the train split has no samples")
    return rainy, clean


def _to_float(crops: list[torch.Tensor], device: str) -> torch.Tensor:
    return torch.stack(crops).to(device).float().div_(255.0)


def _seed_words(seed: int, *words: int) -> list[int]:
    return [seed % (1 << 64), *words]


def batch_indices(seed: int, step: int, batch_size: int, count: int) -> np.ndarray:
    """Image indices of a step: consecutive slots of per-epoch shuffles (like a shuffled DataLoader)."""
    slots = step * batch_size + np.arange(batch_size)
    epochs = slots // count
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng(_seed_words(seed, int(epoch), 0)).permutation(count)
        chosen = epochs == epoch
        out[chosen] = order[slots[chosen] % count]
    return out


def make_batch_fn(
    rainy: list[torch.Tensor], clean: list[torch.Tensor], batch_size: int, patch: int, seed: int, device: str
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """``batch(step)`` → (O, B) float patches on ``device``, a pure function of (seed, step)."""

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        indices = batch_indices(seed, step, batch_size, len(rainy))
        rng = np.random.default_rng(_seed_words(seed, step, 1))
        o_crops, b_crops = [], []
        for index in indices:
            height, width = rainy[index].shape[-2:]
            top = int(rng.integers(0, height - patch + 1))
            left = int(rng.integers(0, width - patch + 1))
            o_crops.append(rainy[index][:, top : top + patch, left : left + patch])
            b_crops.append(clean[index][:, top : top + patch, left : left + patch])
        return _to_float(o_crops, device), _to_float(b_crops, device)

    return batch


def deep_supervision_loss(rains: list[torch.Tensor], rainy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Σ_s MSE(R̂_s, O − B): every stage supervised with weight 1 (official ``train.py``)."""
    target = rainy - clean
    return sum((F.mse_loss(rain, target) for rain in rains), torch.zeros((), device=rainy.device))


# -- methods ----------------------------------------------------------------------------------------
def _options(stages: int, link: str, backbone: str) -> tuple[Option, ...]:
    return (
        Option(
            "stages",
            stages,
            "number of weight-shared self-refining stages (paper: 8 for S-DSEN; "
            "2/4/6 for the S-DSEN_s2/s4/s6 ablation; 1 for DSEN)",
            int,
        ),
        Option(
            "link",
            link,
            "stage link: concat = S-DSEN skip concatenation through an intermediate "
            "conv, add = MDSEN+SC addition, none = plain recurrence (MCNN/MDSEN)",
            str,
            ("concat", "add", "none"),
        ),
        Option(
            "aggregation",
            "conv",
            "symmetry aggregation: conv = 5×5 conv over all orientation "
            "channels (paper), maxpool/avgpool = orientation pooling (DSEN_maxpool/avgpool, p4 only)",
            str,
            ("conv", "maxpool", "avgpool"),
        ),
        Option("se", True, "squeeze-and-excitation block after the aggregation (false = DSEN_w/o_SE)", bool),
        Option(
            "backbone",
            backbone,
            "p4 = G-convolutions with 10 regular channels; cnn = the regular-CNN counterpart with 20 channels",
            str,
            ("p4", "cnn"),
        ),
        Option("lr", 5e-4, "training: initial Adam learning rate (paper: 0.0005)", float),
        Option(
            "milestones",
            (15000, 17500),
            "training: steps at which the learning rate is divided by 10 "
            "(paper: 15000,17500 of 20000; give your own when training for fewer steps)",
            tuple,
        ),
        Option("patch", 64, "training: side of the random square crops (paper: 64)", int),
    )


class _SDSENFamily(Method):
    """Shared behaviour of S-DSEN, DSEN and the CNN counterpart: they differ only in option defaults."""

    tasks = frozenset({"deraining"})
    needs_checkpoint = True
    paper = PAPER
    default_batch_size: ClassVar[int] = 64  # paper (the official settings.py uses 50)
    default_steps: ClassVar[int] = 20000  # official train.py
    model_options = ("stages", "link", "aggregation", "se", "backbone")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cfg = self.config
        if cfg["stages"] < 1:
            raise UsageError(f"{self.name}: option 'stages' must be at least 1, got {cfg['stages']}")
        if cfg["backbone"] == "cnn" and cfg["aggregation"] != "conv":
            raise UsageError(
                f"{self.name}: option 'aggregation' {cfg['aggregation']!r} pools orientations and needs "
                "backbone=p4 (the CNN backbone has none); use aggregation=conv"
            )
        if cfg["patch"] < 1 or cfg["lr"] <= 0:
            raise UsageError(f"{self.name}: options 'patch' and 'lr' must be positive")
        try:
            self.milestones = sorted(int(m) for m in cfg["milestones"])
        except ValueError:
            raise UsageError(
                f"{self.name}: option 'milestones' expects comma-separated step numbers, got {cfg['milestones']!r}"
            ) from None

    def build(self) -> SDSENNet:
        cfg = self.config
        return SDSENNet(cfg["stages"], cfg["link"], cfg["aggregation"], cfg["se"], cfg["backbone"])

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        outputs = []
        with torch.inference_mode():
            for sample in samples:  # one full-resolution image at a time, as the official eval.py
                rainy = sample["rainy"].to(self._device, torch.float32)[None]
                restored = rainy - self._model(rainy)[-1]
                outputs.append(restored[0].float().cpu())
        return outputs

    def training_recipe(self, dataset: Any, context: TrainContext) -> SingleModelRecipe:
        cfg = self.config
        batch_size, steps, seed, device = context.batch_size, context.steps, context.seed, context.device
        rainy, clean = _load_pairs(dataset, cfg["patch"])
        model = self.build().to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        # The official loop calls scheduler.step() before optimizer.step() (pre-1.1 PyTorch order), which
        # moves each decay one step earlier; the harness loop steps it after, as PyTorch now expects.
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=self.milestones, gamma=0.1)
        batch = make_batch_fn(rainy, clean, batch_size, cfg["patch"], seed, device)

        def loss(pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            o, b = pair
            return deep_supervision_loss(model(o), o, b)

        description = {
            "network": {k: cfg[k] for k in ("stages", "link", "aggregation", "se", "backbone")},
            "parameters": count_parameters(model).params,
            "optimizer": "Adam(betas=(0.9, 0.999), eps=1e-8, weight_decay=0)",
            "lr": cfg["lr"],
            "scheduler": f"MultiStepLR(milestones={self.milestones}, gamma=0.1), stepped after each step",
            "loss": "sum over stages of MSE(R_s, O - B) (deep supervision, official train.py)",
            "patch": cfg["patch"],
            "batch_size": batch_size,
            "steps": steps,
            "data": f"{len(rainy)} train pairs, random {cfg['patch']}x{cfg['patch']} crops, "
            "per-epoch shuffles, no augmentation",
            "paper_recipe": "batch 64 (official code: 50), 20000 steps, lr 5e-4 /10 at 15000 and 17500",
        }
        return SingleModelRecipe(model, optimizer, scheduler, batch, loss, description, context)


def _no_release(name: str) -> OfficialWeights:
    """What `harness info` says of the weights: the official repository releases code only."""
    return OfficialWeights(
        format="PyTorch state dict of the official config/model.py", released=False,
        source="github.com/prismformore/SDSEN holds code only: config/*.py, no weights and no download link; the "
               "README's models/ folder is where train.py saves its own checkpoints",
        route=f"train it: harness train --method {name} --dataset rain100h (the paper's 20,000 steps at batch 64); "
              "a checkpoint saved by the official train.py ({'net': state_dict, ...}, the official key names) "
              "loads as it is with harness run --checkpoint FILE",
    )


_ABLATIONS = (
    "Ablations via options: link=add (MDSEN+SC), link=none with stages=8 (MDSEN), stages=2/4/6, "
    "aggregation=maxpool/avgpool, se=false, backbone=cnn (MCNN+SR)."
)


class SDSEN(_SDSENFamily):
    name = "s-dsen"
    official_weights = _no_release("s-dsen")
    aliases = ("sdsen",)
    description = (
        "Self-refining deep symmetry enhanced network: p4 G-conv DSEN unrolled over 8 weight-shared stages "
        "with skip-concatenation links (130,998 parameters). " + _ABLATIONS
    )
    options = _options(stages=8, link="concat", backbone="p4")


class DSEN(_SDSENFamily):
    name = "dsen"
    official_weights = _no_release("dsen")
    description = (
        "Deep symmetry enhanced network: one stage of p4 G-convolutions, symmetry aggregation, SE and a "
        "1×1 rain decoder (50,958 parameters). " + _ABLATIONS
    )
    options = _options(stages=1, link="none", backbone="p4")


class DSENCNN(_SDSENFamily):
    name = "dsen-cnn"
    official_weights = _no_release("dsen-cnn")
    aliases = ("cnn-counterpart",)
    description = (
        "The regular-CNN counterpart of DSEN: G-convolutions replaced by ordinary convolutions with 20 "
        "channels (52,113 parameters); stages=8 gives MCNN, plus link=concat MCNN+SR."
    )
    options = _options(stages=1, link="none", backbone="cnn")


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    for method in (SDSEN, DSEN, DSENCNN):
        register(method)
