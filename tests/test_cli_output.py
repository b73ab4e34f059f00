"""What a user sees of `harness list` on a terminal and in a pipe, and what `harness --help` tells them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main


@pytest.mark.parametrize("columns", [60, 80, 132])
def test_list_fits_the_terminal_width(cli, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size reads first
    code, out, _ = cli("list")
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert any(line.endswith("…") for line in lines)  # long descriptions are cut, visibly
    assert {"psnr", "s-dsen", "rain100h"} <= {line.split()[0] for line in lines if line.startswith("  ")}
    code, out, _ = cli("list", "--json")
    assert max(len(row["description"]) for row in json.loads(out)) > columns  # --json keeps the full text


def test_list_in_a_closed_pipe_exits_quietly(tmp_path):
    """`harness list | head` must not end in a BrokenPipeError traceback: the reader is gone before any output."""
    process = subprocess.Popen([str(Path(sys.executable).with_name("harness")), "list"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert err == ""


def test_help_names_every_environment_variable_and_exit_code(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for variable in ("HARNESS_DATA", "HARNESS_RESULTS", "HARNESS_PLUGINS_DIR", "HARNESS_CACHE", "TORCH_HOME",
                     "HARNESS_INCEPTION_WEIGHTS"):
        assert variable in text
    assert "--metric-option fid.weights=PATH" in text and "141" in text
