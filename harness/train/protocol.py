"""The common case of the step protocol: one network, one optimizer, one loss.

`SingleModelRecipe` keeps such a method's recipe to "a model, an optimizer, a scheduler, a batch
function and a loss", as before the step protocol existed; multi-network methods subclass
`harness.TrainingRecipe` directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..api import TrainingRecipe
from .context import TrainContext


class SingleModelRecipe(TrainingRecipe):
    """Each step: ``loss(batch(step))``, backward, optimizer step, scheduler step (in that order).

    ``batch(step)`` must be a pure function of (seed, step) and return the global batch (served by
    ``--workers`` processes); under ``torchrun`` each rank trains on its `TrainContext.shard` of it.
    The model is exported."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any | None,
        batch: Callable[[int], Any],
        loss: Callable[[Any], torch.Tensor],
        description: Mapping[str, Any],
        context: TrainContext | None = None,
    ) -> None:
        super().__init__(description, exported="model")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.batch, self.loss = batch, loss
        self.context = context or TrainContext(batch_size=1, steps=1)
        self.batches = self.context.loader(batch)
        self.networks["model"] = model
        self.optimizers["optimizer"] = optimizer
        if scheduler is not None:
            self.schedulers["scheduler"] = scheduler

    def train_step(self, step: int) -> dict[str, float]:
        batch = self.context.shard(self.batches(step))
        with self.context.autocast():
            loss = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.context.backward(loss)
        self.context.step(self.optimizer)
        if self.scheduler is not None:
            self.scheduler.step()
        return {"loss": float(loss.detach())}
