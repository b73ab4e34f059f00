"""One place that turns a device request into a torch device and describes the numerics it runs with.

``"auto"`` means CUDA when available, else the CPU. The runner resolves the user's ``--device`` once
and binds the result to the method and the metrics, so no plugin guesses on its own.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UsageError


def resolve_device(device: str) -> str:
    """``auto`` | ``cpu`` | ``cuda[:N]`` → a concrete device string; refuses CUDA where there is none."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    return device


def numerics() -> dict[str, Any]:
    """TF32 switches (matmul and cuDNN) and cuDNN determinism: they move GPU results by ~1e-3."""
    return {
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
