"""What every pose-transfer dataset shares: the Def-GAN/PATN annotation and pair files, Def-GAN's pair
construction, LIP parsing maps, and the `PoseDataset` base with its pair rows and single-image rows.

File formats (``AliaksandrSiarohin/pose-gan``, reused by PATN and most later work):

* annotation CSV, ``:``-separated, header ``name:keypoints_y:keypoints_x``; the two keypoint columns
  are JSON lists of 18 integers in OpenPose COCO-18 order, ``-1`` where the joint was not detected
  (real files write ``name: [..]: [..]`` with a space after the separator);
* pair CSV, ``,``-separated, header ``from,to``: the source and target image names of each pair.

Pair construction (Def-GAN ``create_pairs_dataset.py``, reproduced by `build_pairs`): drop images whose
torso is not fully annotated (both shoulders and both hips present, ``pose_transform.check_valid``)
and images whose name starts with ``-1`` or ``0000`` (Market-1501 junk and distractors); group the
remaining images by person in the order persons first appear in the annotation file; list every
ordered pair of distinct images of a person (``itertools.permutations`` of its images in file
order); for the test split, draw ``min(n, all)`` of those pairs without replacement with pandas'
``DataFrame.sample(random_state=0)`` (Def-GAN uses n = 12,000), which also shuffles the list when it
has fewer pairs than n. The person of a name is given by the dataset (Def-GAN: the text before the
first ``_``).

Parsing maps come as label PNGs (one grey level or palette index per pixel). LIP parser output (20
labels) is merged to the 10 classes the pose-transfer contract fixes, SPT's (`SPT_CLASSES`), by `LIP_TO_SPT`
below; maps already in SPT's labels are read as they are (option ``parsing_labels``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from itertools import permutations
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from harness import DataError, Option, Reference, Sample
from harness.data import digest_files, read_image, to_tensor
from harness_plugins.shared.pose_images import PoseImages
from harness_plugins.shared.pose_maps import MISSING, NUM_KEYPOINTS, TORSO

DISTRACTOR_PREFIXES = ("-1", "0000")
DEFGAN_TEST_PAIRS = 12000
PAIR_SEED = 0
ANNOTATION_HEADER = "name:keypoints_y:keypoints_x"
PAIR_HEADER = "from,to"

SPT_CLASSES = ("background", "face", "hair", "upper-clothes", "pants", "skirt", "left-arm", "right-arm", "left-leg",
               "right-leg")
"""The pose-transfer contract's 10 parsing classes, label = index: SPT's ten (paper §4.1) in the order of the
official demo's README (0 background, 1 face, 2 hair, ... 6 leftArm, 7 rightArm, 8 leftLeg, 9 rightLeg)."""
LIP_CLASSES = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants",
    "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg", "right-leg", "left-shoe", "right-shoe",
)
LIP_TO_SPT = np.array([
    0,  # background
    2,  # hat -> hair (the head above the face; SPT has no hat class)
    2,  # hair
    6,  # glove -> the nearer arm (`LIP_SIDED`; 6 when the map shows no arm)
    1,  # sunglasses -> face
    3,  # upper clothes
    3,  # dress -> upper clothes (it starts at the shoulders; the skirt class is for skirts proper)
    3,  # coat -> upper clothes
    8,  # socks -> the nearer leg (`LIP_SIDED`; 8 when the map shows no leg)
    4,  # pants
    4,  # jumpsuits -> pants (they cover the legs as trousers)
    3,  # scarf -> upper clothes (worn on the neck and chest)
    5,  # skirt
    1,  # face
    6, 7,  # left / right arm
    8, 9,  # left / right leg
    8, 9,  # left / right shoe -> left / right leg
], dtype=np.int64)
"""LIP label -> SPT label. SPT merges LIP into its 10 classes but publishes no table; this one is ours (docs/spt.md)."""
LIP_SIDED = {3: (6, 7), 8: (8, 9)}
"""LIP labels without a side (glove, socks) -> the SPT (left, right) classes; each pixel takes the nearer one."""
PARSING_LABELS = ("lip", "spt")
DEFAULT_PARSING_FOLDER = "parsing"

Pose = np.ndarray
"""float32 (18, 2) of (y, x), -1 in both coordinates where missing."""


