"""Evaluate one method × dataset cell: predict every sample, feed the metrics, store a record.

The runner is task-agnostic: it only uses the `Task` declaration (which fields a method may see,
which output kind metrics must accept) and the plugin base classes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import secrets
import time
import traceback
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

from .. import checkpoints
from ..api import Dataset, Method, Metric, Sample, Task
from ..data import digest_files, resolve_data_root
from ..errors import DataError, HarnessError, RunError, UsageError
from ..plugins import Plugins
from ..provenance import canonical_digest, device_info, git_commit, library_versions, path_digest
from .store import ResultStore

TRAINING_MANIFEST = "manifest.json"
TRAINED_WEIGHTS = "model.safetensors"


@dataclasses.dataclass
class RunSpec:
    """Everything that defines one cell; all of it lands in the record."""

    method: str
    dataset: str
    metrics: list[str] | None = None
    split: str | None = None
    checkpoint: Path | None = None
    data_root: Path | None = None
    limit: int | None = None
    device: str = "cpu"
    method_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    metric_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    untrained: bool = False
    save_images: int = 8


@dataclasses.dataclass
class Cell:
    """A resolved, validated cell: plugin instances ready to run."""

    spec: RunSpec
    task: Task
    method: Method
    dataset: Dataset
    split: str
    metrics: dict[str, Metric]
    checkpoint: Path | None
    owners: dict[str, str]


def resolve_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device must be cpu or cuda[:N], got {device!r}")
    return device


def resolve_checkpoint(method: Method, given: Path | None, untrained: bool) -> Path | None:
    """Explicit path (a training output folder means its weights), else the torch hub cache."""
    if given is not None:
        given = Path(given).expanduser()
        if not given.exists():
            raise DataError(f"--checkpoint {given}: no such file or directory")
        if given.is_dir() and (given / TRAINING_MANIFEST).is_file() and method.needs_checkpoint:
            return given / TRAINED_WEIGHTS
        return given
    if method.weights_filename:
        return checkpoints.find_weights(method.weights_filename)
    if method.needs_checkpoint and not untrained:
        raise UsageError(
            f"method {method.name!r} needs trained weights: pass --checkpoint PATH "
            f"(e.g. the folder written by `harness train --method {method.name}`), "
            "or --untrained to score randomly initialised weights on purpose"
        )
    return None


def check_pairing(method_cls: type[Method], dataset_cls: type[Dataset], split: str) -> None:
    """A method must serve the dataset's task, and the split must exist (for `run` and `train` alike)."""
    if dataset_cls.task not in method_cls.tasks:
        raise UsageError(
            f"method {method_cls.name!r} does not support task {dataset_cls.task!r} of dataset {dataset_cls.name!r} "
            f"(it supports: {', '.join(sorted(method_cls.tasks)) or 'none'})"
        )
    if split not in dataset_cls.splits:
        raise UsageError(f"dataset {dataset_cls.name!r} has no split {split!r}; splits: {', '.join(dataset_cls.splits)}")


def prepare_cell(spec: RunSpec, plugins: Plugins) -> Cell:
    """Resolve names and options and check compatibility; raises before anything runs or is written."""
    method_cls = plugins.methods.get(spec.method)
    dataset_cls = plugins.datasets.get(spec.dataset)
    task = plugins.tasks.get(dataset_cls.task)
    split = spec.split or dataset_cls.default_split
    check_pairing(method_cls, dataset_cls, split)

    dataset = dataset_cls(resolve_data_root(dataset_cls.name, spec.data_root), **spec.dataset_options)
    method = method_cls(**spec.method_options)
    metric_names = spec.metrics or list(dataset_cls.default_metrics)
    if not metric_names:
        raise UsageError(f"dataset {dataset_cls.name!r} declares no default metrics; pass --metric")
    unknown_options = sorted(set(spec.metric_options) - {plugins.metrics.canonical(n) for n in metric_names})
    if unknown_options:
        raise UsageError(f"--metric-option given for metric(s) not being run: {', '.join(unknown_options)}")
    metrics: dict[str, Metric] = {}
    for name in metric_names:
        metric_cls = plugins.metrics.get(name)
        if task.output not in metric_cls.outputs:
            raise UsageError(
                f"metric {metric_cls.name!r} scores {'/'.join(sorted(metric_cls.outputs))} outputs, "
                f"but task {task.name!r} produces {task.output}"
            )
        if metric_cls.needs_target and task.target is None:
            raise UsageError(f"metric {metric_cls.name!r} needs a ground truth, which task {task.name!r} lacks")
        params = {**dataset.metric_params(metric_cls.name), **spec.metric_options.get(metric_cls.name, {})}
        metric = metric_cls(**params)
        metric.target_field = task.target
        metrics[metric_cls.name] = metric

    checkpoint = resolve_checkpoint(method, spec.checkpoint, spec.untrained)
    owners = {
        "method": plugins.methods.owner(method_cls.name),
        "dataset": plugins.datasets.owner(dataset_cls.name),
        **{f"metric:{name}": plugins.metrics.owner(name) for name in metrics},
    }
    return Cell(spec, task, method, dataset, split, metrics, checkpoint, owners)


