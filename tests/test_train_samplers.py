"""Batch builders and seeded augmentations: exact batch composition, purity in (seed, step)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from harness import DataError, UsageError
from harness.train.augment import random_crop, random_erasing, random_flip
from harness.train.loader import StepLoader
from harness.train.samplers import cross_modality_pk_batch, pk_batch, step_rng, uniform_batch, unpaired_batch

# 12 identities with 1..6 images each, visible and infrared mixed; identity 11 is visible only.
PIDS = [pid for pid in range(12) for _ in range(1 + pid % 6)]
MODALITIES = ["visible" if pid == 11 or i % 2 == 0 else "infrared" for i, pid in enumerate(PIDS)]


@pytest.mark.parametrize("step", range(20))
def test_pk_batches_hold_exactly_p_identities_times_k_images(step):
    rows = pk_batch(PIDS, p=4, k=3, seed=5, step=step)
    counts = Counter(PIDS[row] for row in rows)
    assert len(rows) == 12 and len(counts) == 4 and set(counts.values()) == {3}
    # Grouped by identity, and without replacement whenever the identity has K images.
    for start in range(0, 12, 3):
        group = rows[start : start + 3]
        assert len({PIDS[row] for row in group}) == 1
        if PIDS.count(PIDS[group[0]]) >= 3:
            assert len(set(group)) == 3


@pytest.mark.parametrize("step", range(20))
def test_cross_modality_batches_hold_k_of_each_modality_per_identity(step):
    visible, infrared = cross_modality_pk_batch(PIDS, MODALITIES, p=3, k=2, seed=1, step=step)
    assert len(visible) == len(infrared) == 6
    assert {MODALITIES[r] for r in visible} == {"visible"} and {MODALITIES[r] for r in infrared} == {"infrared"}
    assert [PIDS[r] for r in visible] == [PIDS[r] for r in infrared]  # aligned identity by identity
    counts = Counter(PIDS[r] for r in visible)
    assert len(counts) == 3 and set(counts.values()) == {2} and 11 not in counts


def test_builders_are_pure_functions_of_seed_and_step():
    for builder in (
        lambda seed, step: pk_batch(PIDS, 4, 2, seed, step),
        lambda seed, step: cross_modality_pk_batch(PIDS, MODALITIES, 3, 2, seed, step),
        lambda seed, step: uniform_batch(len(PIDS), 8, seed, step),
        lambda seed, step: unpaired_batch(30, 40, 5, seed, step),
    ):
        assert builder(3, 7) == builder(3, 7)
        assert builder(3, 7) != builder(3, 8) and builder(3, 7) != builder(4, 7)


def test_same_batches_in_another_process():
    code = ("from harness.train.samplers import pk_batch, unpaired_batch;"
            f"print([pk_batch({PIDS}, 4, 3, 9, s) for s in range(5)], unpaired_batch(30, 40, 5, 9, 3))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == f"{[pk_batch(PIDS, 4, 3, 9, s) for s in range(5)]} {unpaired_batch(30, 40, 5, 9, 3)}"


def test_too_few_identities_is_a_data_error():
    with pytest.raises(DataError, match="needs 13 identities"):
        pk_batch(PIDS, 13, 2, 0, 0)
    with pytest.raises(DataError, match="needs 12 identities with both visible and infrared"):
        cross_modality_pk_batch(PIDS, MODALITIES, 12, 2, 0, 0)


def test_uniform_and_unpaired_draws():
    rows = uniform_batch(10, 10, 0, 0)
    assert sorted(rows) == list(range(10))  # without replacement when the split is large enough
    assert len(uniform_batch(3, 8, 0, 0)) == 8
    a, b = unpaired_batch(120, 140, 16, 0, 5)
    assert len(a) == len(b) == 16 and max(a) < 120 and max(b) < 140


def test_augmentations_are_seeded_and_correct():
    image = torch.arange(3 * 10 * 12, dtype=torch.float32).reshape(3, 10, 12)
    crop = random_crop(image, (6, 8), step_rng(0, 3, 1))
    assert torch.equal(crop, random_crop(image, (6, 8), step_rng(0, 3, 1)))
    top, left = divmod(int(crop[0, 0, 0]), 12)
    assert torch.equal(crop, image[:, top : top + 6, left : left + 8])
    padded = random_crop(image, (10, 12), step_rng(0, 0, 1), padding=2)
    assert padded.shape == (3, 10, 12)
    flips = {bool(torch.equal(random_flip(image, step_rng(0, s, 1)), image.flip(-1))) for s in range(20)}
    assert flips == {True, False}
    erased = random_erasing(image + 1, step_rng(0, 1, 1), p=1.0)
    hole = erased == 0
    assert hole.any() and torch.equal(erased, random_erasing(image + 1, step_rng(0, 1, 1), p=1.0))
    rows, cols = hole[0].any(1).nonzero().flatten(), hole[0].any(0).nonzero().flatten()
    area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert int(hole[0].sum()) == int(area)  # one filled rectangle
    assert 0.02 * 120 * 0.5 <= int(area) <= 0.4 * 120 * 1.5
    assert torch.equal(random_erasing(image, step_rng(0, 1, 1), p=0.0), image)


def test_random_erasing_uniform_aspect_is_the_authors_draw() -> None:
    """``aspect_sampling="uniform"``: the ratio is ``uniform(0.3, 1/0.3)`` as Zhong's random_erasing.py (and
    Hi-CMD's copy); replaying the same generator by hand gives the same rectangle."""
    import math

    image = torch.ones(3, 64, 32)
    for step in range(20):
        erased = random_erasing(image, step_rng(0, step, 1), p=1.0, aspect_sampling="uniform")
        rng = step_rng(0, step, 1)
        rng.random()
        while True:
            target = rng.uniform(0.02, 0.4) * 64 * 32
            aspect = rng.uniform(0.3, 1 / 0.3)
            h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < h < 64 and 0 < w < 32:
                top, left = int(rng.integers(0, 64 - h + 1)), int(rng.integers(0, 32 - w + 1))
                break
        expected = image.clone()
        expected[:, top : top + h, left : left + w] = 0
        assert torch.equal(erased, expected)
    # the two draws differ: over many rectangles the uniform one is taller on average (mean ratio 1.82 vs 1.26)
    def ratio(mode: str, step: int) -> float:
        hole = random_erasing(torch.ones(1, 400, 400), step_rng(1, step, 1), p=1.0, aspect_sampling=mode)[0].eq(0)
        return float(hole.any(1).sum() / hole.any(0).sum())  # rows / columns of the rectangle

    assert np.mean([ratio("uniform", s) for s in range(200)]) > np.mean([ratio("log-uniform", s) for s in range(200)]) + 0.3
    with pytest.raises(UsageError, match="aspect_sampling"):
        random_erasing(image, step_rng(0, 0, 1), aspect_sampling="beta")


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = step_rng(2, step, 0)
    return torch.from_numpy(rng.normal(size=4)), torch.tensor(step)


