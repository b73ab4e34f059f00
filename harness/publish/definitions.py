"""Leaderboard definitions: YAML files that say what a benchmark measures and what the papers report.

The core knows nothing about any paper; every paper-specific fact (datasets, metric columns, the
conventions numbers were computed with, the reported numbers and where they were printed) lives in
``leaderboards/*.yaml``. This module parses those files into dataclasses and rejects anything
malformed with an error naming the file and the field. The schema is documented in
``docs/leaderboards.md``.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
PACKAGED = "harness_leaderboards"
"""Package holding the shipped definitions (the top-level `leaderboards/` folder of the repository)."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    split: str
    title: str
    mean_over: str | None = None
    """A dataset option (e.g. RegDB's ``trial``) whose values are separate experiments of one
    configuration: a measured cell is the mean over them, with each value's result kept."""
    mean_of: int | None = None
    """How many values of ``mean_over`` the reported numbers average (RegDB: 10 trials); a measured
    mean over fewer is shown but is not comparable (no Δ, not ranked)."""


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """One column group: a value ``key`` of ``metric`` on every dataset of the leaderboard."""

    metric: str
    key: str
    title: str
    higher_is_better: bool
    precision: int
    convention: str | None
    """The convention this column ranks by; cells computed otherwise are marked incomparable."""
    tolerance: float
    report_only: bool
    """Noisy measurements (latency): shown and reported by the gate, not gated by default."""

    @property
    def column(self) -> str:
        """Unique id of the column: the key, qualified by the convention when one is fixed."""
        return self.key if self.convention is None else f"{self.key}[{self.convention}]"


@dataclasses.dataclass(frozen=True)
class ConventionSpec:
    """A named protocol, recognised in a measured value by the fields it must hold."""

    name: str
    description: str
    match: dict[str, Any]
    per_dataset: dict[str, dict[str, Any]]

    def requirements(self, dataset: str) -> dict[str, Any]:
        return {**self.match, **self.per_dataset.get(dataset, {})}


@dataclasses.dataclass(frozen=True)
class Source:
    paper: str
    table: str
    row: str


@dataclasses.dataclass(frozen=True)
class ReportedRow:
    """A row printed in a paper, with where it was printed and how its numbers were computed."""

    method: str
    source: Source
    values: dict[str, dict[str, float | None]]
    """dataset → value key → number (None where the paper prints "–")."""
    conventions: dict[str, str | None]
    """value key → convention name (None: the paper does not say)."""
    harness_method: str | None
    harness_options: dict[str, Any]
    """Options a run must have to reproduce this row rather than another row of the same method."""
    requires: dict[str, Any]
    """Method options that are conditions of the number (e.g. the hole convention): a run matching the
    row by ``harness_options`` but not these is shown as incomparable, naming the option."""
    note: str
    copied_from: str
    unlinked: str = ""
    """Why a row whose method exists as a plugin names no ``harness_method`` (`leaderboards check`)."""

    def convention(self, key: str) -> str | None:
        return self.conventions.get(key)


@dataclasses.dataclass(frozen=True)
class ChartSpec:
    title: str
    x: tuple[str, str]
    """(metric, key) of a per-run cost such as parameters or latency."""
    y: tuple[str, str, str]
    """(dataset, metric, key) of the quality plotted."""


@dataclasses.dataclass(frozen=True)
class Leaderboard:
    name: str
    title: str
    task: str
    description: str
    papers: dict[str, str]
    datasets: tuple[DatasetSpec, ...]
    metrics: tuple[MetricSpec, ...]
    conventions: dict[str, ConventionSpec]
    reported: tuple[ReportedRow, ...]
    charts: tuple[ChartSpec, ...]
    path: Path

    def metrics_for(self, key: str) -> list[MetricSpec]:
        return [m for m in self.metrics if m.key == key]

    def tolerance(self, key: str) -> float | None:
        """The gate's tolerance for a value key: the largest of its columns' (None if not defined here)."""
        specs = self.metrics_for(key)
        return max(m.tolerance for m in specs) if specs else None

    def dataset(self, name: str) -> DatasetSpec | None:
        return next((d for d in self.datasets if d.name == name), None)


# -- loading ---------------------------------------------------------------------------------------
def packaged_dir() -> Path:
    """The definitions shipped with the harness (package data, so an installed harness finds them)."""
    return Path(str(resources.files(PACKAGED)))


def load_all(extra_dirs: list[Path] | tuple[Path, ...] = ()) -> list[Leaderboard]:
    """Shipped definitions plus every ``*.yaml`` in ``extra_dirs``; names must be unique."""
    boards: dict[str, Leaderboard] = {}
    for folder in (packaged_dir(), *map(Path, extra_dirs)):
        if not folder.is_dir():
            raise UsageError(f"--leaderboards {folder}: no such directory")
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            board = load(path)
            if board.name in boards and boards[board.name].path.resolve() != path.resolve():
                raise UsageError(f"{path}: leaderboard name {board.name!r} is already defined in {boards[board.name].path}")
            boards[board.name] = board
    return sorted(boards.values(), key=lambda board: board.name)


