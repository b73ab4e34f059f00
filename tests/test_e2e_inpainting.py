"""The inpainting track end to end through the CLI: every method on inpaint-synth, Context Encoder on a
Paris StreetView fixture in the real layout with --checkpoint, and a briefly trained Context Encoder
beating mean-fill and Telea on the hole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_inpainting_datasets import make_paris

from harness.checkpoints import save_weights
from harness_plugins.datasets.inpaint_synth import InpaintSynth
from harness_plugins.methods.inpainting.context_encoder import ContextEncoderG
from harness_plugins.methods.inpainting.nps import _VGG_CONFIG, VGG19_CAFFE_FILE, VGG19_FILE


@pytest.fixture
def vgg_weights():
    """A random-weight VGG-19 ``features`` state dict under torchvision's and the Caffe model's file names in
    $TORCH_HOME (never downloaded)."""
    torch.manual_seed(0)
    state, index, channels = {}, 0, 3
    for item in _VGG_CONFIG:
        if item == "M":
            index += 1
            continue
        layer = torch.nn.Conv2d(channels, int(item), 3, padding=1)
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = layer.weight.data, layer.bias.data
        index, channels = index + 2, int(item)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / VGG19_FILE)
    torch.save(state, folder / VGG19_CAFFE_FILE)
    return folder / VGG19_CAFFE_FILE


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """inpaint-synth generated once for the module (each test otherwise gets a fresh data home)."""
    root = tmp_path_factory.mktemp("data") / "inpaint-synth"
    InpaintSynth(root).verify("test")
    return root


METHODS = {
    "mean-fill": (),
    "telea": (),
    "navier-stokes": (),
    "patchmatch": ("--option", "em_iterations=1", "--option", "search_iterations=1"),
    "context-encoder": ("--untrained", "--option", "width=8", "--option", "mask_convention=full"),
    "nps": ("--untrained", "--option", "width=8", "--option", "iterations=2", "--option", "mask_convention=full"),
    "gh": ("--untrained", "--option", "ngf=8"),
    "gh-bpt": ("--untrained", "--option", "ngf=8"),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_on_inpaint_synth(cli, vgg_weights, synth_root, method):
    code, out, err = cli("run", "--method", method, "--dataset", "inpaint-synth", "--data-root", synth_root, "--limit", "1",
                         "--json", *METHODS[method])
    assert code == 0, err
    record = json.loads(out)
    metrics = record["metrics"]
    assert set(metrics) == {"l1", "l1@full", "l2", "l2@full", "psnr", "ssim"}
    assert metrics["psnr"]["params"]["region"] == "hole" and metrics["l1"]["params"]["region"] == "hole"
    assert metrics["l1@full"]["params"] == {**metrics["l1"]["params"], "region": "full"}
    assert metrics["l1"]["params"]["percent"] and 0 < metrics["l1"]["values"]["l1"] < 100
    # the known pixels are kept, so the whole-image error is the hole's diluted by the image/hole area ratio (4)
    assert metrics["l1@full"]["values"]["l1"] == pytest.approx(metrics["l1"]["values"]["l1"] / 4, rel=1e-6)
    assert record["dataset"]["layout"]["masks"]["kind"] == "center"


def test_gh_fills_random_holes_and_ce_refuses_them(cli, synth_root):
    code, out, err = cli("run", "--method", "gh", "--dataset", "inpaint-synth", "--data-root", synth_root,
                         "--dataset-option", "mask=random",
                         "--limit", "1", "--untrained", "--option", "ngf=8", "--json")
    assert code == 0, err
    code, out, err = cli("run", "--method", "context-encoder", "--dataset", "inpaint-synth", "--data-root", synth_root,
                         "--dataset-option", "mask=random", "--limit", "1", "--untrained", "--option", "width=8")
    assert code != 0 and "centred square" in err


def test_nps_thesis_objective_runs_on_torchvision_vgg(cli, vgg_weights, synth_root):
    code, out, err = cli("run", "--method", "nps", "--dataset", "inpaint-synth", "--data-root", synth_root, "--limit", "1",
                         "--untrained", "--option", "width=8", "--option", "iterations=2", "--option", "mask_convention=full",
                         "--option", "objective=thesis", "--option", "preprocess=torchvision", "--json")
    assert code == 0, err
    options = json.loads(out)["method"]["options"]
    assert options["objective"] == "thesis" and options["preprocess"] == "torchvision"


@pytest.mark.parametrize("method", ["context-encoder", "nps"])
def test_official_mask_convention_is_recorded_and_needs_the_inner_hole(cli, vgg_weights, synth_root, method):
    extra = ("--untrained", "--option", "width=8", "--limit", "1") + (("--option", "iterations=1") if method == "nps" else ())
    code, out, err = cli("run", "--method", method, "--dataset", "inpaint-synth", "--data-root", synth_root, *extra)
    assert code == 2 and "hole=0.4375" in err and "mask_convention=full" in err and "Traceback" not in err
    code, out, err = cli("run", "--method", method, "--dataset", "inpaint-synth", "--data-root", synth_root,
                         "--dataset-option", "hole=0.4375", "--json", *extra)
    assert code == 0, err
    record = json.loads(out)
    assert record["method"]["options"]["mask_convention"] == "official"
    assert record["dataset"]["options"]["hole"] == 0.4375


def test_context_encoder_on_paris_streetview_with_checkpoint(cli, tmp_path):
    root = make_paris(tmp_path / "paris", train=1, test=3)
    torch.manual_seed(1)
    weights = tmp_path / "ce.safetensors"
    save_weights(ContextEncoderG(8), weights)
    code, out, err = cli("run", "--method", "context-encoder", "--dataset", "paris-streetview", "--data-root", root,
                         "--dataset-option", "strict=false", "--dataset-option", "hole=0.4375", "--option", "width=8",
                         "--checkpoint", weights, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["samples"] == 3 and record["dataset"]["name"] == "paris-streetview"
    assert record["method"]["checkpoint_sha256"] and not record["method"]["untrained"]
    code, out, err = cli("run", "--method", "context-encoder", "--dataset", "paris-streetview", "--data-root", root,
                         "--dataset-option", "strict=false")
    assert code == 2 and "--checkpoint" in err


def test_briefly_trained_context_encoder_beats_mean_fill_and_telea(tmp_path):
    """The quick-start claim: ~300 CPU steps of the narrow CE beat both baselines on the hole PSNR."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = Path(sys.executable).with_name("harness")
    out = tmp_path / "ce"

    def harness(*args: str) -> str:
        done = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, done.stderr
        return done.stdout

    harness("train", "--method", "context-encoder", "--dataset", "inpaint-synth", "--option", "width=16",
            "--option", "lr=0.001", "--option", "mask_convention=full", "--option", "load_size=0",
            "--option", "bottleneck_size=1000",
            "--steps", "300", "--batch-size", "16", "--out", str(out), "--quiet")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["network"].startswith("Context Encoder") and manifest["identity"]["data_sha256"]
    scores = {}
    for method, extra in (("context-encoder", ("--option", "width=16", "--option", "mask_convention=full",
                                               "--option", "bottleneck_size=1000",
                                               "--checkpoint", str(out))),
                          ("mean-fill", ()), ("telea", ())):
        record = json.loads(harness("run", "--method", method, "--dataset", "inpaint-synth", "--metric", "psnr", "--json", *extra))
        assert record["metrics"]["psnr"]["params"]["region"] == "hole"
        scores[method] = record["metrics"]["psnr"]["values"]["psnr"]
    assert scores["context-encoder"] > scores["telea"] + 0.5 > scores["mean-fill"] + 0.5, scores


