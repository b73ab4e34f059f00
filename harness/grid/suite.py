"""Suites: which methods, datasets and metrics a grid crosses, from a YAML file or from the plugins.

A suite file names methods (with options, a checkpoint, or a small training budget to run first),
datasets (with split, options, limit) and metrics (with parameters and labels)::

    description: what this suite is for
    methods:
      - name: identity
      - name: s-dsen
        train: {dataset: rain-synth, steps: 200, batch_size: 4, options: {patch: 48}}
      - {name: dsen, checkpoint: ~/weights/dsen.safetensors, options: {aggregation: maxpool}}
    datasets:
      - {name: rain-synth, split: test}
      - {name: translate-synth, metrics: [pixel-accuracy]}   # this dataset's cells only
    metrics:                       # optional: default is each dataset's protocol metrics
      - psnr
      - ssim
      - {label: ssim@official, params: {convention: sdsen-official}}

Every (method, dataset) pair whose task matches becomes a cell. A dataset's own ``metrics`` replace the
suite's for its cells (e.g. a protocol metric that needs weights a bundled-only suite cannot assume);
``--metric`` on the command line replaces both. Suites shipped with the harness
live in ``harness/grid/suites/*.yaml`` and are addressed by their file stem (`harness suites`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from ..api import Method
from ..errors import DataError, UsageError
from ..plugins import Plugins

SUITES_PACKAGE = "harness.grid"
SUITES_FOLDER = "suites"


@dataclasses.dataclass(frozen=True)
class TrainBudget:
    """Train the method on a dataset first (via the training engine) and evaluate those weights."""

    dataset: str
    steps: int
    batch_size: int
    seed: int = 0
    split: str = "train"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Method options for training only (e.g. a crop size); evaluation uses the method entry's options."""
    dataset_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MethodEntry:
    name: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: Path | None = None
    train: TrainBudget | None = None
    untrained: bool = False


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    name: str
    split: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    limit: int | None = None
    data_root: Path | None = None
    metrics: tuple[MetricEntry, ...] | None = None
    """This dataset's metrics, instead of the suite's (None: the suite's, else the dataset's protocol)."""


@dataclasses.dataclass(frozen=True)
class MetricEntry:
    label: str
    """``NAME`` or ``NAME@TAG`` (the same metric may run under several labels with different parameters)."""
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    description: str
    methods: tuple[MethodEntry, ...]
    datasets: tuple[DatasetEntry, ...]
    metrics: tuple[MetricEntry, ...] | None
    source: str
    pairs: tuple[Pairing, ...] | None = None
    """Explicit cells instead of every compatible method × dataset pair (a paper's tables, whose rows
    each have numbers on some datasets only: `harness.grid.papers`)."""


@dataclasses.dataclass(frozen=True)
class Pairing:
    """One (method, dataset) pair of a suite, before it is planned into a runnable cell."""

    method: MethodEntry
    dataset: DatasetEntry
    metrics: tuple[MetricEntry, ...] | None


PLUGINS_SOURCE = "plugins"
"""`Suite.source` of the all-plugins grid, which has no file."""


@contextlib.contextmanager
def naming_the_file(suite: Suite) -> Iterator[None]:
    """Usage errors raised inside (an unknown method, dataset or metric, a bad option) name the suite
    file they come from, as for errors found while parsing it."""
    try:
        yield
    except UsageError as exc:
        if suite.source == PLUGINS_SOURCE or suite.source in str(exc):
            raise
        raise UsageError(f"suite {suite.source}: {exc}") from None


# -- shipped suites ------------------------------------------------------------------------------
def shipped_suites() -> dict[str, Path]:
    """Suites packaged with the harness, by name (file stem)."""
    folder = resources.files(SUITES_PACKAGE) / SUITES_FOLDER
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def find_suite(name_or_path: str) -> Path:
    """A shipped suite by name, else a YAML file path."""
    shipped = shipped_suites()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    raise UsageError(
        f"--suite {name_or_path!r}: neither a shipped suite ({', '.join(sorted(shipped)) or 'none'}; "
        "see `harness suites`) nor a YAML file"
    )


# -- parsing -------------------------------------------------------------------------------------
def load_suite(name_or_path: str) -> Suite:
    path = find_suite(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"suite {path}: not valid YAML: {exc}") from None
    return parse_suite(data, path.stem, str(path))


def parse_suite(data: Any, name: str, source: str) -> Suite:
    where = f"suite {source}"
    table = _mapping(data, where, {"description", "methods", "datasets", "metrics"})
    methods = tuple(_method(item, f"{where}: methods[{i}]") for i, item in enumerate(_list(table, "methods", where)))
    datasets = tuple(_dataset(item, f"{where}: datasets[{i}]") for i, item in enumerate(_list(table, "datasets", where)))
    metrics = None
    if table.get("metrics") is not None:
        metrics = tuple(_metric(item, f"{where}: metrics[{i}]") for i, item in enumerate(_list(table, "metrics", where)))
    return Suite(name, str(table.get("description", "")), methods, datasets, metrics, source)


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return value


def _list(table: dict[str, Any], key: str, where: str) -> list[Any]:
    value = table.get(key)
    if not isinstance(value, list) or not value:
        raise UsageError(f"{where}: '{key}' must be a non-empty list")
    return value


