"""`inpaint-synth`: a small, bundled, deterministic inpainting benchmark (no download).

128×128 images, 192 train / 24 test, half of them crops of the colour photographs shipped inside the
scikit-image wheel (test photographs are never used for training) and half procedural textures (oriented
sinusoidal gratings, rotated checkerboards, and scikit-image's brick/grass/gravel textures tinted with a
random colour). Every image is lit by a soft spotlight near its centre (a multiplicative Gaussian
illumination, 1 at its peak over an ambient floor of 0.2-0.4), the kind of regularity across a data set
that a learned method picks up in training and a diffusion fill (Telea, Navier-Stokes) cannot see from
the border of a centred hole. That makes the quick-start comparison informative in a minute of CPU
training: a briefly trained Context Encoder beats mean-fill and Telea on the hole.

The set is generated on first use into the dataset root (``$HARNESS_DATA/inpaint-synth``) with the shared
`bundled` machinery (atomic, manifest with every file's digest, byte-stable PNGs) and read by the same
`InpaintingDataset` code as the real benchmarks, so centre, random and file masks all apply.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness import hookimpl

from . import bundled
from .inpainting import InpaintingDataset
from .rain_synth import crop_clean, source_photo

GENERATOR = "harness inpaint-synth"
GENERATOR_VERSION = 1
SEED = 20170726
SIZE = 128
COUNTS = {"train": 192, "test": 24}
PHOTOS = {
    "train": ("astronaut", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field", "immunohistochemistry"),
    "test": ("coffee", "chelsea"),
}
TEXTURES = {"train": ("brick", "grass"), "test": ("gravel",)}
PROCEDURAL = ("grating", "checkerboard", "texture")


def _photo(name: str) -> np.ndarray:
    from skimage import data

    if name in ("brick", "grass", "gravel"):
        return getattr(data, name)()
    return source_photo(name)


def grating(rng: np.random.Generator, size: int) -> np.ndarray:
    """A sinusoidal grating between two random colours: random period (8-32 px), angle and phase."""
    period, angle, phase = 8 + 24 * rng.random(), math.pi * rng.random(), 2 * math.pi * rng.random()
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period + phase)
    low, high = rng.random(3) * 0.5, 0.5 + rng.random(3) * 0.5
    return low + wave[..., None] * (high - low)


def checkerboard(rng: np.random.Generator, size: int) -> np.ndarray:
    """A rotated checkerboard of two random colours, cell 10-28 px, softened by 1 px."""
    cell, angle = 10 + 18 * rng.random(), math.pi / 2 * rng.random()
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (x * math.cos(angle) + y * math.sin(angle)) / cell
    v = (-x * math.sin(angle) + y * math.cos(angle)) / cell
    square = 0.5 + 0.5 * np.tanh(4 * np.sin(math.pi * u) * np.sin(math.pi * v))
    low, high = rng.random(3) * 0.5, 0.5 + rng.random(3) * 0.5
    return low + square[..., None] * (high - low)


def tinted(rng: np.random.Generator, grey: np.ndarray, size: int) -> np.ndarray:
    """A crop of a grey scikit-image texture, tinted with a random colour."""
    crop = crop_clean(rng, np.repeat(grey[..., None], 3, axis=2), (size, size))[..., 0] / 255.0
    tint = 0.4 + 0.6 * rng.random(3)
    return crop[..., None] * tint


def spotlight(rng: np.random.Generator, size: int) -> np.ndarray:
    """Multiplicative illumination: ambient 0.2-0.4 plus a Gaussian spot (sigma 14-22 px) near the centre."""
    ambient, sigma = 0.2 + 0.2 * rng.random(), 14 + 8 * rng.random()
    cy, cx = size / 2 - 0.5 + 6 * (2 * rng.random(2) - 1)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    spot = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    return (ambient + (1 - ambient) * spot)[..., None]


def synthesize(split: str) -> list[np.ndarray]:
    """The uint8 (128, 128, 3) images of one split, fully determined by `SEED` and the split."""
    rng = np.random.default_rng([SEED, list(COUNTS).index(split)])
    photos = [_photo(name) for name in PHOTOS[split]]
    textures = [_photo(name) for name in TEXTURES[split]]
    images = []
    for index in range(COUNTS[split]):
        if index % 2 == 0:
            base = crop_clean(rng, photos[(index // 2) % len(photos)], (SIZE, SIZE)) / 255.0
        else:
            kind = PROCEDURAL[(index // 2) % len(PROCEDURAL)]
            if kind == "grating":
                base = grating(rng, SIZE)
            elif kind == "checkerboard":
                base = checkerboard(rng, SIZE)
            else:
                base = tinted(rng, textures[(index // 6) % len(textures)], SIZE)
        lit = np.clip(base * spotlight(rng, SIZE) * 1.15, 0.0, 1.0)
        images.append(np.round(lit * 255.0).astype(np.uint8))
    return images


def generate(folder: Path) -> dict[str, Any]:
    files: dict[str, str] = {}
    for split in COUNTS:
        for number, image in enumerate(synthesize(split), start=1):
            relative = f"{split}/{number:03d}.png"
            content = bundled.png_bytes(image)
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(content)
            files[relative] = hashlib.sha256(content).hexdigest()
    names = [n for split in COUNTS for n in (*PHOTOS[split], *TEXTURES[split])]
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": SEED,
        "sources": {name: hashlib.sha256(_photo(name).tobytes()).hexdigest() for name in names},
        "files": files,
    }


class InpaintSynth(InpaintingDataset):
    """Bundled synthetic inpainting set: 192 train / 24 test 128x128 images, generated on first use."""

    name = "inpaint-synth"
    description = (
        "Bundled inpainting set: 192 train / 24 test 128x128 images (scikit-image photographs and procedural "
        "textures under a soft central spotlight), generated deterministically on first use; centre 64x64 hole "
        "by default, mask=random for 1/4-1/2 rectangles."
    )
    version = str(GENERATOR_VERSION)
    splits = ("train", "test")
    expected = dict(COUNTS)
    source = (
        "generated locally by harness_plugins.datasets.inpaint_synth from images bundled with scikit-image "
        f"(generator version {GENERATOR_VERSION}, seed {SEED}); delete the folder to regenerate it."
    )
    layout = "manifest.json\ntrain/001.png ... train/192.png\ntest/001.png ... test/024.png"

    def _scan(self, split: str) -> list[tuple[str, Path]]:
        bundled.ensure_generated(self.root, GENERATOR, GENERATOR_VERSION, SEED, generate)
        folder = self.root / split
        return sorted((path.stem, path) for path in folder.glob("*.png"))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": {"version": GENERATOR_VERSION, "seed": SEED}}


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(InpaintSynth)
