"""Paper suites (#22): `harness suites` lists one per leaderboard with linked rows, `harness grid --suite
<board> --dry-run` lists exactly the cells of the paper's tables with what each needs, a run fills the cells
it can and names the skipped ones, and `harness publish` shows the measured value beside the paper's row with
a Δ or the reason there is none. Through the CLI, on tiny copies of the real layouts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_rain import make_rain100h
from fixtures_vireid import make_regdb, make_sysu

SDSEN_ROWS = [("dsen-cnn", {}), ("dsen", {}), ("dsen", {"aggregation": "maxpool"}), ("dsen", {"aggregation": "avgpool"}),
              ("dsen", {"se": False}), ("s-dsen", {}), ("s-dsen", {"stages": 2}), ("s-dsen", {"stages": 4}),
              ("s-dsen", {"stages": 6})]
"""The linked rows of S-DSEN's Tables 1-3 (harness method and options), each printed on both datasets."""


def data_home() -> Path:
    return Path(os.environ["HARNESS_DATA"])


def plan(cli, *args: str) -> dict:
    code, out, err = cli("grid", *args, "--dry-run", "--json")
    assert code == 0, err
    return json.loads(out)


def tables(cli, board: str) -> dict[str, list[dict]]:
    code, out, err = cli("publish", "--leaderboard", board, "--format", "json")
    assert code == 0, err
    return {t["dataset"]: t["rows"] for t in json.loads(out)["leaderboards"][0]["tables"]}


def measured(rows: list[dict], method: str) -> dict:
    found = [r for r in rows if r["kind"] == "measured" and r["method"].startswith(method)]
    assert len(found) == 1, [r["method"] for r in rows if r["kind"] == "measured"]
    return found[0]


def test_suites_lists_a_paper_suite_per_board_with_linked_rows(cli):
    code, out, err = cli("suites")
    assert code == 0, err
    for board, tables_filled in (("s-dsen", "s-dsen Table 1, s-dsen Table 2, s-dsen Table 3"),
                                 ("hi-cmd", "hi-cmd Table 1, hi-cmd Table 2"),
                                 ("yang-inpainting", "yang-thesis Table 2.1, yang-thesis Table 3.2"),
                                 ("yang-translation", "yang-thesis Table 4.2, yang-thesis Table 4.3"),
                                 ("spt-person-generation", "spt Table 1, spt Table 3"),
                                 ("spt-parsing", "spt Table 4")):
        assert f"{board}: leaderboard {board}, fills {tables_filled}" in out
    assert "reid-market1501: no paper suite: leaderboard reid-market1501 holds no paper's numbers" in out
    code, out, err = cli("grid", "--suite", "reid-market1501", "--dry-run")
    assert code == 2 and "holds no paper's numbers" in err


def test_sdsen_dry_run_lists_exactly_the_tables_cells(cli):
    cells = plan(cli, "--suite", "s-dsen")["cells"]
    assert sorted((c["method"], json.dumps(c["options"], sort_keys=True), c["dataset"]) for c in cells) == sorted(
        (m, json.dumps(o, sort_keys=True), d) for m, o in SDSEN_ROWS for d in ("rain100h", "rain800"))
    cell = next(c for c in cells if c["method"] == "s-dsen" and c["options"] == {"stages": 4} and c["dataset"] == "rain800")
    assert cell["split"] == "test" and cell["fills"] == ["Table 3: S-DSEN_s4"]
    # The SSIM convention of the paper's numbers is a metric parameter of the cell; PSNR's is unstated.
    assert cell["metrics"] == [{"label": "psnr", "params": {}}, {"label": "ssim", "params": {"convention": "sdsen-official"}}]
    assert cell["data"]["present"] is False and str(data_home() / "rain800") in cell["data"]["note"]
    assert cell["weights"]["state"] == "missing" and "--checkpoint s-dsen=PATH" in cell["weights"]["note"]
    assert cell["training"]["steps"] == 20000 and cell["training"]["steps_declared"] is True
    assert cell["skip"].startswith("data missing") and "weights missing" in cell["skip"]


