"""`nps`: multi-scale neural patch synthesis (Yang et al., CVPR 2017; the Yang thesis, chapter 2).

Two parts:

* the **content network** f: Context Encoder's encoder/decoder with every activation an ELU and a fully
  connected bottleneck (a 4×4 convolution of the 512×4×4 code to 4000 values, then a 4×4 up-convolution
  back to 512×4×4, as the official Context Encoder code builds its "fc" layer) instead of the channel-wise
  one; 128×128 mean-filled input, 64×64 centre out (thesis Fig. 2.3), under Context Encoder's mask
  convention (``mask_convention``, see `context_encoder`). It is the trainable part: it needs
  ``--checkpoint`` (``harness train --method nps`` trains it with Context Encoder's recipe;
  no source states its training length, see `NPS`).
* the **texture optimisation**: over a pyramid halving down to 128×128 (3 scales for 512×512 images, 1 for
  128×128), L-BFGS optimises the hole's pixels, started from the content network's output (coarsest scale)
  or the upsampled coarser result. The option ``objective`` picks one of two complete objectives, each with
  its own weights, feature layers and preprocessing; their weights are not interchangeable:

  - ``official`` (default; ``leehomyc/Faster-High-Res-Neural-Inpainting``, ``run_texture_optimization.lua``
    → ``transfer_CNNMRF_wrapper.lua``, ``mylib/{content,mrf,tv}.lua``): VGG-19 on Caffe-preprocessed input
    (BGR, 0–255, the Caffe mean removed); 20 × the mean squared error of relu4_2 features to those of the
    content image (the content network's output pasted into the image, at the scale's size); 1e-4 × the
    CNNMRF term on relu4_1: each 3×3 feature patch of a stride-2 grid touching the hole is matched, once per
    scale, to the stride-2 patch outside the hole of highest normalised cross-correlation, and pulled towards
    it (½·squared ℓ2, each feature position divided by the number of grid patches covering it); 1e-4 × ½ ×
    the squared-difference total variation of the Caffe-scale image.
  - ``thesis`` (Eq. 2.1–2.5): the squared ℓ2 distance in pixels ([0, 1]) between the hole and the content
    constraint (the content network's output at the coarsest scale, the upsampled coarser result above),
    α = 5e-6 × E_t on relu3_1 and relu4_1 (each 3×3 patch touching the hole matched to its squared-ℓ2
    nearest neighbour among the stride-2 patches outside the hole, re-matched at every evaluation; the mean
    squared distance), β = 5e-6 × Υ (Eq. 2.5).

Both take 100 L-BFGS iterations per scale. ``content_weight``, ``texture_weight`` and ``tv_weight`` override the
objective's own weights (recorded as options). VGG-19 comes from a local file: with ``preprocess=caffe`` the
Caffe VGG-19 (``VGG_ILSVRC_19_layers``, what the official code loads) in torchvision's layout
(``vgg19-d01eb7cb.pth`` as converted for neural-style-pt), with ``preprocess=torchvision`` torchvision's
``vgg19-dcbb9e9d.pth`` on ImageNet mean/std-normalised RGB, whose features have another scale (so neither
objective's weights keep their balance there).
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

from .context_encoder import (
    DECODER, ENCODER, INPUT, CentreHoleNetwork, CentreHoleRecipe, centre_hole, centre_hole_options, dcgan_init, decoder,
    encoder,
)
from .inpainting_common import composite, hole_of

PAPER = (
    "Chao Yang, Xin Lu, Zhe Lin, Eli Shechtman, Oliver Wang, Hao Li. High-Resolution Image Inpainting using "
    "Multi-Scale Neural Patch Synthesis. CVPR 2017 (arXiv:1611.09969); Chao Yang, USC PhD thesis 2019, chapter 2. "
    "Official code: github.com/leehomyc/Faster-High-Res-Neural-Inpainting"
)
VGG19_FILE = "vgg19-dcbb9e9d.pth"
"""torchvision's VGG-19 (``preprocess=torchvision``)."""
VGG19_CAFFE_FILE = "vgg19-d01eb7cb.pth"
"""The Caffe VGG-19 in torchvision's layout (``preprocess=caffe``)."""
VGG_LAYERS = {"relu3_1": 11, "relu4_1": 20, "relu4_2": 22}
"""Indices of ``vgg19().features`` after which features are taken (loadcaffe's 12, 21, 23 count from 1)."""
_VGG_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
BOTTLENECK = 4000
OBJECTIVES = {
    # layers of E_c (None: pixels), of the texture term, and the weights (content, texture, tv)
    "official": {"content": "relu4_2", "texture": ("relu4_1",), "weights": (20.0, 1e-4, 1e-4)},
    "thesis": {"content": None, "texture": ("relu3_1", "relu4_1"), "weights": (1.0, 5e-6, 5e-6)},
}
PATCH = 3


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
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.bottleneck(self.encoder(x)))


