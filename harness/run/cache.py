"""The one content-addressed cache of the harness: feature rows, stored predictions and scores.

Root: ``$HARNESS_CACHE`` (default ``~/.cache/harness``). Three tiers, all keyed by content digests:

* ``features``: small rows (e.g. Inception features per image), namespaced by what computed them;
* ``scores``: a metric's values and per-sample values under its score key;
* ``predictions``: one folder per prediction key holding safetensors shards (`harness.run.predictions`).

Rows live in ``cache.sqlite`` (WAL, transactions: a killed process leaves no half row); folders are
written under ``.staging/`` and renamed into place, so a kill -9 never leaves a half-written entry,
only staging debris that ``prune`` removes. Every entry records its size and last use.

Size cap (``--cache-max-size`` / ``HARNESS_CACHE_MAX``, e.g. ``20G``): when storing a predictions
entry would exceed it, the least recently used predictions entries are evicted first; an entry in use
(held by a shared ``flock`` while a run reads or writes it) is never evicted; if it still does not fit,
the new entry is not kept (the run is unaffected, the predictions are just not cached).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import secrets
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ..errors import UsageError
from . import database

CACHE_ENV = "HARNESS_CACHE"
CACHE_MAX_ENV = "HARNESS_CACHE_MAX"
ROW_TIERS = ("features", "scores")
FOLDER_TIERS = ("predictions",)
TIERS = ROW_TIERS + FOLDER_TIERS
LOCK_FILE = ".lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    tier TEXT NOT NULL, namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    bytes INTEGER NOT NULL, created REAL NOT NULL, used REAL NOT NULL,
    PRIMARY KEY (tier, namespace, key)
);
CREATE TABLE IF NOT EXISTS folders (
    tier TEXT NOT NULL, key TEXT NOT NULL, bytes INTEGER NOT NULL, created REAL NOT NULL, used REAL NOT NULL,
    PRIMARY KEY (tier, key)
);
CREATE INDEX IF NOT EXISTS rows_used ON rows(used);
CREATE INDEX IF NOT EXISTS folders_used ON folders(used);
"""
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def default_cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness"


def parse_size(text: str, flag: str = "--cache-max-size") -> int:
    """``500M``, ``20G``, ``1.5T``, ``1000`` (bytes) → bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise UsageError(f"{flag}: expected a size such as 500M, 20G or a number of bytes, got {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def default_max_bytes() -> int | None:
    value = os.environ.get(CACHE_MAX_ENV)
    return parse_size(value, CACHE_MAX_ENV) if value else None


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cached item, as `harness cache ls` shows it."""

    tier: str
    key: str
    bytes: int
    created: float
    used: float
    namespace: str = ""


@dataclasses.dataclass
class Staging:
    """A folder being filled for the cache; `discard` drops it instead of keeping it."""

    path: Path
    discarded: bool = False

    def discard(self) -> None:
        self.discarded = True


