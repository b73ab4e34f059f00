"""deepfashion-pose and market1501-pose on tiny fixtures in the real layouts (images, CSVs, parsing maps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from harness_plugins.datasets.deepfashion_pose import DeepFashionPose, inshop_key, inshop_name
from harness_plugins.datasets.market1501_pose import Market1501Pose
from harness_plugins.datasets.pose_common import build_pairs, format_annotations, format_pairs, read_annotations
from PIL import Image
from test_market1501 import make_market1501

import harness
from harness import DataError


def keypoints(seed: int, height: int, width: int, missing: tuple[int, ...] = ()) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pose = np.stack([rng.integers(0, height, 18), rng.integers(0, width, 18)], axis=1).astype(np.float32)
    pose[list(missing)] = -1
    return pose


def colour(name: str) -> tuple[int, int, int]:
    value = sum(map(ord, name))
    return value % 256, (value * 7) % 256, (value * 13) % 256


# -- DeepFashion -----------------------------------------------------------------------------------
INSHOP = {  # In-shop path below img/ -> split
    "MEN/Jackets_Vests/id_00000168/01_1_front.jpg": "test",
    "MEN/Jackets_Vests/id_00000168/01_2_side.jpg": "test",
    "MEN/Jackets_Vests/id_00000168/01_7_additional.jpg": "test",
    "WOMEN/Dresses/id_00000002/02_1_front.jpg": "test",
    "WOMEN/Dresses/id_00000002/02_3_back.jpg": "test",
    "WOMEN/Dresses/id_00000002/02_4_full.jpg": "test",  # torso incomplete below
    "MEN/Denim/id_00000080/01_1_front.jpg": "train",
    "MEN/Denim/id_00000080/01_2_side.jpg": "train",
}


def make_deepfashion(root: Path, layout: str) -> Path:
    """Def-GAN CSVs plus images either in fashion_resize/{split}/ (named as the CSVs) or the In-shop img/ tree."""
    poses: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    for index, (relative, split) in enumerate(INSHOP.items()):
        name = inshop_name(Path(relative))
        missing = (8,) if relative.endswith("02_4_full.jpg") else (0, 14)
        poses[split][name] = keypoints(index, 256, 256, missing)
        path = root / "img" / relative if layout == "inshop" else root / "fashion_resize" / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (256, 256), colour(name)).save(path, quality=100)
    for split, table in poses.items():
        (root / f"fasion-annotation-{split}.csv").write_text(format_annotations(table))
        (root / f"fasion-pairs-{split}.csv").write_text(format_pairs(build_pairs(table, sample=12000 if split == "test" else None)))
    return root


def test_inshop_names_follow_def_gan_and_patn():
    name = inshop_name(Path("MEN/Jackets_Vests/id_00000168/01_7_additional.jpg"))
    assert name == "fasionMENJacketsVestsid0000016801_7additional.jpg"
    assert inshop_key(name) == inshop_key("fashionMENJackets_Vestsid0000016801_7additional.jpg")
    dataset = DeepFashionPose(Path("."))
    assert dataset.person("fashionMENJackets_Vestsid0000016801_7additional.jpg") == dataset.person(name) == \
        "MENJacketsVestsid0000016801"


@pytest.mark.parametrize("layout", ["resize", "inshop"])
def test_deepfashion_reads_both_image_layouts(tmp_path, layout):
    root = make_deepfashion(tmp_path / "df", layout)
    dataset = DeepFashionPose(root)
    dataset.verify("test")
    rows = dataset.index("test")
    # person 168: 3 images -> 6 pairs; person 2: 2 valid images -> 2 pairs (02_4_full lacks a hip)
    assert len(rows) == 8 and dataset.counts() == {"train images": 2, "train pairs": 2, "test images": 6, "test pairs": 8}
    sample = dataset.load(rows[0])
    harness.get_task("pose-transfer").check_sample(sample, "deepfashion-pose")
    source, target = rows[0]["names"]
    assert sample["source"].shape == (3, 256, 256)
    expected = torch.tensor(colour(source), dtype=torch.float32) / 255
    assert torch.allclose(sample["source"][:, 100, 100], expected, atol=3 / 255)
    annotated = read_annotations(root / "fasion-annotation-test.csv")
    assert torch.equal(sample["target_pose"], torch.from_numpy(annotated[target]))
    assert sample["source_pose"][0].tolist() == [-1, -1]  # the nose is missing in the fixture
    assert "source_parsing" not in sample  # no parsing folder
    assert {row["pid"] for row in rows} == {"MENJacketsVestsid0000016801", "WOMENDressesid0000000202"}


def test_deepfashion_pairs_option_build_and_file(tmp_path):
    root = make_deepfashion(tmp_path / "df", "resize")
    built = DeepFashionPose(root, pairs="build")
    assert built.pairs("test") == DeepFashionPose(root).pairs("test")  # the fixture's file was built the same way
    assert built.official_counts == {} and DeepFashionPose(root).official_counts == {"test pairs": 12000}
    assert DeepFashionPose(root, release="patn", pairs="build").official_counts == {}
    (root / "mine-test.csv").write_text("from,to\n" + ",".join(DeepFashionPose(root).pairs("test")[0]) + "\n")
    assert len(DeepFashionPose(root, pairs="mine-{split}.csv").index("test")) == 1
    (root / "bad-test.csv").write_text("from,to\nnot-annotated.jpg,x.jpg\n")
    with pytest.raises(DataError, match="without keypoints"):
        DeepFashionPose(root, pairs="bad-{split}.csv").pairs("test")
    with pytest.raises(DataError, match="fasion-resize-pairs-test.csv is missing"):
        DeepFashionPose(root, release="patn").index("test")


def test_deepfashion_missing_image_and_wrong_size_name_the_file(tmp_path):
    root = make_deepfashion(tmp_path / "df", "resize")
    victim = next((root / "fashion_resize" / "test").glob("*front.jpg"))
    Image.new("RGB", (176, 256)).save(victim)
    dataset = DeepFashionPose(root)
    row = next(r for r in dataset.index("test") if victim.name in r["names"])
    with pytest.raises(DataError, match="256x256"):
        dataset.load(row)
    victim.unlink()
    with pytest.raises(DataError, match=victim.name):
        DeepFashionPose(root).verify("test")


def test_parsing_maps_are_read_and_merged_and_required_when_asked(tmp_path):
    root = make_deepfashion(tmp_path / "df", "resize")
    dataset = DeepFashionPose(root)
    with pytest.raises(DataError, match=r"parsing.*does not exist.*--dataset-option parsing=FOLDER"):
        dataset.require_parsing()
    for split in ("train", "test"):
        for name in read_annotations(root / f"fasion-annotation-{split}.csv"):
            labels = np.full((256, 256), 5, np.uint8)  # LIP upper clothes
            labels[:10] = 13  # LIP face
            (root / "parsing" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels, mode="L").save(root / "parsing" / split / (Path(name).stem + ".png"))
    dataset = DeepFashionPose(root)
    sample = dataset.load(dataset.index("test")[0])
    assert sample["source_parsing"].dtype == torch.int64 and sample["source_parsing"].shape == (256, 256)
    assert sample["source_parsing"][0, 0] == 1 and sample["target_parsing"][100, 0] == 3  # SPT's face, upper clothes
    single = dataset.load_image(dataset.images("test")[0])
    assert single["parsing"].shape == (256, 256) and single["pose"].shape == (18, 2)
    assert len(dataset.images("test")) == 5  # the image without a hip never pairs
    with pytest.raises(DataError, match="elsewhere"):
        DeepFashionPose(root, parsing="elsewhere").index("test")


def test_deepfashion_data_check_through_the_cli(cli, tmp_path):
    root = make_deepfashion(tmp_path / "df", "inshop")
    code, out, err = cli("data", "check", "deepfashion-pose", "--data-root", root, "--dataset-option", "pairs=build")
    assert code == 0, err
    assert "test pairs" in out and "layout ok" in out
    code, out, err = cli("data", "check", "deepfashion-pose", "--data-root", root)
    assert code == 2 and "test pairs" in out and "12000" in out and "differ from the official release" in err


# -- Market-1501 -----------------------------------------------------------------------------------
def make_market_pose(root: Path) -> Path:
    make_market1501(root)
    for split, folders in (("test", ("query", "bounding_box_test")), ("train", ("bounding_box_train",))):
        names = sorted(p.name for folder in folders for p in (root / folder).glob("*.jpg"))
        table = {name: keypoints(i, 128, 64, (11,) if name.startswith("0003_c4") else ()) for i, name in enumerate(names)}
        (root / f"market-annotation-{split}.csv").write_text(format_annotations(table))
        (root / f"market-pairs-{split}.csv").write_text(format_pairs(build_pairs(table, sample=12000 if split == "test" else None)))
    for folder in ("query", "bounding_box_test", "bounding_box_train"):  # Market crops are 128x64
        for path in (root / folder).glob("*.jpg"):
            Image.new("RGB", (64, 128), colour(path.name)).save(path, quality=100)
    return root


def test_market_pose_pairs_drop_junk_distractors_and_invalid_poses(tmp_path):
    root = make_market_pose(tmp_path / "market")
    dataset = Market1501Pose(root, strict=False)
    dataset.verify("test")
    pairs = dataset.pairs("test")
    names = {n for pair in pairs for n in pair}
    assert not any(n.startswith(("-1", "0000")) for n in names) and "0003_c4s2_020000_01.jpg" not in names
    # persons: 0001 (1 query + 3 gallery) 12, 0002 (1+2) 6, 0003 (1+3-1 invalid) 6, 0004 (1+2) 6
    assert len(pairs) == 30 and all(a.split("_")[0] == b.split("_")[0] for a, b in pairs)
    row = dataset.index("test")[0]
    assert row["pid"] == row["names"][0][:4]
    sample = dataset.load(row)
    harness.get_task("pose-transfer").check_sample(sample, "market1501-pose")
    assert sample["source"].shape == (3, 128, 64)
    assert dataset.image_path("test", "0001_c1s1_001051_00.jpg").parent.name == "query"
    assert dataset.image_path("test", "0001_c1s1_001051_01.jpg").parent.name == "bounding_box_test"
    assert len(dataset.index("train")) == 2  # 0005 has two train images
    assert dataset.counts()["test pairs"] == 30
    reference = dataset.reference("test")
    assert len(reference.files) == len({t for _, t in pairs})


def test_market_pose_default_metrics_are_the_papers_protocol():
    assert list(Market1501Pose.default_metrics) == ["ssim", "mask-ssim", "is", "mask-is", "fid"]
    assert Market1501Pose.default_metrics["ssim"] == {"convention": "defgan"}
    assert Market1501Pose.official_counts["test pairs"] == 12000
    assert list(DeepFashionPose.default_metrics) == ["ssim", "is", "fid"]


def test_market_pose_data_check_shows_pairs_and_release_counts(cli, tmp_path):
    root = make_market_pose(tmp_path / "market")
    code, out, err = cli("data", "check", "market1501-pose", "--data-root", root, "--dataset-option", "strict=false")
    assert code == 2  # a 30-pair fixture is not the 12,000-pair release
    assert "test pairs" in out and "12000" in out and "bounding_box_train" in out and "12936" in out


@pytest.mark.parametrize("board", ["spt-person-generation", "spt-parsing"])
def test_spt_leaderboards_name_registered_datasets_of_their_task(board):
    """Measured cells land only where a leaderboard's dataset name is a registered dataset of its task."""
    import harness_leaderboards
    import yaml

    definition = yaml.safe_load((Path(harness_leaderboards.__file__).parent / f"{board}.yaml").read_text())
    plugins = harness.get_plugins()
    for entry in definition["datasets"]:
        assert plugins.datasets.get(entry["name"]).task == definition["task"]
