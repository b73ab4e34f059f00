"""Build tiny deraining datasets on disk in each layout the real data is distributed in.

Every pair ``i`` has a known clean image (`clean_image`) and rainy image (`rainy_image`), so a test
can check that a parser puts the right file (or half of a side-by-side file) in the right field.
Images are tiny (24x24 by default), so even the full 1800/100 counts are quick to write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

RAIN100_LAYOUTS = (
    "jorder",  # rain_data_{train,test}_Heavy/{norain/norain-N.png, rain/X2/norain-Nx2.png}
    "jorder-plain",  # rain/norain-N.png (no X2/ level, rainy files named like the clean ones)
    "jorder-nested",  # one extra level: rain_data_test_Heavy/rain_heavy_test/{rain,norain}/...
    "prenet",  # RainTrainH/{rain,norain}-N.png, Rain100H/{rain,norain}-NNN.png
    "prenet-nested",  # the same under train/ and test/ (PReNet's datasets/ folder)
    "prenet-folders",  # RainTrainH/{rain,norain}/N.png, Rain100H/{rain,norain}/NNN.png (PaddleGAN)
    "side-by-side",  # train/N.png, test/N.png: clean left | rainy right (RESCAN / S-DSEN)
    "side-by-side-val",  # the same plus val/ holding the last n_val (default 100) training pairs
    "mmagic",  # Rain100H/input/N.png + Rain100H/target/N.png, test only
)
RAIN800_LAYOUTS = ("idcgan", "side-by-side", "side-by-side-val")


def clean_image(index: int, size: tuple[int, int] = (24, 24)) -> np.ndarray:
    """A dark, smooth uint8 (H, W, 3) image unique to ``index``."""
    height, width = size
    ramp = np.linspace(0, 40, width, dtype=np.float64)[None, :].repeat(height, axis=0)
    image = np.stack([ramp + index % 50, ramp[::-1] + (index * 7) % 50, np.full_like(ramp, (index * 13) % 60)], -1)
    return np.round(image).astype(np.uint8)


def rainy_image(index: int, size: tuple[int, int] = (24, 24)) -> np.ndarray:
    """`clean_image` plus bright diagonal streaks: clearly brighter than its clean partner."""
    height, width = size
    rows, cols = np.mgrid[:height, :width]
    streaks = ((rows + cols + index) % 6 == 0) * 160.0 + 60.0
    return np.clip(clean_image(index, size) + streaks[..., None], 0, 255).astype(np.uint8)


def side_by_side(index: int, size: tuple[int, int] = (24, 24), extra_column: bool = False) -> np.ndarray:
    """The released Rain800 form: clean left half, rainy right half (plus a stray column if asked)."""
    parts = [clean_image(index, size), rainy_image(index, size)]
    if extra_column:
        parts.append(np.full((size[0], 1, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(array).save(path, quality=95)
    else:
        Image.fromarray(array).save(path, compress_level=1)


def _pairs(
    rainy_dir: Path, clean_dir: Path, ids: range, rainy_name: str, clean_name: str, size: tuple[int, int]
) -> None:
    for i in ids:
        _save(rainy_image(i, size), rainy_dir / rainy_name.format(i=i))
        _save(clean_image(i, size), clean_dir / clean_name.format(i=i))


def _side_by_side_folder(folder: Path, ids: range, size: tuple[int, int], suffix: str) -> None:
    for i in ids:
        _save(side_by_side(i, size), folder / f"{i}{suffix}")


def _make_rain100(
    root: Path,
    tag: str,
    train_name: str,
    test_name: str,
    layout: str,
    n_train: int,
    n_test: int,
    size: tuple[int, int],
    n_val: int,
) -> Path:
    root = Path(root)
    train_ids, test_ids = range(1, n_train + 1), range(1, n_test + 1)
    if layout in ("jorder", "jorder-plain", "jorder-nested"):
        for split, ids in (("train", train_ids), ("test", test_ids)):
            if not ids:
                continue
            base = root / f"rain_data_{split}_{tag}"
            if layout == "jorder-nested":
                base = base / f"rain_{tag.lower()}_{split}"
            if layout == "jorder-plain":
                _pairs(base / "rain", base / "norain", ids, "norain-{i}.png", "norain-{i}.png", size)
            else:
                _pairs(base / "rain" / "X2", base / "norain", ids, "norain-{i}x2.png", "norain-{i}.png", size)
    elif layout in ("prenet", "prenet-nested"):
        prefix = ("train/", "test/") if layout == "prenet-nested" else ("", "")
        train_dir, test_dir = root / (prefix[0] + train_name), root / (prefix[1] + test_name)
        _pairs(train_dir, train_dir, train_ids, "rain-{i}.png", "norain-{i}.png", size)
        _pairs(test_dir, test_dir, test_ids, "rain-{i:03d}.png", "norain-{i:03d}.png", size)
    elif layout == "prenet-folders":
        _pairs(root / train_name / "rain", root / train_name / "norain", train_ids, "{i}.png", "{i}.png", size)
        _pairs(root / test_name / "rain", root / test_name / "norain", test_ids, "{i:03d}.png", "{i:03d}.png", size)
    elif layout in ("side-by-side", "side-by-side-val"):
        _split_side_by_side(root, layout, "train", "test", n_train, n_test, n_val, size, ".png")
    elif layout == "mmagic":
        if n_train:
            raise ValueError("the MMagic layout has no training set; pass n_train=0")
        _pairs(root / test_name / "input", root / test_name / "target", test_ids, "{i}.png", "{i}.png", size)
    else:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(RAIN100_LAYOUTS)}")
    return root


def _split_side_by_side(
    root: Path,
    layout: str,
    train: str,
    test: str,
    n_train: int,
    n_test: int,
    n_val: int,
    size: tuple[int, int],
    suffix: str,
) -> None:
    """``n_train`` pairs in ``train`` (the last ``n_val`` of them in val/ for a ``-val`` layout)."""
    n_val = n_val if layout.endswith("-val") else 0
    _side_by_side_folder(root / train, range(1, n_train - n_val + 1), size, suffix)
    if n_val:
        _side_by_side_folder(root / "val", range(n_train - n_val + 1, n_train + 1), size, suffix)
    _side_by_side_folder(root / test, range(1, n_test + 1), size, suffix)


def make_rain100h(
    root: Path,
    layout: str = "prenet",
    n_train: int = 1800,
    n_test: int = 100,
    size: tuple[int, int] = (24, 24),
    n_val: int = 100,
) -> Path:
    """Write a Rain100H tree under ``root`` in ``layout`` (see `RAIN100_LAYOUTS`); returns ``root``.

    Pairs are numbered from 1 in each set; ``n_train`` counts val/ too in the ``side-by-side-val`` layout.
    """
    return _make_rain100(Path(root), "Heavy", "RainTrainH", "Rain100H", layout, n_train, n_test, size, n_val)


def make_rain100l(
    root: Path,
    layout: str = "prenet",
    n_train: int = 200,
    n_test: int = 100,
    size: tuple[int, int] = (24, 24),
    n_val: int = 100,
) -> Path:
    """Write a Rain100L tree under ``root`` in ``layout`` (see `RAIN100_LAYOUTS`); returns ``root``."""
    return _make_rain100(Path(root), "Light", "RainTrainL", "Rain100L", layout, n_train, n_test, size, n_val)


def make_rain800(
    root: Path,
    layout: str = "idcgan",
    n_train: int = 700,
    n_test: int = 100,
    size: tuple[int, int] = (24, 24),
    suffix: str = ".jpg",
    n_val: int = 100,
) -> Path:
    """Write a Rain800 tree: ``idcgan`` = training/ + test_syn/ (+ an ignored test_nature/), or the
    RESCAN/S-DSEN ``side-by-side`` train/ + test/ folders (``-val``: plus val/). ``size`` is one half."""
    root = Path(root)
    if layout == "idcgan":
        _split_side_by_side(root, "idcgan", "training", "test_syn", n_train, n_test, 0, size, suffix)
        _save(rainy_image(0, size), root / "test_nature" / f"1{suffix}")
    elif layout in ("side-by-side", "side-by-side-val"):
        _split_side_by_side(root, layout, "train", "test", n_train, n_test, n_val, size, suffix)
    else:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(RAIN800_LAYOUTS)}")
    return root
