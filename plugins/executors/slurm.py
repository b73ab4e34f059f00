"""`slurm`: grid jobs as one submitit job array on a Slurm cluster.

Each job is an array task with ``cpus_per_job`` CPUs, ``gpus_per_job`` GPUs and a ``time`` limit in
``partition``; at most ``max_parallel`` run at once (Slurm's ``%N`` array throttle). The results
directory must be on a filesystem shared with the compute nodes. ``cluster=local`` runs the same
array through submitit's local executor (subprocesses, no Slurm), for testing a suite before
queueing it. Needs ``pip install "harness[slurm]"``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from harness import Option, hookimpl
from harness.api import Executor, Job, JobResult
from harness.errors import UsageError

POLL_SECONDS = 1.0
LOST_AFTER = 10.0
"""Seconds a finished array task may take to show its result file (shared filesystems lag)."""


class SlurmExecutor(Executor):
    name = "slurm"
    description = "A submitit job array on Slurm with a concurrency cap; partition, time, GPUs and CPUs per job."
    options = (
        Option("partition", None, "Slurm partition (default: the cluster's default)", str),
        Option("time", 60, "time limit per job, minutes", int),
        Option("cpus_per_job", 1, "CPUs per array task", int),
        Option("gpus_per_job", None, "GPUs per array task (default: 1 when the grid runs on cuda, else 0)", int),
        Option("max_parallel", 16, "array tasks running at once", int),
        Option("mem_gb", None, "memory per task, GB (default: the partition's)", int),
        Option("cluster", "slurm", "slurm, or local to run the array as local subprocesses through submitit",
               str, ("slurm", "local")),
    )

    def map(self, function: Callable[[Job], JobResult], jobs: Sequence[Job], workdir: Path) -> Iterator[tuple[Job, JobResult] | None]:
        try:
            import submitit
        except ImportError:
            raise UsageError('--executor slurm needs submitit: pip install "harness[slurm]"') from None
        cfg = self.config
        executor = submitit.AutoExecutor(folder=workdir / "%j", cluster=cfg["cluster"])
        gpus = cfg["gpus_per_job"] if cfg["gpus_per_job"] is not None else max(job.gpus for job in jobs)
        parameters: dict[str, Any] = {
            "timeout_min": cfg["time"], "cpus_per_task": cfg["cpus_per_job"], "gpus_per_node": gpus,
            "tasks_per_node": 1, "nodes": 1, "slurm_array_parallelism": cfg["max_parallel"],
        }
        if cfg["partition"]:
            parameters["slurm_partition"] = cfg["partition"]
        if cfg["mem_gb"]:
            parameters["mem_gb"] = cfg["mem_gb"]
        executor.update_parameters(**parameters)
        try:
            submitted = executor.map_array(function, list(jobs))
        except Exception as exc:  # sbatch missing or refusing the job
            raise UsageError(f"--executor slurm: submitting the job array failed: {exc}") from None
        pending = dict(zip(submitted, jobs))
        gone_since: dict[Any, float] = {}
        try:
            while pending:
                finished = [handle for handle in pending if handle.done()]
                if not finished and cfg["cluster"] == "slurm":
                    finished = _vanished(pending, gone_since)
                if not finished:
                    yield None
                    time.sleep(POLL_SECONDS)
                    continue
                for handle in finished:
                    job = pending.pop(handle)
                    if not handle.done():
                        result = {"status": "lost", "error": {"type": "SlurmJobLost", "message": (
                            f"Slurm job {handle.job_id} ended without a result (killed, out of time or memory, "
                            f"or its node failed); its logs: {handle.paths.stderr}")}}
                        yield job, result
                        continue
                    try:
                        result = handle.result()
                    except Exception as exc:  # the task was killed, timed out or its node failed
                        message = str(exc).strip().splitlines()
                        result = {"status": "lost", "error": {"type": type(exc).__name__,
                                                              "message": message[-1] if message else repr(exc)}}
                    yield job, result
        finally:
            for handle in pending:
                handle.cancel(check=False)


def _vanished(pending: dict[Any, Job], gone_since: dict[Any, float]) -> list[Any]:
    """Array tasks Slurm no longer lists that left no result for ``LOST_AFTER`` seconds.

    submitit learns a task's fate from ``sacct``; clusters without accounting (or whose accounting
    lags) never report a task killed with SIGKILL, so ``squeue`` is asked which tasks still exist.
    """
    masters = sorted({str(handle.job_id).split("_")[0] for handle in pending})
    listed = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "--jobs", ",".join(masters)],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        return []
    alive = set(listed.stdout.split())
    now = time.monotonic()
    lost = []
    for handle in pending:
        if str(handle.job_id) in alive:
            gone_since.pop(handle, None)
        elif now - gone_since.setdefault(handle, now) >= LOST_AFTER:
            lost.append(handle)
    return lost


@hookimpl
def harness_register_executors(register: Callable[[type], None]) -> None:
    register(SlurmExecutor)