def _options(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a mapping of option names to values, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _method(item: Any, where: str) -> MethodEntry:
    if isinstance(item, str):
        return MethodEntry(item)
    table = _mapping(item, where, {"name", "options", "checkpoint", "train", "untrained"})
    if "name" not in table:
        raise UsageError(f"{where}: needs a 'name'")
    if table.get("checkpoint") is not None and table.get("train") is not None:
        raise UsageError(f"{where}: give either 'checkpoint' or 'train', not both")
    train = None
    if table.get("train") is not None:
        spec = _mapping(table["train"], f"{where}.train",
                        {"dataset", "steps", "batch_size", "seed", "split", "options", "dataset_options"})
        if "dataset" not in spec or "steps" not in spec or "batch_size" not in spec:
            raise UsageError(f"{where}.train: needs 'dataset', 'steps' and 'batch_size'")
        train = TrainBudget(
            dataset=str(spec["dataset"]),
            steps=_positive(spec["steps"], f"{where}.train.steps"),
            batch_size=_positive(spec["batch_size"], f"{where}.train.batch_size"),
            seed=int(spec.get("seed", 0)),
            split=str(spec.get("split", "train")),
            options=_options(spec.get("options"), f"{where}.train.options"),
            dataset_options=_options(spec.get("dataset_options"), f"{where}.train.dataset_options"),
        )
    checkpoint = Path(os.path.expanduser(str(table["checkpoint"]))) if table.get("checkpoint") else None
    return MethodEntry(str(table["name"]), _options(table.get("options"), f"{where}.options"), checkpoint, train,
                       bool(table.get("untrained", False)))


def _dataset(item: Any, where: str) -> DatasetEntry:
    if isinstance(item, str):
        return DatasetEntry(item)
    table = _mapping(item, where, {"name", "split", "options", "limit", "data_root", "metrics"})
    if "name" not in table:
        raise UsageError(f"{where}: needs a 'name'")
    limit = _positive(table["limit"], f"{where}.limit") if table.get("limit") is not None else None
    root = Path(os.path.expanduser(str(table["data_root"]))) if table.get("data_root") else None
    metrics = None
    if table.get("metrics") is not None:
        metrics = tuple(_metric(m, f"{where}.metrics[{i}]") for i, m in enumerate(_list(table, "metrics", where)))
    return DatasetEntry(str(table["name"]), table.get("split"), _options(table.get("options"), f"{where}.options"),
                        limit, root, metrics)


def _metric(item: Any, where: str) -> MetricEntry:
    if isinstance(item, str):
        return MetricEntry(item)
    table = _mapping(item, where, {"label", "params"})
    if "label" not in table:
        raise UsageError(f"{where}: needs a 'label' (NAME or NAME@TAG)")
    return MetricEntry(str(table["label"]), _options(table.get("params"), f"{where}.params"))


# -- a suite from the plugins --------------------------------------------------------------------
def suite_from_plugins(
    plugins: Plugins, checkpoints: Mapping[str, Path], metrics: tuple[MetricEntry, ...] | None
) -> Suite:
    """Every registered method (those needing weights only when given some) × every dataset."""
    methods = []
    for name in plugins.methods:
        cls = plugins.methods.get(name)
        if name in checkpoints:
            methods.append(MethodEntry(name, checkpoint=checkpoints[name]))
        elif not _needs_weights(cls):
            methods.append(MethodEntry(name))
    datasets = tuple(DatasetEntry(name) for name in plugins.datasets)
    return Suite("all", "every compatible method × dataset pair", tuple(methods), datasets, metrics, PLUGINS_SOURCE)


def _needs_weights(cls: type[Method]) -> bool:
    """Methods that need a checkpoint (or outputs made elsewhere) and have none in the torch hub cache
    cannot run unattended."""
    if cls.scores_external_outputs:
        return True
    if cls.weights_filename:
        from ..checkpoints import find_weights

        try:
            find_weights(cls.weights_filename)
            return False
        except DataError:
            return True
    return cls.needs_checkpoint


# -- pairing and filtering -----------------------------------------------------------------------
def _patterns(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _matches(name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def pairings(
    suite: Suite, plugins: Plugins, methods: str | None = None, datasets: str | None = None, tasks: str | None = None
) -> list[Pairing]:
    """The suite's compatible (method, dataset) pairs, filtered by name globs and task names."""
    method_patterns, dataset_patterns, task_names = _patterns(methods), _patterns(datasets), set(_patterns(tasks))
    for task in task_names:
        plugins.tasks.get(task)  # unknown task → UsageError with suggestions
    if suite.pairs is not None:
        pairs = [p for p in suite.pairs if _matches(plugins.methods.canonical(p.method.name), method_patterns)
                 and _matches(plugins.datasets.canonical(p.dataset.name), dataset_patterns)
                 and (not task_names or plugins.datasets.get(p.dataset.name).task in task_names)]
        if not pairs:
            raise UsageError(f"no cell of suite {suite.name} matches the filters")
        return pairs
    chosen_methods = [m for m in suite.methods if _matches(plugins.methods.canonical(m.name), method_patterns)]
    chosen_datasets = [d for d in suite.datasets if _matches(plugins.datasets.canonical(d.name), dataset_patterns)]
    pairs = []
    for method in chosen_methods:
        method_cls = plugins.methods.get(method.name)
        for dataset in chosen_datasets:
            task = plugins.datasets.get(dataset.name).task
            if task in method_cls.tasks and (not task_names or task in task_names):
                pairs.append(Pairing(method, dataset, dataset.metrics if dataset.metrics is not None else suite.metrics))
    if not pairs:
        filters = ", ".join(f"{flag} {value}" for flag, value in
                            (("--method", methods), ("--dataset", datasets), ("--task", tasks)) if value)
        raise UsageError(f"no compatible method × dataset pair in {suite.source}" + (f" matches {filters}" if filters else ""))
    return pairs