def load(path: Path) -> Leaderboard:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    return parse(data, Path(path))


def parse(data: Any, path: Path) -> Leaderboard:
    """Validate a loaded definition; every error names ``path`` and the offending field."""
    c = _Checker(path)
    top = c.mapping(data, "", required=("name", "title", "task", "datasets", "metrics"),
                    optional=("description", "papers", "conventions", "reported", "charts"))
    name = c.name(top["name"], "name")
    papers = {c.name(k, f"papers.{k}"): c.text(v, f"papers.{k}") for k, v in c.mapping(top.get("papers", {}), "papers").items()}

    datasets = []
    for i, item in enumerate(c.sequence(top["datasets"], "datasets", nonempty=True)):
        where = f"datasets[{i}]"
        entry = c.mapping(item, where, required=("name",), optional=("split", "title", "mean_over", "mean_of"))
        dataset_name = c.name(entry["name"], f"{where}.name")
        mean_over, mean_of = entry.get("mean_over"), entry.get("mean_of")
        if mean_of is not None and mean_over is None:
            raise UsageError(f"{path}: {where}.mean_of: needs mean_over (the dataset option it counts)")
        datasets.append(DatasetSpec(dataset_name, c.text(entry.get("split", "test"), f"{where}.split"),
                                    c.text(entry.get("title", dataset_name), f"{where}.title"),
                                    None if mean_over is None else c.name(mean_over, f"{where}.mean_over"),
                                    None if mean_of is None else c.integer(mean_of, f"{where}.mean_of", 1, 1000)))
    c.unique([d.name for d in datasets], "datasets", "name")
    dataset_names = {d.name for d in datasets}

    conventions = {}
    for key, item in c.mapping(top.get("conventions", {}), "conventions").items():
        where = f"conventions.{key}"
        entry = c.mapping(item, where, optional=("match", "description", "per_dataset"))
        if not entry.get("match") and not entry.get("per_dataset"):
            raise UsageError(f"{path}: {where}: give match and/or per_dataset (the fields a measured value must hold)")
        per_dataset = {
            c.member(d, dataset_names, f"{where}.per_dataset.{d}", "a dataset of this leaderboard"):
                c.mapping(m, f"{where}.per_dataset.{d}", nonempty=True)
            for d, m in c.mapping(entry.get("per_dataset", {}), f"{where}.per_dataset").items()
        }
        conventions[c.name(key, where)] = ConventionSpec(
            key, c.text(entry.get("description", ""), f"{where}.description"),
            c.mapping(entry.get("match", {}), f"{where}.match"), per_dataset,
        )

    metrics = []
    for i, item in enumerate(c.sequence(top["metrics"], "metrics", nonempty=True)):
        where = f"metrics[{i}]"
        entry = c.mapping(item, where, required=("metric", "key", "higher_is_better"),
                          optional=("title", "precision", "convention", "tolerance", "report_only"))
        convention = entry.get("convention")
        if convention is not None:
            c.member(convention, set(conventions), f"{where}.convention", "a name under conventions")
        metrics.append(MetricSpec(
            metric=c.name(entry["metric"], f"{where}.metric"), key=c.text(entry["key"], f"{where}.key"),
            title=c.text(entry.get("title", entry["key"]), f"{where}.title"),
            higher_is_better=c.boolean(entry["higher_is_better"], f"{where}.higher_is_better"),
            precision=c.integer(entry.get("precision", 4), f"{where}.precision", 0, 8),
            convention=convention, tolerance=c.number(entry.get("tolerance", 0.0), f"{where}.tolerance", minimum=0.0),
            report_only=c.boolean(entry.get("report_only", False), f"{where}.report_only"),
        ))
    c.unique([m.column for m in metrics], "metrics", "key and convention")
    keys = {m.key for m in metrics}

    reported = []
    for i, item in enumerate(c.sequence(top.get("reported", []), "reported")):
        where = f"reported[{i}]"
        entry = c.mapping(item, where, required=("method", "source", "values"),
                          optional=("conventions", "harness_method", "harness_options", "requires", "note",
                                    "copied_from", "unlinked"))
        source = c.mapping(entry["source"], f"{where}.source", required=("paper", "table", "row"))
        paper = c.member(source["paper"], set(papers), f"{where}.source.paper", "a key under papers")
        values: dict[str, dict[str, float | None]] = {}
        for dataset, row in c.mapping(entry["values"], f"{where}.values", nonempty=True).items():
            c.member(dataset, dataset_names, f"{where}.values.{dataset}", "a dataset of this leaderboard")
            values[dataset] = {
                c.member(k, keys, f"{where}.values.{dataset}.{k}", "a metric key of this leaderboard"):
                    None if v is None else c.number(v, f"{where}.values.{dataset}.{k}")
                for k, v in c.mapping(row, f"{where}.values.{dataset}", nonempty=True).items()
            }
        given = entry.get("conventions", {})
        if isinstance(given, str) or given is None:
            given = {key: given for key in keys}
        row_conventions = {
            c.member(k, keys, f"{where}.conventions.{k}", "a metric key of this leaderboard"):
                None if v is None else c.member(v, set(conventions), f"{where}.conventions.{k}", "a name under conventions")
            for k, v in c.mapping(given, f"{where}.conventions").items()
        }
        harness_method = entry.get("harness_method")
        reported.append(ReportedRow(
            method=c.text(entry["method"], f"{where}.method"),
            source=Source(paper, c.text(source["table"], f"{where}.source.table"), c.text(source["row"], f"{where}.source.row")),
            values=values, conventions=row_conventions,
            harness_method=None if harness_method is None else c.name(harness_method, f"{where}.harness_method"),
            harness_options=c.mapping(entry.get("harness_options", {}), f"{where}.harness_options"),
            requires=c.mapping(entry.get("requires", {}), f"{where}.requires"),
            note=c.text(entry.get("note", ""), f"{where}.note"),
            copied_from=c.text(entry.get("copied_from", ""), f"{where}.copied_from"),
            unlinked=c.text(entry.get("unlinked", ""), f"{where}.unlinked"),
        ))

    charts = []
    for i, item in enumerate(c.sequence(top.get("charts", []), "charts")):
        where = f"charts[{i}]"
        entry = c.mapping(item, where, required=("x", "y"), optional=("title",))
        x = c.mapping(entry["x"], f"{where}.x", required=("metric", "key"))
        y = c.mapping(entry["y"], f"{where}.y", required=("dataset", "metric", "key"))
        c.member(y["dataset"], dataset_names, f"{where}.y.dataset", "a dataset of this leaderboard")
        charts.append(ChartSpec(
            c.text(entry.get("title", f"{y['key']} against {x['key']}"), f"{where}.title"),
            (c.name(x["metric"], f"{where}.x.metric"), c.text(x["key"], f"{where}.x.key")),
            (y["dataset"], c.name(y["metric"], f"{where}.y.metric"), c.text(y["key"], f"{where}.y.key")),
        ))

    return Leaderboard(
        name=name, title=c.text(top["title"], "title"), task=c.name(top["task"], "task"),
        description=c.text(top.get("description", ""), "description"), papers=papers,
        datasets=tuple(datasets), metrics=tuple(metrics), conventions=conventions,
        reported=tuple(reported), charts=tuple(charts), path=path,
    )


