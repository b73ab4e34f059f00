"""`psnr` and `ssim`: PSNR and SSIM that reproduce the reference scripts papers actually used.

The same pair of images gives PSNR values 1–2 dB apart depending on colour space, quantisation,
peak and aggregation, and SSIM values that differ in the third digit depending on the window,
padding and covariance. So every one of those choices is an explicit, recorded parameter, and a
named ``convention`` sets them all at once (explicit parameters override it):

* ``matlab`` (default): the deraining reference, ``evaluate_PSNR_SSIM.m`` with Wang's
  ``SSIM_index`` v1.0. Predictions quantised to 8 bits as a saved PNG is, MATLAB ``rgb2ycbcr``
  luma rounded to uint8 (16..235), peak 255, Gaussian 11×11 σ 1.5, K = (0.01, 0.03), 'valid'
  filtering, population statistics, no border crop, no downsampling.
* ``basicsr``: as ``matlab`` but the luma is not rounded (BasicSR ``calculate_psnr/ssim`` with
  ``test_y_channel=True``).
* ``sdsen-official``: the S-DSEN code's SSIM: 3 RGB channels of the unclipped float output, L = 1,
  zero-padded "same" Gaussian filtering. Its code has no PSNR; the PSNR of this convention is the
  plausible reconstruction 10·log10(1/MSE) on the same RGB floats (unverified).
* ``defgan``: Def-GAN's pose-transfer SSIM (``test.py``), i.e. scikit-image < 0.15 ``compare_ssim(gaussian_weights
  =True, sigma=1.5, use_sample_covariance=False, multichannel=True, data_range=gen.max()-gen.min())``
  on uint8 RGB. Before scikit-image#3802 the Gaussian was truncated at 4σ (13 taps) while the map was
  cropped by 5 pixels, the overhang reading mirrored pixels. No PSNR is defined for it.
* ``pg2``: PG²'s own ``score.py`` / ``score_mask.py``: ``compare_ssim(G, x, multichannel=True)`` with every
  other argument at its default, on the uint8 RGB images read back from disk: uniform 7×7 window, sample
  covariance, data range 255 (from the uint8 dtype), map cropped by 3. The same numbers as
  ``skimage-default``, named for the paper that used them. Its PSNR is ``compare_psnr`` (peak 255, RGB).
* ``skimage-default``: scikit-image defaults on uint8 RGB (7×7 uniform window, sample covariance).
* ``edge-connect``: edge-connect's inpainting script: ``rgb2gray`` (BT.709 weights) of the 8-bit
  images in [0, 1], data range 1, 51×51 uniform window, sample covariance.

Functional API (pure functions, no hidden state; another metric reuses ``ssim`` for mask-SSIM)::

    psnr(pred, target, *, convention="matlab", color=None, quantize=None, quantize_y=None,
         pixel_scale=None, data_range=None, crop_border=None) -> Tensor
    ssim(pred, target, *, convention="matlab", <the psnr parameters>, kernel=None, window=None,
         sigma=None, truncate=None, k1=None, k2=None, covariance=None, padding=None) -> Tensor
    resolve_params("psnr" | "ssim", convention="matlab", **overrides) -> dict   # the resolved set
    to_luma(levels, color, quantize_y) -> Tensor                              # the colour step

``pred``/``target`` are float tensors (3,H,W) or (N,3,H,W), RGB, nominally in [0, 1] (predictions
may leave it). A parameter left at ``None`` takes the convention's value. The result is float64,
one value per image ((N,) or 0-d). Identical images give PSNR ``inf`` (as MATLAB and scikit-image
do; no cap) and SSIM 1.

Parameters:

* ``color``: ``y601`` (MATLAB ``rgb2ycbcr`` Y, 16..235), ``yiq`` (0.299/0.587/0.114, full range:
  pyiqa's default "Y"), ``gray709`` (scikit-image ``rgb2gray``), ``rgb`` (all three channels; SSIM
  is the mean of the per-channel maps).
* ``quantize``: ``round`` (clip to [0, 1], ×255, round half to even: `harness.data.to_uint8`, i.e. a
  saved PNG), ``truncate`` (``np.uint8(x*255)``, the known bug), ``none`` (score the floats). Applied
  to both images; a no-op on targets read from 8-bit files.
* ``quantize_y``: round the luma to uint8 (half away from zero, saturating) as MATLAB's uint8
  ``rgb2ycbcr`` does; no effect with ``rgb`` (``quantize`` alone decides those values). The
  rounding is exact (integer arithmetic); MATLAB's double evaluation may resolve some of the 194
  colours whose luma is exactly k + ½ the other way.
* ``pixel_scale``: the scale images are scored on, 255 (8-bit levels) or 1 ([0, 1] floats).
* ``data_range``: the peak / L, in ``pixel_scale`` units: ``auto`` (= ``pixel_scale``), a number,
  or ``pred-range`` (max − min of each scored prediction, Def-GAN).
* ``crop_border``: pixels removed from each side before scoring.
* SSIM ``kernel`` (``gaussian`` | ``uniform``), ``window`` (odd size; the map keeps only windows
  inside the image in 'valid' mode), ``sigma``, ``truncate`` (``None``: the Gaussian has ``window``
  taps, as ``fspecial``; a number: radius int(truncate·σ + 0.5), as ``scipy.ndimage``), ``k1``,
  ``k2``, ``covariance`` (``population`` | ``sample``: × N/(N−1), N = window², as scikit-image),
  ``padding`` (``valid``; ``zero-same``; ``reflect-same``: torch/torchmetrics reflection without edge
  repeat, map averaged over the full image). In 'valid' mode a kernel wider than the window reads
  mirrored pixels (edge repeated), as ``scipy.ndimage``'s default mode.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Union

import numpy as np
import torch
import torch.nn.functional as F

from harness import DataError, Metric, Option, Sample, UsageError, hookimpl

IMPLEMENTATION = "harness_plugins.metrics.psnr_ssim"
VERSION = "1"

"""Where the ground truth lives, first present wins: deraining, pose transfer, inpainting/inversion."""

COLORS = ("y601", "yiq", "gray709", "rgb")
QUANTIZE = ("round", "truncate", "none")
KERNELS = ("gaussian", "uniform")
COVARIANCES = ("population", "sample")
PADDINGS = ("valid", "zero-same", "reflect-same")
AGGREGATIONS = ("per-image-mean", "pooled-mse")
REGIONS = ("full", "hole", "outside")
"""PSNR over the whole image, inside the sample's ``mask`` (1 in the inpainting hole or dropped box), or
outside it (mask 0: what partial-descriptor inversion keeps)."""

LUMA: dict[str, tuple[tuple[int, int, int], int, int]] = {
    # color: integer RGB weights, their denominator, offset (8-bit levels): exact for 8-bit inputs.
    "y601": ((65481, 128553, 24966), 255000, 16),  # 16 + (65.481 R + 128.553 G + 24.966 B) / 255
    "yiq": ((299, 587, 114), 1000, 0),
    "gray709": ((2125, 7154, 721), 10000, 0),
}

COMMON_PARAMS = ("color", "quantize", "quantize_y", "pixel_scale", "data_range", "crop_border")
SSIM_ONLY_PARAMS = ("kernel", "window", "sigma", "truncate", "k1", "k2", "covariance", "padding")
PARAMS = {"psnr": COMMON_PARAMS, "ssim": COMMON_PARAMS + SSIM_ONLY_PARAMS}

_WANG = {"kernel": "gaussian", "window": 11, "sigma": 1.5, "truncate": None, "k1": 0.01, "k2": 0.03,
         "covariance": "population", "padding": "valid"}
_MATLAB = {"color": "y601", "quantize": "round", "quantize_y": True, "pixel_scale": 255.0,
           "data_range": "auto", "crop_border": 0, **_WANG}
_RGB8 = {**_MATLAB, "color": "rgb", "quantize_y": False}

CONVENTIONS: dict[str, dict[str, Any]] = {
    "matlab": {
        "params": _MATLAB,
        "psnr": "MATLAB evaluate_PSNR_SSIM.m (swz30/Restormer Deraining): uint8 rgb2ycbcr Y, peak 255",
        "ssim": "Wang SSIM_index v1.0 on the uint8 rgb2ycbcr Y (evaluate_PSNR_SSIM.m)",
    },
    "basicsr": {
        "params": {**_MATLAB, "quantize_y": False},
        "psnr": "BasicSR calculate_psnr(test_y_channel=True): float BT.601 Y, peak 255",
        "ssim": "BasicSR calculate_ssim(test_y_channel=True): float BT.601 Y, Gaussian 11/1.5, valid",
    },
    "sdsen-official": {
        "params": {**_RGB8, "quantize": "none", "pixel_scale": 1.0, "padding": "zero-same"},
        "psnr": "reconstruction (unverified; the S-DSEN code has no PSNR): 10 log10(1/MSE) on unclipped RGB",
        "ssim": "prismformore/SDSEN config/cal_ssim.py: unclipped RGB, L=1, zero-padded same Gaussian 11/1.5",
    },
    "defgan": {
        "params": {**_RGB8, "data_range": "pred-range", "truncate": 4.0},
        "psnr": None,
        "ssim": "Def-GAN test.py: skimage<0.15 compare_ssim(gaussian_weights, sigma=1.5, population, multichannel, "
        "data_range=gen.max()-gen.min()) on uint8 RGB",
    },
    "pg2": {
        "params": {**_RGB8, "kernel": "uniform", "window": 7, "covariance": "sample"},
        "psnr": "PG2 score.py compare_psnr(im_true=x, im_test=G) on uint8 RGB (data_range 255 from the dtype)",
        "ssim": "PG2 score.py / score_mask.py compare_ssim(G, x, multichannel=True) defaults on uint8 RGB: uniform 7x7, "
        "sample covariance, data_range 255",
    },
    "skimage-default": {
        "params": {**_RGB8, "kernel": "uniform", "window": 7, "covariance": "sample"},
        "psnr": "skimage peak_signal_noise_ratio on uint8 RGB (data_range 255 from the dtype)",
        "ssim": "skimage structural_similarity defaults on uint8 RGB (channel_axis): uniform 7x7, sample covariance",
    },
    "edge-connect": {
        "params": {**_MATLAB, "color": "gray709", "quantize_y": False, "pixel_scale": 1.0, "kernel": "uniform",
                   "window": 51, "covariance": "sample"},
        "psnr": "knazeri/edge-connect scripts/metrics.py: rgb2gray of 8-bit images in [0,1], data_range=1",
        "ssim": "knazeri/edge-connect scripts/metrics.py: rgb2gray, data_range=1, win_size=51 (uniform, sample cov.)",
    },
}

Array = Union[np.ndarray, torch.Tensor]
"""Scored images: numpy arrays on the CPU, torch tensors on other devices (see `_scored`)."""

_CHUNK_ELEMENTS = 1 << 21
"""Input values (3·H·W per image) scored per chunk: it bounds the memory of the scored float64 channels
whatever the batch size (≈ 11 MiB of luma for 13 images of 481×321), and a chunk holds enough images
for the SSIM thread pool to share them out evenly."""


# -- parameters --------------------------------------------------------------------------------------


def resolve_params(metric: str, convention: str = "matlab", **overrides: Any) -> dict[str, Any]:
    """The full, validated parameter set of ``metric`` under ``convention`` with ``overrides`` applied.

    ``None`` overrides mean "the convention's value". ``data_range="auto"`` is resolved to the
    number it stands for; ``pred-range`` stays symbolic (it is per image).
    """
    if metric not in PARAMS:
        raise UsageError(f"unknown metric {metric!r}; expected psnr or ssim")
    if convention not in CONVENTIONS:
        raise UsageError(f"{metric}: convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
    if CONVENTIONS[convention][metric] is None:
        usable = ", ".join(name for name, entry in CONVENTIONS.items() if entry[metric])
        raise UsageError(f"{metric}: convention {convention!r} defines no {metric.upper()}; use one of {usable}")
    unknown = sorted(set(overrides) - set(PARAMS[metric]))
    if unknown:
        raise UsageError(f"{metric}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMS[metric])}")
    preset = CONVENTIONS[convention]["params"]
    params = {name: preset[name] if overrides.get(name) is None else overrides[name] for name in PARAMS[metric]}
    _validate(metric, params)
    return params


def _validate(metric: str, p: dict[str, Any]) -> None:
    def fail(name: str, expected: str) -> None:
        raise UsageError(f"{metric}: parameter {name!r} must be {expected}; got {p[name]!r}")

    for name, allowed in (("color", COLORS), ("quantize", QUANTIZE), ("kernel", KERNELS),
                          ("covariance", COVARIANCES), ("padding", PADDINGS)):
        if name in p and p[name] not in allowed:
            fail(name, "one of " + ", ".join(allowed))
    if not isinstance(p["quantize_y"], bool):
        fail("quantize_y", "true or false")
    if p["pixel_scale"] not in (1.0, 255.0):
        fail("pixel_scale", "1 or 255")
    p["pixel_scale"] = float(p["pixel_scale"])
    if p["data_range"] == "auto":
        p["data_range"] = p["pixel_scale"]
    elif p["data_range"] != "pred-range":
        try:
            p["data_range"] = float(p["data_range"])
        except (TypeError, ValueError):
            fail("data_range", "'auto', 'pred-range' or a positive number")
        if not p["data_range"] > 0:
            fail("data_range", "'auto', 'pred-range' or a positive number")
    if not isinstance(p["crop_border"], int) or p["crop_border"] < 0:
        fail("crop_border", "a non-negative integer")
    if metric == "ssim":
        if not isinstance(p["window"], int) or p["window"] < 3 or p["window"] % 2 == 0:
            fail("window", "an odd integer >= 3")
        for name in ("sigma", "k1", "k2"):
            p[name] = float(p[name])
        if not p["sigma"] > 0:
            fail("sigma", "positive")
        if p["k1"] < 0 or p["k2"] < 0:
            fail("k1" if p["k1"] < 0 else "k2", "non-negative")
        if p["truncate"] is not None:
            p["truncate"] = float(p["truncate"])
            if not p["truncate"] > 0:
                fail("truncate", "positive (or None for a kernel of `window` taps)")


def kernel_radius(p: dict[str, Any]) -> int:
    """Half-width of the SSIM kernel: the window's, or scipy.ndimage's int(truncate·σ + 0.5)."""
    if p["kernel"] == "uniform" or p["truncate"] is None:
        return (p["window"] - 1) // 2
    return int(p["truncate"] * p["sigma"] + 0.5)


def kernel_weights(p: dict[str, Any]) -> list[float]:
    """The normalised 1-D SSIM kernel (the 2-D window is its outer product, as ``fspecial``'s is)."""
    if p["kernel"] == "uniform":
        return [1.0 / p["window"]] * p["window"]
    return list(_gaussian(kernel_radius(p), p["sigma"]))


@functools.lru_cache(maxsize=64)
def _gaussian(radius: int, sigma: float) -> tuple[float, ...]:
    """Cached: mask-SSIM scores one small image per call, where building the kernel was a visible cost."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * x * x / sigma**2)
    return tuple((g / g.sum()).tolist())


# -- the shared pipeline: check, crop, quantise, convert --------------------------------------------


def check_pair(pred: Any, target: Any, who: str) -> None:
    """Raise `DataError` unless pred and target are equal-shaped float RGB (3,H,W) or (N,3,H,W) tensors."""
    for role, image in (("prediction", pred), ("target", target)):
        if not isinstance(image, torch.Tensor):
            raise DataError(f"{who}: the {role} must be a float tensor (3, H, W), got {type(image).__name__}")
        if not image.is_floating_point():
            raise DataError(f"{who}: the {role} must be a float tensor in [0, 1], got dtype {image.dtype}")
        if image.dim() not in (3, 4) or image.shape[-3] != 3:
            raise DataError(f"{who}: the {role} must be RGB (3, H, W) or (N, 3, H, W), got shape {tuple(image.shape)}")
    if pred.shape != target.shape:
        raise DataError(f"{who}: prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")


def to_luma(levels: torch.Tensor, color: str, quantize_y: bool) -> torch.Tensor:
    """The scored channel(s) of (N,3,H,W) RGB in 8-bit levels, as float64 in 8-bit levels.

    ``rgb`` returns the values unchanged. For a luma, ``quantize_y`` rounds half away from zero and
    saturates to 0..255, as MATLAB's uint8 ``rgb2ycbcr`` output. With the integer weights the result
    for 8-bit inputs is exact: every weighted sum is an integer below 2^53, and the correctly rounded
    float64 quotient of two such integers never crosses an integer its exact value does not reach (the
    gap to the next integer is at least 1/255000), so ``floor`` of it is integer floor division — one
    float64 pass where int32 floor division measured 3× slower.
    """
    return torch.as_tensor(_luma_into(levels.to(torch.float64, copy=True), color, quantize_y, None))


def _luma_into(levels: Array, color: str, quantize_y: bool, out: Array | None) -> Array:
    """`to_luma` on float64 levels (numpy or torch), which it overwrites; ``out`` receives a luma."""
    if color == "rgb":
        return levels
    xp = _namespace(levels)
    (wr, wg, wb), denominator, offset = LUMA[color]
    weighted = xp.multiply(levels[:, 0:1], wr, out=out)
    green, blue = levels[:, 1:2], levels[:, 2:3]
    green *= wg
    blue *= wb
    weighted += green
    weighted += blue
    if quantize_y:
        weighted += offset * denominator + denominator // 2
        weighted /= denominator
        xp.floor(weighted, out=weighted)
        return xp.clip(weighted, 0, 255, out=weighted)
    weighted /= denominator
    weighted += offset
    return weighted


class _Scratch:
    """Buffers one call reuses from chunk to chunk, grown to the largest chunk and then sliced.

    A fresh multi-MiB tensor or array costs page faults on first touch: measured, converting one
    481×321 RGB image to float64 took 2.5 ms into a new tensor and 0.6 ms into a reused one, which
    made allocation the largest cost of chunked scoring. Views handed out are overwritten by the
    next chunk; every caller consumes a chunk before asking for the next.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Array] = {}

    def buffer(self, name: str, shape: tuple[int, ...], dtype: str, like: Array) -> Array:
        """A float32/float64 buffer of ``shape`` of the same kind (numpy, or torch on the same device) as ``like``."""
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if isinstance(like, np.ndarray):
            if not isinstance(buffer, np.ndarray) or buffer.size < size or buffer.dtype != dtype:
                buffer = self._buffers[name] = np.empty(size, dtype=dtype)
            return buffer[:size].reshape(shape)
        torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        if (not isinstance(buffer, torch.Tensor) or buffer.numel() < size or buffer.dtype != torch_dtype
                or buffer.device != like.device):
            buffer = self._buffers[name] = torch.empty(size, dtype=torch_dtype, device=like.device)
        return buffer[:size].view(shape)


