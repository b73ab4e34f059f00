"""A measured value gets a Δ only when every condition of the reported number holds: RegDB's mean needs
all its trials and no trial scored with a checkpoint trained on another trial; SYSU-MM01 needs the
official galleries and 10 trials; copied rows say where their number came from; and `leaderboards
check` fails on a reported row that names an installed method without linking it. On synthetic records."""

from __future__ import annotations

import json

import pytest

from harness.run.store import ResultStore

BOARD = """
name: strict
title: "Strict"
task: reidentification
papers: {p: "A paper"}
datasets:
  - {name: regdb, split: test, mean_over: trial, mean_of: 3}
  - {name: sysu-mm01, split: test}
conventions:
  paper:
    per_dataset:
      regdb: {params.protocol: regdb}
      sysu-mm01: {params.protocol: sysu, params.trials: 10, details.gallery_sampler: official rand_perm_cam.mat}
metrics:
  - {metric: cmc, key: rank-1, higher_is_better: true, precision: 2, convention: paper}
reported:
  - {method: "Two stream", source: {paper: p, table: "Table 1", row: "x"}, harness_method: two-stream,
     conventions: paper, values: {regdb: {rank-1: 18.0}, sysu-mm01: {rank-1: 30.0}}}
  - {method: "Zero padding", source: {paper: p, table: "Table 1", row: "y"}, harness_method: zero-padding,
     conventions: null, copied_from: "Wu et al. ICCV 2017, Table 3", values: {regdb: {rank-1: 17.0}}}
"""


def record(number: int, method: str, dataset: str, options: dict, rank1: float, params: dict,
           details: dict | None = None, trained_on: dict | None = None) -> dict:
    """A minimal stored run (what `harness run` writes, reduced), optionally with the training identity."""
    training = None if trained_on is None else {"dataset": dataset, "dataset_options": trained_on}
    return {
        "run_id": f"r{number:02d}", "created": f"2026-01-01T00:00:{number:02d}", "status": "ok", "task": "reidentification",
        "method": {"name": method, "version": "1", "options": {}, "checkpoint_sha256": f"c{number}", "training": training},
        "dataset": {"name": dataset, "version": "1", "split": "test", "options": options},
        "metrics": {"cmc": {"metric": "cmc", "label": "cmc", "values": {"rank-1": rank1}, "n": 4, "higher_is_better": True,
                            "version": "1", "params": params, "convention": {}, "details": details or {}}},
    }


def publish(cli, tmp_path, records: list[dict], board: str | None = BOARD, name: str = "strict") -> dict[str, list[dict]]:
    """Store ``records``, then `harness publish` the leaderboard ``board`` (its YAML) as JSON: dataset → rows.
    ``board=None`` publishes the shipped leaderboard ``name``."""
    store = ResultStore(tmp_path / "results")
    for rec in records:
        store.write(rec)
    extra: list = []
    if board is not None:
        boards = tmp_path / "boards"
        boards.mkdir()
        (boards / f"{name}.yaml").write_text(board)
        extra = ["--leaderboards", boards]
    code, out, err = cli("publish", *extra, "--leaderboard", name, "--format", "json", "--results", tmp_path / "results")
    assert code == 0, err
    return {table["dataset"]: table["rows"] for table in json.loads(out)["leaderboards"][0]["tables"]}


def measured(rows: list[dict], method: str) -> dict:
    return next(row for row in rows if row["kind"] == "measured" and row["method"].startswith(method))


REGDB = {"protocol": "regdb"}


def trials(values: dict[int, float], trained: dict[int, int] | None = None) -> list[dict]:
    trained = trained or {trial: trial for trial in values}
    return [record(trial, "two-stream", "regdb", {"trial": trial}, value, REGDB, trained_on={"trial": trained[trial]})
            for trial, value in values.items()]


def test_regdb_mean_over_all_trials_gets_a_delta(cli, tmp_path, isolated_env):
    cell = measured(publish(cli, tmp_path, trials({1: 10.0, 2: 20.0, 3: 30.0}))["regdb"], "two-stream")["cells"]["rank-1[paper]"]
    assert cell["comparable"] is True and cell["delta"] == pytest.approx(2.0)


def test_regdb_mean_over_too_few_trials_is_incomparable(cli, tmp_path, isolated_env):
    row = measured(publish(cli, tmp_path, trials({1: 10.0, 2: 20.0}))["regdb"], "two-stream")
    cell = row["cells"]["rank-1[paper]"]
    assert cell["value"] == pytest.approx(15.0) and cell["comparable"] is False and cell["delta"] is None
    assert cell["reason"] == "mean over 2 of the 3 trial values the paper averages"


def test_a_trial_scored_with_another_trials_checkpoint_is_left_out(cli, tmp_path, isolated_env):
    row = measured(publish(cli, tmp_path, trials({1: 10.0, 2: 90.0, 3: 30.0}, trained={1: 1, 2: 1, 3: 3}))["regdb"],
                   "two-stream")
    cell = row["cells"]["rank-1[paper]"]
    assert cell["parts"] == {"1": 10.0, "3": 30.0} and cell["value"] == pytest.approx(20.0)
    assert cell["comparable"] is False and cell["delta"] is None
    assert "left out: trial 2 (checkpoint trained on trial 1)" in cell["reason"]
    assert "refused" in row["badges"]


SYSU = {"protocol": "sysu", "trials": 10}
OFFICIAL = {"gallery_sampler": "official rand_perm_cam.mat"}


