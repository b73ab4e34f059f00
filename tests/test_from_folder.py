"""from-folder: matching precomputed outputs to sample ids, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_rain import clean_image, make_rain100h
from PIL import Image

import harness
from harness import DataError, UsageError
from harness.data import to_tensor
from harness.tasks import BUILTIN_TASKS
from harness_plugins.datasets.rain import Rain100H
from harness_plugins.methods.generic.from_folder import FromFolder


def save(folder: Path, name: str, index: int, size: tuple[int, int] = (24, 24)) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    image = clean_image(index, size)
    Image.fromarray(image).save(folder / name)
    return image


def sample(sample_id: str, size: tuple[int, int] = (24, 24)) -> dict:
    return {"id": sample_id, "rainy": torch.zeros(3, *size)}


def loaded(folder: Path | None = None, checkpoint: Path | None = None, **options) -> FromFolder:
    method = FromFolder(**({"path": str(folder)} if folder is not None else {}), **options)
    method.load(checkpoint, "cpu")
    return method


def test_exact_id_match_returns_float_images(tmp_path):
    expected = save(tmp_path, "7.png", 7)
    save(tmp_path, "rain-007.png", 99)  # an exact stem wins over a numbered name
    (prediction,) = loaded(tmp_path).predict([sample("7")])
    assert prediction.dtype == torch.float32 and prediction.shape == (3, 24, 24)
    assert 0.0 <= prediction.min() and prediction.max() <= 1.0
    assert torch.equal(prediction, to_tensor(expected))


@pytest.mark.parametrize("name", ["007.png", "rain-007.png", "norain-7x2.png", "7_derained.jpg", "Derained_07.bmp"])
def test_numbered_names_match_numeric_ids(tmp_path, name):
    save(tmp_path, name, 7)
    (prediction,) = loaded(tmp_path).predict([sample("7")])
    assert prediction.shape == (3, 24, 24)


def test_pattern_option(tmp_path):
    expected = save(tmp_path, "Derained-Rain100H-rain-007.png", 7)
    method = loaded(tmp_path, pattern="Derained-Rain100H-rain-{num:03d}.png")
    assert torch.equal(method.predict([sample("7")])[0], to_tensor(expected))
    with pytest.raises(UsageError, match="cannot format id 'abc'"):
        method.predict([sample("abc")])


def test_checkpoint_directory_is_the_folder(tmp_path):
    save(tmp_path, "3.png", 3)
    method = FromFolder()
    method.load(tmp_path, "cpu")
    assert method.predict([sample("3")])[0].shape == (3, 24, 24)


def test_folder_is_required_and_must_exist(tmp_path):
    with pytest.raises(UsageError, match="path=DIR or --checkpoint DIR"):
        FromFolder().load(None, "cpu")
    with pytest.raises(DataError, match="does not exist"):
        loaded(tmp_path / "missing")
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UsageError, match="different folders"):
        loaded(tmp_path, checkpoint=other)


def test_missing_outputs_list_ids_and_folder(tmp_path):
    save(tmp_path, "1.png", 1)
    with pytest.raises(DataError) as error:
        loaded(tmp_path).predict([sample("1"), sample("2"), sample("3")])
    message = str(error.value)
    assert "sample id(s) 2, 3" in message and str(tmp_path) in message and "1.png" in message


@pytest.mark.parametrize("names", [("4.png", "4.jpg"), ("rain-004.png", "norain-004.png")])
def test_ambiguous_matches_are_errors(tmp_path, names):
    for name in names:
        save(tmp_path, name, 4)
    with pytest.raises(DataError, match="matches several files"):
        loaded(tmp_path).predict([sample("4")])


def test_size_mismatch_is_an_error(tmp_path):
    save(tmp_path, "5.png", 5, size=(20, 24))
    with pytest.raises(DataError, match=r"5\.png is 24x20 .* sample '5' is 24x24"):
        loaded(tmp_path).predict([sample("5")])


def test_other_image_tasks(tmp_path):
    save(tmp_path, "paris_001.png", 1, size=(16, 16))
    method = loaded(tmp_path)
    inpainting = {"id": "paris_001", "masked": torch.zeros(3, 16, 16), "mask": torch.zeros(1, 16, 16)}
    inversion = {
        "id": "paris_001",
        "keypoints": torch.zeros(5, 4),
        "descriptors": torch.zeros(5, 128),
        "size": (16, 16),
    }
    assert method.predict([inpainting])[0].shape == (3, 16, 16)
    assert method.predict([inversion])[0].shape == (3, 16, 16)
    task_names = {task.name for task in BUILTIN_TASKS}
    assert FromFolder.tasks <= task_names
    image_tasks = {task.name for task in BUILTIN_TASKS if task.output == "image"}
    assert FromFolder.tasks == image_tasks


def test_scores_prenet_style_results_for_rain100h(tmp_path):
    dataset = Rain100H(make_rain100h(tmp_path / "data", n_train=0, n_test=100))
    task = harness.get_task("deraining")
    outputs = tmp_path / "results"
    for index in range(1, 101):  # PReNet's test scripts keep the input's name: rain-001.png ...
        save(outputs, f"rain-{index:03d}.png", index)
    method = loaded(outputs)
    samples = list(dataset.samples("test"))
    predictions = method.predict([task.method_view(s) for s in samples[:16]])
    for s, prediction in zip(samples, predictions, strict=False):
        assert torch.equal(prediction, s["clean"])  # these "outputs" are the ground truth itself
