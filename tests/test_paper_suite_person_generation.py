"""The `spt-person-generation` paper suite (#22) end to end through the CLI: the dry-run lists exactly the
cells of SPT's Tables 1 and 3 (PG²'s and Def-GAN's rows scored with their own SSIM conventions), a run with
`--untrained` seeded weights on tiny DeepFashion and Market-1501 copies in their distributed layouts (Def-GAN
CSVs, LIP parsing maps; random Inception weights for IS and FID, as tests/test_e2e_metrics.py) fills them,
and `harness publish` puts a measured value beside every linked row with a Δ or the reason there is none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from harness_plugins.datasets.deepfashion_pose import inshop_name
from harness_plugins.datasets.pose_common import (
    build_pairs,
    format_annotations,
    format_pairs,
    read_annotations,
)
from harness_plugins.shared.inception_net import PROTOCOLS
from inception_weights import random_inception_state
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
from test_pose_datasets import colour, keypoints, make_market_pose

SUITE = "spt-person-generation"
ROWS = [  # the linked rows of Tables 1 and 3 and the datasets each prints a number on
    ("pg2", {}, ("deepfashion-pose", "market1501-pose")),
    ("def-gan", {}, ("deepfashion-pose", "market1501-pose")),
    ("spt", {}, ("deepfashion-pose", "deepfashion-pose-bg", "market1501-pose")),  # Table 3's E2E: the same cells
]
EXPECTED = sorted(cell_key(method, options, dataset) for method, options, datasets in ROWS for dataset in datasets)


def test_dry_run_lists_exactly_the_tables_cells(cli):
    result = plan(cli, "--suite", SUITE)
    assert result["tables"] == ["spt Table 1", "spt Table 3"]
    assert sorted(planned_cells(cli, SUITE)) == EXPECTED and len(result["cells"]) == len(EXPECTED) == 7
    cells = {cell_key(c["method"], c["options"], c["dataset"]): c for c in result["cells"]}
    # Each row's SSIM is scored with the convention of the code that computed its number.
    pg2 = cells[cell_key("pg2", {}, "market1501-pose")]
    assert pg2["metrics"] == [{"label": "is", "params": {}}, {"label": "ssim", "params": {"convention": "pg2"}},
                              {"label": "mask-is", "params": {}}, {"label": "mask-ssim", "params": {"convention": "pg2"}}]
    defgan = cells[cell_key("def-gan", {}, "deepfashion-pose")]
    assert defgan["metrics"] == [{"label": "is", "params": {}}, {"label": "ssim", "params": {"convention": "defgan"}}]
    spt = cells[cell_key("spt", {}, "market1501-pose")]
    assert spt["fills"] == ["Table 1: Ours", "Table 3: E2E"]
    # SPT does not say whose mask-SSIM it used: scored under both conventions.
    assert [m["label"] for m in spt["metrics"]] == ["is", "ssim", "mask-is", "mask-ssim@defgan", "mask-ssim@pg2", "fid"]
    assert cells[cell_key("spt", {}, "deepfashion-pose-bg")]["fills"] == ["Table 1: Ours"]
    assert spt["training"]["steps"] == 50_000 and pg2["training"]["steps"] == 500_000
    for cell in result["cells"]:
        assert cell["skip"].startswith("data missing") and "weights missing" in cell["skip"]


PEOPLE = {"test": ("WOMEN/Dresses/id_00000002", "MEN/Denim/id_00000080"), "train": ("MEN/Shirts_Polos/id_00000100",)}
VIEWS = ("01_1_front.jpg", "01_2_side.jpg", "01_3_back.jpg", "01_4_full.jpg")


def make_deepfashion(root: Path, bg_pairs: bool = False) -> Path:
    """Def-GAN's CSVs and fashion_resize/{split}/ images, LIP parsing maps in parsing/{split}/: two test people
    in four poses each (24 pairs: IS's 10 splits need 10 images), one training person."""
    for split, people in PEOPLE.items():
        table = {}
        for p, person in enumerate(people):
            for v, view in enumerate(VIEWS):
                name = inshop_name(Path(person) / view)
                table[name] = keypoints(10 * p + v, 256, 256)
                (root / "fashion_resize" / split).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (256, 256), colour(name)).save(root / "fashion_resize" / split / name, quality=100)
        (root / f"fasion-annotation-{split}.csv").write_text(format_annotations(table))
        pairs = format_pairs(build_pairs(table))
        (root / f"fasion-pairs-{split}.csv").write_text(pairs)
        if bg_pairs:  # the "with background" pair list SPT never released
            (root / f"fasion-bg-pairs-{split}.csv").write_text(pairs)
    add_parsing(root, "fasion-annotation-{split}.csv", (256, 256))
    return root


