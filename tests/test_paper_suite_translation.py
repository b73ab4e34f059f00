"""The `yang-translation` paper suite (#22) end to end through the CLI: the dry-run lists exactly the cells of
the thesis's Tables 4.2 and 4.3 with the Maps rows' leaky training in their recipe, a run on tiny Maps,
MNIST→USPS and MNIST→MNIST-M copies in their distributed layouts (a CycleGAN trained for one step on the test
maps, as the thesis did; `--untrained` seeded weights elsewhere) fills them, and `harness publish` puts a
measured value beside every linked row: a Δ for the leaky Maps training, "incomparable" and why for a clean
one, and for the digits, whose harness protocol is the reverse of the thesis's."""

from __future__ import annotations

import json

import numpy as np
from paper_suite_checks import (
    assert_every_linked_row_measured,
    cell_key,
    data_home,
    grid,
    measured_rows,
    plan,
    planned_cells,
)
from PIL import Image
from test_digits import mnist_fixture, render_digits, usps_bz2_fixture
from test_translation import cyclegan_fixture

SUITE = "yang-translation"
ROWS = [  # the linked rows of Tables 4.2 and 4.3 and the datasets each prints a number on
    ("cyclegan", {}, ("maps",)),
    ("cyclegan", {}, ("mnist2usps", "mnist2mnistm")),
    ("sat-g0", {}, ("maps",)),
    ("sat-g0", {}, ("mnist2usps", "mnist2mnistm")),
    ("unit", {}, ("mnist2usps",)),  # UNIT's MNIST-M cell is "–"
]
EXPECTED = sorted(cell_key(method, options, dataset) for method, options, datasets in ROWS for dataset in datasets)
LEAKY = "training.dataset_options.target_train = test"


def test_dry_run_lists_exactly_the_tables_cells(cli):
    result = plan(cli, "--suite", SUITE)
    assert result["tables"] == ["yang-thesis Table 4.2", "yang-thesis Table 4.3"]
    assert sorted(planned_cells(cli, SUITE)) == EXPECTED and len(result["cells"]) == len(EXPECTED) == 7
    cells = {cell_key(c["method"], c["options"], c["dataset"]): c for c in result["cells"]}
    maps = cells[cell_key("cyclegan", {}, "maps")]
    assert maps["fills"] == ["Table 4.2: CycleGAN [225]"]
    assert maps["metrics"] == [{"label": "pixel-accuracy", "params": {"resolution": 256, "threshold": 12.0}}]
    # The thesis trained on the test maps it scored: a condition of the number, and part of the recipe.
    assert LEAKY in maps["requirements"]
    assert maps["training"]["recipe"].startswith("harness train --method cyclegan --dataset maps "
                                                 "--dataset-option target_train=test: 266,800 steps")
    assert LEAKY in cells[cell_key("sat-g0", {}, "maps")]["requirements"]
    digits = cells[cell_key("cyclegan", {}, "mnist2usps")]
    assert digits["metrics"] == [{"label": "target-accuracy", "params": {}}]
    assert LEAKY not in digits["requirements"] and "target_train" not in digits["training"]["recipe"]
    assert cells[cell_key("unit", {}, "mnist2usps")]["training"]["steps"] == 1_000_000
    for cell in result["cells"]:
        assert cell["skip"].startswith("data missing") and "weights missing" in cell["skip"]


def make_mnistm(root, counts=(("train", 20), ("test", 4))):
    """mnist_m/mnist_m_{split}/*.png with mnist_m_{split}_labels.txt beside MNIST's idx files."""
    mnist_fixture(root)
    for split, count in counts:
        images, labels = render_digits(count, 28, 7)
        folder = root / "mnist_m" / f"mnist_m_{split}"
        folder.mkdir(parents=True)
        lines = []
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(np.stack([image, 255 - image, image // 2], -1)).save(folder / f"{i:08d}.png")
            lines.append(f"{i:08d}.png {label}")
        (root / "mnist_m" / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")


def train_cyclegan(cli, out, *extra: str) -> None:
    """One CycleGAN step on the maps at the paper's widths, on 32x32 crops."""
    code, _, err = cli("train", "--method", "cyclegan", "--dataset", "maps", "--steps", "1", "--option", "crop_size=32",
                       "--option", "load_size=0", "--out", out, "--quiet", *extra)
    assert code == 0, err


def test_suite_fills_every_linked_row_beside_the_paper(cli, tmp_path):
    cyclegan_fixture(data_home() / "maps", counts=(2, 2, 2, 2), size=(32, 32), aligned=True)
    mnist_fixture(data_home() / "mnist2usps")
    usps_bz2_fixture(data_home() / "mnist2usps", train=100, test=10)

    leaky = tmp_path / "leaky"
    train_cyclegan(cli, leaky, "--dataset-option", "target_train=test")
    outcomes = grid(cli, SUITE, "--untrained", "--limit", "2", "--quiet", "--checkpoint", f"cyclegan={leaky}")
    assert sorted(cell_key(m, json.loads(o), d) for m, o, d in outcomes) == EXPECTED
    for (_, _, dataset), outcome in outcomes.items():
        if dataset == "mnist2mnistm":  # not there yet
            assert outcome["state"] == "skipped" and outcome["note"].startswith("data missing"), outcome
            assert str(data_home() / "mnist2mnistm") in outcome["note"]
        else:
            assert outcome["state"] == "done", outcome
    leaky_run = outcomes[("cyclegan", "{}", "maps")]["note"]

    make_mnistm(data_home() / "mnist2mnistm")
    outcomes = grid(cli, SUITE, "--untrained", "--limit", "2", "--quiet", "--dataset", "mnist2mnistm")
    assert {o["state"] for o in outcomes.values()} == {"done"} and len(outcomes) == 2

    # The same recipe on the training maps (the clean split): its value is not the thesis's experiment.
    clean = tmp_path / "clean"
    train_cyclegan(cli, clean)
    code, out, err = cli("run", "--method", "cyclegan", "--dataset", "maps", "--checkpoint", clean,
                         "--metric", "pixel-accuracy", "--limit", "2", "--quiet", "--json")
    assert code == 0, err
    clean_run = json.loads(out)["run_id"]

    tables = assert_every_linked_row_measured(cli, SUITE)
    column = "pixel-accuracy[thesis-maps]"
    runs = {row["run"]["run_id"]: row for row in measured_rows(tables["maps"], "cyclegan")}
    cell = runs[leaky_run]["cells"][column]
    assert runs[leaky_run]["reproduces"] == "CycleGAN (Table 4.2)"
    assert cell["comparable"] and abs(cell["delta"] - (cell["value"] - 45.91)) < 1e-9
    cell = runs[clean_run]["cells"][column]
    assert cell["value"] is not None and not cell["comparable"] and cell["delta"] is None
    assert cell["reason"] == "the paper's number needs training.dataset_options.target_train=test (this run: train)"
    sat, = measured_rows(tables["maps"], "sat-g0")  # seeded random weights: no training at all
    assert sat["cells"][column]["reason"] == ("the paper's number needs training.dataset_options.target_train=test "
                                              "(this run: not recorded)")
    # The harness's target-accuracy trains its classifier on the target domain: the reverse of the thesis's.
    for dataset in ("mnist2usps", "mnist2mnistm"):
        for method in ("cyclegan", "sat-g0"):
            row, = measured_rows(tables[dataset], method)
            cell = row["cells"]["target-accuracy[thesis-digits]"]
            assert cell["value"] is not None and not cell["comparable"]
            assert cell["reason"] == "computed with harness-target-first, this column ranks thesis-digits"
