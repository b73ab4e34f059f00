"""The ``harness`` command line.

Exit codes: 0 success; 1 a run failed (its record is stored with the error); 2 usage or data error
(nothing written, unless found mid-run: then the failed record is kept).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __doc__ as package_doc
from .api import Method, Option, Plugin
from .cli_options import parse_key_values, parse_metric_options
from .data import resolve_data_root
from .errors import DataError, HarnessError, Terminated, UsageError
from .models import count_parameters
from .plugins import Plugins, get_plugins
from .publish.commands import add_parsers as add_publish_parsers
from .run.cache import CACHE_ENV, CACHE_MAX_ENV, TIERS, Cache, default_cache_root, parse_size
from .run.cells import RunSpec, check_pairing, execute_cell, plan_cell
from .run.devices import resolve_device
from .run.store import ResultStore, default_results_root
from .run.threads import configure_threads
from .train import distributed
from .train.engine import TrainSpec, train
from .train.evaluation import evaluator
from .weights_import import import_official
from .grid.commands import add_grid_commands

EPILOG = """exit codes: 0 success; 1 a run failed (a method or metric crashed, non-finite predictions: the failed
record is kept) or `harness plugins` found a failed plugin; 2 usage or data error (bad option, missing or corrupt
data/weights: nothing is written, unless the error surfaced after the first sample was scored, then the failed record
is kept and names the file); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM; training saves its last whole step
first); 141 output pipe closed (e.g. `| head`).
environment: HARNESS_DATA (dataset home), HARNESS_RESULTS (result store), HARNESS_CACHE (cache root, default
~/.cache/harness), HARNESS_CACHE_MAX (cache size cap, e.g. 20G), HARNESS_PLUGINS_DIR (extra plugins),
TORCH_HOME (weights in $TORCH_HOME/hub/checkpoints), HARNESS_INCEPTION_WEIGHTS (FID/KID/IS Inception weights
file; or --metric-option fid.weights=PATH)."""

MIN_DESCRIPTION = 20
"""Characters of description `harness list` keeps on a narrow terminal (the tasks column gives way first)."""


# -- listing and introspection -------------------------------------------------------------------
def cmd_list(args: argparse.Namespace, plugins: Plugins) -> int:
    kinds = [args.kind] if args.kind else ["methods", "datasets", "metrics"]
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        registry = getattr(plugins, kind)
        for name in registry:
            cls = registry.get(name)
            if kind == "methods":
                tasks = ", ".join(sorted(cls.tasks))
            elif kind == "datasets":
                tasks = cls.task
            else:
                tasks = "/".join(sorted(cls.outputs)) + (" ↑" if cls.higher_is_better else " ↓")
            rows.append({"kind": kind[:-1], "name": name, "tasks": tasks, "description": cls.summary()})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = shutil.get_terminal_size().columns
    for kind in kinds:
        print(f"{kind}:")
        chosen = [row for row in rows if row["kind"] == kind[:-1]]
        width = max((len(row["name"]) for row in chosen), default=0)
        twidth = max((len(row["tasks"]) for row in chosen), default=0)
        twidth = max(min(twidth, columns - width - 6 - MIN_DESCRIPTION), 8)
        room = max(columns - width - twidth - 6, MIN_DESCRIPTION)
        for row in chosen:
            line = f"  {row['name']:<{width}}  {fit(row['tasks'], twidth):<{twidth}}  {fit(row['description'], room)}"
            print(line.rstrip())
    return 0


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when anything was cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def describe_options(options: Sequence[Option]) -> list[str]:
    lines = []
    for option in options:
        choices = f" (one of: {', '.join(map(str, option.choices))})" if option.choices else ""
        lines.append(f"  {option.name} = {option.default!r}: {option.help}{choices}")
    return lines or ["  (none)"]


def cmd_info(args: argparse.Namespace, plugins: Plugins) -> int:
    found: list[tuple[str, type[Plugin]]] = [
        (kind, getattr(plugins, kind).get(args.name))
        for kind in ("methods", "datasets", "metrics")
        if args.name in getattr(plugins, kind)
    ]
    if not found:
        plugins.methods.canonical(args.name)  # raises with suggestions if nothing matches
    for kind, cls in found:
        registry = getattr(plugins, kind)
        print(f"{cls.name} ({kind[:-1]}, from plugin {registry.owner(cls.name)})")
        aliases = registry.aliases_of(cls.name)
        if aliases:
            print(f"aliases: {', '.join(aliases)}")
        print(f"description: {(cls.description or cls.__doc__ or '').strip()}")
        if cls.paper:
            print(f"paper: {cls.paper}")
        if kind == "methods":
            print(f"tasks: {', '.join(sorted(cls.tasks))}")
            print(f"trainable: {'yes' if cls.trainable() else 'no'}")
            model = cls().build()
            if model is not None:
                print(f"parameters: {count_parameters(model).params:,}")
            print(f"official weights: {describe_official(cls)}")
        elif kind == "datasets":
            print(f"task: {cls.task}")
            print(f"splits: {', '.join(cls.splits)} (default {cls.default_split})")
            print(f"default metrics: {', '.join(cls.default_metrics) or 'none'}")
            if cls.source:
                print(f"source: {cls.source}")
            if cls.layout:
                print("layout:\n" + "\n".join("  " + line for line in cls.layout.strip("\n").splitlines()))
        else:
            print(f"direction: {'higher' if cls.higher_is_better else 'lower'} is better")
            print(f"scores: {', '.join(sorted(cls.outputs))} outputs")
        print("options:" if kind != "metrics" else "parameters:")
        print("\n".join(describe_options(cls.options)))
    return 0


def describe_official(cls: type[Method]) -> str:
    """What `harness info` says of a method's released weights and how the harness reads them."""
    declared = cls.official_weights
    if declared is None:
        return "none known to the harness"
    if not declared.released:
        return f"none released ({declared.source}); {declared.route or 'train it with harness train'}"
    text = f"{declared.format}, released at {declared.source}"
    if declared.suffixes:
        return (f"{text}; `harness weights import {cls.name} FILE` converts a {'/'.join(declared.suffixes)} file "
                "to safetensors (or pass it to `harness run --checkpoint`)")
    return f"{text}; {declared.route or 'the harness loads them as they are'}"