def batched(samples: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    while batch := list(islice(samples, size)):
        yield batch


def run_cell(cell: Cell, plugins: Plugins, store: ResultStore, progress: bool = True) -> dict[str, Any]:
    """Run a prepared cell and store its record; a failure is stored too, then raised as `RunError`."""
    spec, task, method, dataset = cell.spec, cell.task, cell.method, cell.dataset
    device = resolve_device(spec.device)
    dataset.verify(cell.split)

    started = time.perf_counter()
    files = dataset.files(cell.split)
    data_digest = digest_files(files, dataset.root)
    checkpoint_digest = path_digest(cell.checkpoint) if cell.checkpoint is not None else None
    record: dict[str, Any] = {
        "run_id": new_run_id(method.name, dataset.name),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
        "task": task.name,
        "method": {
            "name": method.name,
            "version": method.version,
            "options": method.config,
            "checkpoint": str(cell.checkpoint) if cell.checkpoint else None,
            "checkpoint_sha256": checkpoint_digest,
            "untrained": bool(spec.untrained and cell.checkpoint is None and method.needs_checkpoint),
        },
        "dataset": {
            "name": dataset.name,
            "version": dataset.version,
            "options": dataset.config,
            "root": str(dataset.root),
            "split": cell.split,
            "limit": spec.limit,
            "files": len(files),
            "data_sha256": data_digest,
            "layout": dataset.describe(),
        },
        "plugins": {
            role: {"plugin": owner, "version": plugins.plugin_version(owner)} for role, owner in cell.owners.items()
        },
        "versions": library_versions(),
        "git": {"harness": git_commit(), "workdir": git_commit(Path.cwd())},
        "environment": device_info(device),
    }
    record["cell_key"] = canonical_digest(
        {
            "method": [method.name, method.version, method.config, checkpoint_digest, record["method"]["untrained"]],
            "dataset": [dataset.name, dataset.version, dataset.config, cell.split, spec.limit, data_digest],
            "metrics": {name: [m.version, m.config] for name, m in cell.metrics.items()},
        }
    )
    cell_info = {"run_id": record["run_id"], "method": method.name, "dataset": dataset.name, "split": cell.split}
    plugins.pm.hook.harness_cell_started(cell=cell_info)

    rows: list[dict[str, Any]] = []
    images: list[tuple[str, Any]] = []
    timings = {"load": 0.0, "predict": 0.0, "metrics": 0.0}
    try:
        tick = time.perf_counter()
        method.load(cell.checkpoint, device)
        for metric in cell.metrics.values():
            metric.reset()
            if metric.needs_model:
                metric.bind_model(method, task, device)
        timings["load"] = time.perf_counter() - tick

        total = dataset.count(cell.split)
        total = min(total, spec.limit) if total is not None and spec.limit is not None else total or spec.limit
        samples = islice(dataset.samples(cell.split), spec.limit)
        bar = tqdm(total=total, desc=f"{method.name} × {dataset.name}", unit="img", disable=not progress, leave=False)
        with bar:
            for batch in batched(samples, getattr(method, "batch_size", 1)):
                tick = time.perf_counter()
                predictions = method.predict([task.method_view(sample) for sample in batch])
                timings["predict"] += time.perf_counter() - tick
                if len(predictions) != len(batch):
                    raise RunError(f"method {method.name!r} returned {len(predictions)} predictions for {len(batch)} samples")
                tick = time.perf_counter()
                batch_rows = [{"id": sample["id"]} for sample in batch]
                for name, metric in cell.metrics.items():
                    values = metric.update(predictions, batch)
                    for row, value in zip(batch_rows, values or ()):
                        row[name] = _finite_or_none(value)
                timings["metrics"] += time.perf_counter() - tick
                rows.extend(batch_rows)
                if task.output == "image" and len(images) < spec.save_images:
                    images.extend(
                        (str(s["id"]), p) for s, p in zip(batch[: spec.save_images - len(images)], predictions)
                    )
                bar.update(len(batch))
        if not rows:
            raise DataError(f"dataset {dataset.name!r} split {cell.split!r} yielded no samples from {dataset.root}")

        tick = time.perf_counter()
        record["metrics"] = {
            name: {
                "values": {key: _finite_or_none(value) for key, value in metric.compute().items()},
                "n": len(rows),
                "higher_is_better": metric.higher_is_better,
                "params": metric.config,
                "convention": metric.convention(),
                "details": metric.details(),
                "version": metric.version,
            }
            for name, metric in cell.metrics.items()
        }
        timings["metrics"] += time.perf_counter() - tick
        record["status"] = "ok"
    except HarnessError as exc:
        if isinstance(exc, (DataError, UsageError)) and not rows:
            raise
        _mark_failed(record, exc)
    except Exception as exc:  # a plugin crashed: keep what was done, then report
        _mark_failed(record, exc)
    timings["total"] = time.perf_counter() - started
    record["timings"] = {key: round(value, 6) for key, value in timings.items()}
    record["samples"] = len(rows)
    path = store.write(record, rows, images if record["status"] == "ok" else ())
    record["path"] = str(path)
    plugins.pm.hook.harness_cell_finished(cell=cell_info, record=record)
    if record["status"] != "ok":
        raise RunError(f"run failed after {len(rows)} samples: {record['error']['message']} (record: {path})")
    return record


def new_run_id(method: str, dataset: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{method}-{dataset}-{secrets.token_hex(3)}"


def _finite_or_none(value: Any) -> float | None:
    """Records are strict JSON: a non-finite aggregate (e.g. PSNR of identical images) is stored as null."""
    value = float(value)
    return value if math.isfinite(value) else None


def _mark_failed(record: dict[str, Any], exc: BaseException) -> None:
    record["status"] = "failed"
    record["error"] = {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": traceback.format_exc(),
    }
