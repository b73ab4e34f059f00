"""SPT's Table 4 (#22): `spt-hs` predicts H_S's target map from an `spt` checkpoint, `hs_labels=true` trains H_S
on true pairs, the `spt-parsing` paper suite lists one cell per row (each needing its own training), and a briefly
trained checkpoint scored on a tiny DeepFashion in its real layout is published beside the row it reproduces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_spt import COLOURS, TinyPoses, parsing_of, pose_of
from PIL import Image

from harness import DataError
from harness.train.context import TrainContext
from harness_plugins.datasets.deepfashion_pose import inshop_name
from harness_plugins.datasets.pose_common import build_pairs, format_annotations, format_pairs
from harness_plugins.methods.pose_transfer.spt import SPT, SPTParsing
from harness_plugins.methods.pose_transfer.spt_parts import one_hot, pose_inputs

ROWS = {"100": {"candidates": 100, "hs_labels": "search"}, "500": {"candidates": 500, "hs_labels": "search"},
        "1000": {"candidates": 1000, "hs_labels": "search"}, "Ground-Truth": {"hs_labels": "true"}}
"""Table 4's rows: the training options each needs (all with stages=1,0,0, H_S trained in two stages)."""


# -- the method ------------------------------------------------------------------------------------
def pair(first: int, second: int) -> dict:
    """A pose-parsing sample of the tiny fixture: image ``first`` in the pose of image ``second``."""
    images = TinyPoses(count=max(first, second) + 1)
    source, target = (images.load_image(row) for row in (images.images("test")[first], images.images("test")[second]))
    return {"id": f"{first}___{second}", "source": source["image"], "source_parsing": source["parsing"],
            "source_pose": source["pose"], "target_pose": target["pose"]}


def test_spt_hs_predicts_the_argmax_of_h_s_on_the_checkpoint_spt_renders_with(tmp_path):
    from safetensors.torch import save_file

    weights = tmp_path / "model.safetensors"
    save_file(SPT(width=4).build().state_dict(), str(weights))
    parsing, transfer = SPTParsing(width=4), SPT(width=4)
    parsing.load(weights, "cpu")
    transfer.load(weights, "cpu")
    samples = [pair(0, 3), pair(2, 5)]
    maps = parsing.predict(samples)
    g = transfer.model
    for sample, predicted in zip(samples, maps, strict=True):
        heat_s, mask_s = pose_inputs(sample["source_pose"], (64, 32), 6.0)
        heat_t, mask_t = pose_inputs(sample["target_pose"], (64, 32), 6.0)
        with torch.no_grad():
            probabilities = g.parse(one_hot(sample["source_parsing"])[None], heat_s[None], mask_s[None], heat_t[None],
                                    mask_t[None])
        assert predicted.dtype == torch.int64 and predicted.shape == (64, 32)
        assert torch.equal(predicted, probabilities.argmax(dim=1)[0])
        assert int(predicted.max()) < 10
    images = transfer.predict(samples)  # the same weights still render the image of pose-transfer
    assert images[0].shape == (3, 64, 32) and images[0].dtype == torch.float32


def test_true_labels_pair_each_source_with_the_same_persons_other_map():
    dataset = TinyPoses(count=6)  # persons 0 and 1, three images each
    method = SPT(width=4, ndf=8, vgg="none", hs_labels="true", stages="1,0,0")
    assert method.config["stages"] == (1.0, 0.0, 0.0)
    recipe = method.training_recipe(dataset, TrainContext(batch_size=4, steps=2, seed=0))
    assert "true pairs" in recipe.description["pseudo_labels"]
    rows = dataset.images("train")
    maps = [one_hot(dataset.load_image(row)["parsing"]) for row in rows]
    batch = recipe.batch(0)
    for source, target in zip(batch["parsing"], batch["parsing_p"], strict=True):
        index = next(i for i, m in enumerate(maps) if torch.equal(m, source))
        same = [i for i, row in enumerate(rows) if row["pid"] == rows[index]["pid"] and i != index]
        assert any(torch.equal(maps[i], target) for i in same)
    with pytest.raises(DataError, match="no person of the 2 training images has two"):
        method.training_recipe(TinyPoses(count=2), TrainContext(batch_size=2, steps=2, seed=0))


# -- the paper suite -------------------------------------------------------------------------------
def plan(cli, *args: str) -> list[dict]:
    code, out, err = cli("grid", "--suite", "spt-parsing", "--dry-run", "--json", *args)
    assert code == 0, err
    return json.loads(out)["cells"]


def test_dry_run_lists_one_cell_per_row_of_table_4(cli):
    cells = plan(cli)
    assert [(c["method"], c["dataset"], c["split"], c["fills"]) for c in cells] == [
        ("spt-hs", "deepfashion-pose-parsing", "test", [f"Table 4: {row}"]) for row in ROWS]
    for cell, options in zip(cells, ROWS.values(), strict=True):
        assert cell["trained"] == {**{f"training.method_options.{k}": v for k, v in options.items()},
                                   "training.method_options.stages": [1, 0, 0]}
        assert [m["label"] for m in cell["metrics"]] == ["parsing-accuracy", "parsing-miou"]
        flags = " ".join(f"--option {k}={v}" for k, v in options.items())
        assert f"harness train --method spt-hs --dataset deepfashion-pose-parsing {flags} --option stages=1,0,0" \
            in cell["training"]["recipe"]


