"""Pose-transfer data: the Def-GAN CSV formats, Def-GAN's pair construction, LIP parsing maps, pose-synth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from harness_plugins.datasets import pose_common
from harness_plugins.datasets.pose_common import (
    LIP_TO_SPT, SPT_CLASSES, build_pairs, format_annotations, format_pairs, read_annotations, read_label_map, read_pairs,
)
from harness_plugins.datasets.pose_synth import PoseSynth, Sources, render
from PIL import Image

import harness
from harness import DataError

N = -1


def pose(*missing: int, base: int = 10) -> list[list[int]]:
    """18 (y, x) joints at distinct places; the listed joints missing."""
    ys = [base + i for i in range(18)]
    xs = [base + 2 * i for i in range(18)]
    for joint in missing:
        ys[joint] = xs[joint] = N
    return [ys, xs]


def write_annotations(path: Path, rows: dict[str, list[list[int]]]) -> Path:
    lines = ["name:keypoints_y:keypoints_x"] + [f"{name}: {ys}: {xs}" for name, (ys, xs) in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- CSV formats -----------------------------------------------------------------------------------
def test_annotation_csv_reads_def_gan_lines_and_missing_joints(tmp_path):
    path = tmp_path / "market-annotation-test.csv"
    path.write_text(
        "name:keypoints_y:keypoints_x\n"
        "0002_c1s1_000451_03.jpg: [12, 15, -1, 30, 41, 16, 29, 40, 60, 85, 110, 61, 86, -1, 10, 10, 11, 12]:"
        " [30, 31, -1, 22, 20, 38, 40, 41, 26, 25, 24, 36, 37, -1, 28, 33, 25, -1]\n"
        "0002_c2s1_000301_01.jpg:[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18]:[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]\n"
    )
    poses = read_annotations(path)
    assert list(poses) == ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg"]
    first = poses["0002_c1s1_000451_03.jpg"]
    assert first.shape == (18, 2) and first.dtype == np.float32
    assert first[0].tolist() == [12, 30] and first[1].tolist() == [15, 31]
    assert first[2].tolist() == [N, N] and first[13].tolist() == [N, N]
    assert first[17].tolist() == [N, N]  # x missing alone: the joint is missing (pose-gan's `y == -1 or x == -1`)
    assert poses["0002_c2s1_000301_01.jpg"][17].tolist() == [18, 0]  # x = 0 is a real coordinate


def test_annotation_csv_round_trips_through_the_writer(tmp_path):
    poses = {"a_1.jpg": np.array(pose(3, 17), np.float32).T.copy(), "b_2.jpg": np.array(pose(base=40), np.float32).T.copy()}
    path = tmp_path / "x.csv"
    path.write_text(format_annotations(poses))
    assert path.read_text().splitlines()[1].startswith("a_1.jpg: [10, 11, 12, -1, ")
    back = read_annotations(path)
    assert list(back) == list(poses) and all(np.array_equal(back[k], poses[k]) for k in poses)


@pytest.mark.parametrize("text, message", [
    ("name,keypoints_y,keypoints_x\n", "header"),
    ("name:keypoints_y:keypoints_x\na.jpg: [1, 2]: [1, 2]\n", "list of 18"),
    ("name:keypoints_y:keypoints_x\na.jpg: [1, 2\n", "expected 'name"),
    ("name:keypoints_y:keypoints_x\na.jpg: nope: [1]\n", "not a JSON list"),
])
def test_bad_annotation_files_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "fasion-annotation-test.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        read_annotations(path)
    assert str(path) in str(error.value)


def test_pair_csv_round_trip_and_errors(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(format_pairs([("a.jpg", "b.jpg"), ("b.jpg", "a.jpg")]))
    assert path.read_text() == "from,to\na.jpg,b.jpg\nb.jpg,a.jpg\n"
    assert read_pairs(path) == [("a.jpg", "b.jpg"), ("b.jpg", "a.jpg")]
    path.write_text("from,to\na.jpg\n")
    with pytest.raises(DataError, match="line 2"):
        read_pairs(path)


# -- Def-GAN pair construction --------------------------------------------------------------------
HAND_CASE = {
    "0003_c1s1_000001_01.jpg": pose(),
    "0001_c1s1_000001_01.jpg": pose(0, 14, 15),  # face missing: still valid (torso complete)
    "0003_c2s1_000002_01.jpg": pose(),
    "0000_c1s1_000003_01.jpg": pose(),  # distractor
    "0001_c2s1_000004_01.jpg": pose(8),  # right hip missing: invalid
    "-1_c3s1_000005_01.jpg": pose(),  # junk
    "0001_c3s1_000006_01.jpg": pose(),
    "0003_c3s1_000007_01.jpg": pose(4, 7),  # wrists missing: valid
    "0002_c1s1_000008_01.jpg": pose(2),  # right shoulder missing: invalid -> person 0002 has no image
    "0001_c4s1_000009_01.jpg": pose(5),  # left shoulder missing: invalid
}


def test_def_gan_pairs_of_a_hand_computed_case(tmp_path):
    poses = read_annotations(write_annotations(tmp_path / "a.csv", HAND_CASE))
    # valid, non-distractor images in file order: 0003 c1, 0001 c1, 0003 c2, 0001 c3, 0003 c3.
    # persons in order of first appearance: 0003 (c1, c2, c3), 0001 (c1, c3); ordered permutations of each.
    a, b, c = "0003_c1s1_000001_01.jpg", "0003_c2s1_000002_01.jpg", "0003_c3s1_000007_01.jpg"
    d, e = "0001_c1s1_000001_01.jpg", "0001_c3s1_000006_01.jpg"
    expected = [(a, b), (a, c), (b, a), (b, c), (c, a), (c, b), (d, e), (e, d)]
    assert build_pairs(poses) == expected
    assert pose_common.pairable(poses) == [a, d, b, e, c]
    # test split: DataFrame.sample(n, random_state=0) = rows RandomState(0).permutation(8)[:n] = 6 2 1 7 3 0 5 4
    assert list(np.random.RandomState(0).permutation(8)) == [6, 2, 1, 7, 3, 0, 5, 4]
    assert build_pairs(poses, sample=3) == [expected[6], expected[2], expected[1]]
    # fewer pairs than asked for: all of them, shuffled the same way (Def-GAN's min(n, all))
    assert build_pairs(poses, sample=12000) == [expected[i] for i in (6, 2, 1, 7, 3, 0, 5, 4)]


def test_def_gan_person_is_the_name_before_the_first_underscore():
    assert pose_common.defgan_person("0003_c1s1_000001_01.jpg") == "0003"
    assert pose_common.defgan_person("fasionMENDenimid0000008001_1front.jpg") == "fasionMENDenimid0000008001"


# -- parsing maps ----------------------------------------------------------------------------------
def test_lip_labels_merge_to_spts_ten_classes_in_the_demos_order(tmp_path):
    # the demo's README: 0 background, 1 face, 2 hair, 3 upper clothes, 4 pants, 5 skirt, 6-9 left/right arm/leg
    assert SPT_CLASSES == ("background", "face", "hair", "upper-clothes", "pants", "skirt", "left-arm", "right-arm",
                           "left-leg", "right-leg")
    lip = np.array([[0, 1, 2, 4, 5], [6, 7, 9, 10, 11], [12, 13, 14, 15, 16], [17, 18, 19, 0, 0]], np.uint8)
    Image.fromarray(lip, mode="L").save(tmp_path / "lip.png")
    merged = read_label_map(tmp_path / "lip.png", "lip")
    assert merged.dtype == torch.int64 and merged.shape == (4, 5)
    assert merged.tolist() == [[0, 2, 2, 1, 3], [3, 3, 4, 4, 3], [5, 1, 6, 7, 8], [9, 8, 9, 0, 0]]
    assert len(LIP_TO_SPT) == len(pose_common.LIP_CLASSES) == 20 and LIP_TO_SPT.max() == 9
    palette = Image.fromarray(np.array([[0, 13], [5, 19]], np.uint8), mode="P")
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    palette.save(tmp_path / "palette.png")
    assert read_label_map(tmp_path / "palette.png", "lip").tolist() == [[0, 1], [3, 9]]
    with pytest.raises(DataError, match="labels 0..9"):
        read_label_map(tmp_path / "lip.png", "spt")
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="one label per pixel"):
        read_label_map(tmp_path / "rgb.png", "lip")


def test_gloves_and_socks_join_the_nearer_arm_and_leg():
    lip = np.zeros((3, 12), np.int64)
    lip[0, :2], lip[0, 10:] = 14, 15  # left arm at the left, right arm at the right
    lip[0, 3], lip[0, 8] = 3, 3  # gloves by each arm
    lip[2, 0], lip[2, 11], lip[2, 5] = 16, 17, 8  # legs, and a sock nearer the left one
    spt = pose_common.lip_to_spt(lip)
    assert spt[0].tolist() == [6, 6, 0, 6, 0, 0, 0, 0, 7, 0, 7, 7]
    assert spt[2, 5] == 8 and spt[2, 0] == 8 and spt[2, 11] == 9
    assert pose_common.lip_to_spt(np.array([[3, 8]])).tolist() == [[6, 8]]  # no arm or leg shown: the left class
    assert pose_common.lip_to_spt(np.stack([lip, lip])).shape == (2, 3, 12)


# -- pose-synth ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """pose-synth generated once for the module."""
    root = tmp_path_factory.mktemp("data") / "pose-synth"
    PoseSynth(root).verify("test")
    return root


def test_pose_synth_is_written_in_the_def_gan_layout_and_read_back(synth_root):
    dataset = PoseSynth(synth_root)
    assert dataset.counts() == {"train images": 240, "test images": 60, "train pairs": dataset.count("train"), "test pairs": 100}
    for split in ("train", "test"):
        poses = read_annotations(synth_root / f"pose-synth-annotation-{split}.csv")
        stored = read_pairs(synth_root / f"pose-synth-pairs-{split}.csv")
        assert stored == build_pairs(poses, sample=100 if split == "test" else None)  # Def-GAN's construction
        assert all(source != target and source.split("_")[0] == target.split("_")[0] for source, target in stored)
    # some pictures lack a hip and never enter a pair; identities of train and test are disjoint
    train = read_annotations(synth_root / "pose-synth-annotation-train.csv")
    dropped = set(train) - {name for pair in dataset.pairs("train") for name in pair}
    assert dropped and all(not pose_common.is_valid_pose(train[name]) for name in dropped)
    assert not {r["pid"] for r in dataset.images("train")} & {r["pid"] for r in dataset.images("test")}
    assert dataset.count("train") == sum(
        len(v) * (len(v) - 1) for v in _group(pose_common.pairable(train)).values())


def _group(names: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split("_")[0], []).append(name)
    return groups


def test_pose_synth_samples_follow_the_contract(synth_root):
    dataset = PoseSynth(synth_root)
    rows = dataset.index("test")
    sample = dataset.load(rows[0])
    harness.get_task("pose-transfer").check_sample(sample, "pose-synth")
    assert sample["id"] == "___".join(rows[0]["names"]) and sample["pid"] == rows[0]["pid"]
    for role in ("source", "target"):
        image, keypoints, parsing = sample[role], sample[f"{role}_pose"], sample[f"{role}_parsing"]
        assert image.shape == (3, 128, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
        assert keypoints.shape == (18, 2) and keypoints.dtype == torch.float32
        present = (keypoints != -1).all(dim=1)
        assert present[[2, 5, 8, 11]].all()  # paired images have a full torso
        assert (keypoints[present, 0] < 128).all() and (keypoints[present, 1] < 64).all()
        assert parsing.shape == (128, 64) and parsing.dtype == torch.int64 and 0 <= parsing.min() and parsing.max() <= 9
        # the person is painted where its skeleton is: the neck lies on the upper clothes or the face/neck
        neck_y, neck_x = keypoints[1].long().tolist()
        assert parsing[neck_y, neck_x] in (1, 3)  # SPT's face (the neck is painted as skin) or upper clothes
        background = parsing == 0
        assert 0.4 < background.float().mean() < 0.9
    single = dataset.images("train")
    loaded = dataset.load_image(single[3])
    assert set(loaded) == {"id", "pid", "image", "pose", "parsing"} and loaded["id"] == single[3]["id"]
    assert torch.equal(loaded["pose"], torch.from_numpy(dataset.poses("train")[single[3]["id"]]))
    reference = dataset.reference("test")
    assert len(reference.files) == len({t for _, t in dataset.pairs("test")}) and all(p.is_file() for p in reference.files)


def test_pose_synth_labels_each_arm_and_leg_by_its_own_side(synth_root):
    """SPT's classes keep the sides: left-arm pixels (6) lie along the L elbow/wrist, right-arm (7) the R ones."""
    dataset = PoseSynth(synth_root)
    checked = 0
    for row in dataset.images("train")[:12]:
        sample = dataset.load_image(row)
        labels, pose = sample["parsing"], sample["pose"]
        for label, own, other in ((6, (6, 7), (3, 4)), (7, (3, 4), (6, 7)), (8, (12, 13), (9, 10)), (9, (9, 10), (12, 13))):
            ys, xs = torch.nonzero(labels == label, as_tuple=True)
            if len(ys) < 5 or (pose[list(own + other)] == -1).any():
                continue
            points = torch.stack([ys, xs], 1).float()
            near_own = torch.cdist(points, pose[list(own)]).min(dim=1).values
            near_other = torch.cdist(points, pose[list(other)]).min(dim=1).values
            assert (near_own <= near_other).float().mean() > 0.7, (row["id"], label)
            checked += 1
    assert checked > 20


def test_pose_synth_identity_is_consistent_and_pose_changes(synth_root):
    """Two pictures of one person share clothes colours but not their layout; copying the source is beatable."""
    dataset = PoseSynth(synth_root)
    sample = dataset.load(dataset.index("test")[0])
    upper = [sample[r][:, sample[f"{r}_parsing"] == 3].mean(dim=1) for r in ("source", "target")]
    assert torch.allclose(upper[0], upper[1], atol=0.1)
    assert (sample["source_parsing"] != sample["target_parsing"]).float().mean() > 0.03


def test_pose_synth_rendering_is_deterministic():
    sources = Sources.load()
    from harness_plugins.datasets.pose_synth import Person

    person = Person.draw(np.random.default_rng([1, 2]))
    first = render(person, sources, np.random.default_rng(5), (128, 64))
    second = render(person, sources, np.random.default_rng(5), (128, 64))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_data_check_prints_pose_synth_counts(cli, synth_root):
    code, out, err = cli("data", "check", "pose-synth", "--data-root", synth_root)
    assert code == 0, err
    assert "test pairs" in out and "100" in out and "layout ok" in out
