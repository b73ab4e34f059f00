"""Inpainting methods: parameter counts derived from the architectures, NPS patch matching against a slow
reference, PatchGAN hole labels against receptive fields, the classical fills, hole-region PSNR."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from harness import DataError, UsageError
from harness_plugins.methods.inpainting.classical_inpainting import MeanFill, NavierStokes, PatchMatch, Telea
from harness_plugins.methods.inpainting.context_encoder import ContextEncoder
from harness_plugins.methods.inpainting.gh_bpt import GH, GHBPT, PatchDiscriminator, patch_labels
from harness_plugins.methods.inpainting.nps import NPS, VGG19_FILE, feature_patches, nearest_patches, texture_loss
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
    channel_wise_fc = 512 * 16 * 16 + 512 * 16  # each 4×4 map fully connected to itself, plus biases
    cross_channel = conv(512, 512, 1)  # the stride-1 convolution after it
    assert count(ContextEncoder().build()) == ENCODER + channel_wise_fc + cross_channel + DECODER == 5_981_507


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
    method = ContextEncoder(width=8)
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
    method = NPS(width=8)
    with pytest.raises(DataError, match=VGG19_FILE):
        method.load(None, "cpu")
