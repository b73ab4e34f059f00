"""SQLite connections shared by concurrent processes: the cache's and the result store's indexes.

SQLite's busy timeout does not cover two steps that every process takes when it first opens an index,
so grid workers starting together on a fresh cache failed with "database is locked" (5 of 30 trials
of six processes, before this module):

* switching a new database to WAL needs an exclusive lock taken from a shared one; SQLite answers
  SQLITE_BUSY at once rather than risk a deadlock, so the switch is retried until the timeout;
* ``CREATE TABLE IF NOT EXISTS`` reads the schema, then writes it: a read that turns into a write after
  another process changed the file fails at once too, so the schema is created in a transaction that
  takes the write lock up front (``BEGIN IMMEDIATE``, which waits under the busy timeout).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

RETRY_SECONDS = 0.05


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode (readers never block the writer), busy timeout ``timeout``."""
    connection = sqlite3.connect(path, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return connection
        except sqlite3.OperationalError as error:
            if not is_busy(error) or time.monotonic() > deadline:
                connection.close()
                raise
            time.sleep(RETRY_SECONDS)


def run_script(connection: sqlite3.Connection, script: str) -> None:
    """Run ``script`` (schema statements) as one transaction holding the write lock from its start."""
    connection.executescript(f"BEGIN IMMEDIATE;\n{script}\nCOMMIT;")


def is_busy(error: sqlite3.OperationalError) -> bool:
    message = str(error)
    return "locked" in message or "busy" in message
