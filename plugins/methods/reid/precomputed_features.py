"""`precomputed-features`: score released re-id features under the harness's own protocol.

Authors often publish features rather than weights. This method reads them from a file and returns,
for each sample, the feature row of the same image, so the numbers come from the harness's
evaluation (same exclusions, same AP definition) instead of each repository's script.

Accepted files (``--checkpoint FILE`` or ``--option path=FILE``):

* ``.npz`` with ``features`` (N, D) and ``paths`` (N,) image paths (``ids`` or ``names`` also work);
* ``.mat`` / ``.npz`` with ``query_f`` and ``gallery_f`` (the layumi/Person_reID_baseline_pytorch
  ``pytorch_result.mat`` that many Market-1501 papers release, also Hi-CMD's ``*_test.mat``), rows
  named by ``query_path`` / ``gallery_path`` when present (plain paths, or torchvision
  ``ImageFolder.imgs`` (path, label) pairs as Hi-CMD saves them). ``pytorch_result.mat`` holds no
  paths: its rows follow torchvision ``ImageFolder`` order, which for Market-style names is the sorted
  file names of ``query/`` and ``bounding_box_test/``; pass ``names_root=DATASET_ROOT`` to name them.
  The file's ``*_label`` / ``*_cam`` columns are then checked against the names.

A sample matches a row when its id (e.g. ``query/0001_c1s1_001051_00.jpg``) is a trailing part of
the row's path, else when its file name is; an ambiguous match is an error, never a guess.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from harness import DataError, Method, Option, Sample, UsageError, create_dataset, hookimpl

PATH_KEYS = ("paths", "ids", "names")
ROLE_FOLDERS = {"query": "query", "gallery": "bounding_box_test"}
"""Where the rows of a ``pytorch_result.mat`` come from, relative to ``names_root``."""
NAMES_DATASET = "market1501"
"""The dataset whose layout ``names_root`` follows; its index names and labels the rows."""
AMBIGUOUS = -1
SHOWN = 5


class PrecomputedFeatures(Method):
    """Returns published features for each sample's image instead of computing them."""

    name = "precomputed-features"
    description = "Released re-id features (.npz, or .mat such as pytorch_result.mat) looked up by image path."
    tasks = frozenset({"reidentification"})
    scores_external_outputs = True
    batch_size = 1024
    options = (
        Option("path", "", "features file (.npz or .mat); --checkpoint FILE does the same"),
        Option(
            "names_root", "",
            "dataset root whose query/ and bounding_box_test/ file names (sorted) name the rows of a file without paths",
        ),
    )

    def load(self, checkpoint: Path | None, device: str) -> None:
        given = checkpoint or self.config["path"]
        if not given:
            raise UsageError("precomputed-features needs the features file: --checkpoint FILE or --option path=FILE")
        self.source = Path(given).expanduser()
        names_root = Path(self.config["names_root"]).expanduser() if self.config["names_root"] else None
        names, self.features = read_features(self.source, names_root)
        self.index = index_paths(names)
        self.examples = names[:2]

    def predict(self, samples: list[Sample]) -> list[torch.Tensor]:
        rows = [self.row(str(sample["id"])) for sample in samples]
        missing = [str(sample["id"]) for sample, row in zip(samples, rows, strict=True) if row is None]
        if missing:
            raise DataError(
                f"precomputed-features: {len(missing)} of {len(samples)} samples have no features in {self.source}; "
                f"first missing: {', '.join(missing[:SHOWN])}. The file's paths look like {', '.join(self.examples)} "
                "(a sample matches a path ending with its id, or with its file name)"
            )
        return [torch.from_numpy(self.features[row].copy()) for row in rows]

    def row(self, sample_id: str) -> int | None:
        """The row of a sample: by its whole id as a path suffix, else by its file name."""
        key = normalise(sample_id)
        for candidate in (key, posixpath.basename(key)):
            row = self.index.get(candidate)
            if row == AMBIGUOUS:
                raise DataError(f"precomputed-features: {candidate!r} (sample {sample_id!r}) names several rows of {self.source}")
            if row is not None:
                return row
        return None