def _namespace(array: Array) -> Any:
    """numpy for CPU arrays, torch for device tensors: the same function names serve both (``multiply``,
    ``floor``, ``clip``, ``round`` with ``out=``)."""
    return np if isinstance(array, np.ndarray) else torch


def _scored(images: torch.Tensor, p: dict[str, Any], scratch: _Scratch | None = None, role: str = "") -> Array:
    """(N,3,H,W) float images → the float64 channels that are scored, on the ``pixel_scale``: numpy arrays
    from the compiled CPU kernel for CPU tensors (`_scored_cpu`), torch tensors on other devices
    (`_scored_torch`). Both compute the same values bit for bit (tested)."""
    scratch = scratch or _Scratch()
    border = p["crop_border"]
    if border:
        images = images[..., border:-border, border:-border]
    source = images.detach()
    if source.device.type == "cpu":
        return _scored_cpu(source, p, scratch, role)
    return _scored_torch(source, p, scratch, role)


def _scored_torch(source: torch.Tensor, p: dict[str, Any], scratch: _Scratch, role: str) -> torch.Tensor:
    """`_scored` with torch operations, on the tensor's device."""
    shape = tuple(source.shape)
    levels = scratch.buffer(role + "levels", shape, "float64", source)
    if p["quantize"] == "none":
        levels[...] = source
        levels *= 255.0
    else:
        # Same steps as harness.data.to_uint8 (a saved PNG): float32, clip, ×255, round half to even.
        rounded = scratch.buffer(role + "rounded", shape, "float32", source)
        rounded[...] = source
        torch.clip(rounded, 0, 1, out=rounded)
        rounded *= 255.0
        (torch.round if p["quantize"] == "round" else torch.floor)(rounded, out=rounded)
        levels[...] = rounded
    luma = None if p["color"] == "rgb" else scratch.buffer(role + "luma", (shape[0], 1, *shape[2:]), "float64", source)
    scored = _luma_into(levels, p["color"], p["quantize_y"], luma)
    if p["pixel_scale"] != 255.0:
        scored *= p["pixel_scale"] / 255.0
    return scored


