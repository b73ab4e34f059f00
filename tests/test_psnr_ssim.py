"""PSNR/SSIM conformance: each convention against the reference library or an independent
implementation of the reference script, on crops of real photos with a synthetic degradation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage import data as skdata
from skimage.color import rgb2gray, rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import harness
from harness import DataError, UsageError
from harness.data import to_uint8
from harness_plugins.metrics.psnr_ssim import (
    COLORS,
    CONVENTIONS,
    PSNR,
    SSIM,
    _luma_into,
    _scored,
    _scored_cpu,
    _scored_torch,
    _Scratch,
    _ssim_values,
    psnr,
    resolve_params,
    ssim,
    to_luma,
)

YIQ_GAP_DB = 20 * math.log10(255 / 219)  # BT.601 Y - 16 = (219/255) * YIQ Y  ⇒  1.3219 dB


def _degrade(clean: np.ndarray, seed: int, streak: float = 0.35, noise: float = 0.03) -> torch.Tensor:
    """Blur + bright rain-like streaks + noise, left unclipped like a raw model output."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.from_numpy(clean).permute(2, 0, 1).double() / 255
    blur = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16
    image = F.conv2d(F.pad(image[:, None], (2, 2, 2, 2), mode="replicate"), (blur[:, None] * blur)[None, None])[:, 0]
    height, width = image.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    streaks = ((cols + 2 * rows) % 17 < 2).double() * streak
    image = image + streaks + noise * torch.randn(image.shape, generator=generator, dtype=torch.float64)
    return image.float()


def _crops() -> list[np.ndarray]:
    """Three photos cropped to three different small sizes."""
    return [skdata.astronaut()[40:112, 180:276], skdata.coffee()[100:164, 200:280], skdata.chelsea()[60:140, 150:214]]


def _pairs(**degradation: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (_degrade(crop, seed, **degradation), torch.from_numpy(crop).permute(2, 0, 1).float() / 255)
        for seed, crop in enumerate(_crops())
    ]


