"""The grid's on-disk trail: an events log written by the driver, progress files written by workers.

Under ``<results>/grid/``::

    events.jsonl                   one JSON object per line, appended by the driver only
    progress/<grid_id>/<job>.json  a worker's latest progress for one job (replaced atomically)

`harness status` folds the log of the newest grid and overlays the progress files, so it shows from
another terminal what the driver's live view shows. A killed driver leaves at worst a log without
its ``grid_finished`` line; whole lines are written with one ``write`` and flushed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

GRID_FOLDER = "grid"
EVENTS_FILE = "events.jsonl"

STATES = ("queued", "running", "done", "cached", "failed")


def grid_dir(results: Path) -> Path:
    return Path(results) / GRID_FOLDER


def progress_dir(results: Path, grid_id: str) -> Path:
    return grid_dir(results) / "progress" / grid_id


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class EventLog:
    """Append-only JSON lines; the driver is its only writer."""

    def __init__(self, results: Path, grid_id: str) -> None:
        self.path = grid_dir(results) / EVENTS_FILE
        self.grid_id = grid_id

    def append(self, event: str, **fields: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": now(), "grid": self.grid_id, "event": event, **fields}, default=str) + "\n"
        with open(self.path, "a") as handle:
            handle.write(line)


def write_progress(path: Path, payload: dict[str, Any]) -> None:
    """Replace a progress file atomically (workers on any node; readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        json.dump(payload, stream)
    os.replace(tmp, path)


def read_progress(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclasses.dataclass
class JobState:
    """What the views show for one job (a cell, or a training run a cell waits for)."""

    id: str
    kind: str
    label: str
    state: str = "queued"
    done: int = 0
    total: int | None = None
    seconds: float | None = None
    note: str = ""


@dataclasses.dataclass
class GridState:
    grid_id: str
    started: str
    pid: int
    host: str
    executor: str
    jobs: dict[str, JobState]
    finished: str | None = None
    exit_code: int | None = None

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for job in self.jobs.values():
            counts[job.state] += 1
        return counts

    def driver_alive(self) -> bool | None:
        """Whether the driver still runs (None when it runs on another host and cannot be checked)."""
        if self.finished is not None:
            return False
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def read_events(results: Path) -> Iterator[dict[str, Any]]:
    path = grid_dir(results) / EVENTS_FILE
    if not path.exists():
        return
    with open(path) as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:  # a line cut by a crash mid-write: skip it
                continue


def apply(state: GridState, event: dict[str, Any]) -> None:
    """Fold one event into the state (the live view and `harness status` share this)."""
    kind = event["event"]
    if kind == "grid_finished":
        state.finished, state.exit_code = event["time"], event.get("exit_code")
        return
    job = state.jobs.get(event.get("job", ""))
    if job is None:
        return
    if kind == "job_state":
        job.state = event["state"]
        job.note = event.get("note", job.note)
        job.seconds = event.get("seconds", job.seconds)


def all_grids(results: Path) -> list[GridState]:
    """Every grid of the events log, oldest first (several drivers may share a store)."""
    states: dict[str, GridState] = {}
    for event in read_events(results):
        if event["event"] == "grid_started":
            jobs = {job["id"]: JobState(job["id"], job["kind"], job["label"]) for job in event["jobs"]}
            states[event["grid"]] = GridState(event["grid"], event["time"], event["pid"], event["host"],
                                              event["executor"], jobs)
        elif event.get("grid") in states:
            apply(states[event["grid"]], event)
    return list(states.values())


def latest_grid(results: Path) -> GridState | None:
    """The newest grid's state from the events log, with live progress overlaid."""
    grids = all_grids(results)
    if not grids:
        return None
    state = grids[-1]
    overlay_progress(state, progress_dir(results, state.grid_id))
    return state


def running_grids(results: Path) -> list[GridState]:
    """Grids whose driver has not finished and is not known to be dead, with live progress overlaid."""
    running = [state for state in all_grids(results) if state.finished is None and state.driver_alive() is not False]
    for state in running:
        overlay_progress(state, progress_dir(results, state.grid_id))
    return running


def overlay_progress(state: GridState, folder: Path) -> None:
    """Per-job progress from the workers' files; a job with a file and no outcome yet is running."""
    if not folder.exists():
        return
    for path in folder.glob("*.json"):
        job = state.jobs.get(path.stem)
        progress = read_progress(path)
        if job is None or progress is None:
            continue
        job.done, job.total = progress.get("done", 0), progress.get("total")
        if job.state == "queued":
            job.state = "running"
