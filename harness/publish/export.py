"""Markdown (CI summaries, pull-request comments) and JSON (machines) renderings of the leaderboards."""

from __future__ import annotations

import json
from typing import Any

from .tables import Board, Cell, Row


def _escape(text: str) -> str:
    """Markdown table cells: no pipes, no raw HTML, one line."""
    return (str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", " "))


def _cell(cell: Cell | None, precision: int) -> str:
    if cell is None or cell.value is None:
        return ""
    text = f"{cell.value:.{precision}f}"
    if cell.best:
        text = f"**{text}**"
    if cell.ci:
        text += f" [{cell.ci.low:.{precision}f}, {cell.ci.high:.{precision}f}]"
    if cell.parts is not None:
        text += f" (mean of {len(cell.parts)} × {cell.over})"
    if cell.delta is not None:
        text += f" (Δ {cell.delta:+.{precision}f})"
    if not cell.comparable:
        text += " (incomparable)"
    if cell.tied:
        text += " ≈"
    if cell.too_few:
        text += " (too few samples to tell)"
    return _escape(text)


def _options_apart(rows: list[Row]) -> dict[int, str]:
    """Per row (by id), the method options whose values differ between measured rows of one method name:
    the html page lists every option under the name, a Markdown row would otherwise look like its twin."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.run is not None:
            groups.setdefault(row.method, []).append(row)
    shown: dict[int, str] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        options = [json.loads(json.dumps(row.run.record["method"].get("options") or {}, default=str))
                   for row in group if row.run is not None]
        names = sorted({name for opts in options for name in opts})
        varying = [n for n in names if len({json.dumps(o.get(n), sort_keys=True) for o in options}) > 1]
        for row, opts in zip(group, options):
            if varying:
                shown[id(row)] = " (" + ", ".join(f"{n}={json.dumps(opts.get(n))}" for n in varying) + ")"
    return shown


def markdown(boards: list[Board]) -> str:
    lines: list[str] = []
    for board in boards:
        lb = board.leaderboard
        lines += [f"## {_escape(lb.title)}", ""]
        for table in board.tables:
            lines += [f"### {_escape(table.title)}", ""]
            header = ["Method", "Kind", *(f"{c.title} {'↑' if c.higher_is_better else '↓'}" + (f" [{c.convention}]" if c.convention else "")
                                          for c in table.columns)]
            lines.append("| " + " | ".join(map(_escape, header)) + " |")
            lines.append("|" + "---|" * len(header))
            apart = _options_apart(table.rows)
            for row in table.rows:
                kind = row.kind + "".join(f", {badge}" for badge in row.badges)
                if row.reported:
                    kind += f" ({row.reported.source.table})"
                cells = [_cell(row.cells.get(c.column), c.precision) for c in table.columns]
                name = row.method + apart.get(id(row), "")
                lines.append("| " + " | ".join([_escape(name), _escape(kind), *cells]) + " |")
            lines.append("")
    lines.append("Measured values: mean [95% bootstrap interval]; Δ against the paper only where the conventions match; "
                 "≈: not significantly different from the best measured row; too few samples to tell: too few shared "
                 "samples with the best measured row for the paired test to reach p < 0.05 (n ≤ 5).")
    return "\n".join(lines) + "\n"


def as_json(boards: list[Board]) -> str:
    payload: dict[str, Any] = {"format": "harness-leaderboards/1", "leaderboards": [board.as_dict() for board in boards]}
    return json.dumps(payload, indent=2, default=str) + "\n"
