"""`harness gate`: compare current results with a baseline, direction-aware and significance-aware.

A drop is a regression only when it exceeds the metric's tolerance *and* the paired per-sample
values say it is real (two-sided sign-flip test, p < alpha); without per-sample values on both sides
the tolerance alone decides and the report says so. With too few pairs for the test to ever reach
alpha (2 / 2^n >= alpha: five or fewer at 0.05) "not significant" would be no evidence at all, so
`Policy.min_samples` decides instead (by default the tolerance, and the row says why). Noisy timing
metrics are reported, not gated, unless asked for; then the median over repeated runs is judged with
a relative threshold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import statistics
import types
import typing
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError
from ..provenance import canonical_digest
from . import stats
from .records import Run, read_store

BASELINE_FORMAT = "harness-baseline/1"
FAILING = ("regressed", "new-failure", "dropped", "underpowered")
""""dropped": a baseline cell absent from the results, a failure only with ``Policy.require_all``;
"underpowered": too few paired samples for the test, a failure only with ``min_samples="fail"``."""
MIN_SAMPLES_POLICIES = ("tolerance", "fail", "pass")
"""What decides a value whose paired test cannot reach alpha: the tolerance alone (default), a failure
whatever the change (the suite is too small to gate), or a pass whatever the change (explicit opt-out)."""


@dataclasses.dataclass
class Value:
    label: str
    metric: str
    key: str
    value: float | None
    higher_is_better: bool
    protocol: str
    version: str
    per_sample: dict[str, float | None] | None
    """Sample id → value; null where the sample's value was not finite (records are strict JSON)."""
    history: list[float]
    """The value in every ok run of the cell, oldest first (for the median of noisy metrics)."""


@dataclasses.dataclass
class CellResult:
    method: str
    options: dict[str, Any]
    dataset: str
    split: str
    status: str
    run_id: str
    data_sha256: str | None
    values: dict[str, Value]
    """label/key → value."""

    @property
    def identity(self) -> str:
        return canonical_digest([self.method, self.options, self.dataset, self.split])

    @property
    def name(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.method}" + (f" ({options})" if options else "") + f" × {self.dataset}/{self.split}"


@dataclasses.dataclass
class Finding:
    cell: str
    label: str
    key: str
    status: str
    baseline: float | None = None
    current: float | None = None
    change: float | None = None
    """current − baseline (sign as measured; see ``higher_is_better``)."""
    higher_is_better: bool = True
    tolerance: float = 0.0
    p_value: float | None = None
    note: str = ""


# -- reading both sides -------------------------------------------------------------------------------
def cells_from_runs(runs: list[Run]) -> dict[str, CellResult]:
    """The latest run of every (method, options, dataset, split), with value histories over its ok runs."""
    cells: dict[str, CellResult] = {}
    history: dict[tuple[str, str], list[float]] = {}
    for run in runs:  # oldest first, so the last one wins
        options = run.record["method"].get("options") or {}
        values = {}
        for m in run.values:
            name = f"{m.label}/{m.key}"
            values[name] = Value(m.label, m.metric, m.key, m.value, m.higher_is_better, m.protocol_digest, m.version,
                                 m.per_sample, [])
        cell = CellResult(run.method, options, run.dataset, run.split, run.status, run.run_id, run.data_sha256, values)
        if not run.failed:
            for name, value in values.items():
                if value.value is not None:
                    history.setdefault((cell.identity, name), []).append(value.value)
        cells[cell.identity] = cell
    for identity, cell in cells.items():
        for name, value in cell.values.items():
            value.history = history.get((identity, name), [])
    return cells


def export(cells: dict[str, CellResult]) -> dict[str, Any]:
    """A committed baseline: the latest value (with per-sample values) of every cell.

    Strict JSON like the records: a non-finite number is written as null (dropped from a history), so
    `load_baseline`, which rejects NaN and inf as malformed, reads back every export.
    """
    exported = []
    for cell in sorted(cells.values(), key=lambda c: c.name):
        item = dataclasses.asdict(cell)
        for value in item["values"].values():
            value["value"] = _finite(value["value"])
            if value["per_sample"] is not None:
                value["per_sample"] = {key: _finite(number) for key, number in value["per_sample"].items()}
            value["history"] = [number for number in value["history"] if _finite(number) is not None]
        exported.append(item)
    return {
        "format": BASELINE_FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cells": exported,
    }


