"""`spt`: Song, Zhang, Liu, Guo, Mei, "Unpaired Person Image Generation With Semantic Parsing
Transformation" (TPAMI 2020; CVPR 2019 without the background network).

Pose transfer from unpaired data in two modules (networks: `spt_networks`; parts and pseudo-labels:
`spt_parts`):

* H_S predicts the target-pose semantic map from the source map, the source pose and the target pose
  (heat maps + PG² pose masks); it is pretrained on *pseudo pairs*: for each source map, the training
  map of the same clothing type and a different pose that matches it best part by part after per-part
  affine alignment (Eqs. 1–2), searched among N random training images (N = 500 in the paper).
* H_A renders the image: a foreground U-Net with Def-GAN deformable skips conditioned on the predicted
  map, a background inpainting U-Net on the person-free source, composed by the predicted map (Eq. 6).

One training recipe runs the paper's schedule as stages of one step count (option ``stages``):

1. H_S and D_S on pseudo pairs: L_S = L_adv + λ_ce·L_ce (Eqs. 3–5, λ_ce = 100); alongside, the pose
   detector P used by H_A's pose loss is fitted to the training images' heat maps (MSE), then frozen.
2. Algorithm 1 with H_S fixed: H_A (foreground and background streams, step 4) on L_A = L_adv + λ_pose·L_pose
   + λ_cont·L_cont + λ_sty·L_sty + L_face (Eqs. 7–12) through the cycle source → target pose → source pose;
   D_A and D_F; then the background U-Net on α·L_rec + β·L_adv (Eq. 13; α = 1, β = 10, step 8) and D_B.
3. End to end (Algorithm 2, step 4): H_S, H_A's foreground, D_A, D_F jointly on L_A^total, the background
   network fixed; H_S learns only through L_A (option ``e2e_parsing_loss`` adds L_S on the pseudo pairs,
   which ties H_S to the search errors this stage exists to correct, §3.4, and trains D_S).

λ_pose, λ_cont, λ_sty and the face loss come from the paper's per-dataset setting (option ``preset``,
``deepfashion`` or ``market``, chosen by the dataset's `PoseImages.training_preset`); each option given
overrides its preset value.

DeepFashion's progressive growing (option ``progressive``; the paper: joint learning at 128×128, then images
at 256×256 "with progressive growing"; the demo's global generator + local enhancer): stages 1–3 run at half
resolution (images 2× average-pooled, maps by 2×2 majority, keypoints halved, every pose input redrawn at
that size), H_A's foreground generator being the global U-Net alone (`spt_networks.ProgressiveForeground`);
a fourth stage ``grow`` trains at full resolution: the local enhancer fades in, alpha rising linearly from 0 to
1 over the first ``fade`` of the stage, the global generator frozen for the first ``fix_global`` of it (the
demo's ``niter_fix_global``), H_S and the background network fixed, both at half resolution with their outputs
upsampled. D_A and D_F keep learning at full resolution: the demo continues its 128×128 PatchGAN weights at
256×256 for D_A; for faces it defines a fade-in PatchGAN but calls it without alpha (its half-resolution
path only), and here D_F simply continues, the crops being 32×32 at both resolutions up to 256×256. The pose
loss of ``grow`` judges the 2× average-pooled images, since P learnt at half resolution.

The face loss (option ``face``, DeepFashion's; the paper omits it on Market-1501) is D_F, the demo's
PatchGAN, on face crops of both cycle images (Ĩ_pt by the target pose, Ĩ_ps by the source pose), real
crops of the source by its pose; the crop is the demo's box around the visible head keypoints (option
``face_crop``; `face_crops`), and faces without a head keypoint are masked out of the loss.
With ``aux_backgrounds`` (the paper: Places2 val), the background U-Net inpaints the batch's person
silhouettes Ω(S_ps) cut out of auxiliary images (`background_data`), L_rec over the whole image.

Training is unpaired: it draws single images and unrelated target poses (`PoseImages.images` /
`load_image`) and never sees a target image. Inference takes the source's semantic map
(``source_parsing``, the task's optional input; the paper's input from a LIP parser).

Official weights: the demo's ``latest_net_G.pth`` is G_A^F alone (progressive, width 64, DeepFashion 256×256)
and renders by the target's own parsing map (TS-GT). It loads with ``progressive=true background=false
target_map=dataset``: no H_S is built, the target map comes from the dataset (`demo_state`; docs/spt.md).

Table 4's "Ground-Truth" ablation (option ``hs_labels=true``) trains H_S on true pairs instead of the
searched pseudo pairs: the target of a source map is the map of another training image of the same
person (`PoseImages.images`' ``pid``), in that image's pose, drawn per step; the sources of those steps
are drawn among the images whose person has another image. Table 4 scores H_S "trained in two-stage",
before the end-to-end stage changes it: ``stages=1,0,0`` trains H_S (and P) alone.

Method ``spt-hs`` (`SPTParsing`) serves task ``pose-parsing`` with the same checkpoint: H_S's predicted
target map, the most likely class per pixel. It is a second method rather than a second task of ``spt``
because `Method.predict` is not told the task, and the two tasks give a method the same fields
(``pose-transfer``'s optional ``source_parsing`` is ``pose-parsing``'s input) while expecting an image
from one and a label map from the other.

Where the paper is silent (recorded in the training manifest): GAN losses are LSGAN, as the official
demo code (the paper writes the log form); L_ce is the per-pixel mean rather than the sum; Eq. 9's
α_i are 1 on RGB, relu1_2 and relu2_1 (the paper's conv1_2/conv2_1; the demo: relu2_1 only); the style
loss uses relu2_1 with per-class Gram matrices F·Fᵀ/(H·W) of every class but background and face,
counted where the class is present in both maps and averaged over the 8 classes (the demo's; without VGG
weights, ``vgg=none``, both
losses use the pixels only: content Eq. 9's RGB term, style per-class colour Gram matrices, which carry
the source's clothing colours to the target pose); predicted maps enter the style loss and
E'_S as softmax probabilities, the composition as the hard foreground Ω, D_A as one-hot maps (as the demo's
real and fake maps; option ``d_maps``) whose gradient is the probabilities' (straight-through); the face
crop's size (an eighth of the image height, at least 32: 32x32 at 256x256); no gradient clipping (the demo
clips before backward, which clips nothing; option ``clip``). Without auxiliary backgrounds the
background network learns on the training images: the hole is another person's silhouette, the loss
counts only the image's own background, and D_B sees both images with the image's own person blanked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
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
from harness.train.samplers import step_rng, uniform_batch
from harness_plugins.shared.pose_images import PoseImages
from harness_plugins.shared.pose_maps import limb_masks, part_affines, scale_keypoints
from harness_plugins.shared.vgg_features import VGGFeatures, gram

from .background_data import aux_images, load_background
from .face_crops import FACE_CROPS, MIN_KEYPOINTS, crop_faces, crop_side, face_transforms
from .spt_networks import (
    DOWNSAMPLINGS,
    GLOBAL_WARP_LEVELS,
    SPTGenerator,
    discriminator,
    double,
    foreground_mask,
    halve,
    halve_labels,
    initialised,
    pose_detector,
)
from .spt_parts import CLASSES, one_hot, pose_inputs, search_pseudo_label

PAPER = (
    "Sijie Song, Wei Zhang, Jiaying Liu, Zongming Guo, Tao Mei. Unpaired Person Image Generation With Semantic "
    "Parsing Transformation. IEEE TPAMI 2020, DOI 10.1109/TPAMI.2020.2992105 (CVPR 2019 version: arXiv:1904.03379). "
    "Official demo code: github.com/SijieSong/person_generation_spt"
)
STYLE_CLASSES = (2, 3, 4, 5, 6, 7, 8, 9)
"""Every class but background and face: the demo's style classes (its 9 foreground channels minus the first, face),
hair to right leg in the contract's order, which is the demo's."""
VGG_TAPS = (3, 6)
"""relu1_2 and relu2_1 of torchvision's VGG-16/19 ``features`` (identical first layers)."""
STYLE_TAP = 1
"""Index in `VGG_TAPS` of the style layer (relu2_1, as the demo)."""
PRESETS: dict[str, dict[str, Any]] = {
    "deepfashion": {"lambda_pose": 700.0, "lambda_cont": 0.03, "lambda_sty": 1.0, "face": True},
    "market": {"lambda_pose": 1.0, "lambda_cont": 0.003, "lambda_sty": 1.0, "face": False},
}
"""The paper's training settings per dataset (§4.1), the loss weights and the face loss."""
PRESET_BATCH = {"deepfashion": 4, "market": 16}
"""The paper's batch per preset (§4.1), the default when ``harness train`` gets no ``--batch-size``."""
TARGET_MAPS = ("predicted", "dataset")
STAGES = ("hs", "ha", "e2e")
PROGRESSIVE_STAGES = STAGES + ("grow",)
PSEUDO_STREAM = 91
"""Random stream of the candidate draw of an image's pseudo-label search (a pure function of seed and image)."""
AUX_STREAM = 92
"""Random stream (with seed and step) of the auxiliary background images of a step's batch."""
TRUE_STREAM = 93
"""Random stream (with seed and step) of the true targets of a step's sources (``hs_labels=true``)."""
HS_LABELS = ("search", "true")
"""What H_S learns from: the searched pseudo pairs (the paper's) or true pairs (Table 4's "Ground-Truth" row)."""


