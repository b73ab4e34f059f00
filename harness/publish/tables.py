"""Join measured runs with the numbers the papers report, one table per leaderboard dataset.

A measured value is shown next to a reported one only when both were computed with the same
convention; otherwise the cell says "incomparable" and why. Every measured mean carries a seeded
bootstrap interval from its per-sample values, and measured rows that are not significantly
different from the best measured row (paired sign-flip test on the shared samples) are marked; with
too few shared samples for that test to reach ALPHA the mark says so instead of "tied".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from . import stats
from .definitions import ChartSpec, ConventionSpec, DatasetSpec, Leaderboard, MetricSpec, ReportedRow
from .records import Measured, Run

ALPHA = 0.05
Versions = Mapping[tuple[str, str], str]
"""(kind, name) → version of the plugin installed now, kind one of method/metric, to flag stale rows."""


@dataclasses.dataclass
class Cell:
    value: float | None = None
    ci: stats.Interval | None = None
    convention: str | None = None
    comparable: bool = True
    reason: str = ""
    delta: float | None = None
    delta_note: str = ""
    best: bool = False
    tied: bool = False
    """Not significantly different from the best measured row (paired test, p >= ALPHA)."""
    too_few: int | None = None
    """The number of pairs with the best measured row when they are too few for the paired test to ever
    reach ALPHA (2 / 2^n >= ALPHA): whether this row differs from the best cannot be told, so it is
    not marked tied either."""
    p_value: float | None = None
    label: str = ""
    n: int | None = None
    over: str | None = None
    """The dataset option this cell averages over (the leaderboard dataset's ``mean_over``), if any."""
    parts: dict[str, float] | None = None
    """Option value → that experiment's value, for a cell that is their mean."""

    @property
    def too_few_min_p(self) -> float | None:
        """The smallest p-value the paired test could give with ``too_few`` pairs (>= ALPHA)."""
        return stats.sign_flip_min_p(self.too_few) if self.too_few else None

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ci"] = self.ci.as_dict() if self.ci else None
        return data


@dataclasses.dataclass
class Row:
    kind: str
    """"measured" or "reported"."""
    method: str
    cells: dict[str, Cell]
    run: Run | None = None
    reported: ReportedRow | None = None
    matched: ReportedRow | None = None
    """The paper row a measured row reproduces (its Δ is taken against it)."""
    badges: list[str] = dataclasses.field(default_factory=list)
    over: str | None = None
    """The dataset option a ``mean_over`` row averages over; `parts` holds one run per value."""
    parts: dict[str, Run] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "method": self.method, "badges": self.badges,
                                "cells": {key: cell.as_dict() for key, cell in self.cells.items()}}
        if self.run:
            data["run"] = _run_summary(self.run)
        if self.over:
            data["mean_over"] = {"option": self.over, "found": len(self.parts),
                                 "runs": {value: _run_summary(run) for value, run in self.parts.items()}}
        if self.reported:
            data["source"] = dataclasses.asdict(self.reported.source)
            data["note"] = self.reported.note
            data["copied_from"] = self.reported.copied_from
        if self.matched:
            data["reproduces"] = f"{self.matched.method} ({self.matched.source.table})"
        return data


@dataclasses.dataclass
class Table:
    dataset: str
    split: str
    title: str
    columns: list[MetricSpec]
    rows: list[Row]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "split": self.split, "title": self.title,
            "columns": [dataclasses.asdict(c) | {"column": c.column} for c in self.columns],
            "rows": [row.as_dict() for row in self.rows],
        }


@dataclasses.dataclass
class Chart:
    spec: ChartSpec
    points: list[tuple[float, float, str, str]]
    """(x, y, method, run id)."""


@dataclasses.dataclass
class Board:
    leaderboard: Leaderboard
    tables: list[Table]
    charts: list[Chart]
    runs: list[Run]

    def as_dict(self) -> dict[str, Any]:
        board = self.leaderboard
        return {
            "name": board.name, "title": board.title, "task": board.task, "description": board.description,
            "papers": board.papers,
            "conventions": {name: dataclasses.asdict(c) for name, c in board.conventions.items()},
            "tables": [table.as_dict() for table in self.tables],
        }


def _run_summary(run: Run) -> dict[str, Any]:
    return {"run_id": run.run_id, "created": run.created, "status": run.status,
            "options": run.record["method"].get("options", {}), "checkpoint_sha256": run.checkpoint_sha256}


