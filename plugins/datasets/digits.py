"""`mnist2usps` and `mnist2mnistm`: the digit domain-adaptation pairs of Yang's thesis, Table 4.3.

Read from the files the sets are distributed as, never from pickles:

* MNIST: the four idx files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-...``),
  plain or ``.gz``;
* USPS: ``usps.h5`` (groups ``train``/``test`` with ``data`` (N, 256) in [0, 1] and ``target``; needs
  h5py) or LIBSVM's ``usps.bz2`` / ``usps.t.bz2`` (``label i:value``, labels 1–10 for digits 0–9,
  values in [-1, 1]);
* MNIST-M: Ganin's release, ``mnist_m_train/`` and ``mnist_m_test/`` PNGs listed with their labels in
  ``mnist_m_train_labels.txt`` / ``mnist_m_test_labels.txt``.

Split (fixed, documented): every set's official train/test split in full — MNIST 60,000 / 10,000,
USPS 7,291 / 2,007, MNIST-M 59,001 / 9,001 (no 2,000/1,800 subsampling as in some DA papers).
Digits are RGB (gray replicated) at their native sizes (MNIST and MNIST-M 28×28, USPS 16×16). A
sample is a test digit of the source domain with its ``label`` (0–9); translation models draw both
domains' training rows through `domain_index`.
"""

from __future__ import annotations

import bz2
import gzip
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from harness import DataError, Sample, UsageError, hookimpl
from harness.data import read_image, to_tensor
from harness_plugins.shared.unpaired import SIDES, UnpairedDomains

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
USPS_BZ2 = {"train": "usps.bz2", "test": "usps.t.bz2"}


def _open(path: Path) -> bytes:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return gzip.decompress(candidate.read_bytes()) if candidate.suffix == ".gz" else candidate.read_bytes()
    raise DataError(f"file not found: {path} (or {path.name}.gz)")


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format): magic, dimension sizes (big-endian int32), then uint8 data."""
    data = _open(path)
    if len(data) < 8 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path}: not an idx file of unsigned bytes (bad magic number)")
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: holds {body.size} bytes of data, its header says {shape}")
    return body.reshape(shape)


def read_mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (read_idx(folder / name) for name in MNIST_FILES[split])
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


def read_usps(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """USPS as uint8 (N, 16, 16) and labels 0–9, from ``usps.h5`` or LIBSVM's bz2 files."""
    h5 = folder / "usps.h5"
    if h5.is_file():
        try:
            import h5py
        except ImportError:
            raise UsageError(f"{h5} needs h5py (pip install 'harness[digits]' or h5py), or use LIBSVM's usps.bz2") from None
        with h5py.File(h5, "r") as handle:
            data, target = np.asarray(handle[split]["data"]), np.asarray(handle[split]["target"])
        return np.round(np.clip(data, 0, 1) * 255).astype(np.uint8).reshape(-1, 16, 16), target.astype(np.int64)
    path = folder / USPS_BZ2[split]
    if not path.is_file():
        raise DataError(f"USPS {split} split not found: expected {h5} or {path}")
    images, labels = [], []
    for number, line in enumerate(bz2.decompress(path.read_bytes()).decode().splitlines(), start=1):
        if not line.strip():
            continue
        label, *pairs = line.split()
        values = np.full(256, -1.0)
        try:
            for pair in pairs:
                index, value = pair.split(":")
                values[int(index) - 1] = float(value)
            labels.append(int(float(label)) - 1)
        except (ValueError, IndexError):
            raise DataError(f"{path} line {number}: expected LIBSVM 'label index:value ...'") from None
        images.append(np.round((values + 1) / 2 * 255).astype(np.uint8).reshape(16, 16))
    return np.stack(images), np.array(labels, dtype=np.int64)


