"""Descriptor-inversion sets: `celeba-sift` (the protocol of Wu, Zhou & Li) and the bundled `sift-synth`.

A sample holds what an eavesdropper of a CBIR query would see — ``keypoints``, ``descriptors`` and
the image ``size`` — plus the ground-truth ``image`` that only metrics read (the task's inputs never
include it). The SIFT pipeline is `sift_features` (centre square, gamma gray, OpenCV SIFT).

CelebA split (the paper: "8,000 random training images, 1,000 test images of different identities";
no list or seed was published, so this one is harness-defined): identities in ``identity_CelebA.txt``
are shuffled with seed `SPLIT_SEED`; the first 1,000 identities give one test image each (their
smallest file name), the remaining identities' images are shuffled with the same generator and the
first 8,000 are the training set. Test and training identities are disjoint by construction; the
split's file list is recorded (as a digest) with every result.

Partial descriptors (the paper's Fig. 7): ``drop_box=f`` removes every keypoint inside the centred box
of side f·size and adds the box as ``mask`` (1 inside). ``psnr``, ``l1`` and ``l2`` then score inside
the box (``region=hole``) and outside it (``region=outside``, the part whose descriptors were kept) as
two labels of one run; ``l1``/``l2`` take the region from the tag, ``psnr`` (whose tag names a
convention) from a per-label option::

    harness run --method descriptor-mean --checkpoint mean --dataset sift-synth --dataset-option drop_box=0.5 \
        --metric psnr@inside,psnr@outside,l1@hole,l1@outside \
        --metric-option psnr@inside.region=hole --metric-option psnr@outside.region=outside
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from harness import DataError, Dataset, Option, Sample, UsageError, hookimpl
from harness.data import list_images, read_image, to_tensor

from . import bundled, sift_features

SPLIT_SEED = 20190918
DEFAULT_METRICS = {"psnr": {"convention": "skimage-default"}, "ssim": {"convention": "skimage-default"}, "fid": {}, "is": {}}
"""Harness-defined (the paper reports no numbers): RGB 8-bit PSNR/SSIM as skimage computes them
(the convention of the authors' later SLI code), FID against the real test images, IS."""


class SiftDataset(Dataset):
    """Shared sample building: prepared image → SIFT keypoints/descriptors (+ optional dropped box)."""

    task = "descriptor-inversion"
    splits = ("train", "test")
    default_split = "test"
    default_metrics = DEFAULT_METRICS
    image_size: ClassVar[int] = 256
    options = (
        Option("contrast_threshold", 0.04, "OpenCV SIFT contrastThreshold (OpenCV default 0.04; SLI code 0.03)", float),
        Option("drop_box", 0.0, "partial-descriptor protocol: drop keypoints inside the centred box of this "
               "fraction of the side (0: keep all)", float),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        if not 0.0 <= self.config["drop_box"] < 1.0:
            raise UsageError(f"{self.name}: option drop_box must be in [0, 1), got {self.config['drop_box']}")
        self.sift = sift_features.sift_params(contrastThreshold=self.config["contrast_threshold"])

    def split_files(self, split: str) -> list[Path]:
        raise NotImplementedError

    def files(self, split: str) -> list[Path]:
        return self.split_files(split)

    def verify(self, split: str) -> None:
        self.split_files(split)

    def index(self, split: str) -> list[Sample]:
        return [{"id": path.stem, "paths": {"image": path}} for path in self.split_files(split)]

    def box(self) -> tuple[int, int] | None:
        """[start, stop) of the dropped centred box on both axes, or None."""
        if not self.config["drop_box"]:
            return None
        side = int(round(self.config["drop_box"] * self.image_size))
        start = (self.image_size - side) // 2
        return start, start + side

    def load(self, row: Sample) -> Sample:
        image = sift_features.center_square(read_image(row["paths"]["image"]), self.image_size)
        keypoints, descriptors = sift_features.features(image, self.sift)
        sample: Sample = {"id": row["id"], "size": (self.image_size, self.image_size), "image": to_tensor(image)}
        box = self.box()
        if box is not None:
            start, stop = box
            xy = keypoints[:, :2]
            inside = ((xy >= start) & (xy < stop)).all(dim=1)
            keypoints, descriptors = keypoints[~inside], descriptors[~inside]
            mask = torch.zeros(1, self.image_size, self.image_size)
            mask[:, start:stop, start:stop] = 1.0
            sample["mask"] = mask
        sample["keypoints"], sample["descriptors"] = keypoints, descriptors
        return sample

    def count(self, split: str) -> int | None:
        try:
            return len(self.split_files(split))
        except DataError:
            return None

    # No `reference()`: FID compares with the prepared (cropped, resized) ground truth of each sample.

    def describe(self) -> dict[str, Any]:
        return {"size": self.image_size, "sift": self.sift, "pipeline": sift_features.pipeline_version(), "box": self.box()}


CELEBA_LAYOUT = """\
img_align_celeba/000001.jpg ... 202599.jpg   aligned and cropped CelebA images (178×218)
identity_CelebA.txt                          "000001.jpg 2880" per line: file name, identity"""


def celeba_split(identities: dict[str, int], train_size: int, test_size: int, seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """The harness's fixed, identity-disjoint CelebA split (see the module docstring)."""
    by_identity: dict[int, list[str]] = {}
    for name, identity in sorted(identities.items()):
        by_identity.setdefault(identity, []).append(name)
    order = sorted(by_identity)
    rng = np.random.default_rng(seed)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    if len(shuffled) <= test_size:
        raise DataError(f"celeba-sift: {len(shuffled)} identities cannot give {test_size} test identities and a training set")
    test = sorted(by_identity[identity][0] for identity in shuffled[:test_size])
    pool = sorted(name for identity in shuffled[test_size:] for name in by_identity[identity])
    if len(pool) < train_size:
        raise DataError(f"celeba-sift: only {len(pool)} images outside the test identities; {train_size} needed for training")
    train = sorted(pool[i] for i in rng.permutation(len(pool))[:train_size])
    return {"train": train, "test": test}


class CelebASift(SiftDataset):
    """CelebA under the SIFT-inversion protocol: 8,000 train / 1,000 identity-disjoint test, 256² centre squares."""

    name = "celeba-sift"
    description = (
        "CelebA for SIFT inversion (Wu et al.): 8,000 train / 1,000 identity-disjoint test images, largest centre "
        "square at 256x256, gamma gray, OpenCV SIFT keypoints and descriptors (harness-defined split)."
    )
    paper = "Wu, Zhou, Li. Image Reconstruction from Local Descriptors Using Conditional Adversarial Networks."
    source = (
        "CelebA (Liu et al., ICCV 2015), https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html: Img/img_align_celeba.zip "
        "and Anno/identity_CelebA.txt"
    )
    layout = CELEBA_LAYOUT
    options = (
        *SiftDataset.options,
        Option("train_size", 8000, "training images (paper: 8,000)", int),
        Option("test_size", 1000, "test images, one per held-out identity (paper: 1,000)", int),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._split: dict[str, list[str]] | None = None

    def identities(self) -> dict[str, int]:
        path = self.root / "identity_CelebA.txt"
        if not path.is_file():
            raise DataError(f"{self.name}: {path} is missing; expected under {self.root}:\n{self.layout}\nData comes from {self.source}")
        identities = {}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(f"{self.name}: {path} line {number}: expected '<file name> <identity>', got {line!r}")
            identities[parts[0]] = int(parts[1])
        return identities

    def split_names(self) -> dict[str, list[str]]:
        if self._split is None:
            self._split = celeba_split(self.identities(), self.config["train_size"], self.config["test_size"])
        return self._split

    def split_files(self, split: str) -> list[Path]:
        folder = self.root / "img_align_celeba"
        files = [folder / name for name in self.split_names()[split]]
        missing = [path for path in files if not path.is_file()]
        if missing:
            raise DataError(
                f"{self.name}: {len(missing)} image(s) of the {split} split are missing (e.g. {missing[0]}); "
                f"expected under {self.root}:\n{self.layout}"
            )
        return files

    def describe(self) -> dict[str, Any]:
        split = self.split_names()
        digest = hashlib.sha256(json.dumps(split, sort_keys=True).encode()).hexdigest()
        return {**super().describe(), "split_seed": SPLIT_SEED, "split_sha256": digest}


# -- sift-synth -------------------------------------------------------------------------------------
SYNTH_GENERATOR = "harness sift-synth"
SYNTH_VERSION = 1
SYNTH_SEED = 20160601
SYNTH_SIZE = 128
SYNTH_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
SYNTH_COUNTS = {"train": 48, "test": 12}


def synth_images(split: str) -> list[np.ndarray]:
    """Random 128² crops (shrunk 2× by block averaging) of four photographs; train and test are different
    crops of the same photographs, a narrow domain as CelebA faces are."""
    rng = np.random.default_rng([SYNTH_SEED, list(SYNTH_COUNTS).index(split)])
    photos = [bundled.source_photo(name)[..., :3] for name in SYNTH_PHOTOS]
    images = []
    for index in range(SYNTH_COUNTS[split]):
        photo = photos[index % len(photos)]
        side = 2 * SYNTH_SIZE
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        block = photo[top : top + side, left : left + side].astype(np.float64)
        images.append(np.round(block.reshape(SYNTH_SIZE, 2, SYNTH_SIZE, 2, 3).mean(axis=(1, 3))).astype(np.uint8))
    return images


def synth_generate(folder: Path) -> dict[str, Any]:
    images = {f"{split}/{i:03d}.png": image for split in SYNTH_COUNTS for i, image in enumerate(synth_images(split), 1)}
    manifest = {
        "generator": SYNTH_GENERATOR,
        "version": SYNTH_VERSION,
        "seed": SYNTH_SEED,
        "files": bundled.write_pngs(folder, images),
    }
    return manifest


class SiftSynth(SiftDataset):
    """Bundled SIFT-inversion set: 48 train / 12 test 128² crops of scikit-image photographs."""

    name = "sift-synth"
    description = (
        "Bundled descriptor-inversion set: 48 train / 12 test 128x128 crops of scikit-image photographs with the "
        "celeba-sift SIFT pipeline, generated deterministically on first use (no download)."
    )
    version = str(SYNTH_VERSION)
    image_size = SYNTH_SIZE
    default_metrics = {"psnr": DEFAULT_METRICS["psnr"], "ssim": DEFAULT_METRICS["ssim"]}
    source = (
        "generated locally by harness_plugins.datasets.celeba_sift from the photographs bundled with scikit-image "
        f"(generator version {SYNTH_VERSION}, seed {SYNTH_SEED}); delete the folder to regenerate it."
    )
    layout = "manifest.json\ntrain/001.png ... train/048.png\ntest/001.png ... test/012.png"

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._generated = False

    def split_files(self, split: str) -> list[Path]:
        if not self._generated:
            bundled.ensure_generated(self.root, SYNTH_GENERATOR, SYNTH_VERSION, SYNTH_SEED, synth_generate)
            self._generated = True
        return list_images(self.root / split)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": {"version": SYNTH_VERSION, "seed": SYNTH_SEED}}


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(CelebASift)
    register(SiftSynth)
