"""Inpainting datasets in their real layouts: Paris StreetView, CelebA, the ImageNet/Places2 subsets and the
bundled inpaint-synth; protocol sizes, masks in the samples, clear errors when data is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harness import DataError
from harness_plugins.datasets import inpaint_synth
from harness_plugins.datasets.inpaint_synth import InpaintSynth
from harness_plugins.datasets.inpainting import (
    CelebA,
    ImageNetValInpainting,
    ParisStreetView,
    Places2Inpainting,
    fixed_subset,
    square_resize,
)


def _photo(path, height, width, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def make_paris(root, train=3, test=2):
    for folder, count in (("paris_train_original", train), ("paris_eval_gt", test)):
        (root / folder).mkdir(parents=True)
        for index in range(count):
            _photo(root / folder / f"{index + 1:03d}_im.png", 227, 227, index)
    return root


def test_paris_streetview_samples(tmp_path):
    dataset = ParisStreetView(make_paris(tmp_path / "paris"), strict=False)
    dataset.verify("test")
    samples = list(dataset.samples("test"))
    assert [s["id"] for s in samples] == ["001_im", "002_im"]
    sample = samples[0]
    assert sample["image"].shape == (3, 128, 128) and sample["mask"].shape == (1, 128, 128)
    assert sample["mask"].sum() == 64 * 64 and sample["mask"][0, 32:96, 32:96].all()
    assert torch.equal(sample["masked"], sample["image"] * (1 - sample["mask"]))
    assert len(dataset.files("train")) == 3
    assert dataset.describe()["masks"]["kind"] == "center"
    high = ParisStreetView(tmp_path / "paris", strict=False, size=512)
    assert next(high.samples("test"))["mask"].sum() == 256 * 256


def test_paris_strict_counts_and_missing_layout(tmp_path):
    with pytest.raises(DataError, match="expected 100"):
        ParisStreetView(make_paris(tmp_path / "paris")).verify("test")
    with pytest.raises(DataError, match="paris_eval_gt") as error:
        ParisStreetView(tmp_path / "nothing").verify("test")
    assert "Context Encoder" in str(error.value)


def make_celeba(root):
    (root / "img_align_celeba").mkdir(parents=True)
    lines = []
    for index in range(1, 7):
        name = f"{index:06d}.jpg"
        _photo(root / "img_align_celeba" / name, 218, 178, index)
        lines.append(f"{name} {(index - 1) // 2}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def test_celeba_partition_and_crop(tmp_path):
    dataset = CelebA(make_celeba(tmp_path / "celeba"), strict=False)
    assert [i for i, _ in dataset.rows("train")] == ["000001", "000002"]
    assert [i for i, _ in dataset.rows("test")] == ["000005", "000006"]
    assert dataset.files("val")[0].name == "list_eval_partition.txt"
    assert next(dataset.samples("val"))["image"].shape == (3, 128, 128)
    with pytest.raises(DataError, match="expected 19962"):
        CelebA(tmp_path / "celeba").verify("test")
    (tmp_path / "celeba" / "img_align_celeba" / "000006.jpg").unlink()
    with pytest.raises(DataError, match="000006.jpg"):
        CelebA(tmp_path / "celeba", strict=False).verify("test")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 7\n")
    with pytest.raises(DataError, match=r"list_eval_partition.txt:1"):
        CelebA(tmp_path / "celeba", strict=False).verify("test")


def test_square_resize_is_a_centre_crop():
    array = np.zeros((100, 200, 3), np.uint8)
    array[:, 40:160] = 255
    out = square_resize(array, 50)
    assert out.shape == (50, 50, 3) and out.min() == 255


def test_subsets_are_fixed_and_found_in_class_folders(tmp_path):
    subset = ImageNetValInpainting.subset()
    assert len(subset) == 200 == len(set(subset)) and subset == sorted(subset)
    assert subset == fixed_subset(ImageNetValInpainting.official_names(), 200)
    assert subset[0].startswith("ILSVRC2012_val_") and subset != Places2Inpainting.subset()
    root = tmp_path / "val"
    for index, name in enumerate(subset[:3]):
        (root / f"n0000{index}").mkdir(parents=True)
        _photo(root / f"n0000{index}" / name, 300, 400, index)
    _photo(root / "ILSVRC2012_val_99999999.JPEG", 30, 30, 9)
    dataset = ImageNetValInpainting(root, strict=False)
    dataset.verify("test")
    assert dataset.count("test") == 3
    sample = next(dataset.samples("test"))
    assert sample["image"].shape == (3, 256, 256) and sample["mask"].sum() == 128 * 128
    assert dataset.describe()["subset"]["size"] == 200
    with pytest.raises(DataError, match="197 of the 200 subset images are missing"):
        ImageNetValInpainting(root).verify("test")


def test_places2_uses_random_holes(tmp_path):
    root = tmp_path / "test_256"
    root.mkdir()
    for index, name in enumerate(Places2Inpainting.subset()[:2]):
        _photo(root / name, 256, 256, index)
    dataset = Places2Inpainting(root, strict=False)
    coverage = [float(s["mask"].mean()) for s in dataset.samples("test")]
    assert len(coverage) == 2 and all(0.25 <= c <= 0.5 for c in coverage)
    assert dataset.metric_params("l1") == {"reduction": "sum", "region": "full"}


def test_inpaint_synth_generated_and_deterministic(tmp_path):
    dataset = InpaintSynth(tmp_path / "inpaint-synth")
    dataset.verify("train")
    dataset.verify("test")
    assert dataset.count("train") == 192 and dataset.count("test") == 24
    first = next(dataset.samples("test"))
    assert first["id"] == "001" and first["image"].shape == (3, 128, 128)
    again = inpaint_synth.synthesize("test")[0]
    assert np.array_equal((first["image"] * 255).round().byte().permute(1, 2, 0).numpy(), again)
    assert dataset.describe()["generator"]["seed"] == inpaint_synth.SEED
    train_sources = set(inpaint_synth.PHOTOS["train"]) | set(inpaint_synth.TEXTURES["train"])
    assert not train_sources & (set(inpaint_synth.PHOTOS["test"]) | set(inpaint_synth.TEXTURES["test"]))


def test_celeba_hq_split_by_the_celeba_partition(tmp_path):
    from harness_plugins.datasets.inpainting import CelebAHQ

    root = tmp_path / "celeba-hq"
    (root / "CelebA-HQ-img").mkdir(parents=True)
    rows = ["idx orig_idx orig_file"]
    for index, source in enumerate((5, 170000, 200000)):
        _photo(root / "CelebA-HQ-img" / f"{index}.jpg", 64, 64, index)
        rows.append(f"{index} {source - 1} {source:06d}.jpg")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("000005.jpg 0\n170000.jpg 1\n200000.jpg 2\n")
    dataset = CelebAHQ(root)
    assert [i for i, _ in dataset.rows("train")] == ["0"] and [i for i, _ in dataset.rows("test")] == ["2"]
    sample = next(dataset.samples("val"))
    assert sample["id"] == "1" and sample["image"].shape == (3, 256, 256) and sample["mask"].sum() == 128 * 128
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="list_eval_partition.txt"):
        CelebAHQ(root).verify("test")
