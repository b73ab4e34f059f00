"""SPT's progressive growing (DeepFashion's 128 → 256): the global generator + local enhancer's parameter
counts, the fade-in at alpha 0 and 1, the four-stage schedule and what each stage trains, half-resolution
batches, size errors, and a progressive CLI train + run."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from fixtures_spt import TinyPoses, pose_of
from safetensors.torch import load_file
from test_spt import encoder_params, unet_params

from harness import DataError, UsageError, count_parameters
from harness.train.context import TrainContext
from harness_plugins.methods.pose_transfer.spt import SPT, stage_lengths
from harness_plugins.methods.pose_transfer.spt_networks import SPTGenerator, halve, halve_labels
from harness_plugins.methods.pose_transfer.spt_parts import one_hot, pose_inputs
from harness_plugins.shared.pose_maps import limb_masks, part_affines


# -- architecture ----------------------------------------------------------------------------------
def test_progressive_parameter_counts_at_the_papers_width():
    w = 64
    g = SPTGenerator(width=w, progressive=True)
    # global generator: the foreground U-Net itself (E_A^F 30 channels, E'_S 27)
    assert count_parameters(g.fg.global_net).params == unet_params((30, 27), 3, w) == 61_120_477
    # local encoders (the demo's 32 -> 64): 3x3 conv to w/2 (bias), a 4x4 stride-2 conv to w (no bias) + norm (2)
    local_encoder = lambda cin: cin * (w // 2) * 9 + w // 2 + (w // 2) * w * 16 + 2  # noqa: E731
    assert local_encoder(30) == 41_442 and local_encoder(27) == 40_578
    # local decoder: up block from the global's last decoder features (2w) + its first-level skips (w + w) to w,
    # 4x4 transposed conv without bias + norm; head 3x3 on [w, local first-level skips w/2 + w/2] -> RGB
    local_decoder = (2 * w + 2 * w) * w * 16 + 2 + (w + w) * 3 * 9 + 3
    assert local_decoder == 265_605
    assert count_parameters(g.fg.local).params == local_encoder(30) + local_encoder(27) + local_decoder == 347_625
    assert count_parameters(g.fg).params == 61_468_102
    # H_S and the background network are unchanged (they stay at half resolution)
    assert count_parameters(g.hs).params == 61_131_428 and count_parameters(g.bg).params == 36_052_885
    assert dict(g.fg.named_buffers()) == {"alpha": torch.tensor(0.0)}


def level(size: tuple[int, int], seed: int) -> tuple[torch.Tensor, ...]:
    """G_A^F's eight inputs at ``size`` from a fixture pose pair scaled to it."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.tensor([size[0] / 64, size[1] / 32])
    source, target = torch.from_numpy(pose_of(seed)) * scale, torch.from_numpy(pose_of(seed + 1)) * scale
    heat_s, _ = pose_inputs(source, size, 3.0)
    heat_t, _ = pose_inputs(target, size, 3.0)
    theta, valid = part_affines(source, target, size)
    parsing_s = one_hot(torch.randint(0, 10, size, generator=generator))
    parsing_t = torch.softmax(torch.randn(10, *size, generator=generator), 0)
    image = torch.rand(3, *size, generator=generator) * 2 - 1
    return tuple(t[None] for t in (image, parsing_s, heat_s, parsing_t, heat_t, theta, valid, limb_masks(target, size)))


@torch.no_grad()
def test_fade_in_alpha_zero_is_the_upsampled_global_and_alpha_one_the_local():
    torch.manual_seed(0)
    g = SPTGenerator(width=4, progressive=True).eval()
    for p in g.parameters():  # SampleNorm's scalar pairs start at (1, 0): make every weight matter
        p.add_(torch.randn_like(p) * 0.1)
    full, half = level((64, 64), 1), level((32, 32), 1)
    coarse = g.foreground(*half)  # the global generator alone, as in the half-resolution stages
    assert coarse.shape == (1, 3, 32, 32)
    grown = g.foreground(*full, half=half)
    assert torch.equal(grown, F.interpolate(coarse, scale_factor=2, mode="nearest"))
    for p in g.fg.local.parameters():  # alpha 0: the local enhancer does not count
        p.add_(torch.randn_like(p) * 0.1)
    assert torch.equal(g.foreground(*full, half=half), grown)

    g.fg.alpha.fill_(1.0)
    local = g.foreground(*full, half=half)
    assert not torch.allclose(local, grown)
    # alpha 1: the global generator's first convolutions and head, and the half-resolution images and maps
    # (which enter only there), no longer count; its deeper layers still do, fed by the local encoders
    noise = tuple(torch.rand_like(t) for t in half[:5]) + half[5:]
    for encoder in g.fg.global_net.encoders:
        encoder.blocks[0].weight.add_(torch.randn_like(encoder.blocks[0].weight) * 0.1)
    g.fg.global_net.decoder.head[1].weight.add_(0.1)
    assert torch.equal(g.foreground(*full, half=noise), local)
    g.fg.local.decoder.head[1].bias.add_(0.1)
    assert not torch.allclose(g.foreground(*full, half=half), local)
    g.fg.alpha.fill_(0.5)
    assert g.foreground(*full, half=half).shape == (1, 3, 64, 64)


