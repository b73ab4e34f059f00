"""Paper suites: the cells of a paper's tables, derived from a leaderboard definition.

A leaderboard already holds every fact a paper's table needs: which rows the harness implements
(``harness_method`` + ``harness_options``), on which datasets each row has numbers, the split, and
the convention each number was computed with. So a paper suite is not written by hand (it would
repeat, and drift from, the board): every linked reported row × every board dataset where that row
prints a number is one cell. The cell's metrics are the board's columns of the keys the row prints;
their parameters are the ``params.*`` requirements of the convention the row names for the key (or,
where the row names none, of the column's convention), per dataset. A dataset the board averages
over an option (``mean_over``/``mean_of``: RegDB's 10 trials) becomes one cell per value. Rows that
differ only in how the weights were trained (``requires: {training.…}``, e.g. SPT's Table 4: one H_S per
number of pseudo-label candidates) are separate cells, each needing a checkpoint trained that way.

The core stays paper-agnostic: this module reads any leaderboard the same way. Which cells can run
(data present, weights present) is decided per cell and reported, never guessed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..api import Method
from ..checkpoints import hub_checkpoint_dir
from ..data import resolve_data_root
from ..errors import DataError, UsageError
from ..plugins import Plugins
from ..publish.definitions import Leaderboard, load_all
from ..run.cells import training_identity
from .suite import DatasetEntry, MethodEntry, MetricEntry, Pairing, Suite

PAPER_SOURCE = "leaderboard"
"""Prefix of `Suite.source` for suites derived from a leaderboard (``leaderboard:<path>``)."""

NOT_PARAMS = ("convention.overrides",)
"""Convention requirements that hold by default (no override given) and are not metric parameters."""


@dataclasses.dataclass(frozen=True)
class PaperCell:
    """One cell of a paper's table: a linked method configuration on one dataset (one trial)."""

    method: str
    options: Mapping[str, Any]
    dataset: str
    split: str
    dataset_options: Mapping[str, Any]
    metrics: tuple[MetricEntry, ...]
    conventions: Mapping[str, str | None]
    """Value key → the convention the cell is scored with (None: the metric's default)."""
    requirements: tuple[str, ...]
    """Conditions of the reported number that are not metric parameters (e.g. which gallery file),
    which the data must meet for a Δ."""
    fills: tuple[str, ...]
    """``table: row`` of every reported row this cell is compared with."""
    trained: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The row's ``training.*`` requirements (path → value): how the checkpoint must have been trained."""

    @property
    def key(self) -> str:
        return json.dumps([self.method, self.options, self.dataset, self.dataset_options, self.trained],
                          sort_keys=True, default=str)

    def label(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.options.items())
        dataset_options = ", ".join(f"{k}={v}" for k, v in self.dataset_options.items())
        method = f"{self.method}({options})" if options else self.method
        dataset = f"{self.dataset}({dataset_options})" if dataset_options else self.dataset
        trained = ", ".join(f"{k.rpartition('.')[2]}={_plain(v)}" for k, v in self.trained.items())
        return f"{method} × {dataset}" + (f" [trained with {trained}]" if trained else "")


def _plain(value: Any) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, list) else str(value)


@dataclasses.dataclass(frozen=True)
class PaperSuite:
    name: str
    board: Leaderboard
    cells: tuple[PaperCell, ...]

    @property
    def tables(self) -> list[str]:
        """The paper tables the suite fills, in the board's order."""
        seen: dict[str, None] = {}
        for row in self.board.reported:
            if row.harness_method:
                seen.setdefault(f"{row.source.paper} {row.source.table}", None)
        return list(seen)


# -- deriving --------------------------------------------------------------------------------------
def paper_suites(boards: list[Leaderboard] | None = None) -> dict[str, PaperSuite | None]:
    """Every leaderboard by name: its paper suite, or None when no reported row is linked."""
    return {board.name: paper_suite(board) for board in (boards if boards is not None else load_all())}