def make_deepfashion_parsing(root: Path) -> Path:
    """fashion_resize/{split}/ JPGs (256x256), Def-GAN's CSVs and SPT-label parsing PNGs: the tiny fixture's people
    scaled 4x into the middle of the frame; three persons of two images for training, two for testing."""
    people = {"train": (3, 2), "test": (2, 2)}
    for split, (persons, images) in people.items():
        poses = {}
        for person in range(persons):
            for k in range(images):
                seed = 10 * person + k + (100 if split == "test" else 0)
                small = pose_of(seed)
                labels = np.kron(parsing_of(small, skirt=person % 2 == 1), np.ones((4, 4), np.int64))
                canvas = np.zeros((256, 256), np.uint8)
                canvas[:, 64:192] = labels
                name = inshop_name(Path(f"WOMEN/Dresses/id_{person + 1:08d}/01_{k + 1}_front.jpg"))
                poses[name] = small * 4 + np.array([0, 64], np.float32)
                for folder, picture in (("fashion_resize", (COLOURS[canvas] * 255).astype(np.uint8)), ("parsing", canvas)):
                    path = root / folder / split / (name if folder == "fashion_resize" else Path(name).stem + ".png")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(picture).save(path, **({"quality": 100} if folder == "fashion_resize" else {}))
        (root / f"fasion-annotation-{split}.csv").write_text(format_annotations(poses))
        (root / f"fasion-pairs-{split}.csv").write_text(format_pairs(build_pairs(poses)))
    return root


def test_trained_checkpoints_are_scored_and_published_beside_their_rows(cli, tmp_path):
    root = make_deepfashion_parsing(tmp_path / "deepfashion")
    data = ("--dataset", "deepfashion-pose-parsing", "--data-root", root, "--dataset-option", "parsing_labels=spt")
    tiny = ("--steps", "1", "--batch-size", "1", "--option", "width=4", "--option", "ndf=8", "--option", "vgg=none",
            "--option", "stages=1,0,0")
    # spt on the pose-transfer view of the same files, and spt-hs (the same recipe) on the pose-parsing view
    code, _, err = cli("train", "--method", "spt", "--dataset", "deepfashion-pose", *data[2:], *tiny,
                       "--option", "candidates=500", "--out", tmp_path / "n500")
    assert code == 0, err
    code, _, err = cli("train", "--method", "spt-hs", *data, *tiny, "--option", "hs_labels=true", "--out", tmp_path / "true")
    assert code == 0, err

    # the plan: the N = 500 cell can run with the N = 500 checkpoint; the others name what it was trained with
    suite = ("--data-root", f"deepfashion-pose-parsing={root}", "--dataset-option",
             "deepfashion-pose-parsing.parsing_labels=spt")
    cells = plan(cli, "--checkpoint", f"spt-hs={tmp_path / 'n500'}", *suite)
    weights = {c["fills"][0]: c["weights"] for c in cells}
    assert weights["Table 4: 500"]["state"] == "present" and all(c["data"]["present"] for c in cells)
    assert cells[1]["trained_shape"]["width"] == 4  # the cell runs with the width the weights were trained with
    assert weights["Table 4: 100"]["state"] == "other training"
    assert "candidates=500, the cell needs 100" in weights["Table 4: 100"]["note"]
    assert "hs_labels=search, the cell needs true" in weights["Table 4: Ground-Truth"]["note"]

    for name in ("n500", "true"):  # each checkpoint fills its row's cell; the grid names the other three
        code, out, err = cli("grid", "--suite", "spt-parsing", "--checkpoint", f"spt-hs={tmp_path / name}", *suite,
                             "--workers", "0", "--quiet")
        assert code == 0, err
        assert "1 done" in out and "3 skipped" in out and "weights other training" in out
    code, _, err = cli("run", "--method", "spt-hs", *data, "--untrained", "--option", "width=4")
    assert code == 0, err

    code, out, err = cli("publish", "--leaderboard", "spt-parsing", "--format", "json")
    assert code == 0, err
    table = next(t for t in json.loads(out)["leaderboards"][0]["tables"] if t["dataset"] == "deepfashion-pose-parsing")
    measured = [row for row in table["rows"] if row["kind"] == "measured"]
    assert len(measured) == 3
    by_row = {row["reproduces"]: row for row in measured if row["run"]["checkpoint_sha256"]}
    assert set(by_row) == {"pseudo-labels searched among N = 500 (Table 4)", "trained on true (parser) labels (Table 4)"}
    # comparable (trained as the row requires), yet no Δ: the paper does not state how its accuracy and mIoU
    # were computed (pooled or per image, absent classes), and the board does not guess a convention
    for row, (accuracy, miou) in ((by_row["pseudo-labels searched among N = 500 (Table 4)"], (75.01, 0.473)),
                                  (by_row["trained on true (parser) labels (Table 4)"], (76.66, 0.495))):
        for key, reported in (("accuracy", accuracy), ("miou", miou)):
            cell = row["cells"][key]
            assert cell["value"] is not None and cell["comparable"] and cell["delta"] is None
            assert cell["delta_note"] == f"no Δ to the paper's {reported:g}: its convention is not stated"
    untrained = next(row for row in measured if not row["run"]["checkpoint_sha256"])
    assert untrained["reproduces"] == "pseudo-labels searched among N = 100 (Table 4)"
    cell = untrained["cells"]["accuracy"]
    assert cell["value"] is not None and not cell["comparable"] and cell["delta"] is None
    assert "needs training.method_options.candidates=100 (this run: not recorded)" in cell["reason"]