class Cache:
    """Content-addressed storage shared by every run and process on a machine."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.max_bytes = max_bytes if max_bytes is not None else default_max_bytes()
        self.index_path = self.root / "cache.sqlite"

    # -- rows (features, scores) --------------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        db = database.connect(self.index_path, timeout=120)
        try:
            database.run_script(db, SCHEMA)
            with db:
                yield db
        finally:
            db.close()

    def get_rows(self, tier: str, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of ``keys`` (missing keys are absent); marks them used."""
        _check_tier(tier, ROW_TIERS)
        found: dict[str, bytes] = {}
        unique = sorted(set(keys))
        now = time.time()
        with self._db() as db:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT key, value FROM rows WHERE tier = ? AND namespace = ? AND key IN ({marks})",
                                  [tier, namespace, *chunk]).fetchall()
                found.update((key, bytes(value)) for key, value in rows)
                if rows:
                    db.execute(f"UPDATE rows SET used = ? WHERE tier = ? AND namespace = ? AND key IN ({marks})",
                               [now, tier, namespace, *chunk])
        return found

    def put_rows(self, tier: str, namespace: str, values: Mapping[str, bytes]) -> None:
        _check_tier(tier, ROW_TIERS)
        now = time.time()
        with self._db() as db:
            db.executemany(
                "INSERT OR IGNORE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(tier, namespace, key, value, len(value), now, now) for key, value in values.items()],
            )

    # -- folders (predictions) ----------------------------------------------------------------------
    def folder_path(self, tier: str, key: str) -> Path:
        _check_tier(tier, FOLDER_TIERS)
        return self.root / tier / key[:2] / key

    @contextlib.contextmanager
    def use(self, tier: str, key: str) -> Iterator[Path | None]:
        """The complete folder of ``key`` (or None), held against eviction while the block runs."""
        path = self.folder_path(tier, key)
        with _shared_lock(path / LOCK_FILE) as held:
            if not held:
                yield None
                return
            with self._db() as db:
                db.execute("UPDATE folders SET used = ? WHERE tier = ? AND key = ?", (time.time(), tier, key))
            yield path

    @contextlib.contextmanager
    def stage(self, tier: str, key: str) -> Iterator[Staging]:
        """A private folder to fill; renamed into place when the block ends without an error.

        On an error, a kill or `Staging.discard` the folder is dropped and nothing appears under ``key``.
        If another process stored the same key meanwhile, its entry is kept (same key, same content).
        """
        final = self.folder_path(tier, key)
        staging_root = self.root / ".staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = staging_root / f"{tier}-{key[:16]}-{secrets.token_hex(4)}"
        staging.mkdir()
        lock = open(staging / LOCK_FILE, "w")
        fcntl.flock(lock, fcntl.LOCK_SH)
        handle = Staging(staging)
        try:
            yield handle
            if handle.discarded:
                return
            size = folder_bytes(staging)
            if not self._make_room(size, exclude=key):
                return
            final.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError, OSError):
                if not final.exists():
                    os.rename(staging, final)
            now = time.time()
            with self._db() as db:
                db.execute("INSERT OR REPLACE INTO folders VALUES (?, ?, ?, ?, ?)", (tier, key, size, now, now))
        finally:
            lock.close()
            shutil.rmtree(staging, ignore_errors=True)

    # -- listing, size, eviction --------------------------------------------------------------------
    def entries(self, tier: str | None = None) -> list[Entry]:
        """Every entry (rows grouped per namespace are listed one by one), least recently used first."""
        if not self.index_path.exists():
            return []
        with self._db() as db:
            rows = db.execute("SELECT tier, key, bytes, created, used, namespace FROM rows").fetchall()
            folders = db.execute("SELECT tier, key, bytes, created, used, '' FROM folders").fetchall()
        found = [Entry(*row) for row in [*rows, *folders] if tier is None or row[0] == tier]
        return sorted(found, key=lambda e: (e.used, e.tier, e.key))

    def usage(self) -> dict[str, dict[str, int]]:
        """Entries and bytes per tier."""
        usage = {tier: {"entries": 0, "bytes": 0} for tier in TIERS}
        if not self.index_path.exists():
            return usage
        with self._db() as db:
            for table in ("rows", "folders"):
                for tier, count, size in db.execute(f"SELECT tier, count(*), sum(bytes) FROM {table} GROUP BY tier"):
                    usage[tier] = {"entries": count, "bytes": size or 0}
        return usage

    def total_bytes(self) -> int:
        return sum(tier["bytes"] for tier in self.usage().values())

    def prune(self, older_than: float | None = None, tier: str | None = None, max_bytes: int | None = None) -> list[Entry]:
        """Remove entries unused for ``older_than`` seconds (of ``tier`` or all), then least recently used
        entries (predictions first) until the cache fits ``max_bytes``; entries in use are skipped.
        Returns what went."""
        if tier is not None:
            _check_tier(tier, TIERS)
        removed: list[Entry] = []
        if older_than is not None or (tier is not None and max_bytes is None):
            cutoff = time.time() - (older_than or 0.0)
            removed.extend(self._remove([e for e in self.entries(tier) if e.used <= cutoff]))
        if max_bytes is not None:
            removed.extend(self._evict_to(max_bytes, exclude=None, tiers=(tier,) if tier else TIERS))
        self._clear_staging()
        return removed

    def _make_room(self, incoming: int, exclude: str) -> bool:
        """Evict LRU predictions so ``incoming`` more bytes fit the cap; False if they cannot."""
        if self.max_bytes is None:
            return True
        self._evict_to(self.max_bytes - incoming, exclude=exclude, tiers=FOLDER_TIERS)
        return self.total_bytes() + incoming <= self.max_bytes

    def _evict_to(self, target: int, exclude: str | None, tiers: Sequence[str]) -> list[Entry]:
        total = self.total_bytes()
        # predictions go first (they are the big, re-computable tier), then rows, oldest use first
        ordered = sorted(self.entries(), key=lambda e: (e.tier not in FOLDER_TIERS, e.used))
        removed: list[Entry] = []
        rows: list[Entry] = []
        for entry in ordered:
            if total <= target:
                break
            if entry.tier not in tiers or entry.key == exclude:
                continue
            if entry.tier in FOLDER_TIERS:
                if not self._remove([entry]):
                    continue  # in use
                removed.append(entry)
            else:
                rows.append(entry)
            total -= entry.bytes
        return removed + self._remove(rows)

    def _remove(self, entries: Sequence[Entry]) -> list[Entry]:
        """Delete entries (rows in one transaction); folders in use are skipped. Returns those removed."""
        removed: list[Entry] = []
        rows = [e for e in entries if e.tier in ROW_TIERS]
        if rows:
            with self._db() as db:
                db.executemany("DELETE FROM rows WHERE tier = ? AND namespace = ? AND key = ?",
                               [(e.tier, e.namespace, e.key) for e in rows])
            removed.extend(rows)
        for entry in (e for e in entries if e.tier in FOLDER_TIERS):
            path = self.folder_path(entry.tier, entry.key)
            if path.exists():
                with _exclusive_lock(path / LOCK_FILE) as free:
                    if not free:
                        continue  # in use: never evicted
                    trash = self.root / ".staging" / f"trash-{entry.key[:16]}-{secrets.token_hex(4)}"
                    trash.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(path, trash)
                shutil.rmtree(trash, ignore_errors=True)
            with self._db() as db:
                db.execute("DELETE FROM folders WHERE tier = ? AND key = ?", (entry.tier, entry.key))
            removed.append(entry)
        return removed

    def _clear_staging(self) -> None:
        """Drop staging folders nobody holds (left by a killed process)."""
        staging_root = self.root / ".staging"
        if not staging_root.is_dir():
            return
        for folder in staging_root.iterdir():
            with _exclusive_lock(folder / LOCK_FILE) as free:
                if free:
                    shutil.rmtree(folder, ignore_errors=True)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _check_tier(tier: str, allowed: Sequence[str]) -> None:
    if tier not in allowed:
        raise UsageError(f"cache tier must be one of {', '.join(allowed)}, got {tier!r}")


@contextlib.contextmanager
def _shared_lock(path: Path) -> Iterator[bool]:
    """Hold a shared flock on ``path`` if it exists (True), else yield False."""
    try:
        handle = open(path, "r")
    except OSError:
        yield False
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield path.exists()  # evicted between open and lock: the folder is gone
    finally:
        handle.close()


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[bool]:
    """Try an exclusive flock without waiting: True if nobody holds ``path`` (or it does not exist)."""
    try:
        handle = open(path, "r")
    except OSError:
        yield True
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        yield False
        return
    try:
        yield True
    finally:
        handle.close()
