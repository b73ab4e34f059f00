"""Helpers dataset plugins share: where data lives, reading images with errors that name the file,
and content digests for provenance."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import DataError

DATA_ENV = "HARNESS_DATA"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def default_data_home() -> Path:
    """``$HARNESS_DATA`` if set, else ``~/.cache/harness/data``; each dataset lives in a subfolder."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness" / "data"


def resolve_data_root(name: str, root: str | os.PathLike[str] | None) -> Path:
    """An explicit root wins; otherwise ``<data home>/<name>``."""
    return Path(root).expanduser() if root is not None else default_data_home() / name


def read_image(path: Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); a corrupt or unreadable file raises `DataError`."""
    try:
        with Image.open(path) as image:
            image.load()
            array = np.array(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc} (expected a readable PNG/JPEG/BMP file)") from None
    return array


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) → float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(255.0)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [0, 1] → uint8 (H, W, 3), rounded and clipped as saving a PNG would."""
    array = image.detach().float().cpu().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return array.permute(1, 2, 0).numpy()


def save_png(image: torch.Tensor | np.ndarray, path: Path) -> None:
    array = to_uint8(image) if isinstance(image, torch.Tensor) else image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_files(files: Iterable[Path], root: Path, derived: str | None = None) -> str:
    """One sha256 over the relative paths and contents of ``files`` (order-independent), plus the
    dataset's `derived_digest` when it has one."""
    digest = hashlib.sha256()
    if derived is not None:
        digest.update(f"derived:{derived}\n".encode())
    for path in sorted(files):
        digest.update(str(path.relative_to(root) if path.is_relative_to(root) else path).encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()
