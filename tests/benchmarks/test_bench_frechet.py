"""Fréchet distance of 2048-d Inception statistics: harness `frechet_distance` vs pytorch-fid's
`calculate_frechet_distance` (scipy `sqrtm`), side by side.

Run with ``pytest tests/benchmarks/test_bench_frechet.py --benchmark-only``. Two cases, each its own
group: full-rank covariances (N = 4096 > d, the harness takes its Cholesky path) and rank-deficient
ones (N = 1000 < d, e.g. a restoration test set; the eigendecomposition path). pytorch-fid takes
30 s or more per call on two cores, hence few rounds. Each reference test also checks that both
give the same value (1e-6 relative).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from harness_plugins.metrics.inception import feature_statistics, frechet_distance
from pytorch_fid.fid_score import calculate_frechet_distance

DIM = 2048
CASES = {"full-rank": 4096, "rank-deficient": 1000}


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> tuple[str, tuple[np.ndarray, ...]]:
    """A case name and the statistics of two sets of correlated, non-negative (post-ReLU-like) features."""
    n = CASES[request.param]
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((DIM, DIM)) / np.sqrt(DIM)
    first = np.abs(rng.standard_normal((n, DIM)) @ mixing)
    second = np.abs(rng.standard_normal((n, DIM)) @ (mixing + 0.1 * rng.standard_normal((DIM, DIM)) / np.sqrt(DIM)))
    return request.param, (*feature_statistics(first), *feature_statistics(second))


def _pytorch_fid(*stats: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's deprecation of sqrtm's `disp`
        return float(calculate_frechet_distance(*stats))


def test_bench_frechet_harness(benchmark, case) -> None:
    name, statistics = case
    benchmark.group = f"frechet-2048-{name}"
    value = benchmark.pedantic(frechet_distance, args=statistics, rounds=5, warmup_rounds=1)
    assert np.isfinite(value)


def test_bench_frechet_pytorch_fid(benchmark, case) -> None:
    name, statistics = case
    benchmark.group = f"frechet-2048-{name}"
    value = benchmark.pedantic(_pytorch_fid, args=statistics, rounds=2)
    assert value == pytest.approx(frechet_distance(*statistics), rel=1e-6)
