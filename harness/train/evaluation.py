"""Periodic evaluation during training, through the same runner code as ``harness run``.

The only place the training engine touches the runner: evaluation records land in the result store
like any other run, and the engine logs their values.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..plugins import Plugins
from ..run.cells import RunSpec, execute_cell, plan_cell
from ..run.store import ResultStore
from .engine import Evaluator


def evaluator(plugins: Plugins, spec: RunSpec, results: Path | None = None) -> Evaluator:
    """Score a weights file as ``harness run`` would with ``spec`` (its ``checkpoint`` is replaced).

    The cell is resolved once here, so a bad metric name or split fails before training starts."""
    # Checked before any weights exist: an existing stand-in path keeps the check off the weight lookup
    # (the resolved cell is discarded; every evaluation passes the real weights).
    _score(dataclasses.replace(spec, checkpoint=Path(os.devnull)), plugins, None)
    store = ResultStore(results)

    def evaluate(weights: Path) -> dict[str, dict[str, Any]]:
        record = _score(dataclasses.replace(spec, checkpoint=weights), plugins, store)
        return {
            name: {"values": metric["values"], "higher_is_better": metric["higher_is_better"], "record": record["path"]}
            for name, metric in record["metrics"].items()
        }

    return evaluate


def _score(spec: RunSpec, plugins: Plugins, store: ResultStore | None) -> dict[str, Any]:
    """The one call into the runner: resolve the cell (raising before anything runs) and, given a store, run it."""
    cell = plan_cell(spec, plugins)
    return execute_cell(cell, plugins, store, progress=False) if store is not None else {}