def read_mnistm(folder: Path, split: str) -> tuple[list[Path], np.ndarray]:
    labels_file = folder / f"mnist_m_{split}_labels.txt"
    if not labels_file.is_file():
        raise DataError(f"MNIST-M {split} labels not found: {labels_file}")
    files, labels = [], []
    for number, line in enumerate(labels_file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{labels_file} line {number}: expected '<file>.png <label>', got {line!r}")
        files.append(folder / f"mnist_m_{split}" / parts[0])
        labels.append(int(parts[1]))
    return files, np.array(labels, dtype=np.int64)


def gray_to_rgb(image: np.ndarray) -> torch.Tensor:
    return torch.tensor(image, dtype=torch.float32).div(255.0)[None].expand(3, -1, -1).contiguous()


class DigitPair(UnpairedDomains):
    """MNIST (domain A) and a target digit set (domain B); decoded arrays are kept in memory once read."""

    target_name: ClassVar[str]
    default_metrics = {"target-accuracy": {}}

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._arrays: dict[tuple[str, str], tuple[Any, np.ndarray]] = {}

    def read(self, domain: str, split: str) -> tuple[Any, np.ndarray]:
        """(images or image files, labels) of one domain and split."""
        key = (domain, split)
        if key not in self._arrays:
            self._arrays[key] = read_mnist(self.root / "mnist", split) if domain == "A" else self.read_target(split)
        return self._arrays[key]

    def read_target(self, split: str) -> tuple[Any, np.ndarray]:
        raise NotImplementedError

    def verify(self, split: str) -> None:
        try:
            for domain in ("A", "B"):
                self.read(domain, split)
        except DataError as exc:
            raise DataError(f"{self.name}: {exc}\nexpected under {self.root}:\n{self.layout}\nData comes from {self.source}") from None

    def domain_index(self, split: str, side: str) -> list[Sample]:
        domain = self.domains()[SIDES.index(side)]
        _, labels = self.read(domain, split)
        prefix = "mnist" if domain == "A" else self.target_name
        return [{"id": f"{prefix}-{split}-{i:05d}", "domain": domain, "split": split, "item": i, "label": int(label)}
                for i, label in enumerate(labels)]

    def index(self, split: str) -> list[Sample]:
        return self.domain_index(split, "source")

    def load(self, row: Sample) -> Sample:
        images, _ = self.read(row["domain"], row["split"])
        item = images[row["item"]]
        image = to_tensor(read_image(item)) if isinstance(item, Path) else gray_to_rgb(item)
        return {"id": row["id"], "image": image, "label": row["label"]}

    def count(self, split: str) -> int | None:
        try:
            return len(self.index(split))
        except DataError:
            return None

    def describe(self) -> dict[str, Any]:
        return {"direction": self.config["direction"], "target": self.target_name}

    def metric_params(self, metric: str) -> dict[str, Any]:
        """``target-accuracy`` trains its classifier on this dataset's target domain (MNIST → target only)."""
        params = super().metric_params(metric)
        if metric == "target-accuracy":
            if self.config["direction"] != "AtoB":
                raise UsageError(f"{self.name}: target-accuracy scores MNIST → {self.target_name} (direction AtoB) only")
            params.update(target=self.target_name, data_root=str(self.root))
        return params


MNIST_LAYOUT = "mnist/train-images-idx3-ubyte[.gz] train-labels-idx1-ubyte[.gz] t10k-images-idx3-ubyte[.gz] t10k-labels-idx1-ubyte[.gz]"
MNIST_SOURCE = "MNIST: http://yann.lecun.com/exdb/mnist/ (or any mirror of the four idx files)"


class MnistToUsps(DigitPair):
    """MNIST → USPS (thesis Table 4.3)."""

    name = "mnist2usps"
    description = "MNIST (A) -> USPS (B) digits, official splits in full (60,000/10,000 and 7,291/2,007), RGB, native sizes."
    target_name = "usps"
    source = f"{MNIST_SOURCE}; USPS: usps.h5 (Kaggle 'usps-dataset') or LIBSVM's usps.bz2 and usps.t.bz2"
    layout = f"{MNIST_LAYOUT}\nusps/usps.h5  or  usps/usps.bz2 + usps/usps.t.bz2"

    def read_target(self, split: str) -> tuple[Any, np.ndarray]:
        return read_usps(self.root / "usps", split)

    def files(self, split: str) -> list[Path]:
        mnist = [path for name in MNIST_FILES[split] for path in self.root.joinpath("mnist").glob(name + "*")]
        usps = [self.root / "usps" / "usps.h5"] if (self.root / "usps" / "usps.h5").is_file() else [self.root / "usps" / USPS_BZ2[split]]
        return mnist + usps


class MnistToMnistM(DigitPair):
    """MNIST → MNIST-M (thesis Table 4.3)."""

    name = "mnist2mnistm"
    description = "MNIST (A) -> MNIST-M (B) digits, official splits in full (60,000/10,000 and 59,001/9,001), RGB 28x28."
    target_name = "mnistm"
    source = f"{MNIST_SOURCE}; MNIST-M: Ganin & Lempitsky's mnist_m.tar.gz (PNG folders + label lists)"
    layout = f"{MNIST_LAYOUT}\nmnist_m/mnist_m_train/*.png mnist_m/mnist_m_train_labels.txt mnist_m/mnist_m_test/ mnist_m/mnist_m_test_labels.txt"

    def read_target(self, split: str) -> tuple[Any, np.ndarray]:
        files, labels = read_mnistm(self.root / "mnist_m", split)
        return files, labels

    def files(self, split: str) -> list[Path]:
        mnist = [path for name in MNIST_FILES[split] for path in self.root.joinpath("mnist").glob(name + "*")]
        files, _ = self.read("B", split)
        return mnist + [self.root / "mnist_m" / f"mnist_m_{split}_labels.txt", *files]


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(MnistToUsps)
    register(MnistToMnistM)
