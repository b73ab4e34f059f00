"""Inpainting methods: parameter counts derived from the architectures (Context Encoder's against the official
train.lua count), Context Encoder's initialisation, mask conventions and training crops, NPS's two objectives
(patch matching and the CNNMRF gradient against slow references of the official Lua), PatchGAN hole labels
against receptive fields, the classical fills, hole-region PSNR."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from harness import DataError, UsageError
from harness_plugins.methods.inpainting.classical_inpainting import MeanFill, NavierStokes, PatchMatch, Telea
from harness_plugins.methods.inpainting.context_encoder import ContextEncoder, official_crop
from harness_plugins.methods.inpainting.gh_bpt import GH, GHBPT, PatchDiscriminator, patch_labels
from harness_plugins.methods.inpainting.nps import (
    NPS,
    VGG19_CAFFE_FILE,
    VGG19_FILE,
    VGG_LAYERS,
    MRFTerm,
    caffe_preprocess,
    feature_patches,
    most_correlated_patches,
    nearest_patches,
    official_total_variation,
    texture_loss,
)
from harness_plugins.metrics.psnr_ssim import psnr
from harness_plugins.shared.inpainting_masks import MaskGenerator, center_mask


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Encoder 3→64→64→128→256→512 (4×4, stride 2; BN and no bias after the first), decoder 512→256→128→64→3.
ENCODER = conv(3, 64, 4) + sum(conv(a, b, 4, False) + bn(b) for a, b in ((64, 64), (64, 128), (128, 256), (256, 512)))
DECODER = sum(conv(a, b, 4, False) + bn(b) for a, b in ((512, 256), (256, 128), (128, 64))) + conv(64, 3, 4)


def test_context_encoder_parameter_count():
    # official train.lua with nBottleneck=4000: every Torch convolution has a bias (held at zero, still counted)
    official_encoder = conv(3, 64, 4) + sum(conv(a, b, 4) + bn(b) for a, b in ((64, 64), (64, 128), (128, 256), (256, 512)))
    official_fc = conv(512, 4000, 4) + bn(4000) + conv(4000, 512, 4) + bn(512)
    official_decoder = sum(conv(a, b, 4) + bn(b) for a, b in ((512, 256), (256, 128), (128, 64))) + conv(64, 3, 4)
    assert count(ContextEncoder().build()) == official_encoder + official_fc + official_decoder == 71_130_531
    channel_wise_fc = 512 * 16 * 16 + 512 * 16  # each 4×4 map fully connected to itself, plus biases
    cross_channel = conv(512, 512, 1)  # the stride-1 convolution after it
    channel_wise = ContextEncoder(bottleneck="channel-wise").build()
    assert count(channel_wise) == ENCODER + channel_wise_fc + cross_channel + DECODER == 5_981_507


def test_harness_info_prints_the_official_context_encoder_count(cli):
    code, out, err = cli("info", "context-encoder")
    assert code == 0, err
    assert "parameters: 71,130,531" in out


def test_context_encoder_uses_dcgan_initialisation_with_biases_held_at_zero():
    torch.manual_seed(0)
    net = ContextEncoder(width=32, bottleneck_size=1000).build()
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert abs(float(weights.mean())) < 1e-3 and float(weights.std()) == pytest.approx(0.02, rel=0.02)
    assert all(m.bias is not None and not m.bias.requires_grad and not bool(m.bias.any()) for m in convs)
    norms = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert float(norms.mean()) == pytest.approx(1.0, abs=2e-3) and float(norms.std()) == pytest.approx(0.02, rel=0.05)


class _Recorder(torch.nn.Module):
    """Stands in for the generator: remembers its input and predicts a constant 64×64 centre."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.clone()
        return torch.full((x.shape[0], 3, 64, 64), 0.5)


