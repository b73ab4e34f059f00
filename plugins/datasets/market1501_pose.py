"""`market1501-pose`: Market-1501 pose transfer (128x64) with Def-GAN's keypoints and pair lists.

The images are the official Market-1501 tree that `market1501` reads (its folders and its one
file-name parser are reused, not repeated); Def-GAN's files sit in the data root next to it:
``market-annotation-{train,test}.csv`` (OpenPose COCO-18, ``name:keypoints_y:keypoints_x``) and
``market-pairs-{train,test}.csv`` (``from,to``; 12,000 test pairs, Def-GAN's ``create_pairs_dataset.py``
with ``random_state=0``). A name is looked up in ``bounding_box_train`` for the train split and in
``bounding_box_test`` then ``query`` for the test split. ``pairs=build`` rebuilds the pairs from the
annotations exactly as Def-GAN does (junk ``-1`` and distractors ``0000`` removed, torso required).
The person of a name is its Market-1501 identity.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Option, hookimpl

from .market1501 import OFFICIAL_COUNTS, SPLIT_FOLDERS, Market1501, parse_name
from .pose_common import DEFGAN_TEST_PAIRS, PoseDataset, PoseParsingDataset


class Market1501Pose(PoseDataset):
    """Market-1501 (128x64) with Def-GAN's OpenPose keypoints and pair lists."""

    name = "market1501-pose"
    description = ("Market-1501 pose transfer, 128x64: Def-GAN keypoints and pairs (12,000 test pairs), "
                   "IS/SSIM/FID plus mask-IS/mask-SSIM; optional LIP parsing maps.")
    paper = "Zheng et al., Market-1501, ICCV 2015; pairs: Siarohin et al., Deformable GANs, CVPR 2018"
    image_size = (128, 64)
    training_preset = "market"
    default_metrics = {
        "ssim": {"convention": "defgan"}, "mask-ssim": {}, "is": {"protocol": "torch-fidelity"},
        "mask-is": {"protocol": "torch-fidelity"}, "fid": {},
    }
    source = (Market1501.source + " Keypoint and pair CSVs (market-annotation-*.csv, market-pairs-*.csv) from "
              "AliaksandrSiarohin/pose-gan (Def-GAN).")
    layout = (
        Market1501.layout + "\n"
        "  market-annotation-{train,test}.csv   name:keypoints_y:keypoints_x (COCO-18, -1 missing)\n"
        "  market-pairs-{train,test}.csv        from,to (12,000 test pairs)\n"
        "  [parsing folder given by option parsing: <folder>/{train,test}/<name stem>.png]"
    )
    official_counts = {"test pairs": DEFGAN_TEST_PAIRS, **OFFICIAL_COUNTS}
    options = PoseDataset.options + (
        Option("pairs", "market-pairs-{split}.csv", "pair list: a CSV in the data root ({split} = the split), or build "
               "(Def-GAN construction from the annotations; 12,000 sampled test pairs)"),
        Option("strict", True, "require the official Market-1501 image counts"),
    )

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.market = Market1501(self.root, strict=self.config["strict"])
        self._by_name: dict[str, dict[str, Path]] = {}

    def annotation_path(self, split: str) -> Path:
        return self.root / f"market-annotation-{split}.csv"

    def pair_source(self, split: str) -> Path | None:
        pairs = self.config["pairs"]
        return None if pairs == "build" else self.root / pairs.format(split=split)

    def person(self, name: str) -> str:
        pid = parse_name(Path(name))["pid"]
        return "-1" if pid < 0 else f"{pid:04d}"

    def image_path(self, split: str, name: str) -> Path:
        if split not in self._by_name:
            order = {"bounding_box_train": 0, "bounding_box_test": 0, "query": 1}  # gallery before query
            found: dict[str, Path] = {}
            for path in sorted(self.market.files(split), key=lambda p: order[p.parent.name]):
                found.setdefault(path.name, path)
            self._by_name[split] = found
        return self._by_name[split].get(name, self.market.base / SPLIT_FOLDERS[split][-1] / name)

    def verify(self, split: str) -> None:
        self.market.verify(split)
        super().verify(split)

    def counts(self) -> dict[str, int]:
        found = dict(self.market.describe()["images"])
        for split in self.splits:
            if self.annotation_path(split).is_file():
                source = self.pair_source(split)
                if source is None or source.is_file():
                    found[f"{split} pairs"] = len(self.pairs(split))
        return found

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "market": self.market.describe(), "pairs": self.config["pairs"]}


class Market1501PoseParsing(PoseParsingDataset, Market1501Pose):
    """market1501-pose for the pose-parsing task (needs the parsing maps)."""

    name = "market1501-pose-parsing"
    description = "Market-1501 pose pairs for the pose-parsing task (predict the target's parsing map); needs parsing maps."


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(Market1501Pose)
    register(Market1501PoseParsing)
