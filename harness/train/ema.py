"""Exponential moving average of a network's weights, for methods whose paper evaluates the EMA copy.

Register it in ``recipe.stateful`` (so it is checkpointed) and name it in ``recipe.exported`` (so
``harness run --checkpoint`` scores the averaged weights); call ``update()`` after each generator step.
"""

from __future__ import annotations

from typing import Any

import torch


class EMA:
    """``shadow = decay * shadow + (1 - decay) * weights`` for floating-point entries; buffers of other
    types (e.g. BatchNorm's step counter) are copied."""

    def __init__(self, network: torch.nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.network, self.decay = network, decay
        self.shadow = {key: value.detach().clone() for key, value in network.state_dict().items()}

    @torch.no_grad()
    def update(self) -> None:
        for key, value in self.network.state_dict().items():
            if value.is_floating_point():
                self.shadow[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def export(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        for key, value in state["shadow"].items():
            self.shadow[key].copy_(value)