def test_nps_trains_its_content_network_and_runs_from_the_checkpoint(cli, vgg_weights, synth_root, tmp_path):
    out = tmp_path / "nps"
    code, _, err = cli("train", "--method", "nps", "--dataset", "inpaint-synth", "--data-root", synth_root,
                       "--option", "width=8", "--option", "mask_convention=full", "--steps", "2", "--batch-size", "2",
                       "--out", out, "--quiet")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["network"].startswith("NPS content network")
    code, stdout, err = cli("run", "--method", "nps", "--dataset", "inpaint-synth", "--data-root", synth_root,
                            "--option", "width=8", "--option", "iterations=1", "--option", "mask_convention=full",
                            "--checkpoint", out, "--limit", "1", "--json")
    assert code == 0, err
    assert json.loads(stdout)["method"]["checkpoint_sha256"] == manifest["weights_sha256"]


def _train_log(out: Path) -> list[dict]:
    """The per-step lines of a training log: {"step", "losses", "lr"}."""
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [line for line in lines if "losses" in line]


def test_context_encoder_l2_adv_trains_the_generator_at_ten_times_the_rate(cli, synth_root, tmp_path):
    """train.lua with 0 < wtl2 < 1: the discriminator at lr (2e-4), the generator at 10 x lr."""
    out = tmp_path / "ce-adv"
    code, _, err = cli("train", "--method", "context-encoder", "--dataset", "inpaint-synth", "--data-root", synth_root,
                       "--option", "variant=l2+adv", "--option", "width=8", "--steps", "2", "--batch-size", "2",
                       "--out", out, "--quiet")
    assert code == 0, err
    log = _train_log(out)
    assert set(log[-1]["losses"]) == {"l2", "d", "g_adversarial"}
    assert log[-1]["lr"] == {"generator": 2e-3, "discriminator": 2e-4}
    recipe = json.loads((out / "manifest.json").read_text())["recipe"]
    assert "generator lr 0.002 (= 10 x lr" in recipe["optimizer"] and "discriminator lr 0.0002" in recipe["optimizer"]
    assert recipe["mask_convention"].startswith("official: the inner 56x56 of the 64x64")
    assert recipe["parameters"] == sum(p.numel() for p in ContextEncoderG(8).parameters())
    code, _, err = cli("run", "--method", "context-encoder", "--dataset", "inpaint-synth", "--data-root", synth_root,
                       "--option", "variant=l2+adv", "--option", "width=8", "--dataset-option", "hole=0.4375",
                       "--checkpoint", out, "--limit", "1")
    assert code == 0, err
    code, _, err = cli("run", "--method", "context-encoder", "--dataset", "inpaint-synth", "--data-root", synth_root,
                       "--option", "width=8", "--option", "mask_convention=full", "--checkpoint", out, "--limit", "1")
    assert code == 2 and "mask_convention='full' (trained with 'official')" in err


