"""`rain-synth`: a small, bundled, deterministic deraining benchmark with Rain100H-like heavy rain.

Clean images are crops of the colour photographs shipped inside the scikit-image wheel (no download);
rain is synthesised the way Rain100H's is described (additive, clipped, motion-blurred streaks in
several directions and densities). The set is generated on first use into the dataset root
(``$HARNESS_DATA/rain-synth`` by default), atomically, in PReNet's ``rain-NNN.png`` /
``norain-NNN.png`` layout, and then read by the very parser of `rain100h`. A manifest records the
generator version and every file's digest; a changed generator or a damaged file regenerates the set.

Why it exists: CPU end-to-end tests and the README's quick start need real paired data with real
rain statistics, in seconds, without network access.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from harness import hookimpl

from . import bundled
from .bundled import png_bytes, source_photo, write_pngs  # noqa: F401  (re-exported: inpaint-synth, tests)
from .rain import PairedRainDataset

GENERATOR_VERSION = 1
SEED = 20190922
GENERATOR = "harness rain-synth"
SIZE = (96, 128)
"""(height, width) of landscape images; every fourth image is portrait (128, 96), as Rain100H mixes both."""

SOURCES = {
    "train": ("astronaut", "rocket", "motorcycle_left", "motorcycle_right"),
    "test": ("coffee", "chelsea"),
}
"""scikit-image photographs per split: test images never share a photograph with training images."""
COUNTS = {"train": 40, "test": 12}

DIRECTIONS = (-30.0, -15.0, 0.0, 15.0, 30.0)
"""Dominant streak angles from vertical, in degrees: Rain100H is 'synthesized with five rain streak directions'."""


def streak_kernel(length: float, angle: float) -> np.ndarray:
    """An anti-aliased line of ``length`` pixels at ``angle`` degrees from vertical, about 1 along the line."""
    radius = math.ceil(length / 2) + 1
    kernel = np.zeros((2 * radius + 1, 2 * radius + 1))
    samples = max(8, int(4 * length))
    t = np.linspace(-length / 2, length / 2, samples)
    theta = math.radians(angle)
    y, x = radius + t * math.cos(theta), radius + t * math.sin(theta)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    return kernel * (length / samples)


def rain_layer(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Rain100H-like streaks: 2-4 layers around one of five directions, each with its own density,
    length and brightness, summed (the caller adds them to the image and clips)."""
    direction = DIRECTIONS[int(rng.random() * len(DIRECTIONS))]
    total = np.zeros(shape)
    for _ in range(2 + int(rng.random() * 3)):
        density = 0.004 + 0.006 * rng.random()
        length = 10.0 + 16.0 * rng.random()
        angle = direction + 8.0 * (2.0 * rng.random() - 1.0)
        brightness = 0.4 + 0.35 * rng.random()
        drops = (rng.random(shape) < density) * (0.6 + 0.4 * rng.random(shape))
        streaks = ndimage.convolve(drops, streak_kernel(length, angle), mode="wrap")
        total += brightness * ndimage.gaussian_filter(streaks, 0.5, mode="wrap")
    return total


def crop_clean(rng: np.random.Generator, photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A random crop of ``photo`` shrunk 2x or 3x by block averaging (plain numpy, so no resampling
    library's version can change the pixels), rounded to uint8."""
    height, width = size
    fits = [f for f in (2, 3) if photo.shape[0] >= height * f and photo.shape[1] >= width * f]
    factor = fits[int(rng.random() * len(fits))]
    top = int(rng.random() * (photo.shape[0] - height * factor + 1))
    left = int(rng.random() * (photo.shape[1] - width * factor + 1))
    block = photo[top : top + height * factor, left : left + width * factor].astype(np.float64)
    shrunk = block.reshape(height, factor, width, factor, 3).mean(axis=(1, 3))
    return np.round(shrunk).astype(np.uint8)


def synthesize(split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (clean, rainy) uint8 pairs of one split, fully determined by `SEED` and the split."""
    rng = np.random.default_rng([SEED, list(SOURCES).index(split)])
    photos = [source_photo(name) for name in SOURCES[split]]
    pairs = []
    for index in range(COUNTS[split]):
        size = SIZE[::-1] if index % 4 == 3 else SIZE
        clean = crop_clean(rng, photos[index % len(photos)], size)
        rain = rain_layer(rng, size)
        rainy = np.clip(clean / 255.0 + rain[..., None], 0.0, 1.0)
        pairs.append((clean, np.round(rainy * 255.0).astype(np.uint8)))
    return pairs


def generate(folder: Path) -> dict[str, Any]:
    """Write both splits and the manifest into ``folder``; returns the manifest."""
    files = write_pngs(folder, {
        f"{split}/{prefix}-{number:03d}.png": image
        for split in SOURCES
        for number, (clean, rainy) in enumerate(synthesize(split), start=1)
        for prefix, image in (("rain", rainy), ("norain", clean))
    })
    sources = {
        name: hashlib.sha256(source_photo(name).tobytes()).hexdigest() for names in SOURCES.values() for name in names
    }
    manifest = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": SEED,
        "sources": sources,  # scikit-image photographs used, to trace a difference back to them
        "files": files,
    }
    return manifest


def read_manifest(root: Path) -> dict[str, Any] | None:
    return bundled.read_manifest(root)


def is_current(root: Path) -> bool:
    """True if ``root`` holds this generator version's output with every file intact."""
    return bundled.is_current(root, GENERATOR, GENERATOR_VERSION, SEED)


def ensure_generated(root: Path) -> None:
    """Generate the set atomically on first use (see `bundled.ensure_generated`)."""
    bundled.ensure_generated(root, GENERATOR, GENERATOR_VERSION, SEED, generate)


class RainSynth(PairedRainDataset):
    """Bundled synthetic heavy-rain pairs: 40 train / 12 test, generated deterministically on first use."""

    name = "rain-synth"
    description = (
        "Bundled synthetic Rain100H-like benchmark: 40 train / 12 test pairs of 96x128 crops of scikit-image "
        "photographs with heavy streak rain, generated deterministically on first use (no download)."
    )
    version = str(GENERATOR_VERSION)
    splits = ("train", "test")
    source = (
        "generated locally by harness_plugins.datasets.rain_synth from the photographs bundled with scikit-image "
        f"(generator version {GENERATOR_VERSION}, seed {SEED}); delete the folder to regenerate it."
    )
    layout = """\
manifest.json (generator version, seed, sha256 of every file)
train/rain-001.png, train/norain-001.png ... rain-040.png, norain-040.png
test/rain-001.png, test/norain-001.png ... rain-012.png, norain-012.png"""
    part_folders = {"train": ("train",), "test": ("test",)}
    expected_pairs = {"train": {COUNTS["train"]: "rain-synth train"}, "test": {COUNTS["test"]: "rain-synth test"}}

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._generated = False

    def _prepare(self) -> None:
        if not self._generated:
            ensure_generated(self.root)
            self._generated = True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": {"version": GENERATOR_VERSION, "seed": SEED}}


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(RainSynth)
