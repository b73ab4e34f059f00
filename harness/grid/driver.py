"""The grid driver: plan every cell, skip what is stored, hand the rest to an executor, index results.

The driver is the only process that writes the SQLite index and the events log; workers write run
folders (atomically renamed into place) and progress files. A killed driver therefore loses nothing
that finished: the next run merges run folders missing from the index (`ResultStore.sync_index`)
and recognises finished cells by their key.

Two drivers may share a store: each job is claimed (`harness.grid.claims`) before it is dispatched,
a job another live driver holds is left until it is let go and then run only if still missing, and
a dead driver's claims pass to whoever asks next.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from rich.console import Console

from ..api import Executor, Job
from ..data import resolve_data_root
from ..errors import DataError, UsageError
from ..plugins import Plugins
from ..provenance import canonical_digest
from ..run.cells import RunSpec, check_pairing
from ..run.devices import resolve_device
from ..run.store import ResultStore
from . import cells
from .claims import Claims
from .events import EventLog, GridState, JobState, grid_dir, overlay_progress, progress_dir
from .suite import Pairing, Suite, naming_the_file, pairings
from .training import is_trained
from .view import LiveView
from .worker import driver_env, run_job, spec_to_json

TRAINED_FOLDER = "trained"
CLAIM_POLL_SECONDS = 0.5
"""How often a driver looks again at jobs another driver holds."""


@dataclasses.dataclass
class GridRequest:
    """What the user asked for (CLI flags), independent of where it runs."""

    suite: Suite
    results: Path
    methods: str | None = None
    datasets: str | None = None
    tasks: str | None = None
    split: str | None = None
    limit: int | None = None
    device: str = "auto"
    force: bool = False
    rerun_failed: bool = False
    skip_missing_data: bool = False
    """For the all-plugins grid: datasets without local data are left out instead of failing."""
    plugins_dirs: tuple[Path, ...] = ()
    save_images: int = 8


@dataclasses.dataclass
class TrainStep:
    id: str
    label: str
    out: Path
    payload: dict[str, Any]
    done: bool


@dataclasses.dataclass
class PlannedCell:
    id: str
    label: str
    spec: RunSpec
    train: str | None = None
    state: str = "queued"
    note: str = ""
    record: dict[str, Any] | None = None
    planned: cells.Cell | None = None
    """The resolved cell (keys), once classified against the store."""


@dataclasses.dataclass
class GridPlan:
    cells: list[PlannedCell]
    trains: dict[str, TrainStep]
    skipped: list[str]


# -- planning ------------------------------------------------------------------------------------
def plan_grid(request: GridRequest, plugins: Plugins, store: ResultStore) -> GridPlan:
    """Validate every cell (usage errors, naming the suite file, raise before anything runs) and classify
    it against the store."""
    with naming_the_file(request.suite):
        return _plan_grid(request, plugins, store)


def _plan_grid(request: GridRequest, plugins: Plugins, store: ResultStore) -> GridPlan:
    past = cells.PastRuns(store)
    trains: dict[str, TrainStep] = {}
    planned: list[PlannedCell] = []
    skipped: list[str] = []
    for pair in pairings(request.suite, plugins, request.methods, request.datasets, request.tasks):
        train = _train_step(pair, request, plugins) if pair.method.train is not None else None
        if train is not None:
            trains.setdefault(train.id, train)
        names, params = cells.metric_choices(pair.metrics)
        spec = _spec(pair, request, plugins, names, params, train)
        label = f"{plugins.methods.canonical(pair.method.name)} × {plugins.datasets.canonical(pair.dataset.name)}"
        cell = PlannedCell("cell-" + canonical_digest(spec_to_json(spec))[:12], label, spec, train.id if train else None)
        try:
            if train is not None and not train.done:
                cells.plan(dataclasses.replace(spec, checkpoint=None, untrained=True), plugins)  # validation only
                cell.note = "after training"
            else:
                classify(cell, plugins, past, request)
        except DataError as exc:
            if request.skip_missing_data:
                skipped.append(f"{label}: {exc}")
                continue
            cell.state, cell.note = "failed", str(exc)
        planned.append(cell)
    return GridPlan(planned, trains, skipped)


def classify(cell: PlannedCell, plugins: Plugins, past: cells.PastRuns, request: GridRequest) -> None:
    """Cached (an ok record has this cell's key), failed earlier, or to run."""
    planned = cell.planned = cells.plan(cell.spec, plugins)
    if request.force:
        return
    record = past.complete(planned)
    if record is not None:
        cell.state, cell.record, cell.note = "cached", record, record["run_id"]
        return
    failed = past.failure(planned)
    if failed is not None and not request.rerun_failed:
        cell.state = "failed"
        cell.note = f"failed earlier ({failed['run_id']}: {failed['error']['message']}); --rerun-failed retries it"


def _spec(pair: Pairing, request: GridRequest, plugins: Plugins, metrics: list[str] | None,
          params: dict[str, dict[str, Any]], train: TrainStep | None) -> RunSpec:
    dataset_name = plugins.datasets.canonical(pair.dataset.name)
    return RunSpec(
        method=plugins.methods.canonical(pair.method.name),
        dataset=dataset_name,
        metrics=metrics,
        split=request.split or pair.dataset.split,
        checkpoint=train.out if train is not None else pair.method.checkpoint,
        data_root=resolve_data_root(dataset_name, pair.dataset.data_root),
        limit=request.limit or pair.dataset.limit,
        device=request.device,
        method_options=dict(pair.method.options),
        dataset_options=dict(pair.dataset.options),
        metric_options=params,
        untrained=pair.method.untrained,
        save_images=request.save_images,
    )


def _train_step(pair: Pairing, request: GridRequest, plugins: Plugins) -> TrainStep:
    budget = pair.method.train
    assert budget is not None
    method_cls, dataset_cls = plugins.methods.get(pair.method.name), plugins.datasets.get(budget.dataset)
    if not method_cls.trainable():
        raise UsageError(f"suite {request.suite.source}: method {method_cls.name!r} has no training recipe")
    check_pairing(method_cls, dataset_cls, budget.split)
    options = {**pair.method.options, **budget.options}
    method_cls(**options)  # unknown or bad training options fail now, not on a worker
    identity = {
        "method": method_cls.name, "method_options": options, "dataset": dataset_cls.name,
        "dataset_options": dict(budget.dataset_options), "split": budget.split, "steps": budget.steps,
        "batch_size": budget.batch_size, "seed": budget.seed,
    }
    digest = canonical_digest(identity)[:10]
    out = Path(request.results) / TRAINED_FOLDER / f"{method_cls.name}-{dataset_cls.name}-{digest}"
    payload = {
        **identity, "out": str(out), "data_root": str(resolve_data_root(dataset_cls.name, None)),
        "device": request.device,
    }
    payload["method_options"] = options
    label = f"train {method_cls.name} on {dataset_cls.name} ({budget.steps} steps)"
    return TrainStep("train-" + digest, label, out, payload, is_trained(out))


# -- running -------------------------------------------------------------------------------------
def new_grid_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


class GridRun:
    """One execution of a plan: drives the executor, keeps the state, writes events and the index."""

    def __init__(self, plan: GridPlan, request: GridRequest, plugins: Plugins, store: ResultStore,
                 executor: Executor, console: Console, quiet: bool = False) -> None:
        self.plan, self.request, self.plugins, self.store = plan, request, plugins, store
        self.executor, self.console, self.quiet = executor, console, quiet
        self.grid_id = new_grid_id()
        self.events = EventLog(store.root, self.grid_id)
        self.progress = progress_dir(store.root, self.grid_id)
        self.claims = Claims(grid_dir(store.root), self.grid_id)
        self.cells: dict[str, PlannedCell] = {}
        jobs = [JobState(step.id, "train", step.label) for step in plan.trains.values() if not step.done]
        jobs += [JobState(cell.id, "cell", cell.label, cell.state, note=cell.note) for cell in plan.cells]
        self.state = GridState(self.grid_id, "", os.getpid(), socket.gethostname(), executor.name,
                               {job.id: job for job in jobs})

    def run(self) -> int:
        self.events.append("grid_started", pid=self.state.pid, host=self.state.host, executor=self.executor.name,
                           jobs=[{"id": j.id, "kind": j.kind, "label": j.label} for j in self.state.jobs.values()])
        for job in self.state.jobs.values():
            if job.state != "queued":
                self.events.append("job_state", job=job.id, state=job.state, note=job.note)
        exit_code = 130
        try:
            with LiveView(self.state, self.console, self.quiet) as self.view:
                self.view.refresh()
                self._run_trains()
                self._run_cells()
            exit_code = 1 if self.state.counts()["failed"] else 0
        finally:
            self.claims.release_all()
            self.events.append("grid_finished", exit_code=exit_code, counts=self.state.counts())
        return exit_code

    def records(self) -> list[dict[str, Any]]:
        return [cell.record for cell in self.plan.cells if cell.record is not None and cell.record["status"] == "ok"]

    def _job(self, job_id: str, kind: str, payload: dict[str, Any]) -> Job:
        gpus = 1 if resolve_device(self.request.device).startswith("cuda") else 0
        payload = {**payload, "progress": str(self.progress / f"{job_id}.json"), "env": driver_env(),
                   "plugins_dirs": [str(p) for p in self.request.plugins_dirs], "results": str(self.store.root)}
        return Job(job_id, kind, payload, cpus=1, gpus=gpus)

    def _set(self, job_id: str, state: str, note: str = "", seconds: float | None = None) -> None:
        job = self.state.jobs[job_id]
        job.state, job.note, job.seconds = state, note, seconds
        self.events.append("job_state", job=job_id, state=state, note=note, seconds=seconds)
        self.view.refresh()

    def _claimed(self, ids: list[str], still_to_do: Callable[[list[str]], list[str]]) -> Iterator[list[str]]:
        """Rounds of jobs this driver has claimed and that are still to do: first every job it could
        claim at once, then jobs other drivers held, as they let them go. ``still_to_do`` looks at the
        store after claiming (another driver may have finished a job meanwhile) and marks those done.
        A driver never waits while holding a claim it has not run, so two drivers cannot deadlock."""
        free = [job_id for job_id in ids if self.claims.try_claim(job_id)]
        waiting = [job_id for job_id in ids if job_id not in free]
        for job_id in waiting:
            self.state.jobs[job_id].note = f"held by {self.claims.holder(job_id)}; waiting"
            self.events.append("job_state", job=job_id, state="queued", note=self.state.jobs[job_id].note)
        while True:
            if free:
                todo = still_to_do(free)
                for job_id in set(free) - set(todo):
                    self.claims.release(job_id)
                if todo:
                    yield todo
            if not waiting:
                return
            time.sleep(CLAIM_POLL_SECONDS)
            self._poll()
            free = [job_id for job_id in waiting if self.claims.try_claim(job_id)]
            waiting = [job_id for job_id in waiting if job_id not in free]

    def _trains_to_do(self, ids: list[str]) -> list[str]:
        todo = []
        for job_id in ids:
            step = self.plan.trains[job_id]
            if is_trained(step.out):
                step.done = True
                self._set(job_id, "done", f"trained by another grid: {step.out}")
            else:
                todo.append(job_id)
        return todo

    def _cells_to_do(self, ids: list[str]) -> list[str]:
        self.store.sync_index()  # records of a driver that died before indexing them
        past = cells.PastRuns(self.store)
        todo = []
        for job_id in ids:  # planning found these missing: a record now is another grid's work
            planned = self.cells[job_id].planned
            if planned is None or self.request.force:
                todo.append(job_id)
                continue
            record = past.complete(planned)
            failed = None if self.request.rerun_failed else past.failure(planned)
            if record is not None:
                self.cells[job_id].record = record
                self._set(job_id, "cached", record["run_id"])
            elif failed is not None:
                message = (failed.get("error") or {}).get("message", "")
                self._set(job_id, "failed", f"failed in another grid ({failed['run_id']}: {message})")
            else:
                todo.append(job_id)
        return todo

    def _run_trains(self) -> None:
        steps = [step for step in self.plan.trains.values() if not step.done]
        for claimed in self._claimed([step.id for step in steps], self._trains_to_do):
            jobs = [self._job(job_id, "train", self.plan.trains[job_id].payload) for job_id in claimed]
            for job, result in self._dispatch(jobs):
                if result["status"] == "ok":
                    self.plan.trains[job.id].done = True
                    self._set(job.id, "done", seconds=result.get("seconds"))
                else:
                    self._set(job.id, "failed", _message(result), result.get("seconds"))
                self.claims.release(job.id)
        past = cells.PastRuns(self.store)
        for cell in self.plan.cells:
            if cell.train is None or cell.state != "queued" or cell.note != "after training":
                continue
            if not self.plan.trains[cell.train].done:
                self._set(cell.id, "failed", f"training failed ({cell.train})")
                continue
            try:
                classify(cell, self.plugins, past, self.request)
            except (DataError, UsageError) as exc:
                cell.state, cell.note = "failed", str(exc)
            if cell.state != "queued":
                self._set(cell.id, cell.state, cell.note)
            else:
                cell.note = self.state.jobs[cell.id].note = ""

    def _run_cells(self) -> None:
        todo = {cell.id: cell for cell in self.plan.cells if cell.state == "queued"}
        self.cells = todo
        for claimed in self._claimed(list(todo), self._cells_to_do):
            jobs = [self._job(job_id, "cell", {"spec": spec_to_json(todo[job_id].spec)}) for job_id in claimed]
            for job, result in self._dispatch(jobs):
                cell = todo[job.id]
                if result.get("record"):
                    cell.record = self.store.index_record(Path(result["record"]))
                state = "done" if result["status"] == "ok" else "failed"
                note = cell.record["run_id"] if state == "done" and cell.record else _message(result)
                self._set(job.id, state, note, result.get("seconds"))
                self.claims.release(job.id)  # after indexing: a waiting driver then finds the record

    def _dispatch(self, jobs: list[Job]) -> Iterable[tuple[Job, dict[str, Any]]]:
        if not jobs:
            return
        for item in self.executor.map(run_job, jobs, self.store.root / "grid" / "executors" / self.executor.name):
            if item is None:
                self._poll()
                continue
            self._poll()
            yield item

    def _poll(self) -> None:
        before = {job.id: job.state for job in self.state.jobs.values()}
        overlay_progress(self.state, self.progress)
        for job in self.state.jobs.values():
            if before[job.id] == "queued" and job.state == "running":
                self.events.append("job_state", job=job.id, state="running")
        self.view.refresh()


def _message(result: dict[str, Any]) -> str:
    error = result.get("error") or {}
    return f"{error.get('type', 'Error')}: {error.get('message', 'no message')}"