# -- annotation and pair files ---------------------------------------------------------------------
def parse_keypoint_list(text: str, where: str) -> list[int]:
    try:
        values = json.loads(text)
    except ValueError:
        raise DataError(f"{where}: {text.strip()!r} is not a JSON list of {NUM_KEYPOINTS} integers") from None
    if not isinstance(values, list) or len(values) != NUM_KEYPOINTS or not all(isinstance(v, (int, float)) for v in values):
        raise DataError(f"{where}: expected a list of {NUM_KEYPOINTS} numbers (-1 for missing), got {text.strip()!r}")
    return values


def read_annotations(path: Path) -> dict[str, Pose]:
    """Def-GAN annotation CSV -> {image name: (18, 2) float32 (y, x)}, in file order.

    A joint with either coordinate equal to -1 is missing and gets -1 in both (pose-gan treats
    ``y == -1 or x == -1`` as missing)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read keypoint annotations {path}: {exc}") from None
    if not lines or [part.strip() for part in lines[0].split(":")] != ANNOTATION_HEADER.split(":"):
        raise DataError(f"{path}: expected the Def-GAN header {ANNOTATION_HEADER!r}, got {lines[0] if lines else ''!r}")
    poses: dict[str, Pose] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(":")
        where = f"{path}, line {number}"
        if len(parts) != 3:
            raise DataError(f"{where}: expected 'name:[18 y values]:[18 x values]', got {line!r}")
        name = parts[0].strip()
        ys, xs = parse_keypoint_list(parts[1], where), parse_keypoint_list(parts[2], where)
        pose = np.stack([np.asarray(ys, np.float32), np.asarray(xs, np.float32)], axis=1)
        pose[(pose == MISSING).any(axis=1)] = MISSING
        if name in poses:
            raise DataError(f"{where}: image {name!r} is annotated twice")
        poses[name] = pose
    return poses


def format_annotations(poses: dict[str, Pose]) -> str:
    """The annotation CSV text for ``poses`` (integer coordinates, as OpenPose annotations are)."""
    lines = [ANNOTATION_HEADER]
    for name, pose in poses.items():
        ys, xs = (json.dumps([int(round(float(v))) for v in pose[:, axis]]) for axis in (0, 1))
        lines.append(f"{name}: {ys}: {xs}")
    return "\n".join(lines) + "\n"


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Def-GAN pair CSV (``from,to``) -> [(source name, target name)], in file order."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read pair list {path}: {exc}") from None
    if not lines or [part.strip() for part in lines[0].split(",")] != PAIR_HEADER.split(","):
        raise DataError(f"{path}: expected the header {PAIR_HEADER!r}, got {lines[0] if lines else ''!r}")
    pairs = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 2 or not all(parts):
            raise DataError(f"{path}, line {number}: expected 'source name,target name', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def format_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    return "\n".join([PAIR_HEADER, *(f"{source},{target}" for source, target in pairs)]) + "\n"


# -- Def-GAN pair construction ---------------------------------------------------------------------
def is_valid_pose(pose: Pose) -> bool:
    """Def-GAN ``check_valid``: both shoulders and both hips (`pose_maps.TORSO`) annotated."""
    return bool((pose[list(TORSO)] != MISSING).all())


def defgan_person(name: str) -> str:
    """Def-GAN's person of an image name: the text before the first ``_``."""
    return name.split("_")[0]


def pairable(poses: dict[str, Pose]) -> list[str]:
    """Names Def-GAN keeps for pairs: valid torso, not a junk/distractor name; file order."""
    return [name for name, pose in poses.items() if is_valid_pose(pose) and not name.startswith(DISTRACTOR_PREFIXES)]


def build_pairs(
    poses: dict[str, Pose], person: Callable[[str], str] = defgan_person, sample: int | None = None, seed: int = PAIR_SEED
) -> list[tuple[str, str]]:
    """Def-GAN ``create_pairs_dataset.py``: same-person ordered pairs of valid images, optionally sampled.

    ``sample`` = None keeps every pair in construction order (Def-GAN's train pairs); an integer draws
    ``min(sample, all)`` of them as ``DataFrame.sample(n, replace=False, random_state=seed)`` does
    (Def-GAN's test pairs: 12,000, seed 0)."""
    names = pairable(poses)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(person(name), []).append(name)
    pairs = [pair for members in groups.values() for pair in permutations(members, 2)]
    if sample is None:
        return pairs
    import pandas as pd

    frame = pd.DataFrame({"from": [p[0] for p in pairs], "to": [p[1] for p in pairs]})
    drawn = frame.sample(n=min(sample, len(frame)), replace=False, random_state=seed)
    return list(zip(drawn["from"], drawn["to"]))


