"""The content-addressed cache: atomic entries, LRU eviction under a cap, entries in use kept, the CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.run.cache import Cache, parse_size


def fill(cache: Cache, key: str, size: int) -> None:
    with cache.stage("predictions", key) as staging:
        (staging.path / "data.bin").write_bytes(b"x" * size)


def test_rows_round_trip_and_count(tmp_path):
    cache = Cache(tmp_path)
    cache.put_rows("features", "extractor-a", {"img1": b"\x01\x02", "img2": b"\x03"})
    assert cache.get_rows("features", "extractor-a", ["img1", "img3"]) == {"img1": b"\x01\x02"}
    assert cache.get_rows("features", "extractor-b", ["img1"]) == {}
    assert cache.usage()["features"] == {"entries": 2, "bytes": 3}
    with pytest.raises(UsageError, match="tier"):
        cache.get_rows("predictions", "x", ["a"])


def test_staged_folder_appears_only_when_complete(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError):
        with cache.stage("predictions", "k1") as staging:
            (staging.path / "part").write_text("half")
            raise RuntimeError("killed")
    with cache.use("predictions", "k1") as folder:
        assert folder is None
    fill(cache, "k1", 10)
    with cache.use("predictions", "k1") as folder:
        assert (folder / "data.bin").stat().st_size == 10
    assert not any((tmp_path / ".staging").iterdir())
    with cache.stage("predictions", "k2") as staging:
        staging.discard()
    assert [e.key for e in cache.entries("predictions")] == ["k1"]


def _stage_and_hang(root: str) -> None:
    cache = Cache(root)
    with cache.stage("predictions", "killed") as staging:
        (staging.path / "part").write_text("half")
        time.sleep(60)


def test_kill_9_leaves_no_entry_and_prune_clears_the_debris(tmp_path):
    process = multiprocessing.get_context("fork").Process(target=_stage_and_hang, args=(str(tmp_path),))
    process.start()
    deadline = time.time() + 30
    while time.time() < deadline and not list((tmp_path / ".staging").glob("*/part")):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    cache = Cache(tmp_path)
    with cache.use("predictions", "killed") as folder:
        assert folder is None
    assert cache.entries() == []
    cache.prune(older_than=0)
    assert list((tmp_path / ".staging").iterdir()) == []


def test_cap_evicts_least_recently_used_predictions_but_never_one_in_use(tmp_path):
    cache = Cache(tmp_path, max_bytes=2500)
    fill(cache, "old", 1000)
    time.sleep(0.01)
    fill(cache, "used", 1000)
    time.sleep(0.01)
    with cache.use("predictions", "old"):  # touch: "used" is now the least recently used
        pass
    fill(cache, "new", 1000)
    assert sorted(e.key for e in cache.entries("predictions")) == ["new", "old"]
    with cache.use("predictions", "old") as held, cache.use("predictions", "new"):
        assert held is not None
        fill(cache, "third", 1000)  # nothing evictable: the new entry is not kept
        assert sorted(e.key for e in cache.entries("predictions")) == ["new", "old"]
    fill(cache, "third", 1000)
    assert "third" in {e.key for e in cache.entries("predictions")}
    assert cache.total_bytes() <= 2500


def test_prune_by_tier_age_and_size(tmp_path):
    cache = Cache(tmp_path)
    fill(cache, "a", 100)
    fill(cache, "b", 100)
    cache.put_rows("scores", "", {"s": b"{}"})
    assert [e.key for e in cache.prune(tier="scores")] == ["s"]
    assert cache.prune(older_than=3600) == []
    removed = cache.prune(max_bytes=150)
    assert [e.key for e in removed] == ["a"] and cache.total_bytes() == 100
    cache.put_rows("features", "ext", {f"img{i}": b"f" * 8 for i in range(2000)})
    assert len(cache.prune(tier="features")) == 2000  # rows go in one transaction
    assert cache.usage()["features"]["entries"] == 0


def test_parse_size():
    assert parse_size("500M") == 500 << 20 and parse_size("2G") == 2 << 30 and parse_size("1000") == 1000
    assert parse_size("1.5k") == 1536 and parse_size("3GiB") == 3 << 30
    with pytest.raises(UsageError, match="--cache-max-size"):
        parse_size("lots")


def test_cache_commands(cli, isolated_env):
    cache = Cache()
    fill(cache, "abc", 2048)
    cache.put_rows("features", "ext", {"img": b"1234"})
    code, out, _ = cli("cache", "du", "--json")
    usage = json.loads(out)
    assert code == 0 and usage["predictions"] == {"entries": 1, "bytes": 2048} and usage["features"]["entries"] == 1
    code, out, _ = cli("cache", "ls")
    assert code == 0 and "predictions" in out and "2.0 KiB" in out
    assert cli("cache", "prune")[0] == 2
    code, out, _ = cli("cache", "prune", "--tier", "predictions")
    assert code == 0 and "removed 1 entries" in out
    assert cli("cache", "prune", "--older-than", "soon")[0] == 2


def _open_together(root: str, barrier, index: int) -> None:
    barrier.wait()
    cache = Cache(Path(root))
    cache.put_rows("features", "race", {f"key{index}": b"row"})
    assert cache.get_rows("features", "race", [f"key{index}"]) == {f"key{index}": b"row"}


def test_processes_opening_a_fresh_cache_together_all_succeed(tmp_path):
    """Grid workers start together on a new cache: switching it to WAL and creating its tables must wait
    for each other, not fail with "database is locked" (before `harness.run.database`: 5 of 30 rounds)."""
    context = multiprocessing.get_context("fork")
    for round_ in range(20):
        root = tmp_path / f"cache{round_}"
        barrier = context.Barrier(6)
        processes = [context.Process(target=_open_together, args=(str(root), barrier, i)) for i in range(6)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [process.exitcode for process in processes] == [0] * 6, f"round {round_}"
        assert len(Cache(root).get_rows("features", "race", [f"key{i}" for i in range(6)])) == 6
