"""MNIST→USPS / MNIST→MNIST-M: the distribution formats (idx, USPS h5 and LIBSVM bz2, MNIST-M PNG lists)
and target-accuracy through the CLI, on rendered-digit fixtures."""

from __future__ import annotations

import bz2
import gzip
import json
import struct

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from harness import DataError
from harness_plugins.datasets.digits import MnistToMnistM, MnistToUsps, read_idx


def render_digits(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """White digits drawn with PIL's bitmap font at jittered positions, uint8 (N, size, size)."""
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    images, labels = [], []
    for _ in range(count):
        label = int(rng.integers(0, 10))
        canvas = Image.new("L", (12, 14))
        ImageDraw.Draw(canvas).text((3 + int(rng.integers(-1, 2)), 1 + int(rng.integers(-1, 2))), str(label), fill=255, font=font)
        images.append(np.array(canvas.resize((size, size), Image.BILINEAR)))
        labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.uint8)


def write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def mnist_fixture(root, gz=True):
    for split, (count, seed) in {"train": (60, 1), "test": (40, 2)}.items():
        images, labels = render_digits(count, 28, seed)
        prefix = "train" if split == "train" else "t10k"
        write_idx(root / "mnist" / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(root / "mnist" / f"{prefix}-labels-idx1-ubyte", labels, gz)


def usps_bz2_fixture(root, train=600, test=50):
    for name, (count, seed) in {"usps.bz2": (train, 3), "usps.t.bz2": (test, 4)}.items():
        images, labels = render_digits(count, 16, seed)
        lines = [f"{label + 1} " + " ".join(f"{i + 1}:{v / 255 * 2 - 1:.6f}" for i, v in enumerate(image.ravel()))
                 for image, label in zip(images, labels)]
        (root / "usps").mkdir(parents=True, exist_ok=True)
        (root / "usps" / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))


def test_idx_reader_and_bad_magic(tmp_path):
    images, _ = render_digits(5, 28, 0)
    write_idx(tmp_path / "x-idx3-ubyte", images, gz=False)
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte"), images)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "bad")


def test_usps_h5_and_bz2_read_the_same_digits(tmp_path):
    h5py = pytest.importorskip("h5py")
    usps_bz2_fixture(tmp_path / "a", train=20, test=10)
    mnist_fixture(tmp_path / "a")
    from_bz2 = MnistToUsps(tmp_path / "a")
    images, labels = from_bz2.read("B", "train")
    assert images.shape == (20, 16, 16) and labels.min() >= 0 and labels.max() <= 9
    (tmp_path / "b" / "usps").mkdir(parents=True)
    with h5py.File(tmp_path / "b" / "usps" / "usps.h5", "w") as handle:
        for split in ("train", "test"):
            data, target = from_bz2.read("B", split)
            group = handle.create_group(split)
            group["data"] = data.reshape(len(data), -1) / 255.0
            group["target"] = target
    h5_images, h5_labels = MnistToUsps(tmp_path / "b").read("B", "train")
    assert np.array_equal(h5_images, images) and np.array_equal(h5_labels, labels)


def test_samples_are_mnist_test_digits_with_labels(tmp_path):
    mnist_fixture(tmp_path, gz=False)
    usps_bz2_fixture(tmp_path, train=10, test=5)
    dataset = MnistToUsps(tmp_path)
    sample = next(dataset.samples("test"))
    assert sample["image"].shape == (3, 28, 28) and 0 <= sample["label"] <= 9
    assert dataset.count("test") == 40
    target = dataset.domain_index("train", "target")
    assert len(target) == 10 and dataset.load(target[0])["image"].shape == (3, 16, 16)
    with pytest.raises(DataError, match="usps.bz2"):
        MnistToUsps(tmp_path / "nothing").verify("test")


def test_mnistm_png_lists(tmp_path):
    mnist_fixture(tmp_path)
    for split, count in (("train", 4), ("test", 3)):
        images, labels = render_digits(count, 28, 7)
        folder = tmp_path / "mnist_m" / f"mnist_m_{split}"
        folder.mkdir(parents=True)
        lines = []
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(np.stack([image, 255 - image, image // 2], -1)).save(folder / f"{i:08d}.png")
            lines.append(f"{i:08d}.png {label}")
        (tmp_path / "mnist_m" / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")
    dataset = MnistToMnistM(tmp_path)
    rows = dataset.domain_index("test", "target")
    assert [r["label"] for r in rows] == render_digits(3, 28, 7)[1].tolist()
    assert dataset.load(rows[0])["image"].shape == (3, 28, 28)


def test_identity_translation_target_accuracy_through_the_cli(cli, tmp_path):
    mnist_fixture(tmp_path)
    usps_bz2_fixture(tmp_path)
    code, out, err = cli("run", "--method", "identity-translation", "--dataset", "mnist2usps", "--data-root", tmp_path,
                         "--metric", "target-accuracy", "--json")
    assert code == 0, err
    metric = json.loads(out)["metrics"]["target-accuracy"]
    # Rendered digits at 16² and 28² are one domain: a classifier trained on "USPS" reads "MNIST" well.
    assert metric["details"]["target_only_accuracy"] > 80 and metric["values"]["target-accuracy"] > 70
    assert metric["params"]["target"] == "usps" and metric["convention"]["classifier_digest"]