def vgg19_features(path: Path) -> nn.Sequential:
    """VGG-19 ``features`` up to relu4_2, loaded from a state dict file in torchvision's layout."""
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
        raise DataError(f"{path} is not a VGG-19 state dict in torchvision's layout: it lacks features.{missing[0]} "
                        f"(and {len(missing) - 1} more)")
    try:
        net.load_state_dict(wanted)
    except RuntimeError as exc:
        raise DataError(f"{path} does not fit VGG-19: {str(exc).splitlines()[0]}") from None
    return net.eval().requires_grad_(False)


def caffe_preprocess(image: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) RGB in [0, 1] → Caffe's VGG input: BGR, ×255, the Caffe mean removed."""
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return image.flip(1) * 255.0 - mean


def torchvision_preprocess(image: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) RGB in [0, 1] → torchvision's VGG input: ImageNet mean/std normalised RGB."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image - mean) / std


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


def most_correlated_patches(targets: torch.Tensor, sources: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Index of the source row of highest normalised cross-correlation t·s / (‖t‖‖s‖) for every target row
    (``mylib/mrf.lua``: the response divided by both patch norms, then the maximum); ties go to the lowest index."""
    unit = sources / sources.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = []
    for start in range(0, len(targets), chunk):
        rows = targets[start : start + chunk]
        scores = rows @ unit.T / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
        out.append(scores.argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def patch_regions(hole: torch.Tensor, height: int, width: int, size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (H'·W',) masks of the valid ``size``² patch positions of a (H, W) feature map that touch the
    hole (targets) and that do not (sources); ``hole`` is the image hole (…, h, w), resized by max pooling."""
    small = F.adaptive_max_pool2d(hole.float().reshape(1, 1, *hole.shape[-2:]), (height, width))
    touched = F.max_pool2d(small, size, 1)[0, 0].flatten() > 0
    return touched, ~touched


def stride_grid(height: int, width: int, stride: int, size: int, device: torch.device | str) -> torch.Tensor:
    """Boolean (H'·W',) mask of the valid patch positions on a ``stride`` grid from the top-left corner."""
    grid = torch.zeros(height - size + 1, width - size + 1, dtype=torch.bool, device=device)
    grid[::stride, ::stride] = True
    return grid.flatten()


def texture_loss(features: torch.Tensor, hole: torch.Tensor, stride: int = 2, size: int = 3) -> torch.Tensor:
    """The thesis's E_t (Eq. 2.3-2.4) of one feature map (C, H, W): mean over hole patches of the squared ℓ2 to
    their nearest source patch (sources on a ``stride`` grid); the matching itself is not differentiated."""
    height, width = features.shape[-2:]
    patches = feature_patches(features, size)
    targets, sources = patch_regions(hole, height, width, size)
    sources = sources & stride_grid(height, width, stride, size, features.device)
    if not bool(targets.any()):
        return features.sum() * 0.0
    if not bool(sources.any()):
        raise DataError(f"nps: no {size}x{size} feature patch outside the hole at {height}x{width}")
    target_rows, source_rows = patches[targets], patches[sources]
    with torch.no_grad():
        match = nearest_patches(target_rows, source_rows)
    return (target_rows - source_rows[match].detach()).square().sum(dim=1).mean()


class MRFTerm:
    """The official CNNMRF term on one feature map, with its matches fixed (``mylib/mrf.lua`` computes them at
    the first evaluation of a scale and keeps them): synthesis patches on a stride grid touching the hole, each
    paired with the stride-grid patch outside the hole (of the scale's starting image) of highest normalised
    cross-correlation. `loss` is ½ Σ (patch − match)² with every feature position divided by the number of grid
    patches covering it, whose gradient is exactly the module's ``gradTO``."""

    def __init__(self, features: torch.Tensor, hole: torch.Tensor, stride: int = 2, size: int = PATCH) -> None:
        channels, height, width = features.shape
        self.size, self.shape = size, (height, width)
        grid = stride_grid(height, width, stride, size, features.device)
        touched, outside = patch_regions(hole, height, width, size)
        self.synthesis = touched & grid
        targets = outside & grid
        if bool(self.synthesis.any()) and not bool(targets.any()):
            raise DataError(f"nps: no {size}x{size} feature patch outside the hole at {height}x{width}")
        patches = feature_patches(features.detach(), size)
        self.matched = patches[targets][most_correlated_patches(patches[self.synthesis], patches[targets])]
        cover = F.fold(grid.float().expand(size * size, -1)[None], (height, width), size)  # grid patches per position
        per_position = F.unfold(1.0 / cover.clamp_min(1.0), size)[0].T  # (H'·W', size²)
        self.weight = per_position[self.synthesis].repeat(1, channels)  # unfold's rows are channel-major

    def loss(self, features: torch.Tensor) -> torch.Tensor:
        if not bool(self.synthesis.any()):
            return features.sum() * 0.0
        rows = feature_patches(features, self.size)[self.synthesis]
        return 0.5 * (self.weight * (rows - self.matched).square()).sum()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Υ(x) = Σ (x[i, j+1] − x[i, j])² + (x[i+1, j] − x[i, j])² (thesis Eq. 2.5)."""
    return (image[..., :, 1:] - image[..., :, :-1]).square().sum() + (image[..., 1:, :] - image[..., :-1, :]).square().sum()


def official_total_variation(image: torch.Tensor) -> torch.Tensor:
    """``mylib/tv.lua``'s term, whose gradient the module writes directly: ½ Σ over i < H−1, j < W−1 of
    (x[i, j] − x[i, j+1])² + (x[i, j] − x[i+1, j])²."""
    core = image[..., :-1, :-1]
    return 0.5 * ((core - image[..., :-1, 1:]).square().sum() + (core - image[..., 1:, :-1]).square().sum())


class NPS(CentreHoleNetwork):
    """The content network and the texture optimisation (module docstring).

    No ``default_steps``: no source states the content network's training length. The thesis (§2.3.3) gives
    the loss only (λ = 0.999, "the same way as the Context Encoder") and says its optimiser, rate, epochs and
    batch size nowhere; the official repository (leehomyc/Faster-High-Res-Neural-Inpainting) releases the
    trained content model and the inference scripts, no training script. Context Encoder's 5,825 steps
    (train.lua's 25 epochs) would be a guess, so `harness train` uses the harness default and the paper
    suite's dry-run says the method declares no schedule.
    """

    name = "nps"
    aliases = ("neural-patch-synthesis",)
    description = (
        "Multi-scale neural patch synthesis (Yang et al. 2017): ELU/FC content network initialisation, then L-BFGS "
        "over a pyramid to 128x128 on the official objective (VGG-19 relu4_2 content + relu4_1 CNNMRF + TV) or the "
        "thesis's (pixel content + relu3_1/relu4_1 neural patches + TV)."
    )
    paper = PAPER
    batch_size = 1
    model_options = ("width", "mask_convention")
    default_batch_size = 64
    options = (
        Option("objective", "official", "texture optimisation: official (relu4_2 content MSE x 20, relu4_1 CNNMRF x "
               "1e-4, TV x 1e-4 on the Caffe-scale image) or thesis (Eq. 2.1-2.5: pixel content, relu3_1+relu4_1 "
               "neural patches and TV, alpha = beta = 5e-6)", choices=tuple(OBJECTIVES)),
        Option("iterations", 100, "L-BFGS iterations per scale (official code: 100)"),
        Option("content_weight", None, "weight of the content term (default: the objective's, official 20, thesis 1)",
               type=float),
        Option("texture_weight", None, "weight of the texture term (default: the objective's, official MRF 1e-4, "
               "thesis alpha 5e-6)", type=float),
        Option("tv_weight", None, "weight of the TV term (default: the objective's, official 1e-4, thesis beta 5e-6)",
               type=float),
        Option("patch_stride", 2, "grid step of the patches outside the hole, and of the synthesis patches of the "
               "official objective (official code: 2)"),
        Option("preprocess", "caffe", f"VGG-19 input and weights: caffe (BGR, 0-255, Caffe mean removed; "
               f"{VGG19_CAFFE_FILE}, the official code's Caffe model) or torchvision (ImageNet mean/std; {VGG19_FILE})",
               choices=("caffe", "torchvision")),
        Option("vgg_weights", "", "path of the VGG-19 state dict (default: the preprocess's file in the torch hub cache)"),
        *centre_hole_options("nps"),
        Option("width", 64, "content network: channels of the first layer (paper 64)"),
    )

    def build(self) -> nn.Module:
        return NPSContentNet(self.config["width"])

    def load(self, checkpoint: Path | None, device: str) -> None:
        super().load(checkpoint, device)
        caffe = self.config["preprocess"] == "caffe"
        path = find_weights(VGG19_CAFFE_FILE if caffe else VGG19_FILE, self.config["vgg_weights"] or None,
                            option="--option vgg_weights=PATH")
        self._vgg = vgg19_features(path).to(device)
        self._preprocess = caffe_preprocess if caffe else torchvision_preprocess

    def weights(self) -> tuple[float, float, float]:
        """(content, texture, tv): the objective's, each overridden by its option when given."""
        cfg = self.config
        defaults = OBJECTIVES[cfg["objective"]]["weights"]
        given = (cfg["content_weight"], cfg["texture_weight"], cfg["tv_weight"])
        return tuple(d if g is None else float(g) for d, g in zip(defaults, given))  # type: ignore[return-value]

    def _features(self, network_input: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The (C, H, W) features of a preprocessed (1,3,H,W) image after each named layer."""
        wanted = {VGG_LAYERS[name]: name for name in layers}
        x, out, last = network_input, {}, max(wanted)
        for index, layer in enumerate(self._vgg):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x[0]
            if index == last:
                break
        return out

    def synthesize(self, known: torch.Tensor, hole: torch.Tensor, start: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """L-BFGS on the hole pixels of one scale, all (1,·,H,W): ``known`` image, bool ``hole``, ``start`` (the
        initial image) and ``content`` (the content image of the official objective); [0, 1] RGB."""
        cfg = self.config
        spec = OBJECTIVES[cfg["objective"]]
        w_content, w_texture, w_tv = self.weights()
        official = cfg["objective"] == "official"
        variable = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        optimizer = torch.optim.LBFGS([variable], max_iter=cfg["iterations"], line_search_fn="strong_wolfe")
        layers = tuple(spec["texture"]) + ((spec["content"],) if spec["content"] else ())
        if official:
            with torch.no_grad():
                content_target = self._features(self._preprocess(content), (spec["content"],))[spec["content"]]
                initial = self._features(self._preprocess(torch.where(hole, start, known)), tuple(spec["texture"]))
            mrf = {name: MRFTerm(initial[name], hole, cfg["patch_stride"]) for name in spec["texture"]}

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            image = torch.where(hole, variable, known)
            network_input = self._preprocess(image)
            features = self._features(network_input, layers)
            if official:
                content_term = (features[spec["content"]] - content_target).square().mean()
                texture_term = sum(mrf[name].loss(features[name]) for name in spec["texture"])
                tv_term = official_total_variation(network_input)
            else:
                content_term = ((variable - start) * hole).square().sum()
                texture_term = sum(texture_loss(features[name], hole, cfg["patch_stride"]) for name in spec["texture"])
                tv_term = total_variation(image)
            loss = w_content * content_term + w_texture * texture_term + w_tv * tv_term
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
            self.hidden_square(sample, hole)
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
                centre = self.fill(coarse, centre_hole(INPUT, self._device, self.inset))
            quarter, half = INPUT // 4, INPUT // 2
            canvas = coarse.clone()
            canvas[..., quarter : quarter + half, quarter : quarter + half] = centre
            estimate = torch.where(coarse_hole, canvas, coarse)
            # the official content image: the content network's output pasted at full size, then each scale's size
            fake = torch.where(full_hole, F.interpolate(estimate, size=image.shape[-2:], mode="bilinear", align_corners=False), image)
            for level in range(len(pyramid) - 1, -1, -1):
                img, msk = pyramid[level]
                if estimate.shape[-1] != img.shape[-1]:
                    estimate = F.interpolate(estimate, size=img.shape[-2:], mode="bilinear", align_corners=False)
                content = F.avg_pool2d(fake, 2 ** level) if level else fake
                with torch.enable_grad():
                    estimate = self.synthesize(img, msk, torch.where(msk, estimate, img), content)
            outputs.append(composite(estimate[0].cpu(), sample["masked"].float(), hole.cpu()))
        return outputs

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        """The content network's training (thesis Eq. 2.6-2.8: λ·ℓ2 + (1 − λ)·adv, λ = 0.999) with Context
        Encoder's ``train.lua`` recipe (the thesis gives no optimiser)."""
        return CentreHoleRecipe(self.build(), dataset, context, self.config, network="NPS content network (ELU, FC bottleneck)")


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(NPS)
