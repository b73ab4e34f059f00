"""The shipped quickstart suite (`harness demo`): its bundled re-id, translation, descriptor-inversion and
pose-transfer cells, and the orderings their short CPU training must reach, read from the grid's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.grid.suite import load_suite, pairings
from harness.plugins import get_plugins
from harness.run.store import ResultStore

CHANCE_VIREID = 100.0 / 16
"""Chance rank-1 on `vireid-synth` (16 test identities, identity-de-duplicated CMC of the sysu protocol)."""
CHANCE_MAP_VIREID = 100.0 / 16
"""mAP of a random ranking is about the share of true matches among the candidates: ≈ 1/16 as well."""


def scores(results: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(method, dataset) → {"label:key": value} of the latest ok run of each cell in a result store."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    for record in ResultStore(results).records():  # oldest first: later runs overwrite
        if record["status"] == "ok":
            table[(record["method"]["name"], record["dataset"]["name"])] = {
                f"{label}:{key}": value for label, entry in record["metrics"].items() for key, value in entry["values"].items()
            }
    return table


def check_descriptor_inversion(table: dict[tuple[str, str], dict[str, float]]) -> None:
    learned, floor = table[("sift-cgan", "sift-synth")]["psnr:psnr"], table[("descriptor-mean", "sift-synth")]["psnr:psnr"]
    assert learned > floor + 0.5, (learned, floor)


def check_inpainting(table: dict[tuple[str, str], dict[str, float]]) -> None:
    """The narrow Context Encoder above Telea above mean-fill on hole PSNR (16.96, 15.73 and 13.96 dB)."""
    psnr = {method: table[(method, "inpaint-synth")]["psnr:psnr"] for method in ("context-encoder", "telea", "mean-fill")}
    assert psnr["context-encoder"] > psnr["telea"] + 0.5 > psnr["mean-fill"] + 0.5, psnr


def check_translation(table: dict[tuple[str, str], dict[str, float]]) -> None:
    key = "pixel-accuracy:pixel-accuracy"
    learned, floor = table[("cyclegan", "translate-synth")][key], table[("identity-translation", "translate-synth")][key]
    assert learned > floor + 1.0, (learned, floor)  # percentage points


def check_reidentification(table: dict[tuple[str, str], dict[str, float]]) -> None:
    """All three above chance; the learned two-stream model above both hand-crafted features on mAP (by
    a wide margin: 26–29 % against HOG's 18.7 % over training seeds 0–2) and above LOMO on rank-1. Its
    rank-1 against HOG's 18.9 % is not asserted: at this budget it spreads over 18.4–21.1 % with the seed."""
    learned = table[("two-stream", "vireid-synth")]
    hog, lomo = table[("hog", "vireid-synth")], table[("lomo", "vireid-synth")]
    for values in (learned, hog, lomo):
        assert values["cmc:rank-1"] > CHANCE_VIREID and values["map:mAP"] > CHANCE_MAP_VIREID, values
    for values in (hog, lomo):
        assert learned["map:mAP"] > values["map:mAP"] + 5.0, (learned, values)
    assert learned["cmc:rank-1"] > lomo["cmc:rank-1"], (learned, lomo)


def check_pose_transfer(table: dict[tuple[str, str], dict[str, float]]) -> None:
    """Def-GAN (paired) and SPT (unpaired) clearly above the copy-source floor on mask-SSIM (0.822 and
    0.798–0.833 over seeds 0–2 against 0.783, docs/spt.md); PG²'s lead at this budget is small and
    seed-dependent (docs/pose-methods.md), so it only has to run."""
    floor = table[("copy-source", "pose-synth")]["mask-ssim:mask-ssim"]
    for method in ("def-gan", "spt"):
        assert table[(method, "pose-synth")]["mask-ssim:mask-ssim"] > floor + 0.01, (method, table[(method, "pose-synth")])
    assert ("pg2", "pose-synth") in table


def test_quickstart_holds_the_bundled_cells_of_every_task():
    suite = load_suite("quickstart")
    cells = {(p.method.name, p.dataset.name): p for p in pairings(suite, get_plugins())}
    assert {("two-stream", "vireid-synth"), ("hog", "vireid-synth"), ("lomo", "vireid-synth"),
            ("identity-translation", "translate-synth"), ("cyclegan", "translate-synth"),
            ("descriptor-mean", "sift-synth"), ("sift-cgan", "sift-synth"),
            ("copy-source", "pose-synth"), ("def-gan", "pose-synth"), ("pg2", "pose-synth"),
            ("spt", "pose-synth"), ("mean-fill", "inpaint-synth"), ("telea", "inpaint-synth"),
            ("context-encoder", "inpaint-synth")} <= set(cells)
    # the CE cell fills the same whole 64x64 centre as its floors (the datasets' hole=0.5)
    assert cells[("context-encoder", "inpaint-synth")].method.options["mask_convention"] == "full"
    for method, dataset in (("two-stream", "vireid-synth"), ("cyclegan", "translate-synth"), ("sift-cgan", "sift-synth")):
        assert cells[(method, dataset)].method.train.dataset == dataset
    # FID/KID need Inception weights the bundled suite cannot assume: translate-synth scores its known mapping
    assert [m.label for m in cells[("cyclegan", "translate-synth")].metrics] == ["pixel-accuracy"]
    assert cells[("identity", "rain-synth")].metrics is None  # the other datasets keep their protocol metrics


def test_quickstart_descriptor_inversion_orders_from_the_grid(cli, isolated_env):
    """The fast check: the quickstart's sift-synth cells (short sift-cgan training) through `harness grid`."""
    code, _, err = cli("grid", "--suite", "quickstart", "--dataset", "sift-synth", "--workers", "0")
    assert code == 0, err
    check_descriptor_inversion(scores(isolated_env / "results"))
    # the demo then publishes its site: the gallery shows the predictions of a task whose input is not a
    # picture (keypoints and descriptors) without trying to draw that input
    code, _, err = cli("publish", "--results", str(isolated_env / "results"), "--out", str(isolated_env / "site"))
    assert code == 0, err
    pictures = {path.name.rsplit(".", 2)[1] for path in (isolated_env / "site" / "images").rglob("*.png")}
    assert pictures == {"output", "target"}, pictures


@pytest.mark.slow
def test_quickstart_orders_every_bundled_task(cli, isolated_env):
    """The whole demo suite as `harness demo` trains and scores it (minutes on a CPU)."""
    code, _, err = cli("grid", "--suite", "quickstart", "--workers", "0")
    assert code == 0, err
    table = scores(isolated_env / "results")
    check_reidentification(table)
    check_inpainting(table)
    check_translation(table)
    check_descriptor_inversion(table)
    check_pose_transfer(table)
