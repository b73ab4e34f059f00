"""`deepfashion-pose`: DeepFashion In-shop pose transfer with the Def-GAN or PATN keypoints and pair lists.

Images (256x256) are found in any of the layouts the field uses, all under the data root:

* ``fashion_resize/{train,test}/<name>`` (PATN and later work), ``fasion-dataset/{train,test}/<name>``
  (Def-GAN's ``split_fasion_dataset.py`` output), or ``{train,test}/<name>``: files named as in the CSVs;
* ``img/<GENDER>/<Category>/id_XXXXXXXX/NN_K_view.jpg``: the In-shop release itself.

The annotation names encode the In-shop path: Def-GAN writes ``fasion`` + gender + category without
``_`` + the id folder without ``_`` + the item number, then ``_`` + the rest of the file name without
``_`` (``img/MEN/Jackets_Vests/id_00000168/01_1_front.jpg`` -> ``fasionMENJacketsVestsid0000016801_1front.jpg``);
PATN writes ``fashion`` and keeps the category's ``_`` (``fashionMENJackets_Vestsid0000016801_1front.jpg``).
Both reduce to one key (prefix dropped, every ``_`` removed), which is how an annotation name is
matched to an ``img/`` file (`inshop_key`). A person is an id folder plus item number (one garment
worn in several poses): the key of the name up to its last ``_`` (``MENJacketsVestsid0000016801``; on
Def-GAN names this groups exactly as Def-GAN's "text before the first ``_``" does).

``release`` picks the annotation/pair files: ``defgan`` (``fasion-annotation-{split}.csv``,
``fasion-pairs-{split}.csv``; 12,000 test pairs sampled by ``create_pairs_dataset.py``) or ``patn``
(``fasion-resize-annotation-{split}.csv``, ``fasion-resize-pairs-{split}.csv``; 8,570 test / 101,966
train pairs). ``pairs=build`` constructs Def-GAN pairs from the annotations instead, and any other
value names a pair CSV in the data root (``{split}`` is replaced by the split).

SPT's own split (37,258 train / 12,000 test images) and its 118-image "with background" test set were
never released; ``deepfashion-pose-bg`` is the name its "with background" cells are filed under and
reads a pair list the user provides (``pairs``), otherwise the same files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import DataError, Option, hookimpl

from .pose_common import PoseDataset, PoseParsingDataset

RELEASES = {
    "defgan": {"annotations": "fasion-annotation-{split}.csv", "pairs": "fasion-pairs-{split}.csv"},
    "patn": {"annotations": "fasion-resize-annotation-{split}.csv", "pairs": "fasion-resize-pairs-{split}.csv"},
}
RELEASE_COUNTS = {
    "defgan": {"test pairs": 12000},  # create_pairs_dataset.py: images_for_test = 12000
    "patn": {"test pairs": 8570, "train pairs": 101966},
}
IMAGE_FOLDERS = ("fashion_resize", "fasion-dataset", ".")
INSHOP_FOLDER = "img"
PREFIX = re.compile(r"^(fasion|fashion)")


def inshop_key(name: str) -> str:
    """The layout-independent key of a Def-GAN or PATN image name: prefix dropped, no underscores."""
    return PREFIX.sub("", name).replace("_", "")


def inshop_name(relative: Path) -> str:
    """Def-GAN's name of an In-shop file ``MEN/Jackets_Vests/id_00000168/01_1_front.jpg`` (below ``img/``)."""
    parts = relative.parts
    if len(parts) != 4:
        raise DataError(f"deepfashion-pose: img/{relative} is not img/<GENDER>/<Category>/id_XXXXXXXX/NN_K_view.jpg")
    gender, category, identity, file_name = parts
    item, _, rest = file_name.partition("_")
    return f"fasion{gender}{category.replace('_', '')}{identity.replace('_', '')}{item}_{rest.replace('_', '')}"