def merge_worse(current: dict[str, CellResult], others: list[dict[str, CellResult]]) -> dict[str, CellResult]:
    """``current`` with each value replaced by the worse of it and the same cell's value in ``others``.

    Why: training on the quickstart's tiny sets amplifies the float differences between CPU kernels
    (MKL and oneDNN pick their code paths by CPU vendor and instruction set) into changes well beyond
    the tolerances, with per-sample values that the paired test calls significant. A CI pool that hands
    out more than one kind needs a baseline that holds on each: export on one, merge the baseline built
    on the other. Only the current cells are kept, so a cell whose identity changed leaves no stale entry
    behind; a value is merged only when it measured the same thing (data digest, metric protocol and
    version), and it keeps its own per-sample values and history, so the paired test compares like with like.
    """
    merged = {}
    for identity, cell in current.items():
        values = dict(cell.values)
        twins = [other[identity] for other in others
                 if identity in other and other[identity].data_sha256 == cell.data_sha256]
        for name, ours in cell.values.items():
            sign = 1.0 if ours.higher_is_better else -1.0
            for twin in twins:
                theirs, kept = twin.values.get(name), values[name]
                if (theirs is not None and theirs.value is not None and kept.value is not None
                        and (theirs.protocol, theirs.version) == (ours.protocol, ours.version)
                        and sign * (theirs.value - kept.value) < 0):
                    values[name] = theirs
        merged[identity] = dataclasses.replace(cell, values=values)
    return merged


def _finite(number: float | None) -> float | None:
    return number if number is not None and math.isfinite(number) else None


def underpowered_warnings(cells: dict[str, CellResult], alpha: float) -> list[str]:
    """One line per cell whose per-sample values are too few for the paired test to reach ``alpha``
    (`harness gate --export` warns with them: gating that cell will not be able to use the test)."""
    lines = []
    for cell in sorted(cells.values(), key=lambda c: c.name):
        by_count: dict[int, list[str]] = {}
        for name, value in sorted(cell.values.items()):
            count = sum(1 for number in (value.per_sample or {}).values() if _finite(number) is not None)
            if count and stats.sign_flip_min_p(count) >= alpha:
                by_count.setdefault(count, []).append(name)
        for count, names in sorted(by_count.items()):
            lines.append(f"{cell.name}: {', '.join(names)}: {_too_few(count, alpha)}; "
                         f"the paired test needs {_needed(alpha)}, so `harness gate` will fall back to "
                         f"--min-samples-policy (default: judged by tolerance)")
    return lines


def _too_few(count: int, alpha: float) -> str:
    return (f"too few paired samples ({count}) for the test at α = {alpha:g} "
            f"(min p = {stats.sign_flip_min_p(count):.3g})")


def _needed(alpha: float) -> str:
    n = stats.sign_flip_min_samples(alpha)
    return "more samples than any suite holds" if n is None else f"at least {n} (2/2ⁿ < α)"


def load_baseline(path: Path) -> dict[str, CellResult]:
    """A results directory (its runs) or an exported baseline JSON file."""
    path = Path(path)
    if path.is_dir():
        if not (path / "runs").is_dir():
            raise UsageError(f"--baseline {path}: a directory but not a result store (no runs/ inside)")
        return cells_from_runs(read_store(path))
    if not path.is_file():
        raise UsageError(f"--baseline {path}: no such file or directory")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"--baseline {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise DataError(f"--baseline {path}: expected a {BASELINE_FORMAT} file from `harness gate --export`")
    try:
        _check(data.get("cells"), list[CellResult], "cells")
    except _Malformed as exc:
        raise DataError(f"--baseline {path}: malformed baseline at {exc}") from None
    cells = {}
    for item in data["cells"]:
        values = {name: Value(**value) for name, value in item.pop("values").items()}
        cell = CellResult(**item, values=values)
        cells[cell.identity] = cell
    return cells


class _Malformed(Exception):
    """``JSON.PATH: expected ..., got ...`` (caught in `load_baseline`, which names the file)."""


