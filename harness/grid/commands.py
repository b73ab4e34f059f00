"""The grid's sub-commands: `harness grid`, `harness suites`, `harness status`, `harness demo`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..api import Executor
from ..cli_options import parse_key_values, parse_metric_options
from ..errors import UsageError
from ..plugins import Plugins
from ..run.store import ResultStore, check_results_root, default_results_root
from .driver import GridPlan, GridRequest, GridRun, plan_grid
from .events import latest_grid, running_grids
from .paper_commands import list_paper_suites, run_paper_suite
from .papers import find_paper_suite
from .suite import MetricEntry, Suite, load_suite, shipped_suites, suite_from_plugins
from .view import jobs_table, results_table, watch

DEMO_SUITE = "quickstart"


def console() -> Console:
    """Rich output on a terminal; plain, wide text when piped (logs, tests)."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def make_executor(plugins: Plugins, name: str, options: dict[str, Any]) -> Executor:
    cls = plugins.executors.get(name)
    return cls(**options)


def executor_options(args: argparse.Namespace) -> dict[str, Any]:

    options: dict[str, Any] = parse_key_values(args.executor_option, "--executor-option")
    if args.workers is not None:
        options["workers"] = args.workers
    if args.ray_address is not None:
        options["address"] = args.ray_address
    return options


def build_suite(args: argparse.Namespace, plugins: Plugins) -> tuple[Suite, bool]:
    """The suite file, or every compatible pair of the installed plugins (then missing data is skipped)."""

    metric_params = parse_metric_options(args.metric_option)
    metrics = None
    if args.metric:
        metrics = tuple(MetricEntry(label, metric_params.get(label, {}))
                        for label in (m.strip() for m in args.metric.split(",")) if label)
    elif metric_params:
        raise UsageError("--metric-option needs --metric (the metrics it parameterises)")
    if args.suite:
        if args.checkpoint:
            raise UsageError("--checkpoint METHOD=PATH is for grids without --suite; a suite names its checkpoints")
        suite = load_suite(args.suite)
        if metrics is None:
            return suite, False
        datasets = tuple(dataclasses.replace(entry, metrics=None) for entry in suite.datasets)  # --metric wins
        return Suite(suite.name, suite.description, suite.methods, datasets, metrics, suite.source), False
    checkpoints = {plugins.methods.canonical(k): Path(v).expanduser()
                   for k, v in parse_key_values(args.checkpoint, "--checkpoint").items()}
    return suite_from_plugins(plugins, checkpoints, metrics), True


def cmd_grid(args: argparse.Namespace, plugins: Plugins) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be a positive integer, got {args.limit}")
    def request_for(suite: Suite, from_plugins: bool = False) -> GridRequest:
        return GridRequest(
            suite=suite, results=args.results or default_results_root(), methods=args.method, datasets=args.dataset,
            tasks=args.task, split=args.split, limit=args.limit, device=args.device, force=args.force,
            rerun_failed=args.rerun_failed, skip_missing_data=from_plugins, plugins_dirs=tuple(args.plugins_dir or ()),
        )

    paper = find_paper_suite(args.suite) if args.suite and args.suite not in shipped_suites() else None
    if paper is not None:
        if args.metric or args.metric_option or args.split:
            raise UsageError(f"--suite {paper.name} is a paper suite: its cells' metrics and splits are the "
                             "paper's (drop --metric, --metric-option and --split)")
        return run_paper_suite(paper, args, plugins, run_grid, request_for)
    if args.untrained or args.data_root or args.dataset_option:
        raise UsageError("--untrained, --data-root and --dataset-option are for paper suites (`harness suites` lists them); "
                         "a suite file sets `untrained: true` and `data_root` per entry")
    if args.dry_run and args.json:
        raise UsageError("--json with --dry-run is for paper suites; a suite file's plan prints as a table")
    suite, from_plugins = build_suite(args, plugins)
    return run_grid(request_for(suite, from_plugins), args, plugins)


