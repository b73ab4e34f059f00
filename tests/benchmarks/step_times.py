"""Seconds per training step of each paper suite's learned methods, for the "Reproduce a paper" estimates
in docs/leaderboards.md. Not a test: run it by hand (``python tests/benchmarks/step_times.py OUT.json
[--device cuda] [--methods a,b]``).

Each method trains on a bundled synthetic set at its default batch size and its default (paper) working
resolution: the recipes resize or crop to their own input size, so the bundled sets' pixels cost what the
paper's would, except where noted in the output. A warm-up run (data generation, CUDA and cuDNN set-up)
comes first; the step time is (time of a LONG-step run - time of a SHORT-step run) / (LONG - SHORT)
(default 12 and 2; ``--short 1 --long 3`` on a slow CPU), in one process, so start-up costs cancel.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

MEASURED = {
    # method: (bundled dataset, method options needed to train without downloaded weights or at the paper size)
    "dsen-cnn": ("rain-synth", {}),
    "dsen": ("rain-synth", {}),
    "s-dsen": ("rain-synth", {}),
    "two-stream": ("vireid-synth", {"init": "scratch"}),
    "zero-padding": ("vireid-synth", {"init": "scratch"}),
    "hi-cmd": ("vireid-synth", {"init": "scratch"}),
    "cyclegan": ("translate-synth", {}),
    "sat-g0": ("translate-synth", {}),
    "unit": ("translate-synth", {"load_size": 286}),
    "pg2": ("pose-synth", {}),
    "def-gan": ("pose-synth", {}),
    "spt": ("pose-synth", {}),
    "context-encoder": ("inpaint-synth", {}),
    "nps": ("inpaint-synth", {}),
    "gh": ("inpaint-synth", {}),
    "gh-bpt": ("inpaint-synth", {}),
}


def train_seconds(main, method: str, dataset: str, options: dict, steps: int, out: Path, device: str) -> float:
    args = ["train", "--method", method, "--dataset", dataset, "--steps", str(steps), "--out", str(out),
            "--device", device, "--checkpoint-every", "100000", "--quiet"]
    for key, value in options.items():
        args += ["--option", f"{key}={value}"]
    started = time.perf_counter()
    code = main(args)
    if code != 0:
        raise RuntimeError(f"harness train exited {code}")
    return time.perf_counter() - started


def main_(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="")
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--long", type=int, default=12)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="steps-"))
    for name in ("HARNESS_DATA", "HARNESS_RESULTS", "HARNESS_CACHE"):
        os.environ.setdefault(name, str(work / name.lower()))
    from harness.cli import main

    chosen = [m for m in args.methods.split(",") if m] or list(MEASURED)
    results: dict[str, dict] = {}
    for method in chosen:
        dataset, options = MEASURED[method]
        entry: dict = {"dataset": dataset, "options": options, "device": args.device}
        try:
            train_seconds(main, method, dataset, options, 1, work / f"{method}-warm", args.device)
            short = train_seconds(main, method, dataset, options, args.short, work / f"{method}-short", args.device)
            long = train_seconds(main, method, dataset, options, args.long, work / f"{method}-long", args.device)
            entry.update(short=[args.short, round(short, 3)], long=[args.long, round(long, 3)],
                         step_seconds=round((long - short) / (args.long - args.short), 4))
            manifest = json.loads((work / f"{method}-long" / "manifest.json").read_text())
            entry["batch_size"] = manifest.get("batch_size") or manifest.get("recipe", {}).get("batch_size")
        except BaseException as exc:  # record and go on: one method's missing weights must not stop the rest
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
            entry["trace"] = traceback.format_exc()[-800:]
        results[method] = entry
        print(method, json.dumps({k: v for k, v in entry.items() if k != "trace"}), flush=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
