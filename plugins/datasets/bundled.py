"""Bundled, generated-on-first-use datasets (`rain-synth`, `inpaint-synth`, `translate-synth`, `sift-synth`): byte-stable PNGs and an
atomic, self-checking generation step.

A generated folder holds a ``manifest.json`` with the generator's name, version and seed and the
SHA-256 of every file. A changed generator version or a damaged file regenerates the folder; a folder
some other program wrote is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness import DataError
from harness.data import sha256_file

MANIFEST = "manifest.json"


def png_bytes(image: np.ndarray) -> bytes:
    """Encode uint8 RGB (H, W, 3), or grey (H, W) such as a label map, as a PNG whose bytes depend on
    the pixels only.

    The deflate stream uses stored (uncompressed) blocks, so the file does not depend on the zlib (or
    zlib-ng) build the way compressed output does; the data digest is then the same on every machine.
    """
    height, width = image.shape[:2]
    colour_type = 0 if image.ndim == 2 else 2
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))
    blocks = []
    for start in range(0, len(raw), 0xFFFF):
        block = raw[start : start + 0xFFFF]
        final = int(start + 0xFFFF >= len(raw))
        blocks.append(struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block)
    stream = b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def source_photo(name: str) -> np.ndarray:
    """One bundled scikit-image photograph as uint8 (H, W, 3); these load from the wheel, offline."""
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(data, name)()


def write_pngs(folder: Path, images: dict[str, np.ndarray]) -> dict[str, str]:
    """Write ``{relative path: uint8 image}`` as byte-stable PNGs; returns their sha256 digests."""
    files = {}
    for relative, image in images.items():
        content = png_bytes(image)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content)
        files[relative] = hashlib.sha256(content).hexdigest()
    return files


def read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_current(root: Path, generator: str, version: int, seed: int) -> bool:
    """True if ``root`` holds this generator version's output with every file intact."""
    manifest = read_manifest(root)
    if not manifest or manifest.get("generator") != generator:
        return False
    if manifest.get("version") != version or manifest.get("seed") != seed:
        return False
    for relative, digest in manifest.get("files", {}).items():
        path = root / relative
        if not path.is_file() or sha256_file(path) != digest:
            return False
    return bool(manifest.get("files"))


def ensure_generated(
    root: Path, generator: str, version: int, seed: int, generate: Callable[[Path], dict[str, Any]]
) -> None:
    """Run ``generate(folder) -> manifest`` into a temporary sibling folder and rename it into place,
    replacing only an empty folder or an earlier output of the same generator."""
    if is_current(root, generator, version, seed):
        return
    if root.exists() and any(root.iterdir()) and (read_manifest(root) or {}).get("generator") != generator:
        raise DataError(
            f"{root} exists and is not a {generator.split()[-1]} folder (no {MANIFEST} of {generator}); "
            "refusing to overwrite it. "
            "Point the data root at an empty or missing folder."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        manifest = generate(staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the data folder is not
        if is_current(root, generator, version, seed):  # another process finished first
            return
        if root.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, stale / root.name)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
