"""How many torch intra-op threads to use: the CPUs this process may really use, shared by its workers.

On a 2-core machine two threads made small SSIM/rank kernels 5–30× slower than one (docs/benchmarks.md),
and ``os.cpu_count()`` reports the host's cores even inside a cgroup-limited container, so the count
comes from the affinity mask and the cgroup CPU quota.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..errors import UsageError

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cgroup_cpu_limit(cpu_max: Path = CGROUP_V2_CPU_MAX) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 cfs files), or None when unlimited/unknown."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(CGROUP_V1_QUOTA.read_text())
        period_us = int(CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(cpu_max: Path = CGROUP_V2_CPU_MAX) -> int:
    """min(affinity mask, ceil(cgroup quota)), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cpu_max)
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def choose_threads(workers: int = 1, override: int | None = None, cpus: int | None = None) -> int:
    """``override`` if given, else the available CPUs divided evenly among ``workers`` (at least 1)."""
    if override is not None:
        if override < 1:
            raise UsageError(f"--threads must be a positive integer, got {override}")
        return override
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    return max(1, (cpus if cpus is not None else available_cpus()) // workers)


def configure_threads(workers: int = 1, override: int | None = None) -> int:
    """Set torch's intra-op thread count for this process and return it (recorded with each run)."""
    threads = choose_threads(workers, override)
    torch.set_num_threads(threads)
    return threads
