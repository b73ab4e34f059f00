"""Rain100H, Rain100L and Rain800 (Zhang800): the paired deraining benchmarks, read in the layouts
they are really distributed in.

The same pairs circulate in several packagings, so each split folder is recognised by its content:

* ``rain/`` + ``norain/`` subfolders: the JORDER release (``rain_data_{train,test}_Heavy``, rainy
  files ``rain/X2/norain-Nx2.png``) or the PaddleGAN repack of PReNet's data (``rain/N.png``);
* ``input/`` + ``target/`` subfolders: the MPRNet test sets that MMagic configs read;
* ``rain-N.png`` next to ``norain-N.png`` in one folder: PReNet's packaging (RainTrainH, Rain100H);
* any other folder of images: side-by-side pairs (ID-CGAN's Rain800, and the RESCAN / S-DSEN
  format), the clean image in the left half and the rainy image in the right half.

Sample ids are the pair number without leading zeros (``rain-001.png``, ``norain-1x2.png`` and
``1.jpg`` all give ``"1"``), or the file stem when the name carries no number; the `from-folder`
method matches precomputed outputs by this id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar
from collections.abc import Callable

import numpy as np

from harness import DataError, Dataset, Option, Sample, UsageError, hookimpl
from harness.data import list_images, read_image, to_tensor

PAIR_NUMBER = re.compile(r"^(?:(?:no)?rain-)?0*(\d+)(?:x2)?$", re.IGNORECASE)
"""``rain-001``, ``norain-1``, ``norain-1x2`` (JORDER's rainy files) and ``001`` all carry pair number 1."""

RAINY_PREFIXED = re.compile(r"^rain-0*(\d+)$", re.IGNORECASE)
CLEAN_PREFIXED = re.compile(r"^norain-0*(\d+)$", re.IGNORECASE)

PAIRED_SUBFOLDERS = (("rain", "norain"), ("rainy", "norain"), ("input", "target"))
"""(rainy, clean) subfolder names of the two-folder layouts; JORDER keeps its rainy files in ``rain/X2/``."""

VAL_SALT = "harness-rain-val-v1"
"""Seed of the validation hold-out: see `held_out`."""

CLEAN_HALF = "left"
"""Side-by-side files hold the clean image on the left and the rainy one on the right.

Source: ID-CGAN trains and tests with pix2pix's ``which_direction=BtoA`` (README and test.lua), where
A is the left half and B the right half and the network input is B, so the rainy image is the right
half; the RESCAN and S-DSEN loaders (config/dataset.py) read O (rainy) from columns [w, 2w) and B
(clean) from [0, w). Some third-party loaders take the left half as rainy; they are wrong for the
released files.
"""


def pair_id(stem: str) -> str:
    """The sample id of a file stem: its pair number without leading zeros, else the stem itself."""
    match = PAIR_NUMBER.match(stem)
    return str(int(match.group(1))) if match else stem


def id_order(sample_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then the others by name."""
    return (0, int(sample_id), "") if sample_id.isdigit() else (1, 0, sample_id)


def held_out(ids: list[str], count: int) -> set[str]:
    """The validation ids: the ``count`` ids whose SHA-256 of ``"harness-rain-val-v1/<id>"`` is smallest.

    S-DSEN "randomly select[s] 100 image pairs from [the] training set for validation" without
    publishing which; this choice is fixed, needs no RNG library (so it cannot drift with a numpy
    version) and depends only on the ids, so every layout of the same data holds out the same pairs.
    """
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{VAL_SALT}/{i}".encode()).hexdigest())
    return set(ranked[:count])


def split_halves(array: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(clean, rainy) halves of a side-by-side pair: columns [0, w) and [w, 2w) with w = width // 2.

    An odd width leaves one column over; it is the last column and is dropped (the rainy half is
    read from the same [w, 2w) window the RESCAN/S-DSEN training crops use).
    """
    half = array.shape[1] // 2
    if half == 0:
        raise DataError(f"side-by-side pair {path} is {array.shape[1]} pixel(s) wide; expected clean|rainy halves")
    return array[:, :half], array[:, half : 2 * half]


@dataclasses.dataclass(frozen=True)
class Pair:
    """One rainy/clean pair; ``rainy == clean`` for a side-by-side file holding both."""

    id: str
    rainy: Path
    clean: Path

    @property
    def side_by_side(self) -> bool:
        return self.rainy == self.clean

    def files(self) -> list[Path]:
        return [self.rainy] if self.side_by_side else [self.rainy, self.clean]


@dataclasses.dataclass
class Part:
    """One distributed folder (a training, validation or test set) and what was found in it."""

    folder: Path
    layout: str
    pairs: list[Pair]
    rainy_only: list[Path]
    """Rainy images without a clean partner: never scoreable, always an error."""
    clean_only: list[Path]
    """Clean images without a rainy partner (e.g. PReNet's 546 removed RainTrainH inputs)."""
    duplicates: list[tuple[Path, Path]]


def _match(rainy: Mapping[str, list[Path]], clean: Mapping[str, list[Path]], folder: Path, layout: str) -> Part:
    sides = (rainy,) if rainy is clean else (rainy, clean)
    duplicates = [(paths[0], paths[1]) for side in sides for paths in side.values() if len(paths) > 1]
    pairs = [Pair(i, rainy[i][0], clean[i][0]) for i in rainy if i in clean]
    return Part(
        folder=folder,
        layout=layout,
        pairs=sorted(pairs, key=lambda pair: id_order(pair.id)),
        rainy_only=sorted(paths[0] for i, paths in rainy.items() if i not in clean),
        clean_only=sorted(paths[0] for i, paths in clean.items() if i not in rainy),
        duplicates=duplicates,
    )


def _index(paths: list[Path], key: Callable[[str], str | None]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in paths:
        sample_id = key(path.stem)
        if sample_id is not None:
            found.setdefault(sample_id, []).append(path)
    return found


def _numbered(pattern: re.Pattern[str]) -> Callable[[str], str | None]:
    def key(stem: str) -> str | None:
        match = pattern.match(stem)
        return str(int(match.group(1))) if match else None

    return key


def scan_folder(folder: Path) -> Part | None:
    """Recognise the layout of one split folder by its content and pair its files; ``None`` if empty."""
    for rainy_name, clean_name in PAIRED_SUBFOLDERS:
        rainy_dir, clean_dir = folder / rainy_name, folder / clean_name
        if rainy_dir.is_dir() and clean_dir.is_dir():
            if (rainy_dir / "X2").is_dir():
                rainy_dir = rainy_dir / "X2"
            layout = "mmagic" if rainy_name == "input" else "prenet-folders"
            if folder.name.lower().startswith("rain_data_") or folder.parent.name.lower().startswith("rain_data_"):
                layout = "jorder"
            return _match(
                _index(list_images(rainy_dir), pair_id), _index(list_images(clean_dir), pair_id), folder, layout
            )
    images = list_images(folder)
    rainy = _index(images, _numbered(RAINY_PREFIXED))
    clean = _index(images, _numbered(CLEAN_PREFIXED))
    if rainy or clean:
        return _match(rainy, clean, folder, "prenet")
    if images:
        both = _index(images, pair_id)
        return _match(both, both, folder, "side-by-side")
    subfolders = [child for child in sorted(folder.iterdir()) if child.is_dir()]
    if folder.name.lower().startswith("rain_data_") and len(subfolders) == 1:
        return scan_folder(subfolders[0])  # e.g. rain_data_test_Heavy/rain_heavy_test/{rain,norain}
    return None


def _listing(paths: list[Path], root: Path, limit: int = 5) -> str:
    shown = ", ".join(str(p.relative_to(root) if p.is_relative_to(root) else p) for p in paths[:limit])
    return shown + (f" (and {len(paths) - limit} more)" if len(paths) > limit else "")


class PairedRainDataset(Dataset):
    """Base of the paired deraining datasets: layout detection, pairing, counts and the val hold-out."""

    task = "deraining"
    splits = ("train", "val", "test")
    default_split = "test"
    default_metrics = {"psnr": {}, "ssim": {}}
    options = (
        Option(
            "strict",
            True,
            "require the official number of pairs per split; false accepts any complete pairs (score a subset)",
        ),
    )
    part_folders: ClassVar[Mapping[str, tuple[str, ...]]]
    """Folder names (relative to the root) looked for, in order, for each distributed part."""
    expected_pairs: ClassVar[Mapping[str, Mapping[int, str]]]
    """Accepted pair counts of each part, with what each count is (recorded by `describe`)."""
    other_versions: ClassVar[Mapping[tuple[str, int], str]] = {}
    """Hints for counts that identify a different release of the data."""
    val_pairs: ClassVar[int] = 100

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._parts: dict[str, Part | None] = {}

    # -- discovery ---------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Hook run before the root is read (a generated dataset writes itself here)."""

    def _part(self, name: str) -> Part | None:
        if name not in self._parts:
            self._prepare()
            self._parts[name] = None
            for relative in self.part_folders.get(name, ()):
                folder = self.root / relative
                part = scan_folder(folder) if folder.is_dir() else None
                if part is not None:
                    self._parts[name] = part
                    break
        return self._parts[name]

    def _fail(self, message: str) -> DataError:
        return DataError(
            f"{self.name}: {message}\n"
            f"Where to get it: {self.source}\n"
            f"Expected layout under {self.root} (any one of these):\n{self.layout}"
        )

    def _require(self, name: str) -> Part:
        part = self._part(name)
        if part is None:
            looked = ", ".join(str(self.root / rel) for rel in self.part_folders[name])
            raise self._fail(f"no {name} set found: none of {looked} exists or holds images")
        return part

    def _val_part(self) -> Part | None:
        return self._part("val") if "val" in self.splits else None

    # -- splits ------------------------------------------------------------------------------------
    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise UsageError(f"dataset {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")

    def _held_out_count(self, available: int) -> int:
        return self.val_pairs if self.config["strict"] else min(self.val_pairs, available // 2)

    def _split_pairs(self, split: str) -> list[Pair]:
        self._check_split(split)
        if split == "test" or "val" not in self.splits:
            return self._require(split).pairs
        train = self._require("train")
        val_part = self._val_part()
        if val_part is not None:
            return train.pairs if split == "train" else val_part.pairs
        val_ids = held_out([pair.id for pair in train.pairs], self._held_out_count(len(train.pairs)))
        return [pair for pair in train.pairs if (pair.id in val_ids) == (split == "val")]

    # -- checks ------------------------------------------------------------------------------------
    def _check_pairs(self, part: Part) -> None:
        if part.duplicates:
            pairs = "; ".join(f"{a.name} and {b.name}" for a, b in part.duplicates[:5])
            raise self._fail(f"{part.folder}: several files give the same sample id: {pairs}")
        if part.rainy_only:
            raise self._fail(
                f"{part.folder}: rainy image(s) without their clean partner: {_listing(part.rainy_only, self.root)}"
            )
        if not part.pairs:
            raise self._fail(f"{part.folder}: no complete rainy/clean pairs found")

    def _check_count(self, what: str, found: int, accepted: Collection[int], part: Part, name: str) -> None:
        """Strict mode: ``found`` pairs must be one of the official counts of this part."""
        if not self.config["strict"] or found in accepted:
            return
        expected = " or ".join(map(str, accepted))
        unpaired = (
            f"; clean images without a rainy partner: {_listing(part.clean_only, self.root)}" if part.clean_only else ""
        )
        hint = self.other_versions.get((name, found), "")
        raise self._fail(
            f"{what}: found {found} complete pairs, expected {expected} for the {name} set"
            f"{unpaired}{'. ' + hint if hint else ''}. Pass strict=false to score a non-standard subset."
        )

    def verify(self, split: str) -> None:
        self._check_split(split)
        self._prepare()
        if not self.root.is_dir():
            raise self._fail(f"data root {self.root} does not exist")
        if split == "test" or "val" not in self.splits:
            part = self._require(split)
            self._check_pairs(part)
            self._check_count(str(part.folder), len(part.pairs), self.expected_pairs[split], part, split)
        else:
            train = self._require("train")
            self._check_pairs(train)
            val_part = self._val_part()
            if val_part is None:
                self._check_count(str(train.folder), len(train.pairs), self.expected_pairs["train"], train, "train")
            else:
                self._check_pairs(val_part)
                self._check_count(str(val_part.folder), len(val_part.pairs), (self.val_pairs,), val_part, "val")
                total = len(train.pairs) + len(val_part.pairs)
                where = f"{train.folder} + {val_part.folder}"
                self._check_count(where, total, self.expected_pairs["train"], train, "train")
        if not self._split_pairs(split):
            raise self._fail(f"split {split!r} is empty (too few training pairs to hold out a validation set)")

    # -- reading -----------------------------------------------------------------------------------
    def files(self, split: str) -> list[Path]:
        return [path for pair in self._split_pairs(split) for path in pair.files()]

    def count(self, split: str) -> int | None:
        try:
            return len(self._split_pairs(split))
        except DataError:
            return None

    def index(self, split: str) -> list[Sample]:
        """One row per pair: its id and the rainy/clean files (the same file for a side-by-side pair)."""
        self.verify(split)
        return [{"id": pair.id, "paths": {"rainy": pair.rainy, "clean": pair.clean}} for pair in self._split_pairs(split)]

    def load(self, row: Sample) -> Sample:
        pair = Pair(row["id"], Path(row["paths"]["rainy"]), Path(row["paths"]["clean"]))
        return {"id": pair.id, **self.read_pair(pair)}

    @staticmethod
    def read_pair(pair: Pair) -> dict[str, Any]:
        """Read one pair as float (3, H, W) tensors; sizes must agree."""
        if pair.side_by_side:
            clean, rainy = split_halves(read_image(pair.rainy), pair.rainy)
        else:
            rainy, clean = read_image(pair.rainy), read_image(pair.clean)
            if rainy.shape != clean.shape:
                raise DataError(
                    f"pair {pair.id!r}: rainy image {pair.rainy} is {rainy.shape[1]}x{rainy.shape[0]} but "
                    f"clean image {pair.clean} is {clean.shape[1]}x{clean.shape[0]}; expected equal sizes"
                )
        return {"rainy": to_tensor(rainy), "clean": to_tensor(clean)}

    def describe(self) -> dict[str, Any]:
        """What was found on disk, for the result record: layout per part, pair counts, split sizes."""
        parts: dict[str, Any] = {}
        for name in self.part_folders:
            part = self._part(name)
            if part is None:
                continue
            parts[name] = {
                "folder": str(part.folder.relative_to(self.root)),
                "layout": part.layout,
                "pairs": len(part.pairs),
                "unpaired": len(part.rainy_only) + len(part.clean_only),
                **(
                    {"variant": self.expected_pairs[name][len(part.pairs)]}
                    if len(part.pairs) in self.expected_pairs.get(name, {})
                    else {}
                ),
            }
        layouts = {info["layout"] for info in parts.values()}
        split_sizes = {}
        for split in self.splits:
            try:
                split_sizes[split] = len(self._split_pairs(split))
            except DataError:
                split_sizes[split] = None
        description: dict[str, Any] = {
            "layout": layouts.pop() if len(layouts) == 1 else ("mixed" if layouts else None),
            "parts": parts,
            "splits": split_sizes,
            "strict": self.config["strict"],
        }
        if "val" in self.splits:
            description["val"] = (
                "the val/ folder"
                if "val" in parts
                else f"held out of train: the {self.val_pairs} ids with the smallest sha256('{VAL_SALT}/<id>')"
            )
        if any(info["layout"] == "side-by-side" for info in parts.values()):
            description["clean_half"] = CLEAN_HALF
        return description


def _jorder_layout(tag: str, train_folder: str, test_folder: str, n_train: int, n_test: int) -> str:
    return f"""\
(a) JORDER original release (rain_data_*_{tag} archives):
    rain_data_train_{tag}/norain/norain-1.png ... norain-{n_train}.png
    rain_data_train_{tag}/rain/X2/norain-1x2.png ... norain-{n_train}x2.png
    rain_data_test_{tag}/norain/norain-1.png ... norain-{n_test}.png
    rain_data_test_{tag}/rain/X2/norain-1x2.png ... norain-{n_test}x2.png
    (also read: rain/ without X2/, rainy files named norain-N.png, one extra folder level)
(b) PReNet packaging (optionally under train/ and test/):
    {train_folder}/rain-1.png, {train_folder}/norain-1.png ... rain-{n_train}.png, norain-{n_train}.png
    {test_folder}/rain-001.png, {test_folder}/norain-001.png ... rain-{n_test}.png, norain-{n_test}.png
    (also read: {train_folder}/{{rain,norain}}/N.png and {test_folder}/{{rain,norain}}/NNN.png, PaddleGAN's repack)
(c) RESCAN / S-DSEN side-by-side pairs, clean left half | rainy right half:
    train/<n>.png ... ({n_train} files, or {n_train - 100} with val/ holding the other 100)
    val/<n>.png ... (optional, 100 files)
    test/<n>.png ... ({n_test} files)
(d) MMagic / MPRNet test set (test split only):
    {test_folder}/input/<n>.png and {test_folder}/target/<n>.png (optionally under test/)"""


def _jorder_parts(tag: str, train_folder: str, test_folder: str) -> dict[str, tuple[str, ...]]:
    return {
        "train": (f"rain_data_train_{tag}", train_folder, f"train/{train_folder}", "train"),
        "val": ("val",),
        "test": (f"rain_data_test_{tag}", test_folder, f"test/{test_folder}", "test"),
    }


JORDER_PAGE = "http://www.icst.pku.edu.cn/struct/Projects/joint_rain_removal.html"


class Rain100H(PairedRainDataset):
    """Rain100H (JORDER, heavy rain, five streak directions): 1800 training / 100 test pairs."""

    name = "rain100h"
    description = (
        "Rain100H (Yang et al., CVPR 2017), original release: 1800 train / 100 test pairs; "
        "val = 100 pairs held out of train (S-DSEN protocol)."
    )
    paper = "Yang et al., Deep Joint Rain Detection and Removal from a Single Image, CVPR 2017"
    source = (
        "Rain100H from Yang et al., 'Deep Joint Rain Detection and Removal from a Single Image' (JORDER, "
        f"CVPR 2017): {JORDER_PAGE} (that page now serves the updated 200-test-pair release); the original "
        "1800/100 release is mirrored by PReNet (https://github.com/csdwren/PReNet, RainTrainH + Rain100H) "
        "and listed in DerainZoo (https://github.com/nnUyi/DerainZoo)."
    )
    layout = _jorder_layout("Heavy", "RainTrainH", "Rain100H", 1800, 100)
    part_folders = _jorder_parts("Heavy", "RainTrainH", "Rain100H")
    expected_pairs = {
        "train": {
            1800: "full JORDER training set",
            1254: "PReNet's filtered RainTrainH (546 pairs sharing backgrounds with the test set removed)",
        },
        "test": {100: "original test100"},
    }
    other_versions = {
        ("test", 200): "200 test pairs is the updated release (Rain200H); published Rain100H numbers, "
        "S-DSEN's included, use the original 100-pair test set"
    }


class Rain100L(PairedRainDataset):
    """Rain100L (JORDER, light rain, one streak direction): 200 training / 100 test pairs."""

    name = "rain100l"
    description = (
        "Rain100L (Yang et al., CVPR 2017), original release: 200 train / 100 test pairs; "
        "val = 100 pairs held out of train."
    )
    paper = Rain100H.paper
    source = (
        "Rain100L from Yang et al., 'Deep Joint Rain Detection and Removal from a Single Image' (JORDER, "
        f"CVPR 2017): {JORDER_PAGE} (that page now serves the updated 1800/200 release); the original "
        "200/100 release is mirrored by PReNet (https://github.com/csdwren/PReNet, RainTrainL + Rain100L)."
    )
    layout = _jorder_layout("Light", "RainTrainL", "Rain100L", 200, 100)
    part_folders = _jorder_parts("Light", "RainTrainL", "Rain100L")
    expected_pairs = {"train": {200: "original RainTrainL"}, "test": {100: "original test100"}}
    other_versions = {
        ("train", 1800): "1800 training pairs is the updated release (Rain200L); the original Rain100L has 200",
        ("test", 200): "200 test pairs is the updated release (Rain200L); the original Rain100L has 100",
    }


class Rain800(PairedRainDataset):
    """Rain800 / Zhang800 (ID-CGAN): 700 training / 100 synthetic test pairs, side by side."""

    name = "rain800"
    aliases = ("zhang800",)
    description = (
        "Rain800 a.k.a. Zhang800 (Zhang et al., ID-CGAN): 700 train / 100 test side-by-side pairs "
        "(clean left, rainy right); val = 100 pairs held out of train (S-DSEN protocol)."
    )
    paper = (
        "Zhang, Sindagi, Patel, Image De-raining Using a Conditional Generative Adversarial Network, arXiv 1701.05957"
    )
    source = (
        "Rain800 from Zhang, Sindagi and Patel, 'Image De-raining Using a Conditional Generative Adversarial "
        "Network' (ID-CGAN, arXiv 1701.05957): the Google Drive folder linked from "
        "https://github.com/hezhangsprinter/ID-CGAN (training/ and test_syn/)."
    )
    layout = """\
(a) ID-CGAN release, each file one side-by-side pair, clean left half | rainy right half:
    training/<n>.jpg ... (700 files)
    test_syn/<n>.jpg ... (100 files)
    (test_nature/ holds real rainy photos without ground truth and is not read)
(b) RESCAN / S-DSEN folders of the same files:
    train/<n>.jpg ... (700 files, or 600 with val/ holding the other 100)
    val/<n>.jpg ... (optional, 100 files)
    test/<n>.jpg ... (100 files)"""
    part_folders = {"train": ("training", "train"), "val": ("val",), "test": ("test_syn", "test")}
    expected_pairs = {"train": {700: "ID-CGAN training set"}, "test": {100: "ID-CGAN test_syn"}}


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    for dataset in (Rain100H, Rain100L, Rain800):
        register(dataset)
