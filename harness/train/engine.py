"""The core training loop: the method supplies the recipe, the core supplies checkpointing and resume.

An output folder holds ``model.safetensors`` (the weights `harness run --checkpoint FOLDER` loads),
``state.pt`` (step, optimizer and scheduler state, tensors only) and ``manifest.json`` (recipe,
steps, seed, data digest, versions). Re-running the same command continues from the last saved step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..api import Dataset, Method
from ..checkpoints import save_weights
from ..data import digest_files, sha256_file
from ..errors import UsageError
from ..provenance import git_commit, library_versions
from ..run.cells import TRAINED_WEIGHTS, TRAINING_MANIFEST

STATE_FILE = "state.pt"


@dataclasses.dataclass
class TrainSpec:
    steps: int
    batch_size: int
    seed: int = 0
    split: str = "train"
    device: str = "cpu"
    checkpoint_every: int | None = None


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
    }
    return json.loads(json.dumps(identity, default=str))


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def train(method: Method, dataset: Dataset, spec: TrainSpec, out: Path, progress: bool = True) -> dict[str, Any]:
    """Train (or resume training) and return the manifest."""
    dataset.verify(spec.split)
    data_digest = digest_files(dataset.files(spec.split), dataset.root)
    identity = _identity(method, dataset, spec, data_digest)
    manifest_path, state_path = out / TRAINING_MANIFEST, out / STATE_FILE
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if previous is not None and previous.get("identity") != identity:
        changed = sorted(k for k in identity if previous.get("identity", {}).get(k) != identity[k])
        raise UsageError(
            f"--out {out} holds a different training run (differs in: {', '.join(changed)}); "
            "choose another --out or delete that folder"
        )
    if previous is not None and previous.get("completed"):
        return previous

    torch.manual_seed(spec.seed)
    recipe = method.training_recipe(dataset, spec.batch_size, spec.steps, spec.seed, spec.device)
    step, losses = 0, []
    if previous is not None and state_path.is_file():
        state = torch.load(state_path, map_location=spec.device, weights_only=True)
        recipe.model.load_state_dict(state["model"])
        recipe.optimizer.load_state_dict(state["optimizer"])
        if recipe.scheduler is not None:
            recipe.scheduler.load_state_dict(state["scheduler"])
        step, losses = int(state["step"]), list(previous.get("losses", []))

    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "identity": identity,
        "recipe": recipe.description,
        "created": previous["created"] if previous else dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "git": git_commit(),
        "losses": losses,
        "completed": False,
    }
    every = spec.checkpoint_every or max(1, min(500, spec.steps // 10))
    log_every = max(1, spec.steps // 100)

    def save(current: int) -> None:
        torch.save(
            {
                "step": current,
                "model": recipe.model.state_dict(),
                "optimizer": recipe.optimizer.state_dict(),
                "scheduler": recipe.scheduler.state_dict() if recipe.scheduler is not None else {},
            },
            state_path.with_suffix(".tmp"),
        )
        os.replace(state_path.with_suffix(".tmp"), state_path)
        save_weights(recipe.model, out / TRAINED_WEIGHTS)
        manifest.update(step=current, losses=losses, weights_sha256=sha256_file(out / TRAINED_WEIGHTS))
        _write_json(manifest_path, manifest)

    interrupted = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old_handler = signal.signal(signal.SIGTERM, on_term)
    recipe.model.train()
    started = time.perf_counter()
    bar = tqdm(total=spec.steps, initial=step, desc=f"train {method.name}", unit="step", disable=not progress)
    try:
        while step < spec.steps:
            loss = recipe.loss(recipe.batch(step))
            recipe.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            recipe.optimizer.step()
            if recipe.scheduler is not None:
                recipe.scheduler.step()
            step += 1
            if step % log_every == 0 or step == spec.steps:
                losses.append([step, float(loss.detach())])
                bar.set_postfix(loss=f"{float(loss.detach()):.5f}")
            bar.update(1)
            if step % every == 0 and step < spec.steps:
                save(step)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, old_handler)
    manifest["seconds"] = round((previous or {}).get("seconds", 0.0) + time.perf_counter() - started, 3)
    manifest["completed"] = step >= spec.steps
    save(step)
    if interrupted:
        raise KeyboardInterrupt(f"training interrupted at step {step}; re-run the same command to resume")
    return manifest
