"""harness: a plugin-based benchmark and evaluation harness for image restoration, generation and re-id.

Python API::

    import harness
    method = harness.create_method("s-dsen", stages=8)
    dataset = harness.create_dataset("rain100h", root="~/data/Rain100H")
    metric = harness.create_metric("psnr", color="y601")
"""

from __future__ import annotations

import os
from typing import Any

from .api import Dataset, Method, Metric, OfficialWeights, Option, Reference, Sample, Task, TrainingRecipe
from .data import resolve_data_root
from .errors import DataError, HarnessError, RunError, UsageError
from .hookspecs import hookimpl
from .models import ParameterCount, count_parameters
from .plugins import get_plugins
from .train.context import TrainContext
from .train.ema import EMA
from .train.pool import ImagePool
from .train.protocol import SingleModelRecipe


def create_method(name: str, **options: Any) -> Method:
    """Instantiate a registered method by name or alias with the given options."""
    return get_plugins().methods.get(name)(**options)


def create_dataset(name: str, root: str | os.PathLike[str] | None = None, **options: Any) -> Dataset:
    """Instantiate a registered dataset; ``root`` defaults to ``$HARNESS_DATA/<name>``."""
    cls = get_plugins().datasets.get(name)
    return cls(resolve_data_root(cls.name, root), **options)


def create_metric(name: str, **params: Any) -> Metric:
    """Instantiate a registered metric with the given parameters."""
    return get_plugins().metrics.get(name)(**params)


def get_task(name: str) -> Task:
    return get_plugins().tasks.get(name)


__all__ = [
    "DataError",
    "Dataset",
    "EMA",
    "HarnessError",
    "ImagePool",
    "Method",
    "Metric",
    "OfficialWeights",
    "Option",
    "ParameterCount",
    "Reference",
    "RunError",
    "Sample",
    "SingleModelRecipe",
    "Task",
    "TrainContext",
    "TrainingRecipe",
    "UsageError",
    "count_parameters",
    "create_dataset",
    "create_method",
    "create_metric",
    "get_task",
    "hookimpl",
]
