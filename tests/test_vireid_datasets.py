"""RegDB and SYSU-MM01 parsing in their real layouts, and the protocol parameters they fix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

import harness
from harness import DataError, UsageError

from fixtures_vireid import SYSU_SPLIT, make_regdb, make_sysu


def test_regdb_trial_split_roles_and_camids(tmp_path):
    root = make_regdb(tmp_path / "RegDB")
    dataset = harness.create_dataset("regdb", root, trial=2, strict=False)
    dataset.verify("test")
    rows = dataset.index("test")
    assert len(rows) == 3 * 2 * 2 and all(row["trial"] == 2 for row in rows)
    visible = [row for row in rows if row["modality"] == "visible"]
    thermal = [row for row in rows if row["modality"] == "infrared"]
    assert {row["camid"] for row in visible} == {1} and {row["camid"] for row in thermal} == {2}
    assert {row["role"] for row in visible} == {"query"} and {row["role"] for row in thermal} == {"gallery"}
    expected = (tmp_path / "RegDB" / "idx" / "test_visible_2.txt").read_text().split()[0]
    assert visible[0]["id"] == expected
    sample = dataset.load(visible[0])
    assert sample["image"].shape == (3, 32, 16) and "paths" not in sample
    # each trial is its own identity split
    other = harness.create_dataset("regdb", root, trial=1, strict=False)
    assert {r["pid"] for r in other.index("test")} != {r["pid"] for r in rows}
    # the train split is the other half, labelled 0..n-1 as in the release
    assert {r["pid"] for r in dataset.index("train")} == {0, 1, 2}


def test_regdb_direction_reaches_the_protocol(tmp_path):
    root = make_regdb(tmp_path / "RegDB")
    dataset = harness.create_dataset("regdb", root, direction="t2v", strict=False)
    assert dataset.metric_params("cmc") == {"protocol": "regdb", "direction": "t2v"}
    roles = {(row["modality"], row["role"]) for row in dataset.index("test")}
    assert roles == {("infrared", "query"), ("visible", "gallery")}


def test_regdb_strict_sizes_and_bad_lines(tmp_path):
    root = make_regdb(tmp_path / "RegDB")
    with pytest.raises(DataError, match="2060 of 206"):
        harness.create_dataset("regdb", root).index("test")
    (root / "idx" / "test_visible_1.txt").write_text("Visible/x.bmp notanumber\n")
    with pytest.raises(DataError, match="line 1"):
        harness.create_dataset("regdb", root, strict=False).index("test")
    (root / "idx" / "test_visible_1.txt").write_text("../outside.bmp 3\n")
    with pytest.raises(DataError, match="not inside"):
        harness.create_dataset("regdb", root, strict=False).index("test")
    with pytest.raises(UsageError, match="trial"):
        harness.create_dataset("regdb", root, trial=11)


def test_regdb_missing_image_is_named(tmp_path):
    root = make_regdb(tmp_path / "RegDB")
    first = (root / "idx" / "test_thermal_1.txt").read_text().split()[0]
    (root / first).unlink()
    with pytest.raises(DataError, match="missing, e.g."):
        harness.create_dataset("regdb", root, strict=False).verify("test")


def test_sysu_splits_roles_and_modalities(tmp_path):
    root = make_sysu(tmp_path / "SYSU-MM01")
    dataset = harness.create_dataset("sysu-mm01", root)
    dataset.verify("test")
    test = dataset.index("test")
    assert {row["pid"] for row in test} == set(SYSU_SPLIT["test"])
    assert {(row["camid"], row["modality"], row["role"]) for row in test} == {
        (1, "visible", "gallery"), (2, "visible", "gallery"), (3, "infrared", "query"),
        (4, "visible", "gallery"), (5, "visible", "gallery"), (6, "infrared", "query"),
    }
    assert len(test) == 3 * 6 * 2 - 2  # person 7 has no camera-5 images
    assert [row["id"] for row in test][:2] == ["cam1/0005/0001.jpg", "cam1/0005/0002.jpg"]
    assert {row["pid"] for row in dataset.index("train")} == set(SYSU_SPLIT["train"])
    everything = harness.create_dataset("sysu-mm01", root, train_all=True)
    assert {row["pid"] for row in everything.index("train")} == set(SYSU_SPLIT["train"] + SYSU_SPLIT["val"])


def test_sysu_protocol_parameters_and_permutation_file(tmp_path):
    root = make_sysu(tmp_path / "SYSU-MM01")
    dataset = harness.create_dataset("sysu-mm01", root, mode="indoor", shot="multi")
    params = dataset.metric_params("map")
    assert params["protocol"] == "sysu" and params["mode"] == "indoor" and params["shot"] == "multi"
    assert params["perm_file"] == "" and "seeded" in dataset.describe()["gallery_trials"]
    cells = np.empty((6, 1), dtype=object)
    for cam in range(6):
        people = np.empty((1, 7), dtype=object)
        for pid in range(7):
            people[0, pid] = np.array([[2, 1]] * 10, dtype=np.float64)
        cells[cam, 0] = people
    scipy.io.savemat(root / "exp" / "rand_perm_cam.mat", {"rand_perm_cam": cells})
    found = harness.create_dataset("sysu-mm01", root)
    assert found.metric_params("cmc")["perm_file"] == str(root / "exp" / "rand_perm_cam.mat")
    assert root / "exp" / "rand_perm_cam.mat" in found.files("test")


def test_sysu_missing_layout_is_explained(tmp_path):
    with pytest.raises(DataError, match="(?s)cam1.*Expected layout"):
        harness.create_dataset("sysu-mm01", tmp_path / "nothing").verify("test")
    root = make_sysu(tmp_path / "SYSU-MM01")
    (root / "exp" / "test_id.txt").write_text("5,x\n")
    with pytest.raises(DataError, match="integer person ids"):
        harness.create_dataset("sysu-mm01", root).index("test")


def test_sysu_samples_decode_in_index_order(tmp_path):
    root = make_sysu(tmp_path / "SYSU-MM01")
    dataset = harness.create_dataset("sysu-mm01", root)
    samples = list(dataset.samples("test"))
    assert [s["id"] for s in samples] == [r["id"] for r in dataset.index("test")]
    infrared = next(s for s in samples if s["modality"] == "infrared")
    assert isinstance(infrared["image"], torch.Tensor) and infrared["image"].shape == (3, 32, 16)
