"""SPT: architectures and parameter counts, the demo's joint normalisation against torch's, the
pseudo-label search on hand-built maps, the loss weights, stages, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_spt import TinyPoses, parsing_of, pose_of

from harness import DataError, UsageError, count_parameters
from harness.train.context import TrainContext
from harness_plugins.methods.pose_transfer.pose_transfer_common import SampleNorm
from harness_plugins.methods.pose_transfer.spt import SPT, lsgan, stage_lengths, style_loss, weighted_cross_entropy
from harness_plugins.methods.pose_transfer.spt_networks import SPTGenerator, discriminator, pose_detector
from harness_plugins.methods.pose_transfer.spt_parts import one_hot, search_pseudo_label, search_scores


# -- architectures ---------------------------------------------------------------------------------
def encoder_params(cin: int, w: int) -> int:
    """3×3 conv (bias), then 4×4 stride-2 convs without bias + a scalar-affine norm (2), the last with bias, no norm."""
    widths = (w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w)
    total = cin * w * 9 + w
    for i in range(1, 6):
        total += widths[i - 1] * widths[i] * 16 + (widths[i] if i == 5 else 2)
    return total


def unet_params(streams: tuple[int, ...], out: int, w: int) -> int:
    """Encoders per stream; decoder 4×4 transposed convs (no bias) + norm over [previous, all streams' skip], 3×3 head."""
    widths = (w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w)
    levels = [len(streams) * c for c in widths][::-1]
    decoder, previous = 0, 0
    for level, nf in zip(levels, (8 * w, 8 * w, 8 * w, 4 * w, 2 * w)):
        decoder += (previous + level) * nf * 16 + 2
        previous = nf
    decoder += (previous + levels[-1]) * out * 9 + out
    return sum(encoder_params(c, w) for c in streams) + decoder


def test_parameter_counts_at_the_papers_width():
    g = SPTGenerator(width=64)
    # H_S: E_S(S 10 + p 18 + M 1), E_P(p 18 + M 1) -> 10-way softmax
    assert count_parameters(g.hs).params == unet_params((29, 19), 10, 64) == 61_131_428
    # H_A foreground: E_A^F(I 3 + S 9 + p 18) = 30 and E'_S(p 18 + S 9) = 27 channels, as the demo -> RGB
    assert count_parameters(g.fg).params == unet_params((30, 27), 3, 64) == 61_120_477
    # background inpainter: person-free image + hole mask
    assert count_parameters(g.bg).params == unet_params((4,), 3, 64) == 36_052_885
    assert count_parameters(SPTGenerator(width=64, background=False)).params == 61_131_428 + 61_120_477
    assert count_parameters(pose_detector(64)).params == unet_params((3,), 18, 64) == 36_078_244
    # the demo's PatchGAN on image + 9 parsing channels, and D_S on 10-channel maps
    assert count_parameters(discriminator(12, 64)).params == 2_773_953
    assert count_parameters(discriminator(10, 64)).params == 2_771_905
    assert count_parameters(discriminator(3, 64)).params == 2_764_737  # D_B on images, D_F on face crops


def test_generators_keep_the_size_and_hs_outputs_a_distribution():
    g = SPTGenerator(width=4).eval()
    size = (128, 64)
    parsing = one_hot(torch.randint(0, 10, (2, *size)))
    heat, mask = torch.rand(2, 18, *size), torch.ones(2, 1, *size)
    predicted = g.parse(parsing, heat, mask, heat, mask)
    assert predicted.shape == (2, 10, *size)
    torch.testing.assert_close(predicted.sum(1), torch.ones(2, *size))
    theta = torch.eye(2, 3).expand(2, 10, 2, 3)
    image = g.foreground(torch.rand(2, 3, *size) * 2 - 1, parsing, heat, predicted, heat, theta,
                         torch.ones(2, 10, dtype=torch.bool), torch.ones(2, 10, *size))
    assert image.shape == (2, 3, *size) and image.abs().max() <= 1


def test_joint_norm_is_the_demos_instance_norm_3d_on_an_unsqueezed_tensor():
    x = torch.randn(3, 8, 5, 4)
    ours, reference = SampleNorm(), torch.nn.InstanceNorm3d(1, affine=True)
    with torch.no_grad():
        for norm in (ours, reference):
            norm.weight.fill_(1.7)
            norm.bias.fill_(-0.3)
    torch.testing.assert_close(ours(x), reference(x[:, None])[:, 0], rtol=1e-5, atol=1e-5)


# -- pseudo-label search ---------------------------------------------------------------------------
def shifted(labels: np.ndarray, pose: np.ndarray, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    moved = np.roll(labels, (dy, dx), axis=(0, 1))
    return torch.from_numpy(moved), torch.from_numpy(pose + np.array([dy, dx], np.float32))


def test_search_finds_the_aligned_map_of_the_same_clothing_in_another_pose():
    pose = pose_of(0)
    labels = parsing_of(pose, skirt=False)
    source = (torch.from_numpy(labels), torch.from_numpy(pose))
    same_pose = source  # identical pose: excluded as too similar
    moved = shifted(labels, pose, -1, 1)  # the same figure moved up and right: every part aligns exactly
    skirt = shifted(parsing_of(pose, skirt=True), pose, -1, 1)  # other clothing type: excluded
    other = (torch.from_numpy(parsing_of(pose_of(3), skirt=False)), torch.from_numpy(pose_of(3)))
    candidates = [same_pose, other, skirt, moved]
    scores = search_scores(source[0], source[1], candidates)
    # Every part aligns exactly; only the whole-image part (Def-GAN's first) misses the row and column
    # that come from outside the frame: 64 + 32 - 1 background pixels of 64 x 32, averaged over 10 parts.
    assert scores[0] == 0 and float(scores[3]) == pytest.approx(95 / (64 * 32) / 10) and scores[1] > scores[3]
    # the moved figure is 1.4 px (0.022 of the height) away: a pose "different enough" at 0.02, not at 0.05
    assert search_pseudo_label(source[0], source[1], candidates, min_pose_distance=0.02) == 3
    assert search_pseudo_label(source[0], source[1], candidates, min_pose_distance=0.05) == 1
    assert search_pseudo_label(source[0], source[1], [same_pose, skirt], min_pose_distance=0.02) is None


def test_search_score_is_the_mean_over_shared_parts_of_the_normalised_squared_error():
    pose = pose_of(0)
    labels = parsing_of(pose, skirt=False)
    damaged = labels.copy()
    damaged[40:44, :] = 0  # wipe 4 rows of the legs: only parts covering them differ
    source = (torch.from_numpy(labels), torch.from_numpy(pose))
    score = float(search_scores(*source, [(torch.from_numpy(damaged), torch.from_numpy(pose))])[0])
    from harness_plugins.shared.pose_maps import limb_masks

    parts = limb_masks(torch.from_numpy(pose), labels.shape)
    a, b = one_hot(torch.from_numpy(labels)), one_hot(torch.from_numpy(damaged))
    per_part = [float(((a - b) ** 2 * m).sum() / m.sum()) for m in parts if m.sum() > 0]
    assert score == pytest.approx(sum(per_part) / len(per_part), rel=1e-5)


# -- losses and stages -----------------------------------------------------------------------------
def test_weighted_cross_entropy_doubles_the_weight_on_the_pose_mask():
    target = one_hot(torch.tensor([[0, 3]]))[None, :, :, :].squeeze(1)
    prediction = torch.full((1, 10, 1, 2), 0.05)
    prediction[0, 0, 0, 0], prediction[0, 3, 0, 1] = 0.55, 0.25
    mask = torch.tensor([[[[0.0, 1.0]]]])
    expected = -(np.log(0.55) * 1 + np.log(0.25) * 2) / 2
    assert float(weighted_cross_entropy(prediction, target.view(1, 10, 1, 2), mask)) == pytest.approx(expected, rel=1e-6)


def test_style_loss_counts_classes_visible_in_both_maps_only():
    features = torch.rand(1, 4, 4, 4)
    maps = one_hot(torch.tensor([[3, 3, 4, 4]] * 4))[None]
    assert float(style_loss(features, features, maps, maps)) == 0.0
    other = torch.rand(1, 4, 4, 4)
    loss = float(style_loss(features, other, maps, maps))
    def g(f, m):
        x = (f * m).flatten(2)
        return x @ x.transpose(1, 2) / 16

    def demo(fa, fb, ma, mb):  # the demo: MSELoss of the visibility-masked (B, 8, C, C) stacks of classes 2..9
        visible = (ma[:, 2:].amax(dim=(2, 3)) * mb[:, 2:].amax(dim=(2, 3)))[..., None, None]
        stack_a = torch.stack([g(fa, ma[:, c : c + 1]) for c in range(2, 10)], 1)
        stack_b = torch.stack([g(fb, mb[:, c : c + 1]) for c in range(2, 10)], 1)
        return float(torch.nn.functional.mse_loss(visible * stack_a, visible * stack_b))
    upper, pants = maps[:, 3:4], maps[:, 4:5]
    summed = float(((g(features, upper) - g(other, upper)) ** 2).mean() + ((g(features, pants) - g(other, pants)) ** 2).mean())
    assert loss == pytest.approx(demo(features, other, maps, maps), rel=1e-5) == pytest.approx(summed / 8, rel=1e-5)
    no_pants = one_hot(torch.full((4, 4), 3))[None]
    assert float(style_loss(features, other, no_pants, maps)) == pytest.approx(demo(features, other, no_pants, maps), rel=1e-5)
    # the demo's classes: hair (2) counts, face (1) does not
    face, hair = one_hot(torch.full((4, 4), 1))[None], one_hot(torch.full((4, 4), 2))[None]
    assert float(style_loss(features, other, face, face)) == 0.0 and float(style_loss(features, other, hair, hair)) > 0


def test_pixel_style_loss_follows_the_clothing_to_its_new_place():
    """vgg=none: the style loss on RGB compares each class's colours wherever the two maps put the class."""
    left, right = torch.zeros(8, 8, dtype=torch.long), torch.zeros(8, 8, dtype=torch.long)
    left[:, :4], right[:, 4:] = 3, 3
    maps_left, maps_right = one_hot(left)[None], one_hot(right)[None]
    colour = torch.tensor([0.2, 0.7, 0.4]).view(1, 3, 1, 1)
    source = colour * maps_left[:, 3:4]
    moved = colour * maps_right[:, 3:4] + 0.5 * maps_right[:, :1]  # background differs and does not count
    assert float(style_loss(source, moved, maps_left, maps_right)) == pytest.approx(0.0, abs=1e-12)
    recoloured = torch.tensor([0.7, 0.2, 0.4]).view(1, 3, 1, 1) * maps_right[:, 3:4]
    assert float(style_loss(source, recoloured, maps_left, maps_right)) > 1e-3


def recipe(steps: int = 3, **options) -> object:
    method = SPT(width=4, ndf=8, candidates=4, vgg="none", **options)
    return method.training_recipe(TinyPoses(count=6), TrainContext(batch_size=2, steps=steps, seed=0))


@pytest.mark.parametrize("weights", [{}, {"lambda_pose": 3.0, "lambda_cont": 0.5, "lambda_sty": 2.0, "lambda_ce": 7.0,
                                            "face": True}])
@torch.no_grad()  # only the values are compared
def test_losses_combine_with_the_papers_weights(weights):
    r = recipe(**weights)
    cfg = r.cfg
    batch = r.batch(0)
    losses: dict = {}
    total = r.hs_loss(batch, losses)
    assert float(total) == pytest.approx(float(losses["S_adv"] + cfg["lambda_ce"] * losses["S_ce"]), rel=1e-6)
    losses = {}
    total = r.ha_loss(batch, losses, e2e=False)
    expected = losses["A_adv"] + cfg["lambda_pose"] * losses["A_pose"] + cfg["lambda_cont"] * losses["A_cont"] + \
        cfg["lambda_sty"] * losses["A_sty"]
    if cfg["face"]:  # Eq. 12: L_A^face with weight 1 (DeepFashion's default)
        expected = expected + losses["A_face"]
        assert float(losses["A_face"]) > 0
    else:
        assert "A_face" not in losses
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    assert float(losses["A_sty"]) > 0  # without VGG weights the style loss compares the pixels' colours per class
    if not weights:  # TinyPoses names no preset: Market-1501's, the paper's §4.1
        assert (cfg["lambda_ce"], cfg["lambda_pose"], cfg["lambda_cont"], cfg["lambda_sty"]) == (100, 1, 0.003, 1)
        assert (cfg["alpha"], cfg["beta"], cfg["lr"], cfg["beta1"], cfg["candidates"]) == (1, 10, 2e-4, 0.5, 4)
        assert cfg["face"] is False and cfg["aux_backgrounds"] is None and cfg["clip"] is None


def test_lsgan_targets():
    assert float(lsgan(torch.ones(2, 1, 3, 3), True)) == 0.0 and float(lsgan(torch.ones(2, 1, 3, 3), False)) == 1.0


def test_stages_split_the_steps_and_train_what_the_paper_trains():
    assert stage_lengths((0.3, 0.4, 0.3), 10) == {"hs": 3, "ha": 4, "e2e": 3}
    assert stage_lengths((1, 1, 1), 3) == {"hs": 1, "ha": 1, "e2e": 1}
    with pytest.raises(UsageError, match="3 numbers"):
        stage_lengths((1, 1), 3)
    r = recipe(steps=3, stages=(1, 1, 1), face=True)
    before = {name: [p.detach().clone() for p in module.parameters()] for name, module in
              (("hs", r.networks["generator"].hs), ("fg", r.networks["generator"].fg), ("bg", r.networks["generator"].bg),
               ("P", r.networks["P"]), ("D_F", r.networks["D_F"]))}
    changed = []
    for step in range(3):
        logged = r.train_step(step)
        now = {name: [p.detach().clone() for p in module.parameters()] for name, module in
               (("hs", r.networks["generator"].hs), ("fg", r.networks["generator"].fg),
                ("bg", r.networks["generator"].bg), ("P", r.networks["P"]), ("D_F", r.networks["D_F"]))}
        changed.append({n for n in now if any(not torch.equal(a, b) for a, b in zip(before[n], now[n]))})
        before = now
        assert all(np.isfinite(v) for v in logged.values())
    # D_F learns alongside D_A in Algorithm 1 (stage ha) and in the end-to-end stage, not in H_S pretraining;
    # the background stream (part of H_A) in stage ha only
    assert changed == [{"hs", "P"}, {"fg", "bg", "D_F"}, {"hs", "fg", "D_F"}]


# -- errors ----------------------------------------------------------------------------------------
def test_training_without_parsing_maps_names_the_dataset_option():
    with pytest.raises(DataError, match="parsing=FOLDER"):
        SPT(width=4).training_recipe(TinyPoses(count=4, parsing=False), TrainContext(batch_size=2, steps=1))


def test_vgg_losses_need_the_local_weights_file():
    with pytest.raises(DataError, match="vgg16-397923af.pth"):
        SPT(width=4, vgg="vgg16").training_recipe(TinyPoses(count=4), TrainContext(batch_size=2, steps=1))


def test_inference_needs_the_source_parsing_map_and_a_size_multiple_of_32():
    method = SPT(width=4)
    method.load(None, "cpu")
    sample = TinyPoses().load_image({"id": "0_0", "pid": "0"})
    inputs = {"id": "a", "source": sample["image"], "source_pose": sample["pose"], "target_pose": torch.from_numpy(pose_of(5))}
    with pytest.raises(DataError, match="source_parsing.*parsing=FOLDER"):
        method.predict([inputs])
    [image] = method.predict([{**inputs, "source_parsing": sample["parsing"]}])
    assert image.shape == sample["image"].shape and 0 <= image.min() and image.max() <= 1
    other = {**inputs, "target_pose": torch.from_numpy(pose_of(7)), "source_parsing": sample["parsing"]}
    together = method.predict([{**inputs, "source_parsing": sample["parsing"]}, other])  # one batch through the networks
    torch.testing.assert_close(together[0], image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(together[1], method.predict([other])[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="multiples of 32"):
        method.predict([{**inputs, "source": sample["image"][:, :48], "source_parsing": sample["parsing"][:48]}])


# -- end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from harness_plugins.datasets.pose_synth import PoseSynth

    root = tmp_path_factory.mktemp("data") / "pose-synth"
    PoseSynth(root).prepare()
    return root


def small_vgg16(torch_home) -> None:
    """torchvision's VGG-16 layers up to relu2_1 with random weights, under the file name SPT looks up."""
    import torchvision

    wrapper = torch.nn.Module()
    wrapper.features = torchvision.models.vgg16(weights=None).features[:7]
    (torch_home / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(wrapper.state_dict(), torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth")


TINY = ("--option", "width=4", "--option", "ndf=8", "--option", "candidates=6", "--option", "stages=1,1,1")


def test_spt_trains_its_stages_on_pose_synth_and_its_weights_run(cli, tmp_path, isolated_env, synth_root):
    small_vgg16(isolated_env / "torch")
    out = tmp_path / "spt"
    code, _, err = cli("train", "--method", "spt", "--dataset", "pose-synth", "--data-root", synth_root, "--steps", "3",
                       "--batch-size", "2", *TINY, "--option", "face=true", "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["stages"] == {"hs": 1, "ha": 1, "e2e": 1}
    assert manifest["recipe"]["preset"].startswith("market (dataset pose-synth's)")  # face=true overrides it
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"S_ce", "P"} <= set(log[0]["losses"]) and {"A_sty", "B_rec", "D_B", "A_face", "D_F"} <= set(log[1]["losses"])
    assert {"A_face", "D_F"} <= set(log[2]["losses"])
    assert "face" in manifest["recipe"]["losses"] and manifest["recipe"]["progressive"].startswith("off")
    assert log[1]["losses"]["A_sty"] > 0  # the VGG style loss ran
    code, out_text, err = cli("run", "--method", "spt", "--dataset", "pose-synth", "--data-root", synth_root,
                              "--checkpoint", out, "--option", "width=4", "--limit", "4", "--metric", "mask-ssim")
    assert code == 0, err
    assert "mask-ssim" in out_text
    code, _, err = cli("run", "--method", "spt", "--dataset", "pose-synth", "--data-root", synth_root,
                       "--checkpoint", out, "--limit", "1", "--metric", "mask-ssim")
    assert code == 2 and "width" in err  # a checkpoint of another width is refused


def test_spt_trains_on_an_auxiliary_background_folder_from_the_cli(cli, tmp_path, isolated_env, synth_root):
    from PIL import Image

    missing = tmp_path / "val_256"
    args = ("train", "--method", "spt", "--dataset", "pose-synth", "--data-root", synth_root, "--steps", "3",
            "--batch-size", "2", *TINY, "--option", "vgg=none", "--option", f"aux_backgrounds={missing}")
    code, _, err = cli(*args, "--out", tmp_path / "missing")
    assert code == 2 and str(missing) in err and "does not exist" in err
    missing.mkdir()
    for i in range(3):  # Places2's layout: a flat folder of 256x256 jpgs
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
            missing / f"Places365_val_{i + 1:08d}.jpg")
    code, _, err = cli(*args, "--option", "face=false", "--out", tmp_path / "aux")
    assert code == 0, err
    manifest = json.loads((tmp_path / "aux" / "manifest.json").read_text())
    assert "3 auxiliary images" in manifest["recipe"]["losses"]["background"]
    assert manifest["recipe"]["losses"]["face"].startswith("off")
    log = [json.loads(line) for line in (tmp_path / "aux" / "train_log.jsonl").read_text().splitlines()]
    assert {"B_rec", "B_adv", "D_B"} <= set(log[1]["losses"]) and "A_face" not in log[1]["losses"]
