"""``harness weights import``: the authors' released weights, converted once into a safetensors file.

Users evaluate released models before anything else, but released files come in their framework's own
format (Torch7 ``.t7``, Keras ``.h5``, PyTorch pickles with other key names). The method that knows the
format converts it (`Method.convert_official`); this module checks the result fits the method's network
exactly, writes it as safetensors and keeps the source file's name, format and sha256 in the file's header,
so every later run's provenance can name the release it came from (`imported_from`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .api import Method
from .checkpoints import load_state_into, save_tensors
from .data import sha256_file
from .errors import DataError, UsageError

METADATA_PREFIX = "harness."


@dataclasses.dataclass(frozen=True)
class ImportedWeights:
    """What `import_official` wrote, and from what."""

    out: Path
    source: Path
    source_sha256: str
    tensors: int
    parameters: int


def import_official(method: Method, source: Path, out: Path) -> ImportedWeights:
    """Convert ``source`` (the method's released file) into ``out`` (safetensors), refusing a file that
    does not fill the method's network exactly."""
    declared = method.official_weights
    if declared is not None and not declared.released:
        raise UsageError(f"method {method.name!r}: its authors released no weights ({declared.source}); "
                         f"{declared.route or 'train it with harness train'}")
    source = Path(source).expanduser()
    if not source.is_file():
        raise DataError(f"{source}: no such file (expected {describe_release(method)})")
    if declared is not None and not declared.suffixes and declared.route:
        raise UsageError(f"method {method.name!r}: its released weights ({declared.format}) cannot be read "
                         f"without the original framework; {declared.route}")
    model = method.build()
    if model is None:
        raise UsageError(f"method {method.name!r} has no network to load weights into")
    state = method.convert_official(source)
    load_state_into(model, state, source)  # the conversion must fill the network exactly, or nothing is written
    tensors = {name: value for name, value in model.state_dict().items()}
    digest = sha256_file(source)
    metadata = {
        f"{METADATA_PREFIX}method": method.name,
        f"{METADATA_PREFIX}method_options": json.dumps(method.config, sort_keys=True, default=str),
        f"{METADATA_PREFIX}imported_from": source.name,
        f"{METADATA_PREFIX}source_sha256": digest,
        f"{METADATA_PREFIX}format": declared.format if declared else "torch state dict",
    }
    save_tensors(tensors, out, metadata)
    return ImportedWeights(out=out, source=source, source_sha256=digest, tensors=len(tensors),
                           parameters=sum(value.numel() for value in tensors.values()))


def imported_from(checkpoint: Path | None) -> dict[str, Any] | None:
    """The release a safetensors checkpoint was imported from (its header), or None for other weights."""
    if checkpoint is None or not checkpoint.is_file() or checkpoint.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # noqa: BLE001 - a damaged file fails later, with the loader's own message
        return None
    found = {key.removeprefix(METADATA_PREFIX): value for key, value in metadata.items()
             if key.startswith(METADATA_PREFIX)}
    if "source_sha256" not in found:
        return None
    if "method_options" in found:
        try:
            found["method_options"] = json.loads(found["method_options"])
        except ValueError:
            pass
    return found


def release_of(method: Method, checkpoint: Path | None, checkpoint_sha256: str | None) -> dict[str, Any] | None:
    """Where a run's weights were released: the header of an imported file, or the file itself when it
    is in the released format and converted as it loads; None for weights from elsewhere."""
    found = imported_from(checkpoint)
    if found is not None or checkpoint is None or not method.is_official_file(checkpoint):
        return found
    declared = method.official_weights
    return {"method": method.name, "imported_from": checkpoint.name, "source_sha256": checkpoint_sha256,
            "format": declared.format if declared else "", "converted": "while loading"}


def describe_release(method: Method) -> str:
    """One line: the released format and where it is published."""
    declared = method.official_weights
    if declared is None:
        return f"a weights file of method {method.name!r}"
    return f"{declared.format}, released at {declared.source}"