@pytest.fixture
def lpips_weights():
    import torchvision

    from harness_plugins.shared.lpips_net import ALEXNET_FILE, CHANNELS, LPIPS_FILE

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), folder / ALEXNET_FILE)
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}, folder / LPIPS_FILE)
    return folder


def test_gh_bpt_block_wise_procedural_training(cli, synth_root, lpips_weights, tmp_path):
    out = tmp_path / "bpt"
    code, _, err = cli("train", "--method", "gh-bpt", "--dataset", "inpaint-synth", "--data-root", synth_root,
                       "--option", "ngf=8", "--option", "block_steps=2", "--option", "ppl_size=32", "--steps", "8",
                       "--batch-size", "2", "--out", out, "--quiet")
    assert code == 0, err
    log = _train_log(out)
    assert [entry["losses"]["phase"] for entry in log] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [entry["lr"]["generator"] for entry in log[1::2]] == pytest.approx([2e-4, 2e-5, 2e-6, 2e-7])
    assert {"d", "g_adversarial", "ppl"} <= set(log[0]["losses"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert "2 head steps, then 3 procedural blocks x 2 steps" in manifest["recipe"]["schedule"]
    assert "crops resized to 32x32" in manifest["recipe"]["loss"]
    code, stdout, err = cli("run", "--method", "gh-bpt", "--dataset", "inpaint-synth", "--data-root", synth_root,
                            "--dataset-option", "mask=random", "--option", "ngf=8", "--option", "block_steps=2",
                            "--option", "ppl_size=32", "--checkpoint", out, "--limit", "1", "--json")
    assert code == 0, err
    code, _, err = cli("train", "--method", "gh-bpt", "--dataset", "inpaint-synth", "--data-root", synth_root,
                       "--option", "ngf=8", "--steps", "8", "--batch-size", "2", "--out", tmp_path / "short", "--quiet")
    assert code == 2 and "block_steps" in err


def test_bpt_schedule_blends_blocks_in_and_anneals():
    from harness_plugins.methods.inpainting.gh_bpt import BPTRecipe

    recipe = BPTRecipe.__new__(BPTRecipe)
    recipe.cfg, recipe.head_steps = {"block_steps": 10, "blend_fraction": 0.5}, 100
    assert recipe.phase(0) == (0, 0.0) and recipe.phase(99) == (0, 0.0)
    assert recipe.phase(100) == (1, 0.2) and recipe.phase(104) == (1, 1.0) and recipe.phase(109) == (1, 1.0)
    assert recipe.phase(110) == (2, 0.2) and recipe.phase(129) == (3, 1.0)