def check_size(size: tuple[int, int], where: str, progressive: bool = False) -> None:
    if progressive:
        step = 2 ** (DOWNSAMPLINGS + 1)
        why = f"progressive SPT halves the image once and its U-Nets {DOWNSAMPLINGS} times more"
    else:
        step = 2**DOWNSAMPLINGS
        why = f"SPT's U-Nets halve the image {DOWNSAMPLINGS} times"
    if size[0] % step or size[1] % step:
        raise DataError(f"{where}: {why}, so its sides must be multiples of {step}; got {size[0]}x{size[1]} "
                        "(the paper: 128x64 Market-1501, 256x256 DeepFashion grown from 128x128)")


def stage_lengths(given: tuple[float | str, ...], steps: int, names: tuple[str, ...] = STAGES) -> dict[str, int]:
    """Steps of each stage (H_S pretraining, H_A training, end-to-end fine-tuning, and with progressive growing
    the full-resolution stage) from step fractions; cumulative rounding, the last stage takes the rest."""
    wanted = f"{len(names)} numbers, the step fractions of {', '.join(names)}"
    try:
        fractions = tuple(float(f) for f in given)
    except ValueError:
        raise UsageError(f"spt: option stages needs {wanted}; got {given}") from None
    if len(fractions) != len(names) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        extra = " (progressive=true adds the stage grow)" if len(names) > len(STAGES) else ""
        raise UsageError(f"spt: option stages needs {wanted}{extra}, non-negative; got {fractions}")
    total, done, lengths = sum(fractions), 0, {}
    for index, name in enumerate(names[:-1]):
        end = round(sum(fractions[: index + 1]) / total * steps)
        lengths[name], done = end - done, end
    lengths[names[-1]] = steps - done
    return lengths


def fade_schedule(steps: int, fade: float, fix_global: float) -> tuple[int, int]:
    """Steps of the grow stage over which alpha rises to 1, and during which the global generator is frozen."""
    return round(fade * steps), round(fix_global * steps)


def lsgan(score: torch.Tensor, real: bool, valid: torch.Tensor | None = None) -> torch.Tensor:
    """LSGAN: mean squared distance of the patch scores to 1 (real) or 0 (fake). With ``valid`` (B,) bool,
    the mean over the valid samples only (all valid: the plain mean); none valid: 0."""
    if valid is None:
        return F.mse_loss(score, torch.full_like(score, 1.0 if real else 0.0))
    per_sample = (score - (1.0 if real else 0.0)).square().flatten(1).mean(dim=1)
    weights = valid.to(per_sample.dtype)
    return (per_sample * weights).sum() / weights.sum().clamp_min(1.0)


def d_loss(d: nn.Module, real: torch.Tensor, fakes: list[torch.Tensor],
           valid: list[torch.Tensor] | None = None) -> torch.Tensor:
    """LSGAN discriminator loss, halved as the demo's; several fakes share the fake half. ``valid``: per-sample
    masks of the real and of each fake (face crops of faces that cannot be cropped do not count)."""
    masks: list[torch.Tensor | None] = list(valid) if valid is not None else [None] * (len(fakes) + 1)
    fake = sum(lsgan(d(f.detach()), False, m) for f, m in zip(fakes, masks[1:], strict=True)) / len(fakes)
    return 0.5 * (lsgan(d(real), True, masks[0]) + fake)


