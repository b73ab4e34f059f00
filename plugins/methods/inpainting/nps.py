"""`nps`: multi-scale neural patch synthesis (Yang et al., CVPR 2017; the Yang thesis, chapter 2).

Two parts:

* the **content network** f: Context Encoder's encoder/decoder with every activation an ELU and a fully
  connected bottleneck (a 4×4 convolution of the 512×4×4 code to 4000 values, then a 4×4 up-convolution
  back to 512×4×4, as the official Context Encoder code builds its "fc" layer) instead of the channel-wise
  one; 128×128 mean-filled input, 64×64 centre out (thesis Fig. 2.3). It is the trainable part: it needs
  ``--checkpoint`` (``harness train --method nps`` trains it with the ℓ2 recipe of `context-encoder`).
* the **texture optimisation**: over a pyramid halving down to 128×128 (3 scales for 512×512 images, 1 for
  128×128), the hole's pixels are optimised with L-BFGS on
  ``content_weight·E_c + texture_weight·E_t + tv_weight·Υ``: E_c the squared ℓ2 distance in the hole to the
  content constraint (the content network's output at the coarsest scale, the upsampled coarser result
  above it), E_t the neural-patch loss on VGG-19 relu3_1 and relu4_1 (each 3×3 feature patch touching the
  hole matched to its nearest neighbour, in squared ℓ2, among the patches of the same feature map that do not
  touch the hole, on a stride-``patch_stride`` grid; the loss is the mean squared distance to the matches,
  re-matched at every evaluation), Υ the squared-difference total variation.

Defaults follow the official code (``leehomyc/Faster-High-Res-Neural-Inpainting``,
``run_texture_optimization.lua``): 100 iterations per scale, content weight 20, MRF weight 1e-4, TV weight
1e-4, patch 3, stride 2 (the thesis's α = β = 5e-6 belongs to another normalisation; both are options).
Differences, documented and recorded: torchvision's VGG-19 (``vgg19-dcbb9e9d.pth`` from the torch hub
cache, inputs normalised with the ImageNet mean/std) instead of the Caffe model; the content network's
mean colour and overlap weighting are Context Encoder's (see `context_encoder`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import DataError, Option, Sample, TrainContext, TrainingRecipe, UsageError, hookimpl
from harness.checkpoints import find_weights, load_state_dict

from .context_encoder import DECODER, ENCODER, INPUT, CentreHoleNetwork, CentreHoleRecipe, centre_hole, decoder, encoder
from .inpainting_common import composite, hole_of, require_centred_square

PAPER = (
    "Chao Yang, Xin Lu, Zhe Lin, Eli Shechtman, Oliver Wang, Hao Li. High-Resolution Image Inpainting using "
    "Multi-Scale Neural Patch Synthesis. CVPR 2017 (arXiv:1611.09969); Chao Yang, USC PhD thesis 2019, chapter 2. "
    "Official code: github.com/leehomyc/Faster-High-Res-Neural-Inpainting"
)
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG_LAYERS = {"relu3_1": 11, "relu4_1": 20}
"""Indices of torchvision's ``vgg19().features`` after which the texture features are taken."""
_VGG_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BOTTLENECK = 4000


class NPSContentNet(nn.Module):
    """128² mean-filled image in [-1, 1] → 64² centre in [-1, 1]; ELU throughout, FC bottleneck."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        deepest = ENCODER[-1] * width
        self.encoder = encoder(nn.ELU, tuple(m * width for m in ENCODER))
        code = INPUT // 2 ** len(ENCODER)
        self.bottleneck = nn.Sequential(
            nn.Conv2d(deepest, BOTTLENECK, code, bias=False), nn.BatchNorm2d(BOTTLENECK), nn.ELU(),
            nn.ConvTranspose2d(BOTTLENECK, deepest, code, bias=False), nn.BatchNorm2d(deepest), nn.ELU(),
        )
        self.decoder = decoder(deepest, nn.ELU, tuple(m * width for m in DECODER))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.bottleneck(self.encoder(x)))


def vgg19_features(path: Path) -> nn.Sequential:
    """torchvision's VGG-19 ``features`` up to relu4_1, loaded from a torchvision state dict file."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
            channels = int(item)
    net = nn.Sequential(*layers)
    state = load_state_dict(path)
    wanted = {key: state.get(f"features.{key}") for key in net.state_dict()}
    missing = sorted(key for key, value in wanted.items() if value is None)
    if missing:
        raise DataError(f"{path} is not a torchvision VGG-19 state dict: it lacks features.{missing[0]} (and {len(missing) - 1} more)")
    try:
        net.load_state_dict(wanted)
    except RuntimeError as exc:
        raise DataError(f"{path} does not fit VGG-19: {str(exc).splitlines()[0]}") from None
    return net.eval().requires_grad_(False)


