"""`harness grid`, `suites`, `status` through the CLI: caching, failures, resume, executors as plugins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import FIXTURE_PLUGINS

from harness.grid.events import latest_grid, read_events
from harness.grid.view import results_table
from harness.run.store import ResultStore

GRID_PLUGINS = Path(__file__).parent / "grid_plugins"
PLUGINS = ("--plugins-dir", FIXTURE_PLUGINS, "--plugins-dir", GRID_PLUGINS)


@pytest.fixture
def env(isolated_env):
    """demo-pairs data in place; returns the test's folders."""
    data = isolated_env / "data" / "demo-pairs"
    data.mkdir(parents=True)
    (data / "READY").write_text("ok")
    return {"home": isolated_env, "results": isolated_env / "results"}


def suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


BASIC = """
description: two cells on the test plugin's dataset
methods:
  - flaky
  - {name: sleepy, options: {seconds: 0.0}}
datasets:
  - {name: demo-pairs, split: test}
"""


def grid(cli, *args):
    return cli(*PLUGINS, "grid", *args)


def test_grid_runs_suite_then_everything_is_cached(cli, env, tmp_path):
    path = suite(tmp_path, BASIC)
    code, out, err = grid(cli, "--suite", path, "--workers", "0")
    assert code == 0, err
    assert "2 done" in out and "demo-pairs" in out and "mae ↓" in out
    records = ResultStore(env["results"]).records()
    assert sorted(r["method"]["name"] for r in records) == ["flaky", "sleepy"]

    code, out, err = grid(cli, "--suite", path, "--workers", "0", "--json")
    assert code == 0, err
    outcomes = json.loads(out)
    assert [o["state"] for o in outcomes] == ["cached", "cached"]
    assert outcomes[0]["metrics"]["demo-mae"]["mae"] > 0
    assert len(ResultStore(env["results"]).records()) == 2  # nothing ran twice

    code, out, err = grid(cli, "--suite", path, "--dry-run")
    assert code == 0 and out.count("cached") == 2 and "nothing was run" in out

    code, out, err = grid(cli, "--suite", path, "--workers", "0", "--force", "--method", "sle*")
    assert code == 0 and "1 done" in out
    assert len(ResultStore(env["results"]).records()) == 3


def test_failed_cell_is_recorded_grid_goes_on_and_rerun_failed_retries(cli, env, tmp_path):
    path = suite(tmp_path, """
methods:
  - {name: flaky, options: {crash_after: 2}}
  - sleepy
datasets: [demo-pairs]
""")
    code, out, err = grid(cli, "--suite", path, "--workers", "0")
    assert code == 1
    assert "1 done · 1 failed" in out and "flaky method crashed on purpose" in out
    failed = [r for r in ResultStore(env["results"]).records() if r["status"] == "failed"]
    assert len(failed) == 1 and "Traceback" in failed[0]["error"]["traceback"]

    code, out, err = grid(cli, "--suite", path, "--workers", "0")
    assert code == 1 and "failed earlier" in out and "1 cached" in out
    assert len(ResultStore(env["results"]).records()) == 2  # the failed cell was not run again

    code, out, err = grid(cli, "--suite", path, "--workers", "0", "--rerun-failed")
    assert code == 1 and "1 cached" in out
    assert len([r for r in ResultStore(env["results"]).records() if r["status"] == "failed"]) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("methods: [nosuch]\ndatasets: [demo-pairs]\n", "unknown method 'nosuch'"),
        ("methods: [flaky]\ndatasets: [demo-pairs]\ncolour: red\n", "unknown key(s) colour"),
        ("methods: [{name: flaky, options: {speed: 3}}]\ndatasets: [demo-pairs]\n", "unknown option(s) speed"),
        ("methods: [flaky]\ndatasets: [{name: demo-pairs, limit: -1}]\n", "expected a positive integer"),
        ("methods: [identity]\ndatasets: [market1501]\n", "no compatible method × dataset pair"),
        ("methods: [flaky]\ndatasets: [{name: demo-pairs, metrics: []}]\n", "'metrics' must be a non-empty list"),
    ],
)
def test_suite_usage_errors_exit_2_before_anything_runs(cli, env, tmp_path, text, message):
    code, out, err = grid(cli, "--suite", suite(tmp_path, text), "--workers", "0")
    assert code == 2 and message in err
    assert not (env["results"] / "grid").exists() and not (env["results"] / "runs").exists()


def test_dataset_metrics_replace_the_suites_and_metric_replaces_both(cli, env, tmp_path):
    path = suite(tmp_path, "methods: [flaky]\nmetrics: [demo-mae]\n"
                           "datasets: [{name: demo-pairs, metrics: [{label: demo-mae@double, params: {scale: 2}}]}]\n")
    code, out, err = grid(cli, "--suite", path, "--workers", "0")
    assert code == 0, err
    code, out, err = grid(cli, "--suite", path, "--workers", "0", "--metric", "demo-mae@plain")
    assert code == 0, err
    labels = [sorted(r["metrics"]) for r in ResultStore(env["results"]).records()]
    assert labels == [["demo-mae@double"], ["demo-mae@plain"]]


def test_all_pairs_grid_filters_and_skips_methods_without_weights(cli, env):
    code, out, err = grid(cli, "--dataset", "demo-*", "--method", "flaky,sleepy,s-dsen,identity", "--dry-run")
    assert code == 0, err
    assert "flaky × demo-pairs" in out and "identity × demo-pairs" in out
    assert "s-dsen" not in out  # needs weights and none were given
    code, out, err = grid(cli, "--dataset", "demo-pairs", "--method", "s-dsen", "--dry-run")
    assert code == 2 and "no compatible" in err
    code, out, err = grid(cli, "--task", "nosuchtask", "--dry-run")
    assert code == 2 and "unknown task" in err


