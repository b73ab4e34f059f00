"""`market1501`: the Market-1501 person re-identification benchmark in its official layout.

The release (``Market-1501-v15.09.15``) has three folders of JPEG crops named
``PPPP_cCsS_FFFFFF_NN.jpg``: person ``PPPP`` (``-1`` junk, ``0000`` distractor), camera ``C`` (1–6),
sequence ``S``, frame ``FFFFFF`` and box ``NN``. The "test" split is the 3,368 ``query`` images plus
the 19,732 ``bounding_box_test`` gallery images, junk and distractors included: dropping junk and
same-camera matches is the evaluation protocol's job (``protocol="market1501"`` of the re-id
metrics), not the loader's. Camera ids keep the file's 1-based numbering.

`index(split)` lists the samples with their labels from the file names alone (no decoding), which is
what identity-balanced training samplers and pixel-free consumers (``precomputed-features`` naming
its rows) need; ``load(row)`` decodes one image. The file-name parser here is the only one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import DataError, Dataset, Option, Sample, hookimpl
from harness.data import read_image, to_tensor

RELEASE_FOLDER = "Market-1501-v15.09.15"
FILE_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
SPLIT_FOLDERS = {"test": ("query", "bounding_box_test"), "train": ("bounding_box_train",)}
ROLES = {"query": "query", "bounding_box_test": "gallery", "bounding_box_train": "train"}
OFFICIAL_COUNTS = {"bounding_box_train": 12936, "query": 3368, "bounding_box_test": 19732}
MAX_PID = 1501
CAMERAS = range(1, 7)


class Market1501(Dataset):
    """Market-1501 (Zheng et al., ICCV 2015): 1,501 people, 6 cameras, query/gallery/train folders."""

    name = "market1501"
    description = "Market-1501 person re-id: query + gallery test split (official protocol), train split."
    paper = "Zheng et al., Scalable Person Re-identification: A Benchmark, ICCV 2015"
    task = "reidentification"
    splits = ("test", "train")
    default_split = "test"
    default_metrics = {
        "cmc": {"protocol": "market1501"},
        "map": {"protocol": "market1501"},
        "minp": {"protocol": "market1501"},
    }
    source = (
        "Market-1501-v15.09.15.zip from the authors (Liang Zheng; https://zheng-lab.cecs.anu.edu.au/Project/"
        "project_reid.html); unzip it into the dataset root."
    )
    layout = (
        "<root>/ (or <root>/Market-1501-v15.09.15/)\n"
        "  bounding_box_train/  12,936 images  PPPP_cCsS_FFFFFF_NN.jpg  (train split)\n"
        "  bounding_box_test/   19,732 images  (gallery; PPPP = -1 junk, 0000 distractors)\n"
        "  query/                3,368 images  (queries)"
    )
    official_counts = {
        "train images": OFFICIAL_COUNTS["bounding_box_train"],
        "train ids": 751,
        "query images": OFFICIAL_COUNTS["query"],
        "gallery images (incl. distractors and junk)": OFFICIAL_COUNTS["bounding_box_test"],
        "test ids": 750,
    }
    """Zheng et al. 2015: 751 training and 750 test identities; the test ids are those of the queries
    (the gallery adds distractors, person 0000, and junk, person -1)."""
    options = (Option("strict", True, "require the official image counts (12,936 / 3,368 / 19,732)"),)

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        release = self.root / RELEASE_FOLDER
        self.base = release if not (self.root / "query").is_dir() and release.is_dir() else self.root
        self._listing: dict[str, list[tuple[Path, dict[str, int]]]] = {}

    def verify(self, split: str) -> None:
        for folder in SPLIT_FOLDERS[split]:
            path = self.base / folder
            if not path.is_dir():
                raise DataError(
                    f"market1501: folder {path} is missing.\nExpected layout:\n{self.layout}\nSource: {self.source}"
                )
            found = len(self._files(folder))
            expected = OFFICIAL_COUNTS[folder]
            if self.config["strict"] and found != expected:
                raise DataError(
                    f"market1501: {path} holds {found} images, the official release has {expected} "
                    "(an incomplete copy or another version?); pass --dataset-option strict=false to use it anyway"
                )

    def files(self, split: str) -> list[Path]:
        return [path for folder in SPLIT_FOLDERS[split] for path, _ in self._files(folder)]

    def count(self, split: str) -> int:
        return sum(len(self._files(folder)) for folder in SPLIT_FOLDERS[split])

    def index(self, split: str) -> list[Sample]:
        """Every image of the split with its labels parsed from its name (query first, then gallery)."""
        return [
            {
                "id": f"{folder}/{path.name}",
                "pid": fields["pid"],
                "camid": fields["camid"],
                "sequence": fields["sequence"],
                "modality": "visible",
                "role": ROLES[folder],
                "paths": {"image": path},
            }
            for folder in SPLIT_FOLDERS[split]
            for path, fields in self._files(folder)
        ]

    def load(self, row: Sample) -> Sample:
        sample = {key: value for key, value in row.items() if key != "paths"}
        sample["image"] = to_tensor(read_image(Path(row["paths"]["image"])))
        return sample

    def describe(self) -> dict[str, Any]:
        """Where the folders were found and how many images each holds, for the result record."""
        return {
            "base": str(self.base.relative_to(self.root)) if self.base != self.root else ".",
            "images": {folder: len(self._files(folder)) for folder in OFFICIAL_COUNTS if (self.base / folder).is_dir()},
        }

    def counts(self) -> dict[str, int]:
        """Images per folder and identities of the train split and of the queries (0 for a missing folder)."""
        def listing(folder: str) -> list[tuple[Path, dict[str, int]]]:
            return self._files(folder) if (self.base / folder).is_dir() else []

        train, query = listing("bounding_box_train"), listing("query")
        return {
            "train images": len(train),
            "train ids": len({fields["pid"] for _, fields in train}),
            "query images": len(query),
            "gallery images (incl. distractors and junk)": len(listing("bounding_box_test")),
            "test ids": len({fields["pid"] for _, fields in query}),
        }

    def _files(self, folder: str) -> list[tuple[Path, dict[str, int]]]:
        """The folder's JPEGs in name order with the fields parsed from their names (other files ignored)."""
        if folder not in self._listing:
            directory = self.base / folder
            if not directory.is_dir():
                raise DataError(f"market1501: folder {directory} is missing.\nExpected layout:\n{self.layout}")
            paths = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".jpg" and p.is_file())
            self._listing[folder] = [(path, parse_name(path)) for path in paths]
        return self._listing[folder]


def parse_name(path: Path) -> dict[str, int]:
    """Person, camera, sequence, frame and box of an official ``PPPP_cCsS_FFFFFF_NN.jpg`` name."""
    match = FILE_NAME.match(path.name)
    if match is None:
        raise DataError(f"market1501: {path} is not named PPPP_cCsS_FFFFFF_NN.jpg (e.g. 0002_c1s1_000451_03.jpg)")
    pid, camid, sequence, frame, box = (int(group) for group in match.groups())
    if pid > MAX_PID or camid not in CAMERAS:
        raise DataError(f"market1501: {path} names person {pid} / camera {camid}; Market-1501 has persons ≤ {MAX_PID}, cameras 1–6")
    return {"pid": pid, "camid": camid, "sequence": sequence, "frame": frame, "box": box}


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(Market1501)