@pytest.mark.parametrize("params, details, comparable", [
    (SYSU, OFFICIAL, True),
    (SYSU, {"gallery_sampler": "seeded numpy default_rng([0, trial])"}, False),
    ({"protocol": "sysu", "trials": 3}, OFFICIAL, False),
])
def test_sysu_needs_the_official_galleries_and_ten_trials(cli, tmp_path, isolated_env, params, details, comparable):
    rows = publish(cli, tmp_path, [record(1, "two-stream", "sysu-mm01", {}, 34.0, params, details)])["sysu-mm01"]
    cell = measured(rows, "two-stream")["cells"]["rank-1[paper]"]
    assert cell["comparable"] is comparable
    assert (cell["delta"] == pytest.approx(4.0)) if comparable else cell["delta"] is None


def test_a_copied_row_says_where_its_number_came_from(cli, tmp_path, isolated_env):
    rows = publish(cli, tmp_path, [record(t, "zero-padding", "regdb", {"trial": t}, 20.0, REGDB) for t in (1, 2, 3)])["regdb"]
    paper = next(row for row in rows if row["kind"] == "reported" and row["method"] == "Zero padding")
    assert paper["cells"]["rank-1[paper]"]["reason"] == (
        "copied by p (Wu et al. ICCV 2017, Table 3); how it was computed is not stated")


def test_leaderboards_check_fails_on_an_unlinked_row_naming_an_installed_method(cli, tmp_path):
    boards = tmp_path / "boards"
    boards.mkdir()
    unlinked = BOARD.replace("harness_method: zero-padding,\n", "\n")
    (boards / "strict.yaml").write_text(unlinked)
    code, out, _ = cli("leaderboards", "--leaderboards", boards, "check")
    assert code == 1
    assert "error strict: reported row 'Zero padding' (Table 1) names method zero-padding" in out
    (boards / "strict.yaml").write_text(unlinked.replace('copied_from: "Wu', 'unlinked: "not re-run", copied_from: "Wu'))
    code, out, _ = cli("leaderboards", "--leaderboards", boards, "check")
    assert code == 0, out
    assert "strict" in out and "error" not in out


def test_the_shipped_leaderboards_link_every_row_naming_an_installed_method(cli):
    code, out, _ = cli("leaderboards", "check")
    assert code == 0, out


HOLES = """
name: holes
title: "Holes"
task: inpainting
papers: {p: "A paper"}
datasets:
  - {name: paris-streetview, split: test}
metrics:
  - {metric: psnr, key: psnr, higher_is_better: true, precision: 2}
reported:
  - {method: "Context Encoder", source: {paper: p, table: "Table 2.1", row: "CE"}, harness_method: context-encoder,
     requires: {mask_convention: official}, conventions: {psnr: plain}, values: {paris-streetview: {psnr: 17.0}}}
conventions: {plain: {match: {metric: psnr}}}
"""


@pytest.mark.parametrize("convention, comparable", [("official", True), ("full", False)])
def test_a_row_requiring_a_method_option_is_incomparable_without_it(cli, tmp_path, isolated_env, convention, comparable):
    rec = record(1, "context-encoder", "paris-streetview", {}, 0.0, {})
    rec["task"] = "inpainting"
    rec["method"]["options"] = {"mask_convention": convention}
    rec["metrics"] = {"psnr": {"metric": "psnr", "label": "psnr", "values": {"psnr": 18.5}, "n": 4, "higher_is_better": True,
                               "version": "1", "params": {}, "convention": {}, "details": {}}}
    rows = publish(cli, tmp_path, [rec], HOLES, "holes")["paris-streetview"]
    cell = measured(rows, "context-encoder")["cells"]["psnr"]
    assert cell["comparable"] is comparable
    if comparable:
        assert cell["delta"] == pytest.approx(1.5)
    else:
        assert cell["delta"] is None
        assert cell["reason"] == "the paper's number needs mask_convention=official (this run: full)"


def translation_record(number: int, dataset: str, metric: str, value: float, params: dict, target_train: str | None) -> dict:
    rec = record(number, "cyclegan", dataset, {}, 0.0, {},
                 trained_on=None if target_train is None else {"target_train": target_train})
    rec["task"] = "unpaired-translation"
    rec["metrics"] = {metric: {"metric": metric, "label": metric, "values": {metric: value}, "n": 4,
                               "higher_is_better": True, "version": "1", "params": params, "convention": {}, "details": {}}}
    return rec


THESIS_MAPS = {"resolution": 256, "threshold": 12.0, "difference": "sum"}


@pytest.mark.parametrize("params, target_train, reason", [
    (THESIS_MAPS, "test", None),
    (THESIS_MAPS, "train", "the paper's number needs training.dataset_options.target_train=test (this run: train)"),
    ({**THESIS_MAPS, "resolution": 0}, "test", "computed with an unnamed convention, this column ranks thesis-maps"),
])
def test_maps_needs_the_thesis_resolution_and_its_leaky_training(cli, tmp_path, isolated_env, params, target_train, reason):
    rows = publish(cli, tmp_path, [translation_record(1, "maps", "pixel-accuracy", 50.0, params, target_train)],
                   None, "yang-translation")["maps"]
    cell = measured(rows, "cyclegan")["cells"]["pixel-accuracy[thesis-maps]"]
    assert cell["comparable"] is (reason is None) and cell["reason"] == (reason or "")
    assert (cell["delta"] == pytest.approx(50.0 - 45.91)) if reason is None else cell["delta"] is None


def test_digits_target_accuracy_is_the_reverse_protocol_so_incomparable(cli, tmp_path, isolated_env):
    rows = publish(cli, tmp_path, [translation_record(1, "mnist2usps", "target-accuracy", 90.0, {"target": "usps"}, None)],
                   None, "yang-translation")["mnist2usps"]
    cell = measured(rows, "cyclegan")["cells"]["target-accuracy[thesis-digits]"]
    assert cell["comparable"] is False and cell["delta"] is None
    assert cell["reason"] == "computed with harness-target-first, this column ranks thesis-digits"
