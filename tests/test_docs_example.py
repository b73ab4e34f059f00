"""The plugin example in docs/writing-plugins.md works as documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from cli_helpers import FIXTURE_PLUGINS

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"


def test_documented_plugin_runs(cli, tmp_path):
    code = re.search(r"```python\n(# my_plugins/median_filter.py.*?)```", DOC.read_text(), re.S).group(1)
    folder = tmp_path / "my_plugins"
    folder.mkdir()
    (folder / "median_filter.py").write_text(code)
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    status, out, err = cli("--plugins-dir", folder, "--plugins-dir", FIXTURE_PLUGINS, "run",
                           "--method", "median-filter", "--dataset", "demo-pairs", "--data-root", root,
                           "--option", "k=5", "--quiet")
    assert status == 0, err
    assert "median-filter × demo-pairs" in out


def test_documented_two_network_method_trains_and_evaluates(cli, tmp_path):
    code = re.search(r"```python\n(# my_plugins/tiny_pix2pix.py.*?)```", DOC.read_text(), re.S).group(1)
    folder = tmp_path / "my_plugins"
    folder.mkdir()
    (folder / "tiny_pix2pix.py").write_text(code)
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    common = ("--plugins-dir", folder, "--plugins-dir", FIXTURE_PLUGINS)
    status, out, err = cli(*common, "train", "--method", "tiny-pix2pix", "--dataset", "demo-pairs", "--data-root", root,
                           "--out", tmp_path / "run", "--steps", "6", "--checkpoint-every", "3", "--workers", "1",
                           "--eval-every", "3", "--eval-split", "test", "--metric", "demo-mae", "--keep-best", "mae",
                           "--quiet")
    assert status == 0, err
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    steps = [entry for entry in log if "losses" in entry]
    assert [entry["step"] for entry in steps] == [1, 2, 3, 4, 5, 6]
    assert set(steps[0]["losses"]) == {"d", "g_adversarial", "g_l1"}
    assert steps[0]["lr"] == {"generator": 2e-4, "discriminator": 2e-4}
    assert [entry["step"] for entry in log if "eval" in entry] == [3, 6]
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert set(state["recipe"]["optimizers"]) == {"generator", "discriminator"}
    status, out, err = cli(*common, "run", "--method", "tiny-pix2pix", "--dataset", "demo-pairs", "--data-root", root,
                           "--checkpoint", tmp_path / "run", "--quiet")
    assert status == 0, err
    assert "tiny-pix2pix × demo-pairs" in out
