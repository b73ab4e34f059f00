"""The result store: one immutable directory per run plus an SQLite index for queries.

Layout under the store root (``./harness-results`` by default, ``--results`` / ``HARNESS_RESULTS``)::

    runs/<run_id>/record.json     the result record (never rewritten)
    runs/<run_id>/samples.jsonl   per-sample metric values
    runs/<run_id>/images/*.png    some predictions, for galleries
    index.sqlite                  WAL-mode index over the records; rebuildable from runs/

A run directory is assembled under a temporary name and renamed into place, so a crash never leaves
a half-written record behind; the index is derived data and can always be rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import secrets
import sys
from contextlib import closing
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..data import save_png
from ..errors import UsageError
from . import database

RESULTS_ENV = "HARNESS_RESULTS"
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    method TEXT NOT NULL,
    dataset TEXT NOT NULL,
    split TEXT NOT NULL,
    status TEXT NOT NULL,
    prediction_key TEXT,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scores (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    label TEXT NOT NULL,
    metric TEXT NOT NULL,
    score_key TEXT,
    PRIMARY KEY (run_id, label)
);
CREATE TABLE IF NOT EXISTS metric_values (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    label TEXT NOT NULL,
    metric TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    n INTEGER,
    higher_is_better INTEGER,
    PRIMARY KEY (run_id, label, key)
);
CREATE INDEX IF NOT EXISTS runs_cell ON runs(method, dataset, split);
CREATE INDEX IF NOT EXISTS runs_prediction ON runs(prediction_key, status);
CREATE INDEX IF NOT EXISTS scores_key ON scores(score_key);
"""


def default_results_root() -> Path:
    return Path(os.environ.get(RESULTS_ENV, "harness-results"))


def check_results_root(root: Path) -> Path:
    """``root`` if it is a folder or does not exist yet; a file there is a usage error, not a traceback."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"result store {root} (--results or ${RESULTS_ENV}) is a file, expected a folder")
    return root


class ResultStore:
    """Writes run records atomically and answers queries through the SQLite index."""

    def __init__(self, root: Path | None = None, index: bool = True) -> None:
        """``index=False`` for grid workers: they only write run folders, the driver indexes them
        (SQLite must never be written from many nodes over a network filesystem)."""
        self.root = check_results_root(Path(root) if root is not None else default_results_root())
        self.indexing = index
        self.runs_dir = self.root / "runs"
        self.index_path = self.root / "index.sqlite"
        self.warned: set[Path] = set()
        """Unreadable records already reported by this store object (each is named once per command)."""

    # -- writing ---------------------------------------------------------------------------------
    def write(
        self,
        record: dict[str, Any],
        samples: Iterable[dict[str, Any]] = (),
        images: Iterable[tuple[str, Any]] = (),
    ) -> Path:
        """Store a run; returns the record path. ``images`` are (file stem, tensor or uint8 array) pairs."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        final = self.runs_dir / record["run_id"]
        if final.exists():
            raise FileExistsError(f"run {record['run_id']} already stored at {final}")
        staging = self.runs_dir / f".{record['run_id']}.{secrets.token_hex(4)}"
        staging.mkdir()  # mode 0o777 minus the umask (mkdtemp's 0700 would lock a shared store to one user)
        try:
            with open(staging / "samples.jsonl", "w") as handle:
                for row in samples:
                    handle.write(json.dumps(row, default=_json_default) + "\n")
            saved = []
            for stem, image in images:
                name = f"images/{_safe_name(stem)}.png"
                save_png(image, staging / name)
                saved.append(name)
            record = {**record, "files": {"samples": "samples.jsonl", "images": saved}}
            (staging / "record.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if self.indexing:
            self._index(record, final / "record.json")
        return final / "record.json"

    # -- index -----------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        connection = database.connect(self.index_path, timeout=30)
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            # an index of an older layout: it is derived data, so drop it and let the caller rebuild
            database.run_script(connection, "DROP TABLE IF EXISTS metric_values; DROP TABLE IF EXISTS scores; "
                                f"DROP TABLE IF EXISTS runs; PRAGMA user_version = {SCHEMA_VERSION};\n{SCHEMA}")
            if version != 0 or self._has_runs():
                _fill(connection, self.runs_dir, self.warned)
        database.run_script(connection, SCHEMA)
        return connection

    def _has_runs(self) -> bool:
        return self.runs_dir.is_dir() and any(self.runs_dir.glob("*/record.json"))

    def _index(self, record: dict[str, Any], path: Path) -> None:
        with closing(self._connect()) as connection, connection:
            _insert(connection, record, path)

    def index_record(self, path: Path) -> dict[str, Any] | None:
        """Index one run folder's ``record.json`` written elsewhere (by a grid worker); returns the record,
        or None (with a warning) when it cannot be read."""
        record = read_record(Path(path), self.warned)
        if record is not None:
            self._index(record, Path(path))
        return record

    def sync_index(self) -> int:
        """Index run folders missing from the index (written by workers after their driver died)."""
        if not self.runs_dir.exists():
            return 0
        if not self.index_path.exists():
            return self.rebuild_index()
        with closing(self._connect()) as connection, connection:
            known = {row[0] for row in connection.execute("SELECT run_id FROM runs")}
            added = 0
            for path in sorted(self.runs_dir.glob("*/record.json")):
                if path.parent.name not in known:
                    added += _insert_file(connection, path, self.warned)
        return added

    def rebuild_index(self) -> int:
        """Recreate the index from the run directories; returns the number of records indexed."""
        if self.index_path.exists():
            self.index_path.unlink()
        with closing(self._connect()) as connection, connection:
            return connection.execute("SELECT count(*) FROM runs").fetchone()[0]

    # -- reading ---------------------------------------------------------------------------------
    def _index_ready(self) -> bool:
        """False when nothing was ever stored; rebuilds a missing index from the run folders."""
        if not self.runs_dir.exists():
            return False
        if not self.index_path.exists():
            self.rebuild_index()
        return True

    def records(self) -> list[dict[str, Any]]:
        """All indexed records, oldest first."""
        if not self._index_ready():
            return []
        with closing(self._connect()) as connection:
            rows = connection.execute("SELECT record FROM runs ORDER BY created, run_id").fetchall()
        records = (read_record(Path(row[0]), self.warned) for row in rows if Path(row[0]).exists())
        return [record for record in records if record is not None]

    def find_complete(self, cell: Any) -> dict[str, Any] | None:
        """The newest ok record with the cell's prediction key and every (label, score key) of the cell.

        ``cell`` is a `harness.run.cells.Cell` (anything with ``keys.prediction`` and ``keys.scores``).
        One indexed query; None when the cell still has to run.
        """
        if not self._index_ready():
            return None
        scores = sorted(cell.keys.scores.items())
        if not scores:
            return None
        pairs = ",".join("(?, ?)" for _ in scores)
        query = (
            "SELECT r.record FROM runs r WHERE r.prediction_key = ? AND r.status = 'ok' AND "
            f"(SELECT count(*) FROM scores s WHERE s.run_id = r.run_id AND (s.label, s.score_key) IN (VALUES {pairs})) = ? "
            "ORDER BY r.created DESC, r.run_id DESC LIMIT 1"
        )
        params = [cell.keys.prediction, *(item for pair in scores for item in pair), len(scores)]
        with closing(self._connect()) as connection:
            row = connection.execute(query, params).fetchone()
        if row is None or not Path(row[0]).exists():
            return None
        record = read_record(Path(row[0]), self.warned)  # a record damaged since it was indexed: the cell runs again
        return None if record is None else {**record, "path": row[0]}

    def metric_rows(self) -> list[dict[str, Any]]:
        """One row per (run, metric label, value name), for tables and exports."""
        if not self._index_ready():
            return []
        query = (
            "SELECT r.run_id, r.created, r.method, r.dataset, r.split, r.status, m.label, m.metric, m.key, m.value, m.n "
            "FROM runs r LEFT JOIN metric_values m ON m.run_id = r.run_id ORDER BY r.created, r.run_id, m.label, m.key"
        )
        with closing(self._connect()) as connection:
            cursor = connection.execute(query)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]