def cmd_weights_import(args: argparse.Namespace, plugins: Plugins) -> int:
    method_cls = plugins.methods.get(args.method)
    method = method_cls(**parse_key_values(args.option, "--option"))
    out = args.out or Path("harness-checkpoints") / f"{method_cls.name}-official" / f"{Path(args.file).stem}.safetensors"
    result = import_official(method, args.file, out)
    if args.json:
        print(json.dumps({"method": method_cls.name, "options": method.config, "out": str(result.out),
                          "source": str(result.source), "source_sha256": result.source_sha256,
                          "tensors": result.tensors, "parameters": result.parameters}, indent=2, default=str))
        return 0
    print(f"imported {result.source} (sha256 {result.source_sha256[:12]}): {result.tensors} tensors, "
          f"{result.parameters:,} values")
    print(f"weights: {result.out}")
    options = "".join(f" --option {item}" for item in args.option)
    print(f"evaluate: harness run --method {method_cls.name}{options} --dataset DATASET --checkpoint {result.out}")
    return 0


def cmd_plugins(args: argparse.Namespace, plugins: Plugins) -> int:
    infos = sorted(plugins.info.values(), key=lambda info: info.name)
    if args.json:
        print(json.dumps([{**info.__dict__, "ok": info.ok} for info in infos], indent=2))
        return 1 if plugins.failures() else 0
    for info in infos:
        status = "ok" if info.ok else "FAILED"
        version = f" {info.version}" if info.version else ""
        print(f"{info.name}{version} [{status}] from {info.source}")
        for kind, names in sorted(info.provides.items()):
            print(f"    {kind}: {', '.join(names)}")
        if info.error:
            print(f"    error: {info.error}")
    return 1 if plugins.failures() else 0


# -- running ------------------------------------------------------------------------------------
def format_value(value: float | None) -> str:
    """Counts (parameters, MACs) with thousands separators, everything else with 4 decimals."""
    if value is None:
        return "n/a"
    if abs(value) >= 1e5 and float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.4f}"


