"""The predictions tier: a cell's predictions stored losslessly, shard by shard, under its prediction key.

Predictions are kept as the tensors the method returned (float images keep what a saved PNG would
lose, embeddings stay embeddings), on the CPU, in safetensors shards of about ``SHARD_BYTES`` each, so
a 10k-image split never sits in memory. Each shard's metadata lists its sample ids in order;
``index.json`` lists the shards and the total count and is written last (a folder without it is not an
entry; the cache only renames complete folders into place anyway).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import DataError

SHARD_BYTES = 64 << 20
INDEX_FILE = "index.json"


def storable(prediction: Any) -> bool:
    """Only tensors are stored (anything else would need a pickle)."""
    return isinstance(prediction, torch.Tensor)


class PredictionWriter:
    """Appends (id, tensor) pairs to shards in ``folder``; `close` writes the index."""

    def __init__(self, folder: Path, shard_bytes: int = SHARD_BYTES) -> None:
        self.folder, self.shard_bytes = folder, shard_bytes
        self.shards: list[dict[str, Any]] = []
        self._ids: list[str] = []
        self._tensors: dict[str, torch.Tensor] = {}
        self._bytes = 0
        self.count = 0

    def add(self, ids: list[str], predictions: list[torch.Tensor]) -> None:
        for sample_id, prediction in zip(ids, predictions):
            tensor = prediction.detach().to("cpu").contiguous()
            self._tensors[str(len(self._ids))] = tensor
            self._ids.append(str(sample_id))
            self._bytes += tensor.numel() * tensor.element_size()
            self.count += 1
            if self._bytes >= self.shard_bytes:
                self._flush()

    def _flush(self) -> None:
        if not self._ids:
            return
        from safetensors.torch import save_file

        name = f"shard-{len(self.shards):05d}.safetensors"
        save_file(self._tensors, str(self.folder / name), metadata={"ids": json.dumps(self._ids)})
        self.shards.append({"file": name, "samples": len(self._ids)})
        self._ids, self._tensors, self._bytes = [], {}, 0

    def close(self, meta: dict[str, Any]) -> None:
        self._flush()
        index = {**meta, "count": self.count, "shards": self.shards}
        (self.folder / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")


def read_index(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / INDEX_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"stored predictions {folder} are unreadable ({exc}); remove them with `harness cache prune`") from None


def iter_predictions(folder: Path) -> Iterator[tuple[list[str], list[torch.Tensor]]]:
    """Yield (ids, predictions) one shard at a time, in the order they were stored."""
    from safetensors import safe_open

    for shard in read_index(folder)["shards"]:
        with safe_open(str(folder / shard["file"]), framework="pt") as handle:
            ids = json.loads(handle.metadata()["ids"])
            yield ids, [handle.get_tensor(str(i)) for i in range(len(ids))]


class PredictionReader:
    """Hands out stored predictions for batches of samples, in dataset order, checking the ids match."""

    def __init__(self, folder: Path) -> None:
        self._shards = iter_predictions(folder)
        self._ids: list[str] = []
        self._predictions: list[torch.Tensor] = []
        self.folder = folder

    def take(self, ids: list[str]) -> list[torch.Tensor]:
        while len(self._ids) < len(ids):
            try:
                more_ids, more = next(self._shards)
            except StopIteration:
                raise DataError(f"stored predictions {self.folder} end before sample {ids[len(self._ids)]!r}") from None
            self._ids.extend(more_ids)
            self._predictions.extend(more)
        got, self._ids = self._ids[: len(ids)], self._ids[len(ids) :]
        taken, self._predictions = self._predictions[: len(ids)], self._predictions[len(ids) :]
        if got != [str(i) for i in ids]:
            raise DataError(f"stored predictions {self.folder} do not match the dataset's samples "
                            f"(stored {got[:3]}..., dataset {ids[:3]}...)")
        return taken
