"""`regdb`: the RegDB visible-thermal re-identification set in the layout of Ye et al.'s release.

RegDB (Nguyen et al., Sensors 2017) has 412 people, 10 visible and 10 far-infrared (thermal) images
each, from one visible and one thermal camera. The cross-modality protocol (Ye et al., AAAI/IJCAI
2018, used by Hi-CMD, AGW, ...) splits the identities 206/206 at random, ten times; the split files
``idx/{train,test}_{visible,thermal}_{1..10}.txt`` hold one ``relative/path label`` line per image.
Each trial is its own split (``--dataset-option trial=N``) and gets its own trained model; the
leaderboard cell is the mean over the ten trials with the per-trial values kept.

Queries are the visible test images and the gallery the thermal ones (``direction=v2t``, as the
papers report); ``direction=t2v`` swaps them. Camera ids follow the official evaluation code
(visible 1, thermal 2); nothing is excluded from the gallery. Thermal images carry the modality
``"infrared"`` (far-infrared), which every cross-modality method maps to its IR branch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import DataError, Dataset, Option, Sample, hookimpl
from harness.data import read_image, to_tensor

MODALITIES = {"visible": ("visible", 1), "thermal": ("infrared", 2)}
"""Split-file modality → (sample modality, camera id of the official ``evaluate_regdb``)."""
TRIALS = tuple(range(1, 11))
IMAGES_PER_FILE = 2060
IDENTITIES_PER_SPLIT = 206
SPLIT_PART = {"train": "train", "test": "test"}


class RegDB(Dataset):
    """RegDB (Nguyen et al. 2017) with the 10 random 206/206 identity splits of Ye et al."""

    name = "regdb"
    description = "RegDB visible-thermal re-id: one of the 10 trials (206 train / 206 test identities), visible→thermal."
    paper = "Nguyen, Hong, Kim, Park. Person recognition system based on a combination of body images from visible light and thermal cameras. Sensors 17(3):605, 2017"
    task = "reidentification"
    splits = ("test", "train")
    default_split = "test"
    default_metrics = {name: {"protocol": "regdb"} for name in ("cmc", "map", "minp")}
    source = (
        "RegDB (Dongguk 'DBPerson-Recog-DB1', by copyright agreement) with the idx/ split files of Ye et al.'s "
        "release (github.com/mangye16/Cross-Modal-Re-ID-baseline); `harness data import regdb ARCHIVE` unpacks it."
    )
    layout = (
        "<root>/\n"
        "  Visible/...   4,120 images (the paths the split files name)\n"
        "  Thermal/...   4,120 images\n"
        "  idx/train_visible_N.txt, train_thermal_N.txt, test_visible_N.txt, test_thermal_N.txt  (N = 1..10)\n"
        "      2,060 lines each: 'Visible/<...>.bmp LABEL'"
    )
    official_counts = {
        "Visible images": 4120,
        "Thermal images": 4120,
        "split files": 40,
        **{f"idx/{part}_{modality}_{{trial}}.txt lines": IMAGES_PER_FILE for part in ("train", "test") for modality in MODALITIES},
        "train identities": IDENTITIES_PER_SPLIT,
        "test identities": IDENTITIES_PER_SPLIT,
    }
    options = (
        Option("trial", 1, "which of the 10 random identity splits (each trained and scored on its own)", choices=TRIALS),
        Option("direction", "v2t", "v2t: visible queries, thermal gallery (the papers); t2v: the reverse", choices=("v2t", "t2v")),
        Option("strict", True, "require the official sizes (2,060 lines and 206 identities per split file)"),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._rows: dict[str, list[Sample]] = {}
        # Keys of official_counts name the chosen trial.
        self.official_counts = {key.format(trial=self.config["trial"]): value for key, value in type(self).official_counts.items()}

    def metric_params(self, metric: str) -> dict[str, Any]:
        """The RegDB protocol with this dataset's direction (Euclidean ranking, no exclusions)."""
        params = super().metric_params(metric)
        return {**params, "direction": self.config["direction"]} if params else params

    def split_file(self, split: str, modality: str) -> Path:
        return self.root / "idx" / f"{SPLIT_PART[split]}_{modality}_{self.config['trial']}.txt"

    def verify(self, split: str) -> None:
        rows = self.index(split)
        missing = [row["paths"]["image"] for row in rows if not row["paths"]["image"].is_file()]
        if missing:
            raise DataError(
                f"regdb: {len(missing)} image(s) named by the split files are missing, e.g. {missing[0]}.\n"
                f"Expected layout:\n{self.layout}"
            )

    def index(self, split: str) -> list[Sample]:
        """Both split files of the trial, visible first, in file order (no image is read)."""
        if split not in self._rows:
            rows: list[Sample] = []
            pids: dict[str, set[int]] = {}
            for modality, (sample_modality, camid) in MODALITIES.items():
                path = self.split_file(split, modality)
                entries = read_split_file(path)
                if self.config["strict"]:
                    self._check_size(path, entries)
                pids[modality] = {label for _, label in entries}
                role = self._role(split, modality)
                for relative, label in entries:
                    rows.append({
                        "id": relative, "pid": label, "camid": camid, "modality": sample_modality, "role": role,
                        "trial": self.config["trial"], "paths": {"image": self.root / relative},
                    })
            if split == "test" and pids["visible"] != pids["thermal"]:
                only = sorted(pids["visible"] ^ pids["thermal"])[:5]
                raise DataError(
                    f"regdb: trial {self.config['trial']} test files name different identities for visible and thermal "
                    f"images (e.g. labels {only}); the split files are inconsistent"
                )
            self._rows[split] = rows
        return self._rows[split]

    def load(self, row: Sample) -> Sample:
        sample = {key: value for key, value in row.items() if key != "paths"}
        sample["image"] = to_tensor(read_image(row["paths"]["image"]))
        return sample

    def files(self, split: str) -> list[Path]:
        split_files = [self.split_file(split, modality) for modality in MODALITIES]
        return split_files + [row["paths"]["image"] for row in self.index(split)]

    def count(self, split: str) -> int:
        return len(self.index(split))

    def describe(self) -> dict[str, Any]:
        return {"trial": self.config["trial"], "direction": self.config["direction"], "camids": {"visible": 1, "thermal": 2}}

    def counts(self) -> dict[str, int]:
        trial = self.config["trial"]
        found = {
            f"{folder} images": sum(1 for p in (self.root / folder).rglob("*") if p.is_file()) if (self.root / folder).is_dir() else 0
            for folder in ("Visible", "Thermal")
        }
        found["split files"] = len(list((self.root / "idx").glob("*_*_*.txt"))) if (self.root / "idx").is_dir() else 0
        for part in ("train", "test"):
            labels: set[int] = set()
            for modality in MODALITIES:
                path = self.root / "idx" / f"{part}_{modality}_{trial}.txt"
                entries = read_split_file(path) if path.is_file() else []
                found[f"idx/{part}_{modality}_{trial}.txt lines"] = len(entries)
                labels |= {label for _, label in entries}
            found[f"{part} identities"] = len(labels)
        return found

    def _role(self, split: str, modality: str) -> str:
        if split == "train":
            return "train"
        query = "visible" if self.config["direction"] == "v2t" else "thermal"
        return "query" if modality == query else "gallery"

    def _check_size(self, path: Path, entries: list[tuple[str, int]]) -> None:
        identities = len({label for _, label in entries})
        if len(entries) != IMAGES_PER_FILE or identities != IDENTITIES_PER_SPLIT:
            raise DataError(
                f"regdb: {path} lists {len(entries)} images of {identities} identities; the official split files list "
                f"{IMAGES_PER_FILE} of {IDENTITIES_PER_SPLIT} (pass --dataset-option strict=false to use it anyway)"
            )


def read_split_file(path: Path) -> list[tuple[str, int]]:
    """The ``relative/path label`` lines of a RegDB split file (blank lines skipped)."""
    if not path.is_file():
        raise DataError(f"regdb: split file {path} is missing.\nExpected layout:\n{RegDB.layout}\nSource: {RegDB.source}")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"regdb: {path} line {number} is {line!r}; expected 'relative/path.bmp LABEL'")
        relative = parts[0].replace("\\", "/")
        if relative.startswith("/") or ".." in relative.split("/"):
            raise DataError(f"regdb: {path} line {number} names {relative!r}, which is not inside the dataset root")
        entries.append((relative, int(parts[1])))
    return entries


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(RegDB)
