"""What a person sees of a grid: the live table of jobs, and the results table at the end (rich)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Iterable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .events import GridState, JobState

STYLES = {"queued": "dim", "running": "cyan", "done": "green", "cached": "blue", "failed": "bold red"}


def _progress(job: JobState) -> str:
    if job.state == "running":
        return f"{job.done}/{job.total}" if job.total else str(job.done)
    if job.state in ("done", "cached") and job.total:
        return f"{job.total}/{job.total}"
    return ""


def jobs_table(state: GridState) -> Group:
    """The jobs with their state and progress, under a one-line summary."""
    counts = state.counts()
    summary = " · ".join(f"{count} {name}" for name, count in counts.items() if count)
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("job", "state", "progress", "seconds", "note"):
        table.add_column(column, no_wrap=column != "note")
    for job in state.jobs.values():
        seconds = f"{job.seconds:.1f}" if job.seconds is not None else ""
        table.add_row(job.label, Text(job.state, style=STYLES[job.state]), _progress(job), seconds, job.note)
    return Group(Text(f"grid {state.grid_id} ({state.executor}): {summary}"), table)


class LiveView:
    """A rich live table on a terminal; elsewhere one plain line per change of a job's state."""

    def __init__(self, state: GridState, console: Console, quiet: bool = False) -> None:
        self.state, self.console, self.quiet = state, console, quiet
        self.live: Live | None = None
        self._shown: dict[str, str] = {}

    def __enter__(self) -> "LiveView":
        if self.console.is_terminal and not self.quiet:
            self.live = Live(jobs_table(self.state), console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(jobs_table(self.state))
            self.live.__exit__(*exc)

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(jobs_table(self.state))
            return
        if self.quiet:
            return
        for job in self.state.jobs.values():
            if self._shown.get(job.id) != job.state and job.state != "queued":
                self._shown[job.id] = job.state
                note = f" ({job.note})" if job.note else ""
                self.console.print(f"[{job.state}] {job.label}{note}", markup=False, highlight=False)


def results_table(records: Iterable[dict[str, Any]], title: str = "") -> Table:
    """Methods as rows, dataset × metric value as columns (with ↑/↓), the best of each column in bold."""
    columns: dict[tuple[str, str], bool] = {}
    values: dict[str, dict[tuple[str, str], float | None]] = defaultdict(dict)
    for record in records:
        dataset = record["dataset"]["name"]
        for label, metric in record.get("metrics", {}).items():
            tag = label.partition("@")[2]  # ssim and ssim@official both report "ssim": keep them apart
            for key, value in metric["values"].items():
                column = (dataset, f"{key}@{tag}" if tag else key)
                columns.setdefault(column, bool(metric["higher_is_better"]))
                values[record["method"]["name"]][column] = value
    table = Table(title=title or None)
    table.add_column("method")
    for (dataset, key), higher in columns.items():
        table.add_column(f"{dataset}\n{key} {'↑' if higher else '↓'}", justify="right")
    best = {}
    for column, higher in columns.items():
        present = [row[column] for row in values.values() if row.get(column) is not None]
        if len(present) > 1:
            best[column] = max(present) if higher else min(present)
    for method, row in values.items():
        cells = []
        for column in columns:
            value = row.get(column)
            text = "—" if value is None else _format(value)
            cells.append(Text(text, style="bold") if value is not None and best.get(column) == value else text)
        table.add_row(method, *cells)
    return table


def _format(value: float) -> str:
    if abs(value) >= 1e5 and float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.4f}"


def watch(load: Any, console: Console, interval: float = 1.0) -> None:
    """Re-render ``load()`` until the grid finishes (`harness status --watch`)."""
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            state = load()
            live.update(jobs_table(state) if state is not None else Text("no grid has run here yet"))
            if state is None or state.finished is not None or state.driver_alive() is False:
                return
            time.sleep(interval)