def format_table(record: dict[str, Any]) -> str:
    lines = [f"{record['method']['name']} × {record['dataset']['name']} ({record['dataset']['split']}, "
             f"{record['samples']} samples)"]
    rows = []
    for label, metric in record["metrics"].items():
        arrow = "↑" if metric["higher_is_better"] else "↓"
        for key, value in metric["values"].items():
            text = format_value(value)
            rows.append((f"{value_column(label, metric['metric'], key)} {arrow}", text, str(metric["n"])))
    width = max(len(r[0]) for r in rows) if rows else 6
    vwidth = max([12, *(len(r[1]) for r in rows)])
    lines.append(f"  {'metric':<{width}}  {'value':>{vwidth}}  {'n':>6}")
    lines.extend(f"  {k:<{width}}  {v:>{vwidth}}  {n:>6}" for k, v, n in rows)
    method = record["method"]
    checkpoint = method["checkpoint_sha256"][:12] if method["checkpoint_sha256"] else (
        "UNTRAINED" if method["untrained"] else "none")
    lines.append(
        f"checkpoint sha256 {checkpoint} · data sha256 {record['dataset']['data_sha256'][:12]} · "
        f"harness {record['versions'].get('harness')} · torch {record['versions'].get('torch')} · "
        f"{record['environment']['device']}"
    )
    training = method.get("training")  # records written before training provenance lack the field
    if training:
        lines.append(f"trained {training['steps']} steps on {training['dataset']}/{training['split']} "
                     f"(seed {training['seed']}, batch {training['batch_size']}); options in record.method.training")
    reused = record.get("reused") or {}
    if reused.get("predictions") or reused.get("scores"):
        parts = (["stored predictions (model not run)"] if reused.get("predictions") else []) + (
            [f"stored scores of {', '.join(reused['scores'])}"] if reused.get("scores") else [])
        lines.append("reused: " + "; ".join(parts))
    lines.append(f"record: {record['path']}")
    return "\n".join(lines)


def cache_from_args(args: argparse.Namespace) -> Cache:
    max_bytes = parse_size(args.cache_max_size) if args.cache_max_size else None
    return Cache(max_bytes=max_bytes)


def cmd_run(args: argparse.Namespace, plugins: Plugins) -> int:
    configure_threads(workers=1, override=args.threads)
    spec = RunSpec(
        method=args.method,
        dataset=args.dataset,
        metrics=[m.strip() for m in args.metric.split(",") if m.strip()] if args.metric else None,
        split=args.split,
        checkpoint=args.checkpoint,
        data_root=args.data_root,
        limit=args.limit,
        device=args.device,
        method_options=parse_key_values(args.option, "--option"),
        dataset_options=parse_key_values(args.dataset_option, "--dataset-option"),
        metric_options=parse_metric_options(args.metric_option),
        untrained=args.untrained,
        seed=args.seed,
        batch_size=args.batch_size,
        save_images=args.save_images,
    )
    cell = plan_cell(spec, plugins)
    store = ResultStore(args.results)
    run = {"cells": 1, "results": str(store.root)}
    plugins.pm.hook.harness_run_started(run=run)
    record = execute_cell(cell, plugins, store, cache_from_args(args), progress=not args.json and not args.quiet)
    plugins.pm.hook.harness_run_finished(run=run, records=[record])
    print(json.dumps(record, indent=2) if args.json else format_table(record))
    return 0


