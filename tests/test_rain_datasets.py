"""Rain100H / Rain100L / Rain800 parsing: every distributed layout, split sizes, the val hold-out,
the side-by-side orientation and the errors for missing or broken data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import harness
from harness import DataError, UsageError
from harness.data import to_tensor
from harness_plugins.datasets.rain import (
    CLEAN_HALF,
    Rain100H,
    Rain100L,
    Rain800,
    held_out,
    pair_id,
    split_halves,
)

from fixtures_rain import (
    RAIN100_LAYOUTS,
    clean_image,
    make_rain100h,
    make_rain100l,
    make_rain800,
    rainy_image,
    side_by_side,
)

DETECTED = {
    "jorder": "jorder",
    "jorder-plain": "jorder",
    "jorder-nested": "jorder",
    "prenet": "prenet",
    "prenet-nested": "prenet",
    "prenet-folders": "prenet-folders",
    "side-by-side": "side-by-side",
    "side-by-side-val": "side-by-side",
    "mmagic": "mmagic",
}


def assert_pair(sample: dict, index: int, size: tuple[int, int] = (24, 24)) -> None:
    assert sample["id"] == str(index)
    assert sample["rainy"].dtype == torch.float32 and sample["rainy"].shape == (3, *size)
    assert torch.equal(sample["rainy"], to_tensor(rainy_image(index, size)))
    assert torch.equal(sample["clean"], to_tensor(clean_image(index, size)))


@pytest.fixture(scope="module", params=["prenet", "jorder", "side-by-side-val"])
def full_rain100h(request, tmp_path_factory) -> Rain100H:
    """Rain100H with the official 1800 / 100 pair counts, in three real layouts."""
    root = make_rain100h(tmp_path_factory.mktemp(request.param), layout=request.param)
    return Rain100H(root)


@pytest.mark.parametrize("layout", RAIN100_LAYOUTS)
def test_every_layout_is_detected_and_paired_correctly(tmp_path, layout):
    n_train = 0 if layout == "mmagic" else 6
    root = make_rain100h(tmp_path, layout=layout, n_train=n_train, n_test=4, n_val=2)
    dataset = Rain100H(root, strict=False)
    dataset.verify("test")
    samples = list(dataset.samples("test"))
    assert [s["id"] for s in samples] == ["1", "2", "3", "4"]
    for index, sample in enumerate(samples, start=1):
        assert_pair(sample, index)
    description = dataset.describe()
    assert description["layout"] == DETECTED[layout]
    assert description["parts"]["test"]["pairs"] == 4
    if layout == "mmagic":
        return
    seen = []
    for split in ("train", "val"):
        dataset.verify(split)
        for sample in dataset.samples(split):
            assert_pair(sample, int(sample["id"]))
            seen.append(int(sample["id"]))
    assert sorted(seen) == [1, 2, 3, 4, 5, 6]


def test_official_split_sizes(full_rain100h):
    dataset = full_rain100h
    for split in dataset.splits:
        dataset.verify(split)
    assert {split: dataset.count(split) for split in dataset.splits} == {"train": 1700, "val": 100, "test": 100}
    train_ids = {s for s in _ids(dataset, "train")}
    val_ids = {s for s in _ids(dataset, "val")}
    assert not train_ids & val_ids
    assert train_ids | val_ids == {str(i) for i in range(1, 1801)}
    files_per_pair = 1 if dataset.describe()["layout"] == "side-by-side" else 2
    assert len(dataset.files("test")) == 100 * files_per_pair
    assert dataset.describe()["splits"] == {"train": 1700, "val": 100, "test": 100}


def _ids(dataset, split: str) -> list[str]:
    return [pair.id for pair in dataset._split_pairs(split)]


def test_val_hold_out_is_fixed_and_the_same_in_every_layout(full_rain100h, tmp_path):
    if full_rain100h.describe()["layout"] == "side-by-side":
        assert full_rain100h.describe()["val"] == "the val/ folder"
        assert _ids(full_rain100h, "val") == [str(i) for i in range(1701, 1801)]
        return
    again = Rain100H(full_rain100h.root)
    assert _ids(again, "val") == _ids(full_rain100h, "val")
    assert set(_ids(full_rain100h, "val")) == held_out([str(i) for i in range(1, 1801)], 100)
    assert "sha256" in full_rain100h.describe()["val"]


def test_held_out_depends_only_on_the_ids():
    ids = [str(i) for i in range(1, 1801)]
    chosen = held_out(ids, 100)
    assert len(chosen) == 100 and chosen == held_out(list(reversed(ids)), 100)
    assert chosen != set(ids[:100])  # a spread-out choice, not the first pairs


def test_pair_ids_are_numbers_without_leading_zeros():
    assert [pair_id(s) for s in ("rain-001", "norain-1x2", "norain-12", "007", "0", "img_a")] == [
        "1",
        "1",
        "12",
        "7",
        "0",
        "img_a",
    ]


def test_missing_root_names_path_source_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        Rain100H(missing).verify("test")
    message = str(error.value)
    assert str(missing) in message
    assert "joint_rain_removal" in message and "PReNet" in message
    assert "Rain100H/rain-001.png" in message and "rain_data_test_Heavy/rain/X2/norain-1x2.png" in message


def test_missing_split_folder(tmp_path):
    root = make_rain100h(tmp_path, layout="mmagic", n_train=0, n_test=100)
    Rain100H(root).verify("test")
    with pytest.raises(DataError) as error:
        Rain100H(root).verify("train")
    assert "no train set found" in str(error.value) and str(root / "RainTrainH") in str(error.value)
    assert "Expected layout" in str(error.value)


def test_rainy_image_without_clean_partner(tmp_path):
    root = make_rain100h(tmp_path, n_train=0, n_test=100)
    (root / "Rain100H" / "norain-005.png").unlink()
    with pytest.raises(DataError, match=r"without their clean partner: Rain100H[/\\]rain-005\.png"):
        Rain100H(root).verify("test")
    with pytest.raises(DataError, match="without their clean partner"):
        Rain100H(root, strict=False).verify("test")  # never scoreable, even for subsets


def test_wrong_count_names_folder_and_unpaired_files(tmp_path):
    root = make_rain100h(tmp_path, n_train=0, n_test=100)
    (root / "Rain100H" / "rain-042.png").unlink()
    with pytest.raises(DataError) as error:
        Rain100H(root).verify("test")
    message = str(error.value)
    assert "found 99 complete pairs, expected 100" in message and str(root / "Rain100H") in message
    assert "norain-042.png" in message and "strict=false" in message
    relaxed = Rain100H(root, strict=False)
    relaxed.verify("test")
    assert relaxed.count("test") == 99


def test_updated_200_pair_release_is_named(tmp_path):
    root = make_rain100h(tmp_path, n_train=0, n_test=200)
    with pytest.raises(DataError, match="Rain200H"):
        Rain100H(root).verify("test")


def test_prenet_filtered_training_set_is_a_known_variant(tmp_path):
    root = make_rain100h(tmp_path, n_train=1254, n_test=0)
    dataset = Rain100H(root)
    dataset.verify("train")
    assert dataset.count("train") == 1154 and dataset.count("val") == 100
    assert "PReNet" in dataset.describe()["parts"]["train"]["variant"]


def test_non_strict_subset_holds_out_half_at_most(tmp_path):
    root = make_rain100h(tmp_path, n_train=10, n_test=3)
    with pytest.raises(DataError, match="expected 1800 or 1254"):
        Rain100H(root).verify("train")
    dataset = Rain100H(root, strict=False)
    for split in dataset.splits:
        dataset.verify(split)
    assert (dataset.count("train"), dataset.count("val"), dataset.count("test")) == (5, 5, 3)


def test_strict_option_parses_cli_strings(tmp_path):
    assert Rain100H(tmp_path, strict="false").config["strict"] is False
    with pytest.raises(UsageError):
        Rain100H(tmp_path, strict="maybe")


def test_corrupt_image_error_names_the_file(tmp_path):
    root = make_rain100h(tmp_path, n_train=0, n_test=100)
    broken = root / "Rain100H" / "rain-001.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match="rain-001.png"):
        next(Rain100H(root).samples("test"))


def test_size_mismatch_within_a_pair(tmp_path):
    root = make_rain100h(tmp_path, layout="prenet", n_train=0, n_test=100)
    from PIL import Image

    Image.fromarray(clean_image(3, (24, 20))).save(root / "Rain100H" / "norain-003.png")
    samples = Rain100H(root).samples("test")
    next(samples), next(samples)
    with pytest.raises(DataError, match=r"rain-003\.png is 24x24 but clean image .*norain-003\.png is 20x24"):
        next(samples)


def test_two_files_for_one_id(tmp_path):
    root = make_rain100h(tmp_path, n_train=0, n_test=100)
    (root / "Rain100H" / "rain-1.png").write_bytes((root / "Rain100H" / "rain-001.png").read_bytes())
    with pytest.raises(DataError, match="same sample id: rain-001.png and rain-1.png"):
        Rain100H(root).verify("test")


def test_unknown_split(tmp_path):
    with pytest.raises(UsageError, match="no split 'valid'"):
        Rain100H(tmp_path).verify("valid")


def test_rain100l_counts(tmp_path):
    dataset = Rain100L(make_rain100l(tmp_path, layout="jorder"))
    for split in dataset.splits:
        dataset.verify(split)
    assert (dataset.count("train"), dataset.count("val"), dataset.count("test")) == (100, 100, 100)
    assert dataset.describe()["parts"]["train"]["folder"] == "rain_data_train_Light"


def test_rain100l_updated_release_is_named(tmp_path):
    root = make_rain100l(tmp_path, n_train=0, n_test=200)
    with pytest.raises(DataError, match="Rain200L"):
        Rain100L(root).verify("test")


@pytest.fixture(scope="module")
def rain800_png(tmp_path_factory) -> Rain800:
    """The ID-CGAN layout with the official counts; PNG so halves can be compared exactly."""
    return Rain800(make_rain800(tmp_path_factory.mktemp("rain800"), suffix=".png"))


def test_rain800_orientation_clean_left_rainy_right(rain800_png):
    # The ID-CGAN release is pix2pix "A|B" with which_direction=BtoA: the network input (rainy) is
    # the right half B and the target (clean) the left half A; RESCAN/S-DSEN read it the same way.
    assert CLEAN_HALF == "left"
    rain800_png.verify("test")
    sample = next(rain800_png.samples("test"))
    assert_pair(sample, 1)
    assert sample["rainy"].mean() > sample["clean"].mean() + 0.2


def test_rain800_splits_and_real_photos_ignored(rain800_png):
    for split in rain800_png.splits:
        rain800_png.verify(split)
    assert (rain800_png.count("train"), rain800_png.count("val"), rain800_png.count("test")) == (600, 100, 100)
    description = rain800_png.describe()
    assert description["parts"]["train"]["folder"] == "training"
    assert description["parts"]["test"]["folder"] == "test_syn"
    assert description["clean_half"] == "left"
    assert not any("test_nature" in str(path) for path in rain800_png.files("test"))
    assert len(rain800_png.files("train")) == 600  # one file per side-by-side pair


def test_rain800_jpeg_release_form(tmp_path):
    dataset = Rain800(make_rain800(tmp_path, n_train=3, n_test=2), strict=False)
    sample = next(dataset.samples("test"))
    assert (sample["rainy"] - to_tensor(rainy_image(1))).abs().mean() < 0.03
    assert (sample["clean"] - to_tensor(clean_image(1))).abs().mean() < 0.03


def test_rain800_val_folder_and_rescan_names(tmp_path):
    dataset = Rain800(make_rain800(tmp_path, layout="side-by-side-val", suffix=".png"))
    for split in dataset.splits:
        dataset.verify(split)
    assert (dataset.count("train"), dataset.count("val"), dataset.count("test")) == (600, 100, 100)
    assert dataset.describe()["val"] == "the val/ folder"


def test_odd_width_drops_the_last_column(tmp_path):
    array = side_by_side(5, (24, 24), extra_column=True)
    assert array.shape[1] == 49
    clean, rainy = split_halves(array, Path("x.png"))
    assert np.array_equal(clean, clean_image(5)) and np.array_equal(rainy, rainy_image(5))
    from PIL import Image

    folder = tmp_path / "test_syn"
    folder.mkdir()
    Image.fromarray(array).save(folder / "5.png")
    assert_pair(next(Rain800(tmp_path, strict=False).samples("test")), 5)


def test_zhang800_alias_and_declared_protocol(tmp_path):
    dataset = harness.create_dataset("zhang800", root=tmp_path)
    assert isinstance(dataset, Rain800) and dataset.root == tmp_path
    for cls in (Rain100H, Rain100L, Rain800):
        assert cls.task == "deraining"
        assert cls.default_metrics == {"psnr": {}, "ssim": {}}
        assert cls.source and cls.layout and cls.splits == ("train", "val", "test")


@pytest.mark.parametrize("layout", ["prenet", "side-by-side"])
def test_index_lists_pairs_without_decoding_and_load_reads_one(tmp_path, layout):
    root = make_rain100h(tmp_path, layout=layout, n_train=6, n_test=3, n_val=2)
    dataset = Rain100H(root, strict=False)
    rows = dataset.index("test")
    assert [row["id"] for row in rows] == ["1", "2", "3"] and all(set(row) == {"id", "paths"} for row in rows)
    assert all(Path(path).is_file() for row in rows for path in row["paths"].values())
    if layout == "side-by-side":
        assert rows[0]["paths"]["rainy"] == rows[0]["paths"]["clean"]
    assert_pair(dataset.load(rows[1]), 2)
    assert [s["id"] for s in dataset.samples("test")] == ["1", "2", "3"]
