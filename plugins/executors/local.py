"""`local`: grid jobs on worker processes of this machine.

One worker per visible GPU (each pinned with ``CUDA_VISIBLE_DEVICES``) when jobs want a GPU, else
``workers`` CPU workers with the CPU threads divided among them. ``workers=0`` runs the jobs in the
driver process itself (no start-up cost; a crash takes the driver with it).

Workers are long-lived processes (forked from a server that preloaded the harness) fed one job at a
time over a pipe, so a worker killed
mid-job (OOM killer, ``kill -9``) costs only its job: the driver reports it as lost and starts a
replacement. A killed driver closes the pipes; its workers finish the job in hand (its run folder
lands in the store, where the next grid finds it) and exit.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Iterator, Sequence

from harness import Option, hookimpl
from harness.api import Executor, Job, JobResult
from harness.errors import UsageError

POLL_SECONDS = 0.5


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [part.strip() for part in listed.split(",") if part.strip() and part.strip() != "-1"]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def _worker_main(connection: Connection, function: Callable[[Job], JobResult], threads: int, gpu: str | None) -> None:
    if gpu is not None:  # before anything initialises CUDA (the preloaded torch has not)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if job is None:
            return
        result = function(job)
        try:
            connection.send(result)
        except (BrokenPipeError, OSError):
            return


def _context() -> multiprocessing.context.BaseContext:
    """``forkserver`` with the harness and its plugins preloaded: a worker starts in milliseconds instead
    of importing torch again (CUDA stays uninitialised in the server); ``spawn`` where unavailable."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["harness.grid.preload"])
    return context


class _Worker:
    def __init__(self, function: Callable[[Job], JobResult], threads: int, gpu: str | None) -> None:
        context = _context()
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, function, threads, gpu), daemon=True)
        self.process.start()
        child.close()
        self.job: Job | None = None

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class LocalExecutor(Executor):
    name = "local"
    description = "Worker processes on this machine: one per visible GPU, or --workers N CPU workers."
    options = (
        Option("workers", None, "CPU worker processes (default 1; 0 = run in the driver process); "
               "with GPU jobs, default one per visible GPU", int),
        Option("threads", None, "torch threads per worker (default: CPU cores divided among the workers)", int),
    )

    def map(self, function: Callable[[Job], JobResult], jobs: Sequence[Job], workdir: Path) -> Iterator[tuple[Job, JobResult] | None]:
        workers = self.config["workers"]
        if workers is not None and workers < 0:
            raise UsageError(f"--workers must be 0 or more, got {workers}")
        if workers == 0:
            for job in jobs:
                yield job, function(job)
            return
        gpus: list[str | None] = [None]
        if any(job.gpus for job in jobs):
            gpus = list(visible_gpus()) or [None]
            count = workers or len(gpus)
        else:
            count = workers or 1
        count = max(1, min(count, len(jobs)))
        threads = self.config["threads"] or max(1, (os.cpu_count() or 1) // count)
        slots = [gpus[index % len(gpus)] for index in range(count)]
        yield from self._drive(function, deque(jobs), slots, threads)

    def _drive(self, function: Callable[[Job], JobResult], queue: deque[Job], slots: list[str | None],
               threads: int) -> Iterator[tuple[Job, JobResult] | None]:
        pool = [_Worker(function, threads, gpu) for gpu in slots]
        try:
            while True:
                for index, worker in enumerate(pool):
                    if worker.job is None and queue:
                        if not worker.process.is_alive():
                            pool[index] = worker = _Worker(function, threads, slots[index])
                        worker.job = queue.popleft()
                        worker.connection.send(worker.job)
                busy = [worker for worker in pool if worker.job is not None]
                if not busy:
                    return
                ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout=POLL_SECONDS)
                if not ready:
                    yield None
                    continue
                for index, worker in enumerate(pool):
                    if worker.job is None:
                        continue
                    job = worker.job
                    if worker.connection in ready or worker.connection.poll():
                        try:
                            result = worker.connection.recv()
                        except (EOFError, OSError):
                            result = _lost(worker)
                    elif worker.process.sentinel in ready:
                        result = _lost(worker)
                    else:
                        continue
                    worker.job = None
                    if result.get("status") == "lost":
                        pool[index] = _Worker(function, threads, slots[index]) if queue else worker
                    yield job, result
        finally:
            for worker in pool:
                worker.stop()


def _lost(worker: _Worker) -> JobResult:
    worker.process.join(timeout=5)
    code = worker.process.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
    return {"status": "lost", "error": {"type": "WorkerDied", "message": f"worker process {worker.process.pid} {how}"}}


@hookimpl
def harness_register_executors(register: Callable[[type], None]) -> None:
    register(LocalExecutor)