def weighted_cross_entropy(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 3: −S* ⊗ log S̃ ⊗ (1 + M), averaged over pixels (the paper's ℓ1 sum, per pixel)."""
    log = torch.log(prediction.clamp_min(1e-8))
    return -((target * log).sum(dim=1, keepdim=True) * (1.0 + mask)).mean()


def judged_map(parsing: torch.Tensor, maps: str) -> torch.Tensor:
    """The map D_A sees beside an image (classes 1..9). ``hard``: the one-hot map of the most likely labels, as
    the demo feeds D_A hard maps for real and fake alike (so softness cannot tell a fake); its gradient is the
    soft map's (straight-through), so H_S still learns from D_A end to end. ``soft``: the probabilities."""
    if maps == "soft":
        return parsing[:, 1:]
    hard = F.one_hot(parsing.argmax(dim=1), CLASSES).movedim(-1, 1).to(parsing.dtype)
    return (hard + (parsing - parsing.detach()))[:, 1:]


def presence(parsing: torch.Tensor) -> torch.Tensor:
    """(B, 10): which classes a (one-hot or predicted) map shows, by its per-pixel most likely label."""
    return F.one_hot(parsing.argmax(dim=1), CLASSES).flatten(1, 2).amax(dim=1).to(parsing.dtype)


def style_loss(features_a: torch.Tensor, features_b: torch.Tensor, parsing_a: torch.Tensor, parsing_b: torch.Tensor) -> torch.Tensor:
    """Eq. 10's L^sty: ‖G(Λ(I1) ⊗ Ψ_l(S1)) − G(Λ(I2) ⊗ Ψ_l(S2))‖² over the `STYLE_CLASSES` l, Ψ_l the map of
    class l downsampled to the features (area), G = F·Fᵀ/(H·W); a class counts where both maps show it. Averaged
    over classes, Gram entries and samples, a class not shown counting 0: the demo's ``MSELoss`` of the
    visibility-masked (B, 8, C, C) Gram stacks (the paper's Σ_l is 8 times that)."""
    size = features_a.shape[-2:]
    pooled_a = F.adaptive_avg_pool2d(parsing_a, size)
    pooled_b = F.adaptive_avg_pool2d(parsing_b, size)
    visible = presence(parsing_a) * presence(parsing_b)
    channels = features_a.shape[1]
    total = features_a.new_zeros(())
    for label in STYLE_CLASSES:
        gram_a = gram(features_a * pooled_a[:, label : label + 1]) * channels  # harness gram divides by C·H·W
        gram_b = gram(features_b * pooled_b[:, label : label + 1]) * channels
        total = total + ((gram_a - gram_b).square().mean(dim=(1, 2)) * visible[:, label]).mean()
    return total / len(STYLE_CLASSES)


class SPTRecipe(TrainingRecipe):
    """The three stages of SPT (module docstring); exports the `SPTGenerator` (H_S + H_A)."""

    def __init__(self, method: "SPT", dataset: Any, context: TrainContext) -> None:
        if not isinstance(dataset, PoseImages):
            raise UsageError(f"spt trains on a pose-transfer dataset with single-image access (PoseImages), "
                             f"not {dataset.name!r}")
        self.preset = method.preset_for(dataset)
        preset = PRESETS[self.preset]
        cfg = self.cfg = {**method.config, **{key: preset[key] if method.config[key] is None else method.config[key]
                                              for key in preset}}
        self.context, self.dataset = context, dataset
        self.rows = dataset.images("train")
        if len(self.rows) < 2:
            raise DataError(f"{dataset.name}: SPT needs at least 2 training images, found {len(self.rows)}")
        first = dataset.load_image(self.rows[0])
        if "parsing" not in first:
            raise DataError(f"{dataset.name}: SPT trains on semantic parsing maps, and the training images have none; "
                            "give the dataset its parsing-map folder (--dataset-option parsing=FOLDER)")
        self.size = tuple(int(v) for v in first["image"].shape[-2:])
        self.progressive = bool(cfg["progressive"])
        check_size(self.size, dataset.name, self.progressive)
        self.half = (self.size[0] // 2, self.size[1] // 2)
        self.stages = stage_lengths(tuple(cfg["stages"]), context.steps,
                                    PROGRESSIVE_STAGES if self.progressive else STAGES)
        self.fade_steps, self.fix_steps = fade_schedule(self.stages.get("grow", 0), cfg["fade"], cfg["fix_global"])
        if cfg["aux_backgrounds"] is not None and not cfg["background"]:
            raise UsageError("spt: option aux_backgrounds trains the background network, which background=false removes")
        self.aux = aux_images(cfg["aux_backgrounds"]) if cfg["aux_backgrounds"] is not None else None
        side = crop_side(self.size[0])
        face_sides = f"{side}x{side}"
        if self.progressive:
            face_sides = f"{crop_side(self.half[0])}x{crop_side(self.half[0])} at {self.half[0]} px height, " + face_sides
        self.maps: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.pseudo: dict[int, int | None] = {}
        self.partners, self.paired = self.true_partners() if cfg["hs_labels"] == "true" else ({}, [])
        device = context.device
        generator = initialised(SPTGenerator(cfg["width"], cfg["background"], self.progressive)).to(device)
        self.vgg = None if cfg["vgg"] == "none" else VGGFeatures(cfg["vgg"], VGG_TAPS, cfg["vgg_weights"]).to(device)
        counts = {name: count_parameters(module).params for name, module in generator.named_children()}
        if self.progressive:
            counts.update({f"fg.{name}": count_parameters(module).params for name, module in generator.fg.named_children()})
        if self.vgg is None:
            content_layers, style_layer = "MSE on RGB only, no VGG", "RGB"
        else:
            content_layers, style_layer = f"MSE on RGB, relu1_2, relu2_1 of {cfg['vgg']}", "relu2_1"
        super().__init__(
            description={
                "preset": (f"{self.preset} (" + ("given" if method.config["preset"] else
                                                 f"dataset {dataset.name}'s" if dataset.training_preset else
                                                 "default: the dataset names none") +
                           f"): {PRESETS[self.preset]}; options given override it; the paper's batch for it: "
                           f"{PRESET_BATCH[self.preset]}, this run: {context.batch_size}"),
                "stages": self.stages,
                "end_to_end": "H_S, D_A, D_F and H_A's foreground on L_A (Algorithm 2, step 4), the background network "
                              "fixed" + (f"; plus L_S ({cfg['lambda_ce']:g} x cross entropy to the pseudo labels + "
                                         "L_S^adv, D_S trained): e2e_parsing_loss" if cfg["e2e_parsing_loss"] else
                                         "; no L_S (the paper's)"),
                "parameters": counts,
                "images": len(self.rows), "image_size": list(self.size),
                "pseudo_labels": self.labels_description(),
                "losses": {
                    "H_S": f"LSGAN + {cfg['lambda_ce']:g} x weighted cross entropy (1 + M_t), per-pixel mean",
                    "H_A": f"LSGAN (D_A on image + 9 parsing channels, {cfg['d_maps']} maps for the fakes"
                           f"{' (one-hot, straight-through gradient)' if cfg['d_maps'] == 'hard' else ' (softmax)'}, "
                           f"both cycle images) + {cfg['lambda_pose']:g} x pose MSE "
                           f"(frozen P) + {cfg['lambda_cont']:g} x content ({content_layers}, weights 1) + "
                           f"{cfg['lambda_sty']:g} x semantic style ({style_layer} Gram per class of classes "
                           f"{list(STYLE_CLASSES)}, mean over classes as the demo); trains the foreground generator and "
                           "the background stream (Algorithm 1, step 4)",
                    "background": self.background_description(),
                    "face": (f"LSGAN of D_F (PatchGAN on {face_sides} face crops: {self.face_crop_description()}; "
                             "other faces masked) on both cycle images, weight 1, added to L_A; D_F: real "
                             "crops of the source by its pose") if cfg["face"] else "off (the paper's Market-1501 setting)",
                    "P": "MSE to the training images' heat maps (stage hs), frozen afterwards",
                },
                "optimizer": f"Adam lr {cfg['lr']} betas ({cfg['beta1']}, 0.999) per network; " + (
                    "no gradient clipping (the demo's clip_grad_norm runs before backward and clips nothing)"
                    if cfg["clip"] is None else f"gradient norm clipped at {cfg['clip']:g} for the generators"),
                "pose_inputs": f"Gaussian heat maps sigma {cfg['sigma']:g}; PG² pose mask (Def-GAN body mask)",
                "progressive": self.growing_description(),
            },
            exported="generator",
        )
        self.networks.update(generator=generator, P=initialised(pose_detector(cfg["width"])).to(device))
        self.networks["D_S"] = initialised(discriminator(CLASSES, cfg["ndf"])).to(device)
        self.networks["D_A"] = initialised(discriminator(3 + CLASSES - 1, cfg["ndf"])).to(device)
        if cfg["background"]:
            self.networks["D_B"] = initialised(discriminator(3, cfg["ndf"])).to(device)
        if cfg["face"]:
            self.networks["D_F"] = initialised(discriminator(3, cfg["ndf"])).to(device)
        adam = lambda params: torch.optim.Adam(params, lr=cfg["lr"], betas=(cfg["beta1"], 0.999))  # noqa: E731
        # H_A: the foreground generator (progressive: its global U-Net; the local enhancer has H_L) and the
        # background stream, both updated on L_A (Algorithm 1, step 4); BG: the background's own losses (step 8)
        background = list(generator.bg.parameters()) if generator.bg is not None else []
        if self.progressive:
            self.optimizers.update(H_S=adam(generator.hs.parameters()),
                                   H_A=adam(list(generator.fg.global_net.parameters()) + background),
                                   P=adam(self.networks["P"].parameters()), H_L=adam(generator.fg.local.parameters()))
        else:
            self.optimizers.update(H_S=adam(generator.hs.parameters()), H_A=adam(list(generator.fg.parameters()) + background),
                                   P=adam(self.networks["P"].parameters()))
        if generator.bg is not None:
            self.optimizers["BG"] = adam(generator.bg.parameters())
        for name in ("D_S", "D_A", "D_B", "D_F"):
            if name in self.networks:
                self.optimizers[name] = adam(self.networks[name].parameters())
        self.batches = context.loader(self.batch)

    def true_partners(self) -> tuple[dict[int, list[int]], list[int]]:
        """``hs_labels=true``: each image's other images of the same person (``pid``), and the images that have one."""
        people: dict[str, list[int]] = {}
        for index, row in enumerate(self.rows):
            people.setdefault(str(row["pid"]), []).append(index)
        partners = {index: [other for other in people[str(row["pid"])] if other != index]
                    for index, row in enumerate(self.rows)}
        paired = [index for index, others in partners.items() if others]
        if not paired:
            raise DataError(f"{self.dataset.name}: hs_labels=true trains H_S on true pairs, two training images of one "
                            f"person, and no person of the {len(self.rows)} training images has two")
        return partners, paired

    def labels_description(self) -> str:
        cfg = self.cfg
        if cfg["hs_labels"] == "true":
            people = len({str(self.rows[i]["pid"]) for i in self.paired})
            return ("true pairs (hs_labels=true, Table 4's Ground-Truth row): the target of a source map is the map and "
                    "pose of another training image of the same person, drawn per step; sources of those steps drawn "
                    f"among the {len(self.paired)} images of the {people} persons with at least two; no search")
        return (f"Eq. 1 search among {cfg['candidates']} random training maps of the same clothing type "
                f"(labels {sorted((3, 4, 5))} present), poses at least {cfg['min_pose_distance']} of the "
                "image height apart on average; none found: the image itself in its own pose")

    def growing_description(self) -> str:
        if not self.progressive:
            return "off: every stage at the training image size"
        grow = self.stages["grow"]
        return (f"stages hs, ha, e2e at {self.half[0]}x{self.half[1]} (images 2x2 average-pooled, maps by 2x2 majority, "
                f"keypoints halved, pose inputs redrawn), the foreground generator being the global U-Net (deformable "
                f"skips on its first {GLOBAL_WARP_LEVELS} levels); stage grow ({grow} steps) at {self.size[0]}x{self.size[1]}: "
                f"local enhancer (half-width encoders, all skips deformable) faded in, alpha rising linearly to 1 over "
                f"{self.fade_steps} steps (fade {self.cfg['fade']:g}), into the global generator's first encoder level and "
                f"the output alpha*local + (1-alpha)*nearest-upsampled global; global generator frozen for {self.fix_steps} "
                f"steps (fix_global {self.cfg['fix_global']:g}), then trained with it; H_S and the background network fixed "
                "at half resolution, their outputs upsampled bilinearly; D_A and D_F continue at full resolution (the "
                "demo's D_A; its fade-in face PatchGAN is called without alpha, so D_F here continues as it is); "
                "pose loss on the 2x2 average-pooled images (P learnt at half resolution)")

    def face_crop_description(self) -> str:
        if self.cfg["face_crop"] == "box":
            return ("the demo's axis-aligned box of half side 0.40 x torso length around the visible head keypoints' "
                    "mean, clipped to the image; at least 1 head keypoint")
        return (f"least-squares similarity of the visible nose/eyes/ears, at least {MIN_KEYPOINTS}, to a canonical "
                "template")

    def background_description(self) -> str:
        cfg = self.cfg
        if self.aux is None:
            return f"{cfg['alpha']:g} x L_rec (MSE on the own background) + {cfg['beta']:g} x LSGAN"
        return (f"{cfg['alpha']:g} x L_rec (MSE over the whole auxiliary image) + {cfg['beta']:g} x LSGAN (D_B: auxiliary "
                f"images vs inpainted composites); {len(self.aux)} auxiliary images from {cfg['aux_backgrounds']}, "
                "centre-cropped to the training aspect ratio and resized, holes Omega(S_ps) of the batch's parsing maps")

    # -- data ---------------------------------------------------------------------------------------
    def stage(self, step: int) -> str:
        end = 0
        for name, length in self.stages.items():
            end += length
            if step < end:
                return name
        return name

    def grow_step(self, step: int) -> int:
        """Index of ``step`` within the grow stage."""
        return step - (self.context.steps - self.stages["grow"])

    def parsing_and_pose(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """An image's map (uint8, kept in memory for the search) and pose."""
        if index not in self.maps:
            sample = self.dataset.load_image(self.rows[index])
            if "parsing" not in sample:
                raise DataError(f"{self.dataset.name}: training image {sample['id']!r} has no parsing map")
            self.maps[index] = (sample["parsing"].to(torch.uint8), sample["pose"].float())
        return self.maps[index]

    def pseudo_label(self, index: int) -> int:
        """The training image whose map and pose serve as the pseudo target of image ``index`` (Eqs. 1–2);
        a pure function of (seed, index), so it is searched once per image."""
        if index not in self.pseudo:
            rng = np.random.default_rng([self.context.seed, index, PSEUDO_STREAM])
            others = np.delete(np.arange(len(self.rows)), index)
            chosen = rng.choice(others, min(self.cfg["candidates"], len(others)), replace=False).tolist()
            parsing, pose = self.parsing_and_pose(index)
            candidates = [(self.parsing_and_pose(i)[0].long(), self.parsing_and_pose(i)[1]) for i in chosen]
            found = search_pseudo_label(parsing.long(), pose, candidates, self.cfg["min_pose_distance"])
            self.pseudo[index] = index if found is None else chosen[found]
        return self.pseudo[index]

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Source images with maps and poses, unrelated target poses and (stages hs, e2e) pseudo targets,
        with every pose input precomputed on the CPU; a pure function of (seed, step). Progressive: at half
        resolution in the first three stages, at both (half ones prefixed ``half_``) in stage grow."""
        seed, size, batch, stage = self.context.seed, self.size, self.context.batch_size, self.stage(step)
        labelled = stage == "hs" or (stage == "e2e" and self.cfg["e2e_parsing_loss"])
        true_pairs = labelled and self.cfg["hs_labels"] == "true"
        if true_pairs:
            sources = [self.paired[k] for k in uniform_batch(len(self.paired), batch, seed, step)]
        else:
            sources = uniform_batch(len(self.rows), batch, seed, step)
        targets = step_rng(seed, step, 1).choice(len(self.rows), batch).tolist()
        images, parsings, poses, target_poses = [], [], [], []
        for index, target in zip(sources, targets):
            sample = self.dataset.load_image(self.rows[index])
            if tuple(sample["image"].shape[-2:]) != size:
                raise DataError(f"{self.dataset.name}: image {sample['id']!r} is {tuple(sample['image'].shape[-2:])}, "
                                f"the first training image {size}; SPT trains on one image size")
            images.append(sample["image"])
            parsings.append(self.parsing_and_pose(index)[0].long())
            poses.append(sample["pose"].float())
            target_poses.append(self.parsing_and_pose(target)[1])
        raw = {"image": torch.stack(images), "labels": torch.stack(parsings), "pose_s": torch.stack(poses),
               "pose_t": torch.stack(target_poses)}
        if labelled:
            if true_pairs:
                rng = step_rng(seed, step, TRUE_STREAM)
                chosen = [self.partners[index][int(rng.integers(len(self.partners[index])))] for index in sources]
            else:
                chosen = [self.pseudo_label(index) for index in sources]
            pseudo = [self.parsing_and_pose(index) for index in chosen]
            raw["labels_p"] = torch.stack([parsing.long() for parsing, _ in pseudo])
            raw["pose_p"] = torch.stack([pose for _, pose in pseudo])
        aux = step_rng(seed, step, AUX_STREAM).choice(len(self.aux), batch).tolist() \
            if self.aux is not None and stage == "ha" else None
        if not self.progressive:
            return self.level_batch(raw, size, aux)
        half = {"image": halve(raw["image"])}
        half.update({key: halve_labels(value) for key, value in raw.items() if key.startswith("labels")})
        half.update({key: scale_keypoints(value, size, self.half) for key, value in raw.items() if key.startswith("pose")})
        if stage != "grow":
            return self.level_batch(half, self.half, aux)
        out = self.level_batch(raw, size, aux)
        out.update({f"half_{key}": value for key, value in self.level_batch(half, self.half, aux).items()})
        return out

    def level_batch(self, raw: dict[str, torch.Tensor], size: tuple[int, int], aux: list[int] | None) -> dict[str, torch.Tensor]:
        """Every network input of a batch at one resolution, from its images, label maps and keypoints."""
        out = {"image": raw["image"], "parsing": one_hot(raw["labels"])}
        out.update(self.pose_batch("s", raw["pose_s"], size))
        out.update(self.pose_batch("t", raw["pose_t"], size))
        out["theta_st"], out["valid_st"] = part_affines(out["pose_s"], out["pose_t"], size)
        out["theta_ts"], out["valid_ts"] = part_affines(out["pose_t"], out["pose_s"], size)
        out["parts_t"], out["parts_s"] = limb_masks(out["pose_t"], size), limb_masks(out["pose_s"], size)
        if "labels_p" in raw:
            out["parsing_p"] = one_hot(raw["labels_p"])
            out.update(self.pose_batch("p", raw["pose_p"], size))
        if self.cfg["face"]:
            out["face_s"], out["face_valid_s"] = face_transforms(out["pose_s"], size, self.cfg["face_crop"])
            out["face_t"], out["face_valid_t"] = face_transforms(out["pose_t"], size, self.cfg["face_crop"])
        if aux is not None:
            out["aux"] = torch.stack([load_background(self.aux[i], size) for i in aux])
        return out

    def pose_batch(self, role: str, poses: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        heat, mask = zip(*(pose_inputs(pose, size, self.cfg["sigma"]) for pose in poses))
        return {f"pose_{role}": poses, f"heat_{role}": torch.stack(heat), f"mask_{role}": torch.stack(mask)}

    # -- steps --------------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        ctx = self.context
        b = {key: value.to(ctx.device) for key, value in ctx.shard(self.batches(step)).items()}
        stage = self.stage(step)
        g = self.networks["generator"]
        losses: dict[str, torch.Tensor] = {}
        if stage == "grow":
            self.grow_train_step(step, b, losses)
        elif stage == "hs":
            self.update_pose_detector(b, losses)
            generator_loss = self.hs_loss(b, losses)
            self.update([self.optimizers["H_S"]], generator_loss, g.hs)
            self.update_d("D_S", b["parsing_p"], [losses.pop("_S_pred")], losses)
        else:
            self.networks["P"].requires_grad_(False).eval()
            e2e = stage == "e2e"
            if g.bg is not None:  # H_A's background stream learns in stage ha only (Algorithm 2, step 4: fixed)
                g.bg.requires_grad_(not e2e)
            generator_loss = self.ha_loss(b, losses, e2e)
            optimizers = [self.optimizers["H_A"]]
            if e2e:
                optimizers.append(self.optimizers["H_S"])
                if self.cfg["e2e_parsing_loss"]:
                    generator_loss = generator_loss + self.hs_loss(b, losses)
            self.update(optimizers, generator_loss, g.hs if e2e else None, g.fg, None if e2e else g.bg)
            self.update_appearance_discriminators(b, losses)
            if e2e and self.cfg["e2e_parsing_loss"]:
                self.update_d("D_S", b["parsing_p"], [losses.pop("_S_pred")], losses)
            elif not e2e and g.bg is not None:
                self.background_step(b, losses)
        return {name: float(value.detach()) for name, value in losses.items()}

    def update_appearance_discriminators(self, b: dict[str, torch.Tensor], losses: dict[str, torch.Tensor]) -> None:
        real = torch.cat([b["image"] * 2 - 1, b["parsing"][:, 1:]], 1)
        self.update_d("D_A", real, [losses.pop("_A_fake_t"), losses.pop("_A_fake_s")], losses)
        if "D_F" in self.networks:  # Algorithm 1 step 5: D_F with D_A; real faces: the source's, by its pose
            self.update_d("D_F", crop_faces(b["image"] * 2 - 1, b["face_s"], crop_side(b["image"].shape[-2])),
                          [losses.pop("_F_fake_t"), losses.pop("_F_fake_s")], losses,
                          [b["face_valid_s"], b["face_valid_t"], b["face_valid_s"]])

    def grow_train_step(self, step: int, b: dict[str, torch.Tensor], losses: dict[str, torch.Tensor]) -> None:
        """Stage grow: the local enhancer fades in at full resolution (alpha per step), the global generator
        joins after ``fix_global``; H_S, P and the background network fixed."""
        g = self.networks["generator"]
        index = self.grow_step(step)
        alpha = 1.0 if self.fade_steps == 0 else min(1.0, (index + 1) / self.fade_steps)
        g.fg.alpha.fill_(alpha)
        frozen = index < self.fix_steps
        g.fg.global_net.requires_grad_(not frozen)
        if g.bg is not None:
            g.bg.requires_grad_(False)
        self.optimizers["H_A"].zero_grad(set_to_none=True)  # no stale gradients of stage e2e in the clipped norm
        self.networks["P"].requires_grad_(False).eval()
        generator_loss = self.ha_loss(b, losses, e2e=False, grow=True)
        optimizers = [self.optimizers["H_L"]] + ([] if frozen else [self.optimizers["H_A"]])
        self.update(optimizers, generator_loss, g.fg)
        self.update_appearance_discriminators(b, losses)
        losses["alpha"] = g.fg.alpha.detach().clone()

    def update(self, optimizers: list[torch.optim.Optimizer], loss: torch.Tensor, *modules: nn.Module | None) -> None:
        ctx = self.context
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        ctx.backward(loss)
        if ctx.scaler is None and self.cfg["clip"] is not None:  # fp16 scaling: the gradients are scaled
            for module in modules:
                if module is not None:
                    nn.utils.clip_grad_norm_(module.parameters(), self.cfg["clip"])
        for optimizer in optimizers:
            ctx.step(optimizer)

    def update_d(self, name: str, real: torch.Tensor, fakes: list[torch.Tensor], losses: dict[str, torch.Tensor],
                 valid: list[torch.Tensor] | None = None) -> None:
        d, ctx = self.networks[name], self.context
        d.requires_grad_(True)
        with ctx.autocast():
            loss = d_loss(d, real, fakes, valid)
        self.optimizers[name].zero_grad(set_to_none=True)
        ctx.backward(loss)
        ctx.step(self.optimizers[name])
        losses[name] = loss

    def update_pose_detector(self, b: dict[str, torch.Tensor], losses: dict[str, torch.Tensor]) -> None:
        p, ctx = self.networks["P"], self.context
        with ctx.autocast():
            loss = F.mse_loss(p(b["image"] * 2 - 1), b["heat_s"])
        self.optimizers["P"].zero_grad(set_to_none=True)
        ctx.backward(loss)
        ctx.step(self.optimizers["P"])
        losses["P"] = loss

    def hs_loss(self, b: dict[str, torch.Tensor], losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_S on a pseudo pair (Eq. 5); the prediction is kept for the D_S update."""
        g, d = self.networks["generator"], self.networks["D_S"]
        d.requires_grad_(False)
        with self.context.autocast():
            predicted = g.parse(b["parsing"], b["heat_s"], b["mask_s"], b["heat_p"], b["mask_p"])
            ce = weighted_cross_entropy(predicted.float(), b["parsing_p"], b["mask_p"])
            adversarial = lsgan(d(predicted), True)
        losses.update(S_ce=ce, S_adv=adversarial, _S_pred=predicted)
        return adversarial + self.cfg["lambda_ce"] * ce

    def ha_loss(self, b: dict[str, torch.Tensor], losses: dict[str, torch.Tensor], e2e: bool,
                grow: bool = False) -> torch.Tensor:
        """L_A (Eq. 12) through the cycle source → target pose → source pose. ``grow``: at full resolution,
        H_S and the global generator fed the batch's ``half_`` inputs (module docstring)."""
        cfg, g, d, p = self.cfg, self.networks["generator"], self.networks["D_A"], self.networks["P"]
        d.requires_grad_(False)
        source = b["image"] * 2 - 1
        h = "half_" if grow else ""  # where H_S (and P's targets) live
        with self.context.autocast():
            with torch.set_grad_enabled(e2e):
                parsing_t = g.parse(b[h + "parsing"], b[h + "heat_s"], b[h + "mask_s"], b[h + "heat_t"], b[h + "mask_t"])
                parsing_back = g.parse(parsing_t, b[h + "heat_t"], b[h + "mask_t"], b[h + "heat_s"], b[h + "mask_s"])
            half_st = None
            if grow:  # H_S's maps at full resolution for the composition, D_A and the style loss
                half_t, half_back = parsing_t, parsing_back
                parsing_t, parsing_back = double(half_t), double(half_back)
                half_st = (b["half_image"] * 2 - 1, b["half_parsing"], b["half_heat_s"], half_t, b["half_heat_t"],
                           b["half_theta_st"], b["half_valid_st"], b["half_parts_t"])
            fake_t = g.render(source, b["parsing"], b["heat_s"], parsing_t, b["heat_t"], b["theta_st"], b["valid_st"],
                              b["parts_t"], half=half_st)
            half_ts = (halve(fake_t), half_t, b["half_heat_t"], half_back, b["half_heat_s"], b["half_theta_ts"],
                       b["half_valid_ts"], b["half_parts_s"]) if grow else None
            fake_s = g.render(fake_t, parsing_t, b["heat_t"], parsing_back, b["heat_s"], b["theta_ts"], b["valid_ts"],
                              b["parts_s"], half=half_ts)
            judged_t = torch.cat([fake_t, judged_map(parsing_t, cfg["d_maps"])], 1)
            judged_s = torch.cat([fake_s, judged_map(parsing_back, cfg["d_maps"])], 1)
            adversarial = lsgan(d(judged_t), True) + lsgan(d(judged_s), True)
            posed_t, posed_s = (halve(fake_t), halve(fake_s)) if grow else (fake_t, fake_s)
            pose = F.mse_loss(p(posed_t), b[h + "heat_t"]) + F.mse_loss(p(posed_s), b[h + "heat_s"])
            content = F.mse_loss(fake_s, source)
            if self.vgg is None:  # Λ is the RGB image itself (Eq. 9's layer 0): per-class colour statistics
                real_style, style_t, style_s = b["image"], (fake_t + 1) / 2, (fake_s + 1) / 2
            else:
                real_features = self.vgg(b["image"])
                features_t = self.vgg((fake_t + 1) / 2)
                features_s = self.vgg((fake_s + 1) / 2)
                content = content + sum(F.mse_loss(a, r) for a, r in zip(features_s, real_features))
                real_style, style_t, style_s = (f[STYLE_TAP] for f in (real_features, features_t, features_s))
            style = style_loss(real_style, style_t, b["parsing"], parsing_t) + \
                style_loss(style_t, style_s, parsing_t, parsing_back)
        losses.update(A_adv=adversarial, A_pose=pose, A_cont=content, A_sty=style,
                      _A_fake_t=judged_t, _A_fake_s=judged_s)
        total = adversarial + cfg["lambda_pose"] * pose + cfg["lambda_cont"] * content + cfg["lambda_sty"] * style
        if "D_F" in self.networks:
            total = total + self.face_loss(b, fake_t, fake_s, losses)
        return total

    def face_loss(self, b: dict[str, torch.Tensor], fake_t: torch.Tensor, fake_s: torch.Tensor,
                  losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_A^face (Eq. 11): D_F on the face crops of Ĩ_pt (by the target pose) and Ĩ_ps (by the source pose),
        faces without enough keypoints masked; the crops are kept for the D_F update."""
        d = self.networks["D_F"]
        d.requires_grad_(False)
        with self.context.autocast():
            side = crop_side(fake_t.shape[-2])
            crop_t = crop_faces(fake_t, b["face_t"], side)
            crop_s = crop_faces(fake_s, b["face_s"], side)
            face = lsgan(d(crop_t), True, b["face_valid_t"]) + lsgan(d(crop_s), True, b["face_valid_s"])
        losses.update(A_face=face, _F_fake_t=crop_t, _F_fake_s=crop_s)
        return face

    def background_step(self, b: dict[str, torch.Tensor], losses: dict[str, torch.Tensor]) -> None:
        """Algorithm 1, steps 6–9: inpaint another person's silhouette cut out of a training image (with
        auxiliary images: `aux_background_step`)."""
        if "aux" in b:
            self.aux_background_step(b, losses)
            return
        cfg, g, d, ctx = self.cfg, self.networks["generator"], self.networks["D_B"], self.context
        image = b["image"] * 2 - 1
        own = foreground_mask(b["parsing"])
        hole = torch.maximum(own, own.roll(1, dims=0))
        keep = 1 - own
        d.requires_grad_(False)
        with ctx.autocast():
            filled = g.background(image, hole)
            reconstruction = ((filled - image).square() * keep).sum() / (3 * keep.sum()).clamp_min(1.0)
            composite = (filled * hole + image * (1 - hole)) * keep
            adversarial = lsgan(d(composite), True)
        self.update([self.optimizers["BG"]], cfg["alpha"] * reconstruction + cfg["beta"] * adversarial, g.bg)
        self.update_d("D_B", image * keep, [composite], losses)
        losses.update(B_rec=reconstruction, B_adv=adversarial)

    def aux_background_step(self, b: dict[str, torch.Tensor], losses: dict[str, torch.Tensor]) -> None:
        """Algorithm 1, steps 6–9 with auxiliary images (Eq. 13): the person-shaped holes Ω(S_ps) of the batch's
        real maps cut into I_aux; L_rec over the whole image; D_B sees I_aux against the composites."""
        cfg, g, d, ctx = self.cfg, self.networks["generator"], self.networks["D_B"], self.context
        image = b["aux"] * 2 - 1
        hole = foreground_mask(b["parsing"])
        d.requires_grad_(False)
        with ctx.autocast():
            filled = g.background(image, hole)
            reconstruction = F.mse_loss(filled.float(), image)
            composite = filled * hole + image * (1 - hole)
            adversarial = lsgan(d(composite), True)
        self.update([self.optimizers["BG"]], cfg["alpha"] * reconstruction + cfg["beta"] * adversarial, g.bg)
        self.update_d("D_B", image, [composite], losses)
        losses.update(B_rec=reconstruction, B_adv=adversarial)


class SPT(Method):
    """SPT: H_S predicts the target semantic map, H_A renders foreground and background (Song et al. 2020)."""

    name = "spt"
    description = "SPT (Song et al., TPAMI 2020): semantic parsing transformation + appearance generation, unpaired."
    paper = PAPER
    tasks = frozenset({"pose-transfer"})
    needs_checkpoint = True
    batch_size = 8
    default_batch_size = 16  # the paper's Market-1501 batch; the deepfashion preset's is 4 (default_batch_size_for)
    default_steps = 50_000  # the paper gives wall-clock time only (< 1 day on 4 P40 for Market-1501)
    model_options = ("width", "background", "progressive", "target_map")
    official_weights = OfficialWeights(
        format="PyTorch state dict of the demo's appearance generator (Local_Generator: global U-Net + local "
               "enhancer, width 64, 256x256 DeepFashion foreground)",
        source="github.com/SijieSong/person_generation_spt ReadMe, 'pre-trained models' (Google Drive): "
               "checkpoints/demo_model/latest_net_G.pth. It holds G_A^F only, no H_S and no background network: "
               "import and run it with --option progressive=true --option background=false --option target_map=dataset "
               "(TS-GT-like: the target map is the dataset's parsing of the target image, as the demo's)",
        suffixes=(".pth",),
    )
    options = (
        Option("width", 64, "channels of the first encoder layer (demo: 64; every layer scales with it); 8 trains "
               "on a CPU in a minute (quick start)", int),
        Option("background", True, "background inpainting stream composed by the predicted map (journal version, "
               "DeepFashion); false: the foreground generator paints the whole image (CVPR version; the paper "
               "trains no explicit background network on Market-1501)", bool),
        Option("progressive", False, "DeepFashion's progressive growing: the foreground generator is a global U-Net "
               "at half resolution plus a local enhancer at full resolution faded in (the demo's), H_S and the background "
               "network at half resolution; training adds the full-resolution stage grow (see stages, fade, fix_global); "
               "images must be multiples of 64 per side", bool),
        Option("target_map", "predicted", "the target semantic map H_A renders by: predicted (H_S from the source map "
               "and both poses, the paper's end-to-end setting) or dataset (the dataset's parsing of the target image, "
               "the paper's TS-GT oracle setting and the official demo's; no H_S is built; evaluation only)", str,
               TARGET_MAPS),
        Option("sigma", 6.0, "standard deviation in pixels of the keypoint heat maps (Def-GAN/demo: 6)", float),
        Option("stages", (0.3, 0.4, 0.3), "training: step fractions of H_S pretraining (with P), H_A training and "
               "end-to-end fine-tuning (the paper gives no lengths); with progressive=true four, the fourth the "
               "full-resolution stage grow (e.g. 0.2,0.3,0.2,0.3)", tuple),
        Option("fade", 0.5, "training, progressive: fraction of the stage grow over which the local enhancer's alpha "
               "rises linearly from 0 to 1 (the paper and demo give no length)", float),
        Option("fix_global", 0.5, "training, progressive: fraction of the stage grow during which the global generator "
               "is frozen and only the local enhancer learns (the demo's niter_fix_global; no value given)", float),
        Option("candidates", 500, "training: N, random training maps searched for each pseudo-label (paper: 500)", int),
        Option("hs_labels", "search", "training: what H_S learns from: search (the searched pseudo pairs, the paper's) "
               "or true (true pairs: another training image of the same person, its map as the target; Table 4's "
               "Ground-Truth row, an ablation the paper's unpaired setting does not allow)", str, HS_LABELS),
        Option("min_pose_distance", 0.05, "training: pseudo targets must differ in pose by at least this mean joint "
               "displacement, as a fraction of the image height (the paper excludes very similar poses without a threshold)",
               float),
        Option("lambda_ce", 100.0, "training: λ_ce of H_S's cross entropy (paper: 10^2)", float),
        Option("preset", None, "training: the paper's per-dataset setting (§4.1) of λ_pose, λ_cont, λ_sty and face: "
               "deepfashion (700, 0.03, 1, face on) or market (1, 0.003, 1, face off); unset: the dataset's "
               "(PoseImages.training_preset: DeepFashion deepfashion, Market-1501 and pose-synth market); each of "
               "those options given overrides its preset value; without --batch-size the preset's batch (4, 16)", str,
               tuple(PRESETS)),
        Option("lambda_pose", None, "training: λ_pose (paper: 700 DeepFashion, 1 Market-1501; unset: the preset's)", float),
        Option("lambda_cont", None, "training: λ_cont (paper: 0.03 DeepFashion, 0.003 Market-1501; unset: the preset's)",
               float),
        Option("lambda_sty", None, "training: λ_sty (paper: 1; unset: the preset's)", float),
        Option("face", None, "training: face discriminator D_F on face crops from the facial keypoints, its "
               "adversarial loss added to L_A (Eq. 11; the paper's DeepFashion setting); false on Market-1501, where "
               "the paper omits it (low resolution); unset: the preset's", bool),
        Option("face_crop", "box", "training: the face crop F(·): box (the demo's estimate_face_transform: an "
               "axis-aligned box of half side 0.40 x torso length around the visible head keypoints) or similarity "
               "(a similarity fitted to a face template from at least 3 of nose, eyes, ears)", str, FACE_CROPS),
        Option("d_maps", "hard", "training: the parsing maps D_A sees beside the fakes: hard (one-hot of the predicted "
               "map, as the demo feeds hard maps for real and fake; straight-through gradient to H_S) or soft (the "
               "softmax probabilities, which D_A can tell from the real one-hot maps by their softness)", str,
               ("hard", "soft")),
        Option("e2e_parsing_loss", False, "training: stage e2e adds H_S's own L_S (λ_ce x cross entropy to the "
               "pseudo labels + L_S^adv, D_S trained) to L_A; the paper (Algorithm 2, step 4) trains H_S with L_A alone, "
               "so the search errors that stage corrects do not pull it back", bool),
        Option("aux_backgrounds", None, "training: folder of auxiliary background images (Eq. 13; the paper: Places2 "
               "val, val_256/*.jpg) the background network learns to inpaint, with person-shaped holes from the "
               "batch's parsing maps; unset: another person's silhouette cut out of the training image", str),
        Option("alpha", 1.0, "training: weight of the background reconstruction loss (paper: 1)", float),
        Option("beta", 10.0, "training: weight of the background adversarial loss (paper: 10)", float),
        Option("vgg", "vgg16", "training: VGG of the content and style losses, torchvision weights from "
               "$TORCH_HOME/hub/checkpoints (paper: VGG-16); none: content and style on the RGB pixels only "
               "(style: per-class colour Gram matrices), for training without the weights file (e.g. on pose-synth)", str, ("vgg16", "vgg19", "none")),
        Option("vgg_weights", None, "training: path of the VGG weights file (default: torchvision's file name in "
               "$TORCH_HOME/hub/checkpoints)", str),
        Option("ndf", 64, "training: discriminator base width (demo PatchGAN: 64)", int),
        Option("lr", 2e-4, "training: Adam learning rate (paper: 0.0002)", float),
        Option("beta1", 0.5, "training: Adam β1 (paper: 0.5)", float),
        Option("clip", None, "training: gradient-norm clipping of the generators; unset: none (the demo calls "
               "clip_grad_norm(G, 100) before backward, on gradients already zeroed, so it clips nothing)", float),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cfg = self.config
        try:  # numbers, whether given as such or on the command line: a training manifest then records 1.0, not '1'
            cfg["stages"] = tuple(float(fraction) for fraction in cfg["stages"])
        except (TypeError, ValueError):
            raise UsageError(f"{self.name}: option stages needs numbers, the step fractions of the stages; "
                             f"got {cfg['stages']}") from None
        if cfg["width"] < 1 or cfg["ndf"] < 1 or cfg["candidates"] < 1 or cfg["sigma"] <= 0:
            raise UsageError(f"{self.name}: options width, ndf and candidates must be at least 1 and sigma positive")
        if cfg["progressive"] and cfg["width"] % 2:
            raise UsageError(f"{self.name}: progressive=true halves the width for the local enhancer's encoders, so "
                             f"width must be even; got {cfg['width']}")
        if not (0 <= cfg["fade"] <= 1 and 0 <= cfg["fix_global"] <= 1):
            raise UsageError(f"{self.name}: options fade and fix_global are fractions of the stage grow, between 0 and 1; "
                             f"got fade={cfg['fade']}, fix_global={cfg['fix_global']}")

    def preset_for(self, dataset: Any) -> str:
        """The ``preset`` option, else the dataset's (`PoseImages.training_preset`), else market (the paper's
        Market-1501 setting, whose batch is `default_batch_size`)."""
        named = dataset.training_preset if isinstance(dataset, PoseImages) else None
        return self.config["preset"] or named or "market"

    def default_batch_size_for(self, dataset: Any) -> int:
        """The preset's batch (paper §4.1: 4 DeepFashion, 16 Market-1501) when ``--batch-size`` is not given."""
        return PRESET_BATCH[self.preset_for(dataset)]

    def build(self) -> SPTGenerator:
        cfg = self.config
        return initialised(SPTGenerator(cfg["width"], cfg["background"], cfg["progressive"],
                                        parsing=cfg["target_map"] == "predicted"))

    def convert_official(self, path: Any) -> dict[str, torch.Tensor]:
        """The demo's ``latest_net_G.pth`` (`demo_state`) for the network it fills: the progressive foreground
        generator alone (``progressive=true background=false target_map=dataset``). A file already in the
        harness' key names (a harness export saved as .pth) passes through."""
        from harness.checkpoints import load_state_dict

        state = {key.removeprefix("module."): value for key, value in load_state_dict(Path(path)).items()}
        if any(key.startswith(("fg.", "hs.", "bg.")) for key in state):
            return state
        cfg = self.config
        wanted = {"progressive": True, "background": False, "target_map": "dataset"}
        if any(cfg[key] != value for key, value in wanted.items()):
            given = ", ".join(f"{key}={cfg[key]}" for key in wanted)
            raise UsageError(f"{self.name}: {path} is the official demo's appearance generator alone (no H_S, no "
                             f"background network); load it with --option progressive=true --option background=false "
                             f"--option target_map=dataset (given: {given})")
        return demo_state(state, path)

    def training_recipe(self, dataset: Any, context: TrainContext) -> TrainingRecipe:
        if self.config["target_map"] != "predicted":
            raise UsageError(f"{self.name}: target_map={self.config['target_map']} evaluates with the dataset's target "
                             "maps (no H_S); training needs target_map=predicted")
        return SPTRecipe(self, dataset, context)

    def predict(self, samples: list[Sample]) -> list[Any]:
        return self.batched(samples, self.transfer)

    def batched(self, samples: list[Sample], network: Callable[..., torch.Tensor]) -> list[torch.Tensor]:
        """``network`` on the `inputs` of the samples, runs of equally sized samples stacked together."""
        if self.model is None:
            raise UsageError(f"{self.name}: call load() before predict()")
        inputs = [self.inputs(sample) for sample in samples]
        results: list[torch.Tensor] = []
        start = 0
        while start < len(inputs):
            end = start + 1
            while end < len(inputs) and inputs[end][0].shape == inputs[start][0].shape:
                end += 1
            batch = [torch.stack(parts).to(self._device) for parts in zip(*inputs[start:end])]
            results.extend(network(*batch).cpu())
            start = end
        return results

    def inputs(self, sample: Sample) -> tuple[torch.Tensor, ...]:
        """One sample's network inputs: source in [-1, 1], its one-hot map, heat maps and pose masks of both
        poses, the part affines (target → source) and the target's part masks, and with ``target_map=dataset``
        the target's one-hot map; progressive: then the same at half resolution (`level_inputs`)."""
        given = self.config["target_map"] == "dataset"
        for field, what in (("source_parsing", "the source's semantic parsing map as an input (as the paper, from a LIP "
                             "parser)"), ("target_parsing", "with target_map=dataset the target's parsing map (TS-GT)")):
            if field not in sample and (field == "source_parsing" or given):
                raise DataError(
                    f"{self.name}: sample {sample['id']!r} has no {field}; SPT takes {what}: give the dataset its "
                    "parsing-map folder (--dataset-option parsing=FOLDER)"
                )
        image = sample["source"]
        size = tuple(int(v) for v in image.shape[-2:])
        progressive = self.config["progressive"]
        check_size(size, f"sample {sample['id']!r}", progressive)
        source_pose, target_pose = sample["source_pose"].float(), sample["target_pose"].float()
        target = sample["target_parsing"] if given else None
        full = self.level_inputs(image, sample["source_parsing"], source_pose, target_pose, size, target)
        if not progressive:
            return full
        half = (size[0] // 2, size[1] // 2)
        return full + self.level_inputs(halve(image), halve_labels(sample["source_parsing"]),
                                        scale_keypoints(source_pose, size, half), scale_keypoints(target_pose, size, half), half,
                                        halve_labels(target) if target is not None else None)

    def level_inputs(self, image: torch.Tensor, labels: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor,
                     size: tuple[int, int], target_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        heat_s, mask_s = pose_inputs(source_pose, size, self.config["sigma"])
        heat_t, mask_t = pose_inputs(target_pose, size, self.config["sigma"])
        theta, valid = part_affines(source_pose, target_pose, size)
        level = (image * 2 - 1, one_hot(labels), heat_s, mask_s, heat_t, mask_t, theta, valid, limb_masks(target_pose, size))
        return level if target_labels is None else level + (one_hot(target_labels),)

    def transfer(self, *tensors: torch.Tensor) -> torch.Tensor:
        """Sources in the target poses, [0, 1]: S̃_t = H_S(S_s, p_s, M_s; p_t, M_t) (or the given target map,
        ``target_map=dataset``), then H_A composed by S̃_t. ``tensors``: one level of `level_inputs` (source,
        S_s, p_s, M_s, p_t, M_t, affines, validity, part masks[, S_t]); progressive: then the same at half
        resolution, where H_S runs (its map upsampled) and the global generator works."""
        g = self._model
        per = len(tensors) // (2 if self.config["progressive"] else 1)
        full, half = tensors[:per], tensors[per:]
        source, parsing_s, heat_s, mask_s, heat_t, mask_t, theta, valid, parts = full[:9]
        with torch.inference_mode():
            if not half:
                parsing_t = full[9] if per == 10 else g.parse(parsing_s, heat_s, mask_s, heat_t, mask_t)
                result = g.render(source, parsing_s, heat_s, parsing_t, heat_t, theta, valid, parts)
            else:
                h_source, h_parsing_s, h_heat_s, h_mask_s, h_heat_t, h_mask_t, h_theta, h_valid, h_parts = half[:9]
                if per == 10:
                    parsing_t, h_parsing_t = full[9], half[9]
                else:
                    h_parsing_t = g.parse(h_parsing_s, h_heat_s, h_mask_s, h_heat_t, h_mask_t)
                    parsing_t = double(h_parsing_t)
                result = g.render(source, parsing_s, heat_s, parsing_t, heat_t, theta, valid, parts,
                                  half=(h_source, h_parsing_s, h_heat_s, h_parsing_t, h_heat_t, h_theta, h_valid, h_parts))
        return ((result + 1) / 2).clamp(0, 1).float()


DEMO_PREFIXES = (
    ("model_global.encoder_app.", "fg.global_net.encoders.0."),
    ("model_global.encoder_pose.", "fg.global_net.encoders.1."),
    ("model_global.decoder.", "fg.global_net.decoder."),
    ("model_local_encoder_app.", "fg.local.encoders.0."),
    ("model_local_encoder_pose.", "fg.local.encoders.1."),
    ("model_local_decoder.", "fg.local.decoder."),
)
"""The demo's ``Local_Generator`` modules and the harness' `ProgressiveForeground` parts they fill."""
STALE_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def demo_key(key: str) -> str | None:
    """The harness name of a demo ``Local_Generator`` parameter, or None for a name it does not know.

    Encoders: ``net.0`` the 3×3 convolution → ``blocks.0``; ``net.i.net.j`` (a ``Block``: 0 LeakyReLU, 1 the
    convolution, 2 the norm) → ``blocks.i.j``. Decoders: ``net.i.net.j`` (0 ReLU, 1 the transposed convolution,
    2 the norm) → ``blocks.i.j``; the head ``net.k`` (after the blocks and a ReLU) → ``head.1``."""
    for prefix, target in DEMO_PREFIXES:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):].split(".")
        if rest[0] != "net" or len(rest) < 3 or not rest[1].isdigit():
            return None
        if len(rest) == 5 and rest[2] == "net":  # a Block
            return f"{target}blocks.{rest[1]}.{rest[3]}.{rest[4]}"
        if len(rest) == 3:
            if "encoder" in prefix:  # the first 3x3 convolution
                return f"{target}blocks.{rest[1]}.{rest[2]}" if rest[1] == "0" else None
            return f"{target}head.1.{rest[2]}"  # the decoder's last convolution
        return None
    return None


def demo_state(state: dict[str, Any], path: Any) -> dict[str, torch.Tensor]:
    """The demo's ``latest_net_G.pth`` as the state of an `SPTGenerator` built with ``progressive=true
    background=false target_map=dataset``: renamed by `demo_key`; the global encoders' bottleneck
    convolutions, bias-free in the demo, get zero biases (the harness' have one: same output); InstanceNorm
    running statistics of PyTorch < 0.4 files dropped (the demo's own loader does the same); the fade-in
    alpha 1, the demo's test setting (the local enhancer's image alone)."""
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.rsplit(".", 1)[-1] in STALE_STATISTICS:
            continue
        name = demo_key(key)
        if name is None:
            raise DataError(f"{path}: key {key!r} is not one of the SPT demo generator's (Local_Generator: "
                            "model_global.*, model_local_encoder_app/pose.*, model_local_decoder.*)")
        converted[name] = value
    for stream in (0, 1):
        blocks = [key for key in converted if key.startswith(f"fg.global_net.encoders.{stream}.blocks.")]
        last = max((int(key.split(".")[5]) for key in blocks), default=None)
        if last is not None:
            weight = converted.get(f"fg.global_net.encoders.{stream}.blocks.{last}.1.weight")
            if weight is not None:
                converted.setdefault(f"fg.global_net.encoders.{stream}.blocks.{last}.1.bias", torch.zeros(weight.shape[0]))
    converted["fg.alpha"] = torch.tensor(1.0)
    return converted


class SPTParsing(SPT):
    """SPT's semantic generative network H_S alone: the target-pose semantic map of a `spt` checkpoint."""

    name = "spt-hs"
    description = ("SPT's H_S (Song et al., TPAMI 2020): the target-pose semantic map predicted from the source map and "
                   "both poses (pose-parsing; Table 4); loads and trains exactly as spt.")
    tasks = frozenset({"pose-parsing"})

    def predict(self, samples: list[Sample]) -> list[Any]:
        return self.batched(samples, self.target_map)

    def target_map(self, source: torch.Tensor, parsing_s: torch.Tensor, heat_s: torch.Tensor, mask_s: torch.Tensor,
                   heat_t: torch.Tensor, mask_t: torch.Tensor, theta: torch.Tensor, valid: torch.Tensor,
                   parts: torch.Tensor, *half: torch.Tensor) -> torch.Tensor:
        """argmax over the classes of S̃_t = H_S(S_s, p_s, M_s; p_t, M_t): int64 labels (B, H, W) in the dataset's
        classes (the contract's 10, label = index). Progressive: H_S at half resolution, its map upsampled as
        `transfer` gives it to H_A."""
        g = self._model
        with torch.inference_mode():
            if not half:
                parsing_t = g.parse(parsing_s, heat_s, mask_s, heat_t, mask_t)
            else:
                _, h_parsing_s, h_heat_s, h_mask_s, h_heat_t, h_mask_t = half[:6]
                parsing_t = double(g.parse(h_parsing_s, h_heat_s, h_mask_s, h_heat_t, h_mask_t))
        return parsing_t.argmax(dim=1)


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(SPT)
    register(SPTParsing)
