"""One method × dataset cell, in steps with one job each, shared by `harness run` and `harness grid`.

1. `plan_cell(spec, plugins) -> Cell`: resolve plugins, options and metric labels, check that they fit
   together, digest the data and checkpoint and compute the keys (`harness.run.keys`). Raises
   `UsageError`/`DataError` before anything runs or is written.
2. `ResultStore.find_complete(cell)`: a stored ok record with the same keys, if any (the grid skips it).
3. `execute_cell(cell, plugins, store, cache)`: reuse stored scores (scores tier) and stored predictions
   (predictions tier) whose keys match; otherwise load the method and predict. Then score what is
   missing and write a new immutable record.

A `Cell` holds live plugin instances; executors ship its `RunSpec` (plain data, picklable) to a worker
and call `plan_cell` there, which gives the same keys.

Error rule (one for the whole CLI): a usage or data error exits 2; if it happens after the first sample
was scored, a failed record (with the error) is kept. Anything else that fails mid-run (a method or
metric crash, non-finite predictions) keeps a failed record and exits 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import secrets
import time
import traceback
from itertools import islice
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from .. import checkpoints
from ..api import Dataset, Method, Metric, Reference, Task
from ..data import digest_files, resolve_data_root
from ..errors import DataError, HarnessError, RunError, UsageError
from ..plugins import Plugins
from ..provenance import device_info, git_commit, library_versions, path_digest
from ..weights_import import release_of
from . import keys as keymod
from .cache import Cache
from .devices import numerics, resolve_device
from .labels import label_params, options_by_label, parse_labels
from .predictions import PredictionReader, PredictionWriter, storable
from .prefetch import batched, prefetch
from .store import ResultStore

TRAINING_MANIFEST = "manifest.json"
TRAINED_WEIGHTS = "model.safetensors"
PREDICTIONS = "predictions"
SCORES = "scores"


@dataclasses.dataclass
class RunSpec:
    """Everything that defines one cell (plain, picklable data); all of it lands in the record."""

    method: str
    dataset: str
    metrics: list[str] | None = None
    """Metric labels (``NAME`` or ``NAME@TAG``); default: the dataset's protocol metrics."""
    split: str | None = None
    checkpoint: Path | None = None
    data_root: Path | None = None
    limit: int | None = None
    device: str = "auto"
    method_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    metric_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Parameters per metric label."""
    untrained: bool = False
    seed: int = 0
    """Seeds torch before the method is built, so ``--untrained`` weights are reproducible."""
    batch_size: int | None = None
    """Samples per `predict` call; default: the method's `Method.batch_size`."""
    save_images: int = 8


@dataclasses.dataclass(frozen=True)
class CellKeys:
    prediction: str
    scores: dict[str, str]
    """Score key per metric label."""


@dataclasses.dataclass
class Cell:
    """A planned cell: plugin instances ready to run, digests and keys computed."""

    spec: RunSpec
    task: Task
    method: Method
    dataset: Dataset
    split: str
    metrics: dict[str, Metric]
    """Metric instances by label."""
    checkpoint: Path | None
    owners: dict[str, str]
    """Plugin that registered each role (``method``, ``dataset``, ``metric:<label>``)."""
    device: str
    batch_size: int
    untrained: bool
    data_sha256: str
    files: int
    checkpoint_sha256: str | None
    reference: Reference | None
    plugin_digests: dict[str, str]
    keys: CellKeys
    training: dict[str, Any] | None = None
    """Identity of the `harness train` run that wrote the checkpoint (its manifest), if it has one."""
    imported: dict[str, Any] | None = None
    """The authors' release a `harness weights import` checkpoint was converted from (file, format, sha256)."""


# -- planning ------------------------------------------------------------------------------------
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


