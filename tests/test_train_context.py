"""TrainContext: precision flags refused where they cannot work, batch sharding, CUDA AMP through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cli_helpers import FIXTURE_PLUGINS
from harness import TrainContext, UsageError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_amp_needs_cuda_and_a_known_dtype():
    with pytest.raises(UsageError, match="needs a CUDA device"):
        TrainContext(batch_size=4, steps=1, amp="bf16")
    with pytest.raises(UsageError, match="must be one of bf16, fp16"):
        TrainContext(batch_size=4, steps=1, device="cuda", amp="fp8")


def test_cpu_path_is_plain_pytorch():
    context = TrainContext(batch_size=4, steps=1)
    assert context.scaler is None
    with context.autocast():
        assert not torch.is_autocast_enabled()
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    context.backward((weight * torch.tensor([1.0, 2.0])).sum())
    context.step(optimizer)
    context.end_step()
    assert weight.tolist() == [0.5, 0.0]


def test_shard_gives_each_rank_its_contiguous_part():
    batch = (torch.arange(8), {"x": torch.arange(8) * 10}, ["a", "b", "c", "d"])
    parts = [TrainContext(batch_size=4, steps=1, rank=rank, world_size=2).shard(batch) for rank in (0, 1)]
    assert parts[0][0].tolist() == [0, 1, 2, 3] and parts[1][0].tolist() == [4, 5, 6, 7]
    assert parts[1][1]["x"].tolist() == [40, 50, 60, 70] and parts[1][2] == ["c", "d"]
    with pytest.raises(UsageError, match="global batch and must divide evenly over 2"):
        TrainContext(batch_size=5, steps=1, world_size=2)


def test_amp_on_cpu_is_refused_by_the_cli(cli, tmp_path):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    code, _, err = cli("train", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-gan", "--dataset", "demo-pairs",
                       "--data-root", root, "--out", tmp_path / "o", "--amp", "fp16", "--quiet")
    assert code == 2 and "--amp fp16 needs a CUDA device" in err
    assert not (tmp_path / "o").exists()


@cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_on_cuda_is_recorded_and_resumes(cli, tmp_path, monkeypatch, amp):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    args = ("train", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-gan", "--dataset", "demo-pairs",
            "--data-root", root, "--steps", "8", "--checkpoint-every", "4", "--device", "cuda", "--amp", amp, "--quiet")
    code, _, err = cli(*args, "--out", tmp_path / "straight")
    assert code == 0, err
    manifest = json.loads((tmp_path / "straight" / "manifest.json").read_text())
    assert manifest["precision"] == amp and manifest["identity"]["amp"] == amp
    state = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    assert bool(state["scaler"]) == (amp == "fp16") and "cuda" in state["rng"]
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    assert all(torch.isfinite(value).all() for value in straight.values())

    monkeypatch.setenv("DEMO_INTERRUPT_AT", "5")
    assert cli(*args, "--out", tmp_path / "resumed")[0] == 130
    monkeypatch.delenv("DEMO_INTERRUPT_AT")
    code, _, err = cli(*args, "--out", tmp_path / "resumed")
    assert code == 0, err
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for key in straight:  # cuDNN may pick other kernels in a new process: equal up to float noise
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_compile_trains_the_same_weights_under_their_plain_names(cli, tmp_path):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    args = ("train", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-net", "--dataset", "demo-pairs",
            "--data-root", root, "--steps", "4", "--batch-size", "2", "--quiet")
    assert cli(*args, "--out", tmp_path / "eager")[0] == 0
    code, _, err = cli(*args, "--out", tmp_path / "compiled", "--compile")
    assert code == 0, err
    assert json.loads((tmp_path / "compiled" / "manifest.json").read_text())["compile"] is True
    eager = load_file(str(tmp_path / "eager" / "model.safetensors"))
    compiled = load_file(str(tmp_path / "compiled" / "model.safetensors"))
    assert eager.keys() == compiled.keys()
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-5, atol=1e-6)
