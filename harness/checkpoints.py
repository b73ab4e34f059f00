"""Safe weight loading: safetensors or ``torch.load(weights_only=True)``, never arbitrary pickles.

Weights are looked up where torch.hub caches them (``$TORCH_HOME/hub/checkpoints/``) under their usual
file names, or taken from an explicit path.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .errors import DataError


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch.hub's cache, honouring ``TORCH_HOME``/``XDG_CACHE_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(filename: str, explicit: str | os.PathLike[str] | None = None, env: str | None = None,
                 option: str | None = None) -> Path:
    """Resolve a weights file: explicit path, then ``$env``, then the torch hub cache.

    Raises `DataError` naming every place looked at and exactly how to pass the path: ``option`` is the
    command-line form that sets ``explicit`` (e.g. ``--metric-option fid.weights=PATH``).
    """
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit).expanduser())
    elif env and os.environ.get(env):
        candidates.append(Path(os.environ[env]).expanduser())
    else:
        candidates.append(hub_checkpoint_dir() / filename)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    ways = [f"`{option}`" if option else "an explicit path", *([f"`{env}=PATH`"] if env else [])]
    how = f"put {filename} in {hub_checkpoint_dir()}, or pass its path: {' or '.join(ways)}"
    raise DataError(f"weights file not found (looked at {looked}); {how}")


def load_state_dict(path: Path) -> dict[str, Any]:
    """Load a state dict from ``.safetensors`` or a tensors-only torch file."""
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(
            f"cannot load checkpoint {path}: {load_failure(exc)} "
            "(expected a .safetensors file or a torch state dict of tensors; pickled objects are refused)"
        ) from None
    # Training checkpoints wrap the weights: {"state_dict": ...} (Lightning) or {"net": ...} (RESCAN family).
    for wrapper in ("state_dict", "net"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise DataError(f"checkpoint {path} holds a {type(state).__name__}, expected a state dict")
    return state


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line, without torch's advice to load
    it with ``weights_only=False`` (which would run any code the file holds): the harness never does."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    if isinstance(exc, pickle.UnpicklingError):
        detail = text.partition("WeightsUnpickler error:")[2].strip() or text.splitlines()[-1]
        detail = re.split(r"\. (?=Please|Check|To )", detail)[0].rstrip(".")
        return f"it is damaged or holds something other than tensors and plain values ({detail})"
    first = text.splitlines()[0].split(". ")[0] if text else ""
    if isinstance(exc, (EOFError, OSError)) or "central directory" in text or "EOF" in text:
        return f"the file is truncated or damaged ({type(exc).__name__}{': ' + first if first else ''})"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_into(model: torch.nn.Module, path: Path) -> None:
    """Load ``path`` into ``model`` strictly, explaining key or shape mismatches."""
    load_state_into(model, load_state_dict(path), path)


def load_state_into(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load the state dict read from ``path`` into ``model`` strictly, explaining key or shape mismatches."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"checkpoint {path} does not fit the model: {misfit(model, state) or str(exc).splitlines()[0]}"
                        ) from None


def misfit(model: torch.nn.Module, state: dict[str, Any], shown: int = 3) -> str:
    """How a state dict fails to fit a model, in one short line: counts of missing, unexpected and
    differently shaped entries, each with its first few names (torch's own message lists every key)."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shaped = [f"{key} {tuple(getattr(state[key], 'shape', ()))} (model {tuple(expected[key].shape)})"
              for key in expected if key in state and tuple(getattr(state[key], "shape", ())) != tuple(expected[key].shape)]
    parts = [f"{len(found)} {what} ({', '.join(found[:shown])}{', ...' if len(found) > shown else ''})"
             for what, found in (("missing", missing), ("unexpected", unexpected), ("of another shape", shaped)) if found]
    return "; ".join(parts) + ("; check the options that shape the network" if parts else "")


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write model weights atomically as safetensors."""
    save_tensors(model.state_dict(), path)


def save_tensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a tensor state dict atomically (``NAME.tmp``, then rename) as safetensors, with ``metadata``
    (string pairs kept in the file's header, e.g. where imported weights came from)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o666 & ~current_umask())  # safetensors writes 0600; the folder's other files follow the umask
    os.replace(tmp, path)


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``os.umask`` sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
