"""The runner, the result store and the CLI exit codes, through a plugin loaded with --plugins-dir."""

from __future__ import annotations

import json
import sqlite3

import pytest

from harness.run.store import ResultStore

from cli_helpers import FIXTURE_PLUGINS


@pytest.fixture
def demo_root(tmp_path):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    return root


def run_demo(cli, demo_root, *extra):
    return cli("run", "--plugins-dir", FIXTURE_PLUGINS, "--method", "flaky", "--dataset", "demo-pairs",
               "--data-root", demo_root, "--quiet", *extra)


def test_run_prints_table_and_stores_record(cli, demo_root, isolated_env):
    code, out, _ = run_demo(cli, demo_root)
    assert code == 0
    assert "mae ↓" in out and "record:" in out
    store = ResultStore()
    [record] = store.records()
    assert record["status"] == "ok" and record["samples"] == 6
    assert record["metrics"]["demo-mae"]["n"] == 6
    assert record["dataset"]["data_sha256"] and record["versions"]["torch"]
    assert record["plugins"]["dataset"]["plugin"] == "demo_plugin"
    run_dir = store.runs_dir / record["run_id"]
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [f"{i:03d}" for i in range(6)]
    assert sum(row["demo-mae"] for row in rows) / 6 == pytest.approx(record["metrics"]["demo-mae"]["values"]["mae"])
    assert len(list((run_dir / "images").glob("*.png"))) == 6
    with sqlite3.connect(store.index_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_json_output_is_the_record(cli, demo_root):
    code, out, _ = run_demo(cli, demo_root, "--json", "--limit", "2")
    assert code == 0
    record = json.loads(out)
    assert record["samples"] == 2 and record["dataset"]["limit"] == 2
    assert record["keys"]["prediction"] and record["keys"]["scores"]["demo-mae"] and record["status"] == "ok"
    assert record["metrics"]["demo-mae"]["score_key"] == record["keys"]["scores"]["demo-mae"]
    assert record["metrics"]["demo-mae"]["label"] == "demo-mae" and record["metrics"]["demo-mae"]["metric"] == "demo-mae"


def test_missing_data_exits_2_and_writes_nothing(cli, tmp_path, isolated_env):
    code, _, err = run_demo(cli, tmp_path / "nowhere")
    assert code == 2 and "missing READY" in err
    assert not (isolated_env / "results" / "runs").exists()


def test_crash_mid_run_keeps_partial_record_and_exits_1(cli, demo_root):
    code, _, err = run_demo(cli, demo_root, "--option", "crash_after=3")
    assert code == 1 and "crashed on purpose" in err
    [record] = ResultStore().records()
    assert record["status"] == "failed" and record["samples"] == 3
    assert "RuntimeError" in record["error"]["type"]


def test_bad_options_exit_2(cli, demo_root):
    assert run_demo(cli, demo_root, "--option", "crash_after")[0] == 2
    assert run_demo(cli, demo_root, "--metric-option", "nosuch.k=1")[0] == 2
    assert run_demo(cli, demo_root, "--split", "val")[0] == 2
    assert run_demo(cli, demo_root, "--limit", "0")[0] == 2
    assert run_demo(cli, demo_root, "--device", "tpu")[0] == 2


def test_results_command_formats(cli, demo_root):
    run_demo(cli, demo_root)
    run_demo(cli, demo_root, "--option", "crash_after=1")
    code, out, _ = cli("results", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [row["status"] for row in rows] == ["ok", "failed"]
    code, out, _ = cli("results", "--format", "csv")
    assert out.splitlines()[0].startswith("run_id,created,method,dataset,split,status")
    code, out, _ = cli("results")
    assert "flaky" in out and "failed" in out


def test_index_rebuilds_from_records(cli, demo_root):
    run_demo(cli, demo_root)
    store = ResultStore()
    store.index_path.unlink()
    assert len(store.records()) == 1


def test_observer_hooks_fire(demo_root, tmp_path):
    from harness import hookimpl
    from harness.plugins import get_plugins
    from harness.run.cells import RunSpec, execute_cell, plan_cell

    seen = []

    class Observer:
        @hookimpl
        def harness_cell_started(self, cell):
            seen.append(("started", cell["method"]))

        @hookimpl
        def harness_cell_finished(self, cell, record):
            seen.append(("finished", record["status"]))

    plugins = get_plugins([FIXTURE_PLUGINS])
    plugins.pm.register(Observer(), name="observer")
    try:
        cell = plan_cell(RunSpec(method="flaky", dataset="demo-pairs", data_root=demo_root), plugins)
        execute_cell(cell, plugins, ResultStore(tmp_path / "r"), progress=False)
    finally:
        plugins.pm.unregister(name="observer")
    assert seen == [("started", "flaky"), ("finished", "ok")]


@pytest.mark.parametrize(
    "command,phrase",
    [("list", "methods"), ("info", "parameter count"), ("plugins", "failed to load"), ("run", "--metric-option"),
     ("train", "resumes"), ("results", "CSV")],
)
def test_every_command_explains_itself(capsys, command, phrase):
    from harness.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert phrase in " ".join(capsys.readouterr().out.split())


def test_run_hooks_fire_through_cli(cli, demo_root, tmp_path):
    import sys
    import textwrap

    folder = tmp_path / "observers"
    folder.mkdir()
    (folder / "observer.py").write_text(textwrap.dedent("""
        from harness import hookimpl
        EVENTS = []

        @hookimpl
        def harness_run_started(run):
            EVENTS.append(("run_started", run["cells"]))

        @hookimpl
        def harness_cell_finished(cell, record):
            EVENTS.append(("cell_finished", record["status"]))

        @hookimpl
        def harness_run_finished(run, records):
            EVENTS.append(("run_finished", len(records)))
    """))
    code, _, err = run_demo(cli, demo_root, "--plugins-dir", folder)
    assert code == 0, err
    events = sys.modules["harness_dir_plugin_observer"].EVENTS
    assert events == [("run_started", 1), ("cell_finished", "ok"), ("run_finished", 1)]