def run_grid(request: GridRequest, args: argparse.Namespace, plugins: Plugins, skipped: list[dict] | None = None,
             skipped_labels: list[tuple[str, str]] | None = None) -> int:
    """Run a planned grid; ``skipped`` cells (a paper suite's, without data or weights) are reported with
    the outcomes and do not change the exit status."""
    out = console()
    store = ResultStore(request.results)
    store.sync_index()
    executor = make_executor(plugins, args.executor, executor_options(args))
    plan = plan_grid(request, plugins, store)
    for line in plan.skipped:
        print(f"harness: left out (no data): {line}", file=sys.stderr)
    if args.dry_run:
        out.print(plan_table(plan))
        return 0
    run = GridRun(plan, request, plugins, store, executor, out, quiet=args.quiet or args.json)
    code = run.run()
    if args.json:
        print(json.dumps([{"method": c.spec.method, "options": c.spec.method_options, "dataset": c.spec.dataset,
                           "dataset_options": c.spec.dataset_options, "state": run.state.jobs[c.id].state,
                           "note": run.state.jobs[c.id].note,
                           "metrics": {k: m["values"] for k, m in (c.record or {}).get("metrics", {}).items()}}
                          for c in plan.cells] + list(skipped or []), indent=2))
        return code
    records = run.records()
    if records:
        out.print(results_table(records, title=suite_title(request.suite)))
        out.print(f"results: {store.root}", markup=False)
    counts = run.state.counts()
    out.print(" · ".join([f"{n} {state}" for state, n in counts.items() if n]
                         + ([f"{len(skipped_labels)} skipped"] if skipped_labels else [])))
    for label, reason in skipped_labels or []:
        out.print(f"skipped: {label}: {reason}", markup=False)
    for job in run.state.jobs.values():
        if job.state == "failed":
            out.print(f"failed: {job.label}: {job.note}", markup=False)
    return code


def suite_title(suite: Suite) -> str:
    return f"suite {suite.name}"


def plan_table(plan: GridPlan) -> Table:
    table = Table(title="plan (nothing was run)", show_edge=False, box=None)
    for column in ("job", "state", "note"):
        table.add_column(column)
    for step in plan.trains.values():
        table.add_row(step.label, "trained" if step.done else "to train", str(step.out))
    for cell in plan.cells:
        state = {"queued": "to run", "cached": "cached", "failed": "failed"}[cell.state]
        table.add_row(cell.label, state, cell.note)
    return table


def cmd_suites(args: argparse.Namespace, plugins: Plugins) -> int:
    for name, path in sorted(shipped_suites().items()):
        suite = load_suite(str(path))
        if args.name and args.name != name:
            continue
        if args.name:
            print(path.read_text(), end="")
            return 0
        print(f"{name}: {suite.description}")
        print(f"    methods: {', '.join(m.name for m in suite.methods)}; "
              f"datasets: {', '.join(d.name for d in suite.datasets)}; file: {path}")
    if list_paper_suites(args.name):
        return 0
    if args.name:
        raise UsageError(f"no shipped or paper suite {args.name!r}; shipped: {', '.join(sorted(shipped_suites()))}; "
                         "paper suites: the leaderboard names (`harness suites`)")
    return 0


def cmd_status(args: argparse.Namespace, plugins: Plugins) -> int:
    root = check_results_root(args.results or default_results_root())
    out = console()
    if args.watch:
        watch(lambda: latest_grid(root), out)
    state = latest_grid(root)
    if state is None:
        out.print(f"no grid has run in {root}")
        return 0
    out.print(jobs_table(state))
    others = [grid for grid in running_grids(root) if grid.grid_id != state.grid_id]
    for grid in others:  # another driver on the same store (each claims the jobs it runs)
        counts = " · ".join(f"{n} {name}" for name, n in grid.counts().items() if n)
        out.print(f"also running: grid {grid.grid_id}, driver pid {grid.pid} on {grid.host} ({counts})")
    alive = state.driver_alive()
    if state.finished is not None:
        out.print(f"finished {state.finished} (exit {state.exit_code})")
    elif alive:
        out.print(f"running: driver pid {state.pid} on {state.host}")
    elif alive is None:
        out.print(f"driver pid {state.pid} runs on {state.host} (cannot check from here)")
    else:
        out.print(f"interrupted: driver pid {state.pid} is gone; re-run the same command to finish the grid")
    return 0


def cmd_demo(args: argparse.Namespace, plugins: Plugins) -> int:
    from ..publish.commands import publish_site

    request = GridRequest(suite=load_suite(DEMO_SUITE), results=args.results or default_results_root(),
                          plugins_dirs=tuple(args.plugins_dir or ()))
    code = run_grid(request, args, plugins)
    publish_site(plugins, request.results, args.site)
    return code


