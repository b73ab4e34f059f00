"""`ray`: grid jobs as Ray tasks, each reserving the CPUs/GPUs it needs.

Connects to an existing cluster (``address``, e.g. ``ray://head:10001`` or ``auto``) or starts a
local one for the duration of the grid. The results directory must be shared with every node
(workers write run folders there; the driver indexes them). Needs ``pip install "harness[ray]"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from harness import Option, hookimpl
from harness.api import Executor, Job, JobResult
from harness.errors import UsageError

POLL_SECONDS = 0.5


class RayExecutor(Executor):
    name = "ray"
    description = "Cells as Ray tasks with CPU/GPU resources, on a Ray cluster (--ray-address) or a local one."
    options = (
        Option("address", None, "Ray cluster address (default: a local cluster started for this grid)", str),
        Option("cpus", None, "CPUs of a local cluster (default: all)", int),
        Option("cpus_per_job", 1, "CPUs each job reserves", int),
    )

    def map(self, function: Callable[[Job], JobResult], jobs: Sequence[Job], workdir: Path) -> Iterator[tuple[Job, JobResult] | None]:
        try:
            import ray
        except ImportError:
            raise UsageError('--executor ray needs Ray: pip install "harness[ray]"') from None
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.config["address"], num_cpus=self.config["cpus"] if not self.config["address"] else None,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            task = ray.remote(max_retries=0)(function)
            pending: dict[Any, Job] = {
                task.options(num_cpus=self.config["cpus_per_job"], num_gpus=job.gpus, name=job.id).remote(job): job
                for job in jobs
            }
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                if not ready:
                    yield None
                    continue
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died or the task could not run
                        result = {"status": "lost", "error": {"type": type(exc).__name__, "message": str(exc).splitlines()[0]}}
                    yield job, result
        finally:
            for ref in list(locals().get("pending", {})):
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()


@hookimpl
def harness_register_executors(register: Callable[[type], None]) -> None:
    register(RayExecutor)
