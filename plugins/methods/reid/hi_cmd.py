"""`hi-cmd`: Hierarchical Cross-Modality Disentanglement (Choi et al., CVPR 2020), reimplemented.

Faithful to the paper and, where it is silent, to the official code (github.com/bismex/HiCMD, whose
module and parameter names are kept so its checkpoints load; no code is vendored):

* **ID-PIG**, per modality (RGB, IR): a *prototype encoder* E^p (conv 3→32 s2, 32→64, 64→64,
  64→128 s2, 4 residual blocks, ASPP with dilations 3/6/9 fused to 256 channels; instance norm,
  LeakyReLU 0.3, reflect padding) giving a 256×64×32 tensor; an *attribute encoder* E^a (ImageNet
  ResNet-50 up to global pooling) giving a 2,048-d vector made of four interleaved 512-d chunks
  [256 style | 128 pose | 128 illumination]; one *decoder* G shared by both modalities (4 AdaIN
  residual blocks whose scales and biases come from 8 three-layer MLPs, chunk k driving block k;
  2 × (nearest ×2, 5×5 conv + layer norm); two 3×3 convs; a 1×1 conv to RGB, no output activation);
  one 3-scale patch *discriminator* per modality (training only).
* **HFL**: H = ResNet-50 layer2 + layer3 on the prototype (1,024-d after pooling); the combined
  code [min(α,1)·p^d/‖p^d‖ ; max(1−α,0)·a^s/‖a^s‖] with a learnable α (init 0.5); fc1 2048→2048 +
  BN1d (+ dropout 0.5) gives the test feature f; fc2 2048→1024 the triplet feature; a classifier
  the identity logits.

Inference uses only the encoders of the image's modality, H and fc1/BN (37,546,880 parameters), and
returns the L2-normalised f (the official test normalises), so Euclidean ranking equals the official
inner-product ranking. ``--checkpoint`` takes a ``harness train`` output, a safetensors file of this
network, or the official ``gen_NNNNNNNN.pt`` / ``id_NNNNNNNN.pt`` pair (a folder holding them, or
either file): ``gen`` holds ``{"a": RGB generator, "b": IR generator}``, ``id`` holds
``{"id": classifier, "backbone_pro": H, "combine_weight": α}``.

Training follows the official code where it departs from the paper (docs/vireid.md lists each case):
images resized by PIL bicubic and kept as uint8, the official sampler's batch (identities drawn in
proportion to their image counts), the IR encoders and IR discriminator started as copies of the RGB
ones, random erasing with a uniform aspect ratio, and the code's forms of Eqs. 2, 3, 6, 7 and 9.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from harness import DataError, Method, OfficialWeights, Option, Sample, TrainContext, TrainingRecipe, UsageError, hookimpl
from harness.train.augment import random_erasing
from harness.train.samplers import step_rng
from harness.checkpoints import load_into

from harness_plugins.methods.translation.cyclegan import resize_pil
from harness_plugins.shared.imagenet import IMAGENET_MEAN, IMAGENET_STD, INITS, resnet50
from harness_plugins.shared.munit_blocks import LayerNorm, MultiScalePatches
from .reid_training import TrainingSet, normalise

PAPER = (
    "Seokeon Choi, Sumin Lee, Youngeun Kim, Taekyung Kim, Changick Kim. Hi-CMD: Hierarchical Cross-Modality "
    "Disentanglement for Visible-Infrared Person Re-Identification. CVPR 2020. Official code: github.com/bismex/HiCMD"
)
SLOPE = 0.3
"""LeakyReLU slope of every ID-PIG layer (official ``w_lrelu``)."""
ATTRIBUTE_DIM, CHUNKS = 2048, 4
CHUNK = ATTRIBUTE_DIM // CHUNKS
STYLE, POSE = 256, 128
"""Within each 512-d chunk: dims [0, 256) style, [256, 384) pose, [384, 512) illumination."""
PROTOTYPE_CHANNELS = 256


def _indices(start: int, stop: int) -> torch.Tensor:
    return torch.tensor([k * CHUNK + i for k in range(CHUNKS) for i in range(start, stop)])


STYLE_INDEX = _indices(0, STYLE)
POSE_INDEX = _indices(STYLE, STYLE + POSE)
ILLUMINATION_INDEX = _indices(STYLE + POSE, CHUNK)
EXCLUDED_INDEX = _indices(STYLE, CHUNK)
"""ID-excluded code a^ex = [pose; illumination], in the official (sorted) index order."""


# -- building blocks (official attribute names: pad, conv, norm, activation, model) ----------------
class AdaIN(nn.Module):
    """Instance norm whose per-sample scale and bias are assigned by the decoder before each forward."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels, self.eps = channels, eps
        self.params: tuple[torch.Tensor, torch.Tensor] | None = None
        # Unused statistics, kept so the official checkpoints' keys match.
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.params is None:
            raise RuntimeError("AdaIN parameters were not assigned (the decoder assigns them from the attribute code)")
        weight, bias = self.params
        return F.instance_norm(x, eps=self.eps) * weight[..., None, None] + bias[..., None, None]


