"""SPT as the paper and the demo train it (issue 20): the background stream learns through L_A, the end-to-end
stage trains H_S on L_A alone, 4 warped levels, hard maps for D_A, no gradient clipping, per-dataset presets."""

from __future__ import annotations

import pytest
import torch

from harness.train.context import TrainContext
from harness_plugins.methods.pose_transfer.spt import PRESETS, SPT, judged_map
from harness_plugins.methods.pose_transfer.spt_networks import SPTGenerator
from harness_plugins.methods.pose_transfer.spt_parts import one_hot
from fixtures_spt import TinyPoses


def recipe(steps: int = 3, dataset: TinyPoses | None = None, **options) -> object:
    method = SPT(width=4, ndf=8, candidates=4, vgg="none", **options)
    return method.training_recipe(dataset or TinyPoses(count=6), TrainContext(batch_size=2, steps=steps, seed=0))


def gradient_norm(loss: torch.Tensor, module: torch.nn.Module) -> float:
    grads = torch.autograd.grad(loss, list(module.parameters()), allow_unused=True, retain_graph=True)
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def test_the_background_stream_learns_through_l_a_in_stage_ha():
    """Algorithm 1, step 2 updates H_A, background stream included, with L_A (not only its own losses)."""
    r = recipe(stages=(1, 1, 1))
    g = r.networks["generator"]
    batch = r.batch(1)
    loss = r.ha_loss(batch, {}, e2e=False)
    assert gradient_norm(loss, g.bg) > 0
    assert any(p is q for p in g.bg.parameters() for group in r.optimizers["H_A"].param_groups for q in group["params"])


def test_the_end_to_end_stage_trains_h_s_with_l_a_alone_unless_asked():
    r = recipe(stages=(1, 1, 1))
    for step in range(2):
        r.train_step(step)
    d_s = [p.detach().clone() for p in r.networks["D_S"].parameters()]
    assert "parsing_p" not in r.batch(2)  # no pseudo labels needed
    hs = [p.detach().clone() for p in r.networks["generator"].hs.parameters()]
    logged = r.train_step(2)
    assert "S_ce" not in logged and "D_S" not in logged
    assert all(torch.equal(a, b) for a, b in zip(d_s, r.networks["D_S"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(hs, r.networks["generator"].hs.parameters()))  # L_A reaches H_S
    assert "no L_S" in r.description["end_to_end"]
    extra = recipe(stages=(1, 1, 1), e2e_parsing_loss=True)
    for step in range(2):
        extra.train_step(step)
    logged = extra.train_step(2)
    assert {"S_ce", "S_adv", "D_S"} <= set(logged) and "e2e_parsing_loss" in extra.description["end_to_end"]


def test_the_foreground_generator_warps_its_first_four_levels_as_the_demo():
    g = SPTGenerator(4, background=False)
    warped: list[tuple[int, ...]] = []

    def warp(feature: torch.Tensor) -> torch.Tensor:
        warped.append(tuple(feature.shape[-2:]))
        return feature

    g.fg.skips(torch.rand(1, 30, 64, 32), torch.rand(1, 27, 64, 32), warp=warp)
    assert warped == [(64, 32), (32, 16), (16, 8), (8, 4)]  # not the 4x2 and 2x1 levels


def test_d_a_sees_one_hot_maps_for_fakes_with_a_gradient_to_h_s():
    probabilities = torch.softmax(torch.randn(2, 10, 4, 4, requires_grad=True), dim=1)
    hard = judged_map(probabilities, "hard")
    expected = one_hot(probabilities.argmax(dim=1))[:, 1:]
    assert torch.equal(hard, expected)  # exactly the values of a real (one-hot) map
    assert torch.equal(judged_map(probabilities, "soft"), probabilities[:, 1:])
    (grad,) = torch.autograd.grad((hard * torch.arange(9.0).view(1, 9, 1, 1)).sum(), probabilities)
    assert float(grad.abs().sum()) > 0  # straight-through: H_S still learns from D_A end to end
    r = recipe(stages=(1, 1, 1))
    losses: dict = {}
    with torch.no_grad():
        r.ha_loss(r.batch(1), losses, e2e=False)
    maps = losses["_A_fake_t"][:, 3:]
    assert set(maps.unique().tolist()) <= {0.0, 1.0} and torch.equal(maps.sum(dim=1), (maps.sum(dim=1) > 0).float())
    with torch.no_grad():
        soft: dict = {}
        recipe(stages=(1, 1, 1), d_maps="soft").ha_loss(r.batch(1), soft, e2e=False)
    assert not set(soft["_A_fake_t"][:, 3:].unique().tolist()) <= {0.0, 1.0}


def test_no_gradient_clipping_by_default_as_the_demo_clips_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, norm: calls.append(norm))
    r = recipe(stages=(1, 1, 1))
    r.train_step(0)
    assert calls == [] and "no gradient clipping" in r.description["optimizer"]
    recipe(stages=(1, 1, 1), clip=100.0).train_step(0)
    assert calls and set(calls) == {100.0}


class FashionPoses(TinyPoses):
    training_preset = "deepfashion"


def test_the_dataset_chooses_the_papers_preset_and_options_override_it():
    market = recipe()
    assert {key: market.cfg[key] for key in PRESETS["market"]} == {"lambda_pose": 1.0, "lambda_cont": 0.003,
                                                                  "lambda_sty": 1.0, "face": False}
    assert "D_F" not in market.networks and market.description["preset"].startswith("market (default")
    fashion = recipe(dataset=FashionPoses(count=6))
    assert {key: fashion.cfg[key] for key in PRESETS["deepfashion"]} == {"lambda_pose": 700.0, "lambda_cont": 0.03,
                                                                        "lambda_sty": 1.0, "face": True}
    assert "D_F" in fashion.networks and "dataset tiny-poses's" in fashion.description["preset"]
    assert "batch for it: 4, this run: 2" in fashion.description["preset"]
    chosen = recipe(dataset=FashionPoses(count=6), preset="market", lambda_cont=0.5)
    assert (chosen.cfg["lambda_pose"], chosen.cfg["lambda_cont"], chosen.cfg["face"]) == (1.0, 0.5, False)
    assert chosen.description["preset"].startswith("market (given")


def test_the_real_datasets_name_their_presets():
    from harness_plugins.datasets.deepfashion_pose import DeepFashionPose
    from harness_plugins.datasets.market1501_pose import Market1501Pose
    from harness_plugins.datasets.pose_synth import PoseSynth

    assert (DeepFashionPose.training_preset, Market1501Pose.training_preset, PoseSynth.training_preset) == \
        ("deepfashion", "market", "market")
    with pytest.raises(Exception, match="preset"):
        SPT(preset="lip")


def test_the_presets_batch_is_the_default_batch():
    assert SPT().default_batch_size_for(FashionPoses()) == 4
    assert SPT().default_batch_size_for(TinyPoses()) == 16 == SPT.default_batch_size
    assert SPT(preset="deepfashion").default_batch_size_for(TinyPoses()) == 4
