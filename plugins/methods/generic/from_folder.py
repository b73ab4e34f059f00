"""`from-folder`: score images computed elsewhere (another codebase, a paper's released results).

The folder (option ``path=DIR``, or ``--checkpoint DIR``) holds one output image per test sample,
directly inside it. Each sample id is matched to a file name by the first rule that finds any file:

1. with option ``pattern``: exactly ``pattern.format(id=<id>, num=<id as int>)``, e.g.
   ``rain-{num:03d}.png`` or ``Derained-Rain100H-rain-{num:03d}.png``;
2. a file whose stem is the id itself (``7.png``; the form harness writes), any image suffix;
3. for a numeric id: a stem made of that number with optional leading zeros, at most one word prefix
   and one word suffix and JORDER's ``x2`` (``007.png``, ``rain-007.png``, ``norain-7x2.png``,
   ``7_derained.png``).

Strict by design: two files matching one id (``7.png`` and ``7.jpg``, or ``rain-007.png`` next to
``norain-007.png``) is an error, as is a missing file or an image whose size differs from the input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from collections.abc import Callable

import torch

from harness import DataError, Method, Option, Sample, UsageError, hookimpl
from harness.data import list_images, read_image, to_tensor

NUMBERED = re.compile(r"^(?:[a-z]+[-_])?0*(\d+)(?:x2)?(?:[-_][a-z]+)?$", re.IGNORECASE)


def number_of(stem: str) -> str | None:
    """The number a rule-3 file name carries (``"7"`` for ``rain-007``), or ``None``."""
    match = NUMBERED.match(stem)
    return str(int(match.group(1))) if match else None


def expected_size(sample: Sample) -> tuple[int, int] | None:
    """(H, W) an output must have: the sample's ``size`` field, else its first image input's size."""
    if "size" in sample:
        height, width = (int(v) for v in sample["size"])
        return height, width
    for key, value in sample.items():
        if key != "id" and isinstance(value, torch.Tensor) and value.ndim == 3:
            return int(value.shape[-2]), int(value.shape[-1])
    return None


class FromFolder(Method):
    """Reads already computed outputs from a folder, matched to the samples by id."""

    name = "from-folder"
    description = (
        "Scores precomputed output images read from a folder (path=DIR or --checkpoint DIR), matched by sample id."
    )
    tasks = frozenset({"deraining", "inpainting", "unpaired-translation", "pose-transfer", "descriptor-inversion"})
    scores_external_outputs = True
    options = (
        Option("path", None, "folder of output images (alternatively pass it as --checkpoint)", type=str),
        Option(
            "pattern",
            None,
            "file name template with {id} and/or {num}, e.g. 'rain-{num:03d}.png'; default: automatic matching",
            type=str,
        ),
    )
    batch_size = 16
    """Samples per `predict` call; a batch with missing files names all of its missing ids at once."""

    def load(self, checkpoint: Path | None, device: str) -> None:
        folder = self._resolve_folder(checkpoint)
        if not folder.is_dir():
            raise DataError(f"from-folder: output folder {folder} does not exist or is not a folder")
        self.folder = folder
        self.images = list_images(folder)
        self.by_stem: dict[str, list[Path]] = {}
        self.by_number: dict[str, list[Path]] = {}
        for path in self.images:
            self.by_stem.setdefault(path.stem, []).append(path)
            number = number_of(path.stem)
            if number is not None:
                self.by_number.setdefault(number, []).append(path)

    def _resolve_folder(self, checkpoint: Path | None) -> Path:
        given = self.config["path"]
        if given is None and checkpoint is None:
            raise UsageError("from-folder needs the folder of outputs: pass path=DIR or --checkpoint DIR")
        if (
            given is not None
            and checkpoint is not None
            and Path(given).expanduser().resolve() != Path(checkpoint).resolve()
        ):
            raise UsageError(f"from-folder: path={given} and --checkpoint {checkpoint} name different folders")
        return Path(given).expanduser() if given is not None else Path(checkpoint)

    def _candidates(self, sample_id: str) -> tuple[list[Path], str]:
        """Files matching ``sample_id`` under the first rule that finds any, and that rule's name."""
        pattern = self.config["pattern"]
        if pattern is not None:
            number = int(sample_id) if sample_id.isdigit() else None
            try:
                name = pattern.format(id=sample_id, num=number)
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                raise UsageError(
                    f"from-folder: pattern {pattern!r} cannot format id {sample_id!r} ({exc}); "
                    "use {id} (any id) or {num} (numeric ids)"
                ) from None
            path = self.folder / name
            return ([path] if path.is_file() else []), f"pattern {pattern!r}"
        if sample_id in self.by_stem:
            return self.by_stem[sample_id], "exact stem"
        if sample_id.isdigit():
            return self.by_number.get(str(int(sample_id)), []), "numbered name"
        return [], "exact stem"

    def _missing_error(self, missing: list[str]) -> DataError:
        shown = ", ".join(self.images[i].name for i in range(min(5, len(self.images)))) or "none"
        rule = (
            f"the pattern {self.config['pattern']!r}"
            if self.config["pattern"]
            else "'<id>.<ext>', or for numeric ids a numbered name such as rain-007.png / 007.png"
        )
        return DataError(
            f"from-folder: no output image in {self.folder} for sample id(s) {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}; expected {rule}. "
            f"The folder holds {len(self.images)} image(s), e.g. {shown}. "
            "Use option pattern='...{id}...' or '...{num:03d}...' for other names."
        )

    def predict(self, samples: list[Sample]) -> list[Any]:
        found: list[Path] = []
        missing: list[str] = []
        for sample in samples:
            sample_id = str(sample["id"])
            candidates, rule = self._candidates(sample_id)
            if len(candidates) > 1:
                names = ", ".join(path.name for path in candidates)
                raise DataError(
                    f"from-folder: sample id {sample_id!r} matches several files in {self.folder} ({rule}): {names}; "
                    "keep one, or select with option pattern"
                )
            if candidates:
                found.append(candidates[0])
            else:
                missing.append(sample_id)
        if missing:
            raise self._missing_error(missing)
        outputs = []
        for sample, path in zip(samples, found, strict=False):
            image = to_tensor(read_image(path))
            size = expected_size(sample)
            if size is not None and tuple(image.shape[-2:]) != size:
                raise DataError(
                    f"from-folder: {path} is {image.shape[-1]}x{image.shape[-2]} (WxH) but sample {sample['id']!r} "
                    f"is {size[1]}x{size[0]}; outputs must have the input's size (no resizing is done)"
                )
            outputs.append(image)
        return outputs


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(FromFolder)
