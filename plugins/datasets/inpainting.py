"""Inpainting benchmarks in the layouts they are distributed in: Paris StreetView, CelebA, an ImageNet
validation folder and the Places365 test folder (the Yang thesis, Tables 2.1 and 3.2).

A dataset here only finds its image files, brings each image to the protocol's square size (resize the
shorter side with PIL's antialiased bicubic filter, then centre-crop; CelebA first takes its centred
178×178 square) and attaches the hole from the configured `inpainting_masks.MaskGenerator`. A sample is
``{"id", "image", "masked", "mask"}``: ``masked`` is the image with the hole zeroed (a method that wants
the mean-colour fill of Context Encoder does that itself), ``mask`` is 1 inside the hole.

The masks enter the data digest through `Dataset.derived_digest`: it hashes every mask of the split
(they depend only on the generator, its seed, the ids and the protocol size, so no image is read).

Protocol choices the thesis leaves open, fixed here and recorded through the options:
* metric regions: Table 2.1's "Mean L1/L2 Loss" and PSNR do not say hole or whole image; the default
  metrics score the hole (mean, ×100 for ℓ1/ℓ2) and `--metric-option l1.region=full` gives the other;
  Table 3.2's ℓ1/ℓ2 are sums over all pixels of the whole [0, 1] image (its text says so).
* the 200-image Table 3.2 subsets are drawn by `fixed_subset` (seeded, a pure function of file names).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from harness import DataError, Dataset, Option, Sample, UsageError, hookimpl
from harness.data import IMAGE_SUFFIXES, list_images, read_image, to_tensor
from harness_plugins.shared.inpainting_masks import MaskGenerator, mask_options

SUBSET_SALT = "harness-inpainting-subset-v1"

TABLE_2_1_METRICS: dict[str, dict[str, Any]] = {
    "l1": {"reduction": "mean", "region": "hole", "percent": True},
    "l1@full": {},
    "l2": {"reduction": "mean", "region": "hole", "percent": True},
    "l2@full": {},
    "psnr": {"color": "rgb", "region": "hole"},
    "ssim": {"color": "rgb"},
}
"""Thesis Table 2.1 (Paris StreetView): mean ℓ1/ℓ2 in percent of [0, 1] and PSNR, on the hole; the ``@full``
labels give ℓ1/ℓ2 over the whole image (the table does not say which region it means). A label's
parameters are its metric's protocol parameters (keyed by metric name) with the tag's region."""

TABLE_3_2_METRICS: dict[str, dict[str, Any]] = {
    "l1": {"reduction": "sum", "region": "full"},
    "l1@hole": {},
    "l2": {"reduction": "sum", "region": "full"},
    "l2@hole": {},
    "ssim": {"color": "rgb"},
    "psnr": {"color": "rgb", "region": "hole"},
}
"""Thesis Table 3.2: ℓ1/ℓ2 summed over all pixels (and channels) of the [0, 1] image, whole-image SSIM;
``@hole`` labels and the hole PSNR are extra columns."""


def fixed_subset(names: list[str], count: int, salt: str = SUBSET_SALT) -> list[str]:
    """The ``count`` names with the smallest SHA-256 of ``"<salt>/<name>"``, in name order.

    The thesis picks "200 images at random" without publishing which; this choice needs no RNG library
    (so it cannot drift with a numpy version) and depends only on the official file names.
    """
    ranked = sorted(names, key=lambda n: hashlib.sha256(f"{salt}/{n}".encode()).hexdigest())
    return sorted(ranked[:count])


def square_resize(array: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (antialiased bicubic) and centre-crop a ``size``² square."""
    height, width = array.shape[:2]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        array = np.array(Image.fromarray(array).resize(new, Image.BICUBIC, reducing_gap=None))
        top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
        array = array[top : top + size, left : left + size]
    return np.ascontiguousarray(array)


