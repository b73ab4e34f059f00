"""LOMO against hand-checked small cases, and its published dimension; HOG as the reference library computes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.feature import hog as skimage_hog

from harness_plugins.methods.reid.handcrafted_reid import (
    HOG,
    LOMO,
    _pool_average,
    lomo,
    max_occurrence,
    quantized_hsv,
    retinex,
    siltp,
)


def test_siltp_codes_by_hand():
    gray = np.array([[0.5, 0.5, 0.5], [0.2, 0.5, 1.0], [0.5, 0.1, 0.5]])
    codes = siltp(gray, radius=1, tau=0.3)
    # centre 0.5, range [0.35, 0.65]: right 1.0 above (2·1), up 0.5 inside (0·3), left 0.2 below (1·9), down 0.1 below (1·27)
    assert codes[1, 1] == 2 + 0 + 9 + 27
    # corner (0, 0): right 0.5 and the replicated up/left neighbours are inside; down 0.2 is below → 1·27
    assert codes[0, 0] == 27
    # (2, 1) = 0.1, range [0.07, 0.13]: right 0.5 above (2), up 0.5 above (2·3), left 0.5 above (2·9), down replicated 0.1 inside
    assert codes[2, 1] == 2 + 6 + 18
    # scale invariance: multiplying the image by a constant leaves the codes unchanged
    assert np.array_equal(siltp(gray * 3.7, 1, 0.3), codes)


def test_max_occurrence_by_hand():
    codes = np.zeros((15, 15), dtype=np.int64)
    codes[:, 5:10] = 1
    codes[:, 10:] = 2
    codes[10:, :] = 2  # the lower window row sees more 2s
    histogram = max_occurrence(codes, bins=3)
    # windows: rows start at 0 and 5, columns at 0 and 5 (10×10, stride 5)
    # top row: left window 50×0 + 50×1, right window 50×1 + 50×2 → max per bin (50, 50, 50)
    # bottom row (rows 5..14, rows 10+ are 2): left 25×0 + 25×1 + 50×2, right 25×1 + 75×2 → (25, 25, 75)
    assert histogram.tolist() == [[50, 50, 50], [25, 25, 75]]


def test_quantisation_pooling_and_retinex_invariance():
    rgb = np.array([[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    assert quantized_hsv(rgb).tolist() == [[[0, 7, 7], [0, 0, 7]]]
    image = np.arange(5 * 3 * 2).reshape(5, 3, 2)
    pooled = _pool_average(image, floor=True)
    assert pooled.shape == (2, 1, 2) and pooled[0, 0, 0] == np.floor((0 + 2 + 6 + 8) / 4)
    # Retinex removes a uniform illumination gain (up to the +1 offset and the 1 % clipping)
    rng = np.random.default_rng(0)
    scene = rng.uniform(60, 200, (32, 16, 3))
    assert np.abs(retinex(scene) - retinex(scene * 0.5)).mean() < 0.02
    assert retinex(scene).min() >= 0.0 and retinex(scene).max() <= 1.0


def test_lomo_has_the_published_dimension_and_normalised_parts():
    image = np.random.default_rng(1).integers(0, 256, (128, 48, 3)).astype(np.float64)
    feature = lomo(image)
    assert feature.shape == ((8 * 8 * 8 + 2 * 81) * (24 + 11 + 5),) == (26960,)
    colour, texture3, texture5 = np.split(feature, [512 * 40, 512 * 40 + 81 * 40])
    for part in (colour, texture3, texture5):
        assert np.linalg.norm(part) == pytest.approx(1.0)
    assert (feature >= 0).all()
    # the method resizes any input to 128×48 and returns the same vector as the function
    out = LOMO().predict([{"id": "x", "image": torch.from_numpy(image / 255.0).permute(2, 0, 1).float(), "modality": "visible", "camid": 1}])[0]
    assert torch.allclose(out, torch.from_numpy(feature).float(), atol=1e-6)


def test_hog_equals_skimage():
    image = torch.rand(3, 128, 64)
    ours = HOG().predict([{"id": "x", "image": image, "modality": "visible", "camid": 1}])[0]
    expected = skimage_hog(
        (image * 255).round().permute(1, 2, 0).numpy() / 255.0, orientations=9, pixels_per_cell=(8, 8),
        cells_per_block=(2, 2), block_norm="L2-Hys", channel_axis=-1,
    )
    assert ours.shape == (3780,) and np.allclose(ours.numpy(), expected, atol=1e-6)