class DeepFashionPose(PoseDataset):
    """DeepFashion In-shop (256x256) with OpenPose keypoints and Def-GAN/PATN pairs."""

    name = "deepfashion-pose"
    description = ("DeepFashion In-shop pose transfer, 256x256: Def-GAN (12,000 test pairs) or PATN (8,570) keypoints "
                   "and pair lists, or Def-GAN pairs built from the annotations; optional LIP parsing maps.")
    paper = "Liu et al., DeepFashion, CVPR 2016; pairs: Siarohin et al., Deformable GANs, CVPR 2018 / Zhu et al., PATN, CVPR 2019"
    image_size = (256, 256)
    training_preset = "deepfashion"
    default_metrics = {"ssim": {"convention": "defgan"}, "is": {"protocol": "torch-fidelity"}, "fid": {}}
    source = (
        "DeepFashion In-shop Clothes Retrieval (img.zip, Liu et al., http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion.html), "
        "or its 256x256 fashion_resize folders; keypoint and pair CSVs from AliaksandrSiarohin/pose-gan (Def-GAN) or "
        "tengteng95/Pose-Transfer (PATN)."
    )
    layout = (
        "<root>/\n"
        "  fasion-annotation-{train,test}.csv   name:keypoints_y:keypoints_x   (release=defgan; patn: fasion-resize-...)\n"
        "  fasion-pairs-{train,test}.csv        from,to\n"
        "  fashion_resize/{train,test}/<name>.jpg   (or fasion-dataset/{train,test}/, {train,test}/, or the In-shop\n"
        "  img/<GENDER>/<Category>/id_XXXXXXXX/NN_K_view.jpg tree)\n"
        "  [parsing folder given by option parsing: <folder>/{train,test}/<name stem>.png]"
    )
    options = PoseDataset.options + (
        Option("release", "defgan", "annotation and pair files: defgan (fasion-*.csv) or patn (fasion-resize-*.csv)",
               choices=tuple(RELEASES)),
        Option("pairs", "release", "pair list: release (the release's pair CSV), build (Def-GAN construction from the "
               "annotations; 12,000 sampled test pairs) or a CSV file name in the data root ({split} = the split)"),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._inshop: dict[str, Path] | None = None
        self._listing: dict[str, dict[str, Path]] = {}
        counts = RELEASE_COUNTS[self.config["release"]] if self.config["pairs"] == "release" else {}
        self.official_counts = dict(counts)  # the chosen pair list's size (cf. regdb's per-trial counts)

    def annotation_path(self, split: str) -> Path:
        return self.root / RELEASES[self.config["release"]]["annotations"].format(split=split)

    def pair_source(self, split: str) -> Path | None:
        pairs = self.config["pairs"]
        if pairs == "build":
            return None
        template = RELEASES[self.config["release"]]["pairs"] if pairs == "release" else pairs
        return self.root / template.format(split=split)

    def person(self, name: str) -> str:
        return inshop_key(name.rsplit("_", 1)[0])

    def image_path(self, split: str, name: str) -> Path:
        if split not in self._listing:  # one directory listing per split instead of a stat per pair
            found: dict[str, Path] = {}
            for folder in IMAGE_FOLDERS:
                directory = self.root / folder / split
                if directory.is_dir():
                    for path in sorted(directory.iterdir()):
                        found.setdefault(path.name, path)
            self._listing[split] = found
        path = self._listing[split].get(name) or self._inshop_index().get(inshop_key(name))
        return path if path is not None else self.root / IMAGE_FOLDERS[0] / split / name

    def _inshop_index(self) -> dict[str, Path]:
        """In-shop files by their name key, read once (an empty map when there is no ``img/`` tree)."""
        if self._inshop is None:
            top = self.root / INSHOP_FOLDER
            self._inshop = {}
            if top.is_dir():
                for path in sorted(top.glob("*/*/*/*.jpg")):
                    self._inshop[inshop_key(inshop_name(path.relative_to(top)))] = path
        return self._inshop

    def counts(self) -> dict[str, int]:
        found = {}
        for split in self.splits:
            if self.annotation_path(split).is_file():
                found[f"{split} images"] = len(self.poses(split))
                source = self.pair_source(split)
                if source is None or source.is_file():
                    found[f"{split} pairs"] = len(self.pairs(split))
        return found

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "release": self.config["release"], "pairs": self.config["pairs"],
                "inshop_tree": (self.root / INSHOP_FOLDER).is_dir()}


class DeepFashionPoseBackground(DeepFashionPose):
    """The "with background" DeepFashion setting: the same files, a pair list the user supplies."""

    name = "deepfashion-pose-bg"
    description = ("DeepFashion pose transfer 'with background' (SPT's 118 hand-picked test images were not released): "
                   "the deepfashion-pose files with a pair list given by option pairs.")
    options = tuple(o for o in DeepFashionPose.options if o.name != "pairs") + (
        Option("pairs", "fasion-bg-pairs-{split}.csv", "pair CSV in the data root listing the with-background pairs "
               "({split} = the split); build = Def-GAN construction from the annotations"),
    )


class DeepFashionPoseParsing(PoseParsingDataset, DeepFashionPose):
    """deepfashion-pose for the pose-parsing task (SPT Table 4; needs the parsing maps)."""

    name = "deepfashion-pose-parsing"
    description = "DeepFashion pose pairs for the pose-parsing task (predict the target's parsing map); needs parsing maps."


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(DeepFashionPose)
    register(DeepFashionPoseBackground)
    register(DeepFashionPoseParsing)
