"""`harness train`: checkpoint + manifest, resume after interruption, refusal to mix runs."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from cli_helpers import FIXTURE_PLUGINS


def train(cli, root, out, *extra):
    return cli("train", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-net", "--dataset", "demo-pairs",
               "--data-root", root, "--out", out, "--steps", "6", "--batch-size", "2",
               "--checkpoint-every", "2", "--quiet", *extra)


def make_root(tmp_path):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    return root


def test_train_writes_weights_and_manifest_then_evaluates(cli, tmp_path):
    root = make_root(tmp_path)
    code, out, err = train(cli, root, tmp_path / "ckpt")
    assert code == 0, err
    manifest = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    assert manifest["completed"] and manifest["step"] == 6
    assert manifest["identity"]["seed"] == 0 and manifest["identity"]["data_sha256"]
    assert manifest["recipe"] == {"optimizer": "sgd", "lr": 0.1}
    code, out, err = cli("run", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-net", "--dataset", "demo-pairs",
                         "--data-root", root, "--checkpoint", tmp_path / "ckpt", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out)["method"]["checkpoint_sha256"] == manifest["weights_sha256"]


def test_interrupted_training_resumes_to_identical_weights(cli, tmp_path, monkeypatch):
    root = make_root(tmp_path)
    assert train(cli, root, tmp_path / "straight")[0] == 0

    monkeypatch.setenv("DEMO_INTERRUPT_AT", "4")
    code, _, err = train(cli, root, tmp_path / "resumed")
    assert code == 130 and "re-run the same command to resume" in err
    assert json.loads((tmp_path / "resumed" / "manifest.json").read_text())["step"] == 4
    monkeypatch.delenv("DEMO_INTERRUPT_AT")
    assert train(cli, root, tmp_path / "resumed")[0] == 0

    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_out_folder_of_another_run_is_refused(cli, tmp_path):
    root = make_root(tmp_path)
    assert train(cli, root, tmp_path / "ckpt")[0] == 0
    code, _, err = train(cli, root, tmp_path / "ckpt", "--seed", "3")
    assert code == 2 and "differs in: seed" in err


def test_untrained_model_needs_explicit_flag(cli, tmp_path):
    root = make_root(tmp_path)
    base = ("run", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-net", "--dataset", "demo-pairs",
            "--data-root", root, "--quiet")
    code, _, err = cli(*base)
    assert code == 2 and "--untrained" in err
    code, out, _ = cli(*base, "--untrained", "--json")
    assert code == 0 and json.loads(out)["method"]["untrained"] is True


def test_non_trainable_method_is_refused(cli, tmp_path):
    code, _, err = cli("train", "--plugins-dir", FIXTURE_PLUGINS, "--method", "flaky", "--dataset", "demo-pairs",
                       "--data-root", make_root(tmp_path))
    assert code == 2 and "no training recipe" in err


def test_unknown_split_is_refused(cli, tmp_path):
    code, _, err = train(cli, make_root(tmp_path), tmp_path / "ckpt", "--split", "val")
    assert code == 2 and "has no split 'val'" in err


def test_loader_workers_do_not_change_the_result(cli, tmp_path):
    root = make_root(tmp_path)
    assert train(cli, root, tmp_path / "inline")[0] == 0
    assert train(cli, root, tmp_path / "workers", "--workers", "2")[0] == 0
    inline = load_file(str(tmp_path / "inline" / "model.safetensors"))
    workers = load_file(str(tmp_path / "workers" / "model.safetensors"))
    assert all(torch.equal(inline[key], workers[key]) for key in inline)
    assert json.loads((tmp_path / "workers" / "manifest.json").read_text())["workers"] == 2


def test_without_batch_size_the_method_chooses_it_for_the_dataset(cli, tmp_path, monkeypatch):
    """`Method.default_batch_size_for(dataset)` (e.g. a paper's per-dataset batch) decides when no --batch-size."""
    from harness.api import Method

    seen = []
    monkeypatch.setattr(Method, "default_batch_size_for", lambda self, dataset: seen.append(dataset.name) or 3)
    root = make_root(tmp_path)
    code, _, err = cli("train", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-net", "--dataset", "demo-pairs",
                       "--data-root", root, "--out", tmp_path / "ckpt", "--steps", "2", "--quiet")
    assert code == 0, err
    assert seen == ["demo-pairs"]
    assert json.loads((tmp_path / "ckpt" / "manifest.json").read_text())["identity"]["batch_size"] == 3