@pytest.fixture(scope="module")
def pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(prediction, target) pairs with rain-like streaks: SSIM 0.24–0.41, PSNR 19–21 dB, like a rainy input."""
    return _pairs()


def _y_uint8(image: torch.Tensor) -> np.ndarray:
    """MATLAB uint8 Y of an image quantised as a saved PNG (to_luma is checked separately below)."""
    levels = torch.from_numpy(to_uint8(image)).permute(2, 0, 1)[None].double()
    return to_luma(levels, "y601", True)[0, 0].numpy().astype(np.uint8)


# -- the colour step ---------------------------------------------------------------------------------


def test_y601_matches_matlab_formula_for_every_8bit_colour() -> None:
    """All 2^24 colours: unrounded Y equals skimage's rgb2ycbcr; rounded Y is MATLAB's rounding of it."""
    levels = torch.arange(256, dtype=torch.float64)
    ties = 0
    for reds in levels.split(64):  # 4 chunks of 2^22 colours keep the memory small
        rgb = torch.stack(torch.meshgrid(reds, levels, levels, indexing="ij")).view(1, 3, 64 * 256, 256)
        reference = rgb2ycbcr(rgb[0].permute(1, 2, 0).numpy() / 255)[..., 0]
        np.testing.assert_allclose(to_luma(rgb, "y601", False)[0, 0].numpy(), reference, rtol=0, atol=1e-10)
        rounded = to_luma(rgb, "y601", True)[0, 0].numpy()
        for quantize_y in (True, False):  # the int32 path the metrics take gives the same values
            assert torch.equal(to_luma(rgb.int(), "y601", quantize_y), to_luma(rgb, "y601", quantize_y))
        integer_sum = (rgb[0].long() * torch.tensor([65481, 128553, 24966]).view(3, 1, 1)).sum(0).numpy()
        tie = (integer_sum % 255000) == 127500
        ties += int(tie.sum())
        np.testing.assert_array_equal(rounded[~tie], np.floor(reference[~tie] + 0.5))
        np.testing.assert_array_equal(rounded[tie], np.ceil(reference[tie]))  # exact ties round half up
    assert ties == 194
    white_black = torch.tensor([[255.0, 0.0]]).expand(3, 2)[None, :, None, :]
    assert to_luma(white_black, "y601", True).flatten().tolist() == [235.0, 16.0]


def test_quantize_round_is_png_rounding_and_truncate_floors() -> None:
    ties = torch.tensor([0.5, 1.5, 2.5, 100.5, 254.5, 254.7, 3.2]) / 255
    image = ties.view(1, 1, -1).expand(3, 1, -1).contiguous()
    png = torch.from_numpy(to_uint8(image)).permute(2, 0, 1).double()
    p = resolve_params("psnr", color="rgb")
    assert torch.equal(torch.as_tensor(_scored(image[None], p)[0]), png)
    truncated = _scored(image[None], {**p, "quantize": "truncate"})[0, 0, 0]
    assert truncated.tolist() == [0, 1, 2, 100, 254, 254, 3]


# -- MATLAB convention against scikit-image and pyiqa ----------------------------------------------


def test_matlab_ssim_equals_skimage_with_wang_settings(pairs) -> None:
    for pred, target in pairs:
        reference = structural_similarity(
            _y_uint8(target), _y_uint8(pred), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=255,
        )
        assert float(ssim(pred, target)) == pytest.approx(reference, abs=1e-9)


def test_matlab_psnr_equals_skimage_on_the_same_y(pairs) -> None:
    for pred, target in pairs:
        reference = peak_signal_noise_ratio(_y_uint8(target), _y_uint8(pred), data_range=255)
        assert float(psnr(pred, target)) == pytest.approx(reference, abs=1e-9)


def test_batch_equals_single_images(pairs) -> None:
    pred, target = pairs[0]
    batch_pred = torch.stack([pred, pred.flip(-1)])
    batch_target = torch.stack([target, target.flip(-1)])
    assert ssim(batch_pred, batch_target).shape == (2,)
    flipped = float(ssim(pred.flip(-1), target.flip(-1)))
    assert float(ssim(batch_pred, batch_target)[1]) == pytest.approx(flipped, abs=1e-12)
    assert float(psnr(batch_pred, batch_target)[0]) == float(psnr(pred, target))


def test_matlab_against_pyiqa_ycbcr(pairs) -> None:
    from pyiqa.archs.psnr_arch import psnr as pyiqa_psnr
    from pyiqa.archs.ssim_arch import SSIM as PyiqaSSIM

    pyiqa_ssim = PyiqaSSIM(test_y_channel=True, color_space="ycbcr")
    mild = _pairs(streak=0.0, noise=0.02)
    for (pred, target), (mild_pred, _) in zip(pairs, mild):
        # pyiqa scores the tensors it gets: give it the PNG-quantised predictions.
        x, x_mild = ((torch.from_numpy(to_uint8(p)).permute(2, 0, 1).float() / 255)[None] for p in (pred, mild_pred))
        y = target[None]
        # SSIM: pyiqa rounds Y when data_range is 255, like MATLAB, but clips the contrast-structure
        # term at 0 (relu), which Wang's SSIM_index does not: equal where that term stays positive
        # (mild degradation), otherwise pyiqa is higher (by ~2e-3 on a rainy-input-like pair).
        assert float(ssim(mild_pred, target)) == pytest.approx(float(pyiqa_ssim(x_mild, y)), abs=1e-5)
        assert float(pyiqa_ssim(x, y)) >= float(ssim(pred, target)) - 1e-6
        # PSNR: pyiqa does not round Y at data_range 1 (BasicSR-like) but does at data_range 255.
        assert float(psnr(pred, target, quantize_y=False)) == pytest.approx(
            float(pyiqa_psnr(x, y, test_y_channel=True, color_space="ycbcr", data_range=1.0)), abs=5e-5
        )
        assert float(psnr(pred, target)) == pytest.approx(
            float(pyiqa_psnr(x, y, test_y_channel=True, color_space="ycbcr", data_range=255.0)), abs=1e-5
        )


def test_yiq_trap_pyiqa_default_is_1_32_db_lower(pairs) -> None:
    """pyiqa's default Y is YIQ (full range): its PSNR is 20·log10(255/219) dB below the BT.601 one."""
    from pyiqa.archs.psnr_arch import psnr as pyiqa_psnr

    for pred, target in pairs:
        x = (torch.from_numpy(to_uint8(pred)).permute(2, 0, 1).float() / 255)[None]
        pyiqa_default = float(pyiqa_psnr(x, target[None], test_y_channel=True))
        assert float(psnr(pred, target, quantize_y=False)) - pyiqa_default == pytest.approx(YIQ_GAP_DB, abs=1e-4)
        # With MATLAB's rounded Y the gap moves by the rounding noise (~1e-3 dB at these ~20 dB).
        assert float(psnr(pred, target)) - pyiqa_default == pytest.approx(YIQ_GAP_DB, abs=0.01)
        assert float(psnr(pred, target, color="yiq", quantize_y=False)) == pytest.approx(pyiqa_default, abs=1e-4)


