"""Tiny RegDB and SYSU-MM01 copies in their real layouts, for parsing and end-to-end tests.

Images are small colour blobs whose colour depends on the person (and, more weakly, the camera), so
an embedding of the pixels can actually match people and the protocols have something to rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (32, 16)  # (height, width)


def person_image(pid: int, camid: int, index: int, infrared: bool) -> Image.Image:
    rng = np.random.default_rng([pid, camid, index])
    base = np.random.default_rng(pid).integers(30, 225, size=3)
    image = np.clip(base + rng.normal(0, 12, size=(*SIZE, 3)), 0, 255)
    if infrared:
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    return Image.fromarray(image.astype(np.uint8))


def make_regdb(root: Path, people: int = 6, per_person: int = 2, trials: int = 2) -> Path:
    """``Visible/``, ``Thermal/`` and ``idx/{train,test}_{visible,thermal}_{t}.txt``; trial t splits people in halves."""
    for pid in range(people):
        gender = "female" if pid % 2 else "male"
        for index in range(per_person):
            for folder, infrared in (("Visible", False), ("Thermal", True)):
                path = root / folder / gender / f"{pid:04d}" / f"{folder[0]}_{pid:04d}_{index}.bmp"
                path.parent.mkdir(parents=True, exist_ok=True)
                person_image(pid, 1 + infrared, index, infrared).save(path)
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for trial in range(1, trials + 1):
        order = np.random.default_rng(trial).permutation(people)
        halves = {"train": sorted(order[: people // 2]), "test": sorted(order[people // 2 :])}
        for part, pids in halves.items():
            for folder in ("Visible", "Thermal"):
                lines = []
                for label, pid in enumerate(pids):
                    gender = "female" if pid % 2 else "male"
                    for index in range(per_person):
                        relative = f"{folder}/{gender}/{pid:04d}/{folder[0]}_{pid:04d}_{index}.bmp"
                        lines.append(f"{relative} {label if part == 'train' else pid}")
                (root / "idx" / f"{part}_{folder.lower()}_{trial}.txt").write_text("\n".join(lines) + "\n")
    return root


SYSU_SPLIT = {"train": [1, 2, 3], "val": [4], "test": [5, 6, 7]}


def make_sysu(root: Path, per_camera: int = 2, missing: tuple[tuple[int, int], ...] = ((7, 5),)) -> Path:
    """``cam1..cam6/PPPP/NNNN.jpg`` and ``exp/*_id.txt``; person 7 never walks past camera 5."""
    for pids in SYSU_SPLIT.values():
        for pid in pids:
            for camid in range(1, 7):
                if (pid, camid) in missing:
                    continue
                folder = root / f"cam{camid}" / f"{pid:04d}"
                folder.mkdir(parents=True, exist_ok=True)
                for index in range(per_camera):
                    person_image(pid, camid, index, camid in (3, 6)).save(folder / f"{index + 1:04d}.jpg", quality=95)
    (root / "exp").mkdir(parents=True, exist_ok=True)
    for part, pids in SYSU_SPLIT.items():
        (root / "exp" / f"{part}_id.txt").write_text(",".join(map(str, pids)) + "\n")
    return root
