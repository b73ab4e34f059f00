"""`harness weights import` and ``--checkpoint`` of a released file (#22): the method converts its authors'
format, the core checks the result fills the network, writes safetensors with the source's sha256 in its
header, and every run on those weights records the release. Through the CLI with a third-party plugin."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from cli_helpers import FIXTURE_PLUGINS

PLUGINS = Path(__file__).parent / "plugin_fixtures_weights"


def released(tmp_path: Path, shape=(3, 3)) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=shape).astype(np.float32), rng.normal(size=3).astype(np.float32)
    path = tmp_path / "released.npz"
    np.savez(path, W=weight, b=bias)
    return path, weight, bias


def demo_root(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    return root


def test_import_writes_the_converted_weights_with_the_source_digest(cli, tmp_path):
    source, weight, bias = released(tmp_path)
    out = tmp_path / "w.safetensors"
    code, text, err = cli("weights", "import", "--plugins-dir", PLUGINS, "released-net", source, "--out", out, "--json")
    assert code == 0, err
    report = json.loads(text)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert report["source_sha256"] == digest and report["tensors"] == 2 and report["parameters"] == 12
    state = load_file(str(out))
    assert torch.equal(state["weight"][:, :, 0, 0], torch.from_numpy(weight.T))  # the method's conversion, kept exactly
    assert torch.equal(state["bias"], torch.from_numpy(bias))
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as handle:
        header = handle.metadata()
    assert header["harness.source_sha256"] == digest and header["harness.imported_from"] == "released.npz"
    assert header["harness.format"] == "NumPy .npz of W (in, out) and b"


def test_runs_on_imported_or_released_files_record_the_release(cli, tmp_path):
    source, weight, bias = released(tmp_path)
    out = tmp_path / "w.safetensors"
    assert cli("weights", "import", "--plugins-dir", PLUGINS, "released-net", source, "--out", out)[0] == 0
    root = demo_root(tmp_path)
    records = []
    for checkpoint in (out, source):  # imported once, or converted while loading: the same predictions
        code, text, err = cli("run", "--plugins-dir", PLUGINS, "--plugins-dir", FIXTURE_PLUGINS, "--method",
                              "released-net", "--dataset", "demo-pairs", "--data-root", root, "--checkpoint",
                              checkpoint, "--json", "--quiet")
        assert code == 0, err
        records.append(json.loads(text))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert [r["method"]["imported_from"]["source_sha256"] for r in records] == [digest, digest]
    assert records[1]["method"]["imported_from"]["converted"] == "while loading"
    scores = [{k: v for k, v in r["metrics"]["demo-mae"].items() if k != "score_key"} for r in records]
    assert scores[0] == scores[1]
    site = tmp_path / "site"
    assert cli("publish", "--plugins-dir", PLUGINS, "--plugins-dir", FIXTURE_PLUGINS, "--out", site)[0] == 0
    page = (site / f"run-{records[0]['run_id']}.html").read_text()
    assert f"the authors&#39; release released.npz (NumPy .npz of W (in, out) and b, sha256 {digest[:12]})" in page
    plain = tmp_path / "plain.safetensors"  # weights from elsewhere carry no release
    from harness.checkpoints import save_tensors

    save_tensors({"weight": torch.zeros(3, 3, 1, 1), "bias": torch.zeros(3)}, plain)
    code, text, err = cli("run", "--plugins-dir", PLUGINS, "--plugins-dir", FIXTURE_PLUGINS, "--method",
                          "released-net", "--dataset", "demo-pairs", "--data-root", root, "--checkpoint", plain,
                          "--json", "--quiet")
    assert code == 0, err
    assert json.loads(text)["method"]["imported_from"] is None


def test_a_file_that_does_not_fill_the_network_writes_nothing(cli, tmp_path):
    source, _, _ = released(tmp_path, shape=(3, 4))
    out = tmp_path / "w.safetensors"
    code, _, err = cli("weights", "import", "--plugins-dir", PLUGINS, "released-net", source, "--out", out)
    assert code == 2 and "released.npz does not fit the model" in err and "1 of another shape (weight (4, 3, 1, 1)" in err
    assert not out.exists()
    code, _, err = cli("weights", "import", "--plugins-dir", PLUGINS, "released-net", tmp_path / "none.npz")
    assert code == 2 and "none.npz: no such file (expected NumPy .npz of W (in, out) and b" in err


def test_a_release_python_cannot_read_says_how_to_convert(cli, tmp_path):
    source, _, _ = released(tmp_path)
    code, _, err = cli("weights", "import", "--plugins-dir", PLUGINS, "framework-only", source)
    assert code == 2 and "cannot be read without the original framework; load it in FrameworkX" in err
    code, text, _ = cli("info", "--plugins-dir", PLUGINS, "framework-only")
    assert "official weights: FrameworkX checkpoint, released at example.org/framework-only; load it in" in text
    code, text, _ = cli("info", "--plugins-dir", PLUGINS, "released-net")
    assert "`harness weights import released-net FILE` converts a .npz file" in text