def test_step_loader_serves_the_same_batches_from_workers_and_after_a_restart():
    inline = [_batch(step) for step in range(6)]
    loader = StepLoader(_batch, steps=6, workers=2)
    served = [loader(step) for step in range(6)]
    assert all(type(b) is tuple and torch.equal(a[0], b[0]) and int(b[1]) == step
               for step, (a, b) in enumerate(zip(inline, served)))  # delivered exactly as built
    resumed = StepLoader(_batch, steps=6, workers=1)
    assert torch.equal(resumed(3)[0], inline[3][0]) and torch.equal(resumed(4)[0], inline[4][0])
    assert torch.equal(resumed(1)[0], inline[1][0])  # out of order: the loader restarts there
    state = torch.get_rng_state()
    StepLoader(_batch, steps=6, workers=1)(0)
    assert torch.equal(state, torch.get_rng_state())  # serving batches never touches torch's global RNG


def test_step_rng_rejects_negative_words():
    with pytest.raises(Exception, match="non-negative"):
        step_rng(-1, 0)
    assert np.array_equal(step_rng(1, 2, 3).integers(0, 100, 5), step_rng(1, 2, 3).integers(0, 100, 5))


def test_pk_batches_from_a_real_dataset_index_decode_only_their_rows(tmp_path, monkeypatch):
    from harness_plugins.datasets.market1501 import Market1501
    from test_market1501 import make_market1501

    dataset = Market1501(make_market1501(tmp_path), strict=False)
    rows = dataset.index("train")
    decoded: list[str] = []
    load = dataset.load
    monkeypatch.setattr(dataset, "load", lambda row: decoded.append(row["id"]) or load(row))

    def batch(step: int) -> tuple[torch.Tensor, list[int]]:
        chosen = [rows[i] for i in pk_batch([row["pid"] for row in rows], 2, 2, 0, step)]
        return torch.stack([dataset.load(row)["image"] for row in chosen]), [row["pid"] for row in chosen]

    images, pids = StepLoader(batch, steps=3, workers=0)(1)
    assert images.shape == (4, 3, 8, 4) and len(set(pids)) == 2 and all(pids.count(p) == 2 for p in pids)
    assert len(decoded) == 4  # the index itself decoded nothing
