"""The `leaderboards`, `publish` and `gate` sub-commands (registered by `harness.cli`)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError
from ..plugins import Plugins
from ..run.store import default_results_root
from . import definitions, export, gate, site, tables
from .records import Run, read_store


def _versions(plugins: Plugins) -> dict[tuple[str, str], str]:
    found = {}
    for kind, registry in (("method", plugins.methods), ("metric", plugins.metrics), ("dataset", plugins.datasets)):
        for name in registry:
            found[(kind, name)] = str(registry.get(name).version)
    return found


def _descriptions(plugins: Plugins) -> dict[tuple[str, str], str]:
    found = {}
    for kind, registry in (("method", plugins.methods), ("metric", plugins.metrics), ("dataset", plugins.datasets)):
        for name in registry:
            cls = registry.get(name)
            found[(kind, name)] = (cls.description or cls.__doc__ or "").strip()
    return found


def cmd_leaderboards(args: argparse.Namespace, plugins: Plugins) -> int:
    boards = definitions.load_all(args.leaderboards)
    if args.action == "check":
        problems = _check_names(boards, plugins)
        errors = _unlinked_rows(boards, plugins)
        for board in boards:
            linked = sum(1 for row in board.reported if row.harness_method)
            print(f"ok  {board.name}: {len(board.datasets)} dataset(s), {len(board.metrics)} column(s), "
                  f"{len(board.reported)} reported row(s), {linked} linked to a harness method  ({board.path})")
        for problem in problems:
            print(f"note {problem}")
        for error in errors:
            print(f"error {error}")
        if errors:
            print(f"{len(errors)} reported row(s) name an installed method without linking it: add harness_method "
                  "(and harness_options) so measured runs get a Δ, or unlinked: WHY")
            return 1
        print(f"{len(boards)} leaderboard definition(s) valid")
        return 0
    for board in boards:
        datasets = ", ".join(d.name for d in board.datasets)
        print(f"{board.name:<24} {board.task:<18} {len(board.reported):>3} reported  {datasets}")
        print(f"{'':<24} {board.title}")
    return 0


def _check_names(boards: list[definitions.Leaderboard], plugins: Plugins) -> list[str]:
    """Names a definition uses that no installed plugin provides (fine for datasets still to come; printed as notes)."""
    notes = []
    for board in boards:
        for dataset in board.datasets:
            if dataset.name not in plugins.datasets:
                notes.append(f"{board.name}: dataset {dataset.name!r} has no installed plugin (reported rows only)")
        for row in board.reported:
            if row.harness_method and row.harness_method not in plugins.methods:
                notes.append(f"{board.name}: reported row {row.method!r} names method {row.harness_method!r}, not installed")
    return notes


def _unlinked_rows(boards: list[definitions.Leaderboard], plugins: Plugins) -> list[str]:
    """Reported rows whose method name is an installed method's name or alias, yet carry neither a
    ``harness_method`` link nor an ``unlinked`` reason: their measured runs could never get a Δ."""
    known: dict[str, str] = {}
    for name in plugins.methods:
        cls = plugins.methods.get(name)
        for alias in (cls.name, *cls.aliases):
            known[_squash(alias)] = cls.name
    errors = []
    for board in boards:
        for row in board.reported:
            if row.harness_method or row.unlinked:
                continue
            words = [_squash(word) for word in re.split(r"[^\w]+", unicodedata.normalize("NFKC", row.method)) if word]
            spans = {"".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, min(len(words), i + 3) + 1)}
            hits = sorted({known[span] for span in spans if span in known})
            if hits:
                errors.append(f"{board.name}: reported row {row.method!r} ({row.source.table}) names method "
                              f"{' / '.join(hits)}, but has no harness_method (or unlinked: why)")
    return errors


def _squash(name: str) -> str:
    """Lower-case letters and digits only (NFKC first, so PG² is pg2): 'Two stream' and 'two-stream' meet."""
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKC", name).lower())


def _select(boards: list[definitions.Leaderboard], names: list[str] | None) -> list[definitions.Leaderboard]:
    if not names:
        return boards
    known = {board.name: board for board in boards}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"--leaderboard {', '.join(unknown)}: unknown; defined: {', '.join(known)}")
    return [known[name] for name in names]


def cmd_publish(args: argparse.Namespace, plugins: Plugins) -> int:
    boards = _select(definitions.load_all(args.leaderboards), args.leaderboard)
    runs = read_store(args.results)
    versions = _versions(plugins)
    built = [tables.build(board, runs, versions) for board in boards]
    if args.format == "markdown":
        _emit(export.markdown(built), args.out)
        return 0
    if args.format == "json":
        _emit(export.as_json(built), args.out)
        return 0
    if args.out is None:
        raise UsageError("--out DIR is required for the html site (or use --format markdown/json to print)")
    _write_html(plugins, built, runs, args.out)
    return 0


def publish_site(plugins: Plugins, results: Path | None, out: Path) -> None:
    """Every shipped leaderboard over the store at ``results``, as the html site in ``out`` (for `harness demo`)."""
    runs = read_store(results)
    versions = _versions(plugins)
    _write_html(plugins, [tables.build(board, runs, versions) for board in definitions.load_all(())], runs, out)


def _write_html(plugins: Plugins, built: list[Any], runs: list[Run], out: Path) -> None:
    pages = site.write_site(built, runs, out, descriptions=_descriptions(plugins), gallery=_gallery_loader(plugins))
    print(f"wrote {len(pages)} pages to {out} ({len(built)} leaderboards, {len(runs)} runs); open {out / 'index.html'}")


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


def _gallery_loader(plugins: Plugins):
    """Inputs and ground truths of the saved predictions, read again from the run's dataset when it is at hand."""
    from ..run.store import _safe_name

    def load(run: Run, stems: list[str]) -> dict[str, dict[str, Any]]:
        if run.dataset not in plugins.datasets or run.task not in plugins.tasks:
            return {}
        task = plugins.tasks.get(run.task)
        dataset_cls = plugins.datasets.get(run.dataset)
        info = run.record["dataset"]
        root = Path(info["root"])
        if not root.exists():
            return {}
        dataset = dataset_cls(root, **(info.get("options") or {}))
        wanted, found = set(stems), {}
        for sample in dataset.samples(run.split):
            stem = _safe_name(str(sample["id"]))
            if stem in wanted:
                found[stem] = {"input": _picture(sample.get(task.inputs[0]) if task.inputs else None),
                               "target": _picture(sample.get(task.target) if task.target else None)}
                if len(found) == len(wanted):
                    break
        return found

    return load