def cmd_train(args: argparse.Namespace, plugins: Plugins) -> int:
    method_cls = plugins.methods.get(args.method)
    dataset_cls = plugins.datasets.get(args.dataset)
    if not method_cls.trainable():
        raise UsageError(f"method {method_cls.name!r} has no training recipe")
    check_pairing(method_cls, dataset_cls, args.split)
    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size), ("--eval-every", args.eval_every),
                        ("--checkpoint-every", args.checkpoint_every)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be a positive integer, got {value}")
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {args.workers}")
    method_options = parse_key_values(args.option, "--option")
    dataset_options = parse_key_values(args.dataset_option, "--dataset-option")
    method = method_cls(**method_options)
    dataset = dataset_cls(resolve_data_root(dataset_cls.name, args.data_root), **dataset_options)
    device = resolve_device(args.device)
    rank, world, device = distributed.setup(device)
    try:
        spec = TrainSpec(
            steps=args.steps or method_cls.default_steps,
            batch_size=args.batch_size or method.default_batch_size_for(dataset),
            seed=args.seed,
            split=args.split,
            device=device,
            checkpoint_every=args.checkpoint_every,
            amp=args.amp,
            compile=args.compile,
            workers=args.workers,
            rank=rank,
            world_size=world,
            eval_every=args.eval_every,
            keep_best=args.keep_best,
        )
        evaluate = None
        if args.eval_every:
            evaluate = evaluator(plugins, RunSpec(
                method=method_cls.name, dataset=dataset_cls.name,
                metrics=[m.strip() for m in args.metric.split(",") if m.strip()] if args.metric else None,
                split=args.eval_split, data_root=args.data_root, device=device, limit=args.eval_limit,
                method_options=method_options, dataset_options=dataset_options,
                metric_options=parse_metric_options(args.metric_option), save_images=0,
            ), args.results)
        elif args.metric or args.eval_split or args.keep_best:
            raise UsageError("--metric, --eval-split and --keep-best evaluate during training: pass --eval-every N too")
        out = args.out or Path("harness-checkpoints") / f"{method_cls.name}-{dataset_cls.name}"
        manifest = train(method, dataset, spec, out, progress=not args.quiet, evaluate=evaluate)
    finally:
        distributed.teardown()
    if rank != 0:
        return 0
    last = ", ".join(f"{key} {value:.6f}" for key, value in manifest.get("last_losses", {}).items()) or "no losses"
    print(f"trained {method_cls.name} on {dataset_cls.name} for {manifest['step']} steps "
          f"(batch {spec.batch_size}, seed {spec.seed}, {manifest['precision']}); last {last}")
    print(f"weights: {out / 'model.safetensors'} (sha256 {manifest['weights_sha256'][:12]})")
    if manifest.get("best"):
        best = manifest["best"]
        print(f"best: {out / 'best.safetensors'} ({best['metric']} {best['value']:.4f} at step {best['step']})")
    print(f"evaluate: harness run --method {method_cls.name} --dataset {dataset_cls.name} --checkpoint {out}")
    return 0


def value_column(label: str, metric: str, key: str) -> str:
    """Table column of one value: the value name for a plain label, else the label (plus the value name
    when a metric reports several)."""
    if label == metric:
        return key
    return label if key == metric else f"{label}:{key}"


def differing_options(records: list[dict[str, Any]]) -> dict[str, str]:
    """Per run id, the method options whose values differ between runs of the same method × dataset."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["method"]["name"], record["dataset"]["name"]), []).append(record)
    shown: dict[str, str] = {}
    for group in groups.values():
        options = [json.loads(json.dumps(r["method"]["options"], default=str)) for r in group]
        names = sorted({name for opts in options for name in opts})
        varying = [n for n in names if len({json.dumps(o.get(n), sort_keys=True) for o in options}) > 1]
        for record, opts in zip(group, options):
            shown[record["run_id"]] = " ".join(f"{n}={opts.get(n)}" for n in varying)
    return shown


def checkpoint_label(method: dict[str, Any]) -> str:
    if method["checkpoint_sha256"]:
        return method["checkpoint_sha256"][:12]
    return "UNTRAINED" if method["untrained"] else "-"


def cmd_results(args: argparse.Namespace, plugins: Plugins) -> int:
    import pandas as pd

    store = ResultStore(args.results)
    records = [r for r in store.records()
               if not (args.method and r["method"]["name"] != args.method)
               and not (args.dataset and r["dataset"]["name"] != args.dataset)]
    options = differing_options(records)
    rows = []
    for record in records:
        row: dict[str, Any] = {
            "run_id": record["run_id"], "created": record["created"], "method": record["method"]["name"],
            "dataset": record["dataset"]["name"], "split": record["dataset"]["split"], "status": record["status"],
            "checkpoint": checkpoint_label(record["method"]), "options": options[record["run_id"]],
            "labels": ",".join(record.get("metrics", {})),
        }
        for label, entry in record.get("metrics", {}).items():
            for key, value in entry["values"].items():
                row[value_column(label, entry.get("metric", label), key)] = value
        rows.append(row)
    table = pd.DataFrame(rows)
    if args.format == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(table.to_json(orient="records", indent=2) + "\n")
    elif table.empty:
        print(f"no results in {store.root}")
    else:
        print(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4f}"))
    return 0


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``30m``, ``12h``, ``7d``, ``2w`` or seconds → seconds."""
    number, unit = (text[:-1], text[-1]) if text and text[-1] in DURATION_UNITS else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"--older-than: expected a duration such as 30m, 12h or 7d, got {text!r}") from None
    return value * DURATION_UNITS[unit]


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def cmd_cache(args: argparse.Namespace, plugins: Plugins) -> int:
    cache = Cache()
    if args.action == "ls":
        entries = cache.entries(args.tier)
        if args.json:
            print(json.dumps([e.__dict__ for e in entries], indent=2))
            return 0
        for entry in entries:
            used = dt.datetime.fromtimestamp(entry.used).isoformat(timespec="seconds")
            name = f"{entry.namespace[:12]}/{entry.key[:16]}" if entry.namespace else entry.key[:16]
            print(f"{entry.tier:<12} {name:<30} {format_bytes(entry.bytes):>10}  last used {used}")
        print(f"{len(entries)} entries in {cache.root}")
    elif args.action == "du":
        usage = cache.usage()
        if args.json:
            print(json.dumps(usage, indent=2))
            return 0
        for tier, info in usage.items():
            print(f"{tier:<12} {info['entries']:>8} entries  {format_bytes(info['bytes']):>10}")
        print(f"{'total':<12} {sum(i['entries'] for i in usage.values()):>8} entries  "
              f"{format_bytes(sum(i['bytes'] for i in usage.values())):>10}  ({cache.root})")
    else:
        if args.older_than is None and args.tier is None and args.max_size is None:
            raise UsageError("harness cache prune: say what to remove: --older-than, --tier and/or --max-size")
        removed = cache.prune(
            older_than=parse_duration(args.older_than) if args.older_than else None,
            tier=args.tier,
            max_bytes=parse_size(args.max_size, "--max-size") if args.max_size else None,
        )
        print(f"removed {len(removed)} entries ({format_bytes(sum(e.bytes for e in removed))}) from {cache.root}")
    return 0