def _scored_cpu(source: torch.Tensor, p: dict[str, Any], scratch: _Scratch, role: str) -> np.ndarray:
    """`_scored` of a CPU tensor: one compiled pass per pixel (see `psnr_ssim_cpu`), as numpy."""
    from .psnr_ssim_cpu import QUANTIZE_CODES, scored_levels

    if source.dtype not in (torch.float32, torch.float64):
        source = source.float()  # half precision (bfloat16 has no numpy twin): exact in float32, where quantisation starts
    array = np.ascontiguousarray(source.numpy())
    channels = 3 if p["color"] == "rgb" else 1
    out = scratch.buffer(role + "scored", (array.shape[0], channels, *array.shape[2:]), "float64", array)
    weights, denominator, offset = LUMA.get(p["color"], ((0, 0, 0), 1, 0))
    scored_levels(array, out, QUANTIZE_CODES[p["quantize"]], np.asarray(weights, dtype=np.float64), float(denominator),
                  float(offset), p["quantize_y"], p["pixel_scale"] / 255.0)
    return out


def check_geometry(height: int, width: int, p: dict[str, Any], who: str) -> None:
    """Raise `DataError` naming the size if the crop leaves nothing or the image is smaller than the SSIM window."""
    border = p["crop_border"]
    if 2 * border >= min(height, width):
        raise DataError(f"{who}: crop_border={border} leaves nothing of a {height}×{width} image")
    if "window" in p:
        needed = max(p["window"], 2 * kernel_radius(p) + 1)
        if min(height, width) - 2 * border < needed:
            raise DataError(
                f"{who}: a {height}×{width} image (crop_border={border}) is smaller than the {needed}×{needed} "
                f"SSIM window (window={p['window']}, kernel taps={2 * kernel_radius(p) + 1})"
            )