class _Checker:
    """Small typed accessors whose errors all read ``FILE: FIELD: expected ..., got ...``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, expected: str, got: Any) -> UsageError:
        field = where or "top level"
        return UsageError(f"{self.path}: {field}: expected {expected}, got {got!r}")

    def mapping(self, value: Any, where: str, required: tuple[str, ...] = (), optional: tuple[str, ...] | None = None,
                nonempty: bool = False) -> dict[str, Any]:
        if not isinstance(value, dict) or (nonempty and not value):
            raise self.fail(where, "a non-empty mapping" if nonempty else "a mapping", value)
        missing = [key for key in required if key not in value]
        if missing:
            raise UsageError(f"{self.path}: {where or 'top level'}: missing field(s) {', '.join(missing)}")
        if optional is not None:
            unknown = sorted(set(map(str, value)) - set(required) - set(optional))
            if unknown:
                allowed = ", ".join((*required, *optional))
                raise UsageError(f"{self.path}: {where or 'top level'}: unknown field(s) {', '.join(unknown)} (allowed: {allowed})")
        return {str(key): item for key, item in value.items()}

    def sequence(self, value: Any, where: str, nonempty: bool = False) -> list[Any]:
        if not isinstance(value, list) or (nonempty and not value):
            raise self.fail(where, "a non-empty list" if nonempty else "a list", value)
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.fail(where, "a string", value)
        return str(value)

    def name(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not NAME.match(value):
            raise self.fail(where, "a lower-case name (letters, digits, . _ -)", value)
        return value

    def number(self, value: Any, where: str, minimum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (minimum is not None and value < minimum):
            raise self.fail(where, "a number" + (f" >= {minimum}" if minimum is not None else ""), value)
        return float(value)

    def integer(self, value: Any, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(where, f"an integer in {low}..{high}", value)
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "true or false", value)
        return value

    def member(self, value: Any, allowed: set[str], where: str, what: str) -> str:
        if value not in allowed:
            raise UsageError(f"{self.path}: {where}: expected {what} ({', '.join(sorted(allowed)) or 'none defined'}), got {value!r}")
        return value

    def unique(self, values: list[str], where: str, field: str) -> None:
        seen = set()
        for value in values:
            if value in seen:
                raise UsageError(f"{self.path}: {where}: {field} {value!r} appears twice")
            seen.add(value)
