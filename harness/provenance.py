"""Where a number came from: library versions, git commit, device, content digests."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from .data import digest_files, sha256_file

# Libraries whose version can move a metric's value; recorded whenever installed.
NUMERIC_LIBRARIES = (
    "harness",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "scikit-image",
    "pillow",
    "pyiqa",
    "torchmetrics",
    "pytorch-fid",
    "torch-fidelity",
    "torchreid",
)


def library_versions() -> dict[str, str]:
    """Versions of Python and the numeric libraries (a fresh dict; the lookup is done once per process)."""
    return dict(_installed_versions())


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Reading package metadata costs ~30 ms per library; a grid plans hundreds of cells per process."""
    versions = [("python", platform.python_version())]
    for name in NUMERIC_LIBRARIES:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(versions)


def git_commit(path: Path | None = None) -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout holding the harness source, if it is one."""
    where = path or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device, "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        info.update(
            name=torch.cuda.get_device_name(index),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        )
    else:
        info.update(name=cpu_name(), machine=platform.machine())
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def path_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents)."""
    if path.is_dir():
        return digest_files([p for p in path.rglob("*") if p.is_file()], path)
    return sha256_file(path)


def canonical_digest(payload: Any) -> str:
    """Stable sha256 of JSON-able data (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
