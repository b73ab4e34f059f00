"""market1501: the official folder layout and file names, the protocol's metrics, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from harness_plugins.datasets.market1501 import OFFICIAL_COUNTS, Market1501, parse_name
from PIL import Image

import harness
from harness import DataError, UsageError

QUERY = ["0001_c1s1_001051_00.jpg", "0002_c2s1_000301_00.jpg", "0003_c3s2_012345_00.jpg", "0004_c6s4_000002_00.jpg"]
GALLERY = [
    "-1_c1s1_000401_03.jpg", "-1_c3s1_000551_01.jpg",  # junk
    "0000_c1s1_000151_01.jpg", "0000_c5s2_054321_02.jpg",  # distractors
    "0001_c1s1_001051_01.jpg", "0001_c2s1_000976_02.jpg", "0001_c5s3_015240_04.jpg",
    "0002_c2s1_000351_01.jpg", "0002_c3s1_000501_01.jpg",
    "0003_c1s1_000100_01.jpg", "0003_c3s2_012300_03.jpg", "0003_c4s2_020000_01.jpg",
    "0004_c1s5_000011_01.jpg", "0004_c6s4_000010_01.jpg",
]
TRAIN = ["0005_c1s1_000010_01.jpg", "0005_c2s1_000020_01.jpg", "0007_c3s3_000030_02.jpg", "1501_c6s4_000040_01.jpg"]


def pixel(name: str) -> tuple[int, int, int]:
    """A colour unique to each file name, so a test can tell which file was read."""
    value = sum(map(ord, name))
    return value % 256, (value * 7) % 256, (value * 13) % 256


def make_market1501(root: Path, query=QUERY, gallery=GALLERY, train=TRAIN, release_folder: bool = False) -> Path:
    """A tiny Market-1501 in the official layout: 8×4 JPEGs of one colour per file."""
    base = root / "Market-1501-v15.09.15" if release_folder else root
    for folder, names in (("query", query), ("bounding_box_test", gallery), ("bounding_box_train", train)):
        (base / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.new("RGB", (4, 8), pixel(name)).save(base / folder / name, quality=100)
    (base / "bounding_box_test" / "Thumbs.db").write_bytes(b"windows thumbnail cache")
    return root


def test_test_split_holds_queries_then_gallery_with_parsed_fields(tmp_path):
    dataset = Market1501(make_market1501(tmp_path), strict=False)
    dataset.verify("test")
    samples = list(dataset.samples("test"))
    assert [s["id"] for s in samples] == [f"query/{n}" for n in sorted(QUERY)] + [f"bounding_box_test/{n}" for n in sorted(GALLERY)]
    assert dataset.count("test") == len(samples) == 18
    by_id = {s["id"]: s for s in samples}
    query = by_id["query/0003_c3s2_012345_00.jpg"]
    assert (query["pid"], query["camid"], query["sequence"], query["role"], query["modality"]) == (3, 3, 2, "query", "visible")
    junk, distractor = by_id["bounding_box_test/-1_c3s1_000551_01.jpg"], by_id["bounding_box_test/0000_c5s2_054321_02.jpg"]
    assert (junk["pid"], junk["camid"], junk["role"]) == (-1, 3, "gallery")  # junk stays: the protocol drops it
    assert (distractor["pid"], distractor["camid"]) == (0, 5)
    image = query["image"]
    assert image.shape == (3, 8, 4) and image.dtype == torch.float32
    expected = torch.tensor(pixel("0003_c3s2_012345_00.jpg"), dtype=torch.float32) / 255
    assert torch.allclose(image[:, 4, 2], expected, atol=3 / 255)  # JPEG: nearly the written colour
    harness.get_task("reidentification").check_sample(query, "test")


def test_train_split_and_files(tmp_path):
    dataset = Market1501(make_market1501(tmp_path), strict=False)
    samples = list(dataset.samples("train"))
    assert [s["pid"] for s in samples] == [5, 5, 7, 1501]
    assert {s["role"] for s in samples} == {"train"}
    assert dataset.files("train") == [tmp_path / "bounding_box_train" / n for n in TRAIN]
    assert len(dataset.files("test")) == 18  # Thumbs.db is not an image of the split
    assert dataset.splits == ("test", "train") and dataset.default_split == "test"


def test_release_folder_inside_the_root_is_found(tmp_path):
    dataset = Market1501(make_market1501(tmp_path, release_folder=True), strict=False)
    dataset.verify("test")
    assert next(dataset.samples("test"))["id"] == "query/0001_c1s1_001051_00.jpg"
    assert dataset.describe() == {"base": "Market-1501-v15.09.15", "images": {"bounding_box_train": 4, "query": 4, "bounding_box_test": 14}}


def test_index_parses_labels_without_decoding_and_load_decodes_one(tmp_path):
    root = make_market1501(tmp_path)
    (root / "query" / QUERY[1]).write_bytes(b"not a jpeg")  # never read by index()
    dataset = Market1501(root, strict="false")
    rows = dataset.index("test")
    assert [row["id"] for row in rows[:4]] == [f"query/{name}" for name in sorted(QUERY)]
    assert all("image" not in row for row in rows)
    first = rows[0]
    assert (first["pid"], first["camid"], first["modality"], first["role"]) == (1, 1, "visible", "query")
    assert first["paths"] == {"image": root / "query" / QUERY[0]}
    sample = dataset.load(first)
    assert sample["image"].shape == (3, 8, 4) and sample["pid"] == 1 and "paths" not in sample
    with pytest.raises(DataError, match=QUERY[1]):
        dataset.load(rows[1])


def test_protocol_metrics_are_the_defaults():
    assert Market1501.default_metrics == {m: {"protocol": "market1501"} for m in ("cmc", "map", "minp")}
    assert Market1501.task == "reidentification"
    assert "bounding_box_test" in Market1501.layout and Market1501.source
    for name, params in Market1501.default_metrics.items():
        assert harness.create_metric(name, **params).config["protocol"] == "market1501"


def test_missing_folder_names_it_with_the_layout(tmp_path):
    make_market1501(tmp_path)
    (tmp_path / "query" / QUERY[0]).unlink()
    for name in QUERY[1:]:
        (tmp_path / "query" / name).unlink()
    (tmp_path / "query").rmdir()
    with pytest.raises(DataError, match=r"folder .*query is missing[\s\S]*bounding_box_train/  12,936 images"):
        Market1501(tmp_path, strict=False).verify("test")
    Market1501(tmp_path, strict=False).verify("train")  # the train split does not need query/


def test_strict_counts_by_default(tmp_path):
    dataset = Market1501(make_market1501(tmp_path))
    with pytest.raises(DataError, match=r"query holds 4 images, the official release has 3368.*strict=false"):
        dataset.verify("test")
    assert OFFICIAL_COUNTS == {"bounding_box_train": 12936, "query": 3368, "bounding_box_test": 19732}
    with pytest.raises(UsageError):
        Market1501(tmp_path, strict="perhaps")


def test_bad_file_names_are_named(tmp_path):
    make_market1501(tmp_path)
    Image.new("RGB", (4, 8)).save(tmp_path / "query" / "person1_cam1.jpg")
    with pytest.raises(DataError, match=r"person1_cam1\.jpg is not named PPPP_cCsS_FFFFFF_NN\.jpg"):
        Market1501(tmp_path, strict=False).verify("test")
    with pytest.raises(DataError, match="cameras 1–6"):
        parse_name(Path("0001_c7s1_000001_00.jpg"))
    assert parse_name(Path("-1_c1s6_012345_07.jpg")) == {"pid": -1, "camid": 1, "sequence": 6, "frame": 12345, "box": 7}


def test_corrupt_image_names_the_file(tmp_path):
    make_market1501(tmp_path)
    (tmp_path / "query" / QUERY[0]).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=QUERY[0]):
        next(Market1501(tmp_path, strict=False).samples("test"))


def test_registered_as_a_plugin(tmp_path):
    dataset = harness.create_dataset("market1501", root=make_market1501(tmp_path), strict="false")
    assert isinstance(dataset, Market1501) and dataset.config == {"strict": False}


def test_data_check_prints_the_official_counts(tmp_path, cli):
    code, out, err = cli("data", "check", "market1501", "--data-root", make_market1501(tmp_path), "--dataset-option", "strict=false")
    assert code == 2 and "count(s) differ from the official release" in err  # a 4-person fixture
    lines = [line.removesuffix("✗").rstrip() for line in out.splitlines()[2:]]
    rows = {line.rsplit(None, 2)[0].strip(): line.split()[-2:] for line in lines}
    assert rows["train images"] == ["4", "12936"] and rows["train ids"] == ["3", "751"]
    assert rows["query images"] == ["4", "3368"] and rows["test ids"] == ["4", "750"]
    assert rows["gallery images (incl. distractors and junk)"] == ["14", "19732"]