def _prepared(
    pred: torch.Tensor, target: torch.Tensor, p: dict[str, Any], who: str
) -> Iterator[tuple[Array, Array]]:
    """Checked pairs → (scored prediction, scored target) chunk by chunk (see ``_CHUNK_ELEMENTS``); the
    arrays are overwritten by the next chunk."""
    scratch = _Scratch()
    check_pair(pred, target, who)
    check_geometry(pred.shape[-2], pred.shape[-1], p, who)
    pred, target = (image.unsqueeze(0) if image.dim() == 3 else image for image in (pred, target))
    step = max(1, _CHUNK_ELEMENTS // pred[0].numel())
    for start in range(0, pred.shape[0], step):
        chunk = slice(start, start + step)
        yield _scored(pred[chunk], p, scratch, "pred"), _scored(target[chunk].to(pred.device), p, scratch, "target")


def _peak(x: Array, p: dict[str, Any]) -> torch.Tensor:
    """Per-image peak / L: fixed, or max − min of each scored prediction (``pred-range``)."""
    if p["data_range"] == "pred-range":
        xp = _namespace(x)
        flat = x.reshape(x.shape[0], -1)
        return torch.as_tensor(xp.amax(flat, 1) - xp.amin(flat, 1))
    device = "cpu" if isinstance(x, np.ndarray) else x.device
    return torch.full((x.shape[0],), p["data_range"], dtype=torch.float64, device=device)


# -- PSNR ----------------------------------------------------------------------------------------------


def _psnr_parts(x: Array, y: Array, p: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-image sum of squared errors, peak, and the number of values each sum covers."""
    peak = _peak(x, p)
    difference = x - y
    difference *= difference
    sse = torch.as_tensor(difference.reshape(x.shape[0], -1).sum(1))
    return sse, peak, math.prod(x.shape[1:])


def _psnr_from(sse: torch.Tensor, peak: torch.Tensor, count: int) -> torch.Tensor:
    return 10.0 * torch.log10(peak * peak / (sse / count))


def hole_composite(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, p: dict[str, Any], who: str,
                   region: str = "hole") -> tuple[torch.Tensor, torch.Tensor]:
    """For PSNR over a region of the mask (``hole``: mask 1, ``outside``: mask 0): the prediction in the
    region and the target elsewhere (so the whole-image squared error is the region's, every scoring
    step being per pixel), and the number of scored pixels of each image's region after ``crop_border``."""
    mask = mask.unsqueeze(0) if mask.dim() == 3 else mask
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != pred.shape[-2:]:
        raise DataError(f"{who}: the hole mask {tuple(mask.shape)} does not fit images {tuple(pred.shape)}")
    if p["data_range"] == "pred-range":
        raise UsageError(f"{who}: region={region!r} needs a fixed data_range, not 'pred-range'")
    if region not in ("hole", "outside"):
        raise UsageError(f"{who}: region must be 'hole' or 'outside' with a mask; got {region!r}")
    hole = (mask > 0.5).to(pred.device)
    if region == "outside":
        hole = ~hole
    border = p["crop_border"]
    kept = hole[..., border : hole.shape[-2] - border, border : hole.shape[-1] - border]
    pixels = kept.flatten(1).sum(dim=1)
    if not bool((pixels > 0).all()):
        raise DataError(f"{who}: region='hole' needs a non-empty hole mask" if region == "hole" else
                        f"{who}: region='outside' needs pixels outside the mask; it covers the whole image")
    hole = hole if pred.dim() == 4 else hole[0]
    return torch.where(hole, pred, target.to(pred.device)), pixels.double().cpu()


def _hole_values(full: torch.Tensor, pixels: torch.Tensor, shape: tuple[int, ...], p: dict[str, Any]) -> torch.Tensor:
    """Whole-image PSNR of a `hole_composite` → PSNR over its region: MSE over the region's values only."""
    border = p["crop_border"]
    area = (shape[-2] - 2 * border) * (shape[-1] - 2 * border)
    return full - 10.0 * torch.log10(area / pixels.to(full.device))


def psnr(
    pred: torch.Tensor, target: torch.Tensor, *, convention: str = "matlab", mask: torch.Tensor | None = None,
    region: str = "hole", **params: Any,
) -> torch.Tensor:
    """Per-image PSNR in dB (functional twin of the ``psnr`` metric; see the module docstring).

    With ``mask`` ((1,H,W) or (N,1,H,W), 1 inside an inpainting hole or dropped box) the MSE is taken
    over the mask's ``region`` only: ``hole`` (mask 1) or ``outside`` (mask 0)."""
    p = resolve_params("psnr", convention, **params)
    if mask is not None:
        check_pair(pred, target, "psnr")
        composite, pixels = hole_composite(pred, target, mask, p, "psnr", region)
        values = psnr(composite, target, convention=convention, **params)
        return _hole_values(values.reshape(-1), pixels, tuple(pred.shape), p).reshape(values.shape)
    values = torch.cat([_psnr_from(*_psnr_parts(x, y, p)) for x, y in _prepared(pred, target, p, "psnr")])
    return values[0] if pred.dim() == 3 else values


# -- SSIM ----------------------------------------------------------------------------------------------


# Window statistics. SSIM needs four filtered maps, not the usual five: μx, μy, E[xy] and E[x² + y²]
# (σx² and σy² only ever appear as their sum). Both paths filter separably in float64 and keep only the
# map positions the padding mode asks for (see ``padding``). On the CPU the compiled kernel
# (`psnr_ssim_cpu.ssim_map_sum`) streams them row by row and sums the SSIM map without storing it (issue 6:
# the scipy.ndimage version was 1.1–1.4× slower than scikit-image; see docs/benchmarks.md); other devices
# use torch shifted multiply-adds.


def _crop(p: dict[str, Any]) -> int:
    return (p["window"] - 1) // 2 if p["padding"] == "valid" else 0


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="harness-ssim")


_NUMPY_PADS = {"valid": "symmetric", "zero-same": "constant", "reflect-same": "reflect"}
"""np.pad modes of each padding: 'symmetric' repeats the edge (the mirrored pixels a 'valid' map reads when
the kernel is wider than the window, scipy.ndimage's 'reflect'), 'reflect' does not (torch's reflection)."""


def _ssim_cpu(x: np.ndarray, y: np.ndarray, c1: np.ndarray, c2: np.ndarray, weights: list[float], p: dict[str, Any]
              ) -> torch.Tensor:
    """Mean SSIM per image of (N,C,H,W) float64 arrays by the compiled `ssim_map_sum`, one (image,
    channel) map per job; jobs run on ``torch.get_num_threads()`` threads (the kernel releases the GIL;
    one thread is a plain loop, no pool). Padding and cropping are turned into the input rows and
    columns a 'valid' correlation needs, so only the kept map positions are computed."""
    from .psnr_ssim_cpu import ssim_map_sum

    radius, crop = len(weights) // 2, _crop(p)
    pad, extra = max(radius - crop, 0), max(crop - radius, 0)
    kernel = np.asarray(weights, dtype=np.float64)
    norm = p["window"] ** 2 / (p["window"] ** 2 - 1) if p["covariance"] == "sample" else 1.0
    n, channels = x.shape[:2]

    def run(job: int) -> float:
        image, channel = divmod(job, channels)
        pair = []
        for plane in (x[image, channel], y[image, channel]):
            if extra:
                plane = plane[extra : plane.shape[0] - extra, extra : plane.shape[1] - extra]
            plane = np.pad(plane, pad, mode=_NUMPY_PADS[p["padding"]]) if pad else np.ascontiguousarray(plane)
            pair.append(plane)
        return ssim_map_sum(pair[0], pair[1], kernel, float(c1[image]), float(c2[image]), norm)

    jobs = n * channels
    workers = min(torch.get_num_threads(), jobs)
    sums = list(_pool(workers).map(run, range(jobs))) if workers > 1 else [run(job) for job in range(jobs)]
    positions = (x.shape[-2] - 2 * crop) * (x.shape[-1] - 2 * crop) * channels
    return torch.tensor(sums, dtype=torch.float64).view(n, channels).sum(1) / positions


def _pad(t: torch.Tensor, amount: int, mode: str) -> torch.Tensor:
    """Pad the last two dims of (B,H,W): zeros, reflection without edge repeat, or mirror with it."""
    if amount == 0:
        return t
    if mode != "symmetric":
        return F.pad(t, (amount,) * 4, mode=mode)
    for dim in (-2, -1):
        size = t.shape[dim]
        t = torch.cat([t.narrow(dim, 0, amount).flip(dim), t, t.narrow(dim, size - amount, amount).flip(dim)], dim)
    return t


def _correlate_valid(t: torch.Tensor, weights: list[float], dim: int) -> torch.Tensor:
    """1-D 'valid' correlation along ``dim`` by shifted multiply-adds (float64 conv2d is ~10× slower)."""
    length = t.shape[dim] - len(weights) + 1
    out = t.narrow(dim, 0, length) * weights[0]
    for offset, weight in enumerate(weights[1:], start=1):
        out.add_(t.narrow(dim, offset, length), alpha=weight)
    return out


def _filtered_device(t: torch.Tensor, weights: list[float], p: dict[str, Any]) -> torch.Tensor:
    """The same window statistics on any torch device (CUDA): pad, then shifted multiply-adds."""
    radius = len(weights) // 2
    crop = _crop(p)
    mode = {"valid": "symmetric", "zero-same": "constant", "reflect-same": "reflect"}[p["padding"]]
    t = _pad(t, max(radius - crop, 0), mode)
    t = _correlate_valid(_correlate_valid(t, weights, -1), weights, -2)
    extra = max(crop - radius, 0)
    return t[..., extra : t.shape[-2] - extra, extra : t.shape[-1] - extra] if extra else t


def _ssim_map_mean(mx: Any, my: Any, sxx_yy: Any, sxy: Any, c1: Any, c2: Any, p: dict[str, Any], mxy: Any) -> Any:
    """Mean SSIM per image from the four filtered maps (numpy arrays or tensors, updated in place);
    ``mxy`` receives μx·μy."""
    mxy[...] = mx
    mxy *= my
    mx *= mx
    my *= my
    mxx_yy = mx
    mxx_yy += my  # μx² + μy²
    sxx_yy -= mxx_yy  # σx² + σy²
    sxy -= mxy  # σxy
    if p["covariance"] == "sample":
        norm = p["window"] ** 2 / (p["window"] ** 2 - 1)
        sxx_yy *= norm
        sxy *= norm
    mxy *= 2
    mxy += c1
    sxy *= 2
    sxy += c2
    mxy *= sxy  # numerator
    mxx_yy += c1
    sxx_yy += c2
    mxx_yy *= sxx_yy  # denominator
    mxy /= mxx_yy
    return mxy.reshape(mxy.shape[0], -1).mean(1)


def _ssim_chunk(x: Array, y: Array, peak: torch.Tensor, weights: list[float], p: dict[str, Any]) -> torch.Tensor:
    n = x.shape[0]
    c1 = (p["k1"] * peak).square_().view(n, 1, 1, 1)
    c2 = (p["k2"] * peak).square_().view(n, 1, 1, 1)
    if isinstance(x, np.ndarray):
        return _ssim_cpu(x, y, c1.view(n).numpy(), c2.view(n).numpy(), weights, p)
    stats = torch.stack([x, y, x * x + y * y, x * y])
    stats = _filtered_device(stats.flatten(0, 2), weights, p)
    mx, my, sxx_yy, sxy = stats.view(4, *x.shape[:2], *stats.shape[-2:])
    return _ssim_map_mean(mx, my, sxx_yy, sxy, c1, c2, p, torch.empty_like(mx))


def _ssim_values(x: Array, y: Array, p: dict[str, Any]) -> torch.Tensor:
    """Per-image SSIM of prepared (scored) images."""
    return _ssim_chunk(x, y, _peak(x, p), kernel_weights(p), p)


def ssim(pred: torch.Tensor, target: torch.Tensor, *, convention: str = "matlab", **params: Any) -> torch.Tensor:
    """Per-image mean SSIM (functional twin of the ``ssim`` metric; see the module docstring)."""
    p = resolve_params("ssim", convention, **params)
    values = torch.cat([_ssim_values(x, y, p) for x, y in _prepared(pred, target, p, "ssim")])
    return values[0] if pred.dim() == 3 else values


# -- metric classes ------------------------------------------------------------------------------------


def _options(metric: str) -> tuple[Option, ...]:
    usable = tuple(name for name, entry in CONVENTIONS.items() if entry[metric])
    common = (
        Option("convention", "matlab", "named reference convention setting every other parameter "
               "(explicit parameters override it)", choices=usable),
        Option("color", None, "scored channels: y601 (MATLAB rgb2ycbcr Y), yiq, gray709, rgb", type=str,
               choices=COLORS),
        Option("quantize", None, "prediction to 8 bits before scoring: round (saved PNG), truncate, none",
               type=str, choices=QUANTIZE),
        Option("quantize_y", None, "round the luma to uint8 as MATLAB rgb2ycbcr does (no effect on rgb)", type=bool),
        Option("pixel_scale", None, "scale the images are scored on: 255 (8-bit levels) or 1", type=float,
               choices=(1.0, 255.0)),
        Option("data_range", None, "peak / L in pixel_scale units: auto (= pixel_scale), a number, or "
               "pred-range (max - min of each prediction)", type=str),
        Option("crop_border", None, "pixels removed from each side before scoring", type=int),
    )
    if metric == "psnr":
        return common + (
            Option("aggregation", "per-image-mean", "per-image-mean (papers) or pooled-mse (PSNR of the "
                   "MSE pooled over all pixels, torchmetrics)", choices=AGGREGATIONS),
            Option("region", "full", "full: the whole image; hole: only where the sample's 'mask' is 1 (the "
                   "inpainting hole, a dropped box); outside: only where it is 0", choices=REGIONS),
        )
    return common + (
        Option("kernel", None, "SSIM window weights: gaussian or uniform", type=str, choices=KERNELS),
        Option("window", None, "SSIM window size (odd); 'valid' keeps the windows inside the image", type=int),
        Option("sigma", None, "Gaussian sigma", type=float),
        Option("truncate", None, "Gaussian radius int(truncate*sigma+0.5) as scipy.ndimage; unset: `window` "
               "taps (ignored by the uniform kernel)", type=float),
        Option("k1", None, "SSIM K1", type=float),
        Option("k2", None, "SSIM K2", type=float),
        Option("covariance", None, "population (Wang) or sample (N/(N-1), scikit-image default)", type=str,
               choices=COVARIANCES),
        Option("padding", None, "valid (Wang), zero-same (S-DSEN code), reflect-same (torchmetrics)", type=str,
               choices=PADDINGS),
    )


class _ImageSimilarity(Metric):
    """Shared update/compute: per-image values of equal-size pairs computed as one batch."""

    higher_is_better = True
    outputs = frozenset({"image"})
    needs_target = True
    needs_paired_target = True
    preset_option = "convention"
    version = VERSION

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        given = {name: self.config[name] for name in PARAMS[self.name]}
        self.params = resolve_params(self.name, self.config["convention"], **given)
        self.reset()

    def reset(self) -> None:
        self._values: list[float] = []

    def _score(self, x: Array, y: Array) -> torch.Tensor:
        raise NotImplementedError

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float]:
        if len(predictions) != len(samples):
            raise DataError(f"{self.name}: {len(predictions)} predictions for {len(samples)} samples")
        targets = [self.target(sample) for sample in samples]
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, (prediction, target, sample) in enumerate(zip(predictions, targets, samples)):
            who = f"{self.name}: sample {sample.get('id')!r}"
            check_pair(prediction, target, who)
            if prediction.dim() != 3:
                raise DataError(f"{who}: expected one (3, H, W) prediction, got shape {tuple(prediction.shape)}")
            check_geometry(prediction.shape[-2], prediction.shape[-1], self.params, who)
            groups[tuple(prediction.shape)].append(index)
        values = [0.0] * len(predictions)
        for indices in groups.values():
            batch_pred = torch.stack([predictions[i] for i in indices])
            batch_target = torch.stack([targets[i].to(batch_pred.device) for i in indices])
            chunks = _prepared(batch_pred, batch_target, self.params, self.name)
            scored = [self._score(x, y) for x, y in chunks]
            for i, value in zip(indices, torch.cat(scored).tolist()):
                values[i] = value
        self._values.extend(values)
        return values

    def _mean(self) -> float:
        if not self._values:
            raise UsageError(f"{self.name}: no samples were scored")
        return sum(self._values) / len(self._values)

    def convention(self) -> dict[str, Any]:
        name = self.config["convention"]
        preset = resolve_params(self.name, name)
        extra = {"kernel_taps": len(kernel_weights(self.params))} if self.name == "ssim" else {}
        return {
            "implementation": f"{IMPLEMENTATION}/{VERSION}",
            "convention": name,
            "reference": CONVENTIONS[name][self.name],
            "params": dict(self.params),
            "overrides": sorted(key for key, value in self.params.items() if preset[key] != value),
            **extra,
            "target_field": self.target_field,
            "torch": torch.__version__,
        }