def _check(value: Any, hint: Any, where: str) -> None:
    """Check a parsed JSON value against a type hint of `CellResult` / `Value`, field by field.

    The baseline is read back into those dataclasses, so their annotations are the schema: a wrong
    type, NaN or inf (a JSON number must be finite; null stands for a missing value) is reported with
    its JSON path instead of surfacing later as a TypeError that CI would read as a regression.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        (hint,) = [arg for arg in args if arg is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Malformed(f"{where}: expected an object, got {_show(value)}")
        fields = typing.get_type_hints(hint)
        for name in fields:
            if name not in value:
                raise _Malformed(f"{where}.{name}: missing (expected {_expected(fields[name])})")
        for name in value:
            if name not in fields:
                raise _Malformed(f"{where}.{name}: unexpected field (expected only {', '.join(fields)})")
            _check(value[name], fields[name], f"{where}.{name}")
    elif origin is dict:
        if not isinstance(value, dict):
            raise _Malformed(f"{where}: expected {_expected(hint)}, got {_show(value)}")
        for key, item in value.items():
            _check(item, args[1], f"{where}[{json.dumps(key)}]")
    elif origin is list:
        if not isinstance(value, list):
            raise _Malformed(f"{where}: expected {_expected(hint)}, got {_show(value)}")
        for index, item in enumerate(value):
            _check(item, args[0], f"{where}[{index}]")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Malformed(f"{where}: expected a finite number, got {_show(value)}")
    elif not isinstance(value, hint):
        raise _Malformed(f"{where}: expected {_expected(hint)}, got {_show(value)}")


def _expected(hint: Any, plural: bool = False) -> str:
    """``float | None`` → "a finite number or null"; ``list[float]`` → "a list of finite numbers"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return f"{_expected(inner, plural)} or {'nulls' if plural else 'null'}"
    if origin is dict:
        return f"{'objects' if plural else 'an object'} of {_expected(args[1], True)}"
    if origin is list:
        return f"{'lists' if plural else 'a list'} of {_expected(args[0], True)}"
    names = {str: ("a string", "strings"), bool: ("true or false", "booleans"),
             float: ("a finite number", "finite numbers"), Any: ("any value", "any values")}
    return names.get(hint, ("an object", "objects"))[plural]


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- comparing ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Policy:
    tolerances: dict[str, float]
    """By value key, label or metric name (looked up in that order)."""
    report_only: set[str]
    """Metric names or labels that are reported, not gated (timings)."""
    gate_timings: bool = False
    timing_threshold: float = 0.2
    alpha: float = 0.05
    require_all: bool = False
    """A baseline cell missing from the results fails (a CI suite whose cells changed identity, e.g. through
    a new option, would otherwise stop being compared without anyone noticing)."""
    min_samples: str = "tolerance"
    """One of `MIN_SAMPLES_POLICIES`: how a value is judged when its paired samples are too few for the
    test to reach ``alpha`` (a "not significant" from it would mean nothing)."""

    def __post_init__(self) -> None:
        if self.min_samples not in MIN_SAMPLES_POLICIES:
            raise ValueError(f"min_samples must be one of {', '.join(MIN_SAMPLES_POLICIES)}, got {self.min_samples!r}")

    def tolerance(self, value: Value) -> float:
        for name in (value.key, value.label, value.metric):
            if name in self.tolerances:
                return self.tolerances[name]
        return 0.0

    def is_timing(self, value: Value) -> bool:
        return value.metric in self.report_only or value.label in self.report_only


def compare(baseline: dict[str, CellResult], current: dict[str, CellResult], policy: Policy) -> list[Finding]:
    findings: list[Finding] = []
    for identity in sorted(baseline.keys() | current.keys(), key=lambda i: (baseline.get(i) or current[i]).name):
        base, now = baseline.get(identity), current.get(identity)
        if now is None:
            findings.append(Finding(base.name, "*", "*", "dropped" if policy.require_all else "missing",
                                    note="in the baseline, not in the current results"))
            continue
        if base is None:
            findings.append(Finding(now.name, "*", "*", "new", note="not in the baseline"))
            continue
        if now.status != "ok" or base.status != "ok":
            status = ("new-failure" if base.status == "ok" else "fixed" if now.status == "ok" else "still-failing")
            findings.append(Finding(now.name, "*", "*", status, note=f"run {now.run_id}: {now.status}; baseline {base.status}"))
            if status != "fixed":
                continue
        data_changed = base.data_sha256 != now.data_sha256
        for name in sorted(base.values.keys() | now.values.keys()):
            findings.append(_compare_value(now.name, name, base.values.get(name), now.values.get(name), data_changed, policy))
    return findings


