"""`harness grid --suite <leaderboard>` and the paper suites' part of `harness suites`."""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cli_options import parse_key_values
from ..errors import UsageError
from ..plugins import Plugins
from .papers import (
    CellCheck,
    PaperCell,
    PaperSuite,
    check_cell,
    paper_suites,
    runnable_suite,
    why_no_suite,
)


def _patterns(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _chosen(cell: PaperCell, args: argparse.Namespace, plugins: Plugins) -> bool:
    methods, datasets, tasks = _patterns(args.method), _patterns(args.dataset), set(_patterns(args.task))
    return ((not methods or any(fnmatch.fnmatchcase(cell.method, p) for p in methods))
            and (not datasets or any(fnmatch.fnmatchcase(cell.dataset, p) for p in datasets))
            and (not tasks or plugins.datasets.get(cell.dataset).task in tasks))


def check_paper_cells(paper: PaperSuite, args: argparse.Namespace, plugins: Plugins) -> list[CellCheck]:
    """Each chosen cell of the suite, with whether its data and weights are present."""
    checkpoints = {plugins.methods.canonical(k): v for k, v in parse_key_values(args.checkpoint, "--checkpoint").items()}
    extra: dict[str, dict[str, str]] = {}
    for key, value in parse_key_values(args.dataset_option, "--dataset-option").items():
        dataset, dot, option = key.rpartition(".")
        if not dot or not dataset or not option:
            raise UsageError(f"--dataset-option expects DATASET.OPTION=VALUE, got {key}={value}")
        extra.setdefault(plugins.datasets.canonical(dataset), {})[option] = value
    roots = {plugins.datasets.canonical(k): Path(v).expanduser()
             for k, v in parse_key_values(args.data_root, "--data-root").items()}
    cells = [_with_options(cell, extra.get(cell.dataset, {}))
             for cell in paper.cells if _chosen(cell, args, plugins)]
    if not cells:
        raise UsageError(f"no cell of paper suite {paper.name} matches the filters")
    return [check_cell(cell, plugins, roots, checkpoints, args.untrained) for cell in cells]


def _with_options(cell: PaperCell, given: dict[str, str]) -> PaperCell:
    """A cell with the user's dataset options (e.g. where the official gallery file lives); the options the
    table fixes (the trial of a mean) cannot be changed."""
    fixed = sorted(set(given) & set(cell.dataset_options))
    if fixed:
        raise UsageError(f"--dataset-option {cell.dataset}.{fixed[0]}: the paper suite sets it per cell "
                         f"(use --dataset {cell.dataset} and the suite's cells instead)")
    return dataclasses.replace(cell, dataset_options={**cell.dataset_options, **given}) if given else cell


def describe_cell(check: CellCheck) -> list[str]:
    cell = check.cell
    metrics = "; ".join(f"{m.label} {json.dumps(dict(m.params), sort_keys=True)}" if m.params else m.label
                        for m in cell.metrics)
    conventions = ", ".join(f"{k}: {v or 'metric default'}" for k, v in cell.conventions.items())
    lines = [f"{cell.label()}  [split {cell.split}]  {'can run' if check.runnable else 'skipped'}",
             f"    fills:       {'; '.join(cell.fills)}",
             f"    metrics:     {metrics}",
             f"    conventions: {conventions}"]
    if cell.requirements:
        lines.append(f"    needs:       {'; '.join(cell.requirements)} (else the value is incomparable)")
    lines += [f"    data:        {'present' if check.data_ok else 'missing'}: {check.data_note}",
              f"    weights:     {check.weights}: {check.weights_note}",
              f"    training:    {check.training}"]
    return lines


def print_plan(paper: PaperSuite, checks: list[CellCheck], as_json: bool) -> None:
    runnable = sum(check.runnable for check in checks)
    if as_json:
        print(json.dumps({"suite": paper.name, "leaderboard": paper.board.name, "tables": paper.tables,
                          "cells": [check.as_dict() for check in checks]}, indent=2))
        return
    print(f"paper suite {paper.name}: leaderboard {paper.board.name} ({paper.board.path}); fills {', '.join(paper.tables)}")
    print(f"{len(checks)} cells: {runnable} can run, {len(checks) - runnable} skipped (nothing was run)")
    for check in checks:
        print("\n".join(describe_cell(check)))


RunGrid = Callable[..., int]


def run_paper_suite(paper: PaperSuite, args: argparse.Namespace, plugins: Plugins, run_grid: RunGrid,
                    request_for: Callable[[Any], Any]) -> int:
    """Dry-run: every cell with what it needs. Otherwise: run the cells that can run, name the rest."""
    checks = check_paper_cells(paper, args, plugins)
    if args.dry_run:
        print_plan(paper, checks, args.json)
        return 0
    skipped = [{"method": c.cell.method, "options": dict(c.cell.options), "dataset": c.cell.dataset,
                "dataset_options": dict(c.cell.dataset_options), "state": "skipped", "note": c.skip_reason}
               for c in checks if not c.runnable]
    suite = runnable_suite(paper, checks, args.untrained)
    if suite is None:
        if args.json:
            print(json.dumps(skipped, indent=2))
        else:
            for check in checks:
                print(f"skipped: {check.cell.label()}: {check.skip_reason}")
            print(f"0 cells of paper suite {paper.name} can run; {len(skipped)} skipped")
        return 0
    labels = [(c.cell.label(), c.skip_reason) for c in checks if not c.runnable]
    return run_grid(request_for(suite), args, plugins, skipped=skipped, skipped_labels=labels)


def list_paper_suites(name: str | None) -> bool:
    """Print the paper suites (all, or ``name``'s cells); True when ``name`` was one."""
    suites = paper_suites()
    if name is not None:
        if name not in suites:
            return False
        paper = suites[name]
        if paper is None:
            print(f"{name}: no paper suite: {why_no_suite(name)}")
            return True
        print(f"# paper suite {name}: derived from leaderboard {name} ({paper.board.path}); fills {', '.join(paper.tables)}")
        for cell in paper.cells:
            print(f"{cell.label()}  [split {cell.split}]  fills {'; '.join(cell.fills)}")
        return True
    print("\npaper suites (derived from the leaderboards: every linked reported row × every dataset it has numbers on):")
    for board, paper in suites.items():
        if paper is None:
            print(f"{board}: no paper suite: {why_no_suite(board)}")
            continue
        methods = ", ".join(dict.fromkeys(c.method for c in paper.cells))
        datasets = ", ".join(dict.fromkeys(c.dataset for c in paper.cells))
        print(f"{board}: leaderboard {board}, fills {', '.join(paper.tables)}: {len(paper.cells)} cells")
        print(f"    methods: {methods}; datasets: {datasets}")
    return False