def test_halving_pools_images_and_takes_each_blocks_most_frequent_label():
    labels = torch.tensor([[0, 3, 4, 4], [3, 3, 4, 0], [1, 1, 2, 2], [1, 0, 2, 2]])
    assert halve_labels(labels).tolist() == [[3, 4], [1, 2]]
    assert halve_labels(torch.tensor([[0, 5], [5, 0]])).tolist() == [[0]]  # a tie goes to the lower label
    image = torch.arange(16.0).view(1, 1, 4, 4)
    assert halve(image).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


# -- schedule --------------------------------------------------------------------------------------
def test_four_stages_when_progressive_and_three_otherwise():
    names = ("hs", "ha", "e2e", "grow")
    assert stage_lengths((0.2, 0.3, 0.2, 0.3), 10, names) == {"hs": 2, "ha": 3, "e2e": 2, "grow": 3}
    assert stage_lengths((1, 1, 1, 3), 6, names) == {"hs": 1, "ha": 1, "e2e": 1, "grow": 3}
    assert stage_lengths((0.3, 0.4, 0.3), 7) == {"hs": 2, "ha": 3, "e2e": 2}
    with pytest.raises(UsageError, match="4 numbers.*grow"):
        stage_lengths((0.3, 0.4, 0.3), 10, names)
    with pytest.raises(UsageError, match="3 numbers"):
        stage_lengths((0.2, 0.3, 0.2, 0.3), 10)


class TinyPoses2x(TinyPoses):
    """The fixture at 128x64 (every pixel doubled, keypoints scaled): progressive needs multiples of 64."""

    name = "tiny-poses-2x"

    def load_image(self, row: dict[str, Any]) -> dict[str, Any]:
        sample = super().load_image(row)
        sample["image"] = sample["image"].repeat_interleave(2, -2).repeat_interleave(2, -1)
        sample["parsing"] = sample["parsing"].repeat_interleave(2, -2).repeat_interleave(2, -1)
        sample["pose"] = sample["pose"] * 2
        return sample


def snapshot(modules: dict[str, torch.nn.Module]) -> dict[str, list[torch.Tensor]]:
    return {name: [p.detach().clone() for p in module.parameters()] for name, module in modules.items()}