def paper_suite(board: Leaderboard) -> PaperSuite | None:
    cells: dict[str, PaperCell] = {}
    for row in board.reported:
        if not row.harness_method:
            continue
        for spec in board.datasets:
            printed = [key for key, value in row.values.get(spec.name, {}).items() if value is not None]
            if not printed:
                continue
            metrics, conventions, requirements = _metrics(board, row.conventions, spec.name, printed)
            # The row's own conditions (a method option, a dataset option, how the weights were trained) hold
            # for every number it prints: without them a measured value is incomparable too.
            requirements = (*requirements, *(f"{key} = {value}" for key, value in row.requires.items()))
            trained = {key: value for key, value in row.requires.items() if key.startswith("training.")}
            fill = f"{row.source.table}: {row.source.row}"
            for dataset_options in _experiments(board, spec.name):
                cell = PaperCell(row.harness_method, dict(row.harness_options), spec.name, spec.split, dataset_options,
                                 metrics, conventions, requirements, (fill,), trained)
                known = cells.get(cell.key)
                if known is None:
                    cells[cell.key] = cell
                else:  # the same configuration fills another row (Hi-CMD's Table 1 and Table 2)
                    cells[cell.key] = dataclasses.replace(
                        known, metrics=_union(known.metrics, metrics),
                        conventions={**known.conventions, **conventions},
                        requirements=tuple(dict.fromkeys((*known.requirements, *requirements))),
                        fills=(*known.fills, fill))
    return PaperSuite(board.name, board, tuple(cells.values())) if cells else None


def _experiments(board: Leaderboard, dataset: str) -> list[dict[str, Any]]:
    """The dataset options of each experiment the reported number averages (one empty set if none)."""
    spec = board.dataset(dataset)
    if spec is None or spec.mean_over is None:
        return [{}]
    count = spec.mean_of or 1
    return [{spec.mean_over: value} for value in range(1, count + 1)]


def _metrics(board: Leaderboard, row_conventions: Mapping[str, str | None], dataset: str,
             keys: list[str]) -> tuple[tuple[MetricEntry, ...], dict[str, str | None], tuple[str, ...]]:
    """The metric entries scoring ``keys`` the way the row's numbers were computed."""
    wanted: dict[tuple[str, str | None], None] = {}
    conventions: dict[str, str | None] = {}
    for key in keys:
        columns = board.metrics_for(key)
        named = row_conventions.get(key)
        choices = [named] if named is not None else list(dict.fromkeys(c.convention for c in columns)) or [None]
        conventions[key] = choices[0]
        for column in columns:
            for convention in choices:
                if column.convention in (None, convention):
                    wanted.setdefault((column.metric, convention), None)
    per_metric: dict[str, int] = {}
    for metric, _ in wanted:
        per_metric[metric] = per_metric.get(metric, 0) + 1
    entries, requirements = [], []
    for metric, convention in wanted:
        params: dict[str, Any] = {}
        if convention is not None:
            for path, value in board.conventions[convention].requirements(dataset).items():
                if path.startswith("params."):
                    params[path[len("params."):]] = value
                elif path not in NOT_PARAMS:
                    requirements.append(f"{path} = {value}")
        label = metric if per_metric[metric] == 1 or convention is None else f"{metric}@{convention}"
        entries.append(MetricEntry(label, params))
    return tuple(entries), conventions, tuple(dict.fromkeys(requirements))


def _union(first: tuple[MetricEntry, ...], second: tuple[MetricEntry, ...]) -> tuple[MetricEntry, ...]:
    labels = {entry.label for entry in first}
    return (*first, *(entry for entry in second if entry.label not in labels))


