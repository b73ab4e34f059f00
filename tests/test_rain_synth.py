"""rain-synth: deterministic generation, Rain100H-like difficulty, disjoint splits, safe regeneration."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

import harness
from harness import DataError
from harness.data import digest_files, read_image
from harness_plugins.datasets import rain_synth
from harness_plugins.datasets.rain import PairedRainDataset
from harness_plugins.datasets.rain_synth import RainSynth, png_bytes


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> RainSynth:
    dataset = RainSynth(tmp_path_factory.mktemp("data") / "rain-synth")
    dataset.verify("train")
    return dataset


def test_generated_in_the_rain100h_layout_and_read_by_its_parser(synth):
    assert isinstance(synth, PairedRainDataset)
    assert synth.count("train") == 40 and synth.count("test") == 12
    description = synth.describe()
    assert description["layout"] == "prenet"
    assert description["generator"]["version"] == rain_synth.GENERATOR_VERSION
    assert (synth.root / "test" / "rain-012.png").is_file() and (synth.root / "test" / "norain-012.png").is_file()
    sample = next(synth.samples("test"))
    assert sample["id"] == "1" and sample["rainy"].shape == (3, 96, 128)
    portrait = next(s for s in synth.samples("train") if s["id"] == "4")
    assert portrait["clean"].shape == (3, 128, 96)


def test_generation_is_deterministic(synth, tmp_path):
    other = RainSynth(tmp_path / "again")
    other.verify("test")
    for split in ("train", "test"):
        assert digest_files(other.files(split), other.root) == digest_files(synth.files(split), synth.root)
    assert json.loads((other.root / "manifest.json").read_text()) == json.loads(
        (synth.root / "manifest.json").read_text()
    )


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2)
    return 10.0 * np.log10(1.0 / mse)


def test_identity_psnr_is_rain100h_like(synth):
    # Rain100H's rainy inputs score about 12-14 dB against their ground truth; 12-16 dB keeps the
    # synthetic rain heavy without making it a different task.
    values = [psnr_rgb(read_image(p.rainy), read_image(p.clean)) for p in synth._split_pairs("test")]
    assert 12.0 <= float(np.mean(values)) <= 16.0
    assert max(values) < 20.0


def test_splits_are_disjoint(synth):
    assert not set(rain_synth.SOURCES["train"]) & set(rain_synth.SOURCES["test"])
    digests = {
        split: {hashlib.sha256(read_image(p.clean).tobytes()).hexdigest() for p in synth._split_pairs(split)}
        for split in ("train", "test")
    }
    assert len(digests["train"]) == 40 and len(digests["test"]) == 12
    assert not digests["train"] & digests["test"]


def test_png_bytes_decode_to_the_same_pixels(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (300, 257, 3), dtype=np.uint8)  # > one stored block
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(image))
    with Image.open(path) as decoded:
        assert np.array_equal(np.asarray(decoded), image)


def test_changed_generator_or_damaged_file_regenerates(synth, tmp_path, monkeypatch):
    root = tmp_path / "rain-synth"
    RainSynth(root).verify("test")
    target = root / "test" / "rain-003.png"
    original = target.read_bytes()
    target.write_bytes(b"damaged")
    RainSynth(root).verify("test")
    assert target.read_bytes() == original

    monkeypatch.setattr(rain_synth, "GENERATOR_VERSION", rain_synth.GENERATOR_VERSION + 1)
    RainSynth(root).verify("test")
    assert json.loads((root / "manifest.json").read_text())["version"] == rain_synth.GENERATOR_VERSION
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a rain-synth folder"):
        RainSynth(tmp_path).verify("test")
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_default_root_is_the_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    dataset = harness.create_dataset("rain-synth")
    assert dataset.root == tmp_path / "rain-synth"
    assert dataset.default_metrics == {"psnr": {}, "ssim": {}} and dataset.splits == ("train", "test")
