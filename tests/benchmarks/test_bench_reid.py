"""CMC + mAP on a Market-1501-sized problem (3,368 queries × 15,913 gallery, 512-d): harness vs torchreid.

Run with ``pytest tests/benchmarks/test_bench_reid.py --benchmark-only``; both tests are in the group
``reid-market1501`` so the table shows them side by side. Both start from the features: torchreid's
``compute_distance_matrix`` (squared Euclidean) + ``evaluate_rank`` (its Python path: the Cython
``rank_cy`` is not compiled in the installed torchreid 0.2.5, see ``IS_CYTHON_AVAI``) against the
harness's `rank_matches` + CMC curve + mAP. The first test checks the numbers agree before timing.
The gallery is torchreid's Market-1501 gallery size (junk already dropped, 0000 distractors kept).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from harness_plugins.metrics.reid_protocols import rank_matches

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchreid.reid.metrics import rank as torchreid_rank
    from torchreid.reid.metrics.distance import compute_distance_matrix

N_QUERY, N_GALLERY, DIM, N_IDS, N_DISTRACTORS = 3368, 15913, 512, 750, 3819


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, ...]:
    """Random features; identities and cameras drawn like Market-1501's test set."""
    rng = np.random.default_rng(0)
    q_pids = rng.integers(1, N_IDS + 1, N_QUERY)
    identities = rng.integers(1, N_IDS + 1, N_GALLERY - N_DISTRACTORS)
    g_pids = rng.permutation(np.concatenate([np.zeros(N_DISTRACTORS, dtype=np.int64), identities]))
    q_cams, g_cams = rng.integers(1, 7, N_QUERY), rng.integers(1, 7, N_GALLERY)
    generator = torch.Generator().manual_seed(0)
    q_f = torch.randn(N_QUERY, DIM, generator=generator)
    g_f = torch.randn(N_GALLERY, DIM, generator=generator)
    return q_f, g_f, *(torch.from_numpy(a) for a in (q_pids, g_pids, q_cams, g_cams))


def harness_eval(q_f, g_f, q_pids, g_pids, q_cams, g_cams) -> tuple[np.ndarray, float]:
    ranking = rank_matches(q_f, g_f, q_pids, g_pids, q_cams, g_cams, protocol="market1501")
    return ranking.cmc(50).numpy(), float(ranking.ap.mean())


def torchreid_eval(q_f, g_f, q_pids, g_pids, q_cams, g_cams) -> tuple[np.ndarray, float]:
    distmat = compute_distance_matrix(q_f, g_f, metric="euclidean").numpy()
    return torchreid_rank.evaluate_rank(
        distmat, q_pids.numpy(), g_pids.numpy(), q_cams.numpy(), g_cams.numpy(), max_rank=50, use_cython=False
    )


@pytest.mark.benchmark(group="reid-market1501")
def test_bench_harness(benchmark, problem) -> None:
    small = (problem[0][:300], problem[1][:2000], problem[2][:300], problem[3][:2000], problem[4][:300], problem[5][:2000])
    ours, reference = harness_eval(*small), torchreid_eval(*small)
    np.testing.assert_allclose(ours[0], reference[0], atol=1e-6)
    assert ours[1] == pytest.approx(reference[1], abs=1e-9)
    curve, _ = benchmark.pedantic(harness_eval, args=problem, rounds=3, iterations=1, warmup_rounds=1)
    assert curve.shape == (50,)


@pytest.mark.benchmark(group="reid-market1501")
def test_bench_torchreid(benchmark, problem) -> None:
    assert torchreid_rank.IS_CYTHON_AVAI is False  # the comparison is with torchreid's Python evaluator
    curve, _ = benchmark.pedantic(torchreid_eval, args=problem, rounds=1, iterations=1)
    assert curve.shape == (50,)
