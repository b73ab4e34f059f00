"""The core training loop: the method's recipe does the steps, the core does everything around them.

An output folder holds exactly the files listed in `OWN_FILES`:

- ``manifest.json``: what was trained (identity: method, options, data digest, steps, batch, seed,
  precision, processes), the recipe's description, a curve summary, evaluations and the best score;
- ``state.pt``: step, every network/optimizer/scheduler/pool/EMA state of the recipe, the fp16 loss
  scale and the Python/NumPy/torch/CUDA RNG states; tensors and plain values only;
- ``model.safetensors``: the exported weights ``harness run --checkpoint FOLDER`` loads
  (``best.safetensors`` too with ``keep_best``);
- ``train_log.jsonl``: one line per step with every loss and learning rate, plus evaluation lines;
- ``.train.lock``: locked (`harness.locks`) while a run writes the folder, so a second run on the same
  ``--out`` is refused naming the first; a killed run's lock passes to the next run by itself.

Re-running the same command continues from the last saved step and ends bit-identical to a run that
was never interrupted, ``kill -9`` included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from .. import locks
from ..api import Dataset, Method
from ..checkpoints import load_failure, save_tensors
from ..data import digest_files, sha256_file
from ..errors import DataError, Terminated, UsageError
from ..provenance import git_commit, library_versions
from ..run.cells import TRAINED_WEIGHTS, TRAINING_MANIFEST
from . import distributed, rng
from .context import TrainContext

STATE_FILE = "state.pt"
LOG_FILE = "train_log.jsonl"
BEST_WEIGHTS = "best.safetensors"
LOCK_FILE = ".train.lock"
OWN_FILES = frozenset({TRAINING_MANIFEST, STATE_FILE, TRAINED_WEIGHTS, LOG_FILE, BEST_WEIGHTS})
CURVE_POINTS = 100

Evaluator = Callable[[Path], dict[str, dict[str, Any]]]
"""Scores a weights file; returns ``{metric: {"values": {...}, "higher_is_better": bool}}``."""


@dataclasses.dataclass
class TrainSpec:
    steps: int
    batch_size: int
    seed: int = 0
    split: str = "train"
    device: str = "cpu"
    checkpoint_every: int | None = None
    amp: str | None = None
    compile: bool = False
    workers: int = 0
    rank: int = 0
    world_size: int = 1
    eval_every: int | None = None
    keep_best: str | None = None
    """A metric value name (e.g. ``psnr``): keep the weights that scored best on it as ``best.safetensors``."""


def _identity(method: Method, dataset: Dataset, spec: TrainSpec, data_digest: str) -> dict[str, Any]:
    """What must match for a folder to be resumed rather than refused (JSON-normalised, as stored)."""
    identity = {
        "method": method.name,
        "method_options": method.config,
        "dataset": dataset.name,
        "dataset_options": dataset.config,
        "split": spec.split,
        "data_sha256": data_digest,
        "steps": spec.steps,
        "batch_size": spec.batch_size,
        "seed": spec.seed,
        "amp": spec.amp,
        "compile": spec.compile,
        "processes": spec.world_size,
    }
    return json.loads(json.dumps(identity, default=str))


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def check_out_folder(out: Path) -> dict[str, Any] | None:
    """The previous manifest in ``out`` (``None`` for a new or empty folder); refuses a folder holding
    anything a training manifest does not explain, so nothing of the user's is ever overwritten."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise UsageError(f"--out {out} is a file, expected a folder for the training output")
    manifest_path = out / TRAINING_MANIFEST
    explained = OWN_FILES | {name + ".tmp" for name in OWN_FILES} if manifest_path.is_file() else frozenset()
    explained |= {LOCK_FILE}
    unexplained = sorted(entry.name for entry in out.iterdir() if entry.name not in explained)
    if unexplained:
        what = "no manifest.json" if not manifest_path.is_file() else "files a training run does not write"
        raise UsageError(
            f"--out {out} holds {', '.join(unexplained[:8])}{' ...' if len(unexplained) > 8 else ''} "
            f"({what}); refusing to write there: choose a new or empty folder"
        )
    try:
        return json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path} is not valid JSON ({exc}); delete the folder to start over") from None


def load_state(path: Path, device: str) -> dict[str, Any]:
    """Read ``state.pt`` with ``weights_only=True``; a truncated file or one holding pickled objects
    is a `DataError` naming it."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        raise DataError(
            f"cannot resume from {path}: {load_failure(exc)}. Expected a training state of tensors and plain values "
            "written by `harness train` (pickled objects are refused; a truncated file cannot be read); "
            "delete it to restart from the last step the manifest records, or delete the folder"
        ) from None
    if not isinstance(state, dict) or not {"step", "recipe", "rng"} <= set(state):
        raise DataError(f"cannot resume from {path}: it is not a `harness train` state (no step/recipe/rng entries)")
    return state


def _read_log(path: Path, upto: int) -> list[str]:
    """Log lines of steps ≤ ``upto`` (a line cut short by a kill is dropped)."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("step", upto + 1) <= upto:
            kept.append(line)
    return kept