def test_official_mask_convention_hides_and_pastes_only_the_inner_56():
    method = ContextEncoder(width=8)
    method.load(None, "cpu")
    method._model = _Recorder()
    image = torch.rand(3, 128, 128)
    with pytest.raises(UsageError, match="hole=0.4375"):
        method.predict([_sample(image, center_mask(128, 128, 0.5))])
    inner = center_mask(128, 128, 0.4375)
    assert inner.sum() == 56 * 56 and inner[36, 36] and not inner[35, 36]
    [out] = method.predict([_sample(image, inner)])
    seen = (method.model.seen[0] + 1) / 2
    assert torch.allclose(seen[:, 32:36, 32:96], image[:, 32:36, 32:96], atol=1e-6)  # the band is context
    assert torch.allclose(seen[:, 36, 36], torch.tensor([117.0, 104.0, 123.0]) / 255, atol=1e-6)  # the hole: mean fill
    assert torch.equal(out[:, 32:36, 32:96], image[:, 32:36, 32:96])  # the band is not pasted over
    assert torch.allclose(out[:, 36:92, 36:92], torch.tensor(0.75))

    full = ContextEncoder(width=8, mask_convention="full")
    full.load(None, "cpu")
    full._model = _Recorder()
    [out] = full.predict([_sample(image, center_mask(128, 128, 0.5))])
    assert torch.allclose(((full.model.seen[0] + 1) / 2)[:, 32, 32], torch.tensor([117.0, 104.0, 123.0]) / 255, atol=1e-6)
    assert torch.allclose(out[:, 32:96, 32:96], torch.tensor(0.75))


def test_official_training_crop_rescales_the_shorter_side_then_crops_128(tmp_path):
    from PIL import Image

    y, x = np.mgrid[0:200, 0:300]
    array = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(array).save(path)
    crop = official_crop(path, 350, np.random.default_rng(3))
    assert crop.shape == (3, 128, 128)
    resized = torch.nn.functional.interpolate(torch.from_numpy(array).permute(2, 0, 1).float()[None] / 255, size=(350, 525),
                                              mode="bilinear", align_corners=False)[0]
    rng = np.random.default_rng(3)
    top, left = int(rng.integers(0, 350 - 128 + 1)), int(rng.integers(0, 525 - 128 + 1))
    expected = resized[:, top : top + 128, left : left + 128]
    expected = expected.flip(-1) if rng.random() < 0.5 else expected
    assert torch.allclose(crop, expected, atol=1e-6)
    with pytest.raises(DataError, match="smaller than the 128x128"):
        official_crop(path, 100, np.random.default_rng(0))


def test_nps_content_network_parameter_count():
    fully_connected = conv(512, 4000, 4, False) + bn(4000) + conv(4000, 512, 4, False) + bn(512)
    assert count(NPS().build()) == ENCODER + fully_connected + DECODER == 71_124_611


def test_generator_head_and_bpt_parameter_counts():
    front = conv(4, 64, 3, False) + bn(64) + conv(64, 128, 3, False) + bn(128) + conv(128, 256, 3, False) + bn(256)
    block = 2 * (conv(256, 256, 3, False) + bn(256))
    back = conv(256, 128, 3, False) + bn(128) + conv(128, 64, 3, False) + bn(64) + conv(64, 3, 3)
    assert count(GH().build()) == front + 9 * block + back == 11_368_643
    assert count(GHBPT().build()) == front + 12 * block + back


def slow_nearest(targets: torch.Tensor, sources: torch.Tensor) -> list[int]:
    """Obviously correct: every pair's squared distance in plain Python, first minimum wins."""
    out = []
    for t in targets.tolist():
        distances = [sum((a - b) ** 2 for a, b in zip(t, s)) for s in sources.tolist()]
        out.append(distances.index(min(distances)))
    return out


