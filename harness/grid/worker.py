"""What runs on a worker (a local process, a Ray task, a Slurm array task): one grid job.

`run_job` is the function every executor calls. It takes a plain-data `Job`, sets the driver's
environment (data home, torch hub, plugins), writes a progress file while it works and the run
folder when done (never the SQLite index: the driver indexes), and returns a small result. It never
raises for a failing cell: the failure is the result.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from pathlib import Path
from typing import Any

from ..api import Job, JobResult
from ..errors import HarnessError
from ..hookspecs import hookimpl
from ..plugins import Plugins, get_plugins
from ..run.cells import RunSpec
from ..run.store import ResultStore
from . import cells
from .events import write_progress
from .training import train_budget

FORWARDED_ENV = ("HARNESS_DATA", "HARNESS_CACHE", "TORCH_HOME", "HARNESS_PLUGINS_DIR")
"""Driver environment a worker adopts, so a Ray or Slurm worker sees the same data, weights and plugins."""

PROGRESS_INTERVAL = 0.25


def driver_env() -> dict[str, str]:
    return {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}


def spec_to_json(spec: RunSpec) -> dict[str, Any]:
    data = dataclasses.asdict(spec)
    for name in ("checkpoint", "data_root"):
        data[name] = str(data[name]) if data[name] is not None else None
    return data


def spec_from_json(data: dict[str, Any]) -> RunSpec:
    data = dict(data)
    for name in ("checkpoint", "data_root"):
        data[name] = Path(data[name]) if data[name] is not None else None
    return RunSpec(**data)


def run_job(job: Job) -> JobResult:
    """Execute one grid job; failures come back as ``{"status": "failed", "error": ...}``."""
    payload = job.payload
    os.environ.update(payload.get("env", {}))
    progress = Path(payload["progress"])
    started = time.perf_counter()
    try:
        plugins = get_plugins([Path(p) for p in payload.get("plugins_dirs", [])])
        if job.kind == "train":
            result = _train(payload, plugins, progress)
        elif job.kind == "cell":
            result = _cell(payload, plugins, progress)
        else:
            raise HarnessError(f"unknown grid job kind {job.kind!r}")
    except Exception as exc:
        result = {"status": "failed", "error": error_of(exc)}
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def error_of(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}


def _train(payload: dict[str, Any], plugins: Plugins, progress: Path) -> JobResult:
    write_progress(progress, {"done": 0, "total": payload["steps"]})
    manifest = train_budget(
        plugins, payload["method"], payload["dataset"], Path(payload["out"]),
        steps=payload["steps"], batch_size=payload["batch_size"], seed=payload["seed"], split=payload["split"],
        method_options=payload["method_options"], dataset_options=payload["dataset_options"],
        data_root=Path(payload["data_root"]) if payload.get("data_root") else None, device=payload["device"],
    )
    write_progress(progress, {"done": manifest["step"], "total": payload["steps"]})
    return {"status": "ok", "out": payload["out"]}


class _Observer:
    """Writes the cell's progress file (throttled) and keeps the stored record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.record: dict[str, Any] | None = None
        self._last = 0.0

    @hookimpl
    def harness_cell_progress(self, cell: dict[str, Any], done: int, total: int | None) -> None:
        tick = time.monotonic()
        if tick - self._last >= PROGRESS_INTERVAL or (total is not None and done >= total):
            self._last = tick
            write_progress(self.path, {"done": done, "total": total})

    @hookimpl
    def harness_cell_finished(self, cell: dict[str, Any], record: dict[str, Any]) -> None:
        self.record = record


def _cell(payload: dict[str, Any], plugins: Plugins, progress: Path) -> JobResult:
    write_progress(progress, {"done": 0, "total": None})
    observer = _Observer(progress)
    plugins.pm.register(observer)
    try:
        cell = cells.plan(spec_from_json(payload["spec"]), plugins)
        try:
            cells.execute(cell, plugins, ResultStore(Path(payload["results"]), index=False))
        except HarnessError as exc:
            if observer.record is None:  # refused before anything was stored (bad data, bad options)
                return {"status": "failed", "error": error_of(exc)}
    finally:
        plugins.pm.unregister(observer)
    record = observer.record
    assert record is not None
    return {"status": record["status"], "record": record["path"], "error": record.get("error")}
