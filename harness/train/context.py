"""What the core hands a method's ``training_recipe``: the run's settings plus the few helpers through
which a recipe gets mixed precision, data parallelism and background batch loading without knowing
how they are done.

A recipe that calls ``context.autocast()``, ``context.backward(loss)`` and ``context.step(optimizer)``
instead of ``loss.backward()`` / ``optimizer.step()`` runs unchanged on one CPU, under ``--amp`` on a GPU
and under ``torchrun`` on several.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from ..errors import UsageError
from . import distributed
from .loader import StepLoader

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass
class TrainContext:
    """Settings of one training run and the helpers a recipe uses inside ``train_step``.

    ``batch_size`` is the global batch (all ranks together); `shard` gives this rank its part.
    """

    batch_size: int
    steps: int
    seed: int = 0
    device: str = "cpu"
    amp: str | None = None
    """``None`` (full precision), ``"bf16"`` or ``"fp16"`` (with a gradient scaler); CUDA only."""
    compile: bool = False
    workers: int = 0
    """DataLoader worker processes serving `loader` batches (0: in the training process)."""
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise UsageError(f"--amp must be one of {', '.join(AMP_DTYPES)}, got {self.amp!r}")
        if self.amp is not None and not self.device.startswith("cuda"):
            raise UsageError(f"--amp {self.amp} needs a CUDA device (--device cuda); the CPU path trains in float32")
        if self.batch_size % self.world_size:
            raise UsageError(
                f"--batch-size {self.batch_size} is the global batch and must divide evenly over {self.world_size} processes"
            )
        scaler_on = self.amp == "fp16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=scaler_on) if scaler_on else None

    # -- precision --------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Wrap forward passes and losses: autocast to the ``--amp`` dtype on CUDA, nothing otherwise."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=AMP_DTYPES[self.amp])

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled when training in fp16 so small gradients do not underflow."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average this optimizer's gradients over all ranks (DDP semantics), then step it (unscaling
        first under fp16; a step with inf/NaN gradients is skipped, as `torch.amp.GradScaler` does)."""
        if self.world_size > 1:
            distributed.average_gradients(optimizer)
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def end_step(self) -> None:
        """Called by the core after every ``train_step``: adjusts the fp16 loss scale once per step."""
        if self.scaler is not None:
            self.scaler.update()

    # -- data -------------------------------------------------------------------------------------
    def shard(self, batch: Any) -> Any:
        """This rank's contiguous part of a global batch: a tensor is split along dim 0, a tuple or dict
        part by part, a list (of samples, ids, paths) item-wise."""
        if self.world_size == 1:
            return batch
        if isinstance(batch, tuple):
            return tuple(self.shard(part) for part in batch)
        if isinstance(batch, dict):
            return {key: self.shard(value) for key, value in batch.items()}
        if isinstance(batch, (torch.Tensor, list)):
            if len(batch) % self.world_size:
                raise UsageError(f"a batch of {len(batch)} cannot be split evenly over {self.world_size} processes")
            per_rank = len(batch) // self.world_size
            return batch[self.rank * per_rank : (self.rank + 1) * per_rank]
        return batch

    def loader(self, batch: Callable[[int], Any]) -> StepLoader:
        """Serve ``batch(step)`` from DataLoader workers ahead of the training step.

        ``batch`` must be a pure function of the step (draw with `harness.train.samplers` and seed
        augmentations with `harness.train.samplers.step_rng`), so a resumed run sees the very batches an
        uninterrupted one would have."""
        return StepLoader(batch, self.steps, self.workers)
