"""Unpaired translation: CycleGAN networks and official weights, the release layouts, translate-synth,
pixel accuracy and the identity floor, checked directly and through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from harness import DataError
from harness.data import read_image
from harness_plugins.datasets import translate_synth
from harness_plugins.datasets.translate_synth import TranslateSynth
from harness_plugins.datasets.unpaired import RELEASES, MapsCycleGAN, MapsPix2Pix
from harness_plugins.methods.translation.cyclegan import PatchDiscriminator, ResnetGenerator
from harness_plugins.metrics.pixel_accuracy import pixel_accuracy


def write_image(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def cyclegan_fixture(root, counts=(3, 2, 2, 3), size=(40, 48), aligned=False, seed=0):
    """A CycleGAN-release tree with random images; aligned test files share their number (``1_A``/``1_B``)."""
    rng = np.random.default_rng(seed)
    for folder, count in zip(("trainA", "trainB", "testA", "testB"), counts):
        for i in range(count):
            name = f"{i + 1}_{folder[-1]}.jpg" if aligned else f"n0{folder[-1]}_{i:04d}.jpg"
            write_image(root / folder / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return root


# -- networks ---------------------------------------------------------------------------------------
def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_official_networks():
    # ResNet-9 generator with 64 base filters: 11.378 M; 70×70 PatchGAN: 2.765 M (the official print_networks).
    assert count(ResnetGenerator()) == 11_378_179
    assert count(PatchDiscriminator()) == 2_764_737
    # 70×70 receptive field: a 256² input gives a 30×30 grid of patch scores.
    assert PatchDiscriminator()(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def official_checkpoint(path, seed=0):
    """A state dict with the official names, including the InstanceNorm running statistics that
    checkpoints saved by old PyTorch versions carry (the official loader drops them)."""
    torch.manual_seed(seed)
    state = ResnetGenerator().state_dict()
    assert "model.10.conv_block.5.weight" in state and "model.26.bias" in state
    state["model.2.running_mean"] = torch.zeros(64)
    state["model.10.conv_block.2.running_var"] = torch.ones(256)
    torch.save(state, path)
    return state


def test_cyclegan_runs_official_weights_on_horse2zebra_layout(cli, tmp_path):
    root = cyclegan_fixture(tmp_path / "horse2zebra")
    weights = tmp_path / "latest_net_G_A.pth"
    official_checkpoint(weights)
    code, out, err = cli(
        "run", "--method", "cyclegan", "--dataset", "horse2zebra", "--data-root", root, "--checkpoint", weights,
        "--option", "resize=64", "--metric", "params", "--json",
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["samples"] == 2 and record["status"] == "ok"
    assert record["metrics"]["params"]["values"]["params"] == 11_378_179
    assert record["dataset"]["layout"]["counts"] == {"trainA": 3, "trainB": 2, "testA": 2, "testB": 3}
    assert record["method"]["checkpoint_sha256"]


def test_cyclegan_output_follows_the_official_test_pipeline(tmp_path):
    from harness_plugins.methods.translation.cyclegan import CycleGAN

    weights = tmp_path / "g.pth"
    official_checkpoint(weights, seed=3)
    method = CycleGAN(resize=32)
    method.load(weights, "cpu")
    image = torch.rand(3, 20, 28)
    out = method.predict([{"id": "x", "image": image}])[0]
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    # Reference: resize with PIL bicubic to 32², scale to [-1, 1], generator, back to [0, 1], resize back.
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    small = torch.from_numpy(np.asarray(Image.fromarray(array).resize((32, 32), Image.BICUBIC)).copy())
    x = small.permute(2, 0, 1).float()[None] / 127.5 - 1
    with torch.no_grad():
        y = (method.model(x) + 1) / 2
    back = torch.nn.functional.interpolate(y, size=(20, 28), mode="bicubic", antialias=True).clamp(0, 1)[0]
    torch.testing.assert_close(out, back, atol=1e-5, rtol=0)


def test_wrong_checkpoint_is_a_clear_error(cli, tmp_path):
    root = cyclegan_fixture(tmp_path / "horse2zebra")
    torch.save(PatchDiscriminator().state_dict(), tmp_path / "latest_net_D_A.pth")
    code, _, err = cli("run", "--method", "cyclegan", "--dataset", "horse2zebra", "--data-root", root,
                       "--checkpoint", tmp_path / "latest_net_D_A.pth", "--metric", "params")
    assert code == 2 and "does not fit the ResNet generator" in err


# -- datasets ---------------------------------------------------------------------------------------
def test_release_layout_direction_and_missing_folder(tmp_path):
    horse2zebra = next(cls for cls in RELEASES if cls.name == "horse2zebra")
    root = cyclegan_fixture(tmp_path / "h2z")
    forward = horse2zebra(root)
    assert [s["id"] for s in forward.samples("test")] == ["n0A_0000", "n0A_0001"]
    reference = forward.reference("test")
    assert [p.parent.name for p in reference.files] == ["testB"] * 3 and len(reference.digest) == 64
    backward = horse2zebra(root, direction="BtoA")
    assert backward.count("test") == 3 and {r["domain"] for r in backward.domain_index("train", "target")} == {"A"}
    assert "reference" not in next(forward.samples("test"))  # unpaired: no per-sample ground truth
    (root / "testB" / "n0B_0000.jpg").unlink()
    for path in (root / "testB").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="testB holds no images"):
        forward.verify("test")
    with pytest.raises(DataError, match=r"testA.*missing"):
        horse2zebra(tmp_path / "nothing").verify("test")


def test_maps_aligned_test_split_and_the_thesis_leaky_variant(tmp_path):
    root = cyclegan_fixture(tmp_path / "maps", counts=(3, 3, 2, 2), aligned=True)
    maps = MapsCycleGAN(root)
    sample = next(maps.samples("test"))
    assert sample["id"] == "1" and sample["reference"].shape == sample["image"].shape
    assert np.array_equal(read_image(root / "testB" / "1_B.jpg"), (sample["reference"] * 255).round().byte().permute(1, 2, 0).numpy())
    clean = [r["paths"]["image"].parent.name for r in maps.domain_index("train", "target")]
    leaky = MapsCycleGAN(root, target_train="test")
    assert clean == ["trainB"] * 3
    assert [r["paths"]["image"].parent.name for r in leaky.domain_index("train", "target")] == ["testB"] * 2
    assert {p.parent.name for p in leaky.files("train")} == {"trainA", "testB"}
    (root / "testB" / "2_B.jpg").rename(root / "testB" / "9_B.jpg")
    with pytest.raises(DataError, match="no aligned target image"):
        maps.verify("test")


def test_maps_pix2pix_splits_side_by_side_files(tmp_path):
    rng = np.random.default_rng(1)
    pairs = {}
    for split, n in (("train", 2), ("val", 3)):
        for i in range(1, n + 1):
            pairs[(split, i)] = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
            write_image(tmp_path / split / f"{i}.png", pairs[(split, i)])
    maps = MapsPix2Pix(tmp_path)
    samples = {s["id"]: s for s in maps.samples("test")}
    assert sorted(samples) == ["1", "2", "3"]
    to_uint8 = lambda t: (t * 255).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
    assert np.array_equal(to_uint8(samples["2"]["image"]), pairs[("val", 2)][:, :16])  # photo: left half
    assert np.array_equal(to_uint8(samples["2"]["reference"]), pairs[("val", 2)][:, 16:])  # map: right half
    reverse = {s["id"]: s for s in MapsPix2Pix(tmp_path, direction="BtoA").samples("test")}
    assert np.array_equal(to_uint8(reverse["2"]["image"]), pairs[("val", 2)][:, 16:])
    assert maps.reference("test") is None


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> TranslateSynth:
    dataset = TranslateSynth(tmp_path_factory.mktemp("data") / "translate-synth")
    dataset.verify("test")
    return dataset


def test_translate_synth_is_unpaired_in_training_and_aligned_in_test(synth, tmp_path):
    assert synth.count("train") == 32 and synth.count("test") == 12
    for variant in translate_synth.VARIANTS:
        dataset = TranslateSynth(synth.root, variant=variant)
        mapping = translate_synth.MAPPINGS[variant]
        for sample in dataset.samples("test"):
            a = read_image(dataset.folder("test", "A") / f"{sample['id']}_A.png")
            assert np.array_equal(mapping(a), read_image(dataset.folder("test", "B") / f"{sample['id']}_B.png"))
        train_a = [read_image(r["paths"]["image"]) for r in dataset.domain_index("train", "source")]
        train_b = [read_image(r["paths"]["image"]) for r in dataset.domain_index("train", "target")]
        assert not any(np.array_equal(mapping(a), b) for a, b in zip(train_a, train_b))
    again = TranslateSynth(tmp_path / "again")
    again.verify("test")
    assert (again.root / "manifest.json").read_text() == (synth.root / "manifest.json").read_text()


# -- pixel accuracy ---------------------------------------------------------------------------------
def test_pixel_accuracy_threshold_rule_on_a_hand_built_case():
    target = torch.zeros(3, 1, 4)
    pred = torch.zeros(3, 1, 4)
    pred[:, 0, 0] = torch.tensor([4, 4, 4]) / 255  # sum 12: right ("> 12" is wrong)
    pred[:, 0, 1] = torch.tensor([4, 4, 5]) / 255  # sum 13: wrong
    pred[:, 0, 2] = torch.tensor([12, 0, 0]) / 255  # sum 12: right
    pred[:, 0, 3] = torch.tensor([0, 0, 200]) / 255  # wrong
    assert float(pixel_accuracy(pred, target)) == 0.5
    assert float(pixel_accuracy(pred, target, difference="max")) == 0.75
    assert float(pixel_accuracy(pred, target, difference="euclidean")) == 0.75


def test_pixel_accuracy_matches_a_numpy_reference():
    rng = np.random.default_rng(5)
    target = rng.integers(0, 256, (2, 24, 20, 3))
    pred = np.clip(target + rng.integers(-9, 10, target.shape), 0, 255)
    expected = (np.abs(pred - target).sum(-1) <= 12).reshape(2, -1).mean(1)
    as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255  # noqa: E731
    np.testing.assert_allclose(pixel_accuracy(as_tensor(pred), as_tensor(target)).numpy(), expected)


def test_identity_floor_scores_pixel_accuracy_on_maps_through_the_cli(cli, tmp_path):
    # Maps are scored at 256² by default (the thesis resizes every image to 256×256), natively on request.
    root = cyclegan_fixture(tmp_path / "maps", counts=(1, 1, 2, 2), aligned=True)
    write_image(root / "testB" / "1_B.jpg", read_image(root / "testA" / "1_A.jpg"))  # one map equals its photo

    def at(size, array):
        return np.asarray(Image.fromarray(array).resize((size, size), Image.BICUBIC)) if size else array

    for size, given in ((256, []), (0, ["--metric-option", "pixel-accuracy.resolution=0"])):
        code, out, err = cli("run", "--method", "identity-translation", "--dataset", "maps", "--data-root", root,
                             "--metric", "pixel-accuracy", *given, "--json")
        assert code == 0, err
        entry = json.loads(out)["metrics"]["pixel-accuracy"]
        expected = 100 * np.mean([
            (np.abs(at(size, read_image(root / "testA" / f"{i}_A.jpg")).astype(int)
                    - at(size, read_image(root / "testB" / f"{i}_B.jpg"))).sum(-1) <= 12).mean()
            for i in (1, 2)
        ])
        assert entry["values"]["pixel-accuracy"] == pytest.approx(expected)
        assert entry["params"] == {"threshold": 12.0, "difference": "sum", "resolution": size}
        assert entry["convention"]["resolution"].startswith("256x256" if size else "native")


def test_pixel_accuracy_at_a_resolution_accepts_a_prediction_already_that_size():
    from harness_plugins.metrics.pixel_accuracy import PixelAccuracy

    target = torch.rand(3, 12, 12)
    small = torch.from_numpy(np.asarray(Image.fromarray((target.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
                                        .resize((8, 8), Image.BICUBIC)).copy()).permute(2, 0, 1).float() / 255
    metric = PixelAccuracy(target_field="reference", resolution=8)
    assert metric.update([small], [{"id": "a", "reference": target}]) == [100.0]  # the model-size output as it is
    native = PixelAccuracy(target_field="reference")
    with pytest.raises(DataError, match="differ in size"):
        native.update([small], [{"id": "a", "reference": target}])


def test_pixel_accuracy_refuses_an_unpaired_set(cli, tmp_path):
    root = cyclegan_fixture(tmp_path / "h2z")
    code, _, err = cli("run", "--method", "identity-translation", "--dataset", "horse2zebra", "--data-root", root,
                       "--metric", "pixel-accuracy")
    assert code == 2 and "no aligned target" in err


# -- SAT --------------------------------------------------------------------------------------------
def test_sat_output_is_the_attention_composite():
    from harness_plugins.methods.translation.sat import SATGenerator

    torch.manual_seed(0)
    net = SATGenerator(ngf=8, blocks=1, attention=True).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a, g0, out = net.attention(x), net.g0(x), net(x)
    assert a.shape == (2, 1, 32, 32) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(out, a * g0 + (1 - a) * x)
    with torch.no_grad():  # where the attention is 0 the input passes unchanged
        net.attention.head[-2].bias.fill_(-1e4)
        torch.testing.assert_close(net(x), x)
    assert SATGenerator(ngf=8, blocks=1, attention=False).attention is None


def test_sat_test_time_batch_norm_uses_each_images_statistics_by_default(tmp_path):
    from harness_plugins.methods.translation.sat import SATG0

    image = torch.rand(3, 32, 32)
    outputs = {}
    for mode in ("batch", "running"):
        method = SATG0(ngf=4, blocks=1, resize=0, test_norm=mode)
        torch.manual_seed(0)
        method.load(None, "cpu")
        norms = [m for m in method.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and all(m.training == (mode == "batch") for m in norms)
        outputs[mode] = method.predict([{"id": "x", "image": image}])[0]
    torch.manual_seed(0)
    net = SATG0(ngf=4, blocks=1).build().train()  # train mode: each image's own statistics
    with torch.no_grad():
        expected = ((net(image[None] * 2 - 1) + 1) / 2).clamp(0, 1)[0]
    torch.testing.assert_close(outputs["batch"], expected)
    assert not torch.allclose(outputs["batch"], outputs["running"])


# -- training ---------------------------------------------------------------------------------------
TINY = ["--option", "ngf=4", "--option", "blocks=1"]


def test_linear_decay_is_the_official_rule():
    from harness_plugins.methods.translation.cyclegan import linear_decay

    rule = linear_decay(steps=10, decay_from=5)
    assert [rule(s) for s in (0, 5)] == [1.0, 1.0]
    assert rule(6) == pytest.approx(1 - 1 / 6) and rule(10) == pytest.approx(1 - 5 / 6)


def test_cyclegan_trains_on_translate_synth_and_its_weights_run(cli, tmp_path):
    out = tmp_path / "cyclegan"
    code, _, err = cli("train", "--method", "cyclegan", "--dataset", "translate-synth", "--steps", "3", "--batch-size", "2",
                       *TINY, "--option", "ndf=4", "--option", "load_size=72", "--option", "crop_size=64", "--out", out)
    assert code == 0, err
    state = torch.load(out / "state.pt", weights_only=True)["recipe"]
    assert set(state["networks"]) == {"G_A", "G_B", "D_A", "D_B"} and set(state["optimizers"]) == {"G", "D"}
    assert len(state["stateful"]["fake_B_pool"]["images"]) == 6  # 3 steps × batch 2 fill the pool of 50
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"G_A", "cycle_A", "idt_B", "D_B"} <= set(log[-1]["losses"])
    code, out_json, err = cli("run", "--method", "cyclegan", "--dataset", "translate-synth", "--checkpoint", out, *TINY,
                              "--option", "resize=0", "--metric", "pixel-accuracy", "--json")
    assert code == 0, err
    assert json.loads(out_json)["samples"] == 12


def small_vgg19(torch_home) -> None:
    """torchvision's VGG-19 layers up to conv3_3 with random weights, as the file SAT looks up (7 MB)."""
    import torchvision

    wrapper = torch.nn.Module()
    wrapper.features = torchvision.models.vgg19(weights=None).features[:15]
    (torch_home / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(wrapper.state_dict(), torch_home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")


def test_sat_trains_its_three_stages(cli, tmp_path, isolated_env):
    small_vgg19(isolated_env / "torch")
    out = tmp_path / "sat"
    code, _, err = cli("train", "--method", "sat", "--dataset", "translate-synth", "--steps", "3", "--batch-size", "1",
                       *TINY, "--option", "load_size=0", "--option", "crop_size=64", "--option", "stages=1,1,1", "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["stages"] == {"g0": 1, "attention": 2, "joint": 3}
    code, _, err = cli("run", "--method", "sat", "--dataset", "translate-synth", "--checkpoint", out, *TINY,
                       "--option", "resize=0", "--metric", "pixel-accuracy")
    assert code == 0, err


def test_adaptive_weight_watches_the_discriminator_after_a_warm_up():
    from harness_plugins.methods.translation.sat import AdaptiveWeight

    # Absolute threshold: idle for the warm-up even while L_D is high, then up by the increment per step while
    # L_D's EMA stays at or above the threshold, held once it sinks below (and never raised again).
    weight = AdaptiveWeight(increment=0.5, threshold=1.0, warmup=2)
    assert [weight.update(loss) for loss in (2.0, 2.0, 2.0, 2.0)] == [0.0, 0.0, 0.5, 1.0]
    for _ in range(60):
        weight.update(0.1)
    held = weight.value
    assert weight.held and weight.update(5.0) == held == 4.5  # the EMA from 2.0 needs 8 steps of 0.1 to sink below 1
    # Relative threshold: the level is a fraction of the EMA when the rule starts, so a discriminator that has
    # already won (L_D far below chance) still lets λ rise until its loss falls further.
    weight = AdaptiveWeight(increment=0.5, threshold=0.95, warmup=1, relative=True)
    assert [weight.update(loss) for loss in (0.3, 0.3, 0.3)] == [0.0, 0.5, 1.0]
    assert weight.update(0.01) == 1.0 and weight.held  # EMA 0.271 < 0.95 × 0.3
    state = weight.state_dict()
    restored = AdaptiveWeight(0.5, 0.8, relative=True)
    restored.load_state_dict(state)
    assert restored.state_dict() == state


@pytest.mark.slow
def test_sat_lambda_rises_in_real_training_on_every_seed(cli, tmp_path, isolated_env):
    # The thesis's rule must let the self-regularisation act: a short real training of G0 on translate-synth
    # with several seeds raises λ above 0 in every one (watching G's loss instead, it stayed at 0 in most).
    small_vgg19(isolated_env / "torch")
    for seed in range(4):
        out = tmp_path / f"sat{seed}"
        code, _, err = cli("train", "--method", "sat-g0", "--dataset", "translate-synth", "--steps", "30", "--batch-size",
                           "1", "--seed", str(seed), *TINY, "--option", "load_size=0", "--option", "crop_size=32", "--out", out)
        assert code == 0, err
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        lambdas = [row["losses"]["lambda"] for row in log]
        assert lambdas[:4] == [0.0] * 4  # the warm-up: 10 % of 30 steps, plus the step that first reads L_D
        assert max(lambdas) > 0, f"seed {seed}: lambda never rose ({lambdas})"
        # The thesis's schedule: constant to step 15 of 30, then linearly towards 0.
        rates = [row["lr"]["G0"] for row in log]
        assert rates[0] == rates[14] == pytest.approx(2e-4) and rates[-1] < rates[20] < rates[14]