class ConvBlock(nn.Module):
    """Reflect-pad, conv, optional norm (in / ln / adain), optional LeakyReLU 0.3."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, norm: str = "none",
                 activation: bool = True, dilation: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(padding)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, dilation=dilation)
        self.norm = {"in": lambda: nn.InstanceNorm2d(cout), "ln": lambda: LayerNorm(cout),
                     "adain": lambda: AdaIN(cout), "none": lambda: None}[norm]()
        self.activation = nn.LeakyReLU(SLOPE, inplace=True) if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x) if self.activation is not None else x


class ResBlock(nn.Module):
    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.model = nn.Sequential(ConvBlock(channels, channels, 3, 1, 1, norm), ConvBlock(channels, channels, 3, 1, 1, norm, activation=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + x


class ResBlocks(nn.Module):
    def __init__(self, count: int, channels: int, norm: str) -> None:
        super().__init__()
        self.model = nn.Sequential(*(ResBlock(channels, norm) for _ in range(count)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ASPP(nn.Module):
    """Atrous spatial pyramid: 1×1 and dilated (3, 6, 9) 3×3 branches of C/2 channels, fused to 2C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1 = ConvBlock(channels, half, 1, 1, 0, "in", activation=False)
        for name, rate in (("conv6", 3), ("conv12", 6), ("conv18", 9)):
            setattr(self, name, nn.Sequential(ConvBlock(channels, half, 1, 1, 0, "in"),
                                              ConvBlock(half, half, 3, 1, rate, "in", activation=False, dilation=rate)))
        self.fuse = ConvBlock(4 * half, 2 * channels, 1, 1, 0, "in", activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.conv1(x), self.conv6(x), self.conv12(x), self.conv18(x)], dim=1))