class PSNR(_ImageSimilarity):
    """Peak signal-to-noise ratio; default: the MATLAB deraining reference (uint8 BT.601 Y, peak 255)."""

    name = "psnr"
    description = "PSNR in dB; default the MATLAB deraining convention (uint8 rgb2ycbcr Y, peak 255, per-image mean)."
    options = _options("psnr")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config["aggregation"] == "pooled-mse" and self.params["data_range"] == "pred-range":
            raise UsageError("psnr: aggregation 'pooled-mse' needs a fixed data_range, not 'pred-range'")

    def reset(self) -> None:
        super().reset()
        self._sse = 0.0
        self._count = 0

    def _score(self, x: Array, y: Array) -> torch.Tensor:
        sse, peak, count = _psnr_parts(x, y, self.params)
        self._sse += float(sse.sum())
        self._count += count * x.shape[0]
        return _psnr_from(sse, peak, count)

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float]:
        if self.config["region"] == "full":
            return super().update(predictions, samples)
        composites, pixels = [], []
        for prediction, sample in zip(predictions, samples, strict=True):
            who = f"{self.name}: sample {sample.get('id')!r}"
            if sample.get("mask") is None:
                raise UsageError(f"{who}: region={self.config['region']!r} needs samples with a 'mask' "
                                 "(inpainting hole or dropped box)")
            check_pair(prediction, self.target(sample), who)
            composite, count = hole_composite(prediction, self.target(sample), sample["mask"], self.params, who,
                                              self.config["region"])
            composites.append(composite)
            pixels.append(count)
        start, count_before = len(self._values), self._count
        full = torch.tensor(super().update(composites, samples), dtype=torch.float64)
        channels = 3 if self.params["color"] == "rgb" else 1
        values = [float(_hole_values(full[i : i + 1], pixels[i], tuple(p.shape), self.params)) for i, p in enumerate(composites)]
        self._values[start:] = values
        self._count = count_before + int(sum(float(count) for count in pixels)) * channels
        return values

    def compute(self) -> dict[str, float]:
        mean = self._mean()
        if self.config["aggregation"] == "pooled-mse":
            sse, peak = (torch.tensor(v, dtype=torch.float64) for v in (self._sse, self.params["data_range"]))
            return {"psnr": float(_psnr_from(sse, peak, self._count))}
        return {"psnr": mean}

    def details(self) -> dict[str, Any]:
        return {"n": len(self._values), "identical_pairs": sum(v == float("inf") for v in self._values)}


class SSIM(_ImageSimilarity):
    """Structural similarity; default: Wang's SSIM_index v1.0 on the MATLAB uint8 BT.601 Y."""

    name = "ssim"
    description = "SSIM; default Wang's SSIM_index (Gaussian 11/1.5, valid, L=255) on the MATLAB uint8 Y."
    options = _options("ssim")

    def _score(self, x: Array, y: Array) -> torch.Tensor:
        return _ssim_values(x, y, self.params)

    def compute(self) -> dict[str, float]:
        return {"ssim": self._mean()}

    def details(self) -> dict[str, Any]:
        return {"n": len(self._values)}


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(PSNR)
    register(SSIM)
