"""The one SIFT pipeline of the descriptor-inversion datasets (Wu, Zhou, Li: "Image Reconstruction from
Local Descriptors Using Conditional Adversarial Networks").

1. `center_square`: the largest centred square, resized to ``size``×``size`` (PIL bicubic; the paper
   does not name the filter);
2. `gamma_gray`: T = (Γ(R) + Γ(G) + Γ(B)) / 3 with Γ(t) = t^(1/2.2) on [0, 1] values, as the paper
   writes it, then rounded to 8 bits because OpenCV's SIFT takes 8-bit images (the paper states no
   range or requantisation);
3. `extract`: OpenCV SIFT (``cv2.SIFT_create``; contrast threshold 0.04 and every other parameter at
   OpenCV's defaults unless given), in the order OpenCV returns the keypoints.

Keypoints are float32 (N, 4): x, y (pixels, OpenCV's centre-of-pixel convention), scale (OpenCV's
``KeyPoint.size``, the diameter of the described region) and orientation (degrees, [0, 360)).
Descriptors are float32 (N, 128) as OpenCV returns them (the unit vector × 512, clipped to 255).
`features` computes them once per (pixels, parameters, OpenCV version) and keeps them in the harness
cache (``features`` tier), so training epochs and repeated runs reuse one extraction.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import torch
from PIL import Image

from harness import UsageError
from harness.run.cache import Cache

GAMMA = 2.2
SIFT_DEFAULTS: dict[str, Any] = {
    "nfeatures": 0,
    "nOctaveLayers": 3,
    "contrastThreshold": 0.04,
    "edgeThreshold": 10.0,
    "sigma": 1.6,
}


def center_square(image: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square of a uint8 (H, W, 3) image, resized to size×size with PIL bicubic."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    return np.array(Image.fromarray(square).resize((size, size), Image.BICUBIC))


def gamma_gray(image: np.ndarray) -> np.ndarray:
    """The paper's gamma-corrected gray level of a uint8 RGB image, as uint8 (H, W)."""
    gray = np.power(image.astype(np.float64) / 255.0, 1.0 / GAMMA).mean(axis=2)
    return np.round(gray * 255.0).astype(np.uint8)


def sift_params(**overrides: Any) -> dict[str, Any]:
    """OpenCV SIFT parameters with overrides; unknown names are refused."""
    unknown = sorted(set(overrides) - set(SIFT_DEFAULTS))
    if unknown:
        raise UsageError(f"SIFT: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(SIFT_DEFAULTS)}")
    return {**SIFT_DEFAULTS, **overrides}


def extract(gray: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints (N, 4) and descriptors (N, 128), float32, of an 8-bit gray image."""
    import cv2

    sift = cv2.SIFT_create(**params)
    keypoints, descriptors = sift.detectAndCompute(gray, None)
    points = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in keypoints], dtype=np.float32).reshape(-1, 4)
    if descriptors is None:
        descriptors = np.zeros((0, 128), dtype=np.float32)
    return points, descriptors.astype(np.float32)


def pipeline_version() -> dict[str, Any]:
    """What the extracted features depend on besides the pixels (recorded with every result)."""
    import cv2

    return {"opencv": cv2.__version__, "gray": f"mean of channel^(1/{GAMMA}), rounded to uint8", "resize": "PIL bicubic"}


CACHE_NAMESPACE = "sift-features/1"


def _pack(points: np.ndarray, descriptors: np.ndarray) -> bytes:
    """Keypoints as float32; descriptors as uint8 when integral (OpenCV's are integers 0–255), else float32."""
    integral = descriptors.size == 0 or np.array_equal(descriptors, np.round(descriptors))
    buffer = io.BytesIO()
    np.savez(buffer, points=points.astype(np.float32), descriptors=descriptors.astype(np.uint8 if integral else np.float32))
    return buffer.getvalue()


def _unpack(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return data["points"], data["descriptors"].astype(np.float32)


def features(image: np.ndarray, params: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints and descriptors of a prepared uint8 RGB image, computed once per (pixels, parameters,
    OpenCV version) and kept in the harness cache's ``features`` tier."""
    key = hashlib.sha256(
        image.tobytes() + repr(image.shape).encode() + json.dumps([params, pipeline_version()], sort_keys=True).encode()
    ).hexdigest()
    cache = Cache()
    blob = cache.get_rows("features", CACHE_NAMESPACE, [key]).get(key)
    if blob is None:
        points, descriptors = extract(gamma_gray(image), params)
        cache.put_rows("features", CACHE_NAMESPACE, {key: _pack(points, descriptors)})
    else:
        points, descriptors = _unpack(blob)
    return torch.from_numpy(points.copy()), torch.from_numpy(descriptors.copy())