def add_grid_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    def executor_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workers", type=int, help="local executor: worker processes (0 = in this process)")
        p.add_argument("--results", type=Path, default=None,
                       help=f"result store (default $HARNESS_RESULTS or {default_results_root()})")
        p.add_argument("--quiet", action="store_true", help="no live view")

    p = sub.add_parser(
        "grid", parents=[common], help="run every compatible method × dataset cell, or a suite",
        description="Run every compatible (method, dataset) pair of the installed plugins (methods needing weights "
                    "only with --checkpoint METHOD=PATH; datasets without local data are left out), or a suite "
                    "(--suite NAME|FILE). Stored cells are skipped as cached; failures are recorded and the grid "
                    "goes on (exit 1 if any cell failed).",
        epilog="example: harness grid --suite quickstart --workers 2",
    )
    p.add_argument("--suite", help="a shipped suite name, a paper suite (a leaderboard's name: its paper's table "
                                   "cells; see `harness suites`) or a suite YAML file")
    p.add_argument("--method", help="only methods matching these comma-separated names or globs")
    p.add_argument("--dataset", help="only datasets matching these comma-separated names or globs")
    p.add_argument("--task", help="only these comma-separated tasks")
    p.add_argument("--metric", help="comma-separated metrics (default: the suite's, else each dataset's protocol)")
    p.add_argument("--metric-option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="a metric parameter (repeatable; with --metric)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="METHOD=PATH",
                   help="weights for a method (repeatable; grids without --suite, and paper suites, where PATH may "
                        "hold a dataset option such as {trial}: one checkpoint per RegDB trial)")
    p.add_argument("--data-root", action="append", default=[], metavar="DATASET=PATH",
                   help="paper suites: where a dataset lives (default $HARNESS_DATA/DATASET; repeatable)")
    p.add_argument("--dataset-option", action="append", default=[], metavar="DATASET.OPTION=VALUE",
                   help="paper suites: a dataset option for that dataset's cells, e.g. sysu-mm01.perm_file=PATH "
                        "(repeatable; recorded with each run)")
    p.add_argument("--untrained", action="store_true",
                   help="paper suites: score seeded random weights for cells whose method needs trained weights "
                        "and has none (recorded as untrained; for checking the pipeline, not the paper)")
    p.add_argument("--split", help="dataset split for every cell (default: each dataset's evaluation split)")
    p.add_argument("--limit", type=int, help="score only the first N samples of each cell")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when available), cpu or cuda; with CUDA the local executor runs one worker per GPU")
    p.add_argument("--executor", default="local", help="where cells run: local (default), ray, slurm, or a plugin's")
    p.add_argument("--executor-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an executor option, e.g. partition=gpu or max_parallel=8 (repeatable; docs/grid.md "
                        "lists each executor's options)")
    p.add_argument("--ray-address", help="ray executor: cluster address (default: start a local cluster)")
    p.add_argument("--force", action="store_true", help="run every cell again, even stored ones")
    p.add_argument("--rerun-failed", action="store_true", help="run again the cells whose last run failed")
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is cached; run nothing")
    p.add_argument("--json", action="store_true",
                   help="print the cells' outcomes as JSON (paper suites: with --dry-run, the plan)")
    executor_flags(p)
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("suites", parents=[common], help="list the suites shipped with the harness",
                       description="List shipped suites and the paper suites derived from the leaderboards (usable as "
                                   "`harness grid --suite NAME`); with NAME, print it (a paper suite: its cells).")
    p.add_argument("name", nargs="?", help="print this suite's YAML")
    p.set_defaults(func=cmd_suites)

    p = sub.add_parser("status", parents=[common], help="show the newest grid's progress (from another terminal)",
                       description="Render the newest grid of a result store from its events log and the workers' "
                                   "progress files: each job's state and progress, and whether the driver still runs.")
    p.add_argument("--results", type=Path, default=None, help="result store")
    p.add_argument("--watch", action="store_true", help="keep refreshing until the grid finishes")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", parents=[common], help="run the quickstart suite on bundled data",
                       description="Train each learned method of the `quickstart` suite for a small fixed budget on "
                                   "bundled data, evaluate every cell, print the table and publish the leaderboard "
                                   "site (--site). A second run is cached.")
    executor_flags(p)
    p.add_argument("--site", type=Path, default=Path("harness-site"),
                   help="where the leaderboard site is written (default harness-site; open its index.html)")
    p.set_defaults(func=cmd_demo, executor="local", executor_option=[], ray_address=None, dry_run=False, json=False)
