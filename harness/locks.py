"""Exclusive locks between processes: ``fcntl.flock`` on a lock file that names its holder.

Used for a grid driver's claims on jobs (`harness.grid.claims`) and for a training output folder
(`harness.train.engine`). The kernel drops the lock of a process that dies, ``kill -9`` included, so a
stale lock never needs clean-up: the next process simply takes it. The file holds the holder's pid,
host and what it is doing, for messages only; lock files are never deleted (deleting one would let
two processes lock two different files of one name).

A forked child (a DataLoader worker) shares its parent's locks through the descriptors it inherits,
and would keep them held after the parent is killed; so right after a fork the child points those
descriptors at ``/dev/null``, dropping its share while the parent keeps the lock.

``flock`` works between processes of one machine and on local file systems; on a network file
system it depends on the server (NFSv4 maps it to byte-range locks; some setups do not lock at all).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import IO, Any


_held: set[int] = set()
"""Descriptors of the locks this process holds."""


def _drop_inherited() -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    for fd in _held:
        os.dup2(null, fd, inheritable=False)  # the number stays valid for the child's file objects
    os.close(null)
    _held.clear()


os.register_at_fork(after_in_child=_drop_inherited)


def acquire(path: Path, what: dict[str, Any]) -> IO[str] | None:
    """Lock ``path`` (created if missing) and record ``what`` with this process's pid and host in it;
    None, at once, when another live process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    handle.write(json.dumps({**what, "pid": os.getpid(), "host": socket.gethostname(), "since": since}))
    handle.flush()
    _held.add(handle.fileno())
    return handle


def holder(path: Path) -> dict[str, Any]:
    """What the lock file says about its holder (empty when it cannot be read)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(info: dict[str, Any]) -> str:
    """``pid N on HOST since TIME`` for a message (as much as is known)."""
    if not info:
        return "another process"
    since = f" since {info['since']}" if info.get("since") else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}{since}"


def release(handle: IO[str]) -> None:
    _held.discard(handle.fileno())
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()