def _curve_point(step: int, losses: dict[str, float]) -> list[Any]:
    return [step, {key: round(value, 7) for key, value in losses.items()}]


def lock_out_folder(out: Path, what: dict[str, Any]) -> Any:
    """Hold ``out``'s lock for this run, or refuse naming the process that holds it."""
    check_out_folder(out)  # a folder of the user's is refused before anything is created in it
    handle = locks.acquire(out / LOCK_FILE, what)
    if handle is None:
        holder = locks.holder(out / LOCK_FILE)
        raise UsageError(
            f"--out {out} is in use by another training run ({locks.describe(holder)}: "
            f"{holder.get('method', '?')} on {holder.get('dataset', '?')}); wait for it to finish or stop it, "
            "or choose another --out"
        )
    return handle


def train(
    method: Method,
    dataset: Dataset,
    spec: TrainSpec,
    out: Path,
    progress: bool = True,
    evaluate: Evaluator | None = None,
) -> dict[str, Any]:
    """Train (or resume training) and return the manifest; ``out`` is locked for the whole run."""
    dataset.verify(spec.split)
    created = not out.exists()
    lock = lock_out_folder(out, {"method": method.name, "dataset": dataset.name}) if spec.rank == 0 else None
    try:
        return _train(method, dataset, spec, out, progress, evaluate)
    finally:
        if lock is not None:
            locks.release(lock)
            _remove_if_only_the_lock(out, created)


def _remove_if_only_the_lock(out: Path, created: bool) -> None:
    """A run refused before it wrote anything (a bad option found by the context) leaves no folder behind
    that it made only to hold its lock."""
    if created and out.is_dir() and [p.name for p in out.iterdir()] == [LOCK_FILE]:
        (out / LOCK_FILE).unlink(missing_ok=True)
        out.rmdir()