# -- conventions -----------------------------------------------------------------------------------
def lookup(measured: Measured, path: str) -> Any:
    """A dotted path into a measured value: ``params.X``, ``convention.X``, ``metric``, ``version``, ``label``."""
    head, _, rest = path.partition(".")
    roots = {"params": measured.params, "convention": measured.convention, "details": measured.details,
             "metric": measured.metric, "version": measured.version, "label": measured.label}
    value: Any = roots.get(head, _MISSING)
    for part in rest.split(".") if rest else ():
        value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
    return value


_MISSING = object()


def matches(convention: ConventionSpec, measured: Measured, dataset: str) -> bool:
    return all(_same(lookup(measured, path), want) for path, want in convention.requirements(dataset).items())


def _same(got: Any, want: Any) -> bool:
    if got is _MISSING:
        return False
    if isinstance(want, list) and isinstance(got, (list, tuple)):
        return list(got) == want
    return got == want or (isinstance(want, (int, float)) and isinstance(got, (int, float)) and float(got) == float(want))


def convention_of(board: Leaderboard, measured: Measured, dataset: str) -> str | None:
    """The first named convention of the leaderboard that the measured value satisfies."""
    return next((name for name, c in board.conventions.items() if matches(c, measured, dataset)), None)


# -- building --------------------------------------------------------------------------------------
def build(board: Leaderboard, runs: list[Run], versions: Versions | None = None) -> Board:
    versions = versions or {}
    tables = []
    for dataset in board.datasets:
        columns = list(board.metrics)
        candidates = [r for r in runs if r.dataset == dataset.name and r.split == dataset.split]
        rows = [_reported_row(board, reported, dataset.name, columns)
                for reported in board.reported if dataset.name in reported.values]
        if dataset.mean_over is None:
            rows += [_measured_row(board, run, dataset.name, columns, versions) for run in _latest_per_configuration(candidates)]
        else:
            rows += [_mean_row(board, group, dataset, columns, versions)
                     for group in _experiments(candidates, dataset.mean_over)]
        _mark_best(rows, columns)
        if rows:
            tables.append(Table(dataset.name, dataset.split, dataset.title, columns, rows))
    charts = [Chart(spec, _chart_points(spec, runs)) for spec in board.charts]
    used = [row.run for table in tables for row in table.rows if row.run]
    return Board(board, tables, charts, used)


def _configuration(run: Run, without: str | None = None) -> str:
    """What makes two runs the same row: method, its options, checkpoint, dataset options, limit and the
    metric configurations. ``without`` names a dataset option left out, and with it the checkpoint:
    its values are separate experiments, each with its own trained model."""
    method, dataset = run.record["method"], run.record["dataset"]
    options = {k: v for k, v in (dataset.get("options") or {}).items() if k != without}
    return json.dumps([run.method, method.get("options"), None if without else run.checkpoint_sha256, options,
                       dataset.get("limit"), sorted({(m.label, m.protocol_digest) for m in run.values})],
                      sort_keys=True, default=str)


def _latest_per_configuration(runs: list[Run]) -> list[Run]:
    """One row per method configuration and checkpoint: its latest run (runs come oldest first)."""
    latest: dict[str, Run] = {run_key: run for run_key, run in ((_configuration(run), run) for run in runs)}
    return sorted(latest.values(), key=lambda run: run.created)


def _experiments(runs: list[Run], option: str) -> list[dict[str, Run]]:
    """Runs grouped by configuration apart from the dataset ``option``: per group, option value → the
    latest run with that value. Values missing from the record count as the option's recorded absence."""
    groups: dict[str, dict[str, Run]] = {}
    for run in runs:
        value = str((run.record["dataset"].get("options") or {}).get(option))
        groups.setdefault(_configuration(run, without=option), {})[value] = run
    ordered = [dict(sorted(group.items(), key=lambda item: _natural(item[0]))) for group in groups.values()]
    return sorted(ordered, key=lambda group: max(run.created for run in group.values()))