def training_identity(checkpoint: Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The manifest path and identity (method and dataset options, data digest, steps, batch, seed) of the
    `harness train` run beside a checkpoint; None for weights from elsewhere. A cell's method options are
    the inference ones, so a record needs this to say how its weights were trained."""
    if checkpoint is None:
        return None
    manifest_path = checkpoint.parent / TRAINING_MANIFEST if checkpoint.is_file() else checkpoint / TRAINING_MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        identity = json.loads(manifest_path.read_text())["identity"]
        if not isinstance(identity, dict) or not isinstance(identity["method_options"], dict):
            raise TypeError("identity.method_options is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{manifest_path}: unreadable training manifest ({exc})") from None
    return manifest_path, identity


def check_training_manifest(method: Method, checkpoint: Path | None) -> None:
    """Options that shape the model must equal those a `harness train` folder was trained with."""
    found = training_identity(checkpoint)
    if found is None or not method.model_options:
        return
    manifest_path, identity = found
    trained = identity["method_options"]
    given = json.loads(json.dumps(method.config, default=str))
    differ = [f"{name}={given.get(name)!r} (trained with {trained[name]!r})"
              for name in method.model_options if name in trained and trained[name] != given.get(name)]
    if differ:
        raise UsageError(
            f"checkpoint {checkpoint} was trained with other model options: {', '.join(differ)}; "
            f"pass the trained values with --option (see {manifest_path})"
        )


def check_pairing(method_cls: type[Method], dataset_cls: type[Dataset], split: str) -> None:
    """A method must serve the dataset's task, and the split must exist (for `run` and `train` alike)."""
    if dataset_cls.task not in method_cls.tasks:
        raise UsageError(
            f"method {method_cls.name!r} does not support task {dataset_cls.task!r} of dataset {dataset_cls.name!r} "
            f"(it supports: {', '.join(sorted(method_cls.tasks)) or 'none'})"
        )
    if split not in dataset_cls.splits:
        raise UsageError(f"dataset {dataset_cls.name!r} has no split {split!r}; splits: {', '.join(dataset_cls.splits)}")


def check_metric(metric_cls: type[Metric], label: str, task: Task) -> None:
    if task.output not in metric_cls.outputs:
        raise UsageError(
            f"metric {label!r} scores {'/'.join(sorted(metric_cls.outputs))} outputs, "
            f"but task {task.name!r} produces {task.output}"
        )
    if metric_cls.needs_target and task.target is None:
        raise UsageError(f"metric {label!r} needs a ground truth, which task {task.name!r} lacks")
    if metric_cls.needs_paired_target and not task.paired:
        raise UsageError(
            f"metric {label!r} compares each prediction with its own sample's target, but the targets of task "
            f"{task.name!r} are unpaired (use a distribution metric such as fid or kid)"
        )


def build_metrics(spec: RunSpec, plugins: Plugins, task: Task, dataset: Dataset, device: str) -> dict[str, Metric]:
    """Metric instances by label, with the dataset protocol's parameters, the tag's preset and explicit options."""
    texts = spec.metrics or list(type(dataset).default_metrics)
    if not texts:
        raise UsageError(f"dataset {dataset.name!r} declares no default metrics; pass --metric")
    labels = parse_labels(texts, plugins.metrics)
    given = options_by_label(spec.metric_options, labels, plugins.metrics)
    metrics: dict[str, Metric] = {}
    for label in labels:
        metric_cls = plugins.metrics.get(label.metric)
        check_metric(metric_cls, label.text, task)
        params = label_params(metric_cls, label, dataset.metric_params(metric_cls.name), given.get(label.text, {}))
        metric = metric_cls(target_field=task.target, **params)
        metric.device = device
        metrics[label.text] = metric
    return metrics


def plan_cell(spec: RunSpec, plugins: Plugins) -> Cell:
    """Resolve, validate, digest and key a cell; raises before anything runs or is written."""
    method_cls = plugins.methods.get(spec.method)
    dataset_cls = plugins.datasets.get(spec.dataset)
    task = plugins.tasks.get(dataset_cls.task)
    split = spec.split or dataset_cls.default_split
    check_pairing(method_cls, dataset_cls, split)
    if spec.limit is not None and spec.limit < 1:
        raise UsageError(f"--limit must be a positive integer, got {spec.limit}")
    batch_size = spec.batch_size if spec.batch_size is not None else method_cls.batch_size
    if batch_size < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {batch_size}")
    device = resolve_device(spec.device)

    root = resolve_data_root(dataset_cls.name, spec.data_root).resolve()
    dataset = dataset_cls(root, **spec.dataset_options)
    method = method_cls(**spec.method_options)
    metrics = build_metrics(spec, plugins, task, dataset, device)
    checkpoint = resolve_checkpoint(method, spec.checkpoint, spec.untrained)
    check_training_manifest(method, checkpoint)
    untrained = bool(spec.untrained and checkpoint is None and method.needs_checkpoint)

    dataset.verify(split)
    files = dataset.files(split)
    data_sha256 = digest_files(files, dataset.root, dataset.derived_digest(split))
    checkpoint_sha256 = path_digest(checkpoint) if checkpoint is not None else None
    reference = dataset.reference(split) if any(m.uses_reference for m in metrics.values()) else None
    if reference is not None:
        for metric in metrics.values():
            if metric.uses_reference:
                metric.bind_reference(reference)

    owners = {
        "method": plugins.methods.owner(method_cls.name),
        "dataset": plugins.datasets.owner(dataset_cls.name),
        **{f"metric:{label}": plugins.metrics.owner(metric.name) for label, metric in metrics.items()},
    }
    digests = {role: plugins.source_digest(owner) for role, owner in owners.items()}
    versions = library_versions()
    prediction = keymod.prediction_key(
        method={"name": method.name, "version": method.version, "options": method.config,
                "checkpoint_sha256": checkpoint_sha256, "untrained_seed": spec.seed if untrained else None},
        dataset={"name": dataset.name, "version": dataset.version, "options": dataset.config, "split": split,
                 "limit": spec.limit, "data_sha256": data_sha256},
        versions={"harness": versions.get("harness"), "torch": torch.__version__},
        plugins={"method": digests["method"], "dataset": digests["dataset"]},
    )
    scores = {
        label: keymod.score_key(prediction, {"name": metric.name, "version": metric.version, "params": metric.config},
                                metric.reads(), digests[f"metric:{label}"])
        for label, metric in metrics.items()
    }
    trained = training_identity(checkpoint)
    return Cell(spec, task, method, dataset, split, metrics, checkpoint, owners, device, batch_size, untrained,
                data_sha256, len(files), checkpoint_sha256, reference, digests, CellKeys(prediction, scores),
                trained[1] if trained else None, release_of(method, checkpoint, checkpoint_sha256))


# -- executing -----------------------------------------------------------------------------------
def base_record(cell: Cell, plugins: Plugins) -> dict[str, Any]:
    """Provenance of a cell: who, what, on which data and code, where."""
    method, dataset, spec = cell.method, cell.dataset, cell.spec
    return {
        "run_id": new_run_id(method.name, dataset.name),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
        "task": cell.task.name,
        "method": {
            "name": method.name,
            "version": method.version,
            "options": method.config,
            "checkpoint": str(cell.checkpoint) if cell.checkpoint else None,
            "checkpoint_sha256": cell.checkpoint_sha256,
            "untrained": cell.untrained,
            "seed": spec.seed,
            "deterministic": method.deterministic,
            "batch_size": cell.batch_size,
            "training": cell.training,
            "imported_from": cell.imported,
        },
        "dataset": {
            "name": dataset.name,
            "version": dataset.version,
            "options": dataset.config,
            "root": str(dataset.root),
            "split": cell.split,
            "limit": spec.limit,
            "files": cell.files,
            "data_sha256": cell.data_sha256,
            "reference": ({"digest": cell.reference.digest, "files": len(cell.reference.files),
                           "description": cell.reference.description} if cell.reference else None),
            "layout": dataset.describe(),
        },
        "plugins": {
            role: {"plugin": owner, "version": plugins.plugin_version(owner), "source_digest": cell.plugin_digests[role]}
            for role, owner in cell.owners.items()
        },
        "keys": {"prediction": cell.keys.prediction, "scores": dict(cell.keys.scores)},
        "versions": library_versions(),
        "git": {"harness": git_commit(), "workdir": git_commit(Path.cwd())},
        "environment": {**device_info(cell.device), "torch_threads": torch.get_num_threads(), "numerics": numerics()},
    }


def execute_cell(
    cell: Cell, plugins: Plugins, store: ResultStore, cache: Cache | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run a planned cell, reusing what the cache holds under its keys, and store a new record.

    A failure after the first scored sample is stored too, then raised (`DataError`/`UsageError` for
    bad input, else `RunError`).
    """
    cache = cache if cache is not None else Cache()
    method = cell.method
    record = base_record(cell, plugins)
    cell_info = {"run_id": record["run_id"], "method": method.name, "dataset": cell.dataset.name, "split": cell.split}
    plugins.pm.hook.harness_cell_started(cell=cell_info)
    started = time.perf_counter()
    reusable = method.deterministic
    stored_scores = _stored_scores(cell, cache) if reusable else {}
    todo = {label: metric for label, metric in cell.metrics.items() if label not in stored_scores}
    record["reused"] = {"scores": sorted(stored_scores), "predictions": False}

    rows: list[dict[str, Any]] = []
    images: list[tuple[str, Any]] = []
    timings = {"load": 0.0, "predict": 0.0, "metrics": 0.0}
    fresh: dict[str, dict[str, Any]] = {}
    exit_as: type[HarnessError] = RunError
    try:
        if todo:
            with contextlib.ExitStack() as stack:
                use_stored = reusable and not any(m.needs_model for m in todo.values())
                folder = stack.enter_context(cache.use(PREDICTIONS, cell.keys.prediction)) if use_stored else None
                record["reused"]["predictions"] = folder is not None
                staging = None
                if folder is None and reusable:
                    staging = stack.enter_context(cache.stage(PREDICTIONS, cell.keys.prediction))
                writer = PredictionWriter(staging.path) if staging is not None else None
                kept = _predict_and_score(
                    cell, todo, folder, writer, rows, images, timings, progress,
                    lambda done, total: plugins.pm.hook.harness_cell_progress(cell=cell_info, done=done, total=total),
                )
                if writer is not None and staging is not None:
                    if kept:
                        writer.close({"method": method.name, "dataset": cell.dataset.name, "split": cell.split})
                    else:
                        staging.discard()
            tick = time.perf_counter()
            fresh = {label: _entry(label, metric, len(rows), cell.keys.scores[label]) for label, metric in todo.items()}
            timings["metrics"] += time.perf_counter() - tick
        else:
            rows = [{"id": sample_id} for sample_id in next(iter(stored_scores.values()))["ids"]]
        _merge_stored(rows, stored_scores)
        record["metrics"] = {
            label: fresh[label] if label in fresh else stored_scores[label]["entry"] for label in cell.metrics
        }
        record["status"] = "ok"
    except HarnessError as exc:
        if isinstance(exc, (DataError, UsageError)):
            if not rows:
                raise
            exit_as = DataError if isinstance(exc, DataError) else UsageError
        _mark_failed(record, exc)
    except Exception as exc:  # a plugin crashed: keep what was done, then report
        _mark_failed(record, exc)
    timings["total"] = time.perf_counter() - started
    record["timings"] = {key: round(value, 6) for key, value in timings.items()}
    record["samples"] = len(rows)
    path = store.write(record, rows, images if record["status"] == "ok" else ())
    record["path"] = str(path)
    if record["status"] == "ok" and reusable:
        _store_scores(cache, cell, fresh, rows)
    plugins.pm.hook.harness_cell_finished(cell=cell_info, record=record)
    if record["status"] != "ok":
        raise exit_as(f"run failed after {len(rows)} samples: {record['error']['message']} (record: {path})")
    return record


def _predict_and_score(
    cell: Cell, todo: dict[str, Metric], stored: Path | None, writer: PredictionWriter | None,
    rows: list[dict[str, Any]], images: list[tuple[str, Any]], timings: dict[str, float], progress: bool,
    on_progress: Callable[[int, int | None], None],
) -> bool:
    """Stream the split in batches: predictions from the store or the model, fed to the metrics to run.

    ``rows`` (per-sample values) and ``images`` (a few predictions) grow as it goes, so a failure
    keeps what was done. Returns False when the predictions could not all be written (not tensors)."""
    spec, task, method, dataset = cell.spec, cell.task, cell.method, cell.dataset
    tick = time.perf_counter()
    reader = PredictionReader(stored) if stored is not None else None
    if reader is None:
        torch.manual_seed(spec.seed)
        method.load(cell.checkpoint, cell.device)
    for metric in todo.values():
        metric.reset()
        if metric.needs_model:
            metric.bind_model(method, task, cell.device)
    timings["load"] = time.perf_counter() - tick

    kept = True
    total = dataset.count(cell.split)
    total = min(total, spec.limit) if total is not None and spec.limit is not None else total or spec.limit
    batches = prefetch(batched(islice(dataset.samples(cell.split), spec.limit), cell.batch_size))
    desc = f"{method.name} × {dataset.name}" + (" (stored predictions)" if reader else "")
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for batch in batches:
            ids = [sample["id"] for sample in batch]
            tick = time.perf_counter()
            if reader is not None:
                predictions: list[Any] = reader.take(ids)
            else:
                predictions = method.predict([task.method_view(sample) for sample in batch])
                if len(predictions) != len(batch):
                    raise RunError(f"method {method.name!r} returned {len(predictions)} predictions for {len(batch)} samples")
                check_finite(method.name, ids, predictions)
            timings["predict"] += time.perf_counter() - tick
            if writer is not None and kept:
                kept = all(storable(p) for p in predictions)  # only tensors are stored (no pickles)
                if kept:
                    writer.add(ids, predictions)
            tick = time.perf_counter()
            batch_rows: list[dict[str, Any]] = [{"id": sample_id} for sample_id in ids]
            for label, metric in todo.items():
                values = metric.update(predictions, batch)
                for row, value in zip(batch_rows, values or ()):
                    row[label] = _finite_or_none(value)
            timings["metrics"] += time.perf_counter() - tick
            rows.extend(batch_rows)
            if task.output == "image" and len(images) < spec.save_images:
                images.extend((str(s["id"]), p) for s, p in zip(batch[: spec.save_images - len(images)], predictions))
            bar.update(len(batch))
            on_progress(len(rows), total)
    if not rows:
        raise DataError(f"dataset {dataset.name!r} split {cell.split!r} yielded no samples from {dataset.root}")
    return kept


def check_finite(method: str, ids: list[Any], predictions: list[Any]) -> None:
    """NaN or infinite outputs fail the cell (a PNG would silently quantise them to black)."""
    for sample_id, prediction in zip(ids, predictions):
        if isinstance(prediction, torch.Tensor) and prediction.is_floating_point() and not torch.isfinite(prediction).all():
            raise RunError(f"method {method!r} returned non-finite values (NaN or inf) for sample {sample_id!r}")


def _entry(label: str, metric: Metric, n: int, score_key: str) -> dict[str, Any]:
    return {
        "metric": metric.name,
        "label": label,
        "values": {key: _finite_or_none(value) for key, value in metric.compute().items()},
        "n": n,
        "higher_is_better": metric.higher_is_better,
        "params": metric.config,
        "convention": metric.convention(),
        "details": metric.details(),
        "version": metric.version,
        "score_key": score_key,
    }


def _stored_scores(cell: Cell, cache: Cache) -> dict[str, dict[str, Any]]:
    """Scores tier hits by label: {"entry", "ids", "values"} (metrics of the model itself always run)."""
    wanted = {label: cell.keys.scores[label] for label, metric in cell.metrics.items() if not metric.needs_model}
    found = cache.get_rows(SCORES, "", list(wanted.values()))
    stored = {label: json.loads(found[key]) for label, key in wanted.items() if key in found}
    if stored and len({tuple(s["ids"]) for s in stored.values()}) > 1:
        return {}  # cannot happen for equal prediction keys; never merge rows of different sample lists
    return stored


def _store_scores(cache: Cache, cell: Cell, fresh: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    if not fresh:
        return
    ids = [row["id"] for row in rows]
    payload = {}
    for label, entry in fresh.items():
        if cell.metrics[label].needs_model:
            continue
        values = [row.get(label) for row in rows] if any(label in row for row in rows) else None
        payload[entry["score_key"]] = json.dumps({"entry": entry, "ids": ids, "values": values},
                                                 default=_json_default).encode()
    cache.put_rows(SCORES, "", payload)


def _merge_stored(rows: list[dict[str, Any]], stored: dict[str, dict[str, Any]]) -> None:
    """Add the stored per-sample values of reused labels to the rows (matched by sample id)."""
    for label, hit in stored.items():
        if hit["values"] is None:
            continue
        by_id = dict(zip(hit["ids"], hit["values"]))
        for row in rows:
            row[label] = by_id.get(row["id"])


def new_run_id(method: str, dataset: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{method}-{dataset}-{secrets.token_hex(3)}"


def _finite_or_none(value: Any) -> float | None:
    """Records are strict JSON: a non-finite aggregate (e.g. PSNR of identical images) is stored as null."""
    value = float(value)
    return value if math.isfinite(value) else None


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _mark_failed(record: dict[str, Any], exc: BaseException) -> None:
    record["status"] = "failed"
    record["error"] = {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": traceback.format_exc(),
    }
