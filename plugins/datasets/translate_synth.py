"""`translate-synth`: a bundled, deterministic two-domain set for unpaired translation with a known mapping.

Domain A is 64×64 crops of the photographs shipped inside scikit-image (test photographs are never
used for training). Domain B is a fixed, known function of domain A:

* ``night``: a day → night-like colour domain, per pixel: gamma 1.8, channel gains (0.55, 0.65, 1.0)
  (blue-shifted, as scotopic renderings do), overall gain 0.8;
* ``painterly``: a procedural painterly rendering: Gaussian smoothing (σ 1), 6 levels per channel
  (posterised flat colour), and dark strokes where the smoothed luma gradient is strong.

The training B images are renderings of *other* crops than the training A images, so training is truly
unpaired; the test B images are renderings of the test A images (``i_A.png`` ↔ ``i_B.png``), so the
ground-truth translation is known and paired metrics (PSNR, pixel accuracy) can be computed — for
testing a method's code, never as a claim about real data. Written in the CycleGAN layout under
``<root>/<variant>/`` and read by the very parser of `maps`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from harness import Option, hookimpl

from . import bundled
from .unpaired import CYCLEGAN_LAYOUT, UnpairedFolders

GENERATOR = "harness translate-synth"
GENERATOR_VERSION = 1
SEED = 20170330  # CycleGAN's arXiv date
SIZE = 64
VARIANTS = ("night", "painterly")
SOURCES = {"train": ("astronaut", "rocket", "coffee", "motorcycle_left"), "test": ("chelsea", "hubble_deep_field")}
COUNTS = {"train": 32, "test": 12}


def night(image: np.ndarray) -> np.ndarray:
    """Day → night-like colours (per pixel, uint8 → uint8)."""
    x = image.astype(np.float64) / 255.0
    y = 0.8 * np.power(x, 1.8) * np.array([0.55, 0.65, 1.0])
    return np.round(np.clip(y, 0, 1) * 255.0).astype(np.uint8)


def painterly(image: np.ndarray) -> np.ndarray:
    """Posterised, smoothed colour with dark strokes on strong edges (uint8 → uint8)."""
    x = ndimage.gaussian_filter(image.astype(np.float64) / 255.0, sigma=(1.0, 1.0, 0.0), mode="reflect")
    levels = 6
    flat = np.round(x * (levels - 1)) / (levels - 1)
    luma = x @ np.array([0.299, 0.587, 0.114])
    edge = np.hypot(ndimage.sobel(luma, 0, mode="reflect"), ndimage.sobel(luma, 1, mode="reflect"))
    stroke = np.clip((edge - 0.25) * 4.0, 0.0, 0.7)[..., None]
    return np.round(np.clip(flat * (1.0 - stroke), 0, 1) * 255.0).astype(np.uint8)


MAPPINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"night": night, "painterly": painterly}


def crops(rng: np.random.Generator, split: str, count: int) -> list[np.ndarray]:
    """``count`` SIZE² crops of the split's photographs, shrunk 2× or 4× by block averaging (plain numpy)."""
    photos = [bundled.source_photo(name) for name in SOURCES[split]]
    out = []
    for index in range(count):
        photo = photos[index % len(photos)]
        fits = [f for f in (2, 4) if min(photo.shape[:2]) >= SIZE * f]
        factor = fits[int(rng.random() * len(fits))]
        top = int(rng.random() * (photo.shape[0] - SIZE * factor + 1))
        left = int(rng.random() * (photo.shape[1] - SIZE * factor + 1))
        block = photo[top : top + SIZE * factor, left : left + SIZE * factor, :3].astype(np.float64)
        out.append(np.round(block.reshape(SIZE, factor, SIZE, factor, 3).mean(axis=(1, 3))).astype(np.uint8))
    return out


def synthesize(variant: str) -> dict[str, np.ndarray]:
    """Every image of one variant, by relative path (CycleGAN layout)."""
    mapping = MAPPINGS[variant]
    images: dict[str, np.ndarray] = {}
    for split, count in COUNTS.items():
        rng = np.random.default_rng([SEED, list(COUNTS).index(split)])
        sources = crops(rng, split, count)
        # Training B renders a second, independent set of crops: no trainA image has its translation in trainB.
        targets = crops(rng, split, count) if split == "train" else sources
        for number, (a, b) in enumerate(zip(sources, targets), start=1):
            images[f"{variant}/{split}A/{number:03d}_A.png"] = a
            images[f"{variant}/{split}B/{number:03d}_B.png"] = mapping(b)
    return images


def generate(folder: Path) -> dict[str, Any]:
    files: dict[str, str] = {}
    for variant in VARIANTS:
        files.update(bundled.write_pngs(folder, synthesize(variant)))
    sources = {
        name: hashlib.sha256(bundled.source_photo(name).tobytes()).hexdigest()
        for names in SOURCES.values()
        for name in names
    }
    manifest = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": SEED, "sources": sources, "files": files}
    return manifest


class TranslateSynth(UnpairedFolders):
    """Bundled unpaired set with a known A→B mapping: 32 train / 12 aligned test images per domain."""

    name = "translate-synth"
    description = (
        "Bundled two-domain set from scikit-image photographs (64x64): photo -> night-like colours or photo -> "
        "painterly rendering, 32 unpaired train / 12 aligned test images per domain, generated on first use."
    )
    version = str(GENERATOR_VERSION)
    source = (
        "generated locally by harness_plugins.datasets.translate_synth from the photographs bundled with "
        f"scikit-image (generator version {GENERATOR_VERSION}, seed {SEED}); delete the folder to regenerate it."
    )
    layout = "manifest.json\n" + "\n".join(
        f"{variant}/" + line for variant in VARIANTS for line in CYCLEGAN_LAYOUT.splitlines()
    )
    aligned = True
    default_metrics = {"pixel-accuracy": {}, "fid": {}, "kid": {}}
    options = (
        *UnpairedFolders.options,
        Option("variant", "night", "target domain: night-like colours or a painterly rendering", str, VARIANTS),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._generated = False

    def folder(self, split: str, domain: str) -> Path:
        if not self._generated:
            bundled.ensure_generated(self.root, GENERATOR, GENERATOR_VERSION, SEED, generate)
            self._generated = True
        return self.root / self.config["variant"] / f"{split}{domain}"

    def describe(self) -> dict[str, Any]:
        generator = {"version": GENERATOR_VERSION, "seed": SEED}
        return {**super().describe(), "variant": self.config["variant"], "generator": generator}


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(TranslateSynth)
