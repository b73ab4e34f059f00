"""Faults and concurrent use, reproduced as a user meets them (issue 21): a damaged record, two grids or
two trainings on one folder, plugins that fail to register, bad names and paths, signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import FIXTURE_PLUGINS

from harness.run.store import ResultStore

GRID_PLUGINS = Path(__file__).parent / "grid_plugins"
PLUGINS = ("--plugins-dir", FIXTURE_PLUGINS, "--plugins-dir", GRID_PLUGINS)
EXE = Path(sys.executable).with_name("harness")


@pytest.fixture
def env(isolated_env):
    """demo-pairs data in place; returns the test's folders."""
    data = isolated_env / "data" / "demo-pairs"
    data.mkdir(parents=True)
    (data / "READY").write_text("ok")
    return {"home": isolated_env, "results": isolated_env / "results"}


def suite_file(tmp_path: Path, methods: list[str], name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    lines = "\n".join(f"  - {m}" for m in methods)
    path.write_text(f"methods:\n{lines}\ndatasets:\n  - {{name: demo-pairs, split: test}}\n")
    return path


def sleepy(*seconds: float) -> list[str]:
    return [f"{{name: sleepy, options: {{seconds: {s}}}}}" for s in seconds]


# -- 1. one corrupt record ------------------------------------------------------------------------
def test_a_corrupt_record_is_skipped_with_a_warning_and_its_cell_runs_again(cli, env, tmp_path):
    path = suite_file(tmp_path, sleepy(0.0, 0.001, 0.002))
    code, out, err = cli(*PLUGINS, "grid", "--suite", path, "--workers", "0", "--quiet")
    assert code == 0, err
    store = env["results"]
    broken = sorted(store.glob("runs/*/record.json"))[0]
    broken.write_text('{"broken":')

    # with the index still present: the damaged cell is not complete, it runs again
    code, out, err = cli(*PLUGINS, "grid", "--suite", path, "--workers", "0", "--json")
    assert code == 0, err
    assert sorted(cell["state"] for cell in json.loads(out)) == ["cached", "cached", "done"]
    assert f"skipped unreadable run record {broken}" in err and f"rm -r {broken.parent}" in err

    # with the index deleted: it is rebuilt without the damaged record, which is named
    for index in store.glob("index.sqlite*"):
        index.unlink()
    code, out, err = cli("results", "--format", "json")
    assert code == 0, err
    assert len(json.loads(out)) == 3 and "Traceback" not in err
    assert f"skipped unreadable run record {broken}" in err and "JSONDecodeError" in err
    for index in store.glob("index.sqlite*"):
        index.unlink()
    code, out, err = cli(*PLUGINS, "grid", "--suite", path, "--workers", "0", "--json")
    assert code == 0, err
    assert [cell["state"] for cell in json.loads(out)] == ["cached"] * 3


# -- 2. two grids on one store --------------------------------------------------------------------
def _grid_command(path: Path) -> list[str]:
    return [str(EXE), *map(str, PLUGINS), "grid", "--suite", str(path), "--workers", "0", "--json"]


def _stored_cells(results: Path) -> list[float]:
    return sorted(r["method"]["options"]["seconds"] for r in ResultStore(results).records() if r["status"] == "ok")


def test_two_grids_on_one_store_run_each_cell_once_and_status_shows_both(cli, env, tmp_path):
    seconds = (0.2, 0.21, 0.22, 0.23, 0.24)
    command = _grid_command(suite_file(tmp_path, sleepy(*seconds)))
    drivers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    both_shown = False
    while any(d.poll() is None for d in drivers) and not both_shown:
        code, out, err = cli("status")
        both_shown = "also running: grid" in out and "running: driver pid" in out
        time.sleep(0.2)
    outcomes = [d.communicate(timeout=120) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outcomes
    assert both_shown
    assert _stored_cells(env["results"]) == list(seconds)  # five cells, five records (not ten)
    states = [[cell["state"] for cell in json.loads(out)] for out, _ in outcomes]
    for first, second in zip(*states):
        assert sorted([first, second]) == ["cached", "done"]  # each cell ran in exactly one of the grids


@pytest.mark.slow
def test_a_killed_grid_driver_passes_its_claims_to_the_other(env, tmp_path):
    seconds = (0.2, 0.21, 0.22, 0.23, 0.24)
    command = _grid_command(suite_file(tmp_path, sleepy(*seconds)))
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = env["results"] / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(runs.glob("*/record.json")):
        time.sleep(0.05)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "Traceback" not in err
    stored = _stored_cells(env["results"])
    assert sorted(set(stored)) == list(seconds)
    assert len(stored) <= len(seconds) + 1  # at most the cell in flight in the killed driver's worker twice