REQUIRED_FIELDS = ("run_id", "created", "method", "dataset", "status")


def read_record(path: Path, warned: set[Path] | None = None) -> dict[str, Any] | None:
    """A run's record, or None after a warning naming the file when it cannot be read or lacks the
    fields the index needs: one damaged record must not take the whole store down."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, expected an object")
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        for part, field in (("method", "name"), ("dataset", "name"), ("dataset", "split")):
            if not isinstance(record[part], dict) or field not in record[part]:
                raise ValueError(f"no {part}.{field}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if warned is None or path not in warned:
            _warn_unreadable(path, exc)
        if warned is not None:
            warned.add(path)
        return None
    return record


def _warn_unreadable(path: Path, exc: BaseException) -> None:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"harness: warning: skipped unreadable run record {path} ({type(exc).__name__}: {reason}); "
          f"its run counts as missing and a grid runs its cell again. Restore the file from a backup, "
          f"or remove the run: rm -r {path.parent}", file=sys.stderr)


def _fill(connection: sqlite3.Connection, runs_dir: Path, warned: set[Path]) -> None:
    for path in sorted(runs_dir.glob("*/record.json")):
        _insert_file(connection, path, warned)


def _insert_file(connection: sqlite3.Connection, path: Path, warned: set[Path]) -> int:
    """Index one record file; 0 (after a warning) when it cannot be read."""
    record = read_record(path, warned)
    if record is None:
        return 0
    _insert(connection, record, path)
    return 1


def _insert(connection: sqlite3.Connection, record: dict[str, Any], path: Path) -> None:
    keys = record.get("keys") or {}  # records written before keys existed are indexed without them
    connection.execute(
        "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record["run_id"],
            record["created"],
            record["method"]["name"],
            record["dataset"]["name"],
            record["dataset"]["split"],
            record["status"],
            keys.get("prediction"),
            str(path.resolve()),
        ),
    )
    for label, metric in record.get("metrics", {}).items():
        name = metric.get("metric", label)
        connection.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                           (record["run_id"], label, name, metric.get("score_key")))
        for key, value in metric.get("values", {}).items():
            connection.execute(
                "INSERT OR REPLACE INTO metric_values VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record["run_id"], label, name, key, value, metric.get("n"), int(metric["higher_is_better"])),
            )


def _safe_name(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "tolist"):  # torch tensors
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result record")
