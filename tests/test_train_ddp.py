"""Data-parallel training under torchrun (gloo on CPU, 2 processes) equals one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from cli_helpers import FIXTURE_PLUGINS


def test_two_process_ddp_matches_single_process(cli, tmp_path):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    args = ["train", "--plugins-dir", str(FIXTURE_PLUGINS), "--method", "tiny-net", "--dataset", "demo-pairs",
            "--data-root", str(root), "--steps", "6", "--batch-size", "4", "--quiet"]
    code, _, err = cli(*args, "--out", tmp_path / "single")
    assert code == 0, err
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "harness", *args, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = load_file(str(tmp_path / "single" / "model.safetensors"))
    ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-5, atol=1e-6)
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["identity"]["batch_size"] == 4
    logged = [json.loads(line)["losses"]["loss"] for line in (tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()]
    expected = [json.loads(line)["losses"]["loss"] for line in (tmp_path / "single" / "train_log.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(expected, rel=1e-5)  # the global batch's loss


@pytest.mark.slow
def test_adversarial_recipe_runs_unchanged_under_torchrun(tmp_path):
    """Two optimizers stepped in turn, an image pool per process, loader workers: all through torchrun."""
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "harness",
         "train", "--plugins-dir", str(FIXTURE_PLUGINS), "--method", "tiny-gan", "--dataset", "demo-pairs",
         "--data-root", str(root), "--steps", "6", "--batch-size", "4", "--workers", "1", "--quiet",
         "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    state = torch.load(tmp_path / "ddp" / "state.pt", weights_only=True)
    assert set(state["recipe"]["optimizers"]) == {"generator", "discriminator"} and state["step"] == 6