class InpaintingDataset(Dataset):
    """Shared by every inpainting dataset: protocol size, mask generator, sample assembly, mask digest."""

    task = "inpainting"
    default_size: ClassVar[int] = 128
    default_mask: ClassVar[str] = "center"
    expected: ClassVar[dict[str, int]] = {}
    """Official image counts per split (checked unless ``strict=false``)."""
    default_metrics = TABLE_2_1_METRICS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each dataset declares the shared options with its own protocol defaults (size, mask kind)."""
        super().__init_subclass__(**kwargs)
        if "options" not in cls.__dict__:
            cls.options = cls._options()

    @classmethod
    def _options(cls) -> tuple[Option, ...]:
        return (
            Option("size", cls.default_size, "side of the square protocol image (pixels)"),
            Option("strict", True, "require the official image count of the split"),
        ) + mask_options(cls.default_mask)

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        if self.config["size"] < 16:
            raise UsageError(f"{self.name}: option 'size' must be at least 16, got {self.config['size']}")
        self.masks = MaskGenerator.from_config(self.config)
        self._rows: dict[str, list[tuple[str, Path]]] = {}

    # -- what each dataset defines -------------------------------------------------------------------
    def _scan(self, split: str) -> list[tuple[str, Path]]:
        """(id, image path) of every image of the split, sorted; raise `DataError` when missing."""
        raise NotImplementedError

    def _crop(self, array: np.ndarray) -> np.ndarray:
        """Dataset-specific crop before the square resize (CelebA's centred face square)."""
        return array

    # -- the Dataset API ------------------------------------------------------------------------------
    def rows(self, split: str) -> list[tuple[str, Path]]:
        if split not in self.splits:
            raise UsageError(f"dataset {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        if split not in self._rows:
            self._rows[split] = self._scan(split)
        return self._rows[split]

    def verify(self, split: str) -> None:
        rows = self.rows(split)
        if not rows:
            raise self._fail(f"split {split!r} has no images under {self.root}")
        wanted = self.expected.get(split)
        if self.config["strict"] and wanted is not None and len(rows) != wanted:
            raise self._fail(
                f"split {split!r}: found {len(rows)} images under {self.root}, expected {wanted}. "
                "Pass strict=false to score a non-standard subset."
            )
        self.masks.files()

    def _fail(self, message: str) -> DataError:
        return DataError(f"{self.name}: {message}\nExpected layout under the data root:\n{self.layout}\nSource: {self.source}")

    def files(self, split: str) -> list[Path]:
        return [path for _, path in self.rows(split)] + self.masks.files()

    def count(self, split: str) -> int | None:
        return len(self.rows(split))

    def derived_digest(self, split: str) -> str | None:
        size = self.config["size"]
        return self.masks.digest((sample_id for sample_id, _ in self.rows(split)), size, size)

    def index(self, split: str) -> list[Sample]:
        """Parse-only rows: the id and the image file of every sample, nothing decoded."""
        return [{"id": sample_id, "paths": {"image": path}} for sample_id, path in self.rows(split)]

    def load(self, row: Sample) -> Sample:
        """One sample: the protocol-size image, its hole mask and the masked image."""
        size = self.config["size"]
        image = to_tensor(square_resize(self._crop(read_image(row["paths"]["image"])), size))
        mask = torch.from_numpy(self.masks.mask(row["id"], size, size)).float()[None]
        return {"id": row["id"], "image": image, "masked": image * (1.0 - mask), "mask": mask}

    def samples(self, split: str) -> Iterator[Sample]:
        for row in self.index(split):
            yield self.load(row)

    def describe(self) -> dict[str, Any]:
        return {
            "size": self.config["size"],
            "masks": self.masks.describe(),
            "counts": {split: len(rows) for split, rows in self._rows.items()},
        }


def _images_in(folder: Path) -> list[tuple[str, Path]]:
    return [(path.stem, path) for path in list_images(folder)] if folder.is_dir() else []


class ParisStreetView(InpaintingDataset):
    """Paris StreetView as released by Pathak et al. for Context Encoder (from Doersch et al.)."""

    name = "paris-streetview"
    aliases = ("paris",)
    description = (
        "Paris StreetView (Context Encoder release): 14,900 train / 100 test images; 128x128 with a centred "
        "64x64 hole (thesis Table 2.1), or size=512 for the 256x256-hole high-resolution protocol."
    )
    paper = "Pathak et al., Context Encoders, CVPR 2016; Yang, USC PhD thesis 2019, Table 2.1"
    splits = ("train", "test")
    folders = {"train": "paris_train_original", "test": "paris_eval_gt"}
    expected = {"train": 14900, "test": 100}
    source = "on request from the Context Encoder authors (Pathak et al.), who repackaged Doersch et al.'s Paris data"
    layout = "paris_train_original/*.png (14,900 images)\nparis_eval_gt/*.png (100 images)"

    def _scan(self, split: str) -> list[tuple[str, Path]]:
        folder = self.root / self.folders[split]
        if not folder.is_dir():
            raise self._fail(f"missing folder {folder}")
        return _images_in(folder)


class CelebA(InpaintingDataset):
    """CelebA aligned faces with the official partition (0 train, 1 val, 2 test)."""

    name = "celeba"
    description = (
        "CelebA img_align_celeba with list_eval_partition.txt (162,770 / 19,867 / 19,962); the centred 178x178 "
        "square (rows 20-197) resized to `size` (default 128), centre hole."
    )
    paper = "Liu et al., Deep Learning Face Attributes in the Wild, ICCV 2015"
    splits = ("train", "val", "test")
    expected: ClassVar[dict[str, int]] = {"train": 162770, "val": 19867, "test": 19962}
    source = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped images + Eval/list_eval_partition.txt)"
    layout = "img_align_celeba/000001.jpg ... 202599.jpg\nlist_eval_partition.txt  (lines '000001.jpg 0'; 0 train, 1 val, 2 test)"
    PARTITION = {"train": "0", "val": "1", "test": "2"}

    def _scan(self, split: str) -> list[tuple[str, Path]]:
        listing, folder = self.root / "list_eval_partition.txt", self.root / "img_align_celeba"
        if not listing.is_file():
            raise self._fail(f"missing partition file {listing}")
        if not folder.is_dir():
            raise self._fail(f"missing image folder {folder}")
        rows, missing = [], []
        for number, line in enumerate(listing.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise self._fail(f"{listing}:{number}: expected '<file> <0|1|2>', got {line!r}")
            if parts[1] == self.PARTITION[split]:
                path = folder / parts[0]
                (rows if path.is_file() else missing).append((Path(parts[0]).stem, path))
        if missing:
            shown = ", ".join(str(p) for _, p in missing[:3])
            raise self._fail(f"{len(missing)} image(s) of split {split!r} listed in {listing.name} are missing: {shown}")
        return sorted(rows)

    def files(self, split: str) -> list[Path]:
        return [self.root / "list_eval_partition.txt", *super().files(split)]

    def _crop(self, array: np.ndarray) -> np.ndarray:
        height, width = array.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return array[top : top + side, left : left + side]


class CelebAHQ(InpaintingDataset):
    """CelebA-HQ as CelebAMask-HQ ships it, split by the CelebA partition of each image's source."""

    name = "celeba-hq"
    description = (
        "CelebA-HQ (CelebAMask-HQ release: 30,000 1024x1024 faces) split by the official CelebA partition of "
        "each image's source (CelebA-HQ-to-CelebA-mapping.txt); resized to `size` (default 256), centre hole."
    )
    paper = "Karras et al., Progressive Growing of GANs, ICLR 2018; Lee et al., MaskGAN (CelebAMask-HQ), CVPR 2020"
    splits = ("train", "val", "test")
    default_size = 256
    source = "CelebAMask-HQ (github.com/switchablenorms/CelebAMask-HQ) plus CelebA's Eval/list_eval_partition.txt"
    layout = (
        "CelebA-HQ-img/0.jpg ... 29999.jpg\nCelebA-HQ-to-CelebA-mapping.txt  (header 'idx orig_idx orig_file', "
        "rows '0 119613 119614.jpg')\nlist_eval_partition.txt  (CelebA's: '000001.jpg 0')"
    )

    def _scan(self, split: str) -> list[tuple[str, Path]]:
        mapping, listing, folder = (self.root / name for name in
                                    ("CelebA-HQ-to-CelebA-mapping.txt", "list_eval_partition.txt", "CelebA-HQ-img"))
        for path in (mapping, listing, folder):
            if not path.exists():
                raise self._fail(f"missing {path}")
        partition = dict(line.split()[:2] for line in listing.read_text().splitlines() if len(line.split()) >= 2)
        rows = []
        for number, line in enumerate(mapping.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts or parts[0] == "idx":
                continue
            if len(parts) != 3 or not parts[0].isdigit():
                raise self._fail(f"{mapping}:{number}: expected 'idx orig_idx orig_file', got {line!r}")
            if parts[2] not in partition:
                raise self._fail(f"{mapping}:{number}: {parts[2]} is not in {listing.name}")
            if partition[parts[2]] == CelebA.PARTITION[split]:
                path = folder / f"{parts[0]}.jpg"
                if not path.is_file():
                    raise self._fail(f"image {path} listed in {mapping.name} is missing")
                rows.append((parts[0], path))
        return sorted(rows, key=lambda row: int(row[0]))

    def files(self, split: str) -> list[Path]:
        return [self.root / "CelebA-HQ-to-CelebA-mapping.txt", self.root / "list_eval_partition.txt", *super().files(split)]


_SUBSETS: dict[str, list[str]] = {}


class _SubsetDataset(InpaintingDataset):
    """A fixed, seeded subset of an official file list (Table 3.2's "200 random test images")."""

    default_size = 256
    subset_size: ClassVar[int] = 200
    official_names: ClassVar[Callable[[], list[str]]]
    default_metrics = TABLE_3_2_METRICS

    @classmethod
    def subset(cls) -> list[str]:
        if cls.name not in _SUBSETS:
            _SUBSETS[cls.name] = fixed_subset(cls.official_names(), cls.subset_size)
        return list(_SUBSETS[cls.name])

    def _locate(self) -> dict[str, Path]:
        """File name → path for every image file directly in the root or one folder below it."""
        found: dict[str, Path] = {}
        if not self.root.is_dir():
            raise self._fail(f"data root {self.root} does not exist")
        for path in [*self.root.iterdir(), *(p for d in self.root.iterdir() if d.is_dir() for p in d.iterdir())]:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(path.name, path)
        return found

    def _scan(self, split: str) -> list[tuple[str, Path]]:
        found = self._locate()
        wanted = self.subset()
        present = [(Path(name).stem, found[name]) for name in wanted if name in found]
        if self.config["strict"] and len(present) != len(wanted):
            absent = [name for name in wanted if name not in found]
            raise self._fail(
                f"{len(absent)} of the {len(wanted)} subset images are missing from {self.root} "
                f"(e.g. {', '.join(absent[:3])}). Pass strict=false to score the ones present."
            )
        return present

    def describe(self) -> dict[str, Any]:
        names = self.subset()
        return {**super().describe(), "subset": {"size": len(names), "salt": SUBSET_SALT,
                                                 "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}}


class ImageNetValInpainting(_SubsetDataset):
    name = "imagenet-val-inpainting"
    description = (
        "ImageNet ILSVRC2012 validation: a fixed seeded subset of 200 images, 256x256 (shorter side resized, "
        "centre crop) with a centred 128x128 hole (thesis Table 3.2, centre rows)."
    )
    paper = "Yang, USC PhD thesis 2019, Table 3.2 (centre rows)"
    source = "ILSVRC2012_img_val.tar from image-net.org (50,000 images; flat or in class folders)"
    layout = "ILSVRC2012_val_00000001.JPEG ... ILSVRC2012_val_00050000.JPEG (flat, or one class folder deep)"
    expected = {"test": 200}

    @staticmethod
    def official_names() -> list[str]:
        return [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 50001)]


class Places2Inpainting(_SubsetDataset):
    name = "places2-inpainting"
    aliases = ("places365-inpainting",)
    description = (
        "Places365-Standard test (test_256): a fixed seeded subset of 200 images, 256x256, random holes "
        "covering 1/4-1/2 of the image (thesis Table 3.2, random rows)."
    )
    paper = "Yang, USC PhD thesis 2019, Table 3.2 (random rows)"
    source = "test_256.tar from places2.csail.mit.edu (328,500 images)"
    layout = "Places365_test_00000001.jpg ... Places365_test_00328500.jpg (e.g. the test_256/ folder as the root)"
    default_mask = "random"
    expected = {"test": 200}

    @staticmethod
    def official_names() -> list[str]:
        return [f"Places365_test_{n:08d}.jpg" for n in range(1, 328501)]


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    for dataset in (ParisStreetView, CelebA, CelebAHQ, ImageNetValInpainting, Places2Inpainting):
        register(dataset)