def test_nps_patch_matching_matches_the_slow_reference():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(4, 9, 10, generator=generator, dtype=torch.float64)
    patches = feature_patches(features)
    assert patches.shape == (7 * 8, 4 * 9)
    assert torch.equal(patches[8 + 2], features[:, 1:4, 2:5].reshape(-1))  # row-major positions, C×3×3 order
    targets, sources = patches[:20], patches[30:]
    assert nearest_patches(targets, sources).tolist() == slow_nearest(targets, sources)
    assert nearest_patches(targets, sources, chunk=3).tolist() == slow_nearest(targets, sources)
    duplicated = torch.cat([sources[:5], sources[:5]])
    assert nearest_patches(sources[:5], duplicated).tolist() == [0, 1, 2, 3, 4]


def test_texture_loss_is_zero_when_the_hole_copies_its_nearest_patch():
    features = torch.zeros(2, 8, 8)
    features[:, :, ::2] = 1.0  # vertical stripes: every patch has an exact twin outside the hole
    hole = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    hole[..., 3:5, 3:5] = True
    assert float(texture_loss(features, hole, stride=1)) == 0.0
    features[:, 4, 4] = 5.0
    assert float(texture_loss(features, hole, stride=1)) > 0.0


def test_patch_labels_mark_exactly_the_receptive_fields_touching_the_hole():
    discriminator = PatchDiscriminator(in_channels=1, ndf=2).eval()
    for module in discriminator.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.constant_(module.weight, 1.0)
    size = 48
    hole = torch.zeros(1, 1, size, size)
    hole[..., 20:26, 30:34] = 1
    image = torch.rand(1, 0, size, size)
    x = torch.rand(1, 1, size, size, requires_grad=True)
    out = discriminator(x, image)
    labels = patch_labels(hole)
    assert labels.shape == out.shape
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            (grad,) = torch.autograd.grad(out[0, 0, i, j], x, retain_graph=True)
            touches = bool(((grad != 0) & (hole > 0)).any())
            assert labels[0, 0, i, j].item() == (0.0 if touches else 1.0)


def _sample(image: torch.Tensor, mask: np.ndarray) -> dict:
    m = torch.from_numpy(mask).float()[None]
    return {"id": "s", "masked": image * (1 - m), "mask": m}


