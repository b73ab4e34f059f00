"""Unpaired translation sets in the layouts they are released in.

* The CycleGAN release (``horse2zebra``, ``apple2orange``, ``summer2winter_yosemite``, ``monet2photo``,
  ``vangogh2photo``, ``maps``, or any other ``*2*`` folder through ``cyclegan-folder``): four folders
  ``trainA/``, ``trainB/``, ``testA/``, ``testB/`` of images, unpaired between A and B.
* pix2pix's ``maps`` (``maps-pix2pix``): ``train/`` and ``val/`` of side-by-side 1200×600 images, the
  aerial photograph on the left and the map on the right; ``val/`` is the test split, as in pix2pix.

Direction is the ``direction`` option: ``AtoB`` translates domain A (the folder suffix ``A``) into B.
A sample is ``{"id", "image"}`` for a source-domain image; where the test split is *aligned* (the
same scene in both domains: ``maps`` in either layout, and `translate-synth`) it also holds
``"reference"``, the image's own target-domain counterpart, which pixel metrics need (Table 4.2 of
Yang's thesis scores map prediction per pixel). Distribution metrics (FID, KID) compare the
translated test images with `reference`: the whole target-domain test folder.

Training reads both domains: `domain_index(split, side)` lists the source or target rows. The thesis
trains its unpaired map models on the 1096 training photos and the 1098 *test* maps (``target_train=
test``, "thesis-leaky"); the default ``train`` reads the training maps (the clean variant).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness import DataError, Option, Reference, Sample, hookimpl
from harness.data import digest_files, list_images, read_image, to_tensor
from harness_plugins.shared.unpaired import SIDES, UnpairedDomains

DOMAIN_SUFFIX = re.compile(r"_[AB]$")
"""The CycleGAN ``maps`` release names aligned files ``12_A.jpg`` / ``12_B.jpg``: the pair key drops the suffix."""

CYCLEGAN_LAYOUT = """\
trainA/*.jpg|png   training images of domain A
trainB/*.jpg|png   training images of domain B (unpaired with trainA)
testA/*.jpg|png    test images of domain A
testB/*.jpg|png    test images of domain B"""

CYCLEGAN_SOURCE = (
    "the CycleGAN release: https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip "
    "(datasets/download_cyclegan_dataset.sh {name} in junyanz/pytorch-CycleGAN-and-pix2pix); unzip it so "
    "that the data root holds trainA/ trainB/ testA/ testB/"
)


def pair_key(stem: str) -> str:
    """The id shared by aligned files of the two domains (``12_A`` and ``12_B`` → ``12``)."""
    return DOMAIN_SUFFIX.sub("", stem)


class UnpairedFolders(UnpairedDomains):
    """Shared parsing of the four-folder CycleGAN layout; subclasses name the release and its counts."""

    default_metrics = {"fid": {}, "kid": {}}
    source = CYCLEGAN_SOURCE.format(name="<name>")
    layout = CYCLEGAN_LAYOUT
    aligned: ClassVar[bool] = False
    """True when ``testA/X_A`` and ``testB/X_B`` show the same scene, so each sample gets its ``reference``."""
    release_counts: ClassVar[dict[str, int]] = {}
    """Image counts of the official release per folder, recorded as ``complete`` in `describe`."""
    # -- layout ------------------------------------------------------------------------------------
    def folder(self, split: str, domain: str) -> Path:
        return self.root / f"{split}{domain}"

    def domain_files(self, split: str, side: str) -> list[Path]:
        """Image files of the source or target domain of a split (see `SIDES`)."""
        domain = self.domains()[SIDES.index(side)]
        folder = self.folder(split, domain)
        if not folder.is_dir():
            raise DataError(
                f"{self.name}: folder {folder} is missing; expected under {self.root}:\n{self.layout}\n"
                f"Data comes from {self.source}"
            )
        files = list_images(folder)
        if not files:
            raise DataError(f"{self.name}: {folder} holds no images (expected .jpg/.png files)")
        return files

    def verify(self, split: str) -> None:
        for side in SIDES:
            self.domain_files(split, side)
        if self.aligned and split == "test":
            self.aligned_targets(split)

    def files(self, split: str) -> list[Path]:
        return [path for side in SIDES for path in self.domain_files(split, side)]

    def aligned_targets(self, split: str) -> dict[str, Path]:
        """Target-domain file of every source image of an aligned split, by pair key."""
        targets = {pair_key(path.stem): path for path in self.domain_files(split, "target")}
        missing = [path.name for path in self.domain_files(split, "source") if pair_key(path.stem) not in targets]
        if missing:
            raise DataError(
                f"{self.name}: {len(missing)} source image(s) of {split} have no aligned target image "
                f"(e.g. {missing[0]}); aligned files share their name up to the _A/_B suffix"
            )
        return targets

    # -- rows and samples --------------------------------------------------------------------------
    def domain_index(self, split: str, side: str) -> list[Sample]:
        """Rows ``{"id", "domain", "paths": {"image": file}}`` of one side, for training samplers."""
        domain = self.domains()[SIDES.index(side)]
        return [
            {"id": pair_key(path.stem), "domain": domain, "paths": {"image": path}}
            for path in self.domain_files(split, side)
        ]

    def index(self, split: str) -> list[Sample]:
        """Rows of the source-domain images (what a method translates), with aligned references if any."""
        rows = self.domain_index(split, "source")
        if self.aligned and split == "test":
            targets = self.aligned_targets(split)
            for row in rows:
                row["paths"]["reference"] = targets[row["id"]]
        return rows

    def load(self, row: Sample) -> Sample:
        return {"id": row["id"], **{field: to_tensor(read_image(path)) for field, path in row["paths"].items()}}

    def count(self, split: str) -> int | None:
        try:
            return len(self.domain_files(split, "source"))
        except DataError:
            return None

    def reference(self, split: str) -> Reference:
        """The reference set of distribution metrics: every target-domain image of the split (not --limit'ed)."""
        files = self.domain_files(split, "target")
        description = f"{self.name} {split}{self.domains()[1]}: all {len(files)} target-domain images"
        return Reference(tuple(files), digest_files(files, self.root), description)

    def describe(self) -> dict[str, Any]:
        found = {}
        for split in self.splits:
            for domain in ("A", "B"):
                folder = self.folder(split, domain)
                found[folder.name] = len(list_images(folder)) if folder.is_dir() else 0
        complete = bool(self.release_counts) and all(found.get(k) == v for k, v in self.release_counts.items())
        return {"layout": "cyclegan", "direction": self.config["direction"], "counts": found, "complete": complete}


def _release(name: str, counts: tuple[int, int, int, int], about: str) -> type[UnpairedFolders]:
    """A named CycleGAN release: its folder name and the image counts of trainA, trainB, testA, testB."""
    keys = ("trainA", "trainB", "testA", "testB")
    return type(
        name.replace("2", "To").title().replace("_", ""),
        (UnpairedFolders,),
        {
            "name": name,
            "description": f"CycleGAN release {name}: {about} ({' / '.join(f'{k} {v}' for k, v in zip(keys, counts))}).",
            "source": CYCLEGAN_SOURCE.format(name=name),
            "release_counts": dict(zip(keys, counts)),
            "__module__": __name__,
        },
    )


RELEASES = (
    _release("horse2zebra", (1067, 1334, 120, 140), "ImageNet horses ↔ zebras"),
    _release("apple2orange", (995, 1019, 266, 248), "ImageNet apples ↔ oranges"),
    _release("summer2winter_yosemite", (1231, 962, 309, 238), "Flickr photos of Yosemite, summer ↔ winter"),
    _release("monet2photo", (1072, 6287, 121, 751), "Monet paintings ↔ Flickr landscape photos"),
    _release("vangogh2photo", (400, 6287, 400, 751), "Van Gogh paintings ↔ Flickr landscape photos"),
)


class CycleGANFolder(UnpairedFolders):
    """Any set in the CycleGAN four-folder layout (``--data-root`` names it)."""

    name = "cyclegan-folder"
    description = "Any unpaired set in the CycleGAN layout (trainA/ trainB/ testA/ testB/), e.g. a *2* release."
    source = "any folder in the CycleGAN release layout; pass it with --data-root"
    options = (
        *UnpairedFolders.options,
        Option("aligned", False, "testA/X_A and testB/X_B show the same scene (enables pixel metrics)", bool),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.aligned = self.config["aligned"]


class MapsCycleGAN(UnpairedFolders):
    """Aerial photographs ↔ Google maps of Manhattan, in the CycleGAN release (test files aligned)."""

    name = "maps"
    description = (
        "Maps (aerial photo ↔ map, 1096 train / 1098 test), CycleGAN layout; the test split is aligned, so "
        "pixel accuracy (Yang thesis Table 4.2) applies. target_train=test reproduces the thesis's leaky training."
    )
    source = CYCLEGAN_SOURCE.format(name="maps")
    aligned = True
    release_counts = {"trainA": 1096, "trainB": 1096, "testA": 1098, "testB": 1098}
    default_metrics = {"pixel-accuracy": {"resolution": 256}, "fid": {}, "kid": {}}
    """Pixel accuracy at 256² (the thesis resizes all images to 256×256); ``resolution=0`` scores at 600²."""
    options = (
        *UnpairedFolders.options,
        Option(
            "target_train",
            "train",
            "target-domain images training reads: train (clean) or test (the thesis's unpaired map "
            "training on the 1098 test maps, which the evaluation then scores: leaky)",
            str,
            ("train", "test"),
        ),
    )

    def domain_index(self, split: str, side: str) -> list[Sample]:
        if split == "train" and side == "target" and self.config["target_train"] == "test":
            return super().domain_index("test", side)
        return super().domain_index(split, side)

    def files(self, split: str) -> list[Path]:
        files = super().files(split)
        if split == "train" and self.config["target_train"] == "test":
            files = self.domain_files("train", "source") + self.domain_files("test", "target")
        return files


PIX2PIX_LAYOUT = """\
train/1.jpg ... train/1096.jpg   side by side, 1200×600: aerial photo (A) left, map (B) right
val/1.jpg ... val/1098.jpg       the same, the test split"""


class MapsPix2Pix(UnpairedFolders):
    """Maps in pix2pix's paired layout: each file holds the photo (left half) and its map (right half)."""

    name = "maps-pix2pix"
    description = "Maps in pix2pix's side-by-side layout (train/ 1096, val/ 1098 = test); aligned pairs."
    source = (
        "the pix2pix release: https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz "
        "(datasets/download_pix2pix_dataset.sh maps); unpack it so the data root holds train/ and val/"
    )
    layout = PIX2PIX_LAYOUT
    aligned = True
    release_counts = {"train": 1096, "val": 1098}
    default_metrics = MapsCycleGAN.default_metrics
    options = MapsCycleGAN.options
    split_folders: ClassVar[dict[str, str]] = {"train": "train", "test": "val"}

    def _files(self, split: str) -> list[Path]:
        folder = self.root / self.split_folders[split]
        if not folder.is_dir() or not list_images(folder):
            raise DataError(
                f"{self.name}: {folder} is missing or holds no images; expected under {self.root}:\n{self.layout}\n"
                f"Data comes from {self.source}"
            )
        return list_images(folder)

    def domain_files(self, split: str, side: str) -> list[Path]:
        return self._files(split)

    def files(self, split: str) -> list[Path]:
        files = self._files(split)
        if split == "train" and self.config["target_train"] == "test":
            files = files + self._files("test")
        return files

    def aligned_targets(self, split: str) -> dict[str, Path]:
        return {path.stem: path for path in self._files(split)}

    def domain_index(self, split: str, side: str) -> list[Sample]:
        if split == "train" and side == "target" and self.config["target_train"] == "test":
            split = "test"
        domain = self.domains()[SIDES.index(side)]
        return [{"id": path.stem, "domain": domain, "paths": {"image": path}} for path in self._files(split)]

    def load(self, row: Sample) -> Sample:
        sample: Sample = {"id": row["id"]}
        for field, path in row["paths"].items():
            domain = row["domain"] if field == "image" else self.domains()[1]
            sample[field] = to_tensor(self.half(read_image(path), domain, path))
        return sample

    @staticmethod
    def half(pair: np.ndarray, domain: str, path: Path) -> np.ndarray:
        """Domain A (the photo) is the left half, B (the map) the right half, as pix2pix's AtoB reads them."""
        width = pair.shape[1]
        if width % 2:
            raise DataError(f"maps-pix2pix: {path} is {width} pixels wide; expected two halves of equal width")
        return pair[:, : width // 2] if domain == "A" else pair[:, width // 2 :]

    def reference(self, split: str) -> None:
        """None: each file holds both halves, so distribution metrics use every sample's aligned map."""
        return None

    def describe(self) -> dict[str, Any]:
        found = {}
        for folder in self.split_folders.values():
            path = self.root / folder
            found[folder] = len(list_images(path)) if path.is_dir() else 0
        complete = all(found.get(k) == v for k, v in self.release_counts.items())
        return {"layout": "pix2pix", "direction": self.config["direction"], "counts": found, "complete": complete}


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    for dataset in (*RELEASES, CycleGANFolder, MapsCycleGAN, MapsPix2Pix):
        register(dataset)