# -- data ---------------------------------------------------------------------------------------
def cmd_data_import(args: argparse.Namespace, plugins: Plugins) -> int:
    from .archives import extract

    dataset_cls = plugins.datasets.get(args.name)
    root = resolve_data_root(dataset_cls.name, args.data_root)
    written = extract(args.archive, root)
    top = f" (stripped its top folder {written['stripped_top_folder']}/)" if written["stripped_top_folder"] else ""
    print(f"unpacked {args.archive} into {root}{top}: {written['files']} files, {written['links']} links")
    print(f"check it: harness data check {dataset_cls.name}" + (f" --data-root {root}" if args.data_root else ""))
    return 0


def cmd_data_check(args: argparse.Namespace, plugins: Plugins) -> int:
    dataset_cls = plugins.datasets.get(args.name)
    dataset = dataset_cls(resolve_data_root(dataset_cls.name, args.data_root),
                          **parse_key_values(args.dataset_option, "--dataset-option"))
    found, official = dataset.counts(), dict(dataset.official_counts)
    if not official and not found:
        raise UsageError(f"dataset {dataset_cls.name!r} declares no official counts to check against")
    keys = list(official) + [key for key in found if key not in official]
    width = max(len(key) for key in keys)
    print(f"{dataset_cls.name} at {dataset.root}")
    print(f"  {'':<{width}}  {'found':>8}  {'official':>8}")
    differing = []
    for key in keys:
        have, want = found.get(key), official.get(key)
        mark = "" if want is None or have == want else "  ✗"
        if mark:
            differing.append(key)
        print(f"  {key:<{width}}  {have if have is not None else '-':>8}  {want if want is not None else '-':>8}{mark}")
    for split in dataset_cls.splits:
        dataset.verify(split)
    if differing:
        raise DataError(f"{dataset_cls.name}: {len(differing)} count(s) differ from the official release: {', '.join(differing)}")
    print("layout ok: every split parses and the counts equal the official ones")
    return 0


