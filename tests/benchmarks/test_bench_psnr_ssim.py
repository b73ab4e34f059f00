"""PSNR + SSIM (MATLAB deraining convention) over 100 pairs of 481×321 RGB images: harness vs
scikit-image and pyiqa.

Run with ``pytest tests/benchmarks/test_bench_psnr_ssim.py --benchmark-only -s``; all tests are in the
group ``psnr-ssim`` so the table shows them side by side. On a shared machine whose load drifts between
tests, `test_bench_interleaved_ratio` is the number to quote: it alternates the harness and the
scikit-image loop round by round and prints the per-round ratios (also in ``extra_info``). The scikit-image reference is a plain loop of
``structural_similarity`` (Wang's settings) over the uint8 Y images, computed before timing (so the
harness is timed with its quantisation and colour conversion, and with PSNR, the reference without);
pyiqa runs with ``test_y_channel=True, color_space='ycbcr'`` and data_range 255 (the rounded Y). The
harness test checks both give the same numbers before timing anything.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch
from harness_plugins.metrics.psnr_ssim import psnr, ssim, to_luma
from skimage import data as skdata
from skimage.metrics import structural_similarity

from harness.data import to_uint8

PAIRS = 100
HEIGHT, WIDTH = 321, 481


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images()


@pytest.fixture(scope="module")
def luma(images) -> list[tuple[np.ndarray, np.ndarray]]:
    return uint8_luma(*images)


def make_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of real photos (the target) and a streaked, noisy, unclipped copy (the prediction)."""
    photos = [
        skdata.astronaut(), skdata.coffee(), skdata.rocket(), skdata.immunohistochemistry(), skdata.hubble_deep_field()
    ]
    generator = torch.Generator().manual_seed(0)
    targets = []
    for index in range(PAIRS):
        photo = torch.from_numpy(photos[index % len(photos)]).permute(2, 0, 1)
        top = int(torch.randint(0, photo.shape[1] - HEIGHT + 1, (1,), generator=generator))
        left = int(torch.randint(0, photo.shape[2] - WIDTH + 1, (1,), generator=generator))
        targets.append(photo[:, top : top + HEIGHT, left : left + WIDTH].float() / 255)
    target = torch.stack(targets)
    rows, cols = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    streaks = ((cols + 3 * rows) % 23 < 2).float() * 0.3
    prediction = target + streaks + 0.02 * torch.randn(target.shape, generator=generator)
    return prediction, target


def uint8_luma(prediction: torch.Tensor, target: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """(prediction Y, target Y) as uint8 arrays: the saved PNG's MATLAB rgb2ycbcr luma (via the harness's
    exact `to_luma`, itself checked against scikit-image's rgb2ycbcr on all 2^24 colours)."""
    pairs = []
    for image_pred, image_target in zip(prediction, target):
        pred_y, target_y = (to_luma(torch.from_numpy(to_uint8(image)).permute(2, 0, 1)[None].int(), "y601", True)[0, 0].numpy()
                            .astype(np.uint8) for image in (image_pred, image_target))
        pairs.append((pred_y, target_y))
    return pairs


def skimage_ssim(luma: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    return [structural_similarity(target_y, pred_y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=255) for pred_y, target_y in luma]


def harness_psnr_ssim(prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return psnr(prediction, target), ssim(prediction, target)


def pyiqa_psnr_ssim(prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from pyiqa.archs.psnr_arch import psnr as pyiqa_psnr
    from pyiqa.archs.ssim_arch import SSIM as PyiqaSSIM

    saved = prediction.clamp(0, 1).mul(255).round().div(255)  # what the harness scores: the saved PNG
    return (
        pyiqa_psnr(saved, target, test_y_channel=True, color_space="ycbcr", data_range=255.0),
        PyiqaSSIM(test_y_channel=True, color_space="ycbcr")(saved, target),
    )


@pytest.mark.benchmark(group="psnr-ssim")
def test_bench_harness(benchmark, images, luma) -> None:
    prediction, target = images
    np.testing.assert_allclose(ssim(prediction, target).numpy(), skimage_ssim(luma), rtol=0, atol=1e-12)
    ours = harness_psnr_ssim(prediction[:4], target[:4])
    reference = pyiqa_psnr_ssim(prediction[:4], target[:4])
    torch.testing.assert_close(ours[0], reference[0].double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(ours[1], reference[1].double(), atol=3e-3, rtol=0)  # pyiqa clips cs at 0
    values = benchmark.pedantic(harness_psnr_ssim, args=images, rounds=3, iterations=1, warmup_rounds=1)
    assert values[0].shape == (PAIRS,)


@pytest.mark.benchmark(group="psnr-ssim")
def test_bench_skimage_ssim_loop(benchmark, luma) -> None:
    values = benchmark.pedantic(skimage_ssim, args=(luma,), rounds=3, iterations=1, warmup_rounds=1)
    assert len(values) == PAIRS


@pytest.mark.benchmark(group="psnr-ssim")
def test_bench_pyiqa(benchmark, images) -> None:
    values = benchmark.pedantic(pyiqa_psnr_ssim, args=images, rounds=1, iterations=1)
    assert values[0].shape == (PAIRS,)


@pytest.mark.benchmark(group="psnr-ssim")
def test_bench_interleaved_ratio(benchmark, images, luma) -> None:
    """Harness PSNR+SSIM and the scikit-image SSIM loop alternated within each round: each round's ratio
    compares the two under the same load."""
    times: dict[str, list[float]] = {"harness": [], "skimage": []}

    def both() -> None:
        for name, run in (("harness", lambda: harness_psnr_ssim(*images)), ("skimage", lambda: skimage_ssim(luma))):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    benchmark.pedantic(both, rounds=5, iterations=1, warmup_rounds=1)
    ratios = [reference / ours for ours, reference in zip(times["harness"][1:], times["skimage"][1:])]
    benchmark.extra_info.update(ratios=ratios, harness_s=times["harness"][1:], skimage_s=times["skimage"][1:])
    print(f"\nPSNR+SSIM interleaved: harness median {statistics.median(times['harness'][1:]):.3f} s, scikit-image "
          f"median {statistics.median(times['skimage'][1:]):.3f} s, per-round ratio median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