def _compare_value(cell: str, name: str, base: Value | None, now: Value | None, data_changed: bool, policy: Policy) -> Finding:
    label, _, key = name.rpartition("/")
    if now is None or base is None:
        return Finding(cell, label, key, "missing" if now is None else "new",
                       note="value not in the current run" if now is None else "value not in the baseline")
    finding = Finding(cell, label, key, "pass", base.value, now.value, higher_is_better=now.higher_is_better,
                      tolerance=policy.tolerance(now))
    if base.version != now.version:
        finding.status, finding.note = "incomparable", f"metric version changed ({base.version} → {now.version})"
        return finding
    if base.protocol != now.protocol:
        finding.status, finding.note = "incomparable", "protocol changed (metric parameters or convention differ)"
        return finding
    if data_changed:
        finding.status, finding.note = "incomparable", "data digest changed"
        return finding
    if base.value is None or now.value is None:
        finding.status, finding.note = "incomparable", "a value is missing (non-finite)"
        return finding
    sign = 1.0 if now.higher_is_better else -1.0
    if policy.is_timing(now):
        return _judge_timing(finding, base, now, sign, policy)
    finding.change = now.value - base.value
    better = sign * finding.change
    differences = stats.paired_differences(now.per_sample or {}, base.per_sample or {})
    powerless = bool(differences) and stats.sign_flip_min_p(len(differences)) >= policy.alpha
    if powerless and policy.min_samples == "fail":
        finding.status = "underpowered"
        finding.note = f"{_too_few(len(differences), policy.alpha)}: fails (--min-samples-policy fail)"
        return finding
    if abs(better) <= finding.tolerance:
        finding.note = "within tolerance"
        return finding
    if powerless:
        if policy.min_samples == "pass":
            finding.note = f"{_too_few(len(differences), policy.alpha)}: not judged (--min-samples-policy pass)"
            return finding
        finding.note = f"{_too_few(len(differences), policy.alpha)}: judged by tolerance"
    elif differences:
        test = stats.sign_flip_test(differences)
        finding.p_value = test.p_value
        if test.p_value >= policy.alpha:
            finding.note = f"beyond tolerance but not significant on {test.n} paired samples"
            return finding
        finding.note = f"paired sign-flip test on {test.n} samples"
    else:
        finding.note = "judged by tolerance alone (no paired per-sample values on both sides)"
    finding.status = "improved" if better > 0 else "regressed"
    return finding


def _judge_timing(finding: Finding, base: Value, now: Value, sign: float, policy: Policy) -> Finding:
    base_median = statistics.median(base.history or [base.value])
    now_median = statistics.median(now.history or [now.value])
    finding.baseline, finding.current = base_median, now_median
    finding.change = now_median - base_median
    runs = f"median of {len(now.history or [1])} run(s) vs {len(base.history or [1])}"
    if not policy.gate_timings:
        finding.status, finding.note = "reported", f"timing, not gated ({runs}; --gate-latency to gate)"
        return finding
    relative = sign * finding.change / abs(base_median) if base_median else 0.0
    finding.note = f"{runs}, relative change {relative:+.1%}, threshold {policy.timing_threshold:.0%}"
    if relative < -policy.timing_threshold:
        finding.status = "regressed"
    elif relative > policy.timing_threshold:
        finding.status = "improved"
    return finding


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.status in FAILING for f in findings) else 0


def summary(findings: list[Finding], baseline: str) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: regressions named with size and p-value first."""
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.status] = counts.get(finding.status, 0) + 1
    verdict = "❌ regression" if exit_code(findings) else "✅ no regression"
    lines = [f"## harness gate: {verdict}", "", f"Baseline: `{_md(baseline)}`. " +
             ", ".join(f"{count} {status}" for status, count in sorted(counts.items())), ""]
    order = ["new-failure", "regressed", "dropped", "underpowered", "incomparable", "missing", "improved", "fixed", "still-failing", "new", "reported", "pass"]
    lines += ["| Status | Cell | Value | Baseline | Current | Change | Tolerance | p | Note |", "|---|---|---|---|---|---|---|---|---|"]
    for finding in sorted(findings, key=lambda f: (order.index(f.status) if f.status in order else 99, f.cell, f.label)):
        status = f"**{finding.status}**" if finding.status in FAILING else finding.status
        lines.append("| " + " | ".join([
            status, _md(finding.cell), _md(finding.key if finding.key == finding.label else f"{finding.label} {finding.key}"), _num(finding.baseline), _num(finding.current),
            "" if finding.change is None else f"{finding.change:+.4g}", f"{finding.tolerance:g}",
            "" if finding.p_value is None else f"{finding.p_value:.3g}", _md(finding.note),
        ]) + " |")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")
