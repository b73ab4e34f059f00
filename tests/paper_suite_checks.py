"""Checks shared by the per-suite end-to-end tests (tests/test_paper_suite_*.py): the dry-run's cells as
comparable tuples, a paper suite's grid outcomes, and the published board read back as JSON, with the
requirement of issue #22 that every linked paper row has a measured value in each column where the paper
prints a number, with a Δ or the reason there is none."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.publish.definitions import load_all


def data_home() -> Path:
    return Path(os.environ["HARNESS_DATA"])


def cell_key(method: str, options: dict, dataset: str, split: str = "test") -> tuple[str, str, str, str]:
    return method, json.dumps(options, sort_keys=True), dataset, split


def plan(cli, *args: str) -> dict:
    code, out, err = cli("grid", *args, "--dry-run", "--json")
    assert code == 0, err
    return json.loads(out)


def planned_cells(cli, suite: str) -> list[tuple[str, str, str, str]]:
    """The dry-run's cells as (method, options as JSON, dataset, split), in the plan's order."""
    return [cell_key(c["method"], c["options"], c["dataset"], c["split"]) for c in plan(cli, "--suite", suite)["cells"]]


def grid(cli, suite: str, *args: str) -> dict[tuple[str, str, str], dict]:
    """Run a paper suite in this process; its outcomes by (method, options as JSON, dataset)."""
    code, out, err = cli("grid", "--suite", suite, "--workers", "0", "--json", *args)
    assert code == 0, err
    return {(o["method"], json.dumps(o["options"], sort_keys=True), o["dataset"]): o for o in json.loads(out)}


def published(cli, board: str) -> dict[str, list[dict]]:
    """`harness publish --leaderboard BOARD --format json`: dataset → rows."""
    code, out, err = cli("publish", "--leaderboard", board, "--format", "json")
    assert code == 0, err
    return {table["dataset"]: table["rows"] for table in json.loads(out)["leaderboards"][0]["tables"]}


def measured_rows(rows: list[dict], method: str, options: dict[str, Any] | None = None) -> list[dict]:
    """Measured rows of ``method`` whose run has every one of ``options``."""
    return [r for r in rows if r["kind"] == "measured" and r["run"]["options"] is not None
            and r["method"].split(" ")[0] == method
            and all(r["run"]["options"].get(k) == v for k, v in (options or {}).items())]


def explained(cell: dict) -> bool:
    """A Δ, or no Δ with its reason: incomparable (``reason``) or comparable without one (``delta_note``)."""
    if cell["delta"] is not None:
        return True
    return bool(cell["reason"]) if not cell["comparable"] else "no Δ" in cell["delta_note"]


def assert_every_linked_row_measured(cli, board_name: str) -> dict[str, list[dict]]:
    """For every reported row with a ``harness_method``, on every dataset where it prints a number: one measured
    row of that configuration holds a value in each column where the published page shows the paper's number,
    with a Δ or the reason for none. Returns the published tables."""
    tables = published(cli, board_name)
    board = next(b for b in load_all() if b.name == board_name)
    checked = 0
    for row in board.reported:
        if not row.harness_method:
            continue
        for dataset, values in row.values.items():
            if not any(v is not None for v in values.values()):
                continue
            rows = tables[dataset]
            paper = [r for r in rows if r["kind"] == "reported" and r["method"] == row.method
                     and r["source"]["table"] == row.source.table and r["source"]["row"] == row.source.row]
            assert len(paper) == 1, (row.method, dataset)
            columns = [column for column, cell in paper[0]["cells"].items() if cell["value"] is not None]
            assert columns, (row.method, dataset)
            found = measured_rows(rows, row.harness_method, dict(row.harness_options))
            assert found, f"no measured {row.harness_method} {dict(row.harness_options)} row on {dataset}"
            for column in columns:
                cells = [r["cells"].get(column) for r in found]
                assert any(c is not None and c["value"] is not None for c in cells), (row.method, dataset, column)
                for cell in cells:
                    if cell is not None and cell["value"] is not None:
                        assert explained(cell), (row.method, dataset, column, cell)
                checked += 1
    assert checked
    return tables