class PrototypeEncoder(nn.Module):
    """E^p: 3×256×128 image → 256×64×32 prototype code (official ``ResidualEncoder``, enc_type 2)."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.model1 = nn.Sequential(ConvBlock(3, dim, 3, 2, 1, "in"), ConvBlock(dim, 2 * dim, 3, 1, 1, "in"))
        self.model2 = nn.Sequential(ConvBlock(2 * dim, 2 * dim, 3, 1, 1, "in"), ConvBlock(2 * dim, 4 * dim, 3, 2, 1, "in"))
        self.model3 = nn.Sequential(ResBlocks(4, 4 * dim, "in"), ASPP(4 * dim))
        self.output_dim = 8 * dim
        _kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model3(self.model2(self.model1(x)))


class AttributeEncoder(nn.Module):
    """E^a: ResNet-50 (conv1…layer4, global average pool) → 2,048-d attribute vector (official ``ft_resnet``)."""

    def __init__(self, init: str) -> None:
        super().__init__()
        self.model = resnet50(init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return x.mean(dim=(2, 3))


class MLP(nn.Module):
    """Three linear layers 512→512→512→512, LeakyReLU between them (official ``MLP`` of ``LinearBlock``s)."""

    def __init__(self, dim: int = CHUNK, hidden: int = 512, out: int = 2 * PROTOTYPE_CHANNELS) -> None:
        super().__init__()
        self.model = nn.Sequential(_Linear(dim, hidden, True), _Linear(hidden, hidden, True), _Linear(hidden, out, False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _Linear(nn.Module):
    def __init__(self, cin: int, cout: int, activation: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout)
        self.activation = nn.LeakyReLU(SLOPE, inplace=True) if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return self.activation(x) if self.activation is not None else x


class Decoder(nn.Module):
    """G: prototype (256×64×32) + attribute vector (2,048) → image in ImageNet-normalised space."""

    def __init__(self, channels: int = PROTOTYPE_CHANNELS) -> None:
        super().__init__()
        self.model = nn.Sequential(
            ResBlocks(4, channels, "adain"),
            nn.Upsample(scale_factor=2), ConvBlock(channels, channels // 2, 5, 1, 2, "ln"),
            nn.Upsample(scale_factor=2), ConvBlock(channels // 2, channels // 4, 5, 1, 2, "ln"),
            ConvBlock(channels // 4, channels // 4, 3, 1, 1), ConvBlock(channels // 4, channels // 4, 3, 1, 1),
            ConvBlock(channels // 4, 3, 1, 1, 0, activation=False),
        )
        for k in range(1, CHUNKS + 1):
            setattr(self, f"mlp_w{k}", MLP())
            setattr(self, f"mlp_b{k}", MLP())
        _kaiming(self)

    def forward(self, prototype: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
        chunks = attribute.split(CHUNK, dim=1)
        weights = torch.cat([getattr(self, f"mlp_w{k + 1}")(c) for k, c in enumerate(chunks)], dim=1)
        biases = torch.cat([getattr(self, f"mlp_b{k + 1}")(c) for k, c in enumerate(chunks)], dim=1)
        layers = [m for m in self.model.modules() if isinstance(m, AdaIN)]
        for index, layer in enumerate(layers):  # AdaIN layer j takes channels [256 j, 256 j + 256)
            part = slice(index * layer.channels, (index + 1) * layer.channels)
            layer.params = (weights[:, part], biases[:, part])
        try:
            return self.model(prototype)
        finally:
            for layer in layers:
                layer.params = None


class Discriminator(MultiScalePatches):
    """A 3-scale LSGAN patch discriminator (official ``Discriminator``, D_type 2), N(0, 0.02) init."""

    def __init__(self, dim: int = 32, scales: int = 3) -> None:
        super().__init__(
            nn.Sequential(
                ConvBlock(3, dim, 1, 1, 0), ConvBlock(dim, dim, 3, 1, 1), ConvBlock(dim, dim, 3, 2, 1),
                ConvBlock(dim, dim, 3, 1, 1), ConvBlock(dim, 2 * dim, 3, 2, 1),
                *(ResBlock(2 * dim, "none") for _ in range(4)), nn.Conv2d(2 * dim, 1, 1, 1, 0),
            )
            for _ in range(scales)
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)


class PrototypeBackbone(nn.Module):
    """H: ResNet-50 layer2 + layer3 on the 256-channel prototype, global average pool → 1,024-d
    (official ``ft_resnet2``; the rest of the ResNet stays registered, unused, as there)."""

    def __init__(self, init: str) -> None:
        super().__init__()
        self.model = resnet50(init)

    def forward(self, prototype: torch.Tensor) -> torch.Tensor:
        return self.model.layer3(self.model.layer2(prototype)).mean(dim=(2, 3))


class CombineWeight(nn.Module):
    """α, the learnable weight of the prototype part (init 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.multp = nn.Parameter(torch.tensor(0.5))


class ClassBlock(nn.Module):
    """fc1 (2048→2048) + BN1d + dropout → f; fc2 (2048→1024) → triplet feature; classifier → logits."""

    def __init__(self, input_dim: int, classes: int, fc1: int = 2048, fc2: int = 1024, droprate: float = 0.5) -> None:
        super().__init__()
        self.add_block = nn.Sequential(nn.Linear(input_dim, fc1), nn.BatchNorm1d(fc1), nn.Dropout(droprate))
        self.add_block2 = nn.Sequential(nn.Linear(fc1, fc2))
        self.classifier = nn.Sequential(nn.Linear(fc1, classes))
        for module in (*self.add_block, *self.add_block2):
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_out")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier[0].weight, std=0.001)
        nn.init.zeros_(self.classifier[0].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.add_block(x)
        return self.classifier(f), f, self.add_block2(f)


class IdClassifier(nn.Module):
    def __init__(self, input_dim: int, classes: int) -> None:
        super().__init__()
        self.classifier = ClassBlock(input_dim, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.classifier(x)


class Generator(nn.Module):
    """One modality's encoders, named as the official ``gen_RGB`` / ``gen_IR``; the RGB one also holds
    the decoder both share (the official ``gen_IR.dec = gen_RGB.dec``; registering it once keeps
    every tensor saved once)."""

    def __init__(self, init: str, decoder: Decoder | None = None) -> None:
        super().__init__()
        self.enc_att = AttributeEncoder(init)
        self.enc_pro = PrototypeEncoder()
        if decoder is not None:
            self.dec = decoder


class HiCMDNet(nn.Module):
    """Both generators (shared decoder), H, α and the identity head: everything but the discriminators."""

    def __init__(self, classes: int, init: str = "scratch") -> None:
        super().__init__()
        self.gen_RGB = Generator(init, Decoder())
        self.gen_IR = Generator(init)
        self.backbone_pro = PrototypeBackbone(init)
        self.combine_weight = CombineWeight()
        self.id_classifier = IdClassifier(1024 + STYLE * CHUNKS, classes)

    def generator(self, infrared: bool) -> Generator:
        return self.gen_IR if infrared else self.gen_RGB

    @property
    def decoder(self) -> Decoder:
        return self.gen_RGB.dec

    def combine(self, prototype: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
        """d^comb = [min(α,1)·p^d/‖p^d‖ ; max(1−α,0)·a^s/‖a^s‖] from a prototype code and an attribute vector."""
        alpha = self.combine_weight.multp
        pd = F.normalize(self.backbone_pro(prototype), dim=1)
        style = F.normalize(attribute[:, STYLE_INDEX.to(attribute.device)], dim=1)
        return torch.cat([alpha.clamp(max=1.0) * pd, (1.0 - alpha).clamp(min=0.0) * style], dim=1)

    def features(self, images: torch.Tensor, infrared: torch.Tensor) -> torch.Tensor:
        """The test feature f (fc1 + BN output) of ImageNet-normalised 256×128 images, per-image modality."""
        prototypes = images.new_empty(images.shape[0], PROTOTYPE_CHANNELS, images.shape[2] // 4, images.shape[3] // 4)
        attributes = images.new_empty(images.shape[0], ATTRIBUTE_DIM)
        for flag in (False, True):
            chosen = infrared == flag
            if bool(chosen.any()):
                generator = self.generator(flag)
                prototypes[chosen] = generator.enc_pro(images[chosen])
                attributes[chosen] = generator.enc_att(images[chosen])
        return self.id_classifier(self.combine(prototypes, attributes))[1]


def _kaiming(module: nn.Module) -> None:
    """Official ``weights_init('kaiming')``: conv/linear weights kaiming-normal (fan-in), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            nn.init.zeros_(m.bias)


def inference_modules(net: HiCMDNet, infrared: bool = False) -> list[nn.Module]:
    """What one image passes through at test time: E^p, E^a (without its unused fc), H, fc1 + BN."""
    generator = net.generator(infrared)
    resnet = generator.enc_att.model
    attribute = [m for name, m in resnet.named_children() if name != "fc"]
    head = net.id_classifier.classifier.add_block
    return [generator.enc_pro, *attribute, net.backbone_pro.model.layer2, net.backbone_pro.model.layer3, head[0], head[1]]


def resize_bicubic(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) [0, 1] → (3, *size) by PIL bicubic on the 8-bit image: the official loaders'
    ``transforms.Resize((256, 128), interpolation=3)`` on the PIL images they read (torch's bicubic,
    without PIL's antialiasing support, differs by about 1/255 on average)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image.float()
    return resize_pil(image, size[1], size[0], Image.BICUBIC)


def preprocess(images: list[torch.Tensor], size: tuple[int, int] = (256, 128)) -> torch.Tensor:
    """Resize (PIL bicubic, as the official loader) and ImageNet-normalise a list of (3, H, W) [0, 1] images."""
    batch = torch.stack([resize_bicubic(image, size) for image in images])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


def is_infrared(modality: str) -> bool:
    """RGB vs IR branch from a sample's modality field (the protocols' spellings)."""
    name = str(modality).lower()
    if name in ("visible", "rgb"):
        return False
    if name in ("infrared", "thermal", "ir", "nir"):
        return True
    raise DataError(f"hi-cmd: unknown modality {modality!r}; expected visible/rgb or infrared/thermal/ir")


OFFICIAL_FILE = re.compile(r"^(gen|id)_(\d+)\.pt$")


def official_pair(path: Path) -> tuple[Path, Path] | None:
    """The official (gen, id) checkpoint pair named by a folder or by either file, if that is what it is."""
    folder, step = path, None
    if path.is_file():
        match = OFFICIAL_FILE.match(path.name)
        if match is None:
            return None
        folder, step = path.parent, match.group(2)
    steps = sorted({m.group(2) for p in folder.iterdir() if (m := OFFICIAL_FILE.match(p.name))}) if folder.is_dir() else []
    if step is None:
        if not steps:
            return None
        step = steps[-1]
    gen, ident = folder / f"gen_{step}.pt", folder / f"id_{step}.pt"
    if not (gen.is_file() and ident.is_file()):
        raise DataError(f"hi-cmd: official checkpoints come in pairs; {folder} lacks {gen.name if not gen.is_file() else ident.name}")
    return gen, ident


def official_hicmd_state(gen_path: Path, id_path: Path) -> dict[str, torch.Tensor]:
    """The `HiCMDNet` state from the official pair: ``gen.a`` → ``gen_RGB``, ``gen.b`` but its (shared) decoder →
    ``gen_IR``, ``id.id`` → ``id_classifier``, ``backbone_pro`` and ``combine_weight`` as they are."""
    def read(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"cannot load {path}: {exc} (expected an official Hi-CMD checkpoint of tensors)") from None
        missing = [key for key in keys if key not in content]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)}; official Hi-CMD checkpoints hold {', '.join(keys)}")
        return content

    gen = read(gen_path, ("a", "b"))
    ident = read(id_path, ("id", "backbone_pro", "combine_weight"))
    state: dict[str, torch.Tensor] = {}
    ir = {key: value for key, value in gen["b"].items() if not key.removeprefix("module.").startswith("dec.")}  # the shared decoder, again
    for prefix, part in (("gen_RGB.", gen["a"]), ("gen_IR.", ir), ("id_classifier.", ident["id"]),
                         ("backbone_pro.", ident["backbone_pro"]), ("combine_weight.", ident["combine_weight"])):
        state.update({prefix + key.removeprefix("module."): value for key, value in part.items()})
    return state


# -- training (ID-PIG + HFL, official update order) -------------------------------------------------
def swap_excluded(first: torch.Tensor, second: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``first`` with the dims in ``keep`` taken from ``second`` (the official ``change_two_index``)."""
    out = first.clone()
    out[:, keep] = second[:, keep]
    return out


def lsgan_d(discriminator: Discriminator, fake: torch.Tensor, real: torch.Tensor, r1: float) -> torch.Tensor:
    """LSGAN discriminator loss over the scales, plus an R1 penalty (sum of squared input gradients) on reals."""
    real = real.detach().requires_grad_(r1 > 0)
    loss = fake.new_zeros(())
    for out_fake, out_real in zip(discriminator(fake.detach()), discriminator(real)):
        loss = loss + out_fake.pow(2).mean() + (out_real - 1).pow(2).mean()
        if r1 > 0:
            grad = torch.autograd.grad(out_real.sum(), real, create_graph=True)[0]
            loss = loss + r1 * grad.pow(2).flatten(1).sum(1).mean()
    return loss


def lsgan_g(discriminator: Discriminator, fake: torch.Tensor) -> torch.Tensor:
    return sum((out - 1).pow(2).mean() for out in discriminator(fake))


def cosine_triplet(features: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor, margin: float, reg: float) -> torch.Tensor:
    """Official HFL triplet: cosine similarity of L2-normalised fc2 features, hardest positive and
    negative per anchor over the whole pool, relu(s_neg + m − s_pos) plus the similarity regulariser
    mean((1 + s_neg)²) + mean((s_pos − 1)²)."""
    f = F.normalize(features, dim=1)
    sim = f[anchors] @ f.T
    same = labels[anchors][:, None] == labels[None, :]
    same[torch.arange(len(anchors)), anchors] = False  # an anchor is not its own positive
    s_pos = sim.masked_fill(~same, float("inf")).min(dim=1).values
    s_neg = sim.masked_fill(same | (torch.arange(len(labels))[None, :] == anchors[:, None]), float("-inf")).max(dim=1).values
    valid = torch.isfinite(s_pos) & torch.isfinite(s_neg)
    s_pos, s_neg = s_pos[valid], s_neg[valid]
    return F.relu(s_neg + margin - s_pos).mean() + reg * ((1 + s_neg).pow(2).mean() + (s_pos - 1).pow(2).mean())


WEIGHTS = {"cross": 50.0, "same": 50.0, "cycle": 50.0, "code": 10.0, "kl": 1.0, "adv": 20.0, "ce": 1.0, "trip": 1.0}
"""λ of the paper (Eq. 8) and the official set_option.py (w_cross_x, w_recon_x, w_cycle_x, w_recon_s, w_style_kl, w_gan, w_CE, w_trip)."""


class HiCMDTraining(nn.Module):
    """The generator/HFL network and both discriminators; `step` runs one official iteration:
    a discriminator update on freshly generated fakes, then one backward of ID-PIG + HFL losses.

    The IR encoders and the IR discriminator start as copies of the RGB ones, as the official
    ``trainer.py`` builds them (``copy.deepcopy``); they are trained separately from there."""

    def __init__(self, net: HiCMDNet, size: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.dis_RGB = Discriminator()
        self.dis_IR = copy.deepcopy(self.dis_RGB)
        net.gen_IR.enc_pro.load_state_dict(net.gen_RGB.enc_pro.state_dict())
        net.gen_IR.enc_att.load_state_dict(net.gen_RGB.enc_att.state_dict())
        self.size = size

    def encode(self, images: torch.Tensor, infrared: bool) -> tuple[torch.Tensor, torch.Tensor]:
        generator = self.net.generator(infrared)
        return generator.enc_pro(images), generator.enc_att(images)

    def fakes(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Codes and cross-modality images of a same-identity RGB (a) / IR (b) pair (§2.9 steps 1–4)."""
        dec = self.net.decoder
        p_a, att_a = self.encode(x_a, False)
        p_b, att_b = self.encode(x_b, True)
        excluded = EXCLUDED_INDEX.to(x_a.device)
        a_sw = swap_excluded(att_b, att_a, excluded)  # [b style; a pose, illumination]
        b_sw = swap_excluded(att_a, att_b, excluded)
        keep_illumination = ILLUMINATION_INDEX.to(x_a.device)
        a_ill = swap_excluded(att_b, att_a, keep_illumination)  # [b style, b pose; a illumination]
        b_ill = swap_excluded(att_a, att_b, keep_illumination)
        return {
            "p_a": p_a, "p_b": p_b, "att_a": att_a, "att_b": att_b, "a_sw": a_sw, "b_sw": b_sw,
            "x_ba": dec(p_b, a_sw), "x_ab": dec(p_a, b_sw), "x_ba3": dec(p_b, a_ill), "x_ab3": dec(p_a, b_ill),
        }

    def discriminator_loss(self, x_a: torch.Tensor, x_b: torch.Tensor, r1: float = 0.01) -> torch.Tensor:
        with torch.no_grad():
            made = self.fakes(x_a, x_b)
        return WEIGHTS["adv"] * (
            lsgan_d(self.dis_RGB, made["x_ba"], x_a, r1) + lsgan_d(self.dis_IR, made["x_ab"], x_b, r1)
            + lsgan_d(self.dis_RGB, made["x_ba3"], x_a, r1) + lsgan_d(self.dis_IR, made["x_ab3"], x_b, r1)
        )

    def generator_losses(self, x_a: torch.Tensor, x_b: torch.Tensor, labels: torch.Tensor, neg_a: torch.Tensor,
                         neg_b: torch.Tensor, neg_labels: tuple[torch.Tensor, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        made = self.fakes(x_a, x_b)
        dec = self.net.decoder
        style, excluded = STYLE_INDEX.to(x_a.device), EXCLUDED_INDEX.to(x_a.device)
        x_a_rec, x_b_rec = dec(made["p_a"], made["a_sw"]), dec(made["p_b"], made["b_sw"])
        p_b_hat, att_ba = self.encode(made["x_ba"], False)
        p_a_hat, att_ab = self.encode(made["x_ab"], True)
        losses = {
            "same": WEIGHTS["same"] * (F.l1_loss(x_a_rec, x_a) + F.l1_loss(x_b_rec, x_b)),
            "cross": WEIGHTS["cross"] * (F.l1_loss(made["x_ab"], x_b) + F.l1_loss(made["x_ba"], x_a)),
            "cycle": WEIGHTS["cycle"] * (F.l1_loss(dec(p_a_hat, made["a_sw"]), x_a) + F.l1_loss(dec(p_b_hat, made["b_sw"]), x_b)),
            "code": WEIGHTS["code"] * (
                F.l1_loss(att_ba[:, excluded], made["att_a"][:, excluded]) + F.l1_loss(att_ab[:, excluded], made["att_b"][:, excluded])
                + F.l1_loss(att_ba[:, style], made["att_b"][:, style]) + F.l1_loss(att_ab[:, style], made["att_a"][:, style])
            ),
            "kl": WEIGHTS["kl"] * (made["att_a"][:, excluded].pow(2).mean() + made["att_b"][:, excluded].pow(2).mean()),
            "adv": WEIGHTS["adv"] * (
                lsgan_g(self.dis_RGB, made["x_ba"]) + lsgan_g(self.dis_IR, made["x_ab"])
                + lsgan_g(self.dis_RGB, made["x_ba3"]) + lsgan_g(self.dis_IR, made["x_ab3"])
            ),
        }
        losses.update(self.hfl_losses(x_a, x_b, made["x_ab"], made["x_ba"], labels, neg_a, neg_b, neg_labels, rng))
        return losses

    def hfl_losses(self, x_a: torch.Tensor, x_b: torch.Tensor, x_ab: torch.Tensor, x_ba: torch.Tensor, labels: torch.Tensor,
                   neg_a: torch.Tensor, neg_b: torch.Tensor, neg_labels: tuple[torch.Tensor, torch.Tensor],
                   rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Alternate sampling (sets 1–8 of §2.6) on randomly erased, detached images; CE + cosine triplet."""
        def erase(images: torch.Tensor) -> torch.Tensor:  # official RandomErasing: p 0.5, area 0.02–0.4, aspect U(0.3, 1/0.3), fill 0
            return torch.stack([random_erasing(image, rng, aspect_sampling="uniform") for image in images.detach()])

        x_a, x_b, x_ab, x_ba, neg_a, neg_b = map(erase, (x_a, x_b, x_ab, x_ba, neg_a, neg_b))
        codes = {name: self.encode(images, infrared) for name, images, infrared in (
            ("a", x_a, False), ("b", x_b, True), ("ba", x_ba, False), ("ab", x_ab, True), ("na", neg_a, False), ("nb", neg_b, True))}

        def feature(prototype_of: str, style_of: str) -> torch.Tensor:
            return self.net.combine(codes[prototype_of][0], codes[style_of][1])

        sets = [feature("a", "a"), feature("b", "b"), feature("ba", "ba"), feature("ab", "ab"), feature("na", "na"), feature("nb", "nb"),
                torch.cat([feature("a", "ba"), feature("ba", "a")]), torch.cat([feature("b", "ab"), feature("ab", "b")])]
        set_labels = [labels, labels, labels, labels, neg_labels[0], neg_labels[1], labels.repeat(2), labels.repeat(2)]
        logits, _, triplet_features = self.net.id_classifier(torch.cat(sets))
        all_labels = torch.cat(set_labels)
        offsets = np.cumsum([0] + [len(s) for s in sets])
        loss_trip = logits.new_zeros(())
        for group in ((0, 2, 6), (1, 3, 7)):  # RGB-decoded anchors {1, 3, 7}, IR-decoded {2, 4, 8}
            anchors = torch.cat([torch.arange(offsets[g], offsets[g + 1]) for g in group]).to(logits.device)
            loss_trip = loss_trip + cosine_triplet(triplet_features, all_labels, anchors, margin=0.5, reg=1.0)
        return {"ce": WEIGHTS["ce"] * F.cross_entropy(logits, all_labels), "trip": WEIGHTS["trip"] * loss_trip}


def hi_cmd_batch(data: TrainingSet, seed: int, step: int, positives: int = 2, negatives: int = 2) -> tuple[torch.Tensor, ...]:
    """One official sampler item (``data_sampler.PosNegSampler``, 'P_PAIR' + 'N_PAIR'): ``positives``
    identities with one RGB and one IR image each (same order), plus ``negatives`` RGB and ``negatives``
    IR images of further distinct identities; seeded flips.

    Identities are drawn through images, so in proportion to their image counts, as the official
    loader does: the anchor is a uniformly drawn image (its identity's other-modality partner drawn
    among that identity's images); each further positive identity is the first IR image, in a random
    order, of an unused identity; the negatives are the first RGB and IR images, in a random order
    of all images, of unused identities."""
    labels, infrared = data.labels.numpy(), data.infrared.numpy()
    paired = np.isin(labels, np.fromiter(data.both, dtype=labels.dtype, count=len(data.both)))
    if len(data.both) < positives + 2 * negatives:
        raise DataError(f"hi-cmd batches need {positives + 2 * negatives} identities with both modalities; the split has {len(data.both)}")
    rng = step_rng(seed, step, 0)

    def partner(label: int, modality: int) -> int:
        members = data.both[label][modality]
        return members[int(rng.integers(len(members)))]

    anchor = int(rng.choice(np.flatnonzero(paired)))
    label = int(labels[anchor])
    rgb_pos, ir_pos = ([partner(label, 0)], [anchor]) if infrared[anchor] else ([anchor], [partner(label, 1)])
    used = {label}
    for row in rng.permutation(np.flatnonzero(paired & infrared)):
        if len(ir_pos) == positives:
            break
        if int(labels[row]) not in used:
            used.add(int(labels[row]))
            ir_pos.append(int(row))
            rgb_pos.append(partner(int(labels[row]), 0))
    rgb_neg: list[int] = []
    ir_neg: list[int] = []
    for row in rng.permutation(len(labels)):
        if len(rgb_neg) == negatives and len(ir_neg) == negatives:
            break
        chosen = ir_neg if infrared[row] else rgb_neg
        if int(labels[row]) not in used and len(chosen) < negatives:
            used.add(int(labels[row]))
            chosen.append(int(row))
    if len(ir_pos) < positives or len(rgb_neg) < negatives or len(ir_neg) < negatives:
        raise DataError(f"hi-cmd batches need {positives} identities with both modalities and {negatives} further RGB and "
                        f"{negatives} further IR identities; the training split has too few")
    out: list[torch.Tensor] = []
    for group, rows in enumerate((rgb_pos, ir_pos, rgb_neg, ir_neg)):  # stream 0 picked the rows; each image flips with its own stream
        out.extend([data.rows(rows, seed, step, stream=1 + 8 * group), data.labels[torch.tensor(rows)]])
    return tuple(out)


class HiCMDRecipe(TrainingRecipe):
    """The official iteration: a discriminator update on fakes made without gradients, then one
    backward of the ID-PIG + HFL losses and a step of the generator (Adam) and HFL (SGD) optimizers."""

    def __init__(self, model: HiCMDTraining, data: TrainingSet, context: TrainContext, step_size: int, description: dict[str, Any]) -> None:
        super().__init__(description, exported="net")
        self.model, self.data, self.context = model, data, context
        net = model.net
        self.networks.update(net=net, dis_RGB=model.dis_RGB, dis_IR=model.dis_IR)
        self.optimizers["gen"] = torch.optim.Adam([*net.gen_RGB.parameters(), *net.gen_IR.parameters()], lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
        self.optimizers["hfl"] = torch.optim.SGD([
            {"params": net.id_classifier.parameters(), "lr": 1e-3},
            {"params": net.backbone_pro.parameters(), "lr": 1e-3},
            {"params": net.combine_weight.parameters(), "lr": 1e-5},
        ], lr=1e-3, momentum=0.9, nesterov=True, weight_decay=1e-4)
        self.optimizers["dis"] = torch.optim.Adam([*model.dis_RGB.parameters(), *model.dis_IR.parameters()], lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
        for name, optimizer in self.optimizers.items():
            self.schedulers[name] = torch.optim.lr_scheduler.StepLR(optimizer, step_size, 0.5)
        self.batches = context.loader(lambda step: hi_cmd_batch(data, context.seed, step))

    def train_step(self, step: int) -> dict[str, float]:
        device, context = self.context.device, self.context
        x_a, y_a, x_b, _, neg_a, y_na, neg_b, y_nb = (
            normalise(t).to(device) if t.dim() == 4 else t.to(device) for t in self.batches(step)
        )
        dis = self.optimizers["dis"]
        dis.zero_grad(set_to_none=True)
        with context.autocast():
            loss_d = self.model.discriminator_loss(x_a, x_b)
        context.backward(loss_d)
        context.step(dis)
        rng = step_rng(context.seed, step, 2)
        for name in ("gen", "hfl"):
            self.optimizers[name].zero_grad(set_to_none=True)
        with context.autocast():
            losses = self.model.generator_losses(x_a, x_b, y_a, neg_a, neg_b, (y_na, y_nb), rng)
            total = sum(losses.values())
        context.backward(total)
        for name in ("gen", "hfl"):
            context.step(self.optimizers[name])
        for scheduler in self.schedulers.values():
            scheduler.step()
        return {"loss": float(total.detach()), "D": float(loss_d.detach()), **{k: float(v.detach()) for k, v in losses.items()}}


class HiCMD(Method):
    """Hi-CMD: ID-PIG disentanglement + hierarchical feature learning for visible-infrared re-id."""

    name = "hi-cmd"
    description = "Hi-CMD (CVPR 2020): per-modality prototype/attribute encoders, AdaIN decoder, HFL on ResNet-50; test feature fc1+BN, L2-normalised."
    paper = PAPER
    tasks = frozenset({"reidentification"})
    needs_checkpoint = True
    batch_size = 64  # official test batch
    options = (
        Option("classes", 0, "identities of the training split (the classifier size; 0: taken from the checkpoint)"),
        Option("init", "imagenet", "ResNet-50 start for training: ImageNet weights from $TORCH_HOME/hub/checkpoints, or scratch", choices=INITS),
        Option("height", 256, "input height (official 256; 128 with width 64 is the CPU setting for the synthetic sets)"),
        Option("width", 128, "input width (official 128)"),
        Option("step_size", 25000, "StepLR step in iterations (official: 25,000 RegDB, 50,000 SYSU-MM01)"),
    )
    default_steps = 100_000  # official RegDB schedule (4 × step size); SYSU-MM01: 200,000 with step_size=50000
    default_batch_size = 1
    official_weights = OfficialWeights(
        format="PyTorch pair gen_NNNNNNNN.pt ({'a', 'b'}: the RGB and IR generators) + id_NNNNNNNN.pt ({'id', "
               "'backbone_pro', 'combine_weight'}), named by a folder or either file; `weights import` records the "
               "sha256 of the file given",
        source="github.com/bismex/HiCMD README (pretrained RegDB model, Google Drive): the trainer's "
               "checkpoints/gen_NNNNNNNN.pt and id_NNNNNNNN.pt side by side; --option classes=N for a classifier of "
               "other than 206 identities (RegDB's)",
        suffixes=(".pt",),
    )

    def build(self, classes: int | None = None) -> HiCMDNet:
        return HiCMDNet(classes or self.config["classes"] or 206, init="scratch")

    def convert_official(self, path: Path, classes: int | None = None) -> dict[str, Any]:
        """The official checkpoint pair named by ``path`` as the state of the network `build` makes (for
        ``classes`` identities; a harness file as it is)."""
        pair = official_pair(Path(path))
        if pair is None:
            from harness.checkpoints import load_state_dict

            return load_state_dict(Path(path))
        state = official_hicmd_state(*pair)
        found = state.get("id_classifier.classifier.classifier.0.weight")
        built = classes or self.config["classes"] or 206
        if found is not None and int(found.shape[0]) != built:
            raise UsageError(f"{self.name}: {pair[1]} classifies {int(found.shape[0])} identities, the network is built "
                             f"for {built}: give --option classes={int(found.shape[0])}")
        return state

    def load(self, checkpoint: Path | None, device: str) -> None:
        classes = self.config["classes"] or (_classes_in(checkpoint) if checkpoint is not None else None)
        net = self.build(classes)
        if checkpoint is not None:
            pair = official_pair(Path(checkpoint))
            if pair is not None:
                try:
                    net.load_state_dict(self.convert_official(Path(checkpoint), classes), strict=True)
                except RuntimeError as exc:
                    raise DataError(f"{pair[0]} / {pair[1]} do not fit the Hi-CMD network: "
                                    f"{' '.join(str(exc).splitlines()[:4])}") from None
            else:
                load_into(net, Path(checkpoint))
        self._model = net.to(device).eval()
        self._device = device

    def training_recipe(self, dataset: Any, context: TrainContext) -> HiCMDRecipe:
        """The official schedule: per step one sampler item (2 positive RGB/IR pairs + 2 RGB and 2 IR
        negatives; ``--batch-size`` is ignored, as the official ``train_batchsize = 1``), a D update, then
        one backward of ID-PIG + HFL; Adam (G), SGD/Nesterov (HFL), Adam (D); StepLR ×0.5 every
        ``step_size`` iterations for all three."""
        size = (self.config["height"], self.config["width"])
        data = TrainingSet(dataset, "train", size, resizer=resize_bicubic, uint8=True)
        model = HiCMDTraining(HiCMDNet(data.classes, init=self.config["init"]), size).to(context.device)
        description = {
            "method": self.name, "options": dict(self.config), "classes": data.classes, "train_images": len(data.labels),
            "batch": "2 identities × (1 RGB + 1 IR) + 2 RGB and 2 IR negatives of 4 other identities, random flip; identities "
            "drawn through images, i.e. in proportion to their image counts (official data_sampler.py)",
            "input": "PIL bicubic resize of the 8-bit images (official transforms.Resize(interpolation=3)), kept as uint8",
            "initialisation": "IR prototype and attribute encoders and IR discriminator start as copies of the RGB ones (official copy.deepcopy)",
            "random_erasing": "p 0.5, area U(0.02, 0.4), aspect ratio U(0.3, 1/0.3) (official random_erasing.py), fill 0",
            "optimizers": "Adam 1e-4 (0.5, 0.999) wd 1e-4 for encoders + decoder; SGD Nesterov 0.9 wd 1e-4 lr 1e-3 (head, H), 1e-5 (α); Adam 1e-4 for D",
            "schedule": f"StepLR ×0.5 every {self.config['step_size']} steps", "loss_weights": WEIGHTS,
            "gan": "LSGAN, 3-scale D, R1 0.01 on reals, full and illumination-only swaps", "triplet": "cosine, margin 0.5, regulariser 1.0",
        }
        return HiCMDRecipe(model, data, context, self.config["step_size"], description)

    @torch.no_grad()
    def predict(self, samples: list[Sample]) -> list[Any]:
        images = preprocess([s["image"] for s in samples], (self.config["height"], self.config["width"])).to(self._device)
        infrared = torch.tensor([is_infrared(s["modality"]) for s in samples], device=self._device)
        features = F.normalize(self._model.features(images, infrared), dim=1)
        return list(features.float().cpu())


def _classes_in(checkpoint: Path) -> int | None:
    """The classifier size stored in a checkpoint (official pair or a harness file), to build a matching head."""
    pair = official_pair(Path(checkpoint))
    if pair is not None:
        state = torch.load(pair[1], map_location="cpu", weights_only=True).get("id", {})
        key = "classifier.classifier.0.weight"
    else:
        from harness.checkpoints import load_state_dict

        path = Path(checkpoint)
        state = load_state_dict(path) if path.is_file() else {}
        key = "id_classifier.classifier.classifier.0.weight"
    weight = state.get(key)
    return int(weight.shape[0]) if weight is not None else None


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(HiCMD)
