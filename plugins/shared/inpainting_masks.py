"""Inpainting hole masks: a seeded, versioned part of a dataset's protocol.

A mask is a pure function of (generator, its parameters, seed, sample id, image size), so the same
(image, seed) always gives the same hole in every process and on every machine: the per-sample random
stream is seeded from a SHA-256 of ``"<seed>/<sample id>"`` (never Python's salted ``hash``) and drawn
with numpy's PCG64, whose stream numpy guarantees across versions for ``integers``/``random``.

Generators (``MASK_VERSION`` changes whenever any of them would draw a different mask):

* ``center``: one centred square whose side is ``hole`` × the shorter image side (0.5: 64×64 in
  128×128 for thesis Table 2.1, 128×128 in 256×256 for Table 3.2's centre rows, 256×256 in 512×512
  for the chapter-2 high-resolution protocol). The seed is unused.
* ``random``: Table 3.2's random rows ("single or multiple holes at random locations ... between 1/4
  and 1/2 of the image's size"). The thesis gives no generator, so the harness fixes one: a target
  coverage c ~ U(1/4, 1/2) of the image *area*, k ∈ {1, 2, 3} axis-aligned rectangles (uniform), each
  with area c/k of the image and aspect ratio exp(U(ln ½, ln 2)), placed uniformly inside the image;
  the draw is repeated (same stream) until the union of the rectangles covers between 1/4 and 1/2 of
  the image. So every mask covers [1/4, 1/2] of the pixels (tested).
* ``file``: released mask PNGs (e.g. an irregular-mask test set) from ``mask_dir``; sample i of a
  split takes the mask at a seeded position of the sorted file list, resized with nearest neighbour
  to the image; a pixel is in the hole where the mask's grey level is > 127 (``mask_invert`` flips it
  for sets that mark the hole black).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from harness import DataError, Option, UsageError
from harness.data import list_images, read_image

MASK_VERSION = 1
KINDS = ("center", "random", "file")
COVERAGE = (0.25, 0.5)
"""The fraction of the image area a ``random`` mask covers (inclusive bounds)."""
MAX_DRAWS = 1000


def mask_options(default_kind: str = "center") -> tuple[Option, ...]:
    """The mask options every inpainting dataset declares (and so records)."""
    return (
        Option("mask", default_kind, "hole generator: center (centred square), random (1-3 rectangles covering "
               "1/4-1/2 of the image), file (mask PNGs from mask_dir)", choices=KINDS),
        Option("mask_seed", 0, "seed of the random/file mask draw (the same seed gives the same masks)"),
        Option("hole", 0.5, "center: side of the square hole as a fraction of the shorter image side"),
        Option("mask_dir", "", "file: folder of mask PNGs (white = hole unless mask_invert)"),
        Option("mask_invert", False, "file: the hole is black in the mask files"),
    )


def sample_rng(seed: int, sample_id: str) -> np.random.Generator:
    """The random stream of one sample: PCG64 seeded from SHA-256 of ``"<seed>/<id>"``."""
    digest = hashlib.sha256(f"{seed}/{sample_id}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def center_mask(height: int, width: int, hole: float) -> np.ndarray:
    if not 0.0 < hole < 1.0:
        raise UsageError(f"mask option 'hole' must be in (0, 1), got {hole}")
    side = int(round(min(height, width) * hole))
    top, left = (height - side) // 2, (width - side) // 2
    mask = np.zeros((height, width), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def random_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """1-3 random rectangles whose union covers 1/4-1/2 of the image (see the module docstring)."""
    low, high = COVERAGE
    area = height * width
    for _ in range(MAX_DRAWS):
        coverage = low + (high - low) * rng.random()
        count = int(rng.integers(1, 4))
        mask = np.zeros((height, width), dtype=bool)
        for _ in range(count):
            aspect = math.exp(math.log(0.5) + (math.log(2.0) - math.log(0.5)) * rng.random())
            rect_area = coverage * area / count
            rect_h = min(height, max(1, int(round(math.sqrt(rect_area * aspect)))))
            rect_w = min(width, max(1, int(round(rect_area / rect_h))))
            top = int(rng.integers(0, height - rect_h + 1))
            left = int(rng.integers(0, width - rect_w + 1))
            mask[top : top + rect_h, left : left + rect_w] = True
        if low <= mask.mean() <= high:
            return mask
    raise DataError(f"random mask: no draw covered {low}-{high} of a {height}x{width} image in {MAX_DRAWS} tries")


@dataclasses.dataclass(frozen=True)
class MaskGenerator:
    """The configured generator of one dataset instance; ``mask(id, h, w)`` is pure."""

    kind: str
    seed: int
    hole: float = 0.5
    mask_dir: str = ""
    invert: bool = False

    @classmethod
    def from_config(cls, config: dict) -> "MaskGenerator":
        generator = cls(config["mask"], int(config["mask_seed"]), float(config["hole"]),
                        str(config["mask_dir"]), bool(config["mask_invert"]))
        if generator.kind == "file" and not generator.mask_dir:
            raise UsageError("mask=file needs the option mask_dir (a folder of mask PNGs)")
        return generator

    def files(self) -> list[Path]:
        """The mask files read (``file`` only), sorted; a missing or empty folder raises `DataError`."""
        if self.kind != "file":
            return []
        folder = Path(self.mask_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"mask_dir {folder}: no such folder (expected a folder of mask PNG files)")
        found = list_images(folder)
        if not found:
            raise DataError(f"mask_dir {folder}: no image files (expected mask PNG files)")
        return found

    def mask(self, sample_id: str, height: int, width: int) -> np.ndarray:
        """Bool (H, W), True inside the hole."""
        if self.kind == "center":
            return center_mask(height, width, self.hole)
        rng = sample_rng(self.seed, sample_id)
        if self.kind == "random":
            return random_mask(height, width, rng)
        files = self.files()
        path = files[int(rng.integers(0, len(files)))]
        grey = read_image(path).mean(axis=2)
        resized = np.array(Image.fromarray(grey.astype(np.uint8)).resize((width, height), Image.NEAREST))
        hole = resized <= 127 if self.invert else resized > 127
        if not hole.any():
            raise DataError(f"mask file {path} has no hole pixels (grey > 127{', inverted' if self.invert else ''})")
        return hole

    def describe(self) -> dict:
        return {"kind": self.kind, "version": MASK_VERSION, "seed": self.seed, "hole": self.hole,
                "mask_dir": self.mask_dir, "invert": self.invert}

    def digest(self, sample_ids: Iterable[str], height: int, width: int) -> str:
        """SHA-256 over every (id, packed mask) of a split: the masks a result was scored with."""
        digest = hashlib.sha256(f"masks/v{MASK_VERSION}/{height}x{width}\n".encode())
        for sample_id in sample_ids:
            digest.update(sample_id.encode() + b"\0")
            digest.update(np.packbits(self.mask(sample_id, height, width)).tobytes())
        return digest.hexdigest()