# -- checking what a cell needs --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CellCheck:
    """Whether a cell can run here, and where that was looked up."""

    cell: PaperCell
    data_root: Path
    data_ok: bool
    data_note: str
    weights: str
    """``present``, ``missing``, ``other training`` (its training manifest misses the cell's ``training.*``
    requirements), ``untrained`` (seeded random weights, on request) or ``not needed``."""
    weights_note: str
    checkpoint: Path | None
    training: str
    training_steps: int | None
    steps_declared: bool
    shape: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The options shaping the network (`Method.model_options`, e.g. a width) the checkpoint was trained with,
    which the cell runs with where the row sets none (the weights load into that shape only)."""

    @property
    def runnable(self) -> bool:
        return self.data_ok and self.weights not in ("missing", "other training")

    @property
    def skip_reason(self) -> str:
        reasons = ([] if self.data_ok else [f"data missing ({self.data_note})"]) + \
                  ([f"weights {self.weights} ({self.weights_note})"] if self.weights in ("missing", "other training")
                   else [])
        return "; ".join(reasons)

    def as_dict(self) -> dict[str, Any]:
        cell = self.cell
        return {
            "method": cell.method, "options": dict(cell.options), "dataset": cell.dataset, "split": cell.split,
            "dataset_options": dict(cell.dataset_options),
            "metrics": [{"label": m.label, "params": dict(m.params)} for m in cell.metrics],
            "conventions": dict(cell.conventions), "requirements": list(cell.requirements), "fills": list(cell.fills),
            "trained": dict(cell.trained),
            "data": {"present": self.data_ok, "root": str(self.data_root), "note": self.data_note},
            "weights": {"state": self.weights, "note": self.weights_note,
                        "checkpoint": None if self.checkpoint is None else str(self.checkpoint)},
            "training": {"recipe": self.training, "steps": self.training_steps, "steps_declared": self.steps_declared},
            "runnable": self.runnable, "skip": self.skip_reason or None, "trained_shape": dict(self.shape),
        }


def check_cell(cell: PaperCell, plugins: Plugins, data_roots: Mapping[str, Path],
               checkpoints: Mapping[str, str], untrained: bool) -> CellCheck:
    method_cls = plugins.methods.get(cell.method)
    dataset_cls = plugins.datasets.get(cell.dataset)
    root = resolve_data_root(dataset_cls.name, data_roots.get(dataset_cls.name))
    data_ok, data_note = _data(dataset_cls, root, cell)
    weights, weights_note, checkpoint = _weights(method_cls, cell, checkpoints, untrained)
    steps_declared = any("default_steps" in vars(k) for k in method_cls.__mro__ if k is not Method)
    if method_cls.trainable():
        trained_on, trained_with = dict(cell.dataset_options), {}
        for key, value in cell.trained.items():  # the row's training conditions, as `harness train` flags
            kind, _, name = key.partition(".")[2].partition(".")
            if name and "." not in name and kind in ("method_options", "dataset_options"):
                (trained_with if kind == "method_options" else trained_on)[name] = _plain(value)
        flags = "".join(f" --dataset-option {k}={v}" for k, v in trained_on.items())
        flags += "".join(f" --option {k}={v}" for k, v in trained_with.items())
        training = (f"harness train --method {method_cls.name} --dataset {dataset_cls.name}{flags}: "
                    f"{method_cls.default_steps:,} steps at batch {method_cls.default_batch_size}"
                    + ("" if steps_declared else " (the harness default; the method declares no schedule)"))
        steps: int | None = method_cls.default_steps
    else:
        training, steps = "none (no training recipe)", None
    return CellCheck(cell, root, data_ok, data_note, weights, weights_note, checkpoint, training, steps, steps_declared,
                     _trained_shape(method_cls, checkpoint))


def _trained_shape(method_cls: type[Method], checkpoint: Path | None) -> dict[str, Any]:
    found = training_identity(checkpoint) if checkpoint is not None and method_cls.model_options else None
    if found is None:
        return {}
    trained = found[1]["method_options"]
    return {name: trained[name] for name in method_cls.model_options if name in trained}


def _data(dataset_cls: Any, root: Path, cell: PaperCell) -> tuple[bool, str]:
    source = f"$HARNESS_DATA/{dataset_cls.name}" if root == resolve_data_root(dataset_cls.name, None) else "--data-root"
    if not root.exists():
        return False, f"looked at {root} ({source}): no such folder"
    try:
        dataset_cls(root, **dict(cell.dataset_options)).verify(cell.split)
    except DataError as exc:
        return False, f"looked at {root} ({source}): {exc}"
    return True, f"{root} ({source})"


def _weights(method_cls: type[Method], cell: PaperCell, checkpoints: Mapping[str, str],
             untrained: bool) -> tuple[str, str, Path | None]:
    given = checkpoints.get(method_cls.name)
    if given is not None:
        path = Path(os.path.expanduser(given.format(**cell.dataset_options)))
        if path.exists():
            other = _other_training(cell, path)
            if other:
                return "other training", f"{path} (--checkpoint {method_cls.name}=…) was trained with {other}", None
            return "present", f"{path} (--checkpoint {method_cls.name}=…)", path
        return "missing", f"looked at {path} (--checkpoint {method_cls.name}=…)", None
    if method_cls.scores_external_outputs:
        return "missing", f"scores outputs made elsewhere: pass --checkpoint {method_cls.name}=PATH", None
    if method_cls.weights_filename:
        path = hub_checkpoint_dir() / method_cls.weights_filename
        if path.is_file():
            return "present", f"{path} (torch hub cache)", path
        return "missing", (f"looked at {path} (torch hub cache); or pass --checkpoint {method_cls.name}=PATH"), None
    if method_cls.needs_checkpoint:
        if untrained:
            return "untrained", "seeded random weights (--untrained), recorded as untrained", None
        return "missing", f"needs trained weights: pass --checkpoint {method_cls.name}=PATH (or --untrained)", None
    return "not needed", "model-free or built-in weights", None


def _other_training(cell: PaperCell, checkpoint: Path) -> str:
    """How a `harness train` checkpoint misses the cell's ``training.*`` requirements ('' when it meets them,
    or when it has no manifest: weights from elsewhere, scored and shown as incomparable)."""
    found = training_identity(checkpoint) if cell.trained else None
    if found is None:
        return ""
    manifest, identity = found
    wrong = []
    for key, want in cell.trained.items():
        got: Any = identity
        for part in key.split(".")[1:]:
            got = got.get(part, _MISSING) if isinstance(got, dict) else _MISSING
        if _listed(got) != _listed(want):
            wrong.append(f"{key.partition('.')[2]}={'nothing recorded' if got is _MISSING else got}, "
                         f"the cell needs {want}")
    return f"{'; '.join(wrong)} ({manifest})" if wrong else ""


_MISSING = object()


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def runnable_suite(paper: PaperSuite, checks: list[CellCheck], untrained: bool) -> Suite | None:
    """The grid suite of the cells that can run (None when none can)."""
    jobs: dict[str, Pairing] = {}
    for check in checks:
        if not check.runnable:
            continue
        cell = check.cell
        options = {**check.shape, **cell.options}
        method = MethodEntry(cell.method, options, check.checkpoint, None, untrained and check.weights == "untrained")
        dataset = DatasetEntry(cell.dataset, cell.split, dict(cell.dataset_options), None, check.data_root)
        # cells apart only by their training requirements, given the same weights, are one job
        job = json.dumps([cell.method, options, str(check.checkpoint), cell.dataset, cell.dataset_options],
                         sort_keys=True, default=str)
        known = jobs.get(job)
        metrics = cell.metrics if known is None or known.metrics is None else _union(known.metrics, cell.metrics)
        jobs[job] = Pairing(method, dataset, metrics)
    pairs = list(jobs.values())
    if not pairs:
        return None
    return Suite(paper.name, f"the cells of {', '.join(paper.tables)}", tuple(p.method for p in pairs),
                 tuple(p.dataset for p in pairs), None, f"{PAPER_SOURCE}:{paper.board.path}", tuple(pairs))


def find_paper_suite(name: str) -> PaperSuite | None:
    """The paper suite of leaderboard ``name``; UsageError when the board exists but links no row."""
    suites = paper_suites()
    if name not in suites:
        return None
    suite = suites[name]
    if suite is None:
        raise UsageError(f"--suite {name}: {why_no_suite(name)}")
    return suite


def why_no_suite(name: str) -> str:
    """Why leaderboard ``name`` has no paper suite: it reports no paper's numbers, or links none of them."""
    board = next(board for board in load_all() if board.name == name)
    if not board.reported:
        return f"leaderboard {name} holds no paper's numbers (measured rows only), so there is no table to reproduce"
    return f"leaderboard {name} links no reported row to a harness method (no harness_method), so it has no paper suite yet"
