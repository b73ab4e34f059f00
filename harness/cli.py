"""The ``harness`` command line.

Exit codes: 0 success; 1 a run failed (its record is stored with the error); 2 usage or data error
(nothing was run or written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __doc__ as package_doc
from .api import Option, Plugin
from .data import resolve_data_root
from .errors import HarnessError, UsageError
from .plugins import Plugins, get_plugins
from .run.cells import RunSpec, check_pairing, prepare_cell, resolve_device, run_cell
from .run.store import ResultStore, default_results_root
from .train import distributed
from .train.engine import TrainSpec, train
from .train.evaluation import evaluator

EPILOG = """exit codes: 0 success, 1 a run failed (its record is kept), 2 usage or data error (nothing written).
environment: HARNESS_DATA (dataset home), HARNESS_RESULTS (result store), HARNESS_PLUGINS_DIR (extra plugins),
TORCH_HOME (weights in $TORCH_HOME/hub/checkpoints)."""


def parse_key_values(pairs: Sequence[str], flag: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects key=value, got {pair!r}")
        parsed[key.strip()] = value
    return parsed


def parse_metric_options(pairs: Sequence[str]) -> dict[str, dict[str, str]]:
    grouped: dict[str, dict[str, str]] = {}
    for key, value in parse_key_values(pairs, "--metric-option").items():
        metric, dot, param = key.partition(".")
        if not dot or not param:
            raise UsageError(f"--metric-option expects metric.param=value, got {key}={value!r}")
        grouped.setdefault(metric, {})[param] = value
    return grouped


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
    for kind in kinds:
        print(f"{kind}:")
        chosen = [row for row in rows if row["kind"] == kind[:-1]]
        width = max((len(row["name"]) for row in chosen), default=0)
        twidth = max((len(row["tasks"]) for row in chosen), default=0)
        for row in chosen:
            print(f"  {row['name']:<{width}}  {row['tasks']:<{twidth}}  {row['description']}")
    return 0


def describe_options(options: Sequence[Option]) -> list[str]:
    lines = []
    for option in options:
        choices = f" (one of: {', '.join(map(str, option.choices))})" if option.choices else ""
        lines.append(f"  {option.name} = {option.default!r}: {option.help}{choices}")
    return lines or ["  (none)"]


def count_parameters(model: Any) -> int:
    """``parameters()`` yields each tensor once, so weights shared across stages count once."""
    return sum(p.numel() for p in model.parameters())


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
                print(f"parameters: {count_parameters(model):,}")
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


def cmd_plugins(args: argparse.Namespace, plugins: Plugins) -> int:
    infos = sorted(plugins.info.values(), key=lambda info: info.name)
    if args.json:
        print(json.dumps([{**info.__dict__, "ok": info.ok} for info in infos], indent=2))
        return 0
    for info in infos:
        status = "ok" if info.ok else "FAILED"
        version = f" {info.version}" if info.version else ""
        print(f"{info.name}{version} [{status}] from {info.source}")
        for kind, names in sorted(info.provides.items()):
            print(f"    {kind}: {', '.join(names)}")
        if info.error:
            print(f"    error: {info.error}")
    return 0


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
    for metric_name, metric in record["metrics"].items():
        arrow = "↑" if metric["higher_is_better"] else "↓"
        for key, value in metric["values"].items():
            text = format_value(value)
            rows.append((f"{key} {arrow}", text, str(metric["n"])))
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
    lines.append(f"record: {record['path']}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace, plugins: Plugins) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be a positive integer, got {args.limit}")
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
        save_images=args.save_images,
    )
    cell = prepare_cell(spec, plugins)
    store = ResultStore(args.results)
    run = {"cells": 1, "results": str(store.root)}
    plugins.pm.hook.harness_run_started(run=run)
    record = run_cell(cell, plugins, store, progress=not args.json and not args.quiet)
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
            batch_size=args.batch_size or method_cls.default_batch_size,
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


def cmd_results(args: argparse.Namespace, plugins: Plugins) -> int:
    import pandas as pd

    store = ResultStore(args.results)
    index = ["run_id", "created", "method", "dataset", "split", "status"]
    runs: dict[str, dict[str, Any]] = {}
    for row in store.metric_rows():
        if (args.method and row["method"] != args.method) or (args.dataset and row["dataset"] != args.dataset):
            continue
        entry = runs.setdefault(row["run_id"], {key: row[key] for key in index})
        if row["key"] is not None:
            entry[row["key"]] = row["value"]
    table = pd.DataFrame(list(runs.values()))
    if args.format == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(table.to_json(orient="records", indent=2) + "\n")
    elif table.empty:
        print(f"no results in {store.root}")
    else:
        print(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4f}"))
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
                                   "registered, and the error of any plugin that failed to load.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("run", parents=[common], help="evaluate a method on a dataset",
                       description="Evaluate METHOD on DATASET with the dataset's protocol metrics (or --metric), "
                                   "print a table and store a result record with full provenance.",
                       epilog="example: harness run --method s-dsen --dataset rain100h --checkpoint sdsen.safetensors",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, help="method name (see `harness list methods`)")
    p.add_argument("--dataset", required=True, help="dataset name (see `harness list datasets`)")
    p.add_argument("--metric", help="comma-separated metric names (default: the dataset's protocol metrics)")
    p.add_argument("--metric-option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="a metric parameter, e.g. ssim.convention=sdsen-official (repeatable)")
    p.add_argument("--split", help="dataset split (default: the dataset's evaluation split)")
    p.add_argument("--checkpoint", type=Path, help="weights file, a `harness train` output folder, or a method's input path")
    p.add_argument("--untrained", action="store_true", help="allow scoring randomly initialised weights (recorded)")
    p.add_argument("--data-root", type=Path, help="dataset folder (default: $HARNESS_DATA/<name> or ~/.cache/harness/data/<name>)")
    p.add_argument("--limit", type=int, help="score only the first N samples")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
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

    p = sub.add_parser("results", parents=[common], help="list stored results",
                       description="List the stored run records as a table, CSV or JSON (one row per run, one "
                                   "column per metric value).")
    p.add_argument("--results", type=Path, default=None, help="result store")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--method", help="only this method")
    p.add_argument("--dataset", help="only this dataset")
    p.set_defaults(func=cmd_results)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        plugins = get_plugins(args.plugins_dir)
        if args.command != "plugins":
            for failure in plugins.failures():
                print(f"harness: warning: plugin {failure.name} failed to load: {failure.error} "
                      "(see `harness plugins`)", file=sys.stderr)
        return int(args.func(args, plugins) or 0)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"harness: interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