# -- parsing maps ----------------------------------------------------------------------------------
def read_label_map(path: Path, labels: str = "lip") -> torch.Tensor:
    """A label PNG -> int64 (H, W) in SPT's 10 classes (``labels="lip"`` merges LIP's 20 first)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "P", "I", "I;16"):
                raise DataError(f"parsing map {path} is a {image.mode} image; expected one label per pixel (grey or palette PNG)")
            array = np.array(image, dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"parsing map not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read parsing map {path}: {exc}") from None
    count = len(LIP_CLASSES) if labels == "lip" else len(SPT_CLASSES)
    if array.min() < 0 or array.max() >= count:
        raise DataError(
            f"parsing map {path} holds label {int(array.max())}; {labels} maps have labels 0..{count - 1} "
            "(option parsing_labels: lip = the LIP parser's 20 labels, spt = SPT's 10 classes)"
        )
    return torch.from_numpy(lip_to_spt(array) if labels == "lip" else array)


def lip_to_spt(labels: np.ndarray) -> np.ndarray:
    """LIP label maps (..., H, W) -> SPT labels by `LIP_TO_SPT`; gloves and socks join the nearer arm / leg
    (Euclidean distance to its pixels; the left class when the map shows neither side)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim > 2:
        return np.stack([lip_to_spt(one) for one in labels])
    out = LIP_TO_SPT[labels]
    for lip, (left, right) in LIP_SIDED.items():
        where = labels == lip
        lefts, rights = (out == left) & ~where, out == right
        if not where.any() or not rights.any():
            continue
        to_right = ndimage.distance_transform_edt(~rights)
        to_left = ndimage.distance_transform_edt(~lefts) if lefts.any() else np.full(out.shape, np.inf)
        out[where & (to_right < to_left)] = right
    return out


