"""The grid's only contact with the cell runner: plan a cell, find its stored result, execute it.

Kept in one small module so that a change of the runner's API is a local change here. A cell is
complete when the store holds an ok record with its prediction key and every (label, score key).
"""

from __future__ import annotations

from typing import Any, Iterable

from ..plugins import Plugins
from ..run.cells import Cell, RunSpec, execute_cell, plan_cell
from ..run.store import ResultStore


def plan(spec: RunSpec, plugins: Plugins) -> Cell:
    """Resolve, validate, digest and key a cell; `UsageError`/`DataError` before anything runs."""
    return plan_cell(spec, plugins)


def _identity(keys: dict[str, Any]) -> tuple[Any, ...]:
    return (keys.get("prediction"), tuple(sorted((keys.get("scores") or {}).items())))


class PastRuns:
    """What the store says about cells: the complete record, or the newest failure not superseded."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self.failed: dict[tuple[Any, ...], dict[str, Any]] = {}
        for record in store.records():  # oldest first, so later failures win
            if record.get("status") != "ok" and record.get("keys"):
                self.failed[_identity(record["keys"])] = record

    def complete(self, cell: Cell) -> dict[str, Any] | None:
        return self.store.find_complete(cell)

    def failure(self, cell: Cell) -> dict[str, Any] | None:
        """The newest failed record of exactly this cell, unless a later ok record superseded it."""
        failed = self.failed.get(_identity({"prediction": cell.keys.prediction, "scores": cell.keys.scores}))
        ok = self.complete(cell)
        if failed is None or (ok is not None and ok["created"] > failed["created"]):
            return None
        return failed


def execute(cell: Cell, plugins: Plugins, store: ResultStore) -> dict[str, Any]:
    """Run a planned cell (reusing cached predictions and scores) and store its record; a failed cell
    raises after storing it."""
    return execute_cell(cell, plugins, store, progress=False)


def metric_choices(metrics: Iterable[Any] | None) -> tuple[list[str] | None, dict[str, dict[str, Any]]]:
    """Suite metric entries → the runner's metric labels and parameters per label."""
    if metrics is None:
        return None, {}
    return [entry.label for entry in metrics], {entry.label: dict(entry.params) for entry in metrics if entry.params}
