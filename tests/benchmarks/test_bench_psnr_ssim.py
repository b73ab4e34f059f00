"""PSNR + SSIM (MATLAB deraining convention) over 100 pairs of 481×321 RGB images: harness vs pyiqa.

Run with ``pytest tests/benchmarks/test_bench_psnr_ssim.py --benchmark-only``; both tests are in
the group ``psnr-ssim`` so the table shows them side by side. Both compute the same numbers
(pyiqa with ``test_y_channel=True, color_space='ycbcr'`` and data_range 255, i.e. the rounded Y);
the first test checks that before timing anything.
"""

from __future__ import annotations

import pytest
import torch
from skimage import data as skdata

from harness_plugins.metrics.psnr_ssim import psnr, ssim

PAIRS = 100
HEIGHT, WIDTH = 321, 481


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
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
def test_bench_harness(benchmark, images) -> None:
    prediction, target = images
    ours = harness_psnr_ssim(prediction[:4], target[:4])
    reference = pyiqa_psnr_ssim(prediction[:4], target[:4])
    torch.testing.assert_close(ours[0], reference[0].double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(ours[1], reference[1].double(), atol=3e-3, rtol=0)  # pyiqa clips cs at 0
    values = benchmark.pedantic(harness_psnr_ssim, args=images, rounds=3, iterations=1, warmup_rounds=1)
    assert values[0].shape == (PAIRS,)


@pytest.mark.benchmark(group="psnr-ssim")
def test_bench_pyiqa(benchmark, images) -> None:
    values = benchmark.pedantic(pyiqa_psnr_ssim, args=images, rounds=1, iterations=1)
    assert values[0].shape == (PAIRS,)
