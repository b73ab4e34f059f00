"""Serve ``batch(step)`` from DataLoader workers, one step ahead of training.

Because a batch is a pure function of its step, the loader is just ``map(batch, range(start, steps))``
run in worker processes; asking for a step other than the next one (the first call after a resume)
restarts it from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset


class _Steps(TorchDataset):
    """Item ``i`` is the batch of step ``start + i``."""

    def __init__(self, batch: Callable[[int], Any], start: int, stop: int) -> None:
        self.batch, self.start, self.stop = batch, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> Any:
        return self.batch(self.start + index)


class StepLoader:
    """``loader(step)`` returns ``batch(step)``, prepared ahead by ``workers`` processes (0: inline)."""

    def __init__(self, batch: Callable[[int], Any], steps: int, workers: int = 0, prefetch: int = 2) -> None:
        self.batch, self.steps, self.workers, self.prefetch = batch, steps, workers, prefetch
        self._iterator: Iterator[Any] | None = None
        self._next: int | None = None

    def __call__(self, step: int) -> Any:
        if self.workers == 0 or not 0 <= step < self.steps:
            return self.batch(step)
        if step != self._next or self._iterator is None:
            self._iterator = iter(self._loader(step))
        self._next = step + 1
        return next(self._iterator)

    def _loader(self, start: int) -> DataLoader:
        return DataLoader(
            _Steps(self.batch, start, self.steps),
            batch_size=None,
            collate_fn=_as_built,
            shuffle=False,
            num_workers=self.workers,
            prefetch_factor=self.prefetch,
            # fork keeps closures over in-memory data usable in workers (spawn would have to pickle them).
            multiprocessing_context="fork",
            worker_init_fn=_one_thread,
            # Its own generator: a DataLoader otherwise draws its worker seed from torch's global one, which
            # would shift the training stream differently in a run that (re)starts the loader at a resume.
            generator=torch.Generator().manual_seed(start),
        )


def _as_built(batch: Any) -> Any:
    """Hand batches over exactly as built (the default conversion would turn tuples into lists)."""
    return batch


def _one_thread(worker: int) -> None:
    """Workers decode and crop; letting each spawn a full intra-op thread pool would oversubscribe the CPUs."""
    torch.set_num_threads(1)