def _train(method: Method, dataset: Dataset, spec: TrainSpec, out: Path, progress: bool,
           evaluate: Evaluator | None) -> dict[str, Any]:
    data_digest = digest_files(dataset.files(spec.split), dataset.root, dataset.derived_digest(spec.split))
    identity = _identity(method, dataset, spec, data_digest)
    previous = check_out_folder(out)
    if previous is not None and previous.get("identity") != identity:
        changed = sorted(k for k in identity if previous.get("identity", {}).get(k) != identity[k])
        raise UsageError(
            f"--out {out} holds a different training run (differs in: {', '.join(changed)}); "
            "choose another --out or delete that folder"
        )
    if previous is not None and previous.get("completed"):
        return previous
    if spec.keep_best and evaluate is None:
        raise UsageError("--keep-best needs periodic evaluation: pass --eval-every N (and --metric)")

    distributed.barrier()  # every rank has checked the folder before rank 0 writes to it
    writer = spec.rank == 0
    rng.seed_all(spec.seed)
    context = TrainContext(
        batch_size=spec.batch_size, steps=spec.steps, seed=spec.seed, device=spec.device, amp=spec.amp,
        compile=spec.compile, workers=spec.workers, rank=spec.rank, world_size=spec.world_size,
    )
    recipe = method.training_recipe(dataset, context)
    if spec.compile:
        for network in recipe.networks.values():
            network.compile()

    manifest_path, state_path, log_path = out / TRAINING_MANIFEST, out / STATE_FILE, out / LOG_FILE
    step, best = 0, None
    if previous is not None and state_path.is_file():
        state = load_state(state_path, spec.device)
        try:
            recipe.load_state_dict(state["recipe"])
            rng.restore(state["rng"])
            if context.scaler is not None and state.get("scaler"):
                context.scaler.load_state_dict(state["scaler"])
        except (DataError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise DataError(f"cannot resume from {state_path}: it does not fit {method.name}'s recipe ({exc})") from None
        step, best = int(state["step"]), state.get("best") or None
    old = previous or {}
    curve = [point for point in old.get("curve", []) if point[0] <= step]
    evaluations = [entry for entry in old.get("evaluations", []) if entry["step"] <= step]

    manifest: dict[str, Any] = {
        "identity": identity,
        "recipe": recipe.description,
        "created": old.get("created") or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "git": git_commit(),
        "precision": spec.amp or "fp32",
        "compile": spec.compile,
        "processes": spec.world_size,
        "workers": spec.workers,
        "step": step,
        "curve": curve,
        "evaluations": evaluations,
        "best": best,
        "completed": False,
    }
    log: TextIO | None = None
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        kept = _read_log(log_path, step)
        log_path.write_text("".join(line + "\n" for line in kept))
        log = open(log_path, "a")
        _write_json(manifest_path, manifest)
    distributed.barrier()

    every = spec.checkpoint_every or max(1, min(500, spec.steps // 10))
    curve_every = max(1, spec.steps // CURVE_POINTS)

    def save(current: int) -> None:
        state = {"step": current, "recipe": recipe.state_dict(), "rng": rng.capture(), "best": best,
                 "scaler": context.scaler.state_dict() if context.scaler is not None else {}}
        if not writer:
            return
        tmp = state_path.with_name(STATE_FILE + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, state_path)
        save_tensors(recipe.export(), out / TRAINED_WEIGHTS)
        manifest.update(step=current, curve=curve, evaluations=evaluations, best=best,
                        weights_sha256=sha256_file(out / TRAINED_WEIGHTS))
        _write_json(manifest_path, manifest)

    def run_evaluation(current: int) -> None:
        nonlocal best
        if not writer or evaluate is None:
            return
        weights = out / TRAINED_WEIGHTS
        save_tensors(recipe.export(), weights)
        saved = rng.capture()  # evaluation builds a model: it must not shift training's random stream
        try:
            results = evaluate(weights)
        finally:
            rng.restore(saved)
            recipe.train()
        entry = {"step": current, "metrics": {name: r["values"] for name, r in results.items()}}
        evaluations.append(entry)
        assert log is not None
        log.write(json.dumps({"step": current, "eval": entry["metrics"]}) + "\n")
        log.flush()
        if spec.keep_best:
            score = _find_score(results, spec.keep_best)
            if score is not None and _better(score, best):
                best = {"metric": spec.keep_best, "value": score[0], "step": current, "higher_is_better": score[1]}
                shutil.copyfile(weights, out / BEST_WEIGHTS)

    # A stop request (SIGTERM, first Ctrl-C) lets the running step finish, so the state saved is the
    # state after a whole step. A KeyboardInterrupt raised inside a step (second Ctrl-C, a plugin) may
    # leave it half done (D updated, G not): then nothing is saved and the last checkpoint stands.
    # The exit status then tells the two apart: 130 after Ctrl-C, 143 after SIGTERM (`Terminated`).
    stop_requested = False
    stop_signal = signal.SIGINT

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested, stop_signal
        if stop_requested:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        stop_requested, stop_signal = True, signum

    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    recipe.train()
    started = time.perf_counter()
    bar = tqdm(total=spec.steps, initial=step, desc=f"train {method.name}", unit="step",
               disable=not progress or not writer)
    torn = False
    try:
        while step < spec.steps and not distributed.broadcast_flag(stop_requested):
            losses = {key: float(value) for key, value in recipe.train_step(step).items()}
            context.end_step()
            step += 1
            losses = distributed.mean_values(losses)
            if log is not None:
                log.write(json.dumps({"step": step, "losses": losses, "lr": recipe.learning_rates()}) + "\n")
                log.flush()
            if step % curve_every == 0 or step == spec.steps:
                curve.append(_curve_point(step, losses))
            bar.set_postfix({key: f"{value:.4g}" for key, value in list(losses.items())[:4]}, refresh=False)
            bar.update(1)
            if spec.eval_every and (step % spec.eval_every == 0 or step == spec.steps):
                run_evaluation(step)
            if step % every == 0 and step < spec.steps:
                save(step)
    except KeyboardInterrupt as exc:
        torn = True
        if isinstance(exc, Terminated):
            stop_signal = signal.SIGTERM
    finally:
        bar.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if log is not None:
            log.close()
    if torn:
        last = int(json.loads(manifest_path.read_text())["step"]) if writer else 0
        raise _stopped(
            stop_signal, f"training interrupted during step {step + 1}; re-run the same command to resume from step {last}"
        )
    manifest["seconds"] = round(old.get("seconds", 0.0) + time.perf_counter() - started, 3)
    manifest["completed"] = step >= spec.steps
    manifest["last_losses"] = curve[-1][1] if curve else {}
    save(step)
    distributed.barrier()
    if not manifest["completed"]:
        raise _stopped(stop_signal, f"training stopped at step {step}; re-run the same command to resume")
    return manifest


def _stopped(signum: int, message: str) -> KeyboardInterrupt:
    """The interruption to raise for the signal that stopped training."""
    return Terminated(message) if signum == signal.SIGTERM else KeyboardInterrupt(message)


def _better(score: tuple[float, bool], best: dict[str, Any] | None) -> bool:
    value, higher_is_better = score
    if best is None:
        return True
    return value > best["value"] if higher_is_better else value < best["value"]


def _find_score(results: dict[str, dict[str, Any]], name: str) -> tuple[float, bool] | None:
    """The value called ``name`` in any metric's results, with that metric's direction."""
    for result in results.values():
        if name in result["values"]:
            value = result["values"][name]
            return None if value is None else (float(value), bool(result["higher_is_better"]))
    known = sorted(key for result in results.values() for key in result["values"])
    raise UsageError(f"--keep-best {name}: no evaluated metric reports it (values: {', '.join(known) or 'none'})")
