"""Inpainting masks: protocol geometry, random coverage, determinism across processes, file masks, and
the mask digest in the data digest of every record."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from harness import DataError, UsageError
from harness_plugins.shared.inpainting_masks import COVERAGE, MaskGenerator, center_mask, random_mask, sample_rng

IDS = [f"img{i:03d}" for i in range(300)]


@pytest.mark.parametrize(("size", "side"), [(128, 64), (256, 128), (512, 256)])
def test_center_mask_is_the_thesis_square(size, side):
    mask = center_mask(size, size, 0.5)
    rows, cols = np.nonzero(mask)
    assert mask.sum() == side * side
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == ((size - side) // 2, (size + side) // 2,) * 2


@pytest.mark.parametrize(("height", "width"), [(128, 128), (256, 256), (96, 160)])
def test_random_masks_cover_a_quarter_to_a_half(height, width):
    generator = MaskGenerator("random", seed=3)
    coverages = [generator.mask(i, height, width).mean() for i in IDS]
    assert min(coverages) >= COVERAGE[0] and max(coverages) <= COVERAGE[1]
    assert max(coverages) - min(coverages) > 0.15  # the coverage really varies over the range
    counts = {_rectangles(generator.mask(i, height, width)) for i in IDS[:60]}
    assert counts <= {1, 2, 3} and len(counts) > 1


def _rectangles(mask: np.ndarray) -> int:
    from scipy import ndimage

    return min(ndimage.label(mask)[1], 3)


def test_same_seed_same_mask_other_seed_other_mask():
    a, b, c = MaskGenerator("random", 0), MaskGenerator("random", 0), MaskGenerator("random", 1)
    assert all(np.array_equal(a.mask(i, 128, 128), b.mask(i, 128, 128)) for i in IDS[:20])
    assert not all(np.array_equal(a.mask(i, 128, 128), c.mask(i, 128, 128)) for i in IDS[:20])
    assert a.digest(IDS, 128, 128) == b.digest(IDS, 128, 128) != c.digest(IDS, 128, 128)


def test_masks_identical_across_processes():
    code = (
        "from harness_plugins.shared.inpainting_masks import MaskGenerator\n"
        f"print(MaskGenerator('random', 7).digest([f'img{{i:03d}}' for i in range(300)], 256, 256))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                           env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == MaskGenerator("random", 7).digest(IDS, 256, 256)


def test_sample_stream_is_pinned():
    """The per-sample stream must not change silently (it would change every published random-mask number)."""
    assert sample_rng(0, "a").integers(0, 1 << 30, 3).tolist() == sample_rng(0, "a").integers(0, 1 << 30, 3).tolist()
    assert random_mask(64, 64, sample_rng(0, "a")).sum() == MaskGenerator("random", 0).mask("a", 64, 64).sum()


def test_file_masks(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    for index in range(3):
        grey = np.zeros((32, 32), np.uint8)
        grey[4 * index : 4 * index + 10, 5:20] = 255
        Image.fromarray(grey).save(folder / f"{index:05d}.png")
    generator = MaskGenerator("file", 0, mask_dir=str(folder))
    mask = generator.mask("x", 64, 64)
    assert mask.shape == (64, 64) and 0 < mask.mean() < 0.5
    assert np.array_equal(mask, generator.mask("x", 64, 64))
    inverted = MaskGenerator("file", 0, mask_dir=str(folder), invert=True).mask("x", 64, 64)
    assert np.array_equal(inverted, ~mask)
    assert len(generator.files()) == 3
    with pytest.raises(DataError, match="no such folder"):
        MaskGenerator("file", 0, mask_dir=str(tmp_path / "nowhere")).files()
    with pytest.raises(UsageError, match="mask_dir"):
        MaskGenerator.from_config({"mask": "file", "mask_seed": 0, "hole": 0.5, "mask_dir": "", "mask_invert": False})


def test_mask_digest_is_in_the_record(cli):
    records = {}
    for seed in ("0", "0", "1"):
        code, out, err = cli("run", "--method", "mean-fill", "--dataset", "inpaint-synth", "--dataset-option", "mask=random",
                     "--dataset-option", f"mask_seed={seed}", "--metric", "l1", "--limit", "2", "--json")
        assert code == 0, err
        records.setdefault(seed, []).append(json.loads(out))
    first, again, other = records["0"][0], records["0"][1], records["1"][0]
    assert first["dataset"]["data_sha256"] == again["dataset"]["data_sha256"] != other["dataset"]["data_sha256"]
    masks = first["dataset"]["layout"]["masks"]
    assert masks == {"kind": "random", "version": 1, "seed": 0, "hole": 0.5, "mask_dir": "", "invert": False}
    assert first["metrics"]["l1"]["values"] != other["metrics"]["l1"]["values"]


def test_file_masks_enter_the_data_digest(tmp_path):
    from harness.data import digest_files
    from harness_plugins.datasets.inpaint_synth import InpaintSynth

    folder = tmp_path / "masks"
    folder.mkdir()
    grey = np.zeros((16, 16), np.uint8)
    grey[2:9, 3:12] = 255
    Image.fromarray(grey).save(folder / "a.png")
    root = tmp_path / "inpaint-synth"

    def digest() -> str:
        dataset = InpaintSynth(root, mask="file", mask_dir=str(folder))
        dataset.verify("test")
        return digest_files(dataset.files("test"), dataset.root, dataset.derived_digest("test"))

    before = digest()
    grey[10:14, 10:14] = 255
    Image.fromarray(grey).save(folder / "a.png")
    assert digest() != before
