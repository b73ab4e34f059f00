"""Uncertainty of measured means: bootstrap confidence intervals and paired significance tests.

Papers print single numbers; the harness keeps per-sample values (per image, per re-id query), so it
can say how sure a mean is and whether two methods scored on the same samples really differ. All
functions are pure and seeded, so a published interval or p-value is reproducible from the record.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 10000
DEFAULT_SEED = 0
EXACT_SIGN_FLIPS = 16
"""Up to this many non-zero differences the sign-flip test enumerates all 2^n assignments exactly."""


@dataclasses.dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval of a mean, with everything needed to reproduce it."""

    low: float
    high: float
    level: float
    resamples: int
    seed: int
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def bootstrap_ci(
    values: Sequence[float], *, level: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> Interval | None:
    """Percentile bootstrap interval of the mean of ``values`` (None for fewer than 2 values).

    Resampling is over the units given (images, or queries for re-id), which is what varies when a
    benchmark's test set is drawn again.
    """
    data = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(data) < 2:
        return None
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 4_000_000 // len(data))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        picks = rng.integers(0, len(data), size=(stop - start, len(data)))
        means[start:stop] = data[picks].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(low), float(high), level, resamples, seed, len(data))


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """Result of a two-sided sign-flip permutation test on paired per-sample differences."""

    mean_difference: float
    p_value: float
    n: int
    exact: bool
    permutations: int
    seed: int

    def as_dict(self) -> dict[str, float | int | bool]:
        return dataclasses.asdict(self)


def sign_flip_test(
    differences: Sequence[float], *, permutations: int = DEFAULT_PERMUTATIONS, seed: int = DEFAULT_SEED
) -> PairedTest:
    """Two-sided test of "the mean paired difference is zero" by flipping the signs of the differences.

    Under the null hypothesis each difference is as likely to have either sign, so the observed mean
    is compared with the means of all (or ``permutations`` random) sign assignments. Exact for up to
    `EXACT_SIGN_FLIPS` samples; the Monte-Carlo p-value counts the observed assignment, so it is never 0.
    """
    d = np.asarray(differences, dtype=np.float64)
    if len(d) == 0:
        raise ValueError("sign_flip_test needs at least one paired difference")
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))
    if len(d) <= EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
        means = np.abs(signs @ d) / len(d)
        p = float(np.mean(means >= observed - tolerance))
        return PairedTest(float(d.mean()), p, len(d), True, len(signs), seed)
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, 4_000_000 // len(d))
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        signs = rng.choice((1.0, -1.0), size=(size, len(d)))
        hits += int(np.sum(np.abs(signs @ d) / len(d) >= observed - tolerance))
    p = (hits + 1) / (permutations + 1)
    return PairedTest(float(d.mean()), float(p), len(d), False, permutations, seed)


def sign_flip_min_p(n: int, *, permutations: int = DEFAULT_PERMUTATIONS) -> float:
    """The smallest p-value `sign_flip_test` can return for ``n`` paired differences, whatever they are.

    The all-positive and all-negative assignments always tie with the observed one, so the exact test
    never goes below 2 / 2^n; the Monte-Carlo p-value never goes below
    1 / (permutations + 1). When this is >= alpha the test cannot call any difference significant:
    with 5 pairs or fewer at alpha = 0.05 it has no power, however large and consistent the change.
    """
    if n < 1:
        raise ValueError("sign_flip_min_p needs at least one paired difference")
    exact = 2.0 ** (1 - n)
    return exact if n <= EXACT_SIGN_FLIPS else max(exact, 1.0 / (permutations + 1))


def sign_flip_min_samples(alpha: float, *, permutations: int = DEFAULT_PERMUTATIONS) -> int | None:
    """The fewest paired differences for which `sign_flip_test` can reach p < alpha (None: no n can)."""
    for n in range(1, 64):
        if sign_flip_min_p(n, permutations=permutations) < alpha:
            return n
    return None


def paired_differences(current: dict[str, float], baseline: dict[str, float]) -> list[float]:
    """current − baseline over the sample ids both hold (with finite values), in a stable order."""
    common = sorted(
        key for key in current.keys() & baseline.keys()
        if current[key] is not None and baseline[key] is not None
        and np.isfinite(current[key]) and np.isfinite(baseline[key])
    )
    return [float(current[key]) - float(baseline[key]) for key in common]
