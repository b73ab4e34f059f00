"""The grid's speed targets, through the CLI as a user runs it.

- A re-run of a finished 20-cell grid: at most 50 ms per cached cell (planning, keys with data and
  weight digests, store lookup, events, table).
- The same cells on 2 local worker processes vs one after another (ratio reported in docs/benchmarks.md).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from cli_helpers import FIXTURE_PLUGINS

from harness.cli import main

GRID_PLUGINS = Path(__file__).parents[1] / "grid_plugins"
PLUGINS = ["--plugins-dir", str(FIXTURE_PLUGINS), "--plugins-dir", str(GRID_PLUGINS)]


def write_suite(folder: Path, text: str) -> Path:
    path = folder / "suite.yaml"
    path.write_text(text)
    return path


def grid(*args: str) -> int:
    return main([*PLUGINS, "grid", *map(str, args)])


@pytest.fixture
def demo_pairs(isolated_env):
    data = isolated_env / "data" / "demo-pairs"
    data.mkdir(parents=True)
    (data / "READY").write_text("ok")
    return isolated_env


def test_rerun_of_a_finished_20_cell_grid(benchmark, demo_pairs, tmp_path, capsys):
    methods = "\n".join(f"  - {{name: flaky, options: {{crash_after: {100 + i}}}}}" for i in range(20))
    suite = write_suite(tmp_path, f"methods:\n{methods}\ndatasets: [demo-pairs]\n")
    assert grid("--suite", suite, "--workers", "0", "--quiet") == 0
    assert "20 done" in capsys.readouterr().out

    def rerun() -> None:
        assert grid("--suite", suite, "--workers", "0", "--quiet") == 0

    benchmark.pedantic(rerun, rounds=5, iterations=1, warmup_rounds=1)
    assert "20 cached" in capsys.readouterr().out
    per_cell = benchmark.stats.stats.median / 20
    benchmark.extra_info["median_ms_per_cached_cell"] = per_cell * 1000
    print(f"\nre-run of a finished 20-cell grid: {per_cell * 1000:.1f} ms per cached cell")
    assert per_cell <= 0.050


def test_two_local_workers_vs_sequential(benchmark, isolated_env, tmp_path, capsys, monkeypatch):
    """Six CPU-bound cells (untrained two-stage S-DSEN on 6 rain-synth images each)."""
    methods = "\n".join(f"  - {{name: s-dsen, untrained: true, options: {{stages: 2, lr: {0.001 * (i + 1)}}}}}"
                        for i in range(6))
    suite = write_suite(tmp_path, f"methods:\n{methods}\ndatasets: [{{name: rain-synth, limit: 6}}]\n")
    assert main(["run", "--method", "identity", "--dataset", "rain-synth", "--limit", "1", "--quiet"]) == 0

    def timed(workers: int, index: int) -> float:
        # a cache of its own per run: otherwise the second run reuses the first one's stored predictions
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / f"cache-{workers}-{index}"))
        tick = time.perf_counter()
        code = grid("--suite", suite, "--workers", workers, "--quiet", "--results", tmp_path / f"r-{workers}-{index}")
        assert code == 0, capsys.readouterr().err
        return time.perf_counter() - tick

    sequential, parallel = [], []
    for index in range(2):  # alternate so machine noise hits both alike
        sequential.append(timed(1, index))
        parallel.append(timed(2, index))
    benchmark.pedantic(timed, args=(2, 9), rounds=1, iterations=1)
    ratio = statistics.median(sequential) / statistics.median(parallel)
    benchmark.extra_info.update(sequential_s=statistics.median(sequential), parallel_s=statistics.median(parallel),
                                speedup=ratio)
    print(f"\n6 cells: 1 worker {statistics.median(sequential):.1f}s, 2 workers {statistics.median(parallel):.1f}s "
          f"→ {ratio:.2f}× faster")
