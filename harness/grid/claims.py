"""Claims on grid jobs, so that two `harness grid` commands on one store never run a job twice.

A claim is an exclusive ``fcntl.flock`` on ``<results>/grid/claims/<job id>.lock``, taken by the driver
before it hands the job to an executor and released after the job's record is indexed. The kernel
drops the lock of a process that dies (``kill -9`` included), so a dead driver's claims pass to the
next driver without any clean-up, and nothing is lost. The file holds the holder's grid id, pid and
host, for messages only; lock files are never deleted (deleting one would let two processes lock two
different files of one name).

A job whose claim another driver holds is left until that driver lets it go; the waiting driver then
looks at the store again and runs the job only if it is still missing.

``flock`` works between processes of one machine and on local file systems; on a network file system
it depends on the server (NFSv4 maps it to byte-range locks; some setups do not lock at all).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import IO, Any

CLAIMS_FOLDER = "claims"


class Claims:
    """The claims one driver holds on a store's grid jobs."""

    def __init__(self, folder: Path, grid_id: str) -> None:
        self.folder = Path(folder) / CLAIMS_FOLDER
        self.grid_id = grid_id
        self.held: dict[str, IO[str]] = {}

    def _open(self, job_id: str) -> IO[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        return open(os.open(self.folder / f"{job_id}.lock", os.O_RDWR | os.O_CREAT, 0o666), "r+")

    def try_claim(self, job_id: str) -> bool:
        """Claim ``job_id`` unless a live process holds it; never waits."""
        return self._claim(job_id, wait=False)

    def wait_claim(self, job_id: str) -> None:
        """Claim ``job_id``, waiting until its holder finishes it or dies."""
        self._claim(job_id, wait=True)

    def _claim(self, job_id: str, wait: bool) -> bool:
        if job_id in self.held:
            return True
        handle = self._open(job_id)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"grid": self.grid_id, "pid": os.getpid(), "host": socket.gethostname()}))
        handle.flush()
        self.held[job_id] = handle
        return True

    def holder(self, job_id: str) -> dict[str, Any]:
        """Who holds (or last held) ``job_id``: grid id, pid and host, as far as the file tells."""
        try:
            return json.loads((self.folder / f"{job_id}.lock").read_text())
        except (OSError, ValueError):
            return {}

    def release(self, job_id: str) -> None:
        handle = self.held.pop(job_id, None)
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def release_all(self) -> None:
        for job_id in list(self.held):
            self.release(job_id)


def describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another grid"
    return f"grid {holder.get('grid', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"