# -- neural patches ---------------------------------------------------------------------------------
def feature_patches(features: torch.Tensor, size: int = 3) -> torch.Tensor:
    """(C, H, W) → (H'·W', C·size²): every ``size``×``size`` patch (valid positions), row-major."""
    return F.unfold(features[None], size)[0].T


def nearest_patches(targets: torch.Tensor, sources: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Index of the nearest source row (squared ℓ2) for every target row; ties go to the lowest index.

    Computed as ‖s‖² − 2 t·s (the ‖t‖² term does not change the argmin): the convolutional
    nearest-neighbour layer of CNNMRF, written as a matrix product.
    """
    norms = sources.square().sum(dim=1)
    out = []
    for start in range(0, len(targets), chunk):
        scores = norms[None, :] - 2.0 * targets[start : start + chunk] @ sources.T
        out.append(scores.argmin(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def patch_regions(hole: torch.Tensor, height: int, width: int, size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (H'·W',) masks of the valid ``size``² patch positions of a (H, W) feature map that touch the
    hole (targets) and that do not (sources); ``hole`` is the image hole (…, h, w), resized by max pooling."""
    small = F.adaptive_max_pool2d(hole.float().reshape(1, 1, *hole.shape[-2:]), (height, width))
    touched = F.max_pool2d(small, size, 1)[0, 0].flatten() > 0
    return touched, ~touched


def texture_loss(features: torch.Tensor, hole: torch.Tensor, stride: int = 2, size: int = 3) -> torch.Tensor:
    """E_t of one feature map (C, H, W): mean over hole patches of the squared ℓ2 to their nearest
    source patch (sources on a ``stride`` grid); the matching itself is not differentiated."""
    height, width = features.shape[-2:]
    patches = feature_patches(features, size)
    targets, sources = patch_regions(hole, height, width, size)
    grid_h, grid_w = height - size + 1, width - size + 1
    on_grid = torch.zeros(grid_h, grid_w, dtype=torch.bool, device=features.device)
    on_grid[::stride, ::stride] = True
    sources = sources & on_grid.flatten()
    if not bool(targets.any()):
        return features.sum() * 0.0
    if not bool(sources.any()):
        raise DataError(f"nps: no {size}x{size} feature patch outside the hole at {height}x{width}")
    target_rows, source_rows = patches[targets], patches[sources]
    with torch.no_grad():
        match = nearest_patches(target_rows, source_rows)
    return (target_rows - source_rows[match].detach()).square().sum(dim=1).mean()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Υ(x) = Σ (x[i, j+1] − x[i, j])² + (x[i+1, j] − x[i, j])² (thesis Eq. 2.5)."""
    return (image[..., :, 1:] - image[..., :, :-1]).square().sum() + (image[..., 1:, :] - image[..., :-1, :]).square().sum()


class NPS(CentreHoleNetwork):
    name = "nps"
    aliases = ("neural-patch-synthesis",)
    description = (
        "Multi-scale neural patch synthesis (Yang et al. 2017): ELU/FC content network initialisation, then L-BFGS "
        "on content + VGG-19 relu3_1/relu4_1 neural-patch texture + TV losses over a pyramid to 128x128."
    )
    paper = PAPER
    batch_size = 1
    model_options = ("width",)
    default_batch_size = 64
    options = (
        Option("iterations", 100, "L-BFGS iterations per scale (official code: 100)"),
        Option("content_weight", 20.0, "weight of the content term E_c (official code: 2e1)"),
        Option("texture_weight", 1e-4, "weight of the neural-patch term E_t (official code's MRF weight 1e-4; thesis alpha 5e-6)"),
        Option("tv_weight", 1e-4, "weight of the TV term (official code 1e-4; thesis beta 5e-6)"),
        Option("patch_stride", 2, "grid step of the source patches (official code: 2)"),
        Option("vgg_weights", "", "path of vgg19-dcbb9e9d.pth (default: the torch hub cache)"),
        Option("variant", "l2+adv", "content network training: l2, or l2+adv (the thesis's, lambda 0.999)",
               choices=("l2", "l2+adv")),
        Option("lambda_rec", 0.999, "content network training: reconstruction weight of l2+adv"),
        Option("lr", 2e-4, "content network training: Adam learning rate (the discriminator uses 1/10)"),
        Option("overlap", 4, "content network training: width of the 10x-weighted hole border band"),
        Option("width", 64, "content network: channels of the first layer (paper 64)"),
    )

    def build(self) -> nn.Module:
        return NPSContentNet(self.config["width"])

    def load(self, checkpoint: Path | None, device: str) -> None:
        super().load(checkpoint, device)
        path = find_weights(VGG19_FILE, self.config["vgg_weights"] or None)
        self._vgg = vgg19_features(path).to(device)

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=image.device).view(1, 3, 1, 1)
        x, out, last = (image - mean) / std, [], max(VGG_LAYERS.values())
        for index, layer in enumerate(self._vgg):
            x = layer(x)
            if index in VGG_LAYERS.values():
                out.append(x[0])
            if index == last:
                break
        return out

    def synthesize(self, known: torch.Tensor, hole: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """L-BFGS on the hole pixels of one scale: known (1,3,H,W), hole (1,1,H,W) bool, content (1,3,H,W)."""
        cfg = self.config
        variable = content.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        optimizer = torch.optim.LBFGS([variable], max_iter=cfg["iterations"], line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            image = torch.where(hole, variable, known)
            content_term = ((variable - content) * hole).square().sum()
            texture_term = sum(texture_loss(f, hole, cfg["patch_stride"]) for f in self._features(image))
            loss = cfg["content_weight"] * content_term + cfg["texture_weight"] * texture_term
            loss = loss + cfg["tv_weight"] * total_variation(image)
            loss.backward()
            return loss

        if cfg["iterations"] > 0:
            optimizer.step(closure)
        return torch.where(hole, variable.detach(), known).clamp(0, 1)

    def predict(self, samples: list[Sample]) -> list[Any]:
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        outputs = []
        for sample in samples:
            hole = hole_of(sample)
            top, left, side = require_centred_square(self.name, sample, hole)
            size = hole.shape[-1]
            if hole.shape[-2] != size or size < INPUT or not math.log2(size / INPUT).is_integer():
                raise UsageError(f"{self.name}: images must be square with side 128·2^k, got {tuple(hole.shape[-2:])}")
            image = sample["masked"].to(self._device, torch.float32)[None]
            full_hole = hole.to(self._device)[None]
            pyramid = [(image, full_hole)]
            while pyramid[-1][0].shape[-1] > INPUT:
                img, msk = pyramid[-1]
                pyramid.append((F.avg_pool2d(img, 2), F.max_pool2d(msk.float(), 2) > 0))
            coarse, coarse_hole = pyramid[-1]
            with torch.no_grad():
                centre = self.fill(coarse, centre_hole(INPUT, self._device))
            estimate = coarse.clone()
            estimate[..., INPUT // 4 : INPUT // 4 + INPUT // 2, INPUT // 4 : INPUT // 4 + INPUT // 2] = centre
            for level in range(len(pyramid) - 1, -1, -1):
                img, msk = pyramid[level]
                if estimate.shape[-1] != img.shape[-1]:
                    estimate = F.interpolate(estimate, size=img.shape[-2:], mode="bilinear", align_corners=False)
                with torch.enable_grad():
                    estimate = self.synthesize(img, msk, torch.where(msk, estimate, img))
            outputs.append(composite(estimate[0].cpu(), sample["masked"].float(), hole.cpu()))
        return outputs

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        """The content network's training (thesis Eq. 2.6-2.8: λ·ℓ2 + (1 − λ)·adv, λ = 0.999); the thesis gives
        no optimiser, so Context Encoder's is used."""
        cfg = self.config
        return CentreHoleRecipe(self.build(), dataset, context, lr=cfg["lr"], overlap=cfg["overlap"],
                                adversarial=cfg["variant"] == "l2+adv", lambda_rec=cfg["lambda_rec"],
                                network="NPS content network (ELU, FC bottleneck)")


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(NPS)