def _natural(value: str) -> tuple[int, float, str]:
    """Numeric option values (trial 2 before trial 10) first, in numeric order; others by text."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _reported_row(board: Leaderboard, reported: ReportedRow, dataset: str, columns: list[MetricSpec]) -> Row:
    cells: dict[str, Cell] = {}
    values = reported.values[dataset]
    for spec in columns:
        if spec.key not in values:
            continue
        convention = reported.convention(spec.key)
        homes = [c for c in columns if c.key == spec.key and c.convention == convention]
        if homes and homes[0] is not spec:
            continue  # shown in the column of its own convention
        if not homes and spec is not board.metrics_for(spec.key)[0]:
            continue
        cell = Cell(value=values[spec.key], convention=convention)
        if spec.convention is not None and convention != spec.convention:
            cell.comparable = False
            cell.reason = (_unstated(reported) if convention is None
                           else f"computed with {convention}, this column ranks {spec.convention}")
        cells[spec.column] = cell
    badges = ["copied"] if reported.copied_from else []
    return Row("reported", reported.method, cells, reported=reported, badges=badges)


def _measured_row(board: Leaderboard, run: Run, dataset: str, columns: list[MetricSpec], versions: Versions) -> Row:
    matched = _paper_row(board, run, dataset)
    row = Row("measured", _display_name(run), {}, run=run, matched=matched)
    _badges(row, [run], columns, versions)
    unmet = _unmet(matched, run) if matched is not None else ""
    for spec in columns:
        cell = _measured_cell(board, run, dataset, spec, columns)
        if cell is None:
            continue
        _against_paper(cell, spec, matched, unmet, dataset)
        row.cells[spec.column] = cell
    return row


def _against_paper(cell: Cell, spec: MetricSpec, paper: ReportedRow | None, unmet: str, dataset: str) -> None:
    """Δ to the reproduced paper row, unless the run misses a condition the row ``requires`` (``unmet``):
    then the cell is incomparable, naming it."""
    if paper is None or not cell.comparable:
        return
    if unmet and spec.key in paper.values.get(dataset, {}):
        cell.comparable, cell.reason = False, unmet
        return
    _delta(cell, spec, paper, dataset)


def _unmet(paper: ReportedRow, run: Run) -> str:
    """Which of the paper row's ``requires`` the run does not meet ('' when all hold). A key is a method
    option, ``dataset.OPTION`` (the run's dataset options) or ``training.PATH`` (the training manifest's
    identity recorded with the run, e.g. ``training.dataset_options.target_train``)."""
    wrong = []
    for key, want in paper.requires.items():
        got = _required_field(run, key)
        if _normalise(got) != _normalise(want):
            wrong.append(f"{key}={want} (this run: {'not recorded' if got is _MISSING else got})")
    return f"the paper's number needs {', '.join(wrong)}" if wrong else ""


def _required_field(run: Run, key: str) -> Any:
    head, _, rest = key.partition(".")
    if head == "dataset" and rest:
        value: Any = run.record["dataset"].get("options") or {}
    elif head == "training" and rest:
        value = run.record["method"].get("training") or {}
    else:
        value, rest = run.record["method"].get("options") or {}, key
    for part in rest.split("."):
        value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
    return value


def _mean_row(board: Leaderboard, parts: dict[str, Run], dataset: DatasetSpec, columns: list[MetricSpec],
              versions: Versions) -> Row:
    """One configuration run once per value of the dataset's ``mean_over`` option (e.g. RegDB's ten
    trials, each its own model): each cell is the mean of the experiments' values, with the
    per-experiment values kept. Its interval bootstraps over the experiments (the samples of different
    trials are different people). A value scored with a checkpoint trained on another value of the
    option is left out of the mean (its training data are that value's test data); a mean over fewer
    values than the reported numbers average (``mean_of``) is shown but not comparable."""
    option = dataset.mean_over
    assert option is not None
    refused = {value: trained for value, run in parts.items()
               if (trained := _trained_on_other(run, option, value)) is not None}
    usable = {value: run for value, run in parts.items() if value not in refused}
    latest = max(parts.values(), key=lambda run: run.created)
    matched = _paper_row(board, latest, dataset.name)
    row = Row("measured", f"{latest.method} (mean over {len(usable)} × {option})", {}, run=latest, matched=matched,
              over=option, parts=usable)
    _badges(row, list(parts.values()), columns, versions)
    if refused:
        row.badges.append("refused")
    short = dataset.mean_of is not None and len(usable) < dataset.mean_of
    unmet = _unmet(matched, latest) if matched is not None else ""
    for spec in columns:
        found = {value: _measured_cell(board, run, dataset.name, spec, columns) for value, run in usable.items()}
        cells = {value: cell for value, cell in found.items() if cell is not None and cell.value is not None}
        if not cells:
            continue
        comparable = [cell for cell in cells.values() if cell.comparable]
        if comparable and len(comparable) != len(cells):
            cells = {value: cell for value, cell in cells.items() if cell.comparable}
        first = next(iter(cells.values()))
        values = {value: float(cell.value) for value, cell in cells.items()}
        cell = Cell(value=sum(values.values()) / len(values), convention=first.convention, comparable=first.comparable,
                    reason=first.reason, label=first.label, over=option, parts=values)
        if (short or refused) and cell.comparable:
            cell.comparable = False
            cell.reason = _short_reason(dataset, len(values), refused)
        if len(values) >= 2:
            cell.ci = stats.bootstrap_ci(list(values.values()))
        _against_paper(cell, spec, matched, unmet, dataset.name)
        row.cells[spec.column] = cell
    return row


def _trained_on_other(run: Run, option: str, value: str) -> str | None:
    """The ``option`` value the run's checkpoint was trained on, when it is another value of the same
    dataset (recorded from the training manifest); None when it matches or nothing says."""
    training = run.record["method"].get("training") or {}
    if training.get("dataset") != run.dataset:
        return None
    trained = (training.get("dataset_options") or {}).get(option)
    return None if trained is None or str(trained) == value else str(trained)


def _short_reason(dataset: DatasetSpec, found: int, refused: dict[str, str]) -> str:
    reason = (f"mean over {found} of the {dataset.mean_of} {dataset.mean_over} values the paper averages"
              if dataset.mean_of is not None and found < dataset.mean_of else f"mean over {found} {dataset.mean_over} values")
    if refused:
        reason += "; left out: " + ", ".join(
            f"{dataset.mean_over} {value} (checkpoint trained on {dataset.mean_over} {trained})"
            for value, trained in refused.items())
    return reason


def _badges(row: Row, runs: list[Run], columns: list[MetricSpec], versions: Versions) -> None:
    """"failed" when a run failed; "stale" when a run's method, or a metric plugin of a column, has
    another version installed now than the record."""
    if any(run.failed for run in runs):
        row.badges.append("failed")
    shown = {spec.metric for spec in columns}
    stale = any(versions.get(("method", run.method), run.method_version) != run.method_version for run in runs)
    stale = stale or any(versions.get(("metric", m.metric), m.version) != m.version
                         for run in runs for m in run.values if m.metric in shown)
    if stale:
        row.badges.append("stale")


def _measured_cell(board: Leaderboard, run: Run, dataset: str, spec: MetricSpec, columns: list[MetricSpec]) -> Cell | None:
    """The run's value for a column: of the column's convention (with its bootstrap interval over the
    samples), or marked incomparable in the first column of its key when no column admits it."""
    candidates = [m for m in run.values if m.metric == spec.metric and m.key == spec.key]
    if not candidates:
        return None
    named = [(m, convention_of(board, m, dataset)) for m in candidates]
    chosen = next(((m, c) for m, c in named if spec.convention is None or c == spec.convention), None)
    if chosen is None:
        if any(spec is other for other in _home_columns(columns, spec, named)):
            measured, convention = named[0]
            return Cell(
                value=measured.value, convention=convention, comparable=False, label=measured.label, n=measured.n,
                reason=f"computed with {convention or 'an unnamed convention'}, this column ranks {spec.convention}",
            )
        return None
    measured, convention = chosen
    cell = Cell(value=measured.value, convention=convention, label=measured.label, n=measured.n)
    if measured.per_sample:
        cell.ci = stats.bootstrap_ci(list(measured.per_sample.values()))
    return cell


def _home_columns(columns: list[MetricSpec], spec: MetricSpec, named: list[tuple[Measured, str | None]]) -> list[MetricSpec]:
    """Where to show a value no column's convention admits: the first column of its key, once."""
    if any(c.key == spec.key and (c.convention is None or c.convention == conv) for c in columns for _, conv in named):
        return []
    return [next(c for c in columns if c.key == spec.key)]


def _delta(cell: Cell, spec: MetricSpec, paper: ReportedRow, dataset: str) -> None:
    reported = paper.values.get(dataset, {}).get(spec.key)
    if reported is None or cell.value is None:
        return
    paper_convention = paper.convention(spec.key)
    if paper_convention is None:
        why = _unstated(paper) if paper.copied_from else "its convention is not stated"
        cell.delta_note = f"no Δ to the paper's {reported:g}: {why}"
    elif paper_convention != cell.convention:
        cell.delta_note = f"no Δ to the paper's {reported:g}: computed with {paper_convention}, this with {cell.convention}"
    else:
        cell.delta = cell.value - reported
        cell.delta_note = f"paper {reported:g} ({paper.source.table})"


def _unstated(reported: ReportedRow) -> str:
    """Why a reported number has no convention: a number the paper copied says where it came from."""
    if reported.copied_from:
        return f"copied by {reported.source.paper} ({reported.copied_from}); how it was computed is not stated"
    return "the paper does not state how this number was computed"


def _paper_row(board: Leaderboard, run: Run, dataset: str) -> ReportedRow | None:
    """The most specific reported row on ``dataset`` whose harness method and options the run satisfies;
    among rows as specific, the one whose ``requires`` the run meets, else the one it meets most of (rows
    apart only by how the weights were trained: SPT's Table 4 rows, one per number of candidates)."""
    options = run.record["method"].get("options") or {}
    best: tuple[tuple[int, bool, int], ReportedRow] | None = None
    for reported in board.reported:
        if reported.harness_method != run.method or dataset not in reported.values:
            continue
        if any(_normalise(options.get(k)) != _normalise(v) for k, v in reported.harness_options.items()):
            continue
        met = sum(_normalise(_required_field(run, k)) == _normalise(v) for k, v in reported.requires.items())
        score = (len(reported.harness_options), met == len(reported.requires), met)
        if best is None or score > best[0]:
            best = (score, reported)
    return best[1] if best else None


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _display_name(run: Run) -> str:
    """Method and checkpoint digest; the options are listed under the name on the page."""
    checkpoint = f" @{run.checkpoint_sha256[:8]}" if run.checkpoint_sha256 else ""
    return f"{run.method}{checkpoint}"


def _mark_best(rows: list[Row], columns: list[MetricSpec]) -> None:
    for spec in columns:
        ranked = [(row, row.cells[spec.column]) for row in rows
                  if spec.column in row.cells and row.cells[spec.column].comparable
                  and row.cells[spec.column].value is not None and "failed" not in row.badges]
        if not ranked:
            continue
        sign = 1 if spec.higher_is_better else -1
        top = max(sign * cell.value for _, cell in ranked)
        for _, cell in ranked:
            cell.best = sign * cell.value == top
        measured = [(row, cell) for row, cell in ranked if row.kind == "measured" and row.run]
        if len(measured) < 2:
            continue
        leader_row, leader = max(measured, key=lambda pair: sign * pair[1].value)
        leader_values = _paired_values(leader_row, leader, spec)
        for row, cell in measured:
            if row is leader_row or not leader_values:
                continue
            other = _paired_values(row, cell, spec)
            differences = stats.paired_differences(leader_values, other) if other else []
            if not differences:
                continue
            cell.p_value = stats.sign_flip_test(differences).p_value
            if stats.sign_flip_min_p(len(differences)) >= ALPHA:
                cell.too_few = len(differences)  # p >= ALPHA whatever the data: no evidence of a tie
            else:
                cell.tied = cell.p_value >= ALPHA


def _paired_values(row: Row, cell: Cell, spec: MetricSpec) -> dict[str, float] | None:
    """What the significance test pairs: per-experiment values of a mean cell (trial with trial),
    else the run's per-sample values."""
    if cell.parts is not None:
        return cell.parts
    measured = row.run.value(cell.label, spec.key) if row.run else None
    return measured.per_sample if measured else None


def _chart_points(spec: ChartSpec, runs: list[Run]) -> list[tuple[float, float, str, str]]:
    dataset, metric, key = spec.y
    points = []
    for run in _latest_per_configuration([r for r in runs if r.dataset == dataset and not r.failed]):
        x = next((m.value for m in run.values if m.metric == spec.x[0] and m.key == spec.x[1]), None)
        y = next((m.value for m in run.values if m.metric == metric and m.key == key), None)
        if x is not None and y is not None:
            points.append((float(x), float(y), _display_name(run), run.run_id))
    return points
