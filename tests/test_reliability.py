"""Faults and concurrent use, reproduced as a user meets them (issue 21): a damaged record, two grids or
two trainings on one folder, plugins that fail to register, bad names and paths, signals."""

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


# -- 3. two trainings on one --out ----------------------------------------------------------------
def gan_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--plugins-dir", str(FIXTURE_PLUGINS), "--method", "tiny-gan", "--dataset", "demo-pairs",
            "--data-root", str(root), "--out", str(out), "--steps", "12", "--batch-size", "4",
            "--checkpoint-every", "2", "--quiet", *extra]


def demo_root(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    return root


def start_training(root: Path, out: Path) -> subprocess.Popen:
    """A slow `harness train` in a subprocess (with a forked DataLoader worker, which must not keep the
    lock held after the run is killed), returned once it has saved a step."""
    process = subprocess.Popen([str(EXE), *gan_args(root, out, "--workers", "1")], env={**os.environ, "DEMO_STEP_SLEEP": "0.3"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not (out / "state.pt").is_file():
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    return process


def test_a_second_training_on_one_out_is_refused_naming_the_first_and_a_stale_lock_is_taken_over(cli, tmp_path):
    root, out = demo_root(tmp_path), tmp_path / "ckpt"
    first = start_training(root, out)
    try:
        code, _, err = cli(*gan_args(root, out))
        assert code == 2, err
        assert f"--out {out} is in use by another training run (pid {first.pid} on " in err
        assert "tiny-gan on demo-pairs" in err and "Traceback" not in err
    finally:
        first.kill()
        first.wait()
    code, _, err = cli(*gan_args(root, out))  # the killed run's lock is stale: taken over
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # every step once


# -- 7. small ones --------------------------------------------------------------------------------
@pytest.mark.slow  # test_train_resume's stop-request test checks both statuses in-process, faster
def test_sigterm_ends_training_with_143_and_ctrl_c_with_130(tmp_path):
    root = demo_root(tmp_path)
    for signum, status, word in ((signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")):
        out = tmp_path / f"ckpt-{signum}"
        process = start_training(root, out)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
        assert process.returncode == status, err
        assert f"harness: {word}: training stopped at step" in err and "Traceback" not in err


def test_trained_weights_follow_the_umask(cli, tmp_path):
    root, out = demo_root(tmp_path), tmp_path / "ckpt"
    previous = os.umask(0o027)
    try:
        code, _, err = cli(*gan_args(root, out, "--steps", "2"))
    finally:
        os.umask(previous)
    assert code == 0, err
    modes = {path.name: path.stat().st_mode & 0o777 for path in out.iterdir() if not path.name.startswith(".")}
    assert modes == {"manifest.json": 0o640, "state.pt": 0o640, "model.safetensors": 0o640, "train_log.jsonl": 0o640}


def test_a_damaged_state_is_refused_without_torchs_weights_only_false_advice(cli, tmp_path):
    import zipfile

    root, out = demo_root(tmp_path), tmp_path / "ckpt"
    assert cli(*gan_args(root, out, "--steps", "4"))[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "completed": False}))
    original = zipfile.ZipFile(out / "state.pt")
    entries = {name: original.read(name) for name in original.namelist()}
    original.close()
    with zipfile.ZipFile(out / "state.pt", "w", zipfile.ZIP_STORED) as damaged:  # the pickle cut in a name
        for name, data in entries.items():
            cut = data.index(b"_rebuild_tensor") + 8 if name.endswith("data.pkl") else len(data)
            damaged.writestr(name, data[:cut])
    code, _, err = cli(*gan_args(root, out, "--steps", "4"))
    assert code == 2 and f"cannot resume from {out / 'state.pt'}" in err
    assert "weights_only" not in err and "can still be loaded" not in err and "\x1b[" not in err


# -- 5. a failed plugin contributes nothing ---------------------------------------------------------
DUPNAME = '''
from harness import Method, hookimpl

class Dup(Method):
    name = "dupname"
    tasks = frozenset({"deraining"})

    def predict(self, samples):
        return [s["rainy"] for s in samples]

@hookimpl
def harness_register_methods(register):
    register(Dup)
    register(Dup)
'''


def test_a_plugin_marked_failed_contributes_nothing(cli, env, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "dup.py").write_text(DUPNAME)
    code, out, err = cli("plugins", "--plugins-dir", plugins)
    assert code == 1 and "dup [FAILED]" in out and "duplicate method name 'dupname'" in out
    code, out, err = cli("--plugins-dir", FIXTURE_PLUGINS, "--plugins-dir", plugins, "run", "--method", "dupname",
                         "--dataset", "demo-pairs", "--split", "test")
    assert code == 2 and "unknown method 'dupname'" in err
    assert not (env["results"] / "runs").exists()


# -- 6. names and paths ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../x", "Upper", "a b", "", "-lead", "x/y"])
def test_plugin_names_are_validated_at_registration(cli, tmp_path, name):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "badname.py").write_text(DUPNAME.replace('"dupname"', repr(name)).replace("    register(Dup)\n    register(Dup)", "    register(Dup)"))
    code, out, err = cli("plugins", "--plugins-dir", plugins)
    assert code == 1 and "badname [FAILED]" in out
    assert f"method name {name!r} is not allowed: names are lower-case letters" in out


def test_results_pointing_at_a_file_is_a_usage_error(cli, env, tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a store")
    for args in (("results",), ("status",), ("run", "--method", "identity", "--dataset", "demo-pairs")):
        code, out, err = cli("--plugins-dir", FIXTURE_PLUGINS, *args, "--results", path)
        assert code == 2, (args, err)
        assert f"result store {path} (--results or $HARNESS_RESULTS) is a file, expected a folder" in err and "Traceback" not in err


# -- 7. an unknown plugin in a suite names the file -----------------------------------------------
@pytest.mark.parametrize("methods, datasets, message", [
    ("[nosuch]", "[demo-pairs]", "unknown method 'nosuch'"),
    ("[flaky]", "[nosuch-data]", "unknown dataset 'nosuch-data'"),
    ("[{name: flaky, options: {speed: 3}}]", "[demo-pairs]", "unknown option(s) speed"),
])
def test_an_unknown_method_or_dataset_in_a_suite_names_the_suite_file(cli, env, tmp_path, methods, datasets, message):
    path = tmp_path / "my-suite.yaml"
    path.write_text(f"methods: {methods}\ndatasets: {datasets}\n")
    code, out, err = cli(*PLUGINS, "grid", "--suite", path, "--workers", "0")
    assert code == 2 and f"harness: error: suite {path}: " in err and message in err


def test_publish_markdown_tells_apart_rows_that_differ_only_in_options(cli, env):
    for stages in ("1", "2"):
        code, _, err = cli("run", "--method", "s-dsen", "--untrained", "--dataset", "rain-synth", "--limit", "2",
                           "--metric", "psnr", "--option", f"stages={stages}", "--quiet")
        assert code == 0, err
    code, out, err = cli("publish", "--format", "markdown", "--leaderboard", "s-dsen")
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| s-dsen")]
    assert len(rows) == 2 and rows[0].startswith("| s-dsen (stages=1) | measured")
    assert rows[1].startswith("| s-dsen (stages=2) | measured")
