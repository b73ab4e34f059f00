"""`sysu-mm01`: the SYSU-MM01 RGB-infrared re-identification set in its official layout.

SYSU-MM01 (Wu et al., ICCV 2017) has 491 people seen by four RGB cameras (1, 2 indoor; 4, 5
outdoor) and two near-infrared cameras (3 indoor, 6 outdoor), ``cam{1..6}/PPPP/NNNN.jpg``, with the
fixed identity split of ``exp/{train,val,test}_id.txt`` (296 / 99 / 96 people).

The ``test`` split holds every test-identity image: IR images are the queries (role ``query``), RGB
images the gallery candidates (role ``gallery``). Which RGB images form the gallery of each of the
10 trials (one or ten per person and camera, all-search or indoor-search), the camera-3/camera-2
exclusion and the identity-de-duplicated CMC are the ``sysu`` protocol of the re-id metrics, not
the loader's job. The official ``rand_perm_cam.mat`` (wuancong/SYSU-MM01 ``evaluation/data_split``)
fixes the trials when it is found (``perm_file``, or ``exp/`` / ``evaluation/data_split/`` in the
root); otherwise the metrics fall back to a seeded sampler, and the record's ``gallery_sampler``
says which was used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import DataError, Dataset, Option, Sample, hookimpl
from harness.data import read_image, to_tensor

CAMERAS = range(1, 7)
IR_CAMERAS = (3, 6)
ID_FILES = {"train": "train_id.txt", "val": "val_id.txt", "test": "test_id.txt"}
PERM_LOCATIONS = ("exp/rand_perm_cam.mat", "evaluation/data_split/rand_perm_cam.mat", "rand_perm_cam.mat")
OFFICIAL_IDS = {"train": 296, "val": 99, "test": 96}
IMAGE_NAME = re.compile(r"^\d{4}\.jpg$")


def modality_of(camid: int) -> str:
    """Cameras 3 and 6 are near-infrared, the others RGB."""
    return "infrared" if camid in IR_CAMERAS else "visible"


class SYSUMM01(Dataset):
    """SYSU-MM01 (Wu et al. 2017): 4 RGB + 2 IR cameras, 296/99/96 identity split."""

    name = "sysu-mm01"
    aliases = ("sysu",)
    description = "SYSU-MM01 RGB-IR re-id: IR queries vs RGB gallery (all/indoor search, single/multi shot, 10 trials)."
    paper = "Wu, Zheng, Yu, Gong, Lai. RGB-Infrared Cross-Modality Person Re-Identification. ICCV 2017"
    task = "reidentification"
    splits = ("test", "train", "val")
    default_split = "test"
    default_metrics = {name: {"protocol": "sysu", "distance": "euclidean"} for name in ("cmc", "map", "minp")}
    source = (
        "SYSU-MM01.zip from the authors (signed agreement; github.com/wuancong/SYSU-MM01); "
        "`harness data import sysu-mm01 SYSU-MM01.zip` unpacks it. Put the official "
        "evaluation/data_split/rand_perm_cam.mat into exp/ to use the official gallery trials."
    )
    layout = (
        "<root>/\n"
        "  cam1/ ... cam6/   PPPP/NNNN.jpg  (cameras 3 and 6 are infrared)\n"
        "  exp/train_id.txt, val_id.txt, test_id.txt   comma-separated person ids (296 / 99 / 96)\n"
        "  exp/rand_perm_cam.mat   optional: the official gallery permutations"
    )
    official_counts = {
        "RGB images": 30071,
        "IR images": 15792,
        "identities with images": 491,
        "train ids": 296,
        "val ids": 99,
        "test ids": 96,
        "test IR query images": 3803,
    }
    options = (
        Option("mode", "all", "all-search (gallery cameras 1, 2, 4, 5) or indoor-search (1, 2)", choices=("all", "indoor")),
        Option("shot", "single", "single-shot (1) or multi-shot (10) gallery images per person and camera", choices=("single", "multi")),
        Option("trials", 10, "gallery samplings averaged (the official evaluation uses 10)"),
        Option("perm_file", "", "the official rand_perm_cam.mat (default: looked up under exp/ and evaluation/data_split/)"),
        Option("train_all", False, "train on train + val identities (395) instead of the 296 train identities"),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._rows: dict[str, list[Sample]] = {}

    # -- protocol ---------------------------------------------------------------------------------
    def perm_file(self) -> Path | None:
        """The official permutation file, if given or found in the usual places."""
        if self.config["perm_file"]:
            path = Path(self.config["perm_file"]).expanduser()
            if not path.is_file():
                raise DataError(f"sysu-mm01: perm_file {path} does not exist (expected the official rand_perm_cam.mat)")
            return path
        return next((self.root / rel for rel in PERM_LOCATIONS if (self.root / rel).is_file()), None)

    def metric_params(self, metric: str) -> dict[str, Any]:
        params = super().metric_params(metric)
        if not params:
            return params
        perm = self.perm_file()
        return {
            **params, "mode": self.config["mode"], "shot": self.config["shot"], "trials": self.config["trials"],
            "perm_file": str(perm) if perm else "", "sampler": "auto",
        }

    # -- layout -----------------------------------------------------------------------------------
    def identities(self, part: str) -> list[int]:
        """Person ids of ``exp/<part>_id.txt`` (comma- or whitespace-separated)."""
        path = self.root / "exp" / ID_FILES[part]
        if not path.is_file():
            raise DataError(f"sysu-mm01: split file {path} is missing.\nExpected layout:\n{self.layout}\nSource: {self.source}")
        tokens = [token for token in re.split(r"[,\s]+", path.read_text()) if token]
        try:
            return [int(token) for token in tokens]
        except ValueError:
            raise DataError(f"sysu-mm01: {path} must hold comma-separated integer person ids; got {tokens[:5]}") from None

    def _split_ids(self, split: str) -> list[int]:
        ids = self.identities(split)
        if split == "train" and self.config["train_all"]:
            ids = ids + self.identities("val")
        return ids

    def verify(self, split: str) -> None:
        missing = [f"cam{c}" for c in CAMERAS if not (self.root / f"cam{c}").is_dir()]
        if missing:
            raise DataError(f"sysu-mm01: folder(s) {', '.join(missing)} missing under {self.root}.\nExpected layout:\n{self.layout}\nSource: {self.source}")
        rows = self.index(split)
        if not rows:
            raise DataError(f"sysu-mm01: no images of the {split} identities under {self.root}/cam*/PPPP/")
        if split == "test":
            modalities = {row["modality"] for row in rows}
            if modalities != {"visible", "infrared"}:
                raise DataError(f"sysu-mm01: the test identities have only {', '.join(sorted(modalities))} images; the protocol needs both")

    def index(self, split: str) -> list[Sample]:
        """The split's images, ordered by camera, person and file name (the order the official
        permutations index); nothing is decoded."""
        if split not in self._rows:
            rows = []
            for pid in sorted(set(self._split_ids(split))):
                for camid in CAMERAS:
                    for path in self._images(camid, pid):
                        rows.append(self._row(split, camid, pid, path))
            rows.sort(key=lambda row: (row["camid"], row["pid"], row["id"]))
            self._rows[split] = rows
        return self._rows[split]

    def _row(self, split: str, camid: int, pid: int, path: Path) -> Sample:
        modality = modality_of(camid)
        role = "train" if split != "test" else ("query" if modality == "infrared" else "gallery")
        return {
            "id": f"cam{camid}/{pid:04d}/{path.name}", "pid": pid, "camid": camid, "modality": modality,
            "role": role, "paths": {"image": path},
        }

    def _images(self, camid: int, pid: int) -> list[Path]:
        folder = self.root / f"cam{camid}" / f"{pid:04d}"
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg" and p.is_file())

    def load(self, row: Sample) -> Sample:
        sample = {key: value for key, value in row.items() if key != "paths"}
        sample["image"] = to_tensor(read_image(row["paths"]["image"]))
        return sample

    def files(self, split: str) -> list[Path]:
        ids = [self.root / "exp" / ID_FILES[split]]
        perm = self.perm_file() if split == "test" else None
        return ids + ([perm] if perm else []) + [row["paths"]["image"] for row in self.index(split)]

    def count(self, split: str) -> int:
        return len(self.index(split))

    def describe(self) -> dict[str, Any]:
        perm = self.perm_file()
        return {
            "mode": self.config["mode"], "shot": self.config["shot"], "train_ids": "train+val" if self.config["train_all"] else "train",
            "gallery_trials": "official rand_perm_cam.mat" if perm else "seeded sampler (official rand_perm_cam.mat not found)",
            "perm_file": str(perm) if perm else None,
        }

    def counts(self) -> dict[str, int]:
        found = {"RGB images": 0, "IR images": 0}
        people: set[int] = set()
        for camid in CAMERAS:
            folder = self.root / f"cam{camid}"
            if not folder.is_dir():
                continue
            for person in folder.iterdir():
                if not (person.is_dir() and person.name.isdigit()):
                    continue
                n = sum(1 for p in person.iterdir() if p.suffix.lower() == ".jpg")
                found["IR images" if camid in IR_CAMERAS else "RGB images"] += n
                if n:
                    people.add(int(person.name))
        found["identities with images"] = len(people)
        for part in ID_FILES:
            found[f"{part} ids"] = len(self.identities(part)) if (self.root / "exp" / ID_FILES[part]).is_file() else 0
        test = set(self.identities("test")) if (self.root / "exp" / ID_FILES["test"]).is_file() else set()
        found["test IR query images"] = sum(len(self._images(c, pid)) for c in IR_CAMERAS for pid in test)
        return found


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(SYSUMM01)
