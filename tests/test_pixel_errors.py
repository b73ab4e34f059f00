"""`l1`/`l2`: every normalisation against numpy and torchmetrics on 8-bit images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness_plugins.metrics.pixel_errors import l1_error, l2_error
from torchmetrics.functional import mean_absolute_error, mean_squared_error

import harness
from harness import DataError, UsageError


def pair(seed: int = 0, h: int = 9, w: int = 11):
    """Two 8-bit images as a dataset would give them (k / 255), plus a hole mask."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = np.zeros((h, w), dtype=bool)
    hole[2:6, 3:9] = True
    as_tensor = lambda x: torch.from_numpy(x).permute(2, 0, 1).contiguous().float() / 255
    return a, b, hole, as_tensor(a), as_tensor(b), torch.from_numpy(hole)[None].float()


def test_mean_matches_torchmetrics():
    *_, pred, target, _ = pair()
    assert float(l1_error(pred, target)) == pytest.approx(float(mean_absolute_error(pred, target)), rel=1e-6)
    assert float(l2_error(pred, target)) == pytest.approx(float(mean_squared_error(pred, target)), rel=1e-6)


def test_sums_and_hole_region_match_numpy():
    a, b, hole, pred, target, mask = pair(1)
    diff = (a.astype(np.float64) - b.astype(np.float64)) / 255
    assert float(l1_error(pred, target, reduction="sum")) == pytest.approx(np.abs(diff).sum(), rel=1e-12)
    assert float(l2_error(pred, target, reduction="sum")) == pytest.approx((diff**2).sum(), rel=1e-12)
    assert float(l1_error(pred, target, reduction="sum-channel-mean")) == pytest.approx(
        np.abs(diff).mean(axis=2).sum(), rel=1e-12
    )
    in_hole = diff[hole]  # (pixels, 3)
    assert float(l1_error(pred, target, mask=mask, region="hole")) == pytest.approx(np.abs(in_hole).mean(), rel=1e-12)
    assert float(l2_error(pred, target, mask=mask, region="hole", reduction="sum")) == pytest.approx(
        (in_hole**2).sum(), rel=1e-12
    )
    assert float(l2_error(pred, target, mask=mask, region="hole", percent=True)) == pytest.approx(
        100 * (in_hole**2).mean(), rel=1e-12
    )
    outside = diff[~hole]  # (pixels, 3): what a dropped box leaves
    assert float(l1_error(pred, target, mask=mask, region="outside")) == pytest.approx(np.abs(outside).mean(), rel=1e-12)
    assert float(l2_error(pred, target, mask=mask, region="outside", reduction="sum")) == pytest.approx(
        (outside**2).sum(), rel=1e-12
    )
    sums = [float(l1_error(pred, target, mask=mask, region=region, reduction="sum")) for region in ("hole", "outside")]
    assert sum(sums) == pytest.approx(float(l1_error(pred, target, reduction="sum")), rel=1e-12)


def test_batched_quantisation_and_bad_input():
    *_, pred, target, _ = pair(2)
    batch = l1_error(torch.stack([pred, target]), torch.stack([target, target]))
    assert batch.shape == (2,) and float(batch[1]) == 0.0
    off_grid = pred + 0.4 / 255  # rounds back onto the 8-bit grid, unless quantisation is off
    assert float(l1_error(off_grid, pred)) == 0.0
    assert float(l1_error(off_grid, pred, quantize=False)) == pytest.approx(0.4 / 255, rel=1e-5)
    assert float(l1_error(pred + 2.0, pred)) == pytest.approx(float(l1_error(torch.ones_like(pred), pred)))
    with pytest.raises(UsageError, match="mask"):
        l1_error(pred, target, region="hole")
    with pytest.raises(DataError, match="shape"):
        l1_error(pred, target[:, :4])
    with pytest.raises(UsageError, match="reduction"):
        l1_error(pred, target, reduction="median")


def test_metric_classes_aggregate_per_image_values():
    *_, pred, target, mask = pair(3)
    *_, pred2, target2, _ = pair(4)
    samples = [
        {"id": "a", "image": target, "masked": pred, "mask": mask},
        {"id": "b", "image": target2, "masked": pred2, "mask": mask},
    ]
    metric = harness.create_metric("l1", region="hole", reduction="sum", target_field="image")
    values = metric.update([pred, pred2], samples)
    expected = [float(l1_error(p, t, mask=mask, region="hole", reduction="sum")) for p, t in ((pred, target), (pred2, target2))]
    assert values == pytest.approx(expected)
    assert metric.compute() == {"l1": pytest.approx(sum(expected) / 2)}
    assert metric.higher_is_better is False and metric.details() == {"n": 2}
    metric.reset()
    with pytest.raises(UsageError, match="no samples"):
        metric.compute()
    l2 = harness.create_metric("l2", percent="true", target_field="image")
    assert l2.update([pred], samples[:1]) == [pytest.approx(100 * float(l2_error(pred, target)))]
    assert l2.convention()["error"] == "squared"


def test_target_field_resolution_and_sample_errors():
    *_, pred, target, mask = pair(5)
    metric = harness.create_metric("l1")
    with pytest.raises(UsageError, match="target_field"):  # nothing guessed: it must be told
        metric.target({"id": "x", "clean": target, "image": pred})
    metric = harness.create_metric("l1", target_field="clean")
    assert metric.target({"id": "x", "clean": target, "image": pred}) is target
    metric.target_field = "image"  # as the runner binds it for an inpainting dataset
    assert metric.target({"id": "x", "clean": pred, "image": target}) is target
    with pytest.raises(DataError, match="'x'.*no ground-truth field"):
        metric.target({"id": "x", "reference": target})
    hole = harness.create_metric("l1", region="hole", target_field="clean")
    with pytest.raises(UsageError, match="'d'.*has none"):
        hole.update([pred], [{"id": "d", "clean": target}])
    with pytest.raises(DataError, match="empty hole"):
        hole.update([pred], [{"id": "e", "clean": target, "mask": torch.zeros_like(mask)}])
    outside = harness.create_metric("l1", region="outside", target_field="clean")
    with pytest.raises(UsageError, match="'outside'.*'d'.*has none"):
        outside.update([pred], [{"id": "d", "clean": target}])
    with pytest.raises(DataError, match="'f'.*whole image"):
        outside.update([pred], [{"id": "f", "clean": target, "mask": torch.ones_like(mask)}])
    assert outside.update([pred], [{"id": "g", "clean": target, "mask": torch.zeros_like(mask)}]) == [
        float(l1_error(pred, target))]
