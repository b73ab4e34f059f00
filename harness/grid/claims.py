"""Claims on grid jobs, so that two `harness grid` commands on one store never run a job twice.

A claim is an exclusive lock (`harness.locks`) on ``<results>/grid/claims/<job id>.lock``, taken by the
driver before it hands the job to an executor and released after the job's record is indexed. A dead
driver's claims pass to the next driver that asks, with no clean-up. A job whose claim another driver
holds is left until that driver lets it go; the waiting driver then looks at the store again and runs
the job only if it is still missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from .. import locks

CLAIMS_FOLDER = "claims"


class Claims:
    """The claims one driver holds on a store's grid jobs."""

    def __init__(self, folder: Path, grid_id: str) -> None:
        self.folder = Path(folder) / CLAIMS_FOLDER
        self.grid_id = grid_id
        self.held: dict[str, IO[str]] = {}

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.lock"

    def try_claim(self, job_id: str) -> bool:
        """Claim ``job_id`` unless a live process holds it; never waits."""
        if job_id not in self.held:
            handle = locks.acquire(self._path(job_id), {"grid": self.grid_id})
            if handle is None:
                return False
            self.held[job_id] = handle
        return True

    def holder(self, job_id: str) -> str:
        """Who holds ``job_id``, for a message."""
        info = locks.holder(self._path(job_id))
        return f"grid {info.get('grid', '?')} ({locks.describe(info)})" if info else "another grid"

    def release(self, job_id: str) -> None:
        handle = self.held.pop(job_id, None)
        if handle is not None:
            locks.release(handle)

    def release_all(self) -> None:
        for job_id in list(self.held):
            self.release(job_id)