def test_checkpoint_and_data_root_are_where_the_plan_looks(cli, tmp_path):
    weights = tmp_path / "dsen.safetensors"
    weights.write_bytes(b"x")
    root = tmp_path / "elsewhere"
    cells = plan(cli, "--suite", "s-dsen", "--method", "dsen", "--checkpoint", f"dsen={weights}",
                 "--data-root", f"rain100h={root}")["cells"]
    assert {c["method"] for c in cells} == {"dsen"} and len(cells) == 8
    rain100h = next(c for c in cells if c["dataset"] == "rain100h")
    assert rain100h["weights"] == {"state": "present", "note": f"{weights} (--checkpoint dsen=…)", "checkpoint": str(weights)}
    assert f"looked at {root} (--data-root)" in rain100h["data"]["note"]


def test_sdsen_suite_runs_what_it_can_and_publishes_beside_the_paper(cli):
    make_rain100h(data_home() / "rain100h", layout="prenet", size=(16, 16))
    code, out, err = cli("grid", "--suite", "s-dsen", "--method", "dsen-cnn", "--workers", "0", "--quiet")
    assert code == 0, err  # no weights and no --untrained: nothing runs, each cell says why
    assert "skipped: dsen-cnn × rain100h: weights missing" in out
    assert "skipped: dsen-cnn × rain800: data missing" in out

    code, out, err = cli("grid", "--suite", "s-dsen", "--method", "dsen-cnn", "--untrained", "--limit", "3",
                         "--workers", "0", "--json")
    assert code == 0, err
    outcomes = {c["dataset"]: c for c in json.loads(out)}
    assert outcomes["rain100h"]["state"] == "done" and outcomes["rain800"]["state"] == "skipped"
    assert "ssim" in outcomes["rain100h"]["metrics"]

    row = measured(tables(cli, "s-dsen")["rain100h"], "dsen-cnn")
    assert row["reproduces"] == "CNN (Table 1)"
    ssim = row["cells"]["ssim[sdsen-official]"]
    assert ssim["comparable"] and ssim["delta"] == pytest.approx(ssim["value"] - 0.7557)
    psnr = row["cells"]["psnr"]
    assert psnr["delta"] is None and "its convention is not stated" in psnr["delta_note"]


def test_hi_cmd_dry_run_lists_every_trial_and_the_sysu_protocol(cli):
    result = plan(cli, "--suite", "hi-cmd")
    cells = result["cells"]
    methods = ("hog", "lomo", "two-stream", "zero-padding", "hi-cmd")
    expected = {(m, "regdb", trial) for m in methods for trial in range(1, 11)}
    expected |= {(m, "sysu-mm01", None) for m in (*methods, "precomputed-features")}
    assert {(c["method"], c["dataset"], c["dataset_options"].get("trial")) for c in cells} == expected
    assert len(cells) == len(expected)  # Hi-CMD's Table 1 and Table 2 rows share their cells
    hi_cmd = next(c for c in cells if c["method"] == "hi-cmd" and c["dataset"] == "sysu-mm01")
    assert hi_cmd["fills"] == ["Table 1: Ours (Hi-CMD)", "Table 2: Alternate | CE+TRIP | A+P"]
    cmc = next(m for m in hi_cmd["metrics"] if m["label"] == "cmc")
    assert cmc["params"] == {"protocol": "sysu", "mode": "all", "shot": "single", "trials": 10}
    assert hi_cmd["requirements"] == ["details.gallery_sampler = official rand_perm_cam.mat"]
    assert hi_cmd["training"]["steps"] == 100000
    regdb = next(c for c in cells if c["method"] == "hi-cmd" and c["dataset_options"].get("trial") == 7)
    assert "--dataset-option trial=7" in regdb["training"]["recipe"]
    hog = next(c for c in cells if c["method"] == "hog" and c["dataset"] == "regdb")
    assert hog["weights"]["state"] == "not needed" and hog["training"]["steps"] is None