def read_features(path: Path, names_root: Path | None = None) -> tuple[list[str], np.ndarray]:
    """Row names and the (N, D) float feature matrix of a features file."""
    content = load_arrays(path)
    if "features" in content:
        key = next((k for k in PATH_KEYS if k in content), None)
        if key is None:
            raise DataError(f"{path}: 'features' needs the image path of each row in one of {', '.join(PATH_KEYS)}")
        return _checked(path, "features", strings(content[key]), content["features"])
    if "query_f" in content and "gallery_f" in content:
        names: list[str] = []
        blocks = []
        for role in ROLE_FOLDERS:
            features = content[f"{role}_f"]
            if f"{role}_path" in content:
                role_names = strings(content[f"{role}_path"])
            else:
                role_names = _names_from_folder(path, role, names_root, content, len(np.atleast_2d(features)))
            role_names, features = _checked(path, f"{role}_f", role_names, features)
            names += role_names
            blocks.append(features)
        if blocks[0].shape[1] != blocks[1].shape[1]:
            raise DataError(f"{path}: query_f has {blocks[0].shape[1]} dimensions, gallery_f {blocks[1].shape[1]}")
        return names, np.concatenate(blocks)
    found = ", ".join(sorted(content)) or "nothing"
    raise DataError(
        f"{path}: expected 'features' with 'paths' (harness .npz) or 'query_f'/'gallery_f' "
        f"(pytorch_result.mat style); found {found}"
    )


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The named arrays of a ``.npz`` or MATLAB v5/v7 ``.mat`` file (never pickles)."""
    if not path.is_file():
        raise DataError(f"features file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read features file {path}: {exc} (expected a .npz of plain arrays)") from None
    if suffix == ".mat":
        import scipy.io

        try:
            content = scipy.io.loadmat(str(path))
        except NotImplementedError:
            raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; re-save it with save(..., '-v7') or as .npz") from None
        except (OSError, ValueError, scipy.io.matlab.MatReadError) as exc:
            raise DataError(f"cannot read features file {path}: {exc} (expected a MATLAB v5/v7 .mat)") from None
        return {key: value for key, value in content.items() if not key.startswith("__")}
    raise DataError(f"features file {path}: unsupported type {suffix or '(none)'}; expected .npz or .mat")


def strings(values: np.ndarray) -> list[str]:
    """Paths stored as a char/str array, a MATLAB cell of strings, or (path, label) pairs (first column)."""
    array = np.asarray(values)
    if array.dtype == object:
        return [str(np.asarray(item).ravel()[0]).rstrip() if np.asarray(item).size else "" for item in array.ravel()]
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    elif array.ndim == 2:
        array = array[:, 0]
    return [str(item).rstrip() for item in array.ravel()]


def _checked(path: Path, key: str, names: list[str], features: np.ndarray) -> tuple[list[str], np.ndarray]:
    features = np.asarray(features)
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating):
        raise DataError(f"{path}: {key} must be a 2-D float array (rows = images); got {features.dtype} {features.shape}")
    if len(names) != len(features):
        raise DataError(f"{path}: {key} has {len(features)} rows but {len(names)} image paths")
    return names, features


def _names_from_folder(path: Path, role: str, names_root: Path | None, content: dict[str, np.ndarray], rows: int) -> list[str]:
    """Name the rows of a file without paths by the sorted file names of the role's folder, as the
    dataset's own index lists them (its file-name parser is the only one)."""
    if names_root is None:
        raise DataError(
            f"{path} has no {role}_path: its rows follow the sorted file names of the dataset's query/ and "
            "bounding_box_test/ folders (torchvision ImageFolder order); pass --option names_root=DATASET_ROOT"
        )
    folder = names_root / ROLE_FOLDERS[role]
    if not folder.is_dir():
        raise DataError(f"names_root: folder {folder} is missing (needed to name the rows of {role}_f in {path})")
    dataset = create_dataset(NAMES_DATASET, root=names_root, strict=False)
    listed = [row for row in dataset.index("test") if row["role"] == role]
    if len(listed) != rows:
        raise DataError(f"{path}: {role}_f has {rows} rows but {folder} holds {len(listed)} .jpg images")
    _check_labels(path, role, listed, content)
    return [row["id"] for row in listed]


def _check_labels(path: Path, role: str, listed: list[Sample], content: dict[str, np.ndarray]) -> None:
    """Compare the file's own label and camera columns with the rows' names."""
    if f"{role}_label" not in content or f"{role}_cam" not in content:
        return
    labels = np.asarray(content[f"{role}_label"]).ravel()
    cams = np.asarray(content[f"{role}_cam"]).ravel()
    for row, sample in enumerate(listed):
        if (sample["pid"], sample["camid"]) != (int(labels[row]), int(cams[row])):
            raise DataError(
                f"{path}: row {row} of {role}_f is person {int(labels[row])} / camera {int(cams[row])} but name {row} "
                f"of the sorted {posixpath.dirname(sample['id'])}/ is {posixpath.basename(sample['id'])}: names_root is "
                "not the dataset these features were computed on"
            )


def normalise(path: str) -> str:
    return posixpath.normpath(path.strip().replace("\\", "/"))


def index_paths(names: list[str]) -> dict[str, int]:
    """Every trailing part of every path (``a/b/c.jpg``, ``b/c.jpg``, ``c.jpg``) → its row, or AMBIGUOUS."""
    index: dict[str, int] = {}
    for row, name in enumerate(names):
        parts = normalise(name).split("/")
        for start in range(len(parts)):
            key = "/".join(parts[start:])
            index[key] = row if index.get(key, row) == row else AMBIGUOUS
    return index


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(PrecomputedFeatures)
