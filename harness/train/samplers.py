"""Batch builders: which rows of a `Dataset.index` make up the batch of a step.

Every builder is a pure function of (seed, step): the same call gives the same batch in any process,
in a DataLoader worker and after a resume, and no builder keeps state between steps. They return row
positions; the recipe (or `TrainContext.loader`) decodes them with `Dataset.load`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from ..errors import DataError, UsageError


def step_rng(seed: int, step: int, *streams: int) -> np.random.Generator:
    """A generator owned by (seed, step, *streams): e.g. stream 0 picks rows, stream 1 + i augments item i."""
    if seed < 0 or step < 0 or any(s < 0 for s in streams):
        raise UsageError(f"seed, step and streams must be non-negative, got {(seed, step, *streams)}")
    return np.random.default_rng([seed, step, *streams])


def uniform_batch(size: int, batch_size: int, seed: int, step: int) -> list[int]:
    """``batch_size`` rows drawn uniformly without replacement (with replacement if the split is smaller)."""
    if size < 1:
        raise DataError("cannot draw a batch from an empty split")
    rng = step_rng(seed, step, 0)
    return rng.choice(size, batch_size, replace=batch_size > size).tolist()


def _group(labels: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        groups[label].append(position)
    return groups


def _take(rng: np.random.Generator, members: list[int], k: int) -> list[int]:
    """K of an identity's rows: without replacement when it has K, else with (as torchreid's sampler)."""
    return [members[i] for i in rng.choice(len(members), k, replace=len(members) < k)]


def pk_batch(pids: Sequence[Hashable], p: int, k: int, seed: int, step: int) -> list[int]:
    """P distinct identities × K rows each (identity-balanced batches for triplet losses), grouped by identity."""
    groups = _group(pids)
    if len(groups) < p:
        raise DataError(f"PK sampling needs {p} identities per batch, the split has {len(groups)}")
    rng = step_rng(seed, step, 0)
    identities = sorted(groups)
    chosen = rng.choice(len(identities), p, replace=False)
    return [row for i in chosen for row in _take(rng, groups[identities[i]], k)]


def cross_modality_pk_batch(
    pids: Sequence[Hashable],
    modalities: Sequence[str],
    p: int,
    k: int,
    seed: int,
    step: int,
    pair: tuple[str, str] = ("visible", "infrared"),
) -> tuple[list[int], list[int]]:
    """P identities seen in both modalities × (K rows of the first + K rows of the second modality).

    Returns the two halves (first-modality rows, second-modality rows), aligned identity by identity,
    as Hi-CMD and AGW feed them to their two-stream networks."""
    first = _group([pid if modality == pair[0] else None for pid, modality in zip(pids, modalities, strict=True)])
    second = _group([pid if modality == pair[1] else None for pid, modality in zip(pids, modalities, strict=True)])
    first.pop(None, None)
    second.pop(None, None)
    identities = sorted(set(first) & set(second))
    if len(identities) < p:
        raise DataError(
            f"cross-modality PK sampling needs {p} identities with both {pair[0]} and {pair[1]} images, "
            f"the split has {len(identities)}"
        )
    rng = step_rng(seed, step, 0)
    chosen = [identities[i] for i in rng.choice(len(identities), p, replace=False)]
    a = [row for pid in chosen for row in _take(rng, first[pid], k)]
    b = [row for pid in chosen for row in _take(rng, second[pid], k)]
    return a, b


def unpaired_batch(size_a: int, size_b: int, batch_size: int, seed: int, step: int) -> tuple[list[int], list[int]]:
    """Independent draws from two domains (CycleGAN's A and B), so no pairing is implied."""
    return (uniform_batch(size_a, batch_size, seed, 2 * step), uniform_batch(size_b, batch_size, seed, 2 * step + 1))