def _picture(value: Any) -> Any:
    """``value`` if it is an image tensor (C, H, W) with 1 or 3 channels, else ``None``: a task's first input
    may be keypoints or descriptors (descriptor inversion), which the gallery cannot show."""
    import torch

    if isinstance(value, torch.Tensor) and value.dim() == 3 and value.shape[0] in (1, 3):
        return value
    return None


def cmd_gate(args: argparse.Namespace, plugins: Plugins) -> int:
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha expects a significance level between 0 and 1, got {args.alpha:g}")
    if args.merge and args.export is None:
        raise UsageError("--merge folds another baseline into one being written: give it with --export FILE")
    current = gate.cells_from_runs(read_store(args.results))
    if args.export is not None:
        if not current:
            raise DataError(f"no results in {args.results or default_results_root()} to export")
        current = gate.merge_worse(current, [gate.load_baseline(path) for path in args.merge])
        args.export.parent.mkdir(parents=True, exist_ok=True)
        args.export.write_text(json.dumps(gate.export(current), indent=1, default=str) + "\n")
        merged = f", each value the worse of it and {len(args.merge)} merged baseline(s)" if args.merge else ""
        print(f"wrote baseline of {len(current)} cell(s) to {args.export}{merged}")
        for line in gate.underpowered_warnings(current, args.alpha):
            print(f"harness: warning: {line}", file=sys.stderr)
        return 0
    if args.baseline is None:
        raise UsageError("give --baseline PATH (a results directory or an exported JSON file), or --export PATH")
    baseline = gate.load_baseline(args.baseline)
    boards = definitions.load_all(args.leaderboards)
    tolerances: dict[str, float] = {}
    report_only: set[str] = set()
    for board in boards:
        for spec in board.metrics:
            tolerances[spec.key] = max(tolerances.get(spec.key, 0.0), spec.tolerance)
            if spec.report_only:
                report_only.add(spec.metric)
    for pair in args.tolerance:
        name, sep, value = pair.partition("=")
        try:
            tolerances[name.strip()] = float(value)
            if not sep or not name.strip() or float(value) < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"--tolerance expects METRIC=NUMBER >= 0, got {pair!r}") from None
    report_only.update(args.report_only)
    policy = gate.Policy(tolerances, report_only, args.gate_latency, args.latency_threshold, args.alpha,
                         args.require_all, args.min_samples_policy)
    findings = gate.compare(baseline, current, policy)
    text = gate.summary(findings, str(args.baseline))
    sys.stdout.write(text)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    for target in filter(None, [args.summary, Path(step_summary) if step_summary else None]):
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text)
    return gate.exit_code(findings)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    leaderboards_option = argparse.ArgumentParser(add_help=False)
    leaderboards_option.add_argument("--leaderboards", type=Path, action="append", default=[], metavar="DIR",
                                     help="also read the leaderboard definitions (*.yaml) in DIR (repeatable)")
    results_option = argparse.ArgumentParser(add_help=False)
    results_option.add_argument("--results", type=Path, default=None,
                                help=f"result store (default $HARNESS_RESULTS or {default_results_root()})")

    p = sub.add_parser("leaderboards", parents=[common, leaderboards_option], help="list or check leaderboard definitions",
                       description="List the leaderboard definitions (shipped ones plus --leaderboards DIR), or `check` "
                                   "that every definition is valid (exit 2 naming the file and field if not).")
    p.add_argument("action", nargs="?", choices=["list", "check"], default="list")
    p.set_defaults(func=cmd_leaderboards)

    p = sub.add_parser("publish", parents=[common, leaderboards_option, results_option],
                       help="render leaderboards and results as a static site, Markdown or JSON",
                       description="Join the stored results with the papers' reported numbers and write a static site "
                                   "(open OUT/index.html from disk; no network), or Markdown / JSON tables.",
                       epilog="example: harness publish --out site/ ; harness publish --format markdown >> $GITHUB_STEP_SUMMARY")
    p.add_argument("--out", type=Path, help="output folder for html (required), or file for markdown/json (default stdout)")
    p.add_argument("--format", choices=["html", "markdown", "json"], default="html")
    p.add_argument("--leaderboard", action="append", metavar="NAME", help="only this leaderboard (repeatable)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("gate", parents=[common, leaderboards_option, results_option],
                       help="fail when results regressed against a baseline",
                       description="Compare the current results with a baseline per (method, dataset, metric label), "
                                   "direction-aware, with tolerances and a paired significance test on per-sample values "
                                   "(too few samples for the test: see --min-samples-policy). "
                                   "Exit 0: no regression; 1: a regression or new failure; 2: usage or harness error. "
                                   "Writes a Markdown summary (also to $GITHUB_STEP_SUMMARY when set).",
                       epilog="example: harness gate --export baseline.json ; harness gate --baseline baseline.json --tolerance psnr=0.05")
    p.add_argument("--baseline", type=Path, help="a results directory or a JSON file written by --export")
    p.add_argument("--export", type=Path, metavar="FILE", help="write the current results as a baseline JSON file and exit")
    p.add_argument("--merge", type=Path, action="append", default=[], metavar="BASELINE",
                   help="with --export: a baseline built on another machine (results directory or JSON file); each "
                        "exported value becomes the worse of the two, so the baseline holds on both kinds of CPU "
                        "(training on tiny sets turns their float differences into real-looking changes). Cells "
                        "not in the current results are left out (repeatable)")
    p.add_argument("--tolerance", action="append", default=[], metavar="METRIC=NUMBER",
                   help="allowed drop for a value key, label or metric (default: the leaderboards' tolerance, else 0)")
    p.add_argument("--report-only", action="append", default=[], metavar="METRIC",
                   help="report this metric without gating it (timings; the leaderboards mark latency)")
    p.add_argument("--gate-latency", action="store_true", help="gate timing metrics too: median over runs, relative threshold")
    p.add_argument("--latency-threshold", type=float, default=0.2, metavar="FRACTION",
                   help="relative slowdown of the median counted as a regression with --gate-latency (default 0.2)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired test (default 0.05)")
    p.add_argument("--require-all", action="store_true",
                   help="fail when a baseline cell is missing from the results (status 'dropped'); without it such "
                        "cells are listed as 'missing'. For CI on a fixed suite: a cell whose identity changed (a new "
                        "method option, say) needs a new baseline rather than going unchecked")
    p.add_argument("--min-samples-policy", choices=gate.MIN_SAMPLES_POLICIES, default="tolerance",
                   help="when a value has too few paired samples for the test to ever reach --alpha (2/2^n >= alpha: "
                        "5 or fewer at 0.05): 'tolerance' judges a change beyond the tolerance by the tolerance alone "
                        "(default), 'fail' fails the value whatever the change (the suite is too small to gate), "
                        "'pass' lets any change pass (noted in the summary)")
    p.add_argument("--summary", type=Path, metavar="FILE", help="also append the Markdown summary to FILE")
    p.set_defaults(func=cmd_gate)