def test_hi_cmd_suite_runs_the_trials_present_and_the_mean_is_marked(cli, tmp_path):
    make_regdb(data_home() / "regdb", people=4, per_person=1, trials=2)
    make_sysu(data_home() / "sysu-mm01", per_camera=1)
    code, out, err = cli("grid", "--suite", "hi-cmd", "--method", "hog",
                         "--dataset-option", "regdb.strict=false", "--workers", "0", "--quiet")
    assert code == 0, err
    assert "3 done" in out and "8 skipped" in out
    assert "skipped: hog × regdb(trial=3, strict=false): data missing" in out

    row = measured(tables(cli, "hi-cmd")["regdb"], "hog")
    assert row["reproduces"] == "HOG (Table 1)" and row["mean_over"]["found"] == 2
    cell = row["cells"]["rank-1[hi-cmd]"]
    assert cell["value"] is not None and not cell["comparable"]
    assert "mean over 2 of the 10 trial values" in cell["reason"]
    # SYSU-MM01 without the official rand_perm_cam.mat: scored with the suite's 10 trials, yet incomparable.
    sysu = measured(tables(cli, "hi-cmd")["sysu-mm01"], "hog")
    cell = sysu["cells"]["rank-1[hi-cmd]"]
    assert cell["value"] is not None and not cell["comparable"] and "an unnamed convention" in cell["reason"]
    assert sysu["reproduces"] == "HOG (Table 1)"


def test_hi_cmd_all_ten_trials_reach_the_copied_rows_reason(cli):
    make_regdb(data_home() / "regdb", people=4, per_person=1, trials=10)
    code, out, err = cli("grid", "--suite", "hi-cmd", "--method", "lomo", "--dataset", "regdb",
                         "--dataset-option", "regdb.strict=false", "--workers", "0", "--quiet")
    assert code == 0, err
    assert "10 done" in out and "skipped" not in out
    row = measured(tables(cli, "hi-cmd")["regdb"], "lomo")
    cell = row["cells"]["rank-1[hi-cmd]"]
    assert cell["comparable"] and cell["delta"] is None
    assert "copied by hi-cmd" in cell["delta_note"]


def test_paper_suite_flags_are_refused_elsewhere(cli):
    code, _, err = cli("grid", "--suite", "quickstart", "--untrained", "--dry-run")
    assert code == 2 and "for paper suites" in err
    code, _, err = cli("grid", "--suite", "hi-cmd", "--dataset-option", "regdb.trial=3", "--dry-run")
    assert code == 2 and "sets it per cell" in err
    code, _, err = cli("grid", "--suite", "s-dsen", "--metric", "psnr", "--dry-run")
    assert code == 2 and "paper suite" in err


BOARD = """
name: toy
title: Toy
task: deraining
papers: {p: "A paper"}
datasets:
  - {name: rain100h, split: test}
  - {name: rain800, split: val}
  - {name: regdb, mean_over: trial, mean_of: 3}
conventions:
  a: {match: {params.convention: a}, per_dataset: {rain800: {params.peak: 2}}}
  b: {match: {params.convention: b, details.galleries: official, convention.overrides: []}}
metrics:
  - {metric: psnr, key: psnr, higher_is_better: true}
  - {metric: ssim, key: ssim, higher_is_better: true, convention: a}
  - {metric: ssim, key: ssim, higher_is_better: true, convention: b}
reported:
  - {method: X, source: {paper: p, table: T1, row: x}, harness_method: dsen, harness_options: {se: false},
     conventions: {psnr: null, ssim: a}, values: {rain100h: {psnr: 1, ssim: 2}, rain800: {psnr: 1, ssim: null}}}
  - {method: Y, source: {paper: p, table: T2, row: y}, harness_method: dsen, harness_options: {se: false},
     conventions: {psnr: null, ssim: a}, values: {rain100h: {ssim: 3}}}
  - {method: Z, source: {paper: p, table: T2, row: z}, conventions: null, values: {rain100h: {psnr: 1}}}
  - {method: W, source: {paper: p, table: T3, row: w}, harness_method: s-dsen, conventions: null,
     values: {rain100h: {ssim: 1}, rain800: {psnr: null}, regdb: {psnr: 4}}}
"""


