"""The deraining slice end to end, through the CLI as a user runs it, on the bundled rain-synth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_rain import make_rain100h


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short S-DSEN (2 stages) training run on rain-synth through the installed executable."""
    home = tmp_path_factory.mktemp("trained")
    env = {**os.environ, "HARNESS_DATA": str(home / "data"), "HARNESS_RESULTS": str(home / "results")}
    exe = Path(sys.executable).with_name("harness")
    out = home / "ckpt"
    completed = subprocess.run(
        [str(exe), "train", "--method", "s-dsen", "--dataset", "rain-synth", "--steps", "15", "--batch-size", "4",
         "--option", "stages=2", "--option", "patch=32", "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr
    return {"home": home, "env": env, "out": out, "stdout": completed.stdout}


def test_training_beats_identity_on_rain_synth(trained, shell):
    assert "trained s-dsen on rain-synth for 15 steps" in trained["stdout"]
    manifest = json.loads((trained["out"] / "manifest.json").read_text())
    assert manifest["recipe"]["lr"] == 0.0005 and manifest["recipe"]["patch"] == 32
    assert manifest["identity"]["steps"] == 15 and manifest["identity"]["data_sha256"]
    identity = shell("run", "--method", "identity", "--dataset", "rain-synth", "--json", env=trained["env"])
    assert identity.returncode == 0, identity.stderr
    model = shell("run", "--method", "s-dsen", "--dataset", "rain-synth", "--option", "stages=2",
                  "--checkpoint", trained["out"], "--json", env=trained["env"])
    assert model.returncode == 0, model.stderr
    floor, scored = json.loads(identity.stdout), json.loads(model.stdout)
    assert scored["metrics"]["psnr"]["values"]["psnr"] > floor["metrics"]["psnr"]["values"]["psnr"] + 1.0
    assert scored["method"]["checkpoint_sha256"] == manifest["weights_sha256"]
    assert scored["dataset"]["data_sha256"] == floor["dataset"]["data_sha256"]
    assert scored["metrics"]["psnr"]["convention"] and scored["metrics"]["ssim"]["params"]

    mismatched = shell("run", "--method", "s-dsen", "--dataset", "rain-synth", "--checkpoint", trained["out"],
                       env=trained["env"])  # default stages=8 on a checkpoint trained with stages=2
    assert mismatched.returncode == 2 and "stages=8 (trained with 2)" in mismatched.stderr

    listing = shell("results", "--format", "json", env=trained["env"])
    rows = json.loads(listing.stdout)
    assert {row["method"] for row in rows} == {"identity", "s-dsen"}
    assert all(row["status"] == "ok" for row in rows)


def test_table_output_and_provenance_line(cli):
    code, out, err = cli("run", "--method", "identity", "--dataset", "rain-synth", "--quiet", "--limit", "3")
    assert code == 0, err
    assert "identity × rain-synth (test, 3 samples)" in out
    assert "psnr ↑" in out and "ssim ↑" in out and "data sha256" in out


def test_info_prints_parameter_counts(cli):
    for name, count in (("s-dsen", "130,998"), ("dsen", "50,958"), ("dsen-cnn", "52,113")):
        code, out, _ = cli("info", name)
        assert code == 0 and f"parameters: {count}" in out
    code, out, _ = cli("info", "rain100h")
    assert code == 0 and "layout:" in out and "psnr" in out


def test_list_shows_all_kinds(cli):
    code, out, _ = cli("list")
    assert code == 0
    for name in ("s-dsen", "identity", "from-folder", "rain100h", "rain800", "rain-synth", "psnr", "ssim"):
        assert name in out
    code, out, _ = cli("list", "datasets", "--json")
    names = [row["name"] for row in json.loads(out)]
    assert "rain800" in names and "zhang800" not in names  # an alias is not a separate entry


def test_missing_rain100h_says_where_and_what(cli, tmp_path):
    code, _, err = cli("run", "--method", "identity", "--dataset", "rain100h", "--data-root", tmp_path / "none")
    assert code == 2
    assert str(tmp_path / "none") in err and "rain" in err.lower()


def test_corrupt_image_names_the_file(cli, tmp_path):
    root = tmp_path / "Rain100H"
    make_rain100h(root, layout="prenet", n_train=1800, n_test=100, size=(24, 24))
    broken = next(root.rglob("rain-050.png"), None) or sorted(root.rglob("rain-*.png"))[-1]
    broken.write_bytes(b"not a png at all")
    code, _, err = cli("run", "--method", "identity", "--dataset", "rain100h", "--data-root", root, "--quiet")
    assert code in (1, 2)
    assert broken.name in err


def test_run_on_real_layout_fixture(cli, tmp_path):
    root = tmp_path / "Rain100H"
    make_rain100h(root, layout="prenet", n_train=1800, n_test=100, size=(24, 24))
    code, out, err = cli("run", "--method", "identity", "--dataset", "rain100h", "--data-root", root, "--json",
                         "--quiet")
    assert code == 0, err
    record = json.loads(out)
    assert record["samples"] == 100 and record["dataset"]["layout"]
