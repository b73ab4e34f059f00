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