def add_parsing(root: Path, annotations: str, size: tuple[int, int]) -> None:
    for split in ("train", "test"):
        for name in read_annotations(root / annotations.format(split=split)):
            labels = np.full(size, 5, np.uint8)  # LIP upper clothes
            labels[: size[0] // 8] = 13  # LIP face
            (root / "parsing" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels, mode="L").save(root / "parsing" / split / (Path(name).stem + ".png"))


@pytest.mark.slow  # about 5 minutes on 2 shared cores: IS's 10 splits need 10 pairs per cell at the papers' widths
def test_untrained_suite_fills_every_linked_row_beside_the_paper(cli):
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    state = random_inception_state()
    for protocol in PROTOCOLS.values():  # IS reads torch-fidelity's file, FID pytorch-fid's
        torch.save(state, folder / protocol.weights_file)
    make_deepfashion(data_home() / "deepfashion-pose")
    add_parsing(make_market_pose(data_home() / "market1501-pose"), "market-annotation-{split}.csv", (128, 64))
    options = ("--dataset-option", "market1501-pose.strict=false")
    outcomes = grid(cli, SUITE, "--untrained", "--limit", "10", "--quiet", *options)
    assert sorted(cell_key(m, json.loads(o), d) for m, o, d in outcomes) == EXPECTED
    for (_, _, dataset), outcome in outcomes.items():
        if dataset == "deepfashion-pose-bg":  # no with-background pair list yet
            assert outcome["state"] == "skipped" and outcome["note"].startswith("data missing"), outcome
            assert str(data_home() / "deepfashion-pose-bg") in outcome["note"]
        else:
            assert outcome["state"] == "done", outcome

    make_deepfashion(data_home() / "deepfashion-pose-bg", bg_pairs=True)
    outcomes = grid(cli, SUITE, "--untrained", "--limit", "10", "--quiet", "--dataset", "deepfashion-pose-bg")
    assert [o["state"] for o in outcomes.values()] == ["done"]

    tables = assert_every_linked_row_measured(cli, SUITE)
    market = tables["market1501-pose"]
    # PG²'s own numbers (score.py: convention pg2) sit in the pg2 column, where its measured value lands
    # with a Δ; its measured row has no value in Def-GAN's column, and Def-GAN's none in PG²'s.
    pg2, = measured_rows(market, "pg2")
    assert pg2["reproduces"] == "PG² (Table 1)"
    cell = pg2["cells"]["ssim[pg2]"]
    assert cell["comparable"] and abs(cell["delta"] - (cell["value"] - 0.253)) < 1e-9
    assert "ssim[defgan]" not in pg2["cells"]
    defgan, = measured_rows(market, "def-gan")
    assert defgan["cells"]["ssim[defgan]"]["value"] is not None and "ssim[pg2]" not in defgan["cells"]
    # SPT's own row: SSIM in Def-GAN's convention gets a Δ; mask-SSIM, convention unstated, in both columns.
    spt, = measured_rows(market, "spt")
    assert spt["reproduces"] == "SPT (ours) (Table 1)"
    ssim = spt["cells"]["ssim[defgan]"]
    assert ssim["comparable"] and abs(ssim["delta"] - (ssim["value"] - 0.203)) < 1e-9
    for column in ("mask-ssim[defgan]", "mask-ssim[pg2]"):
        assert spt["cells"][column]["value"] is not None and spt["cells"][column]["delta"] is None
