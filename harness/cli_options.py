"""The CLI's ``key=value`` flags (``--option``, ``--dataset-option``, ``--metric-option``), parsed once for
`harness run`, `harness train` and `harness grid` alike."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import UsageError


def parse_key_values(pairs: Sequence[str], flag: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects key=value, got {pair!r}")
        parsed[key.strip()] = value
    return parsed


def parse_metric_options(pairs: Sequence[str]) -> dict[str, dict[str, str]]:
    """``LABEL.PARAM=VALUE`` grouped by label (a label may hold dots only after its ``@``: split at the last dot)."""
    grouped: dict[str, dict[str, str]] = {}
    for key, value in parse_key_values(pairs, "--metric-option").items():
        label, dot, param = key.rpartition(".")
        if not dot or not param or not label:
            raise UsageError(f"--metric-option expects LABEL.PARAM=VALUE (e.g. ssim.convention=matlab), got {key}={value!r}")
        grouped.setdefault(label, {})[param] = value
    return grouped
