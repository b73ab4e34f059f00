"""mask-SSIM (Def-GAN protocol) over 100 Market-size (128×64) pairs: harness `mask_ssim` vs the reference
pipeline (Def-GAN's: the body mask, then scikit-image `structural_similarity` on the masked uint8 arrays).

Run with ``pytest tests/benchmarks/test_bench_pose_masked.py --benchmark-only -s``; all tests are in the
group ``mask-ssim``; `test_bench_mask_ssim_interleaved_ratio` alternates both round by round and prints
the per-round ratios (the number to quote on a machine whose load drifts). The reference runs with scikit-image's current Gaussian truncation (3.5 σ), so the
harness is timed with ``truncate=3.5`` too; the first test checks both give the same values.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from harness.data import to_tensor
from harness_plugins.metrics.pose_masked import mask_ssim
from harness_plugins.shared.body_mask import body_mask

PAIRS = 100
H, W = 128, 64


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(generated uint8, target uint8, keypoints): a smooth scene plus noise, a jittered standing pose."""
    rng = np.random.default_rng(0)
    base = np.array([[14, 33], [26, 32], [26, 22], [44, 20], [60, 19], [26, 42], [44, 44], [60, 45], [64, 25],
                     [88, 25], [112, 25], [64, 39], [88, 39], [112, 40], [12, 30], [12, 36], [14, 27], [14, 39]])
    out = []
    for _ in range(PAIRS):
        coarse = torch.from_numpy(rng.random((1, 3, 8, 4), dtype=np.float32))
        scene = torch.nn.functional.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=False)[0]
        scene = scene.permute(1, 2, 0).numpy()
        generated, target = ((np.clip(scene + rng.normal(0, 0.1, scene.shape), 0, 1) * 255).round().astype(np.uint8)
                             for _ in range(2))
        points = np.clip(base + rng.integers(-4, 5, base.shape), 0, [H - 1, W - 1]).astype(np.float64)
        out.append((generated, target, points))
    return out


def _harness(pairs) -> list[float]:
    return [float(mask_ssim(to_tensor(g), to_tensor(t), p, truncate=3.5)) for g, t, p in pairs]


def _reference(pairs) -> list[float]:
    values = []
    for generated, target, points in pairs:
        mask = body_mask(points, (H, W)).numpy()[..., None]
        gen, ref = generated * mask, target * mask
        values.append(structural_similarity(ref, gen, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                            channel_axis=-1, data_range=gen.max() - gen.min()))
    return values


def test_bench_mask_ssim_harness(benchmark, pairs) -> None:
    assert _harness(pairs[:10]) == pytest.approx(_reference(pairs[:10]), abs=1e-10)
    benchmark.group = "mask-ssim"
    benchmark.pedantic(_harness, args=(pairs,), rounds=5, warmup_rounds=1)


def test_bench_mask_ssim_skimage_reference(benchmark, pairs) -> None:
    benchmark.group = "mask-ssim"
    benchmark.pedantic(_reference, args=(pairs,), rounds=5, warmup_rounds=1)


def test_bench_mask_ssim_interleaved_ratio(benchmark, pairs) -> None:
    times: dict[str, list[float]] = {"harness": [], "reference": []}

    def both() -> None:
        for name, run in (("harness", _harness), ("reference", _reference)):
            start = time.perf_counter()
            run(pairs)
            times[name].append(time.perf_counter() - start)

    benchmark.group = "mask-ssim"
    benchmark.pedantic(both, rounds=7, warmup_rounds=1)
    ratios = [reference / ours for ours, reference in zip(times["harness"][1:], times["reference"][1:])]
    benchmark.extra_info.update(ratios=ratios, harness_s=times["harness"][1:], reference_s=times["reference"][1:])
    print(f"\nmask-SSIM interleaved: harness median {statistics.median(times['harness'][1:]):.3f} s, reference "
          f"median {statistics.median(times['reference'][1:]):.3f} s, per-round ratio median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