def test_mean_fill_and_opencv_fills():
    image = torch.rand(3, 32, 32)
    mask = center_mask(32, 32, 0.5)
    sample = _sample(image, mask)
    [filled] = MeanFill().predict([sample])
    known = image[:, ~torch.from_numpy(mask)]
    assert torch.allclose(filled[:, 16, 16], known.mean(dim=1).float(), atol=1e-6)
    assert torch.equal(filled[:, 0, 0], image[:, 0, 0])
    levels = (sample["masked"].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy().copy()
    for method, flag in ((Telea(radius=5), cv2.INPAINT_TELEA), (NavierStokes(radius=5), cv2.INPAINT_NS)):
        [out] = method.predict([sample])
        direct = cv2.inpaint(levels, mask.astype(np.uint8) * 255, 5.0, flag)
        assert np.array_equal((out * 255).round().byte().permute(1, 2, 0).numpy()[mask], direct[mask])


def test_patchmatch_continues_a_periodic_texture():
    y, x = np.mgrid[0:64, 0:64]
    stripes = torch.from_numpy(np.stack([(x // 4) % 2, (y // 6) % 2, ((x + y) // 5) % 2]).astype(np.float32))
    mask = center_mask(64, 64, 0.375)
    sample = _sample(stripes, mask)
    keep = torch.from_numpy(mask)[None]
    scores, outputs = {}, {}
    for method in (PatchMatch(), Telea(), MeanFill()):
        [outputs[method.name]] = method.predict([sample])
        scores[method.name] = float(psnr(outputs[method.name], stripes, convention="matlab", color="rgb", mask=keep.float()))
    assert scores["patchmatch"] > scores["telea"] + 3 and scores["patchmatch"] > scores["mean-fill"] + 3
    assert torch.equal(PatchMatch().predict([sample])[0], outputs["patchmatch"])  # seeded: reproducible


def test_centre_hole_networks_refuse_other_holes_and_upsample_larger_images():
    method = ContextEncoder(width=8, mask_convention="full")
    method.load(None, "cpu")
    image = torch.rand(3, 128, 128)
    random = MaskGenerator("random", 0).mask("x", 128, 128)
    with pytest.raises(UsageError, match="centred square"):
        method.predict([_sample(image, random)])
    big = torch.rand(3, 256, 256)
    [out] = method.predict([_sample(big, center_mask(256, 256, 0.5))])
    assert out.shape == (3, 256, 256) and torch.equal(out[:, :64], big[:, :64])


def test_hole_psnr_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (3, 40, 40)).astype(np.float64) / 255
    pred = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
    pred = np.round(pred * 255) / 255
    mask = center_mask(40, 40, 0.5)
    mse = ((pred - target) ** 2)[:, mask].mean()
    value = psnr(torch.from_numpy(pred).float(), torch.from_numpy(target).float(), convention="matlab", color="rgb",
                 mask=torch.from_numpy(mask).float()[None])
    assert float(value) == pytest.approx(10 * np.log10(1 / mse), abs=1e-9)
    with pytest.raises(DataError, match="non-empty"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 8), color="rgb", mask=torch.zeros(1, 8, 8))


def test_nps_needs_the_vgg_weights_file():
    with pytest.raises(DataError, match=VGG19_CAFFE_FILE):  # the official objective's Caffe VGG-19 by default
        NPS(width=8).load(None, "cpu")
    with pytest.raises(DataError, match=VGG19_FILE):
        NPS(width=8, preprocess="torchvision").load(None, "cpu")


def test_nps_objectives_carry_their_own_weights():
    assert NPS().weights() == (20.0, 1e-4, 1e-4)
    assert NPS(objective="thesis").weights() == (1.0, 5e-6, 5e-6)
    assert NPS(objective="thesis", tv_weight=1e-3).weights() == (1.0, 5e-6, 1e-3)


def test_vgg_layer_indices_name_torchvision_vgg19_layers():
    import torchvision

    with torch.device("meta"):  # the layer list only, no 143M weights
        features = torchvision.models.vgg19().features
    convs = [i for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]
    # relu3_1 follows the 5th convolution, relu4_1 the 9th and relu4_2 the 10th
    assert VGG_LAYERS == {"relu3_1": convs[4] + 1, "relu4_1": convs[8] + 1, "relu4_2": convs[9] + 1}


def test_caffe_preprocessing_is_bgr_255_minus_the_caffe_mean():
    rgb = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    assert torch.allclose(caffe_preprocess(rgb).flatten(), torch.tensor([0.6 * 255 - 103.939, 0.4 * 255 - 116.779,
                                                                          0.2 * 255 - 123.68]))


def slow_correlated(targets: torch.Tensor, sources: torch.Tensor) -> list[int]:
    out = []
    for t in targets.tolist():
        scores = [sum(a * b for a, b in zip(t, s)) / (sum(a * a for a in t) ** 0.5 * sum(b * b for b in s) ** 0.5)
                  for s in sources.tolist()]
        out.append(scores.index(max(scores)))
    return out


def test_normalised_cross_correlation_matching_matches_the_slow_reference():
    generator = torch.Generator().manual_seed(1)
    patches = torch.rand(40, 12, generator=generator, dtype=torch.float64)
    assert most_correlated_patches(patches[:15], patches[15:]).tolist() == slow_correlated(patches[:15], patches[15:])
    scaled = torch.cat([patches[:3] * 10.0, patches[3:6]])  # scale does not change a correlation
    assert most_correlated_patches(patches[3:6], scaled).tolist() == [3, 4, 5]


def test_mrf_term_gradient_is_the_official_gradto():
    """mylib/mrf.lua: every stride-2 synthesis patch adds (matched − own) to gradTO, each position is divided by
    the number of grid patches covering it, and the gradient is −strength·gradTO (strength 1 here)."""
    generator = torch.Generator().manual_seed(2)
    features = torch.rand(3, 12, 12, generator=generator, dtype=torch.float64)
    hole = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    hole[..., 4:8, 5:9] = True
    term = MRFTerm(features, hole, stride=2)
    x = features.clone().requires_grad_(True)
    term.loss(x).backward()

    size, grid = 3, range(0, 12 - 3 + 1, 2)
    positions = [(i, j) for i in grid for j in grid]
    touches = {(i, j): bool(hole[0, 0, i : i + size, j : j + size].any()) for i, j in positions}
    sources = [features[:, i : i + size, j : j + size].reshape(-1) for (i, j) in positions if not touches[(i, j)]]
    grad_to, confident = torch.zeros_like(features), torch.zeros(12, 12, dtype=torch.float64)
    for i, j in positions:
        confident[i : i + size, j : j + size] += 1
        if touches[(i, j)]:
            own = features[:, i : i + size, j : j + size].reshape(-1)
            scores = [float(own @ s / (own.norm() * s.norm())) for s in sources]
            grad_to[:, i : i + size, j : j + size] += (sources[scores.index(max(scores))] - own).view(3, size, size)
    expected = -grad_to / confident.clamp_min(1)
    assert torch.allclose(x.grad, expected, atol=1e-12)


def test_official_total_variation_gradient_is_tv_lua():
    x = torch.rand(3, 6, 7, dtype=torch.float64, requires_grad=True)
    official_total_variation(x).backward()
    data = x.detach()
    x_diff = data[:, :-1, :-1] - data[:, :-1, 1:]
    y_diff = data[:, :-1, :-1] - data[:, 1:, :-1]
    expected = torch.zeros_like(data)
    expected[:, :-1, :-1] += x_diff + y_diff
    expected[:, :-1, 1:] -= x_diff
    expected[:, 1:, :-1] -= y_diff
    assert torch.allclose(x.grad, expected)


def test_gh_ppl_crop_size_is_an_option():
    assert GHBPT().config["ppl_size"] == 64
    with pytest.raises(UsageError, match="ppl_size"):
        GHBPT(ppl_size=16)


def _random_vgg() -> torch.nn.Sequential:
    from harness_plugins.methods.inpainting.nps import _VGG_CONFIG

    layers, channels = [], 3
    for item in _VGG_CONFIG:
        if item == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(channels, int(item), 3, padding=1), torch.nn.ReLU()]
            channels = int(item)
    return torch.nn.Sequential(*layers).eval().requires_grad_(False)


def test_official_content_term_pulls_relu4_2_towards_the_content_image():
    """Official: E_c is on relu4_2 features of the content image, so with the other terms off the hole moves
    from its start towards it; thesis: E_c is the pixel distance to the start, so nothing moves."""
    torch.manual_seed(0)
    known, content = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)
    hole = torch.zeros(1, 1, 128, 128, dtype=torch.bool)
    hole[..., 32:96, 32:96] = True
    start = torch.where(hole, torch.full_like(known, 0.5), known)
    results = {}
    for objective in ("official", "thesis"):
        method = NPS(objective=objective, texture_weight=0.0, tv_weight=0.0, iterations=2)
        method._vgg, method._preprocess = _random_vgg(), caffe_preprocess
        results[objective] = method.synthesize(known, hole, start, content)
    assert torch.equal(results["thesis"], start)

    def distance(image: torch.Tensor) -> float:
        ours, theirs = (method._features(caffe_preprocess(x), ("relu4_2",))["relu4_2"] for x in (image, content))
        return float((ours - theirs).square().mean())

    assert not torch.equal(results["official"], start)
    assert torch.equal(results["official"][..., ~hole[0, 0]], known[..., ~hole[0, 0]])
    assert distance(results["official"]) < distance(start)