def test_cells_follow_the_rows_their_numbers_and_conventions(tmp_path):
    import yaml

    from harness.grid.papers import paper_suite
    from harness.publish.definitions import parse

    suite = paper_suite(parse(yaml.safe_load(BOARD), tmp_path / "toy.yaml"))
    cells = {(c.method, c.dataset, json.dumps(dict(c.dataset_options))): c for c in suite.cells}
    # X and Y share a configuration: one cell on rain100h filling both rows; rain800 prints PSNR only.
    assert sorted(cells) == [("dsen", "rain100h", "{}"), ("dsen", "rain800", "{}"),
                             ("s-dsen", "rain100h", "{}"), *(("s-dsen", "regdb", json.dumps({"trial": t})) for t in (1, 2, 3))]
    x = cells[("dsen", "rain100h", "{}")]
    assert x.fills == ("T1: x", "T2: y") and x.options == {"se": False}
    assert [(m.label, dict(m.params)) for m in x.metrics] == [("psnr", {}), ("ssim", {"convention": "a"})]
    assert [m.label for m in cells[("dsen", "rain800", "{}")].metrics] == ["psnr"]
    assert cells[("dsen", "rain800", "{}")].split == "val"
    # A row without a convention is scored under every column's: one label per convention of the metric;
    # details.* become requirements, convention.overrides (the default) nothing.
    w = cells[("s-dsen", "rain100h", "{}")]
    assert [(m.label, dict(m.params)) for m in w.metrics] == [("ssim@a", {"convention": "a"}), ("ssim@b", {"convention": "b"})]
    assert w.requirements == ("details.galleries = official",)
    assert [m.label for m in cells[("s-dsen", "regdb", json.dumps({"trial": 2}))].metrics] == ["psnr"]


def test_a_per_dataset_requirement_is_a_parameter_on_that_dataset_only(tmp_path):
    import yaml

    from harness.grid.papers import paper_suite
    from harness.publish.definitions import parse

    board = yaml.safe_load(BOARD)
    board["reported"][0]["values"]["rain800"]["ssim"] = 5
    cells = {c.dataset: c for c in paper_suite(parse(board, tmp_path / "toy.yaml")).cells if c.method == "dsen"}
    assert dict(cells["rain800"].metrics[1].params) == {"convention": "a", "peak": 2}
    assert dict(cells["rain100h"].metrics[1].params) == {"convention": "a"}
    assert paper_suite(parse({**board, "reported": board["reported"][2:3]}, tmp_path / "toy.yaml")) is None


def test_suites_name_prints_the_cells(cli):
    code, out, err = cli("suites", "s-dsen")
    assert code == 0, err
    assert "s-dsen(stages=4) × rain800  [split test]  fills Table 3: S-DSEN_s4" in out
    assert len([line for line in out.splitlines() if " × " in line]) == 18


def test_one_checkpoint_per_trial_through_the_option_in_the_path(cli, tmp_path):
    (tmp_path / "regdb-1").mkdir()
    cells = plan(cli, "--suite", "hi-cmd", "--method", "hi-cmd", "--dataset", "regdb",
                 "--checkpoint", f"hi-cmd={tmp_path}/regdb-{{trial}}")["cells"]
    weights = {c["dataset_options"]["trial"]: c["weights"] for c in cells}
    assert weights[1]["state"] == "present" and weights[1]["checkpoint"] == str(tmp_path / "regdb-1")
    assert weights[2]["state"] == "missing" and str(tmp_path / "regdb-2") in weights[2]["note"]
