"""S-DSEN family: p4 equivariance, GrouPy filter layout, parameter counts, I/O, training recipe, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness
from harness import DataError, TrainContext, UsageError
from harness.checkpoints import save_weights
from harness_plugins.methods.deraining.sdsen import DSEN, DSENCNN, SDSEN, P4ConvP4, P4ConvZ2, SDSENNet


def rotate(t: torch.Tensor) -> torch.Tensor:
    """The p4 action of a 90° rotation on (B, C, 4, H, W) features: rotate the plane, roll the orientations."""
    return torch.roll(torch.rot90(t, 1, dims=(-2, -1)), 1, dims=2)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# -- p4 convolutions ---------------------------------------------------------------------------------
def test_p4convz2_is_rotation_equivariant() -> None:
    conv = P4ConvZ2(3, 5).double()
    x = torch.randn(2, 3, 13, 17, dtype=torch.float64)
    y = conv(x)
    assert y.shape == (2, 5, 4, 13, 17)
    torch.testing.assert_close(conv(torch.rot90(x, 1, dims=(-2, -1))), rotate(y), atol=1e-5, rtol=0)


def test_p4convp4_is_rotation_equivariant() -> None:
    conv = P4ConvP4(3, 5).double()
    x = torch.randn(2, 3, 4, 13, 17, dtype=torch.float64)
    y = conv(x)
    torch.testing.assert_close(conv(rotate(x)), rotate(y), atol=1e-5, rtol=0)
    # A plain spatial rotation (orientations not rolled) is not a p4 symmetry: the check can fail.
    assert (conv(torch.rot90(x, 1, dims=(-2, -1))) - rotate(y)).abs().max() > 1e-2


def groupy_expanded_weight(weight: torch.Tensor) -> torch.Tensor:
    """GrouPy's filter transform, written from its group arithmetic (independent of rot90/roll).

    Output orientation r reads the weight at g⁻¹·h for g = rotation r and h = (u, v, s):
    R(−r)·T(u, v)·R(s) = T(R(−r)(u, v))·R(s − r), with R(θ) = [[cos, −sin], [sin, cos]] on
    centred coordinates (u along H, v along W). Output channel = c·4 + r, input = c'·S + s.
    """
    cout, cin, stab, k, _ = weight.shape
    centre = k // 2
    out = torch.empty(cout, 4, cin, stab, k, k, dtype=weight.dtype)
    for r in range(4):
        cos, sin = round(np.cos(-r * np.pi / 2)), round(np.sin(-r * np.pi / 2))
        for s in range(stab):
            for i in range(k):
                for j in range(k):
                    u, v = i - centre, j - centre
                    su, sv = cos * u - sin * v, sin * u + cos * v
                    out[:, r, :, s, i, j] = weight[:, :, (s - r) % stab, su + centre, sv + centre]
    return out.reshape(cout * 4, cin * stab, k, k)


@pytest.mark.parametrize("conv_cls", [P4ConvZ2, P4ConvP4])
def test_filter_expansion_matches_groupy_index_tables(conv_cls: type) -> None:
    conv = conv_cls(2, 3)
    assert conv.bias.shape == (3,)  # one bias per regular channel, shared over orientations
    torch.testing.assert_close(conv.expanded_weight(), groupy_expanded_weight(conv.weight.detach()), atol=0, rtol=0)


def test_groupy_initialisation_bound() -> None:
    conv = P4ConvP4(10, 10)
    bound = 1 / np.sqrt(10 * 5 * 5)  # regular input channels × k × k, orientations not counted
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert conv.bias.abs().max() <= bound


@pytest.mark.parametrize("link", ["concat", "add", "none"])
def test_stacked_p4_body_and_links_are_equivariant(link: str) -> None:
    net = SDSENNet(stages=2, link=link).double()
    x = torch.randn(1, 3, 13, 17, dtype=torch.float64)
    previous = [torch.randn(1, 10, 4, 13, 17, dtype=torch.float64) for _ in range(4)]
    _, status = net.stage(x, previous)
    _, rotated = net.stage(torch.rot90(x, 1, dims=(-2, -1)), [rotate(p) for p in previous])
    for plain, turned in zip(status, rotated):
        torch.testing.assert_close(turned, rotate(plain), atol=1e-5, rtol=0)


def test_orientation_pooled_network_is_rotation_equivariant_end_to_end() -> None:
    # Pooling over orientations (and SE's global average) keeps p4 equivariance through all stages.
    net = SDSENNet(stages=2, link="concat", aggregation="maxpool").double()
    x = torch.rand(1, 3, 13, 17, dtype=torch.float64)
    plain = net(x)[-1]
    turned = net(torch.rot90(x, 1, dims=(-2, -1)))[-1]
    torch.testing.assert_close(turned, torch.rot90(plain, 1, dims=(-2, -1)), atol=1e-5, rtol=0)


# -- architecture --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("dsen", {}, 50_958),
        ("dsen-cnn", {}, 52_113),
        ("s-dsen", {}, 130_998),
        ("dsen", {"se": "false"}, 50_843),
    ],
)
def test_parameter_counts(name: str, options: dict, expected: int) -> None:
    assert count(harness.create_method(name, **options).build()) == expected


@pytest.mark.parametrize("stages", ["1", "2", "4", "8"])
def test_stage_count_does_not_change_parameters(stages: str) -> None:
    assert count(harness.create_method("sdsen", stages=stages).build()) == 130_998


def test_state_dict_uses_the_official_names_and_shapes() -> None:
    # Keys and shapes of the official config/model.py SDSEN (GrouPy SplitGConv2D: weight
    # (out, in, stabiliser, k, k), bias (out,)), channel=10, depth=7, use_se=True.
    expected = {
        "pre_layer.conv0.weight": (10, 3, 1, 5, 5),
        "pre_layer.conv0.bias": (10,),
        "dec.0.weight": (10, 40, 5, 5),
        "dec.0.bias": (10,),
        "dec.1.fc.0.weight": (5, 10),
        "dec.1.fc.0.bias": (5,),
        "dec.1.fc.2.weight": (10, 5),
        "dec.1.fc.2.bias": (10,),
        "dec.3.weight": (3, 10, 1, 1),
        "dec.3.bias": (3,),
    }
    for i in range(4):
        expected |= {
            f"re_layer.{i}.weight": (10, 20, 4, 5, 5),
            f"re_layer.{i}.bias": (10,),
            f"connect_layers.{i}.conv0.weight": (10, 10, 4, 5, 5),
            f"connect_layers.{i}.conv0.bias": (10,),
        }
    state = SDSEN().build().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    dsen = DSEN().build().state_dict()
    assert "connect_layers.0.conv0.weight" not in dsen and tuple(dsen["re_layer.0.weight"].shape) == (10, 10, 4, 5, 5)


@pytest.mark.parametrize(
    "options",
    [
        {"link": "concat", "aggregation": "maxpool"},
        {"link": "add", "aggregation": "avgpool"},
        {"link": "none", "se": False},
        {"link": "concat", "backbone": "cnn"},
        {"link": "add", "backbone": "cnn", "se": False},
    ],
)
def test_variants_run(options: dict) -> None:
    net = SDSEN(stages=2, **options).build()
    rains = net(torch.rand(1, 3, 13, 17))
    assert len(rains) == 2 and all(r.shape == (1, 3, 13, 17) and torch.isfinite(r).all() for r in rains)


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="aggregation"):
        DSENCNN(aggregation="maxpool")
    with pytest.raises(UsageError, match="stages"):
        SDSEN(stages=0)
    with pytest.raises(UsageError, match="milestones"):
        SDSEN(milestones="10,x")
    with pytest.raises(UsageError, match="link"):
        SDSEN(link="dense")


def test_registry_names_aliases_and_metadata() -> None:
    plugins = harness.plugins.get_plugins()
    assert plugins.methods.get("sdsen") is SDSEN and plugins.methods.get("cnn-counterpart") is DSENCNN
    for cls in (SDSEN, DSEN, DSENCNN):
        assert cls.tasks == {"deraining"} and cls.needs_checkpoint and "ICIP 2019" in cls.paper
        assert all(option.help for option in cls.options)
    assert SDSEN.default_batch_size == 64 and SDSEN.default_steps == 20_000


# -- prediction and weights ------------------------------------------------------------------------------
def test_output_is_input_minus_predicted_rain() -> None:
    method = SDSEN(stages=2)
    method.load(None, "cpu")
    rainy = torch.rand(3, 13, 17)
    rain = method.model(rainy[None])[-1][0]
    (restored,) = method.predict([{"id": "a", "rainy": rainy}])
    torch.testing.assert_close(restored, rainy - rain)
    with torch.no_grad():
        method.model.dec[3].weight.zero_()
        method.model.dec[3].bias.zero_()
    (unchanged,) = method.predict([{"id": "a", "rainy": rainy}])
    assert unchanged.dtype == torch.float32 and torch.equal(unchanged, rainy)


def test_last_stage_is_returned_and_stages_refine_from_the_original() -> None:
    net = SDSENNet(stages=3, link="none")
    o = torch.rand(1, 3, 13, 17)
    rains = net(o)
    # Stage 2 sees O − R̂_1 and predicts a rain layer of O: the same as running stage 1 on that input.
    again = SDSENNet(stages=1, link="none")
    again.load_state_dict(net.state_dict())
    torch.testing.assert_close(rains[1], again(o - rains[0])[0])


def test_network_runs_in_bgr_like_the_official_cv2_pipeline() -> None:
    net = SDSENNet(stages=1, link="none")
    with torch.no_grad():
        net.pre_layer.conv0.weight[:, 1:] = 0  # keep only the first input channel: blue in BGR
        net.dec[3].weight[1:] = 0  # keep only the first output channel: blue in BGR
        net.dec[3].bias[1:] = 0
    x = torch.rand(1, 3, 13, 17)
    changed_red_green = x.clone()
    changed_red_green[:, :2] = torch.rand(1, 2, 13, 17)
    rain = net(x)[0]
    torch.testing.assert_close(net(changed_red_green)[0], rain)
    assert rain[:, :2].abs().max() == 0 and rain[:, 2].abs().max() > 0
    changed_blue = x.clone()
    changed_blue[:, 2] = torch.rand(1, 13, 17)
    assert not torch.allclose(net(changed_blue)[0], rain)


def test_safetensors_checkpoint_round_trip(tmp_path) -> None:
    trained = SDSEN(stages=2).build()
    save_weights(trained, tmp_path / "model.safetensors")
    method = SDSEN(stages=2)
    method.load(tmp_path / "model.safetensors", "cpu")
    assert not method.model.training
    rainy = torch.rand(3, 13, 17)
    with torch.no_grad():
        expected = rainy - trained(rainy[None])[-1][0]
    torch.testing.assert_close(method.predict([{"id": "x", "rainy": rainy}])[0], expected)


def test_official_training_checkpoint_format_loads(tmp_path) -> None:
    # The official train.py saves torch.save({'net': state_dict, 'clock': step, 'opt': optimizer}, 'latest').
    net = SDSEN().build()
    optimizer = torch.optim.Adam(net.parameters())
    torch.save({"net": net.state_dict(), "clock": 400, "opt": optimizer.state_dict()}, tmp_path / "latest")
    method = SDSEN()
    method.load(tmp_path / "latest", "cpu")
    for key, value in net.state_dict().items():
        assert torch.equal(method.model.state_dict()[key], value)


def test_checkpoint_with_wrong_shapes_names_the_file(tmp_path) -> None:
    path = tmp_path / "dsen.safetensors"
    save_weights(DSEN().build(), path)
    with pytest.raises(DataError, match="dsen.safetensors"):
        SDSEN().load(path, "cpu")


# -- training recipe ---------------------------------------------------------------------------------------
class PairSet:
    """A tiny in-memory paired deraining set: clean gradients plus diagonal streaks."""

    name = "tiny-pairs"

    def __init__(self, n: int = 3, size: tuple[int, int] = (21, 25)) -> None:
        g = torch.Generator().manual_seed(1)
        h, w = size
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        streaks = (((yy + xx) % 6) == 0).float() * 0.4
        self.items = []
        for i in range(n):
            base = torch.rand(3, 1, 1, generator=g) * 0.5 + 0.1 * torch.rand(3, h, w, generator=g)
            clean = (base + (yy / h) * 0.3).clamp(0, 1)
            clean = (clean * 255).round() / 255
            rainy = ((clean + streaks).clamp(0, 1) * 255).round() / 255
            self.items.append({"id": f"p{i}", "rainy": rainy, "clean": clean})

    def samples(self, split: str):
        assert split == "train"
        yield from self.items


def test_recipe_batches_are_pure_functions_of_seed_and_step() -> None:
    data = PairSet()
    first = DSEN(patch="8").training_recipe(data, TrainContext(5, 100, 7))
    second = DSEN(patch="8").training_recipe(data, TrainContext(5, 100, 7))
    later = first.batch(9)
    o, b = first.batch(3)
    assert o.shape == b.shape == (5, 3, 8, 8) and o.dtype == torch.float32
    for x, y in zip(second.batch(3), (o, b)):
        assert torch.equal(x, y)
    for x, y in zip(second.batch(9), later):
        assert torch.equal(x, y)
    assert not torch.equal(first.batch(4)[0], o)
    other_seed = DSEN(patch="8").training_recipe(data, TrainContext(5, 100, 8))
    assert not torch.equal(other_seed.batch(3)[0], o)
    # Crops stay aligned: the streak pattern is the only difference between O and B.
    assert ((o - b) >= -1e-6).all()


def test_recipe_follows_the_paper() -> None:
    assert SDSEN().config["patch"] == 64
    recipe = SDSEN(stages=2, patch="16").training_recipe(PairSet(), TrainContext(4, 20_000, 0))
    assert isinstance(recipe.optimizer, torch.optim.Adam)
    assert recipe.optimizer.defaults["lr"] == 5e-4 and recipe.optimizer.defaults["betas"] == (0.9, 0.999)
    assert recipe.optimizer.defaults["weight_decay"] == 0
    assert sorted(recipe.scheduler.milestones) == [15_000, 17_500] and recipe.scheduler.gamma == 0.1
    assert recipe.description["batch_size"] == 4 and recipe.description["parameters"] == 130_998


def test_recipe_rejects_images_smaller_than_the_patch() -> None:
    with pytest.raises(DataError, match="p0.*smaller"):
        DSEN().training_recipe(PairSet(), TrainContext(4, 10, 0))


def test_deep_supervision_loss_sums_stage_losses() -> None:
    recipe = SDSEN(stages=2, patch="8").training_recipe(PairSet(), TrainContext(2, 10, 0))
    o, b = recipe.batch(0)
    rains = recipe.model(o)
    expected = sum(torch.nn.functional.mse_loss(r, o - b) for r in rains)
    torch.testing.assert_close(recipe.loss((o, b)), expected)


def test_a_few_training_steps_reduce_the_loss() -> None:
    recipe = DSEN(patch="8", lr="2e-3").training_recipe(PairSet(), TrainContext(4, 15, 0))
    probe = recipe.batch(0)
    with torch.no_grad():
        before = float(recipe.loss(probe))
    for step in range(15):
        loss = recipe.loss(recipe.batch(step))
        recipe.optimizer.zero_grad()
        loss.backward()
        recipe.optimizer.step()
        recipe.scheduler.step()
    with torch.no_grad():
        after = float(recipe.loss(probe))
    assert after < 0.75 * before


@pytest.mark.parametrize("method", ["s-dsen", "dsen", "dsen-cnn"])
def test_no_released_weights_is_said_with_the_way_to_get_some(cli, tmp_path, method) -> None:
    # prismformore/SDSEN publishes code only; `harness info` and `harness weights import` say so and how to train
    code, out, _ = cli("info", method)
    assert code == 0 and "official weights: none released (github.com/prismformore/SDSEN" in out
    assert f"harness train --method {method} --dataset rain100h" in out
    code, _, err = cli("weights", "import", method, tmp_path / "latest")
    assert code == 2 and "released no weights" in err and f"harness train --method {method}" in err