# -- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    def plugins_dir_option(parser: argparse.ArgumentParser, default: Any) -> argparse.ArgumentParser:
        parser.add_argument("--plugins-dir", type=Path, action="append", default=default, metavar="DIR",
                            help="also load every *.py file in DIR as a plugin (repeatable; see HARNESS_PLUGINS_DIR)")
        return parser

    # Sub-commands accept --plugins-dir too; SUPPRESS keeps them from resetting a value given before the command.
    common = plugins_dir_option(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
    parser = plugins_dir_option(argparse.ArgumentParser(
        prog="harness", description=(package_doc or "").strip().splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ), [])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", parents=[common], help="list methods, datasets and metrics",
                       description="List registered methods (with the tasks they serve), datasets (with their task) "
                                   "and metrics (with what they score and ↑/↓ direction).")
    p.add_argument("kind", nargs="?", choices=["methods", "datasets", "metrics"], help="only this kind")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", parents=[common], help="describe one method, dataset or metric",
                       description="Show the description, paper, tasks, options with defaults and, for a model "
                                   "method, its parameter count.")
    p.add_argument("name", help="a method, dataset or metric name (or alias)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("plugins", parents=[common], help="list loaded plugins, their origin and failures",
                       description="Every plugin, where it came from (core, entry point, plugins dir), what it "
                                   "registered, and the error of any plugin that failed to load or whose name was "
                                   "already taken (both owners named). Exits 1 when any plugin failed.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("run", parents=[common], help="evaluate a method on a dataset",
                       description="Evaluate METHOD on DATASET with the dataset's protocol metrics (or --metric), "
                                   "print a table and store a result record with full provenance.",
                       epilog="example: harness run --method s-dsen --dataset rain100h --checkpoint sdsen.safetensors",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, help="method name (see `harness list methods`)")
    p.add_argument("--dataset", required=True, help="dataset name (see `harness list datasets`)")
    p.add_argument("--metric", help="comma-separated metric labels NAME or NAME@TAG, e.g. ssim,ssim@sdsen-official "
                                    "(default: the dataset's protocol metrics)")
    p.add_argument("--metric-option", action="append", default=[], metavar="LABEL.KEY=VALUE",
                   help="a parameter of one metric label, e.g. ssim@paper.convention=sdsen-official (repeatable)")
    p.add_argument("--split", help="dataset split (default: the dataset's evaluation split)")
    p.add_argument("--checkpoint", type=Path, help="weights file, a `harness train` output folder, or a method's input path")
    p.add_argument("--untrained", action="store_true", help="allow scoring randomly initialised weights (recorded)")
    p.add_argument("--data-root", type=Path, help="dataset folder (default: $HARNESS_DATA/<name> or ~/.cache/harness/data/<name>)")
    p.add_argument("--limit", type=int, help="score only the first N samples")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto: cuda if available)")
    p.add_argument("--batch-size", type=int, help="samples per prediction call (default: the method's)")
    p.add_argument("--seed", type=int, default=0, help="torch seed before the model is built (--untrained weights; default 0)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: the CPUs available to this process)")
    p.add_argument("--cache-max-size", metavar="SIZE",
                   help="cache size cap, e.g. 20G (default $HARNESS_CACHE_MAX, else none); when full, the least "
                        "recently used stored predictions not in use are evicted")
    p.add_argument("--results", type=Path, default=None, help=f"result store (default $HARNESS_RESULTS or {default_results_root()})")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a method option (repeatable)")
    p.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option, e.g. strict=false (repeatable)")
    p.add_argument("--save-images", type=int, default=8, metavar="N", help="predictions saved beside the record (default 8)")
    p.add_argument("--json", action="store_true", help="print the result record as JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", parents=[common], help="train a method with its paper's recipe",
                       description="Train METHOD on DATASET's train split with the method's recipe; writes "
                                   "model.safetensors, state.pt, train_log.jsonl and manifest.json to --out and "
                                   "resumes from the last saved step when re-run after an interruption. Under "
                                   "torchrun it trains data-parallel (--batch-size is the global batch).")
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--steps", type=int, help="optimisation steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--split", default="train", help="split to train on (default train)")
    p.add_argument("--out", type=Path, help="output folder (default harness-checkpoints/<method>-<dataset>)")
    p.add_argument("--checkpoint-every", type=int, help="steps between saves (default steps/10, at most 500)")
    p.add_argument("--data-root", type=Path, help="dataset folder")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a method option (repeatable)")
    p.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option, e.g. strict=false (repeatable)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes preparing batches (default 0)")
    p.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision on CUDA (fp16 uses a gradient scaler)")
    p.add_argument("--compile", action="store_true", help="torch.compile every network of the recipe")
    p.add_argument("--eval-every", type=int, metavar="N", help="evaluate the exported weights every N steps")
    p.add_argument("--eval-split", help="split to evaluate on (default: the dataset's evaluation split)")
    p.add_argument("--eval-limit", type=int, metavar="N", help="evaluate on the first N samples only")
    p.add_argument("--metric", help="comma-separated metrics for --eval-every (default: the dataset's)")
    p.add_argument("--metric-option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="a metric parameter for --eval-every (repeatable)")
    p.add_argument("--keep-best", metavar="VALUE", help="keep the weights scoring best on this metric value "
                                                        "(e.g. psnr) as best.safetensors")
    p.add_argument("--results", type=Path, default=None, help="result store for evaluation records")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("data", parents=[common], help="import an official dataset archive or check a layout",
                       description="`data import NAME ARCHIVE` unpacks an official zip/tar into the dataset's root "
                                   "(refusing entries that would escape it); `data check NAME` verifies the layout "
                                   "and prints its counts against the official ones.")
    data = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = data.add_parser("import", parents=[common], help="unpack an official archive into the dataset root")
    q.add_argument("name", help="dataset name")
    q.add_argument("archive", type=Path, help="the official .zip or .tar(.gz) file")
    q.add_argument("--data-root", type=Path, help="where to unpack (default: $HARNESS_DATA/<name>); must not exist or be empty")
    q.set_defaults(func=cmd_data_import)
    q = data.add_parser("check", parents=[common], help="verify a layout and print its counts against the official ones")
    q.add_argument("name", help="dataset name")
    q.add_argument("--data-root", type=Path, help="dataset folder (default: $HARNESS_DATA/<name>)")
    q.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE", help="a dataset option (repeatable)")
    q.set_defaults(func=cmd_data_check)

    p = sub.add_parser("results", parents=[common], help="list stored results",
                       description="List the stored run records as a table, CSV or JSON (one row per run, one "
                                   "column per metric value).")
    p.add_argument("--results", type=Path, default=None, help="result store")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--method", help="only this method")
    p.add_argument("--dataset", help="only this dataset")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("cache", parents=[common], help="list, size and prune the cache",
                       description=f"The content-addressed cache (${CACHE_ENV}, default {default_cache_root()}): "
                                   "features (Inception features per image), scores (metric values per score key) "
                                   "and predictions (stored model outputs per prediction key). Entries in use by a "
                                   f"running process are never removed. ${CACHE_MAX_ENV} / `run --cache-max-size` cap "
                                   "its size: when full, the least recently used predictions are evicted first.")
    p.add_argument("action", choices=["ls", "du", "prune"])
    p.add_argument("--tier", choices=list(TIERS), help="only this tier (prune: remove all of it unless --older-than)")
    p.add_argument("--older-than", metavar="AGE", help="prune: entries unused for AGE (30m, 12h, 7d)")
    p.add_argument("--max-size", metavar="SIZE", help="prune: evict least recently used entries until the cache fits SIZE")
    p.add_argument("--json", action="store_true", help="machine-readable output (ls, du)")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("weights", parents=[common], help="import a method's officially released weights",
                       description="`weights import METHOD FILE` converts the weights a method's authors released "
                                   "(Torch7 .t7, Keras .h5, PyTorch files with the official layer names; `harness info "
                                   "METHOD` says which) into a safetensors file that `harness run --checkpoint` loads. "
                                   "The conversion must fill the method's network exactly; the source file's name, "
                                   "format and sha256 are kept in the file and in every run record that uses it.")
    weights = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    q = weights.add_parser("import", parents=[common], help="convert an official weights file to safetensors",
                           epilog="example: harness weights import context-encoder paris_inpaintCenter.t7")
    q.add_argument("method", help="method name")
    q.add_argument("file", type=Path, help="the released weights file")
    q.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option shaping the network the file holds (repeatable)")
    q.add_argument("--out", type=Path, help="output file (default harness-checkpoints/<method>-official/<file>.safetensors)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_weights_import)

    add_publish_parsers(sub, common)
    add_grid_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        plugins = get_plugins(args.plugins_dir)
        if args.command != "plugins":
            for failure in plugins.failures():
                print(f"harness: warning: plugin {failure.name} failed: {failure.error} "
                      "(see `harness plugins`)", file=sys.stderr)
        code = int(args.func(args, plugins) or 0)
        sys.stdout.flush()  # a closed pipe surfaces here, inside the handler below, not at interpreter exit
        return code
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated as exc:
        print(f"harness: terminated{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 143
    except KeyboardInterrupt as exc:
        print(f"harness: interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`harness list | head`): stop quietly, as a Unix tool killed by SIGPIPE
        # would. Point stdout at /dev/null so the interpreter's final flush does not raise again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