def test_suite_trains_first_then_evaluates_and_reuses_the_training(cli, env, tmp_path):
    path = suite(tmp_path, """
methods:
  - name: tiny-net
    train: {dataset: demo-pairs, steps: 6, batch_size: 2, options: {milestones: [2, 4]}}
datasets: [demo-pairs]
""")
    code, out, err = grid(cli, "--suite", path, "--workers", "0")
    assert code == 0, err
    [record] = ResultStore(env["results"]).records()
    trained = Path(record["method"]["checkpoint"]).parent
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["completed"] and manifest["step"] == 6 and trained.parent.name == "trained"
    assert record["method"]["checkpoint_sha256"] == manifest["weights_sha256"]
    code, out, err = grid(cli, "--suite", path, "--workers", "0", "--dry-run")
    assert code == 0 and "trained" in out and "cached" in out


def test_events_log_and_status(cli, env, tmp_path):
    code, out, err = grid(cli, "--suite", suite(tmp_path, BASIC), "--workers", "0")
    assert code == 0
    events = list(read_events(env["results"]))
    assert events[0]["event"] == "grid_started" and events[-1]["event"] == "grid_finished"
    assert {e["state"] for e in events if e["event"] == "job_state"} >= {"running", "done"}
    code, out, err = cli("status")
    assert code == 0 and "2 done" in out and "finished" in out and "flaky × demo-pairs" in out


def test_executor_plugin_from_a_plugins_dir(cli, env, tmp_path):
    code, out, err = grid(cli, "--suite", suite(tmp_path, BASIC), "--executor", "serial-reversed",
                          "--executor-option", "tag=site-x")
    assert code == 0, err
    assert (env["results"] / "grid" / "executors" / "serial-reversed" / "tag").read_text() == "site-x"
    code, out, err = grid(cli, "--suite", suite(tmp_path, BASIC), "--executor", "nosuch")
    assert code == 2 and "unknown executor 'nosuch'" in err
    code, out, err = grid(cli, "--suite", suite(tmp_path, BASIC), "--executor", "serial-reversed", "--workers", "2")
    assert code == 2 and "unknown option(s) workers" in err


def test_local_workers_survive_a_killed_worker(cli, env, tmp_path):
    path = suite(tmp_path, """
methods: [killer, flaky, sleepy]
datasets: [demo-pairs]
""")
    code, out, err = grid(cli, "--suite", path, "--workers", "2")
    assert code == 1, err
    assert "2 done · 1 failed" in out and "killed by signal 9" in out
    assert sorted(r["method"]["name"] for r in ResultStore(env["results"]).records()) == ["flaky", "sleepy"]
    code, out, err = grid(cli, "--suite", path, "--workers", "0", "--dry-run")
    assert "killer × demo-pairs  to run" in out.replace("   ", "  ")  # a lost cell left no record: it runs again


def test_results_table_marks_the_best_of_each_column(env):
    def record(method, psnr, mae):
        return {"method": {"name": method}, "dataset": {"name": "d"},
                "metrics": {"psnr": {"values": {"psnr": psnr}, "higher_is_better": True},
                            "mae": {"values": {"mae": mae}, "higher_is_better": False}}}

    table = results_table([record("a", 30.0, 0.2), record("b", 31.0, 0.3)])
    headers = [str(column.header) for column in table.columns]
    assert headers == ["method", "d\npsnr ↑", "d\nmae ↓"]
    psnr, mae = table.columns[1]._cells, table.columns[2]._cells
    assert str(psnr[1]) == "31.0000" and getattr(psnr[1], "style", "") == "bold" and not hasattr(psnr[0], "style")
    assert str(mae[0]) == "0.2000" and getattr(mae[0], "style", "") == "bold"


def test_suites_lists_the_shipped_quickstart(cli):
    code, out, err = cli("suites")
    assert code == 0 and out.startswith("quickstart: ") and "rain-synth" in out
    code, out, err = cli("suites", "quickstart")
    assert "train:" in out and "steps: 60" in out


def test_killed_driver_loses_only_cells_in_flight(env, tmp_path):
    """kill -9 of the driver mid-grid; the same command then finishes the rest and reuses what finished."""
    path = suite(tmp_path, """
methods:
  - {name: sleepy, options: {seconds: 0.0}}
  - {name: sleepy, options: {seconds: 0.01}}
  - {name: sleepy, options: {seconds: 0.4}}
  - {name: sleepy, options: {seconds: 0.5}}
datasets: [demo-pairs]
""")
    exe = Path(sys.executable).with_name("harness")
    command = [str(exe), *map(str, PLUGINS), "grid", "--suite", str(path), "--workers", "1", "--quiet"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    runs = env["results"] / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(runs.glob("*/record.json"))) < 2:
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    state = latest_grid(env["results"])
    assert state is not None and state.finished is None and state.driver_alive() is False

    time.sleep(4)  # the orphaned worker finishes its cell and exits when it finds the driver gone
    finished_before = {p.parent.name for p in runs.glob("*/record.json")}
    assert 2 <= len(finished_before) <= 4
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]  # no half-written run folder

    completed = subprocess.run(command[:-1] + ["--json"], capture_output=True, text=True, env=os.environ.copy())
    assert completed.returncode == 0, completed.stderr
    states = [cell["state"] for cell in json.loads(completed.stdout)]
    assert states.count("cached") == len(finished_before) and states.count("done") == 4 - len(finished_before)
    store = ResultStore(env["results"])
    assert len(store.records()) == 4  # indexed, including the orphan's record
