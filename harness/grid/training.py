"""The grid's one call into the training engine: train a method for a fixed budget into a folder.

A completed folder (its manifest says so) is reused as is; the engine resumes an interrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..data import resolve_data_root
from ..plugins import Plugins
from ..run.cells import TRAINING_MANIFEST, check_pairing
from ..run.devices import resolve_device
from ..train.engine import TrainSpec, train


def is_trained(out: Path) -> bool:
    manifest = Path(out) / TRAINING_MANIFEST
    try:
        return bool(json.loads(manifest.read_text()).get("completed"))
    except (OSError, ValueError):
        return False


def train_budget(
    plugins: Plugins,
    method: str,
    dataset: str,
    out: Path,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    split: str = "train",
    method_options: Mapping[str, Any] | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    data_root: Path | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``method`` on ``dataset`` for ``steps`` and return the engine's manifest."""
    method_cls, dataset_cls = plugins.methods.get(method), plugins.datasets.get(dataset)
    check_pairing(method_cls, dataset_cls, split)
    instance = method_cls(**dict(method_options or {}))
    data = dataset_cls(resolve_data_root(dataset_cls.name, data_root), **dict(dataset_options or {}))
    spec = TrainSpec(steps=steps, batch_size=batch_size, seed=seed, split=split, device=resolve_device(device))
    return train(instance, data, spec, Path(out), progress=progress)
