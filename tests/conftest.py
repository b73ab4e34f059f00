"""Shared fixtures: an isolated result store, data home and torch hub per test; helpers to run the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.plugins import reset_plugins


PHASES_PASSED = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Note on the test item whether each phase passed, so fixtures can tell at teardown."""
    report = yield
    item.stash.setdefault(PHASES_PASSED, {})[report.when] = report.passed
    return report


@pytest.fixture(autouse=True)
def isolated_env(request, tmp_path_factory, monkeypatch):
    """Every test gets its own results/data/torch-hub folders, so nothing leaks between tests. They are
    removed when the test passes (like `tmp_path_retention_policy = "failed"` does for tmp_path): data sets
    and checkpoints written by the suite add up to gigabytes."""
    home = tmp_path_factory.mktemp("env")
    monkeypatch.setenv("HARNESS_RESULTS", str(home / "results"))
    monkeypatch.setenv("HARNESS_DATA", str(home / "data"))
    monkeypatch.setenv("HARNESS_CACHE", str(home / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.delenv("HARNESS_PLUGINS_DIR", raising=False)
    reset_plugins()
    yield home
    reset_plugins()
    passed = request.node.stash.get(PHASES_PASSED, {})
    if passed.get("setup") and passed.get("call"):
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def cli(capsys):
    """Run `harness ARGS...` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def shell():
    """Run the installed `harness` executable as a user would, in a subprocess."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        exe = Path(sys.executable).with_name("harness")
        return subprocess.run(
            [str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})},
        )

    return run