# -- the other named conventions ---------------------------------------------------------------------


def _reference_sdsen_ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Straightforward pytorch-ssim-style code: 2-D Gaussian, depthwise conv, zero pad 5, L = 1."""
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    window = (torch.outer(g, g) / torch.outer(g, g).sum()).expand(3, 1, 11, 11).contiguous()
    x, y = pred[None].double(), target[None].double()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, padding=5, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def test_sdsen_official_against_independent_implementation(pairs) -> None:
    for pred, target in pairs:
        assert pred.max() > 1 and pred.min() < 0  # the unclipped output is scored as is
        assert float(ssim(pred, target, convention="sdsen-official")) == pytest.approx(
            _reference_sdsen_ssim(pred, target), abs=1e-9
        )
        mse = float(((pred.double() - target.double()) ** 2).mean())
        expected = 10 * math.log10(1 / mse)
        assert float(psnr(pred, target, convention="sdsen-official")) == pytest.approx(expected, abs=1e-9)


def test_defgan_matches_skimage_before_and_after_the_11_tap_fix(pairs) -> None:
    for pred, target in pairs:
        gen, ref = to_uint8(pred), to_uint8(target)
        data_range = gen.max() - gen.min()
        # Modern scikit-image (truncate 3.5 → 11 taps) equals the convention with truncate=3.5.
        modern = structural_similarity(ref, gen, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       channel_axis=-1, data_range=data_range)
        assert float(ssim(pred, target, convention="defgan", truncate=3.5)) == pytest.approx(modern, abs=1e-9)
        # scikit-image < 0.15 (Def-GAN's): scipy's default truncate 4.0 (13 taps), mirror mode, crop 5.
        maps = []
        for channel in range(3):
            a, b = ref[..., channel].astype(np.float64), gen[..., channel].astype(np.float64)

            def blur(t: np.ndarray) -> np.ndarray:
                return ndimage.gaussian_filter(t, sigma=1.5)

            ux, uy = blur(a), blur(b)
            vx, vy, vxy = blur(a * a) - ux * ux, blur(b * b) - uy * uy, blur(a * b) - ux * uy
            c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
            full = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
            maps.append(full[5:-5, 5:-5].mean())
        assert float(ssim(pred, target, convention="defgan")) == pytest.approx(float(np.mean(maps)), abs=1e-9)
        assert abs(float(np.mean(maps)) - modern) > 1e-6  # the two scikit-image eras really differ


def test_skimage_default_convention(pairs) -> None:
    for pred, target in pairs:
        gen, ref = to_uint8(pred), to_uint8(target)
        assert float(ssim(pred, target, convention="skimage-default")) == pytest.approx(
            structural_similarity(ref, gen, channel_axis=-1), abs=1e-9
        )
        assert float(psnr(pred, target, convention="skimage-default")) == pytest.approx(
            peak_signal_noise_ratio(ref, gen), abs=1e-9
        )


def test_pg2_convention_is_compare_ssim_with_its_defaults(pairs) -> None:
    """PG²'s score.py: compare_ssim(G, x, multichannel=True), every other argument at its default (uniform 7×7,
    sample covariance, data range 255 from uint8), not Def-GAN's Gaussian with the prediction's range."""
    for pred, target in pairs:
        gen, ref = to_uint8(pred), to_uint8(target)
        expected = structural_similarity(gen, ref, channel_axis=-1, win_size=7, use_sample_covariance=True,
                                         gaussian_weights=False, data_range=255)
        assert float(ssim(pred, target, convention="pg2")) == pytest.approx(expected, abs=1e-9)
        assert abs(float(ssim(pred, target, convention="defgan")) - expected) > 1e-4
        assert float(psnr(pred, target, convention="pg2")) == pytest.approx(peak_signal_noise_ratio(ref, gen), abs=1e-9)


def test_edge_connect_convention(pairs) -> None:
    for pred, target in pairs:
        gen, ref = rgb2gray(to_uint8(pred) / 255.0), rgb2gray(to_uint8(target) / 255.0)
        assert float(ssim(pred, target, convention="edge-connect")) == pytest.approx(
            structural_similarity(ref, gen, data_range=1, win_size=51), abs=1e-9
        )
        assert float(psnr(pred, target, convention="edge-connect")) == pytest.approx(
            peak_signal_noise_ratio(ref, gen, data_range=1), abs=1e-9
        )


def test_reflect_same_equals_torchmetrics(pairs) -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    for pred, target in pairs:
        y_pred = torch.from_numpy(_y_uint8(pred)).double()[None, None]
        y_target = torch.from_numpy(_y_uint8(target)).double()[None, None]
        reference = structural_similarity_index_measure(y_pred, y_target, gaussian_kernel=True, sigma=1.5,
                                                        kernel_size=11, data_range=255.0)
        assert float(ssim(pred, target, padding="reflect-same")) == pytest.approx(float(reference), abs=1e-9)


def test_basicsr_convention_is_matlab_without_rounding_y(pairs) -> None:
    pred, target = pairs[1]
    assert float(psnr(pred, target, convention="basicsr")) == float(psnr(pred, target, quantize_y=False))
    assert abs(float(psnr(pred, target, convention="basicsr")) - float(psnr(pred, target))) < 0.1


# -- quantisation, crop, degenerate inputs --------------------------------------------------------------


def test_quantisation_rounding_versus_truncation(pairs) -> None:
    _, target = pairs[0]
    levels = torch.round(target * 255)
    pred = (levels.clamp(max=254) + 0.6) / 255  # 0.6 of a level above the target everywhere
    assert float(psnr(pred, target, color="rgb", quantize="truncate")) == math.inf  # floors back to the target
    exact = 10 * math.log10(255**2 / float(((levels.clamp(max=254) + 1 - levels) ** 2).mean()))
    assert float(psnr(pred, target, color="rgb", quantize="round")) == pytest.approx(exact, abs=1e-9)
    unquantised = 10 * math.log10(255**2 / float((((pred.double() - target.double()) * 255) ** 2).mean()))
    assert float(psnr(pred, target, color="rgb", quantize="none")) == pytest.approx(unquantised, abs=1e-9)


def test_crop_border_equals_scoring_the_cropped_images(pairs) -> None:
    pred, target = pairs[2]
    inner = (slice(None), slice(4, -4), slice(4, -4))
    assert float(psnr(pred, target, crop_border=4)) == float(psnr(pred[inner], target[inner]))
    assert float(ssim(pred, target, crop_border=4)) == pytest.approx(float(ssim(pred[inner], target[inner])), abs=1e-12)
    framed = target.clone()
    framed[:, :2] = 1 - framed[:, :2]  # differences only in the top 2 rows
    assert float(psnr(framed, target, crop_border=2)) == math.inf
    assert math.isfinite(float(psnr(framed, target)))


def test_identical_images_give_inf_psnr_and_ssim_one(pairs) -> None:
    _, target = pairs[0]
    for convention in CONVENTIONS:
        if CONVENTIONS[convention]["psnr"]:
            assert float(psnr(target, target, convention=convention)) == math.inf
        assert float(ssim(target, target, convention=convention)) == 1.0


def test_bad_inputs_raise_clear_errors() -> None:
    small = torch.rand(3, 8, 9)
    with pytest.raises(DataError, match=r"8×9 image .* smaller than the 11×11 SSIM window"):
        ssim(small, small)
    with pytest.raises(DataError, match=r"prediction shape \(3, 20, 20\) differs from target shape \(3, 20, 21\)"):
        psnr(torch.rand(3, 20, 20), torch.rand(3, 20, 21))
    with pytest.raises(DataError, match="RGB"):
        psnr(torch.rand(1, 20, 20), torch.rand(1, 20, 20))
    with pytest.raises(DataError, match="float tensor"):
        psnr(torch.zeros(3, 20, 20, dtype=torch.uint8), torch.zeros(3, 20, 20, dtype=torch.uint8))
    with pytest.raises(DataError, match="crop_border=10 leaves nothing"):
        psnr(torch.rand(3, 20, 30), torch.rand(3, 20, 30), crop_border=10)


def test_parameter_errors_and_overrides() -> None:
    with pytest.raises(UsageError, match="convention 'defgan' defines no PSNR"):
        resolve_params("psnr", "defgan")
    with pytest.raises(UsageError, match="convention must be one of"):
        resolve_params("ssim", "matlib")
    with pytest.raises(UsageError, match="'window' must be an odd integer"):
        resolve_params("ssim", window=10)
    with pytest.raises(UsageError, match="unknown parameter"):
        resolve_params("psnr", window=11)
    with pytest.raises(UsageError, match="data_range"):
        resolve_params("psnr", data_range="max")
    resolved = resolve_params("ssim", "sdsen-official", padding="valid", data_range="2")
    assert resolved["padding"] == "valid" and resolved["data_range"] == 2.0 and resolved["color"] == "rgb"
    assert resolve_params("psnr")["data_range"] == 255.0


# -- the metric classes ------------------------------------------------------------------------------


def test_metric_classes_update_compute_and_convention(pairs) -> None:
    samples = [{"id": f"im{i}", "rainy": pred, "clean": target} for i, (pred, target) in enumerate(pairs)]
    predictions = [pred for pred, _ in pairs] + [pairs[0][0].flip(-1)]
    samples.append({"id": "flipped", "rainy": None, "clean": pairs[0][1].flip(-1)})
    metric = harness.create_metric("psnr", target_field="clean")
    values = metric.update(predictions[:2], samples[:2]) + metric.update(predictions[2:], samples[2:])
    expected = [float(psnr(p, s["clean"])) for p, s in zip(predictions, samples)]
    assert values == pytest.approx(expected, abs=1e-12)
    assert metric.compute() == {"psnr": pytest.approx(sum(expected) / 4, abs=1e-12)}
    assert metric.details() == {"n": 4, "identical_pairs": 0}
    convention = metric.convention()
    assert convention["params"]["color"] == "y601" and convention["implementation"].endswith("/1")
    assert convention["overrides"] == [] and PSNR(crop_border=4).convention()["overrides"] == ["crop_border"]

    structural = SSIM(convention="defgan", target_field="clean")
    scores = structural.update(predictions, samples)
    assert scores[1] == pytest.approx(float(ssim(predictions[1], samples[1]["clean"], convention="defgan")), abs=1e-12)
    assert structural.convention()["kernel_taps"] == 13
    assert PSNR.higher_is_better and SSIM.needs_target and SSIM.outputs == frozenset({"image"})


def test_pooled_psnr_and_inf(pairs) -> None:
    metric = PSNR(aggregation="pooled-mse", color="rgb", quantize="none", target_field="image")
    inpainting = [{"id": str(i), "masked": None, "mask": None, "image": target} for i, (_, target) in enumerate(pairs)]
    metric.update([pred for pred, _ in pairs], inpainting)
    squared = torch.cat([((p.double() - t.double()) * 255).square().flatten() for p, t in pairs])
    assert metric.compute()["psnr"] == pytest.approx(10 * math.log10(255**2 / float(squared.mean())), abs=1e-9)

    same = PSNR(target_field="target")
    same.update([pairs[0][1]], [{"id": "a", "target": pairs[0][1]}])
    assert same.compute() == {"psnr": math.inf} and same.details()["identical_pairs"] == 1
    with pytest.raises(UsageError, match="pooled-mse"):
        PSNR(aggregation="pooled-mse", data_range="pred-range")


def test_metric_errors_name_the_sample(pairs) -> None:
    metric = SSIM(target_field="clean")
    with pytest.raises(DataError, match="sample 'x' has no ground-truth field"):
        metric.update([pairs[0][0]], [{"id": "x", "rainy": pairs[0][0]}])
    with pytest.raises(DataError, match="sample 'y'.*differs from target"):
        metric.update([pairs[0][0]], [{"id": "y", "clean": pairs[1][1]}])
    with pytest.raises(DataError, match="sample 'z'.*smaller than the 11×11"):
        metric.update([torch.rand(3, 6, 40)], [{"id": "z", "clean": torch.rand(3, 6, 40)}])
    with pytest.raises(UsageError, match="no samples"):
        metric.compute()
    with pytest.raises(UsageError, match="must be one of"):
        harness.create_metric("psnr", convention="defgan")


@pytest.mark.parametrize("convention", [name for name, entry in CONVENTIONS.items() if entry["ssim"]])
def test_cpu_and_device_paths_agree(pairs, convention) -> None:
    """The CPU path (numba kernels, chunked, threaded) and the device path (torch, used on CUDA) compute
    the same SSIM, here both on CPU tensors, every padding mode."""
    p = resolve_params("ssim", convention)
    pred = torch.stack([pairs[0][0], pairs[0][0].flip(-1)])
    target = torch.stack([pairs[0][1], pairs[0][1].flip(-2)])
    x, y = _scored(pred, p, _Scratch(), "pred"), _scored(target, p, _Scratch(), "target")
    assert isinstance(x, np.ndarray)
    on_cpu = _ssim_values(x, y, p)
    on_device = _ssim_values(torch.from_numpy(x.copy()), torch.from_numpy(y.copy()), p)
    torch.testing.assert_close(on_cpu, on_device, rtol=0, atol=1e-12)
    levels = torch.rand(2, 3, 5, 7, dtype=torch.float64) * 255
    for color in ("y601", "yiq", "gray709"):
        for quantize_y in (True, False):
            from_numpy = _luma_into(levels.numpy().copy(), color, quantize_y, None)
            assert torch.equal(torch.from_numpy(from_numpy), _luma_into(levels.clone(), color, quantize_y, None))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_scoring_is_bit_identical_to_the_torch_steps(dtype) -> None:
    """`_scored_cpu` (one compiled pass) against `_scored_torch` (the step-by-step tensor operations), for
    every colour, quantisation, Y rounding and scale, on values outside [0, 1], exact k/255 levels and
    ties of the ×255 product, and the 194 colours whose luma is exactly k + 1/2."""
    generator = torch.Generator().manual_seed(3)
    noise = torch.rand(2, 3, 9, 11, generator=generator, dtype=torch.float64) * 1.4 - 0.2
    levels = torch.arange(256, dtype=torch.float64).view(1, 1, 1, 256).expand(2, 3, 2, 256) / 255
    ties = ((torch.arange(256, dtype=torch.float64) + 0.5) / 255).view(1, 1, 1, 256).expand(2, 3, 1, 256)
    shuffled = torch.cat([levels, ties], dim=2)[:, torch.tensor([0, 1, 2])].clone()
    shuffled[:, 1] = shuffled[:, 1].roll(37, -1)
    shuffled[:, 2] = shuffled[:, 2].roll(101, -1)
    r, g, b = np.meshgrid(*(np.arange(256, dtype=np.int64),) * 3, indexing="ij")
    half = (65481 * r + 128553 * g + 24966 * b) % 255000 == 127500  # y601 luma exactly k + 1/2
    assert half.sum() == 194
    colours = torch.from_numpy(np.stack([r[half], g[half], b[half]]) / 255.0).view(1, 3, 1, -1)
    for images in (noise.to(dtype), shuffled.to(dtype), colours.to(dtype)):
        for color in COLORS:
            for quantize in ("round", "truncate", "none"):
                for quantize_y in (True, False):
                    for pixel_scale in (255.0, 1.0):
                        p = resolve_params("psnr", color=color, quantize=quantize, quantize_y=quantize_y,
                                           pixel_scale=pixel_scale)
                        compiled = _scored_cpu(images, p, _Scratch(), "")
                        stepwise = _scored_torch(images, p, _Scratch(), "")
                        assert torch.equal(torch.from_numpy(compiled), stepwise), p


def test_threads_do_not_change_values(pairs) -> None:
    pred = torch.stack([pairs[1][0], pairs[1][0].flip(-1)])
    target = torch.stack([pairs[1][1], pairs[1][1].flip(-1)])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = ssim(pred, target)
        torch.set_num_threads(2)
        threaded = ssim(pred, target)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(serial, threaded)


def test_psnr_inside_and_outside_a_mask_match_a_hand_computation(pairs) -> None:
    """``region='outside'`` (mask 0) and ``'hole'`` (mask 1): the MSE of the MATLAB uint8 Y over those
    pixels only, by the functional API and by the metric; the two regions partition the image's SSE."""
    pred, target = pairs[0]
    mask = torch.zeros(1, *pred.shape[-2:])
    mask[:, 10:40, 20:60] = 1
    keep = mask[0].bool().numpy()
    diff = _y_uint8(pred).astype(np.float64) - _y_uint8(target).astype(np.float64)
    by_hand = {region: 10 * math.log10(255**2 / np.mean(diff[pixels] ** 2))
               for region, pixels in (("hole", keep), ("outside", ~keep))}
    for region, expected in by_hand.items():
        assert float(psnr(pred, target, mask=mask, region=region)) == pytest.approx(expected, abs=1e-10)
        metric = PSNR(region=region, target_field="clean")
        assert metric.update([pred], [{"id": "a", "clean": target, "mask": mask}]) == pytest.approx([expected], abs=1e-10)
    inside, outside = (10 ** (-by_hand[region] / 10) * pixels.sum() for region, pixels in (("hole", keep), ("outside", ~keep)))
    assert (inside + outside) / keep.size == pytest.approx(10 ** (-float(psnr(pred, target)) / 10), rel=1e-12)
    with pytest.raises(DataError, match="outside the mask"):
        psnr(pred, target, mask=torch.ones_like(mask), region="outside")
    with pytest.raises(UsageError, match="'outside'.*'mask'"):
        PSNR(region="outside", target_field="clean").update([pred], [{"id": "b", "clean": target}])
