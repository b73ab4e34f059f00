"""The one place that reads result records for publishing and gating.

Everything downstream (tables, site, gate) sees `Run` and `Measured` objects, never raw record
JSON, so a change of the record format is absorbed here. Records hold ``record["metrics"][LABEL]``
with the metric's ``"metric"`` name and its ``"label"`` (``NAME@TAG`` for a second configuration of
a metric); the samples file has one row per sample keyed by label.

Per-sample values of a value key come from the metric's ``details["per_sample"][key]`` when the
metric stores them (re-id: one value per query), else from the samples file's column of the label
when the metric has a single value key (PSNR, SSIM: one value per image).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..provenance import canonical_digest
from ..run.store import ResultStore


@dataclasses.dataclass
class Measured:
    """One value of one metric configuration in one run."""

    label: str
    metric: str
    key: str
    value: float | None
    n: int | None
    higher_is_better: bool
    version: str
    params: dict[str, Any]
    convention: dict[str, Any]
    details: dict[str, Any]
    per_sample: dict[str, float] | None

    @property
    def protocol_digest(self) -> str:
        """Digest of everything that makes two values comparable: parameters and convention."""
        return canonical_digest({"metric": self.metric, "params": self.params, "convention": _stable(self.convention)})


@dataclasses.dataclass
class Run:
    """One stored run, reduced to what tables, pages and the gate need."""

    run_id: str
    created: str
    status: str
    task: str
    method: str
    method_version: str
    dataset: str
    dataset_version: str
    split: str
    data_sha256: str | None
    checkpoint_sha256: str | None
    record: dict[str, Any]
    folder: Path | None
    values: list[Measured]

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    def value(self, label_or_metric: str, key: str) -> Measured | None:
        for measured in self.values:
            if measured.key == key and label_or_metric in (measured.label, measured.metric):
                return measured
        return None

    def images(self) -> list[Path]:
        if self.folder is None:
            return []
        return [self.folder / name for name in self.record.get("files", {}).get("images", [])]


def read_store(root: Path | None) -> list[Run]:
    """All runs of a result store, oldest first."""
    store = ResultStore(root)
    runs = []
    for record in store.records():
        folder = store.runs_dir / record["run_id"]
        runs.append(from_record(record, folder if folder.is_dir() else None))
    return runs


def from_record(record: dict[str, Any], folder: Path | None) -> Run:
    """Adapt one record and its samples file."""
    try:
        samples = _read_samples(folder / record.get("files", {}).get("samples", "samples.jsonl")) if folder else []
        values: list[Measured] = []
        for label, entry in (record.get("metrics") or {}).items():
            metric = entry["metric"]
            keys = list(entry.get("values", {}))
            stored = (entry.get("details") or {}).get("per_sample") or {}
            for key, value in entry.get("values", {}).items():
                per_sample = stored.get(key)
                if per_sample is None and len(keys) == 1:
                    per_sample = _column(samples, label)
                values.append(Measured(
                    label=entry["label"], metric=metric, key=key, value=value, n=entry.get("n"),
                    higher_is_better=bool(entry["higher_is_better"]), version=str(entry.get("version", "")),
                    params=entry.get("params") or {}, convention=entry.get("convention") or {},
                    details=entry.get("details") or {}, per_sample=per_sample,
                ))
        method, dataset = record["method"], record["dataset"]
        return Run(
            run_id=record["run_id"], created=record["created"], status=record["status"], task=record.get("task", ""),
            method=method["name"], method_version=str(method.get("version", "")),
            dataset=dataset["name"], dataset_version=str(dataset.get("version", "")), split=dataset["split"],
            data_sha256=dataset.get("data_sha256"), checkpoint_sha256=method.get("checkpoint_sha256"),
            record=record, folder=folder, values=values,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        where = folder / "record.json" if folder else record.get("run_id", "a record")
        raise DataError(f"{where}: not a harness result record (missing or malformed field {exc})") from None


def _read_samples(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    return rows


def _column(rows: list[dict[str, Any]], label: str) -> dict[str, float] | None:
    column = {str(row["id"]): row[label] for row in rows if label in row and "id" in row}
    return column or None


def _stable(convention: dict[str, Any]) -> dict[str, Any]:
    """The convention without library versions: a torch upgrade alone does not change a protocol."""
    return {key: value for key, value in convention.items() if key not in {"torch"}}
