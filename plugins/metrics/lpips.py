"""`lpips`: the learned perceptual image patch similarity of Zhang et al. (CVPR 2018), v0.1 AlexNet variant,
an extra column for inpainting (the Yang thesis's Patch Perceptual Loss is built on it).

Computed as the ``lpips`` package computes it: images in [0, 1] mapped to [-1, 1], the scaling layer
(shift −0.030, −0.088, −0.188; scale 0.458, 0.448, 0.450), torchvision AlexNet features after relu1-relu5,
each unit-normalised over channels (eps 1e-10), squared differences weighted per channel by the learned
1×1 "lin" layers, averaged over space and summed over the five layers. Whole image; lower is better.

Weights come from local files only: torchvision's ``alexnet-owt-7be5be79.pth`` from the torch hub cache,
and the lpips package's ``weights/v0.1/alex.pth`` (its ``lin0``-``lin4`` layers) from the ``weights``
option, ``$HARNESS_LPIPS_WEIGHTS`` or ``$TORCH_HOME/hub/checkpoints/lpips_v0.1_alex.pth``; a missing
file is an error that says where to put it.

Functional twin: ``lpips_distance(pred, target, network) -> float64 tensor (per image)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness import DataError, Metric, Option, Sample, UsageError, hookimpl
from harness.checkpoints import find_weights
from harness.data import sha256_file
from harness_plugins.shared.lpips_net import ALEXNET_FILE, LPIPS_ENV, LPIPS_FILE, LPIPSAlex


def lpips_distance(pred: torch.Tensor, target: torch.Tensor, network: LPIPSAlex) -> torch.Tensor:
    """Functional twin of `LPIPS`: per-image distance of (3,H,W) or (N,3,H,W) images in [0, 1]."""
    single = pred.dim() == 3
    pred, target = (t[None] if single else t for t in (pred, target))
    if pred.shape != target.shape:
        raise DataError(f"lpips: prediction shape {tuple(pred.shape)} differs from target {tuple(target.shape)}")
    network.to(pred.device)  # no-op when already there; CUDA predictions are scored on CUDA
    with torch.no_grad():
        values = network(pred.float(), target.float().to(pred.device))
    return values[0] if single else values


class LPIPS(Metric):
    name = "lpips"
    description = "LPIPS v0.1 (AlexNet, Zhang et al. 2018) on the whole image; weights from local files only."
    paper = "R. Zhang, P. Isola, A. Efros, E. Shechtman, O. Wang. The Unreasonable Effectiveness of Deep Features as a Perceptual Metric. CVPR 2018"
    higher_is_better = False
    options = (
        Option("weights", "", f"the lpips package's weights/v0.1/alex.pth (default: ${LPIPS_ENV}, else {LPIPS_FILE} in the torch hub cache)"),
    )

    def __init__(self, target_field: str | None = None, **options: Any) -> None:
        super().__init__(target_field, **options)
        self._network: LPIPSAlex | None = None
        self.reset()

    def weight_files(self) -> tuple[Path, Path]:
        """(AlexNet, lin layers); a missing file raises `DataError` saying where to put it."""
        return find_weights(ALEXNET_FILE), find_weights(LPIPS_FILE, self.config["weights"] or None, env=LPIPS_ENV)

    def reads(self) -> dict[str, str]:
        return {path.name: sha256_file(path) for path in self.weight_files()}

    def network(self) -> LPIPSAlex:
        if self._network is None:
            self._network = LPIPSAlex.from_files(*self.weight_files())
        return self._network

    def reset(self) -> None:
        self._values: list[float] = []

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float]:
        values = [float(lpips_distance(p, self.target(s), self.network())) for p, s in zip(predictions, samples, strict=True)]
        self._values.extend(values)
        return values

    def compute(self) -> dict[str, float]:
        if not self._values:
            raise UsageError("lpips: no samples were scored")
        return {"lpips": sum(self._values) / len(self._values)}

    def convention(self) -> dict[str, Any]:
        return {"implementation": "harness_plugins.metrics.lpips/1", "version": "0.1", "net": "alex",
                "region": "full", "input": "[0,1] -> [-1,1], lpips scaling layer", "target_field": self.target_field}


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(LPIPS)