# -- the base class --------------------------------------------------------------------------------
class PoseDataset(PoseImages):
    """A pose-transfer dataset: images with COCO-18 keypoints, same-person pair lists, optional parsing.

    ``index(split)`` rows are *pairs* (what paired training and evaluation iterate); ``images(split)``
    rows are the single images of the split that may enter pairs, for unpaired methods that sample
    images and target poses freely; ``load_image(row)`` decodes one. Subclasses say where the
    annotations, pair lists and images of a split are (`annotation_path`, `pair_source`,
    `image_path`) and whose person a name is (`person`); parsing maps come from the ``parsing``
    option's folder (`parsing_folder`, `require_parsing`).
    """

    task = "pose-transfer"
    splits = ("test", "train")
    default_split = "test"
    image_size: ClassVar[tuple[int, int]]
    """(H, W) of the images the keypoints refer to; an image of another size is refused."""
    test_pairs: ClassVar[int] = DEFGAN_TEST_PAIRS
    """How many test pairs ``pairs=build`` samples (Def-GAN: 12,000)."""
    parsing_option_help = (
        f"folder of parsing-map PNGs (<folder>/<split>/<image stem>.png or <folder>/<image stem>.png), relative to the "
        f"data root or absolute; the default {DEFAULT_PARSING_FOLDER!r} is used when it exists. Methods that use semantic "
        "maps (SPT) and the pose-parsing task need them"
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("parsing", DEFAULT_PARSING_FOLDER, parsing_option_help, type=str),
        Option("parsing_labels", "lip", "labels of the parsing PNGs: lip (20 LIP labels, merged by "
               "pose_common.LIP_TO_SPT) or spt (already SPT's 10 classes: 0 background, 1 face, 2 hair, 3 upper "
               "clothes, 4 pants, 5 skirt, 6/7 left/right arm, 8/9 left/right leg)", choices=PARSING_LABELS),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._poses: dict[str, dict[str, Pose]] = {}
        self._pairs: dict[str, list[tuple[str, str]]] = {}

    # -- what subclasses define
    def annotation_path(self, split: str) -> Path:
        raise NotImplementedError

    def pair_source(self, split: str) -> Path | None:
        """The pair CSV of a split, or None to build the pairs from the annotations (`build_pairs`)."""
        raise NotImplementedError

    def image_path(self, split: str, name: str) -> Path:
        raise NotImplementedError

    def person(self, name: str) -> str:
        return defgan_person(name)

    def prepare(self) -> None:
        """Make sure the files exist (bundled sets generate them here); real sets have nothing to do."""

    # -- annotations and pairs
    def poses(self, split: str) -> dict[str, Pose]:
        if split not in self._poses:
            self.prepare()
            path = self.annotation_path(split)
            if not path.is_file():
                raise DataError(f"{self.name}: keypoint annotations {path} are missing.\nExpected layout:\n{self.layout}\nSource: {self.source}")
            self._poses[split] = read_annotations(path)
        return self._poses[split]

    def pairs(self, split: str) -> list[tuple[str, str]]:
        if split not in self._pairs:
            self.prepare()
            source = self.pair_source(split)
            if source is None:
                sample = self.test_pairs if split == "test" else None
                self._pairs[split] = build_pairs(self.poses(split), self.person, sample=sample)
            else:
                if not source.is_file():
                    raise DataError(f"{self.name}: pair list {source} is missing (option pairs names a file in the data "
                                    f"root, or 'build' to construct Def-GAN pairs).\nExpected layout:\n{self.layout}")
                pairs = read_pairs(source)
                poses = self.poses(split)
                unknown = sorted({name for pair in pairs for name in pair if name not in poses})
                if unknown:
                    raise DataError(f"{self.name}: {source} names {len(unknown)} image(s) without keypoints in "
                                    f"{self.annotation_path(split)}, e.g. {unknown[0]!r}")
                self._pairs[split] = pairs
        return self._pairs[split]

    # -- parsing maps
    def parsing_folder(self) -> Path | None:
        """The parsing-map folder, or None when none is given and the default folder does not exist."""
        folder = self.config["parsing"]
        if folder is None:
            return None
        path = Path(folder).expanduser()
        path = path if path.is_absolute() else self.root / path
        if not path.is_dir():
            if folder == DEFAULT_PARSING_FOLDER:
                return None
            raise DataError(f"{self.name}: parsing-map folder {path} (option parsing={folder!r}) does not exist")
        return path

    def require_parsing(self) -> Path:
        """The parsing-map folder for a method or task that cannot work without maps; a `DataError` naming
        the expected folder and the option when there is none."""
        self.prepare()
        folder = self.parsing_folder()
        if folder is None:
            expected = self.root / (self.config["parsing"] or DEFAULT_PARSING_FOLDER)
            raise DataError(
                f"{self.name}: semantic parsing maps are needed but {expected} does not exist. Put one label PNG per "
                f"image there (<folder>/<split>/<image stem>.png; LIP parser labels, or SPT's 10 classes with "
                f"--dataset-option parsing_labels=spt), or name another folder with --dataset-option parsing=FOLDER"
            )
        return folder

    def parsing_path(self, split: str, name: str, folder: Path) -> Path:
        """The parsing map of image ``name`` in ``folder`` (`parsing_folder`); a `DataError` when it has none."""
        stem = Path(name).stem
        for candidate in (folder / split / f"{stem}.png", folder / f"{stem}.png"):
            if candidate.is_file():
                return candidate
        raise DataError(f"{self.name}: no parsing map for {name!r}: expected {folder / split / (stem + '.png')} "
                        f"or {folder / (stem + '.png')} (option parsing={self.config['parsing']!r})")

    def parsing_maps(self, split: str, names: Iterable[str]) -> dict[str, Path] | None:
        """`parsing_path` of every name (each looked up once), or None without a parsing folder."""
        folder = self.parsing_folder()
        if folder is None:
            return None
        return {name: self.parsing_path(split, name, folder) for name in dict.fromkeys(names)}

    def parsing_labels(self) -> str:
        return self.config["parsing_labels"]

    # -- Dataset API
    def verify(self, split: str) -> None:
        poses = self.poses(split)
        pairs = self.pairs(split)
        missing = [name for name in dict.fromkeys(n for pair in pairs for n in pair) if not self.image_path(split, name).is_file()]
        if missing:
            raise DataError(
                f"{self.name}: {len(missing)} image(s) of the {split} pairs are missing, e.g. "
                f"{self.image_path(split, missing[0])}.\nExpected layout:\n{self.layout}\nSource: {self.source}"
            )
        if not pairs or not poses:
            raise DataError(f"{self.name}: split {split!r} has no pairs ({self.annotation_path(split)})")

    def files(self, split: str) -> list[Path]:
        names = dict.fromkeys(name for pair in self.pairs(split) for name in pair)
        paths = [self.annotation_path(split), *(self.image_path(split, name) for name in names)]
        source = self.pair_source(split)
        if source is not None:
            paths.append(source)
        paths.extend((self.parsing_maps(split, names) or {}).values())
        return paths

    def count(self, split: str) -> int:
        return len(self.pairs(split))

    def index(self, split: str) -> list[Sample]:
        """One row per pair, in the pair list's order: id ``source___target``, the person, the paths."""
        rows = []
        pairs = self.pairs(split)
        maps = self.parsing_maps(split, (name for pair in pairs for name in pair))
        for source, target in pairs:
            paths = {"source": self.image_path(split, source), "target": self.image_path(split, target)}
            if maps is not None:
                paths["source_parsing"], paths["target_parsing"] = maps[source], maps[target]
            rows.append({"id": f"{source}___{target}", "pid": self.person(source), "split": split,
                         "names": (source, target), "paths": paths})
        return rows

    def load(self, row: Sample) -> Sample:
        split, (source, target) = row["split"], row["names"]
        poses = self.poses(split)
        sample: Sample = {"id": row["id"], "pid": row["pid"]}
        for role, name in (("source", source), ("target", target)):
            sample[role] = self._image(row["paths"][role])
            sample[f"{role}_pose"] = torch.from_numpy(poses[name].copy())
            if f"{role}_parsing" in row["paths"]:
                sample[f"{role}_parsing"] = read_label_map(row["paths"][f"{role}_parsing"], self.parsing_labels())
        return sample

    def images(self, split: str) -> list[Sample]:
        """Single-image rows (id = image name, pid, paths) of every image Def-GAN would pair (valid
        torso, no junk/distractor), in annotation order."""
        rows = []
        names = pairable(self.poses(split))
        maps = self.parsing_maps(split, names)
        for name in names:
            paths = {"image": self.image_path(split, name)}
            if maps is not None:
                paths["parsing"] = maps[name]
            rows.append({"id": name, "pid": self.person(name), "split": split, "paths": paths})
        return rows

    def load_image(self, row: Sample) -> Sample:
        """One image row -> {"id", "pid", "image", "pose", "parsing"?}."""
        sample: Sample = {"id": row["id"], "pid": row["pid"], "image": self._image(row["paths"]["image"]),
                          "pose": torch.from_numpy(self.poses(row["split"])[row["id"]].copy())}
        if "parsing" in row["paths"]:
            sample["parsing"] = read_label_map(row["paths"]["parsing"], self.parsing_labels())
        return sample

    def reference(self, split: str) -> Reference:
        """FID's reference set: every distinct target image of the split's pairs (not --limit'ed)."""
        files = [self.image_path(split, name) for name in dict.fromkeys(target for _, target in self.pairs(split))]
        return Reference(tuple(files), digest_files(files, self.root),
                         f"{self.name} {split}: the {len(files)} distinct target images of its pairs")

    def _image(self, path: Path) -> torch.Tensor:
        array = read_image(Path(path))
        if array.shape[:2] != tuple(self.image_size):
            raise DataError(f"{self.name}: {path} is {array.shape[0]}x{array.shape[1]}; the keypoints refer to "
                            f"{self.image_size[0]}x{self.image_size[1]} images")
        return to_tensor(array)

    def describe(self) -> dict[str, Any]:
        return {"image_size": list(self.image_size), "parsing": self.config["parsing"],
                "parsing_labels": self.config["parsing_labels"]}



class PoseParsingDataset(PoseDataset):
    """The `pose-parsing` view of a pose dataset: the same pairs, scored on the predicted target map.

    Subclass it together with a pose dataset (``class X(PoseParsingDataset, SomePoseDataset)``); it
    refuses to run without parsing maps instead of yielding samples that lack the target."""

    task = "pose-parsing"
    default_metrics = {"parsing-accuracy": {}, "parsing-miou": {}}

    def verify(self, split: str) -> None:
        self.require_parsing()
        super().verify(split)

    def index(self, split: str) -> list[Sample]:
        self.require_parsing()
        return super().index(split)

    def reference(self, split: str) -> None:  # type: ignore[override]
        return None