def test_progressive_recipe_trains_half_resolution_stages_then_grows():
    method = SPT(width=4, ndf=8, candidates=4, vgg="none", progressive=True, stages=(1, 1, 1, 3), fade=0.5,
                 fix_global=0.34, preset="deepfashion")
    r = method.training_recipe(TinyPoses2x(count=6), TrainContext(batch_size=2, steps=6, seed=0))
    assert r.stages == {"hs": 1, "ha": 1, "e2e": 1, "grow": 3} and (r.fade_steps, r.fix_steps) == (2, 1)
    assert "stage grow (3 steps) at 128x64" in r.description["progressive"]
    assert r.description["parameters"]["fg.local"] == count_parameters(r.networks["generator"].fg.local).params
    half_batch, grow_batch = r.batch(1), r.batch(4)
    assert half_batch["image"].shape[-2:] == (64, 32) and half_batch["heat_t"].shape[-2:] == (64, 32)
    assert grow_batch["image"].shape[-2:] == (128, 64) and grow_batch["half_image"].shape[-2:] == (64, 32)
    # the half-resolution inputs are the full ones halved: pooled images, keypoints /2, pose inputs redrawn
    torch.testing.assert_close(grow_batch["half_image"], halve(grow_batch["image"]))
    torch.testing.assert_close(grow_batch["half_pose_t"], grow_batch["pose_t"] / 2)
    assert torch.equal(grow_batch["half_parsing"], one_hot(halve_labels(grow_batch["parsing"].argmax(1))))
    g = r.networks["generator"]
    modules = {"hs": g.hs, "global": g.fg.global_net, "local": g.fg.local, "bg": g.bg, "P": r.networks["P"],
               "D_A": r.networks["D_A"], "D_S": r.networks["D_S"], "D_F": r.networks["D_F"]}
    before, changed, alphas = snapshot(modules), [], []
    for step in range(6):
        logged = r.train_step(step)
        now = snapshot(modules)
        changed.append({n for n in now if any(not torch.equal(a, b) for a, b in zip(before[n], now[n]))})
        alphas.append(logged.get("alpha"))
        before = now
        if step == 3:  # frozen: no gradients of its own, none left over from stage e2e
            assert all(p.grad is None for p in g.fg.global_net.parameters())
    # stage e2e: H_S with L_A alone (Algorithm 2, step 3), so D_S rests; the background stream learns in ha only
    assert changed == [{"hs", "P", "D_S"}, {"global", "bg", "D_A", "D_F"}, {"hs", "global", "D_A", "D_F"},
                       {"local", "D_A", "D_F"}, {"global", "local", "D_A", "D_F"}, {"global", "local", "D_A", "D_F"}]
    assert alphas == [None, None, None, 0.5, 1.0, 1.0]
    assert float(r.export()["fg.alpha"]) == 1.0


# -- errors ----------------------------------------------------------------------------------------
def test_progressive_needs_sides_multiple_of_64_and_an_even_width():
    with pytest.raises(DataError, match="multiples of 64; got 64x32"):
        SPT(width=4, progressive=True, stages=(1, 1, 1, 1)).training_recipe(TinyPoses(count=4),
                                                                            TrainContext(batch_size=2, steps=4))
    with pytest.raises(UsageError, match="4 numbers.*grow"):
        SPT(width=4, progressive=True).training_recipe(TinyPoses2x(count=4), TrainContext(batch_size=2, steps=4))
    with pytest.raises(UsageError, match="width must be even"):
        SPT(width=5, progressive=True)
    with pytest.raises(UsageError, match="fade"):
        SPT(width=4, progressive=True, fade=1.5)
    method = SPT(width=4, progressive=True)
    method.load(None, "cpu")
    sample = TinyPoses().load_image({"id": "0_0", "pid": "0"})
    with pytest.raises(DataError, match="multiples of 64; got 64x32"):
        method.predict([{"id": "a", "source": sample["image"], "source_pose": sample["pose"],
                         "target_pose": torch.from_numpy(pose_of(5)), "source_parsing": sample["parsing"]}])


# -- end to end ------------------------------------------------------------------------------------
def test_progressive_spt_trains_on_pose_synth_and_its_weights_run(cli, tmp_path, isolated_env):
    from harness_plugins.datasets.pose_synth import PoseSynth

    root = tmp_path / "pose-synth"
    PoseSynth(root).prepare()
    out = tmp_path / "grown"
    code, _, err = cli("train", "--method", "spt", "--dataset", "pose-synth", "--data-root", root, "--steps", "4",
                       "--batch-size", "2", "--option", "width=4", "--option", "ndf=8", "--option", "candidates=4",
                       "--option", "vgg=none", "--option", "progressive=true", "--option", "stages=1,1,1,1",
                       "--option", "face=true", "--out", out)  # pose-synth's market preset has no face loss
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["stages"] == {"hs": 1, "ha": 1, "e2e": 1, "grow": 1}
    assert manifest["recipe"]["progressive"].startswith("stages hs, ha, e2e at 64x32")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[3]["losses"]["alpha"] == 1.0 and "A_face" in log[3]["losses"] and "B_rec" not in log[3]["losses"]
    weights = load_file(out / "model.safetensors")
    assert float(weights["fg.alpha"]) == 1.0 and "fg.local.decoder.head.1.weight" in weights
    args = ("run", "--method", "spt", "--dataset", "pose-synth", "--data-root", root, "--checkpoint", out,
            "--option", "width=4", "--limit", "3", "--metric", "mask-ssim")
    code, out_text, err = cli(*args, "--option", "progressive=true")
    assert code == 0, err
    assert "mask-ssim" in out_text
    code, _, err = cli(*args)
    assert code == 2 and "progressive" in err  # a grown checkpoint needs progressive=true
